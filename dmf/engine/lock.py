"""One writer per output: a lock file with a lease.

The lock is ``OUT/dmf-lock.json``: host, pid, start time, a random token and
a lease expiry, renewed by a heartbeat thread. A lock whose holder is a dead
process on this host, or whose lease has expired on another host (a holder
that stopped renewing), is stale and taken over with a warning. On this host
a live holder keeps its lock whatever its lease says: a process stopped
(SIGSTOP, swapped out) is not dead.

The lock is also a fence: the holder checks that the lock still bears its
token (:meth:`OutputLock.check`) before every write of a checkpoint or
result, and stops (:class:`~dmf.errors.OutputLocked`, exit 3) if another job
took it over while it was frozen past its lease.

On a local filesystem the lock is created with O_EXCL, so two jobs cannot
both take it. Object stores have no exclusive create that every fsspec
backend offers; there the lock is written and read back, which leaves a
window of a few milliseconds in which two jobs starting together could both
believe they hold it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime

import psutil

from dmf.errors import OutputLocked
from dmf.store.location import Location

log = logging.getLogger(__name__)

LOCK_NAME = "dmf-lock.json"
LEASE_SECONDS = 60.0


class OutputLock:
    """Context manager holding the lock on ``location`` while a job writes.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with OutputLock(Location.parse(d)) as lock:
    ...     os.path.exists(os.path.join(d, LOCK_NAME))
    True
    >>> os.path.exists(os.path.join(d, LOCK_NAME))
    False
    """

    def __init__(self, location: Location, *, lease: float = LEASE_SECONDS):
        self.location = location
        self.path = location.join(LOCK_NAME)
        self.lease = lease
        self.token = uuid.uuid4().hex
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- record -----------------------------------------------------------
    def _record(self) -> dict:
        now = time.time()
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "token": self.token,
            "expires": now + self.lease,
        }

    def _read(self) -> dict | None:
        fs, path = self.path.filesystem()
        try:
            with fs.open(path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}  # torn by a crash mid-write: no live holder wrote it

    def _write(self, record: dict, *, exclusive: bool) -> bool:
        data = json.dumps(record).encode()
        if self.location.is_local:
            os.makedirs(self.location.url, exist_ok=True)
            if exclusive:
                try:
                    fd = os.open(self.path.url, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                return True
            tmp = f"{self.path.url}.{self.token}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path.url)
            return True
        fs, path = self.path.filesystem()
        if exclusive and fs.exists(path):
            return False
        fs.pipe_file(path, data)
        return True

    # -- staleness --------------------------------------------------------
    @staticmethod
    def stale_reason(record: dict) -> str | None:
        """Why a lock record no longer protects anything, or None if it does."""
        if not record:
            return "the lock file is unreadable"
        if record.get("host") == socket.gethostname():
            pid = record.get("pid")
            if not isinstance(pid, int) or not _alive_since(pid, record.get("started")):
                return f"process {pid} on this host is gone"
            return None  # alive here: frozen perhaps, but it will write again
        if record.get("expires", 0) < time.time():
            return "its lease expired"
        return None

    # -- acquire / release --------------------------------------------------
    def acquire(self) -> None:
        record = self._record()
        if self._write(record, exclusive=True) and self._owned():
            self._start_heartbeat()
            return
        held = self._read()
        if held is None:  # released between our attempt and the read
            return self.acquire()
        reason = self.stale_reason(held)
        if reason is None:
            raise OutputLocked(
                f"{self.location}: locked by another job (host {held.get('host')}, pid "
                f"{held.get('pid')}, since {held.get('started')}); wait for it or stop it"
            )
        log.warning("%s: taking over a stale lock of host %s pid %s (%s)",
                    self.location, held.get("host"), held.get("pid"), reason)
        self._write(record, exclusive=False)
        if not self._owned():
            held = self._read() or {}
            raise OutputLocked(f"{self.location}: another job took the lock first (host "
                               f"{held.get('host')}, pid {held.get('pid')})")
        self._start_heartbeat()
        return None

    def check(self) -> None:
        """Raise OutputLocked unless the lock still bears this job's token
        (the fence before each write of a checkpoint or result)."""
        try:
            held = self._read()
        except OSError:
            held = None
        if not held or held.get("token") != self.token:
            held = held or {}
            raise OutputLocked(
                f"{self.location}: this job lost its lock (now held by host "
                f"{held.get('host')}, pid {held.get('pid')}); stopped before writing, so "
                "the other job's output is not mixed with this one's")

    def _owned(self) -> bool:
        held = self._read()
        return bool(held) and held.get("token") == self.token

    def _start_heartbeat(self) -> None:
        def renew() -> None:
            while not self._stop.wait(self.lease / 3):
                try:
                    if self._owned():
                        self._write(self._record(), exclusive=False)
                except Exception as exc:  # noqa: BLE001 - keep the job running; the lease shows it
                    log.warning("%s: could not renew the lock lease: %s", self.location, exc)

        self._thread = threading.Thread(target=renew, name="dmf-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if self._owned():
                fs, path = self.path.filesystem()
                fs.rm(path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _alive_since(pid: int, started: str | None) -> bool:
    """Whether process ``pid`` is alive and is the one that took the lock at
    ``started`` (not a later process given the same pid)."""
    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return psutil.pid_exists(pid) if pid > 0 else False
    try:
        taken = datetime.fromisoformat(started).timestamp() if started else None
    except (TypeError, ValueError):
        taken = None
    return taken is None or created <= taken + 1.0  # ``started`` is rounded to seconds
