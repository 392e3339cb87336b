"""Building a CSR store from (row, column, value) entries given in any order.

Entries are read twice, in chunks: a first pass counts the entries of each
row and checks every position and value, a second spills them to one
temporary file per row block (:class:`RowBlockSpill`); each block is then
sorted, its duplicates summed (or, for ratings, the last one kept), and
appended to the store. Memory stays at one chunk or one row block whatever
the number of entries. Entries may carry a timestamp, stored aligned with
the values (a ratings store's ``timestamps``).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import TypedDict, Unpack

import numpy as np
import zarr

from dmf.errors import InputError
from dmf.store.dense_read import TARGET_CHUNK_BYTES
from dmf.store.dense_write import commit_target, prepare_target
from dmf.store.location import Location
from dmf.store.sparse_row_blocks import plan_row_blocks, slices_of
from dmf.store.sparse_write import CsrWriter, csr_report
from dmf.store.streaming import closing
from dmf.store.validate import (
    check_shape,
    entries_report,
    precast,
    raise_for_reports,
    storage_dtype,
)


class RowBlockSpill:
    """(row, column, value) entries spilled to one temporary file per row
    block, to be loaded back one block at a time (use as a context manager;
    the files are removed on leaving it).

    ``bounds`` are the row-block boundaries ``[0, r1, ..., m]``. An entry is
    stored as its position in its block, ``(row - r0) * ncols + col``, and
    its value: 8 + itemsize bytes.

    Examples
    --------
    >>> with RowBlockSpill([0, 2, 4], 3, "float64") as spill:
    ...     spill.add(np.array([3, 0, 2]), np.array([1, 2, 0]), np.array([1.0, 2.0, 3.0]))
    ...     records = spill.load(1)
    >>> records["key"], records["val"]
    (array([4, 0]), array([1., 3.]))
    """

    def __init__(self, bounds, ncols: int, dtype, tmpdir: str | os.PathLike | None = None):
        self.bounds = np.asarray(bounds, dtype=np.int64)
        self.ncols = int(ncols)
        self.record = np.dtype([("key", np.int64), ("val", dtype)])
        self.count = 0
        self._dir = tempfile.TemporaryDirectory(prefix="dmf-spill-", dir=tmpdir)

    def _path(self, block: int) -> str:
        return os.path.join(self._dir.name, f"{block}.bin")

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        if not len(rows):
            return
        block_of = np.searchsorted(self.bounds, rows, side="right") - 1
        order = np.argsort(block_of, kind="stable")  # stable: keeps the given order
        block_of = block_of[order]
        records = np.empty(len(rows), self.record)
        records["key"] = (rows[order] - self.bounds[block_of]) * self.ncols + cols[order]
        records["val"] = vals[order]
        starts = np.flatnonzero(np.r_[True, block_of[1:] != block_of[:-1]])
        for start, stop in itertools.pairwise([*starts, len(records)]):
            with open(self._path(int(block_of[start])), "ab") as f:
                records[start:stop].tofile(f)
        self.count += len(rows)

    def load(self, block: int) -> np.ndarray:
        """The records (``key``, ``val``) of ``block`` in the order they were
        added; the file is removed, so disk use shrinks as blocks are
        consumed. ``divmod(key, ncols)`` gives (row - r0, col)."""
        path = self._path(block)
        if not os.path.exists(path):
            return np.empty(0, self.record)
        records = np.fromfile(path, self.record)
        os.remove(path)
        return records

    def __enter__(self) -> RowBlockSpill:
        return self

    def __exit__(self, *exc) -> None:
        self._dir.cleanup()



def _reiterable(triplet_chunks) -> Callable[[], Iterator]:
    if callable(triplet_chunks):
        return triplet_chunks
    if iter(triplet_chunks) is triplet_chunks:
        raise TypeError("write_csr_from_triplets reads the entries twice: pass a callable "
                        "returning a fresh iterator, or a list, not an iterator")
    return lambda: iter(triplet_chunks)


def _checked_chunks(chunks: Callable[[], Iterator], shape, dtype, name: str,
                    timestamps: bool = False) -> Iterator:
    """The chunks as int64 positions, pre-cast values and (with
    ``timestamps``) float64 times, with positions and lengths checked."""
    m, n = shape
    seen = 0
    for chunk in chunks():
        if len(chunk) != 3 + timestamps:
            raise InputError(f"{name}: a chunk of entries has {len(chunk)} parts, expected "
                             + ("(rows, cols, vals, times)" if timestamps
                                else "(rows, cols, vals)"))
        rows = np.asarray(chunk[0]).astype(np.int64, copy=False).ravel()
        cols = np.asarray(chunk[1]).astype(np.int64, copy=False).ravel()
        vals = np.asarray(chunk[2]).ravel()
        times = np.asarray(chunk[3], dtype=np.float64).ravel() if timestamps else None
        if not len(rows) == len(cols) == len(vals) == (len(vals) if times is None
                                                         else len(times)):
            raise InputError(f"{name}: a chunk of entries has {len(rows)} rows, {len(cols)} "
                             f"columns and {len(vals)} values"
                             + ("" if times is None else f" and {len(times)} times"))
        if vals.dtype.kind not in "iubf":
            storage_dtype(vals.dtype, name)  # raises: complex, strings, objects
        outside = (rows < 0) | (rows >= m) | (cols < 0) | (cols >= n)
        if outside.any():
            k = int(np.argmax(outside))
            raise InputError(f"{name}: entry {seen + k} at (row {rows[k]}, column {cols[k]}) "
                             f"lies outside the {m} x {n} matrix")
        seen += len(rows)
        yield rows, cols, precast(vals, dtype), times


class TripletOptions(TypedDict, total=False):
    """How :func:`build_csr_from_triplets` writes (its defaults are the
    only ones): the keywords :func:`write_csr_from_triplets` passes on.

    Attributes
    ----------
    codec : str, optional
        The stored arrays' codec.
    attrs : dict, optional
        The group's attributes.
    name : str
        For messages; default: the location.
    tmpdir : path, optional
        Where the spill files go (8 bytes + the value's size per entry);
        the system default otherwise.
    target_bytes : int
        About how many bytes of data + indices a stored row block holds.
    duplicates : {"sum", "last"}
    timestamps : bool
        The chunks carry a time per entry, stored as the float64 array
        ``timestamps`` aligned with ``data`` (the sum of duplicates keeps the
        latest time).
    """

    codec: str | None
    attrs: dict | None
    name: str | None
    tmpdir: str | os.PathLike | None
    target_bytes: int
    duplicates: str
    timestamps: bool


def write_csr_from_triplets(
    triplet_chunks: Callable[[], Iterator[tuple]] | Iterable[tuple],
    location: Location,
    shape: tuple[int, int],
    dtype,
    *,
    overwrite: bool = False,
    **options: Unpack[TripletOptions],
) -> zarr.Group:
    """Build a CSR group from (rows, cols, vals) chunks given in any order,
    in bounded memory.

    Three passes, none holding more than one chunk or one row block:

    1. count the entries of each row and check every position and value
       (nothing is written before the input is known to be good);
    2. spill the entries to a temporary file per row block of about
       ``target_bytes / 2`` (sorting one takes about twice that);
    3. per row block: sort by (row, column), resolve duplicates, append.

    Duplicates (the same row and column given more than once) are summed, in
    the order they were given, as scipy and the Matrix Market format do
    (``duplicates="sum"``), or all but the last are dropped
    (``duplicates="last"``: the latest by timestamp, ties and entries without
    one in the order given; the rule for ratings). Explicit zeros are kept.
    A store already at ``location`` is replaced only once the new one is
    complete.

    Parameters
    ----------
    triplet_chunks : callable or list
        A callable returning a fresh iterator of ``(rows, cols, vals)`` numpy
        chunks, 0-based (it is called twice), or a list of such chunks;
        ``(rows, cols, vals, times)`` with ``timestamps=True``.
    location : Location
        Where to write.
    shape : (int, int)
    dtype : float32 or float64
        The stored dtype; integer values are checked to be exact in float64.
    overwrite : bool
        Replace a store already at ``location``, once the new one is complete.
    **options
        :class:`TripletOptions`.

    Examples
    --------
    >>> chunks = [(np.array([2, 0]), np.array([1, 0]), np.array([5.0, 1.0])),
    ...           (np.array([2]), np.array([1]), np.array([2.0]))]
    >>> g = write_csr_from_triplets(chunks, Location.parse("memory://doc/t.zarr"),
    ...                             (3, 2), "float64")
    >>> g["data"][:], g["indices"][:], g["indptr"][:]
    (array([1., 7.]), array([0, 1], dtype=int32), array([0, 1, 1, 2]))

    The latest of each (row, column) wins with ``duplicates="last"``:

    >>> timed = [(np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([4.0, 2.0, 3.0]),
    ...           np.array([20.0, 10.0, 5.0]))]
    >>> g = write_csr_from_triplets(timed, Location.parse("memory://doc/tl.zarr"), (2, 2),
    ...                             "float64", duplicates="last", timestamps=True)
    >>> g["data"][:], g["timestamps"][:]
    (array([4., 3.]), array([20.,  5.]))
    """
    options["name"] = options.get("name") or str(location)  # not the staging place's
    staging = prepare_target(location, overwrite)
    try:
        build_csr_from_triplets(triplet_chunks, staging, shape, dtype, **options)
    except BaseException:
        staging.remove()
        raise
    commit_target(staging, location)
    return zarr.open_group(store=location.zarr_store(read_only=True), mode="r")


def build_csr_from_triplets(
    triplet_chunks: Callable[[], Iterator[tuple]] | Iterable[tuple],
    location: Location,
    shape: tuple[int, int],
    dtype,
    *,
    codec: str | None = None,
    attrs: dict | None = None,
    name: str | None = None,
    tmpdir: str | os.PathLike | None = None,
    target_bytes: int = TARGET_CHUNK_BYTES,
    duplicates: str = "sum",
    timestamps: bool = False,
    csc: bool = False,
    complete: bool = True,
) -> int:
    """The work of :func:`write_csr_from_triplets`, written straight to
    ``location`` (a staging place the caller prepared and will commit or
    remove). ``csc=True`` labels the group as the CSC twin of the transpose
    (:class:`~dmf.store.sparse_write.CsrWriter`); ``complete=False`` leaves the
    completion mark to the caller. Returns the number of stored values."""
    name = name or str(location)
    m, n = (int(s) for s in shape)
    check_shape((m, n), name)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise InputError(f"{name}: dtype must be float32 or float64, got {dtype}")
    if duplicates not in ("sum", "last"):
        raise ValueError(f"duplicates must be 'sum' or 'last', got {duplicates!r}")
    chunks = _reiterable(triplet_chunks)

    counts = np.zeros(m, np.int64)
    reports = []
    for rows, cols, vals, times in closing(_checked_chunks(chunks, (m, n), dtype, name,
                                                           timestamps)):
        reports.append(entries_report(rows, cols, vals, n))
        if times is not None:
            time_report = entries_report(rows, cols, times, n)
            raise_for_reports(time_report, (m, n), f"{name} (timestamps)")
        if len(rows):
            lo, hi = int(rows.min()), int(rows.max())
            counts[lo:hi + 1] += np.bincount(rows - lo, minlength=hi - lo + 1)
    raise_for_reports(np.array(reports), (m, n), name)
    total = int(counts.sum())
    indptr = np.concatenate([[0], np.cumsum(counts)])
    # A spilled value is the rating and, with timestamps, its time.
    value_dtype = np.dtype([("v", dtype), ("t", np.float64)]) if timestamps else dtype
    # Spilled blocks of about target_bytes / 2: sorting one needs about
    # twice its size.
    record_bytes = 8 + value_dtype.itemsize
    bounds = plan_row_blocks(slices_of(indptr), m, max(1, target_bytes // 2 // record_bytes),
                             max(1, target_bytes // 16))
    del counts, indptr

    extra = {"timestamps": np.float64} if timestamps else None
    with RowBlockSpill(bounds, n, value_dtype, tmpdir) as spill:
        for rows, cols, vals, times in closing(_checked_chunks(chunks, (m, n), dtype, name,
                                                               timestamps)):
            if timestamps:
                values = np.empty(len(vals), value_dtype)
                values["v"], values["t"] = vals, times
                vals = values
            spill.add(rows, cols, vals)
        if spill.count != total:
            raise InputError(f"{name}: the entries changed between two reads "
                             f"({total} then {spill.count})")
        with CsrWriter(location, (m, n), dtype, codec=codec, attrs=attrs, nnz_hint=total,
                       csc=csc, extra=extra) as writer:
            for b, (r0, r1) in enumerate(itertools.pairwise(bounds)):
                data, indices, ptr = _sorted_block(spill.load(b), r1 - r0, n, duplicates)
                times = {}
                if timestamps:
                    data, times = data["v"], {"timestamps": data["t"]}
                # sums of duplicates may overflow
                raise_for_reports(csr_report(data, indices, ptr, r0, n), (m, n),
                                  f"{name} (after summing duplicates)")
                writer.append(data, indices, ptr, **times)
            writer.finish(complete=complete)
            return writer.nnz


def _sorted_block(records: np.ndarray, nrows: int, ncols: int, duplicates: str = "sum"):
    """CSR arrays (data, indices, indptr) of a row block from unordered
    spilled records, duplicates summed in the order given or the last kept
    (by time ``val["t"]`` when the values carry one, then the order given)."""
    keys, vals = records["key"], records["val"]
    timed = vals.dtype.names is not None
    if duplicates == "last" and timed:
        order = np.lexsort((vals["t"], keys))  # stable: equal times keep the given order
    else:
        order = np.argsort(keys, kind="stable")  # stable: summing order is kept
    keys, vals = keys[order], vals[order]
    del records, order
    if len(keys) > 1:
        new = keys[1:] != keys[:-1]
        if not new.all():
            if duplicates == "last":
                last = np.flatnonzero(np.r_[new, True])
                keys, vals = keys[last], vals[last]
            else:
                first = np.flatnonzero(np.r_[True, new])
                with np.errstate(over="ignore"):  # an overflow is reported by the caller
                    if timed:
                        summed = np.empty(len(first), vals.dtype)
                        summed["v"] = np.add.reduceat(vals["v"], first)
                        summed["t"] = np.maximum.reduceat(vals["t"], first)
                        vals = summed
                    else:
                        vals = np.add.reduceat(vals, first)
                keys = keys[first]
    rows, cols = np.divmod(keys, ncols)
    ptr = np.zeros(nrows + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=nrows), out=ptr[1:])
    return vals, cols, ptr


__all__ = ["RowBlockSpill", "build_csr_from_triplets", "write_csr_from_triplets"]
