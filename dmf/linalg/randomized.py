"""Randomized truncated SVD with power iterations, q + 1 passes over X.

The textbook scheme (Halko, Martinsson and Tropp 2011, algorithm 4.4 with a
normalization after every product) reads X 2q + 2 times::

    Y = X Omega;  repeat q times: Y = X (X^T Y), re-orthonormalized;
    Q = orth(Y);  B = Q^T X;  B = U~ S Vt;  U = Q U~

dmf takes its power steps on the n side instead, each in ONE pass, as the
sum over row blocks of X_b^T (X_b Z)::

    Z_0 = orth(Omega);  G_j = X^T X Z_j;  Z_{j+1} = orth(G_j)   (j < q)

and finishes from the last pass alone, which computes G_q = X^T X Z_q and
keeps Y = X Z_q (a by-product: X_b Z_q is formed on the way to
X_b^T X_b Z_q; Y is m x (k + oversamples), small beside X). Then
Y^T Y = Z_q^T G_q = W diag(lam) W^T, so Q = Y W lam^(-1/2) is an orthonormal
basis of range(Y) and

    B = Q^T X = lam^(-1/2) W^T Z_q^T X^T X = lam^(-1/2) W^T G_q^T,

then B = U~ S Vt and U = Q U~ = Y (W lam^(-1/2) U~), without reading X again.
Since Z_q spans (X^T X)^q Omega, range(Y) is range((X X^T)^q X Omega), the
textbook's Q: in exact arithmetic the two schemes give the same U, S, Vt,
with q + 1 passes instead of 2q + 2 (2 when q = 0).

What it costs in precision: Q comes from the Gram matrix Y^T Y, whose
condition number is the square of Y's. Directions with
s_i / s_1 < sqrt(max(m, n) * eps) (about 5e-7 for n = 1000 in float64) cannot
be told from rounding; their singular values are reported as exactly 0 and
their vectors completed to orthonormal ones. The textbook scheme resolves
values down to about eps * s_1, at twice the passes. The small products are
accumulated in float64 (float32 blocks are multiplied in float32 a 2 MiB
slice at a time, see :mod:`dmf.linalg.products`), and Z is
re-orthonormalized (QR or LU) after every product, so float32 input loses
nothing beyond its own rounding.
"""

from __future__ import annotations

import dask
import numpy as np
import scipy.linalg

from dmf.engine.driver import Context, Solver, State, Stats
from dmf.errors import InputError
from dmf.linalg.common import assemble, finish_sides, null_cutoff
from dmf.linalg.products import (
    gram_and_product,
    gram_apply,
    gram_with_moments,
    split_gram,
)

NORMALIZERS = ("auto", "QR", "LU", "none")


def auto_n_iter(k: int, shape: tuple[int, int]) -> int:
    """scikit-learn's rule: 7 power iterations for small k, else 4."""
    return 7 if k < 0.1 * min(shape) else 4


def normalize(G: np.ndarray, how: str) -> np.ndarray:
    """A well-conditioned basis of range(G): QR's Q, LU's permuted L, or G
    scaled to unit columns (``"none"``: only for float64 input)."""
    if how == "LU":
        return scipy.linalg.lu(G, permute_l=True)[0]
    if how == "none":
        return G / np.maximum(np.linalg.norm(G, axis=0), np.finfo(float).tiny)
    return np.linalg.qr(G)[0]


def check_normalizer(normalizer: str, dtype) -> str:
    if normalizer not in NORMALIZERS:
        raise InputError(f"normalizer must be one of {', '.join(NORMALIZERS)}, got "
                         f"{normalizer!r}")
    if normalizer == "none" and dtype != np.float64:
        raise InputError("normalizer='none' loses every direction but the first on "
                         f"{np.dtype(dtype)} data; use 'QR' or 'LU'")
    return "QR" if normalizer == "auto" else normalizer


def ritz_values(Z: np.ndarray, G: np.ndarray, k: int) -> np.ndarray:
    """Singular value estimates from span(Z): sqrt of the eigenvalues of
    Z^T X^T X Z = Z^T G, largest first."""
    T = Z.T @ G
    ev = np.linalg.eigvalsh((T + T.T) / 2)[::-1][:k]
    return np.sqrt(np.clip(ev, 0.0, None))


class RandomizedSolver(Solver):
    """``n_iter + 1`` steps (one pass each), the last of which leaves G_q
    for :func:`finish`. With ``transposed`` the solver is given X^T and
    returns X's factors. Without ``keep_y`` the tall X Z is not kept (it is
    m x n for ``gram``) and U is X M, read again when it is computed."""

    def __init__(self, k: int, *, n_oversamples: int, n_iter: int, normalizer: str,
                 shape: tuple[int, int], transposed: bool = False,
                 name: str = "svd-randomized", keep_y: bool = True):
        self.name = name
        self.k, self.n_iter, self.normalizer = k, n_iter, normalizer
        self.transposed, self.keep_y = transposed, keep_y
        self.width = min(k + n_oversamples, min(shape))
        self.params = {"k": k, "n_oversamples": n_oversamples, "n_iter": n_iter,
                       "normalizer": normalizer, "transposed": transposed}

    def init(self, X, ctx: Context) -> State:
        Z = normalize(ctx.rng.standard_normal((X.shape[1], self.width)), "QR")
        return {"Z": Z, "G": np.zeros_like(Z), "sigma": np.zeros(self.k), "j": 0, "Y": None,
                "colsum": np.zeros(X.shape[1]), "sumsq": 0.0, "rowsq": 0.0}

    def step(self, X, state: State, _ctx: Context) -> tuple[State, Stats]:
        n_iter, keep_y = self.n_iter, self.keep_y
        Z, j = state["Z"], int(state["j"])
        new = dict(state)
        last = j == n_iter
        if j == 0 and last and keep_y:  # no power iteration: X Z, the moments, one pass
            sums, new["Y"] = dask.persist(*gram_and_product(X, Z, moments=True))
            G, moments = split_gram(sums.compute())
            new.update(moments)
        elif j == 0:  # X's column moments ride along with the first pass
            G, moments = split_gram(gram_with_moments(X, Z).compute())
            new.update(moments)
        elif last and keep_y:  # keep X Z from the last pass: U is formed from it, not from X
            # one persist for both, or X would be read once for each
            G, new["Y"] = dask.persist(*gram_and_product(X, Z))
            G = G.compute()["gram"]
        else:
            G = gram_apply(X, Z).compute()["gram"]
        sigma = ritz_values(Z, G, self.k)
        change = (1.0 if j == 0 else
                  float(np.max(np.abs(sigma - state["sigma"]) / np.maximum(sigma, 1e-300))))
        done = last
        if not done:
            # the last normalization before the final pass is always QR
            Z = normalize(G, "QR" if j == n_iter - 1 else self.normalizer)
        new.update(Z=Z, G=G, sigma=sigma, j=j + 1)
        return new, Stats(loss=change, done=done,
                          extra={"note": f"power iteration {j}/{n_iter}" if j else "range"})

    def result(self, X, state: State) -> tuple[dict, dict]:
        return finish_sides(X, finish(X, state["Z"], state["G"], self.k, Y=state["Y"]), state,
                            self.transposed)


#: The name ``dmf.linalg.svd`` builds it by.


def finish(X, Z: np.ndarray, G: np.ndarray, k: int, Y=None) -> dict:
    """U, S, Vt from Z and G = X^T X Z (see the module docstring); U from
    Y = X Z when it was kept, else from X (one more pass).

    With Y kept, Y^T Y is taken from Y itself (float64, already in memory:
    no read of X) rather than as Z^T G: Q = Y W lam^(-1/2) is then
    orthonormal to float64's rounding even where float32 products made Y
    and G disagree (Z^T G put U^T U 1e-3 off I on float32 input)."""
    T = Z.T @ G if Y is None else np.asarray((Y.T @ Y).compute(), dtype=np.float64)
    lam, W = np.linalg.eigh((T + T.T) / 2)
    lam, W = lam[::-1], W[:, ::-1]
    keep = lam > null_cutoff(X.shape, X.dtype) * max(lam[0], 0.0)
    if not keep.any():  # X is zero
        n = X.shape[1]
        return assemble(X, np.zeros((n, 0)), np.zeros(0), np.zeros((n, 0)), k)
    scale = 1.0 / np.sqrt(lam[keep])
    Wk = W[:, keep] * scale                    # Q = X Z Wk is orthonormal
    B = Wk.T @ G.T                             # B = Q^T X, r x n
    Ub, S, Vt = np.linalg.svd(B, full_matrices=False)
    if Y is not None:
        return assemble(X, Wk @ Ub, S, Vt.T, k, left=Y)   # U = Y Wk Ub
    return assemble(X, Z @ (Wk @ Ub), S, Vt.T, k)     # U = X Z Wk Ub
