"""The input and the result check shared by the tests that interrupt an
``svd --method power`` run and resume it (test_kill_resume, test_signals).

Apart from :mod:`_procs`, which Dask workers import and so keeps its own
imports light."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

import dmf


def write_slow_matrix(url: Path) -> Path:
    """A 3000 x 60 matrix whose singular values halve one to the next: a gap
    of 2 takes ~25 power iterations per component, enough for every fail
    point the tests stop at (the latest is iteration 8)."""
    rng = np.random.default_rng(0)
    m, n = 3000, 60
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (U * (10 * 0.5 ** np.arange(n))) @ V.T
    dmf.save_matrix(A, url, chunks=500)
    return url


def result_bytes(out) -> dict[str, bytes]:
    """The bytes of a complete svd result's U, S and Vt."""
    group = zarr.open_group(str(out), mode="r")
    assert group.attrs["dmf"]["status"] == "complete"
    return {name: np.asarray(group[name][...]).tobytes() for name in ("U", "S", "Vt")}
