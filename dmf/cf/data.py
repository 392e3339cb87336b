"""Ratings as the collaborative-filtering models read them.

A rating matrix R is users x items and sparse: only observed ratings are
stored. Models need it two ways round: by user (the user half-step of ALS
reads each user's ratings) and by item (the item half-step reads each
item's). :class:`Ratings` holds both views as dask arrays of
``scipy.sparse.csr_matrix`` row blocks, ``by_user`` (m x n) and ``by_item``
(n x m, the transpose), plus the external ids of users and items.

Stored ratings (``dmf ingest --format ratings``, ``dmf generate ratings``)
keep the item view as a CSC twin of the CSR group, so neither view needs a
transpose in memory (:func:`open_ratings`); for a scipy.sparse matrix both
views are made here (:func:`ratings_from_scipy`). Writing a store is
:mod:`dmf.cf.store`'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.sparse
from dask.highlevelgraph import HighLevelGraph

from dmf.errors import InputError
from dmf.store.dense_read import TARGET_CHUNK_BYTES
from dmf.store.location import Location
from dmf.store.ratings import open_ratings_arrays, ratings_csr

#: Rows per block when the views are made from an in-memory matrix.
MEMORY_BLOCK_ROWS = 50_000


@dataclass(frozen=True)
class Ratings:
    """Observed ratings, by user and by item.

    Attributes
    ----------
    by_user : dask.array.Array
        m x n, blocks of ``csr_matrix`` holding whole rows (users).
    by_item : dask.array.Array
        n x m, the transpose, blocks of ``csr_matrix`` rows (items).
    user_ids, item_ids : numpy.ndarray
        External id of each row / column (``arange`` when there are none).
    token : str
        Identifies the content, for job fingerprints.
    location : Location or None
        Where the ratings are stored, if they are.
    timestamps : dask.array.Array or None
        m x n like ``by_user`` with the time of each rating as its value,
        when the source had them (used by the temporal split).

    Examples
    --------
    >>> import scipy.sparse, dmf
    >>> R = dmf.cf.as_ratings(scipy.sparse.csr_matrix([[5.0, 0, 3], [0, 4, 0]]))
    >>> R.shape, R.by_item.shape, R.to_scipy().nnz
    ((2, 3), (3, 2), 3)
    """

    by_user: da.Array
    by_item: da.Array
    user_ids: np.ndarray
    item_ids: np.ndarray
    token: str
    location: Location | None = None
    timestamps: da.Array | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.by_user.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.by_user.dtype

    def to_scipy(self) -> scipy.sparse.csr_matrix:
        """The whole matrix in memory (for small data and tests)."""
        return scipy.sparse.csr_matrix(self.by_user.compute())


def _blocks(csr: scipy.sparse.csr_matrix, rows: int) -> da.Array:
    """The row blocks of ``csr``, sliced once, as the chunks of a dask array
    (``da.from_array`` slices them again in every task: a solver's every
    pass over the ratings paid for a copy of them)."""
    rows = max(1, min(rows, csr.shape[0]))
    name = "ratings-" + dask.base.tokenize(csr.data, csr.indices, csr.indptr, csr.shape, rows)
    starts = range(0, csr.shape[0], rows)
    layer = {(name, b, 0): csr[r0:r0 + rows] for b, r0 in enumerate(starts)}
    chunks = (tuple(min(rows, csr.shape[0] - r0) for r0 in starts), (csr.shape[1],))
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    return da.Array(graph, name, chunks, meta=scipy.sparse.csr_matrix((0, 0), dtype=csr.dtype))


def ratings_from_scipy(R, *, name: str = "ratings", block_rows: int = MEMORY_BLOCK_ROWS,
                       user_ids=None, item_ids=None, duplicates: str = "last") -> Ratings:
    """Both views of an in-memory sparse matrix. Every stored entry is a
    rating, explicit zeros included; a repeated (user, item) entry keeps
    the last one ("last", with a warning giving the count) or their sum
    ("sum": counts of implicit feedback), as every entry point of ratings
    (:func:`dmf.store.ratings.ratings_csr`).

    Examples
    --------
    >>> import scipy.sparse
    >>> R = scipy.sparse.csr_matrix([[5.0, 0, 3.0], [0, 4.0, 0]])
    >>> r = ratings_from_scipy(R)
    >>> r.shape, r.by_item.shape
    ((2, 3), (3, 2))
    """
    if R.ndim != 2 or 0 in R.shape:
        raise InputError(f"{name}: ratings must be a non-empty 2-D matrix, got shape {R.shape}")
    if R.dtype.kind not in "fiub":
        raise InputError(f"{name}: ratings must be real numbers, got dtype {R.dtype}")
    R = ratings_csr(R, duplicates=duplicates, name=name)
    if R.dtype.kind != "f":
        R = R.astype(np.float64)
    if not np.isfinite(R.data).all():
        raise InputError(f"{name}: {int((~np.isfinite(R.data)).sum())} NaN or Inf ratings")
    T = scipy.sparse.csr_matrix(R.T)
    T.sort_indices()
    m, n = R.shape
    token = "ratings-" + dask.base.tokenize(R.data, R.indices, R.indptr, R.shape)
    return Ratings(by_user=_blocks(R, block_rows), by_item=_blocks(T, block_rows),
                   user_ids=np.arange(m) if user_ids is None else np.asarray(user_ids),
                   item_ids=np.arange(n) if item_ids is None else np.asarray(item_ids),
                   token=token)


def open_ratings(url: str | os.PathLike | Location,
                 storage_options: dict[str, Any] | None = None, *,
                 target_bytes: int = TARGET_CHUNK_BYTES) -> Ratings:
    """Open a ratings store as :class:`~dmf.cf.data.Ratings`.

    ``by_user`` reads the store's CSR group, ``by_item`` its CSC twin (as
    the CSR of the transpose), both lazily in row blocks of about
    ``target_bytes``; ``timestamps`` has ``by_user``'s pattern and blocks,
    or is None. The ids are read into memory; the token identifies this
    write of the store (a store written again at the same URL is another
    input). A plain CSR store without a twin gets its item view built in
    memory when small (with a note), else :class:`~dmf.errors.InputError`
    asks to re-ingest it with ``--format ratings``.

    Examples
    --------
    >>> import scipy.sparse, dmf
    >>> R = scipy.sparse.csr_matrix([[5.0, 0, 3.0], [0, 4.0, 0]])
    >>> _ = dmf.cf.save_ratings(R, "memory://doc/open-r.zarr", user_ids=["ann", "bob"])
    >>> r = open_ratings("memory://doc/open-r.zarr")
    >>> r.shape, r.user_ids.tolist(), r.item_ids.tolist()
    ((2, 3), ['ann', 'bob'], [0, 1, 2])
    >>> r.by_item.compute().toarray()
    array([[5., 0.],
           [0., 4.],
           [3., 0.]])
    """
    location = Location.parse(url, storage_options)
    arrays = open_ratings_arrays(location, target_bytes=target_bytes)
    return Ratings(by_user=arrays.by_user, by_item=arrays.by_item, user_ids=arrays.user_ids,
                   item_ids=arrays.item_ids, token=arrays.token, location=location,
                   timestamps=arrays.timestamps)


def as_ratings(R, *, storage_options: dict[str, Any] | None = None) -> Ratings:
    """The :class:`Ratings` of a ratings store URL, a scipy.sparse matrix, or
    a :class:`Ratings` (returned as it is).

    Parameters
    ----------
    R : str, os.PathLike, Location, scipy.sparse matrix or Ratings
        The ratings: a store written by :func:`dmf.cf.save_ratings` or
        ``dmf ingest``, or users x items with zeros for "not rated".
    storage_options : dict, optional
        fsspec options for a remote store.

    Returns
    -------
    Ratings

    Examples
    --------
    >>> import scipy.sparse, dmf
    >>> R = dmf.cf.as_ratings(scipy.sparse.csr_matrix([[5.0, 0, 3], [0, 4, 0]]))
    >>> R.shape, R.user_ids.tolist()
    ((2, 3), [0, 1])
    >>> dmf.cf.as_ratings(R) is R
    True
    """
    if isinstance(R, Ratings):
        return R
    if scipy.sparse.issparse(R):
        return ratings_from_scipy(R)
    if isinstance(R, (str, os.PathLike, Location)):
        return open_ratings(R, storage_options=storage_options)
    raise InputError(f"ratings must be a ratings store URL or a scipy.sparse matrix, "
                     f"got {type(R).__name__}")
