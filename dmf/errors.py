"""Exception and warning types raised by dmf.

Each exception maps to one CLI exit code (see ``EXIT_CODES``): the CLI prints
the message on one line, without a traceback, and exits with that code.
Messages name the file or URL at fault and say how to fix the input.
"""

from __future__ import annotations


class DmfError(Exception):
    """Base class of every error dmf raises on purpose."""

    exit_code = 1


class InputError(DmfError, ValueError):
    """The input is unusable: shape, dtype, NaN/Inf, negative entries for NMF,
    k out of range, an unreadable or malformed file."""

    exit_code = 2


class NotFittedError(InputError, AttributeError):
    """A method that needs a fit (``transform``, ``predict``) called before
    ``fit``. A ValueError and an AttributeError, as scikit-learn's."""


class StoreError(DmfError, OSError):
    """A store is missing, is not a Zarr store, is incomplete or corrupt."""

    exit_code = 2


class CheckpointMismatch(DmfError):
    """The output holds a checkpoint of a different job."""

    exit_code = 3


class OutputLocked(DmfError):
    """Another job is writing the same output."""

    exit_code = 3


class ClusterError(DmfError):
    """The Dask scheduler went away or a computation was lost on the cluster.

    The job's last checkpoint is intact; rerunning the command resumes it.
    """

    exit_code = 1


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


class ConvergenceWarning(DmfWarning):
    """An iterative method stopped at ``max_iter`` before meeting ``tol``
    (scikit-learn's ``ConvergenceWarning`` has the same meaning)."""


__all__ = [
    "CheckpointMismatch",
    "ClusterError",
    "ConvergenceWarning",
    "DmfError",
    "DmfWarning",
    "InputError",
    "Interrupted",
    "NotFittedError",
    "OutputLocked",
    "StoreError",
]
