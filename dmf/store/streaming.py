"""Bounded resources while streaming blocks: a thread pool that holds at
most a few blocks in flight (memory), and iteration that closes its
generator when the consumer fails (open files). Generic: sparse writes,
ingest and triplet spills use them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
from collections.abc import Iterator


def closing(generator: Iterator) -> Iterator:
    """Iterate ``generator`` and close it even when the consumer fails, so
    the files it holds open are closed now rather than when collected."""
    with contextlib.closing(generator):
        yield from generator


class BoundedPool:
    """A thread pool holding at most ``max_in_flight`` tasks: ``submit``
    waits while it is full, so memory stays bounded by that many blocks, and
    re-raises the first failure. On leaving the ``with`` block every task has
    finished (also on error, so a staging store can then be removed safely).

    Examples
    --------
    >>> with BoundedPool(2) as pool:
    ...     futures = [pool.submit(pow, 2, k) for k in range(4)]
    >>> [f.result() for f in futures]
    [1, 2, 4, 8]
    """

    def __init__(self, max_in_flight: int = 2):
        self.max_in_flight = max_in_flight
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_in_flight, thread_name_prefix="dmf-write")
        self._pending: collections.deque = collections.deque()

    def submit(self, fn, *args, **kwargs) -> concurrent.futures.Future:
        while len(self._pending) >= self.max_in_flight:
            self._pending.popleft().result()
        future = self._executor.submit(fn, *args, **kwargs)
        self._pending.append(future)
        return future

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> BoundedPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            for future in self._pending:
                future.cancel()
            self._pending.clear()
        try:
            if exc_type is None:
                self.drain()
        finally:
            self._executor.shutdown(wait=True)


__all__ = [
    "BoundedPool",
    "closing",
]
