"""Orthogonality constraints for NMF and NMTF (Ding, Li, Peng and Park,
"Orthogonal nonnegative matrix tri-factorizations for clustering", KDD 2006).

With W^T W = I (each row of W close to one column: a hard row clustering) the
multiplicative W update becomes

    W <- W * sqrt( (X M^T) / (W W^T X M^T) )          (M = H, or S H for NMTF)

and with H H^T = I

    H <- H * sqrt( (P^T X) / (P^T X H^T H) )           (P = W, or W S for NMTF)

The H form needs only the k x n sum P^T X that the one-read pass produces
anyway. The W form needs W^T X for the *whole* current W before any block
row can be updated, which no single pass can give; but W^T X of the current
W is exactly the sum the previous iteration's pass added up with its new
rows of W. So the solvers keep it in their state (``WtX``, k x n,
checkpointed with the rest) and the first iteration, which has none yet,
takes a plain MU step for W. Still one read of X per iteration.

Only the Frobenius loss has these forms; the orthogonality error
||W^T W - I||_F (and ||H H^T - I||_F) of each iteration's factors is
reported with the loss.
"""

from __future__ import annotations

import numpy as np

from dmf.errors import InputError

#: The values ``orthogonal=`` takes.
ORTHOGONAL = (None, "W", "H", "both")


def check_orthogonal(orthogonal, beta: float) -> str | None:
    """``orthogonal`` validated: None, "W", "H" or "both"; Frobenius only.

    Examples
    --------
    >>> check_orthogonal("both", 2.0)
    'both'
    >>> check_orthogonal("W", 1.0)
    Traceback (most recent call last):
    ...
    dmf.errors.InputError: orthogonal='W' is available for the Frobenius loss only ...
    """
    if orthogonal not in ORTHOGONAL:
        raise InputError(f"orthogonal must be None, 'W', 'H' or 'both', got {orthogonal!r}")
    if orthogonal is not None and beta != 2:
        raise InputError(f"orthogonal={orthogonal!r} is available for the Frobenius loss only "
                         f"(got beta={beta:g}); use loss='frobenius' or drop orthogonal")
    return orthogonal


def on_w(orthogonal: str | None) -> bool:
    return orthogonal in ("W", "both")


def on_h(orthogonal: str | None) -> bool:
    return orthogonal in ("H", "both")


def gram_error(G: np.ndarray) -> float:
    """||G - I||_F for a Gram matrix G (W^T W or H H^T).

    Examples
    --------
    >>> gram_error(np.eye(3))
    0.0
    """
    return float(np.linalg.norm(G - np.eye(G.shape[0])))


def errors(orthogonal: str | None, WtW: np.ndarray | None, H: np.ndarray) -> dict[str, float]:
    """The orthogonality errors to report for the constrained factors."""
    out = {}
    if on_w(orthogonal) and WtW is not None:
        out["orthogonality_W"] = gram_error(WtW)
    if on_h(orthogonal):
        out["orthogonality_H"] = gram_error(H @ H.T)
    return out


__all__ = ["ORTHOGONAL", "check_orthogonal", "errors", "gram_error", "on_h", "on_w"]
