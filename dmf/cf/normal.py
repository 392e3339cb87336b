"""Batched least squares for the rows of a CSR block: the ALS kernel.

Row u of a ratings block, with items I_u, has the normal equations

    (F_I^T F_I + lam_u I) x_u = F_I^T t_u

for the other side's features F (n x K) and targets t_u. The right-hand
sides of every row are one sparse product (CSR with the targets as values,
times F). The K x K Gram matrices are the cost: measured on one core with
K = 11 (numpy 2, OpenBLAS), a segment sum of per-rating outer products
(``np.add.reduceat``) managed 0.4-0.6 M ratings/s, one ``G^T G`` per row
3-10 M/s (its per-call overhead dominates rows with few ratings), and rows
grouped by count into buckets 1.25x apart, zero-padded to the bucket's
longest row and multiplied as a stack (``np.matmul`` on (rows, K, L) x
(rows, L, K)), 4-16 M/s; the stack pays padding and loses to the plain
loop above ~256 ratings a row, so such rows take the loop. The stacked
systems are then solved by one ``np.linalg.solve``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

#: Rows with more ratings than this get their own G^T G (no padding).
LONG_ROW = 256
#: Consecutive bucket lengths differ by this factor (padding < 25%).
BUCKET_RATIO = 1.25


def row_grams(F: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``A[u] = F[I_u]^T F[I_u]`` for every row u of a CSR pattern."""
    rows, K = len(indptr) - 1, F.shape[1]
    counts = np.diff(indptr)
    A = np.zeros((rows, K, K))
    level = np.ceil(np.log(np.maximum(counts, 1)) / np.log(BUCKET_RATIO)).astype(np.int64)
    level[counts == 0] = -1
    for lev in np.unique(level):
        if lev < 0:
            continue  # no ratings: A stays 0
        us = np.flatnonzero(level == lev)
        L = int(counts[us].max())
        if L > LONG_ROW:
            for u in us:
                G = F[indices[indptr[u]:indptr[u + 1]]]
                A[u] = G.T @ G
            continue
        offsets = np.arange(L)
        valid = offsets < counts[us, None]
        G = F[indices[np.where(valid, indptr[us, None] + offsets, 0)]]
        G *= valid[:, :, None]  # padding rows contribute nothing
        A[us] = np.matmul(G.transpose(0, 2, 1), G)
    return A


def solve_rows(F: np.ndarray, block: scipy.sparse.csr_matrix, targets: np.ndarray,
               ridge: np.ndarray) -> np.ndarray:
    """x_u minimizing ||t_u - F_I x||^2 + ridge_u ||x||^2 for every row of
    ``block`` (``targets``: the value of each stored entry). Rows without
    ratings get x = 0."""
    K = F.shape[1]
    A = row_grams(F, block.indptr, block.indices)
    T = scipy.sparse.csr_matrix((targets, block.indices, block.indptr), shape=block.shape)
    b = np.asarray(T @ F)
    idx = np.arange(K)
    A[:, idx, idx] += ridge[:, None]
    empty = np.diff(block.indptr) == 0
    A[empty] = np.eye(K)  # x = 0 there (b is 0)
    return np.linalg.solve(A, b[:, :, None])[:, :, 0]


def row_of_each(indptr: np.ndarray) -> np.ndarray:
    """The row index of each stored entry of a CSR pattern."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def rowwise_dot(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``(A * B).sum(1)`` without the temporary."""
    return np.einsum("ij,ij->i", A, B)
