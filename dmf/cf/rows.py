"""Reading ratings a user block at a time, on the client.

Recommendation and evaluation score whole user blocks (``m_b x n`` dense
scores for one block, never for all users), so they walk the ``by_user``
view block by block: one block's ratings, and the model's scores for its
users, are in memory at a time. Models that need the training rows of a few
users (item-kNN's predictions) fetch just those rows through
:func:`user_rows`.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

import dask.array as da
import numpy as np
import scipy.sparse

from dmf.errors import InputError


def block_bounds(x: da.Array, block_rows: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) of each row block of ``x``, or of blocks of
    ``block_rows`` rows when given."""
    if block_rows is None:
        edges = np.concatenate([[0], np.cumsum(x.chunks[0])])
    else:
        if block_rows < 1:
            raise InputError(f"block_rows must be at least 1, got {block_rows}")
        edges = np.unique(np.r_[np.arange(0, x.shape[0], block_rows), x.shape[0]])
    return [(int(a), int(b)) for a, b in pairwise(edges) if b > a]


def iter_row_blocks(x: da.Array, block_rows: int | None = None
                    ) -> Iterator[tuple[int, int, scipy.sparse.csr_matrix]]:
    """(start, stop, rows as csr) for each row block of a sparse dask array,
    computed one block at a time."""
    for start, stop in block_bounds(x, block_rows):
        yield start, stop, as_csr(x[start:stop].compute())


def as_csr(part) -> scipy.sparse.csr_matrix:
    """A block as float64 csr with sorted indices (explicit zeros kept: they
    are ratings)."""
    csr = scipy.sparse.csr_matrix(part, dtype=np.float64)
    if not csr.has_sorted_indices:
        csr = csr.sorted_indices()
    return csr


def user_rows(by_user: da.Array, users: np.ndarray) -> scipy.sparse.csr_matrix:
    """The rows ``users`` (integer indices, any order, repeats allowed) of a
    sparse m x n dask array, as one csr matrix in that order. Only the
    blocks holding them are read."""
    users = np.asarray(users, dtype=np.int64)
    if users.size == 0:
        return scipy.sparse.csr_matrix((0, by_user.shape[1]))
    unique, inverse = np.unique(users, return_inverse=True)
    return as_csr(by_user[unique].compute())[inverse]


def as_index(values, size: int, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array of indices in [0, size), or an
    InputError that says what is wrong."""
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise InputError(f"{name} must be a 1-D sequence of integer indices, got shape "
                         f"{arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"{name} must be integer row/column indices, got dtype "
                             f"{arr.dtype}; map external ids with the model's user_ids / "
                             "item_ids first")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = arr[(arr < 0) | (arr >= size)][0]
        raise InputError(f"{name}: index {int(bad)} is out of range for {size} "
                         f"{name}; indices must lie in [0, {size})")
    return arr
