"""The compiled prediction loop of the neighbourhood models (numba).

Surprise's KNNBaseline predicts r_ui from the k most similar items *among
those u rated* (positive similarities only)::

    r_hat_ui = b_ui + sum_{j in N_k(i; u)} s_ij (r_uj - b_uj) / sum_{j in N_k(i; u)} s_ij

with no neighbourhood term when fewer than ``min_k`` such items exist. With
each item's stored neighbours in descending order of similarity, N_k(i; u)
is the first k of them that u rated: one scan of the row, stopped early, per
(user, item) pair. The user's residuals are scattered into a dense n-vector
once per user, so a scan costs one lookup per stored neighbour.

Same style as :mod:`dmf.cf.kernels`: plain loops in a fixed order (the same
bits on any scheduler), ``cache=True`` (compiled once per machine), no
fastmath, ``nogil`` so row blocks run in parallel on a worker's threads.
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


@numba.njit(**_JIT)
def neighbourhood_terms(e_indptr, e_indices, e_data, s_indptr, s_indices, s_data,
                        pair_ptr, pair_items, k, min_k, n):
    """The neighbourhood term of each pair: row r of the residuals (CSR
    ``e_*``, columns in [0, n)) with the items ``pair_items[pair_ptr[r]:
    pair_ptr[r + 1]]``; ``s_*`` the stored neighbours, each row in
    descending order of similarity."""
    out = np.zeros(pair_items.shape[0])
    residual = np.zeros(n)
    rated = np.zeros(n, dtype=np.bool_)
    for r in range(e_indptr.shape[0] - 1):
        for p in range(e_indptr[r], e_indptr[r + 1]):
            residual[e_indices[p]] = e_data[p]
            rated[e_indices[p]] = True
        for q in range(pair_ptr[r], pair_ptr[r + 1]):
            i = pair_items[q]
            num = 0.0
            den = 0.0
            hits = 0
            for p in range(s_indptr[i], s_indptr[i + 1]):
                j = s_indices[p]
                if rated[j]:
                    num += s_data[p] * residual[j]
                    den += s_data[p]
                    hits += 1
                    if hits == k:
                        break
            if hits >= min_k and hits > 0 and den > 0.0:
                out[q] = num / den
        for p in range(e_indptr[r], e_indptr[r + 1]):
            residual[e_indices[p]] = 0.0
            rated[e_indices[p]] = False
    return out


def ordered_neighbours(neighbours) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays of ``neighbours`` with each row in descending order of
    similarity (ties: lower index first), as :func:`neighbourhood_terms`
    scans them."""
    S = neighbours.tocsr()
    rows = np.repeat(np.arange(S.shape[0]), np.diff(S.indptr))
    order = np.lexsort((S.indices, -S.data, rows))
    return (S.indptr.astype(np.int64), S.indices[order].astype(np.int64),
            S.data[order].astype(np.float64))
