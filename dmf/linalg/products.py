"""Block products with a large matrix X, each one pass over X.

X is read block by block (dense or scipy.sparse blocks, any chunk grid: row
blocks, column blocks or both, never rechunked). One task handles one block
row X_r = [X_r1 ... X_rc] (:func:`dmf.blocks.row_blocks` with
``columns=True`` hands it the row as a list), so a task holds at most one
row of blocks. Small results are accumulated in float64 per row, named, and
summed by the row pass's tree, whose shape depends only on the chunks, so
they are bitwise the same whatever the number of workers; float32 blocks
are widened to float64 a slice at a time.

- ``gram_apply(X, V)``      = X^T X V, as sum_r X_r^T (X_r V): n x p.
- ``transpose_times(X, Y)`` = X^T Y for a tall Y with X's row blocks: n x p.
- ``tall_times(X, M)``      = X M, a lazy tall array with X's row blocks.
- ``column_moments(X)``     = column sums, sum of squares, squared row sums.
- ``gram_with_moments(X, V)`` = the first two in the same tasks.
- ``gram_and_product(X, V)`` = X^T X V and the tall X V, in the same tasks.
- ``gram_matrix_with_moments(X)`` = X^T X itself (float64 throughout) and
  the moments, in the same tasks.

Everything is built by :func:`dmf.blocks.row_blocks`, from dask array
operations, never ``to_delayed`` of X: a graph made that way names a
persisted X's blocks without holding their futures, and the blocks are
released under any lazy result built on them. When X has a single column
block (dmf's row-blocked stores) no index is contracted, and dask fuses the
read of a chunk into the task that multiplies it (with a contracted index
each block takes a read task, a scheduler round trip and a product task:
measured slower, see benchmarks/README.md).
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import scipy.sparse
from scipy.linalg.blas import dsyrk

from dmf.blocks import Parts, Piece, Pieces, Sums, Tall, row_blocks

#: Multiply at most this many bytes of a block at a time: the slice stays in
#: cache (the fastest size measured, see benchmarks/README.md).
SLICE_BYTES = 2 * 2**20
#: The same for X^T (X V) (:func:`gram_apply`) in its transposed form, where
#: the two products share the slice, so a larger slice measured faster.
GRAM_SLICE_BYTES = 4 * 2**20
#: float32 sums of X_s^T Y_s run over at most this many rows before they
#: are added to the float64 total: float32 rounding grows with the length of
#: a sum, and over a whole 4 MiB slice (5000 rows of 200 columns) it put the
#: randomized singular values 20 eps32 s_1 off float64's; over 256 rows,
#: 3 eps32 s_1 (scikit-learn's randomized_svd: 1 to 3).
ACC_ROWS = 128


def row_slices(block, itemsize: int = 8, target: int = SLICE_BYTES):
    rows = block.shape[0]
    step = max(1, target // max(1, block.shape[1] * itemsize))
    for r0 in range(0, rows, step):
        yield slice(r0, min(rows, r0 + step))


def for_blas(part):
    """``part`` aligned, in the precision its products are computed in:
    float32 stays float32, anything else becomes float64.

    OpenBLAS takes another code path, with other rounding, for arrays not
    aligned to their itemsize, and decoded Zarr chunks or arrays received
    from another worker can start at any byte: without the copy (made only
    when needed) the same block gives different bits on different workers.
    """
    dtype = np.float32 if part.dtype == np.float32 else np.float64
    if scipy.sparse.issparse(part):
        return part.astype(dtype, copy=False)
    return np.require(part, dtype=dtype, requirements="A")


def as_f64(part):
    """``part`` as aligned float64 (see :func:`for_blas`)."""
    if scipy.sparse.issparse(part):
        return part.astype(np.float64)
    return np.require(part, dtype=np.float64, requirements="A")


def scratch(block, p: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Buffers for a slice's products, reused across slices: fresh ones per
    slice cost a page fault per 4 KiB where glibc hands out every block
    above 128 KiB with mmap (Dask sets MALLOC_TRIM_THRESHOLD_ on its
    workers, which freezes that threshold): measured slower."""
    step = next(row_slices(block)).stop if block.shape[0] else 0
    return np.empty((step, p), dtype=dtype), np.empty((block.shape[1], p), dtype=dtype)


def moment_parts(n: int) -> Parts:
    """The named moments of an m x n X: column sums, sum of squares and sum
    of squared row sums (the last two numbers)."""
    return {"colsum": (n,), "sumsq": (), "rowsq": ()}


def gram_parts(n: int, p: int) -> Parts:
    """X^T X V (n x p, named ``gram``) and X's moments (:func:`moment_parts`),
    summed together so that one task per block row returns both (one
    consumer per block: a second one would keep blocks in memory until both
    ran)."""
    return {"gram": (n, p), **moment_parts(n)}


def split_moments(named: dict) -> dict:
    """The moments among the named sums of a pass (:func:`column_moments`,
    :func:`gram_with_moments`), the two numbers as floats."""
    return {"colsum": named["colsum"], "sumsq": float(named["sumsq"]),
            "rowsq": float(named["rowsq"])}


def split_gram(named: dict) -> tuple[np.ndarray, dict]:
    """X^T X V and the moments (:func:`split_moments`) among the named sums
    of :func:`gram_with_moments` or :func:`gram_matrix_with_moments`."""
    return named["gram"], split_moments(named)


# -- per block row -----------------------------------------------------------------

def _times(blocks, Ms, widen: bool = False):
    """X_r M in float64, for the row's blocks and M's matching pieces (a
    float32 block multiplied in float32, or in float64 if ``widen``)."""
    out = None
    for block, Mc in zip(blocks, Ms, strict=True):
        Mc = np.asarray(Mc, dtype=np.float64 if widen else for_blas(block[:0]).dtype)
        part = np.empty((block.shape[0], Mc.shape[1]))
        y, _ = scratch(block, Mc.shape[1], Mc.dtype)
        for sl in row_slices(block):
            xs = as_f64(block[sl]) if widen else for_blas(block[sl])
            if scipy.sparse.issparse(xs):
                part[sl] = xs @ Mc
                continue
            np.matmul(xs, Mc, out=y[:xs.shape[0]])
            part[sl] = y[:xs.shape[0]]
        out = part if out is None else out + part
    return out


def _gram_core(blocks, Vs, keep_y: bool, moments: bool = False):
    """X_r^T (X_r V) in float64; X_r V itself (float64) if ``keep_y``; the
    row's named moments (see :func:`moment_parts`) if ``moments``."""
    if len(blocks) > 1:
        Y = _times(blocks, Vs)
        return (_row_transpose(blocks, Y), Y if keep_y else None,
                _named_moments(blocks) if moments else None)
    block = blocks[0]  # the common case: fuse per slice, never hold X_r V whole
    dtype = for_blas(block[:0]).dtype
    # Worked transposed, (V^T X_s^T) X_s: the second product then runs with
    # the slice as OpenBLAS's faster operand layout (measured faster than
    # X_s^T (X_s V)); the first is V^T X_s^T in float64 but (X_s V)^T in
    # float32, whichever OpenBLAS's kernels for this CPU run faster
    # (measured; the same bits in float32).
    Vt = np.ascontiguousarray(np.asarray(Vs[0]).T, dtype=dtype)
    p, n = Vt.shape
    out_t = np.zeros((p, n))
    slices = list(row_slices(block, np.dtype(dtype).itemsize, GRAM_SLICE_BYTES))
    longest = slices[0].stop if slices else 0
    y = np.empty((longest, p), dtype=dtype) if dtype == np.float32 else None
    y_t = np.empty((p, longest), dtype=dtype) if y is None else None
    acc_t = np.empty((p, n), dtype=dtype)
    Y_t = np.empty((p, block.shape[0])) if keep_y else None
    sums = SliceMoments(block) if moments else None
    for sl in slices:
        xs = for_blas(block[sl])
        rows = xs.shape[0]
        if scipy.sparse.issparse(xs):
            ys = xs @ Vt.T
            out_t += (xs.T @ ys).T
            ys_t = ys.T
        else:
            if y is not None:
                ys_t = np.matmul(xs, Vt.T, out=y[:rows]).T
            else:
                ys_t = np.matmul(Vt, xs.T, out=y_t[:, :rows])
            for r0 in range(0, rows, ACC_ROWS if dtype == np.float32 else rows):
                part = slice(r0, min(rows, r0 + ACC_ROWS)) if dtype == np.float32 else slice(None)
                np.matmul(ys_t[:, part], xs[part], out=acc_t)
                np.add(out_t, acc_t, out=out_t)
        if keep_y:
            Y_t[:, sl] = ys_t
        if sums is not None:
            sums.add(xs)
    return (np.ascontiguousarray(out_t.T), None if Y_t is None else np.ascontiguousarray(Y_t.T),
            None if sums is None else sums.named())


def _row_gram(blocks, Vs, with_moments=False) -> dict:
    G, _, moments = _gram_core(blocks, Vs, keep_y=False, moments=with_moments)
    return {"gram": G, **(moments or {})}


def _row_gram_keep(blocks, Vs, with_moments=False) -> dict:
    G, Y, moments = _gram_core(blocks, Vs, keep_y=True, moments=with_moments)
    return {"gram": G, "rows": Y, **(moments or {})}


def _row_transpose(blocks, Y):
    """X_r^T Y_r in float64: n x p."""
    parts = []
    for block in blocks:
        Yb = np.require(Y, dtype=for_blas(block[:0]).dtype, requirements="A")
        total = np.zeros((block.shape[1], Y.shape[1]))
        _, acc = scratch(block, Y.shape[1], Yb.dtype)
        for sl in row_slices(block):
            xs = for_blas(block[sl])
            if scipy.sparse.issparse(xs):
                total += xs.T @ Yb[sl]
                continue
            np.matmul(xs.T, Yb[sl], out=acc)
            np.add(total, acc, out=total)
        parts.append(total)
    return np.concatenate(parts)


def _row_transpose_times(blocks, Y) -> dict:
    return {"product": _row_transpose(blocks, Y)}


def _row_tall(blocks, Ms, dtype, widen=False) -> dict:
    return {"rows": _times(blocks, Ms, widen).astype(dtype, copy=False)}


class SliceMoments:
    """Column sums, sum of squares and sum of squared row sums of a block
    that spans all of X's columns, added up a row slice at a time while the
    slice is in cache (a sweep of its own re-reads the block from memory:
    measured several times the cost). All in float64: a float32
    slice is widened into a reused buffer first. (Summing in float32 within
    a slice was cheaper, but the total variance sumsq / m - |mean|^2
    cancels: on data with mean 50 and spread 1 it lost 7e-6 of it.)"""

    def __init__(self, block):
        n, step = block.shape[1], next(row_slices(block)).stop if block.shape[0] else 0
        self._step = max(step, 1)
        self.colsum, self.sumsq, self.rowsq = np.zeros(n), 0.0, 0.0
        self._ones_rows, self._ones_cols = np.ones(step), np.ones(n)
        wide = block.dtype == np.float64 or scipy.sparse.issparse(block)
        self._wide = None if wide else np.empty((step, n))

    def add(self, xs) -> None:
        if xs.shape[0] > self._step:  # widened a cache-sized piece at a time
            for r0 in range(0, xs.shape[0], self._step):
                self.add(xs[r0:r0 + self._step])
            return
        if scipy.sparse.issparse(xs):
            self.colsum += np.asarray(xs.sum(axis=0, dtype=np.float64)).ravel()
            rowsum = np.asarray(xs.sum(axis=1, dtype=np.float64)).ravel()
            self.sumsq += float(xs.multiply(xs).sum(dtype=np.float64))
        else:
            if xs.dtype != np.float64:
                np.copyto(self._wide[:xs.shape[0]], xs)
                xs = self._wide[:xs.shape[0]]
            self.colsum += self._ones_rows[:xs.shape[0]] @ xs
            rowsum = xs @ self._ones_cols
            self.sumsq += float(np.vdot(xs, xs))
        self.rowsq += float(rowsum @ rowsum)

    def named(self) -> dict:
        """The sums so far by name (see :func:`moment_parts`)."""
        return {"colsum": self.colsum, "sumsq": self.sumsq, "rowsq": self.rowsq}


def _named_moments(blocks) -> dict:
    """A block row's moments by name (see :func:`moment_parts`)."""
    if len(blocks) == 1:
        sums = SliceMoments(blocks[0])
        for sl in row_slices(blocks[0]):
            sums.add(for_blas(blocks[0][sl]))
        return sums.named()
    colsums = []
    rowsum = np.zeros(blocks[0].shape[0])
    sumsq = 0.0
    for block in blocks:  # a row's sums need all of its blocks
        acc = np.zeros(block.shape[1])
        for sl in row_slices(block):
            xs = for_blas(block[sl])  # sums below accumulate in float64 regardless
            acc += np.asarray(xs.sum(axis=0, dtype=np.float64)).ravel()
            rowsum[sl] += np.asarray(xs.sum(axis=1, dtype=np.float64)).ravel()
            sumsq += float(xs.multiply(xs).sum(dtype=np.float64) if scipy.sparse.issparse(xs)
                           else np.einsum("ij,ij->", xs, xs, dtype=np.float64))
        colsums.append(acc)
    return {"colsum": np.concatenate(colsums), "sumsq": sumsq, "rowsq": float(rowsum @ rowsum)}


def _row_xtx(blocks):
    """X_r^T X_r (n x n, ``gram``) with the row's moments (see
    :func:`gram_parts`). Every slice is widened to
    float64 before it is multiplied (float32 too: the Gram matrix squares
    the condition number, so its products get the full float64), and dense
    slices go through BLAS ``dsyrk`` (the upper triangle only: half of a
    matrix product's work), accumulated in place."""
    n = sum(block.shape[1] for block in blocks)
    rows = blocks[0].shape[0]
    step = max(1, SLICE_BYTES // max(1, n * 8))
    G = np.zeros((n, n), order="F")
    sums = SliceMoments(blocks[0]) if len(blocks) == 1 else None
    upper_only = False
    for r0 in range(0, rows, step):
        sl = slice(r0, min(rows, r0 + step))
        parts = [as_f64(block[sl]) for block in blocks]
        if any(scipy.sparse.issparse(part) for part in parts):
            xs = scipy.sparse.hstack(parts, format="csr") if len(parts) > 1 else parts[0]
            G += (xs.T @ xs).toarray()
        else:
            xs = parts[0] if len(parts) == 1 else np.hstack(parts)
            # xs is C-ordered, so xs.T is Fortran-ordered: no copy
            G = dsyrk(1.0, xs.T, beta=1.0, c=G, trans=0, lower=0, overwrite_c=1)
            upper_only = True
        if sums is not None:
            sums.add(xs)
    if upper_only:
        G = np.triu(G) + np.triu(G, 1).T
    moments = sums.named() if sums is not None else _named_moments(blocks)
    return {"gram": G, **moments}


# -- public ------------------------------------------------------------------------

def gram_apply(X: da.Array, V: np.ndarray) -> Sums:
    """Lazy X^T (X V) in float64 (n x p), named ``gram``: one pass over X.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> A = np.arange(12.0).reshape(4, 3)
    >>> V = np.eye(3)[:, :1]
    >>> G = gram_apply(da.from_array(A, chunks=2), V).compute()["gram"]
    >>> bool(np.allclose(G, A.T @ A @ V))
    True
    """
    n, p = X.shape[1], np.shape(V)[1]
    return row_blocks(_row_gram, X, Pieces(V), False, sums={"gram": (n, p)}, columns=True).sums


def gram_with_moments(X: da.Array, V: np.ndarray) -> Sums:
    """:func:`gram_apply` and :func:`column_moments` in the same tasks (one
    pass, each block read and multiplied once), by name (:func:`gram_parts`;
    :func:`split_gram`)."""
    n, p = X.shape[1], np.shape(V)[1]
    return row_blocks(_row_gram, X, Pieces(V), True, sums=gram_parts(n, p), columns=True).sums


def gram_matrix_with_moments(X: da.Array) -> Sums:
    """Lazy X^T X in float64 (n x n, summed over row blocks by dask's fixed
    tree) and :func:`column_moments`, from the same tasks: one pass, by name
    (:func:`gram_parts`; :func:`split_gram`).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> A = np.arange(12.0).reshape(4, 3)
    >>> G, moments = split_gram(gram_matrix_with_moments(da.from_array(A, chunks=(3, 2))).compute())
    >>> bool(np.allclose(G, A.T @ A) and np.allclose(moments["colsum"], A.sum(0)))
    True
    """
    n = X.shape[1]
    return row_blocks(_row_xtx, X, sums=gram_parts(n, n), columns=True).sums


def gram_and_product(X: da.Array, V: np.ndarray,
                     moments: bool = False) -> tuple[Sums, da.Array]:
    """Lazy (X^T X V named ``gram``, X V) from the same tasks: one pass, the
    tall X V (float64, X's row blocks) kept instead of thrown away; with
    ``moments``, X's moments among the sums too (:func:`gram_parts`)."""
    n, p = X.shape[1], np.shape(V)[1]
    run = row_blocks(_row_gram_keep, X, Pieces(V), moments,
                     sums=gram_parts(n, p) if moments else {"gram": (n, p)},
                     each={"rows": Piece((None, p))}, columns=True)
    return run.sums, run.each["rows"]


def transpose_times(X: da.Array, Y: da.Array) -> Sums:
    """Lazy X^T Y in float64 (n x p), named ``product``, for a tall Y (in
    X's row blocks, rechunked if it has others): one pass."""
    n, p = X.shape[1], Y.shape[1]
    return row_blocks(_row_transpose_times, X, Tall(Y), sums={"product": (n, p)},
                      columns=True).sums


def tall_times(X: da.Array, M: np.ndarray, dtype=None, widen: bool = False) -> da.Array:
    """Lazy X M (m x p) with X's row blocks, summed in float64 and stored as
    ``dtype`` (default: X's dtype). A float32 X is multiplied in float32,
    or in float64 with ``widen`` (for U = X V S^-1, whose columns of small
    s_j lose eps32 s_1 / s_j to a float32 product)."""
    dtype = np.dtype(dtype or X.dtype)
    p = np.shape(M)[1]
    return row_blocks(_row_tall, X, Pieces(M), dtype, widen, each={"rows": Piece((None, p), dtype)},
                      columns=True).each["rows"]


def column_moments(X: da.Array) -> Sums:
    """Lazy column sums, sum of squares and sum of squared row sums of X by
    name (:func:`moment_parts`; :func:`split_moments`), in float64: one
    pass, or none extra when computed in the same graph as another product
    of X. (The row sums serve the transposed problem.)"""
    return row_blocks(_named_moments, X, sums=moment_parts(X.shape[1]), columns=True).sums
