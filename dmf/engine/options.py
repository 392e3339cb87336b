"""How a job runs, apart from what it computes: one object, validated once.

Every public function that runs on the engine (:func:`dmf.svd`,
:func:`dmf.nmf`, :func:`dmf.nmtf`, :func:`dmf.cf.als`, :func:`dmf.cf.sgd`,
:func:`dmf.select_rank`, :func:`dmf.audio.separate`) and every estimator over
them takes its run options as one :class:`RunOptions` (``options=``) or, as
before, as keywords of the same names; :func:`run_options` turns either into
the one object the engine's :func:`~dmf.engine.driver.run` reads.

The seed is not a run option: it changes the factors, so it belongs with the
model's parameters (and in the job's fingerprint); nothing here does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from dmf.engine.finite import _integer, _number  # the same rules as the other run checks
from dmf.errors import InputError

CACHE_CHOICES = (True, False, "auto")
#: What a job does when every checkpoint it could resume from is damaged.
DAMAGED_CHOICES = ("start-over", "stop")


def check_damaged_choice(value: str) -> str:
    """``value`` if it is one of :data:`DAMAGED_CHOICES`, else InputError."""
    if value not in DAMAGED_CHOICES:
        raise InputError(f"damaged_checkpoints must be 'start-over' or 'stop', got {value!r}")
    return value


@dataclass(frozen=True)
class RunOptions:
    """Where a job's result goes and how it runs there: output, checkpoints,
    resume, progress, caching. None of them changes the factors.

    Parameters
    ----------
    out : str, path or Location, optional
        Store the result there (a Zarr group), checkpoint while iterating,
        resume from a checkpoint of the same job, and return the stored
        result when the same job is already complete.
    storage_options : dict, optional
        fsspec options for URLs (the input and ``out``).
    checkpoint_every : int, optional
        With ``out``: checkpoint every this many iterations (default 10).
    checkpoint_seconds : float, optional
        With ``out``: also checkpoint when this long has passed since the
        last one (default 300).
    resume : bool
        Resume from a checkpoint of the same job at ``out`` (and do nothing
        if that job is complete); False starts over.
    damaged_checkpoints : {"start-over", "stop"}
        When every checkpoint of the job at ``out`` is damaged (each skipped
        with a warning naming it): start over (default), or stop with
        :class:`~dmf.errors.DamagedCheckpoint` (exit 2), changing nothing.
    progress : bool, optional
        Progress on stderr (default: when stderr is a terminal).
    callback : callable, optional
        ``callback(iteration, state, stats)`` after every iteration; returning
        True ends the fit there, finished and stored as at ``max_iter``.
    cache : {"auto", True, False}
        Keep X in cluster memory between passes: when it fits (``"auto"``),
        always, or never.

    Examples
    --------
    One object for every run of a script, validated once:

    >>> import numpy as np, dmf
    >>> X = np.random.default_rng(0).random((40, 12))
    >>> run = dmf.RunOptions(out="memory://doc/runopts.zarr", checkpoint_every=5,
    ...                      progress=False)
    >>> dmf.nmf(X, 3, max_iter=20, tol=0, seed=0, options=run).n_iter
    20
    >>> dmf.RunOptions(checkpoint_every=0)
    Traceback (most recent call last):
    ...
    dmf.errors.InputError: checkpoint_every must be an integer >= 1, got 0
    """

    out: str | os.PathLike | Any | None = None
    storage_options: dict[str, Any] | None = None
    checkpoint_every: int | None = None
    checkpoint_seconds: float | None = None
    resume: bool = True
    damaged_checkpoints: str = "start-over"
    progress: bool | None = None
    callback: Callable[..., Any] | None = None
    cache: bool | str = "auto"

    def __post_init__(self) -> None:
        every, seconds = self.checkpoint_every, self.checkpoint_seconds
        if every is not None and not (_integer(every) and every >= 1):
            raise InputError(f"checkpoint_every must be an integer >= 1, got {every!r}")
        if seconds is not None and not (_number(seconds) and seconds > 0):  # False for NaN
            raise InputError(f"checkpoint_seconds must be a number > 0, got {seconds!r}")
        check_damaged_choice(self.damaged_checkpoints)
        if self.cache not in CACHE_CHOICES:
            raise InputError(f"cache must be True, False or 'auto', got {self.cache!r}")
        if self.storage_options is not None and not isinstance(self.storage_options, Mapping):
            raise InputError(f"storage_options must be a dict, got {self.storage_options!r}")
        if self.callback is not None and not callable(self.callback):
            raise InputError(f"callback must be callable, got {self.callback!r}")

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not f.default and getattr(self, f.name) != f.default}

    def refuse(self, names: tuple[str, ...], where: str) -> RunOptions:
        """Self, or InputError if one of ``names`` (options ``where`` cannot
        honour) is set."""
        bad = [name for name in names if name in self.changed()]
        if bad:
            raise InputError(f"{where} does not take the run option {bad[0]}="
                             f"{getattr(self, bad[0])!r}")
        return self


#: The option names, in their documented order.
NAMES = tuple(f.name for f in dataclasses.fields(RunOptions))


class RunKeywords(TypedDict, total=False):
    """The run options as keywords (``**run_keywords`` of the public
    functions): the fields of :class:`RunOptions`, for type checkers and
    editors."""

    out: str | os.PathLike | None
    storage_options: dict[str, Any] | None
    checkpoint_every: int | None
    checkpoint_seconds: float | None
    resume: bool
    damaged_checkpoints: str
    progress: bool | None
    callback: Callable[..., Any] | None
    cache: bool | str


def run_options(options: RunOptions | None, keywords: Mapping[str, Any], where: str
                ) -> RunOptions:
    """The run options of a call to ``where`` (a function's name): ``options``,
    or the run-option ``keywords`` it was given, never both.

    An unknown keyword is the TypeError Python gives for one; a keyword given
    beside ``options`` is a TypeError naming it.
    """
    unknown = [name for name in keywords if name not in NAMES]
    if unknown:
        raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}")
    if options is None:
        return RunOptions(**keywords)
    if not isinstance(options, RunOptions):
        raise TypeError(f"{where}(): options must be a dmf.RunOptions, got "
                        f"{type(options).__name__}")
    if keywords:
        raise TypeError(f"{where}() got run options both in options= and as keywords "
                        f"({', '.join(keywords)}): pass them one way")
    return options


__all__ = ["DAMAGED_CHOICES", "NAMES", "RunKeywords", "RunOptions", "check_damaged_choice",
           "run_options"]
