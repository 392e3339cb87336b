"""``dmf cf split | train | evaluate | recommend`` end to end, in process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

import dmf
from dmf.cli import main


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    where = tmp_path_factory.mktemp("cfcli")
    ratings = where / "R.zarr"
    assert main(["-q", "generate", "ratings", str(ratings), "--users", "600", "--items", "150",
                  "--density", "0.2", "--rank", "5", "--noise", "0.3", "--seed", "1"]) == 0
    assert main(["-q", "cf", "split", str(ratings), str(where / "split"), "--seed", "0"]) == 0
    return where, where / "split" / "train.zarr", where / "split" / "test.zarr"


def cf(args: list[str]) -> int:
    """``dmf cf ...`` on the threaded scheduler (no cluster to start)."""
    return main(["--workers", "0", "cf", *args])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("dmf: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("model", ["als", "sgd", "knn", "user-knn"])
def test_train_evaluate_recommend(split, model, capsys):
    where, train, test = split
    out = where / f"{model}.zarr"
    assert cf(["train", str(train), str(out), "--model", model,
                  "-k", "5", "--max-iter", "6", "--reg", "0.05"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert cf(["evaluate", str(out), str(train), str(test),
                  "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_ratings"] > 0 and 0 <= metrics["precision_at_k"] <= 1
    # planted rank 5, noise 0.3: ALS gets near the noise in 6 iterations;
    # 6 SGD epochs and kNN at least beat the ratings' own spread (about 1.2)
    assert metrics["rmse"] < (0.45 if model == "als" else 1.1), metrics

    recs = where / f"{model}-recs.zarr"
    assert cf(["recommend", str(out), str(train), "--user", "3",
                  "--user", "nobody", "-n", "4", "--out", str(recs), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["users"]
    assert [len(row["items"]) for row in shown] == [4, 4]
    assert [row["cold_start"] for row in shown] == [False, True]
    table = zarr.open_group(str(recs), mode="r")
    assert table["items"].shape == (600, 4)
    seen = dmf.cf.open_ratings(train).to_scipy()
    row3 = table["items"][3]
    assert not set(row3.tolist()) & set(seen[3].indices.tolist())  # seen items left out
    assert row3.tolist() == [int(i) for i in shown[0]["items"]]


def test_saved_model_reloads_with_the_same_predictions(split):
    where, train, _ = split
    out = where / "reload.zarr"
    assert main(["-q", "--workers", "0", "cf", "train", str(train), str(out), "-k", "4",
                  "--max-iter", "3"]) == 0
    model = dmf.load(out)
    assert isinstance(model, dmf.cf.LatentFactors) and model.n_iter == 3
    again = dmf.cf.als(train, 4, reg=0.1, max_iter=3, seed=0)
    np.testing.assert_array_equal(model.predict([0, 1], [2, 3]), again.predict([0, 1], [2, 3]))


def test_bad_input_exits_2_with_one_line(split, tmp_path, capsys):
    where, train, test = split
    assert cf(["train", str(train), str(tmp_path / "m.zarr"), "-k", "0"]) == 2
    assert "-k must be a positive integer" in _one_error_line(capsys)
    assert cf(["train", str(tmp_path / "missing.zarr"), str(tmp_path / "m.zarr")]) == 2
    assert "missing.zarr" in _one_error_line(capsys)
    assert cf(["evaluate", str(train), str(train), str(test)]) == 2
    assert "train.zarr" in _one_error_line(capsys)  # a ratings store is not a model
    assert cf(["recommend", str(where / "reload.zarr"), str(train)]) == 2
    assert "--user" in _one_error_line(capsys)
    assert cf(["split", str(train), str(tmp_path / "s"), "--by", "time",
                  "--test-size", "1.5"]) == 2
    _one_error_line(capsys)
