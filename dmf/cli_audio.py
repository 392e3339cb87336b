"""``dmf audio``: source separation of a recording by NMF of its spectrogram.

    dmf audio separate IN.wav OUTDIR --sources N [--components K] [--loss is|kl|frobenius]
                       [--n-fft 1024] [--hop 256] [--max-iter 200] [--seed 0]
    dmf audio demo OUTDIR [--seconds 4] [--rate 8000] [--seed 0]

Kept apart from :mod:`dmf.cli`, as :mod:`dmf.cli_cf` is; it imports nothing
heavy until a command runs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import dmf
from dmf.cli_args import (
    Compute,
    Ran,
    command_group,
    nmf_stopping,
    positive_int,
    printed,
    run_options,
)
from dmf.cli_args import progress as progress_of
from dmf.errors import StoreError
from dmf.wording import plural, printed_path


def add_commands(commands, command: Callable) -> None:
    """Add ``dmf audio separate | demo`` (``command``: :func:`dmf.cli_args.root_parser`'s)."""
    subs = command_group(commands, "audio", help="audio source separation by NMF of a "
                         "spectrogram (Itakura-Saito or KL), out of core",
                         description="Audio source separation: STFT -> NMF -> Wiener masks "
                         "-> one WAV per source (docs/guide/audio.md).")

    sep = command("separate", printed(run_separate), "split a recording (WAV, FLAC, OGG...) into "
                  "sources: streamed STFT to a Zarr power spectrogram, NMF on it, soft "
                  "masks, inverse STFT",
                  parent=subs)
    sep.add_argument("src", metavar="IN.wav", help="audio file: WAV (PCM or float), FLAC, "
                     "OGG, AIFF... (channels are averaged)")
    sep.add_argument("outdir", metavar="OUTDIR", help="local folder for the spectrogram, the "
                     "NMF, components/*.wav, sources/*.wav and report.html")
    # Plain ints: dmf.audio.separate refuses N < 1 in one line naming the recording.
    sep.add_argument("--sources", type=int, required=True, metavar="N",
                     help="number of sources")
    sep.add_argument("--components", type=int, metavar="K",
                     help="NMF components (default N); K > N: grouped into N sources by "
                     "their spectral templates")
    sep.add_argument("--loss", choices=["is", "kl", "frobenius"], default="is",
                     help="is: Itakura-Saito, scale invariant (default); kl; frobenius "
                     "(for comparison: loud sources dominate it)")
    sep.add_argument("--n-fft", type=positive_int, default=1024, metavar="N",
                     help="STFT frame length in samples (default 1024)")
    sep.add_argument("--hop", type=positive_int, default=256, metavar="H",
                     help="STFT hop in samples, at most n_fft / 2 (default 256)")
    nmf_stopping(sep)
    sep.add_argument("--block-frames", type=positive_int, default=1024, metavar="F",
                     help="STFT frames per block: the unit of streaming (default 1024)")
    sep.add_argument("--no-report", action="store_true", help="skip OUTDIR/report.html")
    sep.add_argument("--overwrite", action="store_true",
                     help="replace a complete separation of other input or settings")
    run_options(sep)

    demo = command("demo", printed(run_demo), "write a mixture of generated sources (harmonic "
                   "tone, chirp, noise bursts) and the originals, to try separate on", parent=subs,
                   cluster=False)
    demo.add_argument("out", metavar="OUTDIR", help="folder for mixture.wav and "
                      "originals/*.wav")
    demo.add_argument("--seconds", type=float, default=4.0, metavar="S", help="default 4")
    demo.add_argument("--rate", type=positive_int, default=8000, metavar="HZ",
                      help="sample rate (default 8000)")
    demo.add_argument("--seed", type=int, default=0, help="default 0")
    demo.add_argument("--overwrite", action="store_true", help="replace existing files")


def run_separate(args: argparse.Namespace, on: Compute) -> Ran:
    with on(args.src):
        sep = dmf.audio.separate(
            args.src, args.outdir, args.sources, components=args.components, loss=args.loss,
            n_fft=args.n_fft, hop=args.hop, max_iter=args.max_iter, tol=args.tol,
            seed=args.seed, block_frames=args.block_frames, overwrite=args.overwrite,
            resume=not args.no_resume, damaged_checkpoints=args.damaged_checkpoints,
            checkpoint_every=args.checkpoint_every, checkpoint_seconds=args.checkpoint_seconds,
            progress=progress_of(args), cache=False if args.no_cache else "auto",
            report=not args.no_report)
    f = sep.facts
    verb = "already complete" if sep.skipped else "wrote"
    lines = [f"{verb} {printed_path(sep.outdir)}: {plural(len(sep.components), 'component')}, "
             f"{plural(len(sep.sources), 'source')} ({f['loss']}, "
             f"{plural(f['n_iter'], 'iteration')}, "
             f"{f['seconds']:.1f} s at {f['rate']} Hz)",
             f"sources: {', '.join(printed_path(p) for p in sep.sources)}"]
    if len(sep.sources) < len(sep.components):
        lines.append(f"groups of components: {sep.groups}")
    if sep.report:
        lines.append(f"report: {printed_path(sep.report)}")
    return Ran(sep, lines)


def run_demo(args: argparse.Namespace, on: Compute) -> Ran:  # noqa: ARG001
    target = os.path.join(args.out, "mixture.wav")
    if os.path.exists(target) and not args.overwrite:
        raise StoreError(f"{target}: already exists; pass --overwrite to replace it")
    d = dmf.audio.demo(args.out, rate=args.rate, seconds=args.seconds, seed=args.seed)
    return Ran(d, [f"wrote {printed_path(d.mixture)} ({args.seconds:g} s at {args.rate} Hz) "
                   "and the originals: "
                   f"{', '.join(printed_path(p) for p in d.sources.values())}"])
