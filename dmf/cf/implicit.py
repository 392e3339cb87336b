"""Implicit-feedback ALS (Hu, Koren and Volinsky 2008), by conjugate gradient.

Every (user, item) pair counts: preference p_ui = [r_ui > 0] with confidence
c_ui = 1 + alpha r_ui, and the objective is

    sum_{all u, i} c_ui (p_ui - x_u . y_i)^2 + reg (|X|^2 + |Y|^2)

(plain lambda, as Hu et al. and the ``implicit`` package use: the sum runs
over every pair, so no count scaling). User u's normal equations are
(Y^T Y + Y^T (C_u - I) Y + reg I) x_u = Y^T C_u p_u, and C_u - I is zero
off u's ratings: Y^T Y (k x k) is computed once per half-step (it comes out
of the previous half-step's tasks), the rest costs only u's nonzeros. As the
``implicit`` package does, the system is not formed: ``cg_steps`` steps of
conjugate gradient from the previous x_u (warm start), each a product with
u's rows of Y, compiled, one call per block
(:func:`dmf.cf.kernels.implicit_rows`).

The objective is known at no extra pass: it equals
trace(X^T X Y^T Y) + sum over nonzeros of [c (p - x.y)^2 - (x.y)^2] +
reg (|X|^2 + |Y|^2), and the item half-step's tasks add up the nonzero
terms and Y^T Y of the factors they return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmf.blocks import row_pass
from dmf.cf import kernels
from dmf.cf.explicit import finish
from dmf.cf.passes import as_csr, bounded_rows, random_rows
from dmf.engine.driver import Context, Solver, State, Stats

#: The ``implicit`` package's start: small factors.
INIT_SCALE = 0.01


@dataclass(frozen=True)
class RowSolve:
    """What a block's implicit half-step takes besides the arrays: the
    confidence scale, the penalty, the conjugate gradient steps per row."""

    alpha: float
    reg: float
    steps: int


def _half_rows(block, own_b, other, gram, losses, how: RowSolve):
    """New rows of one block by CG (compiled, one call), and their sums
    (:func:`gram_parts`)."""

    alpha, reg, steps = how.alpha, how.reg, how.steps
    block = as_csr(block)
    Y = kernels.aligned(other)
    k = Y.shape[1]
    A0 = np.asarray(gram, dtype=np.float64) + reg * np.eye(k)
    new = np.array(own_b, dtype=np.float64, order="C")
    nz = kernels.implicit_rows(*kernels.csr_arrays(block), Y, A0, new, float(alpha), int(steps),
                               losses)
    return new, {"sq_norm": float(np.vdot(new, new)), "gram": new.T @ new, "nonzero_terms": nz}


def gram_parts(k: int) -> dict[str, tuple[int, ...]]:
    """The named sums of :func:`_half_rows`: |X|^2 of the new rows X (the
    penalty), X^T X (the next half-step's Gram matrix, and the objective's
    trace term) and the objective's terms over the nonzeros."""
    return {"sq_norm": (), "gram": (k, k), "nonzero_terms": ()}


def _gram_of(V) -> np.ndarray:
    """V^T V of a tall dask array (dask sums the blocks' products in a tree
    fixed by the chunks)."""
    return np.asarray((V.T @ V).compute(), dtype=np.float64)


class ImplicitSolver(Solver):
    """Implicit ALS on the engine (state: X and Y, dask; Y^T Y, numpy): a
    user half-step, then an item half-step, each one read of its view."""

    name = "cf-als-implicit"

    def __init__(self, ratings, k: int, *, reg: float, alpha: float, cg_steps: int,
                 params: dict):
        self.ratings, self.k, self.reg, self.params = ratings, k, reg, params
        self.by_user = bounded_rows(ratings.by_user, k)
        self.by_item = bounded_rows(ratings.by_item, k)
        self.how = RowSolve(alpha, reg, cg_steps)

    def init(self, _X, ctx: Context) -> State:
        seed = int(ctx.rng.integers(2**63))
        U = random_rows(self.by_user.chunks[0], self.k, seed, INIT_SCALE, positive=True)
        V = random_rows(self.by_item.chunks[0], self.k, seed + 1, INIT_SCALE, positive=True)
        return {"U": U, "V": V, "VtV": _gram_of(V)}

    def step(self, _X, state: State, _ctx: Context) -> tuple[State, Stats]:
        parts = gram_parts(self.k)
        U, user = row_pass(_half_rows, self.by_user, state["U"], state["V"], state["VtV"],
                           False, self.how, parts=parts)
        UtU = user["gram"]
        V, item = row_pass(_half_rows, self.by_item, state["V"], U, UtU, True, self.how,
                           parts=parts)
        VtV = item["gram"]
        loss = (float(np.vdot(UtU, VtV)) + float(item["nonzero_terms"])
                + self.reg * (float(user["sq_norm"]) + float(item["sq_norm"])))
        return {"U": U, "V": V, "VtV": VtV}, Stats(loss=loss)

    def result(self, _X, state: State):
        return finish(self.ratings, state["U"], state["V"], self.k, biases=False, mu=0.0,
                      meta={"algorithm": "cf-als-implicit"})


#: The name ``dmf.cf.als`` builds it by.
