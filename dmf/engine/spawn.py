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
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import tempfile
from collections.abc import Iterator
from multiprocessing import spawn


def _launcher(python: str) -> str:
    """The path of an executable script that runs ``python`` with SIGINT
    ignored, written once per user and interpreter."""
    script = f"#!/bin/sh\ntrap '' INT\nexec {shlex.quote(python)} \"$@\"\n"
    folder = os.path.join(tempfile.gettempdir(), f"dmf-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    digest = hashlib.sha256(script.encode()).hexdigest()[:16]
    path = os.path.join(folder, f"python-sigint-ignored-{digest}")
    if not os.access(path, os.X_OK):
        temporary = f"{path}.{os.getpid()}"
        with open(temporary, "w") as f:
            f.write(script)
        os.chmod(temporary, 0o700)
        os.replace(temporary, path)
    return path


@contextlib.contextmanager
def sigint_ignored_workers() -> Iterator[None]:
    """While in the block, processes spawned by multiprocessing (Dask's
    nannies start workers so) ignore SIGINT; a no-op where there is no
    ``sh`` (not POSIX)."""
    if os.name != "posix":  # pragma: no cover
        yield
        return
    python = spawn.get_executable()
    spawn.set_executable(_launcher(os.fsdecode(python)))
    try:
        yield
    finally:
        spawn.set_executable(python)
