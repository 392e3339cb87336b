"""User-kNN's predictions for rows of a new matrix (``UserKNN(input="matrix")``).

A row x of a new matrix is a new user: its similarity to every training user
v is the fitted similarity (:func:`~dmf.cf.knn.similarity_from_terms`) over
the items both rated, from the same four (six for pearson) sums as the fit's
panels, here between x and v directly::

    n_xv = |I_x & I_v|, G = sum y_xi y_vi, Q = sum_{I_x & I_v} y_vi^2, Q' = ... y_xi^2

with y the baseline residual (pearson_baseline; x's own bias b_x fitted to
its ratings against the fixed item biases, the baseline's last user
update), the rating (cosine, pearson) or the rating less the item's mean
(adjusted_cosine: the fit centres each item's ratings, the rows of the
transposed matrix). Each row keeps its ``n_candidates`` most similar
training users (positive only, ties to the lower index, as the fit), and
its predicted rating of item i is the fit's rule: the baseline plus the
similarity-weighted mean residual of the k most similar users among those
who rated i.

Two passes over the training ratings per group of rows: ``by_user`` (the
similarities, training users a slice at a time so that one slice's sums stay
under ``panel_bytes``) and ``by_item`` (the neighbourhood terms, an item
slice at a time). They run on the synchronous scheduler: the function runs
inside a task when X is out of core.
"""

from __future__ import annotations

import dask
import numpy as np
import scipy.sparse

from dmf.blocks import Piece, row_blocks
from dmf.cf.data import Ratings
from dmf.cf.knn import neighbour_terms, similarity_from_terms
from dmf.cf.knn_kernels import ordered_neighbours
from dmf.cf.rows import as_csr, iter_row_blocks

#: New rows handled together (each group reads the training ratings twice).
ROWS_AT_A_TIME = 2048


def _pattern_values(Y: scipy.sparse.csr_matrix):
    B = Y.copy()
    B.data = np.ones_like(B.data)
    Y2 = Y.copy()
    Y2.data = Y.data * Y.data
    return B, Y, Y2


def _values(X: scipy.sparse.csr_matrix, similarity: str, *, mu: float, row_bias: np.ndarray,
            item_bias: np.ndarray, item_mean: np.ndarray | None) -> scipy.sparse.csr_matrix:
    """The values the similarity compares, at X's ratings."""
    Y = X.copy()
    if similarity == "pearson_baseline":
        Y.data = X.data - mu - np.repeat(row_bias, np.diff(X.indptr)) - item_bias[X.indices]
    elif similarity == "adjusted_cosine":
        Y.data = X.data - item_mean[X.indices]
    return Y


def _merge_top(best_idx, best_val, S: np.ndarray, start: int, keep: int):
    """Each row's ``keep`` largest positive similarities among its best so
    far and ``S`` (rows x users [start, start + S.shape[1]))."""
    idx = np.hstack([best_idx, np.broadcast_to(np.arange(start, start + S.shape[1]), S.shape)])
    val = np.hstack([best_val, S])
    order = np.lexsort((idx, -val), axis=-1)[:, :keep]  # ties: the lower index first
    idx, val = np.take_along_axis(idx, order, 1), np.take_along_axis(val, order, 1)
    idx[val <= 0] = -1
    return idx, np.where(val > 0, val, 0.0)


def _neighbours(Yx, ratings: Ratings, user_bias, *, similarity, shrinkage, min_support,
                n_candidates, panel_bytes, mu, item_bias, item_mean) -> scipy.sparse.csr_matrix:
    """b x m: each new row's most similar training users."""
    b, m = Yx.shape[0], ratings.shape[0]
    Bx, Yx, Y2x = _pattern_values(Yx)
    BxT, YxT, Y2xT = Bx.T.tocsr(), Yx.T.tocsr(), Y2x.T.tocsr()
    t = 6 if similarity == "pearson" else 4
    step = max(1, int(panel_bytes) // (t * 8 * max(b, 1)))
    best_idx = np.full((b, 0), -1, dtype=np.int64)
    best_val = np.zeros((b, 0))
    for start, stop, V in iter_row_blocks(ratings.by_user):
        Yv = _values(V, similarity, mu=mu, row_bias=user_bias[start:stop],
                     item_bias=item_bias, item_mean=item_mean)
        Bv, Yv, Y2v = _pattern_values(Yv)
        for s0 in range(0, stop - start, step):
            s1 = min(stop - start, s0 + step)
            bv, yv, y2v = Bv[s0:s1], Yv[s0:s1], Y2v[s0:s1]
            products = [bv @ BxT, yv @ YxT, y2v @ BxT, bv @ Y2xT]
            if similarity == "pearson":
                products += [yv @ BxT, bv @ YxT]
            terms = np.stack([p.toarray() for p in products])  # t x users x rows
            S = similarity_from_terms(terms, similarity, shrinkage=shrinkage,
                                      min_support=min_support)
            best_idx, best_val = _merge_top(best_idx, best_val, S.T, start + s0, n_candidates)
    keep = best_idx >= 0
    rows = np.broadcast_to(np.arange(b)[:, None], best_idx.shape)[keep]
    return scipy.sparse.csr_matrix((best_val[keep], (rows, best_idx[keep])), shape=(b, m))


def _terms(ratings: Ratings, ordered, user_bias, item_bias, mu, b: int, *, k, min_k,
           panel_bytes) -> np.ndarray:
    """b x n neighbourhood terms: for each item, over the k most similar
    training users (of each new row) who rated it."""
    n = ratings.shape[1]
    out = np.empty((b, n))
    step = max(1, int(panel_bytes) // (8 * max(b, 1)))
    for start, stop, items in iter_row_blocks(ratings.by_item):
        E = items.copy()
        E.data = (items.data - mu - user_bias[items.indices]
                  - np.repeat(item_bias[start:stop], np.diff(items.indptr)))
        for s0 in range(0, stop - start, step):
            s1 = min(stop - start, s0 + step)
            rows = s1 - s0
            terms = neighbour_terms(E[s0:s1], ordered, np.arange(0, rows * b + 1, b),
                                    np.tile(np.arange(b), rows), k=k, min_k=min_k)
            out[:, start + s0:start + s1] = terms.reshape(rows, b).T
    return out


def user_knn_rows(block, *, ratings: Ratings, mu: float, user_bias: np.ndarray,
                  item_bias: np.ndarray, item_mean: np.ndarray | None, reg_user: float,
                  k: int, min_k: int, n_candidates: int, similarity: str, shrinkage: float,
                  min_support: int, panel_bytes: int) -> np.ndarray:
    """User-kNN's predicted rating of every item for each row of ``block``,
    from its own ratings against the training users (see the module)."""
    X = as_csr(block)
    out = np.empty(X.shape)
    with dask.config.set(scheduler="sync"):
        for r0 in range(0, X.shape[0], ROWS_AT_A_TIME):
            rows = X[r0:r0 + ROWS_AT_A_TIME]
            b, counts = rows.shape[0], np.diff(rows.indptr)
            residual = rows.data - mu - item_bias[rows.indices]
            sums = np.bincount(np.repeat(np.arange(b), counts), weights=residual, minlength=b)
            b_x = sums / (reg_user + counts) if reg_user > 0 else np.divide(
                sums, counts, out=np.zeros(b), where=counts > 0)
            Yx = _values(rows, similarity, mu=mu, row_bias=b_x, item_bias=item_bias,
                         item_mean=item_mean)
            S = _neighbours(Yx, ratings, user_bias, similarity=similarity, shrinkage=shrinkage,
                            min_support=min_support, n_candidates=n_candidates,
                            panel_bytes=panel_bytes, mu=mu, item_bias=item_bias,
                            item_mean=item_mean)
            terms = _terms(ratings, ordered_neighbours(S), user_bias, item_bias, mu, b, k=k,
                           min_k=min_k, panel_bytes=panel_bytes)
            out[r0:r0 + b] = mu + b_x[:, None] + item_bias[None, :] + terms
    return out


def item_means(ratings: Ratings) -> np.ndarray:
    """Each item's mean rating over its raters (0 for none): the centring of
    adjusted_cosine on users."""
    def part(block):
        block = as_csr(block)
        counts = np.diff(block.indptr)
        rows = np.repeat(np.arange(block.shape[0]), counts)
        sums = np.bincount(rows, weights=block.data, minlength=block.shape[0])
        return {"means": np.divide(sums, counts, out=np.zeros(block.shape[0]), where=counts > 0)}

    means = row_blocks(part, ratings.by_item, each={"means": Piece((None,))}).each["means"]
    return np.asarray(means.compute())
