"""Counts in messages, in the right number ("1 iteration", "2 iterations")."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, plural unless the count is one.

    Examples
    --------
    >>> plural(1, "iteration"), plural(3, "iteration"), plural(2, "try", "tries")
    ('1 iteration', '3 iterations', '2 tries')
    """
    return f"{count} {word if count == 1 else (many or word + 's')}"


__all__ = ["plural"]
