"""The engine on real clusters: flat task graphs over 100 iterations, a
killed worker, a killed scheduler, and checkpoints on S3."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import _procs
import dask
import numpy as np
import psutil
import pytest
import zarr
from _crash import Crash, crash_at
from toy_solvers import ToyNMF, nonnegative_matrix

import dmf
from dmf.engine.checkpoint import Checkpoints
from dmf.engine.driver import run
from dmf.store.location import Location


def _scheduler_tasks(dask_scheduler):
    return len(dask_scheduler.tasks)


def _scheduler_rss():
    return psutil.Process().memory_info().rss


def test_task_graph_and_scheduler_memory_stay_flat(local_client, tmp_path):
    url = tmp_path / "X.zarr"
    dmf.save_matrix(nonnegative_matrix(m=2000, n=40, chunks=200), url)
    X = dmf.open_matrix(url).persist()
    seen = {}

    def measure(it, state, stats):
        if it in (5, 55):
            seen[it] = {"graph": stats.extra["graph_size"],
                        "tasks": local_client.run_on_scheduler(_scheduler_tasks),
                        "rss": local_client.run_on_scheduler(_scheduler_rss)}

    run(ToyNMF(3), X, seed=0, max_iter=60, tol=0, out=tmp_path / "job.zarr",
        checkpoint_every=5, callback=measure)
    early, late = seen[5], seen[55]
    print(f"graph tasks per step, scheduler tasks, scheduler RSS at iterations 5 and 55: "
          f"{early} {late}")  # shown with pytest -s
    # the same graph per step, and the scheduler holds no more tasks after 55
    # iterations than after 5 (without the lineage cut at each checkpoint it
    # would hold ~30 more per iteration, ~1500 in all)
    assert late["graph"] == early["graph"]
    assert late["tasks"] <= early["tasks"] + 5, seen
    assert late["rss"] - early["rss"] < 40 * 2**20, seen


def _gapped(m, n, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    # a gap of 2 between singular values: power iteration with deflation
    # converges in ~40 iterations, long enough to be killed mid-run
    return (U * (10 * 0.5 ** np.arange(n))) @ V.T


@pytest.fixture(scope="module")
def stored_matrix(tmp_path_factory):
    url = tmp_path_factory.mktemp("faults") / "X.zarr"
    dmf.save_matrix(_gapped(20000, 40), url, chunks=1000)
    return url


def _svd_bytes(result):
    return (np.asarray(result.U.compute()).tobytes(), result.S.tobytes(), result.Vt.tobytes())


def test_killed_worker_gives_the_same_result(process_cluster, stored_matrix, tmp_path):
    with process_cluster.client() as client, dask.config.set(scheduler=client):
        clean = _svd_bytes(dmf.svd(stored_matrix, 3, method="power", seed=1))
        out = tmp_path / "svd.zarr"
        pointer = Location.parse(out / "checkpoints")
        killed_at = {}

        def killer():
            while Checkpoints(pointer).latest() is None:
                time.sleep(0.05)
            killed_at["iteration"] = Checkpoints(pointer).latest().iteration
            killed_at["pids"] = process_cluster.worker_pids(0)
            process_cluster.kill_worker(0)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        faulty = dmf.svd(stored_matrix, 3, method="power", seed=1, out=out,
                         checkpoint_every=2)
        thread.join(timeout=60)
    assert killed_at, "the worker was never killed"
    assert killed_at["iteration"] < faulty.n_iter  # it died mid-run
    assert not any(psutil.pid_exists(p) for p in killed_at["pids"])
    assert _svd_bytes(faulty) == clean


def _cli(x, out, scheduler):
    return [sys.executable, "-m", "dmf", "--scheduler", scheduler, "svd", str(x), str(out),
            "-k", "3", "--method", "power", "--seed", "1", "--checkpoint-every", "2",
            "--progress"]


def test_killed_scheduler_exits_nonzero_then_resumes_on_a_new_one(stored_matrix, tmp_path):
    reference = tmp_path / "ref.zarr"
    done = subprocess.run([sys.executable, "-m", "dmf", "--workers", "0", "svd",
                           str(stored_matrix), str(reference), "-k", "3", "--method", "power",
                           "--seed", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "svd.zarr"
    (tmp_path / "c1").mkdir()
    (tmp_path / "c2").mkdir()
    first = _procs.ProcessCluster(tmp_path / "c1").start()
    try:
        job = subprocess.Popen(_cli(stored_matrix, out, first.address), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ckpts = Checkpoints(Location.parse(out / "checkpoints"))
        _procs.wait_for(lambda: (ckpts.latest() or 0) and ckpts.latest().iteration >= 4,
                        120, "a few checkpoints")
        first.scheduler.kill()
        _, err = job.communicate(timeout=120)
    finally:
        first.close()
    assert job.returncode == 4, err  # an environment failure (docs/design.md, exit codes)
    assert "lost the Dask scheduler" in err and "is intact: rerun to resume" in err
    assert "Traceback" not in err
    saved = ckpts.latest()
    assert saved is not None and saved.iteration >= 4

    second = _procs.ProcessCluster(tmp_path / "c2").start()
    try:
        again = subprocess.run(_cli(stored_matrix, out, second.address), capture_output=True,
                               text=True, timeout=300)
    finally:
        second.close()
    assert again.returncode == 0, again.stderr
    assert f"resuming from iteration {saved.iteration} " in again.stderr
    for name in ("U", "S", "Vt"):
        got = zarr.open_array(str(out / name), mode="r")[...]
        want = zarr.open_array(str(reference / name), mode="r")[...]
        assert got.tobytes() == want.tobytes(), name


def test_checkpoints_and_resume_on_s3(s3):
    X = nonnegative_matrix()
    reference = run(ToyNMF(3), X, seed=2, max_iter=9, tol=0)
    out = f"{s3.url}/job.zarr"

    with pytest.raises(Crash):
        run(ToyNMF(3), X, seed=2, max_iter=9, tol=0, out=out, checkpoint_every=3,
            storage_options=s3.storage_options, callback=crash_at(7))
    ckpts = Checkpoints(Location.parse(f"{out}/checkpoints", s3.storage_options))
    assert ckpts.names() == ["ckpt-00000003", "ckpt-00000006"]
    resumed = run(ToyNMF(3), X, seed=2, max_iter=9, tol=0, out=out,
                  storage_options=s3.storage_options)
    assert resumed.resumed_from == 6
    for name in ("W", "H"):
        assert (np.asarray(resumed.arrays[name]).tobytes()
                == np.asarray(reference.arrays[name]).tobytes())


def test_lock_on_s3_refuses_a_second_writer(s3):
    from dmf.engine.lock import OutputLock
    from dmf.errors import OutputLocked

    out = f"{s3.url}/locked.zarr"
    with OutputLock(Location.parse(out, s3.storage_options)):
        with pytest.raises(OutputLocked, match="locked by another job"):
            run(ToyNMF(2), nonnegative_matrix(), seed=0, max_iter=2, tol=0, out=out,
                storage_options=s3.storage_options)
    # released: now it runs
    assert run(ToyNMF(2), nonnegative_matrix(), seed=0, max_iter=2, tol=0, out=out,
               storage_options=s3.storage_options).n_iter == 2
