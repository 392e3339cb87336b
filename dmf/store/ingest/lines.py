"""Text files (plain or gzip) read in batches of lines, for the text and
Matrix Market formats."""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Iterator

import numpy as np

#: Characters of text parsed at once (their line strings cost about twice).
_BATCH_CHARS = 8 * 2**20


def open_text(path: str):
    if path.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def skipped(line: str, comment: str) -> bool:
    text = line.strip()
    return not text or text.startswith(comment)


def line_batches(f, first_lineno: int = 1) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines) in batches of about
    ``_BATCH_CHARS`` characters; reading whole batches keeps Python's
    per-line work out of the loop."""
    lineno = first_lineno
    while lines := f.readlines(_BATCH_CHARS):
        yield lineno, lines
        lineno += len(lines)


def data_lines(lineno: int, lines: list[str], comment: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of the lines of a batch that hold data."""
    for k, line in enumerate(lines):
        if not skipped(line, comment):
            yield lineno + k, line.strip()


def loadtxt(lines: list[str], **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        # a batch of comments only is fine: it gives no rows
        warnings.filterwarnings("ignore", "loadtxt: input contained no data")
        return np.loadtxt(lines, **kwargs)


__all__ = ["data_lines", "line_batches", "loadtxt", "open_text", "skipped"]
