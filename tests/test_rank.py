"""dmf.select_rank and ``dmf rank``: a planted rank is found by every method."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import scipy.sparse
from _crash import Crash

import dmf
from dmf.cli import main
from dmf.errors import InputError
from dmf.nmf.masked import held_out

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Few passes keep the file fast; the sparse planted factors converge in them.
N_ITER = 60


@pytest.fixture(scope="module")
def planted() -> np.ndarray:
    """400 x 120, non-negative rank 7 plus 2% noise. Sparse exponential
    factors: well-separated parts, as NMF is meant to find."""
    rng = np.random.default_rng(1)
    W = rng.exponential(size=(400, 7)) * (rng.random((400, 7)) < 0.5)
    H = rng.exponential(size=(7, 120)) * (rng.random((7, 120)) < 0.5)
    X = W @ H
    return np.clip(X + 0.02 * X.std() * rng.standard_normal(X.shape), 0, None)


@pytest.fixture(scope="module")
def planted_store(planted, tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("rank") / "x.zarr")
    return dmf.save_matrix(planted, url, chunks=200)


@pytest.fixture(scope="module")
def nmf_selection(planted):
    with dask_threads():
        return dmf.select_rank(da.from_array(planted, chunks=(200, -1)), range(2, 13),
                               method="nmf", n_iter=N_ITER)


def dask_threads():
    import dask

    return dask.config.set(scheduler="threads")


def test_nmf_holdout_finds_planted_rank(nmf_selection):
    r = nmf_selection
    assert r.k == 7 and r.method == "nmf"
    assert r.table["k"].tolist() == list(range(2, 13))
    err = dict(zip(r.table["k"].tolist(), r.table["heldout_rmse"].tolist(), strict=True))
    assert err[7] < 0.2 * err[6]  # the planted rank is a cliff, not a slope
    assert len(r.rows()) == 11 and set(r.rows()[0]) == {"k", "heldout_rmse", "heldout_se",
                                                        "train_rmse"}


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_bcv_finds_sparse_factors_rank(noise):
    """W 70% exact zeros (rows of X all zero among them), H half zeros."""
    rng = np.random.default_rng(0)
    W = rng.exponential(size=(500, 6)) * (rng.random((500, 6)) < 0.3)
    H = rng.exponential(size=(6, 80)) * (rng.random((6, 80)) < 0.5)
    X = W @ H + noise * rng.standard_normal((500, 80))
    assert (W == 0).mean() > 0.65
    r = dmf.select_rank(X, range(2, 13))
    assert (r.method, r.k) == ("bcv", 6)
    if noise == 0:  # scipy.sparse input: the same folds, the same table to rounding
        s = dmf.select_rank(scipy.sparse.csr_matrix(X), range(2, 13))
        assert s.k == 6
        assert np.allclose(s.table["heldout_rmse"], r.table["heldout_rmse"], atol=1e-12)


def test_bcv_on_the_planted_fixture_and_its_bad_folds(planted):
    r = dmf.select_rank(planted, range(2, 13))
    assert r.k == 7 and set(r.rows()[0]) == {"k", "heldout_rmse", "heldout_se"}
    assert r.attrs == {"folds": [2, 2], "seed": 0}
    assert dmf.select_rank(planted, range(2, 13), folds=(3, 2), seed=4).k == 7
    with pytest.raises(InputError, match="folds"):
        dmf.select_rank(planted, [2], folds=(1, 2))
    with pytest.raises(InputError, match="at most 60"):  # D is 200 x 60
        dmf.select_rank(planted, [61])


def test_cli_default_is_bcv_and_out_stores_it(planted_store, tmp_path, capsys):
    out = str(tmp_path / "bcv.zarr")
    args = ["--workers", "0", "rank", planted_store, "--k", "2:12", "--json", "--out", out]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["method"], first["k"]) == ("bcv", 7)
    assert main(args) == 0  # complete: the stored table
    assert json.loads(capsys.readouterr().out) == first
    loaded = dmf.load(out)
    assert (loaded.method, loaded.k) == ("bcv", 7)
    assert [row["heldout_rmse"] for row in first["table"]] == \
        loaded.table["heldout_rmse"].tolist()
    png = loaded.plot(tmp_path / "bcv.png")
    assert open(png, "rb").read().startswith(PNG_MAGIC)


def test_svd_elbow_finds_planted_rank(planted):
    r = dmf.select_rank(planted, range(2, 13), method="svd")
    assert r.k == 7 and r.method == "svd"
    assert np.all(np.diff(r.table["cumulative_ratio"]) >= 0)
    assert r.table["gap_ratio"][r.table["k"] == 7][0] == r.table["gap_ratio"].max()


def test_svd_exact_rank_is_an_infinite_gap():
    rng = np.random.default_rng(0)
    X = rng.random((30, 3)) @ rng.random((3, 20))
    assert dmf.select_rank(X, range(1, 21), method="svd").k == 3


def test_plot_writes_png(nmf_selection, planted, tmp_path):
    for r, name in ((nmf_selection, "nmf.png"),
                    (dmf.select_rank(planted, range(2, 13), method="svd"), "svd.png")):
        path = r.plot(tmp_path / name)
        data = open(path, "rb").read()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_mask_is_blockwise_and_deterministic():
    whole = held_out(3, 0, 100, 50, 0.1)
    parts = np.vstack([held_out(3, 0, 37, 50, 0.1), held_out(3, 37, 63, 50, 0.1)])
    assert (whole == parts).all()
    assert 0.08 < whole.mean() < 0.12
    assert not (whole == held_out(4, 0, 100, 50, 0.1)).all()


@pytest.mark.parametrize("ks", [[], [0, 3], range(5, 200), "x"])
def test_bad_ks(planted, ks):
    with pytest.raises(InputError, match="k"):
        dmf.select_rank(planted, ks, method="svd")


def test_bad_method_and_holdout(planted):
    with pytest.raises(InputError, match="method"):
        dmf.select_rank(planted, [2], method="pca")
    with pytest.raises(InputError, match="holdout"):
        dmf.select_rank(planted, [2], method="nmf", holdout=0.9)
    with pytest.raises(InputError, match="negative"):
        dmf.select_rank(-planted, [2], method="nmf")


def test_cli_svd_prints_chosen_k(planted_store, tmp_path, capsys):
    png = tmp_path / "svd.png"
    assert main(["--workers", "0", "rank", planted_store, "--k", "2:12", "--method", "svd",
                 "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "chosen k: 7" in out
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_cli_nmf_json(planted_store, capsys):
    assert main(["--workers", "0", "rank", planted_store, "--k", "5:8", "--method", "nmf",
                 "--n-iter", str(N_ITER), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["k"] == 7 and [row["k"] for row in report["table"]] == [5, 6, 7, 8]


@pytest.mark.parametrize("k", ["0:3", "2:500", "a:b"])
def test_cli_bad_k_exits_2_with_one_line(planted_store, k, capsys):
    with pytest.raises(SystemExit) if k == "a:b" else _no_raise() as caught:
        code = main(["--workers", "0", "rank", planted_store, "--k", k, "--method", "svd"])
    code = caught.value.code if k == "a:b" else code
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() and (k == "a:b" or len(err.strip().splitlines()) == 1)


def _no_raise():
    import contextlib

    return contextlib.nullcontext()


# -- out=: stored, resumable rank selection -----------------------------------

@pytest.fixture(scope="module")
def small() -> np.ndarray:
    """200 x 60, non-negative rank 4: quick enough to run several times."""
    rng = np.random.default_rng(2)
    W = rng.exponential(size=(200, 4)) * (rng.random((200, 4)) < 0.5)
    H = rng.exponential(size=(4, 60)) * (rng.random((4, 60)) < 0.5)
    return W @ H


def _watch_runs(monkeypatch, crash_at=None):
    """Wrap the engine's ``run`` seen by dmf.rank: record each k's outcome and,
    with ``crash_at=(k, it)``, raise from the callback after iteration ``it``
    of that k (a kill after its checkpoint of iteration 10 * (it // 10))."""
    import dmf.rank

    seen = []
    real = dmf.rank.run

    def watched(solver, X, **kw):
        k = solver.params["k"]
        if crash_at and k == crash_at[0]:
            def callback(it, _state, _stats):
                if it == crash_at[1]:
                    raise Crash(f"k={k} iteration {it}")
            kw["callback"] = callback
        result = real(solver, X, **kw)
        seen.append((k, result.skipped, result.resumed_from))
        return result

    monkeypatch.setattr(dmf.rank, "run", watched)
    return seen


def test_out_resumes_after_a_crash_bitwise(small, tmp_path, monkeypatch):
    out = str(tmp_path / "rank.zarr")
    options = {"method": "nmf", "n_iter": 25, "seed": 1}
    with dask_threads():
        plain = dmf.select_rank(small, range(3, 7), **options)
        seen = _watch_runs(monkeypatch, crash_at=(5, 15))
        with pytest.raises(Crash):
            dmf.select_rank(small, range(3, 7), out=out, checkpoint_every=10, **options)
        assert [k for k, *_ in seen] == [3, 4]
        with pytest.raises(InputError, match="running"):
            dmf.load(out)  # the table is not there yet
        seen.clear()
        monkeypatch.undo()
        seen = _watch_runs(monkeypatch)
        again = dmf.select_rank(small, range(3, 7), out=out, checkpoint_every=10, **options)
    # finished ks skipped, the interrupted one resumed from its checkpoint
    assert seen == [(3, True, None), (4, True, None), (5, False, 10), (6, False, None)]
    assert again.table.tobytes() == plain.table.tobytes()
    assert again.k == plain.k and again.method == "nmf"
    loaded = dmf.load(out)
    assert loaded.table.tobytes() == plain.table.tobytes()
    assert (loaded.k, loaded.criterion) == (plain.k, plain.criterion)
    # complete: a rerun returns the stored table without running any k
    seen.clear()
    assert dmf.select_rank(small, range(3, 7), out=out, **options).table.tobytes() \
        == plain.table.tobytes()
    assert seen == []


def test_out_stores_a_result_group(small, tmp_path):
    import zarr

    from dmf.errors import CheckpointMismatch

    out = str(tmp_path / "rank.zarr")
    with dask_threads():
        r = dmf.select_rank(small, [3, 4], method="nmf", n_iter=5, out=out)
        attrs = zarr.open_group(out, mode="r").attrs["dmf"]
        assert (attrs["kind"], attrs["algorithm"], attrs["status"]) == \
            ("result", "rank-nmf", "complete")
        assert attrs["chosen_k"] == r.k and attrs["method"] == "nmf"
        assert sorted(p.name for p in (tmp_path / "rank.zarr").iterdir()
                      if p.name.startswith("k=")) == ["k=03", "k=04"]
        with pytest.raises(CheckpointMismatch):
            dmf.select_rank(small, [3, 4], method="nmf", n_iter=6, out=out)  # another job
        r6 = dmf.select_rank(small, [3, 4], method="nmf", n_iter=6, out=out, resume=False)
    assert dmf.load(out).table.tobytes() == r6.table.tobytes()


def test_svd_out_stores_its_table(small, tmp_path):
    out = str(tmp_path / "svd.zarr")
    r = dmf.select_rank(small, range(1, 8), method="svd", out=out)
    assert r.k == 4
    loaded = dmf.load(out)
    assert loaded.method == "svd" and loaded.k == 4
    assert loaded.table.tobytes() == r.table.tobytes()
    assert loaded.table.tobytes() == dmf.select_rank(small, range(1, 8),
                                                     method="svd").table.tobytes()


def test_cli_out_and_info(planted_store, tmp_path, capsys):
    out = str(tmp_path / "rank.zarr")
    args = ["--workers", "0", "rank", planted_store, "--k", "6:7", "--method", "nmf",
            "--n-iter", "5", "--out", out, "--checkpoint-every", "2", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0  # complete: the stored table, nothing recomputed
    assert json.loads(capsys.readouterr().out) == first
    assert main([*args, "--no-resume"]) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert main(["info", out]) == 0
    info = capsys.readouterr().out
    assert "rank-nmf" in info and "complete" in info
    assert dmf.load(out).k == first["k"]
