"""Reading sparse stores: a lazy dask array of ``scipy.sparse.csr_matrix``
row blocks over a CSR group (:mod:`dmf.store.sparse_format`), each block
holding about 64 MiB of ``data`` + ``indices`` and checked as it is read.
"""

from __future__ import annotations

import itertools
import json
import os

import dask
import dask.array as da
import numpy as np
import scipy.sparse
import zarr

from dmf.errors import DmfWarning, StoreError, warn
from dmf.store.dense_read import TARGET_CHUNK_BYTES, check_complete, check_every_chunk_present
from dmf.store.location import Location, one_line
from dmf.store.sparse_row_blocks import block_limits, even_row_blocks
from dmf.store.validate import block_report, check_shape, raise_for_reports, storage_dtype


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
        max_nnz, max_rows = block_limits(reader.dtype, reader.arrays["indices"].dtype,
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


__all__ = [
    "CsrReader",
    "csr_shape",
    "open_csr",
    "plan_csr",
]
