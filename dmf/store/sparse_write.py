"""Writing sparse stores: CSR groups (:mod:`dmf.store.sparse_format`)
written row block by row block through a small thread pool, so memory
stays bounded by a few blocks; values are checked on the way and an
existing store is replaced only once the new one is complete.

:func:`dmf.store.triplets.write_csr_from_triplets` builds a store from
(row, column, value) entries given in any order, with bounded memory, by
spilling them to temporary files per row block.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator

import dask
import dask.array as da
import numpy as np
import scipy.sparse
import zarr

from dmf._version import __version__
from dmf.errors import InputError
from dmf.store import codecs
from dmf.store.dense_read import ALL_CHUNKS, TARGET_CHUNK_BYTES
from dmf.store.dense_write import WRITE_EVERY_CHUNK, commit_target, mark_complete, prepare_target
from dmf.store.dims import dimension_names
from dmf.store.location import Location
from dmf.store.sparse_format import (
    CHUNK_ELEMENTS,
    CSC_ENCODING,
    ENCODING,
    canonical_csr,
    index_dtype,
    is_sparse_dask,
)
from dmf.store.sparse_row_blocks import csr_row_blocks
from dmf.store.streaming import BoundedPool
from dmf.store.validate import (
    check_shape,
    entries_report,
    precast,
    raise_for_reports,
    storage_dtype,
)

#: Row blocks computed at once when saving a dask array of sparse blocks.
_DASK_WINDOW = 4


class _Appender:
    """Appends to a growing 1-D Zarr array in whole chunks, so each chunk is
    written once, by one thread."""

    def __init__(self, array: zarr.Array, pool: BoundedPool):
        self.array = array
        self.pool = pool
        self.chunk = array.chunks[0]
        self.length = 0
        self._buffer: list[np.ndarray] = []
        self._buffered = 0

    def append(self, values: np.ndarray) -> None:
        if len(values):
            self._buffer.append(values)
            self._buffered += len(values)
            if self._buffered >= self.chunk:
                self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)

    def _flush(self, final: bool) -> None:
        if not self._buffered:
            return
        values = self._buffer[0] if len(self._buffer) == 1 else np.concatenate(self._buffer)
        count = len(values) if final else len(values) - len(values) % self.chunk
        rest = values[count:].copy()  # a copy, so the written part can be freed
        self._buffer, self._buffered = ([rest] if len(rest) else []), len(rest)
        start, self.length = self.length, self.length + count
        self.array.resize((self.length,))
        self.pool.submit(self._write, start, values[:count])

    def _write(self, start: int, values: np.ndarray) -> None:
        self.array[start:start + len(values)] = values


class CsrWriter:
    """Writes a CSR group row block by row block (use as a context manager).

    The group is created marked incomplete; :meth:`finish` flushes the last
    chunks and marks it complete. ``nnz_hint`` (an upper bound of the number
    of stored values) only sizes the chunks of small matrices.

    ``shape`` is the shape of the CSR arrays written. ``csc=True`` labels
    them as the CSC group of the transpose (``encoding-type: csc_matrix``,
    ``shape`` reversed): a CSC twin is written as the CSR of the transpose.
    ``extra`` maps names of further 1-D arrays aligned with ``data`` to their
    dtypes; :meth:`append` then takes their values by name.
    """

    def __init__(
        self, location: Location, shape: tuple[int, int], dtype, *, codec: str | None = None,
        attrs: dict | None = None, nnz_hint: int | None = None, csc: bool = False,
        extra: dict | None = None,
    ):
        m, n = (int(s) for s in shape)
        self.shape = (m, n)
        self.dtype = np.dtype(dtype)
        self.index_dtype = index_dtype(n)
        self.rows = 0
        self.nnz = 0
        meta = {"kind": "sparse", "format": "csc" if csc else "csr", "complete": False,
                "write_id": uuid.uuid4().hex,
                "dmf_version": __version__, **(attrs or {})}
        encoding, logical = (CSC_ENCODING, [n, m]) if csc else (ENCODING, [m, n])
        self.group = zarr.create_group(
            store=location.zarr_store(), overwrite=True, zarr_format=3,
            attributes={**encoding, "shape": logical, "dmf": meta},
        )
        bound = m * n if nnz_hint is None else min(int(nnz_hint), m * n)
        chunk = max(1, min(CHUNK_ELEMENTS, bound))
        compressors = codecs.compressors(codec)
        self.pool = BoundedPool(2)

        def appender(name, array_dtype, length):
            array = self.group.create_array(name, shape=(0,), chunks=(length,),
                                            dtype=array_dtype, compressors=compressors,
                                            fill_value=0, config=WRITE_EVERY_CHUNK,
                                            dimension_names=dimension_names(name, 1))
            return _Appender(array, self.pool)

        self._data = appender("data", self.dtype, chunk)
        self._indices = appender("indices", self.index_dtype, chunk)
        self._indptr = appender("indptr", np.int64, min(CHUNK_ELEMENTS, m + 1))
        self._indptr.append(np.zeros(1, np.int64))
        self._extra = {key: appender(key, np.dtype(kind), chunk)
                       for key, kind in (extra or {}).items()}

    def append(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
               **extra: np.ndarray) -> None:
        """Append rows given by their own CSR arrays (``indptr[0] == 0``),
        and the values of the ``extra`` arrays aligned with ``data``."""
        if set(extra) != set(self._extra):
            raise ValueError(f"expected values for {sorted(self._extra)}, got {sorted(extra)}")
        for key, values in extra.items():
            if len(values) != len(data):
                raise ValueError(f"{key}: {len(values)} values for {len(data)} entries")
            appender = self._extra[key]
            appender.append(np.asarray(values).astype(appender.array.dtype, copy=False))
        self._data.append(np.asarray(data).astype(self.dtype, copy=False))
        self._indices.append(np.asarray(indices).astype(self.index_dtype, copy=False))
        self._indptr.append(np.asarray(indptr[1:], dtype=np.int64) + self.nnz)
        self.nnz += len(data)
        self.rows += len(indptr) - 1

    def finish(self, *, complete: bool = True, **extra) -> None:
        """Flush the last chunks and record ``nnz`` (and ``extra``) in the
        attrs; ``complete=False`` leaves the completion mark to the caller,
        who has more to write in the group (a twin, id arrays)."""
        if self.rows != self.shape[0]:
            raise InputError(f"the row blocks hold {self.rows} rows, the shape says "
                             f"{self.shape[0]}")
        for appender in (self._data, self._indices, self._indptr, *self._extra.values()):
            appender.close()
        self.pool.drain()
        for _, array in self.group.arrays():  # a missing chunk is damage from now on
            if array.nchunks_initialized == array.nchunks:
                array.update_attributes({"dmf": {"chunks_written": ALL_CHUNKS}})
        if complete:
            mark_complete(self.group, nnz=self.nnz, **extra)
        else:
            meta = dict(self.group.attrs)["dmf"]
            self.group.update_attributes({"dmf": {**meta, **extra, "nnz": self.nnz}})

    def __enter__(self) -> CsrWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.pool.__exit__(exc_type, exc, tb)


def write_csr_blocks(
    blocks: Iterable, location: Location, shape: tuple[int, int], dtype, *,
    overwrite: bool = False, codec: str | None = None, attrs: dict | None = None,
    name: str = "input matrix", nnz_hint: int | None = None,
) -> None:
    """Write consecutive row blocks (scipy.sparse, any format) as a CSR group,
    safely: values are checked on the way and an existing good store is
    replaced only once the new one is complete.

    Examples
    --------
    >>> blocks = [scipy.sparse.eye(2, 3, format="csr"), scipy.sparse.csr_matrix((1, 3))]
    >>> write_csr_blocks(blocks, Location.parse("memory://doc/blocks.zarr"), (3, 3), "float32")
    >>> zarr.open_group("memory://doc/blocks.zarr", mode="r")["indptr"][:]
    array([0, 1, 2, 2])
    """
    m, n = shape
    staging = prepare_target(location, overwrite)
    try:
        with CsrWriter(staging, shape, dtype, codec=codec, attrs=attrs,
                       nnz_hint=nnz_hint) as writer:
            reports = []
            for block in blocks:
                block = canonical_csr(block)
                if block.shape[1] != n:
                    raise InputError(f"{name}: a row block has {block.shape[1]} columns, "
                                     f"the matrix {n}")
                data = precast(block.data, writer.dtype)
                reports.append(csr_report(data, block.indices, block.indptr, writer.rows, n))
                writer.append(data, block.indices, block.indptr)
            raise_for_reports(np.array(reports), (m, n), name)
            writer.finish()
    except BaseException:
        staging.remove()
        raise
    commit_target(staging, location)


def csr_report(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, row0: int,
                ncols: int) -> np.ndarray:
    """The value report of CSR rows starting at ``row0`` (``data`` pre-cast)."""
    rows = np.repeat(np.arange(row0, row0 + len(indptr) - 1), np.diff(indptr))
    return entries_report(rows, indices, data, ncols)


def _row_slices(csr: scipy.sparse.csr_matrix, target_bytes: int) -> Iterator:
    bounds = csr_row_blocks(csr.indptr, csr.dtype, csr.indices.dtype, target_bytes)
    for r0, r1 in itertools.pairwise(bounds):
        yield csr[r0:r1]


def _dask_blocks(x: da.Array) -> Iterator:
    if x.numblocks[1] > 1:
        x = x.rechunk({1: -1})
    parts = x.to_delayed(optimize_graph=False).ravel()
    for i in range(0, len(parts), _DASK_WINDOW):
        yield from dask.compute(*parts[i:i + _DASK_WINDOW])


def save_csr(
    x, location: Location, *, overwrite: bool = False, codec: str | None = None,
    attrs: dict | None = None, name: str | None = None,
    target_bytes: int = TARGET_CHUNK_BYTES,
) -> zarr.Group:
    """Write a scipy.sparse matrix (any format) or a dask array of sparse
    blocks as a CSR group.

    The CSR is written canonically (sorted indices, duplicates summed).
    float32 and float64 are kept; integers become float64 with a
    :class:`DmfWarning`. NaN or Inf raise :class:`InputError` (counted, the
    first position named) and leave nothing behind; a store already at
    ``location`` is replaced only once the new one is complete.

    Examples
    --------
    >>> import scipy.sparse
    >>> x = scipy.sparse.coo_matrix(([1.0, 2.0, 3.0], ([0, 0, 2], [1, 1, 0])), shape=(3, 2))
    >>> g = save_csr(x, Location.parse("memory://doc/coo.zarr"))
    >>> g["data"][:], g["indptr"][:]
    (array([3., 3.]), array([0, 1, 1, 2]))
    """
    name = name or "input matrix"
    if scipy.sparse.issparse(x):
        check_shape(x.shape, name)
        dtype = storage_dtype(x.dtype, name)
        csr = canonical_csr(x)
        # In memory already: check it all before anything is written.
        raise_for_reports(csr_report(precast(csr.data, dtype), csr.indices, csr.indptr, 0,
                                      x.shape[1]), x.shape, name)
        blocks, nnz_hint = _row_slices(csr, target_bytes), csr.nnz
    elif is_sparse_dask(x):
        check_shape(x.shape, name)
        dtype = storage_dtype(x.dtype, name)
        blocks, nnz_hint = _dask_blocks(x), None
    else:
        raise InputError(f"{name}: expected a scipy.sparse matrix or a dask array of "
                         f"sparse blocks, got {type(x).__name__}")
    extra = dict(attrs or {})
    if dtype != x.dtype:
        extra.setdefault("source_dtype", str(x.dtype))
    write_csr_blocks(blocks, location, tuple(int(s) for s in x.shape), dtype, overwrite=overwrite,
                     codec=codec, attrs=extra, name=name, nnz_hint=nnz_hint)
    return zarr.open_group(store=location.zarr_store(read_only=True), mode="r")


__all__ = [
    "CsrWriter",
    "csr_report",
    "save_csr",
    "write_csr_blocks",
]
