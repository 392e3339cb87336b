"""Audio source separation by NMF of a spectrogram, out of core.

``dmf.audio.separate(path, outdir, sources)`` and ``dmf audio separate``:
see docs/guide/audio.md. Modules, one job each: :mod:`~dmf.audio.wav`
(block I/O), :mod:`~dmf.audio.stft` (streamed STFT and inverse),
:mod:`~dmf.audio.spectrogram` (to Zarr), :mod:`~dmf.audio.grouping`,
:mod:`~dmf.audio.synthesis` (masks), :mod:`~dmf.audio.separate` (the
pipeline), :mod:`~dmf.audio.figures` (report), :mod:`~dmf.audio.demo`.
"""

from dmf.audio import wav
from dmf.audio.demo import Demo, demo
from dmf.audio.separate import Separation, separate

__all__ = ["Demo", "Separation", "demo", "separate", "wav"]
