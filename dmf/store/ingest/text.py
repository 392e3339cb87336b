"""Ingest of numeric text (csv, tsv, txt): delimiter and header detected, lines
counted in a first pass, then parsed in batches."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from dmf.errors import InputError
from dmf.store.ingest.common import Job, reading
from dmf.store.ingest.lines import data_lines, line_batches, loadtxt, open_text
from dmf.store.location import one_line


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
    with reading(path), open_text(path) as f:
        for lineno, lines in line_batches(f):
            if len(first) < 2:
                first += itertools.islice(data_lines(lineno, lines, "#"), 2 - len(first))
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


def _parse_text(path, lineno: int, lines: list[str], layout: _TextLayout) -> np.ndarray:
    try:
        values = loadtxt(lines, delimiter=layout.delimiter, dtype=np.float64, ndmin=2,
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
    for number, text in data_lines(lineno, lines, "#"):
        fields = _fields(text.split("#", 1)[0], layout.delimiter)
        if len(fields) != layout.ncols:
            raise InputError(f"{path}: line {number} has {len(fields)} values, expected "
                             f"{layout.ncols} (as on line {layout.first_line})")
        for j, field in enumerate(fields):
            if not _is_number(field):
                raise InputError(f"{path}: line {number}, column {j + 1}: {field!r} is not a "
                                 "number")
    reason = f" ({one_line(exc)})" if exc else ""
    raise InputError(f"{path}: lines {lineno}-{lineno + len(lines) - 1} cannot be "
                     f"parsed{reason}")


def ingest_text(job: Job, delimiter: str | None = None, header: bool | None = None) -> None:
    layout = _text_layout(job.path, job.fmt, delimiter, header)
    shape = (layout.nrows, layout.ncols)

    def blocks(rows: int):
        r0, filled, block = 0, 0, None
        with reading(job.path), open_text(job.path) as f:
            for lineno, lines in line_batches(f):
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


__all__ = ["ingest_text"]
