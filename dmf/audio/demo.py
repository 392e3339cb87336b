"""A mixture of generated sources to separate: ``dmf audio demo``.

Three sources, each easy to hear and to check, switching on and off on
beats of their own: a harmonic tone, a chirp and bursts of white noise
(:func:`demo_sources`). The mixture and each source
are written as 16-bit WAV files, so a separation can be scored against the
truth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from dmf.audio import wav
from dmf.errors import InputError

__all__ = ["Demo", "demo", "demo_sources"]

NAMES = ("tone", "chirp", "noise")


def demo_sources(rate: int = 8000, seconds: float = 4.0, seed: int = 0) -> dict[str, np.ndarray]:
    """The three sources as float arrays (peaks of 0.2 to 0.4).

    Each switches on and off on its own beat, which is what lets NMF tell
    them apart: a 220 Hz note with 6 harmonics falling as 1/h (on 0.6 s of
    every 1 s), a chirp rising from 2 to 2.3 kHz over the recording (heard
    0.45 s of every 0.9 s), white noise bursts (0.2 s of every 0.75 s).

    Examples
    --------
    >>> from dmf.audio.demo import demo_sources
    >>> s = demo_sources(8000, 1.0)
    >>> sorted(s), len(s["tone"])
    (['chirp', 'noise', 'tone'], 8000)
    """
    from scipy.signal import chirp

    n = round(rate * seconds)
    t = np.arange(n) / rate
    tone = sum(np.sin(2 * np.pi * 220.0 * h * t) / h for h in range(1, 7))
    tone = 0.3 * tone / np.abs(tone).max() * ((t % 1.0) < 0.6)
    lo, hi = min(2000.0, 0.25 * rate), min(2300.0, 0.3 * rate)
    sweep = 0.2 * chirp(t, f0=lo, t1=max(seconds, 1e-9), f1=hi) * (((t + 0.5) % 0.9) < 0.45)
    noise = 0.1 * np.random.default_rng(seed).standard_normal(n) * (((t + 0.3) % 0.75) < 0.2)
    return {"tone": tone, "chirp": sweep, "noise": noise}


@dataclass(frozen=True)
class Demo:
    """Where :func:`demo` wrote the mixture and each source."""

    mixture: str
    sources: dict[str, str]


def demo(outdir: str | os.PathLike, *, rate: int = 8000, seconds: float = 4.0,
         seed: int = 0) -> Demo:
    """Write ``OUTDIR/mixture.wav`` and ``OUTDIR/originals/NAME.wav``.

    Examples
    --------
    >>> import tempfile
    >>> from dmf.audio import demo, wav
    >>> d = demo(tempfile.mkdtemp(), seconds=1.0)
    >>> wav.info(d.mixture).seconds, sorted(d.sources)
    (1.0, ['chirp', 'noise', 'tone'])
    """
    if rate < 1000 or seconds <= 0:
        raise InputError(f"a demo needs rate >= 1000 Hz and seconds > 0 (got {rate}, "
                         f"{seconds})")
    outdir = os.fspath(outdir)
    sources = demo_sources(rate, seconds, seed)
    paths = {}
    for name, x in sources.items():
        paths[name] = os.path.join(outdir, "originals", f"{name}.wav")
        wav.write(paths[name], x, rate)
    mixture = os.path.join(outdir, "mixture.wav")
    wav.write(mixture, sum(sources.values()), rate)
    return Demo(mixture, paths)
