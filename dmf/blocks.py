"""The row pass: one read of X, a function of each row block with small
broadcast factors, and named results, from :func:`row_blocks` alone.

Every per-row-block graph over X in dmf is built by :func:`row_blocks`. A
task per block row gets the block (its chunk read and checked inside the
same task), its own rows of tall factors (:class:`Tall`), the small factors
as single graph keys (:class:`Small`: each sent to a worker once, not
embedded in every task), and optionally its block index. It returns a dict
of named results: some are kept per block (:class:`Piece`: new rows of a
tall factor, or a small array per block), the others are summed over the
blocks (``sums``: name -> shape). dask's tree adds the sums up in an order
fixed by the chunks, so the totals are bitwise the same on any number of
workers; the tree's last node hands back the dict of totals by name.

When X has a single column block (dmf's row-blocked stores) no index is
contracted, and dask fuses each chunk's read into the task that uses it.
X in column blocks is never rechunked by a function that takes the row's
list of blocks (``columns=True``, :mod:`dmf.linalg.products`); the others
get whole rows (:func:`full_rows`, a no-op for row-blocked stores).
(What draws random rows in X's row blocks without reading X, as NMF's
random start, is not a pass over X and stays a ``map_blocks``.)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np
from dask._task_spec import Alias, Task, TaskRef
from dask.array.optimization import optimize as optimize_array
from dask.base import dont_optimize, tokenize
from dask.blockwise import Blockwise
from dask.context import globalmethod
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from dask.layers import ArrayBlockIdDep

#: Named sums: name -> shape (``()`` for a number).
Parts = Mapping[str, tuple[int, ...]]

#: dask's default fan-in of a reduction tree (``split_every``)
SPLIT_EVERY = 4


@dataclass(frozen=True)
class Small:
    """A small argument (numpy or dask) that every block gets whole, as one
    graph key."""

    value: object


@dataclass(frozen=True)
class Tall:
    """A tall dask array of X's rows: each block gets its own rows."""

    value: da.Array


@dataclass(frozen=True)
class Pieces:
    """A small n x p matrix split like X's columns: each block row gets the
    list of pieces matching its list of blocks (``columns=True``)."""

    value: np.ndarray


@dataclass(frozen=True)
class Piece:
    """A result kept per block: ``shape`` with ``None`` first for the
    block's own rows (a tall result in X's row blocks), else a small array
    per block, stacked along the first axis."""

    shape: tuple[int | None, ...]
    dtype: object = np.float64


class Sums(Delayed):
    """The named sums of :func:`row_blocks`, lazy: computes to a dict of
    float64 arrays by name (a 0-d array for a number). Optimized as dask
    arrays are, so each block's chunk read and the picking of its sums are
    fused into its task."""

    __slots__ = ()
    __dask_optimize__ = globalmethod(optimize_array, key="array_optimize",
                                     falsey=dont_optimize)

    def then(self, func: Callable, *args) -> Sums:
        """``func(totals, *args)`` of the dict of totals: one task more, lazy."""
        name = f"{getattr(func, '__name__', 'then')}-{tokenize(self, func, *args)}"
        graph = HighLevelGraph.from_collections(
            name, {name: Task(name, func, TaskRef(self.key), *args)}, dependencies=[self])
        return Sums(name, graph, layer=name)


@dataclass
class RowBlocks:
    """What :func:`row_blocks` builds, lazily: the per-block results by name
    (dask arrays) and the sums (a Delayed dict by name, or None)."""

    each: dict[str, da.Array] = field(default_factory=dict)
    sums: Sums | None = None


def row_blocks(func: Callable, X: da.Array, *args, each: Mapping[str, Piece] | None = None,
               sums: Parts | None = None, columns: bool = False,
               index: bool = False) -> RowBlocks:
    """Lazy ``func(block, *args) -> {name: result}`` over X's block rows.

    ``block`` is the row's block (whole rows), or with ``columns`` the
    row's list of blocks. ``args``: :class:`Small`, :class:`Tall`,
    :class:`Pieces` or anything else, passed as it is; with ``index`` the
    block row's index comes last. ``each`` names the results kept per block,
    ``sums`` those added up over the blocks (float64, dask's fixed tree).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> X = da.from_array(np.arange(12.0).reshape(4, 3), chunks=(2, 3))
    >>> def double(block, H):
    ...     return {"rows": block @ H, "colsum": block.sum(axis=0), "count": len(block)}
    >>> run = row_blocks(double, X, Small(2 * np.eye(3)), each={"rows": Piece((None, 3))},
    ...                  sums={"colsum": (3,), "count": ()})
    >>> run.each["rows"].compute()[1].tolist(), run.sums.compute()["colsum"].tolist()
    ([6.0, 8.0, 10.0], [18.0, 22.0, 26.0])
    """
    each, sums = dict(each or {}), dict(sums or {})
    if not columns:
        X = full_rows(X)
    whole = whole_rows(X)
    out = "ij" if whole else "i"
    kinds, pairs = [], []
    for arg in args:
        kind, pair = _argument(arg, X, whole)
        kinds.append(kind)
        pairs += pair
    grid_chunks = ((1,) * X.numblocks[0],) + (((1,),) if whole else ())
    if index:
        kinds.append("index")
        pairs += [ArrayBlockIdDep(grid_chunks), out]
    task = functools.partial(_task, func, tuple(kinds), columns, tuple(each), tuple(sums.items()))
    grid = da.blockwise(task, out, X, "ij", *pairs, adjust_chunks=dict.fromkeys(out, 1),
                        concatenate=None if whole else False, align_arrays=False, dtype=object,
                        meta=np.empty((0,) * len(out), dtype=object))
    result = RowBlocks({name: _picked(grid, name, piece, X.chunks[0])
                        for name, piece in each.items()})
    if sums:
        size = sum(int(np.prod(shape)) for shape in sums.values())
        packed = _picked(grid, _PACKED, Piece((1, size)), X.chunks[0])
        result.sums = _summed(packed, tuple(sums.items()))
    return result


def row_pass(func: Callable, X: da.Array, W: da.Array, H, *args,
             parts: Parts) -> tuple[da.Array, dict[str, np.ndarray]]:
    """``func(X_b, W_b, H, *args) -> (new W_b, {name: partial sum})`` over X's
    block rows (:func:`row_blocks`, H whole): the new W (persisted, in X's
    row blocks) and the named sums, from one read of X."""
    run = row_blocks(functools.partial(_rows_and_sums, func), X, Tall(W), Small(H), *args,
                     each={_ROWS: Piece((None, W.shape[1]))}, sums=parts)
    # one persist for both, or each block would be read twice
    W_new, sums = dask.persist(run.each[_ROWS], run.sums)
    return W_new, sums.compute()


def row_sums(func: Callable, X: da.Array, *args, parts: Parts) -> dict[str, np.ndarray]:
    """The named sums of ``func(X_b, *args) -> {name: partial sum}`` over X's
    block rows (:func:`row_blocks`), computed."""
    return row_blocks(func, X, *args, sums=parts).sums.compute()


def whole_rows(X: da.Array) -> bool:
    """Whether X's blocks span all of its columns: the per-row tasks then
    take X's index ``"ij"`` uncontracted, which lets dask fuse reads in."""
    return X.numblocks[1] == 1


def full_rows(X: da.Array) -> da.Array:
    """X with whole rows per block (a no-op for dmf's row-blocked stores)."""
    return X if whole_rows(X) else X.rechunk({1: -1})


def _one_key(A) -> da.Array:
    """A small factor (numpy or dask) as a dask array of a single chunk: one
    graph key, sent to each worker once rather than embedded in every task."""
    if isinstance(A, da.Array):
        return A.rechunk(A.shape)
    return da.from_array(A, chunks=A.shape)


def run_block(func: Callable, block, *args):
    """``func`` on one block and its arguments, arrays aligned first (see
    :func:`_aligned`): what each task of :func:`row_blocks` calls."""
    return func(_aligned(block), *(_aligned(a) for a in args))


# -- inside -----------------------------------------------------------------------

#: The names under which a task hands over its new rows (:func:`row_pass`)
#: and its sums packed into one float64 vector (summed as one array: one
#: tree for all the names).
_ROWS, _PACKED = "__rows__", "__packed__"


def _argument(arg, X: da.Array, whole: bool) -> tuple[str, list]:
    """The kind of an argument of :func:`row_blocks` and its blockwise
    (argument, index) pair. No index but X's is contracted when X has whole
    rows (a contracted index keeps dask from fusing the reads in)."""
    if isinstance(arg, Small):
        return "small", [_key(_one_key(arg.value)), None]
    if isinstance(arg, Pieces):
        M = np.asarray(arg.value, dtype=np.float64)
        if whole:
            return "pieces-whole", [_key(_one_key(M)), None]
        return "pieces", [da.from_array(M, chunks=(X.chunks[1], -1)), "jb"]
    if isinstance(arg, Tall):
        T = arg.value
        if T.ndim == 1:
            return "tall", [T.rechunk((X.chunks[0],)), "i"]
        T = T.rechunk((X.chunks[0], -1))
        return ("tall", [T, "ij"]) if whole else ("tall-list", [T, "ik"])
    if isinstance(arg, da.Array):
        raise TypeError("a dask argument of row_blocks is Small, Tall or Pieces")
    return "literal", [arg, None]


def _key(A: da.Array) -> Delayed:
    """A single-chunk dask array as the Delayed of its one key (a literal of
    blockwise that is a graph key: no index, so none is contracted)."""
    key = A.__dask_keys__()
    while isinstance(key, list):
        key = key[0]
    layer = A.__dask_graph__().layers[A.name]
    if not isinstance(layer, Blockwise):
        return Delayed(key, A.__dask_graph__(), layer=A.name)
    # a blockwise layer taken by a literal confuses dask's fusion of
    # blockwise layers: an alias of a layer of its own stands between
    name = f"key-{tokenize(A)}"
    graph = HighLevelGraph.from_collections(name, {name: Alias(name, key)}, dependencies=[A])
    return Delayed(name, graph)


def _task(func, kinds, columns: bool, each: tuple, sums: tuple, X_part, *args):
    """One block row of :func:`row_blocks`: the arguments unwrapped by kind,
    ``func`` run, its results as a one-element object block (a dict:
    the kept results by name, the sums packed)."""
    given = []
    for kind, arg in zip(kinds, args, strict=True):
        if kind == "pieces-whole":
            arg = [arg]
        elif kind == "pieces":  # the column index of M is contracted too
            arg = [piece[0] if isinstance(piece, list) else piece for piece in arg]
        elif kind in ("tall-list", "index"):  # a one-element list per block row
            arg = arg[0]
        given.append(arg)
    if columns:
        X_part = [_aligned(b) for b in (X_part if isinstance(X_part, list) else [X_part])]
    named = run_block(func, X_part, *given)
    kept = {name: named[name] for name in each}
    if sums:
        kept[_PACKED] = np.concatenate([np.ravel(np.asarray(named[name], dtype=np.float64))
                                        for name, _ in sums])[None]
    out = np.empty((1,) * (1 if isinstance(X_part, list) else 2), dtype=object)
    out.flat[0] = kept
    return out


def _rows_and_sums(func, *args) -> dict:
    """A (new rows, named sums) function as a :func:`row_blocks` one."""
    rows, named = func(*args)
    return {_ROWS: rows, **named}


def _pick(grid_block, name: str):
    return grid_block.flat[0][name]


def _picked(grid: da.Array, name: str, piece: Piece, row_chunks) -> da.Array:
    """Result ``name`` of each block of the object grid as a dask array
    (dask fuses the pick into its block's task)."""
    rows = len(row_chunks)
    first = row_chunks if piece.shape[0] is None else (piece.shape[0],) * rows
    chunks = (first, *((size,) for size in piece.shape[1:]))
    axes = {}
    if len(chunks) < grid.ndim:
        axes["drop_axis"] = list(range(len(chunks), grid.ndim))
    elif len(chunks) > grid.ndim:
        axes["new_axis"] = list(range(grid.ndim, len(chunks)))
    return grid.map_blocks(_pick, name, chunks=chunks, dtype=piece.dtype,
                           meta=np.empty((0,) * len(chunks), dtype=piece.dtype), **axes)


def _tree(parts: da.Array, root: Callable) -> tuple[str, dict]:
    """dask's reduction tree over r blocks of one row each (groups of
    SPLIT_EVERY consecutive blocks, its depth, rows added in order), without
    that graph's first task per block, which "sums" the block's single row:
    each task costs the scheduler about a millisecond of the CPU the workers
    need. ``root`` computes its last node."""
    rows, ndim = parts.numblocks[0], parts.ndim - 1
    name = f"stacked-sum-{tokenize(parts, root)}"
    level = [(parts.name, b, *(0,) * ndim) for b in range(rows)]
    # the depth dask gives the tree (math.log's rounding included)
    depth = max(1, math.ceil(math.log(rows, SPLIT_EVERY))) if rows > 1 else 1
    graph = {}
    for d in range(depth - 1):
        groups = [level[i:i + SPLIT_EVERY] for i in range(0, len(level), SPLIT_EVERY)]
        level = [(f"{name}-{d}", g) for g in range(len(groups))]
        graph.update({key: (_sum_rows, group, True)
                      for key, group in zip(level, groups, strict=True)})
    graph[(name, *(0,) * ndim)] = (root, level)
    return name, graph


def _summed(packed: da.Array, parts: tuple) -> Sums:
    """The packed sums added up by :func:`_tree`, by name."""
    name, graph = _tree(packed, functools.partial(_named_total, parts=parts))
    layers = HighLevelGraph.from_collections(name, graph, dependencies=[packed])
    return Sums((name, 0), layers, layer=name)


def _sum_rows(parts: list, keepdims: bool) -> np.ndarray:
    """One node of the tree: the parts stacked and added in order, in
    float64, as dask's reduction does."""
    return np.sum(np.concatenate(parts, axis=0), axis=0, dtype=np.float64, keepdims=keepdims)


def _named_total(parts_list: list, parts: tuple) -> dict[str, np.ndarray]:
    """The tree's last node: the total, each name's slice in its shape (a
    0-d array for a number)."""
    flat = _sum_rows(parts_list, keepdims=False)
    named, start = {}, 0
    for name, shape in parts:
        size = int(np.prod(shape))
        named[name] = flat[start:start + size].reshape(shape)
        start += size
    return named


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


__all__ = ["SPLIT_EVERY", "Parts", "Piece", "Pieces", "RowBlocks", "Small", "Sums", "Tall",
           "full_rows", "row_blocks", "row_pass", "row_sums", "run_block", "whole_rows"]
