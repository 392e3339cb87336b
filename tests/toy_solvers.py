"""Small solvers on the engine, for testing the engine itself.

``ToyNMF`` has what real solvers have: a tall dask factor W (whose task
lineage must not grow), a small numpy factor H, a loss, and randomness drawn
from ``ctx.rng`` every step (whose state must survive a resume).
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from dmf.engine.driver import Solver, Stats

EPS = 1e-12


def _random_rows(seed, k, block_info=None):
    info = block_info[None]
    rng = np.random.default_rng([seed, info["chunk-location"][0]])
    return rng.random((info["chunk-shape"][0], k)) + 0.1


class ToyNMF(Solver):
    """Plain multiplicative updates of X ~ W H, with H jittered by ``ctx.rng``."""

    name = "toy-nmf"

    def __init__(self, k: int, *, jitter: float = 1e-6):
        self.k, self.jitter = k, jitter
        self.params = {"k": k, "jitter": jitter}

    def init(self, X, ctx):
        k = self.k
        seed = int(ctx.rng.integers(2**31))
        W = da.map_blocks(_random_rows, seed, k, chunks=(X.chunks[0], (k,)), dtype=np.float64)
        H = ctx.rng.random((k, X.shape[1])) + 0.1
        return {"W": W, "H": H, "steps": 0}

    def step(self, X, state, ctx):
        W, H = state["W"], state["H"]
        W_new = W * (X @ H.T) / (W @ (H @ H.T) + EPS)
        graph_size = len(W_new.__dask_graph__())
        W_new = W_new.persist()
        WtX, WtW = dask.compute(W_new.T @ X, W_new.T @ W_new)
        H_new = H * WtX / (WtW @ H + EPS)
        # Randomness every step: a resumed run must continue the same stream.
        H_new = H_new * (1 + self.jitter * ctx.rng.random(H_new.shape))
        loss = float(((X - W_new @ H_new) ** 2).sum().compute())
        return ({"W": W_new, "H": H_new, "steps": state["steps"] + 1},
                Stats(loss=loss, extra={"graph_size": graph_size}))

    def result(self, _X, state):
        return {"W": state["W"], "H": state["H"]}



def nonnegative_matrix(m: int = 200, n: int = 30, rank: int = 3, seed: int = 0,
                       chunks: int = 50) -> da.Array:
    rng = np.random.default_rng(seed)
    X = rng.random((m, rank)) @ rng.random((rank, n)) + 0.01 * rng.random((m, n))
    return da.from_array(X, chunks=(chunks, n))
