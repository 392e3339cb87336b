"""The ``dmf`` command.

Exit codes (the contract of ../shared/DESIGN.md): 0 done; 2 bad usage or bad
input (one line naming the file and the problem, no traceback; also a damaged
store, and every checkpoint damaged under --damaged-checkpoints stop); 3 the
output is locked or holds a checkpoint of a different job; 4 the environment failed
(object store credentials, endpoint, access or bucket; the Dask scheduler or
its workers; a full or read-only disk: one line naming the URL, address or
path and what to check, no traceback); 130/143 interrupted; 1 anything
unexpected (with a traceback, since that is a bug report).
"""


from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence

import dmf
from dmf import cli_audio, cli_cf, cli_matrix, jobs, store
from dmf.cli_args import (
    EXIT_CONFLICT,
    EXIT_ENVIRONMENT,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_UNEXPECTED,
    GLOBAL_DEFAULTS,
    positive_int,
    quiet_dask_logs,
    root_parser,
    shape_arg,
)
from dmf.errors import DmfError, DmfWarning, InputError
from dmf.store.failures import environment_failure
from dmf.wording import printed_path

log = logging.getLogger("dmf")

EXIT_HOOKS_SECONDS = 3.0


def build_parser() -> argparse.ArgumentParser:
    parser, commands, command = root_parser()
    cli_matrix.add_commands(commands, command)  # generate, ingest, svd, nmf
    cli_cf.add_commands(commands, command)
    cli_audio.add_commands(commands, command)
    cli_matrix.add_rank(command)

    # run
    run = command("run", cmd_run, "run a batch job spec (YAML): its steps in order, each "
                  "skipped when complete and resumed when stopped (see pipelines/)")
    run.add_argument("job", metavar="JOB.yaml", help="the job spec")
    run.add_argument("--dry-run", action="store_true",
                     help="check the spec and print the dmf command line of each step; run "
                     "nothing, touch no store and no cluster")
    run.add_argument("--set", action="append", dest="overrides", metavar="KEY=VALUE",
                     help="override a value of the spec (repeatable): KEY is dotted, e.g. "
                     "root, cluster.workers, steps.NAME.max_iter; VALUE is read as YAML")
    run.add_argument("--progress", action="store_true",
                     help="show progress even when stderr is not a terminal")

    # report
    rep = command("report", cmd_report, "an HTML page of a result or a job: objective per "
                  "iteration, spectrum, components, top items, run records, parameters",
                  cluster=False)
    rep.add_argument("out", metavar="OUT", help="a result (dmf svd, nmf, cf train) or a job "
                     "root (dmf run)")
    rep.add_argument("--html", metavar="FILE", help="where to write the page (default, "
                     "unless --png alone is given: OUT.html beside a local OUT, its .zarr "
                     "dropped)")
    rep.add_argument("--png", metavar="DIR", help="write each figure as a PNG here (with "
                     "--html too: the page as well)")
    rep.add_argument("--image-shape", type=shape_arg, metavar="HxW",
                     help="draw components as H x W images (columns are pixels), e.g. 8x8")
    rep.add_argument("--top", type=positive_int, default=10, metavar="N",
                     help="items / columns listed per component (default 10)")

    # info
    info = command("info", cmd_info, "describe a stored matrix or result", cluster=False)
    info.add_argument("url", metavar="URL", help="a matrix, result, ratings store or job "
                      "root (path or URL)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    cluster_options = {"workers": args.workers, "threads": args.threads,
                       "memory_limit": args.memory_limit}
    record = jobs.run_job(args.job, overrides=args.overrides, scheduler=args.scheduler,
                     dry_run=args.dry_run, cluster_options=cluster_options, quiet=args.quiet,
                     progress=True if args.progress else None)
    if record is not None and args.quiet:  # -q: no step lines, the result still
        print(jobs.record.format_summary(record))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    html_path = args.html
    if html_path is None and not args.png:
        location = store.Location.parse(args.out, args.storage_options)
        if not location.is_local:
            raise InputError(f"{args.out}: not a local path; say where the page goes with "
                             "--html FILE")
        stem = location.url.rstrip("/")
        html_path = (stem[:-len(".zarr")] if stem.endswith(".zarr") else stem) + ".html"
    page = dmf.report.build(args.out, storage_options=args.storage_options,
                            image_shape=args.image_shape, top=args.top)
    for path in dmf.report.write(page, html_path, args.png):
        print(f"wrote {printed_path(path)}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    facts = store.info.describe(args.url, storage_options=args.storage_options)
    print(json.dumps(facts, indent=2) if args.json else store.info.format_facts(facts))
    return EXIT_OK


# -- running ------------------------------------------------------------------

def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[
        min(verbose, 2)]
    # with -v, a time on every line: how long each thing took is what -v is for
    fmt = "%(asctime)s dmf: %(levelname)s: %(message)s" if verbose and not quiet else \
        "dmf: %(levelname)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    logging.getLogger("dmf").setLevel(level)
    if "distributed" in sys.modules:
        quiet_dask_logs()



def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    if issubclass(category, DmfWarning):
        print(f"dmf: note: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _quiet_warning(*_args, **_kwargs) -> None:
    """-q: errors only, so no notes."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` and return its exit code. Without
    ``argv`` this is the program: it exits once the command is done."""
    if argv is None:
        _act_on_sigint()
    code = _command(argv)
    if argv is None:
        _exit_program(code)
    return code


def _act_on_sigint() -> None:
    """Ctrl-C stops the command from its first instruction on, also when it
    was started with SIGINT ignored (a script's background job inherits
    that): from start-up on, not only once a run's handlers are installed,
    which act on it in any case, so that a SIGINT to the command is never
    lost. Until then it raises KeyboardInterrupt, which ends the command
    with exit 130 and closes a cluster half started."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _exit_program(code: int) -> None:
    """Exit after the exit hooks (clusters closed, files flushed), or
    EXIT_HOOKS_SECONDS into them, without the interpreter's teardown of every
    module, which takes seconds with Dask loaded: an interrupted run must end
    within a few seconds (worker processes exit when this one does)."""
    import atexit
    import os
    import threading

    def leave() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    deadline = threading.Timer(EXIT_HOOKS_SECONDS, leave)
    deadline.daemon = True
    deadline.start()
    atexit._run_exitfuncs()
    leave()


def _command(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in GLOBAL_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    _setup_logging(args.verbose or 0, args.quiet)
    warnings.showwarning = _quiet_warning if args.quiet else _show_warning
    try:
        return args.func(args)
    except DmfError as exc:
        print(f"dmf: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dmf: interrupted; run the same command again to resume (from the last "
              "checkpoint, if any)", file=sys.stderr)
        return EXIT_SIGINT
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # the last resort: an environment failure, else a bug
        failure = environment_failure(exc, output=getattr(args, "out", None))
        if failure is not None:  # met deep in a library (a chunk write, say): not a bug
            log.debug("the environment failed", exc_info=exc)
            print(f"dmf: error: {' '.join(str(failure).split())}", file=sys.stderr)
            return failure.exit_code
        traceback.print_exc()
        print("dmf: unexpected error (a bug: please report it with the traceback above)",
              file=sys.stderr)
        return EXIT_UNEXPECTED


__all__ = ["EXIT_CONFLICT", "EXIT_ENVIRONMENT", "EXIT_INPUT", "EXIT_OK", "EXIT_SIGINT",
           "EXIT_SIGTERM", "EXIT_UNEXPECTED", "build_parser", "main", "quiet_dask_logs"]
