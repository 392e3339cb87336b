"""Masked NMF: non-negative factors fitted to the observed ratings only.

Minimizes, over the observed entries (mask M),

    sum_{observed} (r_ui - w_u . h_i)^2 + reg (sum_u n_u |w_u|^2 + sum_i n_i |h_i|^2)

with W, H >= 0 by multiplicative updates (Lee and Seung, with the mask):

    W <- W * (M * R) H^T / ((M * (W H)) H^T + reg n W)

and the same for H^T from the item side. W H is formed only at the observed
entries: for user u, (M * (W H)) H^T is sum over u's ratings of
(w_u . h_i) h_i, a sparse matrix with those values times H^T, so a
half-step costs O(nnz k) and reads one view of the ratings once. Each
update is the minimizer of a separable majorizer of the objective, so the
objective never increases (tested on the loss history). No global mean or
biases: W H alone predicts the ratings, which must be non-negative.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from dmf.blocks import row_pass
from dmf.cf.explicit import finish
from dmf.cf.normal import row_of_each, rowwise_dot
from dmf.cf.passes import OBJECTIVE_PARTS, as_csr, bounded_rows, random_rows, row_groups
from dmf.engine.driver import Context, Solver, State, Stats

#: Denominators are kept at least this (a zero one would divide by zero;
#: its numerator is zero too, so the entry stays where it is).
EPSILON = np.finfo(np.float64).eps


def _half_rows(block, own_b, other, reg, errors):
    """Multiplicative update of one block's rows, and the objective's sums
    (:data:`dmf.cf.passes.OBJECTIVE_PARTS`): sum n_u |w_u|^2, the updated
    rows' squared error (if ``errors``), the ratings."""
    block = as_csr(block)
    H = np.asarray(other, dtype=np.float64)
    new = np.empty((block.shape[0], H.shape[1]))
    penalty = sq_err = 0.0
    for r0, r1 in row_groups(block.indptr):
        sub = block[r0:r1]
        W = np.asarray(own_b[r0:r1], dtype=np.float64)
        rows = row_of_each(sub.indptr)
        Hg = H[sub.indices]
        counts = np.diff(sub.indptr).astype(np.float64)
        wh = scipy.sparse.csr_matrix((rowwise_dot(W[rows], Hg), sub.indices, sub.indptr),
                                     shape=sub.shape)
        num = np.asarray(sub @ H)
        den = np.asarray(wh @ H) + reg * counts[:, None] * W
        W = W * num / np.maximum(den, EPSILON)
        new[r0:r1] = W
        penalty += float(counts @ np.einsum("ij,ij->i", W, W))
        if errors:
            e = sub.data - rowwise_dot(W[rows], Hg)
            sq_err += float(e @ e)
    return new, {"penalty": penalty, "sq_err": sq_err, "count": float(block.nnz)}


class MaskedSolver(Solver):
    """Masked NMF on the engine (state: W and H^T, dask arrays): a user
    half-step, then an item half-step, each one read of its view."""

    name = "cf-masked-nmf"

    def __init__(self, ratings, k: int, *, reg: float, mean: float, params: dict):
        self.ratings, self.k, self.reg, self.params = ratings, k, reg, params
        self.by_user = bounded_rows(ratings.by_user, k)
        self.by_item = bounded_rows(ratings.by_item, k)
        # scikit-learn's random start: |N(0, 1)| sqrt(mean / k), here of the
        # observed ratings
        self.scale = float(np.sqrt(max(mean, EPSILON) / k))

    def init(self, _X, ctx: Context) -> State:
        seed = int(ctx.rng.integers(2**63))
        return {"U": random_rows(self.by_user.chunks[0], self.k, seed, self.scale,
                                 positive=True),
                "V": random_rows(self.by_item.chunks[0], self.k, seed + 1, self.scale,
                                 positive=True),
                "rmse": float("nan")}

    def step(self, _X, state: State, _ctx: Context) -> tuple[State, Stats]:
        reg = self.reg
        U, user = row_pass(_half_rows, self.by_user, state["U"], state["V"], reg, False,
                           parts=OBJECTIVE_PARTS)
        V, item = row_pass(_half_rows, self.by_item, state["V"], U, reg, True,
                           parts=OBJECTIVE_PARTS)
        sq_err = float(item["sq_err"])
        rmse = float(np.sqrt(sq_err / float(item["count"])))
        loss = sq_err + reg * (float(user["penalty"]) + float(item["penalty"]))
        return {"U": U, "V": V, "rmse": rmse}, Stats(loss=loss, extra={"train_rmse": rmse})

    def result(self, _X, state: State):
        return finish(self.ratings, state["U"], state["V"], self.k, biases=False, mu=0.0,
                      meta={"algorithm": "cf-masked-nmf", "train_rmse": state["rmse"]})


#: The name ``dmf.cf.als`` builds it by.
