"""Synthetic matrices with known structure, written block by block.

``lowrank`` plants X = W H + noise. Each row block of W (and its noise) is
drawn from a random stream keyed by (seed, block index), so the matrix is the
same for a given seed and chunking whatever the number of workers, and no
task holds more than one block. The true singular values of W H are computed
exactly from two small Gram matrices, accumulated in the same pass, and
stored in the attrs with the planted factors' location so accuracy can be
checked later.

``ratings`` (:mod:`dmf.store.generate_ratings`) plants a latent-factor
model of ratings, with biases, and writes a ratings store.

Examples
--------
>>> import dmf
>>> info = dmf.generate.lowrank("memory://doc/gen.zarr", (40, 10), 2, seed=0)
>>> dmf.open_matrix("memory://doc/gen.zarr").shape, len(info["singular_values"])
((40, 10), 2)
"""

from __future__ import annotations

import os
from typing import Any

import dask.array as da
import numpy as np
import scipy.linalg
import zarr

from dmf.errors import InputError
from dmf.store.dense_read import normalize_chunks
from dmf.store.dense_write import (
    commit_target,
    create_dense,
    mark_complete,
    prepare_target,
    save_dense,
    write_dask,
)
from dmf.store.dims import dimension_names
from dmf.store.generate_ratings import check_noise_and_dtype, ratings
from dmf.store.location import Location
from dmf.store.planted import factors_location, stream

# Second moment of |N(0, 1)| products, to give non-negative products unit RMS.
_HALF_NORMAL_MEAN_SQ = 2.0 / np.pi


def _planted_H(seed: int, rank: int, n: int, nonnegative: bool) -> np.ndarray:
    h = stream(seed, 0).standard_normal((rank, n))
    if nonnegative:
        h = np.abs(h)
        # E[(W H)_ij^2] for half-normal entries; scale it to 1.
        second_moment = rank + rank * (rank - 1) * _HALF_NORMAL_MEAN_SQ**2
        return h / np.sqrt(second_moment)
    return h / np.sqrt(rank)


def _planted_W_block(seed: int, block: int, rows: int, rank: int, nonnegative: bool,
                     decay: float):
    w = stream(seed, 1, block).standard_normal((rows, rank))
    if nonnegative:
        w = np.abs(w)
    return w * decay ** np.arange(rank) if decay != 1.0 else w


def _x_block(w_block, H, seed, noise, nonnegative, dtype, counts=None, block_info=None):
    block = block_info[None]["chunk-location"][0]
    x = w_block @ H
    if counts:
        return stream(seed, 3, block).poisson(counts * x).astype(dtype, copy=False)
    if noise:
        x += noise * stream(seed, 2, block).standard_normal(x.shape)
    if nonnegative:
        np.maximum(x, 0.0, out=x)
    return x.astype(dtype, copy=False)


def _w_block(seed, rank, nonnegative, decay, block_info=None):
    info = block_info[None]
    rows = info["chunk-shape"][0]
    return _planted_W_block(seed, info["chunk-location"][0], rows, rank, nonnegative, decay)


def planted_singular_values(gram_W: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Singular values of W H from W^T W and H, without forming W H.

    With W^T W = L L^T (Cholesky), W = Q L^T for an orthonormal Q, so the
    singular values of W H are those of L^T H, whose squares are the
    eigenvalues of L^T (H H^T) L, a rank x rank matrix.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> W, H = rng.random((30, 3)), rng.random((3, 8))
    >>> s = planted_singular_values(W.T @ W, H)
    >>> bool(np.allclose(s, np.linalg.svd(W @ H, compute_uv=False)[:3]))
    True
    """
    L = scipy.linalg.cholesky(gram_W, lower=True)
    small = L.T @ (H @ H.T) @ L
    ev = np.clip(np.linalg.eigvalsh((small + small.T) / 2), 0.0, None)
    return np.sqrt(ev)[::-1]


def lowrank(
    url: str | os.PathLike,
    shape: tuple[int, int],
    rank: int,
    *,
    noise: float = 0.0,
    seed: int = 0,
    dtype: str = "float64",
    nonnegative: bool = False,
    decay: float = 1.0,
    chunks=None,
    save_factors: bool = True,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    codec: str | None = None,
    counts: float | None = None,
) -> dict[str, Any]:
    """Write X = W H + noise, a matrix of known rank, block by block.

    Entries of W H have unit root-mean-square, so ``noise`` is the
    noise-to-signal ratio of the Gaussian noise added to each entry. With
    ``nonnegative=True``, W and H are half-normal and X is clipped at 0.
    With ``counts=MEAN``, X holds counts drawn as Poisson(MEAN W H) from
    non-negative factors (documents x words, say: the data of KL-NMF).

    Parameters
    ----------
    url : str or path
        Where to write X (a dense Zarr array).
    shape : (int, int)
        (m, n).
    rank : int
        Inner dimension of W (m x rank) and H (rank x n).
    noise : float
        Standard deviation of the added noise, relative to the signal.
    seed : int
        Same seed and chunks: the same matrix, bit for bit.
    dtype : {"float64", "float32"}
    nonnegative : bool
        Plant non-negative factors (for NMF).
    decay : float
        Scale column j of W by ``decay ** j``: below 1, the singular values
        fall roughly geometrically, as in most real data (and W H's RMS
        drops below 1). The default 1.0 gives singular values of similar size.
    chunks : int or (int, int), optional
        As for :func:`dmf.save_matrix`; only row blocks are supported.
    save_factors : bool
        Also write W and H to ``<stem>.factors.zarr`` beside X.
    counts : float, optional
        Draw counts X ~ Poisson(counts * W H) instead of adding noise
        (implies ``nonnegative``; ``noise`` must be 0). The singular values
        stored are those of W H, unscaled.

    Returns
    -------
    dict
        What was stored in ``attrs["dmf"]["generator"]``: the parameters, the
        singular values of W H (noise-free, before clipping) and the factors'
        location.

    Examples
    --------
    >>> import numpy as np, dmf
    >>> info = dmf.generate.lowrank("memory://doc/g.zarr", (100, 20), 3, seed=1)
    >>> s = np.linalg.svd(dmf.open_matrix("memory://doc/g.zarr").compute(), compute_uv=False)
    >>> bool(np.allclose(s[:3], info["singular_values"]))
    True
    """
    location = Location.parse(url, storage_options)
    m, n = _check_args(shape, rank, noise, dtype)
    _check_decay_and_counts(decay, counts, noise)
    if counts is not None:
        nonnegative = True
    dtype = np.dtype(dtype)
    chunks = normalize_chunks(chunks, (m, n), dtype)
    if chunks[1] != n:
        raise InputError(f"lowrank writes row blocks; chunks must span all {n} columns")

    H, W, X = _planted_graphs(seed, rank, (m, n), chunks[0], nonnegative=nonnegative,
                              decay=decay, noise=noise, dtype=dtype, counts=counts)
    gram_W = W.T @ W

    generator = {
        "kind": "lowrank", "shape": [m, n], "rank": rank, "noise": float(noise),
        "seed": int(seed), "nonnegative": bool(nonnegative), "decay": float(decay),
        "dtype": str(dtype), **({"counts": float(counts)} if counts else {}),
    }
    factors = factors_location(location)
    staging = prepare_target(location, overwrite)
    try:
        zarray = create_dense(staging, (m, n), dtype, chunks, codec=codec,
                              attrs={"generator": generator})
        (gram,) = write_dask(X, zarray, name=str(location), extra=[gram_W],
                             scheduler="threads" if location.is_process_local else None)
        generator["singular_values"] = planted_singular_values(gram, H).tolist()
        if save_factors:
            _save_factors(factors, location.name, W.astype(dtype), H.astype(dtype),
                          row_chunk=chunks[0], codec=codec)
            generator["factors"] = factors.name  # relative: the pair moves together
        mark_complete(zarray, generator=generator)
    except BaseException:
        staging.remove()
        raise
    commit_target(staging, location)
    return generator


def _check_decay_and_counts(decay: float, counts: float | None, noise: float) -> None:
    """Refuse a decay outside (0, 1], and counts that are not a positive number
    or that come with noise."""
    if not 0.0 < decay <= 1.0:
        raise InputError(f"decay must be in (0, 1], got {decay}")
    if counts is not None:
        if not np.isfinite(counts) or counts <= 0:
            raise InputError(f"counts (the mean scale of Poisson counts) must be a positive "
                             f"number, got {counts}")
        if noise:
            raise InputError("counts are Poisson draws already: leave noise at 0")


def _planted_graphs(seed: int, rank: int, shape: tuple[int, int], row_chunk, *,
                    nonnegative: bool, decay: float, noise: float, dtype: np.dtype,
                    counts: float | None) -> tuple[np.ndarray, da.Array, da.Array]:
    """H, and the lazy W and X = W H (+ noise, or Poisson counts), block by
    block of rows: each block drawn from its own seeded stream."""
    m, n = shape
    H = _planted_H(seed, rank, n, nonnegative)
    row_chunks = da.core.normalize_chunks((row_chunk, rank), (m, rank))
    W = da.map_blocks(_w_block, seed, rank, nonnegative, decay, chunks=row_chunks,
                      dtype=np.float64)
    X = W.map_blocks(_x_block, H, seed, noise, nonnegative, dtype, counts,
                     chunks=(row_chunks[0], (n,)), dtype=dtype)
    return H, W, X


def _save_factors(factors: Location, of: str, W: da.Array, H: np.ndarray, *, row_chunk,
                  codec: str | None) -> None:
    """W and H, in the generated matrix's dtype, to the group ``factors`` beside it."""
    zarr.open_group(store=factors.zarr_store(), mode="w", zarr_format=3,
                    attributes={"dmf": {"kind": "planted-factors", "of": of}})
    save_dense(W, factors.join("W"), chunks=(row_chunk, H.shape[0]),
               overwrite=True, codec=codec, dims=dimension_names("W", 2))
    save_dense(H, factors.join("H"), overwrite=True, codec=codec,
               dims=dimension_names("H", 2))


def _check_args(shape, rank, noise, dtype) -> tuple[int, int]:
    try:
        m, n = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape must be two integers (m, n), got {shape!r}") from None
    if m <= 0 or n <= 0:
        raise InputError(f"shape must be positive, got {(m, n)}")
    if not 1 <= rank <= min(m, n):
        raise InputError(f"rank must be between 1 and min(m, n) = {min(m, n)}, got {rank}")
    check_noise_and_dtype(noise, dtype)
    return m, n


__all__ = ["factors_location", "lowrank", "planted_singular_values", "ratings"]
