"""What the CF estimator classes share: scikit-learn's parameter protocol
(:mod:`dmf.params`), tags and score (:class:`CFEstimator`, every model but
``Baseline``; with ``input="matrix"`` the transformer protocol of
:mod:`dmf.cf.matrix`), and the fitted attributes and predictions of a
:class:`~dmf.cf.model.LatentFactors` (:class:`LatentFactorsMixin`, ALS and
SGD); the entries their constraints tables share (:data:`LATENT_CONSTRAINTS`)."""

from __future__ import annotations

import functools
from numbers import Integral
from typing import Any

import dask.array as da
import numpy as np
import scipy.sparse

from dmf.blocks import Piece, row_blocks
from dmf.cf.matrix import (
    INPUTS,
    MatrixMixin,
    latent_predictions,
    latent_ratings,
    latent_rows,
    matrix_only,
    pairs_only,
)
from dmf.cf.model import LatentFactors
from dmf.engine.options import NAMES as RUN_OPTION_NAMES
from dmf.errors import InputError, not_fitted
from dmf.params import Estimator, Interval, Options
from dmf.store.ratings import ratings_csr
from dmf.validation import run_option_constraints, transformer_tags

#: The constraints-table entries ALS and SGD share: k, seed, input and the
#: run options (each class adds its own solver's parameters).
LATENT_CONSTRAINTS: dict[str, list[Any]] = {
    "k": [Interval(Integral, 1, None)],
    "seed": [Interval(Integral, 0, None), None],
    "input": [Options(*INPUTS)],
    **run_option_constraints("out", "checkpoint_every", "progress", "options"),
}



def _named(predict, block) -> dict[str, np.ndarray]:
    """Predicted ratings of a block of rows, by name (for :func:`row_blocks`)."""
    return {"ratings": predict(block)}

class CFEstimator(Estimator, MatrixMixin):
    """A CF model as a scikit-learn estimator: the parameter protocol of
    :class:`dmf.params.Estimator` (a subclass gives its
    ``_parameter_constraints``, checked at the start of ``fit``), its tags,
    and ``score`` over ``predict``."""

    def fit(self, R, y=None):
        """Fit to ratings ``R`` (anything :func:`dmf.cf.data.as_ratings` takes),
        or to ``fit(X, y)``: (user, item) index pairs and their ratings. With
        ``input="matrix"``: to the ratings matrix X (y ignored)."""
        self._validate_params()
        if self._matrix_mode():
            return self._fit_matrix(R)
        return self._fit_ratings(ratings_input(R, y))

    def _fit_ratings(self, ratings):
        """Fit the model to ``ratings`` (a ratings source); returns self."""
        raise NotImplementedError

    def _solver_params(self) -> dict[str, Any]:
        """The parameters the model's function takes (all but ``input``;
        run options left at None are left out, so ``options`` may carry them)."""
        return {k: v for k, v in self.get_params(deep=False).items()
                if k != "input" and not (k in RUN_OPTION_NAMES and v is None)}

    def __sklearn_tags__(self):
        # scikit-learn calls this (and only then is it imported)
        if self._matrix_mode():  # a transformer of a ratings matrix, as NMF
            return transformer_tags(positive_only=self._positive_only(),
                                    preserves_dtype=["float64", "float32"])
        # a regressor of ratings from (user, item) pairs, or a fit to a ratings matrix
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=False),
                    regressor_tags=RegressorTags(),
                    input_tags=InputTags(sparse=True, allow_nan=False))

    def score(self, X, y=None) -> float:
        """R^2 of the predicted ratings of the (user, item) pairs ``X``
        against ``y`` (scikit-learn's regressor score: higher is better), so
        that ``GridSearchCV`` can choose parameters on held-out ratings.

        With ``input="matrix"``: R^2 over the observed entries of the ratings
        matrix X (y is ignored) of their predictions from each row's own
        ratings against the fitted item side (the user side folded in from
        those same rows): how well the item side explains the rows (implicit
        ALS predicts preferences, not ratings: its R^2 means little)."""
        if self._matrix_mode():
            return self._score_matrix(X)
        if y is None:
            raise InputError("score(X, y) takes (user, item) pairs and their ratings y; "
                             "score a ratings matrix with input='matrix'")
        return r2(np.asarray(y, dtype=np.float64), self.predict(X))


class LatentFactorsMixin(CFEstimator):
    """A model fitted as a :class:`~dmf.cf.model.LatentFactors` (``model_``):
    its fitted attributes, predictions, and the ids that make a fitted
    estimator a model for :func:`dmf.cf.evaluate` and :func:`dmf.cf.recommend`."""

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def _fold_spec(self) -> dict[str, Any]:
        """How ``transform`` folds a row in (see :func:`dmf.cf.matrix.latent_rows`)."""
        return {"kind": "explicit", "biases": True, "reg": float(self.reg)}

    def _set_model(self, model: LatentFactors):
        # the fold-in as the model was fitted, whatever set_params does later
        self._fold = self._fold_spec()
        self.model_ = model
        P = model.P
        self.P_ = np.asarray(P.compute() if hasattr(P, "compute") else P)
        self.Q_ = np.asarray(model.Q)
        self.user_bias_ = model.user_bias
        self.item_bias_ = model.item_bias
        self.global_mean_ = model.global_mean
        self.loss_history_ = model.loss_history
        self.n_iter_ = model.n_iter
        if self._matrix_mode():
            self.components_ = self.Q_.T
            self.n_components_ = self.Q_.shape[1]
        return self

    # -- input="matrix" -------------------------------------------------------------

    def _biased(self) -> bool:
        return self._fold["kind"] == "explicit" and self._fold["biases"]

    def _n_items(self) -> int:
        return self.model_.shape[1]

    def _transform_width(self) -> int:
        return self.Q_.shape[1] + self._biased()

    def _arrays(self) -> dict[str, Any]:
        return {"Q": self.Q_, "item_bias": np.asarray(self.item_bias_, dtype=np.float64),
                "mu": float(self.global_mean_)}

    def _row_function(self):
        return functools.partial(latent_rows, fold=self._fold, **self._arrays())

    def _ratings_function(self):
        return functools.partial(latent_predictions, fold=self._fold, **self._arrays())

    @matrix_only
    def inverse_transform(self, X):
        """``input="matrix"``: predicted ratings of every item from user
        factors X (``transform``'s output: [P | b_u], P without biases):
        mu + b_u + b_i + P Q^T. numpy in, numpy out; dask in, dask out."""
        self._fitted()
        predict = functools.partial(latent_ratings, biases=self._biased(), **self._arrays())
        if not isinstance(X, da.Array):
            X = np.asarray(X.toarray() if scipy.sparse.issparse(X) else X)
        width = self._transform_width()
        if X.ndim != 2 or X.shape[1] != width:
            raise InputError(f"inverse_transform takes transform's output, {width} columns, "
                             f"got shape {X.shape}")
        if isinstance(X, da.Array):
            each = {"ratings": Piece((None, self._n_items()))}
            return row_blocks(functools.partial(_named, predict), X, each=each).each["ratings"]
        return predict(X)

    # What dmf.cf.recommend / evaluate need of a model, read from the fitted
    # one, so a fitted estimator can be passed where a model is taken.
    @property
    def user_ids(self) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise AttributeError("user_ids: not fitted")
        return self.model_.user_ids

    @property
    def item_ids(self) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise AttributeError("item_ids: not fitted")
        return self.model_.item_ids

    def _fitted(self) -> LatentFactors:
        if not hasattr(self, "model_"):
            raise not_fitted(type(self).__name__)
        return self.model_

    @pairs_only
    def predict(self, users, items=None) -> np.ndarray:
        """Predicted ratings for pairs of row / column indices: ``predict(users,
        items)``, or ``predict(X)`` with X an (n, 2) array of (user, item)
        pairs, as scikit-learn's regressors take their input. In that form a
        user or item index beyond those of the fit (a cross-validation fold
        may hold the only ratings of one) is predicted as the global mean;
        ``predict(users, items)`` refuses it. Not with ``input="matrix"``
        (scikit-learn's ``predict`` gives one value a row): the predicted
        ratings of a matrix's rows are ``inverse_transform(transform(X))``."""
        model = self._fitted()
        if items is not None:
            return model.predict(users, items)
        return with_unseen(model.predict, model.shape, model.global_mean, *pairs(users))

    def scores(self, users) -> np.ndarray:
        """Predicted ratings of every item for each of ``users``."""
        return self._fitted().scores(users)


def pairs(users, items=None) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) from two index arrays, or from one (n, 2) array."""
    if items is not None:
        return users, items
    X = np.asarray(users)
    if X.ndim != 2 or X.shape[1] != 2:
        raise InputError(f"predict(X) takes an (n, 2) array of (user, item) indices, got "
                         f"shape {X.shape}; or call predict(users, items)")
    return X[:, 0].astype(np.int64), X[:, 1].astype(np.int64)


def ratings_input(R, y=None):
    """What ``fit(R)`` or ``fit(X, y)`` was given, as ratings: ``fit(X, y)``
    with X an (n, 2) array of (user, item) indices and y their ratings (the
    way scikit-learn splits rows for cross-validation) becomes a sparse
    matrix of shape (max user + 1, max item + 1); a pair given twice keeps
    its last rating, with a warning (the rule of every entry point)."""
    if y is None:
        return R
    users, items = pairs(R)
    values = np.asarray(y, dtype=np.float64)
    if values.shape != users.shape:
        raise InputError(f"fit(X, y): y has {values.size} ratings for {users.size} pairs")
    if users.size and (users.min() < 0 or items.min() < 0):
        raise InputError("fit(X, y): user and item indices must be >= 0")
    shape = (int(users.max(initial=-1)) + 1, int(items.max(initial=-1)) + 1)
    return ratings_csr(scipy.sparse.coo_matrix((values, (users, items)), shape=shape),
                       name="fit(X, y)")


def r2(y: np.ndarray, predicted: np.ndarray) -> float:
    """The coefficient of determination, as ``sklearn.metrics.r2_score``."""
    residual = float(np.sum((y - predicted) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - residual / total if total > 0 else 0.0


def with_unseen(predict, shape: tuple[int, int], mean: float, users, items) -> np.ndarray:
    """``predict(users, items)`` where both indices are within ``shape``,
    ``mean`` elsewhere."""
    users = np.asarray(users, dtype=np.int64).ravel()
    items = np.asarray(items, dtype=np.int64).ravel()
    known = (users < shape[0]) & (items < shape[1])
    if known.all():
        return predict(users, items)
    out = np.full(users.shape, float(mean))
    if known.any():
        out[known] = predict(users[known], items[known])
    return out
