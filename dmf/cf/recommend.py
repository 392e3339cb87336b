"""Top-n recommendation from any fitted model, one user or all of them.

Works on any object that implements the recommender protocol (``user_ids``,
``item_ids``, ``predict(users, items)``, ``scores(users)``): the item-kNN
and baseline models here, the latent-factor ALS and SGD models. Users are
named by their external ids; items come back as external ids.

**Cold start.** A user who is not in the model, or who has no training
ratings, gets the popularity fallback instead of the model's scores, and
the result says so (``cold_start``; ``known`` tells the two cases apart)
with a :class:`~dmf.errors.DmfWarning`, never an exception. Popularity is
the model's item biases when it has them (``mu + b_i``: item means shrunk
towards the global mean, so an item rated once at 5 does not top the list),
else the number of ratings of each item (one pass over the ratings).

**All users** (:func:`recommend_all`) are scored a user block at a time on
the client (``len(block) x n`` dense scores, blocks sized by ``score_bytes``)
and written to a Zarr group as they come; ``complete`` is set in its attrs
last, so a reader can tell a finished table from an interrupted one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse
import zarr

from dmf._version import __version__
from dmf.cf.data import Ratings, as_ratings
from dmf.cf.passes import item_counts
from dmf.cf.rows import as_csr, block_bounds, user_rows
from dmf.errors import DmfWarning, InputError, StoreError, warn
from dmf.store.dense_write import commit_target, prepare_target
from dmf.store.dims import dimension_names
from dmf.store.location import Location, dmf_attrs

#: Most bytes of dense scores held at once (one user block x all items).
SCORE_BYTES = 128 * 2**20

_PROTOCOL = ("user_ids", "item_ids", "predict", "scores")


@dataclass(frozen=True)
class Recommendation:
    """Top-n items for one user.

    Attributes
    ----------
    user : object
        The external user id asked for.
    items : ndarray
        External ids of the recommended items, best first.
    scores : ndarray
        Their scores (predicted ratings, or popularity for a cold start).
    indices : ndarray
        Their column indices.
    known : bool
        The user is one of the model's users.
    cold_start : bool
        The popularity fallback was used (unknown user, or no training
        ratings).

    Examples
    --------
    >>> import scipy.sparse, dmf
    >>> R = scipy.sparse.csr_matrix([[5.0, 0, 3.0, 0], [4.0, 2.0, 0, 5.0]])
    >>> rec = dmf.cf.recommend(dmf.cf.Baseline().fit(R), R, 0, n=2)
    >>> rec.items.tolist(), rec.known, rec.cold_start
    ([3, 1], True, False)
    """

    user: Any
    items: np.ndarray
    scores: np.ndarray
    indices: np.ndarray
    known: bool
    cold_start: bool


# -- helpers -----------------------------------------------------------------------


def check_model(model) -> None:
    missing = [name for name in _PROTOCOL if not hasattr(model, name)]
    if missing:
        raise InputError(f"{type(model).__name__} is not a fitted recommender: it lacks "
                         f"{', '.join(missing)}; fit it first, or pass a model with user_ids, "
                         "item_ids, predict(users, items) and scores(users)")


def check_ratings(model, R: Ratings, name: str = "ratings") -> None:
    expected = (len(model.user_ids), len(model.item_ids))
    if tuple(R.shape) != expected:
        raise InputError(f"{name} are {R.shape[0]} x {R.shape[1]} but the model was fitted "
                         f"on {expected[0]} users x {expected[1]} items; pass the ratings "
                         "the model was trained on (or a split of them)")


def score_rows(n_items: int, score_bytes: int = SCORE_BYTES) -> int:
    """Users scored at once so that their dense scores take ``score_bytes``."""
    return int(max(1, score_bytes // (8 * max(n_items, 1))))


_COUNTS_CACHE: dict[str, np.ndarray] = {}


def popularity(model, ratings=None) -> np.ndarray:
    """The fallback score of every item: ``mu + b_i`` when the model has
    non-zero item biases (``item_bias_`` / ``global_mean_`` here,
    ``item_bias`` / ``global_mean`` on the latent-factor models), else its
    ``item_counts_``, else the ratings per item counted in ``ratings`` (one
    pass, remembered by content), else zeros."""
    for bias_name, mean_name in (("item_bias_", "global_mean_"), ("item_bias", "global_mean")):
        bias = getattr(model, bias_name, None)
        if bias is not None and np.any(np.asarray(bias) != 0):
            return float(getattr(model, mean_name, 0.0)) + np.asarray(bias, dtype=np.float64)
    counts = getattr(model, "item_counts_", None)
    if counts is not None:
        return np.asarray(counts, dtype=np.float64)
    if ratings is None:
        return np.zeros(len(model.item_ids))
    R = as_ratings(ratings)
    if R.token not in _COUNTS_CACHE:
        if len(_COUNTS_CACHE) > 8:
            _COUNTS_CACHE.clear()
        _COUNTS_CACHE[R.token] = item_counts(R.by_user)
    return _COUNTS_CACHE[R.token]


def top_n(scores: np.ndarray, n: int, exclude: scipy.sparse.csr_matrix | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``n`` best columns (ties to the lower index), skipping the
    stored entries of ``exclude`` and NaN scores: (indices, scores), padded
    with -1 and NaN when a row has fewer candidates.

    Examples
    --------
    >>> import numpy as np
    >>> top_n(np.array([[0.1, 0.9, 0.5, 0.9]]), 3)
    (array([[1, 3, 2]]), array([[0.9, 0.9, 0.5]]))
    """
    S = np.array(scores, dtype=np.float64, ndmin=2)
    S[np.isnan(S)] = -np.inf
    if exclude is not None and exclude.nnz:
        rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
        S[rows, exclude.indices] = -np.inf
    m, n_items = S.shape
    n = int(min(n, n_items))
    if n < n_items:
        idx = np.argpartition(-S, n - 1, axis=1)[:, :n]
    else:
        idx = np.broadcast_to(np.arange(n_items), (m, n_items)).copy()
    idx.sort(axis=1)
    vals = np.take_along_axis(S, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    gone = np.isneginf(vals)
    idx[gone] = -1
    vals[gone] = np.nan
    return idx, vals


def recommend_block(model, users: np.ndarray, seen: scipy.sparse.csr_matrix, n: int, *,
                    exclude_seen: bool = True, fallback: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-n (indices, scores) for a block of user indices whose training
    rows are ``seen``, and which of them got the ``fallback`` scores (users
    without training ratings)."""
    cold = np.diff(seen.indptr) == 0
    S = model.scores(users) if not cold.all() else np.empty((len(users), len(model.item_ids)))
    if cold.any():
        S[cold] = fallback if fallback is not None else 0.0
    idx, vals = top_n(S, n, seen if exclude_seen else None)
    return idx, vals, cold


def _lookup(ids: np.ndarray, key) -> int | None:
    try:
        hits = np.flatnonzero(np.asarray(ids) == key)
    except (TypeError, ValueError):
        return None
    return int(hits[0]) if hits.size else None


# -- public ------------------------------------------------------------------------


def recommend(model, ratings, user, n: int = 10, *, exclude_seen: bool = True
              ) -> Recommendation:
    """The ``n`` best items for one user, by external id.

    Parameters
    ----------
    model : fitted recommender (ItemKNN, Baseline, ALS, SGD...)
    ratings : Ratings, scipy.sparse matrix or ratings store URL
        The ratings the model was trained on: a user's rated items are not
        recommended again (``exclude_seen``), and a user without any gets
        the popularity fallback.
    user : object
        External user id (``model.user_ids``).
    n : int
    exclude_seen : bool

    Returns
    -------
    Recommendation
        ``items`` (external ids) and ``scores``, best first; ``cold_start``
        and ``known`` flag the fallback.

    Examples
    --------
    >>> import scipy.sparse
    >>> from dmf.cf.baseline import Baseline
    >>> R = scipy.sparse.csr_matrix([[5.0, 0, 3.0, 0], [4.0, 2.0, 0, 5.0]])
    >>> model = Baseline().fit(R)
    >>> rec = recommend(model, R, 0, n=2)
    >>> rec.items.tolist(), rec.cold_start
    ([3, 1], False)
    """
    check_model(model)
    if int(n) != n or n < 1:
        raise InputError(f"n must be a positive integer, got {n!r}")
    R = as_ratings(ratings)
    check_ratings(model, R)
    index = _lookup(model.user_ids, user)
    if index is None:
        warn(f"user {user!r} is not in the model: recommending popular items",
             DmfWarning)
        idx, vals = top_n(popularity(model, R)[None], n)
        seen_any, known = False, False
    else:
        seen = user_rows(R.by_user, [index])
        idx, vals, cold = recommend_block(model, np.array([index]), seen, n,
                                          exclude_seen=exclude_seen,
                                          fallback=popularity(model, R) if seen.nnz == 0
                                          else None)
        seen_any, known = not cold[0], True
        if not seen_any:
            warn(f"user {user!r} has no training ratings: recommending popular items",
                 DmfWarning)
    idx, vals = idx[0], vals[0]
    keep = idx >= 0
    idx, vals = idx[keep], vals[keep]
    return Recommendation(user=user, items=np.asarray(model.item_ids)[idx], scores=vals,
                          indices=idx, known=known, cold_start=not seen_any)


def similar_items(model, item, n: int = 10, *, ratings=None) -> Recommendation:
    """The ``n`` items most similar to ``item`` (external id).

    Item-kNN models answer from their stored neighbours (at most ``k``);
    latent-factor models (a ``Q`` or ``Q_`` item-factor matrix) by the
    cosine of the item factors. An unknown item gets the popular items,
    flagged (``known`` False, ``cold_start`` True) with a warning.

    Returns a :class:`Recommendation` whose ``user`` field holds ``item``.

    Examples
    --------
    >>> import scipy.sparse
    >>> from dmf.cf.knn import ItemKNN
    >>> R = scipy.sparse.csr_matrix([[5.0, 4.0, 1.0], [4.0, 5.0, 0], [1.0, 0, 5.0]])
    >>> model = ItemKNN(k=2, shrinkage=0).fit(R)
    >>> similar_items(model, 0, n=1).items.tolist()
    [1]
    """
    check_model(model)
    index = _lookup(model.item_ids, item)
    if index is None:
        warn(f"item {item!r} is not in the model: returning popular items",
             DmfWarning)
        idx, vals = top_n(popularity(model, ratings)[None], n)
        idx, vals = idx[0][idx[0] >= 0], vals[0][idx[0] >= 0]
        return Recommendation(user=item, items=np.asarray(model.item_ids)[idx], scores=vals,
                              indices=idx, known=False, cold_start=True)
    if hasattr(model, "neighbours_"):
        idx, vals = model.similar_items(index, n)
    else:
        Q = getattr(model, "Q", None)
        Q = getattr(model, "Q_", None) if Q is None else Q
        if Q is None:
            raise InputError(f"{type(model).__name__} has neither item neighbours nor item "
                             "factors (Q); similar items need an ItemKNN or a latent model")
        Q = np.asarray(Q.compute() if hasattr(Q, "compute") else Q, dtype=np.float64)
        norms = np.linalg.norm(Q, axis=1)
        cos = np.divide(Q @ Q[index], norms * norms[index], out=np.zeros(len(Q)),
                        where=norms * norms[index] > 0)
        exclude = scipy.sparse.csr_matrix(([1.0], ([0], [index])), shape=(1, len(Q)))
        idx, vals = top_n(cos[None], n, exclude)
        idx, vals = idx[0][idx[0] >= 0], vals[0][idx[0] >= 0]
    return Recommendation(user=item, items=np.asarray(model.item_ids)[idx], scores=vals,
                          indices=idx, known=True, cold_start=False)


def _id_array(group, name: str, ids: np.ndarray) -> None:
    ids = np.asarray(ids)
    if ids.dtype.kind in "iufb":
        group.create_array(name, data=ids, dimension_names=dimension_names(name, 1))
    else:  # strings and other objects as variable-length UTF-8
        arr = group.create_array(name, shape=ids.shape, dtype=str,
                                 dimension_names=dimension_names(name, 1))
        arr[:] = ids.astype(str).astype(object)


def recommend_all(model, ratings, n: int = 10, *, out: str | os.PathLike,
                  exclude_seen: bool = True, overwrite: bool = False,
                  storage_options: dict[str, Any] | None = None,
                  score_bytes: int = SCORE_BYTES) -> str:
    """The top ``n`` items of every user, written to a Zarr group.

    Parameters
    ----------
    model : fitted recommender
    ratings : Ratings, scipy.sparse matrix or ratings store URL
        The training ratings (seen items, cold users).
    n : int
    out : str or path
        Local path or fsspec URL of the group to write.
    exclude_seen : bool
    overwrite : bool
        Replace a store already at ``out`` (kept intact until the new one
        is complete).
    storage_options : dict, optional
    score_bytes : int
        Memory for one block's dense scores (sets the users per block).

    Returns
    -------
    str
        The URL written. The group holds ``items`` (m x n int64 column
        indices, -1 past a user's candidates), ``scores`` (m x n float64,
        NaN there), ``cold_start`` (m bool), ``user_ids``, ``item_ids``;
        ``attrs["dmf"]`` has ``kind: recommendations``, ``n``, and
        ``complete``, set last. :func:`read_recommendations` reads it.

    Examples
    --------
    >>> import scipy.sparse
    >>> from dmf.cf.baseline import Baseline
    >>> R = scipy.sparse.csr_matrix([[5.0, 0, 3.0, 0], [4.0, 2.0, 0, 5.0]])
    >>> url = recommend_all(Baseline().fit(R), R, 2, out="memory://doc/recs.zarr")
    >>> read_recommendations(url)["items"][:].tolist()
    [[3, 1], [2, -1]]
    """
    check_model(model)
    if int(n) != n or n < 1:
        raise InputError(f"n must be a positive integer, got {n!r}")
    R = as_ratings(ratings, storage_options=storage_options)
    check_ratings(model, R)
    m, n_items = R.shape
    location = Location.parse(out, storage_options)
    staging = prepare_target(location, overwrite)
    rows = score_rows(n_items, score_bytes)
    chunk_rows = int(max(1, min(m, (8 * 2**20) // (8 * n))))
    fallback = popularity(model, R)
    try:
        group = zarr.open_group(store=staging.zarr_store(), mode="w", zarr_format=3)
        group.attrs["dmf"] = {"kind": "recommendations", "complete": False, "n": int(n),
                              "exclude_seen": bool(exclude_seen), "shape": [m, n_items],
                              "ratings": R.token, "model": type(model).__name__,
                              "dmf_version": __version__}
        items = group.create_array("items", shape=(m, n), chunks=(chunk_rows, n),
                                   dtype=np.int64, fill_value=-1,
                                   dimension_names=dimension_names("items", 2))
        scores = group.create_array("scores", shape=(m, n), chunks=(chunk_rows, n),
                                    dtype=np.float64, fill_value=np.nan,
                                    dimension_names=dimension_names("scores", 2))
        cold_start = group.create_array("cold_start", shape=(m,), chunks=(chunk_rows,),
                                        dtype=bool, fill_value=False,
                                        dimension_names=dimension_names("cold_start", 1))
        _id_array(group, "user_ids", R.user_ids)
        _id_array(group, "item_ids", R.item_ids)
        n_cold = 0
        for start, stop in block_bounds(R.by_user):
            block = as_csr(R.by_user[start:stop].compute())
            for s0 in range(start, stop, rows):
                s1 = min(stop, s0 + rows)
                idx, vals, cold = recommend_block(model, np.arange(s0, s1),
                                                  block[s0 - start:s1 - start], n,
                                                  exclude_seen=exclude_seen, fallback=fallback)
                items[s0:s1] = idx
                scores[s0:s1] = vals
                cold_start[s0:s1] = cold
                n_cold += int(cold.sum())
        meta = dict(group.attrs["dmf"])
        meta.update(complete=True, n_cold_start=n_cold)
        group.attrs["dmf"] = meta  # last: the table is whole
    except BaseException:
        staging.remove()
        raise
    commit_target(staging, location)
    if n_cold:
        warn(f"{n_cold} of {m} users have no training ratings: they got popular "
             "items (cold_start is True for them)", DmfWarning)
    return str(location)


def read_recommendations(url: str | os.PathLike, *,
                         storage_options: dict[str, Any] | None = None) -> zarr.Group:
    """Open a table written by :func:`recommend_all` (read-only), refusing
    one whose write did not finish.

    Parameters
    ----------
    url : str or path
        Local path or fsspec URL of the group.
    storage_options : dict, optional

    Returns
    -------
    zarr.Group
        ``items``, ``scores``, ``cold_start``, ``user_ids``, ``item_ids``
        (see :func:`recommend_all`).

    Examples
    --------
    >>> import scipy.sparse, dmf
    >>> R = scipy.sparse.csr_matrix([[5.0, 0, 3.0, 0], [4.0, 2.0, 0, 5.0]])
    >>> url = dmf.cf.recommend_all(dmf.cf.Baseline().fit(R), R, 1,
    ...                            out="memory://doc/read-recs.zarr")
    >>> table = dmf.cf.read_recommendations(url)
    >>> table["items"][:].tolist(), table["cold_start"][:].tolist()
    ([[3], [2]], [False, False])
    """
    location = Location.parse(url, storage_options)
    node = location.open_node()
    meta = dmf_attrs(node)
    if not isinstance(node, zarr.Group) or meta.get("kind") != "recommendations":
        raise StoreError(f"{location}: not a recommendation table written by recommend_all")
    if meta.get("complete") is not True:
        raise StoreError(f"{location}: the recommendation table is incomplete (its write was "
                         "interrupted); run recommend_all again")
    return node
