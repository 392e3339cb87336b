"""Orthonormal completion of tall bases, out of core.

When a matrix has fewer nonzero singular values than asked for, the left
vectors of the zero ones are not determined by U = X V / sigma (that would
divide by zero, the classic source of 1e15 entries). Any orthonormal vectors
orthogonal to the others are correct; this module makes them, block by
block, deterministically.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from dmf.linalg.products import transpose_times


def _gaussian_block(seed, ncols, block_info=None):
    info = block_info[None]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(
        info["chunk-location"][0],)))
    return rng.standard_normal((info["chunk-shape"][0], ncols))


def complete_basis(U: da.Array, missing: np.ndarray, *, seed: int = 0) -> da.Array:
    """Replace the columns of ``U`` flagged in ``missing`` by orthonormal
    vectors orthogonal to the other columns (assumed orthonormal).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> U = da.from_array(np.c_[np.eye(6)[:, :2], np.zeros((6, 1))], chunks=(3, 3))
    >>> Q = complete_basis(U, np.array([False, False, True])).compute()
    >>> bool(np.allclose(Q.T @ Q, np.eye(3)))
    True
    """
    missing = np.asarray(missing, dtype=bool)
    if not missing.any():
        return U
    U = U.rechunk({1: -1}).persist()
    keep = np.flatnonzero(~missing)
    z = int(missing.sum())
    G = da.map_blocks(_gaussian_block, seed, z, chunks=(U.chunks[0], (z,)), dtype=np.float64)
    known = U[:, keep].astype(np.float64)
    for _ in range(2):  # project twice: orthogonal to working precision
        if len(keep):
            G = G - known @ transpose_times(known, G).compute()["product"]
        G = G.persist()
    Q, _ = da.linalg.tsqr(G)
    columns = []
    q_col = 0
    for j in range(U.shape[1]):
        if missing[j]:
            columns.append(Q[:, q_col:q_col + 1])
            q_col += 1
        else:
            columns.append(U[:, j:j + 1].astype(np.float64))
    return da.concatenate(columns, axis=1).astype(U.dtype).rechunk({1: -1})
