"""A bound on every wait on a cluster that has lost all its workers.

A Dask scheduler without workers keeps tasks waiting for good, and the client
waits with them. :class:`WorkerWatch` asks the scheduler every second how many
workers it has; after ``timeout`` seconds with none, it records why and closes
the client, which cancels every future: whatever waits on the cluster (a
step, a checkpoint write) ends with an error, which the driver and
:func:`dmf.connect` report as :class:`~dmf.errors.WorkersLost` (exit 4), the
last checkpoint intact. A scheduler that cannot be reached at all is left to
the client's own reconnection timeout (reported as a lost scheduler).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from dmf.errors import InputError, WorkersLost

log = logging.getLogger(__name__)

TIMEOUT_ENV = "DMF_NO_WORKERS_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
POLL_SECONDS = 1.0

_lost: str | None = None  # why the watched cluster was given up, while it is


def default_no_workers_timeout() -> float:
    """``$DMF_NO_WORKERS_TIMEOUT`` seconds, or 60."""
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"${TIMEOUT_ENV} must be a number of seconds, got {text!r}") from None
    if value <= 0:
        raise InputError(f"${TIMEOUT_ENV} must be positive, got {text!r}")
    return value


def workers_lost() -> str | None:
    """Why the cluster this process computes on was given up, or None."""
    return _lost


class WorkerWatch:
    """Watches ``client``'s cluster from a daemon thread while in a ``with``
    block; see the module docstring."""

    def __init__(self, client, timeout: float, *, interval: float = POLL_SECONDS):
        self.client = client
        self.timeout = timeout
        self.interval = interval
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dmf-worker-watch", daemon=True)

    def __enter__(self) -> WorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        global _lost
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)
        _lost = None

    def raise_if_lost(self, cause: BaseException) -> None:
        """Raise WorkersLost (from ``cause``) if the watch gave the cluster up."""
        if self.lost is not None and not isinstance(cause, WorkersLost):
            raise WorkersLost(self.lost) from cause

    def _run(self) -> None:
        empty_since = None
        while not self._stop.wait(self.interval):
            try:
                workers = len(self.client.nthreads())
            except Exception as exc:  # noqa: BLE001 - the scheduler itself: not this watch's call
                log.debug("worker watch: %s", exc)
                continue
            now = time.monotonic()
            if workers:
                empty_since = None
            elif empty_since is None:
                empty_since = now
                log.info("the Dask scheduler has no workers; giving up in %g s", self.timeout)
            elif now - empty_since >= self.timeout and not self._stop.is_set():
                self._give_up()
                return

    def _give_up(self) -> None:
        global _lost
        address = getattr(self.client.scheduler, "address", "?")
        self.lost = (f"the Dask scheduler at {address} has had no workers for "
                     f"{self.timeout:g} s (${TIMEOUT_ENV}); start workers, then rerun")
        _lost = self.lost
        log.info("%s", self.lost)
        try:
            self.client.close(timeout=5)
        except Exception as exc:  # noqa: BLE001 - the futures are cancelled all the same
            log.debug("worker watch: closing the client: %s", exc)
