"""Nothing non-finite goes in or comes out of an iteration.

A parameter that is NaN or infinite, or a seed or checkpoint interval that
cannot work, is refused before the job starts (an InputError naming it). A
step whose loss or small factors are NaN or Inf stops the run at once, before
anything is checkpointed, so the last finite checkpoint stays the one a
rerun resumes from.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dmf.errors import DmfError, InputError


class NonFiniteError(DmfError):
    """An iteration produced NaN or Inf (exit 1)."""


def check_run_options(params: dict[str, Any], *, seed, max_iter, tol, keep) -> None:
    """Refuse what cannot give a finite, resumable run (InputError); the
    checkpoint intervals are checked by :class:`dmf.engine.options.RunOptions`."""
    for name, value in _numbers(params):
        if not math.isfinite(value):
            raise InputError(f"{name} must be a finite number, got {value!r}")
    if seed is not None and not (_integer(seed) and 0 <= seed < 2**128):
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    if not (_integer(max_iter) and max_iter >= 0):
        raise InputError(f"max_iter must be an integer >= 0, got {max_iter!r}")
    if not (_number(tol) and math.isfinite(tol) and tol >= 0):
        raise InputError(f"tol must be a finite number >= 0, got {tol!r}")
    if not (_integer(keep) and keep >= 1):
        raise InputError(f"keep must be an integer >= 1, got {keep!r}")


def check_step(name: str, iteration: int, loss: float, state: dict[str, Any]) -> None:
    """Raise NonFiniteError if iteration ``iteration`` gave a NaN or Inf loss
    or small factor."""
    bad = [] if math.isfinite(loss) else [f"the loss is {loss}"]
    bad += [f"{key} holds NaN or Inf" for key, value in state.items()
            if isinstance(value, np.ndarray) and value.dtype.kind in "fc"
            and not np.isfinite(value).all()]
    if bad:
        raise NonFiniteError(
            f"{name}: iteration {iteration} produced non-finite values ({', '.join(bad)}); "
            "stopped without checkpointing them, the last checkpoint is kept. Likely cause: "
            "a parameter out of range (regularization, loss, tolerance) or input values too "
            "large or too small for its dtype")


def _integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _numbers(value, path: str = ""):
    """(dotted name, float) for every float in nested parameters."""
    if isinstance(value, dict):  # scalars first: they name what a user typed
        for key, item in sorted(value.items(), key=lambda kv: isinstance(kv[1], (dict, list))):
            yield from _numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{path}[{i}]")
    elif isinstance(value, (float, np.floating)):
        yield path, float(value)
