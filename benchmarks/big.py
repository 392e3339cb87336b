"""Past RAM: a store larger than this machine's memory, read cold by 2
workers of 1 GiB each, against the I/O floor measured in the same run.

The store (float32, ``lowrank --nonnegative``, 48 GB by default on a 24 GiB
machine) is generated once and kept under ``--data``, where the ``nmf``
benchmark keeps its stores (:func:`benchmarks.nmf.nonnegative_store`). Every row starts with
the store's files evicted from the page cache (``posix_fadvise``, per file);
the baseline reads the chunk files with plain ``read()`` in ``--threads``
threads, no decoding: the cold raw read. Then a read pass, a randomized SVD
(k = 20, q = 1), the single-pass sketch, and 3 iterations each of NMF MU and
HALS. The summary gives, per row, seconds per pass over X (time / passes)
against the cold raw read, the peak RSS of every worker and of the client,
and the bytes the workers spilled to disk.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import dmf
from benchmarks.codec import _raw_read
from benchmarks.harness import FLOAT32, Case, Data, Env, GiB, Result, Suite, opened_store
from benchmarks.nmf import nonnegative_store
from benchmarks.summary import ran, table_head, table_row, verdict

NAME = "big"
HELP = ("past RAM: a store larger than memory read cold by 2 workers x 1 GiB: read, "
        "randomized SVD, sketch, NMF MU and HALS against the cold raw read")
CLUSTER = {"workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB"}

#: Targets of issue 25 line 4
PASS_TARGET = 1.2        # seconds per pass / cold raw read
WORKER_RSS_TARGET = GiB  # peak RSS of each worker


#: The rows ``--only`` chooses from, in the order they run.
ROWS = ("read", "randomized", "sketch", "mu", "hals")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", default="48GB", help="bytes of the float32 store (default 48GB)")
    p.add_argument("--cols", type=int, default=5000, help="its columns (default 5000)")
    p.add_argument("--k", type=int, default=20, help="components (default 20)")
    p.add_argument("--iters", type=int, default=3, help="NMF iterations (default 3)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--only", default=",".join(ROWS),
                   help=f"comma-separated rows to run besides the raw read, of {','.join(ROWS)} "
                        "(default all)")


def _spilled_bytes(dask_worker) -> float:
    """Bytes this worker has written to its spill directory since it started."""
    return float(sum(v for key, v in dask_worker.digests_total.items()
                     if "disk-write" in key and key[-1] == "bytes"))


def _with_spill(env: Env, work: Callable[[], object]) -> Callable[[], dict[str, float]]:
    """``work`` returning the bytes the workers spilled while it ran."""
    def run() -> dict[str, float]:
        before = sum(env.client.run(_spilled_bytes).values())
        work()
        return {"spilled MiB": (sum(env.client.run(_spilled_bytes).values()) - before) / 2**20}

    return run


def _summary(raw: str) -> Callable[[list[Result]], list[str]]:
    def summary(results: list[Result]) -> list[str]:
        by = {r.case.key: r for r in results}
        base = by.get(raw)
        lines = ["Targets (issue 25, line 4): each pass <= "
                 f"{PASS_TARGET} x the cold raw read; peak worker RSS <= 1 GiB; no spilling",
                 "", *table_head("row", "passes", "s / pass", "x cold raw read",
                                 "peak worker RSS MiB", "peak client RSS MiB", "spilled MiB",
                                 "verdict")]
        for r in results:
            if r.case.key == raw or not ran(r, base):
                continue
            memory = r.memory()
            workers = r.peak_rss()
            client = memory.get("client", (0, 0))[0]
            per_pass = r.median / max(r.passes, 1e-9)
            ratio = per_pass / base.median
            spilled = r.extra("spilled MiB") or 0.0
            ok = ratio <= PASS_TARGET and workers <= WORKER_RSS_TARGET and spilled == 0
            lines.append(table_row(r.case.name, f"{r.passes:.2f}", f"{per_pass:.3g}",
                                   f"{ratio:.2f}", f"{workers / 2**20:.0f}",
                                   f"{client / 2**20:.0f}", f"{spilled:.0f}", verdict(ok)))
        return lines

    return summary


def build(args: argparse.Namespace, env: Env) -> Suite:
    store = nonnegative_store(env.data_dir, args.size, args.cols, args.k, args.seed)
    url, z, m, n = opened_store(store)
    k, it, seed = args.k, args.iters, args.seed
    data = Data("X", (store,), logical_bytes=m * n * FLOAT32)
    files = [f for f in data.files() if f.parent != store]  # chunk files, not metadata
    nmf = {"init": "random", "max_iter": it, "tol": 0, "seed": seed, "cache": False,
           "progress": False}
    work = {
        "read": ("read pass: X.sum()", lambda: dmf.open_matrix(url).sum().compute()),
        "randomized": (f"randomized SVD, k = {k}, q = 1", lambda: dmf.svd(
            url, k, method="randomized", n_iter=1, seed=seed, progress=False, cache=False)),
        "sketch": (f"sketch SVD, k = {k}", lambda: dmf.svd(url, k, method="sketch", seed=seed,
                                                           progress=False, cache=False)),
        "mu": (f"NMF mu, {it} iterations", lambda: dmf.nmf(url, k, solver="mu", **nmf)),
        "hals": (f"NMF hals, {it} iterations", lambda: dmf.nmf(url, k, solver="hals", **nmf)),
    }
    chosen = [row.strip() for row in args.only.split(",") if row.strip()]
    unknown = sorted(set(chosen) - set(work))
    if unknown or not chosen:
        raise SystemExit(f"big: unknown rows {unknown or args.only!r}; choose from "
                         f"{','.join(ROWS)}")
    work = dict(work[row] for row in chosen)
    raw = Case("cold raw read of the chunk files (no decoding)", _raw_read(files, env.threads),
               data, where="client", cache="cold")
    cases = [raw] + [Case(name, _with_spill(env, call), data, where="cluster", cache="cold",
                          measure=lambda spill: spill) for name, call in work.items()]
    notes = [
        f"Data: `lowrank --nonnegative` {m} x {n} float32 ({m * n * FLOAT32 / 1e9:.1f} GB), "
        f"chunks {z.chunks[0]} x {z.chunks[1]}; cluster {args.workers} workers x "
        f"{args.threads_per_worker} thread, {args.memory_limit} each. Every row starts cold "
        f"(each file evicted). s / pass = median / passes; the raw read is the I/O floor "
        f"(its GB/s is the disk's, in the same run). NMF rows include the sign check and "
        "the objective pass; the SVD rows every pass their method makes.",
    ]
    return Suite(title=f"Past RAM: a {m * n * FLOAT32 / 1e9:.0f} GB float32 store, cold",
                 cases=cases, baseline=raw.key, notes=notes, summary=_summary(raw.key))

