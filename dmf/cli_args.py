"""What every ``dmf`` command shares: exit codes, argument types, the root
parser and its global options, the run options of iterative commands, and
the cluster a command computes on.

:mod:`dmf.cli` puts the commands together; :mod:`dmf.jobs` builds the same
parsers to check a job's steps (a step and a command line say the same thing
in the same words) and runs a step through the same functions as the command
(:func:`printed`). It imports nothing heavy.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dmf
from dmf._version import __version__
from dmf.engine import placement

EXIT_OK, EXIT_UNEXPECTED, EXIT_INPUT, EXIT_CONFLICT, EXIT_ENVIRONMENT = 0, 1, 2, 3, 4
EXIT_SIGINT, EXIT_SIGTERM = 130, 143

EPILOG = """\
exit codes: 0 done, 2 bad usage or input (or damaged data: a failed checksum,
a missing chunk; every checkpoint damaged with --damaged-checkpoints stop),
3 output locked or holds another job's checkpoint, 4 the environment failed
(object store credentials, endpoint or bucket, scheduler or its workers, disk
full or read-only), 130/143 interrupted (after a checkpoint), 1 unexpected.
URLs: any local path, file://, s3://BUCKET/KEY (with --storage-options),
memory:// (this process only).
"""



# -- argument types -----------------------------------------------------------

def shape_arg(text: str) -> tuple[int, int]:
    """``"1000x50"`` -> (1000, 50)."""
    try:
        m, n = (int(part) for part in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MxN such as 1000x50, got {text!r}") from None
    if m <= 0 or n <= 0:
        raise argparse.ArgumentTypeError(f"both dimensions must be positive, got {text!r}")
    return m, n


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as {\"anon\": true}")
    return value



# -- the parser -----------------------------------------------------------------

class WrappedDescription(argparse.RawDescriptionHelpFormatter):
    """A one-paragraph description wrapped to the terminal's width; text
    laid out on several lines (the epilog: exit codes, examples) as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text.strip():
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def global_options(parser: argparse.ArgumentParser, *, suppress: bool,
                    cluster: bool = True) -> None:
    """Options accepted before or after the command (the cluster's only by
    commands that compute on one). On subcommands the defaults are
    suppressed so that a value given before the command is not overwritten
    by the subcommand's default."""
    d = {"default": argparse.SUPPRESS} if suppress else {}
    out = parser.add_argument_group("storage and output")
    out.add_argument("--storage-options", type=json_object, metavar="JSON",
                     help="fsspec options for every URL, e.g. "
                     "'{\"client_kwargs\": {\"endpoint_url\": \"http://127.0.0.1:9000\"}}'", **d)
    out.add_argument("-v", "--verbose", action="count",
                     help="log what is done, with times (-vv: debug)", **d)
    out.add_argument("-q", "--quiet", action="store_true",
                     help="errors only: no progress, notes or logs (results still go to "
                     "stdout)", **d)
    if not cluster:
        return
    g = parser.add_argument_group("cluster")
    g.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address; default "
                   "$DASK_SCHEDULER_ADDRESS, else threads in this process for small inputs "
                   "and a local cluster for large ones (-v says which)", **d)
    g.add_argument("--workers", type=nonnegative_int, metavar="N",
                   help="local cluster: worker processes, whatever the input's size (0: no "
                   "cluster, threads in this process)", **d)
    g.add_argument("--threads", type=positive_int, metavar="N",
                   help="local cluster: threads per worker", **d)
    g.add_argument("--memory-limit", metavar="SIZE", help="local cluster: memory per worker, "
                   "e.g. 4GiB", **d)


GLOBAL_DEFAULTS = {"scheduler": None, "workers": None, "threads": None, "memory_limit": None,
                   "storage_options": None, "verbose": 0, "quiet": False}



def root_parser() -> tuple[argparse.ArgumentParser, Any, Callable[..., argparse.ArgumentParser]]:
    """The ``dmf`` parser without commands, its subparsers, and the helper
    that adds a command to them with the global options."""
    parser = argparse.ArgumentParser(
        prog="dmf",
        description="Out-of-core matrix factorization on Zarr stores and Dask clusters.",
        epilog=EPILOG,
        formatter_class=WrappedDescription,
    )
    parser.add_argument("--version", action="version", version=f"dmf {__version__}")
    global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Callable, help: str, parent=commands,
                cluster: bool = True) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help, description=help, epilog=EPILOG,
                                formatter_class=WrappedDescription)
        global_options(sub, suppress=True, cluster=cluster)
        sub.set_defaults(func=func)
        return sub

    return parser, commands, command


def command_group(commands, name: str, help: str, description: str):
    """``dmf NAME STEP ...``: a command whose steps are subcommands (``dmf cf``,
    ``dmf audio``); returns the subparsers to add the steps to. The step
    chosen is ``args.NAME_command``."""
    group = commands.add_parser(name, help=help, description=description)
    return group.add_subparsers(dest=f"{name}_command", metavar="STEP", required=True)


def nmf_stopping(sub: argparse.ArgumentParser) -> None:
    """When an NMF stops, and its seed: ``dmf nmf`` and ``dmf audio separate``
    (which runs :func:`dmf.nmf` on a spectrogram) say it in the same words."""
    sub.add_argument("--max-iter", type=positive_int, default=200, metavar="N",
                     help="NMF iterations (default 200)")
    sub.add_argument("--tol", type=float, default=1e-4, metavar="T",
                     help="stop when the objective fell by less than T times the initial "
                     "one over 10 iterations (default 1e-4; 0: run --max-iter)")
    sub.add_argument("--seed", type=int, default=0, help="default 0")


def run_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--checkpoint-every", type=positive_int, metavar="N",
                     help="checkpoint every N iterations (default 10)")
    sub.add_argument("--checkpoint-seconds", type=float, metavar="T",
                     help="also checkpoint when T seconds passed since the last one "
                     "(default 300)")
    sub.add_argument("--no-resume", action="store_true",
                     help="start over even if OUT holds checkpoints of this job")
    damaged_option(sub)
    sub.add_argument("--progress", action="store_true",
                     help="show progress even when stderr is not a terminal")
    sub.add_argument("--no-cache", action="store_true",
                     help="stream X from the store on every pass even if it fits in memory")


def damaged_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--damaged-checkpoints", choices=["start-over", "stop"],
                     default="start-over",
                     help="when every checkpoint of this job in OUT is damaged (a damaged "
                     "newest one falls back to the one before): start over (default), or "
                     "stop with exit 2, changing nothing")


def progress(args: argparse.Namespace) -> bool | None:
    if args.quiet:
        return False
    return True if args.progress else None


def write_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--chunks", type=positive_int, metavar="ROWS",
                     help="rows per block (default: blocks of about 64 MiB)")
    sub.add_argument("--codec", choices=["lz4", "zstd", "blosc-zstd", "none"],
                     help="compression (default: the fastest to read, see benchmarks/README.md)")
    sub.add_argument("--overwrite", action="store_true",
                     help="replace OUT if it exists (the old store stays intact until the new one "
                     "is complete)")



# -- commands -----------------------------------------------------------------

def cluster(args: argparse.Namespace, *inputs: str | None, nbytes: int | None = None):
    """The Dask client a command reading ``inputs`` (or making ``nbytes``)
    computes with: none (threads in this process) with --workers 0 or, when
    neither --scheduler, $DASK_SCHEDULER_ADDRESS nor --workers is given, for
    small work (see :mod:`dmf.engine.placement`)."""
    connect = dmf.connect  # imports distributed, which sets its loggers: quieted next
    quiet_dask_logs()
    where = placement.for_inputs(inputs, address=args.scheduler, n_workers=args.workers,
                                 storage_options=args.storage_options, nbytes=nbytes)
    if where.in_process:
        return contextlib.nullcontext()
    return connect(args.scheduler, n_workers=args.workers, threads_per_worker=args.threads,
                   memory_limit=args.memory_limit)



def quiet_dask_logs() -> None:
    """Dask logs what went wrong on the cluster with tracebacks; dmf reports
    the consequence in one line (a lost scheduler, say). Show Dask's own logs
    only when asked with -v (as dmf's level says).

    Called once distributed is imported (its import configures its loggers,
    which this overrides): by :func:`cluster`, not at start-up, so that a
    command that computes nothing never imports it."""
    dask_level = {logging.DEBUG: logging.INFO, logging.INFO: logging.WARNING}.get(
        logging.getLogger("dmf").getEffectiveLevel(), logging.CRITICAL)
    # The event loop's own loggers print Dask's internal tracebacks (a
    # callback that failed while a Ctrl-C interrupted the cluster's start,
    # say): only at -vv.
    loop_level = logging.INFO if dask_level == logging.INFO else logging.CRITICAL
    # Dask's logging config gives some children (distributed.client...)
    # levels of their own, so set every one of them.
    for name in list(logging.root.manager.loggerDict):
        top = name.split(".")[0]
        if top == "distributed":
            logging.getLogger(name).setLevel(dask_level)
        elif top in ("tornado", "asyncio"):
            logging.getLogger(name).setLevel(loop_level)



#: ``on(*inputs, nbytes=None)``: the context to compute in (see :func:`cluster`).
Compute = Callable[..., contextlib.AbstractContextManager]


@dataclass
class Ran:
    """What a command did: the public function's result, and the lines it prints."""

    result: Any
    lines: list[str] = field(default_factory=list)


def printed(run: Callable[[argparse.Namespace, Compute], Ran]) -> Callable[[argparse.Namespace],
                                                                             int]:
    """The command of ``run``: computes on the cluster its options ask for,
    prints the lines (a job runs ``run`` itself, on the job's cluster)."""

    def command(args: argparse.Namespace) -> int:
        for line in run(args, functools.partial(cluster, args)).lines:
            print(line)
        return EXIT_OK

    return command

