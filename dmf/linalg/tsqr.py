"""Exact truncated SVD of a tall matrix through dask's tall-skinny QR.

X = Q R (dask's ``tsqr``: a QR per row block, then of the stacked R's,
recursively while the stack is too tall for one block: a tree fixed by the
chunks), then R = U_R S V^T in memory (n x n, n the smaller side), so
X = (Q U_R) S V^T. X must be tall (m >= n): ``dmf.svd`` refuses a wide X
for ``method="tsqr"`` and passes X^T itself for ``"auto"``. Nothing is
squared: singular values are accurate to
about eps s_1 in absolute terms (where ``gram`` and ``randomized`` resolve
only down to sqrt(eps) s_1), at the price of an n x n R per block and of
dask's arithmetic in X's own precision. One pass gives S and V^T (with X's
moments); U = Q U_R recomputes Q from X when it is computed: one more pass.
Values at or below 10 sqrt(n) eps s_1 (eps of X's dtype, n the small side:
:func:`tsqr_cutoff`) are reported as 0: the rounding of the QR's n-term
sums, measured at 0.2 to 1.6 eps s_1 on rank-deficient inputs up to
n = 100, stays below it, and real values above it are kept (a float32
100000 x 4 matrix with s = 1, .1, .01, .001 keeps all four).
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from dmf.engine.driver import Context, Solver, State, Stats
from dmf.linalg.common import finish_sides, fix_signs
from dmf.linalg.products import column_moments, split_moments

#: R is n x n per block and in memory: refused above this n.
TSQR_MAX = 8192


def tall_blocks(A: da.Array) -> da.Array:
    """A with whole rows per block and each block at least as tall as wide
    (what dask's tsqr needs)."""
    n = A.shape[1]
    if A.numblocks[1] > 1:
        A = A.rechunk({1: -1})
    if min(A.chunks[0]) < n:
        A = A.rechunk({0: max(n, max(A.chunks[0]))})
    return A


def tsqr_cutoff(n: int, dtype) -> float:
    """Relative cut-off on s_i / s_1 at or below which a value of R counts
    as rounding: 10 sqrt(n) eps(dtype).

    Examples
    --------
    >>> f"{tsqr_cutoff(4, np.float32):.1e}", f"{tsqr_cutoff(100, np.float64):.1e}"
    ('2.4e-06', '2.2e-14')
    """
    return 10.0 * np.sqrt(n) * float(np.finfo(dtype).eps)


class TsqrSolver(Solver):
    """One step: R of X's tall-skinny QR and X's moments in one pass;
    ``result`` takes R's SVD and forms U = Q U_R lazily. With
    ``transposed`` the solver is given X^T and returns X's factors."""

    name = "svd-tsqr"

    def __init__(self, k: int, *, transposed: bool):
        self.k, self.transposed = k, transposed
        self.params = {"k": k, "transposed": transposed}

    def init(self, X, _ctx: Context) -> State:
        n = X.shape[1]
        return {"R": np.zeros((n, n)), "colsum": np.zeros(n), "sumsq": 0.0, "rowsq": 0.0}

    def step(self, X, _state: State, _ctx: Context) -> tuple[State, Stats]:
        A = tall_blocks(X)
        _, R = da.linalg.tsqr(A)
        R, moments = dask.compute(R, column_moments(A))
        return ({"R": np.asarray(R, dtype=np.float64), **split_moments(moments)},
                Stats(loss=0.0, done=True))

    def result(self, X, state: State):
        k = self.k
        A = tall_blocks(X)
        Q, _ = da.linalg.tsqr(A)  # lazy: computed again with U
        Ur, S, Vt = np.linalg.svd(state["R"])
        S = np.where(S > tsqr_cutoff(X.shape[1], X.dtype) * S[0], S, 0.0) if len(S) else S
        signs = fix_signs(Vt[:k].T)
        U = Q @ da.from_array((Ur[:, :k] * signs).astype(Q.dtype), chunks=-1)
        arrays = {"U": U.rechunk((X.chunks[0], -1)).astype(X.dtype),
                  "S": S[:k].astype(X.dtype), "Vt": (Vt[:k] * signs[:, None]).astype(X.dtype)}
        return finish_sides(X, arrays, state, self.transposed)


#: The name ``dmf.linalg.svd`` builds it by.
