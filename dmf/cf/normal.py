"""Row-wise helpers of CSR rating blocks, for the numpy passes that remain
(masked NMF, the objective of SGD's factors); ALS's normal equations are
formed and solved row by row in :mod:`dmf.cf.kernels`."""

from __future__ import annotations

import numpy as np


def row_of_each(indptr: np.ndarray) -> np.ndarray:
    """The row index of each stored entry of a CSR pattern."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def rowwise_dot(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``(A * B).sum(1)`` without the temporary."""
    return np.einsum("ij,ij->i", A, B)
