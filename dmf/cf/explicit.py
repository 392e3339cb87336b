"""Explicit ALS with biases, weighted-lambda regularization (ALS-WR).

Minimizes, over the observed ratings r_ui,

    sum (r_ui - mu - b_u - b_i - p_u . q_i)^2
      + reg (sum_u n_u (|p_u|^2 + b_u^2) + sum_i n_i (|q_i|^2 + b_i^2))

(Zhou et al. 2008: each row's penalty is scaled by its count n_u). mu is the
global mean, fixed. The biases are solved jointly with the factors by the
standard augmentation: in the user half-step user u's unknowns are
x_u = [p_u, b_u] and item i's features [q_i, 1], the targets
r_ui - mu - b_i, so one (k+1) x (k+1) system per user gives both exactly
(formed and solved row by row, compiled: :func:`dmf.cf.kernels.explicit_rows`);
the item half-step is the same with the roles
swapped. Each half-step minimizes the objective over its side exactly, so
the objective never increases.

Factors live as U = [P | b_u] (m x (k+1)) and V = [Q | b_i] (n x (k+1)),
tall dask arrays in the row blocks of ``by_user`` and ``by_item``. A user
half-step is one task per block of ``by_user`` with all of V as one key;
an item half-step one task per block of ``by_item`` with all of U. The item
tasks also add up the squared errors of the factors they return, so the
objective after each iteration is known with no further pass: two reads of
the ratings per iteration (one per view). The state between iterations is
V and the V it was solved from, not U: U is a function of that V, so
holding the old U while the next is solved would only double the largest
factor; the fit's U is solved once more from it at the end (one more read
of ``by_user``, the same bits as the last iteration's). Row blocks larger
than :data:`dmf.cf.passes.TASK_BYTES` of factor slices are split.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from dmf.blocks import row_pass
from dmf.cf import kernels
from dmf.cf.model import result_arrays
from dmf.cf.passes import OBJECTIVE_PARTS, as_csr, bounded_rows, random_rows
from dmf.engine.driver import Context, Solver, State, Stats

#: Scale of the random start of the item factors (the user factors are
#: solved from them first, so only its order matters).
INIT_SCALE = 0.1


@dataclass(frozen=True)
class RowSolve:
    """What a block's ALS-WR half-step takes besides the arrays: the global
    mean, the rank, whether the factors have a bias column, the penalty."""

    mu: float
    k: int
    biases: bool
    reg: float


def _half_rows(block, own_b, other, errors, how: RowSolve):
    """New rows x_u = [p_u, b_u] of one block (compiled, one call), and the
    objective's sums (:data:`dmf.cf.passes.OBJECTIVE_PARTS`): sum n_u
    |x_u|^2, the new rows' squared error (if ``errors``), the ratings."""

    mu, k, biases, reg = how.mu, how.k, how.biases, how.reg
    block = as_csr(block)
    other = kernels.aligned(other)
    new = np.empty((block.shape[0], own_b.shape[1]))
    penalty, sq_err = kernels.explicit_rows(*kernels.csr_arrays(block), other, new, float(mu),
                                            k, biases, float(reg), errors)
    return new, {"penalty": penalty, "sq_err": sq_err, "count": float(block.nnz)}


class ExplicitSolver(Solver):
    """ALS-WR on the engine (state: V and the V it was solved from, dask
    arrays): a user half-step, then an item half-step, each one read of
    its view."""

    name = "cf-als"

    def __init__(self, ratings, k: int, *, reg: float, biases: bool, mu: float, params: dict):
        self.ratings, self.k, self.reg, self.biases, self.mu = ratings, k, reg, biases, mu
        self.params = params
        self.width = k + 1 if biases else k
        self.by_user = bounded_rows(ratings.by_user, self.width)
        self.by_item = bounded_rows(ratings.by_item, self.width)
        self.how = RowSolve(mu, k, biases, reg)

    def user_rows(self, V) -> tuple[da.Array, dict[str, np.ndarray]]:
        """U solved from V (the user half-step; U's previous value is never
        read, so a lazy zeros stands for it)."""
        by_user, width = self.by_user, self.width
        start = da.zeros((by_user.shape[0], width), chunks=(by_user.chunks[0], (width,)))
        return row_pass(_half_rows, by_user, start, V, False, self.how, parts=OBJECTIVE_PARTS)

    def init(self, _X, ctx: Context) -> State:
        seed = int(ctx.rng.integers(2**63))
        V = random_rows(self.by_item.chunks[0], self.width, seed, INIT_SCALE,
                        zero_last=self.biases)
        return {"V": V, "V_before": V, "rmse": float("nan")}

    def step(self, _X, state: State, _ctx: Context) -> tuple[State, Stats]:
        U, user = self.user_rows(state["V"])
        V, item = row_pass(_half_rows, self.by_item, state["V"], U, True, self.how,
                           parts=OBJECTIVE_PARTS)
        sq_err = float(item["sq_err"])
        loss = sq_err + self.reg * (float(user["penalty"]) + float(item["penalty"]))
        rmse = float(np.sqrt(sq_err / float(item["count"])))
        # U is not kept: holding the old U while the next one is solved would
        # hold two user factors at once
        return ({"V": V, "V_before": state["V"], "rmse": rmse},
                Stats(loss=loss, extra={"train_rmse": rmse}))

    def result(self, _X, state: State):
        if "V_before" in state:
            U, _ = self.user_rows(state["V_before"])  # the last step's U, bit for bit
        else:  # a checkpoint of an earlier dmf, whose state held U
            U = state["U"]
        return finish(self.ratings, U, state["V"], self.k, biases=self.biases, mu=self.mu,
                      meta={"algorithm": "cf-als", "train_rmse": state["rmse"]})


#: The name ``dmf.cf.als`` builds it by.


def finish(ratings, U, V, k: int, *, biases: bool, mu: float, meta: dict):
    """Result arrays (P lazy, the rest in memory) and meta of a fit whose
    factors are U = [P | b_u], V = [Q | b_i] (no bias columns without
    biases)."""
    m, n = ratings.shape
    if biases:
        Q, user_bias, item_bias = dask.compute(V[:, :k], U[:, k], V[:, k])
    else:
        Q = np.asarray(V.compute() if hasattr(V, "compute") else V)[:, :k]
        user_bias, item_bias = np.zeros(m), np.zeros(n)
    arrays = result_arrays(U[:, :k], Q, user_bias, item_bias, ratings, ratings.dtype)
    return arrays, {**meta, "global_mean": float(mu) if biases else 0.0, "k": k}
