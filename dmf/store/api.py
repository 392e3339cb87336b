"""The store's public functions: ``open_matrix`` and ``save_matrix``."""

from __future__ import annotations

import os
from typing import Any

import dask.array as da
import numpy as np
import scipy.sparse
import zarr

from dmf.errors import InputError, StoreError
from dmf.store.dense_read import as_dask, default_chunks, location_of, open_dense
from dmf.store.dense_write import save_dense
from dmf.store.location import Location, dmf_attrs
from dmf.store.sparse_format import is_csr_group, is_sparse_dask
from dmf.store.sparse_read import open_csr
from dmf.store.sparse_write import save_csr
from dmf.store.validate import check_finite, check_shape, storage_dtype


def open_matrix(
    url: str | os.PathLike | zarr.Array, *, storage_options: dict[str, Any] | None = None
) -> da.Array:
    """Open a stored matrix as a lazy dask array.

    Parameters
    ----------
    url : str, path or zarr.Array
        A local path or an fsspec URL (``s3://``, ``memory://``, ``file://``)
        of a dense Zarr array (format 2 or 3) or of a CSR group.
    storage_options : dict, optional
        Passed to fsspec, e.g. ``{"anon": True}`` or an ``endpoint_url``.

    Returns
    -------
    dask.array.Array
        One task per stored chunk. A sparse store gives an array whose blocks
        are ``scipy.sparse.csr_matrix`` row blocks.

    Raises
    ------
    StoreError
        Nothing there, not a Zarr store, an incomplete write; a corrupt chunk
        is reported (naming its file) when it is read.
    InputError
        Not a 2-D matrix, or a dtype that is not a real number.

    Examples
    --------
    >>> import numpy as np, dmf
    >>> dmf.save_matrix(np.eye(3, dtype="float32"), "memory://doc/eye.zarr")
    'memory://doc/eye.zarr'
    >>> x = dmf.open_matrix("memory://doc/eye.zarr")
    >>> x.shape, x.dtype
    ((3, 3), dtype('float32'))
    >>> float(x.sum().compute())
    3.0
    """
    if isinstance(url, zarr.Array):
        return open_dense(url, location_of(url))
    location = Location.parse(url, storage_options)
    node = location.open_node()
    if isinstance(node, zarr.Group):
        if is_csr_group(node):
            return open_csr(node, location)
        if dmf_attrs(node).get("kind") == "result":
            raise InputError(
                f"{location}: a dmf result, not a matrix; open one of its arrays "
                f"(e.g. {location}/W) or use dmf.load"
            )
        raise StoreError(f"{location}: a Zarr group, not a matrix (no CSR encoding attrs)")
    return open_dense(node, location)


def save_matrix(
    x,
    url: str | os.PathLike,
    *,
    chunks=None,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    codec: str | None = None,
    attrs: dict[str, Any] | None = None,
) -> str:
    """Write a matrix to a Zarr store, checking it on the way.

    Dense input (numpy, dask, zarr, or a URL) becomes a 2-D Zarr array in
    format 3; scipy.sparse input becomes a CSR group (anndata encoding).
    float32 and float64 are kept bit for bit; integers become float64 (with a
    :class:`~dmf.errors.DmfWarning` and ``source_dtype`` in the attrs).

    Parameters
    ----------
    x : array-like, dask array, zarr array, scipy.sparse matrix or URL
    url : str or path
        Where to write: a local path or an fsspec URL.
    chunks : int or (int, int), optional
        Rows per block, or (rows, columns). Default: row blocks of about
        64 MiB (:func:`dmf.store.dense_read.default_chunks`).
    overwrite : bool
        Replace a store already there. The old store stays intact until the
        new one is completely written and checked.
    storage_options : dict, optional
        Passed to fsspec.
    codec : {"lz4", "zstd", "blosc-zstd", "none"}, optional
        Compression; the default is the fastest to read
        (see benchmarks/README.md).
    attrs : dict, optional
        Extra entries for ``attrs["dmf"]``.

    Returns
    -------
    str
        The normalized URL (an absolute path for local files).

    Raises
    ------
    InputError
        Not 2-D, empty, NaN or Inf (counted, first position named),
        unsupported dtype. Nothing is left at ``url`` and an existing store
        there is untouched.
    StoreError
        ``url`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import numpy as np, dmf
    >>> x = np.arange(12, dtype="float64").reshape(4, 3)
    >>> dmf.save_matrix(x, "memory://doc/x.zarr", chunks=2)
    'memory://doc/x.zarr'
    >>> bool((dmf.open_matrix("memory://doc/x.zarr").compute() == x).all())
    True
    """
    location = Location.parse(url, storage_options)
    if scipy.sparse.issparse(x) or is_sparse_dask(x):
        save_csr(x, location, overwrite=overwrite, codec=codec, attrs=attrs)
    else:
        name = str(x) if isinstance(x, (str, os.PathLike)) else None
        source = open_matrix(x) if isinstance(x, (str, os.PathLike, Location)) else x
        save_dense(source, location, chunks=chunks, overwrite=overwrite, codec=codec,
                   attrs=attrs, name=name)
    return str(location)


def as_matrix(
    X, *, storage_options: dict[str, Any] | None = None, name: str | None = None
) -> da.Array:
    """The validated dask array an algorithm works on.

    Accepts a URL, a Zarr array, a dask or numpy array, or a scipy.sparse
    matrix. Checks that it is a non-empty 2-D matrix of real numbers and,
    unless it is a complete store written by dmf (checked when written),
    that every value is finite: one extra pass, blockwise.
    """
    checked = False
    if isinstance(X, (str, os.PathLike, Location)):
        location = Location.parse(X, storage_options)
        name = name or str(location)
        arr = open_matrix(location)
        checked = dmf_attrs(location.open_node()).get("complete") is True
    elif scipy.sparse.issparse(X):
        name = name or "input matrix"
        X = scipy.sparse.csr_matrix(X)
        check_shape(X.shape, name)
        if not np.isfinite(X.data).all():
            raise InputError(f"{name}: {int((~np.isfinite(X.data)).sum())} NaN or Inf values; "
                             "dmf needs finite values")
        storage_dtype(X.dtype, name)
        arr, checked = da.from_array(X, chunks=(default_chunks(X.shape, X.dtype)[0], -1),
                                     asarray=False), True
    else:
        name = name or "input matrix"
        arr = X if isinstance(X, da.Array) else as_dask(X)
    check_shape(arr.shape, name)
    dtype = storage_dtype(arr.dtype, name)
    if dtype != arr.dtype:
        arr = arr.astype(dtype)
    if not checked and not is_sparse_dask(arr):
        check_finite(arr, name=name)
    return arr
