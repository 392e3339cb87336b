"""The short-time Fourier transform in blocks of frames, and its inverse.

:class:`Stft` wraps :class:`scipy.signal.ShortTimeFFT` (a periodic Hann
window of ``n_fft`` samples, a hop of ``hop``, one-sided spectra). Frame
``i`` (0-based) is scipy's slice ``p_min + i``: it is centred on sample
``(p_min + i) * hop``, and the frames run past both ends of the signal so
that every sample is covered by whole windows, as in ``ShortTimeFFT.stft``.

A block of frames ``i0:i1`` needs only the samples under those windows
(:meth:`Stft.sample_range`), so a recording of any length is transformed
with one block of samples in memory at a time, and the blocks are exactly
the columns of the whole-signal transform (no approximation at the seams:
the test compares them to 1e-5). The inverse is scipy's (the canonical dual
window), applied to a block of frames at a time and overlap-added; with
every frame unchanged it gives the signal back to rounding error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["OverlapAdd", "Stft"]


@dataclass(frozen=True)
class Stft:
    """An STFT of ``n_fft`` samples per frame, ``hop`` samples apart.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.audio.stft import Stft
    >>> t = Stft(256, 64, 8000)
    >>> x = np.random.default_rng(0).standard_normal(2000)
    >>> whole = t.sft.stft(x).T                    # frames x frequencies
    >>> read = lambda a, b: x[a:b]
    >>> part = t.spectrum(read, len(x), 10, 20)    # frames 10..19 only
    >>> bool(np.allclose(part, whole[10:20]))
    True
    """

    n_fft: int
    hop: int
    rate: int

    @cached_property
    def sft(self):
        from scipy.signal import ShortTimeFFT
        from scipy.signal.windows import hann

        return ShortTimeFFT(hann(self.n_fft, sym=False), self.hop, fs=self.rate,
                            mfft=self.n_fft)

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        return int(self.sft.p_num(n_samples))

    @property
    def _lead(self) -> int:
        """Frames of padding before a block, so its first window lies inside."""
        return math.ceil(self.sft.m_num_mid / self.hop)

    def sample_range(self, i0: int, i1: int) -> tuple[int, int]:
        """The samples ``[a, b)`` a block of frames ``i0:i1`` is computed from
        (``a`` may be negative and ``b`` past the end: zeros there)."""
        p0 = self.sft.p_min + i0
        p1 = self.sft.p_min + i1
        return (p0 - self._lead) * self.hop, p1 * self.hop + self.n_fft

    def spectrum(self, read: Callable[[int, int], np.ndarray], n_samples: int, i0: int,
                 i1: int) -> np.ndarray:
        """Complex STFT of frames ``i0:i1``, shape (frames, frequencies).

        ``read(a, b)`` returns samples ``a:b`` of the signal (``0 <= a <= b <=
        n_samples``).
        """
        a, b = self.sample_range(i0, i1)
        chunk = np.zeros(b - a)
        lo, hi = max(a, 0), min(b, n_samples)
        if hi > lo:
            chunk[lo - a:hi - a] = read(lo, hi)
        # In the chunk's own time, frame i0 is slice _lead (its t = 0 is sample a).
        Z = self.sft.stft(chunk, p0=self._lead, p1=self._lead + (i1 - i0))
        return Z.T

    def inverse(self, Z: np.ndarray, i0: int) -> tuple[int, np.ndarray]:
        """The contribution of frames ``i0:i0 + len(Z)`` (shape frames x
        frequencies) to the signal: ``(first sample, samples)``; overlap-add
        the contributions of every block (:class:`OverlapAdd`)."""
        m = len(Z)
        a, b = self.sample_range(i0, i0 + m)
        sft = self.sft
        lead = self._lead
        columns = np.zeros((self.n_freq, int(sft.p_max(b - a)) - sft.p_min), dtype=complex)
        columns[:, lead - sft.p_min:lead - sft.p_min + m] = Z.T
        y = sft.istft(columns, k1=b - a)
        # Nothing lands before the first window of frame i0.
        skip = lead * self.hop - sft.m_num_mid
        return a + skip, y[skip:]


class OverlapAdd:
    """Add the contributions of consecutive blocks of frames and hand out the
    samples no later block can change, clipped to ``[0, n_samples)``.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.audio.stft import OverlapAdd, Stft
    >>> t = Stft(256, 64, 8000)
    >>> x = np.random.default_rng(1).standard_normal(3000)
    >>> read = lambda a, b: x[a:b]
    >>> T = t.n_frames(len(x))
    >>> blocks = ((i, t.spectrum(read, len(x), i, min(i + 7, T))) for i in range(0, T, 7))
    >>> y = np.concatenate(list(OverlapAdd(t, len(x)).run(blocks)))
    >>> bool(np.allclose(y, x))
    True
    """

    def __init__(self, stft: Stft, n_samples: int):
        self.stft = stft
        self.n = n_samples
        self.pos = stft.sft.p_min * stft.hop - stft.sft.m_num_mid  # first unsent sample
        self.acc = np.zeros(0)

    def add(self, Z: np.ndarray, i0: int) -> np.ndarray:
        """Add frames ``i0:i0 + len(Z)``; the samples now final."""
        start, y = self.stft.inverse(Z, i0)
        offset = start - self.pos
        need = offset + len(y)
        if need > len(self.acc):
            self.acc = np.concatenate([self.acc, np.zeros(need - len(self.acc))])
        self.acc[offset:offset + len(y)] += y
        # Frames after this block start no earlier than this sample.
        final = (self.stft.sft.p_min + i0 + len(Z)) * self.stft.hop - self.stft.sft.m_num_mid
        return self._emit(final - self.pos)

    def finish(self) -> np.ndarray:
        return self._emit(len(self.acc))

    def _emit(self, count: int) -> np.ndarray:
        count = max(0, min(count, len(self.acc)))
        out, self.acc = self.acc[:count], self.acc[count:]
        lo, hi = self.pos, self.pos + count
        self.pos = hi
        return out[max(0, -lo):max(0, min(count, self.n - lo))]

    def run(self, blocks: Iterable[tuple[int, np.ndarray]]) -> Iterator[np.ndarray]:
        """Samples, in order, from ``(i0, Z)`` blocks given in order."""
        for i0, Z in blocks:
            yield self.add(Z, i0)
        yield self.finish()
