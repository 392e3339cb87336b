"""Item-based k-nearest-neighbour collaborative filtering, out of core.

**Similarities** are computed over co-rating users, as Surprise does: for
items i and j, with U_ij the users who rated both and y the (centred)
ratings,

- ``cosine``:           sum y_ui y_uj / sqrt(sum y_ui^2 * sum y_uj^2), y = r
- ``adjusted_cosine``:  the same with y = r - (the user's mean rating)
                        (Sarwar et al. 2001)
- ``pearson``:          the correlation of r_ui and r_uj over U_ij, each item
                        centred by its mean over U_ij (exact, not the mean
                        over all its raters)

all sums over U_ij. Each is a function of a few n x n sums over users, and
each of those is a sum over user row blocks X_b of sparse products (B the
0/1 pattern of the ratings, Y the values, Y2 their squares)::

    n_ij = (B^T B)_ij       co-rating count
    G_ij = (Y^T Y)_ij       cross products
    Q_ij = (Y2^T B)_ij      sum of y_ui^2 over U_ij, and Q_ji = (B^T Y2)_ij
    A_ij = (Y^T B)_ij       sum of y_ui over U_ij, and A_ji = (B^T Y)_ij (pearson)

Pairs with n_ij < ``min_support`` get 0; the rest are shrunk towards 0 by
n_ij / (n_ij + shrinkage) (Koren 2010), so similarities resting on a few
co-raters count less.

**Panels.** The client never holds n x n: the columns of the sums are taken
a panel of p items at a time, with p chosen so that one block's terms for a
panel (t x n x p float64, t = 4 or 6) stay under ``panel_bytes``. For a
panel, one task per user block computes its terms, dask's tree adds them up,
and one more task turns the sums into similarities and keeps each panel
item's ``k`` most similar items (positive similarities only). The client
collects n x k neighbours. A panel is one pass over the ratings; several
panels share a pass when the memory budget allows.

**Predictions** are Koren's kNN on top of the baseline b_ui = mu + b_u + b_i
(:mod:`dmf.cf.baseline`)::

    r_hat_ui = b_ui + sum_{j in N_k(i), j rated by u} s_ij (r_uj - b_uj)
                      / sum_{j in N_k(i), j rated by u} |s_ij|

with N_k(i) the item's k stored neighbours (so a user may have fewer than
k of them rated; with none, the prediction is b_ui). For a block of users
the numerators and denominators are two sparse products with the n x n
neighbour matrix.

Costs: fitting reads the ratings ``n_epochs + 1`` times (baseline) plus
once per panel group; a block task does O(sum_u |R(u)| |R(u) in panel|)
work for each of its t products. Memory: n * k on the client, t n p per
task.
"""

from __future__ import annotations

import functools
from numbers import Integral, Real
from typing import Any, ClassVar

import dask
import dask.array as da
import numpy as np
import scipy.sparse

from dmf.blocks import Sums, Tall, full_rows, row_blocks
from dmf.cf.baseline import Baseline, baseline_biases
from dmf.cf.data import Ratings, as_ratings
from dmf.cf.knn_kernels import neighbourhood_terms, ordered_neighbours
from dmf.cf.matrix import INPUTS, pairs_only
from dmf.cf.params import CFEstimator, pairs, with_unseen
from dmf.cf.rows import as_csr, as_index, user_rows
from dmf.engine.cache import memory_budget
from dmf.errors import InputError, not_fitted
from dmf.params import Interval, Options

SIMILARITIES = ("cosine", "adjusted_cosine", "pearson", "pearson_baseline")

#: Most bytes of one block's terms for one panel of items.
PANEL_BYTES = 16 * 2**20  # the fastest size measured (benchmarks/README.md)


#: Most similar items stored per item, among which predictions seek a user's k nearest.
N_CANDIDATES = 500


def _n_terms(similarity: str) -> int:
    return 6 if similarity == "pearson" else 4


# -- per block ---------------------------------------------------------------------


def _panel_terms(block, row_bias, c0: int, c1: int, col_bias: np.ndarray | None, *,
                 similarity: str, mu: float):
    """The block's terms for the panel of items [c0, c1): t x n x p, in the
    order n, G, Q, Q^T (and A, A^T for pearson): t x n x p. With
    ``pearson_baseline`` the values are the baseline residuals
    r_ui - mu - row_bias_u - col_bias_i. By name: ``terms``."""
    Y = as_csr(block)
    if similarity == "pearson_baseline":
        Y = Y.copy()
        Y.data = (Y.data - mu - np.repeat(row_bias, np.diff(Y.indptr))
                  - col_bias[Y.indices])
    elif similarity == "adjusted_cosine":
        counts = np.diff(Y.indptr)
        means = np.divide(np.add.reduceat(Y.data, Y.indptr[:-1]) if Y.nnz else
                          np.zeros(Y.shape[0]), counts, out=np.zeros(Y.shape[0]),
                          where=counts > 0)
        Y.data = Y.data - np.repeat(means, counts)
    B = Y.copy()
    B.data = np.ones_like(B.data)
    Y2 = Y.copy()
    Y2.data = Y.data * Y.data
    Yp, Bp, Y2p = Y[:, c0:c1], B[:, c0:c1], Y2[:, c0:c1]
    BT, YT = B.T.tocsr(), Y.T.tocsr()
    products = [BT @ Bp, YT @ Yp, Y2.T.tocsr() @ Bp, BT @ Y2p]
    if similarity == "pearson":
        products += [YT @ Bp, BT @ Yp]
    out = np.empty((len(products), Y.shape[1], c1 - c0))
    for t, product in enumerate(products):
        out[t] = product.toarray()
    return {"terms": out}


# -- per panel ---------------------------------------------------------------------


def similarity_from_terms(terms: np.ndarray, similarity: str, *, shrinkage: float = 0.0,
                          min_support: int = 1) -> np.ndarray:
    """Similarities (n x p) from the summed terms of a panel (t x n x p):
    0 where fewer than ``min_support`` users co-rated or a variance is 0."""
    N, G, Q, QT = terms[:4]
    if similarity == "pearson":
        A, AT = terms[4], terms[5]
        inv_n = np.divide(1.0, N, out=np.zeros_like(N), where=N > 0)
        num = G - A * AT * inv_n
        var_i = Q - A * A * inv_n
        var_j = QT - AT * AT * inv_n
        # a variance lost to rounding (all co-ratings equal) is a zero one
        var_i[var_i <= 1e-12 * Q] = 0.0
        var_j[var_j <= 1e-12 * QT] = 0.0
    else:
        num, var_i, var_j = G, Q, QT
    den = np.sqrt(var_i * var_j)
    S = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    np.clip(S, -1.0, 1.0, out=S)
    S[N < max(min_support, 1)] = 0.0
    if shrinkage and similarity == "pearson_baseline":
        # Surprise's form: (n - 1) / (n - 1 + shrinkage), 0 for one co-rater
        S *= np.divide(N - 1, N - 1 + shrinkage, out=np.zeros_like(N), where=N > 1)
    elif shrinkage:
        S *= N / (N + shrinkage)
    return S


def _top_k(S: np.ndarray, c0: int, k: int) -> np.ndarray:
    """Each column's k largest positive entries, the column's own item
    (row c0 + j) left out: 2 x k x p (row indices, -1 for none; values)."""
    n, p = S.shape
    S = S.copy()
    S[np.arange(c0, c0 + p), np.arange(p)] = 0.0
    k = min(k, n)
    if k < n:
        idx = np.argpartition(-S, k - 1, axis=0)[:k]
    else:
        idx = np.broadcast_to(np.arange(n)[:, None], (n, p)).copy()
    idx.sort(axis=0)  # ties go to the lower index, whatever argpartition did
    vals = np.take_along_axis(S, idx, axis=0)
    order = np.argsort(-vals, axis=0, kind="stable")
    idx = np.take_along_axis(idx, order, axis=0)
    vals = np.take_along_axis(vals, order, axis=0)
    idx[vals <= 0] = -1
    vals[vals <= 0] = 0.0
    return np.stack([idx.astype(np.float64), vals])


def _panel_top(named, c0: int, k: int, similarity: str, shrinkage: float, min_support: int):
    S = similarity_from_terms(named["terms"], similarity, shrinkage=shrinkage,
                              min_support=min_support)
    return _top_k(S, c0, k)


def _panel(X: da.Array, row_bias: da.Array, c0: int, c1: int, *, k: int, similarity: str,
           shrinkage: float, min_support: int, mu: float, col_bias) -> Sums:
    """Lazy 2 x k x p neighbours of the items [c0, c1): the panel's terms
    (``terms``, t x n x p) summed over X's row blocks, then the top k."""
    n, t, p = X.shape[1], _n_terms(similarity), c1 - c0
    # col_bias stays an argument of its own: dask makes a large one a single
    # graph key
    terms = functools.partial(_panel_terms, similarity=similarity, mu=mu)
    sums = row_blocks(terms, X, Tall(row_bias), c0, c1, col_bias, sums={"terms": (t, n, p)}).sums
    return sums.then(_panel_top, c0, min(k, n), similarity, shrinkage, min_support)


def _panel_width(n: int, similarity: str, panel_bytes: int) -> int:
    return int(max(1, min(n, panel_bytes // (_n_terms(similarity) * n * 8))))


# -- public ------------------------------------------------------------------------


def item_neighbours(ratings, *, k: int = 40, similarity: str = "cosine",
                    shrinkage: float = 100.0, min_support: int = 1,
                    panel_bytes: int = PANEL_BYTES,
                    baseline: tuple[float, np.ndarray, np.ndarray] | None = None
                    ) -> scipy.sparse.csr_matrix:
    """The ``k`` most similar items of every item, out of core.

    Parameters
    ----------
    ratings : Ratings, scipy.sparse matrix or ratings store URL
    k : int
        Neighbours kept per item.
    similarity : {"cosine", "adjusted_cosine", "pearson", "pearson_baseline"}
        Computed over co-rating users (see the module's docstring).
    shrinkage : float
        s_ij * n_ij / (n_ij + shrinkage), n_ij the co-rating count
        (``pearson_baseline``: (n_ij - 1) / (n_ij - 1 + shrinkage), as
        Surprise); 0 for none.
    min_support : int
        Pairs with fewer co-rating users get similarity 0.
    panel_bytes : int
        Most bytes of one user block's terms for one panel of items; sets the
        panel width (and so the number of passes for large n).
    baseline : (mu, row_bias, col_bias), optional
        ``pearson_baseline``: the biases whose residuals are compared
        (default: :func:`~dmf.cf.baseline.baseline_biases` of ``ratings``).

    Returns
    -------
    scipy.sparse.csr_matrix
        n x n; row i holds s_ij for i's neighbours j (positive values only,
        at most k per row, never i itself).

    Examples
    --------
    >>> import scipy.sparse
    >>> R = scipy.sparse.csr_matrix([[5.0, 4.0, 1.0], [4.0, 5.0, 0], [1.0, 0, 5.0]])
    >>> S = item_neighbours(R, k=1, shrinkage=0, min_support=2)
    >>> S.toarray().round(3)
    array([[0.   , 0.976, 0.   ],
           [0.976, 0.   , 0.   ],
           [0.385, 0.   , 0.   ]])
    """
    if similarity not in SIMILARITIES:
        raise InputError(f"similarity must be one of {', '.join(SIMILARITIES)}, "
                         f"got {similarity!r}")
    if int(k) != k or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if shrinkage < 0 or min_support < 0:
        raise InputError(f"shrinkage and min_support must be >= 0, got {shrinkage}, "
                         f"{min_support}")
    R: Ratings = as_ratings(ratings)
    X = full_rows(R.by_user)
    m, n = X.shape
    mu, row_bias, col_bias = 0.0, np.zeros(m), None
    if similarity == "pearson_baseline":
        mu, row_bias, col_bias = baseline if baseline is not None else baseline_biases(R)[:3]
        col_bias = np.asarray(col_bias, dtype=np.float64)
    row_bias = da.from_array(np.asarray(row_bias, dtype=np.float64), chunks=(X.chunks[0],))
    k = int(min(k, max(n - 1, 1)))
    width = _panel_width(n, similarity, int(panel_bytes))
    starts = list(range(0, n, width))
    # a panel in flight takes a few times its terms (block results, tree sums)
    per_pass = max(1, memory_budget() // (4 * _n_terms(similarity) * n * width * 8))
    rows, cols, vals = [], [], []
    for g in range(0, len(starts), per_pass):
        group = starts[g:g + per_pass]
        panels = [_panel(X, row_bias, c0, min(c0 + width, n), k=k, similarity=similarity,
                         shrinkage=shrinkage, min_support=min_support, mu=float(mu),
                         col_bias=col_bias) for c0 in group]
        for c0, top in zip(group, dask.compute(*panels), strict=True):
            idx, sim = top[0].astype(np.int64), top[1]
            keep = idx >= 0
            rows.append(np.broadcast_to(np.arange(c0, c0 + idx.shape[1]), idx.shape)[keep])
            cols.append(idx[keep])
            vals.append(sim[keep])
    return scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                          np.concatenate(cols))), shape=(n, n))


def neighbour_terms(residuals: scipy.sparse.csr_matrix, ordered, pair_ptr: np.ndarray,
                    pair_items: np.ndarray, *, k: int, min_k: int = 1) -> np.ndarray:
    """The neighbourhood term of pairs (row r of ``residuals`` with the items
    ``pair_items[pair_ptr[r]:pair_ptr[r + 1]]``): sum s_ij e_rj / sum s_ij
    over the k most similar items j to i *among those row r rated*, 0 when
    fewer than ``min_k`` (Surprise's KNNBaseline). ``ordered``: the stored
    neighbours from :func:`~dmf.cf.knn_kernels.ordered_neighbours`."""
    E = as_csr(residuals)
    return neighbourhood_terms(E.indptr.astype(np.int64), E.indices.astype(np.int64),
                               E.data.astype(np.float64), *ordered,
                               np.asarray(pair_ptr, dtype=np.int64),
                               np.asarray(pair_items, dtype=np.int64), int(k), int(min_k),
                               int(E.shape[1]))


def knn_scores(residuals: scipy.sparse.csr_matrix, ordered, *, k: int, min_k: int = 1
               ) -> np.ndarray:
    """The neighbourhood term of every item for some users (len x n), see
    :func:`neighbour_terms`; ``residuals`` holds e_uj = r_uj - b_uj at u's
    ratings."""
    m, n = residuals.shape
    terms = neighbour_terms(residuals, ordered, np.arange(0, m * n + 1, n),
                            np.tile(np.arange(n), m), k=k, min_k=min_k)
    return terms.reshape(m, n)


def grouped_terms(residual_rows, ordered, keys: np.ndarray, others: np.ndarray, *, k: int,
                  min_k: int) -> np.ndarray:
    """:func:`neighbour_terms` of pairs (keys[q], others[q]) in any order:
    ``residual_rows(unique keys)`` gives one residual row per key."""
    if keys.size == 0:
        return np.zeros(0)
    unique, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    pair_ptr = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=unique.size))])
    out = np.empty(keys.size)
    out[order] = neighbour_terms(residual_rows(unique), ordered, pair_ptr, others[order],
                                 k=k, min_k=min_k)
    return out


def knn_rows(block, *, ordered, mu: float, item_bias: np.ndarray, reg_user: float, k: int,
             min_k: int = 1) -> np.ndarray:
    """Item-kNN's predicted rating of every item for each row of ``block``
    from its own ratings: b_u fitted to them (the baseline's user update
    against the fixed item biases), then the neighbourhood term on the
    residuals."""
    block = as_csr(block)
    m, counts = block.shape[0], np.diff(block.indptr)
    residual = block.data - mu - item_bias[block.indices]
    sums = np.bincount(np.repeat(np.arange(m), counts), weights=residual, minlength=m)
    denominator = reg_user + counts
    b_u = np.divide(sums, denominator, out=np.zeros(m), where=denominator > 0)
    E = scipy.sparse.csr_matrix((residual - np.repeat(b_u, counts), block.indices,
                                 block.indptr), shape=block.shape)
    return (mu + b_u[:, None] + item_bias[None, :]) + knn_scores(E, ordered, k=k, min_k=min_k)


def read_through_baseline(name: str) -> property:
    """The fitted baseline's attribute ``name``, read through."""
    return property(lambda self: getattr(self.baseline_, name),
                    doc=f"The fitted baseline's ``{name}``.")


class NeighbourModel(CFEstimator):
    """What ItemKNN and UserKNN share: the constructor's parameters and
    their constraints table, the fitted baseline (whose ids and biases are
    read through, so that fit sets no public attribute without a trailing
    underscore, scikit-learn's rule) and the checks of (user, item) pairs."""

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "k": [Interval(Integral, 1, None)],
        "similarity": [Options(*SIMILARITIES)],
        "shrinkage": [Interval(Real, 0, None)],
        "min_support": [Interval(Integral, 0, None)],
        "min_k": [Interval(Integral, 0, None)],
        "n_candidates": [Interval(Integral, 1, None)],
        "reg_user": [Interval(Real, 0, None)],
        "reg_item": [Interval(Real, 0, None)],
        "n_epochs": [Interval(Integral, 0, None)],
        "panel_bytes": [Interval(Integral, 1, None)],
        "input": [Options(*INPUTS)],
    }

    def __init__(self, k: int = 40, similarity: str = "pearson_baseline",
                 shrinkage: float = 100.0, min_support: int = 1, *, min_k: int = 1,
                 n_candidates: int = N_CANDIDATES, reg_user: float = 15.0,
                 reg_item: float = 10.0, n_epochs: int = 10, panel_bytes: int = PANEL_BYTES,
                 input: str = "auto"):
        self.k = k
        self.similarity = similarity
        self.shrinkage = shrinkage
        self.min_support = min_support
        self.min_k = min_k
        self.n_candidates = n_candidates
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_epochs = n_epochs
        self.panel_bytes = panel_bytes
        self.input = input

    def _fit_baseline(self, ratings) -> tuple[Ratings, Baseline]:
        R = as_ratings(ratings)
        base = Baseline(reg_user=self.reg_user, reg_item=self.reg_item,
                        n_epochs=self.n_epochs).fit(R)
        return R, base

    user_ids = read_through_baseline("user_ids")
    item_ids = read_through_baseline("item_ids")
    global_mean_ = read_through_baseline("global_mean_")
    user_bias_ = read_through_baseline("user_bias_")
    item_bias_ = read_through_baseline("item_bias_")
    item_counts_ = read_through_baseline("item_counts_")

    def _n_items(self) -> int:
        return len(self.item_ids)

    def _pair_indices(self, users, items) -> tuple[np.ndarray, np.ndarray]:
        users = as_index(users, len(self.user_ids), "users")
        items = as_index(items, len(self.item_ids), "items")
        if users.shape != items.shape:
            raise InputError(f"users and items must have the same length, got {users.size} "
                             f"and {items.size}")
        return users, items


class ItemKNN(NeighbourModel):
    """Item-based kNN with baseline (Surprise's KNNBaseline), out of core.

    r_hat_ui = mu + b_u + b_i + sum_j s_ij (r_uj - b_uj) / sum_j s_ij over
    the ``k`` items j most similar to i *among those u rated* (positive
    similarities), with no neighbourhood term when fewer than ``min_k``.
    The defaults are Surprise's: pearson_baseline similarity, shrinkage
    100, k 40, min_k 1, baselines by ALS (reg_item 10, reg_user 15, 10
    epochs).

    Implements the recommender protocol: ``user_ids``, ``item_ids``,
    ``predict(users, items)`` and ``scores(users)``. Predictions need the
    training ratings of the users asked about, so the model keeps a
    reference to them (``ratings_``, lazy: rows are read when needed).

    Parameters
    ----------
    k : int
        Neighbours a prediction uses (among the user's rated items).
    similarity : {"pearson_baseline", "cosine", "adjusted_cosine", "pearson"}
        ``pearson_baseline``: the cosine of the baseline residuals over
        co-rating users (Surprise's).
    shrinkage : float
        s_ij * n_ij / (n_ij + shrinkage) ((n_ij - 1) / (n_ij - 1 +
        shrinkage) for pearson_baseline).
    min_support : int
        Fewest co-rating users for a non-zero similarity.
    min_k : int
        Fewest rated neighbours for a neighbourhood term.
    n_candidates : int
        Most similar items stored per item (at least ``k``): the k nearest
        among a user's rated items are sought among these, so predictions
        are Surprise's exactly when n_candidates >= n_items - 1, and use
        memory n_items x n_candidates.
    reg_user, reg_item, n_epochs
        The baseline's parameters (:class:`dmf.cf.baseline.Baseline`).
    panel_bytes : int
        Memory of one block's similarity terms for a panel of items.
    input : {"auto", "pairs", "matrix"}
        What ``fit``, ``predict`` and ``score`` take. "auto" (or "pairs"):
        ``fit(R)`` a ratings matrix or ``fit(X, y)`` (user, item) pairs and
        their ratings, ``predict`` of pairs: a scikit-learn regressor.
        "matrix": a scikit-learn transformer of a ratings matrix X (users x
        items; every entry of a dense X is a rating, the stored entries of
        a sparse one; y ignored): ``fit`` learns the neighbours and the
        baseline's item biases; ``transform(X)`` is the predicted rating of
        every item for each row of X from that row's own ratings alone
        (:func:`knn_rows`), so rows of a new matrix work; ``score(X)`` is
        R^2 over X's observed entries. No ``predict`` (scikit-learn's gives
        one value a row) and no ``inverse_transform`` in this mode.

    Attributes
    ----------
    neighbours_ : scipy.sparse.csr_matrix
        n x n, row i: similarities of i's k nearest items.
    baseline_ : Baseline
        The fitted bias model (``global_mean_``, ``user_bias_``,
        ``item_bias_``, ``item_counts_`` are its own).
    ratings_ : Ratings
        The training ratings.
    user_ids, item_ids : ndarray
    n_features_in_ : int
        ``input="matrix"``: n_items.

    Examples
    --------
    >>> import scipy.sparse
    >>> R = scipy.sparse.csr_matrix([[5.0, 4.0, 1.0], [4.0, 5.0, 0], [1.0, 0, 5.0]])
    >>> model = ItemKNN(k=2, shrinkage=0, min_support=2).fit(R)
    >>> model.neighbours_.nnz
    2
    >>> model.predict([1], [2]).round(3).tolist()
    [3.588]
    >>> model.scores([0, 1]).shape
    (2, 3)
    >>> knn = ItemKNN(k=2, shrinkage=0, input="matrix").fit(R.toarray())
    >>> knn.transform([[5.0, 4.0, 0.0]]).shape       # every item, from this row alone
    (1, 3)
    """

    def _fit_ratings(self, ratings) -> ItemKNN:
        R, base = self._fit_baseline(ratings)
        self._set_neighbours(item_neighbours(
            R, k=max(self.k, self.n_candidates), similarity=self.similarity,
            shrinkage=self.shrinkage, min_support=self.min_support,
            panel_bytes=self.panel_bytes,
            baseline=(base.global_mean_, base.user_bias_, base.item_bias_)))
        self.baseline_ = base
        self.ratings_ = R
        return self

    def _set_neighbours(self, neighbours: scipy.sparse.csr_matrix) -> None:
        """Keep ``neighbours`` and their prediction order (computed here, once:
        predicting leaves the model unchanged)."""
        self.neighbours_ = neighbours
        self._ordered_cache = (neighbours, ordered_neighbours(neighbours))

    def _ordered(self):
        """The neighbours in prediction order."""
        cached = getattr(self, "_ordered_cache", None)
        if cached is None or cached[0] is not self.neighbours_:
            return ordered_neighbours(self.neighbours_)  # set by hand: not cached
        return cached[1]

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "neighbours_")

    # -- input="matrix" -------------------------------------------------------------

    def _row_function(self):
        return functools.partial(knn_rows, ordered=self._ordered(),
                                 mu=float(self.global_mean_),
                                 item_bias=np.asarray(self.item_bias_, dtype=np.float64),
                                 reg_user=float(self.baseline_.reg_user), k=int(self.k),
                                 min_k=int(self.min_k))

    _ratings_function = _row_function

    def _residuals(self, users: np.ndarray) -> scipy.sparse.csr_matrix:
        """r_uj - b_uj at the training ratings of ``users`` (one row each)."""
        rows = user_rows(self.ratings_.by_user, users)
        counts = np.diff(rows.indptr)
        base = self.baseline_
        rows.data = (rows.data - base.global_mean_ - np.repeat(base.user_bias_[users], counts)
                     - base.item_bias_[rows.indices])
        return rows

    @pairs_only
    def predict(self, users, items=None) -> np.ndarray:
        """Predicted ratings of (user, item) pairs given as row/column indices
        (or as one (n, 2) array, where indices beyond the fit get the global
        mean). Not with ``input="matrix"``, where ``transform(X)`` gives the
        predicted ratings of the rows of a matrix."""
        if not hasattr(self, "neighbours_"):
            raise not_fitted("ItemKNN")
        m, n = len(self.user_ids), len(self.item_ids)
        if items is None:  # scikit-learn's form: unseen indices get the global mean
            return with_unseen(self.predict, (m, n), self.global_mean_, *pairs(users))
        users, items = self._pair_indices(users, items)
        return self.baseline_.predict(users, items) + grouped_terms(
            self._residuals, self._ordered(), users, items, k=self.k, min_k=self.min_k)

    def scores(self, users) -> np.ndarray:
        """Predicted ratings of every item for ``users``: len(users) x n."""
        users = as_index(users, len(self.user_ids), "users")
        return self.baseline_.scores(users) + knn_scores(self._residuals(users),
                                                         self._ordered(), k=self.k,
                                                         min_k=self.min_k)

    def similar_items(self, item: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and similarities of up to ``n`` nearest items of
        item index ``item`` (at most ``k``), most similar first."""
        item = int(as_index(item, len(self.item_ids), "items")[0])
        row = self.neighbours_[item]
        order = np.lexsort((row.indices, -row.data))[:n]
        return row.indices[order].astype(np.int64), row.data[order]

