"""NMF under the L1 loss (Laplace noise): minimize sum |X - W H|.

Iteratively reweighted multiplicative updates, a majorize-minimize scheme:
at the current factors, |r| <= r^2 / (2 max(|r0|, delta)) + const with
equality at r = r0, so one multiplicative step on the weighted least
squares problem with weights 1 / max(|X - WH|, delta), which never increases
that surrogate, never increases sum of the smoothed |r| either (the smoothing
delta, 1e-6 mean(X) by default, only matters for residuals below it). Each
half step re-weights at the factors it starts from:

    W <- W * ((w . X) H^T) / ((w . WH) H^T),   w = 1 / max(|X - WH|, delta)
    H <- H * (W^T (w' . X)) / (W^T (w' . W'H)), w' from the new W

and, as for the beta-divergences, the W half of a block row and its terms
of the H half come from one task, so X is read once per iteration. The
loss history holds sum |X - WH| of the factors entering each iteration.
"""

from __future__ import annotations

import dask
import numpy as np

from dmf.blocks import Piece, Small, Tall, row_blocks, row_pass
from dmf.engine.driver import Context, Solver, State, Stats
from dmf.linalg.products import row_slices
from dmf.nmf.beta import EPSILON, Scratch, apply_update
from dmf.nmf.mu import penalty, sklearn_schedule


def _weighted(xs, WH, delta, scratch: Scratch, rows: int):
    """(w . X, w . WH) with w = 1 / max(|X - WH|, delta), and sum |X - WH|."""
    w = scratch.tmp[:rows]
    np.subtract(xs, WH, out=w)
    np.abs(w, out=w)
    l1 = float(w.sum())
    np.maximum(w, delta, out=w)
    np.reciprocal(w, out=w)
    wx = xs * w
    np.multiply(WH, w, out=w)
    return wx, w, l1


def _row_abs(block, Wb, H):
    """sum |X_b - W_b H| of a block row (a 1-element array, ``abs``)."""
    total = 0.0
    scratch = Scratch(next(row_slices(block)).stop if block.shape[0] else 0, H.shape[1],
                      H.shape[0])
    for sl in row_slices(block):
        xs = scratch.widen(block[sl])
        WH = scratch.product(Wb[sl], H)
        np.subtract(xs, WH, out=WH)
        total += float(np.abs(WH, out=WH).sum())
    return {"abs": np.array([total])}


def _row_l1(block, Wb, H, delta, l1_W, l2_W):
    k, n = H.shape
    W_new = np.empty_like(Wb)
    A, B = np.zeros((k, n)), np.zeros((k, n))
    loss = 0.0
    scratch = Scratch(next(row_slices(block)).stop if block.shape[0] else 0, n, k)
    for sl in row_slices(block):
        xs = scratch.widen(block[sl])
        rows = xs.shape[0]
        Ws = Wb[sl]
        wx, wwh, l1 = _weighted(xs, scratch.product(Ws, H), delta, scratch, rows)
        loss += l1
        Wn = apply_update(Ws, wx @ H.T, wwh @ H.T, l1_W, l2_W, 1.0)
        W_new[sl] = Wn
        wx, wwh, _ = _weighted(xs, scratch.product(Wn, H), delta, scratch, rows)
        A += Wn.T @ wx
        B += Wn.T @ wwh
    return W_new, {"A": A, "B": B, "l1": loss, "w_l1": float(Wb.sum()),
                   "w_l2": float(np.vdot(Wb, Wb))}


class L1Solver(Solver):
    """Reweighted MU for the L1 (least absolute deviations) loss on the
    engine, stopped by scikit-learn's schedule."""

    name = "nmf-l1"

    def __init__(self, k: int, *, delta: float,
                 regularization: tuple[float, float, float, float], init, params: dict):
        self.k, self.delta, self.regularization, self.start = k, delta, regularization, init
        self.params = {**params, "k": k, "beta": "l1", "solver": "mu-l1", "delta": delta}

    def init(self, X, ctx: Context) -> State:
        W, H = self.start(X, ctx)
        return {"W": W, "H": np.asarray(H, dtype=np.float64)}

    def step(self, X, state: State, _ctx: Context) -> tuple[State, Stats]:
        k = self.k
        l1_W, l1_H, l2_W, l2_H = self.regularization
        W, H = state["W"], state["H"]
        n = H.shape[1]
        parts = {"A": (k, n), "B": (k, n), "l1": (), "w_l1": (), "w_l2": ()}
        W_new, sums = row_pass(_row_l1, X, W, H, self.delta, l1_W, l2_W, parts=parts)
        A, B = sums["A"], sums["B"]
        l1, w_l1, w_l2 = (float(sums[name]) for name in ("l1", "w_l1", "w_l2"))
        H_new = apply_update(H, A, B, l1_H, l2_H, 1.0)
        loss = l1 + penalty(w_l1, w_l2, H, self.regularization)
        return {"W": W_new, "H": H_new}, Stats(loss=loss, extra={"l1": l1})

    def converged(self, history: list[float], tol: float) -> bool:
        return sklearn_schedule(history, tol)

    def result(self, X, state: State):
        W, H = state["W"], state["H"]
        parts = row_blocks(_row_abs, X, Tall(W), Small(H), each={"abs": Piece((1,))}).each
        l1, w_l1, w_l2 = (float(v) for v in
                          dask.compute(parts["abs"].sum(), W.sum(), (W * W).sum()))
        meta = {"beta": "l1", "solver": "mu-l1", "parameters": self.params,
                "final_objective": l1 + penalty(w_l1, w_l2, H, self.regularization),
                "final_divergence": l1, "reconstruction_err": l1}
        return {"W": W.astype(X.dtype), "H": H.astype(X.dtype)}, meta


__all__ = ["EPSILON", "L1Solver"]
