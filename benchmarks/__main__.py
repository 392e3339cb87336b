"""``python -m benchmarks [--data DIR] NAME|all [options]``

Starts a local Dask cluster, runs the named benchmark (or all of them, one
after another, each on a cluster of its own) and prints each one's markdown
tables on stdout; progress goes to stderr. Generated data is kept in
``--data`` and reused.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from types import ModuleType

import dask

import dmf
from benchmarks import big, cf, codec, nmf, svd, svd_exact
from benchmarks.harness import Env, Suite, run_suite
from dmf.engine.cluster import local_cluster_size

#: name -> module with NAME, HELP, add_arguments(parser) and build(args, env) -> Suite
#: (or a list of them); optionally CLUSTER, its defaults for the common options
#: that shape the cluster (e.g. {"workers": 2, "memory_limit": "1GiB"})
BENCHMARKS: dict[str, ModuleType] = {m.NAME: m for m in (codec, svd, svd_exact, nmf, cf, big)}
#: left out of ``all``: hours, and a store larger than memory (``make bench-big``)
NOT_IN_ALL = {big.NAME}

#: glibc reads MALLOC_* once, at start; distributed later puts its workers'
#: settings into os.environ, so what this process runs with is taken now.
CLIENT_MALLOC_ENV = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}

#: common options: (flags, default, type, help)
COMMON = [
    (("--data",), Path("bench-data"), Path, "folder for generated data, reused across runs"),
    (("--repeat",), 5, int, "recorded rounds; the table shows medians (default 5)"),
    (("--warmup",), 1, int, "unrecorded rounds first (default 1)"),
    (("--workers",), None, int, "cluster worker processes (default: one per core)"),
    (("--threads-per-worker",), 1, int, "threads per worker process (default 1)"),
    (("--threads",), None, int,
     "threads of the threaded scheduler and of raw reads (default: the cluster's total)"),
    (("--memory-limit",), None, str,
     "memory limit per cluster worker, e.g. 1GiB (default: the benchmark's, else the "
     "machine's memory shared evenly)"),
    (("--baseline",), None, str, "row that ratios are relative to, e.g. 'zstd / threads (warm)'"),
    (("--worker-env",), None, str,
     "NAME=VALUE[,NAME=VALUE] set in the workers' environment, over Dask's "
     "(e.g. MALLOC_TRIM_THRESHOLD_=1073741824); the client's is the shell's"),
]


def _add_common(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: a value given before NAME must survive the subparser's defaults;
    # the real defaults are filled in after parsing.
    for flags, _default, type_, help_ in COMMON:
        p.add_argument(*flags, type=type_, default=argparse.SUPPRESS, help=help_)


def make_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(parser)
    sub = parser.add_subparsers(dest="name", required=True, metavar="NAME|all")
    subparsers = {}
    for name, module in BENCHMARKS.items():
        p = sub.add_parser(name, help=module.HELP)
        _add_common(p)
        module.add_arguments(p)
        subparsers[name] = p
    p = sub.add_parser("all", help="every benchmark, with its defaults")
    _add_common(p)
    return parser, subparsers


def command(name: str, args: argparse.Namespace, p: argparse.ArgumentParser) -> str:
    """The command line that reproduces ``name`` with every option spelled out,
    so that a later change of defaults does not change what it runs."""
    # The allocator's settings change read speed (see README): keep them too.
    words = [f"{k}={v}" for k, v in sorted(CLIENT_MALLOC_ENV.items())]
    words += ["python", "-m", "benchmarks"]
    for flags, *_ in COMMON:
        dest = _dest(flags)
        if getattr(args, dest, None) is not None:
            words += [flags[0], str(getattr(args, dest))]
    words.append(name)
    common = {f[0] for f, *_ in COMMON}
    for action in p._actions:  # argparse has no public listing of its options
        if not action.option_strings or action.option_strings[0] in common:
            continue
        value = getattr(args, action.dest, None)
        if value is None or action.dest == "help":
            continue
        if isinstance(action, argparse._StoreTrueAction):
            words += [action.option_strings[0]] if value else []
        else:
            words += [action.option_strings[0], str(value)]
    return shlex.join(words)


def _dest(flags: tuple[str, ...]) -> str:
    return flags[0].lstrip("-").replace("-", "_")


def bench_arguments(name: str, args: argparse.Namespace, p: argparse.ArgumentParser
                    ) -> argparse.Namespace:
    """``args`` completed for one benchmark: the common options given, else
    the benchmark's CLUSTER defaults, else the common defaults; with ``all``,
    the benchmark's own defaults for its options."""
    out = argparse.Namespace(**vars(args))
    if args.name == "all":
        out = p.parse_args([], namespace=out)
    own = getattr(BENCHMARKS[name], "CLUSTER", {})
    for flags, default, *_ in COMMON:
        dest = _dest(flags)
        if not hasattr(out, dest):
            setattr(out, dest, own.get(dest, default))
    out.workers, out.threads_per_worker = local_cluster_size(out.workers,
                                                             out.threads_per_worker)
    out.threads = out.threads or out.workers * out.threads_per_worker
    return out


def main(argv: list[str] | None = None) -> int:
    parser, subparsers = make_parser()
    args = parser.parse_args(argv)
    names = ([n for n in BENCHMARKS if n not in NOT_IN_ALL] if args.name == "all"
             else [args.name])

    logging.basicConfig(level=logging.WARNING)
    for name in names:
        p = subparsers[name]
        bench_args = bench_arguments(name, args, p)
        # Dask sets e.g. MALLOC_TRIM_THRESHOLD_ in workers it spawns; a benchmark of
        # the allocator's effect must be able to override what dask puts there.
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        for item in filter(None, (bench_args.worker_env or "").split(",")):
            key, _, value = item.partition("=")
            environ[key.strip()] = value.strip()
        data_dir = bench_args.data.resolve()
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
                dmf.connect(n_workers=bench_args.workers,
                            threads_per_worker=bench_args.threads_per_worker,
                            memory_limit=bench_args.memory_limit) as client:
            env = Env(data_dir=data_dir, client=client, threads=bench_args.threads)
            built = BENCHMARKS[name].build(bench_args, env)
            suites: list[Suite] = built if isinstance(built, list) else [built]
            for suite in suites:
                suite.command = command(name, bench_args, p)
            for suite in suites:
                if suite.cluster:
                    print(run_suite(suite, env, repeat=bench_args.repeat,
                                    warmup=bench_args.warmup), flush=True)
        # Suites that use no cluster run once it is gone: dmf must find no
        # distributed client, as in a session that never started one.
        env = Env(data_dir=data_dir, client=None, threads=bench_args.threads)
        for suite in suites:
            if not suite.cluster:
                print(run_suite(suite, env, repeat=bench_args.repeat,
                                warmup=bench_args.warmup), flush=True)
    return 0


if __name__ == "__main__":
    # Guarded: Dask's worker processes import this module again when spawned.
    sys.exit(main())
