"""HALS (coordinate descent) for the Frobenius loss, one read of X per
iteration.

scikit-learn's ``solver="cd"``: W's columns are updated one at a time,
W[:, t] <- max(0, W[:, t] - grad_t / (H H^T)_tt) with
grad_t = W (H H^T)[:, t] - (X H^T)[:, t] (L2 regularization added to the
diagonal of H H^T, L1 subtracted from X H^T), then H the same way from
W^T W and X^T W. A row of W is updated from its own row of X H^T only, so a
block row's task forms X_b H^T, sweeps its rows of W, and adds up
W_b^T X_b and W_b^T W_b with the new rows, the block still in memory
(:func:`dmf.blocks.row_pass`); the client sweeps H. The stopping rule is
scikit-learn's: the summed projected-gradient violation of an iteration
over that of the first falls to ``tol``. The objective of the factors
entering an iteration comes from the same task, as for ``mu``.

A sweep costs O(rows k^2), the products that feed it O(rows n k): with
``hals_sweeps="auto"`` (the default) each factor is swept several times
with the same products (Gillis and Glineur's accelerated HALS, rule in
:data:`SWEEP_ALPHA`), which buys far more progress per read of X. What
depends on the row chunking: with "auto", each block row's task decides
how many sweeps its rows of W get (the most from its own row count, the
stop from its own rows' moves), so W's and H's iterates differ between row
chunkings (7e-2 apart after 30 iterations of a 500 x 60, k = 8 problem in
97-row blocks against one block), never between worker counts or
schedulers. A fixed count (``hals_sweeps=N``) sweeps every row N times: the
iterates are then the same for any chunking up to the rounding of the
k x n sums across blocks (1e-13 apart). With ``hals_sweeps=1`` the
iterates are scikit-learn's cd (to about 1e-14).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

from dmf.blocks import row_pass
from dmf.engine.driver import Context, Solver, State, Stats
from dmf.errors import InputError
from dmf.linalg.products import row_slices
from dmf.nmf.beta import Scratch, as_work, work_dtype
from dmf.nmf.mu import finish, penalty
from dmf.nmf.sparse import as_csr

#: Gillis and Glineur's rule for ``hals_sweeps="auto"`` (2012, "Accelerated
#: multiplicative updates and hierarchical alternating least squares
#: algorithms for nonnegative matrix factorization"): the products that feed
#: a factor's sweeps (X H^T and H H^T for W) cost rho times one sweep, so up
#: to 1 + SWEEP_ALPHA rho sweeps are worth making with them; they stop once a
#: sweep moves the factor by at most SWEEP_EPS times what the first one did.
SWEEP_ALPHA = 0.5
SWEEP_EPS = 0.1


def check_sweeps(hals_sweeps) -> int | str:
    """``"auto"`` or a count >= 1, else an InputError."""
    if hals_sweeps == "auto":
        return "auto"
    if (isinstance(hals_sweeps, (bool, np.bool_))
            or not isinstance(hals_sweeps, (int, np.integer)) or hals_sweeps < 1):
        raise InputError("hals_sweeps must be 'auto' or an int >= 1 (1: scikit-learn's cd), "
                         f"got {hals_sweeps!r}")
    return int(hals_sweeps)


def sweep_plan(hals_sweeps, rows: int, other: int, k: int) -> tuple[int, float]:
    """(most sweeps, stopping fraction) for a factor with ``rows`` rows whose
    products come from a matrix with ``other`` columns: Gillis and Glineur's
    for "auto", else exactly that many sweeps."""
    if hals_sweeps != "auto":
        return int(hals_sweeps), 0.0
    rho = 1 + (rows * other + other * k) / (max(rows, 1) * (k + 1))
    return 1 + int(SWEEP_ALPHA * rho), SWEEP_EPS


def sweep(F: np.ndarray, FtF: np.ndarray, FtX: np.ndarray,
          violation: bool = True) -> tuple[float, float]:
    """One pass of coordinate descent over F's columns, in place (rows are
    independent, so each column is updated for all rows at once). Returns
    the summed projected-gradient violation before the pass (scikit-learn's
    ``_update_cdnmf_fast``; 0 without ``violation``) and the squared norm of
    the change. F and FtX are best in Fortran order: contiguous columns
    measured faster than C order."""
    grad = np.empty(F.shape[0])
    new = np.empty(F.shape[0])
    total = moved = 0.0
    for t in range(F.shape[1]):
        col = F[:, t]
        np.matmul(F, FtF[t], out=grad)
        grad -= FtX[:, t]
        if violation:
            total += float(np.abs(np.where(col == 0, np.minimum(grad, 0.0), grad)).sum())
        hess = FtF[t, t]
        if hess != 0:
            np.divide(grad, hess, out=grad)
            np.subtract(col, grad, out=new)
            np.maximum(new, 0.0, out=new)
            np.subtract(new, col, out=grad)
            moved += float(grad @ grad)
            col[...] = new
    return total, moved


def repeated_sweeps(F: np.ndarray, FtF: np.ndarray, FtX: np.ndarray,
           plan: tuple[int, float]) -> tuple[float, int]:
    """Sweeps with the same FtF and FtX, up to ``plan``'s count, stopping
    once one moves F by at most its fraction of the first one's move (a sweep
    that moves nothing leaves every later one nothing to do). Returns the
    first sweep's violation (the stopping rule's) and the sweeps made."""
    limit, eps = plan
    violation, first = sweep(F, FtF, FtX)
    done = 1
    while done < limit and first > 0:
        _, moved = sweep(F, FtF, FtX, violation=False)
        done += 1
        if moved <= eps * eps * first:
            break
    return violation, done


def _regularized(HHt: np.ndarray, XHt: np.ndarray, l1: float, l2: float):
    HHt = HHt.copy()
    if l2:
        HHt.flat[:: HHt.shape[0] + 1] += l2
    return HHt, XHt - l1 if l1 else XHt


@dataclass(frozen=True)
class RowSweeps:
    """What a block row's HALS step takes besides the arrays: W's
    penalties, whether to add up H's terms and |X_b|^2, the sweeps' rule."""

    l1_W: float = 0.0
    l2_W: float = 0.0
    update_H: bool = True
    with_sq: bool = True
    hals_sweeps: int | str = 1


def _row_hals(block, Wb, H, HHt, how: RowSweeps):
    """A block row's sweeps of W and its terms of H's sweep and of the
    objective (|X_b|^2 only ``with_sq``: it is the same every iteration).
    A float32 block is multiplied in float32, its k x n sums added up in
    float64 (:func:`dmf.nmf.beta.work_dtype`); the sweeps are float64."""
    l1_W, l2_W, update_H, with_sq = how.l1_W, how.l2_W, how.update_H, how.with_sq
    hals_sweeps = how.hals_sweeps
    k, n = H.shape
    XHt_t = np.empty((k, block.shape[0]))  # X_b H^T in Fortran order, for the sweeps
    sq = 0.0
    sparse = scipy.sparse.issparse(block)
    work = np.dtype(np.float64) if sparse else work_dtype(block.dtype)
    Hw = as_work(H, work)
    slices = list(row_slices(block, work.itemsize))
    scratch = Scratch(slices[0].stop if slices else 0, n, k, work)
    for sl in slices:
        if sparse:
            xs = as_csr(block[sl])
            XHt_t[:, sl] = np.asarray(xs @ H.T).T
            if with_sq:
                sq += float(xs.data @ xs.data)
            continue
        xs = scratch.widen(block[sl])
        XHt_t[:, sl] = (xs @ Hw.T).T  # X_s H^T: see beta.x_times_ht
        if with_sq:  # in float64 whatever X's precision
            sq += scratch.square_sum(xs)
    XHt = XHt_t.T
    old = [sq, float(np.vdot(Wb, XHt)), float(Wb.sum()), float(np.vdot(Wb, Wb))]
    G_old = Wb.T @ Wb
    W = np.array(Wb, dtype=np.float64, order="F")
    violation, made = repeated_sweeps(W, *_regularized(HHt, XHt, l1_W, l2_W),
                                      sweep_plan(hals_sweeps, W.shape[0], n, k))
    W = np.ascontiguousarray(W)
    WtX = np.zeros((k, n))
    Ww = as_work(W, work)
    for sl in slices if update_H else ():  # transform: H's terms unused
        if sparse:
            WtX += np.asarray(as_csr(block[sl]).T @ W[sl]).T
        else:
            WtX += np.matmul(Ww[sl].T, scratch.widen(block[sl]), out=scratch.num)
    sq, cross, w_l1, w_l2 = old
    return W, {"WtX": WtX, "WtW": W.T @ W, "G_old": G_old, "sq": sq, "cross": cross,
               "w_l1": w_l1, "w_l2": w_l2, "violation": violation, "made": made}


def sweep_parts(k: int, n: int) -> dict[str, tuple[int, ...]]:
    """The named sums of :func:`_row_hals` and their shapes: W^T X and W^T W
    of the new W (H's sweep), W^T W of the given W, |X|^2 and <W, X H^T>
    (the objective's Gram trick), W's norms, the sweeps' violation and count."""
    return {"WtX": (k, n), "WtW": (k, k), "G_old": (k, k), **dict.fromkeys(
        ("sq", "cross", "w_l1", "w_l2", "violation", "made"), ())}


class HALSSolver(Solver):
    """HALS on the engine: W's sweeps in the block rows' tasks, H's here,
    ``hals_sweeps`` of each per iteration ("auto": Gillis and Glineur's rule,
    see :data:`SWEEP_ALPHA`; 1: scikit-learn's cd)."""

    name = "nmf-hals"

    def __init__(self, k: int, *, regularization: tuple[float, float, float, float], init,
                 params: dict, update_H: bool = True, hals_sweeps="auto"):
        self.k, self.regularization, self.start = k, regularization, init
        self.update_H, self.hals_sweeps = update_H, hals_sweeps
        self.tol = float(params["tol"])
        self.params = {**params, "k": k, "beta": 2.0, "solver": "hals"}

    def init(self, X, ctx: Context) -> State:
        W, H = self.start(X, ctx)
        return {"W": W, "H": np.asarray(H, dtype=np.float64), "violation_init": 0.0}

    def step(self, X, state: State, ctx: Context) -> tuple[State, Stats]:
        k, update_H, hals_sweeps, regularization = (self.k, self.update_H, self.hals_sweeps,
                                                    self.regularization)
        l1_W, l1_H, l2_W, l2_H = regularization
        W, H = state["W"], state["H"]
        n = H.shape[1]
        HHt = H @ H.T
        known = {"sq": state["sq"]} if "sq" in state else {}
        how = RowSweeps(l1_W, l2_W, update_H, with_sq=not known, hals_sweeps=hals_sweeps)
        W_new, sums = row_pass(_row_hals, X, W, H, HHt, how, parts=sweep_parts(k, n))
        WtX, WtW, G_old = sums["WtX"], sums["WtW"], sums["G_old"]
        sq, cross, w_l1, w_l2, violation, made_W = (float(sums[name]) for name in (
            "sq", "cross", "w_l1", "w_l2", "violation", "made"))
        known = known or {"sq": sq}  # |X|^2 from the first pass, kept in the state
        sq = float(known["sq"])
        div = 0.5 * (sq - 2 * cross + float(np.vdot(G_old, HHt)))
        loss = div + penalty(w_l1, w_l2, H, regularization)
        Ht = H.T.copy(order="F")
        made_H = 0
        if update_H:
            violation_H, made_H = repeated_sweeps(
                Ht, *_regularized(WtW, WtX.T, l1_H, l2_H),
                sweep_plan(hals_sweeps, n, X.shape[0], k))
            violation += violation_H
        first = ctx.iteration == 0
        violation_init = violation if first else float(state["violation_init"])
        done = violation_init == 0 or violation / violation_init <= self.tol
        return ({"W": W_new, "H": Ht.T.copy(), "violation_init": violation_init, **known},
                Stats(loss=float(loss), done=bool(done),
                      extra={"divergence": div, "violation": violation,
                             "sweeps_W": made_W / X.numblocks[0], "sweeps_H": made_H}))

    def result(self, X, state: State):
        return finish(X, state["W"], state["H"], 2.0, self.regularization, solver="hals",
                      params=self.params)


