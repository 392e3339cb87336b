"""Bi-cross-validation of the truncated SVD (Owen and Perry, 2009, "Bi-cross-
validation of the SVD and the nonnegative matrix factorization", Ann. Appl.
Stat. 3(2)): the held-out error of a rank-k fit for every k, out of core.

The rows are dealt into ``folds[0]`` groups and the columns into
``folds[1]`` (by a hash of (seed, index), :func:`fold_ids`, balanced). For
each pair (I, J), with X's rows and columns reordered as

    X = [[A, B],      A = X[I, J] held out, D = X[not I, not J] kept,
         [C, D]]

the rank-k prediction of A is B D_k^+ C, D_k the SVD of D truncated at k.
With D's top-K SVD U S V^T (one :func:`dmf.linalg.svd.svd`), every k costs
nothing more: B D_k^+ C = sum_{r < k} (B v_r) (u_r^T C) / s_r. Every entry
of X is held out exactly once over the folds. Nothing is iterated, so no k
is favoured by converging faster: a k below X's rank leaves signal in the
held-out error, a k above it divides noise by D's small singular values.
Values of D at or below ``max(m, n) eps s_1`` (or reported as exact zeros)
are left out of D_k^+, as :func:`numpy.linalg.pinv` does.

Passes over X per fold: the SVD's (tsqr: 2), one for U^T C (rows not in I)
and one for the errors (rows in I), each a task per block row.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np
import scipy.sparse

from dmf.blocks import row_sums
from dmf.errors import InputError
from dmf.linalg.hashing import uniform_hash
from dmf.linalg.products import as_f64, row_slices, transpose_times
from dmf.linalg.svd import svd


@dataclass
class BcvErrors:
    """Held-out squared errors summed over every entry of X, one per k."""

    ks: list[int]
    sse: np.ndarray          # sum of e^2 over the held-out entries
    sse2: np.ndarray         # sum of e^4 (for the standard error)
    count: int               # entries held out (all of X)
    total_sq: float          # sum of x^2 over X

    @property
    def mse(self) -> np.ndarray:
        return self.sse / self.count

    @property
    def mse_se(self) -> np.ndarray:
        """Standard error of each k's mean of e^2 over the held-out entries."""
        mse = self.mse
        return np.sqrt(np.clip(self.sse2 / self.count - mse * mse, 0.0, None) / self.count)


def fold_ids(seed: int, offset: int, size: int, folds: int) -> np.ndarray:
    """Which of ``folds`` groups each of ``size`` indices belongs to: dealt
    round-robin in the order of their hash (``offset`` keeps rows' and
    columns' hashes apart), so the groups differ in size by at most one.

    Examples
    --------
    >>> ids = fold_ids(0, 0, 7, 2)
    >>> sorted(np.bincount(ids).tolist())
    [3, 4]
    """
    order = np.argsort(uniform_hash(seed, np.arange(offset, offset + size, dtype=np.uint64)),
                       kind="stable")
    ids = np.empty(size, dtype=np.int64)
    ids[order] = np.arange(size) % folds
    return ids


def check_folds(folds, ks: list[int], shape: tuple[int, int]) -> tuple[int, int]:
    """``folds`` as (row groups, column groups), each >= 2, leaving a kept
    block D with at least max(ks) rows and columns; else an InputError."""
    try:
        h, w = (int(f) for f in folds)
    except (TypeError, ValueError):
        raise InputError(f"folds must be two integers (row groups, column groups), "
                         f"got {folds!r}") from None
    if h < 2 or w < 2:
        raise InputError(f"folds must be at least (2, 2), got {folds!r}")
    kept = ((shape[0] * (h - 1)) // h, (shape[1] * (w - 1)) // w)
    if max(ks) > min(kept):
        raise InputError(f"method='bcv' fits each k on a {kept[0]} x {kept[1]} block of the "
                         f"{shape[0]} x {shape[1]} matrix (folds {h} x {w}): k must be at "
                         f"most {min(kept)}, got {max(ks)}")
    return h, w


def bcv_errors(X: da.Array, ks: list[int], *, folds: tuple[int, int], seed: int,
               progress: bool | None = None, cache: bool | str = "auto") -> BcvErrors:
    """Owen and Perry's (h x l)-fold bi-cross-validation errors of X's
    truncated SVD for each k in ``ks`` (ascending), X a dask array."""
    m, n = X.shape
    row_fold = fold_ids(seed, 0, m, folds[0])
    col_fold = fold_ids(seed, m, n, folds[1])
    top = max(ks)
    dtype_eps = float(np.finfo(X.dtype).eps) if X.dtype.kind == "f" else float(np.finfo(float).eps)
    sums = np.zeros((len(ks), 2))
    total_sq = 0.0
    for a in range(folds[0]):
        rows_in = row_fold == a
        held_rows, kept_rows = X[rows_in], X[~rows_in]
        for b in range(folds[1]):
            cols_in = col_fold == b
            D = kept_rows[:, ~cols_in]
            result = svd(D, top, method="auto", seed=seed, progress=progress, cache=cache)
            S = np.asarray(result.S, dtype=np.float64)
            usable = S > max(D.shape) * dtype_eps * S[0] if S[0] > 0 else np.zeros_like(S, bool)
            U = da.asarray(result.U).astype(np.float64)
            UtC = np.asarray(transpose_times(kept_rows[:, cols_in], U).compute()["product"]).T
            scaled = np.where(usable[:, None], UtC / np.where(usable, S, 1.0)[:, None], 0.0)
            V = np.asarray(result.Vt, dtype=np.float64).T
            named = row_sums(_block_errors, held_rows, cols_in, V, scaled, np.asarray(ks),
                             parts={"sse": (len(ks),), "sse2": (len(ks),), "total_sq": ()})
            sums[:, 0] += named["sse"]
            sums[:, 1] += named["sse2"]
            total_sq += float(named["total_sq"])
    return BcvErrors(list(ks), sums[:, 0], sums[:, 1], m * n, total_sq)


def _block_errors(block, cols_in, V, scaled, ks) -> dict:
    """A held-out block row's e^2 and e^4 sums for each k (``sse``,
    ``sse2``), and its sum of x^2 over A (``total_sq``), for
    :func:`dmf.blocks.row_sums`. ``block`` holds whole rows of X; the dense
    prediction is formed one row slice at a time and dropped."""
    sse, sse2, total_sq = np.zeros(len(ks)), np.zeros(len(ks)), 0.0
    if scipy.sparse.issparse(block):
        block = block.tocsr()
    for sl in row_slices(block):
        part = as_f64(block[sl])
        A = part[:, cols_in]
        A = A.toarray() if scipy.sparse.issparse(A) else A
        BV = np.asarray(part[:, ~cols_in] @ V)
        prediction = np.zeros_like(A)
        done = 0
        for i, k in enumerate(ks):
            if k > done:  # add components done .. k - 1
                prediction += BV[:, done:k] @ scaled[done:k]
                done = k
            sq = A - prediction
            sq *= sq
            sse[i] += sq.sum()
            sse2[i] += np.vdot(sq, sq)
        total_sq += np.vdot(A, A)
    return {"sse": sse, "sse2": sse2, "total_sq": total_sq}


__all__ = ["BcvErrors", "bcv_errors", "check_folds", "fold_ids"]
