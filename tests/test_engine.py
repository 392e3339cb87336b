"""The iteration engine: convergence, checkpoints, resume, mismatch, lock,
progress. Threaded scheduler; the cluster and kill tests live elsewhere."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr
from _crash import Crash, crash_at
from toy_solvers import ToyNMF, nonnegative_matrix

from dmf.engine.checkpoint import Checkpoints
from dmf.engine.driver import Solver, Stats, run
from dmf.engine.lock import LOCK_NAME, OutputLock
from dmf.engine.progress import Progress
from dmf.engine.signals import SignalGuard, StopRequested
from dmf.errors import CheckpointMismatch, OutputLocked, StoreError
from dmf.store.location import Location


def _result_arrays(result):
    return {k: np.asarray(v) for k, v in result.arrays.items()}


def test_converges_by_tol_and_records_history():
    X = nonnegative_matrix()
    r = run(ToyNMF(3), X, seed=0, max_iter=500, tol=0.05)
    assert r.converged and 2 <= r.n_iter < 500
    assert len(r.loss_history) == r.n_iter
    h = np.array(r.loss_history)
    change = np.abs(np.diff(h)) / h[:-1]
    # it stopped at the first step whose relative change was below tol
    assert change[-1] <= 0.05 and (change[:-1] > 0.05).all()


def test_stops_at_max_iter():
    r = run(ToyNMF(3), nonnegative_matrix(), seed=0, max_iter=4, tol=0.0)
    assert r.n_iter == 4 and not r.converged


def test_solver_decides_convergence_itself():
    class Count(Solver):
        name, params = "count", {}

        def init(self, _X, _ctx):
            return {"i": 0}

        def step(self, _X, state, _ctx):
            return {"i": state["i"] + 1}, Stats(loss=1.0, done=state["i"] + 1 == 3)

        def result(self, _X, s):
            return {"i": np.array(s["i"])}

    r = run(Count(), nonnegative_matrix(), seed=0, max_iter=10, tol=1.0)
    assert r.n_iter == 3 and int(r.arrays["i"]) == 3


def test_same_seed_same_bits_and_other_seed_differs():
    X = nonnegative_matrix()
    a = _result_arrays(run(ToyNMF(3), X, seed=1, max_iter=6, tol=0))
    b = _result_arrays(run(ToyNMF(3), X, seed=1, max_iter=6, tol=0))
    c = _result_arrays(run(ToyNMF(3), X, seed=2, max_iter=6, tol=0))
    assert a["W"].tobytes() == b["W"].tobytes() and a["H"].tobytes() == b["H"].tobytes()
    assert a["H"].tobytes() != c["H"].tobytes()


def test_checkpoints_are_pruned_and_pointer_is_newest(tmp_path):
    out = tmp_path / "job.zarr"
    run(ToyNMF(3), nonnegative_matrix(), seed=0, max_iter=7, tol=0, out=out,
        checkpoint_every=2)
    # the result is complete, so its checkpoints were dropped
    assert not (out / "checkpoints").exists()
    meta = zarr.open_group(str(out), mode="r").attrs["dmf"]
    assert meta["status"] == "complete" and meta["n_iter"] == 7
    assert len(meta["loss_history"]) == 7


def test_checkpoint_layout_while_running(tmp_path):
    seen = {}

    def callback(it, state, stats):
        if it == 7:
            ck = Checkpoints(Location.parse(tmp_path / "job.zarr" / "checkpoints"))
            seen["names"] = ck.names()
            seen["latest"] = ck.latest().iteration

    run(ToyNMF(3), nonnegative_matrix(), seed=0, max_iter=8, tol=0, out=tmp_path / "job.zarr",
        checkpoint_every=2, callback=callback)
    # checkpoints at 2, 4, 6 were written before iteration 7's callback; two are kept
    assert seen == {"names": ["ckpt-00000004", "ckpt-00000006"], "latest": 6}


def test_resume_after_crash_is_bitwise_equal(tmp_path):
    X = nonnegative_matrix()
    reference = _result_arrays(run(ToyNMF(3), X, seed=5, max_iter=12, tol=0))
    out = tmp_path / "job.zarr"
    with pytest.raises(Crash):
        run(ToyNMF(3), X, seed=5, max_iter=12, tol=0, out=out, checkpoint_every=3,
            callback=crash_at(8))
    meta = zarr.open_group(str(out), mode="r").attrs["dmf"]
    assert meta["status"] == "running"
    resumed = run(ToyNMF(3), X, seed=5, max_iter=12, tol=0, out=out, checkpoint_every=3)
    assert resumed.resumed_from == 6
    got = _result_arrays(resumed)
    assert got["W"].tobytes() == reference["W"].tobytes()
    assert got["H"].tobytes() == reference["H"].tobytes()
    assert len(resumed.loss_history) == 12


def test_checkpoints_by_elapsed_time(tmp_path):
    seen = {}

    def callback(it, state, stats):
        if it == 5:
            latest = Checkpoints(Location.parse(tmp_path / "job.zarr" / "checkpoints")).latest()
            seen["latest"] = latest.iteration

    # every 100 iterations would never trigger here; any elapsed time does
    run(ToyNMF(3), nonnegative_matrix(), seed=0, max_iter=6, tol=0, out=tmp_path / "job.zarr",
        checkpoint_every=100, checkpoint_seconds=1e-9, callback=callback)
    assert seen == {"latest": 4}


def test_complete_job_is_not_rerun(tmp_path):
    X = nonnegative_matrix()
    out = tmp_path / "job.zarr"
    first = run(ToyNMF(3), X, seed=0, max_iter=3, tol=0, out=out)
    again = run(ToyNMF(3), X, seed=0, max_iter=3, tol=0, out=out,
                callback=crash_at(1))  # would raise if a step ran
    assert again.skipped and not first.skipped
    assert np.asarray(again.arrays["H"]).tobytes() == np.asarray(first.arrays["H"]).tobytes()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"solver": ToyNMF(4)}, "parameters.k"),
        ({"solver": ToyNMF(3, jitter=1e-3)}, "parameters.jitter"),
        ({"seed": 9}, "seed"),
        ({"X": nonnegative_matrix(seed=1)}, "input.token"),
        ({"X": nonnegative_matrix(chunks=40)}, "input.chunks"),
    ],
)
def test_checkpoint_of_another_job_is_refused(tmp_path, change, named):
    base = {"solver": ToyNMF(3), "X": nonnegative_matrix(), "seed": 0}
    out = tmp_path / "job.zarr"
    with pytest.raises(Crash):
        run(base["solver"], base["X"], seed=base["seed"], max_iter=10, tol=0, out=out,
            checkpoint_every=2, callback=crash_at(5))
    other = {**base, **change}
    with pytest.raises(CheckpointMismatch) as info:
        run(other["solver"], other["X"], seed=other["seed"], max_iter=10, tol=0, out=out)
    assert named in str(info.value) and "--no-resume" in str(info.value)
    # starting over is allowed when asked, and the output is then the new job's
    r = run(other["solver"], other["X"], seed=other["seed"], max_iter=2, tol=0, out=out,
            resume=False)
    assert r.n_iter == 2 and r.resumed_from is None


def test_other_algorithm_is_refused(tmp_path):
    out = tmp_path / "job.zarr"
    run(ToyNMF(3), nonnegative_matrix(), seed=0, max_iter=2, tol=0, out=out)
    other = ToyNMF(3)
    other.name = "toy-other"
    with pytest.raises(CheckpointMismatch, match="algorithm"):
        run(other, nonnegative_matrix(), seed=0, max_iter=2, tol=0, out=out)


def test_no_resume_starts_over(tmp_path):
    X = nonnegative_matrix()
    out = tmp_path / "job.zarr"
    with pytest.raises(Crash):
        run(ToyNMF(3), X, seed=0, max_iter=10, tol=0, out=out, checkpoint_every=2,
            callback=crash_at(5))
    r = run(ToyNMF(3), X, seed=0, max_iter=10, tol=0, out=out, resume=False)
    assert r.resumed_from is None and r.n_iter == 10


def test_output_that_is_a_matrix_is_never_overwritten(tmp_path):
    import dmf

    target = tmp_path / "X.zarr"
    dmf.save_matrix(np.ones((4, 4)), target)
    with pytest.raises(StoreError, match="not a dmf result"):
        run(ToyNMF(2), nonnegative_matrix(), seed=0, max_iter=2, tol=0, out=target,
            resume=False)
    assert np.array_equal(dmf.open_matrix(target).compute(), np.ones((4, 4)))


# -- lock ----------------------------------------------------------------------

def test_second_writer_is_refused_naming_the_holder(tmp_path):
    holder = OutputLock(Location.parse(tmp_path / "job.zarr"))
    with holder:
        with pytest.raises(OutputLocked) as info:
            run(ToyNMF(2), nonnegative_matrix(), seed=0, max_iter=2, tol=0,
                out=tmp_path / "job.zarr")
    message = str(info.value)
    assert f"pid {os.getpid()}" in message and socket.gethostname() in message


def test_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    out = tmp_path / "job.zarr"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"host": socket.gethostname(), "pid": dead.pid, "started": "then",
              "token": "x", "expires": time.time() + 3600}
    (out / LOCK_NAME).write_text(json.dumps(record))
    r = run(ToyNMF(2), nonnegative_matrix(), seed=0, max_iter=2, tol=0, out=out)
    assert r.n_iter == 2
    assert "stale lock" in caplog.text and f"process {dead.pid}" in caplog.text
    assert not (out / LOCK_NAME).exists()


def test_lock_with_an_expired_lease_is_taken_over(tmp_path, caplog):
    out = tmp_path / "job.zarr"
    out.mkdir()
    record = {"host": "elsewhere.example", "pid": 1, "started": "then", "token": "x",
              "expires": time.time() - 1}
    (out / LOCK_NAME).write_text(json.dumps(record))
    run(ToyNMF(2), nonnegative_matrix(), seed=0, max_iter=2, tol=0, out=out)
    assert "lease expired" in caplog.text


def test_live_lock_on_another_host_is_respected(tmp_path):
    out = tmp_path / "job.zarr"
    out.mkdir()
    record = {"host": "elsewhere.example", "pid": 1, "started": "2026-01-01T00:00:00",
              "token": "x", "expires": time.time() + 60}
    (out / LOCK_NAME).write_text(json.dumps(record))
    with pytest.raises(OutputLocked, match=r"elsewhere\.example"):
        run(ToyNMF(2), nonnegative_matrix(), seed=0, max_iter=2, tol=0, out=out)


def test_lease_is_renewed_while_running(tmp_path):
    lock = OutputLock(Location.parse(tmp_path / "job.zarr"), lease=0.3)
    with lock:
        first = json.loads((tmp_path / "job.zarr" / LOCK_NAME).read_text())["expires"]
        time.sleep(0.5)
        later = json.loads((tmp_path / "job.zarr" / LOCK_NAME).read_text())["expires"]
    assert later > first


# -- progress ------------------------------------------------------------------

def test_progress_shows_iteration_loss_rate_and_eta(capsys):
    run(ToyNMF(2), nonnegative_matrix(), seed=0, max_iter=3, tol=0, progress=True)
    err = capsys.readouterr().err
    assert "iter 1/3" in err and "loss" in err and "s/iter" in err and "ETA" in err


def test_progress_is_silent_when_disabled(capsys):
    run(ToyNMF(2), nonnegative_matrix(), seed=0, max_iter=3, tol=0, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_redraws_in_place_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    p = Progress("x", 10, stream=stream)
    p.update(1, 1.0, None, 0.1)
    p.update(2, 0.5, 0.5, 0.1)
    p.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1


def test_a_signal_in_a_nested_runs_critical_section_reaches_the_outer_run():
    """A run inside a run (NMF's SVD start, a job's step) shares the outer
    guard: a signal that arrives in the inner run's critical section is
    raised when the inner guard exits, not dropped with it."""
    before = signal.getsignal(signal.SIGINT)
    with SignalGuard() as outer:
        with pytest.raises(StopRequested) as stopped:
            with SignalGuard() as inner:
                assert inner is outer
                with inner.critical():
                    signal.raise_signal(signal.SIGINT)  # only marks the stop pending
                assert outer.pending == signal.SIGINT
        assert stopped.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before
