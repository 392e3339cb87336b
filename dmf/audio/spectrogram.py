"""The power spectrogram of an audio file, written to Zarr a block of frames at a time.

Layout: a dense dmf store of shape (frames, frequencies), float32, chunked
in row blocks of ``block_frames`` frames: one row per STFT frame, so the
streamed transform writes whole chunks in order and dmf's NMF reads the
row blocks it is built for. NMF of it (X ~ W H) gives W (frames x k), the
activations over time, kept out of core like any tall factor, and H
(k x frequencies), the spectral templates, small and in memory.

Every entry is ``|STFT|^2 + floor`` with ``floor = 1e-10 * (sum of the
window)^2``, 100 dB below the power of a full-scale sine: the Itakura-Saito
divergence is undefined at zero, and digital silence would otherwise give
exact zeros. The floor is absolute (not relative to the mean power) so that
the spectrogram is written in one pass.
"""

from __future__ import annotations

import numpy as np

from dmf.audio import wav
from dmf.audio.stft import Stft
from dmf.store.dense_write import create_dense, mark_complete
from dmf.store.location import Location

__all__ = ["floor_of", "write_spectrogram"]


def floor_of(stft: Stft) -> float:
    return float(1e-10 * np.sum(stft.sft.win) ** 2)


def write_spectrogram(src: str, url: str, stft: Stft, *, block_frames: int = 1024,
                      attrs: dict | None = None):
    """Write the floored power spectrogram of ``src`` to ``url``; the Zarr array.

    Memory: one block of samples and one block of frames at a time.

    Examples
    --------
    >>> import numpy as np, os, tempfile, dmf
    >>> from dmf.audio import wav
    >>> from dmf.audio.stft import Stft
    >>> from dmf.audio.spectrogram import write_spectrogram
    >>> d = tempfile.mkdtemp()
    >>> wav.write(os.path.join(d, "a.wav"), 0.5 * np.sin(np.arange(4000) / 3), 8000)
    >>> z = write_spectrogram(os.path.join(d, "a.wav"), os.path.join(d, "s.zarr"),
    ...                       Stft(256, 64, 8000), block_frames=16)
    >>> z.shape, z.chunks
    ((66, 129), (16, 129))
    >>> dmf.open_matrix(os.path.join(d, "s.zarr")).shape
    (66, 129)
    """
    facts = wav.info(src)
    n = facts.frames
    T = stft.n_frames(n)
    floor = floor_of(stft)
    meta = {"audio": {"source": src, "rate": facts.rate, "samples": n, "n_fft": stft.n_fft,
                      "hop": stft.hop, "floor": floor, "layout": "frames x frequencies",
                      **(attrs or {})}}
    zarray = create_dense(Location.parse(url), (T, stft.n_freq), np.float32,
                          (min(block_frames, T), stft.n_freq), attrs=meta,
                          dims=("frame", "frequency"))
    read = lambda a, b: wav.read(src, a, b)  # noqa: E731 - one seek per block
    for i0 in range(0, T, block_frames):
        i1 = min(i0 + block_frames, T)
        Z = stft.spectrum(read, n, i0, i1)
        zarray[i0:i1] = (Z.real**2 + Z.imag**2 + floor).astype(np.float32)
    mark_complete(zarray)
    return zarray
