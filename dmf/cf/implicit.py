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
u's gathered rows of Y, vectorized over all users of a block.

The objective is known at no extra pass: it equals
trace(X^T X Y^T Y) + sum over nonzeros of [c (p - x.y)^2 - (x.y)^2] +
reg (|X|^2 + |Y|^2), and the item half-step's tasks add up the nonzero
terms and Y^T Y of the factors they return.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from dmf.cf.normal import row_of_each, rowwise_dot
from dmf.cf.passes import as_csr, half_step, packed, random_rows, row_groups
from dmf.engine.driver import Context, Solver, State, Stats

#: The ``implicit`` package's start: small factors.
INIT_SCALE = 0.01
#: A user's CG stops when its squared residual falls below this (as implicit).
RESIDUAL_FLOOR = 1e-20


def cg_rows(Y: np.ndarray, A0: np.ndarray, sub: scipy.sparse.csr_matrix, x: np.ndarray,
            alpha: float, steps: int) -> np.ndarray:
    """``steps`` of conjugate gradient on each row's system, from ``x``.

    A0 = Y^T Y + reg I; row u's matrix is A0 + Y_u^T (C_u - I) Y_u, applied
    to a block of vectors through the rows of Y gathered at u's ratings.
    """
    rows = row_of_each(sub.indptr)
    Yg = Y[sub.indices]
    extra = alpha * sub.data  # c - 1
    pref = (sub.data > 0).astype(np.float64)

    def spread(values: np.ndarray) -> np.ndarray:  # sum over u's ratings of values * y_i
        return np.asarray(scipy.sparse.csr_matrix((values, sub.indices, sub.indptr),
                                                  shape=sub.shape) @ Y)

    # residual b - A x = sum c p y - A0 x - sum (c - 1)(y.x) y
    r = spread((1.0 + extra) * pref - extra * rowwise_dot(Yg, x[rows])) - x @ A0
    p = r.copy()
    rs = np.einsum("ij,ij->i", r, r)
    active = rs > RESIDUAL_FLOOR
    for _ in range(steps):
        if not active.any():
            break
        Ap = p @ A0 + spread(extra * rowwise_dot(Yg, p[rows]))
        pAp = np.einsum("ij,ij->i", p, Ap)
        a = np.where(active & (pAp > 0), rs / np.where(pAp > 0, pAp, 1.0), 0.0)
        x = x + a[:, None] * p
        r = r - a[:, None] * Ap
        rs_new = np.einsum("ij,ij->i", r, r)
        active &= rs_new > RESIDUAL_FLOOR
        p = r + (rs_new / np.where(rs > 0, rs, 1.0))[:, None] * p
        rs = rs_new
    return x


def _half_rows(block, own_b, other, gram, alpha, reg, steps, losses):
    """New rows of one block by CG, and (|X_b|^2, X_b^T X_b, the nonzero
    terms of the objective)."""
    block = as_csr(block)
    Y = np.asarray(other, dtype=np.float64)
    k = Y.shape[1]
    A0 = np.asarray(gram, dtype=np.float64) + reg * np.eye(k)
    new = np.empty((block.shape[0], k))
    nz = 0.0
    for r0, r1 in row_groups(block.indptr):
        sub = block[r0:r1]
        x = cg_rows(Y, A0, sub, np.asarray(own_b[r0:r1], dtype=np.float64), alpha, steps)
        new[r0:r1] = x
        if losses:
            xy = rowwise_dot(Y[sub.indices], x[row_of_each(sub.indptr)])
            c = 1.0 + alpha * sub.data
            nz += float(c @ ((sub.data > 0) - xy) ** 2 - xy @ xy)
    return packed(new, np.concatenate([[float(np.vdot(new, new))], (new.T @ new).ravel(),
                                       [nz]]))


def _gram_of(V) -> np.ndarray:
    """V^T V of a tall dask array (dask sums the blocks' products in a tree
    fixed by the chunks)."""
    return np.asarray((V.T @ V).compute(), dtype=np.float64)


def implicit_solver(ratings, k: int, *, reg: float, alpha: float, cg_steps: int, params: dict
                    ) -> Solver:
    """Implicit ALS on the engine (state: X and Y, dask; Y^T Y, numpy)."""
    by_user, by_item = ratings.by_user, ratings.by_item
    size = 1 + k * k + 1

    def init(_X, ctx: Context) -> State:
        seed = int(ctx.rng.integers(2**63))
        U = random_rows(by_user.chunks[0], k, seed, INIT_SCALE, positive=True)
        V = random_rows(by_item.chunks[0], k, seed + 1, INIT_SCALE, positive=True)
        return {"U": U, "V": V, "VtV": _gram_of(V)}

    def step(_X, state: State, _ctx: Context) -> tuple[State, Stats]:
        U, sums = half_step(_half_rows, by_user, state["U"], state["V"], state["VtV"],
                            alpha, reg, cg_steps, False, size=size)
        UtU = sums[1:1 + k * k].reshape(k, k)
        V, vsums = half_step(_half_rows, by_item, state["V"], U, UtU, alpha, reg, cg_steps,
                             True, size=size)
        VtV = vsums[1:1 + k * k].reshape(k, k)
        loss = float(np.vdot(UtU, VtV)) + vsums[-1] + reg * (sums[0] + vsums[0])
        return {"U": U, "V": V, "VtV": VtV}, Stats(loss=loss)

    def finalize(_X, state: State):
        from dmf.cf.explicit import finish

        return finish(ratings, state["U"], state["V"], k, False, 0.0,
                      {"algorithm": "cf-als-implicit"})

    return Solver(name="cf-als-implicit", params=params, init=init, step=step,
                  finalize=finalize)
