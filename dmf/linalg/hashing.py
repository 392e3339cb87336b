"""Pseudo-random numbers from global indices: the same value for an entry
(or a row, a column) whatever the chunks and the workers, with nothing
stored or sent."""

from __future__ import annotations

import numpy as np

#: splitmix64's constants: its finalizer turns consecutive integers into
#: independent-looking 64-bit values, which is all a mask or a fold needs.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def uniform_hash(seed: int, index: np.ndarray) -> np.ndarray:
    """A float64 in [0, 1) for each uint64 ``index``: the top 53 bits of
    splitmix64's finalizer of (seed, index), exact in float64.

    Examples
    --------
    >>> u = uniform_hash(0, np.arange(10000, dtype=np.uint64))
    >>> bool(0 <= u.min() and u.max() < 1), round(float(u.mean()), 2)
    (True, 0.5)
    """
    with np.errstate(over="ignore"):  # wrapping around 2^64 is the point
        z = index + np.uint64(seed % 2**64) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


__all__ = ["uniform_hash"]
