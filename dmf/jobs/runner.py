"""``dmf run JOB.yaml``: the steps of a job, in order, each idempotent.

For every step the runner computes its identity (:mod:`dmf.engine.identity`,
as the engine does for a result): the step's kind, options and equivalent
command line (with the URLs of its inputs and output) and what each input
is right now (a store's shape, dtype, chunks and write id, which changes
with every write; a file's size and modification time). The step's record
keeps it and its digest, the *fingerprint*. Then:

- a step whose last run completed with the same fingerprint, and whose
  result is still there, is **skipped**;
- an iterative step (svd, nmf, nmtf, rank, cf-train but knn) that was
  stopped **resumes** from its checkpoint (the engine decides);
- a step whose spec or input changed since it completed is run again; an
  iterative one into ``OUT.next``, which replaces ``OUT`` only once it is
  complete, so readers of ``OUT`` never see a missing or half-made result
  (a nightly refresh); the others write to a temporary store and swap it in
  (as every dmf writer does);
- an output the job did not make itself is never overwritten: a foreign
  store at a step's output stops the job (exit 2 or 3).

Transient failures (a lost scheduler or worker, a network error) are retried
``retries.attempts`` times, from ``retries.delay`` seconds apart, doubling,
with jitter; bad input is not. The job holds a lock on its root for the whole run, so a second
``dmf run`` of it exits 3 while the first runs. SIGINT/SIGTERM stop the
current step at its next checkpoint and exit 130/143; run the job again to
go on.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import shlex
import time
import uuid
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

import dmf
from dmf import engine
from dmf.cli_args import cluster
from dmf.engine import placement
from dmf.engine.identity import OLDER, describe_input, difference, job_identity, recorded
from dmf.engine.lock import OutputLock
from dmf.engine.signals import SignalGuard, StopRequested
from dmf.errors import ClusterError, DmfError, InputError, Interrupted
from dmf.jobs import record as records
from dmf.jobs.report import result_facts, write_report
from dmf.jobs.spec import JobSpec, Step, load_spec
from dmf.jobs.steps import KINDS, convert, defaults, subparser
from dmf.store.failures import environment_failure
from dmf.store.location import Location
from dmf.wording import plural, printed_path

log = logging.getLogger(__name__)


def plan_lines(spec: JobSpec, scheduler: str | None = None) -> list[str]:
    """What ``--dry-run`` prints: the steps as the dmf command lines they run."""
    address = scheduler or spec.cluster.get("address") or os.environ.get(
        "DASK_SCHEDULER_ADDRESS")
    workers = spec.cluster.get("workers")
    cluster = address or (
        "threads in this process" if workers == 0 else
        f"a local cluster ({_local_size(spec.cluster)})" if workers is not None else
        f"threads in this process for small steps, a local cluster "
        f"({_local_size(spec.cluster)}) for larger ones")
    lines = [f"job {spec.job} ({spec.path}): {plural(len(spec.steps), 'step')} on {cluster}",
             f"root: {printed_path(spec.root)}"]
    urls = spec.products()
    for i, step in enumerate(spec.steps, 1):
        if step.kind == "report":
            command = (f"(report of {', '.join(step.params['steps'])}) -> "
                       f"{printed_path(step.out)}")
        else:
            command = "dmf " + shlex.join(_argv(step, urls))
        lines.append(f"  {i}. {step.name} [{step.kind}]: {command}")
    return lines


def _local_size(cluster: dict) -> str:
    workers = cluster.get("workers", "auto")
    threads = cluster.get("threads", "auto")
    memory = cluster.get("memory_limit", "auto")
    return f"{workers} workers x {threads} threads, {memory} each"


def _argv(step: Step, urls: dict[str, str]) -> list[str]:
    fill = {f"{{{p}}}": urls[ref] for p, ref in step.inputs.items()}
    return [fill.get(a, a) for a in step.argv]


# -- running ------------------------------------------------------------------

class Runner:
    """Runs one job spec (use :func:`run_job`)."""

    def __init__(self, spec: JobSpec, *, scheduler: str | None = None,
                 cluster_options: dict[str, Any] | None = None, quiet: bool = False,
                 progress: bool | None = None):
        self.spec = spec
        self.scheduler = scheduler
        self.cluster_options = {k: v for k, v in (cluster_options or {}).items()
                                if v is not None}
        self.quiet = quiet
        self.progress = progress
        self.root = records.JobRoot(Location.parse(spec.root, spec.storage_options), spec.job)
        self.urls = spec.products()
        self.local_workers: int | None = None  # set when the job starts its own cluster
        self.local_address: str | None = None
        self.stack: contextlib.ExitStack | None = None  # holds that cluster while the job runs

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def run(self) -> dict[str, Any]:
        """Run the job; the run record (also saved under the root)."""
        spec = self.spec
        self.root.check()
        with contextlib.ExitStack() as stack:
            stack.enter_context(OutputLock(self.root.location))
            self.root.check()  # another job may have taken the root meanwhile
            self.stack = stack
            run = records.new_run(spec, self._describe_cluster(self._given_address()))
            self.root.save(self.root.meta())  # the root group exists from here on
            self.root.add_run(run)
            started = time.perf_counter()
            guard = stack.enter_context(SignalGuard())
            try:
                for i, step in enumerate(spec.steps, 1):
                    if guard.pending is not None:
                        raise StopRequested(guard.pending)
                    self.say(f"[{i}/{len(spec.steps)}] {step.name} ({step.kind})")
                    run["steps"].append(self._run_step(step, run))
                    self.root.add_run(run)
                run.update(status="complete", exit_code=0)
            except StopRequested as stop:
                exc = Interrupted(f"stopped by signal {stop.signum} during the job; run it "
                                  "again to go on", stop.signum)
                self._failed(run, exc)
                raise exc from None
            except DmfError as exc:
                self._failed(run, exc)
                raise
            except BaseException as exc:
                self._failed(run, exc)
                raise
            finally:
                run.update(ended=records.now(), seconds=round(time.perf_counter() - started, 3))
                with contextlib.suppress(Exception):
                    self.root.add_run(run)
                self._rewrite_reports(run)
                self.say(records.format_summary(run))
        return run

    def _rewrite_reports(self, run: dict) -> None:
        """Write this run's reports again once its record is final: written
        as a step, they would show the run still running, its exit code blank."""
        written = {s["name"] for s in run["steps"]
                   if s["kind"] == "report" and s.get("action") != "skipped"}
        for step in self.spec.steps:
            if step.name not in written:
                continue
            try:
                write_report(self.root, step, step.out, self._storage_options(step))
            except Exception as exc:  # noqa: BLE001 - the run's own outcome comes first
                log.warning("report %s not rewritten: %s", step.out, exc)

    def _failed(self, run: dict, exc: BaseException) -> None:
        code = getattr(exc, "exit_code", 130 if isinstance(exc, KeyboardInterrupt) else 1)
        status = "interrupted" if code in (130, 143) else "failed"
        run.update(status=status, exit_code=code,
                   error=" ".join(str(exc).split()) or type(exc).__name__)

    # -- cluster ------------------------------------------------------------
    def _cluster_options(self) -> dict[str, Any]:
        return {**self.spec.cluster, **self.cluster_options}

    def _given_address(self) -> str | None:
        return self.scheduler or self._cluster_options().get("address") or os.environ.get(
            "DASK_SCHEDULER_ADDRESS") or None

    def _address_for(self, step: Step, inputs: dict[str, str], storage_options: dict,
                     run: dict[str, Any]) -> str | None:
        """The scheduler address ``step`` computes on (None: threads here).

        A scheduler or ``workers`` in the spec or on the command line decides;
        otherwise a step with small inputs runs in this process and a larger
        one on a local cluster, started at the first such step (not before:
        a job whose steps are all complete starts none) and kept to the end.
        """
        given = self._given_address()
        if given:
            return given
        opts = self._cluster_options()
        where = placement.asked(None, opts.get("workers"))
        if where is None:
            where = placement.for_inputs(inputs.values(), address=None, n_workers=None,
                                         storage_options=storage_options,
                                         nbytes=_made_bytes(step))
        else:
            log.info("step %s: %s", step.name, where.describe())
        if where.in_process:
            return None
        if self.local_address is None:
            # dmf.connect imports distributed on first use: at the first step that needs
            # a cluster, so that a job whose steps are complete or small never pays for it.
            client = self.stack.enter_context(dmf.connect(
                None, n_workers=opts.get("workers"), threads_per_worker=opts.get("threads"),
                memory_limit=opts.get("memory_limit")))
            self.local_workers = len(client.scheduler_info()["workers"])
            self.local_address = client.scheduler.address
            run["scheduler"] = self._describe_cluster(self.local_address)
        return self.local_address

    def _describe_cluster(self, address: str | None) -> str:
        if address is None:
            return "threads in this process"
        if self.local_workers is not None:
            return f"local cluster of {plural(self.local_workers, 'worker')} at {address}"
        return address

    # -- one step -----------------------------------------------------------
    def _run_step(self, step: Step, run: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        storage_options = self._storage_options(step)
        inputs = {p: self.urls[ref] for p, ref in step.inputs.items()}
        described = {p: describe_input(url, storage_options=storage_options)
                     for p, url in inputs.items()}
        missing = [f"{p} ({inputs[p]})" for p, ident in described.items() if ident is None]
        if missing:
            raise InputError(f"{self.spec.path}:{step.line}: step {step.name}: missing input "
                             f"{', '.join(missing)}")
        record = recorded(self._identity(step, described))
        previous = self.root.step_record(step.name)
        entry = {"name": step.name, "kind": step.kind, "out": step.out, "attempts": 0,
                 "fingerprint": record["fingerprint"]}
        outputs = self._outputs(step)
        same = previous is not None and previous.get("fingerprint") == record["fingerprint"]
        if previous is not None and not same:
            diff = difference(previous, record["identity"])
            if diff == OLDER:
                self.say(f"  its last run was {OLDER}: running it again")
            log.info("step %s changed since its last run: %s", step.name, diff)
        if same and previous.get("status") == "complete" and all(
                Location.parse(u, storage_options).exists() for u in outputs):
            where = printed_path(step.out) if step.out else "no output"
            self.say(f"  complete, same spec and inputs: skipped ({where})")
            entry.update(action="skipped", seconds=round(time.perf_counter() - started, 3),
                         facts=previous.get("facts", {}))
            return entry

        attempts = step.retries if step.retries is not None else self.spec.retries["attempts"]
        try:
            action, staged = self._action(step, previous, same, storage_options)
            self.root.set_step(step.name, {**record, "status": "running", "out": step.out,
                                           "started": records.now()})
            target = step.out + ".next" if staged else step.out
            address = self._address_for(step, inputs, storage_options, run)
            facts = self._attempts(step, target, address, storage_options, attempts, entry,
                                   fresh=action == "rerun" and not staged,
                                   owned=previous is not None)
        except DmfError as exc:
            if isinstance(exc, Interrupted) or str(exc).startswith("step "):
                raise
            raise type(exc)(f"step {step.name}: {exc}") from exc
        if staged:
            _swap(Location.parse(target, storage_options),
                  Location.parse(step.out, storage_options))
        facts = {**facts, **self._facts(step, storage_options)}
        self.root.set_step(step.name, {**record, "status": "complete", "out": step.out,
                                       "finished": records.now(), "facts": facts})
        entry.update(action="replaced" if staged else action, facts=facts,
                     seconds=round(time.perf_counter() - started, 3))
        return entry

    def _attempts(self, step: Step, target: str, address: str | None, storage_options: dict,
                  attempts: int, entry: dict, *, fresh: bool, owned: bool) -> dict[str, Any]:
        """Run the step, again after a transient failure, ``attempts`` more
        times: ``retries.delay`` seconds after the first failure, doubling
        each time (at most 8 delays or a minute), plus up to one delay at
        random, so that jobs which lost the same scheduler do not all come
        back at the same moment (tenacity's exponential backoff with jitter)."""
        delay = float(self.spec.retries["delay"])

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception()
            wait = state.next_action.sleep
            log.warning("step %s failed (%s); retrying in %.3g s (retry %d of %d)",
                        step.name, " ".join(str(exc).split()) or type(exc).__name__, wait,
                        state.attempt_number, attempts)
            self.say(f"  failed ({type(exc).__name__}); retrying in {wait:.3g} s")

        retrying = Retrying(stop=stop_after_attempt(attempts + 1),
                            wait=backoff(delay),
                            retry=retry_if_exception(_transient), before_sleep=before_sleep,
                            reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    entry["attempts"] = attempt.retry_state.attempt_number
                    return self._execute(step, target, address, storage_options, fresh=fresh,
                                         owned=owned)
        except Exception as exc:
            if isinstance(exc, DmfError):
                raise
            if not _transient(exc):
                failure = environment_failure(exc, output=target)
                if failure is not None:  # a full disk, say: exit 4 in the run record too
                    raise failure from exc
                raise
            raise ClusterError(f"step {step.name} failed {entry['attempts']} times: "
                               f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _storage_options(self, step: Step) -> dict[str, Any]:
        """The job's fsspec options with those of the step's inputs over them
        (one set serves every URL of a step, so two inputs must agree)."""
        options = dict(self.spec.storage_options)
        set_by: dict[str, str] = {}
        for ref in step.inputs.values():
            for key, value in (self.spec.inputs.get(ref, {}).get("storage_options") or {}).items():
                if key in set_by and options[key] != value:
                    raise InputError(f"{self.spec.path}:{step.line}: step {step.name}: inputs "
                                     f"{set_by[key]} and {ref} need different storage options "
                                     f"({key}); copy one of them first")
                options[key], set_by[key] = value, ref
        return options

    def _identity(self, step: Step, inputs: dict[str, dict]) -> dict[str, Any]:
        """What made the step's result (:mod:`dmf.engine.identity`): its kind,
        options and command line; a report's also the fingerprints of the
        steps it reports on."""
        groups: dict[str, Any] = {"params": step.params, "argv": _argv(step, self.urls)}
        if step.kind == "report":
            groups["steps"] = {n: (self.root.step_record(n) or {}).get("fingerprint")
                               for n in step.params["steps"]}
        return job_identity(step.kind, inputs, **groups)

    def _outputs(self, step: Step) -> list[str]:
        if step.out is None:
            return []
        kind = KINDS[step.kind]
        if kind.products:
            return [f"{step.out}/{sub}" for sub in kind.products.values()]
        return [step.out]

    def _is_engine(self, step: Step) -> bool:
        return KINDS[step.kind].engine and step.params.get("model") not in ("knn", "user-knn")

    def _action(self, step: Step, previous: dict | None, same: bool,
                storage_options: dict) -> tuple[str, bool]:
        """(``run`` | ``resumed`` | ``rerun``, whether to stage into OUT.next)."""
        if step.out is None:
            return ("rerun" if previous else "run"), False
        out = Location.parse(step.out, storage_options)
        if not self._is_engine(step):
            return ("rerun" if previous and out.exists() else "run"), False
        staged_dir = Location.parse(step.out + ".next", storage_options)
        if staged_dir.exists():
            if previous is not None and previous.get("status") == "running" and same:
                return "rerun", True  # finish the replacement an earlier run began
            staged_dir.remove()  # a replacement begun for another version of this step
        # The engine's output loads Dask's array package on first use: for a step that runs.
        meta = engine.output.JobOutput(out).existing_meta() if out.exists() else None
        if meta is None:
            return "run", False
        if previous is not None and not same:
            # The spec or an input changed since this job wrote OUT.
            return "rerun", meta.get("status") == "complete"
        if meta.get("status") == "complete":
            return "run", False  # the engine finds it complete (or refuses a foreign job)
        return "resumed", False

    def _execute(self, step: Step, target: str, address: str | None,
                 storage_options: dict, *, fresh: bool, owned: bool) -> dict[str, Any]:
        """Run ``step`` into ``target``: its kind's function (:data:`KINDS`)
        with the step's checked options and the job's; the facts of what it
        returned, for the run record."""
        if step.kind == "report":
            write_report(self.root, step, target, storage_options)
            return {}
        kind = KINDS[step.kind]
        params = self._params(step, target, address, storage_options, fresh=fresh,
                              owned=owned)
        ran = kind.run(params, functools.partial(cluster, params))
        if not self.quiet:  # -q: the job's summary only
            for line in ran.lines:
                print(line)
        return kind.facts(ran.result) if kind.facts else {}

    def _params(self, step: Step, target: str, address: str | None, storage_options: dict,
                *, fresh: bool, owned: bool) -> argparse.Namespace:
        """What the step's function runs with, as its command's parser would
        make them: the parser's defaults, the step's options, its inputs and
        output, and what the job decides for every step (the cluster, storage
        options, checkpoints, resume, overwrite, progress)."""
        parser = subparser(step.kind, step.params.get("kind"))
        actions = {a.dest: a for a in parser._actions}
        params = {**defaults(parser), **step.values}
        urls = [self.urls[ref] for ref in step.inputs.values()]
        positionals = [a.dest for a in parser._actions if not a.option_strings]
        if KINDS[step.kind].out == "out":
            urls.append(target)
        params.update(zip(positionals, urls, strict=True))
        if KINDS[step.kind].out == "--out":
            params["out"] = target
        params["storage_options"] = storage_options or None
        params["quiet"] = self.quiet
        if "scheduler" in actions:  # the steps that compute on a cluster
            params.update(scheduler=address, workers=None if address else 0)
        job = {"progress": bool(self.progress), "no_resume": fresh, "overwrite": owned,
               "json": step.kind == "cf-evaluate",
               **{f"checkpoint_{k}": v for k, v in self.spec.checkpoint.items()
                  if k in ("every", "seconds")}}
        if "damaged" in self.spec.checkpoint:
            job["damaged_checkpoints"] = self.spec.checkpoint["damaged"]
        for dest, value in job.items():
            if dest in actions and (value or dest.startswith("checkpoint_")):
                params[dest] = convert(actions[dest], value)
        return argparse.Namespace(**params)

    def _facts(self, step: Step, storage_options: dict) -> dict[str, Any]:
        """A few numbers about a step's result for the record and the report."""
        facts = {}
        for url in self._outputs(step):
            if step.kind == "report":
                continue
            with contextlib.suppress(DmfError, OSError, KeyError, ValueError):
                facts[url] = result_facts(url, storage_options)
        return facts


def backoff(delay: float) -> wait_base:
    """The wait before retry n: ``delay * 2**(n-1)`` plus up to ``delay`` at
    random, at most a minute or 8 delays.

    Examples
    --------
    >>> from tenacity import RetryCallState
    >>> wait = backoff(10)
    >>> waits = [wait(RetryCallState(None, None, (), {})) for _ in range(3)]
    >>> all(10 <= w <= 20 for w in waits)
    True
    """
    return wait_exponential(multiplier=delay, max=max(60.0, 8 * delay)) + wait_random(0, delay)


def _transient(exc: BaseException) -> bool:
    """Worth another try: the cluster or the network, not the input."""
    if isinstance(exc, ClusterError):
        return True
    if isinstance(exc, DmfError):
        return False
    try:  # distributed is imported by the step that failed on a cluster, not here
        from distributed import KilledWorker
        from distributed.comm.core import CommClosedError
    except ImportError:  # pragma: no cover - distributed is a dependency
        return isinstance(exc, OSError | TimeoutError)
    return isinstance(exc, KilledWorker | CommClosedError | TimeoutError | ConnectionError)


def _made_bytes(step: Step) -> int | None:
    """Bytes a ``generate lowrank`` step writes (None for other steps)."""
    if step.kind != "generate" or step.params.get("kind", "lowrank") != "lowrank":
        return None
    try:
        m, n = (int(v) for v in str(step.params.get("shape")).lower().split("x"))
    except ValueError:
        return None  # the command itself says what is wrong with the shape
    return m * n * (4 if step.params.get("dtype") == "float32" else 8)


def _swap(staged: Location, target: Location) -> None:
    """Put the complete result at ``staged`` in place of ``target``: the old
    result is moved aside first and dropped last, so that a crash leaves
    either of them whole (and the next run finishes the swap)."""
    if not staged.exists():
        return
    aside = target.sibling(f".{target.name}.dmf-old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.move_to(aside)
    staged.move_to(target)
    aside.remove()


def run_job(path: str | os.PathLike, *, overrides: list[str] | None = None,
            scheduler: str | None = None, dry_run: bool = False,
            cluster_options: dict[str, Any] | None = None, quiet: bool = False,
            progress: bool | None = None) -> dict[str, Any] | None:
    """Run the job spec at ``path`` (see :mod:`dmf.jobs.spec`).

    Returns the run record (None with ``dry_run``, which only checks the spec
    and prints the command lines of its steps, touching no store and no
    cluster).

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> job = os.path.join(d, "job.yaml")
    >>> with open(job, "w") as f:
    ...     _ = f.write('''
    ... job: tiny
    ... root: {d}/out
    ... cluster: {{workers: 0}}
    ... steps:
    ...   - step: generate
    ...     name: X
    ...     shape: 200x20
    ...     rank: 3
    ...   - step: svd
    ...     x: X
    ...     k: 3
    ... '''.format(d=d))
    >>> record = run_job(job, quiet=True)
    >>> record["status"], [s["action"] for s in record["steps"]]
    ('complete', ['run', 'run'])
    >>> [s["action"] for s in run_job(job, quiet=True)["steps"]]
    ['skipped', 'skipped']
    """
    spec = load_spec(path, overrides)
    if dry_run:
        for line in plan_lines(spec, scheduler):
            print(line)
        print("dry run: the spec is valid; nothing was run")
        return None
    return Runner(spec, scheduler=scheduler, cluster_options=cluster_options, quiet=quiet,
                  progress=progress).run()
