"""Peak memory of a CF worker on many users with few ratings (issue 24, line 3).

``python -m benchmarks.cf_memory [--users 300000] [--items 20000] [--k 32]``

Generates ``users`` users with 1 or 2 ratings each (items drawn with a
popularity skew, integer ratings 1-5), stores them as a ratings store under
``--data``, then fits explicit ALS, implicit ALS and SGD (2 iterations /
epochs each) on a fresh local cluster of ONE worker process with one thread
per model, and prints that worker's peak resident memory: ``VmHWM`` of
``/proc/self/status`` read inside the worker after the fit (the kernel's
high-water mark of the process since it started, imports included, so
nothing between two samples is missed). The worker starts with dmf, numba
and the kernels loaded (a tiny fit of the same model first), and that RSS
is printed beside the peak.

Not a test: it takes a minute or two and its figure depends on the
allocator. The rule it checks is :func:`dmf.cf.passes.bounded_rows`: a
task's rows are at most ``TASK_BYTES`` of factor slices and k x k sums.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.sparse
from distributed import Client, LocalCluster

import dmf

MiB = 2**20


def _high_water() -> dict[str, float]:
    """This process's VmHWM and VmRSS, MiB (runs inside the worker)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM", "VmRSS")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def generated(users: int, items: int, seed: int) -> scipy.sparse.csr_matrix:
    """``users`` x ``items``, 1 or 2 ratings per user, items by a Zipf-like
    popularity, ratings 1-5 from user and item biases."""
    rng = np.random.default_rng(seed)
    per_user = rng.integers(1, 3, size=users)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    rows = np.repeat(np.arange(users), per_user)
    cols = rng.choice(items, size=rows.size, p=popularity)
    quality = rng.normal(0, 0.6, items)
    mood = rng.normal(0, 0.4, users)
    values = np.clip(np.rint(3.6 + quality[cols] + mood[rows] + rng.normal(0, 0.8, rows.size)),
                     1, 5)
    R = scipy.sparse.coo_matrix((values, (rows, cols)), shape=(users, items)).tocsr()
    R.sum_duplicates()  # a user drawing one item twice: one rating
    R.data = np.clip(R.data, 1, 5)
    return R


FITS = {
    "explicit ALS": lambda url, k: dmf.cf.als(url, k, max_iter=2, tol=0, seed=0),
    "implicit ALS": lambda url, k: dmf.cf.als(url, k, max_iter=2, tol=0, seed=0,
                                              implicit=True),
    "SGD": lambda url, k: dmf.cf.sgd(url, k, n_epochs=2, seed=0),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=300_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=Path("bench-data"))
    p.add_argument("--models", default=",".join(FITS),
                   help=f"comma-separated, of: {', '.join(FITS)}")
    args = p.parse_args(argv)
    store = args.data / "cf_memory" / f"{args.users}x{args.items}-seed{args.seed}.zarr"
    if not store.exists():
        store.parent.mkdir(parents=True, exist_ok=True)
        dmf.cf.save_ratings(generated(args.users, args.items, args.seed), str(store))
    nnz = dmf.cf.open_ratings(str(store)).by_user.map_blocks(
        lambda b: np.array([b.nnz]), dtype=np.int64, chunks=(1,), drop_axis=1).sum().compute(
        scheduler="threads")
    print(f"{args.users:,} users x {args.items:,} items, {int(nnz):,} ratings, k={args.k}; "
          "one worker process, one thread (VmHWM of the worker)")
    print("| model | worker start MiB | worker peak MiB | fit s |")
    print("|---|---|---|---|")
    for name in args.models.split(","):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                          dashboard_address=None, memory_limit="4GiB") as cluster, \
                Client(cluster) as client:
            # a tiny fit first: numba and the compiled kernels loaded (a fixed
            # cost, about 60 MiB), so "start" is the worker ready to work
            FITS[name](scipy.sparse.random(50, 20, density=0.3, format="csr", random_state=0)
                       * 5, min(args.k, 10))
            start = next(iter(client.run(_high_water).values()))["VmRSS"]
            t0 = time.perf_counter()
            FITS[name](str(store), args.k)
            seconds = time.perf_counter() - t0
            peak = next(iter(client.run(_high_water).values()))["VmHWM"]
        print(f"| {name} | {start:.0f} | {peak:.0f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
