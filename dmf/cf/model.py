"""The fitted latent-factor model: rating(u, i) ~ mu + b_u + b_i + p_u . q_i.

Every latent-factor solver (explicit ALS, implicit ALS, SGD, masked NMF)
returns a :class:`LatentFactors`; its store (``out=``) is a result group with
arrays ``P`` (m x k, tall, read back lazily), ``Q`` (n x k), ``user_bias``,
``item_bias``, ``user_ids``, ``item_ids`` and ``attrs["dmf"]`` holding the
algorithm, parameters, ``global_mean``, ``n_iter`` and the loss history.
Models without biases (implicit ALS, masked NMF) store zero biases and a
zero global mean, so ``predict`` and ``scores`` mean the same everywhere:
for implicit ALS they are preference scores, not ratings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from dmf.engine.fitted import FittedRun
from dmf.engine.output import read_complete_result
from dmf.errors import InputError


def _ids(values) -> np.ndarray:
    """Ids as an array zarr stores without warnings: numbers as they are,
    strings as numpy's variable-length StringDType."""
    values = np.asarray(values)
    if values.dtype.kind in "iufb":
        return values
    return values.astype(np.dtypes.StringDType())


def _indices(values, size: int, what: str) -> np.ndarray:
    idx = np.asarray(values)
    if idx.dtype.kind not in "iu":
        raise InputError(f"{what} must be integer row/column indices (0..{size - 1}); map "
                         f"external ids with the model's {what[:-1]}_ids first")
    idx = idx.astype(np.int64, copy=False)
    if idx.size and (idx.min() < -size or idx.max() >= size):
        raise InputError(f"{what}: index out of range 0..{size - 1}")
    return idx


@dataclass
class LatentFactors(FittedRun):
    """A fitted latent-factor model, rating ~ mu + b_u + b_i + p_u . q_i.

    Attributes
    ----------
    P : numpy.ndarray or dask.array.Array
        m x k user factors (lazy when read back from a store).
    Q : numpy.ndarray
        n x k item factors.
    user_bias, item_bias : numpy.ndarray
        b_u (m) and b_i (n); zeros for models without biases.
    global_mean : float
        mu; 0 for models without biases.
    user_ids, item_ids : numpy.ndarray
        External id of each row of P and of Q.
    algorithm : str
        ``cf-als``, ``cf-als-implicit``, ``cf-sgd`` or ``cf-masked-nmf``.
    n_iter : int
    loss_history : list of float
        The training objective after each iteration (epoch for SGD).
    converged : bool
    location : str or None
    attrs : dict
        Parameters, timings, ``train_rmse``, fingerprint.

    Examples
    --------
    Fitted by :func:`dmf.cf.als` or :func:`dmf.cf.sgd`, or built by hand:

    >>> import numpy as np
    >>> m = LatentFactors(P=np.ones((3, 2)), Q=np.full((4, 2), 0.5),
    ...                   user_bias=np.zeros(3), item_bias=np.zeros(4), global_mean=3.0,
    ...                   user_ids=np.array(["a", "b", "c"]), item_ids=np.arange(4))
    >>> m.shape, m.predict([0], [3]).tolist()
    ((3, 4), [4.0])
    """

    P: Any
    Q: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray
    global_mean: float
    user_ids: np.ndarray
    item_ids: np.ndarray
    algorithm: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.P.shape[0]), int(self.Q.shape[0]))

    def _user_rows(self, users: np.ndarray) -> np.ndarray:
        if isinstance(self.P, da.Array):
            return np.asarray(self.P[users].compute(), dtype=np.float64)
        return np.asarray(self.P[users], dtype=np.float64)

    def predict(self, users, items) -> np.ndarray:
        """Predicted ratings for pairs (users[j], items[j]) of row / column
        indices.

        Examples
        --------
        >>> import numpy as np
        >>> m = LatentFactors(P=np.array([[1.0], [2.0]]), Q=np.array([[1.0], [0.5]]),
        ...                   user_bias=np.zeros(2), item_bias=np.array([0.0, 1.0]),
        ...                   global_mean=3.0, user_ids=np.arange(2), item_ids=np.arange(2))
        >>> m.predict([0, 1], [1, 0]).tolist()
        [4.5, 5.0]
        """
        m, n = self.shape
        users = _indices(users, m, "users")
        items = _indices(items, n, "items")
        if users.shape != items.shape:
            raise InputError(f"users and items must pair up: {users.shape} vs {items.shape}")
        Pu = self._user_rows(users.ravel())
        Qi = np.asarray(self.Q, dtype=np.float64)[items.ravel()]
        out = (self.global_mean + np.asarray(self.user_bias, dtype=np.float64)[users.ravel()]
               + np.asarray(self.item_bias, dtype=np.float64)[items.ravel()]
               + np.einsum("ij,ij->i", Pu, Qi))
        return out.reshape(users.shape)

    def scores(self, users) -> np.ndarray:
        """Predicted ratings of every item for each of ``users`` (row
        indices): a (len(users), n_items) array.

        Examples
        --------
        >>> import numpy as np
        >>> m = LatentFactors(P=np.array([[1.0], [2.0]]), Q=np.array([[1.0], [0.5]]),
        ...                   user_bias=np.zeros(2), item_bias=np.zeros(2),
        ...                   global_mean=0.0, user_ids=np.arange(2), item_ids=np.arange(2))
        >>> m.scores([1]).tolist()
        [[2.0, 1.0]]
        """
        users = _indices(np.atleast_1d(users), self.shape[0], "users").ravel()
        Pu = self._user_rows(users)
        return (self.global_mean + np.asarray(self.user_bias, dtype=np.float64)[users, None]
                + np.asarray(self.item_bias, dtype=np.float64)[None, :]
                + Pu @ np.asarray(self.Q, dtype=np.float64).T)

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], meta: dict[str, Any], *,
                    location: str | None = None) -> LatentFactors:
        """A model from a result's arrays and ``attrs["dmf"]``."""
        return cls(P=arrays["P"], Q=np.asarray(arrays["Q"]),
                   user_bias=np.asarray(arrays["user_bias"]),
                   item_bias=np.asarray(arrays["item_bias"]),
                   global_mean=float(meta.get("global_mean", 0.0)),
                   user_ids=np.asarray(arrays["user_ids"]),
                   item_ids=np.asarray(arrays["item_ids"]),
                   algorithm=str(meta.get("algorithm", "")),
                   **cls.stored_facts(meta, location))

    @classmethod
    def from_run(cls, run) -> LatentFactors:
        """The model of an engine :class:`~dmf.engine.driver.RunResult`."""
        meta = run.attrs()
        meta.setdefault("n_iter", run.n_iter)
        meta.setdefault("loss_history", run.loss_history)
        meta.setdefault("converged", run.converged)
        return cls.from_arrays(run.arrays, meta, location=run.url)

    @classmethod
    def load(cls, url: str | os.PathLike, *, storage_options: dict | None = None
             ) -> LatentFactors:
        """The model stored at ``url`` by a fit with ``out=`` (:func:`dmf.load`,
        refusing anything that is not a latent-factor model)."""
        location, meta, arrays = read_complete_result(url, storage_options)
        algorithm = meta.get("algorithm", "")
        if not algorithm.startswith("cf-") or algorithm in ("cf-knn", "cf-user-knn"):
            raise InputError(f"{url}: holds a {algorithm or 'result'} result, not a "
                             "latent-factor model")
        return cls.from_arrays(arrays, meta, location=str(location))


def result_arrays(P, Q, user_bias, item_bias, ratings, dtype) -> dict[str, Any]:
    """What a fit stores: tall P lazily, the rest in memory, in the
    ratings' float dtype."""
    dtype = np.float32 if np.dtype(dtype) == np.float32 else np.float64
    return {"P": P.astype(dtype), "Q": np.asarray(Q, dtype=dtype),
            "user_bias": np.asarray(user_bias, dtype=dtype),
            "item_bias": np.asarray(item_bias, dtype=dtype),
            "user_ids": _ids(ratings.user_ids), "item_ids": _ids(ratings.item_ids)}
