"""User-based kNN with baseline (Surprise's KNNBaseline, ``user_based=True``).

The item model of :mod:`dmf.cf.knn` with the roles of users and items
swapped: similarities between users over the items both rated (computed
out of core by :func:`~dmf.cf.knn.item_neighbours` on the transposed
ratings, in panels of users, each user's ``n_candidates`` best kept), and::

    r_hat_ui = b_ui + sum_v s_uv (r_vi - b_vi) / sum_v s_uv

over the k users v most similar to u *among those who rated i*. Pairs are
grouped by item, so one item's raters are read once (from ``by_item``).
With ``input="matrix"`` the rows of a new matrix are new users, compared
with the training users (:mod:`dmf.cf.user_knn_rows`).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse

from dmf.cf.data import Ratings
from dmf.cf.knn import NeighbourModel, grouped_terms, item_neighbours
from dmf.cf.knn_kernels import ordered_neighbours
from dmf.cf.matrix import pairs_only
from dmf.cf.params import pairs, with_unseen
from dmf.cf.rows import as_index, user_rows
from dmf.cf.user_knn_rows import item_means, user_knn_rows
from dmf.errors import not_fitted


def transposed(R: Ratings) -> Ratings:
    """The same ratings with users and items swapped (no copy)."""
    return Ratings(by_user=R.by_item, by_item=R.by_user, user_ids=R.item_ids,
                   item_ids=R.user_ids, token=f"{R.token}:T")


class UserKNN(NeighbourModel):
    """User-based kNN with baseline (Surprise's KNNBaseline on users), out of core.

    Implements the recommender protocol: ``user_ids``, ``item_ids``,
    ``predict(users, items)`` and ``scores(users)``; ``similar_users``.

    Parameters
    ----------
    k : int
        Neighbours a prediction uses (among the users who rated the item).
    similarity : {"pearson_baseline", "cosine", "adjusted_cosine", "pearson"}
        Between users, over the items both rated.
    shrinkage, min_support, min_k, reg_user, reg_item, n_epochs, panel_bytes
        As :class:`~dmf.cf.knn.ItemKNN`.
    n_candidates : int
        Most similar users stored per user (exactly Surprise's rule when
        >= n_users - 1).
    input : {"auto", "pairs", "matrix"}
        What ``fit``, ``predict`` and ``score`` take, as
        :class:`~dmf.cf.knn.ItemKNN`'s. "matrix": a scikit-learn
        transformer of a ratings matrix X (users x items; every entry of a
        dense X is a rating, the stored entries of a sparse one): ``fit``
        learns the training users' neighbourhoods and biases;
        ``transform(X)`` is the predicted rating of every item for each row
        of X as a *new* user, its similarities to the training users
        computed from its own ratings (:mod:`dmf.cf.user_knn_rows`; two
        reads of the training ratings per 2048 rows). A row that repeats a
        training user predicts that user's unrated items as ``scores`` does
        (the user itself rated none of them, so it is no neighbour there).
        ``score(X)`` is R^2 over X's observed entries. No ``predict`` in
        this mode.

    Attributes
    ----------
    user_neighbours_ : scipy.sparse.csr_matrix
        m x m, row u: similarities of u's nearest users.
    baseline_ : Baseline
    ratings_ : Ratings
    n_features_in_ : int
        ``input="matrix"``: n_items.

    Examples
    --------
    >>> import scipy.sparse
    >>> R = scipy.sparse.csr_matrix([[5.0, 4.0, 1.0], [4.0, 5.0, 0], [1.0, 0, 5.0]])
    >>> model = UserKNN(k=2, similarity="cosine", shrinkage=0).fit(R)
    >>> model.predict([1], [2]).round(3).tolist()
    [3.178]
    >>> model.scores([0, 1]).shape
    (2, 3)
    >>> users = UserKNN(k=2, similarity="cosine", shrinkage=0, input="matrix").fit(R.toarray())
    >>> users.transform([[5.0, 4.0, 0.0]]).shape       # every item, for a new user
    (1, 3)
    """

    def _fit_ratings(self, ratings) -> UserKNN:
        R, base = self._fit_baseline(ratings)
        self.user_neighbours_ = item_neighbours(
            transposed(R), k=max(self.k, self.n_candidates), similarity=self.similarity,
            shrinkage=self.shrinkage, min_support=self.min_support,
            panel_bytes=self.panel_bytes,
            baseline=(base.global_mean_, base.item_bias_, base.user_bias_))
        self._ordered = ordered_neighbours(self.user_neighbours_)
        self.baseline_ = base
        self.ratings_ = R
        return self

    # -- input="matrix" -------------------------------------------------------------

    def _row_function(self):
        base = self.baseline_
        return functools.partial(
            user_knn_rows, ratings=self.ratings_, mu=float(base.global_mean_),
            user_bias=np.asarray(base.user_bias_, dtype=np.float64),
            item_bias=np.asarray(base.item_bias_, dtype=np.float64),
            item_mean=item_means(self.ratings_) if self.similarity == "adjusted_cosine"
            else None,
            reg_user=float(base.reg_user), k=int(self.k), min_k=int(self.min_k),
            n_candidates=int(max(self.k, self.n_candidates)), similarity=self.similarity,
            shrinkage=float(self.shrinkage), min_support=int(self.min_support),
            panel_bytes=int(self.panel_bytes))

    _ratings_function = _row_function

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "user_neighbours_")

    def _item_residuals(self, items: np.ndarray) -> scipy.sparse.csr_matrix:
        """r_vi - b_vi at the training ratings of ``items`` (one row each, users
        as columns)."""
        rows = user_rows(self.ratings_.by_item, items)
        base = self.baseline_
        rows.data = (rows.data - base.global_mean_ - base.user_bias_[rows.indices]
                     - np.repeat(base.item_bias_[items], np.diff(rows.indptr)))
        return rows

    @pairs_only
    def predict(self, users, items=None) -> np.ndarray:
        """Predicted ratings of (user, item) pairs given as row/column indices
        (or as one (n, 2) array, where indices beyond the fit get the global
        mean)."""
        if not hasattr(self, "user_neighbours_"):
            raise not_fitted("UserKNN")
        m, n = len(self.user_ids), len(self.item_ids)
        if items is None:
            return with_unseen(self.predict, (m, n), self.global_mean_, *pairs(users))
        users, items = self._pair_indices(users, items)
        return self.baseline_.predict(users, items) + grouped_terms(
            self._item_residuals, self._ordered, items, users, k=self.k, min_k=self.min_k)

    def scores(self, users) -> np.ndarray:
        """Predicted ratings of every item for ``users``: len(users) x n (reads
        every item's ratings)."""
        users = as_index(users, len(self.user_ids), "users")
        n = len(self.item_ids)
        terms = grouped_terms(self._item_residuals, self._ordered, np.repeat(np.arange(n),
                              users.size), np.tile(users, n), k=self.k, min_k=self.min_k)
        return self.baseline_.scores(users) + terms.reshape(n, users.size).T

    def similar_users(self, user: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Row indices and similarities of up to ``n`` nearest users of user
        index ``user``, most similar first."""
        user = int(as_index(user, len(self.user_ids), "users")[0])
        row = self.user_neighbours_[user]
        order = np.lexsort((row.indices, -row.data))[:n]
        return row.indices[order].astype(np.int64), row.data[order]
