"""A run stopped by an exception from its callback: the tests' stand-in for a
crash between checkpoints (the engine's state on disk is what a kill leaves)."""

from __future__ import annotations

from collections.abc import Callable


class Crash(Exception):
    pass


def crash_at(iteration: int) -> Callable:
    """An engine callback that raises :class:`Crash` after ``iteration``."""
    def callback(it, state, stats):
        if it == iteration:
            raise Crash(f"crash at {it}")
    return callback
