"""One pass over a view of the ratings: the plumbing the CF solvers share.

A half-step of ALS (or of masked NMF) reads one view of the ratings,
``by_user`` or ``by_item``, once: one task per row block gets the block, its
own rows of the factor being solved for, and the whole factor of the other
side as a single graph key (sent to each worker once, as
:func:`dmf.nmf.mu.row_pass` sends H). It returns the block's new rows and a
flat vector of sums (objective terms, Gram matrices), which dask's tree adds
up in an order fixed by the chunks. The new rows and the sums are persisted
together, so each block is read once.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import scipy.sparse

from dmf.linalg.products import part_of, stacked_sum

#: Ratings handled at a time inside a block task: bounds the gathered
#: factor rows (ratings x k float64) to a few tens of MiB whatever the block.
SUB_RATINGS = 1 << 18


def one_key(A) -> da.Array:
    """``A`` (numpy or dask) as a dask array of a single chunk."""
    if isinstance(A, da.Array):
        return A.rechunk(A.shape)
    A = np.asarray(A, dtype=np.float64)
    return da.from_array(A, chunks=A.shape)


def row_groups(indptr: np.ndarray, budget: int = SUB_RATINGS):
    """Row ranges of a CSR block holding about ``budget`` ratings each (at
    least one row each)."""
    rows = len(indptr) - 1
    r0 = 0
    while r0 < rows:
        r1 = int(np.searchsorted(indptr, indptr[r0] + budget, side="right")) - 1
        r1 = min(rows, max(r1, r0 + 1))
        yield r0, r1
        r0 = r1


def as_csr(block) -> scipy.sparse.csr_matrix:
    """A block as canonical float64 CSR (sorted indices, no duplicates)."""
    block = scipy.sparse.csr_matrix(block, dtype=np.float64)
    if not block.has_canonical_format:
        block.sum_duplicates()
    return block


def half_step(func, view: da.Array, own: da.Array, other, *args, size: int):
    """``func(view_b, own_b, other, *args) -> (new own_b, sums)`` on every
    row block of ``view``, ``other`` whole (one graph key).

    Returns the new ``own`` (persisted, ``view``'s row blocks) and the sums
    added up (a numpy vector of length ``size``), from one read of ``view``.
    """
    width = own.shape[1]
    own = own.rechunk((view.chunks[0], (width,)))
    other = one_key(other)
    extra = [a for arg in args for a in (arg, None)]
    packed = da.blockwise(func, "i", view, "ij", own, "ik", other, "lm", *extra,
                          concatenate=True, adjust_chunks={"i": 1}, dtype=object,
                          meta=np.empty((0,), dtype=object))
    new = packed.map_blocks(part_of, 0, False, new_axis=1, chunks=(view.chunks[0], (width,)),
                            dtype=np.float64, meta=np.empty((0, 0)))
    sums = stacked_sum(packed.map_blocks(part_of, 1, False, new_axis=1,
                                         chunks=((1,) * view.numblocks[0], (size,)),
                                         dtype=np.float64, meta=np.empty((0, 0))))
    new, sums = dask.persist(new, sums)  # one persist: each block read once
    return new, np.asarray(sums.compute(), dtype=np.float64)


def packed(rows: np.ndarray, sums) -> np.ndarray:
    """A task's (new rows, flat sums) as the one-element object block
    :func:`half_step` expects."""
    out = np.empty(1, dtype=object)
    out[0] = (rows, np.asarray(sums, dtype=np.float64).ravel()[None])
    return out


def _facts(block) -> np.ndarray:
    block = scipy.sparse.csr_matrix(block)
    data = block.data
    finite = np.isfinite(data)
    good = data[finite]
    return np.array([[float(good.sum(dtype=np.float64)), float(data.size),
                      float(data.size - finite.sum()),
                      float(good.min()) if good.size else np.inf]])


def rating_facts(view: da.Array) -> dict[str, float]:
    """Sum, count, non-finite count and minimum of the ratings: one pass
    over the data arrays only."""
    parts = view.map_blocks(_facts, chunks=((1,) * view.numblocks[0], (4,)),
                            dtype=np.float64, meta=np.empty((0, 0)))
    total = parts[:, 0].sum()
    rest = da.stack([parts[:, 1].sum(), parts[:, 2].sum(), parts[:, 3].min()])
    total, rest = dask.compute(total, rest)
    count, bad, low = (float(v) for v in rest)
    return {"sum": float(total), "count": count, "nonfinite": bad, "min": low,
            "mean": float(total) / count if count else 0.0}


def random_rows(chunks, width: int, seed: int, scale: float, *, positive: bool = False
                ) -> da.Array:
    """A tall random factor in row blocks ``chunks``: block b drawn from a
    stream keyed by (seed, b), so the same on any number of workers."""
    def draw(block, block_info=None):
        b = block_info[0]["chunk-location"][0]
        values = np.random.default_rng([seed, b]).standard_normal(block.shape) * scale
        return np.abs(values) if positive else values

    return da.zeros((sum(chunks), width), chunks=(chunks, (width,))).map_blocks(
        draw, dtype=np.float64)
