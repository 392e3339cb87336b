"""Single-pass truncated SVD: X is read exactly once.

Tropp, Yurtsever, Udell and Cevher, "Practical sketching algorithms for
low-rank matrix approximation" (SIMAX 2017), two-sketch recovery, with their
a posteriori error estimator (2019). In the one pass over X, each block row
X_b contributes to three sketches:

    Y = X Omega        (m x s_r, tall, kept blockwise: the range sketch)
    W = Psi X          (s_c x n: the co-range sketch, Psi_b drawn per block)
    E = Theta X        (t x n: a test sketch, for the error estimate)

Then, without X: Q = orth(Y) (tall QR), B = (Psi Q)^+ W, B = U~ S Vt, U = Q U~,
truncated to k. The error estimate ||E - Theta X_k||_F^2 / t is an unbiased
estimate of ||X - X_k||_F^2 for the rank-k result X_k.

When to prefer it: when reading X dominates (an object store far away, data
that can be read only once or arrives as a stream), or for a first look at
a large matrix. It is exact when rank(X) <= s_r; otherwise, without power
iterations, its error follows the tail of the spectrum: on slowly decaying
spectra use ``method="randomized"``, which reads X q + 1 times.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import scipy.sparse

from dmf.blocks import Piece, row_blocks
from dmf.engine.driver import Context, Solver, State, Stats
from dmf.linalg.common import assemble, finish_sides, null_cutoff
from dmf.linalg.products import (
    SliceMoments,
    as_f64,
    for_blas,
    moment_parts,
    row_slices,
    scratch,
    split_moments,
)

#: Rows of the test sketch (Tropp et al. suggest 10).
TEST_ROWS = 10


def sketch_sizes(k: int, n_oversamples: int, shape: tuple[int, int]) -> tuple[int, int]:
    """Range and co-range sketch sizes: s_r = max(2k + 1, k + oversamples),
    s_c = 2 s_r + 1, capped by the matrix."""
    m, n = shape
    s_r = min(max(2 * k + 1, k + n_oversamples), m, n)
    return s_r, min(2 * s_r + 1, m)


def _left(seed: int, block: int, rows: int, width: int) -> np.ndarray:
    """Rows of Psi (and Theta) for one block row, from their own stream."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(block,)))
    return rng.standard_normal((width, rows))


def _row_sketch(block, Omega, seed, width, index: int) -> dict:
    """Everything the one pass takes from block row ``index``, in one task (a
    single consumer per block, so each is freed as soon as it is used), by
    name: its ``rows`` of Y = X Omega, its term of [Psi; Theta] X
    (``sketch``) and its moments (:func:`dmf.linalg.products.moment_parts`)."""
    dtype = for_blas(block[:0]).dtype
    left = _left(seed, index, block.shape[0], width).astype(dtype)
    Om = Omega.astype(dtype)
    # Y in the products' precision: float32 X gives float32 products, and
    # holding them as float64 doubled the largest thing a worker keeps
    Y = np.empty((block.shape[0], Omega.shape[1]), dtype=dtype)
    WE = np.zeros((width, block.shape[1]))
    y, _ = scratch(block, Omega.shape[1], dtype)  # reused: see products.scratch
    term = np.empty((width, block.shape[1]), dtype=dtype)
    sums = SliceMoments(block)
    for sl in row_slices(block):
        xs = for_blas(block[sl])
        sums.add(xs)
        if scipy.sparse.issparse(xs):
            Y[sl] = xs @ Om
            WE += np.asarray((xs.T @ left[:, sl].T).T)
            continue
        rows = xs.shape[0]
        np.matmul(xs, Om, out=y[:rows])
        Y[sl] = y[:rows]
        np.matmul(left[:, sl], xs, out=term)
        np.add(WE, term, out=WE)
    return {"rows": Y, "sketch": WE, **sums.named()}


def sketch_pass(X: da.Array, Omega: np.ndarray, seed: int, width: int):
    """Lazy (Y, the named sums: [Psi; Theta] X as ``sketch`` and the
    moments) from one read of X (whole rows per task).

    Each block row draws its own rows of Psi from a stream keyed by its
    index, so nothing but X and Omega is an input: an index array as an
    input lets dask's ordering read every block before sketching any.
    """
    n, s_r = X.shape[1], Omega.shape[1]
    y_dtype = for_blas(X._meta).dtype  # the products' precision
    run = row_blocks(_row_sketch, X, Omega, seed, width, index=True,
                     each={"rows": Piece((None, s_r), y_dtype)},
                     sums={"sketch": (width, n), **moment_parts(n)})
    return run.each["rows"], run.sums


def _row_left_tall(q, seed, width, index: int) -> dict:
    return {"left": _left(seed, index, q.shape[0], width) @ as_f64(q)}


def left_times_tall(Q: da.Array, seed: int, width: int):
    """Lazy [Psi; Theta] Q (named ``left``) for a tall Q with the same row
    blocks as X."""
    return row_blocks(_row_left_tall, Q, seed, width, index=True,
                      sums={"left": (width, Q.shape[1])}).sums


class SketchSolver(Solver):
    """One step: the one pass of :func:`sketch_pass`; ``result`` recovers
    the rank-k factors from the sketches, with the error estimate. With
    ``transposed`` the solver is given X^T and returns X's factors."""

    name = "svd-sketch"

    def __init__(self, k: int, *, n_oversamples: int, shape: tuple[int, int],
                 transposed: bool = False):
        self.k, self.transposed = k, transposed
        self.s_r, self.s_c = sketch_sizes(k, n_oversamples, shape)
        self.params = {"k": k, "n_oversamples": n_oversamples, "transposed": transposed}

    def init(self, X, ctx: Context) -> State:
        return {"Omega": ctx.rng.standard_normal((X.shape[1], self.s_r)),
                "seed": int(ctx.rng.integers(2**63)), "done": False}

    def step(self, X, state: State, _ctx: Context) -> tuple[State, Stats]:
        s_c = self.s_c
        Y, sums = dask.persist(*sketch_pass(X, state["Omega"], state["seed"], s_c + TEST_ROWS))
        sums = sums.compute()
        WE = sums["sketch"]
        new = {**state, "Y": Y, "W": WE[:s_c], "E": WE[s_c:], **split_moments(sums),
               "done": True}
        return new, Stats(loss=0.0, done=True, extra={"note": "sketched"})

    def result(self, X, state: State) -> tuple[dict, dict]:
        k, s_r, s_c = self.k, self.s_r, self.s_c
        Y, W, E = state["Y"], state["W"], state["E"]
        Q, _ = da.linalg.tsqr(Y.rechunk({1: -1}).astype(np.float64))  # exact widening
        PQ = left_times_tall(Q, state["seed"], s_c + TEST_ROWS).compute()["left"]
        psi_q, theta_q = PQ[:s_c], PQ[s_c:]
        B = np.linalg.lstsq(psi_q, W, rcond=None)[0]          # s_r x n
        Ub, S, Vt = np.linalg.svd(B, full_matrices=False)
        keep = S**2 > null_cutoff(X.shape) * S[0] ** 2 if S[0] > 0 else S > 0
        Ub, S, Vt = Ub[:, keep][:, :k], S[keep][:k], Vt[keep][:k]
        # X_k = Q Ub S Vt; its test sketch is (Theta Q) Ub S Vt
        residual = E - (theta_q @ Ub) * S @ Vt
        err2 = float(np.sum(residual**2)) / TEST_ROWS
        norm2 = float(state["sumsq"])
        meta = {"error_estimate": float(np.sqrt(err2)),
                "relative_error_estimate": float(np.sqrt(err2 / norm2)) if norm2 else 0.0,
                "sketch_sizes": [s_r, s_c, TEST_ROWS]}
        arrays, variance = finish_sides(X, assemble_from_q(X, Q, Ub, S, Vt.T, k), state,
                                        self.transposed)
        return arrays, {**meta, **variance}


#: The name ``dmf.linalg.svd`` builds it by.


def assemble_from_q(X, Q: da.Array, Ub, S, V, k) -> dict:
    """Like :func:`dmf.linalg.common.assemble`, with U = Q Ub (no pass over X)."""
    # assemble() forms U = A M for a lazy A; here A is Q, not X.
    out = assemble(Q.astype(np.float64), Ub, S, V, k)
    out["U"] = out["U"].astype(X.dtype)
    out["S"] = out["S"].astype(X.dtype)
    out["Vt"] = out["Vt"].astype(X.dtype)
    return out
