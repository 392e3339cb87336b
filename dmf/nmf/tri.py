"""``dmf.nmtf``: non-negative matrix tri-factorization X ~ W S H, out of core.

W is m x k1 (row clusters), S k1 x k2 (how row and column clusters
interact), H k2 x n (column clusters), all >= 0. The updates are the
standard multiplicative ones for three factors (Ding, Li, Peng and Park,
KDD 2006; Yoo and Choi 2009). With M = S H, for the Frobenius loss
0.5 ||X - W S H||^2:

    W <- W * (X M^T) / (W M M^T)
    S <- S * (W^T X H^T) / (W^T W S H H^T)
    H <- H * (S^T W^T X) / (S^T W^T W S H)

and for the (generalized) Kullback-Leibler divergence, with R = X / (W S H):

    W <- W * (R M^T) / (1 M^T)
    S <- S * (W^T R H^T) / ((W^T 1)(1^T H^T))
    H <- H * (S^T W^T R) / (S^T W^T 1)

Each is the MU of one factor with the other two fixed, so the objective
never increases.

**One read of X per iteration.** For a block row b, W's update is local
given M (it is NMF's W update with H replaced by M), and once W_b is new the
S and H updates need only sums over blocks: W_b^T X_b and W_b^T W_b for
Frobenius (then W^T X H^T = (W^T X) H^T and S^T W^T X are k x n products on
the client), W_b^T R_b and W_b's column sums for KL. So each iteration is
exactly NMF's one-read pass (:func:`dmf.blocks.row_pass` with
:func:`dmf.nmf.mu._row_step`) run with M in place of H, and the client
finishes S and H. For Frobenius the client updates S, then H with the new
S, both from the same sums: exact, since they do not involve X again. For KL
the ratio R depends on S and H, so after S moves the pass's W^T R is stale
for H: one read cannot give both. The KL solver therefore moves S on even
iterations and H on odd ones (each step still an exact MU step, so the
objective still never increases), W on every one.

The objective is lagged as in :mod:`dmf.nmf.mu`: ``loss_history[t]`` is
the objective after t iterations, and the returned factors' objective takes
one more pass at the end. ``orthogonal=`` adds Ding et al.'s orthogonality
constraints (:mod:`dmf.nmf.orthogonal`; Frobenius only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Unpack

import dask.array as da
import numpy as np

from dmf.blocks import full_rows, row_pass
from dmf.engine.cache import cache_input, run_input
from dmf.engine.driver import Context, RunResult, Solver, State, Stats, run
from dmf.engine.fitted import FittedRun
from dmf.engine.options import RunKeywords, RunOptions, run_options
from dmf.errors import InputError, convergence_warning, warn
from dmf.linalg.svd import check_k
from dmf.nmf import orthogonal as orth
from dmf.nmf.beta import apply_update, beta_of
from dmf.nmf.checks import check_stopping, nonnegative_facts
from dmf.nmf.init import _random_rows
from dmf.nmf.mu import RowUpdate, _row_step, divergence, step_parts, stop_check

#: The losses NMTF minimizes (beta 2 and 1).
TRI_BETAS = (2.0, 1.0)

#: The starts NMTF takes ("auto" is "random").
TRI_INITS = ("auto", "random")


def _random_start(k1: int, k2: int, avg: float):
    """|N(0, 1)| * avg for W, S and H, with avg = (mean(X) / (k1 k2))^(1/3) so
    that W S H starts at about X's scale (the cube root of scikit-learn's
    sqrt(mean(X) / k) for two factors). W's rows are drawn per block from
    their own stream (:func:`dmf.nmf.init.random_init`)."""

    def init(X, ctx: Context):
        H = avg * np.abs(ctx.rng.standard_normal((k2, X.shape[1])))
        S = avg * np.abs(ctx.rng.standard_normal((k1, k2)))
        seed = int(ctx.rng.integers(2**63))
        W = da.map_blocks(_random_rows, seed, k1, avg, chunks=(X.chunks[0], (k1,)),
                          dtype=np.float64, meta=np.empty((0, 0)))
        return W, S, H

    return init


class TriSolver(Solver):
    """The NMTF multiplicative-update solver on the engine."""

    name = "nmtf-mu"

    def __init__(self, k1: int, k2: int, *, beta: float, orthogonal: str | None, init,
                 params: dict):
        self.k1, self.k2, self.beta, self.orthogonal, self.start = k1, k2, beta, orthogonal, init
        self.params = {**params, "k1": k1, "k2": k2, "beta": beta, "solver": "mu"}
        if orthogonal is not None:
            self.params["orthogonal"] = orthogonal
        self.tol = float(params["tol"])

    def init(self, X, ctx: Context) -> State:
        W, S, H = self.start(X, ctx)
        return {"W": W, "S": np.asarray(S, dtype=np.float64),
                "H": np.asarray(H, dtype=np.float64), "err_init": 0.0, "err_prev": 0.0,
                "factors_after": -1, "orthogonality_history": []}

    def step(self, X, state: State, ctx: Context) -> tuple[State, Stats]:
        k1, beta, orthogonal = self.k1, self.beta, self.orthogonal
        W, S, H = state["W"], state["S"], state["H"]
        n = H.shape[1]
        M = S @ H  # W's update is NMF's with H replaced by M = S H
        MMt = M @ M.T if beta == 2 else None
        M_sum = M.sum(axis=1) if beta == 1 else None
        # orthogonal W: W (W^T X) M^T in the denominator, W^T X of this W kept
        # from the previous pass (none yet in the first: a plain step)
        ortho_w = orth.on_w(orthogonal) and "WtX" in state
        den_W, gamma_W = (np.asarray(state["WtX"]) @ M.T, 0.5) if ortho_w else (MMt, 1.0)
        known = {key: state[key] for key in ("x_const", "x_small") if key in state}
        sparse = hasattr(X._meta, "nnz")
        how = RowUpdate(beta, gamma_W, first=not known, masked=bool(known.get("x_small", 1)))
        W_new, sums = row_pass(_row_step, X, W, M, den_W, M_sum, how,
                               parts=step_parts(beta, k1, n))
        A, B = sums["A"], sums["B"]
        div, cross, const, small = (float(sums[name]) for name in
                                    ("div", "cross", "const", "small"))
        if not (sparse and beta == 1):
            known = known or {"x_const": const, "x_small": small}
        extra: dict[str, Any] = {}
        if beta == 2:  # 0.5 (|X|^2 - 2 <W, X M^T> + <W^T W, M M^T>) of the given factors
            G_old = sums["G_old"]
            div = 0.5 * (float(known["x_const"]) - 2 * cross + float(np.vdot(G_old, MMt)))
            extra = orth.errors(orthogonal, G_old, H)
            G = B
            S_new = apply_update(S, A @ H.T, G @ S @ (H @ H.T), 0.0, 0.0, 1.0)
            SA = S_new.T @ A  # (W S)^T X with the new W and S
            if orth.on_h(orthogonal):
                H_new = apply_update(H, SA, SA @ H.T @ H, 0.0, 0.0, 0.5)
            else:
                H_new = apply_update(H, SA, S_new.T @ G @ S_new @ H, 0.0, 0.0, 1.0)
        else:  # KL: A = W^T R, B = W's column sums, with the new W
            if not sparse:
                div -= float(known["x_const"])
            if ctx.iteration % 2 == 0:
                S_new = apply_update(S, A @ H.T, np.outer(B, H.sum(axis=1)), 0.0, 0.0, 1.0)
                H_new = H
            else:
                den = np.broadcast_to((S.T @ B)[:, None], H.shape)
                S_new, H_new = S, apply_update(H, S.T @ A, den, 0.0, 0.0, 1.0)
        done, errors = stop_check(ctx.iteration, div, state, self.tol)
        history = [*state["orthogonality_history"], extra] if extra else \
            state["orthogonality_history"]
        stats = Stats(loss=float(div), done=done, extra={"divergence": float(div), **extra})
        if done:  # the factors this pass measured are the answer (as mu does)
            return {**state, **errors, **known, "factors_after": ctx.iteration,
                    "orthogonality_history": history}, stats
        new = {"W": W_new, "S": S_new, "H": H_new, **errors, **known, "factors_after": -1,
               "orthogonality_history": history}
        if orth.on_w(orthogonal):
            new["WtX"] = A  # W^T X of the new W, for the next W update
        return new, stats

    def result(self, X, state: State):
        k1, k2, beta, orthogonal = self.k1, self.k2, self.beta, self.orthogonal
        W, S, H = state["W"], state["S"], state["H"]
        div = divergence(X, W, S @ H, beta)
        meta: dict[str, Any] = {
            "beta": beta, "solver": "mu", "parameters": self.params, "k1": k1, "k2": k2,
            "final_objective": div, "final_divergence": div,
            "reconstruction_err": float(np.sqrt(2 * max(div, 0.0)))}
        if orthogonal is not None:
            WtW = (W.T @ W).compute() if orth.on_w(orthogonal) else None
            meta["orthogonality_error"] = orth.errors(orthogonal, WtW, H)
            meta["orthogonality_history"] = list(state["orthogonality_history"])
        if int(state["factors_after"]) >= 0:
            meta["factors_after"] = int(state["factors_after"])
        arrays = {"W": W.astype(X.dtype), "S": S.astype(X.dtype), "H": H.astype(X.dtype)}
        return arrays, meta


def nmtf(
    X,
    k1: int,
    k2: int,
    *,
    loss="frobenius",
    init: str = "random",
    orthogonal: str | None = None,
    tol: float = 1e-4,
    max_iter: int = 200,
    seed: int | None = None,
    options: RunOptions | None = None,
    **run_keywords: Unpack[RunKeywords],
) -> NMTFResult:
    """Non-negative tri-factorization X ~ W S H, out of core.

    W (m x k1), S (k1 x k2) and H (k2 x n) are non-negative; rows of W and
    columns of H read as soft row and column clusters, S as how they
    interact (co-clustering). Multiplicative updates reading X once per
    iteration (see :mod:`dmf.nmf.tri`).

    Parameters
    ----------
    X : URL, zarr.Array, dask, numpy or scipy.sparse array
        m x n, non-negative.
    k1, k2 : int
        Row and column ranks, each in 1..min(m, n).
    loss : {"frobenius", "kl"} or {2, 1}
        0.5 ||X - W S H||^2, or the generalized Kullback-Leibler divergence
        (S and H then move on alternate iterations, W on every one).
    init : {"random", "auto"}
        |N(0, 1)| * (mean(X) / (k1 k2))^(1/3) for each factor.
    orthogonal : {None, "W", "H", "both"}
        Ding et al.'s orthogonal updates, driving W^T W and/or H H^T to the
        identity (hard row / column clusters; Frobenius only). The errors
        ||W^T W - I||_F, ||H H^T - I||_F are reported every iteration and in
        ``attrs["orthogonality_error"]``.
    tol, max_iter :
        As :func:`dmf.nmf` with ``solver="mu"``: every 10 iterations, stop
        when sqrt(2 D) fell by less than ``tol`` times its initial value.
    seed : int, optional
        Same seed, input and chunks: bitwise the same factors, after any
        number of kill-and-resume cycles too.
    options : RunOptions, optional
        Store the result (arrays W, S, H), checkpoint, resume, progress,
        caching, a callback (:class:`dmf.RunOptions`).
    **run_keywords
        The same options as keywords (``out=``, ``checkpoint_every=``, ...),
        instead of ``options``, as for :func:`dmf.nmf`.

    Returns
    -------
    NMTFResult
        ``W`` (lazy), ``S``, ``H`` in X's dtype; ``loss_history`` (entry t:
        the objective after t iterations), ``reconstruction_err_``.

    Examples
    --------
    >>> import numpy as np, dmf
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((60, 3)) @ rng.random((3, 2)) @ rng.random((2, 30))
    >>> r = dmf.nmtf(X, 3, 2, max_iter=100, tol=0, seed=0)
    >>> r.W.shape, r.S.shape, r.H.shape
    ((60, 3), (3, 2), (2, 30))
    >>> h = r.loss_history
    >>> all(b <= a * (1 + 1e-12) for a, b in zip(h, h[1:]))   # never increases
    True
    """
    beta = beta_of(loss)
    if beta not in TRI_BETAS:
        raise InputError(f"dmf.nmtf minimizes the frobenius or kl loss only, got {loss!r}; "
                         "use loss='frobenius' or loss='kl'")
    orthogonal = orth.check_orthogonal(orthogonal, beta)
    if init not in TRI_INITS:
        raise InputError(f"unknown NMTF init {init!r}; available: {', '.join(TRI_INITS)}")
    max_iter, tol = check_stopping(max_iter, tol)
    opts = run_options(options, run_keywords, "nmtf")
    X, cache, token, name = run_input(X, opts)
    k1 = check_k(k1, X.shape, "k1")
    k2 = check_k(k2, X.shape, "k2")
    X = full_rows(cache_input(X, cache))
    facts = nonnegative_facts(X, name, zeros_allowed=True)
    params: dict[str, Any] = {"init": "random", "max_iter": max_iter, "tol": tol}
    avg = float(np.cbrt(facts["mean"] / (k1 * k2)))
    solver = TriSolver(k1, k2, beta=beta, orthogonal=orthogonal,
                     init=_random_start(k1, k2, avg), params=params)
    result = run(solver, X, seed=seed, max_iter=max_iter, tol=tol, options=opts,
                 input_token=token)
    if tol > 0 and not result.converged and not result.skipped:
        warn(f"NMTF stopped at max_iter={max_iter} before meeting tol={tol}; "
             "raise max_iter or tol", convergence_warning())
    return NMTFResult.from_run(result)


@dataclass
class NMTFResult(FittedRun):
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

    n_iter_attr = "factors_after"

    @property
    def reconstruction_err_(self) -> float:
        """sqrt(2 D_beta(X | W S H)) of the returned factors (||X - W S H||_F
        for the Frobenius loss)."""
        return float(self.attrs["reconstruction_err"])

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], facts: dict[str, Any]) -> NMTFResult:
        """The result of a run's or a store's arrays and facts
        (:meth:`FittedRun.run_facts`, :meth:`FittedRun.stored_facts`)."""
        return cls(W=arrays["W"], S=np.asarray(arrays["S"]), H=np.asarray(arrays["H"]),
                   loss=float(facts["attrs"]["beta"]), **facts)

    @classmethod
    def from_run(cls, run: RunResult) -> NMTFResult:
        return cls.from_arrays(run.arrays, cls.run_facts(run))


__all__ = ["NMTFResult", "nmtf"]
