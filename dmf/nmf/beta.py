"""Beta-divergences and the pieces of their multiplicative updates, on one
row slice at a time.

Everything here follows scikit-learn's ``decomposition/_nmf.py`` exactly
(same clipping at float32's eps, same order of operations), so dmf's ``mu``
solver reproduces scikit-learn's iterates to rounding: the tests hold it to
that. Arrays are float64; slices of X are widened before they arrive.

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


def _ratio(xs: np.ndarray, WH: np.ndarray, beta: float) -> np.ndarray:
    """(WH)^(beta - 2) * X with WH clipped (a new array; WH untouched)."""
    safe = np.maximum(WH, EPSILON) if beta < 2 else WH.copy()
    if beta == 1:
        np.divide(xs, safe, out=safe)
    elif beta == 0:
        safe **= -1
        safe **= 2
        safe *= xs
    else:
        safe **= beta - 2
        safe *= xs
    return safe


def _power_term(WH: np.ndarray, beta: float) -> np.ndarray:
    """(WH)^(beta - 1), WH clipped first when beta < 1."""
    base = np.maximum(WH, EPSILON) if beta < 1 else WH.copy()
    base **= beta - 1
    return base


def w_terms(xs, W, H, beta: float, HHt=None, H_sum=None):
    """Numerator and denominator of the W update for one row slice."""
    if beta == 2:
        return xs @ H.T, W @ HHt
    WH = W @ H
    numerator = _ratio(xs, WH, beta) @ H.T
    if beta == 1:
        return numerator, np.broadcast_to(H_sum, W.shape).copy()
    return numerator, _power_term(WH, beta) @ H.T


def h_terms(xs, W, H, beta: float):
    """One row slice's part of the H update's numerator and denominator:
    W^T R and, per beta, W^T W (2), W's column sums (1) or W^T (WH)^(beta-1)."""
    if beta == 2:
        return W.T @ xs, W.T @ W
    WH = W @ H
    numerator = W.T @ _ratio(xs, WH, beta)
    if beta == 1:
        return numerator, W.sum(axis=0)
    return numerator, W.T @ _power_term(WH, beta)


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


def divergence_sum(xs, WH, beta: float) -> float:
    """The slice's share of D_beta(X | WH) for beta != 2 (scikit-learn's
    formula, terms added over the slice)."""
    keep = xs > EPSILON
    x = xs[keep]
    wh = np.maximum(WH[keep], EPSILON)
    if beta == 1:
        return float(x @ np.log(x / wh) + WH.sum() - x.sum())
    if beta == 0:
        div = x / wh
        return float(div.sum() - xs.size - np.log(div).sum())
    total = (x ** beta).sum() - beta * (x @ wh ** (beta - 1)) + (beta - 1) * (WH ** beta).sum()
    return float(total / (beta * (beta - 1)))
