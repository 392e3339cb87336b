"""Sparse matrices in Zarr: the anndata on-disk CSR encoding.

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

Reading gives a dask array of ``scipy.sparse.csr_matrix`` row blocks, each
holding about 64 MiB of ``data`` + ``indices``. Writing streams row blocks
through a small thread pool, so memory stays bounded by a few blocks;
:func:`dmf.store.triplets.write_csr_from_triplets` builds a store from
(row, column, value) entries given in any order, with bounded memory, by
spilling them to temporary files per row block.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator

import dask
import dask.array as da
import numpy as np
import scipy.sparse
import zarr

from dmf._version import __version__
from dmf.errors import DmfWarning, InputError, StoreError, warn
from dmf.store import codecs
from dmf.store.dense import (
    ALL_CHUNKS,
    TARGET_CHUNK_BYTES,
    WRITE_EVERY_CHUNK,
    check_complete,
    check_every_chunk_present,
    commit_target,
    mark_complete,
    prepare_target,
)
from dmf.store.dims import dimension_names
from dmf.store.location import Location, one_line
from dmf.store.validate import (
    block_report,
    check_shape,
    entries_report,
    precast,
    raise_for_reports,
    storage_dtype,
)

ENCODING = {"encoding-type": "csr_matrix", "encoding-version": "0.1.0"}
#: The same arrays read the other way round: a CSC group of an m x n matrix
#: holds the CSR arrays of its n x m transpose.
CSC_ENCODING = {"encoding-type": "csc_matrix", "encoding-version": "0.1.0"}

#: Length of the stored chunks of ``data``, ``indices`` and ``indptr``:
#: 8 or 16 MiB, so a row block read touches few partial chunks.
CHUNK_ELEMENTS = 2**21

#: Row blocks computed at once when saving a dask array of sparse blocks.
_DASK_WINDOW = 4


def is_csr_group(group) -> bool:
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


# --------------------------------------------------------------------------
# row blocks


def plan_row_blocks(
    read_indptr: Callable[[int, int], np.ndarray],
    nrows: int,
    max_nnz: int,
    max_rows: int,
    piece: int = CHUNK_ELEMENTS,
) -> list[int]:
    """Boundaries ``[0, r1, ..., nrows]`` of consecutive row blocks holding at
    most ``max_nnz`` entries and ``max_rows`` rows each (a single row over
    ``max_nnz`` is a block of its own).

    ``read_indptr(a, b)`` returns ``indptr[a:b]``; it is called on pieces of
    ``piece`` rows in order, so an indptr larger than memory can be planned.

    Examples
    --------
    >>> indptr = np.array([0, 2, 4, 9, 9, 10])
    >>> plan_row_blocks(lambda a, b: indptr[a:b], 5, max_nnz=4, max_rows=10)
    [0, 2, 3, 5]
    """
    bounds = [0]
    start = 0
    p0 = None
    while bounds[-1] < nrows:
        stop = min(start + piece, nrows)  # this piece holds indptr[start..stop]
        vals = np.asarray(read_indptr(start, stop + 1), dtype=np.int64)
        if p0 is None:
            p0 = int(vals[0])
        while bounds[-1] < nrows:
            r0 = bounds[-1]
            limit = min(r0 + max_rows, nrows)
            last = start + int(np.searchsorted(vals, p0 + max_nnz, side="right")) - 1
            if last >= stop and stop < limit:
                break  # the block may reach into the next piece
            cut = max(min(last, limit), r0 + 1)
            bounds.append(cut)
            p0 = int(vals[cut - start])
        start = stop
    return bounds


def even_row_blocks(
    read_indptr: Callable[[int, int], np.ndarray],
    nrows: int,
    max_nnz: int,
    max_rows: int,
    piece: int = CHUNK_ELEMENTS,
) -> list[int]:
    """As many row blocks as :func:`plan_row_blocks` makes, but of about
    equal numbers of entries: cut at the rows nearest to equal shares.

    Greedy blocks fill up to the limit and leave the rest to the last one
    (8.4 M + 1.6 M ratings for 10 M at a 64 MiB target), so on two workers
    one does five times the other's work; equal blocks keep both busy. The
    plan depends only on the matrix and the target, never on the cluster.
    A plan bound by ``max_rows`` (rows with few entries) stays greedy.

    Examples
    --------
    >>> indptr = np.array([0, 3, 6, 9, 10, 11, 12])
    >>> plan_row_blocks(lambda a, b: indptr[a:b], 6, max_nnz=9, max_rows=10)
    [0, 3, 6]
    >>> even_row_blocks(lambda a, b: indptr[a:b], 6, max_nnz=9, max_rows=10)
    [0, 2, 6]
    """
    greedy = plan_row_blocks(read_indptr, nrows, max_nnz, max_rows, piece)
    nblocks = len(greedy) - 1
    if nblocks <= 1 or -(-nrows // max_rows) >= nblocks:
        return greedy
    first = int(np.asarray(read_indptr(0, 1))[0])
    total = int(np.asarray(read_indptr(nrows, nrows + 1))[0]) - first
    if total <= 0:
        return greedy
    targets = first + total * np.arange(1, nblocks, dtype=np.float64) / nblocks
    cuts = []
    for start in range(0, nrows, piece):
        stop = min(start + piece, nrows)
        vals = np.asarray(read_indptr(start, stop + 1), dtype=np.int64)
        here = targets[(targets >= vals[0]) & (targets < vals[-1])]
        for t in here:
            # the one row with indptr[r] <= t < indptr[r + 1] (unique, so the
            # plan does not depend on the pieces), or the next one if nearer
            i = int(np.searchsorted(vals, t, side="right")) - 1
            cuts.append(start + (i if t - vals[i] <= vals[i + 1] - t else i + 1))
    bounds = sorted({0, nrows, *(c for c in cuts if 0 < c < nrows)})
    if max(np.diff(bounds)) > max_rows:
        return greedy
    return bounds


def slices_of(array) -> Callable[[int, int], np.ndarray]:
    """``read_indptr`` for :func:`plan_row_blocks` over an in-memory array."""
    return lambda a, b: array[a:b]


def _block_limits(data_dtype, idx_dtype, target_bytes: int) -> tuple[int, int]:
    """(max entries, max rows) of a row block of about ``target_bytes``."""
    per_entry = np.dtype(data_dtype).itemsize + np.dtype(idx_dtype).itemsize
    # indptr costs 8 bytes a row: bound empty rows too
    return max(1, target_bytes // per_entry), max(1, target_bytes // 8)


# --------------------------------------------------------------------------
# reading


class CsrReader:
    """Reads row blocks of a CSR group; one instance is shared by the tasks
    of a dask array. A failed read becomes a :class:`StoreError` naming the
    store and array; bad values an :class:`InputError` naming their position.
    """

    def __init__(self, group: zarr.Group, location: Location, shape: tuple[int, int], *,
                 data: str = "data"):
        self.location = location
        self.shape = shape
        self.arrays = {}
        # ``data`` may name another array aligned with the stored values (a
        # ratings store's timestamps): the block then holds those as values
        for name, key in (("data", data), ("indices", "indices"), ("indptr", "indptr")):
            try:
                self.arrays[name] = group[key]
            except KeyError:
                raise StoreError(
                    f"{location}: CSR group has no '{key}' array; the store is corrupt"
                ) from None
        self._data_name = data
        self.dtype = self.arrays["data"].dtype
        # the attrs carry the write id: a store written again at the same URL
        # is another input
        self._attrs = json.dumps(dict(group.attrs), sort_keys=True, default=str)
        self._owner_pid = os.getpid()

    def __dask_tokenize__(self):
        return (self.location.url, self.shape, self._attrs, self._data_name,
                *(a.metadata.to_dict()["shape"] for a in self.arrays.values()))

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        if self.location.is_process_local and os.getpid() != self._owner_pid:
            raise StoreError(
                f"{self.location}: a memory:// store cannot be read by Dask workers in "
                "other processes; use a local path or s3:// with a cluster"
            )
        array = self.arrays[name]
        try:
            values = array[start:stop]
        except Exception as exc:  # noqa: BLE001 - any decode failure means a bad chunk
            chunk = array.chunks[0]
            first = array.metadata.encode_chunk_key((start // chunk,))
            last = array.metadata.encode_chunk_key((max(start, stop - 1) // chunk,))
            where = first if first == last else f"{first}..{last}"
            raise StoreError(
                f"{self.location}/{name}/{where}: chunk cannot be read, the store is "
                f"corrupt or truncated ({one_line(exc)})"
            ) from None
        if len(values) != stop - start:
            raise StoreError(
                f"{self.location}/{name}: holds {array.shape[0]} values, elements "
                f"{start}..{stop} were asked for; the store is corrupt"
            )
        # aligned, as dense.ChunkReader returns them: results must not depend
        # on where a decoded chunk happened to start
        return np.require(values, requirements="A")

    def read_block(self, r0: int, r1: int) -> scipy.sparse.csr_matrix:
        """Rows ``r0:r1`` as a checked csr_matrix in the dtype dmf computes in."""
        ptr = self.read("indptr", r0, r1 + 1).astype(np.int64, copy=False)
        p0, p1 = int(ptr[0]), int(ptr[-1])
        if p1 < p0 or (np.diff(ptr) < 0).any():
            raise StoreError(f"{self.location}/indptr: decreasing offsets in rows {r0}..{r1}; "
                             "the store is corrupt")
        data = self.read("data", p0, p1)
        indices = self.read("indices", p0, p1)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.shape[1]):
            raise StoreError(f"{self.location}/indices: column index out of range in rows "
                             f"{r0}..{r1}; the store is corrupt")
        block = scipy.sparse.csr_matrix((data, indices, ptr - p0), shape=(r1 - r0, self.shape[1]))
        raise_for_reports(block_report(block, r0, 0, self.shape[1]), self.shape,
                          f"{self.location} (rows {r0}..{r1 - 1})")
        return block.astype(_compute_dtype(block.dtype), copy=False)


def _compute_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind in "iub":
        return np.dtype(np.float64)
    if dtype == np.float16:
        return np.dtype(np.float32)
    return dtype.newbyteorder("=")


def csr_shape(group, location: Location) -> tuple[int, int]:
    """The shape of the CSR arrays of a group: its ``shape`` attribute, or
    the transpose of it for a ``csc_matrix`` group (read as CSR of the
    transpose)."""
    attrs = dict(group.attrs)
    try:
        shape = tuple(int(s) for s in attrs["shape"])
    except (KeyError, TypeError, ValueError):
        raise StoreError(f"{location}: sparse group without a valid 'shape' attribute") from None
    check_shape(shape, str(location))
    if attrs.get("encoding-type") == "csc_matrix":
        shape = shape[::-1]
    return shape


def plan_csr(
    group: zarr.Group, location: Location, *, target_bytes: int = TARGET_CHUNK_BYTES,
    data: str = "data", row_bounds=None, require_complete: bool = True,
) -> tuple[CsrReader, list[int]]:
    """The checked reader of a CSR (or CSC) group and its row-block
    boundaries; :func:`open_csr` makes the dask array of them.
    ``require_complete=False`` lets a writer read back what it has staged."""
    shape = csr_shape(group, location)
    if require_complete:
        check_complete(group, location)
    reader = CsrReader(group, location, shape, data=data)
    for array in reader.arrays.values():
        check_every_chunk_present(array, location.join(array.basename))
    indptr = reader.arrays["indptr"]
    if indptr.shape[0] != shape[0] + 1:
        raise StoreError(f"{location}/indptr: {indptr.shape[0]} offsets for {shape[0]} rows; "
                         "the store is corrupt")
    nnz = int(reader.read("indptr", shape[0], shape[0] + 1)[0])
    if not reader.arrays["data"].shape[0] == reader.arrays["indices"].shape[0] == nnz:
        raise StoreError(f"{location}: {data}, indices and indptr disagree on the number of "
                         "stored values; the store is corrupt")
    if reader.dtype.kind in "iub":
        warn(f"{location}: {reader.dtype} values are read as float64", DmfWarning)
    elif reader.dtype.kind != "f":
        storage_dtype(reader.dtype, str(location))  # raises for what is not real
    if row_bounds is None:
        max_nnz, max_rows = _block_limits(reader.dtype, reader.arrays["indices"].dtype,
                                          target_bytes)
        row_bounds = even_row_blocks(lambda a, b: reader.read("indptr", a, b), shape[0],
                                     max_nnz, max_rows)
    else:
        row_bounds = [int(b) for b in row_bounds]
        if row_bounds[0] != 0 or row_bounds[-1] != shape[0]:
            raise ValueError(f"row_bounds must run from 0 to {shape[0]}, got {row_bounds}")
    return reader, row_bounds


def open_csr(
    group: zarr.Group, location: Location, *, target_bytes: int = TARGET_CHUNK_BYTES,
    data: str = "data", row_bounds=None,
) -> da.Array:
    """A lazy dask array of ``csr_matrix`` row blocks over a CSR group.

    Row blocks hold about ``target_bytes`` of ``data`` + ``indices`` (and
    at most ``target_bytes / 8`` rows); each is one task reading
    ``indptr[r0:r1 + 1]`` and that range of ``data`` and ``indices``. Values
    are checked as blocks are read: NaN or Inf raise :class:`InputError`.
    Integer data is read as float64 with a :class:`DmfWarning`.

    A ``csc_matrix`` group (a CSC twin) opens as the CSR row blocks of its
    transpose. ``data`` names another 1-D array aligned with the stored
    values, read in their place (a ratings store's ``timestamps``);
    ``row_bounds`` (``[0, r1, ..., m]``) fixes the row blocks, so that two
    such arrays have the same chunks.

    Raises
    ------
    StoreError
        Missing arrays, inconsistent lengths, an incomplete write; a corrupt
        chunk when it is read.
    InputError
        Not a non-empty 2-D matrix, or values that are not real numbers.

    Examples
    --------
    >>> import scipy.sparse, dmf
    >>> x = scipy.sparse.random(100, 20, density=0.1, format="csr", random_state=0)
    >>> dmf.save_matrix(x, "memory://doc/s.zarr")
    'memory://doc/s.zarr'
    >>> X = dmf.open_matrix("memory://doc/s.zarr")
    >>> type(X._meta).__name__, X.shape
    ('csr_matrix', (100, 20))
    >>> (X.compute() != x).nnz
    0
    """
    reader, bounds = plan_csr(group, location, target_bytes=target_bytes, data=data,
                              row_bounds=row_bounds)
    name = f"read-csr-{dask.base.tokenize(reader, bounds)}"
    graph = {(name, i, 0): (reader.read_block, r0, r1)
             for i, (r0, r1) in enumerate(itertools.pairwise(bounds))}
    chunks = (tuple(np.diff(bounds).tolist()), (reader.shape[1],))
    dtype = _compute_dtype(reader.dtype)
    return da.Array(graph, name, chunks, meta=scipy.sparse.csr_matrix((0, 0), dtype=dtype))


# --------------------------------------------------------------------------
# writing


def closing(generator: Iterator) -> Iterator:
    """Iterate ``generator`` and close it even when the consumer fails, so
    the files it holds open are closed now rather than when collected."""
    with contextlib.closing(generator):
        yield from generator


class BoundedPool:
    """A thread pool holding at most ``max_in_flight`` tasks: ``submit``
    waits while it is full, so memory stays bounded by that many blocks, and
    re-raises the first failure. On leaving the ``with`` block every task has
    finished (also on error, so a staging store can then be removed safely).

    Examples
    --------
    >>> with BoundedPool(2) as pool:
    ...     futures = [pool.submit(pow, 2, k) for k in range(4)]
    >>> [f.result() for f in futures]
    [1, 2, 4, 8]
    """

    def __init__(self, max_in_flight: int = 2):
        self.max_in_flight = max_in_flight
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_in_flight, thread_name_prefix="dmf-write")
        self._pending: collections.deque = collections.deque()

    def submit(self, fn, *args, **kwargs) -> concurrent.futures.Future:
        while len(self._pending) >= self.max_in_flight:
            self._pending.popleft().result()
        future = self._executor.submit(fn, *args, **kwargs)
        self._pending.append(future)
        return future

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> BoundedPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            for future in self._pending:
                future.cancel()
            self._pending.clear()
        try:
            if exc_type is None:
                self.drain()
        finally:
            self._executor.shutdown(wait=True)


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

    def append_csr(self, block: scipy.sparse.csr_matrix) -> None:
        self.append(block.data, block.indices, block.indptr)

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


def csr_row_blocks(indptr: np.ndarray, data_dtype, idx_dtype,
                   target_bytes: int = TARGET_CHUNK_BYTES) -> list[int]:
    """Row-block boundaries for an in-memory ``indptr``: about
    ``target_bytes`` of data + indices each.

    Examples
    --------
    >>> csr_row_blocks(np.array([0, 40, 80, 90]), "float64", "int32", target_bytes=1000)
    [0, 2, 3]
    """
    max_nnz, max_rows = _block_limits(data_dtype, idx_dtype, target_bytes)
    return plan_row_blocks(slices_of(indptr), len(indptr) - 1, max_nnz, max_rows)


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
    "CSC_ENCODING",
    "ENCODING",
    "BoundedPool",
    "CsrReader",
    "CsrWriter",
    "canonical_csr",
    "closing",
    "csr_report",
    "csr_row_blocks",
    "csr_shape",
    "even_row_blocks",
    "index_dtype",
    "is_csr_group",
    "is_sparse_dask",
    "open_csr",
    "plan_csr",
    "plan_row_blocks",
    "save_csr",
    "slices_of",
    "write_csr_blocks",
]
