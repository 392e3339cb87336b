"""NMF on the kept entries of X only, for held-out rank selection (Wold's
holdout), one read of X per iteration.

A deterministic pseudo-random share of the entries is held out: entry
(i, j) is held out when a 64-bit hash of (seed, i * n + j) falls below
``fraction`` of its range (:func:`held_out`). The hash is computed per row
slice from the global indices, so no mask is stored or sent, and the same
entries are held out whatever the chunks, the number of workers, and k.

The Frobenius multiplicative updates, restricted to the kept entries
(M = 1 where kept), are

    W <- W * ((M * X) H^T) / ((M * (W H)) H^T)
    H <- H * (W^T (M * X)) / (W^T (M * (W H)))

and, as in :mod:`dmf.nmf.mu`, one task per block row updates its rows of W
and adds its terms of the H update, while the block is in memory. The same
pass measures the squared error of the factors it was given on the held-out
entries (and on the kept ones), so the errors lag the factors by one
iteration. WH is formed one row slice at a time and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np
import scipy.sparse

from dmf.blocks import Tall, row_pass
from dmf.engine.driver import Context, Solver, State, Stats
from dmf.linalg.hashing import uniform_hash
from dmf.linalg.products import row_slices
from dmf.nmf.beta import EPSILON
from dmf.nmf.init import random_init

#: Scalars each block adds up: held-out sum of e^2, of e^4, count; kept sum of e^2, count.
_N_SCALARS = 5

#: W updates per block and pass (Gillis and Glineur's accelerated MU): the
#: block is in memory, so they cost arithmetic, not reads, and MU from a
#: random start gets to the rank's error in several times fewer passes.
INNER = 5


def held_out(seed: int, start: int, rows: int, n: int, fraction: float) -> np.ndarray:
    """Which entries of rows ``start .. start + rows`` (of a matrix with
    ``n`` columns) are held out: a boolean rows x n array.

    Examples
    --------
    >>> mask = held_out(0, 0, 200, 100, 0.1)
    >>> round(float(mask.mean()), 2)
    0.1
    >>> bool((held_out(0, 50, 10, 100, 0.1) == mask[50:60]).all())
    True
    """
    index = (np.arange(start, start + rows, dtype=np.uint64)[:, None] * np.uint64(n)
             + np.arange(n, dtype=np.uint64)[None, :])
    # compare the top 53 bits with fraction: exact in float64
    return uniform_hash(seed, index) < fraction


@dataclass(frozen=True)
class Holdout:
    """Which entries are held out (``fraction`` of them, placed by ``seed``)
    and how many inner W updates a block row makes."""

    seed: int
    fraction: float
    inner: int


def _masked_step(block, Wb, H, rows, holdout: Holdout):
    """The masked W update of a block row, its terms of the H update and its
    errors: (new W rows, named sums). ``rows`` holds the block's
    global row numbers (its first one places the mask)."""
    seed, fraction, inner = holdout.seed, holdout.fraction, holdout.inner
    k, n = H.shape
    W_new = np.empty_like(Wb)
    A = np.zeros((k, n))
    B = np.zeros((k, n))
    sums = np.zeros(_N_SCALARS)
    first = int(rows[0]) if len(rows) else 0
    for sl in row_slices(block):
        part = block[sl]
        xs = part.toarray() if scipy.sparse.issparse(part) else part
        xs = np.asarray(xs, dtype=np.float64)
        hold = held_out(seed, first + sl.start, xs.shape[0], n, fraction)
        Ws = Wb[sl]
        WH = Ws @ H
        err = xs - WH
        e_held = err[hold]
        sq = e_held * e_held
        sums[0] += float(sq.sum())
        sums[1] += float(sq @ sq)
        sums[2] += sq.size
        err[hold] = 0.0
        sums[3] += float(np.vdot(err, err))
        sums[4] += hold.size - sq.size
        xs = np.where(hold, 0.0, xs)  # M * X
        XHt = xs @ H.T
        Wn = Ws
        for _ in range(inner):  # the slice is in memory: more W updates cost no read
            WH[hold] = 0.0  # M * (W H)
            den = WH @ H.T
            den[den == 0] = EPSILON
            Wn = Wn * XHt / den
            WH = Wn @ H
        W_new[sl] = Wn
        WH[hold] = 0.0
        A += Wn.T @ xs
        B += Wn.T @ WH
    # held out: sum e^2, sum e^4, count; kept: sum e^2, count
    return W_new, {"A": A, "B": B, "held": sums[:3], "kept": sums[3:]}


def _masked_pass(X: da.Array, W: da.Array, H: np.ndarray, holdout: Holdout):
    """One read of X: the new W (persisted) and the summed named terms."""
    k, n = H.shape
    # each block's global row numbers: its first one places the mask
    rows = da.arange(X.shape[0], chunks=(X.chunks[0],), dtype=np.int64)
    parts = {"A": (k, n), "B": (k, n), "held": (3,), "kept": (2,)}
    return row_pass(_masked_step, X, W, H, Tall(rows), holdout, parts=parts)


class HoldoutSolver(Solver):
    """Masked Frobenius MU on the engine, from scikit-learn's random init
    (``mean`` is X's mean). The loss is the mean squared error on the kept
    entries; ``result`` reports the held-out errors of the last pass. It
    runs its ``max_iter`` iterations: rank selection compares them."""

    name = "nmf-masked"

    def __init__(self, k: int, *, seed: int, fraction: float, mean: float,
                 inner: int = INNER):
        self.k, self.mean, self.holdout = k, mean, Holdout(seed, fraction, inner)
        self.params = {"k": k, "holdout": fraction, "mask_seed": seed, "inner": inner}

    def init(self, X, ctx: Context) -> State:
        W, H = random_init(self.k, float(np.sqrt(self.mean / self.k)))(X, ctx)
        return {"W": W, "H": np.asarray(H, dtype=np.float64), "held": [0.0, 0.0, 0.0],
                "kept": [0.0, 0.0]}

    def step(self, X, state: State, _ctx: Context) -> tuple[State, Stats]:
        H = state["H"]
        W_new, sums = _masked_pass(X, state["W"], H, self.holdout)
        A, B = sums["A"], sums["B"].copy()
        held, kept = sums["held"].tolist(), sums["kept"].tolist()
        B[B == 0] = EPSILON
        train_mse = kept[0] / max(kept[1], 1.0)
        return ({"W": W_new, "H": H * A / B, "held": held, "kept": kept},
                Stats(loss=train_mse, done=False))

    def converged(self, _history: list[float], _tol: float) -> bool:
        return False

    def result(self, _X, state: State):
        sse, s4, count = state["held"]
        count = max(count, 1.0)
        mse = sse / count
        # the standard error of the mean of e^2 over the held-out entries
        se = float(np.sqrt(max(s4 / count - mse * mse, 0.0) / count))
        kept_sse, kept_count = state["kept"]
        return {"W": state["W"], "H": state["H"]}, {
            "heldout_mse": mse, "heldout_mse_se": se, "heldout_count": int(count),
            "train_mse": kept_sse / max(kept_count, 1.0)}


__all__ = ["HoldoutSolver", "held_out"]
