"""Exception and warning types raised by dmf.

Each exception maps to one CLI exit code (see ``EXIT_CODES``): the CLI prints
the message on one line, without a traceback, and exits with that code.
Messages name the file or URL at fault and say how to fix the input.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import warnings


class DmfError(Exception):
    """Base class of every error dmf raises on purpose."""

    exit_code = 1


class InputError(DmfError, ValueError):
    """The input is unusable: shape, dtype, NaN/Inf, negative entries for NMF,
    k out of range, an unreadable or malformed file."""

    exit_code = 2


def existing_file(path: str | os.PathLike, kind: str) -> str:
    """``path`` as a string if it names a file; else the InputError that
    says it is missing or a folder, not ``kind`` (e.g. "an audio file").

    Examples
    --------
    >>> existing_file("/", "an audio file")
    Traceback (most recent call last):
    dmf.errors.InputError: /: a folder, not an audio file
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: a folder, not {kind}")
    return path


class NotFittedError(InputError, AttributeError):
    """A method that needs a fit (``transform``, ``predict``) called before
    ``fit``. A ValueError and an AttributeError, as scikit-learn's (and
    scikit-learn's own class too when scikit-learn is in use: see
    :func:`not_fitted`)."""


def not_fitted(name: str) -> NotFittedError:
    """The error of ``name``'s method that needs a fit, called before ``fit``.

    scikit-learn's checks catch ``sklearn.exceptions.NotFittedError`` by its
    class. dmf does not import scikit-learn, but where scikit-learn is
    already imported (by whoever checks or pipelines the estimator) the
    error is of a subclass of both classes, so either ``except`` catches it.

    Examples
    --------
    >>> err = not_fitted("ALS")
    >>> isinstance(err, NotFittedError) and isinstance(err, ValueError)
    True
    >>> str(err)
    'This ALS instance is not fitted yet: call fit with appropriate arguments first'
    """
    message = (f"This {name} instance is not fitted yet: call fit with appropriate "
               "arguments first")
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is None:
        return NotFittedError(message)
    return _with_sklearn(sklearn_exceptions.NotFittedError)(message)


@functools.cache
def _with_sklearn(sklearn_class: type) -> type:
    return type("NotFittedError", (NotFittedError, sklearn_class),
                {"__module__": __name__, "__doc__": NotFittedError.__doc__})


class StoreError(DmfError, OSError):
    """A store is missing, is not a Zarr store, is incomplete or corrupt."""

    exit_code = 2


class DamagedCheckpoint(StoreError):
    """Every checkpoint of a job is damaged (a failed checksum, a missing
    chunk, unreadable metadata, NaN) and the user chose to stop rather than
    start over (``damaged_checkpoints="stop"``, CLI ``--damaged-checkpoints
    stop``). Nothing was changed: the checkpoints are left for inspection."""


class CheckpointMismatch(DmfError):
    """The output holds a checkpoint of a different job."""

    exit_code = 3


class OutputLocked(DmfError):
    """Another job is writing the same output."""

    exit_code = 3


class EnvironmentFailure(DmfError):
    """Not dmf's input nor a bug: a service could not be reached or refused
    access (object store credentials, endpoint or bucket; the Dask
    scheduler), or the disk is full or read-only. The message names the URL,
    address or path and what to check; the data already there is untouched.
    """

    exit_code = 4


class ClusterError(EnvironmentFailure):
    """The Dask scheduler could not be reached or went away, or a computation
    was lost on the cluster.

    The job's last checkpoint is intact; rerunning the command resumes it.
    """


class WorkersLost(ClusterError):
    """The cluster has had no workers for longer than the stated timeout
    (``$DMF_NO_WORKERS_TIMEOUT``): every wait on it was given up. The job's
    last checkpoint is intact."""


class Interrupted(DmfError):
    """SIGINT or SIGTERM arrived; a checkpoint was written before stopping.

    The exit code is 128 + the signal number: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message, signum)
        self.signum = signum
        self.exit_code = 128 + signum

    def __str__(self) -> str:
        return str(self.args[0])


class DmfWarning(UserWarning):
    """Something was changed on the way in (a dtype, a chunking) and the user
    should know."""


class _ConvergenceWarning(DmfWarning):
    """An iterative method stopped at ``max_iter`` before meeting ``tol``.
    A subclass of scikit-learn's ``ConvergenceWarning`` too when
    scikit-learn is installed, so that its filters and checks catch it."""


@functools.cache
def convergence_warning() -> type:
    """dmf's ConvergenceWarning class (``dmf.errors.ConvergenceWarning``):
    a subclass of scikit-learn's as well when scikit-learn is importable.
    Built on first use, so that importing dmf does not import scikit-learn
    (half a second).

    Examples
    --------
    >>> import sklearn.exceptions
    >>> issubclass(convergence_warning(), sklearn.exceptions.ConvergenceWarning)
    True
    >>> issubclass(convergence_warning(), DmfWarning)
    True
    """
    bases: tuple[type, ...] = (_ConvergenceWarning,)
    if importlib.util.find_spec("sklearn") is not None:
        try:
            from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
        except ImportError:  # a broken installation: dmf's own class
            pass
        else:
            bases = (_ConvergenceWarning, SklearnConvergenceWarning)
    return type("ConvergenceWarning", bases,
                {"__module__": __name__, "__doc__": _ConvergenceWarning.__doc__})


def __getattr__(name: str):
    if name == "ConvergenceWarning":
        return convergence_warning()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning issued by the caller of this
    function at the first frame outside dmf: the user's line, however deep
    in dmf the warning was issued (estimator -> function -> engine)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str, category: type[Warning] = DmfWarning) -> None:
    """``warnings.warn`` pointed at the user's line (:func:`user_stacklevel`)."""
    warnings.warn(message, category, stacklevel=user_stacklevel())


__all__ = [
    "CheckpointMismatch",
    "ClusterError",
    "ConvergenceWarning",  # noqa: F822 (module __getattr__: built on first use)
    "DamagedCheckpoint",
    "DmfError",
    "DmfWarning",
    "EnvironmentFailure",
    "InputError",
    "Interrupted",
    "NotFittedError",
    "OutputLocked",
    "StoreError",
    "WorkersLost",
]
