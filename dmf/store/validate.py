"""Checks every matrix passes on its way in: shape, dtype, finiteness.

The checks run blockwise, on the workers, so they cost no extra memory and,
when fused with a write, no extra pass over the data.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import scipy.sparse

from dmf.errors import DmfWarning, InputError, warn

#: Largest integer every float64 represents exactly.
FLOAT64_EXACT_INT = 2**53

# Columns of a block report, one row per block.
_N_NAN, _N_INF, _FIRST_BAD, _N_UNSAFE, _FIRST_UNSAFE = range(5)
REPORT_WIDTH = 5


def storage_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """The dtype dmf stores for input of ``dtype``.

    float32 and float64 are kept; integers and booleans become float64 (with a
    :class:`~dmf.errors.DmfWarning`), float16 becomes float32. Anything else
    is an :class:`~dmf.errors.InputError`.
    """
    dtype = np.dtype(dtype)
    if dtype.byteorder not in "=|":
        dtype = dtype.newbyteorder("=")  # big-endian files: same values, native order
    if dtype in (np.float32, np.float64):
        return dtype
    if dtype == np.float16:
        warn(f"{name}: float16 is stored as float32", DmfWarning)
        return np.dtype(np.float32)
    if dtype.kind in "iub":
        warn(f"{name}: {dtype} values are stored as float64", DmfWarning)
        return np.dtype(np.float64)
    raise InputError(
        f"{name}: unsupported dtype {dtype}; dmf factorizes real matrices "
        "(float32 or float64; integers are converted to float64)"
    )


def check_shape(shape: tuple[int, ...], name: str) -> None:
    """Refuse anything but a non-empty 2-D matrix."""
    if len(shape) != 2:
        hint = " (reshape a vector to (n, 1) or (1, n))" if len(shape) == 1 else ""
        raise InputError(
            f"{name}: expected a 2-D matrix, got a {len(shape)}-D array of shape "
            f"{tuple(shape)}{hint}"
        )
    if any(size != size for size in shape):  # NaN: dask does not know its chunk sizes
        raise InputError(f"{name}: a dask array of unknown chunk sizes (shape {tuple(shape)}, "
                         "as after boolean indexing or from a dataframe); call "
                         "X.compute_chunk_sizes() (or to_dask_array(lengths=True)) first")
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(f"{name}: the matrix is empty (shape {tuple(shape)})")


def block_report(block, row0: int, col0: int, ncols: int) -> np.ndarray:
    """Count NaN, Inf and inexact integers in one block (dense or scipy.sparse).

    Returns the five numbers of a report row: NaN count, Inf count, first
    non-finite position (as a flat row-major index of the whole matrix, -1 if
    none), count of integers beyond 2**53, and the first of those.
    """
    if scipy.sparse.issparse(block):
        csr = scipy.sparse.csr_matrix(block)
        rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
        return entries_report(rows + row0, csr.indices.astype(np.int64) + col0, csr.data, ncols)

    def first(mask):
        r, c = np.unravel_index(np.argmax(mask), block.shape)
        return (row0 + r) * ncols + col0 + c

    return _fill_report(block, first)


def entries_report(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, ncols: int
) -> np.ndarray:
    """:func:`block_report` for entries given by position (sparse data):
    ``values[k]`` sits at ``(rows[k], cols[k])`` of the whole matrix.

    Examples
    --------
    >>> entries_report(np.array([3, 1]), np.array([0, 2]), np.array([np.nan, np.inf]), 4)
    array([ 1,  1,  6,  0, -1])
    """
    rows, cols = np.asarray(rows), np.asarray(cols)

    def first(mask):
        # entries may come in any order: the first is the smallest position
        return int((rows[mask].astype(np.int64) * ncols + cols[mask]).min())

    return _fill_report(np.asarray(values), first)


def _fill_report(values: np.ndarray, first) -> np.ndarray:
    report = np.array([0, 0, -1, 0, -1], dtype=np.int64)
    if values.dtype.kind == "f":
        # A finite sum proves there is no NaN or Inf, at the cost of one
        # streaming read (no mask arrays); only a non-finite sum (bad values,
        # or an overflow of big ones) needs the masks below.
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(values.sum()):
                return report
        nan = np.isnan(values)
        inf = np.isinf(values)
        report[_N_NAN] = nan.sum()
        report[_N_INF] = inf.sum()
        if report[_N_NAN] or report[_N_INF]:
            report[_FIRST_BAD] = first(nan | inf)
    elif values.dtype.kind in "iu" and values.dtype.itemsize >= 8:
        # compared as integers: 2**53 + 1 would round to 2**53 as a float
        unsafe = (values > FLOAT64_EXACT_INT) | (values < -FLOAT64_EXACT_INT)
        report[_N_UNSAFE] = unsafe.sum()
        if report[_N_UNSAFE]:
            report[_FIRST_UNSAFE] = first(unsafe)
    return report


def precast(values: np.ndarray, dtype) -> np.ndarray:
    """``values`` as they are to be checked before being stored as ``dtype``.

    Floats are cast first, so that a value overflowing the storage dtype is
    caught as Inf; integers are left as they are, so that those beyond 2**53
    are caught before float64 rounds them.

    Examples
    --------
    >>> precast(np.array([1e300]), np.float32)
    array([inf], dtype=float32)
    >>> precast(np.array([2**60]), np.float64).dtype
    dtype('int64')
    """
    if values.dtype.kind == "f":
        with np.errstate(over="ignore"):  # the overflow is reported as Inf
            return values.astype(dtype, copy=False)
    return values


def _report_of_block(block, ncols, block_info=None):
    (r0, _), (c0, _) = block_info[0]["array-location"]
    return block_report(block, r0, c0, ncols)[None, :]


def map_block_reports(x: da.Array, func, *args) -> da.Array:
    """Apply ``func(block, *args, block_info=...)``, which returns one report
    row per block, and lay the rows out as a (blocks, REPORT_WIDTH) array."""
    out_chunks = ((1,) * x.numblocks[0], (REPORT_WIDTH,) * x.numblocks[1])
    return x.map_blocks(func, *args, chunks=out_chunks, dtype=np.int64)


def reports_to_rows(reports: np.ndarray) -> np.ndarray:
    return np.asarray(reports).reshape(-1, REPORT_WIDTH)


def raise_for_reports(reports: np.ndarray, shape: tuple[int, int], name: str) -> None:
    """Raise an :class:`InputError` describing every problem the reports found."""
    rows = reports_to_rows(reports)
    ncols = shape[1]

    def first(column: int) -> str:
        hits = rows[:, column][rows[:, column] >= 0]
        r, c = divmod(int(hits.min()), ncols)
        return f"first at row {r}, column {c}"

    n_nan, n_inf = int(rows[:, _N_NAN].sum()), int(rows[:, _N_INF].sum())
    if n_nan or n_inf:
        raise InputError(
            f"{name}: {n_nan} NaN and {n_inf} Inf values ({first(_FIRST_BAD)}); "
            "dmf needs finite values: impute or drop them first"
        )
    n_unsafe = int(rows[:, _N_UNSAFE].sum())
    if n_unsafe:
        raise InputError(
            f"{name}: {n_unsafe} integers beyond 2**53 cannot be stored exactly as "
            f"float64 ({first(_FIRST_UNSAFE)}); rescale them first"
        )


def check_finite(x, *, name: str = "input") -> None:
    """Raise :class:`~dmf.errors.InputError` if ``x`` holds NaN or Inf.

    Computed blockwise (one pass, a few numbers per block come back), so it
    works on matrices larger than memory. The message says how many
    non-finite values there are and where the first one is.

    Examples
    --------
    >>> import numpy as np
    >>> check_finite(np.ones((3, 3)))
    >>> check_finite(np.array([[1.0, np.nan], [np.inf, 2.0]]), name="X")
    Traceback (most recent call last):
    ...
    dmf.errors.InputError: X: 1 NaN and 1 Inf values (first at row 0, column 1); ...
    """
    arr = x if isinstance(x, da.Array) else da.asarray(x)
    check_shape(arr.shape, name)
    reports = map_block_reports(arr, _report_of_block, arr.shape[1]).compute()
    raise_for_reports(reports, arr.shape, name)
