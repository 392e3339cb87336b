"""dmf.RunOptions: the run options in one object, validated once, taken as
``options=`` by every function and estimator that runs on the engine, with
the keywords of the same names still working and never mixed with it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.sparse
import zarr
from sklearn.base import clone

import dmf
from dmf.errors import InputError

BAD = [
    ({"checkpoint_every": 0}, "checkpoint_every must be an integer >= 1, got 0"),
    ({"checkpoint_every": 2.5}, "checkpoint_every must be an integer >= 1, got 2.5"),
    ({"checkpoint_every": True}, "checkpoint_every must be an integer >= 1, got True"),
    ({"checkpoint_seconds": math.nan}, "checkpoint_seconds must be a number > 0, got nan"),
    ({"checkpoint_seconds": -5}, "checkpoint_seconds must be a number > 0, got -5"),
    ({"damaged_checkpoints": "ignore"},
     "damaged_checkpoints must be 'start-over' or 'stop', got 'ignore'"),
    ({"cache": "yes"}, "cache must be True, False or 'auto', got 'yes'"),
    ({"storage_options": "anon"}, "storage_options must be a dict, got 'anon'"),
    ({"callback": 3}, "callback must be callable, got 3"),
]


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return rng.random((40, 3)) @ rng.random((3, 16))


@pytest.fixture(scope="module")
def R():
    R = scipy.sparse.random(30, 20, density=0.4, random_state=0, format="csr")
    R.data = 1 + 4 * R.data
    return R


@pytest.mark.parametrize("bad, message", BAD, ids=lambda v: str(v)[:30])
def test_bad_options_give_todays_one_line_errors(X, tmp_path, bad, message):
    with pytest.raises(InputError) as built:
        dmf.RunOptions(**bad)
    assert str(built.value) == message
    out = tmp_path / "o.zarr"
    with pytest.raises(InputError) as called:  # as a keyword: the same error, nothing written
        dmf.nmf(X, 2, max_iter=2, out=out, **bad)
    assert str(called.value) == message
    assert not out.exists()


def test_options_are_frozen_and_replace_validates():
    options = dmf.RunOptions(checkpoint_every=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.checkpoint_every = 6
    assert options.replace(resume=False) == dmf.RunOptions(checkpoint_every=5, resume=False)
    with pytest.raises(InputError, match="checkpoint_every must be an integer >= 1"):
        options.replace(checkpoint_every=-1)
    assert options.changed() == {"checkpoint_every": 5}


def _arrays(url: str) -> dict[str, bytes]:
    group = zarr.open_group(url, mode="r")
    return {name: np.asarray(array[...]).tobytes() for name, array in group.arrays()}


@pytest.mark.parametrize("call", [
    lambda X, R, **run: dmf.nmf(X, 3, max_iter=12, tol=0, seed=1, **run),
    lambda X, R, **run: dmf.nmtf(X, 3, 2, max_iter=12, tol=0, seed=1, **run),
    lambda X, R, **run: dmf.svd(X, 3, method="randomized", seed=1, **run),
    lambda X, R, **run: dmf.cf.als(R, 2, max_iter=4, seed=1, **run),
    lambda X, R, **run: dmf.cf.sgd(R, 2, n_epochs=4, seed=1, **run),
], ids=["nmf", "nmtf", "svd", "als", "sgd"])
def test_options_equal_the_same_keywords_bitwise(X, R, tmp_path, call):
    run = {"checkpoint_every": 3, "progress": False, "resume": False}
    by_keywords = call(X, R, out=str(tmp_path / "a.zarr"), **run)
    by_options = call(X, R, options=dmf.RunOptions(out=str(tmp_path / "b.zarr"), **run))
    a, b = _arrays(str(tmp_path / "a.zarr")), _arrays(str(tmp_path / "b.zarr"))
    assert a and a == b
    assert by_keywords.n_iter == by_options.n_iter
    assert by_keywords.loss_history == by_options.loss_history


def test_select_rank_takes_options(X, tmp_path):
    plain = dmf.select_rank(X, range(2, 5), method="nmf", n_iter=10, out=tmp_path / "a.zarr",
                            checkpoint_every=4)
    given = dmf.select_rank(X, range(2, 5), method="nmf", n_iter=10,
                            options=dmf.RunOptions(out=tmp_path / "b.zarr", checkpoint_every=4,
                                                   checkpoint_seconds=60.0))
    assert plain.table.tobytes() == given.table.tobytes() and plain.k == given.k
    assert zarr.open_group(str(tmp_path / "b.zarr" / "k=03"), mode="r").attrs["dmf"][
        "status"] == "complete"  # each k's fit stored in its group, as with keywords
    with pytest.raises(InputError, match=r"dmf.select_rank does not take the run option "
                                         r"callback="):
        dmf.select_rank(X, range(2, 4), callback=print)


def test_options_and_a_keyword_together_are_refused(X, R, tmp_path):
    options = dmf.RunOptions(out=tmp_path / "o.zarr")
    with pytest.raises(TypeError, match=r"^nmf\(\) got run options both in options= and as "
                                        r"keywords \(checkpoint_every\): pass them one way$"):
        dmf.nmf(X, 2, options=options, checkpoint_every=5)
    with pytest.raises(TypeError, match=r"svd\(\) got run options both .*\(out, resume\)"):
        dmf.svd(X, 2, options=options, out=tmp_path / "p.zarr", resume=False)
    with pytest.raises(TypeError, match=r"als\(\) got run options both"):
        dmf.cf.als(R, 2, options=options, progress=False)
    with pytest.raises(TypeError, match=r"NMF\(\) got run options both .*\(out"):
        dmf.NMF(2, out=tmp_path / "q.zarr", options=options).fit(X)
    assert not (tmp_path / "o.zarr").exists()
    # a misspelt keyword is Python's error, as before
    with pytest.raises(TypeError, match=r"nmf\(\) got an unexpected keyword argument "
                                        r"'chekpoint_every'"):
        dmf.nmf(X, 2, chekpoint_every=5)
    with pytest.raises(TypeError, match=r"options must be a dmf\.RunOptions, got dict"):
        dmf.nmf(X, 2, options={"out": None})
    with pytest.raises(InputError, match=r"dmf.cf.als does not take the run option cache=True"):
        dmf.cf.als(R, 2, cache=True)


def test_a_callback_in_options_ends_a_fit(X):
    seen = []

    def stop_at_3(iteration, _state, stats):
        seen.append(stats.loss)
        return iteration == 3

    result = dmf.svd(X, 2, method="power", seed=0,
                     options=dmf.RunOptions(callback=stop_at_3, progress=False))
    assert result.n_iter == 3 and len(seen) == 3


@pytest.mark.parametrize("make, fit", [
    (lambda o: dmf.NMF(2, init="random", random_state=0, max_iter=20, tol=0, options=o), "X"),
    (lambda o: dmf.TruncatedSVD(2, random_state=0, options=o), "X"),
    (lambda o: dmf.cf.ALS(k=2, max_iter=3, seed=0, options=o), "R"),
    (lambda o: dmf.cf.SGD(k=2, n_epochs=3, seed=0, options=o), "R"),
], ids=["NMF", "TruncatedSVD", "ALS", "SGD"])
def test_estimators_take_options(X, R, tmp_path, make, fit):
    data = {"X": X, "R": R}[fit]
    options = dmf.RunOptions(out=str(tmp_path / "e.zarr"), progress=False)
    est = make(options)
    copy = clone(est)
    assert copy.get_params()["options"] == options
    est.fit(data)
    assert zarr.open_group(str(tmp_path / "e.zarr"), mode="r").attrs["dmf"]["status"] == \
        "complete"
    again = copy.fit(data)  # the same job, stored: returned as it is
    result = getattr(again, "result_", None) or again.model_
    assert result.attrs["skipped"] is True
