"""The baseline predictor r_hat_ui = mu + b_u + b_i, out of core.

The biases are regularized least squares, fitted by alternating sweeps as
Koren ("Factor in the neighbors", 2010) and Surprise's ``BaselineOnly``
(``method="als"``) do::

    b_i = sum_{u in R(i)} (r_ui - mu - b_u) / (reg_item + |R(i)|)
    b_u = sum_{i in R(u)} (r_ui - mu - b_i) / (reg_user + |R(u)|)

item biases first, then user biases, ``n_epochs`` times, from zero. Every
term is a sum over the ratings of one user (b_u) or of one item (b_i), so a
sweep is one pass over the user row blocks: the task of a block updates its
users' b_u from the current b_i and adds up, for the next b_i, each item's
sum of r_ui - mu - b_u over the block; dask's tree adds the n-vectors. A
first pass gives mu, the item counts and the first b_i (b_u = 0 then), so a
fit reads the ratings ``n_epochs + 1`` times, at O(nnz + n) work per block.

It is the bias part of the neighbourhood model (:mod:`dmf.cf.knn`) and the
popularity fallback of :mod:`dmf.cf.recommend`: item biases are item means
shrunk towards mu, so rarely rated items do not top the list.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import dask.array as da
import numpy as np

from dmf.blocks import full_rows, row_pass, row_sums
from dmf.cf.data import Ratings, as_ratings
from dmf.cf.rows import as_csr, as_index
from dmf.errors import InputError
from dmf.params import Estimator, Interval

# -- per block ---------------------------------------------------------------------


def _stats_block(block):
    """Each item's sum and count of ratings over a block of user rows, and
    the block's sum and count of ratings (:func:`_stats_parts`)."""
    X = as_csr(block)
    n = X.shape[1]
    sums = np.bincount(X.indices, weights=X.data, minlength=n)
    counts = np.bincount(X.indices, minlength=n).astype(np.float64)
    return {"item_sums": sums, "item_counts": counts, "total": X.data.sum(), "count": X.nnz}


def _stats_parts(n: int) -> dict[str, tuple[int, ...]]:
    return {"item_sums": (n,), "item_counts": (n,), "total": (), "count": ()}


def _sweep_block(block, _b_u, b_i_row, mu, reg_user):
    """The block's users' new b_u (from b_i, a 1 x n row), as a column, and
    the named sum ``item_sums``: each item's r_ui - mu - b_u over the block,
    with those new b_u."""
    X = as_csr(block)
    counts = np.diff(X.indptr)
    rows = np.repeat(np.arange(X.shape[0]), counts)
    resid = X.data - mu - b_i_row[0][X.indices]
    b_u = np.bincount(rows, weights=resid, minlength=X.shape[0]) / (reg_user + counts)
    item_sums = np.bincount(X.indices, weights=X.data - mu - b_u[rows], minlength=X.shape[1])
    return b_u[:, None], {"item_sums": item_sums}


# -- passes ------------------------------------------------------------------------


def _rating_stats(X: da.Array) -> tuple[float, np.ndarray, np.ndarray]:
    stats = row_sums(_stats_block, X, parts=_stats_parts(X.shape[1]))
    total, count = stats["total"], stats["count"]
    if count == 0:
        raise InputError("ratings: no ratings stored; a baseline needs at least one")
    return float(total / count), stats["item_sums"], stats["item_counts"]


def _sweep(X: da.Array, b_i: np.ndarray, mu: float, reg_user: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """One pass (:func:`dmf.blocks.row_pass`, b_u as an m x 1 factor and b_i
    as a 1 x n one): the users' b_u from ``b_i`` and the item sums for the
    next b_i."""
    start = da.zeros((X.shape[0], 1), chunks=(X.chunks[0], (1,)))  # never read
    b_u, sums = row_pass(_sweep_block, X, start, b_i[None], mu, reg_user,
                         parts={"item_sums": (X.shape[1],)})
    return np.asarray(b_u.compute())[:, 0], sums["item_sums"]


# -- public ------------------------------------------------------------------------


def baseline_biases(ratings, *, reg_user: float = 15.0, reg_item: float = 10.0,
                    n_epochs: int = 10) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The regularized biases of r_hat_ui = mu + b_u + b_i, out of core.

    Parameters
    ----------
    ratings : Ratings, scipy.sparse matrix or ratings store URL
    reg_user, reg_item : float
        Shrinkage of the user and item biases towards 0 (Surprise's
        ``reg_u`` = 15 and ``reg_i`` = 10 by default).
    n_epochs : int
        Alternating sweeps (item biases, then user biases); one pass over
        the ratings each, plus one for mu. 0 gives the global mean alone.

    Returns
    -------
    mu : float
        The mean of all ratings.
    user_bias : ndarray (m,)
    item_bias : ndarray (n,)
    item_counts : ndarray (n,)
        Ratings per item (the popularity of each item).

    Examples
    --------
    >>> import scipy.sparse
    >>> R = scipy.sparse.csr_matrix([[5.0, 3.0, 0], [4.0, 0, 1.0]])
    >>> mu, b_u, b_i, counts = baseline_biases(R, reg_user=0, reg_item=0, n_epochs=1)
    >>> mu, b_i.round(2).tolist(), b_u.round(2).tolist(), counts.tolist()
    (3.25, [1.25, -0.25, -2.25], [0.25, -0.25], [2.0, 1.0, 1.0])
    """
    if n_epochs < 0 or int(n_epochs) != n_epochs:
        raise InputError(f"n_epochs must be a non-negative integer, got {n_epochs!r}")
    if reg_user < 0 or reg_item < 0:
        raise InputError(f"reg_user and reg_item must be >= 0, got {reg_user}, {reg_item}")
    R = as_ratings(ratings)
    X = full_rows(R.by_user)
    m, n = X.shape
    mu, item_sums, counts = _rating_stats(X)
    b_u, b_i = np.zeros(m), np.zeros(n)
    if n_epochs == 0:
        return mu, b_u, b_i, counts
    denom_i = reg_item + counts
    # an item nobody rated has no sum: 0 / reg_item, or 0 when reg_item is 0
    safe = np.where(denom_i > 0, denom_i, 1.0)
    b_i = (item_sums - counts * mu) / safe  # first sweep: b_u = 0
    for epoch in range(int(n_epochs)):
        b_u, next_sums = _sweep(X, b_i, mu, reg_user)
        if epoch + 1 < n_epochs:
            b_i = next_sums / safe
    b_u = np.where(np.isfinite(b_u), b_u, 0.0)  # users without ratings and reg_user = 0
    return mu, b_u, b_i, counts


class Baseline(Estimator):
    """The bias model r_hat_ui = mu + b_u + b_i (see :func:`baseline_biases`).

    Implements the recommender protocol: ``user_ids``, ``item_ids``,
    ``predict(users, items)`` and ``scores(users)``; and scikit-learn's
    parameter protocol (:mod:`dmf.params`: ``get_params``, ``set_params``,
    the parameters checked at ``fit``).

    Parameters
    ----------
    reg_user, reg_item : float
        Regularization of the user and item biases.
    n_epochs : int
        Alternating sweeps, one pass over the ratings each (0: global mean).

    Attributes
    ----------
    global_mean_ : float
    user_bias_ : ndarray (m,)
    item_bias_ : ndarray (n,)
    item_counts_ : ndarray (n,)
        Ratings per item in the training data.
    user_ids, item_ids : ndarray
        External ids of the rows and columns the model was fitted on.

    Examples
    --------
    >>> import scipy.sparse
    >>> R = scipy.sparse.csr_matrix([[5.0, 3.0, 0], [4.0, 0, 1.0]])
    >>> model = Baseline(n_epochs=3).fit(R)
    >>> model.predict([0, 1], [0, 2]).round(3).tolist()
    [3.537, 2.965]
    >>> model.scores([0]).shape
    (1, 3)
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "reg_user": [Interval(Real, 0, None)],
        "reg_item": [Interval(Real, 0, None)],
        "n_epochs": [Interval(Integral, 0, None)],
    }

    def __init__(self, *, reg_user: float = 15.0, reg_item: float = 10.0, n_epochs: int = 10):
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_epochs = n_epochs

    def fit(self, ratings) -> Baseline:
        """Fit the biases to ``ratings`` (a Ratings, scipy.sparse matrix or
        ratings store URL); returns the model."""
        self._validate_params()
        R: Ratings = as_ratings(ratings)
        self.global_mean_, self.user_bias_, self.item_bias_, self.item_counts_ = baseline_biases(
            R, reg_user=self.reg_user, reg_item=self.reg_item, n_epochs=self.n_epochs)
        self.user_ids, self.item_ids = R.user_ids, R.item_ids
        return self

    def predict(self, users, items) -> np.ndarray:
        """mu + b_u + b_i for each (user, item) pair of row/column indices."""
        users = as_index(users, len(self.user_bias_), "users")
        items = as_index(items, len(self.item_bias_), "items")
        if users.shape != items.shape:
            raise InputError(f"users and items must have the same length, got {users.size} "
                             f"and {items.size}")
        return self.global_mean_ + self.user_bias_[users] + self.item_bias_[items]

    def scores(self, users) -> np.ndarray:
        """Predicted ratings of every item for ``users``: len(users) x n."""
        users = as_index(users, len(self.user_bias_), "users")
        return (self.global_mean_ + self.user_bias_[users][:, None]) + self.item_bias_[None, :]
