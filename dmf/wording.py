"""How messages word things: counts in the right number ("1 iteration",
"2 iterations"), paths in one form."""

from __future__ import annotations

import os


def plural(count: int, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, plural unless the count is one.

    Examples
    --------
    >>> plural(1, "iteration"), plural(3, "iteration"), plural(2, "try", "tries")
    ('1 iteration', '3 iterations', '2 tries')
    """
    return f"{count} {word if count == 1 else (many or word + 's')}"


def printed_path(path: object) -> str:
    """A path as every command prints it: absolute when local (what a Dask
    worker would open, and what to copy from the terminal), a URL as it is.

    Examples
    --------
    >>> printed_path("s3://bucket/X.zarr"), printed_path("/data/X.zarr")
    ('s3://bucket/X.zarr', '/data/X.zarr')
    """
    text = str(path)  # a path, or a Location (its URL)
    return text if "://" in text else os.path.abspath(text)


__all__ = ["plural", "printed_path"]
