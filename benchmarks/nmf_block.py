"""One NMF block step against one block read, side by side in one process.

``python -m benchmarks.nmf_block [--rows 3355] [--cols 5000] [--k 20]
[--dtype float32] [--repeat 7]``

Times, on one row block of X (64 MiB of float32 by default, the store's
default chunk), a read of that block from a Zarr store with dmf's default
codec (raw bytes + CRC-32C, page-cache warm) followed by ``np.sum``, both as
dmf reads it (mapped, ``dmf.store.dense_read``: the ratios' base) and through
zarr's decoding, a plain copy + ``np.sum``, and the per-block task of each NMF solver (mu Frobenius,
mu KL, hals), each the median of ``--repeat`` interleaved rounds. The task
of an iteration is read + step, so (read + step) / read estimates the
seconds per iteration over a read pass of ``python -m benchmarks nmf``
without a cluster. One BLAS thread, as on a Dask worker, and glibc's
MALLOC_TRIM_THRESHOLD_ set as Dask's nannies set it (the process re-executes
itself to make glibc see it): the allocator behaviour a worker has.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": "65536"}
#: The read the ratios are taken against: dmf's own (see dmf.store.dense_read).
READ = "read (dmf, mapped, sum)"


def _reexec_with_worker_malloc() -> None:
    if all(os.environ.get(k) == v for k, v in WORKER_MALLOC.items()):
        return
    os.environ.update(WORKER_MALLOC)
    os.execv(sys.executable, [sys.executable, "-m", "benchmarks.nmf_block", *sys.argv[1:]])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.nmf_block", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=3355, help="block rows (default 3355)")
    p.add_argument("--cols", type=int, default=5000, help="columns (default 5000)")
    p.add_argument("--k", type=int, default=20, help="components (default 20)")
    p.add_argument("--dtype", default="float32", help="float32 or float64 (default float32)")
    p.add_argument("--repeat", type=int, default=7, help="rounds; medians shown (default 7)")
    p.add_argument("--only", default="", help="comma-separated step names to time")
    args = p.parse_args(argv)

    import numpy as np
    import zarr
    from threadpoolctl import threadpool_limits

    from dmf.nmf.beta import exponent
    from dmf.nmf.hals import RowSweeps, _row_hals
    from dmf.nmf.mu import RowUpdate, _row_step
    from dmf.store.codecs import compressors
    from dmf.store.dense_read import RawChunks

    rng = np.random.default_rng(0)
    m, n, k = args.rows, args.cols, args.k
    X = (rng.random((m, 20), dtype=np.float32) @ rng.random((20, n), dtype=np.float32))
    X = X.astype(args.dtype)
    avg = float(np.sqrt(X.mean() / k))
    W = avg * rng.random((m, k))
    H = avg * rng.random((k, n))
    HHt, H_sum = H @ H.T, H.sum(axis=1)

    folder = tempfile.mkdtemp(prefix="nmf_block_")
    z = zarr.create_array(store=folder, shape=X.shape, chunks=X.shape, dtype=X.dtype,
                          compressors=compressors(None))
    z[:] = X

    mapped = RawChunks.of(z)
    whole = (slice(0, m), slice(0, n))

    def read_store():
        return float(z[:].sum())

    def read_mapped():
        return float(mapped.read((0, 0), whole).sum())

    def copy_sum():
        return float(np.array(X, copy=True).sum())

    steps = {
        "read (dmf, mapped, sum)": read_mapped,
        "read (zarr+crc, sum)": read_store,
        "copy + sum": copy_sum,
        # a later iteration's task (the first one also adds up X's constant terms)
        "mu frobenius": lambda: _row_step(X, W, H, HHt, None,
                                          RowUpdate(2.0, 1.0, first=False)),
        "mu kl": lambda: _row_step(X, W, H, None, H_sum,
                                   RowUpdate(1.0, exponent(1.0), first=False, masked=False)),
        "hals": lambda: _row_hals(X, W, H, HHt, RowSweeps(with_sq=False)),
    }
    if args.only:
        keep = {s.strip() for s in args.only.split(",")} | {READ}
        steps = {name: f for name, f in steps.items() if name in keep}
    times: dict[str, list[float]] = {name: [] for name in steps}
    try:
        with threadpool_limits(limits=1):
            for f in steps.values():  # warm-up: page cache, BLAS buffers
                f()
            for _ in range(args.repeat):
                for name, f in steps.items():
                    t0 = time.perf_counter()
                    f()
                    times[name].append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    read = statistics.median(times[READ])
    read_min = min(times[READ])
    print(f"block {m} x {n} {args.dtype} ({X.nbytes / 2**20:.0f} MiB), k = {k}, "
          f"median of {args.repeat}, MALLOC_TRIM_THRESHOLD_="
          f"{os.environ.get('MALLOC_TRIM_THRESHOLD_')}")
    print()
    print("| step | median s | min s | step / read | (read + step) / read | same, of minima |")
    print("|---|---|---|---|---|---|")
    for name, ts in times.items():
        t, low = statistics.median(ts), min(ts)
        base = name.startswith(("read", "copy"))
        total = "" if base else f"{(read + t) / read:.2f}"
        total_min = "" if base else f"{(read_min + low) / read_min:.2f}"
        print(f"| {name} | {t:.4f} | {low:.4f} | {t / read:.2f} | {total} | {total_min} |")


if __name__ == "__main__":
    _reexec_with_worker_malloc()
    main()
