"""``dmf.nmf``: non-negative matrix factorization X ~ W H, out of core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Unpack

import dask
import dask.array as da
import numpy as np

from dmf.blocks import full_rows
from dmf.engine.cache import cache_input, run_input
from dmf.engine.driver import RunResult, run
from dmf.engine.fitted import FittedRun
from dmf.engine.options import RunKeywords, RunOptions, run_options
from dmf.errors import DmfWarning, InputError, convergence_warning, warn
from dmf.linalg.svd import check_k
from dmf.nmf.beta import beta_of
from dmf.nmf.checks import check_stopping, nonnegative_facts
from dmf.nmf.hals import HALSSolver, check_sweeps
from dmf.nmf.init import (
    INITS,
    check_factor,
    custom_init,
    fixed_h_init,
    nndsvd_init,
    random_init,
)
from dmf.nmf.l1 import L1Solver
from dmf.nmf.mu import MUSolver
from dmf.nmf.orthogonal import check_orthogonal
from dmf.nmf.sparse import SPARSE_BETAS

SOLVERS = ("auto", "mu", "hals")


def regularization(alpha_W: float, alpha_H, l1_ratio: float, shape: tuple[int, int]):
    """(l1_W, l1_H, l2_W, l2_H) scaled as scikit-learn scales them: by
    n_features for W and n_samples for H."""
    alpha_H = alpha_W if alpha_H == "same" else alpha_H
    for label, value in (("alpha_W", alpha_W), ("alpha_H", alpha_H), ("l1_ratio", l1_ratio)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InputError(f"{label} must be a number >= 0, got {value!r}")
    if l1_ratio > 1:
        raise InputError(f"l1_ratio must be between 0 and 1, got {l1_ratio}")
    m, n = shape
    return (n * alpha_W * l1_ratio, m * alpha_H * l1_ratio,
            n * alpha_W * (1 - l1_ratio), m * alpha_H * (1 - l1_ratio))


def nmf(
    X,
    k: int,
    *,
    loss="frobenius",
    solver: str = "auto",
    init: str = "auto",
    alpha_W: float = 0.0,
    alpha_H="same",
    l1_ratio: float = 0.0,
    tol: float = 1e-4,
    max_iter: int = 200,
    seed: int | None = None,
    W=None,
    H=None,
    update_H: bool = True,
    orthogonal: str | None = None,
    hals_sweeps: int | str = "auto",
    options: RunOptions | None = None,
    **run_keywords: Unpack[RunKeywords],
) -> NMFResult:
    """Non-negative factors W (m x k) and H (k x n) with X ~ W H, out of core.

    Minimizes D_beta(X | W H) + alpha_W l1_ratio n |W|_1
    + 0.5 alpha_W (1 - l1_ratio) n ||W||^2 + (the same for H with m), as
    scikit-learn's ``NMF`` does, by HALS coordinate descent (Frobenius; the
    default there) or multiplicative updates (any beta), each reading X once
    per iteration (:mod:`dmf.nmf.hals`, :mod:`dmf.nmf.mu`).

    Parameters
    ----------
    X : URL, zarr.Array, dask or numpy array, or scipy.sparse matrix
        m x n, non-negative (no zeros either when beta <= 0); sparse input
        for the Frobenius and KL losses.
    k : int
        Number of components, 1 <= k <= min(m, n).
    loss : {"frobenius", "kl", "is", "l1"} or float
        The beta-divergence: 2 (Frobenius), 1 (Kullback-Leibler), 0
        (Itakura-Saito) or any beta; outside [1, 2] the updates use Fevotte
        and Idier's exponent so the objective still never increases. "l1":
        sum |X - WH| (robust to outliers), by reweighted multiplicative
        updates (:mod:`dmf.nmf.l1`).
    solver : {"auto", "mu", "hals"}
        "mu": multiplicative updates (:mod:`dmf.nmf.mu`), any beta; "hals":
        coordinate descent (scikit-learn's "cd", :mod:`dmf.nmf.hals`),
        Frobenius only, usually far fewer iterations; "auto": hals for
        Frobenius, else mu.
    init : {"auto", "random", "nndsvd", "nndsvda", "nndsvdar", "custom"}
        As scikit-learn: "random" (|N(0, 1)| sqrt(mean(X) / k)), the NNDSVD
        family (from dmf's out-of-core randomized SVD: its passes over X
        come first; "nndsvda" fills zeros with mean(X), "nndsvdar" with
        small random values, "nndsvd" keeps them and warns with mu, which
        cannot move them), "custom" (the given ``W`` and ``H``). "auto":
        "custom" when W and H are given, else scikit-learn's default
        "nndsvda".
    alpha_W, alpha_H, l1_ratio : float
        Regularization, with scikit-learn's meaning and scaling
        (``alpha_H="same"``: alpha_W).
    tol, max_iter :
        scikit-learn's rules. mu: every 10 iterations, stop when
        sqrt(2 D_beta) fell by less than ``tol`` times its initial value
        since the last check (the same iteration as scikit-learn, one pass
        later). hals: stop when an iteration's
        projected-gradient violation is at most ``tol`` times the first
        one's. tol = 0: run ``max_iter`` iterations.
    seed : int, optional
        Same seed, input and chunks: bitwise the same factors on any number
        of workers and after any number of kill-and-resume cycles.
    W, H : array-like, optional
        The starting factors of ``init="custom"``.
    update_H : bool
        False: H (given) stays fixed and only W is fitted, as scikit-learn's
        ``transform`` does (W starts at sqrt(mean(X) / k) for mu, 0 for
        hals); see :meth:`dmf.NMFResult.transform`.
    orthogonal : {None, "W", "H", "both"}
        Orthogonal NMF (Ding, Li, Peng and Park 2006): updates that drive
        W^T W and/or H H^T to the identity, for hard row / column clusters
        (Frobenius loss, mu solver; see :mod:`dmf.nmf.orthogonal`). The errors
        ||W^T W - I||_F, ||H H^T - I||_F of every iteration are reported
        and stored in ``attrs["orthogonality_history"]``, those of the result
        in ``attrs["orthogonality_error"]``.
        "both" leaves W H no free scale (both factors near orthonormal):
        :func:`dmf.nmtf`, whose S takes the scale, is the bi-orthogonal model.
    hals_sweeps : "auto" or int
        hals: coordinate-descent sweeps over each factor per iteration, all
        with the products of one read of X. 1: scikit-learn's cd (the same
        iterates). "auto" (default): Gillis and Glineur's accelerated HALS,
        up to 1 + n / (2 (k + 1)) sweeps of W (m / (2 (k + 1)) of H), ending
        once a sweep moves the factor by at most a tenth of what the first
        one did: far fewer iterations (reads of X) to the same objective
        (:mod:`dmf.nmf.hals`). Its iterates depend on the row blocks (each
        block's sweeps of W stop by its own rows), never on the workers.
    options : RunOptions, optional
        Where the result is stored, checkpoints, resume, progress, caching
        and a callback (:class:`dmf.RunOptions`; the callback's
        ``stats.loss`` is the objective of the factors that entered the
        iteration, so returning True can end the fit at a target objective).
    **run_keywords
        The same options as keywords (``out=``, ``storage_options=``,
        ``checkpoint_every=``, ``checkpoint_seconds=``, ``resume=``,
        ``damaged_checkpoints=``, ``progress=``, ``callback=``, ``cache=``),
        instead of ``options``, never beside it.

    Returns
    -------
    NMFResult
        ``W`` (lazy, m x k), ``H`` (k x n), in X's dtype; ``loss_history``
        (entry t: the objective after t iterations), ``reconstruction_err_``
        (sqrt(2 D_beta) of the returned factors, scikit-learn's definition).

    Examples
    --------
    >>> import numpy as np, dmf
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((60, 4)) @ rng.random((4, 30))
    >>> r = dmf.nmf(X, 4, loss="kl", max_iter=100, tol=0, seed=0)
    >>> bool((r.H >= 0).all() and (r.W.compute() >= 0).all())
    True
    >>> h = r.loss_history
    >>> all(b <= a * (1 + 1e-12) for a, b in zip(h, h[1:]))   # never increases
    True
    >>> bool(r.reconstruction_err_ < 0.05 * np.sqrt((X ** 2).sum()))
    True
    """
    is_l1 = isinstance(loss, str) and loss.lower() == "l1"
    beta = 1.0 if is_l1 else beta_of(loss)  # l1: zeros allowed, as for beta > 0
    for what, value, known in (("solver", solver, SOLVERS), ("init", init, INITS)):
        if value not in known:
            raise InputError(f"unknown NMF {what} {value!r}; available: {', '.join(known)}")
    max_iter, tol = check_stopping(max_iter, tol)
    opts = run_options(options, run_keywords, "nmf")
    X, cache, token, name = run_input(X, opts)
    _check_sparse_loss(X, name, loss, sparse_ok=not is_l1 and beta in SPARSE_BETAS)
    k = check_k(k, X.shape)
    reg = regularization(alpha_W, alpha_H, l1_ratio, X.shape)
    X = full_rows(cache_input(X, cache))
    facts = nonnegative_facts(X, name, zeros_allowed=beta > 0)
    if init == "auto" and update_H:  # scikit-learn's default, or the factors given
        init = "custom" if W is not None or H is not None else "nndsvda"
    solver, orthogonal, hals_sweeps = _choose_solver(solver, beta, is_l1=is_l1,
                                                     orthogonal=orthogonal,
                                                     hals_sweeps=hals_sweeps)
    params: dict[str, Any] = {"init": init, "regularization": list(reg),
                              "alpha_W": alpha_W, "alpha_H": alpha_H, "l1_ratio": l1_ratio,
                              "max_iter": max_iter, "tol": tol}
    if solver == "hals":
        params["hals_sweeps"] = hals_sweeps
    start, identity = _start(init, W, H, update_H=update_H, k=k, shape=X.shape,
                             mean=facts["mean"], solver=solver)
    if is_l1 and not update_H:
        raise InputError("update_H=False is not available for the l1 loss yet")
    solver_obj = _solver(k, solver="l1" if is_l1 else solver, beta=beta, regularization=reg,
                         init=start, params={**params, **identity}, update_H=update_H,
                         hals_sweeps=hals_sweeps, orthogonal=orthogonal, mean=facts["mean"])
    result = run(solver_obj, X, seed=seed, max_iter=max_iter, tol=tol, options=opts,
                 input_token=token)
    stopped = result.meta.get("stopped_by_callback", False)
    if tol > 0 and not result.converged and not result.skipped and not stopped:
        warn(f"NMF ({solver}) stopped at max_iter={max_iter} before meeting "
             f"tol={tol}; raise max_iter or tol", convergence_warning())
    return NMFResult.from_run(result)


def _check_sparse_loss(X, name: str, loss, *, sparse_ok: bool) -> None:
    if hasattr(X._meta, "nnz") and not sparse_ok:
        raise InputError(f"{name}: a sparse X can be factored with the frobenius or kl loss "
                         "only (the others need W H at every entry); densify it to use "
                         f"loss={loss!r}")


def _choose_solver(solver: str, beta: float, *, is_l1: bool, orthogonal, hals_sweeps
                   ) -> tuple[str, str | None, int | str]:
    """The solver that runs ("auto" resolved), ``orthogonal`` and
    ``hals_sweeps`` checked, or the InputError of a combination that cannot."""
    if is_l1 and solver == "hals":
        raise InputError("the l1 loss is fitted by reweighted multiplicative updates: use "
                         "solver='mu' or 'auto'")
    orthogonal = check_orthogonal(orthogonal, 1.0 if is_l1 else beta)
    if orthogonal == "both":
        # with W and H both near orthonormal, W H has no scale left to fit X
        warn("orthogonal='both' with two factors leaves W H no free scale and fits "
             "X poorly; dmf.nmtf (dmf nmf --factors 3) has S to carry it",
             DmfWarning)
    if orthogonal is not None and solver == "hals":
        raise InputError(f"orthogonal={orthogonal!r} has multiplicative updates only: use "
                         "solver='mu' or 'auto'")
    if solver == "auto":
        solver = "hals" if beta == 2 and not is_l1 and orthogonal is None else "mu"
    if solver == "hals" and beta != 2:
        raise InputError("solver='hals' minimizes the Frobenius loss only (got "
                         f"beta={beta:g}); use solver='mu'")
    hals_sweeps = check_sweeps(hals_sweeps)
    if solver != "hals" and hals_sweeps != "auto":
        raise InputError(f"hals_sweeps applies to solver='hals' (the solver is {solver!r})")
    return solver, orthogonal, hals_sweeps


def _start(init: str, W, H, *, update_H: bool, k: int, shape: tuple[int, int], mean: float,
           solver: str) -> tuple[Any, dict[str, Any]]:
    """The solver's starting point for ``init`` (or the given factors), and
    what it adds to the job's parameters (the given factors' token)."""
    if not update_H:
        if H is None or W is not None:
            raise InputError("update_H=False fits W for a given H: pass H (and no W)")
        H = check_factor(H, (k, shape[1]), "H")
        return (fixed_h_init(H, float(np.sqrt(mean / k)) if solver == "mu" else 0.0),
                {"init": "fixed-H", "custom": dask.base.tokenize(H), "update_H": False})
    if init == "custom":
        if W is None or H is None:
            raise InputError("init='custom' needs both W and H")
        W = check_factor(W, (shape[0], k), "W")
        H = check_factor(H, (k, shape[1]), "H")
        return custom_init(W, H), {"custom": dask.base.tokenize(W, H)}
    if W is not None or H is not None:
        raise InputError(f"W and H are used only with init='custom' (init={init!r})")
    if init == "random":
        return random_init(k, float(np.sqrt(mean / k))), {}
    return nndsvd_init(k, init, mean, solver=solver), {}


def _solver(k: int, *, solver: str, beta: float, regularization, init, params, update_H: bool,
            hals_sweeps, orthogonal, mean: float):
    """The engine's Solver: reweighted MU for "l1", HALS, or MU for beta."""
    if solver == "l1":
        return L1Solver(k, delta=max(1e-6 * mean, 1e-300), regularization=regularization,
                        init=init, params=params)
    if solver == "hals":
        return HALSSolver(k, regularization=regularization, init=init, params=params,
                          update_H=update_H, hals_sweeps=hals_sweeps)
    return MUSolver(k, beta=beta, regularization=regularization, init=init, params=params,
                    update_H=update_H, orthogonal=orthogonal)


@dataclass
class NMFResult(FittedRun):
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

    n_iter_attr = "factors_after"

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
        p = self.attrs["parameters"]
        settings = {"loss": self.loss, "solver": self.attrs["solver"], "alpha_W": p["alpha_W"],
                    "alpha_H": p["alpha_H"], "l1_ratio": p["l1_ratio"], "tol": p["tol"],
                    "max_iter": p["max_iter"], **options}
        if "hals_sweeps" in p:
            settings.setdefault("hals_sweeps", p["hals_sweeps"])
        return nmf(X, self.H.shape[0], H=self.H, update_H=False, **settings).W

    def inverse_transform(self, W) -> Any:
        """W H (lazy, m x n): data back from its components."""
        W = W if isinstance(W, da.Array) else da.asarray(W)
        return W @ da.from_array(self.H, chunks=-1)

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], facts: dict[str, Any]) -> NMFResult:
        """The result of a run's or a store's arrays and facts
        (:meth:`FittedRun.run_facts`, :meth:`FittedRun.stored_facts`)."""
        return cls(W=arrays["W"], H=np.asarray(arrays["H"]),
                   loss=_loss_of(facts["attrs"]["beta"]), **facts)

    @classmethod
    def from_run(cls, run: RunResult) -> NMFResult:
        return cls.from_arrays(run.arrays, cls.run_facts(run))


def _loss_of(beta) -> float | str:
    return beta if isinstance(beta, str) else float(beta)
