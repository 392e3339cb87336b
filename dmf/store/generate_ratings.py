"""Synthetic ratings from a planted latent-factor model, written by user
groups.

Rating of user u for item i::

    r_ui = mu + b_u + b_i + p_u . q_i + N(0, noise^2)

with ``mu = 3.5``, ``b_u ~ N(0, 0.3^2)``, ``b_i ~ N(0, 0.5^2)`` and the
entries of ``p_u`` and ``q_i`` ``N(0, rank**-0.5)``, so that ``p_u . q_i``
has variance 1: ratings centre on 3.5 with a spread of about 1.2, like
stars, but are neither rounded nor clipped (so the planted model is exact
up to the noise). Each user rates ``Binomial(items, density)`` distinct
items chosen uniformly (at least ``min(3, items)``), each rating with a
time drawn uniformly over 2000-2019 (whole seconds since 1970).

Users are drawn in fixed groups, each from its own random stream keyed by
(seed, group): the ratings are the same for a seed whatever the block sizes
of the writing, and no more than one group is in memory. Items' factors
(n x rank) are held in memory. The planted factors are written beside the
store (``STEM.factors.zarr``: ``P``, ``Q``, ``user_bias``, ``item_bias``,
``mu`` in the attrs), as :func:`dmf.generate.lowrank` does.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.sparse
import zarr

from dmf.errors import InputError
from dmf.store import codecs
from dmf.store.dense_read import TARGET_CHUNK_BYTES
from dmf.store.dims import dimension_names
from dmf.store.location import Location
from dmf.store.planted import factors_location, stream
from dmf.store.ratings import write_ratings

MU = 3.5
USER_BIAS_STD = 0.3
ITEM_BIAS_STD = 0.5
MIN_PER_USER = 3
#: 2000-01-01 and twenty years of seconds after it.
TIME_START, TIME_SPAN = 946_684_800, 631_152_000
#: About this many ratings per group of users (a group is drawn at once).
_GROUP_RATINGS = 2**19


def check_noise_and_dtype(noise: float, dtype) -> None:
    """The checks both generators make of ``noise`` and ``dtype``."""
    if not np.isfinite(noise) or noise < 0:
        raise InputError(f"noise must be a finite number >= 0, got {noise}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise InputError(f"dtype must be float32 or float64, got {dtype}")


def _group_size(items: int, density: float) -> int:
    """Users per random stream: from the parameters only (never from block
    sizes), so that the ratings do not depend on how they are written."""
    per_user = max(MIN_PER_USER, density * items)
    return int(min(4096, max(1, _GROUP_RATINGS // per_user)))


def _choose_items(rng: np.random.Generator, counts: np.ndarray, n: int):
    """(user, item) of ``counts[u]`` distinct items per user, uniformly,
    sorted by user then item.

    Items are drawn with replacement, oversampled so that each user almost
    always gets enough distinct ones, and a random subset of the right size
    is kept; the rare short user, and users asking for more than half the
    items, get ``rng.choice`` without replacement.
    """
    size = len(counts)
    frac = counts / n
    dense = frac > 0.5
    # expected distinct items of k draws: n (1 - exp(-k / n)); 20% spare
    draws = np.where(dense, 0, np.ceil(-1.2 * n * np.log1p(-np.minimum(frac, 0.5)) + 8))
    draws = draws.astype(np.int64)
    owner = np.repeat(np.arange(size, dtype=np.int64), draws)
    keys = owner * n + rng.integers(0, n, len(owner))
    keys.sort()  # np.unique's hash table is several times slower here
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    owner = keys // n
    # a random order within each user (one float sort: lexsort measured slower)
    order = np.argsort(owner + rng.random(len(keys)), kind="stable")
    keys, owner = keys[order], owner[order]
    first = np.searchsorted(owner, np.arange(size))
    keep = np.arange(len(keys)) - first[owner] < counts[owner]
    keys, owner = keys[keep], owner[keep]
    short = np.flatnonzero(np.bincount(owner, minlength=size) < counts)
    if len(short):
        keys = np.concatenate([keys[~np.isin(owner, short)],
                               *(u * n + rng.choice(n, counts[u], replace=False)
                                 for u in short.tolist())])
    keys.sort()
    return keys // n, keys % n


def _group(seed: int, g: int, u0: int, u1: int, items: int, density: float, rank: int,
           noise: float, Q: np.ndarray, b_item: np.ndarray):
    """One group's planted user factors and its ratings as a CSR block."""
    rng = stream(seed, 2, g)
    size = u1 - u0
    b_user = rng.normal(0.0, USER_BIAS_STD, size)
    P = rng.standard_normal((size, rank)) * rank**-0.25
    counts = np.clip(rng.binomial(items, density, size), min(MIN_PER_USER, items), items)
    users, chosen = _choose_items(rng, counts, items)
    values = MU + b_user[users] + b_item[chosen] + np.einsum("ij,ij->i", P[users], Q[chosen])
    if noise:
        values += noise * rng.standard_normal(len(values))
    times = (TIME_START + rng.integers(0, TIME_SPAN, len(values))).astype(np.float64)
    indptr = np.zeros(size + 1, np.int64)
    np.cumsum(np.bincount(users, minlength=size), out=indptr[1:])
    block = scipy.sparse.csr_matrix((values, chosen, indptr), shape=(size, items))
    return block, times, P, b_user


def ratings(
    url: str | os.PathLike,
    users: int,
    items: int,
    density: float,
    rank: int,
    *,
    noise: float = 0.1,
    seed: int = 0,
    dtype: str = "float64",
    save_factors: bool = True,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    codec: str | None = None,
    target_bytes: int = TARGET_CHUNK_BYTES,
) -> dict[str, Any]:
    """Write ratings of a planted model, ``mu + b_u + b_i + p_u . q_i +
    noise``, as a ratings store (with its item view, ids and times).

    Parameters
    ----------
    url : str or path
        Where to write the ratings store.
    users, items : int
        m and n.
    density : float
        Share of the items each user rates, on average (at least
        ``min(3, items)`` each).
    rank : int
        Length of the planted factors ``p_u``, ``q_i``.
    noise : float
        Standard deviation of the Gaussian noise added to each rating (the
        planted part has a spread of about 1.2).
    seed : int
        Same seed and parameters: the same ratings, whatever the blocks.
    dtype : {"float64", "float32"}
        Stored dtype of the ratings.
    save_factors : bool
        Also write ``P``, ``Q``, ``user_bias``, ``item_bias`` (and ``mu``
        in the attrs) to ``<stem>.factors.zarr`` beside the store.
    target_bytes : int
        Size of the blocks in which the item view is built.

    Returns
    -------
    dict
        What was stored in ``attrs["dmf"]["generator"]``: the parameters,
        the model's constants, the number of ratings and where the factors
        are.

    Examples
    --------
    >>> import numpy as np, zarr, dmf
    >>> info = dmf.generate.ratings("memory://doc/gr.zarr", 200, 50, 0.1, 3, noise=0.1)
    >>> info["nnz"] > 200 * 3
    True
    >>> X = dmf.open_matrix("memory://doc/gr.zarr").compute()
    >>> f = zarr.open_group("memory://doc/gr.factors.zarr", mode="r")
    >>> planted = (info["mu"] + f["user_bias"][:][:, None] + f["item_bias"][:][None, :]
    ...            + f["P"][:] @ f["Q"][:].T)
    >>> rows, cols = X.nonzero()
    >>> bool(abs(np.std(X.data - planted[rows, cols]) - 0.1) < 0.01)
    True
    """
    location = Location.parse(url, storage_options)
    m, n = _check_args(users, items, density, rank, noise, dtype)
    group = _group_size(n, density)
    item_rng = stream(seed, 1)
    b_item = item_rng.normal(0.0, ITEM_BIAS_STD, n)
    Q = item_rng.standard_normal((n, rank)) * rank**-0.25
    generator = {
        "kind": "ratings", "users": m, "items": n, "density": float(density), "rank": rank,
        "noise": float(noise), "seed": int(seed), "dtype": str(np.dtype(dtype)), "mu": MU,
        "user_bias_std": USER_BIAS_STD, "item_bias_std": ITEM_BIAS_STD,
        "factor_std": rank**-0.25, "min_per_user": MIN_PER_USER, "group_users": group,
    }
    factors = factors_location(location)
    user_side = None
    if save_factors:
        user_side = _factor_arrays(factors, location.name, Q, b_item, users=m, group=group,
                                   codec=codec)
        generator["factors"] = factors.name  # relative: the pair moves together

    def row_blocks():
        for g, u0 in enumerate(range(0, m, group)):
            u1 = min(u0 + group, m)
            block, times, P, b_user = _group(seed, g, u0, u1, n, density, rank, noise, Q,
                                             b_item)
            if user_side is not None:
                user_side[0][u0:u1] = P
                user_side[1][u0:u1] = b_user
            yield block, times

    g = write_ratings(location, (m, n), dtype, row_blocks=row_blocks, timestamps=True,
                      overwrite=overwrite, codec=codec, attrs={"generator": generator},
                      name=str(location), target_bytes=target_bytes,
                      nnz_hint=int(m * max(min(MIN_PER_USER, n), density * n) * 1.1) + 16)
    generator["nnz"] = int(dict(g.attrs)["dmf"]["nnz"])
    return generator


def _factor_arrays(factors: Location, of: str, Q: np.ndarray, b_item: np.ndarray, *,
                   users: int, group: int, codec: str | None) -> tuple[zarr.Array, zarr.Array]:
    """The planted factors' group beside the ratings: the item side written
    now, the user side (P, user_bias) returned empty, for the groups of users
    to fill as they are drawn."""
    rank = Q.shape[1]
    fgroup = zarr.open_group(store=factors.zarr_store(), mode="w", zarr_format=3,
                             attributes={"dmf": {"kind": "planted-factors",
                                                 "of": of, "mu": MU}})
    compressors = codecs.compressors(codec)
    for key, value in (("Q", Q), ("item_bias", b_item)):
        fgroup.create_array(key, shape=value.shape, dtype=np.float64,
                            compressors=compressors,
                            dimension_names=dimension_names(key, value.ndim))[...] = value
    # one chunk per group: each is written once, whole
    return (fgroup.create_array("P", shape=(users, rank), chunks=(group, rank),
                                dtype=np.float64, compressors=compressors,
                                dimension_names=dimension_names("P", 2)),
            fgroup.create_array("user_bias", shape=(users,), chunks=(group,),
                                dtype=np.float64, compressors=compressors,
                                dimension_names=dimension_names("user_bias", 1)))


def _check_args(users, items, density, rank, noise, dtype) -> tuple[int, int]:
    try:
        m, n = int(users), int(items)
    except (TypeError, ValueError):
        raise InputError(f"users and items must be integers, got {users!r}, {items!r}") from None
    if m <= 0 or n <= 0:
        raise InputError(f"users and items must be positive, got {m} and {n}")
    if not 0.0 < density <= 1.0:
        raise InputError(f"density must be in (0, 1], got {density}")
    if not (isinstance(rank, (int, np.integer)) and rank >= 1):
        raise InputError(f"rank must be a positive integer, got {rank!r}")
    check_noise_and_dtype(noise, dtype)
    return m, n


__all__ = ["ratings"]
