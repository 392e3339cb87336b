"""HALS (coordinate descent) for the Frobenius loss, one read of X per
iteration.

scikit-learn's ``solver="cd"``: W's columns are updated one at a time,
W[:, t] <- max(0, W[:, t] - grad_t / (H H^T)_tt) with
grad_t = W (H H^T)[:, t] - (X H^T)[:, t] (L2 regularization added to the
diagonal of H H^T, L1 subtracted from X H^T), then H the same way from
W^T W and X^T W. A row of W is updated from its own row of X H^T only, so a
block row's task forms X_b H^T, sweeps its rows of W, and adds up
W_b^T X_b and W_b^T W_b with the new rows, the block still in memory
(:func:`dmf.nmf.mu.row_pass`); the client sweeps H. The stopping rule is
scikit-learn's: the summed projected-gradient violation of an iteration
over that of the first falls to ``tol``. The objective of the factors
entering an iteration comes from the same task, as for ``mu``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from dmf.engine.driver import Context, Solver, State, Stats
from dmf.linalg.products import row_slices
from dmf.nmf.beta import Scratch, as_work, work_dtype
from dmf.nmf.mu import finish, full_rows, penalty, row_pass
from dmf.nmf.sparse import as_csr


def sweep(F: np.ndarray, FtF: np.ndarray, FtX: np.ndarray) -> float:
    """One pass of coordinate descent over F's columns, in place (rows are
    independent, so each column is updated for all rows at once); returns
    the summed projected-gradient violation, as scikit-learn's
    ``_update_cdnmf_fast``."""
    violation = 0.0
    for t in range(F.shape[1]):
        grad = F @ FtF[t] - FtX[:, t]
        projected = np.where(F[:, t] == 0, np.minimum(grad, 0.0), grad)
        violation += float(np.abs(projected).sum())
        hess = FtF[t, t]
        if hess != 0:
            F[:, t] = np.maximum(F[:, t] - grad / hess, 0.0)
    return violation


def _regularized(HHt: np.ndarray, XHt: np.ndarray, l1: float, l2: float):
    HHt = HHt.copy()
    if l2:
        HHt.flat[:: HHt.shape[0] + 1] += l2
    return HHt, XHt - l1 if l1 else XHt


def _row_hals(block, Wb, H, HHt, l1_W, l2_W, update_H=True, with_sq=True):
    """A block row's sweep of W and its terms of H's sweep and of the
    objective (|X_b|^2 only ``with_sq``: it is the same every iteration).
    A float32 block is multiplied in float32, its k x n sums added up in
    float64 (:func:`dmf.nmf.beta.work_dtype`); the sweep is float64."""
    k, n = H.shape
    XHt = np.empty((block.shape[0], k))
    sq = 0.0
    sparse = scipy.sparse.issparse(block)
    work = np.dtype(np.float64) if sparse else work_dtype(block.dtype)
    Hw = as_work(H, work)
    slices = list(row_slices(block, work.itemsize))
    scratch = Scratch(slices[0].stop if slices else 0, n, k, work)
    for sl in slices:
        if sparse:
            xs = as_csr(block[sl])
            XHt[sl] = np.asarray(xs @ H.T)
            if with_sq:
                sq += float(xs.data @ xs.data)
            continue
        xs = scratch.widen(block[sl])
        XHt[sl] = np.matmul(Hw, xs.T).T  # (H X_s^T)^T: see beta.x_times_ht
        if with_sq:  # in float64 whatever X's precision
            sq += scratch.square_sum(xs)
    old = [sq, float(np.vdot(Wb, XHt)), float(Wb.sum()), float(np.vdot(Wb, Wb))]
    G_old = Wb.T @ Wb
    W = np.array(Wb, dtype=np.float64)
    violation = sweep(W, *_regularized(HHt, XHt, l1_W, l2_W))
    WtX = np.zeros((k, n))
    Ww = as_work(W, work)
    for sl in slices if update_H else ():  # transform: H's terms unused
        if sparse:
            WtX += np.asarray(as_csr(block[sl]).T @ W[sl]).T
        else:
            WtX += np.matmul(Ww[sl].T, scratch.widen(block[sl]), out=scratch.num)
    flat = np.concatenate([WtX.ravel(), (W.T @ W).ravel(), G_old.ravel(), old, [violation]])
    out = np.empty(1, dtype=object)
    out[0] = (W, flat[None])
    return out


def hals_solver(k: int, *, regularization: tuple[float, float, float, float], init,
                params: dict, update_H: bool = True) -> Solver:
    l1_W, l1_H, l2_W, l2_H = regularization
    tol = float(params["tol"])
    solver_params = {**params, "k": k, "beta": 2.0, "solver": "hals"}

    def start(X, ctx: Context) -> State:
        W, H = init(X, ctx)
        return {"W": W, "H": np.asarray(H, dtype=np.float64), "violation_init": 0.0}

    def step(X, state: State, ctx: Context) -> tuple[State, Stats]:
        X = full_rows(X)
        W, H = state["W"], state["H"]
        n = H.shape[1]
        HHt = H @ H.T
        known = {"sq": state["sq"]} if "sq" in state else {}
        W_new, flat = row_pass(_row_hals, X, W, H, HHt, l1_W, l2_W, update_H, not known,
                               size=k * n + 2 * k * k + 5)
        WtX = flat[:k * n].reshape(k, n)
        WtW = flat[k * n:k * n + k * k].reshape(k, k)
        G_old = flat[k * n + k * k:k * n + 2 * k * k].reshape(k, k)
        sq, cross, w_l1, w_l2, violation = (float(v) for v in flat[-5:])
        known = known or {"sq": sq}  # |X|^2 from the first pass, kept in the state
        sq = float(known["sq"])
        div = 0.5 * (sq - 2 * cross + float(np.vdot(G_old, HHt)))
        loss = div + penalty(w_l1, w_l2, H, regularization)
        Ht = H.T.copy()
        if update_H:
            violation += sweep(Ht, *_regularized(WtW, WtX.T, l1_H, l2_H))
        first = ctx.iteration == 0
        violation_init = violation if first else float(state["violation_init"])
        done = violation_init == 0 or violation / violation_init <= tol
        return ({"W": W_new, "H": Ht.T.copy(), "violation_init": violation_init, **known},
                Stats(loss=float(loss), done=bool(done),
                      extra={"divergence": div, "violation": violation}))

    def finalize(X, state: State):
        return finish(X, state["W"], state["H"], 2.0, regularization, "hals", solver_params)

    return Solver(name="nmf-hals", params=solver_params,
                  init=start, step=step, finalize=finalize)

