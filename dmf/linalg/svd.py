"""``dmf.svd``: truncated SVD of a matrix larger than memory."""

from __future__ import annotations

import os
from typing import Any

from dmf.engine.cache import cache_input
from dmf.engine.driver import run
from dmf.errors import InputError
from dmf.linalg.power import power_solver
from dmf.linalg.products import row_blocks
from dmf.results import SVDResult
from dmf.store.api import as_matrix

METHODS = ("power",)


def check_k(k, shape: tuple[int, int], name: str = "k") -> int:
    """``k`` as an int in 1..min(m, n), or an InputError that says so."""
    limit = min(shape)
    if isinstance(k, bool) or not hasattr(k, "__index__"):
        raise InputError(f"{name} must be an integer, got {k!r}")
    k = k.__index__()
    if not 1 <= k <= limit:
        raise InputError(f"{name} must be between 1 and min(m, n) = {limit} for a "
                         f"{shape[0]} x {shape[1]} matrix, got {k}")
    return k


def svd(
    X,
    k: int,
    *,
    method: str = "power",
    seed: int | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    out: str | os.PathLike | None = None,
    storage_options: dict[str, Any] | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = None,
    resume: bool = True,
    progress: bool | None = None,
    cache: bool | str = "auto",
) -> SVDResult:
    """Top-``k`` singular triplets of X, out of core.

    Parameters
    ----------
    X : URL, zarr.Array, dask or numpy array, scipy.sparse matrix
        m x n input; streamed in row blocks.
    k : int
        Number of singular triplets, 1 <= k <= min(m, n).
    method : {"power"}
        ``"power"``: power iteration with deflation (one pass over X per
        step; see :mod:`dmf.linalg.power`).
    seed : int, optional
        Seeds the start vectors; same seed, input and chunks give bitwise
        the same result on any number of workers.
    tol : float, optional
        Power iteration: stop a component when its eigen-residual
        ``||X^T X v - s^2 v|| / s^2`` is below ``tol`` (default 1e-7).
    max_iter : int, optional
        Power iteration: most steps per component (default 1000).
    out : str or path, optional
        Store the result there (a Zarr group with U, S, Vt), checkpoint while
        iterating, and resume from a checkpoint of the same job.
    checkpoint_every : int, optional
        Iterations between checkpoints (default 10 when ``out`` is given).
    checkpoint_seconds : float, optional
        Also checkpoint when this many seconds passed since the last one
        (default 300 when ``out`` is given).
    resume : bool
        False: start over even if ``out`` holds checkpoints of this job.
    progress : bool, optional
        Progress on stderr (default: when stderr is a terminal).
    cache : {"auto", True, False}
        Keep X in cluster memory between passes when it fits (``"auto"``).

    Returns
    -------
    SVDResult
        ``U`` (lazy, m x k), ``S`` (k,), ``Vt`` (k x n) in X's dtype; signs
        fixed so each row of Vt has its largest-magnitude entry positive.

    Examples
    --------
    The course's example: A = [[3, 2], [2, 3]] has singular values 5 and 1,
    with vectors (1, 1)/sqrt(2) and (1, -1)/sqrt(2).

    >>> import numpy as np, dmf
    >>> r = dmf.svd(np.array([[3.0, 2.0], [2.0, 3.0]]), 2, method="power", seed=0)
    >>> r.S.round(10).tolist()
    [5.0, 1.0]
    >>> (r.Vt * np.sqrt(2)).round(6).tolist()
    [[1.0, 1.0], [1.0, -1.0]]
    """
    if method not in METHODS:
        raise InputError(f"unknown SVD method {method!r}; available: {', '.join(METHODS)}")
    X = as_matrix(X, storage_options=storage_options)
    k = check_k(k, X.shape)
    X = cache_input(row_blocks(X), cache)
    tol = 1e-7 if tol is None else float(tol)
    max_iter = 1000 if max_iter is None else int(max_iter)
    if tol < 0 or max_iter <= 0:
        raise InputError(f"tol must be >= 0 and max_iter > 0, got {tol}, {max_iter}")
    solver = power_solver(k, tol=tol, max_iter=max_iter)
    result = run(solver, X, seed=seed, max_iter=k * max_iter, tol=tol, out=out,
                 storage_options=storage_options, checkpoint_every=checkpoint_every,
                 checkpoint_seconds=checkpoint_seconds, resume=resume, progress=progress)
    return SVDResult.from_run(result, method)
