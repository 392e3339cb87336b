"""NMF: seconds and passes per iteration against a plain read pass, out of
core; time to scikit-learn's loss, in memory.

Part A (cluster): one non-negative float32 ``lowrank`` store; a read pass
(and, for information, the same pass through zarr's own decoding, which dmf
skips for plain chunks), the block products of an iteration timed with one
BLAS thread and scaled to the store and the workers (:mod:`benchmarks.floor`),
then dmf's mu (Frobenius), hals and mu (KL), each run for a fixed number of
iterations from the same random start. The table's wall time includes the
sign check before and the objective pass after the iterations; the targets
compare the engine's own seconds per iteration with the floor, max(read
pass, products), and count (passes - 2) / iterations.

Part B (threads, in memory): scikit-learn's ``NMF`` with solver "cd" and
"mu" against dmf's hals and mu from the same custom start: the time each
dmf solver takes to reach the loss its scikit-learn counterpart ended at
(dmf's mu has scikit-learn's iterates and stops where it stops; dmf's hals
makes several sweeps per read of X and is ended by a callback once it is at
scikit-learn cd's final loss).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import dask
import dask.array as da
import numpy as np

import dmf
from benchmarks import floor
from benchmarks.codec import _complete, parse_size
from benchmarks.harness import FLOAT32, Case, Data, Env, Result, Suite, build_parts, opened_store
from benchmarks.summary import TARGETS_HEADER, by_name, ran, table_head, table_row, verdict
from dmf.store.dense_read import default_chunks

NAME = "nmf"
HELP = ("NMF: seconds and passes per iteration against a read pass out of core; time to "
        "scikit-learn's loss in memory")
CLUSTER = {"workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB"}

#: Targets of issue 25: seconds per iteration / the floor, by the products' kind
FLOOR_TARGET = {"frobenius": 1.3, "kl": 1.5}
PASSES_TARGET = 0.05    # |passes per iteration - 1|

#: Part A's dmf rows: name key -> what each sets beside the common options.
DMF_VARIANTS_A = {"mu": {"solver": "mu"}, "hals": {"solver": "hals"}, "kl": {"loss": "kl"}}
INMEM_TARGET = 1.0      # dmf / scikit-learn wall time to the same loss


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", default="4GB", help="bytes of the float32 store (default 4GB)")
    p.add_argument("--cols", type=int, default=5000, help="its columns (default 5000)")
    p.add_argument("--k", type=int, default=20, help="components (default 20)")
    p.add_argument("--rank", type=int, default=20, help="planted rank (default 20)")
    p.add_argument("--iters", type=int, default=5,
                   help="iterations per out-of-core run (default 5)")
    p.add_argument("--inmem-size", default="20000x2000",
                   help="M x N of the in-memory float64 matrix (default 20000x2000)")
    p.add_argument("--tol", type=float, default=1e-4, help="in-memory tol (default 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--parts", default="A,B", help="A (out of core), B (in memory) or A,B")


def prepare_store(args: argparse.Namespace, env: Env) -> Path:
    return nonnegative_store(env.data_dir, args.size, args.cols, args.rank, args.seed)


def nonnegative_store(data_dir: Path, size: str, cols: int, rank: int, seed: int) -> Path:
    """A float32 ``lowrank --nonnegative`` store of about ``size`` bytes,
    ``cols`` columns wide, in dmf's default chunks: generated once under
    ``data_dir`` (keyed by its parameters) and reused by every benchmark
    that asks for the same one."""
    m = max(1, round(parse_size(size) / (cols * FLOAT32)))
    shape = (m, cols)
    folder = data_dir / NAME / f"{m}x{cols}-rank{rank}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / "X.zarr"
    if not _complete(store, shape):
        print(f"generating {store} ({m * cols * FLOAT32 / 1e9:.1f} GB) ...", flush=True)
        with dask.config.set(scheduler="threads"):
            dmf.generate.lowrank(store, shape, rank, noise=0.0, seed=seed, dtype="float32",
                                 nonnegative=True, chunks=default_chunks(shape, "float32"),
                                 save_factors=False, overwrite=True)
    return store


def _dmf_nmf(X, k: int, **kwargs) -> Callable[[], object]:
    def run():
        return dmf.nmf(X, k, progress=False, **kwargs)

    return run


def _per_iter(result) -> dict[str, float]:
    return {"s/iter": float(result.attrs["timings"]["seconds_per_iter"]),
            "iters": float(result.n_iter)}


def _floor_case(kind: str, rows: int, m: int, n: int, k: int, workers: int) -> Case:
    """A row whose value is ``kind``'s product seconds of one pass (see
    :mod:`benchmarks.floor`), measured between the other rows."""
    def run() -> float:
        return floor.scaled(floor.block_seconds(kind, rows, n, k), rows, m, workers)

    return Case(f"floor: {kind} block products, 1 BLAS thread, x blocks / workers", run,
                Data("products", ()), where="client", measure=lambda s: {"floor s": s})


def _targets_a(names: dict[str, str], iters: int) -> Callable[[list[Result]], list[str]]:
    def summary(results: list[Result]) -> list[str]:
        by = by_name(results)
        read = by.get(names["read"])
        lines = ["Targets (issue 25): floor = max(read pass, block products)", "",
                 *table_head(*TARGETS_HEADER)]
        for key, kind in (("mu", "frobenius"), ("hals", "frobenius"), ("kl", "kl")):
            r, products = by.get(names[key]), by.get(names[f"floor {kind}"])
            if not ran(r, read, products):
                lines.append(table_row(names[key], "a case failed", "n/a"))
                continue
            bound = floor.floor(read.median, products.extra("floor s"))
            ratio = r.extra("s/iter") / bound
            target = FLOOR_TARGET[kind]
            lines.append(table_row(f"{names[key]}: s/iteration <= {target} x floor "
                                   f"({bound:.3g} s)", f"{ratio:.2f} x",
                                   verdict(ratio <= target)))
            passes = (r.passes - 2) / iters
            lines.append(table_row(f"{names[key]}: passes per iteration 1 +- {PASSES_TARGET}",
                                   f"{passes:.3f}", verdict(abs(passes - 1) <= PASSES_TARGET)))
        return lines

    return summary


def build_a(args: argparse.Namespace, env: Env) -> Suite:
    store = prepare_store(args, env)
    url, z, m, n = opened_store(store)
    k, it, seed = args.k, args.iters, args.seed
    data = Data("X", (store,))
    common = {"init": "random", "max_iter": it, "tol": 0, "seed": seed, "cache": False}
    names = {"read": "read pass: X.sum()",
             "read_zarr": "read pass: da.from_zarr(url).sum() (zarr's decoding)",
             "mu": f"dmf mu, Frobenius, {it} iterations",
             "hals": f"dmf hals, {it} iterations", "kl": f"dmf mu, KL, {it} iterations"}
    floors = {kind: _floor_case(kind, z.chunks[0], m, n, k, args.workers)
              for kind in ("frobenius", "kl")}
    names.update({f"floor {kind}": case.name for kind, case in floors.items()})
    cases = [
        Case(names["read"], lambda: dmf.open_matrix(url).sum().compute(), data,
             where="cluster"),
        Case(names["read_zarr"], lambda: da.from_zarr(url).sum().compute(), data,
             where="cluster"),
        *floors.values(),
        *(Case(names[key], _dmf_nmf(url, k, **variant, **common), data, where="cluster",
               measure=_per_iter) for key, variant in DMF_VARIANTS_A.items()),
    ]
    notes = [
        f"Data: `lowrank --nonnegative` {m} x {n} float32 ({m * n * FLOAT32 / 1e9:.2f} GB), "
        f"rank {args.rank}, chunks {z.chunks[0]} x {z.chunks[1]}; cluster {args.workers} "
        f"workers x {args.threads_per_worker} thread, {args.memory_limit} each; dmf with "
        f"k = {k}, init='random', tol=0, max_iter={it}, cache=False. s/iter: the engine's "
        "mean seconds per iteration; passes include the sign check before and the objective "
        "pass after the iterations (hence the -2 in the targets).",
    ]
    return Suite(title=f"NMF out of core: k = {k} on a {m} x {n} float32 store", cases=cases,
                 baseline=f"{names['read']} (warm)", notes=notes,
                 summary=_targets_a(names, it))


def _sklearn(X, W0, H0, solver: str, tol: float,
             reached: dict[str, float] | None = None) -> Callable[[], object]:
    """scikit-learn's NMF from W0, H0; its final reconstruction error goes to
    ``reached[solver]`` (the target of the dmf case after it)."""
    from sklearn.decomposition import NMF

    def run():
        model = NMF(W0.shape[1], solver=solver, init="custom", tol=tol, max_iter=1000)
        model.fit(X, W=W0.copy(), H=H0.copy())
        if reached is not None:
            reached[solver] = float(model.reconstruction_err_)
        return model

    return run


def _stop_at(reached: dict[str, float], solver: str):
    """An NMF callback ending the fit once the factors entering an iteration
    are at scikit-learn's final error (those it returns are then below)."""
    def at_target(_iteration, _state, stats) -> bool:
        target = reached.get(solver)
        return target is not None and float(np.sqrt(2 * max(stats.loss, 0.0))) <= target

    return at_target


def _loss_of(value) -> dict[str, float]:
    if hasattr(value, "reconstruction_err_"):  # both expose it
        err = value.reconstruction_err_
        iters = value.n_iter_ if hasattr(value, "n_iter_") else value.n_iter
        return {"loss": float(err), "iters": float(iters)}
    return {}


def _targets_b(names: dict[str, str]) -> Callable[[list[Result]], list[str]]:
    def summary(results: list[Result]) -> list[str]:
        by = by_name(results)
        lines = ["Targets (issue 5):", "", *table_head(*TARGETS_HEADER)]
        for ours, theirs in (("hals", "cd"), ("mu", "sk_mu")):
            a, b = by.get(names[ours]), by.get(names[theirs])
            if not ran(a, b):
                lines.append(table_row(names[ours], "a case failed", "n/a"))
                continue
            ratio = a.median / b.median
            same = a.extra("loss") <= (1 + 1e-6) * b.extra("loss")  # at its loss or below
            lines.append(table_row(f"{names[ours]} time <= {names[theirs]} to its loss "
                                   f"({a.extra('loss'):.6g} vs {b.extra('loss'):.6g})",
                                   f"{ratio:.2f} x", verdict(ratio <= INMEM_TARGET and same)))
        return lines

    return summary


def build_b(args: argparse.Namespace, env: Env) -> Suite:
    m, n = (int(v) for v in args.inmem_size.lower().split("x"))
    k, seed = args.k, args.seed
    rng = np.random.default_rng(seed)
    X = rng.random((m, args.rank)) @ rng.random((args.rank, n)) + 0.01 * rng.random((m, n))
    avg = np.sqrt(X.mean() / k)
    W0, H0 = avg * rng.random((m, k)), avg * rng.random((k, n))
    data = Data("X in memory", ())
    names = {"cd": "scikit-learn NMF cd", "hals": "dmf hals",
             "sk_mu": "scikit-learn NMF mu", "mu": "dmf mu"}
    dmf_opts = {"init": "custom", "W": W0, "H": H0, "tol": args.tol, "max_iter": 1000}
    reached: dict[str, float] = {}
    cases = [
        Case(names["cd"], _sklearn(X, W0, H0, "cd", args.tol, reached), data, where="client",
             measure=_loss_of),
        Case(names["hals"], _dmf_nmf(X, k, solver="hals", callback=_stop_at(reached, "cd"),
                                     **dmf_opts), data, where="threads", measure=_loss_of),
        Case(names["sk_mu"], _sklearn(X, W0, H0, "mu", args.tol), data, where="client",
             measure=_loss_of),
        Case(names["mu"], _dmf_nmf(X, k, solver="mu", **dmf_opts), data, where="threads",
             measure=_loss_of),
    ]
    notes = [
        f"Data: {m} x {n} float64 in memory, rank {args.rank} + 1% noise; k = {k}; the same "
        f"custom start and tol = {args.tol:g} (max_iter 1000) for all four. scikit-learn on "
        f"its BLAS's threads; dmf on dask's threaded scheduler with {env.threads} threads. "
        "loss: reconstruction_err_ (sqrt(2 D)).",
        "dmf hals runs its default hals_sweeps='auto' (Gillis and Glineur's accelerated "
        "HALS: several sweeps per read of X) and is ended by a callback at the first "
        "iteration that starts at or below scikit-learn cd's final loss (measured in the "
        "same round, just before). dmf mu has scikit-learn's iterates and stopping rule.",
    ]
    return Suite(title=f"NMF in memory: k = {k} on a {m} x {n} float64 array", cases=cases,
                 baseline=f"{names['cd']} (warm)", notes=notes, summary=_targets_b(names),
                 cluster=False)


def build(args: argparse.Namespace, env: Env) -> list[Suite]:
    return build_parts(NAME, args.parts, {"A": lambda: build_a(args, env),
                                          "B": lambda: build_b(args, env)})
