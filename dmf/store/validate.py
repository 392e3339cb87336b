"""Checks every matrix passes on its way in: shape, dtype, finiteness.

The checks run blockwise, on the workers, so they cost no extra memory and,
when fused with a write, no extra pass over the data.
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np

from dmf.errors import DmfWarning, InputError

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
    if dtype in (np.float32, np.float64):
        return dtype
    if dtype == np.float16:
        warnings.warn(f"{name}: float16 is stored as float32", DmfWarning, stacklevel=3)
        return np.dtype(np.float32)
    if dtype.kind in "iub":
        warnings.warn(
            f"{name}: {dtype} values are stored as float64", DmfWarning, stacklevel=3
        )
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
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(f"{name}: the matrix is empty (shape {tuple(shape)})")


def block_report(block: np.ndarray, row0: int, col0: int, ncols: int) -> np.ndarray:
    """Count NaN, Inf and inexact integers in one block.

    Returns the five numbers of a report row: NaN count, Inf count, first
    non-finite position (as a flat row-major index of the whole matrix, -1 if
    none), count of integers beyond 2**53, and the first of those.
    """
    report = np.array([0, 0, -1, 0, -1], dtype=np.int64)
    if block.dtype.kind == "f":
        nan = np.isnan(block)
        inf = np.isinf(block)
        report[_N_NAN] = nan.sum()
        report[_N_INF] = inf.sum()
        if report[_N_NAN] or report[_N_INF]:
            r, c = np.unravel_index(np.argmax(nan | inf), block.shape)
            report[_FIRST_BAD] = (row0 + r) * ncols + col0 + c
    elif block.dtype.kind in "iu" and block.dtype.itemsize >= 8:
        unsafe = np.abs(block.astype(np.float64)) > FLOAT64_EXACT_INT
        report[_N_UNSAFE] = unsafe.sum()
        if report[_N_UNSAFE]:
            r, c = np.unravel_index(np.argmax(unsafe), block.shape)
            report[_FIRST_UNSAFE] = (row0 + r) * ncols + col0 + c
    return report


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
