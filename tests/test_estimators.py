"""dmf.NMF and dmf.TruncatedSVD: scikit-learn's estimator checks, agreement
with scikit-learn's own classes, pipelines, grid search, input types."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.sparse

sklearn = pytest.importorskip("sklearn")

from _sklearn_checks import all_checks, run_check  # noqa: E402
from sklearn import decomposition  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

import dmf  # noqa: E402
from dmf.errors import InputError  # noqa: E402

# Each check fits a few times, and a dmf fit runs a few Dask graphs per
# iteration, so the instances checked are cheap ones: one component
# (scikit-learn checks its own TruncatedSVD with n_components=1 too) and, for
# NMF, coordinate descent from a random start, which meets tol=1e-4 in a
# dozen iterations on the checks' data (from nndsvda, already near the rank-1
# optimum, the relative test against the first iteration's tiny violation is
# met late or never).
CHECKED = [dmf.NMF(n_components=1, init="random", random_state=0),
           dmf.TruncatedSVD(n_components=1, random_state=0)]


@all_checks(CHECKED)
def test_sklearn_compatible(estimator, check):
    run_check(estimator, check)


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return rng.random((40, 3)) @ rng.random((3, 12)) + 0.01 * rng.random((40, 12))


def test_nmf_agrees_with_sklearn(X):
    W0 = np.random.default_rng(1).random((40, 3))
    H0 = np.random.default_rng(2).random((3, 12))
    ours = dmf.NMF(3, init="custom", solver="mu", tol=0, max_iter=30)
    theirs = decomposition.NMF(3, init="custom", solver="mu", tol=0, max_iter=30)
    W = ours.fit_transform(X, W=W0.copy(), H=H0.copy())
    W_sk = theirs.fit_transform(X, W=W0.copy(), H=H0.copy())
    np.testing.assert_allclose(ours.components_, theirs.components_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(W, W_sk, rtol=1e-6, atol=1e-9)
    assert ours.reconstruction_err_ == pytest.approx(theirs.reconstruction_err_, rel=1e-6)
    assert ours.n_iter_ == theirs.n_iter_ == 30


def test_svd_agrees_with_sklearn(X):
    ours = dmf.TruncatedSVD(3, random_state=0).fit(X)
    theirs = decomposition.TruncatedSVD(3, random_state=0).fit(X)
    np.testing.assert_allclose(ours.singular_values_, theirs.singular_values_, rtol=1e-8)
    np.testing.assert_allclose(ours.explained_variance_, theirs.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(ours.explained_variance_ratio_,
                               theirs.explained_variance_ratio_, rtol=1e-6)
    # the same subspace (signs may differ)
    np.testing.assert_allclose(np.abs(ours.components_ @ theirs.components_.T), np.eye(3),
                               atol=1e-6)


def test_pipeline_and_grid_search(X):
    y = (X[:, 0] > np.median(X[:, 0])).astype(int)
    pipe = Pipeline([("svd", dmf.TruncatedSVD(random_state=0)),
                     ("clf", LogisticRegression())])
    search = GridSearchCV(pipe, {"svd__n_components": [1, 3]}, cv=2).fit(X, y)
    assert search.best_params_["svd__n_components"] in (1, 3)
    assert search.best_estimator_.named_steps["svd"].n_components_ in (1, 3)
    pipe = Pipeline([("nmf", dmf.NMF(2, init="random", max_iter=10, tol=0, random_state=0)),
                     ("clf", LogisticRegression())]).fit(X, y)
    assert pipe.predict(X).shape == (40,)


def test_clone_and_params():
    est = dmf.NMF(3, beta_loss="kullback-leibler", solver="mu", out="memory://x")
    params = est.get_params()
    assert params["n_components"] == 3 and params["beta_loss"] == "kullback-leibler"
    assert params["init"] is None and params["alpha_H"] == "same"
    copy = clone(est)
    assert copy is not est and copy.get_params() == params
    assert est.set_params(max_iter=5) is est and est.max_iter == 5
    with pytest.raises(ValueError, match="invalid parameter"):
        est.set_params(k=3)
    assert "beta_loss='kullback-leibler'" in repr(est)
    assert dmf.TruncatedSVD().get_params()["algorithm"] == "randomized"


def test_transform_new_data_and_inverse(X):
    nmf = dmf.NMF(3, tol=1e-3, random_state=0).fit(X[:30])
    W = nmf.transform(X[30:])
    assert W.shape == (10, 3) and (W >= 0).all()
    back = nmf.inverse_transform(W)
    assert np.abs(back - X[30:]).max() < 0.1 * X.max()
    svd = dmf.TruncatedSVD(3, random_state=0).fit(X[:30])
    Z = svd.transform(X[30:])
    np.testing.assert_allclose(Z, X[30:] @ svd.components_.T)
    np.testing.assert_allclose(svd.inverse_transform(Z), X[30:], atol=0.05)
    with pytest.raises(ValueError, match="X has 11 features, but NMF is expecting 12"):
        nmf.transform(X[:, :11])
    with pytest.raises(dmf.estimators.NotFittedError):
        dmf.NMF(2).transform(X)


def test_input_types(X, tmp_path):
    url = dmf.save_matrix(X, str(tmp_path / "X.zarr"))
    sparse = scipy.sparse.csr_matrix(np.where(X > 0.5, X, 0))
    for data, lazy in [(X, False), (sparse, False), (da.from_array(X, chunks=(10, 12)), True),
                       (url, True)]:
        svd = dmf.TruncatedSVD(2, random_state=0)
        Z = svd.fit_transform(data)
        Zt = svd.transform(data)
        assert isinstance(Z, da.Array) is lazy and isinstance(Zt, da.Array) is lazy
        dense = sparse.toarray() if data is sparse else X
        np.testing.assert_allclose(np.asarray(Zt), dense @ svd.components_.T, atol=1e-8)
        np.testing.assert_allclose(np.asarray(Z), np.asarray(Zt), atol=1e-6)
        nmf = dmf.NMF(2, solver="mu", max_iter=3, tol=0, random_state=0)
        W = nmf.fit_transform(data)
        assert isinstance(W, da.Array) is lazy and W.shape == (40, 2)
        assert isinstance(nmf.transform(data), da.Array) is lazy
    # dmf's URL result: the fit stored at ``out``
    out = str(tmp_path / "svd.zarr")
    dmf.TruncatedSVD(2, random_state=0, out=out).fit(url)
    assert dmf.load(out).S.shape == (2,)


def test_input_validation(X):
    with pytest.raises(InputError, match="Negative values"):
        dmf.NMF(2).fit(X - 1)
    with pytest.raises(ValueError, match="Reshape your data"):
        dmf.TruncatedSVD(1).fit(X[0])
    with pytest.raises(ValueError, match="Complex data"):
        dmf.TruncatedSVD(1).fit(X + 1j)
    with pytest.raises(ValueError, match="NaN or infinity"):
        dmf.TruncatedSVD(1).fit(np.where(X > 0.9, np.nan, X))
    with pytest.raises(ValueError, match="n_samples = 40, n_features = 12"):
        dmf.TruncatedSVD(13).fit(X)


@pytest.mark.parametrize("shape", [(40, 12), (12, 40)], ids=["tall", "wide"])
def test_arpack_is_exact_on_tall_and_wide_input(shape):
    X = np.random.default_rng(3).standard_normal(shape)
    svd = dmf.TruncatedSVD(n_components=4, algorithm="arpack").fit(X)
    np.testing.assert_allclose(svd.singular_values_, np.linalg.svd(X, compute_uv=False)[:4],
                               rtol=1e-10)
