"""Ingest of numeric text (csv, tsv, txt): delimiter and header detected, lines
counted in a first pass, then parsed in batches.

Columns are chosen by header name or 0-based position (``columns=``, pandas'
``usecols``); without a choice, columns whose first value is text (an id
column) are skipped with a warning naming them."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dmf.errors import DmfWarning, InputError, warn
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


def _is_word(field: str) -> bool:
    return bool(field) and not _is_number(field)  # an empty field is a missing value


def _is_header(first: list[str], second: list[str] | None) -> bool:
    """A first line with a word in it, alone or above a number (an id
    column holds words on every line; its header is still a header).

    Examples
    --------
    >>> _is_header(["id", "a", "b"], ["u1", "1", "2"]), _is_header(["u0", "1"], ["u1", "2"])
    (True, False)
    """
    if second is None:
        return any(_is_word(f) for f in first)
    return any(_is_word(f) and _is_number(s) for f, s in zip(first, second, strict=False))


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
    ncols: int  # values on each line
    usecols: list[int] | None = None  # the columns read (None: all)

    @property
    def width(self) -> int:
        return self.ncols if self.usecols is None else len(self.usecols)


def _chosen_columns(path: str, chosen: Sequence, names: list[str] | None,
                    ncols: int) -> list[int]:
    """Positions of ``chosen``: header names or 0-based positions."""
    if isinstance(chosen, str):  # "a,c" (the command line's --columns)
        chosen = [c.strip() for c in chosen.split(",") if c.strip()]
    positions = []
    for c in [chosen] if isinstance(chosen, int) else chosen:
        if names is not None and str(c) in names:
            positions.append(names.index(str(c)))
            continue
        try:
            j = int(c)
        except (TypeError, ValueError):
            known = f"the header has {', '.join(names)}" if names else "there is no header line"
            raise InputError(f"{path}: no column {c!r} ({known}; a column is a header name "
                             "or a 0-based position)") from None
        if not 0 <= j < ncols:
            raise InputError(f"{path}: column {j} is out of range (lines have {ncols} "
                             "values; positions start at 0)")
        positions.append(j)
    if not positions:
        raise InputError(f"{path}: columns is empty")
    return positions


def _text_columns(path: str, first: tuple[int, list[str]], names, chosen) -> list[int] | None:
    """The columns to read: ``chosen``, else all but those holding text on
    the first data line (skipped with a warning)."""
    lineno, fields = first
    if chosen is not None:
        return _chosen_columns(path, chosen, names, len(fields))
    text = [j for j, f in enumerate(fields) if _is_word(f)]
    if not text:
        return None
    if len(text) == len(fields):
        raise InputError(f"{path}: line {lineno} holds no numbers ({', '.join(fields)})")
    label = ", ".join(f"{j} ({names[j]!r})" if names else str(j) for j in text)
    warn(f"{path}: skipped column {label}: text such as {fields[text[0]]!r} on line "
         f"{lineno}; choose columns with columns= (--columns)", DmfWarning)
    return [j for j in range(len(fields)) if j not in text]


def _text_layout(path: str, fmt: str, delimiter, header, columns=None) -> _TextLayout:
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
    header_line, names = 0, None
    if header:
        header_line = first.pop(0)[0]
        names = fields.pop(0)
        count -= 1
    if not first:
        raise InputError(f"{path}: only a header line, no data (the matrix is empty)")
    usecols = _text_columns(path, (first[0][0], fields[0]), names, columns)
    return _TextLayout(delimiter, header_line, first[0][0], count, len(fields[0]), usecols)


#: A line holding no data: blank, or a comment.
_BLANK_OR_COMMENT = re.compile(r"^[^\S\n]*(?:#[^\n]*)?\n", re.MULTILINE)


def _parse_text(path, lineno: int, lines: list[str], layout: _TextLayout) -> np.ndarray:
    try:
        values = loadtxt(lines, delimiter=layout.delimiter, dtype=np.float64, ndmin=2,
                         comments="#", usecols=layout.usecols)
    except ValueError as exc:
        _diagnose_text(path, lineno, lines, layout, exc)
    if not len(values):
        return np.empty((0, layout.width))
    if values.shape[1] != layout.width:
        _diagnose_text(path, lineno, lines, layout, None)
    if layout.usecols is not None:  # loadtxt reads the chosen columns of a ragged line too
        for number, text in data_lines(lineno, lines, "#"):
            if len(_fields(text.split("#", 1)[0], layout.delimiter)) != layout.ncols:
                _diagnose_text(path, number, [text], layout, None)
    return values


def _diagnose_text(path, lineno: int, lines: list[str], layout: _TextLayout, exc) -> None:
    """Raise an InputError naming the first bad line of a batch."""
    for number, text in data_lines(lineno, lines, "#"):
        fields = _fields(text.split("#", 1)[0], layout.delimiter)
        if len(fields) != layout.ncols:
            raise InputError(f"{path}: line {number} has {len(fields)} values, expected "
                             f"{layout.ncols} (as on line {layout.first_line})")
        for j, field in enumerate(fields):
            if layout.usecols is not None and j not in layout.usecols:
                continue
            if not _is_number(field):
                raise InputError(f"{path}: line {number}, column {j + 1}: {field!r} is not a "
                                 "number")
    reason = f" ({one_line(exc)})" if exc else ""
    raise InputError(f"{path}: lines {lineno}-{lineno + len(lines) - 1} cannot be "
                     f"parsed{reason}")


def ingest_text(job: Job, delimiter: str | None = None, header: bool | None = None,
                columns: Sequence[str | int] | None = None,
                usecols: Sequence[str | int] | None = None) -> None:
    if columns is not None and usecols is not None:
        raise InputError(f"{job.path}: give columns or usecols (the same option), not both")
    layout = _text_layout(job.path, job.fmt, delimiter, header,
                          columns if columns is not None else usecols)
    shape = (layout.nrows, layout.width)

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
