"""Truncated SVD by power iteration with deflation, on the engine.

The textbook method: for each component j in turn,

    v <- A^T A v / ||A^T A v||,   v kept orthogonal to v_1 .. v_{j-1},
    sigma_j^2 = v^T A^T A v       (the Rayleigh quotient),

until v stops moving; then start the next component from a fresh random
vector. A^T A is never formed, nor is a deflated matrix: one step is one
pass over X, sum over row blocks of X_b^T (X_b v) in float64, and deflation
projects the found vectors out of the result (twice, which keeps the
projection orthogonal to working precision).

Convergence of component j is measured by the eigen-residual
``||A^T A v - sigma^2 v|| / sigma^2``; each step shrinks it by about
(sigma_{j+1} / sigma_j)^2, so the method is slow when singular values are
close (use ``method="randomized"`` then). The singular value's error is of
the order of the residual squared.

Because it works with A^T A, values below about ``sqrt(max(m, n) * eps)``
times sigma_1 (eps of float64; about 5e-7 sigma_1 for n = 1000) cannot be
told from zero: they are reported as exactly 0, with orthonormal vectors.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from dmf.engine.driver import Context, Solver, State, Stats
from dmf.errors import DmfWarning, warn
from dmf.linalg.common import assemble, finish_sides, null_cutoff
from dmf.linalg.products import gram_apply, gram_with_moments, split_gram


def _project_out(w: np.ndarray, Q: np.ndarray) -> np.ndarray:
    for _ in range(2):  # twice is enough (Kahan-Parlett)
        w = w - Q @ (Q.T @ w)
    return w


def _start_vector(rng: np.random.Generator, found: np.ndarray) -> np.ndarray:
    v = _project_out(rng.standard_normal(found.shape[0]), found)
    return v / np.linalg.norm(v)


class PowerSolver(Solver):
    """The top-``k`` singular triplets, one component after another;
    ``max_iter`` is per component. With ``transposed`` the solver is given
    X^T and returns X's factors."""

    name = "svd-power"

    def __init__(self, k: int, *, tol: float, max_iter: int, transposed: bool = False):
        self.k, self.tol, self.max_iter, self.transposed = k, tol, max_iter, transposed
        self.params = {"k": k, "tol": tol, "max_iter": max_iter, "transposed": transposed}

    def init(self, X, ctx: Context) -> State:
        n = X.shape[1]
        V = np.zeros((n, self.k))
        return {"V": V, "sigma2": np.zeros(self.k), "v": _start_vector(ctx.rng, V[:, :0]),
                "j": 0, "inner": 0, "top": 0.0, "colsum": np.zeros(n), "sumsq": 0.0,
                "rowsq": 0.0, "first": True}

    def step(self, X, state: State, ctx: Context) -> tuple[State, Stats]:
        k, tol = self.k, self.tol
        V, sigma2 = state["V"].copy(), state["sigma2"].copy()
        v, j, inner, top = state["v"], int(state["j"]), int(state["inner"]) + 1, state["top"]
        moments = {}
        if state["first"]:  # X's moments ride along with the first pass
            w, moments = split_gram(gram_with_moments(X, v[:, None]).compute())
        else:
            w = gram_apply(X, v[:, None]).compute()["gram"]
        w = _project_out(w[:, 0], V[:, :j])
        lam = float(v @ w)
        top = max(top, lam)
        null = lam <= null_cutoff(X.shape, X.dtype) * top or top == 0.0
        residual = 0.0 if null else float(np.linalg.norm(w - lam * v) / lam)
        if null or residual <= tol or inner >= self.max_iter:
            if not null and residual > tol:
                warn(f"power iteration: component {j + 1} stopped after {inner} "
                     f"steps with residual {residual:.2e} > tol {tol:g}; singular "
                     "values may be close (try method='randomized')", DmfWarning)
            # v is orthonormal to the found vectors; the step's w is a
            # better vector when the component is real.
            best = v if null else _project_out(w, V[:, :j])
            V[:, j] = best / np.linalg.norm(best)
            sigma2[j] = 0.0 if null else lam
            j, inner = j + 1, 0
            if j < k:
                v = _start_vector(ctx.rng, V[:, :j])
        else:
            v = w / np.linalg.norm(w)
        new = {**state, **moments, "V": V, "sigma2": sigma2, "v": v, "j": j, "inner": inner,
               "top": top, "first": False}
        return new, Stats(loss=residual, done=j == k,
                          extra={"component": j, "sigma": float(np.sqrt(max(lam, 0.0))),
                                 "note": f"component {min(j + 1, k)}/{k}"})

    def result(self, X, state: State) -> tuple[dict, dict]:
        arrays = svd_from_right_vectors(X, state["V"], np.sqrt(state["sigma2"]))
        return finish_sides(X, arrays, state, self.transposed)


#: The name ``dmf.linalg.svd`` builds it by.


def svd_from_right_vectors(X: da.Array, V: np.ndarray, sigma: np.ndarray) -> dict:
    """U, S, Vt from right singular vectors: U = X V / sigma for nonzero
    sigma, orthonormal completion for zero ones (never a division by 0)."""
    scale = np.divide(1.0, sigma, out=np.zeros_like(sigma), where=sigma > 0)
    return assemble(X, V * scale, sigma, V, len(sigma))
