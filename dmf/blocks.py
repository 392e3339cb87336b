"""The row pass: one read of X, a function of each row block with small
broadcast factors, and named partial results summed over the blocks.

Most of dmf's iterations are this pass. A task per block row gets the block
(its chunk read and checked inside the same task), its own rows of a tall
factor, and the small factors as single graph keys (each sent to a worker
once, not embedded in every task). It returns the block's new rows of the
tall factor and a dict of named partial sums, such as ``{"A": W_b^T X_b,
"loss": ...}``; dask's tree adds the sums up in an order fixed by the
chunks, so the totals are bitwise the same on any number of workers. The
new rows and the sums are persisted together, so each block is read once.

A block function sees names, never offsets: :func:`row_pass` packs its dict
into one float64 vector inside the task (the order of ``parts``) and
unpacks the totals, so what travels and how it is added up is one small
array per block, as before names existed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

#: Named partial results: name -> shape (``()`` for a number).
Parts = Mapping[str, tuple[int, ...]]


#: dask's default fan-in of a reduction tree (``split_every``)
SPLIT_EVERY = 4


def stacked_sum(parts: da.Array) -> da.Array:
    """Sum of per-row results (r x a x b, one chunk per row) as a lazy a x b
    array, in float64.

    Bit for bit what ``parts.sum(axis=0, dtype=np.float64)`` gives (dask's
    tree: groups of SPLIT_EVERY consecutive blocks, its depth, rows added in
    order), without that graph's first task per block, which "sums" the
    block's single row: each task costs the scheduler about a millisecond of
    the CPU the workers need (an NMF iteration over 15 blocks had 66)."""
    if any(size != 1 for size in parts.chunks[0]) or any(len(c) != 1 for c in parts.chunks[1:]):
        return parts.sum(axis=0, dtype=np.float64)
    rows, shape = parts.numblocks[0], parts.shape[1:]
    name = f"stacked-sum-{tokenize(parts)}"
    level = [(parts.name, b, *(0,) * len(shape)) for b in range(rows)]
    # the depth dask gives the tree (math.log's rounding included)
    depth = max(1, math.ceil(math.log(rows, SPLIT_EVERY))) if rows > 1 else 1
    graph = {}
    for d in range(depth - 1):
        groups = [level[i:i + SPLIT_EVERY] for i in range(0, len(level), SPLIT_EVERY)]
        level = [(f"{name}-{d}", g) for g in range(len(groups))]
        graph.update({key: (_sum_rows, group, True)
                      for key, group in zip(level, groups, strict=True)})
    graph[(name, *(0,) * len(shape))] = (_sum_rows, level, False)
    layers = HighLevelGraph.from_collections(name, graph, dependencies=[parts])
    return da.Array(layers, name, chunks=tuple((size,) for size in shape), dtype=np.float64,
                    meta=np.empty((0,) * len(shape)))


def _sum_rows(parts: list, keepdims: bool) -> np.ndarray:
    """One node of :func:`stacked_sum`'s tree: the parts stacked and added
    in order, in float64, as dask's reduction does."""
    return np.sum(np.concatenate(parts, axis=0), axis=0, dtype=np.float64, keepdims=keepdims)


def whole_rows(X: da.Array) -> bool:
    """Whether X's blocks span all of its columns: the per-row tasks then
    take X's index ``"ij"`` uncontracted, which lets dask fuse reads in."""
    return X.numblocks[1] == 1


def flat_objects(packed: da.Array) -> da.Array:
    """A per-row object array built as r x 1 x 1 (so that no index was
    contracted) as the 1-D array of r objects the ``part_of`` maps take."""
    return packed[:, 0, 0]


def part_of(packed, index: int | str, lead: bool):
    """Item ``index`` (a name, or a position in a tuple) of a one-element
    object block, of any number of dimensions (``lead``: with a leading axis
    of length 1, for :func:`stacked_sum`)."""
    item = packed.flat[0][index]
    return item[None] if lead else item


def _one_block_row(row_func, in_row: tuple[bool, ...], lead: int | None, block, *args):
    """``row_func`` on a block row of a single block, called as on a row of
    several: the block and each argument that comes per column block
    (``in_row``) as a list of one. ``lead``: the result reshaped to that many
    axes of length 1 (an object block of :func:`row_objects`)."""
    out = row_func([block], *([a] if wrap else a for a, wrap in zip(args, in_row, strict=True)))
    return out if lead is None else np.reshape(out, (1,) * lead)


def _per_block(row_func, args: tuple, lead: int | None = None):
    """:func:`_one_block_row` for blockwise's (argument, index) pairs ``args``:
    an argument whose index has X's column index ``j`` comes per column block."""
    in_row = tuple(index is not None and "j" in index for index in args[1::2])
    return functools.partial(_one_block_row, row_func, in_row, lead)


def row_sums_of(row_func: Callable, X: da.Array, *args, shape: tuple[int, ...],
                new_b: bool = False) -> da.Array:
    """Lazy sum over X's block rows of ``row_func(blocks, *args)``, a 1 x a
    (``shape`` (a,)) or 1 x a x b (``shape`` (a, b)) float64 array per block
    row, by the tree of :func:`stacked_sum`. X is never rechunked: the task
    of block row r gets the row's list of blocks [X_r1 ... X_rc], and each
    argument indexed with X's column index ``j`` as the list of its pieces.
    ``args`` are blockwise's (argument, index) pairs, "i" being X's row
    blocks and "b" the result's second axis (``new_b``: an axis of no
    argument). When X has whole rows no index is contracted (the row is a
    list of one block), so dask fuses each chunk's read into its task
    (:func:`whole_rows`)."""
    whole = whole_rows(X)
    first = "j" if whole else "a"
    out = "i" + first + ("b" if len(shape) == 2 else "")
    new_axes = ({} if whole else {"a": shape[0]}) | ({"b": shape[1]} if new_b else {})
    adjust = {"i": 1} | ({"j": shape[0]} if whole else {}) | (
        {"b": shape[1]} if len(shape) == 2 else {})
    func = _per_block(row_func, args) if whole else row_func
    parts = da.blockwise(func, out, X, "ij", *args, new_axes=new_axes, adjust_chunks=adjust,
                         concatenate=None if whole else False, dtype=np.float64,
                         meta=np.empty((0,) * len(out)))
    return stacked_sum(parts)


def row_objects(row_func: Callable, X: da.Array, *args) -> da.Array:
    """Lazy 1-D object array of ``row_func(blocks, *args)`` (a one-element
    object array) per block row of X, called as :func:`row_sums_of` calls
    it (X never rechunked; reads fused in for whole rows); :func:`part_of`
    picks its items."""
    if whole_rows(X):
        return flat_objects(da.blockwise(
            _per_block(row_func, args, lead=3), "ijb", X, "ij", *args,
            adjust_chunks={"i": 1, "j": 1, "b": 1}, dtype=object,
            meta=np.empty((0, 0, 0), dtype=object)))
    return da.blockwise(row_func, "i", X, "ij", *args, adjust_chunks={"i": 1},
                        concatenate=False, dtype=object, meta=np.empty((0,), dtype=object))


def row_tall(row_func: Callable, X: da.Array, *args, width: int, dtype) -> da.Array:
    """Lazy tall m x ``width`` array in X's row blocks, block row r being
    ``row_func(blocks, *args)`` of the row's list of blocks (X never
    rechunked)."""
    return da.blockwise(row_func, "ib", X, "ij", *args, adjust_chunks={"b": width},
                        concatenate=False, dtype=dtype, meta=np.empty((0, 0), dtype=dtype))


def picked(objects: da.Array, name: int | str, chunks: tuple, dtype=np.float64,
           lead: bool = False) -> da.Array:
    """Item ``name`` of each block of a 1-D per-row object array
    (:func:`row_objects`, :func:`indexed_row_objects`), with ``chunks``: the
    rows' pieces of a tall result, or (``lead``) a 1 x ... sum term per row
    for :func:`stacked_sum`."""
    new_axis = list(range(1, len(chunks)))
    return objects.map_blocks(part_of, name, lead, new_axis=new_axis, chunks=chunks, dtype=dtype,
                              meta=np.empty((0,) * len(chunks), dtype=dtype))


def indexed_row_objects(func: Callable, X: da.Array, *args) -> da.Array:
    """Lazy 1-D object array of ``func(X_b, *args, block_id=...)`` (a
    one-element object array) per block row b of X (whole rows:
    :func:`full_rows`), for a task that draws from a stream keyed by its
    block's index (an index array as an input would let dask's ordering
    read every block first)."""
    X = full_rows(X)
    return X.map_blocks(func, *args, drop_axis=1, chunks=((1,) * X.numblocks[0],),
                        dtype=object, meta=np.empty((0,), dtype=object))


def indexed_row_sums(func: Callable, T: da.Array, *args, shape: tuple[int, int]) -> da.Array:
    """Lazy sum of ``func(T_b, *args, block_id=...)`` (1 x a x b, ``shape``
    (a, b)) over the row blocks of a tall T of one column block, by the tree
    of :func:`stacked_sum`."""
    chunks = ((1,) * T.numblocks[0], *((size,) for size in shape))
    parts = T.map_blocks(func, *args, new_axis=2, chunks=chunks, dtype=np.float64,
                         meta=np.empty((0, 0, 0)))
    return stacked_sum(parts)


def full_rows(X: da.Array) -> da.Array:
    """X with whole rows per block (a no-op for dmf's row-blocked stores)."""
    return X if whole_rows(X) else X.rechunk({1: -1})


def _aligned(value):
    """A dense array aligned to its itemsize (copied only when it is not);
    anything else as it is. Arrays received from another process (H, W's
    rows, a decoded chunk) can start at any byte, and numpy multiplies an
    unaligned array without BLAS, in another order: the same pass gave other
    bits on a cluster than in process wherever OpenBLAS picks its AVX-512
    kernels (see :func:`dmf.linalg.products.for_blas`)."""
    if isinstance(value, np.ndarray) and not value.flags.aligned:
        return np.require(value, requirements="A")
    return value


def on_blocks(func, X_block, W_block, H, *args):
    """``func`` on one block row (its arrays aligned: :func:`_aligned`), its
    result shaped as the r x 1 x 1 grid :func:`per_row_grid` builds."""
    X_block, W_block, H, *args = (_aligned(a) for a in (X_block, W_block, H, *args))
    return np.reshape(func(X_block, W_block, H, *args), (1, 1, 1))


def one_key(A) -> da.Array:
    """A small factor (numpy or dask) as a dask array of a single chunk: one
    graph key, sent to each worker once rather than embedded in every task."""
    if isinstance(A, da.Array):
        return A.rechunk(A.shape)
    return da.from_array(A, chunks=A.shape)


def per_row_grid(func, X: da.Array, W: da.Array, H, *args, dtype) -> da.Array:
    """``func(X_b, W_b, H, *args)`` (one value or object per row) for each
    block row b of X (whole rows: :func:`full_rows`, a no-op for dmf's
    stores and ratings views), as an r x 1 x 1 grid. H (numpy or dask)
    goes whole, as one key: k x n (NMF's H) or n x k (the other side's
    factor of a CF half-step), k being W's width. An argument that is a
    1-D dask array goes in block by block (in X's row blocks); the others
    as they are. No index is contracted, so dask fuses each chunk's read
    into its task and copies no block (see
    :func:`whole_rows`)."""
    X = full_rows(X)
    H_key = one_key(H)
    H_index = "kj" if H.shape == (W.shape[1], X.shape[1]) else "jk"
    indexed = [a for arg in args
               for a in ((arg, "i") if isinstance(arg, da.Array) else (arg, None))]
    return da.blockwise(on_blocks, "ijk", func, None, X, "ij", W.rechunk((X.chunks[0], -1)),
                        "ik", H_key, H_index, *indexed,
                        adjust_chunks={"i": 1, "j": 1, "k": 1}, dtype=dtype,
                        meta=np.empty((0, 0, 0), dtype=dtype))


def per_row(func, X: da.Array, W: da.Array, H: np.ndarray, *args, dtype) -> da.Array:
    """:func:`per_row_grid` as the 1-D array of its r values."""
    return flat_objects(per_row_grid(func, X, W, H, *args, dtype=dtype))


def size_of(parts: Parts) -> int:
    """The length of the packed vector of ``parts``."""
    return sum(int(np.prod(shape)) for shape in parts.values())


def pack(named: Mapping[str, object], parts: Parts) -> np.ndarray:
    """``named``'s values in the order of ``parts``, raveled into one
    float64 vector."""
    return np.concatenate([np.ravel(np.asarray(named[name], dtype=np.float64))
                           for name in parts])


def unpack(flat: np.ndarray, parts: Parts) -> dict[str, np.ndarray]:
    """The inverse of :func:`pack`: each part's slice of ``flat`` in its
    shape (a 0-d array for a number)."""
    named, start = {}, 0
    for name, shape in parts.items():
        size = int(np.prod(shape))
        named[name] = flat[start:start + size].reshape(shape)
        start += size
    return named


def _packed_task(func, parts: Parts, X_block, W_block, H, *args):
    """``func``'s (new rows, named sums) as the one-element object block
    :func:`row_pass` splits: the pair (new rows, the sums packed, 1 x size), as
    tests/test_nmf.py reads it."""
    rows, named = func(X_block, W_block, H, *args)
    out = np.empty(1, dtype=object)
    out[0] = (rows, pack(named, parts)[None])
    return out


def packed(func: Callable, parts: Parts) -> Callable:
    """The task :func:`row_pass` runs on a block row: ``func`` with its
    named sums packed (see :func:`pack`)."""
    return functools.partial(_packed_task, func, dict(parts))


def row_pass(func: Callable, X: da.Array, W: da.Array, H, *args,
             parts: Parts) -> tuple[da.Array, dict[str, np.ndarray]]:
    """Run ``func(X_b, W_b, H, *args) -> (new W_b, {name: partial sum})`` on
    every block row of X (whole rows: :func:`full_rows`; H whole, as
    :func:`per_row_grid` takes it): the new W (persisted, in X's row blocks)
    and the sums, each added up over the blocks in float64, from one read of
    X. ``parts`` names the sums and gives their shapes."""
    k = W.shape[1]
    size = size_of(parts)
    grid = per_row_grid(packed(func, parts), X, W, H, *args, dtype=object)
    # both picked from the r x 1 x 1 grid (a 1-D view of it would cost a task
    # per block); dask fuses each pick into its block's task
    W_new = grid.map_blocks(part_of, 0, False, drop_axis=2, chunks=(X.chunks[0], (k,)),
                            dtype=np.float64, meta=np.empty((0, 0)))
    sums = stacked_sum(grid.map_blocks(part_of, 1, False, drop_axis=2,
                                       chunks=((1,) * X.numblocks[0], (size,)),
                                       dtype=np.float64, meta=np.empty((0, 0))))
    # one persist for both, or each block would be read twice
    W_new, sums = dask.persist(W_new, sums)
    return W_new, unpack(np.asarray(sums.compute()), parts)


def _summed_task(X_block, func, parts: Parts, *args) -> np.ndarray:
    """``func``'s named sums of one block row, packed as a 1 x size block."""
    return pack(func(_aligned(X_block), *args), parts)[None]


def row_sums(func: Callable, X: da.Array, *args, parts: Parts) -> dict[str, np.ndarray]:
    """Named sums only: ``func(X_b, *args) -> {name: partial sum}`` on every
    block row of X (whole rows: :func:`full_rows`; ``args`` as they are),
    added up over the blocks in float64 by the tree of :func:`row_pass`,
    from one read of X."""
    grid = full_rows(X).map_blocks(_summed_task, func, dict(parts), *args,
                                   chunks=((1,) * X.numblocks[0], (size_of(parts),)),
                                   dtype=np.float64, meta=np.empty((0, 0)))
    return unpack(np.asarray(stacked_sum(grid).compute()), parts)


__all__ = ["SPLIT_EVERY", "Parts", "flat_objects", "full_rows", "indexed_row_objects",
           "indexed_row_sums", "on_blocks", "one_key", "pack", "packed", "part_of", "per_row",
           "per_row_grid", "picked", "row_objects", "row_pass", "row_sums", "row_sums_of",
           "row_tall", "size_of", "stacked_sum", "unpack", "whole_rows"]
