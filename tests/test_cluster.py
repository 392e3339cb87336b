"""dmf.connect: a local cluster, an address, $DASK_SCHEDULER_ADDRESS; one
BLAS thread per worker; and a pass that survives a killed worker."""

from __future__ import annotations

import os

import _procs
import dask.array as da
import numpy as np
import psutil
import pytest
import threadpoolctl
from distributed import LocalCluster, default_client, get_task_stream

import dmf
from dmf.engine.cluster import SCHEDULER_ENV, local_cluster_size, machine_cores
from dmf.errors import InputError


def blas_threads() -> list[int]:
    """Threads of every BLAS library loaded in this process (run on workers)."""
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"]


def raise_blas_threads() -> None:
    """Undo any limit, as a worker that never saw dmf would be."""
    threadpoolctl.threadpool_limits(limits=2, user_api="blas")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- sizing ------------------------------------------------------------------------


def test_local_cluster_size_values():
    # Dask's heuristic: one single-threaded process per core on small machines
    assert local_cluster_size(None, None, cores=1) == (1, 1)
    assert local_cluster_size(None, None, cores=2) == (2, 1)
    assert local_cluster_size(None, None, cores=4) == (4, 1)
    # fewer, multi-threaded processes on large ones
    assert local_cluster_size(None, None, cores=8) == (4, 2)
    assert local_cluster_size(None, None, cores=16) == (4, 4)
    assert local_cluster_size(None, None, cores=64) == (8, 8)
    # one value given: the other fills the cores, at least 1
    assert local_cluster_size(None, 2, cores=8) == (4, 2)
    assert local_cluster_size(3, None, cores=8) == (3, 2)
    assert local_cluster_size(4, None, cores=2) == (4, 1)
    assert local_cluster_size(None, 4, cores=2) == (1, 4)
    assert local_cluster_size(2, 3, cores=8) == (2, 3)
    # never more threads than cores, never an idle core where they divide
    for cores in range(1, 65):
        workers, threads = local_cluster_size(None, None, cores=cores)
        assert workers >= 1 and threads >= 1
        assert workers * threads <= cores
    # this machine's cores by default
    assert machine_cores() == len(os.sched_getaffinity(0))
    assert local_cluster_size(None, None) == local_cluster_size(None, None, cores=machine_cores())


@pytest.mark.parametrize("bad", [0, -1])
def test_local_cluster_size_refuses_nonpositive(bad):
    with pytest.raises(InputError, match="workers"):
        local_cluster_size(bad, None, cores=4)
    with pytest.raises(InputError, match="threads"):
        local_cluster_size(None, bad, cores=4)


# -- the fixtures themselves ----------------------------------------------------------


def test_local_client_fixture(local_client):
    workers = local_client.scheduler_info()["workers"]
    assert len(workers) == 2
    assert {w["nthreads"] for w in workers.values()} == {1}
    assert {w["memory_limit"] for w in workers.values()} == {2**30}
    assert os.getpid() not in local_client.run(os.getpid).values()  # processes
    # plain dask calls go to it while the fixture is active
    assert default_client() is local_client
    with get_task_stream(local_client) as tasks:
        assert int(da.arange(10, chunks=3).sum().compute()) == 45
    assert tasks.data


def test_process_cluster_fixture(process_cluster):
    assert set(process_cluster.registered()) == {"w0", "w1"}
    for i in (0, 1):
        # nanny, worker and multiprocessing's resource tracker share a group
        pids = process_cluster.worker_pids(i)
        assert process_cluster.workers[i].pid in pids and len(pids) >= 2
    with process_cluster.client(set_as_default=False) as client:
        pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids


# -- connect -------------------------------------------------------------------------


def test_connect_starts_a_local_cluster(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    with dmf.connect(n_workers=1, memory_limit="512MiB") as client:
        cluster = client.cluster
        assert isinstance(cluster, LocalCluster)
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 1
        (worker,) = workers.values()
        # threads not given: the worker takes every core
        assert worker["nthreads"] == machine_cores()
        assert worker["memory_limit"] == 512 * 2**20
        # a worker process, not a thread of this one
        (pid,) = client.run(os.getpid).values()
        assert pid != os.getpid()
        assert all(v and set(v) == {1} for v in client.run(blas_threads).values())
        # dmf's own computations go to it
        assert default_client() is client
        assert int(da.arange(10, chunks=3).sum().compute()) == 45
    assert client.status == "closed"
    assert cluster.status.name == "closed"
    _procs.wait_for(lambda: gone(pid), 30, "the local worker to exit")


def test_connect_to_an_address(process_cluster, monkeypatch):
    # a wrong $DASK_SCHEDULER_ADDRESS: the explicit address must win
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://127.0.0.1:9")
    with dmf.connect(process_cluster.address) as client:
        assert client.scheduler.address == process_cluster.address
        assert client.cluster is None  # no local cluster started
        names = {w["name"] for w in client.scheduler_info()["workers"].values()}
        assert names == {"w0", "w1"}
        assert int(da.arange(10, chunks=3).sum().compute()) == 45


def test_connect_uses_the_environment(process_cluster, monkeypatch):
    monkeypatch.setenv(SCHEDULER_ENV, process_cluster.address)
    with dmf.connect() as client:
        assert client.scheduler.address == process_cluster.address
        assert client.cluster is None
        assert set(process_cluster.registered().values()) == \
            set(client.scheduler_info()["workers"])


def test_connect_limits_blas_to_one_thread(process_cluster):
    with process_cluster.client(set_as_default=False) as plain:
        plain.run(raise_blas_threads)
        before = plain.run(blas_threads)
    # the test can fail: without dmf, the workers' BLAS would use 2 threads
    assert before and all(v and set(v) == {2} for v in before.values()), before
    with dmf.connect(process_cluster.address) as client:
        after = client.run(blas_threads)
    assert set(after) == set(before)
    assert all(v and set(v) == {1} for v in after.values()), after


# -- faults --------------------------------------------------------------------------


def test_pass_survives_a_killed_worker(process_cluster, tmp_path):
    x = np.random.default_rng(0).standard_normal((4000, 50))
    url = str(tmp_path / "x.zarr")
    dmf.save_matrix(x, url, chunks=(100, 50))  # 40 blocks
    # 0.1 s per block: about 2 s on two workers, time to kill one mid-pass
    column_sums = dmf.open_matrix(url).map_blocks(_procs.slow_copy, 0.1).sum(axis=0)
    expected = dmf.open_matrix(url).sum(axis=0).compute(scheduler="threads")

    with dmf.connect(process_cluster.address) as client:
        victim = process_cluster.registered()["w0"]
        victim_pids = process_cluster.worker_pids(0)
        future = client.compute(column_sums)
        # kill it once it holds finished blocks, which must then be redone
        _procs.wait_for(lambda: client.has_what().get(victim), 30,
                        "the victim to finish a block")
        assert not future.done()
        process_cluster.kill_worker(0)
        assert all(gone(pid) for pid in victim_pids)
        assert set(client.scheduler_info()["workers"]) == {process_cluster.registered()["w1"]}
        result = future.result(timeout=120)

    # the same graph's reduction tree: the same bits as an undisturbed run
    assert result.tobytes() == expected.tobytes()
    np.testing.assert_allclose(result, x.sum(axis=0), rtol=1e-10, atol=1e-10)
