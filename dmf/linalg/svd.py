"""``dmf.svd``: truncated SVD of a matrix larger than memory."""

from __future__ import annotations

import numbers
from typing import Unpack

import dask.array as da
import numpy as np

from dmf.engine.cache import cache_input, run_input
from dmf.engine.driver import Solver, run
from dmf.engine.options import RunKeywords, RunOptions, run_options
from dmf.errors import InputError
from dmf.linalg.eigh import EighSolver, check_square
from dmf.linalg.gram import GRAM_MAX, GramSolver
from dmf.linalg.power import PowerSolver
from dmf.linalg.randomized import RandomizedSolver, auto_n_iter, check_normalizer
from dmf.linalg.result import SVDResult
from dmf.linalg.sketch import SketchSolver
from dmf.linalg.tsqr import TSQR_MAX, TsqrSolver
from dmf.store.sparse_format import is_sparse_dask

METHODS = ("randomized", "sketch", "eigh", "power", "gram", "tsqr", "auto")
#: The methods that compute every triplet (``k=None``).
EXACT = ("gram", "tsqr", "auto")

#: ``auto`` takes an exact method whenever the small side is at most this.
AUTO_EXACT_MIN = 1000


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


def choose_method(shape: tuple[int, int], dtype, k: int | None, *, n_oversamples: int = 10,
                  sparse: bool = False) -> tuple[str, str]:
    """What ``method="auto"`` runs, and why (recorded in the result's attrs).

    - ``"randomized"`` when the small side n = min(m, n) is above 8192 (the
      exact methods hold n x n matrices), or when k is given, n > 1000 and
      the randomized method's arithmetic, 2 (q + 1) (k + p) m n for q power
      iterations and p oversamples, is below the exact methods' m n^2
      (the exact ones still read X once where it reads it q + 1 times, so
      up to n = 1000 they are taken whatever k);
    - else ``"tsqr"`` for dense float64 X: exact, nothing squared;
    - else ``"gram"`` (float32 or sparse X): X^T X in float64 loses less
      than float32 data's own rounding, and tsqr takes dense blocks only.

    Examples
    --------
    >>> choose_method((100000, 500), np.float64, None)[0]
    'tsqr'
    >>> choose_method((100000, 500), np.float32, 20)[0]
    'gram'
    >>> choose_method((100000, 5000), np.float64, 20)[0]
    'randomized'
    """
    n = min(shape)
    if n > TSQR_MAX:
        return "randomized", (f"min(m, n) = {n} > {TSQR_MAX}: too large for an exact "
                              "method's n x n matrices")
    if k is not None and n > AUTO_EXACT_MIN:
        q = auto_n_iter(k, shape)
        randomized_work = 2 * (q + 1) * min(k + n_oversamples, n)
        if randomized_work < n:
            return "randomized", (f"k = {k} is small beside min(m, n) = {n}: "
                                  f"2 (q + 1) (k + p) = {randomized_work} < n")
    if np.dtype(dtype) == np.float64 and not sparse:
        return "tsqr", "exact; dense float64: tall-skinny QR, nothing squared"
    what = "sparse" if sparse else f"{np.dtype(dtype)}"
    return "gram", f"exact; {what} X: X^T X in float64, one symmetric product per slice"


def default_method(k: int | None, shape: tuple[int, int], n_oversamples: int) -> str:
    """``method=None``: ``"auto"`` when k is None or close to min(m, n) (the
    randomized sample, k + p columns, spans all of R^n anyway), else
    ``"randomized"``."""
    if k is None or k + n_oversamples >= min(shape):
        return "auto"
    return "randomized"


class Reported(Solver):
    """``inner`` whose result records ``facts`` in its attrs and, without
    ``keep_u`` (``compute_u=False``), has no U: U is never formed, stored
    or read."""

    def __init__(self, inner: Solver, *, facts: dict | None = None, keep_u: bool = True):
        self.inner, self.facts, self.keep_u = inner, facts or {}, keep_u
        self.name = inner.name
        self.params = inner.params if keep_u else {**inner.params, "compute_u": False}

    def init(self, X, ctx):
        return self.inner.init(X, ctx)

    def step(self, X, state, ctx):
        return self.inner.step(X, state, ctx)

    def converged(self, history, tol):
        return self.inner.converged(history, tol)

    def result(self, X, state):
        arrays = self.inner.result(X, state)
        arrays, meta = arrays if isinstance(arrays, tuple) else (arrays, {})
        if not self.keep_u:
            arrays = {name: a for name, a in arrays.items() if name != "U"}
        return arrays, {**meta, **self.facts}


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
    k: int | None = None,
    *,
    method: str | None = None,
    n_iter: int | str = "auto",
    n_oversamples: int = 10,
    normalizer: str = "auto",
    seed: int | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    assume_symmetric: bool = False,
    compute_u: bool = True,
    options: RunOptions | None = None,
    **run_keywords: Unpack[RunKeywords],
) -> SVDResult:
    """Top-``k`` singular triplets of X, out of core.

    Parameters
    ----------
    X : URL, zarr.Array, dask or numpy array, scipy.sparse matrix
        m x n input, streamed block by block. A wide X in column blocks is
        factored through its transpose (a lazy view, not a copy), except by
        an explicit ``"gram"`` or ``"tsqr"``, which refuse a wide X (pass
        X.T, whose U, S, Vt are X's Vt.T, S, U.T; ``"auto"`` does that
        itself).
    k : int, optional
        Number of singular triplets, 1 <= k <= min(m, n); None: all
        min(m, n) of them (``"tsqr"``, ``"gram"`` and ``"auto"`` only).
    method : {"randomized", "sketch", "eigh", "power", "gram", "tsqr", "auto"}, optional
        Default: ``"auto"`` when k is None or k + n_oversamples >= min(m, n)
        (the randomized sample would span all of R^n), else ``"randomized"``.

        - ``"randomized"``: range finder with ``n_oversamples`` extra
          columns and ``n_iter`` power iterations, re-orthonormalized every
          step; reads X ``n_iter + 1`` times (2 for n_iter = 0)
          (:mod:`dmf.linalg.randomized`).
        - ``"sketch"``: reads X exactly once; an a posteriori error estimate
          comes with the result (:mod:`dmf.linalg.sketch`).
        - ``"eigh"``: symmetric X: eigenvalues with their signs, top k by
          magnitude; ``S`` holds their magnitudes and
          ``result.eigenvalues`` the signed values; up to n = 1000 exact in
          one pass (the subspace is all of R^n) (:mod:`dmf.linalg.eigh`).
        - ``"power"``: power iteration with deflation, one pass per step
          (:mod:`dmf.linalg.power`).
        - ``"gram"``: tall X (m >= n, n at most 8192): exact, from the
          eigendecomposition of X^T X summed in float64 over the row blocks
          in one pass; U = X V S^-1, read from X again when computed, for
          the values above the cut-off only. The condition number is
          squared: s_i is accurate to about eps (s_1 / s_i)^2 relative, and
          values at or below sqrt(max(m, n) eps) s_1 are reported as exact
          zeros (their vectors completed to orthonormal ones). Faster
          than ``"tsqr"`` (see benchmarks/README.md); prefer it for float32 or sparse X, or when
          the small values do not matter (:mod:`dmf.linalg.gram`).
        - ``"tsqr"``: tall X (m >= n, n at most 8192): exact through a
          tall-skinny QR (a QR per row block, the R's reduced by a fixed
          tree), then the SVD of the n x n R: nothing squared, values
          accurate to about eps s_1; one pass for S and Vt, one more for U
          (:mod:`dmf.linalg.tsqr`).
        - ``"auto"``: ``"tsqr"`` for dense float64, ``"gram"`` for float32
          or sparse X, either on X^T when X is wide; ``"randomized"`` when
          min(m, n) > 8192, or when k is given, min(m, n) > 1000 and the
          randomized method does less arithmetic (:func:`choose_method`).
          The choice and its reason are in ``attrs["method"]`` and
          ``attrs["method_reason"]`` (and ``dmf info``).
    n_iter : int or "auto"
        Power iterations (randomized; eigh above n = 1000); "auto" is
        scikit-learn's rule:
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
    compute_u : bool
        False: no U (``result.U`` is None, nothing stored): gram and tsqr
        then read X once, for S and Vt alone.
    options : RunOptions, optional
        Store the result (a Zarr group with U, S, Vt) at ``options.out``,
        checkpoint while iterating, resume, show progress, cache X
        (:class:`dmf.RunOptions`).
    **run_keywords
        The same options as keywords (``out=``, ``checkpoint_every=``,
        ``resume=``, ...), instead of ``options`` (as for :func:`dmf.nmf`).

    Returns
    -------
    SVDResult
        ``U`` (lazy, m x k, orthonormal columns; None without
        ``compute_u``), ``S`` (k, descending,
        exact zeros where X has no more rank), ``Vt`` (k x n; each row's
        largest-magnitude entry is positive), in X's dtype, with
        ``explained_variance_`` and ``explained_variance_ratio_`` as in
        scikit-learn's TruncatedSVD.

    Examples
    --------
    A rank-2 matrix (two pairs of equal rows), asked for 4 components:

    >>> import numpy as np, dmf
    >>> A = np.array([[1, 2, 3, 4, 3, 3], [1, 2, 3, 4, 3, 3],
    ...               [3, 3, 3, 1, 4, 5], [3, 3, 3, 1, 4, 5]], dtype=float)
    >>> r = dmf.svd(A, 4, seed=0)
    >>> r.S.round(2).tolist(), r.method      # k = min(m, n): auto, tsqr on A.T
    ([14.74, 4.1, 0.0, 0.0], 'tsqr')
    >>> U = r.U.compute()
    >>> bool(np.abs(U).max() <= 1 and np.allclose(U.T @ U, np.eye(4)))
    True
    >>> float(np.abs((U * r.S) @ r.Vt - A).max()) < 1e-12
    True

    Power iteration on A = [[3, 2], [2, 3]] (singular values 5 and 1):

    >>> r = dmf.svd(np.array([[3.0, 2.0], [2.0, 3.0]]), 2, method="power", seed=0)
    >>> r.S.round(10).tolist()
    [5.0, 1.0]
    >>> (r.Vt * np.sqrt(2)).round(6).tolist()
    [[1.0, 1.0], [1.0, -1.0]]
    """
    if method is not None and method not in METHODS:
        raise InputError(f"unknown SVD method {method!r}; available: {', '.join(METHODS)}")
    opts = run_options(options, run_keywords, "svd")
    X, cache, token, _ = run_input(X, opts)
    if method is None:
        method = default_method(k, X.shape, n_oversamples if isinstance(n_oversamples, int)
                                else 10)
    if k is None and method not in EXACT:
        raise InputError(f"k=None (every triplet) needs method 'tsqr', 'gram' or 'auto', "
                         f"not {method!r}")
    if k is not None:
        k = check_k(k, X.shape)
    if isinstance(n_oversamples, (bool, np.bool_)) \
            or not isinstance(n_oversamples, numbers.Integral) or n_oversamples < 0:
        raise InputError(f"n_oversamples must be an integer >= 0, got {n_oversamples!r}")
    n_oversamples = int(n_oversamples)
    requested = method
    method, reason = _resolved_method(method, X, k, n_oversamples)
    k = min(X.shape) if k is None else k
    n_iter = _checked_n_iter(n_iter, k, X.shape)
    X = cache_input(X, cache)
    if method in ("gram", "tsqr"):  # the n x n side must be the small one (auto only)
        transposed = X.shape[0] < X.shape[1]
    else:
        transposed = method != "eigh" and works_on_transpose(X)
    A = X.T if transposed else X
    solver, max_steps, tol = _method_solver(
        method, k, A, transposed=transposed, n_oversamples=n_oversamples, n_iter=n_iter,
        normalizer=normalizer, assume_symmetric=assume_symmetric, tol=tol, max_iter=max_iter)
    if requested == "auto" or not compute_u:
        facts = {"method": method, "method_requested": "auto", "method_reason": reason}
        solver = Reported(solver, facts=facts if requested == "auto" else {},
                          keep_u=compute_u)
    result = run(solver, A, seed=seed, max_iter=max_steps, tol=0.0 if tol is None else tol,
                 options=opts, input_token=token)
    return SVDResult.from_run(result, method)


def _resolved_method(method: str, X, k: int | None, n_oversamples: int) -> tuple[str, str | None]:
    """The method to run and, for ``"auto"``, why it was chosen; a named
    method that needs a tall X refuses a wide one."""
    if method == "auto":
        return choose_method(X.shape, X.dtype, k, n_oversamples=n_oversamples,
                             sparse=is_sparse_dask(X))
    if method in ("gram", "tsqr") and X.shape[0] < X.shape[1]:
        raise InputError(f"method={method!r} needs a tall X (m >= n), got {X.shape[0]} x "
                         f"{X.shape[1]}: pass its transpose X.T (whose U, S, Vt are this "
                         "X's Vt.T, S, U.T), or use method='auto' or 'randomized'")
    return method, None


def _checked_n_iter(n_iter: int | str, k: int, shape: tuple[int, int]) -> int:
    """Power iterations: ``"auto"`` chosen from k and the shape, else an integer >= 0."""
    if n_iter == "auto":
        return auto_n_iter(k, shape)
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise InputError(f"n_iter must be 'auto' or an integer >= 0, got {n_iter!r}")
    return n_iter


def _method_solver(method: str, k: int, A, *, transposed: bool, n_oversamples: int, n_iter: int,
                   normalizer: str, assume_symmetric: bool, tol: float | None,
                   max_iter: int | None) -> tuple[Solver, int, float | None]:
    """The engine's Solver of ``method`` for A (X, or X.T when
    ``transposed``), its most steps, and the tolerance the run stops at."""
    if method == "gram":
        if A.shape[1] > GRAM_MAX:
            raise InputError(f"method='gram' needs min(m, n) <= {GRAM_MAX} (it holds "
                             f"{A.shape[1]} x {A.shape[1]} matrices); use 'randomized'")
        solver = GramSolver(k, transposed=transposed)
        max_steps = 1
    elif method == "tsqr":
        if A.shape[1] > TSQR_MAX:
            raise InputError(f"method='tsqr' needs min(m, n) <= {TSQR_MAX} (R is "
                             f"{A.shape[1]} x {A.shape[1]} per block); use 'randomized'")
        if is_sparse_dask(A):
            raise InputError("method='tsqr' needs dense blocks; use 'gram' for sparse X")
        solver = TsqrSolver(k, transposed=transposed)
        max_steps = 1
    elif method == "randomized":
        solver = RandomizedSolver(k, n_oversamples=n_oversamples, n_iter=n_iter,
                                   normalizer=check_normalizer(normalizer, A.dtype),
                                   shape=A.shape, transposed=transposed)
        max_steps = n_iter + 1
    elif method == "sketch":
        solver = SketchSolver(k, n_oversamples=n_oversamples, shape=A.shape,
                               transposed=transposed)
        max_steps = 1
    elif method == "eigh":
        check_square(A.shape)
        solver = EighSolver(k, n_oversamples=n_oversamples, n_iter=n_iter,
                             assume_symmetric=assume_symmetric, shape=A.shape, dtype=A.dtype)
        max_steps = n_iter + 1
    else:
        tol = 1e-7 if tol is None else float(tol)
        max_iter = 1000 if max_iter is None else int(max_iter)
        if tol < 0 or max_iter <= 0:
            raise InputError(f"tol must be >= 0 and max_iter > 0, got {tol}, {max_iter}")
        solver = PowerSolver(k, tol=tol, max_iter=max_iter, transposed=transposed)
        max_steps = k * max_iter
    return solver, max_steps, tol

