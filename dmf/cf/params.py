"""What the CF estimator classes share: scikit-learn's parameter protocol
and score (:class:`ParamsMixin`, every model), and the fitted attributes and
predictions of a :class:`~dmf.cf.model.LatentFactors`
(:class:`LatentFactorsMixin`, ALS and SGD)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from dmf.cf.model import LatentFactors


class ParamsMixin:
    """``get_params`` / ``set_params`` from the constructor's keywords (as
    scikit-learn's BaseEstimator), its tags, and ``score`` over ``predict``."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:  # noqa: ARG002
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; "
                                 f"valid: {', '.join(sorted(valid))}")
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self):
        # scikit-learn calls this (and only then is it imported): a regressor
        # of ratings from (user, item) pairs, or a fit to a ratings matrix
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=False),
                    regressor_tags=RegressorTags(),
                    input_tags=InputTags(sparse=True, allow_nan=False))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def score(self, X, y) -> float:
        """R^2 of the predicted ratings of the (user, item) pairs ``X``
        against ``y`` (scikit-learn's regressor score: higher is better), so
        that ``GridSearchCV`` can choose parameters on held-out ratings."""
        return r2(np.asarray(y, dtype=np.float64), self.predict(X))


class LatentFactorsMixin(ParamsMixin):
    """A model fitted as a :class:`~dmf.cf.model.LatentFactors` (``model_``):
    its fitted attributes, predictions, and the ids that make a fitted
    estimator a model for :func:`dmf.cf.evaluate` and :func:`dmf.cf.recommend`."""

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def _set_model(self, model: LatentFactors):
        self.model_ = model
        P = model.P
        self.P_ = np.asarray(P.compute() if hasattr(P, "compute") else P)
        self.Q_ = np.asarray(model.Q)
        self.user_bias_ = model.user_bias
        self.item_bias_ = model.item_bias
        self.global_mean_ = model.global_mean
        self.loss_history_ = model.loss_history
        self.n_iter_ = model.n_iter
        return self

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
            from dmf.errors import NotFittedError

            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(R) "
                                 "first")
        return self.model_

    def predict(self, users, items=None) -> np.ndarray:
        """Predicted ratings for pairs of row / column indices: ``predict(users,
        items)``, or ``predict(X)`` with X an (n, 2) array of (user, item)
        pairs, as scikit-learn's regressors take their input. In that form a
        user or item index beyond those of the fit (a cross-validation fold
        may hold the only ratings of one) is predicted as the global mean;
        ``predict(users, items)`` refuses it."""
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
        from dmf.errors import InputError

        raise InputError(f"predict(X) takes an (n, 2) array of (user, item) indices, got "
                         f"shape {X.shape}; or call predict(users, items)")
    return X[:, 0].astype(np.int64), X[:, 1].astype(np.int64)


def ratings_input(R, y=None):
    """What ``fit(R)`` or ``fit(X, y)`` was given, as ratings: ``fit(X, y)``
    with X an (n, 2) array of (user, item) indices and y their ratings (the
    way scikit-learn splits rows for cross-validation) becomes a sparse
    matrix of shape (max user + 1, max item + 1)."""
    if y is None:
        return R
    import scipy.sparse

    users, items = pairs(R)
    values = np.asarray(y, dtype=np.float64)
    if values.shape != users.shape:
        from dmf.errors import InputError

        raise InputError(f"fit(X, y): y has {values.size} ratings for {users.size} pairs")
    if users.size and (users.min() < 0 or items.min() < 0):
        from dmf.errors import InputError

        raise InputError("fit(X, y): user and item indices must be >= 0")
    shape = (int(users.max(initial=-1)) + 1, int(items.max(initial=-1)) + 1)
    return scipy.sparse.csr_matrix((values, (users, items)), shape=shape)


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
