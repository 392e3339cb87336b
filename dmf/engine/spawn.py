"""Worker processes that ignore the terminal's SIGINT.

A terminal's Ctrl-C sends SIGINT to the whole process group, so the local
cluster's worker processes get it too; each would die with a
KeyboardInterrupt traceback while this process (the driver) still needs them
to finish a checkpoint. Dask starts them with multiprocessing's ``spawn``:
a fresh interpreter that installs Python's SIGINT handler, unless SIGINT is
ignored when it starts. :func:`sigint_ignored_workers` makes the spawn go
through a two-line ``sh`` script that ignores SIGINT and then runs this
Python, so a worker ignores it from its first instruction on, also one the
nanny restarts later. The driver stops them itself when it shuts the cluster
down (SIGTERM and SIGKILL still reach them).

A start that is interrupted cannot be closed, and Dask's threads may go on
spawning its workers while this process exits; a worker spawned then finds
its parent gone and prints a traceback. :func:`refuse_new_workers`, called
at exit, makes every later spawn run ``true`` instead, which exits at once
and says nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from multiprocessing import resource_tracker, spawn

log = logging.getLogger(__name__)


PREFIX = "python-sigint-ignored-"
_refused = False  # set once by refuse_new_workers, for the rest of this process


def _launcher(python: str) -> str | None:
    """The path of an executable script that runs ``python`` with SIGINT
    ignored, written once per user and interpreter; None where scripts
    cannot run from the temporary folder (mounted noexec)."""
    script = f"#!/bin/sh\ntrap '' INT\nexec {shlex.quote(python)} \"$@\"\n"
    folder = os.path.join(tempfile.gettempdir(), f"dmf-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if not _private(folder):  # made by someone else: nothing in it is run
        return None
    digest = hashlib.sha256(script.encode()).hexdigest()[:16]
    path = os.path.join(folder, f"{PREFIX}{digest}")
    if not os.path.exists(path):
        temporary = f"{path}.{os.getpid()}"
        with open(temporary, "w") as f:
            f.write(script)
        os.chmod(temporary, 0o700)
        os.replace(temporary, path)
    return path if _private(path) and os.access(path, os.X_OK) else None


def _private(path: str) -> bool:
    """Owned by this user and writable by no one else."""
    st = os.lstat(path)
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


@contextlib.contextmanager
def sigint_ignored_workers() -> Iterator[None]:
    """While in the block, processes spawned by multiprocessing (Dask's
    nannies start workers so) ignore SIGINT. Without ``sh`` (not POSIX) or
    an executable temporary folder, they are spawned as usual."""
    python = os.fsdecode(spawn.get_executable())
    launcher = None
    if os.name == "posix" and not os.path.basename(python).startswith(PREFIX):
        try:
            launcher = _launcher(python)
        except OSError as exc:
            log.info("worker processes will not ignore SIGINT: %s", exc)
    if launcher is None:
        yield
        return
    spawn.set_executable(launcher)
    try:
        yield
    finally:
        if not _refused:
            spawn.set_executable(python)


def refuse_new_workers() -> None:
    """From now on, a process spawned by multiprocessing runs ``true``
    (found on PATH) instead of Python: it reads nothing from its parent and
    exits at once, silently. For a process exiting (an exit hook) with a
    cluster's start half done: it is never undone. The spawn itself then
    fails in Dask's thread, whose logs dmf has silenced. multiprocessing's resource tracker, spawned
    the same way, is started first if it is not running yet: a ``true``
    in its place would break the semaphores' clean-up at exit."""
    global _refused
    true = shutil.which("true")
    if true is None:
        log.info("no 'true' on PATH: workers may still be spawned while dmf exits")
        return
    resource_tracker.ensure_running()
    _refused = True
    spawn.set_executable(true)
