"""Saving and loading a fitted :class:`~dmf.cf.knn.ItemKNN` or
:class:`~dmf.cf.user_knn.UserKNN`.

A kNN model is its top-k neighbour matrix (n x n items, or m x m users,
sparse), its baseline biases, and the training ratings it predicts from.
The result group (``algorithm: cf-knn`` for items, ``cf-user-knn`` for
users) holds ``neighbours`` (a CSR group),
``user_bias``, ``item_bias``, ``item_counts``, ``user_ids``, ``item_ids``,
and in ``attrs["dmf"]`` the parameters, the global mean and the URL and
token of the training ratings. The ratings are not copied: loading reopens
them and refuses them if they changed since the fit, since predictions made
from other ratings would silently mean something else.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dmf.cf.baseline import Baseline
from dmf.cf.knn import ItemKNN
from dmf.cf.knn_kernels import ordered_neighbours
from dmf.cf.model import _ids
from dmf.cf.store import open_ratings
from dmf.cf.user_knn import UserKNN
from dmf.engine.output import JobOutput, read_result_arrays
from dmf.errors import InputError
from dmf.store.api import open_matrix, save_matrix
from dmf.store.dense_write import commit_target, prepare_target
from dmf.store.location import Location

ALGORITHM = "cf-knn"
USER_ALGORITHM = "cf-user-knn"
#: The saved form of each model class: (algorithm, its neighbours' attribute).
FORMS = {ItemKNN: (ALGORITHM, "neighbours_"), UserKNN: (USER_ALGORITHM, "user_neighbours_")}
PARAMS = ("k", "similarity", "shrinkage", "min_support", "min_k", "n_candidates", "reg_user",
          "reg_item", "n_epochs", "input")


def save_knn(model: ItemKNN | UserKNN, out: str | os.PathLike, *, overwrite: bool = False,
             storage_options: dict[str, Any] | None = None) -> str:
    """Write a fitted ``model`` to ``out``; returns the URL.

    The model must have been fitted on stored ratings (a URL): they are
    needed to predict and are referenced, not copied.

    Examples
    --------
    >>> import scipy.sparse, dmf
    >>> R = scipy.sparse.csr_matrix([[5.0, 4.0, 1.0], [4.0, 5.0, 0], [1.0, 0, 5.0]])
    >>> url = dmf.cf.save_ratings(R, "memory://doc/knn-ratings.zarr")
    >>> model = ItemKNN(k=2, shrinkage=0, min_support=2).fit(url)
    >>> _ = save_knn(model, "memory://doc/knn.zarr")
    >>> dmf.load("memory://doc/knn.zarr").predict([1], [2]).round(3).tolist()
    [3.588]
    """
    if type(model) not in FORMS:
        raise InputError(f"save_knn saves an ItemKNN or a UserKNN, got {type(model).__name__}")
    algorithm, attribute = FORMS[type(model)]
    if not hasattr(model, attribute):
        raise InputError(f"the {type(model).__name__} is not fitted: fit it before saving it")
    ratings = model.ratings_
    if ratings.location is None:
        raise InputError("a kNN model predicts from its training ratings, which were in "
                         "memory: save them first (dmf.cf.save_ratings) and fit on the URL")
    location = Location.parse(out, storage_options)
    staging = prepare_target(location, overwrite)
    try:
        params = {name: getattr(model, name) for name in PARAMS}
        meta = {"algorithm": algorithm, "parameters": params,
                "global_mean": float(model.global_mean_),
                "ratings": str(ratings.location), "ratings_token": ratings.token}
        output = JobOutput(staging)
        output.begin({"algorithm": algorithm, "parameters": params, "input": ratings.token},
                     meta, fresh=True)
        save_matrix(getattr(model, attribute), staging.join("neighbours"), overwrite=True)
        output.write_result({"user_bias": model.user_bias_, "item_bias": model.item_bias_,
                             "item_counts": model.item_counts_,
                             "user_ids": _ids(model.user_ids), "item_ids": _ids(model.item_ids)},
                            {**meta, "n_iter": int(model.n_epochs)})
    except BaseException:
        if staging != location:
            staging.remove()
        raise
    commit_target(staging, location)
    return str(location)


def load_knn(location: Location, meta: dict[str, Any]) -> ItemKNN | UserKNN:
    """The model of a ``cf-knn`` or ``cf-user-knn`` result group (see
    :func:`dmf.load`)."""
    ratings = open_ratings(meta["ratings"], storage_options=location.storage_options)
    if ratings.token != meta.get("ratings_token"):
        raise InputError(f"{location}: its training ratings {meta['ratings']} changed since "
                         "the model was fitted; fit it again")
    arrays = read_result_arrays(location, meta)
    params = meta.get("parameters", {})
    cls = UserKNN if meta["algorithm"] == USER_ALGORITHM else ItemKNN
    model = cls(**{name: params[name] for name in PARAMS if name in params})
    baseline = Baseline(reg_user=model.reg_user, reg_item=model.reg_item,
                        n_epochs=model.n_epochs)
    baseline.global_mean_ = float(meta["global_mean"])
    baseline.user_bias_ = np.asarray(arrays["user_bias"])
    baseline.item_bias_ = np.asarray(arrays["item_bias"])
    baseline.item_counts_ = np.asarray(arrays["item_counts"])
    baseline.user_ids = np.asarray(arrays["user_ids"])
    baseline.item_ids = np.asarray(arrays["item_ids"])
    model.baseline_ = baseline
    neighbours = open_matrix(location.join("neighbours")).compute().tocsr()
    if cls is UserKNN:
        model.user_neighbours_ = neighbours
        model._ordered = ordered_neighbours(neighbours)
    else:
        model._set_neighbours(neighbours)
    model.ratings_ = ratings
    if model.input == "matrix":
        model.n_features_in_ = len(baseline.item_ids)
    return model
