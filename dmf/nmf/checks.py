"""What NMF asks of its input beyond finiteness: no negative entries, and no
zeros when beta <= 0. One blockwise pass that also returns the sums the
initialization needs."""

from __future__ import annotations

import numbers

import dask.array as da
import numpy as np
import scipy.sparse

from dmf.blocks import Piece, row_blocks
from dmf.errors import InputError


def check_stopping(max_iter, tol) -> tuple[int, float]:
    """``max_iter`` an integer >= 1 and ``tol`` a number >= 0 (Python or
    numpy), as int and float, or InputError."""
    if isinstance(max_iter, (bool, np.bool_)) or not isinstance(max_iter, numbers.Integral) \
            or max_iter < 1:
        raise InputError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real) or not tol >= 0:
        raise InputError(f"tol must be a number >= 0, got {tol!r}")
    return int(max_iter), float(tol)


def _row_facts(blocks, row_starts, col_starts, ncols: int, index: int) -> dict:
    """The ``facts`` (:func:`_block_facts`) of block row ``index``, 1 x 5
    per block, side by side."""
    r0 = int(row_starts[index])
    return {"facts": np.concatenate([_block_facts(block, r0, int(c0), ncols)
                                     for block, c0 in zip(blocks, col_starts, strict=True)],
                                    axis=1)}


def _block_facts(block, r0: int, c0: int, ncols: int):
    """[negatives, first negative (flat index in X, or -1), zeros, first
    zero, sum] of the block at row ``r0``, column ``c0``."""
    if scipy.sparse.issparse(block):  # zeros are implicit: only the stored values can be < 0
        coo = scipy.sparse.coo_matrix(block)
        neg = coo.data < 0
        first_neg = -1
        if neg.any():
            order = np.lexsort((coo.col[neg], coo.row[neg]))[0]
            first_neg = (r0 + int(coo.row[neg][order])) * ncols + c0 + int(coo.col[neg][order])
        zeros = block.shape[0] * block.shape[1] - int((coo.data != 0).sum())
        return np.array([[int(neg.sum()), first_neg, zeros, -1,
                          float(coo.data.sum(dtype=np.float64))]])
    block = np.asarray(block)

    def first(mask) -> int:
        hits = np.flatnonzero(mask)
        if not len(hits):
            return -1
        r, c = divmod(int(hits[0]), block.shape[1])
        return (r0 + r) * ncols + c0 + c

    neg, zero = block < 0, block == 0
    return np.array([[int(neg.sum()), first(neg), int(zero.sum()), first(zero),
                      float(block.sum(dtype=np.float64))]])


def nonnegative_facts(X: da.Array, name: str, *, zeros_allowed: bool) -> dict:
    """Check X for NMF; return its sum and size.

    Examples
    --------
    >>> import numpy as np
    >>> nonnegative_facts(da.from_array(np.array([[1.0, -2.0], [0.0, 3.0]])), "X",
    ...                   zeros_allowed=True)
    Traceback (most recent call last):
    ...
    dmf.errors.InputError: X: 1 negative values (first at row 0, column 1); NMF needs X >= 0 ...
    """
    starts = [np.cumsum((0, *chunks[:-1])) for chunks in X.chunks]
    each = {"facts": Piece((1, 5 * X.numblocks[1]))}
    facts = row_blocks(_row_facts, X, *starts, X.shape[1], columns=True, index=True,
                       each=each).each["facts"].compute().reshape(-1, 5)
    ncols = X.shape[1]

    def where(column: int) -> str:
        hits = facts[:, column][facts[:, column] >= 0]
        r, c = divmod(int(hits.min()), ncols)
        return f"first at row {r}, column {c}"

    negatives = int(facts[:, 0].sum())
    if negatives:
        raise InputError(f"{name}: {negatives} negative values ({where(1)}); NMF needs X >= 0 "
                         "(shift or clip the data, or use dmf.svd)")
    zeros = int(facts[:, 2].sum())
    if zeros and not zeros_allowed:
        raise InputError(f"{name}: {zeros} zero values ({where(3)}); a beta-divergence with "
                         "beta <= 0 (e.g. Itakura-Saito) is undefined at 0: add a small "
                         "offset to X (e.g. X + 1e-6 * X.max()) or use beta > 0")
    total = float(facts[:, 4].sum())
    return {"sum": total, "mean": total / (X.shape[0] * X.shape[1])}
