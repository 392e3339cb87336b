"""Wiener-style soft masks and the inverse STFT, a block of frames at a time.

For NMF factors of the power spectrogram, V = W H (frames x frequencies),
component c's mask is M_c = W[:, c] H[c] / (W H): the masks are in [0, 1]
and add up to one in every bin, so the components add up to the mixture.
Component c's signal is the inverse STFT of M_c * STFT(x). The complex STFT
is recomputed from the WAV file block by block (no phase is stored), masked,
inverted and overlap-added, so memory holds one block of frames whatever
the length of the recording.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from dmf.audio import wav
from dmf.audio.stft import OverlapAdd, Stft

__all__ = ["synthesize"]


def synthesize(src: str, stft: Stft, W, H: np.ndarray, paths: Sequence[str], *,
               groups: Sequence[Sequence[int]] = (), group_paths: Sequence[str] = (),
               block_frames: int = 1024) -> None:
    """Write one WAV per component (``paths``) and one per group of components
    (``group_paths``: the sum of its components).

    ``W`` (frames x k) is anything sliced by rows (a Zarr or dask array:
    one block is read at a time); ``H`` is k x frequencies.
    """
    facts = wav.info(src)
    n = facts.frames
    T = stft.n_frames(n)
    H = np.asarray(H, dtype=np.float64)
    k = len(H)
    subtype = facts.output_subtype  # a float recording gives float sources
    read = lambda a, b: wav.read(src, a, b)  # noqa: E731
    adders = [OverlapAdd(stft, n) for _ in range(k)]
    writers = [wav.WavWriter(p, facts.rate, subtype=subtype) for p in paths]
    writers += [wav.WavWriter(p, facts.rate, subtype=subtype) for p in group_paths]
    try:
        def emit(parts: list[np.ndarray]) -> None:
            for c in range(len(paths)):
                writers[c].write(parts[c])
            for g, members in enumerate(groups):
                writers[len(paths) + g].write(sum(parts[c] for c in members))

        for i0 in range(0, T, block_frames):
            i1 = min(i0 + block_frames, T)
            Wb = np.asarray(W[i0:i1], dtype=np.float64)
            Z = stft.spectrum(read, n, i0, i1)
            V = Wb @ H
            V = np.where(V > 0, V, 1.0)  # a bin no component explains: masks 0
            emit([adders[c].add(Z * (np.outer(Wb[:, c], H[c]) / V), i0) for c in range(k)])
        emit([a.finish() for a in adders])
    except BaseException:
        for w in writers:
            w.abort()
        raise
    for w in writers:
        w.close()


def component_paths(outdir: str, k: int) -> list[str]:
    width = max(2, len(str(k - 1)))
    return [os.path.join(outdir, "components", f"component-{c:0{width}d}.wav")
            for c in range(k)]
