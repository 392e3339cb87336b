"""Result objects, and ``dmf.load`` to get one back from its store."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dmf.engine.driver import RunResult
from dmf.engine.output import read_result_arrays
from dmf.errors import InputError
from dmf.store.dense import dmf_attrs
from dmf.store.location import Location

if TYPE_CHECKING:
    from dmf.cf.knn import ItemKNN
    from dmf.cf.model import LatentFactors


@dataclass
class SVDResult:
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
    n_iter: int = 0
    loss_history: list[float] = field(default_factory=list)
    converged: bool = True
    location: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

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
    def from_run(cls, run: RunResult, method: str) -> SVDResult:
        a = run.arrays
        attrs = run.attrs()
        return cls(U=a.get("U"), S=np.asarray(a["S"]), Vt=np.asarray(a["Vt"]), method=method,
                   n_iter=run.n_iter, loss_history=run.loss_history, converged=run.converged,
                   location=run.url, attrs=attrs)


@dataclass
class NMFResult:
    """A non-negative factorization, X ~ W H.

    Attributes
    ----------
    W : dask.array.Array
        m x k, non-negative (lazy).
    H : numpy.ndarray
        k x n, non-negative.
    loss : float or str
        The beta of the divergence minimized (2 Frobenius, 1 KL, 0 IS), or
        "l1".
    n_iter : int
        Iterations that made the returned factors (as scikit-learn's
        ``n_iter_``; mu stopped by ``tol`` read X once more, to measure them).
    loss_history : list of float
        Entry t: the penalized objective after t iterations (entry 0: at the
        start); the returned factors' objective is ``attrs["final_objective"]``.
    converged : bool
    location : str or None
    attrs : dict
        Parameters, timings, fingerprint, ``reconstruction_err``.

    Examples
    --------
    >>> import numpy as np, dmf
    >>> X = np.random.default_rng(0).random((20, 6))
    >>> r = dmf.nmf(X, 2, solver="mu", tol=1e-2, seed=0)
    >>> r.W.shape, r.H.shape, bool((r.H >= 0).all())
    ((20, 2), (2, 6), True)
    >>> r.inverse_transform(r.W).shape
    (20, 6)
    """

    W: Any
    H: np.ndarray
    loss: float | str
    n_iter: int = 0
    loss_history: list[float] = field(default_factory=list)
    converged: bool = True
    location: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def reconstruction_err_(self) -> float:
        """sqrt(2 D_beta(X | W H)) of the returned factors, as scikit-learn
        defines it (the Frobenius norm of X - WH for beta = 2)."""
        return float(self.attrs["reconstruction_err"])

    def transform(self, X, **options) -> Any:
        """W for new rows X (m' x n) with H fixed, as scikit-learn's
        ``NMF.transform``: the same loss, solver and regularization, fitted
        out of core (one read of X per iteration; ``options`` go to
        :func:`dmf.nmf`, e.g. ``max_iter``, ``tol``, ``out``).

        Examples
        --------
        >>> import numpy as np, dmf
        >>> rng = np.random.default_rng(0)
        >>> X = rng.random((80, 3)) @ rng.random((3, 20))
        >>> r = dmf.nmf(X, 3, max_iter=200, tol=1e-4, seed=0)
        >>> W = r.transform(X[:10]).compute()
        >>> bool(np.abs(W @ r.H - X[:10]).max() < 0.05)
        True
        """
        from dmf.nmf.api import nmf

        p = self.attrs["parameters"]
        settings = {"loss": self.loss, "solver": self.attrs["solver"], "alpha_W": p["alpha_W"],
                    "alpha_H": p["alpha_H"], "l1_ratio": p["l1_ratio"], "tol": p["tol"],
                    "max_iter": p["max_iter"], **options}
        if "hals_sweeps" in p:
            settings.setdefault("hals_sweeps", p["hals_sweeps"])
        return nmf(X, self.H.shape[0], H=self.H, update_H=False, **settings).W

    def inverse_transform(self, W) -> Any:
        """W H (lazy, m x n): data back from its components."""
        import dask.array as da

        W = W if isinstance(W, da.Array) else da.asarray(W)
        return W @ da.from_array(self.H, chunks=-1)

    @classmethod
    def from_run(cls, run: RunResult) -> NMFResult:
        attrs = run.attrs()
        return cls(W=run.arrays["W"], H=np.asarray(run.arrays["H"]),
                   loss=_loss_of(attrs["beta"]),
                   n_iter=int(attrs.get("factors_after", run.n_iter)),
                   loss_history=run.loss_history, converged=run.converged,
                   location=run.url, attrs=attrs)


@dataclass
class NMTFResult:
    """A non-negative tri-factorization, X ~ W S H (:func:`dmf.nmtf`).

    Attributes
    ----------
    W : dask.array.Array
        m x k1, non-negative (lazy): row clusters.
    S : numpy.ndarray
        k1 x k2, non-negative: how row and column clusters interact.
    H : numpy.ndarray
        k2 x n, non-negative: column clusters.
    loss : float
        The beta of the divergence minimized (2 Frobenius, 1 KL).
    n_iter : int
        Iterations that made the returned factors.
    loss_history : list of float
        Entry t: the objective after t iterations (entry 0: at the start).
    converged : bool
    location : str or None
    attrs : dict
        Parameters, timings, fingerprint, ``reconstruction_err``, and with
        ``orthogonal=`` the ``orthogonality_error`` of the returned factors
        and its ``orthogonality_history`` (one entry per iteration).

    Examples
    --------
    >>> import numpy as np, dmf
    >>> X = np.random.default_rng(0).random((20, 6))
    >>> r = dmf.nmtf(X, 3, 2, tol=1e-2, seed=0)
    >>> r.W.shape, r.S.shape, r.H.shape
    ((20, 3), (3, 2), (2, 6))
    """

    W: Any
    S: np.ndarray
    H: np.ndarray
    loss: float
    n_iter: int = 0
    loss_history: list[float] = field(default_factory=list)
    converged: bool = True
    location: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def reconstruction_err_(self) -> float:
        """sqrt(2 D_beta(X | W S H)) of the returned factors (||X - W S H||_F
        for the Frobenius loss)."""
        return float(self.attrs["reconstruction_err"])

    @classmethod
    def from_run(cls, run: RunResult) -> NMTFResult:
        attrs = run.attrs()
        return cls(W=run.arrays["W"], S=np.asarray(run.arrays["S"]),
                   H=np.asarray(run.arrays["H"]), loss=float(attrs["beta"]),
                   n_iter=int(attrs.get("factors_after", run.n_iter)),
                   loss_history=run.loss_history, converged=run.converged,
                   location=run.url, attrs=attrs)


def _loss_of(beta) -> float | str:
    return beta if isinstance(beta, str) else float(beta)


def load(url: str | os.PathLike, *, storage_options: dict | None = None
         ) -> SVDResult | NMFResult | NMTFResult | LatentFactors | ItemKNN:
    """The result stored at ``url`` (written with ``out=`` or by the CLI).

    Examples
    --------
    >>> import numpy as np, dmf
    >>> X = np.diag([3.0, 2.0, 1.0])
    >>> _ = dmf.svd(X, 2, method="power", out="memory://doc/r.zarr", seed=0)
    >>> dmf.load("memory://doc/r.zarr").S.round(6).tolist()
    [3.0, 2.0]
    """
    location = Location.parse(url, storage_options)
    meta = dmf_attrs(location.open_node())
    if meta.get("kind") != "result":
        raise InputError(f"{location}: not a dmf result (kind {meta.get('kind')!r})")
    if meta.get("status") != "complete":
        raise InputError(f"{location}: the job is still running or was interrupted "
                         f"(status {meta.get('status')!r}); rerun it to finish")
    algorithm = meta.get("algorithm", "")
    arrays = read_result_arrays(location, meta)
    common = {"n_iter": int(meta.get("n_iter", 0)),
              "loss_history": list(meta.get("loss_history", [])),
              "converged": bool(meta.get("converged", True)), "location": str(location),
              "attrs": meta}
    if algorithm.startswith("svd-"):
        return SVDResult(U=arrays.get("U"), S=np.asarray(arrays["S"]),
                         Vt=np.asarray(arrays["Vt"]), method=algorithm[4:], **common)
    if algorithm.startswith("nmf-"):
        common["n_iter"] = int(meta.get("factors_after", common["n_iter"]))
        return NMFResult(W=arrays["W"], H=np.asarray(arrays["H"]), loss=_loss_of(meta["beta"]),
                         **common)
    if algorithm.startswith("nmtf-"):
        common["n_iter"] = int(meta.get("factors_after", common["n_iter"]))
        return NMTFResult(W=arrays["W"], S=np.asarray(arrays["S"]), H=np.asarray(arrays["H"]),
                          loss=float(meta["beta"]), **common)
    if algorithm.startswith("rank-"):
        from dmf.rank import _from_meta

        return _from_meta(location, meta, arrays)
    if algorithm in ("cf-knn", "cf-user-knn"):
        from dmf.cf.knn_store import load_knn

        return load_knn(location, meta)
    if algorithm.startswith("cf-"):
        from dmf.cf.model import LatentFactors

        return LatentFactors.from_arrays(arrays, meta, location=str(location))
    raise InputError(f"{location}: results of {algorithm!r} cannot be loaded by this "
                     "version of dmf")
