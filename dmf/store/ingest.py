"""Convert matrix files into dmf's Zarr stores, streaming.

``ingest`` never holds a whole file: it reads row blocks and writes each as
soon as it is complete, through a small thread pool so that compression
overlaps reading. Memory is a few blocks whatever the file size.

=========================  ==================================================
format (extension)         how it is read
=========================  ==================================================
npy (``.npy``)             read block by block into a fresh buffer (C or
                           Fortran order); no memory map, whose pages would
                           pile up in RSS
csv, tsv, txt              numeric text; the delimiter comes from the
(``.csv .tsv .txt``)       extension or is sniffed, a non-numeric first line
                           is a header; a first pass counts the lines
mtx (``.mtx``)             Matrix Market: ``array`` (column-major, spilled
                           per row block to temporary files) gives a dense
                           store, ``coordinate`` a sparse one
npz (``.npz``)             scipy.sparse.save_npz: CSR is streamed from the
                           zip members; CSC and COO go through the
                           (row, column, value) builder
=========================  ==================================================

Text formats may be gzip-compressed (``.csv.gz``, ``.mtx.gz``). Dense
results are checked exactly as :func:`dmf.save_matrix` checks them (NaN/Inf
and integers beyond 2**53 refused, integers stored as float64); a store
already at the target is replaced only once the new one is complete.
Ingest runs in the client process: the file is local to it.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse

from dmf.errors import DmfError, DmfWarning, InputError
from dmf.store.dense import (
    _write_block,
    commit_target,
    create_dense,
    mark_complete,
    normalize_chunks,
    prepare_target,
)
from dmf.store.location import Location, _one_line
from dmf.store.sparse import (
    BoundedPool,
    RowBlockSpill,
    _closing,
    csr_row_blocks,
    write_csr_blocks,
    write_csr_from_triplets,
)
from dmf.store.validate import check_shape, precast, raise_for_reports, storage_dtype

#: Blocks being written at once. With the block being read meanwhile, two
#: blocks are in flight: reading overlaps compression, and memory stays about
#: three blocks (a write holds its block plus Zarr's encoding buffers).
_IN_FLIGHT = 1

#: Bytes of Fortran-order columns read at once before transposing them.
_FORTRAN_GATHER = 4 * 2**20

#: Characters of text parsed at once (their line strings cost about twice).
_BATCH_CHARS = 8 * 2**20

#: Entries read at once from the members of a CSC or COO .npz.
_TRIPLET_CHUNK = 2**18

_BY_EXTENSION = {".npy": "npy", ".csv": "csv", ".tsv": "tsv", ".txt": "txt",
                 ".mtx": "mtx", ".npz": "npz"}
_TEXT = ("csv", "tsv", "txt")
_OPTIONS = {"npy": (), "csv": ("delimiter", "header"), "tsv": ("delimiter", "header"),
            "txt": ("delimiter", "header"), "mtx": ("tmpdir",), "npz": ("tmpdir",)}
SUPPORTED = tuple(_OPTIONS)


def ingest(
    src: str | os.PathLike,
    url: str | os.PathLike,
    *,
    format: str | None = None,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    chunks=None,
    codec: str | None = None,
    dtype=None,
    **opts,
) -> str:
    """Convert a matrix file into a Zarr store, streaming in row blocks.

    Parameters
    ----------
    src : str or path
        A local file: ``.npy``, ``.csv``/``.tsv``/``.txt``, ``.mtx``,
        ``.npz`` (scipy.sparse.save_npz); text formats may end in ``.gz``.
    url : str or path
        Where to write: a local path or an fsspec URL.
    format : {"npy", "csv", "tsv", "txt", "mtx", "npz"}, optional
        Overrides the format the extension says.
    overwrite : bool
        Replace a store already there; it stays intact until the new one is
        complete.
    storage_options : dict, optional
        Passed to fsspec for ``url``.
    chunks : int or (int, int), optional
        Chunks of a dense result, as for :func:`dmf.save_matrix`. Sparse
        results are chunked by number of stored values.
    codec : str, optional
        Compression preset (see :mod:`dmf.store.codecs`).
    dtype : {"float32", "float64"}, optional
        The stored dtype. Default: float32 and float64 are kept, integers
        become float64 (with a :class:`DmfWarning`), text becomes float64.
    **opts
        ``delimiter`` (text; ``None`` means whitespace), ``header`` (text:
        True, False, or None to detect it), ``tmpdir`` (mtx, npz: where
        temporary spill files go).

    Returns
    -------
    str
        The normalized URL of the store.

    Raises
    ------
    InputError
        No such file, unknown format, malformed or truncated file (the
        message names the file and, for text, the line), NaN or Inf, not a
        real matrix. Nothing is left at ``url``.
    StoreError
        ``url`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import os, tempfile, numpy as np, dmf
    >>> tmp = tempfile.TemporaryDirectory()
    >>> src = os.path.join(tmp.name, "x.csv")
    >>> with open(src, "w") as f:
    ...     _ = f.write("a,b\\n1,2\\n3,4\\n")
    >>> dmf.ingest(src, "memory://doc/ingest-x.zarr")
    'memory://doc/ingest-x.zarr'
    >>> dmf.open_matrix("memory://doc/ingest-x.zarr").compute()
    array([[1., 2.],
           [3., 4.]])
    >>> tmp.cleanup()
    """
    path = _source(src)
    fmt = _format_of(path, format)
    unknown = sorted(set(opts) - set(_OPTIONS[fmt]))
    if unknown:
        allowed = ", ".join(_OPTIONS[fmt]) or "none"
        raise InputError(f"{path}: unknown option(s) {', '.join(unknown)} for format {fmt} "
                         f"(accepted: {allowed})")
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            dtype = str(dtype)  # refused just below
        if dtype not in (np.float32, np.float64):
            raise InputError(f"{path}: dtype must be float32 or float64, got {dtype}")
    job = _Job(path, fmt, Location.parse(url, storage_options), overwrite, chunks, codec, dtype)
    if fmt == "npy":
        _ingest_npy(job)
    elif fmt in _TEXT:
        _ingest_text(job, **opts)
    elif fmt == "mtx":
        _ingest_mtx(job, **opts)
    else:
        _ingest_npz(job, **opts)
    return str(job.location)


def _source(src) -> str:
    path = os.fspath(src)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a matrix file")
    return path


def _format_of(path: str, format: str | None) -> str:
    listed = ", ".join(SUPPORTED)
    if format is not None:
        fmt = str(format).lower().lstrip(".")
        if fmt not in _OPTIONS:
            raise InputError(f"{path}: unknown format {format!r}; supported: {listed}")
        return fmt
    base = path[:-3] if path.lower().endswith(".gz") else path
    ext = os.path.splitext(base)[1].lower()
    fmt = _BY_EXTENSION.get(ext)
    if fmt is None:
        raise InputError(f"{path}: cannot tell the format from the extension {ext or '(none)'!r}; "
                         f"supported: {listed} (pass format=...)")
    if base != path and fmt in ("npy", "npz"):
        raise InputError(f"{path}: a gzip-compressed {fmt} file cannot be streamed; "
                         "decompress it first")
    return fmt


@contextlib.contextmanager
def _reading(path: str):
    """Turn a failure to read or parse ``path`` into a one-line InputError."""
    try:
        yield
    except DmfError:
        raise
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except (OSError, ValueError, OverflowError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"{path}: cannot be read, it is malformed or truncated "
                         f"({_one_line(exc)})") from None


@dataclass
class _Job:
    path: str
    fmt: str
    location: Location
    overwrite: bool
    chunks: Any
    codec: str | None
    dtype: np.dtype | None

    def storage(self, source: np.dtype) -> np.dtype:
        """The stored dtype for values read as ``source``."""
        if self.dtype is None:
            return storage_dtype(source, self.path)
        if np.dtype(source).kind not in "iubf":
            storage_dtype(source, self.path)  # raises with the usual message
        return self.dtype

    def attrs(self, source: np.dtype, stored: np.dtype) -> dict:
        attrs = {"source": {"path": os.path.abspath(self.path), "format": self.fmt}}
        if np.dtype(source) != stored:
            attrs["source_dtype"] = str(source)
        return attrs

    def no_chunks(self) -> None:
        if self.chunks is not None:
            warnings.warn(f"{self.path}: chunks apply to dense results; a sparse store is "
                          "chunked by number of values", DmfWarning, stacklevel=4)

    def write_dense(self, shape, source: np.dtype,
                    blocks: Callable[[int], Iterator[tuple[int, np.ndarray]]]) -> None:
        """Write the row blocks ``blocks(rows_per_block)`` yields, as
        ``(first_row, block)``, into a dense store, checking every value."""
        check_shape(shape, self.path)
        stored = self.storage(source)
        chunks = normalize_chunks(self.chunks, shape, stored)
        staging = prepare_target(self.location, self.overwrite)
        try:
            zarray = create_dense(staging, shape, stored, chunks, codec=self.codec,
                                  attrs=self.attrs(source, stored))
            futures, rows = [], 0
            with BoundedPool(_IN_FLIGHT) as pool:
                for r0, block in _closing(blocks(chunks[0])):
                    info = {0: {"array-location": [(r0, r0 + len(block)), (0, shape[1])]}}
                    futures.append(pool.submit(_write_block, precast(block, stored), zarray,
                                               stored, shape[1], block_info=info))
                    rows += len(block)
                    del block  # the writer holds it now; let it go when written
            if rows != shape[0]:
                raise InputError(f"{self.path}: {rows} rows read, {shape[0]} expected; "
                                 "the file changed while it was read")
            raise_for_reports(np.concatenate([f.result() for f in futures]), shape, self.path)
            mark_complete(zarray)
        except BaseException:
            staging.remove()
            raise
        commit_target(staging, self.location)


# --------------------------------------------------------------------------
# npy


def _npy_header(file, path: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of a .npy file (or zip member)."""
    version = np.lib.format.read_magic(file)
    read = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise InputError(f"{path}: .npy format version {version} is not supported")
    shape, fortran, dtype = read(file)
    if dtype.hasobject:
        raise InputError(f"{path}: holds Python objects, not numbers")
    return shape, fortran, dtype


def _ingest_npy(job: _Job) -> None:
    with _reading(job.path), open(job.path, "rb") as f:
        shape, fortran, dtype = _npy_header(f, job.path)
        offset = f.tell()
        size = os.fstat(f.fileno()).st_size
    check_shape(shape, job.path)
    m, n = shape
    if size < offset + m * n * dtype.itemsize:
        raise InputError(f"{job.path}: truncated ({size} bytes, the header announces "
                         f"{offset + m * n * dtype.itemsize})")

    # Plain reads into a fresh buffer rather than a memory map: mapped pages
    # count in RSS for as long as the map lives, a buffer is one block.
    def blocks(rows: int):
        with _reading(job.path), open(job.path, "rb", buffering=0) as f:
            for r0 in range(0, m, rows):
                count = min(rows, m - r0)
                block = np.empty((count, n), dtype)
                if fortran:
                    # One contiguous piece per column, gathered a few MiB at a
                    # time and transposed into the C-order block Zarr wants,
                    # so no second full-size copy is made.
                    group = max(1, _FORTRAN_GATHER // (count * dtype.itemsize))
                    pieces = np.empty((min(group, n), count), dtype)
                    for j0 in range(0, n, group):
                        j1 = min(j0 + group, n)
                        for j in range(j0, j1):
                            _read_into(f, offset + (j * m + r0) * dtype.itemsize,
                                       pieces[j - j0])
                        block[:, j0:j1] = pieces[:j1 - j0].T
                else:
                    _read_into(f, offset + r0 * n * dtype.itemsize, block)
                yield r0, block

    job.write_dense(shape, dtype, blocks)


def _read_into(f, offset: int, out: np.ndarray) -> None:
    view = memoryview(out.reshape(-1).view(np.uint8))
    f.seek(offset)
    while len(view):
        got = f.readinto(view)
        if not got:
            raise EOFError("unexpected end of file")
        view = view[got:]


# --------------------------------------------------------------------------
# text


def _open_text(path: str):
    if path.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def _fields(line: str, delimiter: str | None) -> list[str]:
    return [f.strip() for f in line.split(delimiter)] if delimiter else line.split()


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _is_header(first: list[str], second: list[str] | None) -> bool:
    """A first line with a word in it, before a numeric line (an empty
    field is a missing value, not a word)."""
    worded = any(f and not _is_number(f) for f in first)
    return worded and (second is None or all(_is_number(f) for f in second))


def _sniff(line: str, preferred: str | None) -> str | None:
    if preferred and preferred in line:
        return preferred
    for candidate in ("\t", ",", ";"):
        if candidate in line:
            return candidate
    return preferred if preferred == "," else None  # one column, or whitespace


def _skipped(line: str, comment: str) -> bool:
    text = line.strip()
    return not text or text.startswith(comment)


def _line_batches(f, first_lineno: int = 1) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines) in batches of about
    ``_BATCH_CHARS`` characters; reading whole batches keeps Python's
    per-line work out of the loop."""
    lineno = first_lineno
    while lines := f.readlines(_BATCH_CHARS):
        yield lineno, lines
        lineno += len(lines)


def _data_lines(lineno: int, lines: list[str], comment: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of the lines of a batch that hold data."""
    for k, line in enumerate(lines):
        if not _skipped(line, comment):
            yield lineno + k, line.strip()


@dataclass
class _TextLayout:
    delimiter: str | None
    header_line: int  # 0: none
    first_line: int
    nrows: int
    ncols: int


def _text_layout(path: str, fmt: str, delimiter, header) -> _TextLayout:
    """First pass: delimiter, header, and the shape (the lines are counted)."""
    first: list[tuple[int, str]] = []
    count = 0
    with _reading(path), _open_text(path) as f:
        for lineno, lines in _line_batches(f):
            if len(first) < 2:
                first += itertools.islice(_data_lines(lineno, lines, "#"), 2 - len(first))
            text = "".join(lines)
            count += len(lines) - len(_BLANK_OR_COMMENT.findall(
                text if text.endswith("\n") else text + "\n"))
    if not first:
        raise InputError(f"{path}: no data (the matrix is empty)")
    if delimiter is None:
        delimiter = _sniff(first[0][1], {"csv": ",", "tsv": "\t"}.get(fmt))
    fields = [_fields(text, delimiter) for _, text in first]
    if header is None:
        header = _is_header(fields[0], fields[1] if len(fields) > 1 else None)
    header_line = 0
    if header:
        header_line = first.pop(0)[0]
        fields.pop(0)
        count -= 1
    if not first:
        raise InputError(f"{path}: only a header line, no data (the matrix is empty)")
    return _TextLayout(delimiter, header_line, first[0][0], count, len(fields[0]))


#: A line holding no data: blank, or a comment.
_BLANK_OR_COMMENT = re.compile(r"^[^\S\n]*(?:#[^\n]*)?\n", re.MULTILINE)


def _loadtxt(lines: list[str], **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        # a batch of comments only is fine: it gives no rows
        warnings.filterwarnings("ignore", "loadtxt: input contained no data")
        return np.loadtxt(lines, **kwargs)


def _parse_text(path, lineno: int, lines: list[str], layout: _TextLayout) -> np.ndarray:
    try:
        values = _loadtxt(lines, delimiter=layout.delimiter, dtype=np.float64, ndmin=2,
                          comments="#")
    except ValueError as exc:
        _diagnose_text(path, lineno, lines, layout, exc)
    if not len(values):
        return np.empty((0, layout.ncols))
    if values.shape[1] != layout.ncols:
        _diagnose_text(path, lineno, lines, layout, None)
    return values


def _diagnose_text(path, lineno: int, lines: list[str], layout: _TextLayout, exc) -> None:
    """Raise an InputError naming the first bad line of a batch."""
    for number, text in _data_lines(lineno, lines, "#"):
        fields = _fields(text.split("#", 1)[0], layout.delimiter)
        if len(fields) != layout.ncols:
            raise InputError(f"{path}: line {number} has {len(fields)} values, expected "
                             f"{layout.ncols} (as on line {layout.first_line})")
        for j, field in enumerate(fields):
            if not _is_number(field):
                raise InputError(f"{path}: line {number}, column {j + 1}: {field!r} is not a "
                                 "number")
    reason = f" ({_one_line(exc)})" if exc else ""
    raise InputError(f"{path}: lines {lineno}-{lineno + len(lines) - 1} cannot be "
                     f"parsed{reason}")


def _ingest_text(job: _Job, delimiter: str | None = None, header: bool | None = None) -> None:
    layout = _text_layout(job.path, job.fmt, delimiter, header)
    shape = (layout.nrows, layout.ncols)

    def blocks(rows: int):
        r0, filled, block = 0, 0, None
        with _reading(job.path), _open_text(job.path) as f:
            for lineno, lines in _line_batches(f):
                if lineno <= layout.header_line < lineno + len(lines):
                    lines[layout.header_line - lineno] = ""  # blank: skipped
                values = _parse_text(job.path, lineno, lines, layout)
                del lines
                start = 0
                while start < len(values):  # fill blocks of whole chunks
                    if block is None:
                        if r0 == shape[0]:
                            raise InputError(f"{job.path}: more rows than counted; the file "
                                             "changed while it was read")
                        block = np.empty((min(rows, shape[0] - r0), shape[1]))
                    take = min(len(block) - filled, len(values) - start)
                    block[filled:filled + take] = values[start:start + take]
                    filled, start = filled + take, start + take
                    if filled == len(block):
                        yield r0, block
                        r0, filled, block = r0 + filled, 0, None

    job.write_dense(shape, np.dtype(np.float64), blocks)


# --------------------------------------------------------------------------
# Matrix Market


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
    with _reading(path), _open_text(path) as f:
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
    return _MMHeader(layout, field, symmetry, m, n, k, size_line)


def _mm_batches(path: str, header: _MMHeader) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines) batches of the entries."""
    with _open_text(path) as f:
        for _ in range(header.size_line):
            f.readline()
        yield from _line_batches(f, header.size_line + 1)


def _count_check(path: str, header: _MMHeader, seen: int) -> None:
    if seen != header.nentries:
        what = "entries" if header.layout == "coordinate" else "values"
        raise InputError(f"{path}: {seen} {what} found, the size line (line "
                         f"{header.size_line}) says {header.nentries}"
                         + ("; the file is truncated" if seen < header.nentries else ""))


def _mm_bad_line(path, lineno: int, lines: list[str], dtypes: list | None, dtype=None) -> None:
    """Raise an InputError naming the first bad line of a batch: ``dtypes``
    per column, or any number of ``dtype`` values when ``dtypes`` is None."""
    for number, text in _data_lines(lineno, lines, "%"):
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
    with _reading(path):
        for lineno, lines in _mm_batches(path, header):
            try:
                rec = _loadtxt(lines, dtype=fields, ndmin=1, comments="%")
            except (ValueError, OverflowError):
                _mm_bad_line(path, lineno, lines, [kind for _, kind in fields])
                raise
            rows, cols = rec["i"] - 1, rec["j"] - 1
            outside = (rows < 0) | (rows >= header.nrows) | (cols < 0) | (cols >= header.ncols)
            if outside.any():
                k = int(np.argmax(outside))
                number = next(itertools.islice(_data_lines(lineno, lines, "%"), k, None))[0]
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
    with _reading(path):
        for lineno, lines in _mm_batches(path, header):
            text = "".join(lines)
            if "%" in text:  # comments between values: rare, so filtered only then
                text = "".join(line for line in lines if not _skipped(line, "%"))
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


def _ingest_mtx(job: _Job, tmpdir: str | os.PathLike | None = None) -> None:
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


# --------------------------------------------------------------------------
# npz (scipy.sparse.save_npz)


class _NpyMember:
    """A .npy member of a zip archive, read sequentially in pieces."""

    def __init__(self, archive: zipfile.ZipFile, name: str, path: str):
        self.path = path
        self.name = name
        try:
            self.file = archive.open(f"{name}.npy")
        except KeyError:
            raise InputError(f"{path}: no '{name}' member; not a scipy.sparse .npz file") from None
        self.shape, self.fortran_order, self.dtype = _npy_header(self.file,
                                                                 f"{path} (member {name})")
        self.size = int(np.prod(self.shape))
        self.remaining = self.size

    def read(self, count: int) -> np.ndarray:
        count = min(int(count), self.remaining)
        nbytes = count * self.dtype.itemsize
        buffer = self.file.read(nbytes)
        if len(buffer) != nbytes:
            raise InputError(f"{self.path}: member '{self.name}' is truncated")
        self.remaining -= count
        return np.frombuffer(buffer, self.dtype)

    def read_all(self) -> np.ndarray:
        values = self.read(self.remaining)
        return values.reshape(self.shape, order="F" if self.fortran_order else "C")

    def close(self) -> None:
        self.file.close()


def _ingest_npz(job: _Job, tmpdir: str | os.PathLike | None = None) -> None:
    job.no_chunks()
    path = job.path
    with _reading(path):
        archive = zipfile.ZipFile(path)
    with archive, contextlib.ExitStack() as stack:
        def member(name: str) -> _NpyMember:
            with _reading(path):
                opened = _NpyMember(archive, name, path)
            stack.callback(opened.close)
            return opened

        if "format.npy" not in archive.namelist():
            raise InputError(f"{path}: not a scipy.sparse .npz file (no 'format' member); "
                             "write it with scipy.sparse.save_npz")
        with _reading(path):
            fmt = member("format").read_all().item()
            fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
            shape = tuple(int(s) for s in member("shape").read_all())
        check_shape(shape, path)
        data = member("data")
        source = data.dtype
        stored = job.storage(source)
        options = dict(overwrite=job.overwrite, codec=job.codec,
                       attrs=job.attrs(source, stored), name=path)
        if fmt == "csr":
            with _reading(path):
                indptr = _indptr(member("indptr"), shape[0], data.size, path)
            indices = member("indices")
            write_csr_blocks(_npz_csr_blocks(path, shape, indptr, data, indices),
                             job.location, shape, stored, nnz_hint=data.size, **options)
        elif fmt in ("csc", "coo"):
            chunks = _npz_triplets(path, archive, fmt, shape, data.size)
            write_csr_from_triplets(chunks, job.location, shape, stored, tmpdir=tmpdir,
                                    **options)
        else:
            raise InputError(f"{path}: holds a {fmt} matrix; convert it to csr, csc or coo "
                             "before saving")


def _indptr(member: _NpyMember, nrows: int, nnz: int, path: str) -> np.ndarray:
    indptr = member.read_all().astype(np.int64, copy=False)
    if len(indptr) != nrows + 1 or indptr[0] != 0 or indptr[-1] != nnz or (
            np.diff(indptr) < 0).any():
        raise InputError(f"{path}: inconsistent indptr (corrupt file)")
    return indptr


def _npz_csr_blocks(path, shape, indptr, data: _NpyMember, indices: _NpyMember) -> Iterator:
    for r0, r1 in itertools.pairwise(csr_row_blocks(indptr, data.dtype, indices.dtype)):
        count = int(indptr[r1] - indptr[r0])
        with _reading(path):
            values, cols = data.read(count), indices.read(count)
        if len(cols) and (cols.min() < 0 or cols.max() >= shape[1]):
            raise InputError(f"{path}: column index out of range in rows {r0}..{r1 - 1} "
                             "(corrupt file)")
        yield scipy.sparse.csr_matrix((values, cols, indptr[r0:r1 + 1] - indptr[r0]),
                                      shape=(r1 - r0, shape[1]))


def _npz_triplets(path: str, archive: zipfile.ZipFile, fmt: str, shape, nnz: int):
    """A callable giving fresh (rows, cols, vals) chunks of a CSC or COO npz."""
    if fmt == "csc":
        with _reading(path):
            opened = _NpyMember(archive, "indptr", path)
            try:
                indptr = _indptr(opened, shape[1], nnz, path)
            finally:
                opened.close()

    def chunks() -> Iterator[tuple]:
        with _reading(path), contextlib.ExitStack() as stack:
            def member(name: str, skip: int = 0) -> _NpyMember:
                opened = _NpyMember(archive, name, path)
                stack.callback(opened.close)
                while skip:  # the second row of a 2 x nnz "coords"
                    skip -= len(opened.read(min(skip, _TRIPLET_CHUNK)))
                return opened

            data = member("data")
            if fmt == "csc":
                rows = member("indices")
            elif "row.npy" in archive.namelist():
                rows, cols = member("row"), member("col")
            else:
                rows, cols = member("coords"), member("coords", skip=nnz)
                if rows.fortran_order:
                    raise InputError(f"{path}: Fortran-ordered coords are not supported")
            for k0 in range(0, nnz, _TRIPLET_CHUNK):
                count = min(_TRIPLET_CHUNK, nnz - k0)
                r, v = rows.read(count), data.read(count)
                if fmt == "csc":
                    k = np.arange(k0, k0 + count)
                    c = np.searchsorted(indptr, k, side="right") - 1
                else:
                    c = cols.read(count)
                yield r, c, v

    return chunks
