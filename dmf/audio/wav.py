"""Audio files read and written in blocks, through soundfile (libsndfile).

Whatever libsndfile reads is read: WAV (8/16/24/32-bit PCM, 32/64-bit
float, extensible headers), FLAC, OGG/Vorbis, AIFF and more; samples come
back as float64 (in [-1, 1) for PCM). A stereo (or more) file is mixed down
to mono by averaging its channels, since the separation works on one
spectrogram. Nothing here reads a whole file: :func:`read` takes a sample
range and seeks to it.

Writing goes to a hidden temporary name beside the target, renamed over it
only when the last sample is written, so a killed run never leaves a torn
file under the final name. The container follows the target's extension
(``.wav``, ``.flac``, ``.ogg``...), the sample format ``subtype`` (default
16-bit PCM).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile

from dmf.errors import InputError, existing_file

__all__ = ["WavInfo", "WavWriter", "info", "read", "write"]

#: Bytes per sample of the PCM and float subtypes (others, compressed: 2).
SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
                "FLOAT": 4, "DOUBLE": 8}
#: The WAV subtype of a sample width in bytes (``sampwidth`` of :class:`WavWriter`).
PCM_OF_WIDTH = {1: "PCM_U8", 2: "PCM_16", 3: "PCM_24", 4: "PCM_32"}
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
#: How each sample format is read (libsndfile left-aligns narrower PCM in
#: the integer type) and the full scale it is divided by; others as float32.
_READ_AS = {"PCM_S8": ("int16", 2.0**15), "PCM_U8": ("int16", 2.0**15),
            "PCM_16": ("int16", 2.0**15), "PCM_24": ("int32", 2.0**31),
            "PCM_32": ("int32", 2.0**31), "FLOAT": ("float32", 1.0),
            "DOUBLE": ("float64", 1.0)}


@dataclass(frozen=True)
class WavInfo:
    """What an audio file holds: ``rate`` (Hz), ``channels``, ``frames``
    (samples per channel), ``sampwidth`` (bytes per sample), ``subtype``
    (libsndfile's sample format: ``PCM_16``, ``FLOAT``, ``VORBIS``...) and
    ``format`` (the container: ``WAV``, ``FLAC``...)."""

    path: str
    rate: int
    channels: int
    frames: int
    sampwidth: int
    subtype: str = "PCM_16"
    format: str = "WAV"

    @property
    def seconds(self) -> float:
        return self.frames / self.rate

    @property
    def output_subtype(self) -> str:
        """The WAV sample format that keeps this file's precision: float
        stays float, 24 and 32-bit PCM stay so, the rest is 16-bit PCM."""
        if self.subtype in FLOAT_SUBTYPES or self.subtype in ("PCM_24", "PCM_32"):
            return self.subtype
        return "PCM_16"


def _open(path: str | os.PathLike) -> soundfile.SoundFile:
    path = existing_file(path, "an audio file")
    try:
        return soundfile.SoundFile(path)
    except (soundfile.SoundFileError, RuntimeError) as exc:
        detail = str(exc).rsplit(":", 1)[-1].strip() or "unknown format"
        raise InputError(f"{path}: not a readable audio file ({detail}; WAV, FLAC, OGG "
                         "and the other formats of libsndfile are read)") from None


def info(path: str | os.PathLike) -> WavInfo:
    """The facts of an audio file, read from its header.

    Raises
    ------
    InputError
        No such file, not an audio file libsndfile reads, or no samples.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from dmf.audio import wav
    >>> path = os.path.join(tempfile.mkdtemp(), "a.flac")
    >>> wav.write(path, np.zeros(800), 8000)
    >>> facts = wav.info(path)
    >>> facts.seconds, facts.format, facts.subtype
    (0.1, 'FLAC', 'PCM_16')
    """
    with _open(path) as f:
        facts = WavInfo(os.fspath(path), int(f.samplerate), int(f.channels), int(f.frames),
                        SAMPLE_BYTES.get(f.subtype, 2), f.subtype, f.format)
    if facts.frames == 0:
        raise InputError(f"{path}: an empty audio file (no samples)")
    if facts.rate <= 0:
        raise InputError(f"{path}: sample rate {facts.rate} in its header")
    return facts


def read(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Samples ``start:stop`` of an audio file as float64 mono, reading only
    those. Ranges past either end are clipped (so the result may be shorter).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from dmf.audio import wav
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> wav.write(path, np.linspace(-0.5, 0.5, 1000), 8000)
    >>> x = wav.read(path, 100, 103)
    >>> np.round(x, 3).tolist()
    [-0.4, -0.399, -0.398]
    """
    with _open(path) as f:
        n = f.frames
        start = min(max(int(start), 0), n)
        stop = n if stop is None else min(max(int(stop), start), n)
        f.seek(start)
        # PCM read as integers and scaled here: libsndfile's own conversion
        # to float measured slower than the read itself (same values: it
        # divides by 2**15 or 2**31 too)
        dtype, scale = _READ_AS.get(f.subtype, ("float32", 1.0))
        x = f.read(stop - start, dtype=dtype)  # 1-D when mono
    if x.ndim > 1:
        x = x.mean(axis=1)
    # one pass to float64; the scale is a power of two, so the product is exact
    return np.multiply(x, 1.0 / scale, dtype=np.float64)


def _container(path: str) -> str:
    """libsndfile's format for a file name's extension (WAV when unknown)."""
    ext = os.path.splitext(path)[1].lstrip(".").upper()
    ext = {"OGA": "OGG", "AIF": "AIFF"}.get(ext, ext)
    return ext if ext in soundfile.available_formats() else "WAV"


class WavWriter:
    """Append float samples to a mono audio file, atomically.

    Samples go to ``.NAME.part`` beside ``path``; :meth:`close` renames it to
    ``path``. Used as a context manager, an exception drops the partial file.
    ``subtype`` is libsndfile's sample format (``PCM_16``, ``PCM_24``,
    ``FLOAT``...; default: the PCM of ``sampwidth`` bytes, or the container's
    own, such as Vorbis for ``.ogg``).
    """

    def __init__(self, path: str | os.PathLike, rate: int, sampwidth: int = 2, *,
                 subtype: str | None = None):
        self.path = os.fspath(path)
        folder, name = os.path.split(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self.partial = os.path.join(folder, f".{name}.part")
        container = _container(self.path)
        if subtype is None:
            subtype = PCM_OF_WIDTH.get(sampwidth, "PCM_16")
            if not soundfile.check_format(container, subtype):
                subtype = soundfile.default_subtype(container)
        # PCM wraps around past full scale in libsndfile: clip (a mask can
        # overshoot a little); float keeps what it is given
        self._clip = subtype not in FLOAT_SUBTYPES
        self._file = soundfile.SoundFile(self.partial, "w", samplerate=int(rate), channels=1,
                                         format=container, subtype=subtype)

    def write(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        self._file.write(np.clip(x, -1.0, 1.0) if self._clip else x)

    def close(self) -> None:
        self._file.close()  # fixes the header's sizes
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        self._file.close()
        os.remove(self.partial)

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def write(path: str | os.PathLike, x: np.ndarray, rate: int, sampwidth: int = 2, *,
          subtype: str | None = None) -> None:
    """Write float samples (in [-1, 1] for PCM) as a mono audio file
    (atomically); the container follows the extension (see :class:`WavWriter`)."""
    with WavWriter(path, rate, sampwidth, subtype=subtype) as w:
        w.write(x)
