"""What the CF solvers' passes over a view of the ratings share.

A half-step of ALS (or of masked NMF) reads one view of the ratings,
``by_user`` or ``by_item``, once, by :func:`dmf.blocks.row_pass`: one task
per row block gets the block, its own rows of the factor being solved for,
and the whole factor of the other side as a single graph key (sent to each
worker once). It returns the block's new rows and named sums (objective
terms, Gram matrices: :data:`OBJECTIVE_PARTS`), which dask's tree adds up
in an order fixed by the chunks. Here: the bound on a task's rows, the
sub-blocks of a task's ratings, the random start, the ratings' facts.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import scipy.sparse

from dmf.blocks import Piece, row_blocks, row_sums

#: The named sums of a half-step that solves (or scores) rows with an
#: objective of squared errors and count-weighted penalties: sum n_u |x_u|^2
#: of the block's rows, their squared error (0 where not asked for) and the
#: block's ratings.
OBJECTIVE_PARTS = {"penalty": (), "sq_err": (), "count": ()}

#: Ratings handled at a time inside a block task: bounds the gathered
#: factor rows (ratings x k float64) to a few tens of MiB whatever the block.
SUB_RATINGS = 1 << 18

#: Most bytes of one task's factor slices and k x k sums: its own rows in and
#: out (2 x rows x width float64) plus a width x width Gram matrix. A ratings
#: store's row blocks are sized by their ratings (64 MiB of them), so 300k
#: users with one rating each are one block; a half-step splits such blocks
#: so that no task holds more than this (k=32: 500k rows; k=256: 65k rows).
#: The other side's whole factor (one graph key, shared by a worker's tasks)
#: and the persisted factors are not counted: they are the model itself.
TASK_BYTES = 256 * 2**20


def task_rows(width: int, budget: int = TASK_BYTES) -> int:
    """Most rows of a task whose factor slices are ``width`` float64 wide:
    rows x 2 x width x 8 + width^2 x 8 <= ``budget`` (at least one row)."""
    itemsize = 8
    return max(1, (budget - width * width * itemsize) // (2 * width * itemsize))


def bounded_rows(view: da.Array, width: int, budget: int = TASK_BYTES) -> da.Array:
    """``view`` with every row block of more than :func:`task_rows` rows
    split evenly (blocks that fit are kept as they are, so small data keeps
    its chunks and its results)."""
    most = task_rows(width, budget)
    chunks: list[int] = []
    for rows in view.chunks[0]:
        parts = -(-rows // most)
        chunks += [rows // parts + (j < rows % parts) for j in range(parts)]
    if len(chunks) == len(view.chunks[0]):
        return view
    return view.rechunk((tuple(chunks), view.chunks[1]))


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


def item_counts(by_user: da.Array) -> np.ndarray:
    """Each item's ratings, from the column indices of a by-user view (one
    pass, the counts summed over its row blocks)."""
    return row_sums(_block_item_counts, by_user,
                    parts={"item_counts": (by_user.shape[1],)})["item_counts"]


def _block_item_counts(block) -> dict[str, np.ndarray]:
    block = as_csr(block)
    return {"item_counts": np.bincount(block.indices, minlength=block.shape[1])}


def _facts(block) -> dict[str, np.ndarray]:
    block = scipy.sparse.csr_matrix(block)
    data = block.data
    finite = np.isfinite(data)
    good = data[finite]
    return {"facts": np.array([[float(good.sum(dtype=np.float64)), float(data.size),
                                float(data.size - finite.sum()),
                                float(good.min()) if good.size else np.inf]])}


def rating_facts(view: da.Array) -> dict[str, float]:
    """Sum, count, non-finite count and minimum of the ratings: one pass
    over the data arrays only (per block, not summed by name: a minimum is
    not a sum, and dask's reductions keep the mean's bits)."""
    parts = row_blocks(_facts, view, each={"facts": Piece((1, 4))}).each["facts"]
    total = parts[:, 0].sum()
    rest = da.stack([parts[:, 1].sum(), parts[:, 2].sum(), parts[:, 3].min()])
    total, rest = dask.compute(total, rest)
    count, bad, low = (float(v) for v in rest)
    return {"sum": float(total), "count": count, "nonfinite": bad, "min": low,
            "mean": float(total) / count if count else 0.0}


def random_rows(chunks, width: int, seed: int, scale: float, *, positive: bool = False,
                zero_last: bool = False) -> da.Array:
    """A tall random factor in row blocks ``chunks``: block b drawn from a
    stream keyed by (seed, b), so the same on any number of workers;
    ``zero_last``: its last column 0 (biases start at 0). Scaled in place:
    one block-sized array per block (300k x 33: 75 MiB, not three)."""
    def draw(block, block_info=None):
        b = block_info[0]["chunk-location"][0]
        values = np.random.default_rng([seed, b]).standard_normal(block.shape)
        values *= scale
        if positive:
            np.abs(values, out=values)
        if zero_last:
            values[:, -1] = 0.0
        return values

    return da.zeros((sum(chunks), width), chunks=(chunks, (width,))).map_blocks(
        draw, dtype=np.float64)
