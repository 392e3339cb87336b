"""Fail points: named places where a test can freeze the process to kill it.

A test sets ``DMF_FAILPOINT=NAME:N`` and ``DMF_FAILPOINT_FILE=PATH``; the N-th
time the engine passes ``failpoint("NAME")`` it creates PATH and sleeps, so
the test knows exactly where the process is when it sends SIGKILL. With
``DMF_FAILPOINT_SLEEP=SECONDS`` it pauses that long instead, for tests of a
signal arriving at that point. Without the variable a fail point costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import time

_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    spec = os.environ.get("DMF_FAILPOINT")
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != int(count or 1):
        return
    marker = os.environ.get("DMF_FAILPOINT_FILE")
    if marker:
        with open(marker, "w") as f:
            f.write(f"{name} {os.getpid()}\n")
    pause = os.environ.get("DMF_FAILPOINT_SLEEP")
    if pause:
        time.sleep(float(pause))
        return
    while True:  # wait here to be killed
        time.sleep(3600)
