"""Connecting to a Dask cluster: an address, ``$DASK_SCHEDULER_ADDRESS``, or
a local cluster sized to this machine.

Every worker is limited to one BLAS thread per Dask thread: a matrix product
inside a task must not spread over cores that other tasks are using.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import dask.utils
from distributed import Client, LocalCluster
from distributed.deploy.utils import nprocesses_nthreads
from distributed.diagnostics.plugin import WorkerPlugin

from dmf.errors import ClusterError, InputError

log = logging.getLogger(__name__)

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


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

    Examples
    --------
    >>> import dmf
    >>> with dmf.connect(n_workers=1, threads_per_worker=1) as client:  # doctest: +SKIP
    ...     print(len(client.scheduler_info()["workers"]))
    1
    """
    address = address or os.environ.get(SCHEDULER_ENV) or None
    cluster = None
    if address:
        if n_workers or threads_per_worker or memory_limit:
            log.warning("--workers/--threads/--memory-limit are ignored with a scheduler address")
        log.info("connecting to the Dask scheduler at %s", address)
        try:
            client = Client(address, set_as_default=True)
        except OSError as exc:  # refused, timed out, unknown host
            raise ClusterError(f"could not reach the Dask scheduler at {address} "
                               f"({' '.join(str(exc).split())}); check the address and that "
                               "the scheduler runs") from exc
    else:
        workers, threads = local_cluster_size(n_workers, threads_per_worker)
        check_memory_limit(memory_limit)
        log.info("starting a local cluster: %d workers x %d threads", workers, threads)
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            memory_limit=memory_limit if memory_limit is not None else "auto",
            # The scheduler serves health and metrics over HTTP even without the
            # dashboard; a random port keeps clusters from fighting over 8787.
            dashboard_address=":0",
            scheduler_kwargs={"dashboard": dashboard},
            silence_logs=logging.ERROR,
        )
        client = Client(cluster, set_as_default=True)
    try:
        client.register_plugin(BlasThreadsPlugin(), name=BlasThreadsPlugin.name)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


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
