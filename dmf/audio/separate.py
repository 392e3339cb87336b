"""``dmf.audio.separate``: a recording (WAV, FLAC, OGG...) split into sources
by NMF of its spectrogram.

The pipeline, each stage streaming blocks of frames:

1. the floored power spectrogram, frames x frequencies, to
   ``OUTDIR/spectrogram.zarr`` (:mod:`dmf.audio.spectrogram`);
2. ``dmf.nmf`` on it with multiplicative updates and the Itakura-Saito
   (default) or KL loss, stored with checkpoints in ``OUTDIR/nmf.zarr``, so
   a killed run resumes;
3. the k components grouped into the requested number of sources
   (:mod:`dmf.audio.grouping`);
4. Wiener masks, inverse STFT, one WAV per component and per source
   (:mod:`dmf.audio.synthesis`);
5. ``OUTDIR/report.html`` (:mod:`dmf.audio.figures`) and, last, the marker
   ``OUTDIR/separation.json`` that says the separation is complete.

Replacing a complete separation (``overwrite``) never damages it: the new
one is written in ``.OUTDIR.dmf-next`` beside it and its entries are moved
in only once it is complete (the old ones moved aside first, to
``.OUTDIR.dmf-old-*``, and deleted last). Other files in OUTDIR (the
recording itself, say) stay where they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Any, Unpack

from dmf.audio import wav
from dmf.audio.figures import write_report
from dmf.audio.grouping import group_components
from dmf.audio.spectrogram import write_spectrogram
from dmf.audio.stft import Stft
from dmf.audio.synthesis import component_paths, synthesize
from dmf.engine.identity import (
    OLDER,
    describe_input,
    difference,
    digest,
    job_identity,
    recorded,
    refusal,
)
from dmf.engine.options import RunKeywords, RunOptions, run_options
from dmf.errors import InputError, StoreError
from dmf.nmf.api import nmf
from dmf.store.location import dmf_attrs

__all__ = ["LOSSES", "Separation", "separate"]

LOSSES = ("is", "kl", "frobenius")
MARKER = "separation.json"
#: What a separation writes in OUTDIR, the marker last.
ENTRIES = ("spectrogram.zarr", "nmf.zarr", "components", "sources", "report.html", MARKER)


@dataclass(frozen=True)
class Separation:
    """What :func:`separate` wrote (paths) and the facts of the fit.

    ``components``: one WAV per NMF component; ``sources``: one per group
    (the component files themselves when there are as many sources as
    components); ``groups``: the components of each source; ``skipped``:
    True when OUTDIR already held this separation and nothing was redone.
    """

    outdir: str
    components: list[str]
    sources: list[str]
    groups: list[list[int]]
    spectrogram: str
    nmf: str
    report: str | None
    facts: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False


def _stored_difference(record: dict | None, identity: dict[str, Any]) -> str | None:
    """How what a record (the marker, the spectrogram's attributes) was made
    from differs from ``identity`` (None: the same). One of an older dmf kept
    only ``key``, the short digest of the recording's description and the
    settings: it is recomputed here."""
    record = record or {}
    if "key" in record and "identity" not in record:
        older = {"input": identity["inputs"]["recording"], **identity["parameters"]}
        return None if record["key"] == digest(older)[:16] else OLDER
    return difference(record, identity)


def _check(src: str, outdir: str, sources: int, components: int, loss: str, n_fft: int,
           hop: int) -> None:
    """Refuse bad settings before any work, naming the recording."""
    if "://" in outdir and not outdir.startswith("file://"):
        raise InputError(f"{outdir}: audio separation writes WAV files to a local folder; "
                         "give a local path")
    for label, value in (("sources", sources), ("components", components),
                         ("n_fft", n_fft), ("hop", hop)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{src}: {label} must be a positive integer, got {value!r}")
    if components < sources:
        raise InputError(f"{src}: sources={sources} is more than components={components}: "
                         "each source is a group of at least one NMF component")
    if loss not in LOSSES:
        raise InputError(f"{src}: unknown loss {loss!r} for audio; available: "
                         f"{', '.join(LOSSES)}")
    if n_fft < 16 or hop > n_fft // 2:
        raise InputError(f"{src}: need n_fft >= 16 and hop <= n_fft / 2 (overlapping Hann "
                         "windows "
                         f"invert exactly), got n_fft={n_fft}, hop={hop}")
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise InputError(f"{outdir}: a file, not a folder for the separation")


def separate(
    src: str | os.PathLike,
    outdir: str | os.PathLike,
    sources: int,
    *,
    components: int | None = None,
    loss: str = "is",
    n_fft: int = 1024,
    hop: int = 256,
    max_iter: int = 200,
    tol: float = 1e-4,
    seed: int | None = 0,
    block_frames: int = 1024,
    overwrite: bool = False,
    report: bool = True,
    options: RunOptions | None = None,
    **run_keywords: Unpack[RunKeywords],
) -> Separation:
    """Separate the sources of a recording by NMF of its power spectrogram.

    Parameters
    ----------
    src : path
        An audio file libsndfile reads: WAV (8/16/24/32-bit PCM, 32/64-bit
        float), FLAC, OGG/Vorbis, AIFF...; several channels are averaged to
        one. The sources are WAV files, float when the recording is.
    outdir : path
        A local folder: ``spectrogram.zarr``, ``nmf.zarr``,
        ``components/component-NN.wav``, ``sources/source-N.wav`` (when
        ``sources < components``), ``report.html``, ``separation.json``.
    sources : int
        Number of sources wanted.
    components : int, optional
        NMF rank k (default ``sources``); with more components than sources
        they are grouped by their spectral templates
        (:func:`dmf.audio.grouping.group_components`).
    loss : {"is", "kl", "frobenius"}
        The beta-divergence of the NMF: Itakura-Saito (scale invariant: quiet
        sources count as much as loud ones), Kullback-Leibler, or Frobenius
        (for comparison).
    n_fft, hop : int
        Frame length and hop of the STFT in samples (periodic Hann window;
        ``hop <= n_fft / 2``).
    max_iter, tol, seed :
        As :func:`dmf.nmf` (multiplicative updates from a random start).
    block_frames : int
        STFT frames per block: the unit of streaming and the spectrogram's
        chunk.
    overwrite : bool
        Replace a complete separation of other input or settings in OUTDIR
        (without it, that is refused; the same one is returned as it is).
    report : bool
        Write ``OUTDIR/report.html`` (spectrogram, W and H images).
    options : RunOptions, optional
        The NMF's run options (:class:`dmf.RunOptions`): it checkpoints into
        ``OUTDIR/nmf.zarr`` (so no ``out`` or ``storage_options``);
        ``resume=False`` recomputes the separation.
    **run_keywords
        The same options as keywords (``resume=``, ``checkpoint_every=``,
        ``progress=``, ...), instead of ``options``.

    Returns
    -------
    Separation

    Examples
    --------
    >>> import tempfile, os, dmf.audio
    >>> d = tempfile.mkdtemp()
    >>> mix = dmf.audio.demo(d, seconds=1.0).mixture
    >>> sep = dmf.audio.separate(mix, os.path.join(d, "out"), 3, n_fft=256, hop=64,
    ...                          max_iter=20, tol=0, report=False)
    >>> [os.path.basename(p) for p in sep.sources]
    ['component-00.wav', 'component-01.wav', 'component-02.wav']
    >>> dmf.audio.wav.info(sep.sources[0]).seconds
    1.0
    """
    opts = run_options(options, run_keywords, "separate").refuse(
        ("out", "storage_options"), "dmf.audio.separate (its NMF is stored in OUTDIR)")
    src, outdir = os.fspath(src), _local_folder(os.fspath(outdir))
    k = sources if components is None else components
    facts = wav.info(src)
    _check(src, outdir, sources, k, loss, n_fft, hop)
    stft = Stft(n_fft, hop, facts.rate)
    recording = {"recording": describe_input(src)}
    spec_identity = job_identity("spectrogram", recording,
                                 parameters={"n_fft": n_fft, "hop": hop})
    params = {"sources": sources, "components": k, "loss": loss, "n_fft": n_fft, "hop": hop,
              "max_iter": max_iter, "tol": tol, "seed": seed}
    identity = job_identity("audio-separate", recording, parameters=params)
    final, done = outdir, _read_marker(outdir)
    if done is not None:
        diff = _stored_difference(done, identity)
        if diff is None and not overwrite:
            return _result(outdir, done, skipped=True)
        outdir = _replacement_folder(outdir, diff, overwrite)

    _remove_stale_outputs(outdir)
    spec_url, nmf_url = _spectrogram(src, outdir, stft, spec_identity, block_frames=block_frames,
                                     keep_nmf=opts.resume and outdir == final)
    result = nmf(spec_url, k, loss=loss, solver="mu", init="random", max_iter=max_iter,
                 tol=tol, seed=seed, options=opts.replace(out=nmf_url, resume=True))
    groups, comp, src_paths = _synthesize(src, outdir, stft, result, sources,
                                          components=k, block_frames=block_frames)
    done = {**recorded(identity), "input": src, "rate": facts.rate, "seconds": facts.seconds,
            "channels": facts.channels, **params, "groups": groups,
            "n_iter": result.n_iter, "converged": bool(result.converged),
            "reconstruction_err": float(result.reconstruction_err_),
            "components_files": [os.path.relpath(p, outdir) for p in comp],
            "sources_files": [os.path.relpath(p, outdir) for p in src_paths],
            "report": None}
    if report:
        write_report(os.path.join(outdir, "report.html"), spec_url, result, done)
        done["report"] = "report.html"
    _write_marker(outdir, done)
    if final != outdir:
        _move_in(outdir, final)
    return _result(final, done, skipped=False)


def _local_folder(outdir: str) -> str:
    """OUTDIR as a path: a ``file://`` URL loses its scheme."""
    if outdir.startswith("file://"):
        outdir = outdir[len("file://"):]
    return outdir


def _read_marker(outdir: str) -> dict | None:
    """The facts of the complete separation in OUTDIR, None when there is none."""
    marker = os.path.join(outdir, MARKER)
    if not os.path.exists(marker):
        return None
    with open(marker, encoding="utf-8") as f:
        return json.load(f)


def _replacement_folder(outdir: str, diff: str | None, overwrite: bool) -> str:
    """An empty folder beside OUTDIR for the separation that replaces the
    complete one in it (refused without ``overwrite``, naming ``diff``, how
    it differs): the complete one stays whole until the new one is."""
    if not overwrite:
        raise StoreError(refusal(outdir, "a complete separation", diff or OLDER,
                                 "pass overwrite=True (CLI: --overwrite) to replace it"))
    staged = _beside(outdir, "dmf-next")
    shutil.rmtree(staged, ignore_errors=True)  # an earlier replacement that was stopped
    os.makedirs(staged)
    return staged


def _remove_stale_outputs(outdir: str) -> None:
    """Files of an earlier separation here (another k, a report) would outlive it."""
    for stale in ("components", "sources"):
        shutil.rmtree(os.path.join(outdir, stale), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(outdir, "report.html"))


def _spectrogram(src: str, outdir: str, stft: Stft, identity: dict[str, Any], *,
                 block_frames: int, keep_nmf: bool) -> tuple[str, str]:
    """The spectrogram's and the NMF's URLs in OUTDIR: the spectrogram is
    written unless a complete one of this ``identity`` is there; the NMF's store
    goes with a rewritten spectrogram and, unless ``keep_nmf``, always."""
    spec_url = os.path.join(outdir, "spectrogram.zarr")
    nmf_url = os.path.join(outdir, "nmf.zarr")
    if not _complete_spectrogram(spec_url, identity):
        shutil.rmtree(spec_url, ignore_errors=True)
        shutil.rmtree(nmf_url, ignore_errors=True)  # fitted to another spectrogram
        os.makedirs(outdir, exist_ok=True)
        write_spectrogram(src, spec_url, stft, block_frames=block_frames,
                          attrs=recorded(identity))
    elif not keep_nmf:
        shutil.rmtree(nmf_url, ignore_errors=True)
    return spec_url, nmf_url


def _synthesize(src: str, outdir: str, stft: Stft, result, sources: int, *, components: int,
                block_frames: int) -> tuple[list[list[int]], list[str], list[str]]:
    """One WAV per component and, when they are grouped (fewer sources than
    components), one per source; returns the groups, the component files and
    the source files."""
    import numpy as np

    H = np.asarray(result.H, dtype=np.float64)
    groups = group_components(H, sources)
    comp = component_paths(outdir, components)
    grouped = sources < components
    src_paths = ([os.path.join(outdir, "sources", f"source-{g}.wav") for g in range(sources)]
                 if grouped else list(comp))
    synthesize(src, stft, result.W, H, comp, groups=groups if grouped else (),
               group_paths=src_paths if grouped else (), block_frames=block_frames)
    return groups, comp, src_paths


def _write_marker(outdir: str, done: dict) -> None:
    """The marker, written whole (renamed into place): the separation is complete."""
    marker = os.path.join(outdir, MARKER)
    tmp = marker + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(done, f, indent=1)
    os.replace(tmp, marker)


def _beside(outdir: str, what: str) -> str:
    parent, name = os.path.split(os.path.abspath(outdir))
    return os.path.join(parent, f".{name}.{what}")


def _move_in(staged: str, outdir: str) -> None:
    """Put the complete separation ``staged`` in place of the one in
    ``outdir``: the old entries are moved aside first (marker first, so a
    crash in between leaves no marker over a mix) and deleted last, the new
    ones moved in, marker last. Renames, in one folder's parent."""
    trash = _beside(outdir, f"dmf-old-{uuid.uuid4().hex[:8]}")
    os.makedirs(trash)
    for entry in (MARKER, *ENTRIES[:-1]):
        if os.path.lexists(os.path.join(outdir, entry)):
            os.replace(os.path.join(outdir, entry), os.path.join(trash, entry))
    for entry in ENTRIES:
        if os.path.lexists(os.path.join(staged, entry)):
            os.replace(os.path.join(staged, entry), os.path.join(outdir, entry))
    shutil.rmtree(trash)
    shutil.rmtree(staged)


def _complete_spectrogram(url: str, identity: dict[str, Any]) -> bool:
    if not os.path.exists(url):
        return False
    import zarr

    try:
        meta = dmf_attrs(zarr.open_array(url, mode="r"))
    except Exception:  # noqa: BLE001 - anything unreadable is rewritten
        return False
    return meta.get("complete") is True and _stored_difference(meta.get("audio"), identity) is None


def _result(outdir: str, done: dict, *, skipped: bool) -> Separation:
    def full(p):
        return os.path.join(outdir, p)

    return Separation(outdir=outdir, components=[full(p) for p in done["components_files"]],
                      sources=[full(p) for p in done["sources_files"]],
                      groups=[list(g) for g in done["groups"]],
                      spectrogram=full("spectrogram.zarr"), nmf=full("nmf.zarr"),
                      report=full(done["report"]) if done.get("report") else None,
                      facts=done, skipped=skipped)
