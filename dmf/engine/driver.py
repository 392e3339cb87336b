"""The iteration driver: one loop, written once, for every iterative solver.

A solver is a :class:`Solver`: ``init(X, ctx) -> state`` and
``step(X, state, ctx) -> (state, Stats)``, plus ``result(X, state)`` that
turns the last state into the result's arrays. State is a flat dict of
numpy arrays (small factors), dask arrays (tall factors) and JSON scalars.
``result`` may also return ``(arrays, meta)``: meta (JSON-able facts such as
an error estimate) is recorded with the result. The driver owns everything
else: convergence, loss history, progress,
checkpoints, resume, the output lock, signals, and keeping task graphs from
growing with the iteration count.

Same input, chunks, parameters and seed give bitwise the same state at every
iteration: solvers draw randomness only from ``ctx.rng`` (whose state is
checkpointed), reduce in a fixed order, and the driver restores state arrays
bit for bit, so a resumed run ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Unpack

import dask
import dask.array as da
import numpy as np
from threadpoolctl import threadpool_limits

from dmf.engine.cluster import current_client
from dmf.engine.faults import failpoint
from dmf.engine.finite import check_run_options, check_step
from dmf.engine.identity import describe_input, difference, job_identity, refusal
from dmf.engine.liveness import workers_lost
from dmf.engine.lock import OutputLock
from dmf.engine.options import RunKeywords, RunOptions, run_options
from dmf.engine.output import JobOutput
from dmf.engine.progress import Progress
from dmf.engine.signals import SignalGuard, StopRequested
from dmf.errors import (
    CheckpointMismatch,
    ClusterError,
    DmfError,
    Interrupted,
    WorkersLost,
)
from dmf.store.location import Location

log = logging.getLogger(__name__)

State = dict[str, Any]


@dataclass
class Stats:
    """What one step measured: the loss (lower is better), optionally the
    solver's own verdict on convergence, and anything else worth logging."""

    loss: float
    done: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What a solver may use besides X and its state."""

    rng: np.random.Generator
    iteration: int = 0


def relative_change_below(history: list[float], tol: float) -> bool:
    """Default convergence: the loss changed by less than ``tol`` (relative)."""
    if len(history) < 2:
        return False
    prev, last = history[-2], history[-1]
    return abs(prev - last) <= tol * max(abs(prev), np.finfo(float).tiny)


class Solver:
    """An iterative method, as the driver runs it: a class whose constructor
    takes the method's parameters, with one method per phase, so that its
    loop reads as written. The driver owns everything between the calls.

    ``name`` and ``params`` (JSON-able) define the job: with the input and
    the seed they form the job's identity (:mod:`dmf.engine.identity`) that
    a result or checkpoint must match to be resumed.
    """

    name: str
    params: dict[str, Any]

    def init(self, X, ctx: Context) -> State:
        """The state before the first iteration."""
        raise NotImplementedError

    def step(self, X, state: State, ctx: Context) -> tuple[State, Stats]:
        """One iteration: the next state and what it measured."""
        raise NotImplementedError

    def result(self, X, state: State) -> dict[str, Any] | tuple[dict[str, Any], dict[str, Any]]:
        """The result's arrays from the last state, or (arrays, meta)."""
        raise NotImplementedError

    def converged(self, history: list[float], tol: float) -> bool:
        """Whether to stop, from the loss history (when ``step`` gives no
        verdict of its own)."""
        return relative_change_below(history, tol)


@dataclass
class RunResult:
    """The outcome of :func:`run`."""

    arrays: dict[str, Any]
    loss_history: list[float]
    n_iter: int
    converged: bool
    resumed_from: int | None = None
    skipped: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    location: Location | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def attrs(self) -> dict[str, Any]:
        """What a result object records beside its arrays: the solver's meta,
        timings, where it resumed from, and whether the job was skipped."""
        return {**self.meta, "timings": self.timings, "resumed_from": self.resumed_from,
                "skipped": self.skipped}

    @property
    def url(self) -> str | None:
        return str(self.location) if self.location else None


def materialize(state: State) -> State:
    """Persist the dask arrays of a state (on the cluster, or in this
    process for the threaded scheduler) so the next step's graph starts from
    their blocks, not from the whole history. Arrays a step persisted
    itself, already nothing but the client's futures, are only waited for:
    persisting them again costs a round trip to the scheduler per step."""
    lazy = {k: v for k, v in state.items() if isinstance(v, da.Array)}
    if not lazy:
        return state
    client = current_client()
    held = {k: v for k, v in lazy.items() if client is not None and _held(v, client)}
    todo = {k: v for k, v in lazy.items() if k not in held}
    persisted = dict(zip(todo, dask.persist(*todo.values()), strict=True)) if todo else {}
    if client is not None:
        from distributed import futures_of, wait

        wait([f for v in (*held.values(), *persisted.values()) for f in futures_of(v)])
    return {**state, **held, **persisted}


def _held(array: da.Array, client) -> bool:
    """Whether ``array``'s graph is only its blocks, each a future of
    ``client`` (what persisting it on the cluster gives)."""
    keys = list(dask.core.flatten(array.__dask_keys__()))
    return len(array.__dask_graph__()) == len(keys) and all(k in client.futures for k in keys)


def run(
    solver: Solver,
    X,
    *,
    seed: int | None,
    max_iter: int,
    tol: float,
    options: RunOptions | None = None,
    keep: int = 2,
    input_token: str | None = None,
    **run_keywords: Unpack[RunKeywords],
) -> RunResult:
    """Run ``solver`` on ``X`` until it converges or ``max_iter`` steps.

    Parameters
    ----------
    solver : Solver
    X : dask.array.Array
        The input, already validated and chunked as the solver wants it.
    seed : int or None
        Seeds ``ctx.rng``; None draws a seed (then recorded in the output so
        a rerun resumes the same job).
    max_iter, tol : int, float
        Stop after ``max_iter`` steps, or when the solver's convergence check
        passes for ``tol``.
    options : RunOptions, optional
        Output, checkpoints, resume, progress and callback (``cache`` is the
        caller's: X comes already cached or not). With ``options.out`` the
        run takes the output's lock, writes checkpoints (every 10 iterations
        or 300 s unless set), resumes from them, and writes the result.
    keep : int
        Checkpoints kept (default 2).
    **run_keywords
        The fields of :class:`RunOptions` as keywords; beside ``options``
        they replace its fields (so a caller's wrapper can add a callback).
    input_token : str, optional
        Identifies X's content in the job's identity instead of its dask name
        (which, for an array made from memory, is random).
    """
    options = (run_options(None, run_keywords, "run") if options is None
               else options.replace(**run_keywords) if run_keywords else options)
    check_run_options(solver.params, seed=seed, max_iter=max_iter, tol=tol, keep=keep)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**32)
    identity = job_identity(solver.name, {"input": describe_input(X, token=input_token)},
                            parameters=solver.params, seed=seed)
    location = (Location.parse(options.out, options.storage_options)
                if options.out is not None else None)
    checkpoint_every, checkpoint_seconds = options.checkpoint_every, options.checkpoint_seconds
    if location is not None:
        checkpoint_every = 10 if checkpoint_every is None else checkpoint_every
        checkpoint_seconds = 300.0 if checkpoint_seconds is None else checkpoint_seconds
    display = Progress(solver.name, max_iter, enabled=options.progress)

    with contextlib.ExitStack() as stack:
        # The handlers go first, so that the lock is taken and released in
        # sections a signal does not tear (it stops the run after them).
        guard = stack.enter_context(SignalGuard())
        output = None
        checkpoint = None
        try:
            if location is not None:
                output = JobOutput(location, keep=keep)
                output.existing_meta()  # refuse a non-result before taking the lock there
                lock = OutputLock(location)
                _hold_lock(lock, guard, stack)
                output.fence = lock.check
                status = output.check_job(identity, resume=options.resume)
                if status == "complete":
                    display.message(f"{location} is already complete; nothing to do "
                                    "(use --no-resume to recompute)")
                    return _stored_result(output, skipped=True)
                if status == "resume":
                    checkpoint = output.checkpoints.latest(damaged=options.damaged_checkpoints)
                    if checkpoint is not None:
                        diff = difference(checkpoint.recorded, identity)
                        if diff:
                            raise CheckpointMismatch(refusal(location, "a checkpoint", diff,
                                                             "use --no-resume to start over"))
                with guard.critical():
                    output.begin(identity, {"algorithm": solver.name,
                                               "parameters": solver.params, "seed": seed},
                                 fresh=status == "fresh")
                guard.raise_pending()
        except StopRequested as stop:
            raise _interrupted(stop.signum, None) from None
        if current_client() is None:
            # Threaded scheduler: one BLAS thread per Dask thread here too.
            stack.enter_context(threadpool_limits(limits=1))
        try:
            return _loop(solver, X, seed=seed, max_iter=max_iter, tol=tol, output=output,
                         checkpoint=checkpoint, identity=identity,
                         checkpoint_every=checkpoint_every,
                         checkpoint_seconds=checkpoint_seconds, guard=guard,
                         display=display, callback=options.callback)
        finally:
            display.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _hold_lock(lock: OutputLock, guard: SignalGuard, stack: contextlib.ExitStack) -> None:
    """Take ``lock`` until ``stack`` closes; a signal neither interrupts
    taking nor releasing it (a lock left behind would keep the rerun out)."""
    def release() -> None:
        with guard.critical():
            lock.release()

    with guard.critical():
        lock.acquire()
        stack.callback(release)
    guard.raise_pending()


def _loop(solver, X, *, seed, max_iter, tol, output, checkpoint, identity,
          checkpoint_every, checkpoint_seconds, guard, display, callback) -> RunResult:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    ctx = Context(rng=rng)
    if checkpoint is not None:
        state, it, history = checkpoint.state, checkpoint.iteration, list(checkpoint.history)
        rng.bit_generator.state = checkpoint.rng_state
        converged = bool(state.pop("_converged", False))
        resumed_from = it
        display.message(f"resuming from iteration {it} ({checkpoint.name})")
    else:
        try:
            state = _guarded(lambda: materialize(solver.init(X, ctx)), output, None)
        except StopRequested as stop:
            raise _interrupted(stop.signum, None) from None
        it, history, converged, resumed_from = 0, [], False, None
    init_s = time.perf_counter() - started
    last_saved_it, last_saved_at = it, time.monotonic()
    step_times: list[float] = []

    def save(current_state, current_it, is_converged) -> None:
        if output is None:
            return
        _guarded(lambda: output.checkpoints.save(
            current_it, {**current_state, "_converged": is_converged},
            rng.bit_generator.state, history, identity), output, current_it)

    def stop(signum: int) -> Interrupted:
        if output is None:
            return _interrupted(signum, None)
        with guard.critical():
            if last_saved_it != it or output.checkpoints.latest(verify=False) is None:
                save(state, it, converged)
        return _interrupted(signum, it)

    by_callback = False
    while it < max_iter and not converged and not by_callback:
        t0 = time.perf_counter()
        ctx.iteration = it
        try:
            failpoint("iteration")
            new_state, stats = _guarded(_step, output, it, solver, X, state, ctx)
        except StopRequested as stopped:
            raise stop(stopped.signum) from None
        check_step(solver.name, it + 1, float(stats.loss), new_state)
        with guard.critical():
            state, it = new_state, it + 1
            history.append(float(stats.loss))
            converged = bool(stats.done) if stats.done is not None else solver.converged(
                history, tol)
            step_times.append(time.perf_counter() - t0)
            rel = (abs(history[-2] - history[-1]) / max(abs(history[-2]), 1e-300)
                   if len(history) > 1 else None)
            display.update(it, history[-1], rel, float(np.mean(step_times[-10:])),
                           note=str(stats.extra.get("note", "")))
            log.info("%s iteration %d loss %.10g", solver.name, it, history[-1])
            if callback is not None:
                by_callback = callback(it, state, stats) is True
            if output is not None and (
                it - last_saved_it >= checkpoint_every
                or time.monotonic() - last_saved_at >= checkpoint_seconds
                or converged or by_callback or it >= max_iter
            ):
                save(state, it, converged)
                last_saved_it, last_saved_at = it, time.monotonic()
                state = _rebased(state, output)
        if guard.pending is not None:
            raise stop(guard.pending)

    # A signal from here on waits: finishing the result is quicker than
    # resuming it.
    t_final = time.perf_counter()
    with guard.critical():
        failpoint("finalize")
        arrays = _guarded(lambda: solver.result(X, state), output, it)
        arrays, extra = arrays if isinstance(arrays, tuple) else (arrays, {})
        timings = {"init_s": init_s, "iterations_s": float(sum(step_times)),
                   "seconds_per_iter": float(np.mean(step_times)) if step_times else 0.0,
                   "finalize_s": time.perf_counter() - t_final}
        meta = {**extra, "n_iter": it, "loss_history": history, "converged": converged,
                "timings": timings, "resumed_from": resumed_from}
        if by_callback:
            meta["stopped_by_callback"] = True
        if output is None:
            return RunResult(arrays=arrays, loss_history=history, n_iter=it,
                             converged=converged, resumed_from=resumed_from, timings=timings,
                             meta=meta)
        _guarded(lambda: output.write_result(arrays, meta), output, it)
        failpoint("result-complete")
    return _stored_result(output, skipped=False)


def _step(solver, X, state, ctx):
    new_state, stats = solver.step(X, state, ctx)
    return materialize(new_state), stats


def _rebased(state: State, output: JobOutput) -> State:
    """Swap the state's dask arrays for their copies in the checkpoint just
    written: same values, but no task lineage behind them."""
    if not any(isinstance(v, da.Array) for v in state.values()):
        return state
    latest = output.checkpoints.just_written()
    restored = latest.state
    restored.pop("_converged", None)
    return {k: (restored[k] if isinstance(v, da.Array) else v) for k, v in state.items()}


def _guarded(func, output, iteration, *args):
    """Run ``func``; a lost scheduler becomes a ClusterError, a cluster left
    without workers a WorkersLost, each saying the last checkpoint is intact."""
    try:
        result = func(*args)
    except (DmfError, StopRequested, KeyboardInterrupt):
        raise
    except Exception as exc:
        if workers_lost() is not None:
            raise WorkersLost(f"{workers_lost()}{_last_checkpoint(output)}") from exc
        client = current_client()
        if client is None or _client_alive(client):
            raise
        raise ClusterError(f"lost the Dask scheduler at {client.scheduler.address} "
                           f"during iteration {iteration}{_last_checkpoint(output)}") from exc
    if workers_lost() is not None:  # done in this process after the client was closed
        raise WorkersLost(f"{workers_lost()}{_last_checkpoint(output)}")
    return result


def _last_checkpoint(output) -> str:
    if output is None:
        return ""
    latest = output.checkpoints.latest(verify=False)
    return (f"; the last checkpoint (iteration {latest.iteration}) is intact: rerun to resume"
            if latest else "; no checkpoint was written yet")


def _client_alive(client) -> bool:
    for _ in range(20):
        if client.status == "running":
            return True
        if client.status in ("closed", "closing", "failed"):
            return False
        time.sleep(0.1)
    return client.status == "running"


def _interrupted(signum: int, saved_iteration: int | None) -> Interrupted:
    import signal as _signal

    name = _signal.Signals(signum).name
    if saved_iteration is None:
        return Interrupted(f"stopped by {name} before writing a checkpoint; run the same "
                           "command again to resume", signum)
    return Interrupted(f"stopped by {name} after checkpointing iteration {saved_iteration}; "
                       "run the same command again to resume", signum)


def _stored_result(output: JobOutput, *, skipped: bool) -> RunResult:
    meta = output.meta()
    return RunResult(arrays=output.read_arrays(), loss_history=list(meta.get("loss_history", [])),
                     n_iter=int(meta.get("n_iter", 0)), converged=bool(meta.get("converged")),
                     resumed_from=meta.get("resumed_from"), skipped=skipped,
                     timings=meta.get("timings", {}), location=output.location, meta=meta)
