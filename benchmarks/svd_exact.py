"""Exact SVD of a tall-and-skinny store: dmf tsqr and gram against dask.

One float64 low-rank + noise store (``dmf.generate.lowrank``, default
500000 x 500, 2 GB, row blocks of dmf's default size, a single column of
blocks as ``dask.array.linalg.svd`` needs) on a local cluster (2 workers x 1
thread by default), every method streaming it from the store:

- ``read pass``: ``open_matrix(url).sum()``, one pass: the limit;
- ``dmf tsqr`` / ``dmf gram``: ``dmf.svd(url, method=..., compute_u=False,
  cache=False)``: S and Vt, one pass;
- the same with U: ``dmf.svd(url, method=..., cache=False)`` then
  ``r.U.compute()`` (one more pass);
- ``dask svd``: ``dask.array.linalg.svd(X)`` (tsqr with compute_svd),
  ``dask.compute(s, v)`` and ``dask.compute(u, s, v)``.

Accuracy: every method's singular values against a reference computed once
in the client (a QR of the stacked R's of the row blocks, block by block,
in numpy float64: nothing squared), kept next to the store; and
max |U^T U - I| where U is computed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr

import dmf
from benchmarks.codec import parse_size
from benchmarks.harness import Case, Data, Env, Result, Suite, add_lowrank_arguments, opened_store
from benchmarks.summary import by_name, ran, table_head, table_row
from benchmarks.svd import _cached_reference, lowrank_store
from dmf.store.dense_read import default_chunks

NAME = "svd-exact"
HELP = ("exact SVD of a tall-skinny float64 store: dmf tsqr and gram against "
        "dask.array.linalg.svd")

CLUSTER = {"workers": 2, "threads_per_worker": 1}
FLOAT64 = 8


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_lowrank_arguments(p, dtype="float64", size="2GB", cols=500, rank=50, noise=0.01)


def qr_reference(path: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """All singular values and right vectors of the stored X from R = qr(X)
    built block by block in this process (R <- qr([R; X_b])), then svd(R)."""
    z = zarr.open_array(store=str(path), mode="r")
    m, n = z.shape
    R = np.zeros((0, n))
    for r0 in range(0, m, rows):
        R = np.linalg.qr(np.vstack([R, np.asarray(z[r0:r0 + rows], dtype=np.float64)]),
                         mode="r")
    _, s, Vt = np.linalg.svd(R)
    return s, Vt.T


def prepare_store(args: argparse.Namespace, env: Env) -> tuple[Path, np.ndarray, int]:
    m = max(1, round(parse_size(args.size) / (args.cols * FLOAT64)))
    shape = (m, args.cols)
    rows = default_chunks(shape, "float64")[0]
    folder = env.data_dir / NAME / (f"{m}x{args.cols}-rank{args.rank}-noise{args.noise:g}"
                                    f"-seed{args.seed}-rows{rows}")
    store = lowrank_store(folder, shape, rows, args, "float64")
    s, _V = _cached_reference(folder, lambda: qr_reference(store, rows))
    return store, s, rows


def _measure(ref_s: np.ndarray) -> Callable[[tuple], dict[str, float]]:
    """s err: max_i |s_i - s*_i| / s*_1 (all n values, so absolute in units
    of s_1: the small ones are noise); U orth: max |U^T U - I| (U computed)."""
    def measure(value: tuple) -> dict[str, float]:
        S, U = value
        S = np.asarray(S, dtype=np.float64)
        out = {"s err": float(np.abs(S - ref_s[:len(S)]).max() / ref_s[0])}
        if U is not None:
            U = np.asarray(U, dtype=np.float64)
            out["U orth"] = float(np.abs(U.T @ U - np.eye(U.shape[1])).max())
        return out

    return measure


def _dmf(url: str, method: str, with_u: bool) -> Callable[[], tuple]:
    def run() -> tuple:
        r = dmf.svd(url, method=method, compute_u=with_u, cache=False, progress=False)
        return r.S, (r.U.compute() if with_u else None)

    return run


def _dask(url: str, with_u: bool) -> Callable[[], tuple]:
    def run() -> tuple:
        u, s, v = da.linalg.svd(dmf.open_matrix(url))
        if with_u:
            u, s, _v = dask.compute(u, s, v)
            return s, u
        s, _v = dask.compute(s, v)
        return s, None

    return run


def _summary(names: dict[str, str]) -> Callable[[list[Result]], list[str]]:
    def summary(results: list[Result]) -> list[str]:
        by = by_name(results)
        lines = ["Ratios (same run):", "", *table_head("dmf", "/ dask", "passes")]
        for ours, theirs in (("tsqr", "dask"), ("gram", "dask"), ("tsqr_u", "dask_u"),
                             ("gram_u", "dask_u")):
            a, b = by.get(names[ours]), by.get(names[theirs])
            if ran(a, b):
                lines.append(table_row(names[ours], f"{a.median / b.median:.2f} x "
                                       f"({a.median:.3g} s / {b.median:.3g} s)",
                                       f"{a.passes:.2f} vs {b.passes:.2f}"))
        return lines

    return summary


def build(args: argparse.Namespace, env: Env) -> Suite:
    store, ref_s, _rows = prepare_store(args, env)
    url, z, m, n = opened_store(store)
    data = Data("X", (store,), logical_bytes=None)
    measure = _measure(ref_s)
    names = {
        "read": "read pass: X.sum()",
        "tsqr": "dmf tsqr, S and Vt",
        "gram": "dmf gram, S and Vt",
        "dask": "dask linalg.svd, s and v",
        "tsqr_u": "dmf tsqr, U S Vt",
        "gram_u": "dmf gram, U S Vt",
        "dask_u": "dask linalg.svd, u s v",
    }
    cases = [
        Case(names["read"], lambda: dmf.open_matrix(url).sum().compute(), data,
             where="cluster"),
        Case(names["tsqr"], _dmf(url, "tsqr", False), data, where="cluster", measure=measure),
        Case(names["gram"], _dmf(url, "gram", False), data, where="cluster", measure=measure),
        Case(names["dask"], _dask(url, False), data, where="cluster", measure=measure),
        Case(names["tsqr_u"], _dmf(url, "tsqr", True), data, where="cluster",
             measure=measure),
        Case(names["gram_u"], _dmf(url, "gram", True), data, where="cluster",
             measure=measure),
        Case(names["dask_u"], _dask(url, True), data, where="cluster", measure=measure),
    ]
    notes = [
        f"Data: `lowrank` {m} x {n} float64 ({m * n * FLOAT64 / 1e9:.2f} GB), rank "
        f"{args.rank}, noise {args.noise:g}, seed {args.seed}; chunks {z.chunks[0]} x "
        f"{z.chunks[1]} ({z.nchunks} row blocks); cluster {args.workers} workers x "
        f"{args.threads_per_worker} thread; warm page cache. s_1 = {ref_s[0]:.6g}, "
        f"s_{args.rank} = {ref_s[args.rank - 1]:.6g}, s_{n} = {ref_s[-1]:.6g}.",
        "",
        "dmf: `dmf.svd(url, method='tsqr'|'gram', compute_u=False, cache=False)` (all "
        f"{n} triplets, k=None); with U: `compute_u=True`, then `r.U.compute()`. dask: "
        "`u, s, v = da.linalg.svd(dmf.open_matrix(url))`, then `dask.compute(s, v)` or "
        "`dask.compute(u, s, v)`. Every row ends with its results in client memory.",
        "",
        "s err = max_i |s_i - s*_i| / s*_1 over all values, s* from a block-by-block QR "
        "in numpy float64 (R <- qr([R; X_b]), then svd(R)); U orth = max |U^T U - I|.",
    ]
    return Suite(title=f"Exact SVD: all {n} triplets of a {m} x {n} float64 store",
                 cases=cases, baseline=f"{names['dask']} (warm)", notes=notes,
                 summary=_summary(names))
