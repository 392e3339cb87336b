"""Ingest of ratings: text lines ``user, item, rating[, timestamp]`` with
arbitrary ids, into a ratings store (:mod:`dmf.store.ratings`).

The file is parsed once, in batches of lines (as every text format is,
:mod:`dmf.store.ingest.lines`), a batch split all at once when its lines
are regular (line by line otherwise, which names a bad line): ids are
mapped to numbers as they first appear (the id maps are the only thing that
grows with the file) and the parsed records go to a temporary binary file,
32 bytes a rating. Once every id is known, rows and columns are renumbered
so that ids are in sorted order, and the ratings store is built from the
binary records, read twice (counting, then spilling per row block; see
:func:`dmf.store.triplets.build_csr_from_triplets`).

The layout of a file:

- delimiter: ``::`` (MovieLens 1M), else tab, comma or semicolon, whichever
  the first data line holds first in that order, else runs of whitespace;
  no quoting (ids may not contain the delimiter);
- header: a first line whose third field is not a number (``user,item,
  rating``) is a header, unless ``header`` says otherwise (``columns``
  implies one);
- columns: with a header, its names choose them (case, blanks, ``_`` and
  ``-`` ignored): ``user``/``userid``/``uid``, ``item``/``itemid``/
  ``movie``/``movieid``/``product``/``productid``, ``rating``/``score``,
  ``timestamp``/``time``; ``columns={"user": "customer", ...}`` (CLI
  ``--columns user=customer,...``) names others. Roles no name gives take
  the unnamed columns in order (user, item, rating, timestamp) when the
  header has at most 4 columns, else it is an error; other columns are
  ignored. Without a header: ``user, item, rating[, timestamp]`` by
  position, 3 or 4 fields;
- every line has as many fields as the header (or the first data line);
  blank lines and lines starting with ``#`` are skipped;
- ids are stripped of surrounding blanks; when every id of a side is an
  integer they are stored as int64 and sorted numerically, when none is as
  strings sorted as text: row ``i`` is the ``i``-th user id in that order.
  A side mixing the two forms, or two spellings of one integer (``7`` and
  ``07``), is an error naming the line;
- a (user, item) pair rated more than once keeps its latest rating by
  timestamp (equal times, and files without times: the last in the file),
  with a warning giving the count; ``duplicates="sum"`` adds them instead
  (counts of implicit feedback).
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from collections.abc import Iterator

import numpy as np

from dmf.errors import InputError
from dmf.store.ingest.common import Job, reading
from dmf.store.ingest.lines import data_lines, line_batches, open_text
from dmf.store.ingest.text import _is_number, _sniff
from dmf.store.ratings import warn_duplicates, write_ratings

#: One parsed rating in the temporary file: numbers of user and item in
#: order of first appearance, rating, time (0 when there is none).
_RECORD = np.dtype([("u", np.int64), ("i", np.int64), ("r", np.float64), ("t", np.float64)])

#: Records read back at once (8 MiB; with their conversions and spilling
#: they cost several times that).
_READ_RECORDS = 2**18

_INTEGER = re.compile(r"[+-]?\d+")


def _delimiter(line: str) -> str | None:
    return "::" if "::" in line else _sniff(line, None)


def _split(text: str, delimiter: str | None) -> list[str]:
    return text.split(delimiter) if delimiter else text.split()


#: Header names of each column role (normalized: lower case, letters and
#: digits only).
ROLE_NAMES = {
    "user": ("user", "userid", "uid", "users"),
    "item": ("item", "itemid", "iid", "items", "movie", "movieid", "product", "productid"),
    "rating": ("rating", "ratings", "score"),
    "timestamp": ("timestamp", "time", "ts"),
}
ROLES = tuple(ROLE_NAMES)
#: ``columns=`` keys: the roles and the synonyms of item.
_ROLE_KEYS = {**{r: r for r in ROLES}, "movie": "item", "product": "item"}


def _normal(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def parse_columns(text: str | dict | None) -> dict[str, str] | None:
    """``columns`` as {role: header name}, from a dict or the CLI's
    ``user=customer,item=sku``."""
    if text is None or isinstance(text, dict):
        pairs = list((text or {}).items())
    else:
        pairs = []
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            key, eq, value = part.partition("=")
            if not eq or not value.strip():
                raise InputError(f"columns: {part!r} is not ROLE=NAME (e.g. user=customer_id)")
            pairs.append((key, value))
    out: dict[str, str] = {}
    for key, value in pairs:
        role = _ROLE_KEYS.get(str(key).strip().lower())
        if role is None:
            raise InputError(f"columns: unknown role {key!r}; roles are "
                             f"{', '.join(ROLES)} (movie and product mean item)")
        out[role] = str(value).strip()
    return out or None


def _roles(path: str, line: int, names: list[str], columns: dict[str, str] | None
           ) -> dict[str, int]:
    """Column of each role from the header's names (see the module's notes)."""
    normal = [_normal(n) for n in names]
    where: dict[str, int] = {}
    for role, name in (columns or {}).items():
        if name not in names and _normal(name) not in normal:
            raise InputError(f"{path}: line {line}: the header has no column {name!r} for "
                             f"{role} (columns: {', '.join(names)})")
        where[role] = names.index(name) if name in names else normal.index(_normal(name))
    for role in ROLES:
        if role not in where:
            for c, n in enumerate(normal):
                if n in ROLE_NAMES[role] and c not in where.values():
                    where[role] = c
                    break
    free = [c for c in range(len(names)) if c not in where.values()]
    missing = [r for r in ROLES if r not in where]
    if len(names) <= 4:  # unnamed roles take the unnamed columns in order
        for role in missing:
            if free:
                where[role] = free.pop(0)
    lacking = [r for r in ("user", "item", "rating") if r not in where]
    if lacking:
        raise InputError(f"{path}: line {line}: the header names no {' or '.join(lacking)} "
                         f"column (columns: {', '.join(names)}); name them, or pass "
                         "columns=... (CLI: --columns user=NAME,item=NAME,rating=NAME)")
    return where


class _Layout:
    """Delimiter, header line, number of fields and the column of each
    role, from the first lines."""

    def __init__(self, path: str, delimiter: str | None, header: bool | None,
                 columns: dict[str, str] | None = None):
        first: list[tuple[int, str]] = []
        with reading(path), open_text(path) as f:
            for lineno, lines in line_batches(f):
                first += itertools.islice(data_lines(lineno, lines, "#"), 2 - len(first))
                if len(first) >= 2:
                    break
        if not first:
            raise InputError(f"{path}: no ratings (the file is empty)")
        number, text = first[0]
        self.delimiter = delimiter if delimiter is not None else _delimiter(text)
        fields = _split(text, self.delimiter)
        if header is None:
            header = bool(columns) or (len(fields) >= 3 and not _is_number(fields[2].strip()))
        if columns and not header:
            raise InputError(f"{path}: columns=... names header fields, but the file is read "
                             "without a header line")
        self.header_line = number if header else 0
        if header:
            names = [f.strip() for f in fields]
            self.roles = _roles(path, number, names, columns)
            first.pop(0)
            if not first:
                raise InputError(f"{path}: only a header line, no ratings")
            number, text = first[0]
            fields = _split(text, self.delimiter)
            if len(fields) != len(names):
                raise InputError(f"{path}: line {number} has {len(fields)} fields, expected "
                                 f"{len(names)} (as the header on line {self.header_line})"
                                 + _delimiter_hint(self.delimiter))
        else:
            self.roles = dict(zip(ROLES, range(len(fields)), strict=False))
            if len(fields) not in (3, 4):
                raise InputError(f"{path}: line {number} has {len(fields)} fields, expected 3 "
                                 "(user, item, rating) or 4 (user, item, rating, timestamp)"
                                 + _delimiter_hint(self.delimiter))
        self.first_line = number
        self.nfields = len(fields)
        self.timestamps = "timestamp" in self.roles


def _delimiter_hint(delimiter: str | None) -> str:
    shown = {None: "whitespace", "\t": "tab"}.get(delimiter, repr(delimiter))
    return f"; fields were split at {shown} (pass delimiter=... if that is wrong)"


class _Ids:
    """External ids to numbers (temporary ones: :meth:`sorted` renumbers),
    with the line each first appeared on."""

    def __init__(self, what: str, path: str):
        self.what = what
        self.path = path
        self.index: dict[str, int] = {}  # stripped id -> number
        self._raw: dict[str, int] = {}  # field as written -> number
        self._lines: list[np.ndarray] = []  # first line of each number, per batch

    def codes(self, values: list[str], numbers: np.ndarray) -> np.ndarray:
        # Python touches each distinct field once; the lines go through C
        # (set, map): faster than a dict lookup per line
        raw, index = self._raw, self.index
        known = len(index)
        for value in set(values).difference(raw):
            key = value.strip()
            if not key:
                k = values.index(value)
                raise InputError(f"{self.path}: line {numbers[k]}: empty {self.what} id")
            raw[value] = index.setdefault(key, len(index))
        codes = np.fromiter(map(raw.__getitem__, values), np.int64, len(values))
        if len(index) > known:  # the new ids' first lines, in number order
            new, first = np.unique(codes, return_index=True)
            first = first[new >= known]
            self._lines.append(numbers[first[np.argsort(new[new >= known])]])
        return codes

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids in sorted order, new number of each first-appearance
        number): integers when every id is one, strings when none is; a
        mix, or two spellings of one integer, is an error naming the line."""
        keys = list(self.index)
        lines = np.concatenate(self._lines) if self._lines else np.zeros(0, np.int64)
        integer = np.fromiter((bool(_INTEGER.fullmatch(k)) for k in keys), bool, len(keys))
        ids: np.ndarray
        if integer.all() and len(keys):
            try:
                ids = np.array([int(key) for key in keys], dtype=np.int64)
            except OverflowError:
                big = next(k for k in keys if not -2**63 <= int(k) < 2**63)
                raise InputError(f"{self.path}: line {lines[keys.index(big)]}: {self.what} id "
                                 f"{big} does not fit in 64 bits") from None
            values, counts = np.unique(ids, return_counts=True)
            if (counts > 1).any():
                same = np.flatnonzero(ids == values[np.argmax(counts > 1)])
                a, b = sorted(same, key=lambda j: lines[j])[:2]
                raise InputError(f"{self.path}: line {lines[b]}: {self.what} id {keys[b]!r} "
                                 f"is the integer {keys[a]!r} of line {lines[a]} spelled "
                                 "another way; write each id one way")
        elif integer.any():
            by_line = np.argsort(lines, kind="stable")
            first_form = integer[by_line[0]]
            odd = by_line[np.argmax(integer[by_line] != first_form)]
            now, before = ("text", "integers") if first_form else ("an integer", "text")
            raise InputError(f"{self.path}: line {lines[odd]}: {self.what} id {keys[odd]!r} "
                             f"is {now}, but the {self.what} ids before it are {before} (line "
                             f"{lines[by_line[0]]}: {keys[by_line[0]]!r}); a column's ids "
                             "must be all integers or all text")
        else:
            ids = np.array(keys, dtype=object)
        order = np.argsort(ids, kind="stable")
        renumber = np.empty(len(ids), np.int64)
        renumber[order] = np.arange(len(ids))
        return ids[order], renumber


def _floats(column: list[str], what: str, path: str, numbers: np.ndarray) -> np.ndarray:
    try:
        values = np.array(column, dtype=np.float64)
    except ValueError:
        for k, field in enumerate(column):
            if not _is_number(field):
                raise InputError(f"{path}: line {numbers[k]}: {what} {field.strip()!r} is not "
                                 "a number") from None
        raise
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.argmax(bad))
        raise InputError(f"{path}: line {numbers[k]}: {what} {column[k].strip()!r} is not a "
                         "finite number; drop or fix that line")
    return values


def _fast_columns(lines: list[str], delimiter: str | None, nfields: int):
    """The fields of a batch as columns, split all at once, when every line
    holds exactly ``nfields`` fields at a one-character delimiter; None
    (for the line-by-line path, which also names a bad line) otherwise."""
    if delimiter is None or len(delimiter) != 1:
        return None
    text = "".join(lines)
    if not text.endswith("\n"):
        text += "\n"
    # a comment, a blank line: the line-by-line path skips them
    if "#" in text or "\n\n" in text or text.startswith("\n"):
        return None
    # UTF-8 never uses ASCII bytes inside a multi-byte character, so bytes
    # equal to the delimiter or a newline are exactly those characters
    raw = np.frombuffer(text.encode(), np.uint8)
    ends = np.flatnonzero(raw == 10)
    if len(ends) != len(lines):
        return None
    per_line = np.diff(np.searchsorted(np.flatnonzero(raw == ord(delimiter)), ends), prepend=0)
    if (per_line != nfields - 1).any():
        return None
    fields = text.replace(delimiter, "\n").split("\n")
    return [fields[j:-1:nfields] for j in range(nfields)]


def _slow_columns(path: str, lineno: int, lines: list[str], layout: _Layout):
    """(line numbers, columns) of a batch, line by line."""
    numbered = [(k, t) for k, t in data_lines(lineno, lines, "#") if k != layout.header_line]
    numbers = np.fromiter((k for k, _ in numbered), np.int64, len(numbered))
    rows = [_split(t, layout.delimiter) for _, t in numbered]
    lengths = np.fromiter(map(len, rows), np.int64, len(rows))
    if (lengths != layout.nfields).any():
        k = int(np.argmax(lengths != layout.nfields))
        raise InputError(f"{path}: line {numbers[k]} has {lengths[k]} fields, expected "
                         f"{layout.nfields} (as on line {layout.first_line})"
                         + _delimiter_hint(layout.delimiter))
    return numbers, [list(c) for c in zip(*rows, strict=True)] if rows else []


def _parse(path: str, layout: _Layout, users: _Ids, items: _Ids, out) -> int:
    """Parse the whole file into ``out`` as records; returns their number."""
    count = 0
    with reading(path), open_text(path) as f:
        for lineno, lines in line_batches(f):
            if lineno == layout.header_line:
                lineno, lines = lineno + 1, lines[1:]
            elif lineno < layout.header_line < lineno + len(lines):
                lines[layout.header_line - lineno] = "#\n"  # skipped, numbering kept
            columns = _fast_columns(lines, layout.delimiter, layout.nfields)
            if columns is None:
                numbers, columns = _slow_columns(path, lineno, lines, layout)
            else:
                numbers = np.arange(lineno, lineno + len(lines))
            del lines
            if not len(numbers):
                continue
            records = np.empty(len(numbers), _RECORD)
            role = layout.roles
            records["u"] = users.codes(columns[role["user"]], numbers)
            records["i"] = items.codes(columns[role["item"]], numbers)
            records["r"] = _floats(columns[role["rating"]], "rating", path, numbers)
            records["t"] = (_floats(columns[role["timestamp"]], "timestamp", path, numbers)
                            if layout.timestamps else 0.0)
            records.tofile(out)
            count += len(records)
    return count


def _records(path: str, renumber_users: np.ndarray, renumber_items: np.ndarray,
             timestamps: bool) -> Iterator[tuple]:
    with open(path, "rb") as f:
        while len(records := np.fromfile(f, _RECORD, count=_READ_RECORDS)):
            chunk = (renumber_users[records["u"]], renumber_items[records["i"]], records["r"])
            yield (*chunk, records["t"]) if timestamps else chunk


def ingest_ratings(job: Job, delimiter: str | None = None, header: bool | None = None,
                   tmpdir: str | os.PathLike | None = None, columns=None,
                   duplicates: str = "last") -> None:
    """Ingest a ratings file (see the module's description) into a ratings
    store; ``tmpdir`` holds the parsed records (32 bytes a rating) and the
    spill files (about as much again)."""
    job.no_chunks()
    if duplicates not in ("last", "sum"):
        raise InputError(f"{job.path}: duplicates must be 'last' or 'sum', got {duplicates!r}")
    layout = _Layout(job.path, delimiter, header, parse_columns(columns))
    users, items = _Ids("user", job.path), _Ids("item", job.path)
    timestamps = layout.timestamps
    stored = job.storage(np.dtype(np.float64))
    with tempfile.TemporaryDirectory(prefix="dmf-ratings-", dir=tmpdir) as scratch:
        parsed = os.path.join(scratch, "ratings.bin")
        with open(parsed, "wb") as out:
            count = _parse(job.path, layout, users, items, out)
        if not count:
            raise InputError(f"{job.path}: no ratings, only a header or comments")
        user_ids, renumber_users = users.sorted()
        item_ids, renumber_items = items.sorted()
        del users, items
        attrs = {**job.attrs(np.dtype(np.float64), stored), "source_ratings": count,
                 "ids": "sorted", "duplicates": duplicates}
        group = write_ratings(job.location, (len(user_ids), len(item_ids)), stored,
                              triplets=lambda: _records(parsed, renumber_users, renumber_items,
                                                        timestamps),
                              user_ids=user_ids, item_ids=item_ids, timestamps=timestamps,
                              overwrite=job.overwrite, codec=job.codec, attrs=attrs,
                              name=job.path, tmpdir=tmpdir, duplicates=duplicates)
    warn_duplicates(job.path, count - int(group["data"].shape[0]), duplicates,
                    "the latest by timestamp, then the last line" if timestamps else
                    "the last line")


__all__ = ["ingest_ratings", "parse_columns"]
