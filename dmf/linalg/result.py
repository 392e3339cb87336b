"""The result of :func:`dmf.svd`: :class:`SVDResult` (also ``dmf.SVDResult``
and ``dmf.results.SVDResult``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dmf.engine.driver import RunResult
from dmf.engine.fitted import FittedRun


@dataclass
class SVDResult(FittedRun):
    """A truncated SVD, X ~ U diag(S) Vt.

    Attributes
    ----------
    U : dask.array.Array or None
        m x k left singular vectors (lazy; orthonormal columns).
    S : numpy.ndarray
        k singular values, descending; exact zeros for a rank-deficient X.
    Vt : numpy.ndarray
        k x n right singular vectors; each row's largest-magnitude entry is
        positive.
    method : str
    n_iter : int
        Steps of the iterative part (one pass over X each).
    loss_history : list of float
        Per step, what the method measures: for ``power`` the eigen-residual
        of the component being computed, for ``randomized`` and ``eigh`` the
        largest relative change of the top-k estimates.
    converged : bool
    location : str or None
        Where the result is stored, if it is.
    attrs : dict
        Everything else recorded (parameters, timings, fingerprint, and the
        method's own facts: ``error_estimate``, ``eigenvalues``...).

    Examples
    --------
    >>> import numpy as np, dmf
    >>> r = dmf.svd(np.diag([3.0, 2.0, 1.0]), 2, seed=0)
    >>> r.S.round(6).tolist(), r.U.shape, r.Vt.shape
    ([3.0, 2.0], (3, 2), (2, 3))
    """

    U: Any
    S: np.ndarray
    Vt: np.ndarray
    method: str

    @property
    def explained_variance_(self) -> np.ndarray:
        """Variance of each column of X V = U S, as in scikit-learn's
        TruncatedSVD (X not centred)."""
        return np.asarray(self.attrs["explained_variance"])

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        """``explained_variance_`` over the summed variances of X's columns."""
        return np.asarray(self.attrs["explained_variance_ratio"])

    @property
    def eigenvalues(self) -> np.ndarray:
        """``method="eigh"``: the eigenvalues, with their signs (S holds
        their magnitudes; X = U diag(eigenvalues) U^T)."""
        if "eigenvalues" not in self.attrs:
            raise AttributeError("eigenvalues: only method='eigh' computes them")
        return np.asarray(self.attrs["eigenvalues"])

    @property
    def error_estimate(self) -> float:
        """``method="sketch"``: estimated ||X - U S Vt||_F (Tropp et al.'s
        test sketch); ``attrs["relative_error_estimate"]`` divides it by
        ||X||_F."""
        if "error_estimate" not in self.attrs:
            raise AttributeError("error_estimate: only method='sketch' estimates its error")
        return float(self.attrs["error_estimate"])

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], method: str, facts: dict[str, Any]
                    ) -> SVDResult:
        """The result of a run's or a store's arrays and facts
        (:meth:`FittedRun.run_facts`, :meth:`FittedRun.stored_facts`)."""
        return cls(U=arrays.get("U"), S=np.asarray(arrays["S"]), Vt=np.asarray(arrays["Vt"]),
                   method=method, **facts)

    @classmethod
    def from_run(cls, run: RunResult, method: str) -> SVDResult:
        return cls.from_arrays(run.arrays, method, cls.run_facts(run))
