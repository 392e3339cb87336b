"""Train/test splits of ratings, blockwise and out of core.

Every rule decides each rating from its own row block alone (and, for the
temporal split, one global number), so a split is computed in one streaming
pass over the user view, and is the same whatever the row blocks are:

``by="rating"``
    each rating goes to test with probability ``test_size``, decided by a
    hash of (seed, user, item): no random stream whose position would
    depend on the blocks;
``by="user"``
    leave-k-out: every user with at least ``k + 1`` ratings gives the ``k``
    ratings with the smallest hash of (seed, user, item) to test (a
    per-user seeded draw); users with fewer keep all in train;
``by="time"``
    the ratings later than the cutoff, the ``ceil((1 - test_size) nnz)``-th
    smallest time, go to test (ties at the cutoff stay in train); the cutoff
    is found exactly by histogram refinement, a pass over the times per
    round, never sorting them all.

Train and test keep the input's shape and ids (row ``i`` is the same user
in both) and its times, are disjoint, and add up to the input.
"""

from __future__ import annotations

import math
import os
from typing import Any

import dask
import numpy as np
import scipy.sparse

from dmf.cf.data import Ratings, as_ratings, ratings_from_scipy
from dmf.cf.store import (
    _unless_arange,
    open_ratings,
    scheduler_for_ratings,
    stream_blocks,
    with_timestamps,
)
from dmf.errors import InputError
from dmf.store.location import Location
from dmf.store.ratings import write_ratings

BY = ("rating", "user", "time")

#: Histogram bins per refinement round of the time cutoff, and the number of
#: times in the cutoff's bin small enough to gather and sort.
_BINS, _GATHER = 4096, 1_000_000

_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), \
    np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 that scrambles every bit."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def rating_hash(seed: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) for each (user, item), fixed by ``seed``.

    Examples
    --------
    >>> u = rating_hash(0, np.arange(100_000), np.zeros(100_000, int))
    >>> bool(0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01)
    True
    >>> bool((rating_hash(0, np.array([3]), np.array([4]))
    ...       == rating_hash(0, np.array([3, 9]), np.array([4, 1]))[:1]).all())
    True
    """
    with np.errstate(over="ignore"):
        h = _mix(np.full(len(users), seed % 2**64, dtype=np.uint64))
        h = _mix(h ^ np.asarray(users).astype(np.uint64))
        h = _mix(h ^ np.asarray(items).astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def train_test_split(
    R,
    *,
    by: str = "rating",
    test_size: float = 0.2,
    k: int = 1,
    seed: int | None = None,
    out: str | os.PathLike | tuple | None = None,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> tuple[Ratings, Ratings]:
    """Split ratings into train and test.

    Parameters
    ----------
    R : Ratings, ratings store URL or scipy.sparse matrix
    by : {"rating", "user", "time"}
        ``"rating"``: each rating to test with probability ``test_size``;
        ``"user"``: ``k`` ratings of each user who has at least ``k + 1``
        (leave-k-out); ``"time"``: the ratings after the time cutoff at the
        ``1 - test_size`` quantile (needs timestamps). See
        :mod:`dmf.cf.split` for the exact rules.
    test_size : float
        In (0, 1); ``"rating"`` and ``"time"`` only.
    k : int
        Ratings per user to test; ``"user"`` only.
    seed : int, optional
        Same seed, same split, whatever the blocks. None: a fresh one.
    out : str, path or (train_url, test_url), optional
        Write both to ratings stores (``out/train.zarr`` and
        ``out/test.zarr``, or the pair), streaming, and return them opened:
        for data of any size. Without it, train and test are gathered in
        memory: for data that fits (a few times the ratings' size).
    overwrite : bool
        Replace stores already at ``out``.
    storage_options : dict, optional
        fsspec options for URLs (``R`` and ``out``).

    Returns
    -------
    (Ratings, Ratings)
        Train and test, both with ``R``'s shape, ids and times.

    Raises
    ------
    InputError
        An unknown ``by``, ``test_size`` outside (0, 1), ``k`` < 1, or a
        temporal split of ratings without times.

    Examples
    --------
    >>> import scipy.sparse
    >>> R = scipy.sparse.random(50, 40, density=0.3, format="csr", random_state=0)
    >>> train, test = train_test_split(R, test_size=0.25, seed=0)
    >>> a, b = train.to_scipy(), test.to_scipy()
    >>> a.nnz + b.nnz == R.nnz, abs(b.nnz / R.nnz - 0.25) < 0.05
    (True, True)
    >>> float(abs(a + b - R).max())
    0.0
    >>> _, test = train_test_split(R, by="user", k=2, seed=0)
    >>> set(np.diff(test.to_scipy().indptr).tolist())
    {2}
    """
    R = as_ratings(R, storage_options=storage_options)
    if by not in BY:
        raise InputError(f"by must be one of {', '.join(BY)}, got {by!r}")
    if by in ("rating", "time") and not 0.0 < float(test_size) < 1.0:
        raise InputError(f"test_size must be in (0, 1), got {test_size}")
    if by == "user" and not (isinstance(k, (int, np.integer)) and k >= 1):
        raise InputError(f"k must be a positive integer, got {k!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    cutoff = None
    if by == "time":
        if R.timestamps is None:
            raise InputError(f"{R.location or 'ratings'}: no timestamps, which the temporal "
                             "split needs (ingest a file with a 4th column, the time); use "
                             "by='rating' or by='user'")
        cutoff = time_cutoff(R, test_size)
    rule = {"by": by, "test_size": float(test_size), "k": int(k), "seed": int(seed),
            "cutoff": cutoff}
    if out is None:
        return _in_memory(R, rule)
    return _to_stores(R, rule, out, overwrite, storage_options)


def held_out(block: scipy.sparse.csr_matrix, times: scipy.sparse.csr_matrix | None,
              row0: int, rule: dict) -> np.ndarray:
    """Which stored ratings of a row block (rows ``row0...``, canonical CSR)
    go to test."""
    counts = np.diff(block.indptr)
    rows = np.repeat(np.arange(block.shape[0], dtype=np.int64), counts)
    if rule["by"] == "time":
        return times.data > rule["cutoff"]
    draw = rating_hash(rule["seed"], rows + row0, block.indices)
    if rule["by"] == "rating":
        return draw < rule["test_size"]
    k = rule["k"]
    order = np.lexsort((draw, rows))  # each row's ratings by their draw
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - np.repeat(block.indptr[:-1], counts)
    return (rank < k) & (counts[rows] >= k + 1)


def _parts(block, times, mask):
    """(rows of the block whose ratings ``mask`` keeps, their times)."""
    coo_rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))[mask]
    indptr = np.zeros(block.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(coo_rows, minlength=block.shape[0]), out=indptr[1:])
    kept = scipy.sparse.csr_matrix((block.data[mask], block.indices[mask], indptr),
                                   shape=block.shape)
    return kept, None if times is None else times.data[mask]


def _split_blocks(R: Ratings, rule: dict, part: str):
    """The ``part`` ("train" or "test") of each row block, in order."""
    for r0, block, times in stream_blocks(R.by_user, R.timestamps, R.location):
        mask = held_out(block, times, r0, rule)
        yield _parts(block, times, mask if part == "test" else ~mask)


def _in_memory(R: Ratings, rule: dict) -> tuple[Ratings, Ratings]:
    pieces = {"train": ([], []), "test": ([], [])}
    for r0, block, times in stream_blocks(R.by_user, R.timestamps, R.location):
        mask = held_out(block, times, r0, rule)
        for part, keep in (("train", ~mask), ("test", mask)):
            kept, when = _parts(block, times, keep)
            pieces[part][0].append(kept)
            if when is not None:
                pieces[part][1].append(when)
    result = []
    for blocks, stamps in pieces.values():
        csr = scipy.sparse.csr_matrix(scipy.sparse.vstack(blocks, format="csr"))
        part = ratings_from_scipy(csr, user_ids=R.user_ids, item_ids=R.item_ids)
        times = None
        if R.timestamps is not None:
            times = scipy.sparse.csr_matrix((np.concatenate(stamps), csr.indices, csr.indptr),
                                            shape=csr.shape)
        result.append(with_timestamps(part, times))
    return result[0], result[1]


def _to_stores(R: Ratings, rule: dict, out, overwrite: bool,
               storage_options) -> tuple[Ratings, Ratings]:
    if isinstance(out, (tuple, list)):
        if len(out) != 2:
            raise InputError(f"out must be a folder or a (train, test) pair of URLs, got {out!r}")
        urls = [Location.parse(u, storage_options) for u in out]
    else:
        folder = Location.parse(out, storage_options)
        urls = [folder.join("train.zarr"), folder.join("test.zarr")]
    done = []
    for part, location in zip(("train", "test"), urls, strict=True):
        attrs = {"split": {**{key: v for key, v in rule.items() if v is not None},
                           "part": part, "of": R.token}}
        dtype = R.dtype if np.dtype(R.dtype) in (np.float32, np.float64) else np.float64
        write_ratings(location, R.shape, dtype,
                      row_blocks=lambda part=part: _split_blocks(R, rule, part),
                      user_ids=_unless_arange(R.user_ids), item_ids=_unless_arange(R.item_ids),
                      timestamps=R.timestamps is not None, overwrite=overwrite, attrs=attrs,
                      name=str(location))
        done.append(open_ratings(location))
    return done[0], done[1]


def time_cutoff(R: Ratings, test_size: float) -> float:
    """The ``ceil((1 - test_size) nnz)``-th smallest time of the ratings,
    exactly, by refining a histogram (a pass over the times per round) until
    the bin holding it is small enough to sort.

    Examples
    --------
    >>> import scipy.sparse
    >>> from dmf.cf.data import ratings_from_scipy
    >>> from dmf.cf.store import with_timestamps
    >>> T = scipy.sparse.csr_matrix(np.arange(1.0, 11.0).reshape(2, 5))
    >>> R = with_timestamps(ratings_from_scipy(T), T)
    >>> time_cutoff(R, 0.2), time_cutoff(R, 0.25)
    (8.0, 8.0)
    """
    parts = R.timestamps.to_delayed(optimize_graph=False).ravel()
    scheduler = scheduler_for_ratings(R.location)
    kwargs = {"scheduler": scheduler} if scheduler else {}
    stats = dask.compute(*[dask.delayed(_range)(p) for p in parts], **kwargs)
    nnz = sum(s[0] for s in stats)
    if not nnz:
        raise InputError("no ratings to split")
    rank = max(1, math.ceil((1.0 - test_size) * nnz))  # 1-based
    lo = min(s[1] for s in stats if s[0])
    hi = max(s[2] for s in stats if s[0])
    below = 0  # times < lo
    while True:
        if lo == hi:
            return float(lo)
        edges = np.linspace(lo, hi, _BINS + 1)
        rounds = dask.compute(*[dask.delayed(_histogram)(p, edges) for p in parts], **kwargs)
        counts = np.sum([r[0] for r in rounds], axis=0)
        inside = int(counts.sum())
        if inside <= _GATHER:
            values = np.concatenate(dask.compute(
                *[dask.delayed(_between)(p, lo, hi) for p in parts], **kwargs))
            return float(np.partition(values, rank - below - 1)[rank - below - 1])
        low = min(r[1] for r in rounds if r[0].sum())
        high = max(r[2] for r in rounds if r[0].sum())
        if low == high:
            return float(low)
        cumulative = np.cumsum(counts)
        b = int(np.searchsorted(cumulative, rank - below))
        below += int(cumulative[b - 1]) if b else 0
        lo, hi = edges[b], edges[b + 1]


def _range(block) -> tuple[int, float, float]:
    data = block.data
    return (len(data), float(data.min()), float(data.max())) if len(data) else (0, 0.0, 0.0)


def _between(block, lo: float, hi: float) -> np.ndarray:
    data = block.data
    return data[(data >= lo) & (data <= hi)]


def _histogram(block, edges: np.ndarray):
    values = _between(block, edges[0], edges[-1])
    counts = np.histogram(values, edges)[0]
    if not len(values):
        return counts, np.inf, -np.inf
    return counts, float(values.min()), float(values.max())


__all__ = ["rating_hash", "time_cutoff", "train_test_split"]
