"""dmf.select_rank and ``dmf rank``: a planted rank is found by both methods."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest

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
        dmf.select_rank(planted, [2], holdout=0.9)
    with pytest.raises(InputError, match="negative"):
        dmf.select_rank(-planted, [2])


def test_cli_svd_prints_chosen_k(planted_store, tmp_path, capsys):
    png = tmp_path / "svd.png"
    assert main(["--workers", "0", "rank", planted_store, "--k", "2:12", "--method", "svd",
                 "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "chosen k: 7" in out
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_cli_nmf_json(planted_store, capsys):
    assert main(["--workers", "0", "rank", planted_store, "--k", "5:8", "--n-iter",
                 str(N_ITER), "--json"]) == 0
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
