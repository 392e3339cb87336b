"""The kinds of step a job can run, and how each maps onto a ``dmf`` command.

A step is a ``dmf`` command with its options written as YAML keys, so a job
spec and a command line say the same thing in the same words::

    - step: nmf            # dmf nmf X OUT -k 10 --loss kl --max-iter 300
      x: counts            # an input or an earlier step
      k: 10
      loss: kl
      max_iter: 300

Each kind names the command, which of its positional arguments are inputs
(references to ``inputs`` or earlier steps), where its output goes, and
whether it runs on the iteration engine (and so resumes from checkpoints).
The options a job controls for every step (cluster, storage options,
checkpoint policy, resume, overwrite, progress) are not step keys.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

# Set by the runner from the job's cluster / checkpoint / retry policy.
RUNNER_OPTIONS = frozenset({
    "help", "scheduler", "workers", "threads", "memory_limit", "storage_options", "verbose",
    "quiet", "no_resume", "overwrite", "progress", "json", "checkpoint_every",
    "checkpoint_seconds", "damaged_checkpoints", "func", "command", "kind", "cf_command",
    "audio_command",
})


@dataclass(frozen=True)
class Kind:
    """One kind of step.

    command : the ``dmf`` subcommand words (``("cf", "train")``).
    inputs : positional arguments that name an input or an earlier step.
    out : where the result goes: a positional (``"out"``), an option
        (``"--out"``: the step writes it only when given, the runner always
        gives it), or None (the step writes nothing).
    products : what later steps may refer to, as ``NAME.PRODUCT``, and the
        path of each under the output (``cf-split`` makes ``train`` and
        ``test``); by default the output itself, as ``NAME``.
    engine : runs on the iteration engine: resumes from its checkpoints and
        skips a complete result of the same job by itself.
    """

    command: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    out: str | None = "out"
    products: dict[str, str] = field(default_factory=dict)
    engine: bool = False
    doc: str = ""


KINDS: dict[str, Kind] = {
    "generate": Kind(("generate",), doc="a synthetic matrix (kind: lowrank) or ratings "
                     "(kind: ratings); dmf generate KIND OUT ..."),
    "ingest": Kind(("ingest",), inputs=("src",), doc="a file to a store; dmf ingest SRC OUT"),
    "svd": Kind(("svd",), inputs=("x",), engine=True, doc="truncated SVD; dmf svd X OUT"),
    "nmf": Kind(("nmf",), inputs=("x",), engine=True, doc="NMF (factors: 3 for NMTF); "
                "dmf nmf X OUT"),
    "nmtf": Kind(("nmf",), inputs=("x",), engine=True, doc="three-factor NMF X ~ W S H; "
                 "dmf nmf X OUT --factors 3 --k2 K2"),
    "rank": Kind(("rank",), inputs=("x",), out="--out", engine=True,
                 doc="choose k; dmf rank X --k A:B --out OUT"),
    "cf-split": Kind(("cf", "split"), inputs=("ratings",),
                     products={"train": "train.zarr", "test": "test.zarr"},
                     doc="ratings to train and test stores; dmf cf split RATINGS OUT"),
    "cf-train": Kind(("cf", "train"), inputs=("ratings",), engine=True,
                     doc="a recommender; dmf cf train RATINGS OUT --model ..."),
    "cf-evaluate": Kind(("cf", "evaluate"), inputs=("model", "train", "test"), out=None,
                        doc="RMSE, MAE, ranking metrics (kept in the run record); "
                        "dmf cf evaluate MODEL TRAIN TEST"),
    "cf-recommend": Kind(("cf", "recommend"), inputs=("model", "ratings"), out="--out",
                         doc="top-N items of every user; dmf cf recommend MODEL RATINGS "
                         "--out OUT"),
    "audio-demo": Kind(("audio", "demo"), products={"mixture": "mixture.wav"},
                       doc="a mixture of generated sounds and the originals; "
                       "dmf audio demo OUTDIR"),
    "audio-separate": Kind(("audio", "separate"), inputs=("src",),
                           doc="sources of a WAV recording by IS-NMF; "
                           "dmf audio separate IN.wav OUTDIR --sources N"),
    "report": Kind((), out="out", doc="a Markdown summary of the job's results; keys: "
                   "steps (default: every earlier step)"),
}

# Keys every step may have besides its command's options.
STEP_KEYS = frozenset({"step", "name", "retries"})


def subparser(kind: str, sub_kind: str | None = None) -> argparse.ArgumentParser | None:
    """The argparse parser of ``kind``'s command (None for ``report``)."""
    from dmf.cli import build_parser

    words = list(KINDS[kind].command)
    if not words:
        return None
    if kind == "generate":
        words.append(sub_kind or "lowrank")
    parser = build_parser()
    for word in words:
        parser = _child(parser, word)
    return parser


def _child(parser: argparse.ArgumentParser, word: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[word]
    raise KeyError(word)  # pragma: no cover - KINDS names existing commands


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options a step may set: dest -> action, without the runner's."""
    return {a.dest: a for a in parser._actions
            if a.option_strings and a.dest not in RUNNER_OPTIONS}


def flag(action: argparse.Action) -> str:
    """The long form of an option (``--max-iter``)."""
    return max(action.option_strings, key=len)
