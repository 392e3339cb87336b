"""``dmf run pipelines/demo.yaml`` for real: against ``dask scheduler`` and
``dask worker`` processes on 127.0.0.1, with a worker SIGKILLed mid-run, with
the job process itself SIGKILLed mid-run (and a second run refused while it
holds the job), and a job that reads and writes ``s3://`` on a moto server.

The demo is scaled down with ``--set`` (20000 x 100 instead of 100000 x
300) so the file takes seconds, not minutes; the spec is the shipped one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import dmf
from dmf.cli import main
from dmf.engine.output import JobOutput
from dmf.jobs import run_job
from dmf.jobs.record import JobRoot
from dmf.store.location import Location

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "pipelines" / "demo.yaml"


def demo_args(root: Path) -> list[str]:
    small = {"root": str(root), "steps.X.shape": "20000x100", "steps.N.shape": "20000x100",
             "steps.nmf.max_iter": "40", "steps.nmf.tol": "0", "checkpoint.every": "5",
             "retries.delay": "1"}
    return [arg for key, value in small.items() for arg in ("--set", f"{key}={value}")]


def start_job(cluster, root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dmf", "run", str(DEMO), "--scheduler", cluster.address,
         *demo_args(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def wait_for_nmf_checkpoint(proc: subprocess.Popen, root: Path, timeout: float = 120) -> None:
    output = JobOutput(Location.parse(root / "nmf"))
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the job ended ({proc.returncode}) before an NMF checkpoint:"
                                 f"\n{proc.stdout.read()}\n{proc.stderr.read()}")
        if (root / "nmf" / "checkpoints").exists() and output.checkpoints.latest() is not None:
            return
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("no NMF checkpoint in time")
        time.sleep(0.05)


def factors(root: Path) -> dict[str, bytes]:
    group = zarr.open_group(str(root / "nmf"), mode="r")
    assert group.attrs["dmf"]["status"] == "complete"
    return {name: np.asarray(group[name][...]).tobytes() for name in ("W", "H")}


def last_run(root: Path) -> dict:
    return JobRoot(Location.parse(root), "demo").meta()["runs"][-1]


@pytest.fixture(scope="module")
def killed_worker_run(_process_cluster_session, tmp_path_factory):
    """The demo on the process cluster, worker 1 SIGKILLed during the NMF."""
    cluster = _process_cluster_session
    cluster.heal()
    root = tmp_path_factory.mktemp("demo-worker-killed") / "demo"
    proc = start_job(cluster, root)
    try:
        wait_for_nmf_checkpoint(proc, root)
        cluster.kill_worker(1)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        cluster.heal()
    assert proc.returncode == 0, f"{out}\n{err}"
    return root, out


def test_demo_on_real_processes_survives_a_killed_worker(killed_worker_run):
    root, out = killed_worker_run
    record = last_run(root)
    assert record["status"] == "complete" and record["scheduler"].startswith("tcp://127.0.0.1")
    assert [s["name"] for s in record["steps"]] == ["X", "svd", "N", "nmf", "report"]
    assert "job demo: complete" in out
    # the SVD found the planted spectrum; the NMF ran all its iterations
    planted = zarr.open_array(str(root / "X"), mode="r").attrs["dmf"]["generator"]
    S = dmf.load(root / "svd").S
    np.testing.assert_allclose(S, planted["singular_values"][:5], rtol=2e-3)
    nmf = dmf.load(root / "nmf")
    assert nmf.n_iter == 40 and np.all(np.diff(nmf.loss_history) <= 1e-6 * nmf.loss_history[0])
    assert "nmf" in (root / "report.md").read_text()


def test_killed_job_is_locked_while_alive_and_resumes_to_the_same_factors(
        process_cluster, killed_worker_run, tmp_path, capsys):
    root = tmp_path / "demo"
    proc = start_job(process_cluster, root)
    try:
        wait_for_nmf_checkpoint(proc, root)
        # a second run of the same job while the first holds it
        assert main(["run", str(DEMO), "--scheduler", process_cluster.address,
                     *demo_args(root)]) == 3
        assert "locked by another job" in capsys.readouterr().err
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert JobRoot(Location.parse(root), "demo").meta()["steps"]["nmf"]["status"] == "running"

    assert main(["run", str(DEMO), "--scheduler", process_cluster.address,
                 *demo_args(root)]) == 0
    record = last_run(root)
    actions = {s["name"]: s["action"] for s in record["steps"]}
    assert actions == {"X": "skipped", "svd": "skipped", "N": "skipped", "nmf": "resumed",
                       "report": "run"}
    assert dmf.load(root / "nmf").attrs["resumed_from"] > 0
    assert factors(root) == factors(killed_worker_run[0])


def test_job_reads_and_writes_s3(s3, tmp_path):
    root = f"{s3.url}/jobs/tiny"
    source = f"{s3.url}/data/N.zarr"
    dmf.save_matrix(np.random.default_rng(0).random((200, 15)), source,
                    storage_options=s3.storage_options)
    spec = tmp_path / "s3.yaml"
    spec.write_text(f"""\
job: s3-tiny
root: {root}
storage_options: {json.dumps(s3.storage_options)}
cluster: {{workers: 0}}
inputs:
  N: {source}
steps:
  - step: nmf
    x: N
    k: 3
    max_iter: 5
  - step: report
""")
    first = run_job(spec, quiet=True)
    assert [s["action"] for s in first["steps"]] == ["run", "run"]
    second = run_job(spec, quiet=True)
    assert [s["action"] for s in second["steps"]] == ["skipped"] * 2
    nmf = dmf.load(f"{root}/nmf", storage_options=s3.storage_options)
    assert nmf.W.shape == (200, 3) and nmf.n_iter == 5
    location = Location.parse(f"{root}/report.md", s3.storage_options)
    fs, path = location.filesystem()
    assert "| nmf | nmf | run |" in fs.cat_file(path).decode()
    runs = JobRoot(Location.parse(root, s3.storage_options), "s3-tiny").meta()["runs"]
    assert [r["status"] for r in runs] == ["complete", "complete"]
