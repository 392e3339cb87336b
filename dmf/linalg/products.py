"""Block products with a tall matrix X, each one pass over X.

X is read in row blocks X_b (dense or scipy.sparse). Small results are
accumulated in float64 and summed in a fixed tree, so they are bitwise the
same whatever the number of workers; float32 blocks are widened to float64 a
slice at a time, so a task never holds more than a few MiB of widened data.

- ``gram_apply(X, V)``  = X^T X V, as sum_b X_b^T (X_b V): one pass, n x p.
- ``tall_times(X, M)``  = X M, a lazy tall array with X's row blocks.
- ``transpose_times(X, Y)`` = X^T Y for Y tall with X's row blocks: one pass.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import scipy.sparse

#: Widen at most this many bytes of a block to float64 at a time.
SLICE_BYTES = 8 * 2**20
#: Fan-in of the reduction tree.
SPLIT_EVERY = 8


def _row_slices(block, itemsize: int = 8):
    rows = block.shape[0]
    step = max(1, SLICE_BYTES // max(1, block.shape[1] * itemsize))
    for r0 in range(0, rows, step):
        yield slice(r0, min(rows, r0 + step))


def _as_f64(part):
    if scipy.sparse.issparse(part):
        return part.astype(np.float64)
    # OpenBLAS takes another code path, with other rounding, for arrays not
    # aligned to their itemsize, and decoded Zarr chunks can start at any
    # byte: without the copy, the same block gives different bits on
    # different workers.
    return np.require(part, dtype=np.float64, requirements="A")


def _gram_block(block, V):
    out = np.zeros((block.shape[1], V.shape[1]))
    for sl in _row_slices(block):
        xs = _as_f64(block[sl])
        out += xs.T @ (xs @ V)
    return out


def _transpose_block(block, Y):
    out = np.zeros((block.shape[1], Y.shape[1]))
    Y = np.asarray(Y, dtype=np.float64)
    for sl in _row_slices(block):
        out += _as_f64(block[sl]).T @ Y[sl]
    return out


def _tall_block(block, M, dtype):
    out = np.empty((block.shape[0], M.shape[1]), dtype=dtype)
    for sl in _row_slices(block):
        out[sl] = _as_f64(block[sl]) @ M
    return out


def _sum(parts):
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total


def tree_sum(parts: list) -> dask.delayed:
    """Sum delayed arrays pairwise-in-groups, in a fixed order."""
    parts = list(parts)
    while len(parts) > 1:
        parts = [dask.delayed(_sum, pure=True)(parts[i:i + SPLIT_EVERY])
                 for i in range(0, len(parts), SPLIT_EVERY)]
    return parts[0]


def row_blocks(X: da.Array) -> da.Array:
    """X with full-width row blocks (a no-op for dmf's stores)."""
    return X if X.numblocks[1] == 1 else X.rechunk({1: -1})


def gram_apply(X: da.Array, V: np.ndarray) -> dask.delayed:
    """Delayed X^T (X V) in float64: one pass over X.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> A = np.arange(12.0).reshape(4, 3)
    >>> V = np.eye(3)[:, :1]
    >>> bool(np.allclose(gram_apply(da.from_array(A, chunks=2), V).compute(), A.T @ A @ V))
    True
    """
    X = row_blocks(X)
    V_key = dask.delayed(np.asarray(V, dtype=np.float64), pure=True)
    parts = [dask.delayed(_gram_block, pure=True)(b, V_key) for b in X.to_delayed().ravel()]
    return tree_sum(parts)


def transpose_times(X: da.Array, Y: da.Array) -> dask.delayed:
    """Delayed X^T Y in float64 for a tall Y with X's row blocks: one pass."""
    X = row_blocks(X)
    Y = Y.rechunk((X.chunks[0], -1))
    parts = [dask.delayed(_transpose_block, pure=True)(b, y)
             for b, y in zip(X.to_delayed().ravel(), Y.to_delayed().ravel(), strict=True)]
    return tree_sum(parts)


def tall_times(X: da.Array, M: np.ndarray, dtype=None) -> da.Array:
    """Lazy X M (m x p) with X's row blocks, computed in float64 and stored
    as ``dtype`` (default: X's dtype)."""
    X = row_blocks(X)
    M = np.asarray(M, dtype=np.float64)
    dtype = np.dtype(dtype or X.dtype)
    # One graph key for M, so it travels to each worker once, not per task.
    M_key = dask.delayed(M, pure=True)
    return X.map_blocks(_tall_block, M_key, dtype, chunks=(X.chunks[0], (M.shape[1],)),
                        dtype=dtype, meta=np.empty((0, 0), dtype=dtype))
