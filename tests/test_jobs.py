"""``dmf run JOB.yaml`` in this process (threads, no cluster): the spec is
checked with line numbers before any work, steps are skipped, rerun or
replaced by fingerprint, the run record lands in the root, and foreign or
locked outputs are refused with the documented exit codes.

The real-cluster runs (a worker killed, the job killed, S3) are in
test_jobs_cluster.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

import dmf
from dmf.cli import main
from dmf.engine.lock import OutputLock
from dmf.jobs import load_spec, run_job
from dmf.jobs.record import JobRoot
from dmf.store.location import Location

REPO = Path(__file__).resolve().parent.parent

TINY = """\
job: tiny
root: {root}
cluster: {{workers: 0}}
retries: {{attempts: 1, delay: 0}}
steps:
  - step: generate
    name: X
    kind: lowrank
    shape: 400x30
    rank: 4
    noise: 0.01
    seed: 2
  - step: svd
    x: X
    k: 3
  - step: nmf
    x: N
    k: 3
    max_iter: 20
  - step: report
inputs:
  N: {matrix}
"""


@pytest.fixture
def job(tmp_path) -> Path:
    matrix = tmp_path / "N.zarr"
    dmf.save_matrix(np.random.default_rng(0).random((300, 20)), matrix)
    path = tmp_path / "job.yaml"
    path.write_text(TINY.format(root=tmp_path / "out", matrix=matrix))
    return path


def actions(record) -> dict[str, str]:
    return {s["name"]: s["action"] for s in record["steps"]}


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# -- the spec -----------------------------------------------------------------

BASE = "job: j\nroot: {root}\ninputs: {{X: x.zarr}}\nsteps:\n"


@pytest.mark.parametrize(("steps", "line", "message"), [
    ("  - step: svd\n    x: X\n    k: 0\n", 7, "steps[0].k: must be positive, got 0"),
    ("  - step: svd\n    x: X\n    k: 2\n    oops: 1\n", 8,
     "steps[0].oops: unknown key for a svd step"),
    ("  - step: svd\n    x: Y\n    k: 2\n", 6, "'Y' is neither an input nor an earlier step"),
    ("  - step: nmf\n    x: X\n", 5, "needs k"),  # svd: k optional (issue 10)
    ("  - step: svd\n    x: X\n    k: 2\n    method: fast\n", 8,
     "method: must be one of randomized"),
    ("  - step: nmf\n    x: X\n    k: 2\n    loss: hinge\n", 8, "unknown NMF loss 'hinge'"),
    ("  - step: nmf\n    x: X\n    k: 2\n    solver: [mu]\n", 8, "must be a single value"),
    ("  - step: svd\n    x: X\n    k: 2\n  - step: svd\n    x: X\n    k: 3\n", 8,
     "the name 'svd' is taken"),
    ("  - step: fly\n", 5, "steps[0].step: must be one of generate, ingest"),
    ("  - step: svd\n    x: X\n    k: 2\n    no_cache: yes please\n", 8,
     "must be true or false"),
])
def test_bad_step_is_refused_with_its_line_before_any_work(tmp_path, capsys, steps, line,
                                                           message):
    path = write(tmp_path, BASE.format(root=tmp_path / "out") + steps)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dmf: error: {path}:{line}: "), err
    assert message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing started


@pytest.mark.parametrize(("text", "line", "message"), [
    ("job: j\nroot: r\nsteps: []\n", 3, "steps: must be a non-empty list"),
    ("job: j\nroot: r\nsteps: [\n", 4, "not valid YAML"),
    ("job: j\nroot: r\ncluster:\n  workrs: 2\nsteps: [{step: report}]\n", 4,
     "cluster.workrs: unknown key in cluster"),
    ("job: j\nroot: r\ncluster: {workers: two}\nsteps: [{step: report}]\n", 3,
     "cluster.workers: must be an integer >= 0"),
    ("job: j\nroot: r\nretries: {delay: -1}\nsteps: [{step: report}]\n", 3,
     "retries.delay: must be a number of seconds >= 0"),
    ("job: j\nroot: r\nroot: s\nsteps: [{step: report}]\n", 3, "root is given twice"),
    ("root: r\nsteps: [{step: report}]\n", 1, "the job needs job: a name"),
    ("- a list\n", 1, "a job spec is a mapping"),
])
def test_bad_job_is_refused_with_its_line(tmp_path, capsys, text, line, message):
    path = write(tmp_path, text)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}: " in err and message in err, err


def test_missing_spec_and_bad_override_exit_2(tmp_path, capsys, job):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: cannot read the job spec" in capsys.readouterr().err
    assert main(["run", str(job), "--set", "steps.nope.k=3"]) == 2
    assert "no step named 'nope'" in capsys.readouterr().err
    assert main(["run", str(job), "--set", "steps.svd.k=0"]) == 2
    assert "steps[1].k: must be positive, got 0" in capsys.readouterr().err


def test_dry_run_prints_the_command_lines_and_touches_nothing(tmp_path, capsys, job):
    assert main(["run", str(job), "--dry-run", "--scheduler", "tcp://10.255.0.1:8786",
                 "--set", "steps.svd.k=2"]) == 0
    out = capsys.readouterr().out
    assert f"dmf svd {tmp_path}/out/X {tmp_path}/out/svd --k 2" in out
    assert "tcp://10.255.0.1:8786" in out
    assert not (tmp_path / "out").exists()


def test_every_shipped_pipeline_is_a_valid_spec():
    specs = sorted((REPO / "pipelines").glob("*.yaml"))
    assert {p.stem for p in specs} >= {"demo", "recommender", "topics", "nightly-svd"}
    for path in specs:
        spec = load_spec(path)
        assert spec.steps and spec.steps[-1].kind == "report", path


# -- running ------------------------------------------------------------------

def test_second_run_skips_complete_steps_and_records_both(job, tmp_path, capsys):
    first = run_job(job)
    assert first["status"] == "complete" and first["exit_code"] == 0
    assert actions(first) == {"X": "run", "svd": "run", "nmf": "run", "report": "run"}
    # the report shows the run finished (rewritten once its record was final)
    page = (tmp_path / "out" / "report.html").read_text()
    assert f"<td>{first['run_id']}</td><td>complete</td><td>0</td>" in page
    assert "<td>running</td>" not in page
    second = run_job(job)
    assert set(actions(second).values()) == {"skipped"}
    out = capsys.readouterr().out
    assert "job tiny: complete" in out and "skipped" in out

    root = JobRoot(Location.parse(tmp_path / "out"), "tiny")
    meta = root.meta()
    assert [r["run_id"] for r in meta["runs"]] == [first["run_id"], second["run_id"]]
    for key in ("started", "ended", "seconds", "host", "scheduler", "spec_sha256"):
        assert meta["runs"][-1][key] is not None, key
    assert set(meta["runs"][-1]["versions"]) >= {"dmf", "dask", "zarr", "numpy"}
    assert meta["steps"]["svd"]["status"] == "complete"
    svd = dmf.load(tmp_path / "out" / "svd")
    recorded = meta["steps"]["svd"]["facts"][str(tmp_path / "out" / "svd")]
    np.testing.assert_allclose(recorded["singular_values"], svd.S)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| svd | svd | run |" in report and "singular_values" in report
    assert "data:image/png;base64," in (tmp_path / "out" / "report.html").read_text()
    assert dmf.store.info.describe(tmp_path / "out")["kind"] == "job"


def test_changed_spec_replaces_a_result_only_once_the_new_one_is_complete(job, tmp_path):
    run_job(job, quiet=True)
    old = dmf.load(tmp_path / "out" / "svd")
    record = run_job(job, overrides=["steps.svd.k=2"], quiet=True)
    assert actions(record) == {"X": "skipped", "svd": "replaced", "nmf": "skipped",
                               "report": "rerun"}
    new = dmf.load(tmp_path / "out" / "svd")
    assert new.S.shape == (2,) and old.S.shape == (3,)
    np.testing.assert_allclose(new.S, old.S[:2], rtol=1e-6)
    assert not (tmp_path / "out" / "svd.next").exists()


def test_changed_input_reruns_what_reads_it(job, tmp_path):
    run_job(job, quiet=True)
    dmf.save_matrix(np.random.default_rng(1).random((300, 20)), tmp_path / "N.zarr",
                    overwrite=True)
    assert actions(run_job(job, quiet=True)) == {"X": "skipped", "svd": "skipped",
                                                 "nmf": "replaced", "report": "rerun"}


def test_second_run_while_one_holds_the_job_exits_3(job, tmp_path, capsys):
    with OutputLock(Location.parse(tmp_path / "out")):
        assert main(["run", str(job)]) == 3
    assert "locked by another job" in capsys.readouterr().err
    assert not (tmp_path / "out" / "X").exists()


def test_foreign_root_and_foreign_outputs_are_never_overwritten(job, tmp_path, capsys):
    # the root holds a matrix
    dmf.save_matrix(np.ones((3, 3)), tmp_path / "out")
    assert main(["run", str(job)]) == 2
    assert "not the output of a dmf job" in capsys.readouterr().err
    np.testing.assert_array_equal(dmf.open_matrix(tmp_path / "out").compute(), 1.0)
    # the root is another job's
    other = tmp_path / "other.yaml"
    other.write_text(job.read_text().replace("job: tiny", "job: other")
                     .replace(str(tmp_path / "out"), str(tmp_path / "out2")))
    run_job(other, overrides=["steps.nmf.max_iter=2"], quiet=True)
    assert main(["run", str(job), "--set", f"root={tmp_path / 'out2'}"]) == 3
    assert "holds the output of job 'other'" in capsys.readouterr().err
    # a step's output is a store this job did not make
    dmf.save_matrix(np.ones((3, 3)), tmp_path / "mine.zarr")
    assert main(["run", str(job), "--set", f"steps.svd.out={tmp_path / 'mine.zarr'}",
                 "--set", f"root={tmp_path / 'out3'}"]) == 2
    assert "step svd: " in (err := capsys.readouterr().err) and "not a dmf result" in err
    np.testing.assert_array_equal(dmf.open_matrix(tmp_path / "mine.zarr").compute(), 1.0)
    record = JobRoot(Location.parse(tmp_path / "out3"), "tiny").meta()["runs"][-1]
    assert record["status"] == "failed" and record["exit_code"] == 2


def test_unreachable_scheduler_is_retried_then_reported_in_one_line(job, tmp_path, capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        code = main(["run", str(job), "--scheduler", "tcp://127.0.0.1:1",
                     "--set", "retries.attempts=1"])
    out, err = capsys.readouterr()
    assert code == 4  # an environment failure (docs/design.md, exit codes)
    assert "could not reach the Dask scheduler at tcp://127.0.0.1:1" in err, err
    assert out.count("retrying in 0 s") == 1, out  # one retry (tenacity), no wait: delay 0
    assert "Traceback" not in err
    record = JobRoot(Location.parse(tmp_path / "out"), "tiny").meta()["runs"][-1]
    assert record["status"] == "failed" and record["steps"] == []
    group = zarr.open_group(tmp_path / "out", mode="r")
    assert group.attrs["dmf"]["steps"]["X"]["status"] == "running"


def test_a_step_calls_its_commands_python_function_not_the_cli(tmp_path):
    import subprocess
    import sys

    import _procs

    from dmf.jobs.steps import KINDS

    assert all(callable(kind.run) for name, kind in KINDS.items() if name != "report")
    path = tmp_path / "job.yaml"
    path.write_text(f"job: u\nroot: {tmp_path / 'out'}\ncluster: {{workers: 0}}\nsteps:\n"
                    "  - {step: generate, name: X, shape: 200x20, rank: 3}\n"
                    "  - {step: svd, x: X, k: 3, method: gram, compute_u: false}\n")
    # checking a spec builds the commands' parsers without dmf.cli (no cli <-> jobs circle)
    probe = (f"import sys; from dmf.jobs import load_spec; load_spec({str(path)!r}); "
             "print('dmf.cli' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, env=_procs.child_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    # a flag with a --no- form is a boolean key, passed as a parameter
    record = run_job(path, quiet=True)
    assert record["status"] == "complete"
    result = dmf.load(tmp_path / "out" / "svd")
    assert result.U is None and result.S.shape == (3,)
    assert "--no-compute-u" in load_spec(path).steps[1].argv


def test_a_changed_step_says_what_changed_from_its_recorded_identity(tmp_path, caplog):
    import logging

    path = tmp_path / "job.yaml"
    path.write_text(f"job: i\nroot: {tmp_path / 'out'}\ncluster: {{workers: 0}}\nsteps:\n"
                    "  - {step: generate, name: X, shape: 200x20, rank: 3}\n"
                    "  - {step: svd, x: X, k: 3}\n")
    run_job(path, quiet=True)
    stored = JobRoot(Location.parse(tmp_path / "out"), "i").step_record("svd")
    assert stored["identity"]["params"] == {"k": 3}
    with caplog.at_level(logging.INFO, logger="dmf.jobs"):
        record = run_job(path, overrides=["steps.svd.k=2"], quiet=True)
    assert actions(record) == {"X": "skipped", "svd": "replaced"}
    assert "step svd changed since its last run: params.k: 3 (stored) vs 2 (this job)" \
        in caplog.text


# -- the shipped pipelines, scaled down ---------------------------------------

SMALL = {
    "recommender.yaml": ["steps.ratings.users=600", "steps.ratings.items=120",
                         "steps.ratings.density=0.2", "steps.ratings.rank=3",
                         "steps.als.max_iter=5", "steps.als.k=3"],
    "topics.yaml": ["steps.counts.shape=400x60", "steps.topics.max_iter=20"],
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shipped_pipeline_runs(tmp_path, name):
    overrides = [f"root={tmp_path / 'out'}", "cluster.workers=0", *SMALL[name]]
    record = run_job(REPO / "pipelines" / name, overrides=overrides, quiet=True)
    assert record["status"] == "complete"
    assert all(s["action"] == "run" for s in record["steps"])
    if name == "recommender.yaml":
        metrics = next(s for s in record["steps"] if s["name"] == "evaluate")["facts"]
        assert metrics["metrics"]["rmse"] < 1.0  # noise 0.5 around a planted model
        recs = zarr.open_group(tmp_path / "out" / "recommend", mode="r")
        assert recs["user_ids"].shape == (600,) and recs["items"].shape == (600, 10)


def test_nightly_svd_refreshes_when_its_input_grows(tmp_path):
    spec = REPO / "pipelines" / "nightly-svd.yaml"
    base = [f"root={tmp_path / 'out'}", "cluster.workers=0", "steps.svd.k=3",
            "steps.X.rank=5"]
    first = run_job(spec, overrides=[*base, "steps.X.shape=1000x40"], quiet=True)
    assert actions(first) == {"X": "run", "svd": "run", "report": "run"}
    same = run_job(spec, overrides=[*base, "steps.X.shape=1000x40"], quiet=True)
    assert set(actions(same).values()) == {"skipped"}
    grown = run_job(spec, overrides=[*base, "steps.X.shape=1500x40"], quiet=True)
    assert actions(grown) == {"X": "rerun", "svd": "replaced", "report": "rerun"}
    assert dmf.load(tmp_path / "out" / "svd").U.shape == (1500, 3)


def test_sigterm_stops_the_job_at_a_checkpoint_and_the_rerun_resumes(job, tmp_path):
    import signal
    import sys

    import _procs

    marker = tmp_path / "at-failpoint"
    sets = ["steps.nmf.max_iter=60", "steps.nmf.tol=0", "checkpoint.every=2"]
    command = [sys.executable, "-m", "dmf", "run", str(job),
               *(arg for item in sets for arg in ("--set", item))]
    # the 20th iteration of the job (the SVD takes fewer) pauses there for the signal
    proc = _procs.start_until_failpoint(command, "iteration:20", marker,
                                        DMF_FAILPOINT_SLEEP="30")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "run the same command again to resume" in err
    assert "job tiny: interrupted" in out
    meta = JobRoot(Location.parse(tmp_path / "out"), "tiny").meta()
    assert meta["runs"][-1]["status"] == "interrupted"
    assert meta["runs"][-1]["exit_code"] == 143
    record = run_job(job, overrides=sets, quiet=True)
    assert actions(record)["nmf"] == "resumed"
    assert dmf.load(tmp_path / "out" / "nmf").n_iter == 60


def test_checkpoint_damaged_stop_stops_a_step_whose_checkpoints_are_all_damaged(
        job, tmp_path, capsys):
    import sys

    import _procs

    sets = ["steps.nmf.max_iter=60", "steps.nmf.tol=0", "checkpoint.every=2"]
    command = [sys.executable, "-m", "dmf", "run", str(job),
               *(arg for item in sets for arg in ("--set", item))]
    proc = _procs.start_until_failpoint(command, "iteration:20", tmp_path / "marker")
    proc.kill()
    proc.wait()
    checkpoints = sorted((tmp_path / "out" / "nmf" / "checkpoints").glob("ckpt-*"))
    assert checkpoints
    for ckpt in checkpoints:
        (ckpt / "zarr.json").write_text("{damaged")
    assert main(["run", str(job), *(arg for item in [*sets, "checkpoint.damaged=stop"]
                                    for arg in ("--set", item))]) == 2
    err = capsys.readouterr().err
    assert "nmf/checkpoints: no valid checkpoint is left" in err, err
    assert sorted((tmp_path / "out" / "nmf" / "checkpoints").glob("ckpt-*")) == checkpoints
    assert main(["run", str(job), "--set", "checkpoint.damaged=maybe"]) == 2
    assert "checkpoint.damaged: must be start-over or stop" in capsys.readouterr().err
