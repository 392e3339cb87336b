"""Multiplicative updates for the beta-divergence, one read of X per
iteration.

scikit-learn's MU updates W with the current H, then H with the new W. Both
halves need X, but the W update of a row block is local to it, and the H
update only needs sums over row blocks of terms made from that block and its
new rows of W. So one task per block row does both, while the block is in
memory, a row slice at a time (:mod:`dmf.nmf.beta`):

    W_b <- W_b * (num_W / den_W)^gamma           (the block's new rows of W)
    A  += W_b^T R_b,  B += W_b^T W_b | colsum W_b | W_b^T (W_b H)^(beta-1)

and the client finishes H <- H * (A / den_H(B))^gamma after dask's tree has
summed A and B. The same task adds up the objective of the factors it was
given (WH is formed for the W update anyway; for beta = 2 it comes from
X H^T and W^T W in float64), so the loss history lags the factors by one
iteration: entry t is the objective after t iterations, entry 0 the
initial one, and the objective of the returned factors takes one more pass
at the end. WH is formed per slice and dropped: nothing m x n is held.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import scipy.sparse

from dmf.blocks import Small, Tall, row_pass, row_sums
from dmf.engine.driver import Context, Solver, State, Stats
from dmf.linalg.products import row_slices
from dmf.nmf import orthogonal as orth
from dmf.nmf import sparse as nmf_sparse
from dmf.nmf.beta import (
    EPSILON,
    Scratch,
    apply_update,
    as_work,
    divergence_sum,
    exponent,
    h_terms,
    kl_ratio,
    kl_x_log,
    w_terms,
    work_dtype,
    x_constants,
)

#: Checked every this many iterations, as scikit-learn does.
CHECK_EVERY = 10


def sklearn_schedule(history: list[float], tol: float) -> bool:
    """scikit-learn's MU stopping rule on a lagged history: every 10
    iterations, stop when the objective fell by less than ``tol`` times the
    initial one since the last check."""
    done = len(history) - 1  # iterations whose objective is known
    if tol <= 0 or done < CHECK_EVERY or done % CHECK_EVERY:
        return False
    return (history[-1 - CHECK_EVERY] - history[-1]) / max(history[0], 1e-300) < tol


def stop_check(iteration: int, divergence: float, state: State, tol: float):
    """scikit-learn's MU stopping rule, one iteration late: ``divergence`` is
    D_beta after ``iteration`` iterations; every 10 iterations, stop when
    sqrt(2 D) fell by less than ``tol`` times its initial value since the
    last check. Returns (stop?, the state's updated err_init / err_prev)."""
    err = float(np.sqrt(2 * max(divergence, 0.0)))
    if iteration == 0:
        return False, {"err_init": err, "err_prev": err}
    errors = {"err_init": float(state["err_init"]), "err_prev": float(state["err_prev"])}
    if tol <= 0 or iteration % CHECK_EVERY:
        return False, errors
    done = (errors["err_prev"] - err) / max(errors["err_init"], 1e-300) < tol
    return bool(done), {**errors, "err_prev": err}


@dataclass(frozen=True)
class RowUpdate:
    """What a block row's MU step takes besides the arrays: the divergence,
    W's exponent and penalties, whether to add up H's terms, and which of
    the objective's X-only terms to add (see :func:`_row_step`)."""

    beta: float
    gamma: float
    l1_W: float = 0.0
    l2_W: float = 0.0
    update_H: bool = True
    first: bool = True
    masked: bool = True


def _row_step(block, Wb, H, HHt, H_sum, how: RowUpdate):
    """The W update of a block row and its terms of the H update and of the
    objective, packed: (new W rows, flat small sums). ``HHt`` is the
    denominator's k x k matrix (beta = 2), ``H_sum`` H's row sums (KL).

    The sums are named as :func:`step_parts` lists them. The objective's
    terms that depend on X alone are the same every
    iteration, so only the ``first`` pass adds them up (in float64): |X_b|^2
    for beta = 2, and for KL the sum of X_b's entries above eps and the
    count of those at or below it (none anywhere: later passes skip the
    masks, ``masked=False``)."""
    beta, gamma, l1_W, l2_W = how.beta, how.gamma, how.l1_W, how.l2_W
    update_H, first, masked = how.update_H, how.first, how.masked
    k, n = H.shape
    W_new = np.empty_like(Wb)
    A = np.zeros((k, n))
    B = np.zeros((k, k) if beta == 2 else k if beta == 1 else (k, n))
    G_old = np.zeros((k, k))
    div = cross = const = small = 0.0
    sparse = scipy.sparse.issparse(block)
    work = np.dtype(np.float64) if sparse else work_dtype(block.dtype, beta)
    Hw = as_work(H, work)
    slices = list(row_slices(block, work.itemsize))
    scratch = Scratch(slices[0].stop if slices else 0, n, k, work)
    for sl in slices:
        Ws = Wb[sl]
        if sparse:  # X H^T, X^T W; for KL, W H only at X's nonzeros
            xs = nmf_sparse.as_csr(block[sl])
            if beta == 2:
                G_old += Ws.T @ Ws
                if first:
                    const += float(xs.data @ xs.data)
            num, den = nmf_sparse.w_terms(xs, Ws, H, beta, HHt=HHt, H_sum=H_sum)
            if beta == 2:
                cross += float(np.vdot(Ws, num))
            else:
                div += nmf_sparse.divergence_sum(xs, Ws, H, beta)
            Wn = apply_update(Ws, num, den, l1_W, l2_W, gamma)
            if beta < 1:  # scikit-learn's guard for stability, before H's terms
                Wn[Wn < np.finfo(np.float64).eps] = 0.0
            W_new[sl] = Wn
            if update_H:
                a, b = nmf_sparse.h_terms(xs, Wn, H, beta)
                A += a
                B += b
            continue
        xs = scratch.widen(block[sl])
        if beta == 2:
            G_old += Ws.T @ Ws
            if first:  # in float64 whatever X's precision
                const += scratch.square_sum(xs)
            num, den = w_terms(xs, Ws, Hw, beta, scratch, HHt=HHt)
            cross += float(np.vdot(Ws, num))  # num = X_s H^T
        elif beta == 1:  # one ratio X / WH for the update and the objective
            ratio = kl_ratio(xs, scratch.product(as_work(Ws, work), Hw), scratch)
            num = np.asarray(ratio @ Hw.T, dtype=np.float64)
            den = np.broadcast_to(H_sum, Ws.shape).copy()
            # D = sum x log(x / wh) - sum x + sum wh, sum x (over x > eps) is the client's
            div += kl_x_log(xs, ratio, scratch, masked) + float(Ws.sum(axis=0) @ H_sum)
            if first:
                x_sum, x_small = x_constants(xs, scratch)
                const += x_sum
                small += x_small
        else:
            WH = scratch.product(Ws, H)
            div += divergence_sum(xs, WH, beta, scratch)
            num, den = w_terms(xs, Ws, H, beta, scratch, WH=WH, H_sum=H_sum)
        Wn = apply_update(Ws, num, den, l1_W, l2_W, gamma)
        if beta < 1:  # scikit-learn's guard for stability, before H's terms
            Wn[Wn < np.finfo(np.float64).eps] = 0.0
        W_new[sl] = Wn
        if update_H:
            a, b = h_terms(xs, Wn, Hw, beta, scratch)
            A += a
            B += b
    sums = {"A": A, "B": B, "G_old": G_old, "div": div, "cross": cross, "const": const,
            "small": small, "w_l1": float(Wb.sum()), "w_l2": float(np.vdot(Wb, Wb))}
    return W_new, sums


def step_parts(beta: float, k: int, n: int) -> dict[str, tuple[int, ...]]:
    """The named sums of :func:`_row_step` and their shapes: H's numerator
    A = W^T (...), its denominator's terms B, W^T W of the given W (beta =
    2: the objective's Gram trick), and the objective's numbers."""
    B = (k, k) if beta == 2 else (k,) if beta == 1 else (k, n)
    gram = {"G_old": (k, k)} if beta == 2 else {}
    return {"A": (k, n), "B": B, **gram, **dict.fromkeys(
        ("div", "cross", "const", "small", "w_l1", "w_l2"), ())}


def _row_divergence(block, Wb, H, beta):
    total = 0.0
    scratch = Scratch(next(row_slices(block)).stop if block.shape[0] else 0, H.shape[1],
                      H.shape[0])
    for sl in row_slices(block):
        if scipy.sparse.issparse(block):
            total += nmf_sparse.divergence_sum(nmf_sparse.as_csr(block[sl]), Wb[sl], H, beta)
            continue
        xs = scratch.widen(block[sl])
        WH = scratch.product(Wb[sl], H)
        if beta == 2:
            np.subtract(xs, WH, out=WH)
            total += 0.5 * float(np.vdot(WH, WH))
        else:
            total += divergence_sum(xs, WH, beta, scratch)
    return total


def _row_divergence_named(block, Wb, H, beta):
    return {"divergence": _row_divergence(block, Wb, H, beta)}


def divergence(X: da.Array, W: da.Array, H: np.ndarray, beta: float) -> float:
    """D_beta(X | W H), one pass (scikit-learn's definition; 0.5 ||X - WH||^2
    for beta = 2)."""
    return float(row_sums(_row_divergence_named, X, Tall(W), Small(H), beta,
                          parts={"divergence": ()})["divergence"])


def penalty(W_l1: float, W_l2: float, H: np.ndarray, regularization) -> float:
    """The regularization terms of the objective, from |W|_1 and ||W||^2."""
    l1_W, l1_H, l2_W, l2_H = regularization
    return (l1_W * W_l1 + 0.5 * l2_W * W_l2 + l1_H * float(H.sum())
            + 0.5 * l2_H * float(np.vdot(H, H)))


def finish(X: da.Array, W: da.Array, H: np.ndarray, beta: float, regularization, *,
           solver: str, params: dict):
    """The result arrays in X's dtype, and the returned factors' objective
    (one more pass)."""
    div = divergence(X, W, H, beta)
    wl1, wl2 = (float(v) for v in dask.compute(W.sum(), (W * W).sum()))
    meta = {"beta": beta, "solver": solver, "parameters": params,
            "final_objective": div + penalty(wl1, wl2, H, regularization),
            "final_divergence": div, "reconstruction_err": float(np.sqrt(2 * max(div, 0.0)))}
    return {"W": W.astype(X.dtype), "H": H.astype(X.dtype)}, meta


class MUSolver(Solver):
    """Multiplicative updates on the engine. ``init(X, ctx) -> (W, H)``
    gives the starting factors (W a dask array in X's row blocks, float64);
    without ``update_H`` only W moves (``transform``). ``orthogonal`` ("W",
    "H", "both"; beta = 2): Ding et al.'s orthogonal updates
    (:mod:`dmf.nmf.orthogonal`), W^T X of the current W carried in the
    state as ``WtX``."""

    name = "nmf-mu"

    def __init__(self, k: int, *, beta: float,
                 regularization: tuple[float, float, float, float], init, params: dict,
                 update_H: bool = True, orthogonal: str | None = None):
        self.k, self.beta, self.regularization = k, beta, regularization
        self.start, self.update_H, self.orthogonal = init, update_H, orthogonal
        self.gamma = exponent(beta)
        self.params = {**params, "k": k, "beta": beta, "solver": "mu"}
        if orthogonal is not None:  # only then: the fingerprints of other jobs stay as they were
            self.params["orthogonal"] = orthogonal
        self.tol = float(params["tol"])

    def init(self, X, ctx: Context) -> State:
        W, H = self.start(X, ctx)
        state = {"W": W, "H": np.asarray(H, dtype=np.float64), "err_init": 0.0,
                 "err_prev": 0.0, "factors_after": -1}
        if self.orthogonal:
            state["orthogonality_history"] = []
        return state

    def step(self, X, state: State, ctx: Context) -> tuple[State, Stats]:
        k, beta, orthogonal, update_H = self.k, self.beta, self.orthogonal, self.update_H
        l1_W, l1_H, l2_W, l2_H = self.regularization
        W, H = state["W"], state["H"]
        n = H.shape[1]
        HHt = H @ H.T if beta == 2 else None
        H_sum = H.sum(axis=1) if beta == 1 else None
        # the X-only terms of the objective, from the first pass (see _row_step)
        known = {key: state[key] for key in ("x_const", "x_small") if key in state}
        sparse = hasattr(X._meta, "nnz")
        # orthogonal W: W (W^T X H^T) replaces W (H H^T), W^T X from the
        # previous pass (none in the first iteration: a plain step)
        ortho_w = orth.on_w(orthogonal) and "WtX" in state
        den_W, gamma_W = (np.asarray(state["WtX"]) @ H.T, 0.5) if ortho_w else (HHt, self.gamma)
        how = RowUpdate(beta, gamma_W, l1_W, l2_W, update_H, first=not known,
                        masked=bool(known.get("x_small", 1)))
        W_new, sums = row_pass(_row_step, X, W, H, den_W, H_sum, how,
                               parts=step_parts(beta, k, n))
        A, B = sums["A"], sums["B"]
        div, cross, const, small, w_l1, w_l2 = (float(sums[name]) for name in (
            "div", "cross", "const", "small", "w_l1", "w_l2"))
        if beta in (1, 2) and not (sparse and beta == 1):
            known = known or {"x_const": const, "x_small": small}
        if beta == 2:  # 0.5 ||X - WH||^2 = 0.5 (|X|^2 - 2 <W, X H^T> + <W^T W, H H^T>)
            G_old = sums["G_old"]
            div = 0.5 * (float(known["x_const"]) - 2 * cross + float(np.vdot(G_old, HHt)))
        elif beta == 1 and not sparse:
            div -= float(known["x_const"])
        loss = div + penalty(w_l1, w_l2, H, self.regularization)
        extra = orth.errors(orthogonal, G_old, H) if orthogonal else {}
        gamma_H = self.gamma
        if orth.on_h(orthogonal):  # H <- H * sqrt(W^T X / (W^T X H^T H))
            den, gamma_H = A @ H.T @ H, 0.5
        elif beta == 2:
            den = B @ H
        elif beta == 1:
            B = B.copy()
            B[B == 0] = 1.0
            den = np.broadcast_to(B[:, None], H.shape)
        else:
            den = B
        H_new = apply_update(H, A, den, l1_H, l2_H, gamma_H) if update_H else H
        if beta <= 1 and update_H:  # scikit-learn's guard for stability
            H_new[H_new < np.finfo(np.float64).eps] = 0.0
        done, errors = stop_check(ctx.iteration, div, state, self.tol)
        stats = Stats(loss=float(loss), done=done, extra={"divergence": float(div), **extra})
        kept = {}
        if orthogonal:  # the errors of each iteration's factors, checkpointed with them
            kept["orthogonality_history"] = [*state["orthogonality_history"], extra]
        if done:  # the factors this pass measured are scikit-learn's answer: keep them
            return {**state, **errors, **known, **kept, "factors_after": ctx.iteration}, stats
        if orth.on_w(orthogonal):
            kept["WtX"] = A  # W^T X of the new W (beta = 2), for the next W update
        return {"W": W_new, "H": H_new, **errors, **known, **kept, "factors_after": -1}, stats

    def result(self, X, state: State):
        arrays, meta = finish(X, state["W"], state["H"], self.beta, self.regularization,
                              solver="mu", params=self.params)
        if int(state["factors_after"]) >= 0:  # stopped by tol: the previous iterate
            meta["factors_after"] = int(state["factors_after"])
        if self.orthogonal:
            W, H = state["W"], state["H"]
            WtW = (W.T @ W).compute() if orth.on_w(self.orthogonal) else None
            meta["orthogonality_error"] = orth.errors(self.orthogonal, WtW, H)
            meta["orthogonality_history"] = list(state["orthogonality_history"])
        return arrays, meta


__all__ = [
    "EPSILON",
    "MUSolver",
    "RowUpdate",
    "divergence",
    "finish",
    "penalty",
    "row_pass",
    "sklearn_schedule",
    "stop_check",
]
