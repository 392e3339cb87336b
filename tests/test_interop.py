"""The tools data scientists use next to dmf: scikit-learn's output API and
notebook display on dmf's estimators, xarray on every result group dmf
writes (svd, nmf, nmtf, cf, recommendations, audio, generated factors)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import xarray as xr
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import (
    check_global_output_transform_pandas,
    check_set_output_transform,
    check_set_output_transform_pandas,
)

import dmf
import dmf.audio
import dmf.cf
from dmf.audio import wav
from dmf.cf.recommend import recommend_all

ESTIMATORS = [dmf.NMF(3, init="random", max_iter=5, tol=0, random_state=0),
              dmf.TruncatedSVD(3, random_state=0)]


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.random((40, 6)), columns=list("abcdef"),
                        index=[f"row{i}" for i in range(40)])


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_pipeline_set_output_pandas(estimator, frame):
    pipe = make_pipeline(MinMaxScaler(), clone(estimator)).set_output(transform="pandas")
    fitted = pipe.fit_transform(frame)
    names = list(pipe.get_feature_names_out())
    prefix = type(estimator).__name__.lower()
    assert names == [f"{prefix}{i}" for i in range(3)]
    for Z in (fitted, pipe.transform(frame)):
        assert isinstance(Z, pd.DataFrame)
        assert list(Z.columns) == names and list(Z.index) == list(frame.index)
    # the same numbers as without set_output
    plain = make_pipeline(MinMaxScaler(), clone(estimator)).fit(frame.values)
    np.testing.assert_allclose(pipe.transform(frame).values, plain.transform(frame.values),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", [check_set_output_transform,
                                   check_set_output_transform_pandas,
                                   check_global_output_transform_pandas],
                         ids=lambda c: c.__name__)
def test_sklearn_set_output_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(type(estimator).__name__, clone(estimator))


def test_set_output_kept_by_clone_and_refused_when_unknown():
    est = dmf.TruncatedSVD(2).set_output(transform="pandas")
    assert clone(est)._sklearn_output_config == {"transform": "pandas"}
    with pytest.raises(ValueError, match="transform must be one of"):
        est.set_output(transform="arrow")


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_notebook_display(estimator):
    page = estimator._repr_html_()
    assert type(estimator).__name__ in page and "n_components" in page
    assert estimator._repr_mimebundle_()["text/plain"] == repr(estimator)


# -- xarray --------------------------------------------------------------------

def open_group(url) -> xr.Dataset:
    return xr.open_zarr(url, consolidated=False)


def test_xarray_opens_every_result_group(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((60, 20))
    svd = dmf.svd(X, 3, out=tmp_path / "svd")
    nmf = dmf.nmf(X, 3, max_iter=5, out=tmp_path / "nmf")
    dmf.nmtf(X, 3, 2, max_iter=3, out=tmp_path / "nmtf")
    R = scipy.sparse.random(40, 30, density=0.3, random_state=0, format="csr")
    R.data = np.round(R.data * 4 + 1)
    model = dmf.cf.als(R, 3, max_iter=2, out=tmp_path / "cf")
    recommend_all(model, R, 3, out=tmp_path / "recs")
    dmf.generate.lowrank(tmp_path / "X.zarr", (50, 10), 2, seed=0)
    t = np.arange(8000) / 8000
    wav.write(tmp_path / "mix.wav", 0.3 * np.sin(2 * np.pi * 440 * t)
              + 0.05 * rng.standard_normal(t.size), 8000)
    dmf.audio.separate(tmp_path / "mix.wav", tmp_path / "audio", 2, n_fft=256, hop=64,
                       max_iter=5, report=False)

    ds = open_group(tmp_path / "svd")
    assert ds["U"].dims == ("row", "component") and ds["S"].dims == ("component",)
    assert ds["Vt"].dims == ("component", "column")
    assert dict(ds.sizes) == {"row": 60, "component": 3, "column": 20}
    np.testing.assert_array_equal(ds["S"].values, svd.S)

    ds = open_group(tmp_path / "nmf")
    assert ds["W"].dims == ("row", "component") and ds["H"].dims == ("component", "column")
    np.testing.assert_array_equal(ds["H"].values, nmf.H)

    ds = open_group(tmp_path / "nmtf")  # W S H with k1 = 3, k2 = 2
    assert ds["S"].dims == ("row_component", "column_component")
    assert dict(ds.sizes) == {"row": 60, "row_component": 3, "column_component": 2,
                              "column": 20}

    ds = open_group(tmp_path / "cf")
    assert dict(ds.sizes) == {"user": 40, "item": 30, "factor": 3}
    assert ds["user_bias"].dims == ("user",) and ds["Q"].dims == ("item", "factor")

    ds = open_group(tmp_path / "recs")
    assert ds["items"].dims == ("user", "rank") and ds.sizes["rank"] == 3

    ds = open_group(tmp_path / "X.factors.zarr")
    assert dict(ds.sizes) == {"row": 50, "component": 2, "column": 10}

    ds = open_group(tmp_path / "audio" / "nmf.zarr")
    assert ds["W"].dims == ("row", "component") and ds.sizes["component"] == 2


def test_dimension_names_on_matrices_and_sparse_stores(tmp_path):
    import zarr

    dmf.save_matrix(np.ones((4, 3)), tmp_path / "A.zarr")
    assert zarr.open_array(tmp_path / "A.zarr").metadata.dimension_names == ("row", "column")
    dmf.generate.ratings(tmp_path / "R.zarr", users=30, items=20, density=0.2, rank=2,
                         seed=0)
    ds = open_group(tmp_path / "R.zarr")  # the CSR arrays of a ratings store
    assert ds["data"].dims == ds["indices"].dims == ("nnz",)
    assert dict(open_group(tmp_path / "R.factors.zarr").sizes) == {
        "user": 30, "item": 20, "factor": 2}
