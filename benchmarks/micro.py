"""Small measurements behind code choices, each a subcommand:

``python -m benchmarks.micro layouts``
    X_s H^T as ``X_s @ H.T`` against ``(H X_s^T)^T`` (k = 20, NMF's
    slice) and X_s V as ``X_s @ V`` against ``(V^T X_s^T)`` (p = 30, the
    Gram slice), float32 and float64, one BLAS thread; GFLOP/s and whether
    the bits agree. Run with and without ``OPENBLAS_CORETYPE`` to see both
    kernel sets.
``python -m benchmarks.micro sgd-dot [--k 10 100]``
    SGD's kernel on 8M random ratings (100000 x 20000) with the dot product
    in four running sums against the vector-lane sum it uses now.
``python -m benchmarks.micro sgd-fit [--k 10 100]``
    A whole in-process ``dmf.cf.SGD`` fit (3 epochs, 2M random ratings,
    median of 3 after a warm-up fit), to compare two checkouts: run it with
    ``PYTHONPATH`` set to each in turn, alternating.
``python -m benchmarks.micro idle [--seconds 30]``
    CPU used by an idle 2-worker LocalCluster (client and scheduler, and
    the workers); set ``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False``
    and ``DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=1s`` to compare.
``python -m benchmarks.micro mu-cpu [--data bench-data]``
    CPU seconds per NMF MU iteration of the client process (which holds
    the scheduler) and of each of 2 workers, on the 250000 x 1000 store of
    ``nmf --parts A`` (a 22- minus a 2-iteration fit, twice).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numba
import numpy as np
import psutil
from threadpoolctl import threadpool_limits

import dmf
from dmf.cf import kernels
from dmf.linalg.products import GRAM_SLICE_BYTES, SLICE_BYTES


def _rate(product, flops: float, repeat: int = 30) -> float:
    product()
    start = time.perf_counter()
    for _ in range(repeat):
        product()
    return flops * repeat / (time.perf_counter() - start) / 1e9


def layouts(_args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    n = 1000
    with threadpool_limits(1):
        import threadpoolctl

        kernel = {i.get("architecture") for i in threadpoolctl.threadpool_info()}
        print(f"BLAS kernels: {', '.join(sorted(map(str, kernel)))}")
        print("| product | dtype | old GFLOP/s | new GFLOP/s | same bits |")
        print("|---|---|---|---|---|")
        for dtype in (np.float32, np.float64):
            for name, width, slice_bytes in (("X_s H^T, k=20", 20, SLICE_BYTES),
                                             ("X_s V, p=30", 30, GRAM_SLICE_BYTES)):
                rows = slice_bytes // (n * np.dtype(dtype).itemsize)
                xs = rng.random((rows, n)).astype(dtype)
                F = rng.random((width, n)).astype(dtype)
                old = lambda xs=xs, F=F: np.ascontiguousarray(np.matmul(F, xs.T).T)  # noqa: E731
                new = lambda xs=xs, F=F: xs @ F.T  # noqa: E731
                flops = 2.0 * rows * n * width
                same = old().tobytes() == np.ascontiguousarray(new()).tobytes()
                print(f"| {name} | {np.dtype(dtype).name} | {_rate(old, flops):.0f} | "
                      f"{_rate(new, flops):.0f} | {'yes' if same else 'no'} |")


@numba.njit(cache=False, nogil=True, fastmath={"contract"}, error_model="numpy")
def _sgd_four_sums(indptr, indices, data, U, V, mu, lr, reg, seed, index):
    """sgd_block's sequential rule with the dot product in four running sums."""
    rows, k = U.shape[0], U.shape[1] - 1
    sq_err = 0.0
    order = kernels.shuffled(rows, seed, index)
    for t in range(rows):
        u = order[t]
        for j in range(indptr[u], indptr[u + 1]):
            i = indices[j]
            e = data[j] - mu - U[u, k] - V[i, k] - kernels._dot_rr(U, u, V, i, k)
            sq_err += e * e
            U[u, k] += lr * (e - reg * U[u, k])
            V[i, k] += lr * (e - reg * V[i, k])
            for f in range(k):
                pf, qf = U[u, f], V[i, f]
                U[u, f] = pf + lr * (e * qf - reg * pf)
                V[i, f] = qf + lr * (e * pf - reg * qf)
    return sq_err


def sgd_dot(args: argparse.Namespace) -> None:
    import scipy.sparse

    m, n, nnz = 100_000, 20_000, 8_000_000
    R = scipy.sparse.random(m, n, density=nnz / (m * n), random_state=0, format="csr")
    R.data = np.random.default_rng(0).normal(3, 1, R.nnz)
    arrays = kernels.csr_arrays(R)
    runs = {"four sums": lambda *a: _sgd_four_sums(*a),
            "vector lanes": lambda *a: kernels.sgd_block(*a, 1)}
    print("| k | four sums s | vector lanes s |")
    print("|---|---|---|")
    for k in args.k:
        times: dict[str, list[float]] = {name: [] for name in runs}
        for rep in range(4):  # interleaved; the first round compiles and is dropped
            for name, run in runs.items():
                factors = np.random.default_rng(1)
                U = factors.standard_normal((m, k + 1)) * 0.1
                V = factors.standard_normal((n, k + 1)) * 0.1
                start = time.perf_counter()
                run(*arrays, U, V, 3.0, 0.005, 0.02, np.uint64(1), np.uint64(0))
                if rep:
                    times[name].append(time.perf_counter() - start)
        print(f"| {k} | " + " | ".join(f"{np.median(t):.3f}" for t in times.values()) + " |")


def sgd_fit(args: argparse.Namespace) -> None:
    import scipy.sparse

    rng = np.random.default_rng(0)
    m, n, nnz = 100_000, 20_000, 2_000_000
    ratings = np.clip(np.round(3 + rng.normal(size=nnz)), 1, 5)
    R = scipy.sparse.coo_matrix((ratings, (rng.integers(0, m, nnz), rng.integers(0, n, nnz))),
                                shape=(m, n)).tocsr()
    R.sum_duplicates()
    for k in args.k:
        dmf.cf.SGD(k=k, n_epochs=1, seed=0).fit(R)  # compiled kernels loaded, caches warm
        times = []
        for _ in range(3):
            start = time.perf_counter()
            dmf.cf.SGD(k=k, n_epochs=3, seed=0).fit(R)
            times.append(time.perf_counter() - start)
        print(f"SGD fit k={k}: {np.median(times):.3f} s (" + ", ".join(
            f"{t:.3f}" for t in times) + f"), dmf from {Path(dmf.__file__).parent}")


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def idle(args: argparse.Namespace) -> None:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      memory_limit="1GiB") as cluster, Client(cluster):
        time.sleep(3)
        me = psutil.Process()
        workers = me.children(recursive=True)
        before = _cpu(me), sum(map(_cpu, workers))
        time.sleep(args.seconds)
        after = _cpu(me), sum(map(_cpu, workers))
    print(f"idle {args.seconds:g} s: client and scheduler {after[0] - before[0]:.2f} s of "
          f"CPU, workers {after[1] - before[1]:.2f} s")


def mu_cpu(args: argparse.Namespace) -> None:
    from distributed import Client, LocalCluster

    url = str(args.data / "nmf" / "250000x1000-rank20-seed0" / "X.zarr")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      memory_limit="1GiB") as cluster, Client(cluster):
        me = psutil.Process()
        workers = [p for p in me.children(recursive=True)
                   if "spawn_main" in " ".join(p.cmdline())]
        spent = {}
        for iters in (2, 22, 2, 22):
            before = [_cpu(me), *map(_cpu, workers)]
            dmf.nmf(url, 20, solver="mu", init="random", tol=0, max_iter=iters, cache=False,
                    progress=False, seed=0)
            spent.setdefault(iters, []).append(
                [b - a for a, b in zip(before, [_cpu(me), *map(_cpu, workers)], strict=True)])
    per_iter = (np.median(spent[22], axis=0) - np.median(spent[2], axis=0)) / 20
    print(f"CPU s per MU iteration: client {per_iter[0]:.3f}, workers "
          + ", ".join(f"{v:.3f}" for v in per_iter[1:]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.micro",
                                description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("layouts").set_defaults(run=layouts)
    sgd = sub.add_parser("sgd-dot")
    sgd.add_argument("--k", type=int, nargs="+", default=[10, 100])
    sgd.set_defaults(run=sgd_dot)
    fit = sub.add_parser("sgd-fit")
    fit.add_argument("--k", type=int, nargs="+", default=[10, 100])
    fit.set_defaults(run=sgd_fit)
    still = sub.add_parser("idle")
    still.add_argument("--seconds", type=float, default=30.0)
    still.set_defaults(run=idle)
    mu = sub.add_parser("mu-cpu")
    mu.add_argument("--data", type=Path, default=Path("bench-data"))
    mu.set_defaults(run=mu_cpu)
    args = p.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
