"""Run variants ("cases") of one benchmark side by side and tabulate them.

A case is a callable plus a description of the data it reads (:class:`Data`)
and of where it runs (the threaded scheduler in this process, the Dask
cluster, or plain code in this process). :func:`run_suite` runs every case of
a :class:`Suite` in the same process tree on the same data, interleaving the
repetitions (A, B, C, A, B, C, ...) so that drift on a shared machine (other
jobs, thermal throttling, a filling page cache) hits every variant alike, and
prints a markdown table of medians.

What is measured, per repetition:

- wall time of the callable alone (eviction, warm-up and clean-up before it
  are not timed);
- bytes read at the OS level: ``read_chars`` of ``/proc/PID/io`` (every byte
  passed to read(), page-cache hits included) summed over this process, the
  cluster's workers and every descendant process, as a delta over the call,
  plus the chunk-file bytes dmf mapped in the same processes (a map never
  calls read(): ``dmf.store.dense_read.bytes_mapped``); divided by the bytes
  of the data this is "passes over the data";
- bytes fetched from storage (``read_bytes``, page-cache misses only), the
  same way: it shows whether a "cold" row really read from disk and a "warm"
  one did not;
- resident memory of the processes doing the work (each worker for the
  cluster, this process otherwise), sampled at about 20 Hz in a background
  thread: the peak, and the rise above the RSS the call started with;
- optionally, columns computed from what the callable returned (an error
  against a reference, say) by the case's ``measure``, outside the timing.

A case that raises is reported as failed (its row says why) and is not run
again; the other cases go on.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dask
import psutil
import zarr
from distributed import Client

from benchmarks.summary import table_head, table_row

MiB = 2**20
GiB = 2**30
FLOAT32 = 4

#: Where a case's callable does its work, which decides the scheduler it gets
#: and whose memory is reported: ``threads`` - dask's threaded scheduler in
#: this process; ``cluster`` - the Dask cluster's workers; ``client`` - the
#: callable runs as it is, in this process (its own threads, if any).
Where = Literal["threads", "cluster", "client"]
Cache = Literal["warm", "cold"]


@dataclass(frozen=True)
class Data:
    """The files a case reads: one or more local store folders (or files).

    ``logical_bytes`` is the size of what they hold once decoded (for a
    throughput that compares compressed and raw stores); ``None`` if it has
    no meaning.
    """

    name: str
    paths: tuple[Path, ...]
    logical_bytes: int | None = None

    def files(self) -> list[Path]:
        found: list[Path] = []
        for path in self.paths:
            if path.is_file():
                found.append(path)
                continue
            for root, _dirs, names in os.walk(path):
                found.extend(Path(root, n) for n in names)
        return sorted(found)

    def nbytes(self) -> int:
        """Bytes on disk: the denominator of "passes" (0 for data held in
        memory, ``paths=()``: no passes are reported then)."""
        return sum(f.stat().st_size for f in self.files())

    def evict(self) -> None:
        """Drop these files from the page cache (no root needed).

        Dirty pages are not dropped, so each file is flushed first (a freshly
        written store is mostly dirty).
        """
        for f in self.files():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

    def prefetch(self) -> None:
        """Read every file once, so that the page cache holds them."""
        buf = bytearray(8 * MiB)
        for f in self.files():
            with open(f, "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    pass


@dataclass(frozen=True)
class Case:
    """One variant: ``run()`` does the work that is timed.

    ``measure``, if given, is called with what ``run()`` returned, after the
    timing, and returns extra columns for the table (name -> number; the
    table shows the median over the repetitions).
    """

    name: str
    run: Callable[[], object]
    data: Data
    where: Where = "threads"
    cache: Cache = "warm"
    measure: Callable[[Any], Mapping[str, float]] | None = None

    @property
    def key(self) -> str:
        """Unique name of the row, used to name the baseline."""
        return f"{self.name} ({self.cache})"


@dataclass
class Env:
    """What the benchmarks share: the data folder, the cluster, the threads."""

    data_dir: Path
    client: Client | None
    #: threads of the threaded scheduler, and of a case's own thread pool
    threads: int

    def worker_pids(self) -> dict[str, int]:
        if self.client is None:
            return {}
        # Asked each time: a worker killed for memory comes back with a new pid.
        pids = self.client.run(os.getpid)
        return {f"w{i}": pid for i, (_addr, pid) in enumerate(sorted(pids.items()))}


@dataclass
class Suite:
    """A benchmark ready to run: its cases, the row others are compared to,
    markdown notes printed under the table, and the command that reproduces it.

    ``summary``, if given, turns the results into more markdown lines printed
    after the notes (targets met or not, say). ``cluster=False``: no case
    uses the cluster, and the suite is run with none (``Env.client`` None,
    so that code which asks for a distributed client finds none).
    """

    title: str
    cases: list[Case]
    baseline: str
    notes: list[str] = field(default_factory=list)
    command: str = ""
    summary: Callable[[list[Result]], list[str]] | None = None
    cluster: bool = True


@dataclass
class Rep:
    seconds: float
    read_chars: int
    read_bytes: int
    #: label ("client", "w0", ...) -> (peak RSS, rise above the starting RSS)
    memory: dict[str, tuple[int, int]]
    #: the case's ``measure`` columns
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Result:
    case: Case
    nbytes: int
    reps: list[Rep] = field(default_factory=list)
    #: why the case stopped ("ExceptionType: message"), or None
    failure: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.reps)

    @property
    def passes(self) -> float:
        return statistics.median(r.read_chars for r in self.reps) / self.nbytes

    @property
    def disk_passes(self) -> float:
        return statistics.median(r.read_bytes for r in self.reps) / self.nbytes

    def extra(self, column: str) -> float | None:
        """Median of a ``measure`` column over the repetitions, or None."""
        values = [r.extra[column] for r in self.reps if column in r.extra]
        return statistics.median(values) if values else None

    def peak_rss(self) -> int:
        """The highest peak RSS of any worker (of the client for a row with
        no workers), over all repetitions."""
        memory = self.memory()
        workers = [peak for label, (peak, _rise) in memory.items() if label != "client"]
        return max(workers or [peak for peak, _rise in memory.values()], default=0)

    def memory(self) -> dict[str, tuple[int, int]]:
        """Per process: the largest peak and the largest rise over all reps."""
        out: dict[str, tuple[int, int]] = {}
        for rep in self.reps:
            for label, (peak, rise) in rep.memory.items():
                old = out.get(label, (0, 0))
                out[label] = (max(old[0], peak), max(old[1], rise))
        return out


# --------------------------------------------------------------------------
# measuring


class RssSampler:
    """Samples the RSS of some processes in a background thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.05):
        self.procs = {label: psutil.Process(pid) for label, pid in pids.items()}
        self.interval = interval
        self.start = {label: _rss(p) for label, p in self.procs.items()}
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        for label, proc in self.procs.items():
            self.peak[label] = max(self.peak[label], _rss(proc))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # a call shorter than one interval still gets a sample

    def result(self) -> dict[str, tuple[int, int]]:
        return {k: (self.peak[k], self.peak[k] - self.start[k]) for k in self.procs}


def _rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:  # the process is gone (a worker restarting): no sample
        return 0


def _io(pids: set[int]) -> dict[int, tuple[int, int]]:
    out = {}
    for pid in pids:
        try:
            c = psutil.Process(pid).io_counters()
        except psutil.Error:
            continue
        out[pid] = (c.read_chars, c.read_bytes)
    return out


def _io_delta(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]):
    # Only processes seen at both ends: a process that started or died in
    # between would count its whole life.
    both = before.keys() & after.keys()
    chars = sum(after[p][0] - before[p][0] for p in both)
    disk = sum(after[p][1] - before[p][1] for p in both)
    return chars, disk


def _mapped(env: Env) -> int:
    """Chunk-file bytes that dmf mapped, in this process and every worker:
    they never pass through ``read()``, so ``read_chars`` misses them (see
    dmf.store.dense_read). A worker that restarted in between restarts its
    count: its share then reads low, as read_chars would."""
    from dmf.store.dense_read import bytes_mapped

    total = bytes_mapped()
    if env.client is not None:
        with contextlib.suppress(Exception):
            total += sum(env.client.run(bytes_mapped).values())
    return total


def _tidy() -> None:
    """Free what earlier calls left, so each call's memory rise is its own."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def _scheduler(case: Case, env: Env) -> Iterator[None]:
    if case.where == "threads":
        with dask.config.set(scheduler="threads", num_workers=env.threads):
            yield
    elif case.where == "cluster":
        if env.client is None:
            raise RuntimeError(f"{case.key} needs a cluster and there is none")
        with dask.config.set(scheduler=env.client):
            yield
    else:
        yield


def run_once(case: Case, env: Env) -> Rep:
    if case.cache == "cold":
        case.data.evict()
    workers = env.worker_pids()
    if env.client is not None:
        env.client.run(_tidy)
    _tidy()
    me = psutil.Process()
    watched = {me.pid, *workers.values(), *(c.pid for c in me.children(recursive=True))}
    mem_pids = {**workers, "client": me.pid} if case.where == "cluster" else {"client": me.pid}
    before = _io(watched)
    mapped_before = _mapped(env)
    with _scheduler(case, env), RssSampler(mem_pids) as sampler:
        t0 = time.perf_counter()
        value = case.run()
        seconds = time.perf_counter() - t0
    chars, disk = _io_delta(before, _io(watched))
    chars += _mapped(env) - mapped_before
    extra = {k: float(v) for k, v in case.measure(value).items()} if case.measure else {}
    return Rep(seconds, chars, disk, sampler.result(), extra)


def run_cases(
    cases: list[Case], env: Env, *, repeat: int, warmup: int = 1, log=None
) -> list[Result]:
    """Run ``warmup`` unrecorded rounds, then ``repeat`` recorded ones; each
    round runs every case once, in order."""
    keys = [c.key for c in cases]
    if len(set(keys)) != len(keys):
        raise ValueError(f"case names are not unique: {keys}")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    results = [Result(c, c.data.nbytes()) for c in cases]
    for c in cases:
        if c.cache == "warm":
            c.data.prefetch()  # no warm row may be the first to read its data
    rounds = warmup + repeat
    for r in range(rounds):
        tag = "warm-up" if r < warmup else f"{r - warmup + 1}/{repeat}"
        for result in results:
            if result.failure:
                continue
            try:
                rep = run_once(result.case, env)
            except Exception as exc:  # noqa: BLE001 - reported in the table, others go on
                result.failure = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                log(f"  [{tag}] {result.case.key}: FAILED {result.failure}")
                continue
            extra = "".join(f", {k} {v:.3g}" for k, v in rep.extra.items())
            log(f"  [{tag}] {result.case.key}: {rep.seconds:.3f} s{extra}")
            if r >= warmup:
                result.reps.append(rep)
    return results


# --------------------------------------------------------------------------
# reporting


def opened_store(store: Path) -> tuple[str, zarr.Array, int, int]:
    """A stored matrix's URL, its zarr array (for its chunks) and its shape
    (m, n), as every store-reading suite starts."""
    z = zarr.open_array(store=str(store), mode="r")
    return str(store), z, *z.shape


def add_lowrank_arguments(p: argparse.ArgumentParser, *, dtype: str, size: str, cols: int,
                          rank: int, noise: float) -> None:
    """--size, --cols, --rank, --noise, --seed: the planted low-rank matrix a
    benchmark generates, with its defaults."""
    p.add_argument("--size", default=size,
                   help=f"bytes of the {dtype} matrix, e.g. 2GB, 300MB (default {size})")
    p.add_argument("--cols", type=int, default=cols, help=f"its columns (default {cols})")
    p.add_argument("--rank", type=int, default=rank, help=f"planted rank (default {rank})")
    p.add_argument("--noise", type=float, default=noise,
                   help=f"noise-to-signal ratio (default {noise:g})")
    p.add_argument("--seed", type=int, default=0, help="seed of the data (default 0)")


def build_parts(name: str, text: str, builders: Mapping[str, Callable[[], Suite]]
                ) -> list[Suite]:
    """The suites of the parts named in ``text`` ("A", "B", "A,B"), in the
    order of ``builders``; an unknown part stops the run with a message."""
    parts = [t.strip().upper() for t in text.split(",") if t.strip()]
    if not parts or set(parts) - set(builders):
        raise SystemExit(f"{name}: --parts takes {', '.join(builders)} or a comma-separated "
                         f"list of them, got {text!r}")
    return [build() for part, build in builders.items() if part in parts]


def _seconds(s: float) -> str:
    return f"{s:.3g}"


def _memory(mem: dict[str, tuple[int, int]]) -> tuple[str, str]:
    """Peaks and rises in MiB: the workers' (w0, w1, ...) in order, then the
    client's, marked, when both were watched."""
    workers = sorted(k for k in mem if k != "client")
    client = ["client"] if "client" in mem else []

    def show(i: int, sign: str) -> str:
        values = ", ".join(f"{sign}{mem[k][i] / MiB:.0f}" for k in workers)
        if client:
            mine = f"client {sign}{mem['client'][i] / MiB:.0f}"
            values = f"{values}; {mine}" if values else mine
        return values

    return show(0, ""), show(1, "+")


def table(results: list[Result], baseline: str) -> str:
    """The markdown table, one row per case, in the order given; a failed
    case's row says why, and a column is blank where it has no meaning."""
    by_key = {r.case.key: r for r in results}
    if baseline not in by_key:
        raise ValueError(f"baseline {baseline!r} is not one of {sorted(by_key)}")
    base = by_key[baseline].median if by_key[baseline].reps else None
    throughput = any(r.case.data.logical_bytes for r in results)
    files = any(r.nbytes for r in results)
    extras = list(dict.fromkeys(k for r in results for rep in r.reps for k in rep.extra))
    head = ["variant", "cache", "median s (min-max)", f"x {baseline}"]
    head += ["GB/s"] if throughput else []
    head += ["passes", "from disk"] if files else []
    head += ["peak RSS MiB", "rise MiB", *extras]
    lines = table_head(*head)
    for r in results:
        name = r.case.name + (" **(baseline)**" if r.case.key == baseline else "")
        if not r.reps:
            failed = f"failed: {r.failure}" if r.failure else "no repetitions"
            row = [name, r.case.cache, failed] + [""] * (len(head) - 3)
            lines.append(table_row(*row).replace("\n", " "))
            continue
        times = [rep.seconds for rep in r.reps]
        peak, rise = _memory(r.memory())
        row = [
            name + (f" (failed later: {r.failure})" if r.failure else ""),
            r.case.cache,
            f"{_seconds(r.median)} ({_seconds(min(times))}-{_seconds(max(times))})",
            f"{r.median / base:.2f}" if base else "",
        ]
        if throughput:
            logical = r.case.data.logical_bytes
            row.append(f"{logical / r.median / 1e9:.2f}" if logical else "")
        if files:
            row += ([f"{r.passes:.2f}", f"{r.disk_passes:.2f}"] if r.nbytes else ["", ""])
        row += [peak, rise]
        for column in extras:
            value = r.extra(column)
            row.append("" if value is None else f"{value:.3g}")
        lines.append(table_row(*row))
    return "\n".join(lines)


def run_suite(suite: Suite, env: Env, *, repeat: int, warmup: int = 1) -> str:
    """Run a suite and return its report (markdown): title, table, notes, command."""
    print(f"{suite.title}: {len(suite.cases)} cases x ({warmup} warm-up + {repeat}) rounds",
          file=sys.stderr, flush=True)
    results = run_cases(suite.cases, env, repeat=repeat, warmup=warmup)
    parts = [f"### {suite.title}", "", table(results, suite.baseline), ""]
    passes = ("passes = bytes read (read_chars, page-cache hits included) / bytes stored; "
              "from disk = the same with read_bytes (cache misses only); "
              if any(r.nbytes for r in results) else "")
    parts += [
        f"Median of {repeat} interleaved repetitions (after {warmup} warm-up round); "
        f"{passes}peak RSS and its rise "
        "per worker and of the client (cluster rows) or of the client process (other rows).",
        "",
    ]
    measured = [r for r in results if r.reps and r.nbytes]
    cold_misses = [r.case.key for r in measured if r.case.cache == "cold" and r.disk_passes < 0.5]
    warm_misses = [r.case.key for r in measured if r.case.cache == "warm" and r.disk_passes > 0.05]
    if cold_misses:
        parts += [f"**Warning**: these cold rows read little from disk (eviction did not "
                  f"work, or read_bytes is not counted here): {', '.join(cold_misses)}", ""]
    if warm_misses:
        parts += [f"**Warning**: these warm rows read from disk (memory pressure evicted "
                  f"their data, or workers read back what they spilled): "
                  f"{', '.join(warm_misses)}", ""]
    parts += [*suite.notes]
    if suite.summary is not None:
        parts += ["", *suite.summary(results)]
    if suite.command:
        parts += ["", f"Command: `{suite.command}`"]
    return "\n".join(parts) + "\n"
