"""What the CF estimator classes share: scikit-learn's parameter protocol
and the fitted attributes of a :class:`~dmf.cf.model.LatentFactors`."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from dmf.cf.model import LatentFactors


class ParamsMixin:
    """``get_params`` / ``set_params`` from the constructor's keywords (as
    scikit-learn's BaseEstimator), and the fitted attributes."""

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

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

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

    def _fitted(self) -> LatentFactors:
        if not hasattr(self, "model_"):
            from dmf.errors import InputError

            raise InputError(f"this {type(self).__name__} is not fitted yet: call fit(R) first")
        return self.model_

    def predict(self, users, items) -> np.ndarray:
        """Predicted ratings for pairs of row / column indices."""
        return self._fitted().predict(users, items)

    def scores(self, users) -> np.ndarray:
        """Predicted ratings of every item for each of ``users``."""
        return self._fitted().scores(users)
