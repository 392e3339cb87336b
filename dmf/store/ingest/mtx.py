"""Ingest of Matrix Market files: ``coordinate`` gives a sparse store, ``array``
(column-major, spilled per row block) a dense one."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import psutil

from dmf.errors import InputError
from dmf.store.ingest.common import Job, reading
from dmf.store.ingest.lines import data_lines, line_batches, loadtxt, open_text, skipped
from dmf.store.triplets import RowBlockSpill, write_csr_from_triplets
from dmf.store.validate import check_shape


@dataclass
class _MMHeader:
    layout: str  # coordinate | array
    field: str  # real | integer | pattern
    symmetry: str  # general | symmetric | skew-symmetric
    nrows: int
    ncols: int
    nentries: int
    size_line: int

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.int64 if self.field == "integer" else np.float64)


def _mm_header(path: str) -> _MMHeader:
    with reading(path), open_text(path) as f:
        banner = f.readline().split()
        if len(banner) != 5 or banner[0].lower() != "%%matrixmarket":
            raise InputError(f"{path}: not a Matrix Market file (the first line must be "
                             "'%%MatrixMarket matrix FORMAT FIELD SYMMETRY')")
        obj, layout, field, symmetry = (b.lower() for b in banner[1:])
        size_line, size = 1, None
        for lineno, line in enumerate(f, 2):
            if line.strip() and not line.lstrip().startswith("%"):
                size_line, size = lineno, line.split()
                break
    if obj != "matrix" or layout not in ("coordinate", "array"):
        raise InputError(f"{path}: Matrix Market '{obj} {layout}' is not supported "
                         "(expected 'matrix coordinate' or 'matrix array')")
    if field in ("complex", "hermitian") or symmetry == "hermitian":
        raise InputError(f"{path}: complex Matrix Market data is not supported; dmf "
                         "factorizes real matrices")
    if field == "double":
        field = "real"
    if field not in ("real", "integer", "pattern") or (
            symmetry not in ("general", "symmetric", "skew-symmetric")):
        raise InputError(f"{path}: unsupported Matrix Market field/symmetry "
                         f"'{field} {symmetry}'")
    if field == "pattern" and layout == "array":
        raise InputError(f"{path}: a 'pattern' Matrix Market file must be 'coordinate'")
    expected = 3 if layout == "coordinate" else 2
    try:
        numbers = [int(s) for s in size or []]
    except ValueError:
        numbers = []
    if len(numbers) != expected or min(numbers) < 0:
        raise InputError(f"{path}: line {size_line}: bad size line, expected "
                         f"{expected} non-negative integers")
    m, n = numbers[:2]
    if symmetry != "general" and m != n:
        raise InputError(f"{path}: a {symmetry} matrix must be square, the size line says "
                         f"{m} x {n}")
    if layout == "array":
        k = {"general": m * n, "symmetric": n * (n + 1) // 2,
             "skew-symmetric": n * (n - 1) // 2}[symmetry]
    else:
        k = numbers[2]
    header = _MMHeader(layout, field, symmetry, m, n, k, size_line)
    _check_claims(path, header)
    return header


#: The fewest bytes one entry takes in the file: "0\n", "1 1\n", "1 1 0\n".
_MIN_ENTRY_BYTES = {"array": 2, "pattern": 4, "coordinate": 6}
#: gzip expands by at most about this much.
_GZIP_RATIO = 1032


def _check_claims(path: str, header: _MMHeader) -> None:
    """Refuse a size line that the file cannot hold, or whose row index
    would not fit in memory, before anything is allocated for it."""
    size = os.path.getsize(path) * (_GZIP_RATIO if path.lower().endswith(".gz") else 1)
    kind = header.layout if header.field != "pattern" else "pattern"
    if header.nentries * _MIN_ENTRY_BYTES[kind] > size:
        raise InputError(f"{path}: line {header.size_line}: the size line claims "
                         f"{header.nentries:,} entries, more than a file of "
                         f"{os.path.getsize(path):,} bytes can hold")
    if header.layout == "coordinate":
        index_bytes = 32 * (header.nrows + 1)  # counts, offsets and their temporaries
        available = psutil.virtual_memory().available
        if index_bytes > available // 2:
            raise InputError(f"{path}: line {header.size_line}: the size line claims "
                             f"{header.nrows:,} rows; building their row index would take "
                             f"{index_bytes / 2**30:.1f} GiB, more than half of this "
                             "machine's available memory")


def _mm_batches(path: str, header: _MMHeader) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines) batches of the entries."""
    with open_text(path) as f:
        for _ in range(header.size_line):
            f.readline()
        yield from line_batches(f, header.size_line + 1)


def _count_check(path: str, header: _MMHeader, seen: int) -> None:
    if seen != header.nentries:
        what = "entries" if header.layout == "coordinate" else "values"
        raise InputError(f"{path}: {seen} {what} found, the size line (line "
                         f"{header.size_line}) says {header.nentries}"
                         + ("; the file is truncated" if seen < header.nentries else ""))


def _mm_bad_line(path, lineno: int, lines: list[str], dtypes: list | None, dtype=None) -> None:
    """Raise an InputError naming the first bad line of a batch: ``dtypes``
    per column, or any number of ``dtype`` values when ``dtypes`` is None."""
    for number, text in data_lines(lineno, lines, "%"):
        tokens = text.split()
        if dtypes is not None and len(tokens) != len(dtypes):
            raise InputError(f"{path}: line {lineno} has {len(tokens)} values, expected "
                             f"{len(dtypes)}")
        for token, kind in zip(tokens, dtypes or [dtype] * len(tokens), strict=True):
            try:
                np.array([token]).astype(kind)
            except (ValueError, OverflowError):
                what = "an integer" if np.dtype(kind).kind == "i" else "a number"
                raise InputError(f"{path}: line {number}: {token!r} is not {what}") from None


def _mirror(header: _MMHeader, rows, cols, vals):
    """Both triangles of a symmetric or skew-symmetric matrix."""
    if header.symmetry == "general":
        return rows, cols, vals
    off = rows != cols
    mirrored = vals[off] if header.symmetry == "symmetric" else -vals[off]
    return (np.concatenate([rows, cols[off]]), np.concatenate([cols, rows[off]]),
            np.concatenate([vals, mirrored]))


def _mm_coordinates(path: str, header: _MMHeader) -> Iterator[tuple]:
    """0-based (rows, cols, vals) chunks of a coordinate file, mirrored."""
    fields = [("i", np.int64), ("j", np.int64)]
    if header.field != "pattern":
        fields.append(("v", header.dtype))
    seen = 0
    with reading(path):
        for lineno, lines in _mm_batches(path, header):
            try:
                rec = loadtxt(lines, dtype=fields, ndmin=1, comments="%")
            except (ValueError, OverflowError):
                _mm_bad_line(path, lineno, lines, [kind for _, kind in fields])
                raise
            rows, cols = rec["i"] - 1, rec["j"] - 1
            outside = (rows < 0) | (rows >= header.nrows) | (cols < 0) | (cols >= header.ncols)
            if outside.any():
                k = int(np.argmax(outside))
                number = next(itertools.islice(data_lines(lineno, lines, "%"), k, None))[0]
                raise InputError(f"{path}: line {number}: entry ({rec['i'][k]}, "
                                 f"{rec['j'][k]}) lies outside the {header.nrows} x "
                                 f"{header.ncols} matrix (indices start at 1)")
            vals = rec["v"] if "v" in rec.dtype.names else np.ones(len(rec), np.float64)
            seen += len(rec)
            if seen > header.nentries:
                _count_check(path, header, seen)
            yield _mirror(header, rows, cols, vals)
        _count_check(path, header, seen)


def _mm_array_entries(path: str, header: _MMHeader) -> Iterator[tuple]:
    """0-based (rows, cols, vals) of an array file, mirrored. Values are
    listed column by column (only the lower triangle when symmetric)."""
    m, n = header.nrows, header.ncols
    skip = {"general": None, "symmetric": 0, "skew-symmetric": 1}[header.symmetry]
    lengths = np.full(n, m, np.int64) if skip is None else m - np.arange(n) - skip
    starts = np.concatenate([[0], np.cumsum(lengths)])
    seen = 0
    with reading(path):
        for lineno, lines in _mm_batches(path, header):
            text = "".join(lines)
            if "%" in text:  # comments between values: rare, so filtered only then
                text = "".join(line for line in lines if not skipped(line, "%"))
            try:
                vals = np.array(text.split()).astype(header.dtype)
            except (ValueError, OverflowError):
                _mm_bad_line(path, lineno, lines, None, header.dtype)
                raise
            del text
            k = np.arange(seen, seen + len(vals), dtype=np.int64)
            seen += len(vals)
            if seen > header.nentries:
                _count_check(path, header, seen)
            cols = np.searchsorted(starts, k, side="right") - 1
            rows = k - starts[cols] + (0 if skip is None else cols + skip)
            yield _mirror(header, rows, cols, vals)
        _count_check(path, header, seen)


def ingest_mtx(job: Job, tmpdir: str | os.PathLike | None = None) -> None:
    header = _mm_header(job.path)
    shape = (header.nrows, header.ncols)
    check_shape(shape, job.path)
    source = header.dtype
    if header.layout == "coordinate":
        job.no_chunks()
        stored = job.storage(source)
        write_csr_from_triplets(lambda: _mm_coordinates(job.path, header), job.location,
                                shape, stored, overwrite=job.overwrite, codec=job.codec,
                                attrs=job.attrs(source, stored), name=job.path, tmpdir=tmpdir)
        return

    def blocks(rows: int):
        bounds = [*range(0, shape[0], rows), shape[0]]
        with RowBlockSpill(bounds, shape[1], source, tmpdir) as spill:
            for entries in _mm_array_entries(job.path, header):
                spill.add(*entries)
            for b in range(len(bounds) - 1):
                r0, r1 = bounds[b], bounds[b + 1]
                records = spill.load(b)
                block = np.zeros((r1 - r0, shape[1]), source)
                block.reshape(-1)[records["key"]] = records["val"]  # key: flat position
                del records
                yield r0, block

    job.write_dense(shape, source, blocks)


__all__ = ["ingest_mtx"]
