"""WAV files read and written in blocks, with the standard library's ``wave``.

Only PCM is handled (8, 16, 24 and 32-bit integers, the formats ``wave``
reads); samples come back as float64 in [-1, 1). A stereo (or more) file is
mixed down to mono by averaging its channels, since the separation works on
one spectrogram. Nothing here reads a whole file: :func:`read` takes a sample
range and seeks to it.

Writing goes to a hidden temporary name beside the target, renamed over it
only when the last sample is written, so a killed run never leaves a torn
WAV under the final name.
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass

import numpy as np

from dmf.errors import InputError

__all__ = ["WavInfo", "WavWriter", "info", "read", "write"]


@dataclass(frozen=True)
class WavInfo:
    """What a WAV file holds: ``rate`` (Hz), ``channels``, ``frames`` (samples
    per channel), ``sampwidth`` (bytes per sample)."""

    path: str
    rate: int
    channels: int
    frames: int
    sampwidth: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def _open(path: str | os.PathLike) -> wave.Wave_read:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: a folder, not a WAV file")
    try:
        return wave.open(path, "rb")
    except (wave.Error, EOFError) as exc:
        detail = str(exc) or "truncated header"
        if "unknown format: 3" in detail:
            detail = "32-bit float samples; convert it to PCM (16 or 24-bit integers)"
        elif "unknown format: 65534" in detail:
            detail = ("a WAVE_FORMAT_EXTENSIBLE header, which Python's wave module reads from "
                      "3.12 on; save it as plain PCM")
        elif "unknown format" in detail:
            detail = f"not PCM ({detail}); convert it to 16 or 24-bit PCM"
        raise InputError(f"{path}: not a readable WAV file ({detail})") from None


def info(path: str | os.PathLike) -> WavInfo:
    """The facts of a WAV file, read from its header.

    Raises
    ------
    InputError
        No such file, not a WAV file, not PCM, or no samples.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from dmf.audio import wav
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> wav.write(path, np.zeros(800), 8000)
    >>> wav.info(path).seconds
    0.1
    """
    with _open(path) as f:
        facts = WavInfo(os.fspath(path), f.getframerate(), f.getnchannels(), f.getnframes(),
                        f.getsampwidth())
    if facts.frames == 0:
        raise InputError(f"{path}: an empty WAV file (no samples)")
    if facts.rate <= 0:
        raise InputError(f"{path}: sample rate {facts.rate} in its header")
    return facts


def _decode(raw: bytes, sampwidth: int, channels: int) -> np.ndarray:
    """PCM bytes -> float64 mono in [-1, 1)."""
    if sampwidth == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    elif sampwidth == 3:  # no 24-bit dtype: widen each sample to 4 bytes
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        wide = np.zeros((len(b), 4), np.uint8)
        wide[:, 1:] = b
        x = wide.view("<i4").ravel().astype(np.float64) / 2.0**31
    else:
        x = np.frombuffer(raw, f"<i{sampwidth}").astype(np.float64) / 2.0 ** (8 * sampwidth - 1)
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return x


def _encode(x: np.ndarray, sampwidth: int) -> bytes:
    """float [-1, 1] -> PCM bytes (clipped: a mask can overshoot full scale a little)."""
    x = np.clip(np.asarray(x, np.float64), -1.0, 1.0)
    if sampwidth == 1:
        return np.round(x * 127.0 + 128.0).astype(np.uint8).tobytes()
    top = 2.0 ** (8 * sampwidth - 1) - 1
    ints = np.round(x * top).astype("<i4" if sampwidth >= 3 else f"<i{sampwidth}")
    if sampwidth == 3:
        return ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return ints.tobytes()


def read(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Samples ``start:stop`` of a WAV file as float64 mono, reading only those.

    Ranges past either end are clipped (so the result may be shorter).

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
        n = f.getnframes()
        start = min(max(int(start), 0), n)
        stop = n if stop is None else min(max(int(stop), start), n)
        f.setpos(start)
        raw = f.readframes(stop - start)
        return _decode(raw, f.getsampwidth(), f.getnchannels())


class WavWriter:
    """Append float samples to a mono PCM WAV file, atomically.

    Samples go to ``.NAME.part`` beside ``path``; :meth:`close` renames it to
    ``path``. Used as a context manager, an exception drops the partial file.
    """

    def __init__(self, path: str | os.PathLike, rate: int, sampwidth: int = 2):
        self.path = os.fspath(path)
        folder, name = os.path.split(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self.partial = os.path.join(folder, f".{name}.part")
        self.sampwidth = sampwidth
        self._file = wave.open(self.partial, "wb")
        self._file.setnchannels(1)
        self._file.setsampwidth(sampwidth)
        self._file.setframerate(int(rate))

    def write(self, x: np.ndarray) -> None:
        self._file.writeframesraw(_encode(x, self.sampwidth))

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


def write(path: str | os.PathLike, x: np.ndarray, rate: int, sampwidth: int = 2) -> None:
    """Write float samples in [-1, 1] as a mono PCM WAV file (atomically)."""
    with WavWriter(path, rate, sampwidth) as w:
        w.write(x)
