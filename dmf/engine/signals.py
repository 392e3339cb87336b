"""SIGINT and SIGTERM during a run: stop at a safe point, checkpoint, exit.

While a step is computing, a signal stops it at once (its half-done work is
discarded; the state of the last finished iteration is what gets saved).
While a checkpoint or the result is being written, the signal only marks a
stop as pending; the driver stops once the write is complete, so a signal
never tears one. A second signal stops the
process immediately.

Runs nest (NMF's SVD start is a run; a job's steps are runs inside the
job's): a guard entered while another is active in the main thread is that
one, so a signal that arrives in an inner run's critical section is not lost
when the inner run ends; the inner guard's exit raises it instead.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class StopRequested(BaseException):
    """Raised in the main thread when a stop signal arrived."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class SignalGuard:
    """Installs the handlers for the duration of a ``with`` block; ``with
    SignalGuard() as guard`` gives the guard in force (an outer one if
    active)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.pending: int | None = None
        self._critical = 0
        self._previous: dict[int, object] = {}
        self._outer: SignalGuard | None = None

    def _handler(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.pending is not None:
            raise KeyboardInterrupt  # second signal: no more waiting
        self.pending = signum
        if not self._critical:
            raise StopRequested(signum)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section a signal must not interrupt. A signal arriving inside it
        only sets ``pending``; the caller checks that after the section."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1

    def raise_pending(self) -> None:
        """After a critical section: stop now if a signal arrived in it."""
        if self.pending is not None and not self._critical:
            raise StopRequested(self.pending)

    def __enter__(self) -> SignalGuard:
        global _active
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach only the main thread
        if _active is not None:
            self._outer = _active
            return _active
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handler)
        _active = self
        return self

    def __exit__(self, exc_type, *exc) -> None:
        global _active
        if self._outer is not None:  # nested: the outer guard stays
            outer, self._outer = self._outer, None
            if exc_type is None:
                outer.raise_pending()
            return
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        if self._previous:
            _active = None
        self._previous.clear()


_active: SignalGuard | None = None  # the guard installed in the main thread
