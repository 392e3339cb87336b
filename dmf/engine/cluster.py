"""Connecting to a Dask cluster: an address, ``$DASK_SCHEDULER_ADDRESS``, or
a local cluster sized to this machine.

Every worker is limited to one BLAS thread per Dask thread: a matrix product
inside a task must not spread over cores that other tasks are using.

A terminal's Ctrl-C sends SIGINT to the whole process group, the local
cluster's worker processes included. Those ignore it (see
:mod:`dmf.engine.spawn`): only the driver (this process) acts on it, stops at
a safe point, and shuts the workers down itself.

The local cluster's HTTP server (health, metrics, the dashboard) listens on
127.0.0.1 unless asked otherwise. Its workers print no log below ERROR, nor
below the level this process gives Dask's loggers (the CLI: CRITICAL unless
``-v``), so that their tracebacks do not precede dmf's one-line error.

Every wait on the cluster is bounded: a :class:`~dmf.engine.liveness.WorkerWatch`
ends it when the cluster has had no workers for ``$DMF_NO_WORKERS_TIMEOUT``
seconds (see :mod:`dmf.engine.liveness`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
from collections.abc import Iterator

import dask.utils
import psutil
from distributed import Client, LocalCluster
from distributed.deploy.spec import SpecCluster
from distributed.deploy.utils import nprocesses_nthreads
from distributed.diagnostics.plugin import WorkerPlugin

from dmf.engine.liveness import WorkerWatch, default_no_workers_timeout
from dmf.engine.spawn import refuse_new_workers, sigint_ignored_workers
from dmf.errors import ClusterError, InputError

log = logging.getLogger(__name__)

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
LOOPBACK_DASHBOARD = "127.0.0.1:0"
# How long closing a local cluster may take before its processes are left to
# exit on their own (they do when this process exits: a pipe tells them).
CLOSE_SECONDS = 5.0


def limit_blas_threads() -> None:
    """One BLAS/OpenMP thread in this process (per Dask thread, since each
    task then runs its products on the thread that runs the task)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


class BlasThreadsPlugin(WorkerPlugin):
    """Applies :func:`limit_blas_threads` on every worker, including workers
    that join or restart later."""

    name = "dmf-blas-threads"

    def setup(self, worker) -> None:  # noqa: ARG002 - WorkerPlugin signature
        limit_blas_threads()


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def local_cluster_size(
    n_workers: int | None, threads_per_worker: int | None, cores: int | None = None
) -> tuple[int, int]:
    """Worker processes and threads for a local cluster on ``cores`` cores.

    Unset values follow Dask's own heuristic (one process per core on small
    machines, fewer, multi-threaded processes on large ones).

    Examples
    --------
    >>> local_cluster_size(None, None, cores=2)
    (2, 1)
    >>> local_cluster_size(None, 2, cores=8)
    (4, 2)
    >>> local_cluster_size(3, None, cores=8)
    (3, 2)
    """
    cores = cores or machine_cores()
    for value, what in ((n_workers, "workers"), (threads_per_worker, "threads")):
        if value is not None and value <= 0:
            raise InputError(f"--{what} must be a positive integer, got {value}")
    if n_workers is None and threads_per_worker is None:
        return nprocesses_nthreads(cores)
    if n_workers is None:
        return max(1, cores // threads_per_worker), threads_per_worker
    if threads_per_worker is None:
        return n_workers, max(1, cores // n_workers)
    return n_workers, threads_per_worker


def check_memory_limit(memory_limit: str | int | None) -> None:
    """Refuse a memory limit Dask cannot read (InputError), before any
    worker starts."""
    if memory_limit is None or memory_limit == "auto":
        return
    try:
        size = dask.utils.parse_bytes(memory_limit) if isinstance(memory_limit, str) else int(
            memory_limit)
    except (TypeError, ValueError):
        size = -1
    if size <= 0:
        raise InputError(f"memory limit must be a size such as 4GiB, got {memory_limit!r}")


@contextlib.contextmanager
def connect(
    address: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | int | None = None,
    dashboard: bool = False,
    dashboard_address: str = LOOPBACK_DASHBOARD,
    no_workers_timeout: float | None = None,
) -> Iterator[Client]:
    """A Dask client for dmf's work, closed (and its cluster shut down) on exit.

    Parameters
    ----------
    address : str, optional
        A scheduler address such as ``tcp://10.0.0.5:8786``. Without one,
        ``$DASK_SCHEDULER_ADDRESS`` is used; without that, a
        :class:`~distributed.LocalCluster` of worker processes is started.
    n_workers, threads_per_worker : int, optional
        Size of the local cluster; by default sized to this machine's cores.
        Ignored when connecting to a scheduler.
    memory_limit : str or int, optional
        Per-worker memory limit of the local cluster (``"4GiB"``); by default
        the machine's memory is shared evenly between workers.
    dashboard : bool
        Serve the dashboard of the local cluster (on a free port).
    dashboard_address : str
        Where the local cluster's HTTP server (health, metrics, the dashboard)
        listens: by default a free port on 127.0.0.1 only; ``":8787"`` serves
        every interface.
    no_workers_timeout : float, optional
        Seconds the cluster may have no workers before every wait on it ends
        with :class:`~dmf.errors.WorkersLost`; default ``$DMF_NO_WORKERS_TIMEOUT``
        or 60.

    Examples
    --------
    >>> import dmf
    >>> with dmf.connect(n_workers=1, threads_per_worker=1) as client:  # doctest: +SKIP
    ...     print(len(client.scheduler_info()["workers"]))
    1
    """
    address = address or os.environ.get(SCHEDULER_ENV) or None
    timeout = (default_no_workers_timeout() if no_workers_timeout is None
               else float(no_workers_timeout))
    with contextlib.ExitStack() as stack:
        if address:
            if n_workers or threads_per_worker or memory_limit:
                log.warning("--workers/--threads/--memory-limit are ignored with a scheduler "
                            "address")
            log.info("connecting to the Dask scheduler at %s", address)
            try:
                client = Client(address, set_as_default=True)
            except OSError as exc:  # refused, timed out, unknown host
                raise ClusterError(f"could not reach the Dask scheduler at {address} "
                                   f"({' '.join(str(exc).split())}); check the address and "
                                   "that the scheduler runs") from exc
            stack.callback(client.close)
        else:
            workers, threads = local_cluster_size(n_workers, threads_per_worker)
            check_memory_limit(memory_limit)
            log.info("starting a local cluster: %d workers x %d threads", workers, threads)
            client = stack.enter_context(_local_client(
                workers, threads, memory_limit=memory_limit, dashboard=dashboard,
                dashboard_address=dashboard_address))
        client.register_plugin(BlasThreadsPlugin(), name=BlasThreadsPlugin.name)
        watch = stack.enter_context(WorkerWatch(client, timeout))
        try:
            yield client
        except Exception as exc:
            watch.raise_if_lost(exc)
            raise


@contextlib.contextmanager
def _local_client(workers: int, threads: int, *, memory_limit, dashboard: bool,
                  dashboard_address: str) -> Iterator[Client]:
    """A client of a new local cluster whose worker processes ignore the
    terminal's SIGINT. The cluster is closed on exit: at once when the block
    ends with an exception (an interrupted run has its checkpoint already),
    and also when its start was interrupted half-way."""
    before = set(SpecCluster._instances)
    children_before = _children()
    cluster = None
    finished = False
    with sigint_ignored_workers():
        try:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads,
                processes=True,
                memory_limit=memory_limit if memory_limit is not None else "auto",
                # The scheduler serves health and metrics over HTTP even
                # without the dashboard: on loopback unless asked otherwise,
                # on a free port so that clusters do not fight over 8787.
                dashboard_address=dashboard_address,
                scheduler_kwargs={"dashboard": dashboard},
                silence_logs=_worker_log_level(),
            )
            with Client(cluster, set_as_default=True) as client:
                yield client
            finished = True
        finally:
            if cluster is None:
                for half_started in set(SpecCluster._instances) - before:
                    _abandon(half_started, children_before)
            else:
                if not finished:
                    _stop_workers_now(cluster)
                _close_quietly(cluster)


def _worker_log_level() -> int:
    """The level below which the workers' logs are not printed: ERROR, or
    higher when Dask's logger here is set higher (the CLI sets CRITICAL
    unless -v), so that worker tracebacks show only when asked for."""
    return max(logging.getLogger("distributed").getEffectiveLevel(), logging.ERROR)


def _stop_workers_now(cluster) -> None:
    """Stop the workers without a graceful retirement (seconds on a busy
    machine): their nannies are told not to restart them, then each gets a
    second to stop before it is terminated."""
    async def stop() -> None:
        nannies = list(cluster.workers.values())
        for nanny in nannies:
            nanny.close_gracefully(reason="dmf-stopping")
        await asyncio.gather(*(nanny.kill(timeout=1) for nanny in nannies),
                             return_exceptions=True)

    try:
        cluster.sync(stop, callback_timeout=CLOSE_SECONDS)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - closing follows anyway
        log.info("stopping the local workers: %s", exc)


def _abandon(cluster, children_before: set[int]) -> None:
    """A cluster whose start was interrupted cannot be closed (Dask refuses
    workers still starting): it is left to end with this process, without
    Dask's exit hook waiting for it. Dask's threads may still spawn workers
    meanwhile; one still reading what it was spawned with would print a
    traceback (EOFError, or FileNotFoundError for a semaphore) once this
    process is gone. Those spawned so far are killed now; at exit, no real
    worker is spawned any more (see :func:`~dmf.engine.spawn.refuse_new_workers`:
    only then, since a library user's interpreter may go on and start other
    processes) and those spawned meanwhile are killed."""
    cluster.shutdown_on_close = False
    _silence_dask_logs()
    _kill_new_children(children_before)
    atexit.register(_end_abandoned_start, children_before)


def _end_abandoned_start(children_before: set[int]) -> None:
    """At exit after an abandoned start: spawns from here on run ``true``,
    and the workers spawned since the abandonment are killed."""
    refuse_new_workers()
    _kill_new_children(children_before)


def _silence_dask_logs() -> None:
    """After an abandoned start, the half-started nannies may still log
    their own failure (a traceback: "Nanny failed to start process", its
    pipe closed under it) after dmf has said it was interrupted. Nothing
    they say then is news: Dask's loggers go quiet, unless dmf logs at
    DEBUG (-vv)."""
    if logging.getLogger("dmf").getEffectiveLevel() <= logging.DEBUG:
        return
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "tornado", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children()}


def _kill_new_children(children_before: set[int]) -> None:
    """SIGKILL the children this process started since ``children_before``
    (the workers being spawned, also one between fork and exec, whose
    command line is still this process's), except multiprocessing's
    resource tracker."""
    for child in psutil.Process().children():
        if child.pid in children_before:
            continue
        with contextlib.suppress(psutil.Error):
            if "resource_tracker" not in " ".join(child.cmdline()):
                child.kill()


def _close_quietly(cluster) -> None:
    """Close a local cluster within CLOSE_SECONDS; a cluster that takes
    longer (or whose start was interrupted) is left to exit with this
    process."""
    try:
        cluster.close(timeout=CLOSE_SECONDS)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - shutting down anyway
        log.info("closing the local cluster: %s", exc)


LOCAL_SCHEDULERS = {"threads", "threading", "sync", "synchronous", "single-threaded",
                    "processes", "multiprocessing"}


def current_client() -> Client | None:
    """The distributed client Dask computes with now, or None when it
    computes in this process (no client, or ``dask.config.set(scheduler=
    "threads")`` in force even though a client exists)."""
    import dask

    if dask.config.get("scheduler", None) in LOCAL_SCHEDULERS:
        return None
    try:
        from distributed import default_client

        return default_client()
    except ValueError:
        return None
