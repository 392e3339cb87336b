"""Ratings stores: a CSR group of users x items with its CSC twin, the ids
and the times of the ratings.

A ratings store is a sparse store (:mod:`dmf.store.sparse_format`: the anndata
CSR encoding, readable by ``dmf.open_matrix`` and anndata as it is) with more in
the group::

    R.zarr/                  csr_matrix, shape [m, n] (m users, n items)
      data indices indptr    the ratings by user (row i: user_ids[i])
      timestamps             float64, aligned with data (when the source had
                             times)
      user_ids item_ids      external ids: int64, or strings
      csc/                   csc_matrix, shape [m, n]: the same ratings by item
        data indices indptr  (the CSR arrays of the n x m transpose)
        timestamps           aligned with csc/data

``attrs["dmf"]`` of the group holds ``kind: ratings``, ``nnz``,
``timestamps`` (whether there are any) and, set last, ``complete``; the twin
is complete before its parent is. Models read ratings both ways round, and
reading a CSR store by column would mean a transpose in memory: the twin
costs the store's size once more on disk and saves that at every pass.

Writing goes to a staging place and is committed only once complete, as for
every dmf store (:func:`dmf.store.dense_write.prepare_target`), so bad input
never replaces a good store. The twin is built from the staged CSR itself
through :func:`dmf.store.triplets.build_csr_from_triplets` (count, spill per
row block of the transpose, sort), in bounded memory.

The ``dmf.cf`` layer wraps what :func:`open_ratings_arrays` returns into a
``Ratings``; this module knows nothing of it.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import scipy.sparse
import zarr

from dmf.errors import DmfWarning, InputError, StoreError, warn
from dmf.store import codecs
from dmf.store.dense_read import TARGET_CHUNK_BYTES
from dmf.store.dense_write import commit_target, mark_complete, prepare_target
from dmf.store.dims import dimension_names
from dmf.store.location import Location, dmf_attrs
from dmf.store.sparse_format import canonical_csr, is_csr_group
from dmf.store.sparse_read import open_csr, plan_csr
from dmf.store.sparse_write import CsrWriter, csr_report
from dmf.store.streaming import closing
from dmf.store.triplets import build_csr_from_triplets
from dmf.store.validate import precast, raise_for_reports

KIND = "ratings"
TWIN = "csc"
TIMESTAMPS = "timestamps"
USER_IDS, ITEM_IDS = "user_ids", "item_ids"

#: A CSR store without a twin gets its item view built in memory up to this
#: size of data + indices; above it, re-ingesting with a twin is asked for.
IN_MEMORY_TWIN_BYTES = 200 * 2**20

#: Length of the stored chunks of the id arrays.
_ID_CHUNK = 2**20


# --------------------------------------------------------------------------
# writing


def ratings_csr(R, *, duplicates: str = "last", name: str = "ratings") -> scipy.sparse.csr_matrix:
    """A scipy.sparse matrix of ratings as canonical CSR (a new matrix),
    repeated (user, item) entries resolved by the ratings rule: the last in
    stored order kept ("last", COO order for COO input) or their sum
    ("sum"), with :func:`warn_duplicates`'s warning either way.

    Examples
    --------
    >>> import warnings
    >>> R = scipy.sparse.coo_matrix(([4.0, 5.0, 1.0], ([0, 0, 1], [2, 2, 0])), shape=(2, 3))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     ratings_csr(R).toarray(), ratings_csr(R, duplicates="sum").toarray()
    (array([[0., 0., 5.],
           [1., 0., 0.]]), array([[0., 0., 9.],
           [1., 0., 0.]]))
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    ratings: 1 repeated (user, item) ratings replaced by a later one (kept the last of ...
    """
    if duplicates not in ("last", "sum"):
        raise InputError(f"{name}: duplicates must be 'last' or 'sum', got {duplicates!r}")
    if isinstance(R, scipy.sparse.csr_matrix) and R.has_canonical_format:
        return R.copy()
    coo = scipy.sparse.coo_matrix(R)  # CSR -> COO keeps the stored order
    m, n = coo.shape
    keys = coo.row.astype(np.int64) * n + coo.col
    order = np.argsort(keys, kind="stable")
    last = np.r_[keys[order][1:] != keys[order][:-1], True]
    dropped = int(len(keys) - last.sum())
    if duplicates == "last" and dropped:
        keep = order[last]
        coo = scipy.sparse.coo_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])),
                                      shape=(m, n))
    csr = scipy.sparse.csr_matrix(coo)
    csr.sum_duplicates()
    csr.sort_indices()
    warn_duplicates(name, dropped, duplicates)
    return csr


def warn_duplicates(name: str, dropped: int, rule: str, which: str = "the last") -> None:
    """The one warning of every entry point that met repeated (user, item)
    pairs: how many, and what became of them."""
    if dropped <= 0:
        return
    if rule == "sum":
        message = (f"{name}: {dropped} repeated (user, item) ratings added to their pair's "
                   "(duplicates='sum')")
    else:
        message = (f"{name}: {dropped} repeated (user, item) ratings replaced by a later one "
                   f"(kept {which} of each pair; duplicates='sum' adds them instead)")
    warn(message, DmfWarning)


def write_ratings(
    location: Location,
    shape: tuple[int, int],
    dtype,
    *,
    triplets: Callable[[], Iterator[tuple]] | None = None,
    row_blocks: Callable[[], Iterator[tuple]] | None = None,
    user_ids=None,
    item_ids=None,
    timestamps: bool = False,
    overwrite: bool = False,
    codec: str | None = None,
    attrs: dict | None = None,
    name: str | None = None,
    tmpdir: str | os.PathLike | None = None,
    target_bytes: int = TARGET_CHUNK_BYTES,
    nnz_hint: int | None = None,
    duplicates: str = "last",
) -> zarr.Group:
    """Write a ratings store: the CSR group, its CSC twin, ids, timestamps.

    ``duplicates`` (triplets): a (user, item) pair given more than once
    keeps its latest rating ("last": by time, then the order given) or the
    sum of them ("sum": counts of implicit feedback).

    The ratings come one of two ways:

    ``triplets``
        A callable returning a fresh iterator of ``(users, items, ratings)``
        chunks (``(users, items, ratings, times)`` with ``timestamps``), in
        any order; it is called twice. A (user, item) pair given more than
        once keeps its last rating: the latest by time, ties and untimed
        ones the last given.
    ``row_blocks``
        A callable returning an iterator of ``(block, times)``: consecutive
        row blocks (scipy.sparse, whole users, in order) and, with
        ``timestamps``, the times aligned with the block's canonical CSR
        ``data`` (else None). Called once; duplicates in a block are summed.

    Parameters
    ----------
    location : Location
    shape : (int, int)
        (users, items).
    dtype : float32 or float64
        The stored dtype of the ratings.
    user_ids, item_ids : array-like, optional
        External ids, unique, one per row / column: integers are stored as
        int64, anything else as strings. Default: none stored (the row and
        column numbers are the ids).
    timestamps : bool
        Whether the ratings carry times (stored as float64).
    overwrite : bool
        Replace a store already there, once the new one is complete.
    nnz_hint : int, optional
        About how many ratings ``row_blocks`` gives: sizes the stored chunks
        of small stores (the triplets are counted anyway).

    Returns
    -------
    zarr.Group
        The written group, opened read-only.

    Examples
    --------
    >>> loc = Location.parse("memory://doc/wr.zarr")
    >>> chunks = [(np.array([1, 0, 1]), np.array([0, 2, 0]), np.array([4.0, 5.0, 2.0]))]
    >>> g = write_ratings(loc, (2, 3), "float64", triplets=lambda: iter(chunks),
    ...                   user_ids=["ann", "bob"])
    >>> g["data"][:], g["csc/indices"][:], g["user_ids"][:].tolist()
    (array([5., 2.]), array([1, 0], dtype=int32), ['ann', 'bob'])
    """
    if (triplets is None) == (row_blocks is None):
        raise ValueError("pass exactly one of triplets and row_blocks")
    name = name or str(location)
    m, n = (int(s) for s in shape)
    dtype = np.dtype(dtype)
    ids = {USER_IDS: _checked_ids(user_ids, m, "user", name),
           ITEM_IDS: _checked_ids(item_ids, n, "item", name)}
    meta = {**(attrs or {}), "kind": KIND, TIMESTAMPS: bool(timestamps)}
    staging = prepare_target(location, overwrite)
    try:
        if triplets is not None:
            nnz = build_csr_from_triplets(triplets, staging, (m, n), dtype, codec=codec,
                                          attrs=meta, name=name, tmpdir=tmpdir,
                                          target_bytes=target_bytes, duplicates=duplicates,
                                          timestamps=timestamps, complete=False)
        else:
            nnz = _write_row_blocks(row_blocks, staging, (m, n), dtype, codec=codec,
                                    attrs=meta, name=name, timestamps=timestamps,
                                    nnz_hint=nnz_hint)
        group = zarr.open_group(store=staging.zarr_store(), mode="r+")
        twin_nnz = build_csr_from_triplets(
            lambda: _transposed(group, staging, timestamps, target_bytes),
            staging.join(TWIN), (n, m), dtype, codec=codec,
            attrs={"twin_of": "..", TIMESTAMPS: bool(timestamps)},
            name=f"{name} (item view)", tmpdir=tmpdir, target_bytes=target_bytes,
            timestamps=timestamps, csc=True)
        if twin_nnz != nnz:  # the twin reads back what was written: a store fault
            raise StoreError(f"{staging}: the item view holds {twin_nnz} ratings, the user "
                             f"view {nnz}; the store could not be written faithfully")
        for key, values in ids.items():
            if values is not None:
                _write_ids(group, key, values, codec)
        mark_complete(group, nnz=nnz)
    except BaseException:
        staging.remove()
        raise
    commit_target(staging, location)
    return zarr.open_group(store=location.zarr_store(read_only=True), mode="r")


def _write_row_blocks(row_blocks, location: Location, shape, dtype, *, codec, attrs, name,
                      timestamps: bool, nnz_hint: int | None) -> int:
    n = shape[1]
    extra = {TIMESTAMPS: np.float64} if timestamps else None
    with CsrWriter(location, shape, dtype, codec=codec, attrs=attrs, extra=extra,
                   nnz_hint=nnz_hint) as writer:
        for block, times in closing(row_blocks()):
            csr = canonical_csr(block)
            if csr.shape[1] != n:
                raise InputError(f"{name}: a row block has {csr.shape[1]} columns, the "
                                 f"ratings {n}")
            data = precast(csr.data, dtype)
            raise_for_reports(csr_report(data, csr.indices, csr.indptr, writer.rows, n),
                              shape, name)
            more = {}
            if timestamps:
                times = np.asarray(times, dtype=np.float64)
                if len(times) != csr.nnz:
                    raise InputError(f"{name}: {len(times)} timestamps for the {csr.nnz} "
                                     f"ratings of rows {writer.rows}..")
                raise_for_reports(csr_report(times, csr.indices, csr.indptr, writer.rows, n),
                                  shape, f"{name} (timestamps)")
                more[TIMESTAMPS] = times
            writer.append(data, csr.indices, csr.indptr, **more)
        writer.finish(complete=False)
        return writer.nnz


def _transposed(group: zarr.Group, location: Location, timestamps: bool,
                target_bytes: int) -> Iterator[tuple]:
    """The staged CSR's entries as (item, user, rating[, time]) chunks, one
    row block at a time, for building the twin."""
    # a block read back costs about 8x its size once spilled (row numbers,
    # int64 positions, records, the sort by block): read an eighth
    reader, bounds = plan_csr(group, location, target_bytes=max(1, target_bytes // 8),
                              require_complete=False)
    times = plan_csr(group, location, data=TIMESTAMPS, row_bounds=bounds,
                     require_complete=False)[0] if timestamps else None
    for r0, r1 in itertools.pairwise(bounds):
        block = reader.read_block(r0, r1)
        users = np.repeat(np.arange(r0, r1, dtype=np.int64), np.diff(block.indptr))
        chunk = (block.indices, users, block.data)
        if times is not None:
            chunk += (times.read_block(r0, r1).data,)
        yield chunk


def _checked_ids(ids, length: int, what: str, name: str) -> np.ndarray | None:
    if ids is None:
        return None
    values = np.asarray(ids)
    if values.ndim != 1 or len(values) != length:
        raise InputError(f"{name}: {what} ids must be a 1-D list of {length}, got shape "
                         f"{values.shape}")
    if values.dtype.kind in "iub":
        values = values.astype(np.int64)
    else:
        values = values.astype(str).astype(object)
    if len(np.unique(values)) != length:
        raise InputError(f"{name}: the {what} ids are not unique")
    return values


def _write_ids(group: zarr.Group, key: str, values: np.ndarray, codec: str | None) -> None:
    dtype = np.int64 if values.dtype.kind == "i" else str
    array = group.create_array(key, shape=values.shape, dtype=dtype,
                               chunks=(max(1, min(_ID_CHUNK, len(values))),),
                               dimension_names=dimension_names(key, 1),
                               compressors=codecs.compressors(codec))
    array[:] = values


# --------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class RatingsArrays:
    """What a ratings store holds, as lazy arrays (``dmf.cf`` makes a
    ``Ratings`` of it)."""

    by_user: da.Array
    by_item: da.Array
    user_ids: np.ndarray
    item_ids: np.ndarray
    token: str
    location: Location
    timestamps: da.Array | None


def is_ratings_group(group) -> bool:
    """Whether a Zarr group is a ratings store (a CSR group with its twin).

    Examples
    --------
    >>> loc = Location.parse("memory://doc/isr.zarr")
    >>> g = write_ratings(loc, (1, 1), "float64", triplets=lambda: iter([([0], [0], [3.0])]))
    >>> is_ratings_group(g)
    True
    """
    return is_csr_group(group) and dmf_attrs(group).get("kind") == KIND


def open_ratings_arrays(location: Location, *,
                        target_bytes: int = TARGET_CHUNK_BYTES) -> RatingsArrays:
    """The by-user and by-item views, ids and timestamps of a ratings store.

    ``by_user`` reads the CSR group; ``by_item`` the CSC twin as the CSR of
    the transpose (whole items per block); ``timestamps`` (or None) has
    ``by_user``'s pattern and row blocks, the times as values. A plain CSR
    store (no twin, say from ``dmf ingest x.mtx``) has its item view built
    in memory when it is small (with a :class:`DmfWarning`); a larger one is
    refused: re-ingest it with ``--format ratings``.

    Examples
    --------
    >>> loc = Location.parse("memory://doc/ora.zarr")
    >>> _ = write_ratings(loc, (2, 3), "float64", user_ids=[10, 20],
    ...                   triplets=lambda: iter([([0, 1], [2, 0], [5.0, 1.0])]))
    >>> r = open_ratings_arrays(loc)
    >>> r.by_item.compute().toarray()
    array([[0., 1.],
           [0., 0.],
           [5., 0.]])
    >>> r.user_ids, r.item_ids, r.timestamps
    (array([10, 20]), array([0, 1, 2]), None)
    """
    node = location.open_node()
    if not isinstance(node, zarr.Group) or not is_csr_group(node):
        raise InputError(f"{location}: not a ratings store (expected a sparse CSR group); "
                         "make one with `dmf ingest FILE OUT --format ratings`")
    by_user = open_csr(node, location, target_bytes=target_bytes)
    m, n = by_user.shape
    bounds = np.concatenate([[0], np.cumsum(by_user.chunks[0])]).tolist()
    members = set(node.array_keys()) | set(node.group_keys())
    timestamps = None
    if TIMESTAMPS in members:
        timestamps = open_csr(node, location, data=TIMESTAMPS, row_bounds=bounds)
    if TWIN in members:
        by_item = open_csr(node[TWIN], location.join(TWIN), target_bytes=target_bytes)
        if by_item.shape != (n, m):
            raise StoreError(f"{location}/{TWIN}: the item view is {by_item.shape}, the "
                             f"ratings {m} x {n}; the store is corrupt")
    else:
        by_item = _item_view_in_memory(node, location, by_user, target_bytes)
    token = "ratings-" + dask.base.tokenize(
        location.url, json.dumps(dict(node.attrs), sort_keys=True, default=str))
    return RatingsArrays(by_user=by_user, by_item=by_item,
                         user_ids=_read_ids(node, USER_IDS, m, location),
                         item_ids=_read_ids(node, ITEM_IDS, n, location),
                         token=token, location=location, timestamps=timestamps)


def _item_view_in_memory(node, location: Location, by_user: da.Array,
                         target_bytes: int) -> da.Array:
    nbytes = node["data"].nbytes + node["indices"].nbytes
    if nbytes > IN_MEMORY_TWIN_BYTES:
        raise InputError(
            f"{location}: a sparse store without an item view ({TWIN}/ twin) and too large "
            f"({nbytes / 2**20:.0f} MiB) to transpose in memory; re-ingest the ratings with "
            "`dmf ingest FILE OUT --format ratings`, which stores both views")
    warn(f"{location}: no item view stored; the transpose is built in memory "
         f"({nbytes / 2**20:.1f} MiB). `dmf ingest --format ratings` stores one",
         DmfWarning)
    scheduler = "threads" if location.is_process_local else None
    transpose = scipy.sparse.csr_matrix(by_user.compute(scheduler=scheduler).T)
    transpose.sort_indices()
    rows = max(1, min(transpose.shape[0], target_bytes // max(
        1, (transpose.data.itemsize + transpose.indices.itemsize)
        * max(1, transpose.nnz // max(1, transpose.shape[0])))))
    return da.from_array(transpose, chunks=(rows, -1), asarray=False,
                         name="ratings-item-view-" + dask.base.tokenize(by_user.name))


def _read_ids(group: zarr.Group, key: str, length: int, location: Location) -> np.ndarray:
    if key not in set(group.array_keys()):
        return np.arange(length)
    values = group[key][:]
    if values.shape != (length,):
        raise StoreError(f"{location}/{key}: {values.shape[0]} ids for {length} rows or "
                         "columns; the store is corrupt")
    return values.astype(np.int64) if values.dtype.kind in "iu" else values.astype(object)


__all__ = [
    "IN_MEMORY_TWIN_BYTES",
    "KIND",
    "RatingsArrays",
    "is_ratings_group",
    "open_ratings_arrays",
    "write_ratings",
]
