"""Top-k eigenpairs of a symmetric matrix, by magnitude, out of core.

Subspace iteration on X itself (not X^T X, so nothing is squared): with Z
orthonormal (n x l), each step is one pass computing X Z (sum over row
blocks of X_b Z), then Z <- orth(X Z). After q steps, the Rayleigh-Ritz
projection T = Z^T X Z (free from the last pass) gives eigenvalues with
their signs and eigenvectors Z W; the k of largest magnitude are kept.
Passes over X: q + 1, the first of which also checks symmetry. Up to
n = 1000 (``EXACT_MAX``) Z is the whole n x n basis and one pass is exact.

Symmetry is checked, not assumed: for the random start Z, X Z and X^T Z are
computed in the same pass and must agree to rounding (a random test catches
any asymmetry with probability 1). ``assume_symmetric=True`` skips the
check; the upper and lower triangles are then trusted to agree.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from dmf.engine.driver import Context, Solver, State, Stats
from dmf.errors import InputError
from dmf.linalg.common import complete_columns, explained_variance, fix_signs
from dmf.linalg.products import column_moments, split_moments, tall_times, transpose_times
from dmf.linalg.randomized import normalize

#: Up to this n, Z is n x n: the Rayleigh-Ritz step is then exact after one
#: pass (n^3 flops, an n x n matrix in memory), where subspace iteration on
#: k + p columns converges slowly on a flat spectrum (3% off after the
#: default 4 iterations on a 50 x 50 matrix with eigenvalues in [1, 2]).
EXACT_MAX = 1000


def check_square(shape: tuple[int, int], name: str = "X") -> None:
    if shape[0] != shape[1]:
        raise InputError(f"{name}: method='eigh' needs a square symmetric matrix, got "
                         f"{shape[0]} x {shape[1]}; use method='randomized'")


def _top_by_magnitude(Z, T, k):
    lam, W = np.linalg.eigh((T + T.T) / 2)
    order = np.argsort(-np.abs(lam), kind="stable")[:k]
    return lam[order], Z @ W[:, order]


class EighSolver(Solver):
    """Subspace iteration on a symmetric X: ``n_iter + 1`` passes (one when
    n <= ``EXACT_MAX``), the first of which checks symmetry; ``result``
    keeps the ``k`` Ritz pairs of largest magnitude."""

    name = "svd-eigh"

    def __init__(self, k: int, *, n_oversamples: int, n_iter: int, assume_symmetric: bool,
                 shape: tuple[int, int], dtype):
        width = min(k + n_oversamples, shape[0])
        if shape[0] <= EXACT_MAX:  # Z spans all of R^n: exact after one pass, whatever the spectrum
            width, n_iter = shape[0], 0
        self.k, self.n_iter, self.width, self.shape = k, n_iter, width, shape
        self.assume_symmetric = assume_symmetric
        # rounding allowed between X Z and X^T Z, relative to ||X Z||
        self.tolerance = 100 * np.sqrt(shape[0]) * np.finfo(dtype).eps
        self.params = {"k": k, "n_oversamples": n_oversamples, "n_iter": n_iter,
                       "assume_symmetric": assume_symmetric}

    def init(self, X, ctx: Context) -> State:
        return {"Z": normalize(ctx.rng.standard_normal((X.shape[0], self.width)), "QR"),
                "Y": np.zeros((X.shape[0], self.width)), "lam": np.zeros(self.k), "j": 0,
                "colsum": np.zeros(X.shape[1]), "sumsq": 0.0, "rowsq": 0.0}

    def step(self, X, state: State, _ctx: Context) -> tuple[State, Stats]:
        assume_symmetric, n_iter = self.assume_symmetric, self.n_iter
        Z, j = state["Z"], int(state["j"])
        product = tall_times(X, Z, dtype=np.float64)
        new = dict(state)
        if j == 0:  # the moments (and the symmetry check) ride along with the first pass
            Zd = da.from_array(Z, chunks=(X.chunks[0], -1))
            Y, Yt, moments = dask.compute(
                product, transpose_times(X, Zd) if not assume_symmetric else None,
                column_moments(X))
            Yt = None if Yt is None else Yt["product"]
            new.update(split_moments(moments))
            gap = (0.0 if assume_symmetric else
                   np.linalg.norm(Y - Yt) / max(np.linalg.norm(Y), np.finfo(float).tiny))
            if gap > self.tolerance:
                raise InputError(f"X is not symmetric (||X z - X^T z|| / ||X z|| = {gap:.2e} "
                                 "for random z); use method='randomized', or "
                                 "assume_symmetric=True if it is symmetric up to rounding")
        else:
            Y = product.compute()
        lam, _ = _top_by_magnitude(Z, Z.T @ Y, self.k)
        change = (1.0 if j == 0 else float(np.max(np.abs(lam - state["lam"]) /
                                                 np.maximum(np.abs(lam), 1e-300))))
        done = j == n_iter
        new.update(Z=Z if done else normalize(Y, "QR"), Y=Y, lam=lam, j=j + 1)
        return new, Stats(loss=change, done=done, extra={"note": f"step {j}/{n_iter}"})

    def result(self, X, state: State) -> tuple[dict, dict]:
        Z, Y = state["Z"], state["Y"]
        lam, V = _top_by_magnitude(Z, Z.T @ Y, self.k)
        zero = np.abs(lam) <= self.shape[0] * np.finfo(np.float64).eps * np.max(np.abs(lam))
        lam = np.where(zero, 0.0, lam)
        V = complete_columns(V, zero)
        V = V * fix_signs(V)
        # X = sum lam_i v_i v_i^T = U S Vt with U = V, S = |lam|, Vt = sign(lam) V^T
        signs = np.where(lam < 0, -1.0, 1.0)
        arrays = {"U": da.from_array(V.astype(X.dtype), chunks=(X.chunks[0], -1)),
                  "S": np.abs(lam).astype(X.dtype),
                  "Vt": (V * signs).T.astype(X.dtype)}
        variance = explained_variance(arrays["S"], arrays["Vt"],
                                      (state["colsum"], state["sumsq"], state["rowsq"]),
                                      X.shape[0])
        return arrays, {"eigenvalues": lam.tolist(), **variance}


#: The name ``dmf.linalg.svd`` builds it by.
