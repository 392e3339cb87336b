"""scikit-learn-style classes over :func:`dmf.nmf` and :func:`dmf.svd`.

:class:`NMF` and :class:`TruncatedSVD` follow scikit-learn's estimator
conventions (the constructor only stores its parameters; ``fit``,
``transform``, ``fit_transform``, ``inverse_transform``; fitted attributes end
in ``_``; ``get_params`` / ``set_params``, so ``sklearn.base.clone``,
``Pipeline`` and ``GridSearchCV`` work; :mod:`dmf.params`), with
scikit-learn's parameter names and defaults where dmf has the feature. Each
class's ``_parameter_constraints`` table is checked once at the start of
``fit``: a bad value is an InputError naming the parameter. They sit over
the functions as scikit-learn's ``NMF`` sits over
``non_negative_factorization``: the work is done out of core by
:func:`dmf.nmf` and :func:`dmf.svd`.

scikit-learn is not needed to use them (it is imported only when scikit-learn
itself asks for the estimator's tags).

What they take and give back: X may be a numpy array, a scipy.sparse matrix,
a dask array, a Zarr array or the URL of a dmf store. In-memory input (numpy,
scipy.sparse, lists) gives numpy output; out-of-core input (dask, Zarr, URL)
gives a dask array, computed only when asked for.
"""

from __future__ import annotations

import os
from numbers import Integral, Real
from typing import Any, ClassVar

import dask.array as da
import numpy as np
import scipy.sparse

from dmf.engine.options import RunOptions, run_options
from dmf.errors import InputError, NotFittedError, not_fitted
from dmf.linalg.randomized import NORMALIZERS
from dmf.linalg.svd import METHODS, svd
from dmf.nmf.api import nmf
from dmf.nmf.init import INITS
from dmf.params import Estimator, Interval, Options
from dmf.sklearn_output import SetOutputMixin
from dmf.store.api import as_matrix, open_matrix
from dmf.store.sparse_format import is_sparse_dask
from dmf.store.validate import check_shape
from dmf.validation import (
    check_n_features,
    check_non_negative,
    is_out_of_core,
    run_option_constraints,
    small_input_scheduler,
    transformer_tags,
    validated_array,
)

__all__ = ["NMF", "NotFittedError", "TruncatedSVD"]


def _seed(random_state) -> int | None:
    """scikit-learn's ``random_state`` (None, an int, a RandomState or a
    Generator: checked by the constraints table) as dmf's integer ``seed``."""
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    return None if random_state is None else int(random_state)


def _n_components(k: int, shape) -> int:
    """``k`` (an int >= 1: checked by the constraints table) checked against
    the data's shape."""
    m, n = shape
    if k > min(m, n):
        raise InputError(f"n_components={k} must be at most min(n_samples, n_features) "
                         f"(n_samples = {m}, n_features = {n})")
    return int(k)


class _Estimator(Estimator, SetOutputMixin):
    """scikit-learn's parameter protocol (:class:`dmf.params.Estimator`),
    output API (``set_output``) and notebook display, written without
    scikit-learn."""

    #: Tags that differ from a transformer's defaults (see ``__sklearn_tags__``).
    _positive_only = False
    #: The run options the constructor takes one by one (``options`` takes them all).
    _run_keywords: tuple[str, ...] = ("out", "storage_options")

    def _given_run_keywords(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._run_keywords
                if getattr(self, name) is not None}

    def _run_options(self) -> RunOptions:
        """The run options: ``options``, or the ones given one by one."""
        return run_options(self.options, self._given_run_keywords(), type(self).__name__)

    def __sklearn_tags__(self):
        return transformer_tags(positive_only=self._positive_only,
                                preserves_dtype=["float64", "float32"])

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "components_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise not_fitted(type(self).__name__)

    def _input(self, X, *, reset: bool):
        """(X for dmf, whether it is in memory); checks the number of
        features against the fit when ``reset`` is False."""
        name = type(self).__name__
        if is_out_of_core(X):
            X_dmf, in_mem = X, False
            if isinstance(X, da.Array):
                check_shape(X.shape, name)
            # a URL: its shape from the store's metadata, without reading X
            shape = open_matrix(X, storage_options=self._run_options().storage_options).shape \
                if isinstance(X, (str, os.PathLike)) else X.shape
        else:
            X_dmf, in_mem = validated_array(X, name), True
            shape = X_dmf.shape
            if self._positive_only:
                check_non_negative(X_dmf, name)
        if len(shape) != 2:
            raise InputError(f"{name}: expected a 2-D matrix, got shape {tuple(shape)}")
        if reset:
            for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
                delattr(self, attr)
        else:
            check_n_features(shape[1], self.n_features_in_, name)
        return X_dmf, in_mem, shape

    def _output(self, Y, in_memory: bool):
        if in_memory:
            return np.asarray(Y.compute() if isinstance(Y, da.Array) else Y)
        return Y if isinstance(Y, da.Array) else da.from_array(np.asarray(Y))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:  # noqa: ARG002
        """Output names, scikit-learn style: ``nmf0``, ``nmf1``... or
        ``truncatedsvd0``..."""
        self._check_fitted()
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.components_.shape[0])],
                          dtype=object)


class NMF(_Estimator):
    """Non-negative matrix factorization X ~ W H, as scikit-learn's ``NMF``,
    computed out of core by :func:`dmf.nmf`.

    ``fit`` finds H (``components_``, k x n_features); ``transform`` finds W
    for rows of X with H fixed.

    Parameters
    ----------
    n_components : int or "auto"
        k. "auto": the shape of ``W`` or ``H`` when ``init="custom"``, else
        n_features as in scikit-learn, but at most n_samples (dmf needs
        k <= min(n_samples, n_features)).
    init : {None, "random", "nndsvd", "nndsvda", "nndsvdar", "custom"}
        As scikit-learn (None: "nndsvda"; "custom": the ``W`` and ``H``
        given to ``fit``).
    solver : {"cd", "mu"}
        "cd": coordinate descent (dmf's "hals"), Frobenius loss only;
        "mu": multiplicative updates, any ``beta_loss``. dmf's names
        "hals" and "auto" are accepted too.
    beta_loss : float or {"frobenius", "kullback-leibler", "itakura-saito"}
        The beta-divergence minimized (dmf's short names "kl", "is" and its
        "l1" loss work too).
    tol, max_iter :
        Stopping rule, as scikit-learn (tol = 0: exactly ``max_iter``
        iterations).
    random_state : int, RandomState, Generator or None
        dmf's ``seed``: the same int gives bitwise the same factors.
    alpha_W, alpha_H, l1_ratio : float
        Regularization, scikit-learn's meaning and scaling
        (``alpha_H="same"``: alpha_W).
    verbose : int
        Progress on stderr when > 0.
    out : str, optional
        dmf extra: store the fitted result (W, H) there, checkpointing while
        iterating; refitting the same data resumes or returns it.
    storage_options : dict, optional
        dmf extra: fsspec options for URLs (``X`` and ``out``).
    checkpoint_every : int, optional
        dmf extra: checkpoint every this many iterations with ``out``.
    hals_sweeps : "auto" or int
        dmf extra, for "cd": coordinate-descent sweeps per factor and
        iteration; 1 gives scikit-learn's iterates, "auto" (default)
        Gillis and Glineur's accelerated rule (see :func:`dmf.nmf`).
    options : dmf.RunOptions, optional
        dmf extra: every run option of the fit in one object (``out``,
        checkpoints, resume, progress, a callback, caching), instead of
        ``out``, ``storage_options``, ``checkpoint_every`` and ``verbose``;
        ``transform`` uses its storage options and progress only.

    Attributes
    ----------
    components_ : numpy.ndarray
        H, n_components x n_features.
    n_components_ : int
    reconstruction_err_ : float
        sqrt(2 D_beta(X | W H)) of the fit (the Frobenius norm of X - WH
        for the Frobenius loss).
    n_iter_ : int
    n_features_in_ : int
    result_ : dmf.NMFResult
        The result of :func:`dmf.nmf` (W lazy, loss history, timings).

    Notes
    -----
    ``transform``, ``fit_transform`` and ``inverse_transform`` return numpy
    arrays for numpy or scipy.sparse input and dask arrays (lazy) for dask,
    Zarr or URL input. X must be non-negative (an InputError, a ValueError,
    otherwise) and finite.

    Examples
    --------
    >>> import numpy as np, dmf
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((30, 2)) @ rng.random((2, 8))
    >>> model = dmf.NMF(n_components=2, init="random", tol=1e-3, random_state=0)
    >>> W = model.fit_transform(X)
    >>> W.shape, model.components_.shape, model.n_features_in_
    ((30, 2), (2, 8), 8)
    >>> bool(model.reconstruction_err_ < 1e-2 * np.linalg.norm(X))
    True
    >>> bool(np.abs(model.inverse_transform(model.transform(X[:5])) - X[:5]).max() < 0.05)
    True
    """

    _positive_only = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_components": [Interval(Integral, 1, None), Options("auto")],
        "init": [Options(*INITS), None],
        "solver": [Options("cd", "mu", "hals", "auto")],
        "beta_loss": [str, Interval(Real, None, None)],  # the name: checked by dmf.nmf
        "tol": [Interval(Real, 0, None)],
        "max_iter": [Interval(Integral, 1, None)],
        "random_state": ["random_state", None],
        "alpha_W": [Interval(Real, 0, None)],
        "alpha_H": [Interval(Real, 0, None), Options("same")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "verbose": [Interval(Integral, 0, None), "boolean"],
        "hals_sweeps": [Options("auto"), Interval(Integral, 1, None)],
        **run_option_constraints("out", "storage_options", "checkpoint_every", "options"),
    }

    def __init__(self, n_components="auto", *, init=None, solver="cd", beta_loss="frobenius",
                 tol=1e-4, max_iter=200, random_state=None, alpha_W=0.0, alpha_H="same",
                 l1_ratio=0.0, verbose=0, out=None, storage_options=None,
                 checkpoint_every=None, hals_sweeps="auto", options=None):
        self.n_components = n_components
        self.init = init
        self.solver = solver
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.verbose = verbose
        self.out = out
        self.storage_options = storage_options
        self.checkpoint_every = checkpoint_every
        self.hals_sweeps = hals_sweeps
        self.options = options

    _run_keywords = ("out", "storage_options", "checkpoint_every")

    def _given_run_keywords(self) -> dict[str, Any]:
        given = super()._given_run_keywords()
        if self.verbose or self.options is None:  # scikit-learn's verbose: dmf's progress
            given["progress"] = bool(self.verbose)
        return given

    def _settings(self) -> dict[str, Any]:
        solver = "hals" if self.solver == "cd" else self.solver  # scikit-learn's name
        return {"loss": self.beta_loss, "solver": solver, "alpha_W": self.alpha_W,
                "alpha_H": self.alpha_H, "l1_ratio": self.l1_ratio, "tol": self.tol,
                "max_iter": self.max_iter, "hals_sweeps": self.hals_sweeps}

    def fit(self, X, y=None, W=None, H=None):  # noqa: ARG002
        """Fit H (``components_``) to X; returns the estimator.

        Parameters
        ----------
        X : array-like, scipy.sparse, dask or Zarr array, or URL
            n_samples x n_features, non-negative.
        y : ignored
        W, H : array-like, optional
            The starting factors of ``init="custom"``.
        """
        self.fit_transform(X, W=W, H=H)
        return self

    def fit_transform(self, X, y=None, W=None, H=None):  # noqa: ARG002
        """Fit to X and return W (n_samples x n_components): numpy for
        in-memory X, a dask array for dask, Zarr or URL X."""
        self._validate_params()
        X, in_memory, shape = self._input(X, reset=True)
        k = self.n_components
        if k == "auto":
            k = (H.shape[0] if H is not None else W.shape[1] if W is not None
                 else min(shape))
        k = _n_components(k, shape)
        init = "auto" if self.init is None else self.init
        with small_input_scheduler(X, in_memory):
            result = nmf(X, k, init=init, seed=_seed(self.random_state), W=W, H=H,
                         options=self._run_options(), **self._settings())
            W_fit = self._output(result.W, in_memory)
        self.result_ = result
        self.components_ = result.H
        self.n_components_ = k
        self.reconstruction_err_ = result.reconstruction_err_
        self.n_iter_ = result.n_iter
        self.n_features_in_ = shape[1]
        return W_fit

    def transform(self, X):
        """W for the rows of X with H = ``components_`` fixed (numpy for
        in-memory X, a dask array for dask, Zarr or URL X)."""
        self._check_fitted()
        X, in_memory, _ = self._input(X, reset=False)
        settings = self._settings()
        settings["solver"] = self.result_.attrs.get("solver", settings["solver"])
        fit = self._run_options()  # W for new rows is not the fit: nothing stored
        options = RunOptions(storage_options=fit.storage_options, progress=fit.progress,
                             cache=fit.cache)
        with small_input_scheduler(X, in_memory):
            W = nmf(X, self.n_components_, H=self.components_, update_H=False,
                    options=options, **settings).W
            return self._output(W, in_memory)

    def inverse_transform(self, X):
        """W H: data back from its components (X: W, n_samples x
        n_components; numpy in, numpy out; dask in, dask out)."""
        self._check_fitted()
        if isinstance(X, da.Array):
            return X @ da.from_array(self.components_, chunks=-1)
        W = X.toarray() if scipy.sparse.issparse(X) else np.asarray(X)
        return W @ self.components_


def _explained_variance(result, XV, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``explained_variance_`` (the variances of X V's
    columns) and its ratio to the summed variances of X's columns (taken by
    the solver in its first pass). The solver's own values are those of
    U S, which equals X V only for an exact method; otherwise X V's are
    computed (from XV itself in memory, one more pass out of core)."""
    total = result.attrs.get("total_variance")
    if total is None:  # a result stored before dmf recorded it
        known = result.explained_variance_ratio_ > 0
        total = (result.explained_variance_[known][0] / result.explained_variance_ratio_[known][0]
                 if known.any() else 0.0)
    total = float(total)
    if isinstance(XV, da.Array) and result.method in ("tsqr", "gram"):
        variance = result.explained_variance_
    elif isinstance(XV, da.Array):
        mean, square = da.compute(XV.mean(axis=0, dtype=np.float64),
                                  (XV.astype(np.float64) ** 2).sum(axis=0))
        variance = square / n_samples - mean**2
    else:
        variance = np.var(XV, axis=0, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    ratio = variance / total if total > 0 else np.zeros_like(variance)
    return variance.astype(XV.dtype), ratio.astype(XV.dtype)


class TruncatedSVD(_Estimator):
    """Truncated SVD (latent semantic analysis), as scikit-learn's
    ``TruncatedSVD``, computed out of core by :func:`dmf.svd`. X is not
    centred, so scipy.sparse and out-of-core input stay as they are.

    Parameters
    ----------
    n_components : int
        k, at most min(n_samples, n_features).
    algorithm : {"randomized", "arpack", "sketch", "power", "gram", "tsqr", "auto"}
        dmf's ``method``. "randomized" as scikit-learn; "arpack" (an exact
        solver in scikit-learn) maps onto dmf's exact "tsqr" for a tall X and
        "auto" for a wide one (exact up to min(m, n) = 1000; ARPACK itself is
        not used); the others are dmf's methods (see :func:`dmf.svd`).
    n_iter : int
        Power iterations of "randomized".
    n_oversamples : int
        Extra random directions.
    power_iteration_normalizer : {"auto", "QR", "LU", "none"}
        How the power iterations are re-orthonormalized (dmf's
        ``normalizer``).
    random_state : int, RandomState, Generator or None
        dmf's ``seed``.
    tol : float
        The residual tolerance of ``algorithm="power"`` (0: dmf's default,
        1e-7); unused otherwise.
    out : str, optional
        dmf extra: store the fitted result (U, S, Vt) there.
    storage_options : dict, optional
        dmf extra: fsspec options for URLs.
    options : dmf.RunOptions, optional
        dmf extra: every run option of the fit in one object, instead of
        ``out`` and ``storage_options``.

    Attributes
    ----------
    components_ : numpy.ndarray
        Vt, n_components x n_features (each row's largest-magnitude entry
        positive).
    n_components_ : int
    singular_values_ : numpy.ndarray
    explained_variance_, explained_variance_ratio_ : numpy.ndarray
        As scikit-learn's (variances of the columns of X V, and their share
        of the summed variances of X's columns).
    n_iter_ : int
    n_features_in_ : int
    result_ : dmf.SVDResult

    Notes
    -----
    ``transform`` and ``fit_transform`` (both X Vt^T) and ``inverse_transform``
    return numpy arrays for numpy or scipy.sparse input and dask arrays
    (lazy) for dask, Zarr or URL input.

    Examples
    --------
    >>> import numpy as np, dmf
    >>> A = np.array([[1, 2, 3, 4, 3, 3], [1, 2, 3, 4, 3, 3],
    ...               [3, 3, 3, 1, 4, 5], [3, 3, 3, 1, 4, 5]], dtype=float)
    >>> svd = dmf.TruncatedSVD(n_components=2, random_state=0).fit(A)
    >>> svd.singular_values_.round(2).tolist()
    [14.74, 4.1]
    >>> Z = svd.transform(A)
    >>> Z.shape
    (4, 2)
    >>> bool(np.allclose(svd.inverse_transform(Z), A))
    True
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_components": [Interval(Integral, 1, None)],
        "algorithm": [Options("arpack", *METHODS)],
        "n_iter": [Interval(Integral, 0, None), Options("auto")],
        "n_oversamples": [Interval(Integral, 0, None)],
        "power_iteration_normalizer": [Options(*NORMALIZERS)],
        "random_state": ["random_state", None],
        "tol": [Interval(Real, 0, None)],
        **run_option_constraints("out", "storage_options", "options"),
    }

    def __init__(self, n_components=2, *, algorithm="randomized", n_iter=5, n_oversamples=10,
                 power_iteration_normalizer="auto", random_state=None, tol=0.0, out=None,
                 storage_options=None, options=None):
        self.n_components = n_components
        self.algorithm = algorithm
        self.n_iter = n_iter
        self.n_oversamples = n_oversamples
        self.power_iteration_normalizer = power_iteration_normalizer
        self.random_state = random_state
        self.tol = tol
        self.out = out
        self.storage_options = storage_options
        self.options = options

    def fit(self, X, y=None):  # noqa: ARG002
        """Fit the top ``n_components`` singular triplets of X; returns the
        estimator."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):  # noqa: ARG002
        """Fit and return X V (= ``transform(X)``, scikit-learn's contract:
        not U S, which differs from it by the approximation error of an
        inexact method): numpy for in-memory X, a dask array for dask, Zarr
        or URL X."""
        self._validate_params()
        X, in_memory, shape = self._input(X, reset=True)
        k = _n_components(self.n_components, shape)
        run = self._run_options()
        method = self.algorithm
        if method == "arpack":  # exact: tsqr (dense) or gram (sparse) on a tall X
            sparse = (scipy.sparse.issparse(X) if in_memory else
                      is_sparse_dask(as_matrix(X, storage_options=run.storage_options)))
            method = ("gram" if sparse else "tsqr") if shape[0] >= shape[1] else "auto"
        options: dict[str, Any] = {}
        if method == "power" and self.tol:
            options["tol"] = self.tol
        with small_input_scheduler(X, in_memory):
            result = svd(X, k, method=method, n_iter=self.n_iter,
                         n_oversamples=self.n_oversamples,
                         normalizer=self.power_iteration_normalizer,
                         seed=_seed(self.random_state), options=run, **options)
            self.components_ = result.Vt
            self.n_features_in_ = shape[1]
            XV = self._project(X, in_memory)
            variance = _explained_variance(result, XV, shape[0])
        self.result_ = result
        self.n_components_ = k
        self.singular_values_ = result.S
        self.explained_variance_, self.explained_variance_ratio_ = variance
        self.n_iter_ = result.n_iter
        return XV

    def transform(self, X):
        """X V (= X ``components_``^T): numpy for in-memory X, a dask
        array for dask, Zarr or URL X."""
        self._check_fitted()
        X, in_memory, _ = self._input(X, reset=False)
        return self._project(X, in_memory)

    def _project(self, X, in_memory: bool):
        """X V for X as :meth:`_input` gives it (no output wrapping: both
        ``transform`` and ``fit_transform`` wrap their own result)."""
        Vt = self.components_
        if in_memory:
            return np.asarray(X @ Vt.T.astype(X.dtype, copy=False))
        X = as_matrix(X, storage_options=self._run_options().storage_options)
        return X @ da.from_array(Vt.T.astype(X.dtype, copy=False), chunks=-1)

    def inverse_transform(self, X):
        """Z Vt: data back from its projection (numpy in, numpy out; dask
        in, dask out)."""
        self._check_fitted()
        if isinstance(X, da.Array):
            return X @ da.from_array(self.components_, chunks=-1)
        Z = X.toarray() if scipy.sparse.issparse(X) else np.asarray(X)
        return Z @ self.components_
