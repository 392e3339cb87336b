"""One job identity (dmf.engine.identity) for the engine, rank selection, job
steps and audio: what each records, how a rerun compares, and records of an
older dmf."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import zarr
from _crash import Crash, crash_at
from toy_solvers import ToyNMF, nonnegative_matrix

import dmf
import dmf.audio
from dmf.engine.driver import run
from dmf.engine.identity import (
    FILE_KEYS,
    MATRIX_KEYS,
    OLDER,
    describe_input,
    difference,
    digest,
    job_identity,
    read_identity,
)
from dmf.errors import CheckpointMismatch, StoreError
from dmf.jobs import run_job
from dmf.jobs.record import JobRoot
from dmf.store.location import Location, dmf_attrs

SEPARATE = {"n_fft": 256, "hop": 64, "max_iter": 5, "tol": 0.0, "report": False}


def check_one_form(record: dict) -> dict:
    """``record`` keeps an identity as every caller must: whole under
    ``identity``, its digest under ``fingerprint``, in job_identity's form,
    each input described by describe_input's keys."""
    identity = record["identity"]
    assert record["fingerprint"] == digest(identity)
    groups = {k: v for k, v in identity.items() if k not in ("algorithm", "inputs")}
    assert identity == job_identity(identity["algorithm"], identity["inputs"], **groups)
    assert identity["inputs"] and all(tuple(d) in (MATRIX_KEYS, FILE_KEYS)
                                      for d in identity["inputs"].values())
    assert read_identity(record) == identity and difference(record, identity) is None
    return identity


def attrs_at(path) -> dict:
    return dmf_attrs(Location.parse(path).open_node())


def write_job(tmp_path, k: int = 3):
    path = tmp_path / "job.yaml"
    path.write_text(f"job: i\nroot: {tmp_path / 'out'}\ncluster: {{workers: 0}}\nsteps:\n"
                    "  - {step: generate, name: X, shape: 120x12, rank: 3}\n"
                    f"  - {{step: svd, x: X, k: {k}}}\n")
    return path


# -- what an input is ---------------------------------------------------------

def test_a_store_is_described_as_the_engine_describes_its_matrix(tmp_path):
    url = tmp_path / "x.zarr"
    dmf.save_matrix(np.arange(60.0).reshape(10, 6), url, chunks=(4, 6))
    stored = describe_input(url)
    opened = describe_input(dmf.open_matrix(url))
    assert tuple(stored) == tuple(opened) == MATRIX_KEYS
    assert {k: stored[k] for k in MATRIX_KEYS[:3]} == {k: opened[k] for k in MATRIX_KEYS[:3]} \
        == {"shape": [10, 6], "dtype": "float64", "chunks": [[4, 4, 2], [6]]}
    # written again, same shape and values: another input (a new write id)
    dmf.save_matrix(np.arange(60.0).reshape(10, 6), url, chunks=(4, 6), overwrite=True)
    assert describe_input(url)["token"] != stored["token"]
    assert describe_input(tmp_path / "nothing.zarr") is None


def test_a_plain_file_is_described_by_path_size_and_mtime(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"12345")
    described = describe_input(path)
    assert tuple(described) == FILE_KEYS
    assert described["path"] == str(path) and described["size"] == 5
    path.write_bytes(b"123456")
    assert describe_input(path)["size"] == 6



def test_an_object_store_file_replaced_within_the_second_is_described_anew(s3):
    """S3's LastModified has whole seconds: a same-size replacement within
    one is told apart by the object's ETag."""
    import fsspec

    url = f"{s3.url}/a.wav"
    with fsspec.open(url, "wb", **s3.storage_options) as f:
        f.write(b"12345")
    before = describe_input(url, storage_options=s3.storage_options)
    with fsspec.open(url, "wb", **s3.storage_options) as f:
        f.write(b"54321")
    after = describe_input(url, storage_options=s3.storage_options)
    assert before["size"] == after["size"] == 5
    assert before != after

# -- the four callers record the same form ------------------------------------

def test_the_engine_records_the_one_form(tmp_path):
    out = tmp_path / "nmf.zarr"
    dmf.nmf(nonnegative_matrix().compute(), 2, max_iter=3, tol=0, seed=0, out=out)
    identity = check_one_form(attrs_at(out))
    assert identity["algorithm"].startswith("nmf") and identity["seed"] == 0
    assert identity["parameters"]["k"] == 2 and list(identity["inputs"]) == ["input"]


def test_rank_selection_records_the_one_form(tmp_path):
    out = tmp_path / "rank.zarr"
    dmf.select_rank(nonnegative_matrix().compute(), [1, 2], method="svd", out=out)
    identity = check_one_form(attrs_at(out))
    assert identity["algorithm"] == "rank-svd" and identity["parameters"]["ks"] == [1, 2]


def test_a_job_step_records_the_one_form_and_describes_its_input_as_the_engine(tmp_path):
    run_job(write_job(tmp_path), quiet=True)
    step = JobRoot(Location.parse(tmp_path / "out"), "i").step_record("svd")
    identity = check_one_form(step)
    assert identity["algorithm"] == "svd" and identity["params"] == {"k": 3}
    # the step's input and the engine's (the SVD it ran) are one matrix
    engine = attrs_at(tmp_path / "out" / "svd")["identity"]["inputs"]["input"]
    assert {k: identity["inputs"]["x"][k] for k in ("shape", "dtype")} \
        == {k: engine[k] for k in ("shape", "dtype")} == {"shape": [120, 12],
                                                          "dtype": "float64"}


def test_audio_records_the_one_form(tmp_path):
    mix = dmf.audio.demo(tmp_path / "demo", seconds=0.5).mixture
    sep = dmf.audio.separate(mix, tmp_path / "sep", 2, **SEPARATE)
    with open(tmp_path / "sep" / "separation.json") as f:
        identity = check_one_form(json.load(f))
    assert identity["algorithm"] == "audio-separate"
    assert identity["inputs"]["recording"]["path"] == os.path.abspath(mix)
    assert identity["parameters"]["sources"] == 2
    check_one_form(attrs_at(sep.spectrogram)["audio"])
    check_one_form(attrs_at(sep.nmf))  # its NMF: the engine's


# -- one comparison, one message ----------------------------------------------

def test_a_changed_input_is_named_by_each_caller(tmp_path):
    mix = dmf.audio.demo(tmp_path / "demo", seconds=0.5).mixture
    dmf.audio.separate(mix, tmp_path / "sep", 2, **SEPARATE)
    os.utime(mix, ns=(0, 0))
    with pytest.raises(StoreError) as audio:
        dmf.audio.separate(mix, tmp_path / "sep", 2, **SEPARATE)
    assert "holds a complete separation of a different job " \
           "(inputs.recording.mtime_ns: " in str(audio.value)
    assert "--overwrite" in str(audio.value)

    out = tmp_path / "nmf.zarr"
    run(ToyNMF(3), nonnegative_matrix(), seed=0, max_iter=2, tol=0, out=out)
    with pytest.raises(CheckpointMismatch) as engine:
        run(ToyNMF(3), nonnegative_matrix(chunks=40), seed=0, max_iter=2, tol=0, out=out)
    assert "holds a complete result of a different job (inputs.input.chunks: " \
        in str(engine.value)


# -- records of an older dmf --------------------------------------------------

def as_older_engine(attrs: dict) -> dict:
    """An engine record as dmf wrote it before the one identity: the whole
    under ``fingerprint``, the input unnamed."""
    identity = attrs.pop("identity")
    older = {"algorithm": identity["algorithm"], "parameters": identity["parameters"],
             "input": identity["inputs"]["input"], "seed": identity["seed"]}
    return {**attrs, "fingerprint": older}


def rewrite_attrs(path, change) -> None:
    group = zarr.open_group(str(path), mode="a")
    group.update_attributes({"dmf": change(dict(group.attrs["dmf"]))})


def test_an_older_engine_result_is_skipped_resumed_or_refused_by_name(tmp_path):
    out = tmp_path / "job.zarr"
    X = nonnegative_matrix()
    first = run(ToyNMF(3), X, seed=0, max_iter=3, tol=0, out=out)
    rewrite_attrs(out, as_older_engine)
    again = run(ToyNMF(3), X, seed=0, max_iter=3, tol=0, out=out, callback=crash_at(1))
    assert again.skipped
    assert np.asarray(again.arrays["H"]).tobytes() == np.asarray(first.arrays["H"]).tobytes()
    assert "fingerprint" in attrs_at(out) and "identity" not in attrs_at(out)  # as it was
    with pytest.raises(CheckpointMismatch, match=r"parameters\.k: 3 \(stored\) vs 4"):
        run(ToyNMF(4), X, seed=0, max_iter=3, tol=0, out=out)

    # stopped, with its checkpoints in the older form: resumed
    out = tmp_path / "stopped.zarr"
    with pytest.raises(Crash):
        run(ToyNMF(3), X, seed=0, max_iter=8, tol=0, out=out, checkpoint_every=2,
            callback=crash_at(5))
    rewrite_attrs(out, as_older_engine)
    for name in os.listdir(out / "checkpoints"):
        if name.startswith("ckpt-"):
            rewrite_attrs(out / "checkpoints" / name, as_older_engine)
    resumed = run(ToyNMF(3), X, seed=0, max_iter=8, tol=0, out=out)
    assert resumed.resumed_from == 4 and resumed.n_iter == 8


def test_an_older_job_record_runs_the_step_again_and_says_why(tmp_path, capsys):
    path = write_job(tmp_path)
    run_job(path, quiet=True)
    root = JobRoot(Location.parse(tmp_path / "out"), "i")
    step = root.step_record("svd")
    identity = step.pop("identity")
    older = {"kind": "svd", "argv": identity["argv"], "params": identity["params"],
             "inputs": {"x": "0" * 64}}  # then: the hash of the input's zarr.json
    root.set_step("svd", {**step, "identity": older, "fingerprint": digest(older)})
    assert difference(root.step_record("svd"), identity) == OLDER
    record = run_job(path)
    assert {s["name"]: s["action"] for s in record["steps"]} == {"X": "skipped",
                                                                  "svd": "replaced"}
    assert f"its last run was {OLDER}: running it again" in capsys.readouterr().out
    check_one_form(root.step_record("svd"))
    assert {s["action"] for s in run_job(path, quiet=True)["steps"]} == {"skipped"}


def test_an_older_audio_marker_is_still_read(tmp_path):
    mix = dmf.audio.demo(tmp_path / "demo", seconds=0.5).mixture
    out = tmp_path / "sep"
    dmf.audio.separate(mix, out, 2, **SEPARATE)
    marker = out / "separation.json"
    done = json.loads(marker.read_text())
    identity = done.pop("identity")
    del done["fingerprint"]
    st = os.stat(mix)  # the key an older dmf wrote: the digest of these, short
    older = {"input": {"path": os.path.abspath(mix), "size": st.st_size,
                       "mtime_ns": st.st_mtime_ns}, **identity["parameters"]}
    marker.write_text(json.dumps({**done, "key": digest(older)[:16]}))
    assert dmf.audio.separate(mix, out, 2, **SEPARATE).skipped
    with pytest.raises(StoreError, match=r"made by an older dmf.*--overwrite"):
        dmf.audio.separate(mix, out, 2, **{**SEPARATE, "max_iter": 6})


def test_an_older_spectrogram_is_kept_for_the_same_separation(tmp_path):
    """A separation an older dmf stopped before its marker keeps its
    spectrogram (and so its NMF's checkpoints): the older record, a short
    key, is recomputed as for the marker."""
    mix = dmf.audio.demo(tmp_path / "demo", seconds=0.5).mixture
    out = tmp_path / "sep"
    dmf.audio.separate(mix, out, 2, **SEPARATE)
    (out / "separation.json").unlink()  # stopped after the spectrogram
    shutil.rmtree(out / "nmf.zarr")
    spectrogram = zarr.open_array(str(out / "spectrogram.zarr"), mode="r+")
    st = os.stat(mix)
    older = {"input": {"path": os.path.abspath(mix), "size": st.st_size,
                       "mtime_ns": st.st_mtime_ns}, "n_fft": SEPARATE["n_fft"],
             "hop": SEPARATE["hop"]}
    spectrogram.attrs["dmf"] = {**spectrogram.attrs["dmf"], "audio": {"key": digest(older)[:16]}}
    dmf.audio.separate(mix, out, 2, **SEPARATE)
    kept = dmf_attrs(zarr.open_array(str(out / "spectrogram.zarr"), mode="r"))
    assert kept["audio"] == {"key": digest(older)[:16]}  # not rewritten
