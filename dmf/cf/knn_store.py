"""Saving and loading a fitted :class:`~dmf.cf.knn.ItemKNN`.

An item-kNN model is its top-k neighbour matrix (n x n, sparse), its
baseline biases, and the training ratings it predicts from. The result
group (``algorithm: cf-knn``) holds ``neighbours`` (a CSR group),
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
from dmf.cf.model import _ids
from dmf.engine.output import JobOutput, read_result_arrays
from dmf.errors import InputError
from dmf.store.api import open_matrix, save_matrix
from dmf.store.dense import commit_target, prepare_target
from dmf.store.location import Location

ALGORITHM = "cf-knn"
PARAMS = ("k", "similarity", "shrinkage", "min_support", "min_k", "n_candidates", "reg_user",
          "reg_item", "n_epochs")


def save_knn(model: ItemKNN, out: str | os.PathLike, *, overwrite: bool = False,
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
    ratings = model.ratings_
    if ratings.location is None:
        raise InputError("an item-kNN model predicts from its training ratings, which were "
                         "in memory: save them first (dmf.cf.save_ratings) and fit on the URL")
    location = Location.parse(out, storage_options)
    staging = prepare_target(location, overwrite)
    try:
        params = {name: getattr(model, name) for name in PARAMS}
        meta = {"algorithm": ALGORITHM, "parameters": params,
                "global_mean": float(model.global_mean_),
                "ratings": str(ratings.location), "ratings_token": ratings.token}
        output = JobOutput(staging)
        output.begin({"algorithm": ALGORITHM, "parameters": params, "input": ratings.token},
                     meta, fresh=True)
        save_matrix(model.neighbours_, staging.join("neighbours"), overwrite=True)
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


def load_knn(location: Location, meta: dict[str, Any]) -> ItemKNN:
    """The model of a ``cf-knn`` result group (see :func:`dmf.load`)."""
    from dmf.cf.store import open_ratings

    ratings = open_ratings(meta["ratings"], storage_options=location.storage_options)
    if ratings.token != meta.get("ratings_token"):
        raise InputError(f"{location}: its training ratings {meta['ratings']} changed since "
                         "the model was fitted; fit it again")
    arrays = read_result_arrays(location, meta)
    params = meta.get("parameters", {})
    model = ItemKNN(**{name: params[name] for name in PARAMS if name in params})
    baseline = Baseline(reg_user=model.reg_user, reg_item=model.reg_item,
                        n_epochs=model.n_epochs)
    baseline.global_mean_ = float(meta["global_mean"])
    baseline.user_bias_ = np.asarray(arrays["user_bias"])
    baseline.item_bias_ = np.asarray(arrays["item_bias"])
    baseline.item_counts_ = np.asarray(arrays["item_counts"])
    baseline.user_ids = np.asarray(arrays["user_ids"])
    baseline.item_ids = np.asarray(arrays["item_ids"])
    model.baseline_ = baseline
    model._set_neighbours(open_matrix(location.join("neighbours")).compute().tocsr())
    model.ratings_ = ratings
    return model
