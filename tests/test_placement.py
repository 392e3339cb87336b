"""Small work runs in this process; the CLI imports only what a command needs.

Without ``--scheduler``, ``$DASK_SCHEDULER_ADDRESS`` or ``--workers``, a
command whose input is small computes on threads here (no cluster start-up),
larger work starts a local cluster; the choice and its reason are logged at
``-v``. ``dmf --help`` and a ``dmf run`` whose steps are all complete import
neither Dask's array package nor distributed. The times themselves are
measured by ``python -m benchmarks first_touch``.
"""

from __future__ import annotations

import subprocess
import sys

import _procs
import numpy as np
import pytest

import dmf
from dmf.cli import main
from dmf.engine import placement
from dmf.store.location import Location


@pytest.fixture
def small_matrix(tmp_path):
    x = tmp_path / "X.zarr"
    dmf.save_matrix(np.random.default_rng(0).random((300, 20), dtype=np.float32), x)
    return x


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dmf", *args], capture_output=True, text=True,
                          timeout=300, env=env or _procs.child_env())


def test_a_small_input_runs_in_this_process_and_says_why(small_matrix, tmp_path):
    env = _procs.child_env()
    env.pop(placement.SCHEDULER_ENV, None)
    done = _run("-v", "svd", str(small_matrix), str(tmp_path / "s.zarr"), "-k", "3", env=env)
    assert done.returncode == 0, done.stderr
    assert "computing in this process (threads): the input is small (23 KiB" in done.stderr, \
        done.stderr
    assert "small is at most 512 MiB and 1/8 of the" in done.stderr
    assert "starting a local cluster" not in done.stderr
    np.testing.assert_allclose(dmf.load(tmp_path / "s.zarr").S,
                               dmf.svd(small_matrix, 3, seed=0).S, rtol=1e-5)


def test_the_users_choice_decides_before_any_size(monkeypatch):
    monkeypatch.delenv(placement.SCHEDULER_ENV, raising=False)
    assert placement.asked(None, None) is None
    assert placement.asked(None, 0) == placement.Placement(True, "--workers 0 asks for no "
                                                                 "cluster")
    assert not placement.asked(None, 2).in_process
    assert not placement.asked("tcp://10.0.0.5:8786", None).in_process
    monkeypatch.setenv(placement.SCHEDULER_ENV, "tcp://10.0.0.5:8786")
    chosen = placement.for_inputs(["/nowhere/X.zarr"], address=None, n_workers=None)
    assert not chosen.in_process and "tcp://10.0.0.5:8786" in chosen.reason


def test_larger_input_starts_a_cluster(small_matrix):
    size = Location.parse(small_matrix).memory_bytes()
    assert size == 300 * 20 * 4
    # The same stored input, against less memory available: past 1/8 of it.
    assert placement.by_size(size, available=8 * size).in_process
    larger = placement.by_size(size, available=8 * size - 8)
    assert not larger.in_process and "starting a local cluster" in larger.reason
    assert not placement.by_size(placement.SMALL_INPUT_BYTES + 1, available=2**40).in_process
    assert placement.by_size(None).in_process  # nothing to read: nothing to start


def _imports_after(code: str) -> tuple[list[str], str]:
    """Which of Dask's heavy modules a fresh interpreter imported running
    ``code``, and what it printed."""
    probe = (f"import sys\n{code}\n"
             "print([m for m in ('dask.array', 'distributed', 'numba') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300, env=_procs.child_env())
    assert done.returncode == 0, done.stderr
    *printed, modules = done.stdout.strip().splitlines()
    return eval(modules), "\n".join(printed)


def test_help_imports_no_dask():
    code = ("from dmf.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    modules, printed = _imports_after(code)
    assert modules == [] and "usage: dmf" in printed


def test_a_complete_job_starts_no_cluster_and_imports_no_dask(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(placement.SCHEDULER_ENV, raising=False)
    job = tmp_path / "job.yaml"
    job.write_text(f"job: small\nroot: {tmp_path / 'out'}\nsteps:\n"
                   "  - {step: generate, name: X, shape: 300x20, rank: 3}\n"
                   "  - {step: svd, x: X, k: 3}\n")
    assert main(["run", str(job)]) == 0
    # small steps, no cluster asked for: no cluster
    assert "scheduler threads in this process" in capsys.readouterr().out
    code = f"from dmf.cli import main\nassert main(['run', {str(job)!r}]) == 0"
    modules, printed = _imports_after(code)
    assert modules == [] and printed.count("complete, same spec and inputs: skipped") == 2
