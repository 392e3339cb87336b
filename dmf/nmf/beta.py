"""Beta-divergences and the pieces of their multiplicative updates, on one
row slice at a time.

Everything here follows scikit-learn's ``decomposition/_nmf.py`` exactly
(same clipping at float32's eps, same order of operations), so dmf's ``mu``
solver reproduces scikit-learn's iterates to rounding: the tests hold it to
that. A float64 X is worked on in float64. A float32 X is worked on in
float32 for the losses with a fast path (beta = 2 and 1, and HALS): the
slice-sized products and elementwise work stay float32, as scikit-learn
itself computes on float32 input and as :mod:`dmf.linalg.products` does,
while everything added up across slices (the k x n and k x k sums, the
objective) and the factors themselves stay float64. Other betas raise WH to
powers whose sums cancel badly in float32: their float32 slices are widened.

D_beta(X | WH) for beta = 2 is 0.5 ||X - WH||^2, for beta = 1 the generalized
Kullback-Leibler divergence, for beta = 0 Itakura-Saito; entries of X at or
below eps are left out of the X-terms, as scikit-learn does.
"""

from __future__ import annotations

import numpy as np

from dmf.errors import InputError

#: Where WH is clipped and zero denominators are replaced (scikit-learn's).
EPSILON = float(np.finfo(np.float32).eps)

LOSSES = {"frobenius": 2.0, "kl": 1.0, "kullback-leibler": 1.0, "is": 0.0,
          "itakura-saito": 0.0}


def beta_of(loss) -> float:
    """The beta of a loss name (``frobenius``, ``kl``, ``is``, or scikit-learn's
    long names) or of a number.

    Examples
    --------
    >>> beta_of("kl"), beta_of(0.5)
    (1.0, 0.5)
    """
    if isinstance(loss, str):
        if loss.lower() in LOSSES:
            return LOSSES[loss.lower()]
        try:
            return float(loss)
        except ValueError:
            raise InputError(f"unknown NMF loss {loss!r}; use frobenius, kl, is, l1 or a "
                             "number (the beta of a beta-divergence)") from None
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not np.isfinite(loss):
        raise InputError(f"NMF loss must be a name or a finite number, got {loss!r}")
    return float(loss)


def exponent(beta: float) -> float:
    """Fevotte and Idier's exponent that makes MU monotone outside [1, 2]."""
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def work_dtype(dtype, beta: float = 2.0) -> np.dtype:
    """The precision a slice of X of ``dtype`` is worked on in (see the
    module's docstring)."""
    fast = dtype == np.float32 and beta in (1.0, 2.0)
    return np.dtype(np.float32 if fast else np.float64)


class Scratch:
    """Buffers for one row slice's elementwise work, reused across slices:
    fresh slice-sized temporaries cost a page fault per 4 KiB on Dask
    workers (whose MALLOC_TRIM_THRESHOLD_ makes every allocation above
    128 KiB an mmap), measured slower than the arithmetic itself.
    ``dtype`` is the work precision (:func:`work_dtype`)."""

    def __init__(self, rows: int, n: int, k: int, dtype=np.float64):
        self.dtype = np.dtype(dtype)
        self.num = np.empty((k, n), self.dtype)
        self.den = np.empty((k, n), self.dtype)
        self.wh = np.empty((rows, n), self.dtype)
        self.tmp = np.empty((rows, n), self.dtype)
        self._rows, self._n = rows, n
        # made when first needed: most blocks need none of them
        self._xs = self._keep = self._wide = None

    @property
    def keep(self) -> np.ndarray:
        if self._keep is None:
            self._keep = np.empty((self._rows, self._n), dtype=bool)
        return self._keep

    def widen(self, part) -> np.ndarray:
        """The slice in the work precision, C-contiguous and aligned (OpenBLAS
        rounds differently on unaligned data, see
        :func:`dmf.linalg.products.for_blas`): the slice itself when it
        already is, else a copy in a reused buffer."""
        if (part.dtype == self.dtype and part.flags.c_contiguous
                and part.ctypes.data % part.dtype.itemsize == 0):
            return part
        if self._xs is None:
            self._xs = np.empty((self._rows, self._n), self.dtype)
        out = self._xs[:part.shape[0]]
        np.copyto(out, part)
        return out

    def widen64(self, xs) -> np.ndarray:
        """The slice in float64, widened into a reused buffer when it is not
        (a fresh float64 copy of every slice measured slower than the
        iteration's products on a worker)."""
        if xs.dtype == np.float64:
            return xs
        if self._wide is None:
            self._wide = np.empty((self._rows, self._n))
        out = self._wide[:xs.shape[0]]
        np.copyto(out, xs)
        return out

    def square_sum(self, xs) -> float:
        """Sum of the slice's squares in float64 whatever its precision."""
        wide = self.widen64(xs)
        return float(np.vdot(wide, wide))

    def product(self, W: np.ndarray, H: np.ndarray) -> np.ndarray:
        """W H of the slice, in the reused buffer (W and H in the work
        precision)."""
        return np.matmul(W, H, out=self.wh[:W.shape[0]])


def as_work(F: np.ndarray, dtype) -> np.ndarray:
    """A small factor in the work precision (no copy when it already is)."""
    return np.asarray(F, dtype=dtype)


def _ratio(xs: np.ndarray, WH: np.ndarray, beta: float, out: np.ndarray) -> np.ndarray:
    """(WH)^(beta - 2) * X with WH clipped, written to ``out`` (WH untouched)."""
    if beta < 2:
        np.maximum(WH, EPSILON, out=out)
    else:
        np.copyto(out, WH)
    if beta == 1:
        np.divide(xs, out, out=out)
    elif beta == 0:
        out **= -1
        out **= 2
        out *= xs
    else:
        out **= beta - 2
        out *= xs
    return out


def _power_term(WH: np.ndarray, beta: float, out: np.ndarray) -> np.ndarray:
    """(WH)^(beta - 1), WH clipped first when beta < 1, written to ``out``."""
    if beta < 1:
        np.maximum(WH, EPSILON, out=out)
    else:
        np.copyto(out, WH)
    out **= beta - 1
    return out


def w_terms(xs, W, H, beta: float, scratch: Scratch, *, WH=None, HHt=None, H_sum=None):
    """Numerator and denominator of the W update for one row slice, float64
    (H in the work precision; WH is W H, computed by the caller for
    beta != 2)."""
    if beta == 2:
        return x_times_ht(xs, H), W @ HHt
    rows = xs.shape[0]
    numerator = np.asarray(_ratio(xs, WH, beta, scratch.tmp[:rows]) @ H.T, dtype=np.float64)
    if beta == 1:
        return numerator, np.broadcast_to(H_sum, W.shape).copy()
    return numerator, _power_term(WH, beta, scratch.tmp[:rows]) @ H.T


def x_times_ht(xs: np.ndarray, H: np.ndarray) -> np.ndarray:
    """X_s H^T (float64, C order) for a dense slice, as scikit-learn computes
    it (X @ H.T): in float32 twice as fast as (H X_s^T)^T with OpenBLAS's
    kernels for this CPU (SkylakeX), as fast otherwise (benchmarks.micro)."""
    return np.asarray(xs @ H.T, dtype=np.float64)


def h_terms(xs, W, H, beta: float, scratch: Scratch):
    """One row slice's part of the H update's numerator and denominator:
    W^T R and, per beta, W^T W (2), W's column sums (1) or W^T (WH)^(beta-1).
    W (the slice's new rows) is float64, H in the work precision; the k x n
    terms come in the work precision, for the caller to add up in float64."""
    Ww = as_work(W, scratch.dtype)
    if beta == 2:
        return np.matmul(Ww.T, xs, out=scratch.num), W.T @ W
    rows = xs.shape[0]
    WH = scratch.product(Ww, H)
    if beta == 1:
        return np.matmul(Ww.T, kl_ratio(xs, WH, scratch), out=scratch.num), W.sum(axis=0)
    numerator = np.matmul(Ww.T, _ratio(xs, WH, beta, scratch.tmp[:rows]), out=scratch.num)
    return numerator, np.matmul(W.T, _power_term(WH, beta, scratch.tmp[:rows]),
                                out=scratch.den)


def kl_ratio(xs, WH, scratch: Scratch) -> np.ndarray:
    """X / max(WH, eps) in the reused buffer, WH clipped in place (the ratio
    of both the KL update and the KL objective). The clip runs only when
    some entry needs it: numpy's maximum against a scalar costs several
    divisions (measured), the minimum that rules it out far less."""
    if WH.size and WH.min() < EPSILON:
        np.maximum(WH, EPSILON, out=WH)
    return np.divide(xs, WH, out=scratch.tmp[:xs.shape[0]])


def kl_x_log(xs, ratio, scratch: Scratch, masked: bool) -> float:
    """sum x log(ratio) over the entries of X above eps (scikit-learn's
    X-term of the KL divergence), from the ratio the W update forms anyway.
    ``masked``: X may hold entries at or below eps (zeros), to be left out
    (the caller knows from the first pass, :func:`x_constants`). The log
    goes to the WH buffer (clipped WH is dead by then)."""
    rows = xs.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 where X is 0: dropped
        log = np.log(ratio, out=scratch.wh[:rows])
    if masked:
        drop = scratch.keep[:rows]
        np.less_equal(xs, EPSILON, out=drop)
        np.copyto(log, 0.0, where=drop)
    # row sums in the work precision (n terms each), added up in float64
    return float(np.einsum("ij,ij->i", xs, log).sum(dtype=np.float64))


def x_constants(xs, scratch: Scratch) -> tuple[float, int]:
    """The sum of the slice's entries above eps, in float64, and how many
    are at or below it: the same every iteration, so the first pass
    measures them once."""
    x64 = scratch.widen64(xs)
    keep = np.greater(x64, EPSILON, out=scratch.keep[:xs.shape[0]])
    return float(np.sum(x64, where=keep)), int(keep.size - np.count_nonzero(keep))


def apply_update(F, numerator, denominator, l1: float, l2: float, gamma: float):
    """F times (numerator / regularized denominator) ** gamma, as scikit-learn
    (a zero denominator becomes eps)."""
    denominator = np.array(denominator, dtype=np.float64)
    if l1 > 0:
        denominator += l1
    if l2 > 0:
        denominator = denominator + l2 * F
    denominator[denominator == 0] = EPSILON
    delta = numerator / denominator
    if gamma != 1:
        delta **= gamma
    return F * delta


def divergence_sum(xs, WH, beta: float, scratch: Scratch) -> float:
    """The slice's share of D_beta(X | WH) for beta != 2 (scikit-learn's
    formula: X-terms over entries of X above eps, with WH clipped there;
    masks applied with ``where=``, not by copying the entries out)."""
    rows = xs.shape[0]
    keep, tmp = scratch.keep[:rows], scratch.tmp[:rows]
    np.greater(xs, EPSILON, out=keep)
    np.maximum(WH, EPSILON, out=tmp)
    if beta == 1:
        np.divide(xs, tmp, out=tmp)
        np.log(tmp, out=tmp, where=keep)
        np.multiply(tmp, keep, out=tmp)           # 0 where X is left out
        return float(np.vdot(xs, tmp) + WH.sum() - np.sum(xs, where=keep))
    if beta == 0:
        np.divide(xs, tmp, out=tmp)
        ratio_sum = float(np.sum(tmp, where=keep))
        np.log(tmp, out=tmp, where=keep)
        return ratio_sum - xs.size - float(np.sum(tmp, where=keep))
    tmp **= beta - 1
    np.multiply(xs, tmp, out=tmp)
    cross = float(np.sum(tmp, where=keep))
    np.power(xs, beta, out=tmp)
    x_beta = float(np.sum(tmp, where=keep))
    np.power(WH, beta, out=tmp)
    total = x_beta - beta * cross + (beta - 1) * float(tmp.sum())
    return total / (beta * (beta - 1))
