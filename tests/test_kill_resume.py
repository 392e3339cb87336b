"""Kill the ``dmf`` command at chosen moments and check that running it again
finishes with bitwise the same result as a run that was never interrupted.

The moments are fail points in the engine (``dmf.engine.faults``): the
process stops there and waits, the test SIGKILLs it (or sends SIGINT /
SIGTERM), then reruns the same command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import _procs
import numpy as np
import pytest
import zarr
from _svd_runs import result_bytes, write_slow_matrix

import dmf
from dmf.engine.lock import LOCK_NAME

K = 3


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    return write_slow_matrix(tmp_path_factory.mktemp("kill") / "X.zarr")


def command(x, out) -> list[str]:
    return [sys.executable, "-m", "dmf", "--workers", "0", "svd", str(x), str(out), "-k",
            str(K), "--method", "power", "--seed", "3", "--checkpoint-every", "3",
            "--progress"]


def run_cli(x, out, **env):
    return subprocess.run(command(x, out), capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def start_until(x, out, failpoint: str, marker, **env) -> subprocess.Popen:
    """Start the command and return once it stands at ``failpoint``."""
    return _procs.start_until_failpoint(command(x, out), failpoint, marker, **env)


@pytest.fixture(scope="module")
def reference(matrix, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "svd.zarr"
    done = run_cli(matrix, out)
    assert done.returncode == 0, done.stderr
    return result_bytes(out)


KILL_POINTS = [
    ("iteration:1", None),            # before any checkpoint: starts over
    ("iteration:8", 6),               # between checkpoints
    ("checkpoint-arrays:1", None),    # while writing the first checkpoint: no pointer yet
    ("checkpoint-arrays:2", 3),       # while writing checkpoint 6 (arrays, no marker)
    ("checkpoint-complete:2", 3),     # checkpoint 6 complete, pointer not yet moved
    ("checkpoint-pointer:2", 6),      # pointer moved, old ones not yet pruned
    ("finalize:1", "last"),           # converged and checkpointed, result not yet written
    ("result-arrays:1", "last"),      # final arrays written, result not yet complete
    ("result-complete:1", "complete"),  # result complete, lock not yet released
]


def test_the_kill_storm_covers_every_fail_point():
    """A fail point added to the engine without a kill test here fails this."""
    names = set()
    for path in (Path(dmf.__file__).parent).rglob("*.py"):
        names.update(re.findall(r'\bfailpoint\("([a-z-]+)"\)', path.read_text()))
    assert names == {point.split(":")[0] for point, _ in KILL_POINTS}


def test_the_reliability_page_names_tests_that_make_chaos_runs():
    """Every test docs/guide/reliability.md names exists and is in make chaos."""
    repo = Path(__file__).resolve().parent.parent
    page = (repo / "docs" / "guide" / "reliability.md").read_text()
    makefile = (repo / "Makefile").read_text()
    named, current = [], None
    for path, name in re.findall(r"`(tests/\w+\.py)?::(\w+)`", page):
        current = path or current
        named.append((current, name))
    assert len(named) >= 30
    for path, name in named:
        assert f"def {name}(" in (repo / path).read_text(), (path, name)
        assert f"{path}::{name}" in makefile or f"{path} " in makefile, (path, name)


@pytest.mark.parametrize(("failpoint", "resumes_from"), KILL_POINTS)
def test_sigkill_then_rerun_is_bitwise_equal(matrix, reference, tmp_path, failpoint,
                                             resumes_from):
    out = tmp_path / "svd.zarr"
    proc = start_until(matrix, out, failpoint, tmp_path / "marker")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    status = "complete" if resumes_from == "complete" else "running"
    assert zarr.open_group(str(out), mode="r").attrs["dmf"]["status"] == status

    # a kill never looks like damage: the rerun would stop (exit 2) if it did
    again = subprocess.run([*command(matrix, out), "--damaged-checkpoints", "stop"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "damaged" not in again.stderr
    # the dead process's lock was taken over, with a warning
    assert "stale lock" in again.stderr
    if resumes_from is None:
        assert "resuming" not in again.stderr
    elif resumes_from == "complete":
        assert "already complete" in again.stderr
    elif resumes_from == "last":
        assert "resuming from iteration" in again.stderr
    else:
        assert f"resuming from iteration {resumes_from} " in again.stderr
    assert result_bytes(out) == reference
    assert not (out / "checkpoints").exists()


@pytest.fixture(scope="module")
def other_result(matrix, tmp_path_factory):
    """A complete result of another job (seed 4) and its bytes."""
    out = tmp_path_factory.mktemp("other") / "svd.zarr"
    done = subprocess.run([*command(matrix, out)[:-1], "--seed", "4"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out, result_bytes(out)


@pytest.mark.parametrize(("failpoint", "kept"), [
    ("result-arrays:1", "old"),       # the new arrays written beside, not yet swapped in
    ("result-complete:1", "new"),     # swapped in
])
def test_killed_no_resume_run_never_damages_a_complete_result(matrix, reference, other_result,
                                                              tmp_path, failpoint, kept):
    old_out, old_bytes = other_result
    out = tmp_path / "svd.zarr"
    shutil.copytree(old_out, out)
    proc = _procs.start_until_failpoint([*command(matrix, out), "--no-resume"], failpoint,
                                        tmp_path / "marker")
    proc.kill()
    proc.wait(timeout=30)
    # the old result whole until the new one is complete, then the new one whole
    assert result_bytes(out) == (old_bytes if kept == "old" else reference)
    again = subprocess.run([*command(matrix, out), "--no-resume"], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert result_bytes(out) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marker", "svd.zarr"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_iteration_checkpoints_then_exits(matrix, reference, tmp_path, sig, code):
    out = tmp_path / "svd.zarr"
    proc = start_until(matrix, out, "iteration:8", tmp_path / "marker")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "after checkpointing iteration 7" in err
    # the state of the last finished iteration (7) was saved, so the rerun
    # resumes there rather than at the periodic checkpoint (6)
    again = run_cli(matrix, out)
    assert again.returncode == 0, again.stderr
    assert "resuming from iteration 7 " in again.stderr
    assert result_bytes(out) == reference


def test_signal_during_checkpoint_write_waits_for_it(matrix, reference, tmp_path):
    out = tmp_path / "svd.zarr"
    proc = start_until(matrix, out, "checkpoint-arrays:2", tmp_path / "marker",
                       DMF_FAILPOINT_SLEEP="1.5")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    # the interrupted write was finished, not torn: the pointer is on it
    pointer = zarr.open_group(str(out / "checkpoints"), mode="r").attrs["dmf"]
    assert pointer["latest"] == "ckpt-00000006"
    again = run_cli(matrix, out)
    assert "resuming from iteration 6 " in again.stderr
    assert result_bytes(out) == reference


def test_no_resume_starts_over(matrix, reference, tmp_path):
    out = tmp_path / "svd.zarr"
    proc = start_until(matrix, out, "iteration:8", tmp_path / "marker")
    proc.kill()
    proc.wait()
    fresh = subprocess.run([*command(matrix, out), "--no-resume"], capture_output=True,
                           text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    assert "resuming" not in fresh.stderr
    assert result_bytes(out) == reference


def test_checkpoint_of_another_job_exits_3(matrix, tmp_path):
    out = tmp_path / "svd.zarr"
    proc = start_until(matrix, out, "iteration:5", tmp_path / "marker")
    proc.kill()
    proc.wait()
    other = subprocess.run([*command(matrix, out)[:-1], "--seed", "4"], capture_output=True,
                           text=True, timeout=300)
    assert other.returncode == 3
    assert "seed: 3 (stored) vs 4 (this job)" in other.stderr
    errors = [line for line in other.stderr.splitlines() if line.startswith("dmf: error:")]
    assert len(errors) == 1 and "Traceback" not in other.stderr


def test_second_job_on_same_output_exits_3(matrix, tmp_path):
    out = tmp_path / "svd.zarr"
    first = start_until(matrix, out, "iteration:5", tmp_path / "marker")
    try:
        second = run_cli(matrix, out)
        assert second.returncode == 3
        assert f"pid {first.pid}" in second.stderr and "locked" in second.stderr
    finally:
        first.kill()
        first.wait()


# -- a job frozen by SIGSTOP ---------------------------------------------------

def _frozen(matrix, out, marker) -> subprocess.Popen:
    """The command, frozen by SIGSTOP just before its 5th iteration (after
    checkpoint 3), its lease made to look long expired."""
    proc = start_until(matrix, out, "iteration:5", marker, DMF_FAILPOINT_SLEEP="2")
    proc.send_signal(signal.SIGSTOP)
    record = json.loads((out / LOCK_NAME).read_text())
    assert record["pid"] == proc.pid
    (out / LOCK_NAME).write_text(json.dumps({**record, "expires": time.time() - 600}))
    return proc


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


def test_a_frozen_job_keeps_its_lock_and_finishes_when_continued(matrix, reference, tmp_path):
    out = tmp_path / "svd.zarr"
    frozen = _frozen(matrix, out, tmp_path / "marker")
    try:
        second = run_cli(matrix, out)  # same host: a live pid keeps its lock past its lease
        assert second.returncode == 3, second.stderr
        assert f"pid {frozen.pid}" in second.stderr and "locked" in second.stderr
    finally:
        frozen.send_signal(signal.SIGCONT)
    _, err = frozen.communicate(timeout=120)
    assert frozen.returncode == 0, err
    assert result_bytes(out) == reference


def test_a_frozen_job_that_lost_its_lock_writes_nothing_more(matrix, tmp_path):
    """Frozen past its lease, its lock taken by a job on another host (one
    host cannot run that job, so the test writes its lock record as it
    would): continued, it stops with exit 3 and writes nothing."""
    out = tmp_path / "svd.zarr"
    frozen = _frozen(matrix, out, tmp_path / "marker")
    try:
        taken = {"host": "elsewhere", "pid": 1, "token": "other",
                 "started": "2000-01-01T00:00:00+00:00", "expires": time.time() + 3600}
        (out / LOCK_NAME).write_text(json.dumps(taken))
        before = _files(out)
    finally:
        frozen.send_signal(signal.SIGCONT)
    _, err = frozen.communicate(timeout=120)
    assert frozen.returncode == 3, err
    assert "this job lost its lock" in err and "Traceback" not in err
    assert _files(out) == before  # no checkpoint 6, no result
    assert json.loads((out / LOCK_NAME).read_text()) == taken


# -- rank selection: starting over never damages a complete table -------------

def test_killed_no_resume_rank_never_damages_a_complete_table(tmp_path):
    x = tmp_path / "N.zarr"
    rng = np.random.default_rng(0)
    dmf.save_matrix(rng.random((120, 3)) @ rng.random((3, 20)), x)
    out = tmp_path / "rank.zarr"

    def rank(ks, **env):
        return [sys.executable, "-m", "dmf", "--workers", "0", "rank", str(x), "--k", ks,
                "--method", "nmf", "--n-iter", "20", "--out", str(out), "--json"]

    done = subprocess.run(rank("2:3"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    old = dmf.load(out)
    # a start over with other ks, killed in its second k's fit (iteration 25 of 20 + 20)
    proc = _procs.start_until_failpoint([*rank("2:4"), "--no-resume"], "iteration:25",
                                        tmp_path / "marker")
    proc.kill()
    proc.wait(timeout=30)
    kept = dmf.load(out)
    assert kept.table["k"].tolist() == [2, 3] and kept.table.tobytes() == old.table.tobytes()
    assert zarr.open_group(str(out), mode="r").attrs["dmf"]["status"] == "complete"

    again = subprocess.run([*rank("2:4"), "--no-resume"], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    fresh = dmf.select_rank(str(x), range(2, 5), method="nmf", n_iter=20)
    assert dmf.load(out).table.tobytes() == fresh.table.tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["N.zarr", "marker", "rank.zarr"]
