"""Exact SVD of a tall matrix from its Gram matrix X^T X, in one pass.

One pass sums G = X^T X = sum_b X_b^T X_b over the row blocks, in float64
(float32 blocks are widened a slice at a time before they are multiplied;
dense slices through BLAS ``dsyrk``), by dask's fixed reduction tree, with
X's moments in the same tasks. Then in memory G = V diag(lam) V^T
(``numpy.linalg.eigh``), S = sqrt(lam), and U = X V S^-1, formed block by
block only when U is computed (one more pass).

What it costs in precision: the condition number is squared. Rounding in G
is about max(m, n) eps lam_1, so s_i comes out with a relative error of
about eps (s_1 / s_i)^2 (where ``tsqr`` gets eps s_1 / s_i), and directions
with s_i <= sqrt(max(m, n) eps) s_1 (2.1e-6 s_1 for m = 20000 in float64)
cannot be told from rounding: they are reported as exactly 0, U = X V S^-1
is formed only for the values above that cut-off, and the vectors of the
others are completed to orthonormal ones (never a division by a rounding
error, never 1e15). Prefer it to ``tsqr`` for float32 data (whose own
rounding, eps_32 s_1, is far above what the float64 Gram matrix loses), for
sparse X, or when only the leading values matter and speed does: it does
half the arithmetic of a QR and nothing but one symmetric product per slice.
"""

from __future__ import annotations

import numpy as np

from dmf.engine.driver import Context, Solver, State, Stats
from dmf.linalg.common import assemble, finish_sides, null_cutoff
from dmf.linalg.products import gram_matrix_with_moments, split_gram

#: G is n x n in memory: refused above this n.
GRAM_MAX = 8192


def gram_factors(X, G: np.ndarray, k: int) -> dict:
    """U (lazy, X V S^-1), S, Vt from G = X^T X: values at or below the
    cut-off ``null_cutoff`` (on s^2 / s_1^2) are exact zeros.

    Examples
    --------
    >>> import dask.array as da
    >>> A = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])   # rank 1
    >>> r = gram_factors(da.from_array(A), A.T @ A, 2)
    >>> r["S"].tolist(), bool(np.isfinite(r["U"].compute()).all())
    ([2.0, 0.0], True)
    """
    lam, W = np.linalg.eigh(G)
    lam, W = lam[::-1], W[:, ::-1]
    top = max(float(lam[0]), 0.0) if len(lam) else 0.0
    keep = lam > null_cutoff(X.shape, X.dtype) * top if top > 0 else np.zeros(len(lam), dtype=bool)
    S = np.sqrt(lam[keep])
    V = W[:, keep]
    return assemble(X, V / S, S, V, k)  # U = X V S^-1, for the kept values only


class GramSolver(Solver):
    """One step: G = X^T X and X's moments in one pass; ``result`` is
    :func:`gram_factors`. With ``transposed`` the solver is given X^T and
    returns X's factors."""

    name = "svd-gram"

    def __init__(self, k: int, *, transposed: bool):
        self.k, self.transposed = k, transposed
        self.params = {"k": k, "transposed": transposed}

    def init(self, X, _ctx: Context) -> State:
        n = X.shape[1]
        return {"G": np.zeros((n, n)), "colsum": np.zeros(n), "sumsq": 0.0, "rowsq": 0.0}

    def step(self, X, _state: State, _ctx: Context) -> tuple[State, Stats]:
        G, moments = split_gram(gram_matrix_with_moments(X).compute())
        return ({"G": G, **moments},
                Stats(loss=0.0, done=True, extra={"note": "X^T X"}))

    def result(self, X, state: State):
        return finish_sides(X, gram_factors(X, state["G"], self.k), state, self.transposed)


#: The name ``dmf.linalg.svd`` builds it by.
