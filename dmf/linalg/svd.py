"""``dmf.svd``: truncated SVD of a matrix larger than memory."""

from __future__ import annotations

import os
from typing import Any

import dask.array as da

from dmf.engine.cache import cache_input, numpy_input
from dmf.engine.driver import run
from dmf.errors import InputError
from dmf.linalg.eigh import check_square, eigh_solver
from dmf.linalg.power import power_solver
from dmf.linalg.randomized import auto_n_iter, check_normalizer, randomized_solver
from dmf.linalg.sketch import sketch_solver
from dmf.linalg.tsqr import TSQR_MAX, tsqr_solver
from dmf.results import SVDResult
from dmf.store.api import as_matrix

METHODS = ("randomized", "sketch", "eigh", "power", "gram", "tsqr", "auto")

#: ``gram`` holds n x n matrices (X^T X and a basis of R^n): refused above this.
GRAM_MAX = 8192
#: ``auto`` takes the exact ``gram`` up to this small side, ``randomized`` above.
AUTO_GRAM_MAX = 1000


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


def works_on_transpose(X: da.Array) -> bool:
    """Whether to factor X^T (a lazy view, never copied) instead of X.

    A pass handles one block row at a time, so the side with fewer blocks
    per row is cheaper; between equals, the side whose small dimension is
    smaller (the solver's state is n x (k + oversamples)). Row-blocked X,
    dmf's default even when wide, is factored as it is.
    """
    rows, cols = X.numblocks
    if rows != cols:
        return rows < cols
    return X.shape[0] < X.shape[1]


def svd(
    X,
    k: int,
    *,
    method: str = "randomized",
    n_iter: int | str = "auto",
    n_oversamples: int = 10,
    normalizer: str = "auto",
    seed: int | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    assume_symmetric: bool = False,
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
        m x n input, streamed block by block. A wide X in column blocks is
        factored through its transpose (a lazy view, not a copy).
    k : int
        Number of singular triplets, 1 <= k <= min(m, n).
    method : {"randomized", "sketch", "eigh", "power", "gram", "tsqr", "auto"}
        - ``"randomized"``: range finder with ``n_oversamples`` extra
          columns and ``n_iter`` power iterations, re-orthonormalized every
          step; reads X ``n_iter + 1`` times (2 for n_iter = 0)
          (:mod:`dmf.linalg.randomized`).
        - ``"sketch"``: reads X exactly once; an a posteriori error estimate
          comes with the result (:mod:`dmf.linalg.sketch`).
        - ``"eigh"``: symmetric X: eigenvalues with their signs, top k by
          magnitude; ``S`` holds their magnitudes and
          ``result.eigenvalues`` the signed values (:mod:`dmf.linalg.eigh`).
        - ``"power"``: power iteration with deflation, one pass per step
          (:mod:`dmf.linalg.power`).
        - ``"gram"``: exact, from the eigendecomposition of the n x n
          X^T X (n the smaller side, at most 8192) summed in float64 in one
          pass; U = X V S^-1 is read from X again when computed. No
          randomness, but through a Gram matrix: s_i is accurate to about
          eps (s_1 / s_i)^2 relative, and values below
          sqrt(max(m, n) eps) s_1 are reported as 0.
        - ``"tsqr"``: exact through dask's tall-skinny QR (nothing squared:
          values accurate to about eps s_1), n at most 8192; one pass for S
          and Vt, one more for U (:mod:`dmf.linalg.tsqr`).
        - ``"auto"``: ``"gram"`` when the smaller side is at most 1000, else
          ``"randomized"``.
    n_iter : int or "auto"
        Power iterations (randomized, eigh); "auto" is scikit-learn's rule:
        7 when k < 0.1 min(m, n), else 4.
    n_oversamples : int
        Extra random directions (randomized, sketch, eigh), default 10.
    normalizer : {"auto", "QR", "LU", "none"}
        How the power iterations are re-orthonormalized ("auto": QR; "none"
        only for float64, where it still loses accuracy).
    seed : int, optional
        Same seed, input and chunks: bitwise the same result on any number
        of workers.
    tol, max_iter : float, int, optional
        Power iteration only: residual tolerance (default 1e-7) and most
        steps per component (default 1000).
    assume_symmetric : bool
        eigh: skip the symmetry check.
    out : str or path, optional
        Store the result there (a Zarr group with U, S, Vt), checkpoint while
        iterating, resume from a checkpoint of the same job, and return the
        stored result when the same job is already complete.
    checkpoint_every, checkpoint_seconds : int, float, optional
        Checkpoint cadence with ``out`` (default every 10 iterations or 300 s).
    resume : bool
        False: start over even if ``out`` holds this job's checkpoints.
    progress : bool, optional
        Progress on stderr (default: when stderr is a terminal).
    cache : {"auto", True, False}
        Keep X in cluster memory between passes when it fits (``"auto"``).

    Returns
    -------
    SVDResult
        ``U`` (lazy, m x k, orthonormal columns), ``S`` (k, descending,
        exact zeros where X has no more rank), ``Vt`` (k x n; each row's
        largest-magnitude entry is positive), in X's dtype, with
        ``explained_variance_`` and ``explained_variance_ratio_`` as in
        scikit-learn's TruncatedSVD.

    Examples
    --------
    The course's rank-2 example, asked for 4 components:

    >>> import numpy as np, dmf
    >>> A = np.array([[1, 2, 3, 4, 3, 3], [1, 2, 3, 4, 3, 3],
    ...               [3, 3, 3, 1, 4, 5], [3, 3, 3, 1, 4, 5]], dtype=float)
    >>> r = dmf.svd(A, 4, seed=0)
    >>> r.S.round(2).tolist()
    [14.74, 4.1, 0.0, 0.0]
    >>> U = r.U.compute()
    >>> bool(np.abs(U).max() <= 1 and np.allclose(U.T @ U, np.eye(4)))
    True
    >>> float(np.abs((U * r.S) @ r.Vt - A).max()) < 1e-12
    True

    Power iteration, on the course's seed example A = [[3, 2], [2, 3]]:

    >>> r = dmf.svd(np.array([[3.0, 2.0], [2.0, 3.0]]), 2, method="power", seed=0)
    >>> r.S.round(10).tolist()
    [5.0, 1.0]
    >>> (r.Vt * np.sqrt(2)).round(6).tolist()
    [[1.0, 1.0], [1.0, -1.0]]
    """
    if method not in METHODS:
        raise InputError(f"unknown SVD method {method!r}; available: {', '.join(METHODS)}")
    cache, token = numpy_input(X, cache, out)
    X = as_matrix(X, storage_options=storage_options)
    k = check_k(k, X.shape)
    if isinstance(n_oversamples, bool) or not isinstance(n_oversamples, int) or n_oversamples < 0:
        raise InputError(f"n_oversamples must be an integer >= 0, got {n_oversamples!r}")
    if n_iter == "auto":
        n_iter = auto_n_iter(k, X.shape)
    elif isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise InputError(f"n_iter must be 'auto' or an integer >= 0, got {n_iter!r}")
    X = cache_input(X, cache)
    if method == "auto":
        method = "gram" if min(X.shape) <= AUTO_GRAM_MAX else "randomized"
    if method in ("gram", "tsqr"):  # the n x n side must be the small one
        transposed = X.shape[0] < X.shape[1]
    else:
        transposed = method != "eigh" and works_on_transpose(X)
    A = X.T if transposed else X
    if method == "gram":
        if A.shape[1] > GRAM_MAX:
            raise InputError(f"method='gram' needs min(m, n) <= {GRAM_MAX} (it holds "
                             f"{A.shape[1]} x {A.shape[1]} matrices); use 'randomized'")
        solver = randomized_solver(k, n_oversamples=A.shape[1] - k, n_iter=0, normalizer="QR",
                                   shape=A.shape, transposed=transposed, name="svd-gram",
                                   keep_y=False)
        max_steps = 1
    elif method == "tsqr":
        if A.shape[1] > TSQR_MAX:
            raise InputError(f"method='tsqr' needs min(m, n) <= {TSQR_MAX} (R is "
                             f"{A.shape[1]} x {A.shape[1]} per block); use 'randomized'")
        solver = tsqr_solver(k, shape=A.shape, transposed=transposed)
        max_steps = 1
    elif method == "randomized":
        solver = randomized_solver(k, n_oversamples=n_oversamples, n_iter=n_iter,
                                   normalizer=check_normalizer(normalizer, X.dtype),
                                   shape=A.shape, transposed=transposed)
        max_steps = n_iter + 1
    elif method == "sketch":
        solver = sketch_solver(k, n_oversamples=n_oversamples, shape=A.shape,
                               transposed=transposed)
        max_steps = 1
    elif method == "eigh":
        check_square(X.shape)
        solver = eigh_solver(k, n_oversamples=n_oversamples, n_iter=n_iter,
                             assume_symmetric=assume_symmetric, shape=X.shape, dtype=X.dtype)
        max_steps = n_iter + 1
    else:
        tol = 1e-7 if tol is None else float(tol)
        max_iter = 1000 if max_iter is None else int(max_iter)
        if tol < 0 or max_iter <= 0:
            raise InputError(f"tol must be >= 0 and max_iter > 0, got {tol}, {max_iter}")
        solver = power_solver(k, tol=tol, max_iter=max_iter, transposed=transposed)
        max_steps = k * max_iter
    result = run(solver, A, seed=seed, max_iter=max_steps, tol=0.0 if tol is None else tol,
                 out=out, storage_options=storage_options, checkpoint_every=checkpoint_every,
                 checkpoint_seconds=checkpoint_seconds, resume=resume, progress=progress,
                 input_token=token)
    return SVDResult.from_run(result, method)

