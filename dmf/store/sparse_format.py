"""The anndata on-disk CSR encoding: what a sparse store is.

A sparse matrix is a Zarr (format 3) group with the attributes anndata
writes (``encoding-type: csr_matrix``, ``encoding-version: 0.1.0``,
``shape: [m, n]``) and three 1-D arrays:

``data``
    the stored values, float32 or float64;
``indices``
    their column numbers, int32 (int64 when n >= 2**31);
``indptr``
    m + 1 offsets (int64): row ``i`` holds ``data[indptr[i]:indptr[i + 1]]``.

dmf adds ``attrs["dmf"] = {"kind": "sparse", "complete": ..., "nnz": ...}``
and writes the CSR canonically: column indices sorted within each row,
duplicates summed. ``complete`` is set last, as for dense stores. anndata
reads such a group as it is; dmf reads groups written by anndata too (they
have no ``dmf`` attrs). A CSC twin for column-side passes may live in a
subgroup ``csc`` (anndata's ``csc_matrix`` encoding of the same m x n
matrix, that is the CSR arrays of its transpose; ratings stores have one,
see :mod:`dmf.store.ratings`); readers ignore members they do not know.
Further 1-D arrays aligned with ``data`` (a ratings store's ``timestamps``)
read as a matrix of the same pattern (``open_csr(..., data=NAME)``).

Row blocks are planned in :mod:`dmf.store.sparse_row_blocks`, read in
:mod:`dmf.store.sparse_read` and written in :mod:`dmf.store.sparse_write`.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import scipy.sparse
import zarr

ENCODING = {"encoding-type": "csr_matrix", "encoding-version": "0.1.0"}
#: The same arrays read the other way round: a CSC group of an m x n matrix
#: holds the CSR arrays of its n x m transpose.
CSC_ENCODING = {"encoding-type": "csc_matrix", "encoding-version": "0.1.0"}

#: Length of the stored chunks of ``data``, ``indices`` and ``indptr``:
#: 8 or 16 MiB, so a row block read touches few partial chunks.
CHUNK_ELEMENTS = 2**21


def is_csr_group(group: zarr.Group) -> bool:
    """Whether a Zarr group holds a matrix in the anndata CSR encoding.

    Examples
    --------
    >>> is_csr_group(zarr.create_group(store={}, attributes=ENCODING))
    True
    """
    return dict(group.attrs).get("encoding-type") == "csr_matrix"


def is_sparse_dask(x) -> bool:
    """Whether ``x`` is a dask array whose blocks are scipy.sparse matrices.

    Examples
    --------
    >>> is_sparse_dask(da.from_array(scipy.sparse.eye(4, format="csr"), asarray=False))
    True
    >>> is_sparse_dask(da.eye(4))
    False
    """
    return isinstance(x, da.Array) and scipy.sparse.issparse(x._meta)


def index_dtype(ncols: int) -> np.dtype:
    """The dtype of stored column indices: int32 unless ``ncols`` needs more.

    Examples
    --------
    >>> index_dtype(1000), index_dtype(2**31)
    (dtype('int32'), dtype('int64'))
    """
    return np.dtype(np.int32 if ncols < 2**31 else np.int64)


def canonical_csr(x) -> scipy.sparse.csr_matrix:
    """``x`` as a CSR matrix with sorted column indices and no duplicates.

    Duplicates are summed (the scipy and Matrix Market convention); explicit
    zeros are kept. ``x`` itself is never modified.

    Examples
    --------
    >>> x = scipy.sparse.coo_matrix(([1.0, 2.0, 0.0], ([0, 0, 1], [2, 2, 0])), shape=(2, 3))
    >>> c = canonical_csr(x)
    >>> c.data, c.indices, c.indptr
    (array([3., 0.]), array([2, 0], dtype=int32), array([0, 1, 2], dtype=int32))
    """
    if isinstance(x, scipy.sparse.csr_matrix) and x.has_canonical_format:
        return x
    csr = scipy.sparse.csr_matrix(x, copy=True)
    csr.sum_duplicates()
    return csr


__all__ = [
    "CHUNK_ELEMENTS",
    "CSC_ENCODING",
    "ENCODING",
    "canonical_csr",
    "index_dtype",
    "is_csr_group",
    "is_sparse_dask",
]
