"""The floor of an iteration: no pass over X can beat the slower of reading X
and doing its dense block products on the workers' cores.

floor = max(read pass of X, product seconds), where the product seconds are
those of one row block's products, timed with one BLAS thread as a Dask
worker runs them, on a block of the store's chunk shape, and scaled by the
rows of X over the block's rows and divided by the workers. The products of
each method are the ones it cannot avoid:

- ``frobenius`` (NMF MU and HALS, beta = 2): X_b H^T and W_b^T X_b (the loss
  comes from these with the Gram trick, no W H);
- ``kl`` (NMF MU, beta = 1): W_b H, (X_b / W_b H) H^T and W_b^T (X_b / W_b H),
  with the element-wise division they need;
- ``is`` (NMF MU, beta = 0): the same three products with its element-wise
  terms (X / (WH)^2 and 1 / WH);
- ``range`` (a randomized SVD pass): X_b Omega and X_b^T Y_b with l = k + 10
  columns.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

KINDS = ("frobenius", "kl", "is", "range")
#: columns a randomized SVD's range has beyond k (dmf's n_oversamples default)
OVERSAMPLES = 10


def block_products(kind: str, block: np.ndarray, k: int, seed: int = 0) -> Callable[[], None]:
    """A callable doing ``kind``'s products (see the module docstring) on
    ``block`` once, its small factors made up front."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    rows, n = block.shape
    dtype = block.dtype
    width = k + OVERSAMPLES if kind == "range" else k
    W = rng.random((rows, width), dtype=np.float64).astype(dtype)
    H = rng.random((width, n), dtype=np.float64).astype(dtype)
    Omega = np.ascontiguousarray(H.T)
    WH = np.empty_like(block)

    def frobenius() -> None:
        block @ H.T
        W.T @ block

    def kl() -> None:
        np.matmul(W, H, out=WH)
        np.divide(block, WH, out=WH)
        WH @ H.T
        W.T @ WH

    def itakura_saito() -> None:
        np.matmul(W, H, out=WH)
        inverse = np.reciprocal(WH)
        np.multiply(np.square(inverse, out=WH), block, out=WH)
        WH @ H.T
        W.T @ WH
        inverse @ H.T

    def range_pass() -> None:
        Y = block @ Omega
        block.T @ Y

    return {"frobenius": frobenius, "kl": kl, "is": itakura_saito, "range": range_pass}[kind]


def block_seconds(kind: str, rows: int, n: int, k: int, dtype="float32",
                  repeat: int = 5) -> float:
    """Median seconds of ``kind``'s products on one rows x n block, one BLAS
    thread (as on a worker), after one untimed call."""
    block = np.random.default_rng(1).random((rows, n)).astype(dtype)
    work = block_products(kind, block, k)
    times = []
    with threadpool_limits(limits=1):
        work()
        for _ in range(repeat):
            t0 = time.perf_counter()
            work()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def scaled(seconds_per_block: float, block_rows: int, m: int, workers: int) -> float:
    """The product seconds of a pass over m rows spread evenly over
    ``workers`` single-threaded workers, from one block's seconds.

    >>> scaled(0.5, block_rows=100, m=1000, workers=2)
    2.5
    """
    if block_rows <= 0 or m < 0 or workers <= 0:
        raise ValueError("block_rows and workers must be positive, m non-negative")
    return seconds_per_block * (m / block_rows) / workers


def floor(read_seconds: float, product_seconds: float) -> float:
    """The floor of an iteration: the slower of its read and its products.

    >>> floor(0.3, 0.26)
    0.3
    """
    return max(read_seconds, product_seconds)
