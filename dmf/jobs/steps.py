"""The kinds of step a job can run: one table, :data:`KINDS`, from each kind
to the Python function that runs it.

A step is a ``dmf`` command with its options written as YAML keys, so a job
spec and a command line say the same thing in the same words::

    - step: nmf            # dmf nmf X OUT -k 10 --loss kl --max-iter 300
      x: counts            # an input or an earlier step
      k: 10
      loss: kl
      max_iter: 300

Each kind names the function it runs (``run``: the command's own function,
shared with :mod:`dmf.cli`, which calls the public function, such as
:func:`dmf.svd`, with keyword arguments and returns its result), the command
whose options it takes (the same parser checks both, see :func:`subparser`),
which of its positional arguments are inputs (references to ``inputs`` or
earlier steps), where its output goes, and whether it runs on the iteration
engine (and so resumes from checkpoints). The options a job controls for
every step (cluster, storage options, checkpoint policy, resume, overwrite,
progress) are not step keys.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dmf import cli_audio, cli_cf, cli_matrix
from dmf.cli_args import GLOBAL_DEFAULTS, Compute, Ran, root_parser

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
    run : the function that runs a step: ``run(params, on) -> Ran``, with
        ``params`` the step's checked options (a namespace, as the command's
        parser makes) and ``on(*inputs)`` the cluster to compute on.
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
    run: Callable[[argparse.Namespace, Compute], Ran] | None = None
    inputs: tuple[str, ...] = ()
    out: str | None = "out"
    products: dict[str, str] = field(default_factory=dict)
    engine: bool = False
    doc: str = ""
    facts: Callable[[Any], dict[str, Any]] | None = None  # kept in the run record


def _metrics(metrics: dict) -> dict[str, Any]:
    """``cf evaluate``'s metrics, as plain JSON values for the run record."""
    return {"metrics": json.loads(json.dumps(metrics))}


KINDS: dict[str, Kind] = {
    "generate": Kind(("generate",), cli_matrix.run_generate,
                     doc="a synthetic matrix (kind: lowrank) or ratings "
                     "(kind: ratings); dmf generate KIND OUT ..."),
    "ingest": Kind(("ingest",), cli_matrix.run_ingest, inputs=("src",),
                   doc="a file to a store; dmf ingest SRC OUT"),
    "svd": Kind(("svd",), cli_matrix.run_svd, inputs=("x",), engine=True,
                doc="truncated SVD; dmf svd X OUT"),
    "nmf": Kind(("nmf",), cli_matrix.run_nmf, inputs=("x",), engine=True,
                doc="NMF (factors: 3 for NMTF); dmf nmf X OUT"),
    "nmtf": Kind(("nmf",), cli_matrix.run_nmf, inputs=("x",), engine=True,
                 doc="three-factor NMF X ~ W S H; dmf nmf X OUT --factors 3 --k2 K2"),
    "rank": Kind(("rank",), cli_matrix.run_rank, inputs=("x",), out="--out", engine=True,
                 doc="choose k; dmf rank X --k A:B --out OUT"),
    "cf-split": Kind(("cf", "split"), cli_cf.run_split, inputs=("ratings",),
                     products={"train": "train.zarr", "test": "test.zarr"},
                     doc="ratings to train and test stores; dmf cf split RATINGS OUT"),
    "cf-train": Kind(("cf", "train"), cli_cf.run_train, inputs=("ratings",), engine=True,
                     doc="a recommender; dmf cf train RATINGS OUT --model ..."),
    "cf-evaluate": Kind(("cf", "evaluate"), cli_cf.run_evaluate,
                        inputs=("model", "train", "test"), out=None, facts=_metrics,
                        doc="RMSE, MAE, ranking metrics (kept in the run record); "
                        "dmf cf evaluate MODEL TRAIN TEST"),
    "cf-recommend": Kind(("cf", "recommend"), cli_cf.run_recommend,
                         inputs=("model", "ratings"), out="--out",
                         doc="top-N items of every user; dmf cf recommend MODEL RATINGS "
                         "--out OUT"),
    "audio-demo": Kind(("audio", "demo"), cli_audio.run_demo,
                       products={"mixture": "mixture.wav"},
                       doc="a mixture of generated sounds and the originals; "
                       "dmf audio demo OUTDIR"),
    "audio-separate": Kind(("audio", "separate"), cli_audio.run_separate, inputs=("src",),
                           doc="sources of a WAV recording by IS-NMF; "
                           "dmf audio separate IN.wav OUTDIR --sources N"),
    "report": Kind((), out="out", doc="a Markdown summary of the job's results; keys: "
                   "steps (default: every earlier step)"),
}

# Keys every step may have besides its command's options.
STEP_KEYS = frozenset({"step", "name", "retries"})


def subparser(kind: str, sub_kind: str | None = None) -> argparse.ArgumentParser | None:
    """The argparse parser of ``kind``'s command (None for ``report``): the
    schema of a step's options, with their types, choices and defaults."""
    words = list(KINDS[kind].command)
    if not words:
        return None
    if kind == "generate":
        words.append(sub_kind or "lowrank")
    parser, commands, command = root_parser()  # the commands a step may run, as dmf.cli
    cli_matrix.add_commands(commands, command)
    cli_cf.add_commands(commands, command)
    cli_audio.add_commands(commands, command)
    cli_matrix.add_rank(command)
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


def convert(action: argparse.Action, value: Any) -> Any:
    """``value`` as the parser would store it for ``action`` (its type
    applied to the text), or ValueError / ArgumentTypeError saying why not."""
    if isinstance(action, argparse._StoreTrueAction | argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value
    many = isinstance(action, argparse._AppendAction)
    values = value if many and isinstance(value, list) else [value]
    converted = []
    for item in values:
        if isinstance(item, dict | list) or isinstance(item, bool):
            raise ValueError(f"must be a single value, got {item!r}")
        one = action.type(str(item)) if callable(action.type) else str(item)
        if action.choices is not None and one not in action.choices:
            raise ValueError(f"must be one of {', '.join(map(str, action.choices))}, "
                             f"got {item!r}")
        converted.append(one)
    return converted if many else converted[0]


def defaults(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Every option of ``parser`` at the value the parser gives it when the
    command line does not (a string default through the option's type, as
    argparse does; the global options at :data:`GLOBAL_DEFAULTS`)."""
    values = dict(GLOBAL_DEFAULTS)
    for action in parser._actions:
        if action.dest == "help" or isinstance(action, argparse._SubParsersAction):
            continue
        default = action.default
        if default is argparse.SUPPRESS:
            default = GLOBAL_DEFAULTS.get(action.dest)
        elif isinstance(default, str) and callable(action.type):
            default = action.type(default)
        values[action.dest] = default
    return {**values, **{k: v for k, v in parser._defaults.items() if k != "func"}}
