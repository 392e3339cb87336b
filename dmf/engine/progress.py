"""A one-line progress display for iterative solvers, on stderr.

Shown when stderr is a terminal or ``progress=True``; never under
``progress=False`` (the CLI's ``-q``). On a terminal the line is redrawn in
place; elsewhere (a log file, a batch job) a line is printed at most every
few seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN or unknown
        return "?"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Iteration, loss, relative change, seconds per iteration and ETA.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress("svd-power", max_iter=10, enabled=True, stream=out, interval=0)
    >>> p.update(1, 2.0, None, 0.5)
    >>> "iter 1/10" in out.getvalue() and "loss 2" in out.getvalue()
    True
    """

    def __init__(self, label: str, max_iter: int, *, enabled: bool | None = None,
                 stream: TextIO | None = None, interval: float = 5.0):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = self.tty if enabled is None else enabled
        self.label = label
        self.max_iter = max_iter
        self.interval = interval
        self._last_print = 0.0
        self._width = 0

    def update(self, iteration: int, loss: float, rel_change: float | None,
               seconds_per_iter: float, note: str = "") -> None:
        if not self.enabled:
            return
        remaining = max(0, self.max_iter - iteration) * seconds_per_iter
        rel = "-" if rel_change is None else f"{rel_change:.2e}"
        line = (f"{self.label}: iter {iteration}/{self.max_iter}  loss {loss:.6g}  "
                f"rel.change {rel}  {seconds_per_iter:.3g} s/iter  "
                f"ETA <= {_duration(remaining)}{'  ' + note if note else ''}")
        now = time.monotonic()
        if self.tty:
            pad = " " * max(0, self._width - len(line))
            self.stream.write("\r" + line + pad)
            self._width = len(line)
        elif now - self._last_print >= self.interval:
            self.stream.write(line + "\n")
            self._last_print = now
        else:
            return
        self.stream.flush()

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty and self._width:
            self.stream.write("\n")
            self._width = 0
        self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
