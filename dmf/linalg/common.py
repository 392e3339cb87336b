"""What every SVD method does at the end: cut numerically zero values, fix
signs, complete the vectors of zero singular values, explained variance."""

from __future__ import annotations

import dask.array as da
import numpy as np

from dmf.linalg.orthonormal import complete_basis
from dmf.linalg.products import tall_times


def null_cutoff(shape: tuple[int, int], dtype=np.float64) -> float:
    """Relative cut-off on s^2 / s_1^2 below which a value found through a
    Gram matrix (X^T X, or Y^T Y = Z^T X^T X Z) counts as 0: the larger of
    the float64 Gram matrix's rounding, about max(m, n) eps64 of its largest
    entry, and X's own, (10 eps(dtype) s_1)^2 (float32 data resolves
    nothing below about eps32 s_1, and its float32 products round there).

    Examples
    --------
    >>> f"{null_cutoff((5000, 200)):.1e}", f"{null_cutoff((50, 20), np.float32):.1e}"
    ('1.1e-12', '1.4e-12')
    """
    return max(max(shape) * float(np.finfo(np.float64).eps),
               (10 * float(np.finfo(dtype).eps)) ** 2)


def fix_signs(V: np.ndarray) -> np.ndarray:
    """The signs that make each column's largest-magnitude entry positive
    (the first such entry, on ties).

    Examples
    --------
    >>> fix_signs(np.array([[0.6, -1.0], [-0.8, 0.5]])).tolist()
    [-1.0, -1.0]
    """
    idx = np.argmax(np.abs(V), axis=0)
    signs = np.sign(V[idx, np.arange(V.shape[1])])
    signs[signs == 0] = 1
    return signs


def complete_columns(V: np.ndarray, missing: np.ndarray, seed: int = 0) -> np.ndarray:
    """Replace the columns of a small V flagged in ``missing`` by orthonormal
    vectors orthogonal to the other columns.

    Examples
    --------
    >>> V = complete_columns(np.c_[np.eye(4)[:, :1], np.zeros((4, 1))], np.array([False, True]))
    >>> bool(np.allclose(V.T @ V, np.eye(2)))
    True
    """
    missing = np.asarray(missing, dtype=bool)
    if not missing.any():
        return V
    V = V.copy()
    known = V[:, ~missing]
    G = np.random.default_rng(seed).standard_normal((V.shape[0], int(missing.sum())))
    for _ in range(2):  # project twice: orthogonal to working precision
        G -= known @ (known.T @ G)
    Q, _ = np.linalg.qr(G)
    V[:, missing] = Q
    return V


def explained_variance(S, Vt, moments, n_rows: int, *, transposed: bool = False
                       ) -> dict[str, list]:
    """``explained_variance`` and ``explained_variance_ratio`` as
    scikit-learn's TruncatedSVD defines them (variances of the columns of
    X V = U S over the summed variances of X's columns; X is not centred),
    from moments taken in the first pass: no pass over U.

    ``S, Vt`` and ``moments`` (column sums c, sum of squares, sum of squared
    row sums) are those of the matrix the solver saw: X (m = ``n_rows`` rows),
    or X^T when ``transposed``. With u_j = X v_j / s_j of unit norm,
    var(s_j u_j) = s_j^2 / m - mean(X v_j)^2 with mean(X v_j) = c . v_j / m;
    for X^T, u_j is the j-th row of the solver's Vt and X's column sums are
    the solver's row sums.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 2.0]])
    >>> U, S, Vt = np.linalg.svd(X, full_matrices=False)
    >>> moments = (X.sum(0), float((X**2).sum()), float((X.sum(1)**2).sum()))
    >>> ev = explained_variance(S, Vt, moments, 3)["explained_variance"]
    >>> bool(np.allclose(ev, np.var(U * S, axis=0)))
    True
    """
    S = np.asarray(S, dtype=np.float64)
    Vt = np.asarray(Vt, dtype=np.float64)
    colsum, sumsq, rowsq = moments
    m = n_rows
    if transposed:
        means = S * Vt.sum(axis=1) / m
        total = sumsq / m - rowsq / m**2
    else:
        means = (Vt @ colsum) / m
        total = sumsq / m - float(colsum @ colsum) / m**2
    var = S**2 / m - means**2
    ratio = var / total if total > 0 else np.zeros_like(var)
    return {"explained_variance": var.tolist(), "explained_variance_ratio": ratio.tolist(),
            "total_variance": float(total)}


def to_original_side(arrays: dict, row_chunks) -> dict:
    """Results computed on A = X^T turned into X's: U_X = V_A, V_X = U_A
    (computed now: one pass over X), signs fixed again on V_X."""
    V = np.asarray(arrays["U"].compute(), dtype=np.float64)
    U = np.asarray(arrays["Vt"], dtype=np.float64).T
    signs = fix_signs(V)
    dtype = arrays["S"].dtype
    return {"U": da.from_array((U * signs).astype(dtype), chunks=(row_chunks, -1)),
            "S": arrays["S"], "Vt": (V * signs).T.astype(dtype)}


def assemble(X: da.Array, M: np.ndarray, S: np.ndarray, V: np.ndarray, k: int,
             left: da.Array | None = None) -> dict:
    """The result arrays from U = X M (lazy; ``left`` M when given, a tall
    array already computed from X), singular values S and right vectors V
    (n x r, r possibly < k): sorted, cut to k, padded with zeros, signs fixed
    on V, vectors of zero values completed to orthonormal."""
    order = np.argsort(-S, kind="stable")[:k]
    S, V, M = S[order], V[:, order], M[:, order]
    pad = k - len(S)
    if pad:
        S = np.r_[S, np.zeros(pad)]
        V = np.c_[V, np.zeros((V.shape[0], pad))]
        M = np.c_[M, np.zeros((M.shape[0], pad))]
    zero = S <= 0
    S = np.where(zero, 0.0, S)
    V = complete_columns(V, zero)
    signs = fix_signs(V)
    V, M = V * signs, M * signs
    # U = X M is widened to float64 for a float32 X: M = V S^-1 scales the
    # columns of small s_j up, and a float32 product would leave them
    # eps32 s_1 / s_j off orthonormal (U^T U 5e-4 off I; 7e-7 widened)
    U = complete_basis(tall_times(X if left is None else left, M, dtype=X.dtype, widen=True),
                       zero)
    return {"U": U, "S": S.astype(X.dtype), "Vt": V.T.astype(X.dtype)}


def finish_sides(A: da.Array, arrays: dict, state: dict, transposed: bool
                 ) -> tuple[dict, dict]:
    """Explained variance from the solver's moments, then, if the solver saw
    A = X^T, the factors of X."""
    moments = (state["colsum"], state["sumsq"], state["rowsq"])
    n_rows = A.shape[1] if transposed else A.shape[0]
    meta = explained_variance(arrays["S"], arrays["Vt"], moments, n_rows, transposed=transposed)
    if transposed:
        arrays = to_original_side(arrays, A.chunks[1])
    return arrays, meta
