"""Ctrl-C as a terminal sends it: SIGINT to the whole process group of the
``dmf`` command, its local cluster's worker processes included, at chosen
moments of a run on a local cluster (started by the command, as for a large
input); a cluster that loses every worker; and what the local cluster
exposes and prints.

Each interrupted run must end within seconds with exit 130 and the message
that says how to resume, leave its last checkpoint valid and its lock
released, print no traceback (no KeyboardInterrupt from the workers), leave
no process of its group behind, and a rerun must end bitwise where an
uninterrupted run does. The time limit here is generous (a busy 2-core CI
machine): the contract is 5 s, plus finishing a checkpoint being written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import _procs
import numpy as np
import psutil
import pytest
import zarr
from _svd_runs import result_bytes, write_slow_matrix

import dmf
from dmf.engine.checkpoint import Checkpoints
from dmf.engine.lock import LOCK_NAME
from dmf.store.location import Location

STOP_LIMIT_S = 15.0  # the contract says 5; CI machines are slow and shared
RESUME_HINT = "run the same command again"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    return write_slow_matrix(tmp_path_factory.mktemp("signals") / "X.zarr")


def command(x, out, *options: str) -> list[str]:
    """svd by power iteration on a local cluster of 2 worker processes (an
    input this small would run in-process without --workers; a larger one
    starts the same cluster through the same code)."""
    options = options or ("--workers", "2")
    return [sys.executable, "-m", "dmf", *options, "svd", str(x), str(out), "-k", "3",
            "--method", "power", "--seed", "3", "--checkpoint-every", "3"]


@pytest.fixture(scope="module")
def reference(matrix, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "svd.zarr"
    done = subprocess.run(command(matrix, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return result_bytes(out)


class Session:
    """The command started as a terminal starts it: leader of its own
    process group; stderr collected line by line as it comes."""

    def __init__(self, argv: list[str], *, sigint_ignored: bool = False, **env: str):
        # sigint_ignored: as a script's background job starts (`dmf ... &`
        # in a non-interactive shell), with SIGINT ignored.
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True, env=_procs.child_env(**env),
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
            if sigint_ignored else None)
        self.pgid = self.popen.pid
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, predicate, what: str, timeout: float = 120) -> None:
        def ready():
            if self.popen.poll() is not None:
                raise AssertionError(f"exited {self.popen.returncode} before {what}:\n"
                                     f"{self.stderr}")
            return predicate()

        _procs.wait_for(ready, timeout, what, interval=0.02)

    def signal(self, signum: int = signal.SIGINT, *, group: bool = True) -> float:
        """Send ``signum`` (to the whole group, as Ctrl-C does); return the
        seconds until the command exited."""
        sent = time.monotonic()
        if group:
            os.killpg(self.pgid, signum)
        else:
            self.popen.send_signal(signum)
        try:
            self.popen.wait(timeout=120)
        finally:
            if self.popen.poll() is None:
                os.killpg(self.pgid, signal.SIGKILL)
        elapsed = time.monotonic() - sent
        self._reader.join(timeout=10)
        _procs.wait_for(lambda: not self.group_members(), 20,
                        f"the processes of group {self.pgid} to exit")
        return elapsed

    def group_members(self) -> list[int]:
        return _procs.live_group_members(self.pgid)


def assert_stopped_cleanly(session: Session, elapsed: float, code: int, out) -> None:
    err = session.stderr
    print(f"stopped in {elapsed:.2f} s")
    assert session.popen.returncode == code, err
    assert elapsed < STOP_LIMIT_S, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert RESUME_HINT in err, err
    assert not (out / LOCK_NAME).exists(), "the lock was left behind"


def worker_spawned(pid: int) -> bool:
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return False
    return any("multiprocessing" in " ".join(c.cmdline()) for c in children
               if c.status() != psutil.STATUS_ZOMBIE)


def paused_at_failpoint(argv: list[str], tmp_path, point: str, sleep: str, what: str,
                        **options) -> Session:
    """The command started with a failpoint that pauses it ``sleep`` seconds
    at ``point`` (``name:count``), returned once it got there."""
    marker = tmp_path / "marker"
    session = Session(argv, DMF_FAILPOINT=point, DMF_FAILPOINT_FILE=str(marker),
                      DMF_FAILPOINT_SLEEP=sleep, **options)
    session.wait_for(marker.exists, what)
    return session


def assert_rerun_ends_bitwise(matrix, out, reference) -> None:
    """The same command again resumes and ends where an uninterrupted run does."""
    again = subprocess.run(command(matrix, out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert result_bytes(out) == reference


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["terminal", "background-job"])
@pytest.mark.parametrize("moment", ["cluster-start", "worker-spawn"])
def test_sigint_during_start_up(matrix, tmp_path, moment, sigint_ignored):
    out = tmp_path / "svd.zarr"
    session = Session(command(matrix, out, "-v", "--workers", "2"),
                      sigint_ignored=sigint_ignored)
    if moment == "cluster-start":
        session.wait_for(lambda: "starting a local cluster" in session.stderr, moment)
    else:  # a worker process exists and is still importing
        session.wait_for(lambda: worker_spawned(session.pgid), moment)
    elapsed = session.signal()
    assert_stopped_cleanly(session, elapsed, 130, out)
    assert not out.exists()  # the output is opened after the cluster is up


def test_sigint_in_the_first_iteration_checkpoints_then_resumes_bitwise(
        matrix, reference, tmp_path):
    out = tmp_path / "svd.zarr"
    session = paused_at_failpoint(command(matrix, out), tmp_path, "iteration:1", "60",
                                  "the first iteration")
    elapsed = session.signal()
    assert_stopped_cleanly(session, elapsed, 130, out)
    # at the default verbosity, that one line and nothing else
    assert session.lines == ["dmf: error: stopped by SIGINT after checkpointing iteration 0; "
                             "run the same command again to resume\n"]
    assert Checkpoints(Location.parse(out / "checkpoints")).latest().iteration == 0

    assert_rerun_ends_bitwise(matrix, out, reference)


def test_sigint_in_a_nested_run_stops_the_run(tmp_path):
    """NMF starts from an SVD, itself a run with its own signal guard: a
    SIGINT while that SVD finishes (a section a signal does not interrupt)
    must stop the NMF, not vanish with the inner run's guard (it did: the
    NMF then ran for good). Started as a script's background job, which
    starts with SIGINT ignored, as the issue's reproducer did."""
    X = np.random.default_rng(1).random((2000, 40))
    x, out = tmp_path / "N.zarr", tmp_path / "nmf.zarr"
    dmf.save_matrix(X, x, chunks=500)
    argv = [sys.executable, "-m", "dmf", "--workers", "2", "nmf", str(x), str(out), "-k", "4",
            "--init", "nndsvd", "--max-iter", "100000", "--tol", "0", "--seed", "0",
            "--checkpoint-every", "3"]
    session = paused_at_failpoint(argv, tmp_path, "finalize:1", "2",
                                  "the start's SVD finishing", sigint_ignored=True)
    elapsed = session.signal()
    assert_stopped_cleanly(session, elapsed, 130, out)
    assert "stopped by SIGINT before writing a checkpoint" in session.stderr


def test_sigint_mid_run_at_any_time(matrix, reference, tmp_path):
    out = tmp_path / "svd.zarr"
    checkpoints = Checkpoints(Location.parse(out / "checkpoints"))
    session = Session(command(matrix, out))
    session.wait_for(lambda: (checkpoints.latest() or 0) and checkpoints.latest().iteration >= 3,
                     "a checkpoint")
    elapsed = session.signal()
    assert_stopped_cleanly(session, elapsed, 130, out)
    saved = checkpoints.latest()
    assert f"after checkpointing iteration {saved.iteration};" in session.stderr

    assert_rerun_ends_bitwise(matrix, out, reference)


def test_sigint_during_a_checkpoint_write_finishes_it(matrix, reference, tmp_path):
    out = tmp_path / "svd.zarr"
    session = paused_at_failpoint(command(matrix, out), tmp_path, "checkpoint-arrays:2",
                                  "1.5", "the second checkpoint's write")
    elapsed = session.signal()
    assert_stopped_cleanly(session, elapsed, 130, out)
    # the write under way was finished, not torn, and the run stopped there
    pointer = zarr.open_group(str(out / "checkpoints"), mode="r").attrs["dmf"]
    assert pointer["latest"] == "ckpt-00000006"
    assert "after checkpointing iteration 6;" in session.stderr

    assert_rerun_ends_bitwise(matrix, out, reference)


def test_sigterm_to_the_driver_still_checkpoints_then_exits_143(matrix, tmp_path):
    out = tmp_path / "svd.zarr"
    session = paused_at_failpoint(command(matrix, out), tmp_path, "iteration:5", "60",
                                  "iteration 5")
    elapsed = session.signal(signal.SIGTERM, group=False)
    assert_stopped_cleanly(session, elapsed, 143, out)
    assert "stopped by SIGTERM after checkpointing iteration 4;" in session.stderr


def test_cluster_that_loses_every_worker_exits_4(matrix, tmp_path):
    out = tmp_path / "svd.zarr"
    cluster = _procs.ProcessCluster(tmp_path, n_workers=2).start()
    try:
        session = paused_at_failpoint(command(matrix, out, "--scheduler", cluster.address),
                                      tmp_path, "iteration:5", "2", "iteration 5",
                                      DMF_NO_WORKERS_TIMEOUT="3")
        cluster.kill_worker(0)
        cluster.kill_worker(1)
        killed = time.monotonic()
        session.popen.wait(timeout=120)
        elapsed = time.monotonic() - killed
        session._reader.join(timeout=10)
    finally:
        cluster.close()
    err = session.stderr
    assert session.popen.returncode == 4, err
    assert elapsed < 3 + STOP_LIMIT_S, f"took {elapsed:.1f} s"
    assert session.lines == [
        f"dmf: error: the Dask scheduler at {cluster.address} has had no workers for 3 s "
        "($DMF_NO_WORKERS_TIMEOUT); start workers, then rerun; the last checkpoint "
        "(iteration 3) is intact: rerun to resume\n"], err
    assert not (out / LOCK_NAME).exists()
    assert Checkpoints(Location.parse(out / "checkpoints")).latest().iteration == 3


def test_local_cluster_listens_on_loopback_only():
    with dmf.connect(n_workers=1, threads_per_worker=1) as client:
        dashboard_port = client.scheduler_info()["services"]["dashboard"]
        worker_pids = set(client.run(os.getpid).values())
        here = [c.laddr for c in psutil.Process().net_connections("tcp")
                if c.status == psutil.CONN_LISTEN]
        workers = [c.laddr for pid in worker_pids
                   for c in psutil.Process(pid).net_connections("tcp")
                   if c.status == psutil.CONN_LISTEN]
    assert [a.ip for a in here if a.port == dashboard_port] == ["127.0.0.1"]
    assert workers and {a.ip for a in workers} == {"127.0.0.1"}


@pytest.fixture
def corrupt_matrix(tmp_path):
    url = tmp_path / "C.zarr"
    dmf.save_matrix(np.random.default_rng(0).random((1000, 20)), url, chunks=250)
    (url / "c" / "2" / "0").write_bytes(b"not a chunk")
    return url


def test_worker_tracebacks_only_at_verbose(corrupt_matrix, tmp_path):
    argv = [sys.executable, "-m", "dmf", "--workers", "1", "svd", str(corrupt_matrix),
            str(tmp_path / "o"), "-k", "2"]
    quiet = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 2
    assert quiet.stderr.splitlines() == [
        f"dmf: error: {corrupt_matrix}/c/2/0: chunk cannot be read, the store is corrupt or "
        "truncated (ChunkDamaged: 11 bytes where 40004 were written)"], quiet.stderr
    told = subprocess.run([*argv[:3], "-v", *argv[3:]], capture_output=True, text=True,
                          timeout=300)
    assert told.returncode == 2
    assert "distributed.worker - ERROR - Compute Failed" in told.stderr
    assert told.stderr.splitlines()[-1] == quiet.stderr.splitlines()[-1]
