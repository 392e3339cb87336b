"""Damaged or missing bytes in dmf's own stores are found, never believed.

Checkpoints and results carry a CRC-32C per chunk and store every chunk: a
flipped byte or a deleted chunk file is an error naming the chunk (for a
result, a StoreError: exit 2), and a damaged checkpoint is skipped for the
previous one, with the same final bits as a run never interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import _procs
import numpy as np
import pytest
import zarr
from toy_solvers import ToyNMF, nonnegative_matrix

import dmf
from dmf.engine.checkpoint import Checkpoints
from dmf.engine.driver import run
from dmf.engine.finite import NonFiniteError
from dmf.engine.lock import LOCK_NAME, OutputLock
from dmf.errors import DamagedCheckpoint, DmfWarning, InputError, OutputLocked, StoreError
from dmf.store.location import Location

K = 4
RUN = {"max_iter": 12, "tol": 0, "seed": 1, "checkpoint_every": 3}


def flip_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(data)


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """X, the uninterrupted result, and an output stopped at iteration 7
    holding checkpoints 3 and 6."""
    root = tmp_path_factory.mktemp("integrity")
    X = np.random.default_rng(0).random((200, 30))
    reference = dmf.nmf(X, K, out=root / "ref.zarr", **RUN)

    def stop_at_7(it, state, stats):
        if it == 7:
            raise RuntimeError("stopped by the test")

    with pytest.raises(RuntimeError, match="stopped by the test"):
        dmf.nmf(X, K, out=root / "stopped.zarr", callback=stop_at_7, **RUN)
    names = Checkpoints(Location.parse(root / "stopped.zarr" / "checkpoints")).names()
    assert names == ["ckpt-00000003", "ckpt-00000006"]
    return X, reference, root / "stopped.zarr"


def _damage(out, how: str) -> None:
    newest = out / "checkpoints" / "ckpt-00000006"
    if how == "flipped byte":
        flip_byte(newest / "H" / "c" / "0" / "0")
    elif how == "missing chunk":
        (newest / "W" / "c" / "0" / "0").unlink()
    elif how == "unreadable json":
        (newest / "zarr.json").write_text("{garbage")
    elif how == "directory gone":
        shutil.rmtree(newest)
    elif how == "unreadable pointer":
        (out / "checkpoints" / "zarr.json").write_text("{")


@pytest.mark.parametrize("how, resumed_from", [
    ("flipped byte", 3), ("missing chunk", 3), ("unreadable json", 3),
    ("directory gone", 3), ("unreadable pointer", 6),
])
def test_damaged_checkpoint_falls_back_to_the_previous_one(problem, tmp_path, how,
                                                            resumed_from):
    X, reference, stopped = problem
    out = tmp_path / "o.zarr"
    shutil.copytree(stopped, out)
    _damage(out, how)
    with pytest.warns(DmfWarning, match="skipped damaged checkpoint") as caught:
        result = dmf.nmf(X, K, out=out, **RUN)
    assert f"resuming from ckpt-0000000{resumed_from}" in str(caught[0].message)
    assert result.attrs["resumed_from"] == resumed_from
    assert np.array_equal(result.H, reference.H)
    assert np.array_equal(result.W.compute(), reference.W.compute())


def test_no_valid_checkpoint_left_starts_over(problem, tmp_path):
    X, reference, stopped = problem
    out = tmp_path / "o.zarr"
    shutil.copytree(stopped, out)
    for name in ("ckpt-00000003", "ckpt-00000006"):
        flip_byte(out / "checkpoints" / name / "H" / "c" / "0" / "0")
    with pytest.warns(DmfWarning, match="no valid checkpoint is left; starting over"):
        result = dmf.nmf(X, K, out=out, **RUN)
    assert result.attrs["resumed_from"] is None
    assert np.array_equal(result.H, reference.H)


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


def test_no_valid_checkpoint_left_stops_when_asked(problem, tmp_path):
    X, _, stopped = problem
    out = tmp_path / "o.zarr"
    shutil.copytree(stopped, out)
    flip_byte(out / "checkpoints" / "ckpt-00000006" / "H" / "c" / "0" / "0")
    shutil.rmtree(out / "checkpoints" / "ckpt-00000003")
    before = _files(out)
    with pytest.raises(DamagedCheckpoint, match=r"o\.zarr/checkpoints: no valid checkpoint is "
                       r"left \(skipped ckpt-00000006 \(.*H/c/0/0.*\)\); stopped as asked"):
        dmf.nmf(X, K, out=out, damaged_checkpoints="stop", **RUN)
    assert _files(out) == before  # nothing changed, nothing pruned: there to inspect
    assert not (out / LOCK_NAME).exists()
    with pytest.raises(InputError, match="damaged_checkpoints must be 'start-over' or 'stop'"):
        dmf.nmf(X, K, out=out, damaged_checkpoints="ignore", **RUN)


def test_a_fallback_never_prunes_the_checkpoint_it_resumed_from(problem, tmp_path):
    """Resumed from checkpoint 3 past a damaged 6, and stopped again before
    writing a new one: 3 is still there (and valid) for the next rerun."""
    X, reference, stopped = problem
    out = tmp_path / "o.zarr"
    shutil.copytree(stopped, out)
    flip_byte(out / "checkpoints" / "ckpt-00000006" / "W" / "c" / "0" / "0")

    def stop_at_5(it, state, stats):
        if it == 5:
            raise RuntimeError("stopped by the test")

    with pytest.warns(DmfWarning, match="resuming from ckpt-00000003"), \
            pytest.raises(RuntimeError, match="stopped by the test"):
        dmf.nmf(X, K, out=out, callback=stop_at_5, **RUN)
    checkpoints = Checkpoints(Location.parse(out / "checkpoints"))
    assert checkpoints.load("ckpt-00000003").iteration == 3
    with pytest.warns(DmfWarning, match="resuming from ckpt-00000003"):
        result = dmf.nmf(X, K, out=out, **RUN)
    assert np.array_equal(result.H, reference.H)


@pytest.fixture(scope="module")
def stopped_cli_job(tmp_path_factory):
    """A stored X, the CLI's uninterrupted result's H, and a CLI job killed
    at iteration 8 holding checkpoints 3 and 6."""
    root = tmp_path_factory.mktemp("damaged-cli")
    dmf.save_matrix(np.random.default_rng(0).random((200, 30)), root / "X.zarr")
    done = subprocess.run(_nmf_cli(root / "X.zarr", root / "ref.zarr"), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    proc = _procs.start_until_failpoint(_nmf_cli(root / "X.zarr", root / "o.zarr"),
                                        "iteration:8", root / "marker")
    proc.kill()
    proc.wait()
    return root / "X.zarr", dmf.load(root / "ref.zarr").H, root / "o.zarr"


def _nmf_cli(x, out, *extra) -> list[str]:
    return [sys.executable, "-m", "dmf", "--workers", "0", "nmf", str(x), str(out), "-k", str(K),
            "--init", "random", "--max-iter", "12", "--tol", "0", "--seed", "1",
            "--checkpoint-every", "3", *extra]


@pytest.mark.parametrize("choice", ["stop", "start-over"])
def test_cli_damaged_checkpoints_choice(stopped_cli_job, tmp_path, choice):
    x, reference_H, stopped = stopped_cli_job
    out = tmp_path / "o.zarr"
    shutil.copytree(stopped, out)
    for name in ("ckpt-00000003", "ckpt-00000006"):
        flip_byte(out / "checkpoints" / name / "H" / "c" / "0" / "0")
    before = _files(out)
    done = subprocess.run(_nmf_cli(x, out, "--damaged-checkpoints", choice),
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr
    if choice == "stop":
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("dmf: error:")]
        assert len(errors) == 1 and "o.zarr/checkpoints: no valid checkpoint is left" in errors[0]
        assert "ckpt-00000006" in errors[0] and "ckpt-00000003" in errors[0]
        assert _files(out) == before
    else:
        assert done.returncode == 0, done.stderr
        assert "no valid checkpoint is left; starting over" in done.stderr
        assert np.array_equal(dmf.load(out).H, reference_H)


def test_checkpoint_arrays_are_checksummed_and_complete(problem):
    _, _, stopped = problem
    for key in ("W", "H"):
        meta = json.loads((stopped / "checkpoints" / "ckpt-00000006" / key / "zarr.json")
                          .read_text())
        assert [c["name"] for c in meta["codecs"]] == ["bytes", "crc32c"]
        assert meta["attributes"]["dmf"]["chunks_written"] == "all"


def test_flipped_byte_in_a_result_is_an_error_naming_the_chunk(problem, tmp_path):
    _, reference, _ = problem
    out = tmp_path / "r.zarr"
    shutil.copytree(reference.location, out)
    flip_byte(out / "H" / "c" / "0" / "0")
    with pytest.raises(StoreError, match=r"r\.zarr/H/c/0/0: chunk cannot be read.*CRC-32C"):
        dmf.load(out)
    shutil.copytree(reference.location, out, dirs_exist_ok=True)
    flip_byte(out / "W" / "c" / "0" / "0")
    with pytest.raises(StoreError, match=r"r\.zarr/W/c/0/0: chunk cannot be read"):
        dmf.load(out).W.compute()


def test_cli_exits_2_on_a_damaged_result(problem, tmp_path):
    _, reference, _ = problem
    out = tmp_path / "r.zarr"
    shutil.copytree(reference.location, out)
    flip_byte(out / "H" / "c" / "0" / "0")
    done = subprocess.run([sys.executable, "-m", "dmf", "report", str(out), "--html",
                           str(tmp_path / "r.html")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "H/c/0/0" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def stored(tmp_path):
    X = np.random.default_rng(1).random((40, 6))
    X[10:20] = 0  # a chunk of zeros is stored too
    url = tmp_path / "S.zarr"
    dmf.save_matrix(X, url, chunks=10)
    return X, url


def test_missing_chunk_of_a_dmf_store_is_an_error(stored):
    X, url = stored
    assert (url / "c" / "1" / "0").exists()
    assert np.array_equal(dmf.open_matrix(url).compute(), X)
    (url / "c" / "3" / "0").unlink()
    with pytest.raises(StoreError, match=r"S\.zarr/c/3/0: chunk file missing"):
        dmf.open_matrix(url).compute()


def test_switched_key_encoding_is_an_error_not_zeros(stored):
    _, url = stored
    meta = json.loads((url / "zarr.json").read_text())
    meta["chunk_key_encoding"] = {"name": "v2", "configuration": {"separator": "."}}
    (url / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="chunk file missing"):
        dmf.open_matrix(url).compute()


def test_missing_chunk_through_zarr_decoding_is_an_error(tmp_path):
    X = np.random.default_rng(2).random((40, 6))
    url = tmp_path / "Z.zarr"
    dmf.save_matrix(X, url, chunks=10, codec="zstd")
    (url / "c" / "2" / "0").unlink()
    with pytest.raises(StoreError, match=r"Z\.zarr/c/2/0: chunk file missing"):
        dmf.open_matrix(url).compute()


def test_foreign_store_keeps_zarr_fill_semantics(tmp_path):
    url = tmp_path / "F.zarr"
    z = zarr.create_array(store=str(url), shape=(4, 3), chunks=(2, 3), dtype="f8",
                          fill_value=0, compressors=None)
    z[0:2] = 1.0
    with pytest.warns(DmfWarning, match="absent and read as the fill value"):
        assert np.array_equal(dmf.open_matrix(url).compute(scheduler="sync"),
                              np.r_[np.ones((2, 3)), np.zeros((2, 3))])


class NaNAt(ToyNMF):
    """ToyNMF whose H turns NaN at ``iteration``."""

    def __init__(self, iteration: int):
        super().__init__(3)
        self.iteration = iteration

    def step(self, X, state, ctx):
        new, stats = super().step(X, state, ctx)
        if new["steps"] == self.iteration:
            new["H"] = np.full_like(new["H"], np.nan)
        return new, stats



def test_nan_stops_the_run_and_keeps_the_finite_checkpoints(tmp_path):
    out = tmp_path / "o.zarr"
    with pytest.raises(NonFiniteError, match=r"iteration 5 produced non-finite values "
                                             r"\(.*H holds NaN or Inf"):
        run(NaNAt(5), nonnegative_matrix(), seed=0, max_iter=10, tol=0, out=out,
            checkpoint_every=2, progress=False)
    checkpoints = Checkpoints(Location.parse(out / "checkpoints"))
    assert checkpoints.names() == ["ckpt-00000002", "ckpt-00000004"]
    assert checkpoints.latest().iteration == 4
    assert zarr.open_group(str(out), mode="r").attrs["dmf"]["status"] == "running"


@pytest.mark.parametrize("call, message", [
    (lambda X, out: dmf.nmf(X, 2, loss=float("inf"), out=out), "must be a .*finite number"),
    (lambda X, out: dmf.nmf(X, 2, alpha_W=float("nan"), out=out),
     "alpha_W must be a finite number"),
    (lambda X, out: dmf.nmf(X, 2, checkpoint_seconds=float("nan"), out=out),
     "checkpoint_seconds must be a number > 0"),
    (lambda X, out: dmf.nmf(X, 2, checkpoint_seconds=-5, out=out),
     "checkpoint_seconds must be a number > 0"),
    (lambda X, out: dmf.svd(X, 2, method="power", tol=float("nan"), out=out),
     "tol must be a finite number"),
    (lambda X, out: dmf.nmf(X, 2, seed=-1, out=out), "seed must be an integer >= 0"),
    (lambda X, out: dmf.connect(n_workers=1, memory_limit="garbage").__enter__(),
     "memory limit must be a size"),
])
def test_parameters_that_cannot_be_finite_are_refused(stored, tmp_path, call, message):
    _, url = stored
    with pytest.raises(InputError, match=message):
        call(url, tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()


def test_cli_refuses_a_nan_parameter_with_exit_2(stored, tmp_path):
    _, url = stored
    done = subprocess.run([sys.executable, "-m", "dmf", "--workers", "0", "nmf", str(url),
                           str(tmp_path / "o.zarr"), "-k", "2", "--alpha-w", "nan"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "alpha_W must be a finite number" in done.stderr and "Traceback" not in done.stderr


def test_starting_over_never_damages_a_complete_result(problem, tmp_path):
    X, reference, _ = problem
    out = tmp_path / "r.zarr"
    shutil.copytree(reference.location, out)

    def stop_at_4(it, state, stats):
        if it == 4:
            raise RuntimeError("stopped by the test")

    with pytest.raises(RuntimeError, match="stopped by the test"):
        dmf.nmf(X, K + 1, out=out, resume=False, callback=stop_at_4, **RUN)
    kept = dmf.load(out)  # the k=4 result, whole, not a k=5 run over k=4 arrays
    assert kept.attrs["parameters"]["k"] == K and kept.attrs["status"] == "complete"
    assert np.array_equal(kept.H, reference.H)
    assert (tmp_path / ".r.zarr.dmf-next").exists()

    again = dmf.nmf(X, K + 1, out=out, resume=False, **RUN)
    assert again.H.shape[0] == K + 1 and dmf.load(out).H.shape[0] == K + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr"]


# -- hostile input stays cheap -------------------------------------------------

ALIAS_BOMB = ('job: j\nroot: out\nsteps: []\n'
              'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
              + "".join(f"{x}: &{x} [{','.join([f'*{p}'] * 9)}]\n"
                        for p, x in zip("abcdefgh", "bcdefghi", strict=True)))


@pytest.mark.parametrize("text, message", [
    (ALIAS_BOMB, r"job\.yaml:5: aliases \(\*name\) are not allowed"),
    ("job: j\nroot: out\nsteps:\n  - !!python/object/apply:os.system ['true']\n",
     r"job\.yaml:4: the tag !!python/object/apply:os.system is not allowed"),
    ("job: j\nroot: !!python/name:os.system\nsteps: []\n",
     r"job\.yaml:2: not valid YAML: could not determine a constructor"),
])
def test_hostile_job_specs_are_refused_with_their_line(tmp_path, text, message):
    from dmf.jobs.spec import load_spec

    path = tmp_path / "job.yaml"
    path.write_text(text)
    assert len(text) < 700  # a few hundred bytes: billions of values once expanded
    with pytest.raises(InputError, match=message):
        load_spec(path)


@pytest.mark.parametrize("text, message", [
    ("%%MatrixMarket matrix array real general\n1000000000 2\n1.0\n2.0\n",
     "line 2: the size line claims 2,000,000,000 entries, more than a file"),
    ("%%MatrixMarket matrix coordinate real general\n1000000000000 3 2\n1 1 1.0\n2 2 2.0\n",
     "line 2: the size line claims 1,000,000,000,000 rows"),
])
def test_matrix_market_size_claims_are_refused_before_allocating(tmp_path, text, message):
    path = tmp_path / "big.mtx"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        dmf.ingest(path, tmp_path / "big.zarr")
    assert not (tmp_path / "big.zarr").exists()


def test_zarr_metadata_claiming_a_huge_matrix_is_refused(stored):
    _, url = stored
    meta = json.loads((url / "zarr.json").read_text())
    meta["shape"] = [10**13, 6]
    (url / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"claims a 10000000000000 x 6 matrix.*refusing"):
        dmf.open_matrix(url)


def test_one_by_one_chunks_are_read_in_groups(tmp_path):
    """12,100 stored chunks of one value each read in one task (with a note),
    not 12,100 tasks."""
    x = np.random.default_rng(4).random((110, 110))
    url = tmp_path / "tiny.zarr"
    z = zarr.create_array(store=str(url), shape=x.shape, chunks=(1, 1), dtype="f8",
                          compressors=None, fill_value=0)
    for (i, j), value in np.ndenumerate(x):  # the files zarr would write, without its overhead
        (url / "c" / str(i)).mkdir(parents=True, exist_ok=True)
        (url / "c" / str(i) / str(j)).write_bytes(value.tobytes())
    assert z.nchunks == 12_100
    with pytest.warns(DmfWarning, match=r"stored in 1 x 1 chunks, tiny for its shape"):
        lazy = dmf.open_matrix(url)
    assert lazy.numblocks == (1, 1)
    assert np.array_equal(lazy.compute(), x)


# -- the lock is a fence -------------------------------------------------------

def _lock_record(out, **record) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_NAME).write_text(json.dumps(
        {"host": socket.gethostname(), "token": "other", "started": "2000-01-01T00:00:00+00:00",
         "expires": time.time() - 3600, **record}))


def test_a_live_holder_on_this_host_keeps_its_lock_past_its_lease(tmp_path):
    out = tmp_path / "o.zarr"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        _lock_record(out, pid=holder.pid, started=started)  # lease long expired
        with pytest.raises(OutputLocked, match=f"pid {holder.pid}"):
            OutputLock(Location.parse(out)).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = OutputLock(Location.parse(out))
    lock.acquire()  # its holder is gone now
    lock.release()


def test_a_reused_pid_does_not_keep_a_lock(tmp_path):
    out = tmp_path / "o.zarr"
    _lock_record(out, pid=os.getpid())  # alive, but started long after the lock was taken
    lock = OutputLock(Location.parse(out))
    lock.acquire()
    lock.release()


def test_a_job_that_lost_its_lock_writes_nothing_more(tmp_path):
    out = tmp_path / "o.zarr"

    def taken_over_at_3(it, state, stats):
        if it == 3:  # another job took the lock while this one was frozen
            _lock_record(out, host="elsewhere", pid=1, expires=time.time() + 3600)

    with pytest.raises(OutputLocked, match="this job lost its lock"):
        run(ToyNMF(3), nonnegative_matrix(), seed=0, max_iter=10, tol=0, out=out,
            checkpoint_every=2, progress=False, callback=taken_over_at_3)
    assert Checkpoints(Location.parse(out / "checkpoints")).names() == ["ckpt-00000002"]
    assert json.loads((out / LOCK_NAME).read_text())["token"] == "other"


def test_a_store_replaced_while_read_is_an_error_not_a_mix(stored):
    X, url = stored
    lazy = dmf.open_matrix(url)
    assert np.array_equal(lazy[:10].compute(), X[:10])
    dmf.save_matrix(X + 1, url, chunks=10, overwrite=True)
    with pytest.raises(StoreError, match="the store was replaced while it was being read"):
        lazy.compute()
    assert np.array_equal(dmf.open_matrix(url).compute(), X + 1)


def test_missing_chunk_of_a_dmf_sparse_store_is_an_error(tmp_path):
    import scipy.sparse

    x = scipy.sparse.random(50, 8, density=0.3, format="csr", random_state=0)
    url = tmp_path / "sp.zarr"
    dmf.save_matrix(x, url)
    assert (dmf.open_matrix(url).compute() != x).nnz == 0
    (url / "indices" / "c" / "0").unlink()
    with pytest.raises(StoreError, match=r"sp\.zarr/indices/c/0: chunk file missing"):
        dmf.open_matrix(url)


def test_job_spec_paths_are_relative_to_its_folder(tmp_path, monkeypatch):
    from dmf.jobs.spec import load_spec

    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "job.yaml").write_text(
        "job: j\nroot: out\ninputs: {X: data/x.zarr}\nsteps:\n"
        "  - step: svd\n    x: X\n    k: 2\n    out: ../elsewhere/svd\n")
    monkeypatch.chdir(tmp_path)  # not the job file's folder
    spec = load_spec("jobs/job.yaml")
    assert spec.root == str(folder / "out")
    assert spec.inputs["X"]["url"] == str(folder / "data" / "x.zarr")
    assert spec.steps[0].out == str(tmp_path / "elsewhere" / "svd")
    assert load_spec("jobs/job.yaml", ["root=mine"]).root == "mine"  # --set: as typed


def test_a_store_replaced_on_s3_while_read_is_an_error(s3):
    X = np.random.default_rng(5).random((30, 4))
    url = f"{s3.url}/X.zarr"
    dmf.save_matrix(X, url, chunks=10, storage_options=s3.storage_options)
    lazy = dmf.open_matrix(url, storage_options=s3.storage_options)
    assert np.array_equal(lazy[:10].compute(), X[:10])
    dmf.save_matrix(X + 1, url, chunks=10, overwrite=True, storage_options=s3.storage_options)
    with pytest.raises(StoreError, match="the store was replaced while it was being read"):
        lazy.compute()
