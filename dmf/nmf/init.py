"""Starting factors for NMF: scikit-learn's ``random``, the NNDSVD family
from dmf's out-of-core randomized SVD, and ``custom``.

Every start is a function ``init(X, ctx) -> (W, H)``, W a dask array in X's
row blocks (float64) and H in memory, called by the engine only when a job
starts (never on resume).
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from dmf.blocks import Piece, row_blocks
from dmf.engine.driver import Context
from dmf.errors import DmfWarning, InputError, warn
from dmf.linalg.svd import svd

INITS = ("auto", "random", "nndsvd", "nndsvda", "nndsvdar", "custom")

#: scikit-learn zeroes NNDSVD entries below this.
NNDSVD_EPS = 1e-6


def _random_rows(seed: int, k: int, avg: float, block_info=None) -> np.ndarray:
    info = block_info[None]
    block = info["chunk-location"][0]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(block,)))
    return avg * np.abs(rng.standard_normal((info["chunk-shape"][0], k)))


def random_init(k: int, avg: float):
    """scikit-learn's ``init="random"``: |N(0, 1)| * sqrt(mean(X) / k), W's
    rows drawn per block from their own stream (so a block's rows do not
    depend on the others, and the result not on the number of workers)."""

    def init(X, ctx: Context):
        H = avg * np.abs(ctx.rng.standard_normal((k, X.shape[1])))
        seed = int(ctx.rng.integers(2**63))
        W = da.map_blocks(_random_rows, seed, k, avg, chunks=(X.chunks[0], (k,)),
                          dtype=np.float64, meta=np.empty((0, 0)))
        return W, H

    return init


def check_factor(F, shape: tuple[int, int], name: str):
    F = F if isinstance(F, da.Array) else np.asarray(F)
    if F.ndim != 2 or tuple(F.shape) != shape:
        raise InputError(f"init='custom': {name} must have shape {shape}, got "
                         f"{tuple(F.shape)}")
    low, finite = dask.compute(F.min(), da.isfinite(F).all() if isinstance(F, da.Array)
                               else np.isfinite(F).all())
    if not finite or low < 0:
        raise InputError(f"init='custom': {name} must be finite and non-negative")
    return F


def custom_init(W0, H0):
    def init(X, _ctx: Context):
        W = da.asarray(W0).astype(np.float64).rechunk((X.chunks[0], -1))
        return W, np.asarray(H0, dtype=np.float64)

    return init


def fixed_h_init(H, fill: float):
    """W all ``fill`` (scikit-learn's start for ``transform``: sqrt(mean(X)/k)
    for mu, which cannot move zeros, else 0), H as given."""

    def init(X, _ctx: Context):
        W = da.full((X.shape[0], H.shape[0]), fill, chunks=(X.chunks[0], -1), dtype=np.float64)
        return W, np.asarray(H, dtype=np.float64)

    return init


@dataclass(frozen=True)
class Fill:
    """How NNDSVD fills W's zeros: the variant, X's mean, the stream's seed."""

    variant: str
    avg: float
    seed: int


def _nndsvd_rows(U, choice, scale, fill: Fill, index: int) -> dict:
    """W's rows (``W``) from block row ``index`` of U: column 0 |u_0|,
    column j the positive or negative part of u_j (whichever ``choice``
    says) scaled; small entries zeroed, then filled as ``fill`` says."""
    avg, seed = fill.avg, fill.seed
    W = np.abs(U[:, :1]) * scale[0]
    parts = np.where(choice[1:], np.maximum(U[:, 1:], 0), np.abs(np.minimum(U[:, 1:], 0)))
    W = np.concatenate([W, parts * scale[1:]], axis=1)
    W[W < NNDSVD_EPS] = 0
    if fill.variant == "nndsvda":
        W[W == 0] = avg
    elif fill.variant == "nndsvdar":
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        zero = W == 0
        W[zero] = np.abs(avg * rng.standard_normal(int(zero.sum())) / 100)
    return {"W": W}


def nndsvd_init(k: int, variant: str, avg: float, *, solver: str):
    """Boutsidis and Gallopoulos's NNDSVD as scikit-learn computes it, from
    :func:`dmf.svd` (randomized, out of core: its passes are part of the
    start). The choice between the positive and negative part of each
    singular pair does not depend on the pair's sign, so dmf's sign rule
    gives scikit-learn's factors up to the SVD's own rounding."""
    if solver == "mu" and variant == "nndsvd":
        warn("the multiplicative update ('mu') solver cannot update zeros present in "
             "the initialization, and so leads to poorer results when used jointly "
             "with init='nndsvd'; you may try init='nndsvda' or init='nndsvdar' "
             "instead", DmfWarning)

    def init(X, ctx: Context):
        seed = int(ctx.rng.integers(2**31))
        r = svd(X, k, method="randomized", seed=seed, progress=False, cache=False)
        U = r.U.astype(np.float64).rechunk((X.chunks[0], -1))
        S, V = r.S.astype(np.float64), r.Vt.astype(np.float64)
        pos_U, neg_U = dask.compute((da.maximum(U, 0) ** 2).sum(axis=0),
                                    (da.minimum(U, 0) ** 2).sum(axis=0))
        pos_U, neg_U = np.sqrt(pos_U), np.sqrt(neg_U)
        pos_V, neg_V = (np.linalg.norm(np.maximum(V, 0), axis=1),
                        np.linalg.norm(np.minimum(V, 0), axis=1))
        choice = pos_U * pos_V > neg_U * neg_V          # per pair: the positive parts
        sigma = np.where(choice, pos_U * pos_V, neg_U * neg_V)
        nrm_U = np.where(choice, pos_U, neg_U)
        nrm_V = np.where(choice, pos_V, neg_V)
        lbd = np.sqrt(S * sigma)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale_U = np.where(nrm_U > 0, lbd / nrm_U, 0.0)
            scale_V = np.where(nrm_V > 0, lbd / nrm_V, 0.0)
        scale_U[0] = scale_V[0] = np.sqrt(S[0])
        H = np.where(choice[:, None], np.maximum(V, 0), np.abs(np.minimum(V, 0))) * \
            scale_V[:, None]
        H[0] = np.abs(V[0]) * scale_V[0]
        H[H < NNDSVD_EPS] = 0
        if variant == "nndsvda":
            H[H == 0] = avg
        elif variant == "nndsvdar":
            zero = H == 0
            H[zero] = np.abs(avg * ctx.rng.standard_normal(int(zero.sum())) / 100)
        fill = Fill(variant, avg, int(ctx.rng.integers(2**63)))
        W = row_blocks(_nndsvd_rows, U, choice, scale_U, fill, index=True,
                       each={"W": Piece((None, U.shape[1]))}).each["W"]
        return W, H

    return init


__all__ = ["INITS", "check_factor", "custom_init", "fixed_h_init", "nndsvd_init",
           "random_init"]
