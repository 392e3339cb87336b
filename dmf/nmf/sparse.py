"""The pieces of the beta = 2 and beta = 1 updates for a CSR row slice,
without densifying it: X H^T and X^T W are sparse-dense products, and for
KL, W H is formed only at X's nonzeros (scikit-learn's
``_special_sparse_dot``), since the KL terms vanish where X is 0 except
sum(WH) = colsum(W) . rowsum(H)."""

from __future__ import annotations

import numpy as np
import scipy.sparse

from dmf.nmf.beta import EPSILON

#: The losses a sparse X can be factored with (others need W H everywhere).
SPARSE_BETAS = (2.0, 1.0)


def as_csr(part) -> scipy.sparse.csr_matrix:
    return scipy.sparse.csr_matrix(part, dtype=np.float64)


def wh_at_nonzeros(xs: scipy.sparse.csr_matrix, W: np.ndarray, H: np.ndarray) -> np.ndarray:
    """(W H)_ij for each stored entry (i, j) of xs, in xs.data's order."""
    rows = np.repeat(np.arange(xs.shape[0]), np.diff(xs.indptr))
    return np.einsum("ij,ij->i", W[rows], H.T[xs.indices])


def _ratio(xs, WH_nz) -> scipy.sparse.csr_matrix:
    """X / max(WH, eps) at X's nonzeros, as a CSR matrix of xs's pattern."""
    return scipy.sparse.csr_matrix((xs.data / np.maximum(WH_nz, EPSILON), xs.indices,
                                    xs.indptr), shape=xs.shape)


def w_terms(xs, W, H, beta: float, HHt=None, H_sum=None):
    if beta == 2:
        return np.asarray(xs @ H.T), W @ HHt
    return (np.asarray(_ratio(xs, wh_at_nonzeros(xs, W, H)) @ H.T),
            np.broadcast_to(H_sum, W.shape).copy())


def h_terms(xs, W, H, beta: float):
    if beta == 2:
        return np.asarray(xs.T @ W).T, W.T @ W
    return np.asarray(_ratio(xs, wh_at_nonzeros(xs, W, H)).T @ W).T, W.sum(axis=0)


def divergence_sum(xs, W, H, beta: float) -> float:
    """The slice's share of D_beta(X | WH), beta in (2, 1), scikit-learn's
    sparse formulas."""
    if beta == 2:
        XHt = np.asarray(xs @ H.T)
        return 0.5 * (float(xs.data @ xs.data) - 2 * float(np.vdot(W, XHt))
                      + float(np.vdot(W.T @ W, H @ H.T)))
    WH = wh_at_nonzeros(xs, W, H)
    keep = xs.data > EPSILON
    x, wh = xs.data[keep], np.maximum(WH[keep], EPSILON)
    return float(x @ np.log(x / wh) + W.sum(axis=0) @ H.sum(axis=1) - x.sum())
