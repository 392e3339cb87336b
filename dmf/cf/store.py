"""Ratings stores from :class:`~dmf.cf.data.Ratings`: save them, stream them.

The store layout (a CSR group by user, its CSC twin by item, ids, times) is
:mod:`dmf.store.ratings`'s; this module writes scipy matrices and
``Ratings`` (a split's train and test, say) to stores, row block by row
block. Opening one (:func:`open_ratings`, re-exported here) is
:mod:`dmf.cf.data`'s, beside the other ways of making a ``Ratings``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterator
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.sparse

from dmf.cf.data import Ratings, open_ratings
from dmf.errors import InputError
from dmf.store.dense_read import TARGET_CHUNK_BYTES
from dmf.store.location import Location
from dmf.store.ratings import ratings_csr, write_ratings
from dmf.store.sparse_format import canonical_csr
from dmf.store.sparse_row_blocks import csr_row_blocks

#: Row blocks computed at once when a Ratings is streamed to the client.
_WINDOW = 4


def save_ratings(
    R,
    url: str | os.PathLike | Location,
    *,
    user_ids=None,
    item_ids=None,
    timestamps=None,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    codec: str | None = None,
    dtype=None,
    target_bytes: int = TARGET_CHUNK_BYTES,
    duplicates: str = "last",
) -> Ratings:
    """Write ratings to a ratings store and open it.

    Parameters
    ----------
    R : scipy.sparse matrix or Ratings
        Every stored entry is a rating (explicit zeros too); a repeated
        (user, item) entry of a scipy matrix keeps the last one, with a
        warning (``duplicates="sum"``: their sum), as
        :func:`~dmf.cf.data.ratings_from_scipy` does. A ``Ratings`` is
        streamed by row blocks, never gathered.
    url : str, path or Location
    user_ids, item_ids : array-like, optional
        Default: ``R``'s own (a ``Ratings``), else none (row and column
        numbers). Plain ``arange`` ids are not stored.
    timestamps : scipy.sparse matrix or dask array, optional
        Times with ``R``'s pattern as values (a ``Ratings``' own by
        default).
    overwrite : bool
        Replace a store there, once the new one is complete.
    dtype : {"float32", "float64"}, optional
        Stored dtype of the ratings (default ``R``'s; integers: float64).

    Returns
    -------
    Ratings
        The store, opened.

    Raises
    ------
    InputError
        NaN or Inf ratings or times, ids that are not unique or not one per
        row / column, times that do not match the ratings' pattern.

    Examples
    --------
    >>> import scipy.sparse
    >>> R = scipy.sparse.csr_matrix([[5.0, 0, 3.0], [0, 4.0, 0]])
    >>> T = R.copy(); T.data = np.array([100.0, 200.0, 300.0])
    >>> r = save_ratings(R, "memory://doc/save-r.zarr", timestamps=T, item_ids=[7, 8, 9])
    >>> r.timestamps.compute().toarray()
    array([[100.,   0., 200.],
           [  0., 300.,   0.]])
    >>> r.item_ids
    array([7, 8, 9])
    """
    location = Location.parse(url, storage_options)
    if isinstance(R, Ratings):
        shape, source_dtype, nnz_hint = R.shape, R.dtype, None
        user_ids = R.user_ids if user_ids is None else user_ids
        item_ids = R.item_ids if item_ids is None else item_ids
        times = R.timestamps if timestamps is None else timestamps
        if times is not None and not isinstance(times, da.Array):
            times = da.from_array(canonical_csr(times), chunks=(R.by_user.chunks[0], -1),
                                  asarray=False)
        if times is not None and (times.shape != shape
                                  or times.chunks[0] != R.by_user.chunks[0]):
            times = times.rechunk((R.by_user.chunks[0], -1))

        def row_blocks():
            for _, block, when in stream_blocks(R.by_user, times, R.location):
                yield block, None if when is None else when.data

    elif scipy.sparse.issparse(R):
        csr = ratings_csr(R, duplicates=duplicates, name=str(location))
        shape, source_dtype, nnz_hint = csr.shape, csr.dtype, csr.nnz
        times = None if timestamps is None else _aligned_times(csr, timestamps)
        bounds = csr_row_blocks(csr.indptr, csr.dtype, csr.indices.dtype, target_bytes)

        def row_blocks():
            for r0, r1 in itertools.pairwise(bounds):
                p0, p1 = csr.indptr[r0], csr.indptr[r1]
                yield csr[r0:r1], None if times is None else times[p0:p1]

    else:
        raise InputError(f"ratings must be a scipy.sparse matrix or a Ratings, got "
                         f"{type(R).__name__}")
    if dtype is None:
        dtype = source_dtype if np.dtype(source_dtype) in (np.float32, np.float64) \
            else np.float64
    write_ratings(location, shape, dtype, row_blocks=row_blocks,
                  user_ids=_unless_arange(user_ids), item_ids=_unless_arange(item_ids),
                  timestamps=times is not None, overwrite=overwrite, codec=codec,
                  name=str(location), target_bytes=target_bytes, nnz_hint=nnz_hint)
    return open_ratings(location, target_bytes=target_bytes)


def _aligned_times(csr: scipy.sparse.csr_matrix, timestamps) -> np.ndarray:
    """The times of ``csr``'s entries, in its canonical order."""
    if not scipy.sparse.issparse(timestamps):
        raise InputError(f"timestamps must be a scipy.sparse matrix with the ratings' pattern, "
                         f"got {type(timestamps).__name__}")
    times = canonical_csr(timestamps)
    if (times.shape != csr.shape or not np.array_equal(times.indptr, csr.indptr)
            or not np.array_equal(times.indices, csr.indices)):
        raise InputError("timestamps must have exactly the ratings' pattern (a time for "
                         "each stored rating and none elsewhere)")
    return np.asarray(times.data, dtype=np.float64)


def _unless_arange(ids):
    if ids is None:
        return None
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu" and np.array_equal(ids, np.arange(len(ids))):
        return None
    return ids


def scheduler_for_ratings(location: Location | None) -> str | None:
    """The threaded scheduler for ratings that cannot leave this process
    (in memory, or in a ``memory://`` store), else the default one."""
    return "threads" if location is None or location.is_process_local else None


def stream_blocks(by_user: da.Array, times: da.Array | None,
                  location: Location | None) -> Iterator[tuple]:
    """``(first_row, block, times_block or None)`` for each row block in
    order, computed a few at a time, so the client holds a few blocks."""
    parts = by_user.to_delayed(optimize_graph=False).ravel()
    when = (times.to_delayed(optimize_graph=False).ravel() if times is not None
            else [None] * len(parts))
    starts = np.concatenate([[0], np.cumsum(by_user.chunks[0])])
    scheduler = scheduler_for_ratings(location)
    kwargs = {"scheduler": scheduler} if scheduler else {}
    for i in range(0, len(parts), _WINDOW):
        window = list(zip(parts[i:i + _WINDOW], when[i:i + _WINDOW], strict=True))
        done = dask.compute(*window, **kwargs)
        for k, (block, stamp) in enumerate(done):
            yield int(starts[i + k]), scipy.sparse.csr_matrix(block), (
                None if stamp is None else scipy.sparse.csr_matrix(stamp))


def with_timestamps(R: Ratings, times: scipy.sparse.csr_matrix | None) -> Ratings:
    """``R`` (made in memory) with the times of its ratings, blocked as its
    ``by_user``."""
    if times is None:
        return R
    stamps = da.from_array(times, chunks=(R.by_user.chunks[0], -1), asarray=False,
                           name="ratings-times-" + dask.base.tokenize(
                               times.data, times.indices, times.indptr, times.shape,
                               R.by_user.chunks))
    return dataclasses.replace(R, timestamps=stamps)


__all__ = ["open_ratings", "save_ratings"]
