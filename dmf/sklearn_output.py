"""scikit-learn's output API (``set_output``) and notebook display, without
scikit-learn as a dependency.

``Pipeline.set_output(transform="pandas")`` calls ``set_output`` on each
step, and then expects ``transform`` and ``fit_transform`` to return
DataFrames: :class:`SetOutputMixin` keeps that setting where scikit-learn
does (``_sklearn_output_config``, which ``sklearn.base.clone`` copies) and
wraps the two methods of every subclass, as scikit-learn's own mixin does.
Lazy (dask) results are returned as they are: a DataFrame would load them.
"""

from __future__ import annotations

import functools
import html
import sys
from typing import Any

import numpy as np

#: What ``set_output(transform=...)`` takes ("default": numpy arrays).
CONTAINERS = ("default", "pandas", "polars")
WRAPPED_METHODS = ("transform", "fit_transform")


def _wrap_method(method):
    @functools.wraps(method)
    def wrapped(self, X, *args, **kwargs):
        return self._wrap_output(method(self, X, *args, **kwargs), X)

    return wrapped


class SetOutputMixin:
    """``set_output`` and DataFrame output for ``transform`` and
    ``fit_transform``; ``_repr_html_`` as scikit-learn's estimators."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in WRAPPED_METHODS:
            method = cls.__dict__.get(name)
            if method is not None and not hasattr(method, "__wrapped__"):
                setattr(cls, name, _wrap_method(method))

    def set_output(self, *, transform: str | None = None):
        """The container ``transform`` and ``fit_transform`` return:
        "default" (numpy), "pandas", "polars"; None leaves it unchanged.
        As scikit-learn's ``set_output``; returns the estimator."""
        if transform is None:
            return self
        if transform not in CONTAINERS:
            raise ValueError(f"transform must be one of {', '.join(CONTAINERS)} or None, "
                             f"got {transform!r}")
        self._sklearn_output_config = {**getattr(self, "_sklearn_output_config", {}),
                                       "transform": transform}
        return self

    def _output_container(self) -> str:
        chosen = getattr(self, "_sklearn_output_config", {}).get("transform", "default")
        sklearn = sys.modules.get("sklearn")  # its global setting, if it is in use
        if chosen == "default" and sklearn is not None:
            chosen = sklearn.get_config().get("transform_output", "default")
        return chosen

    def _wrap_output(self, Y, X):
        container = self._output_container()
        if container == "default" or not isinstance(Y, np.ndarray):
            return Y
        columns = [str(c) for c in self.get_feature_names_out()]
        if container == "pandas":
            import pandas as pd

            index = X.index if isinstance(X, pd.DataFrame) else None
            return pd.DataFrame(Y, index=index, columns=columns, copy=False)
        import polars as pl

        return pl.DataFrame(Y, schema=columns, orient="row")

    def _repr_html_(self) -> str:
        """The notebook display: scikit-learn's diagram when it is
        installed, else the repr."""
        try:
            from sklearn.utils import estimator_html_repr
        except ImportError:
            return f"<pre>{html.escape(repr(self))}</pre>"
        return estimator_html_repr(self)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:  # noqa: ARG002
        return {"text/plain": repr(self), "text/html": self._repr_html_()}
