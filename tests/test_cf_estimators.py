"""The CF models as scikit-learn estimators: parameters, clone, fit(X, y) on
(user, item) pairs, score, GridSearchCV and Pipeline; with input="matrix",
transformers of a ratings matrix that pass scikit-learn's estimator checks."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.sparse
from _sklearn_checks import all_checks, run_check
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import get_tags

from dmf.cf import ALS, SGD, ItemKNN, UserKNN
from dmf.errors import InputError, NotFittedError


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    m, n, k = 200, 40, 3
    P, Q = rng.normal(size=(m, k)), rng.normal(size=(n, k))
    users, items = np.nonzero(rng.random((m, n)) < 0.35)
    ratings = 3 + (P[users] * Q[items]).sum(1) + 0.1 * rng.normal(size=users.size)
    return np.c_[users, items], ratings


MODELS = [ALS(k=3, max_iter=5, seed=0), SGD(k=3, n_epochs=20, lr=0.05, seed=0),
          ItemKNN(k=10), UserKNN(k=10)]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_parameters_and_clone(model):
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    assert copy.set_params(k=2).k == 2 and model.k != 2
    with pytest.raises(ValueError, match="invalid parameter 'nope'"):
        copy.set_params(nope=1)
    assert repr(copy).startswith(f"{type(model).__name__}(k=2")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_fit_on_pairs_equals_fit_on_the_matrix(model, pairs):
    X, y = pairs
    R = scipy.sparse.csr_matrix((y, (X[:, 0], X[:, 1])))
    on_pairs = clone(model).fit(X, y)
    on_matrix = clone(model).fit(R)
    np.testing.assert_allclose(on_pairs.predict(X), on_matrix.predict(X[:, 0], X[:, 1]),
                               rtol=1e-10)
    assert on_pairs.score(X, y) > 0.3  # R^2 on the training ratings
    # an index the fit never saw: the global mean, in the (n, 2) form only
    unseen = on_pairs.predict(np.array([[0, 0], [10_000, 0]]))
    assert unseen[1] == pytest.approx(on_pairs.global_mean_)


def test_grid_search_and_pipeline_choose_on_held_out_ratings(pairs):
    X, y = pairs
    search = GridSearchCV(ALS(max_iter=5, seed=0), {"k": [1, 3], "reg": [0.1]},
                          cv=KFold(4, shuffle=True, random_state=0)).fit(X, y)
    assert search.best_params_["k"] == 3  # the planted rank
    assert search.best_score_ > 0.7
    pipe = make_pipeline(FunctionTransformer(), ALS(k=3, max_iter=5, seed=0)).fit(X, y)
    assert pipe.score(X, y) > 0.9


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_a_fitted_estimator_is_a_model_for_evaluate_and_recommend(model, pairs):
    from dmf.cf import evaluate, recommend
    from dmf.errors import InputError

    X, y = pairs
    R = scipy.sparse.csr_matrix((y, (X[:, 0], X[:, 1])))
    with pytest.raises(InputError, match="not a fitted recommender"):
        evaluate(clone(model), R, R)
    fitted = clone(model).fit(R)
    assert evaluate(fitted, R, R, k=5)["rmse"] < 0.8 * y.std()  # better than the mean
    assert recommend(fitted, R, 0, n=3).items.shape == (3,)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_predict_before_fit_is_not_fitted_error(model):
    from sklearn.exceptions import NotFittedError as SklearnNotFitted
    from sklearn.utils.validation import check_is_fitted

    from dmf.errors import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted"):
        clone(model).predict(np.array([[0, 0]]))
    with pytest.raises(SklearnNotFitted):
        check_is_fitted(clone(model))


# -- input="matrix": a transformer of a ratings matrix ---------------------------------

# Each check fits a few times (about 70 fits per class), and a CF fit runs a
# few small Dask graphs per iteration (about 70 ms for one), so the
# instances checked are the cheapest: one factor and one iteration, epoch or
# baseline sweep.
MATRIX_CHECKED = [ALS(k=1, max_iter=1, seed=0, input="matrix"),
                  SGD(k=1, n_epochs=1, seed=0, input="matrix"),
                  ItemKNN(k=2, n_epochs=1, input="matrix"),
                  UserKNN(k=2, n_epochs=1, input="matrix")]


@all_checks(MATRIX_CHECKED)
def test_matrix_mode_passes_sklearn_checks(estimator, check):
    run_check(estimator, check)


MATRIX_MODELS = [ALS(k=2, max_iter=3, seed=0, input="matrix"),
                 ALS(k=2, max_iter=2, implicit=True, seed=0, input="matrix"),
                 SGD(k=2, n_epochs=3, seed=0, input="matrix"),
                 ItemKNN(k=5, n_epochs=2, input="matrix"),
                 UserKNN(k=5, n_epochs=2, input="matrix")]
MATRIX_IDS = ["ALS", "ALS-implicit", "SGD", "ItemKNN", "UserKNN"]


@pytest.fixture(scope="module")
def ratings_matrix():
    """60 users x 25 items, 40% observed, ratings 1..5 of rank 2."""
    rng = np.random.default_rng(1)
    full = 1 + 4 * (rng.random((60, 2)) @ rng.random((2, 25))) / 2
    R = scipy.sparse.random(60, 25, density=0.4, random_state=1, format="csr")
    R.data = full[R.nonzero()]
    return R


@pytest.mark.parametrize("model", MATRIX_MODELS, ids=MATRIX_IDS)
def test_matrix_transform_of_rows_is_row_by_row(model, ratings_matrix):
    R = ratings_matrix
    fitted = clone(model).fit(R)
    whole = fitted.transform(R)
    rows = [7, 3, 41, 3]
    np.testing.assert_allclose(fitted.transform(R[rows]), whole[rows], rtol=1e-12, atol=1e-12)
    # rows of a new matrix (here: fewer ratings of the same users) work too
    fewer = R.multiply(np.random.default_rng(2).random(R.shape) < 0.7).tocsr()
    assert fitted.transform(fewer).shape == whole.shape
    # out of core: a dask array in, a lazy dask array out, the same numbers
    lazy = fitted.transform(da.from_array(R.toarray(), chunks=(16, 25)))
    assert isinstance(lazy, da.Array)
    dense = fitted.transform(R.toarray())  # a dense X: every entry observed
    np.testing.assert_allclose(lazy.compute(), dense, rtol=1e-12, atol=1e-12)
    assert fitted.score(R) <= 1  # R^2 (implicit ALS predicts preferences, not ratings)


@pytest.mark.parametrize("model", MATRIX_MODELS, ids=MATRIX_IDS)
def test_matrix_and_auto_modes_fit_the_same_item_side(model, ratings_matrix):
    R = ratings_matrix
    as_matrix = clone(model).fit(R)
    as_ratings = clone(model).set_params(input="auto").fit(R)
    assert as_matrix.n_features_in_ == R.shape[1]
    if isinstance(model, ItemKNN):
        assert (as_matrix.neighbours_ != as_ratings.neighbours_).nnz == 0
        # a training row's transform is the model's own predictions for its user
        np.testing.assert_allclose(as_matrix.transform(R[:5]), as_ratings.scores(range(5)),
                                   rtol=1e-10)
        return
    if isinstance(model, UserKNN):
        assert (as_matrix.user_neighbours_ != as_ratings.user_neighbours_).nnz == 0
        # a training row is a new user like it: the same predictions of its unrated
        # items (where the user itself, who rated none of them, is no neighbour)
        unrated = R[:5].toarray() == 0
        np.testing.assert_allclose(as_matrix.transform(R[:5])[unrated],
                                   as_ratings.scores(range(5))[unrated], rtol=1e-10)
        return
    np.testing.assert_array_equal(as_matrix.components_, as_ratings.Q_.T)
    np.testing.assert_array_equal(as_matrix.item_bias_, as_ratings.item_bias_)
    assert as_matrix.n_components_ == model.k


def test_matrix_mode_takes_stores_by_url_and_zarr_arrays(tmp_path, ratings_matrix):
    """A dense matrix store (URL or Zarr array) is a matrix like a numpy one;
    a ratings store URL is its ratings."""
    import zarr

    import dmf
    from dmf.cf import save_ratings

    dense = ratings_matrix.toarray()
    url = str(tmp_path / "X.zarr")
    dmf.save_matrix(dense, url, chunks=(20, 25))
    want = ALS(k=2, max_iter=3, seed=0, input="matrix").fit(dense).transform(dense)
    for source in (url, zarr.open_array(url, mode="r")):
        est = ALS(k=2, max_iter=3, seed=0, input="matrix").fit(source)
        np.testing.assert_allclose(est.transform(source).compute(), want, rtol=1e-10,
                                   atol=1e-12)
    ratings_url = str(tmp_path / "R.zarr")
    save_ratings(ratings_matrix, ratings_url)
    on_store = ALS(k=2, max_iter=3, seed=0, input="matrix").fit(ratings_url)
    on_matrix = ALS(k=2, max_iter=3, seed=0, input="matrix").fit(ratings_matrix)
    np.testing.assert_allclose(on_store.components_, on_matrix.components_, rtol=1e-10)


@pytest.mark.parametrize("options", [{}, {"biases": False}, {"nonnegative": True}],
                         ids=["biases", "no-biases", "masked-nmf"])
def test_matrix_mode_reconstructs_a_low_rank_matrix(options):
    rng = np.random.default_rng(0)
    X = 3 * rng.random((40, 2)) @ rng.random((2, 12))  # dense: all observed; rank 2, > 0
    biased = not options
    if biased:
        X += 1  # a global mean the biases take up
    masked = bool(options.get("nonnegative"))
    # a small reg: the ridge of the fold-in shrinks the factors otherwise
    est = ALS(k=2, reg=1e-5, max_iter=30 if masked else 10, seed=0, input="matrix",
              **options).fit(X)
    Z = est.transform(X)
    assert Z.shape == (40, 3 if biased else 2)  # [p_u, b_u] with biases
    assert est.components_.shape == (2, 12)
    back = est.inverse_transform(Z)
    # multiplicative updates (masked NMF) converge slowly: 30 iterations
    assert np.abs(back - X).max() < (0.15 if masked else 1e-3) * X.max()
    assert est.score(X) > (0.95 if masked else 0.99999)
    if masked:
        assert (Z >= 0).all()


def test_matrix_mode_tags_and_methods():
    auto, matrix = ALS(k=2), ALS(k=2, input="matrix")
    assert get_tags(auto).estimator_type == "regressor"
    tags = get_tags(matrix)
    assert tags.estimator_type is None and tags.transformer_tags is not None
    assert not tags.input_tags.positive_only
    assert get_tags(ALS(implicit=True, input="matrix")).input_tags.positive_only
    # each mode has its own methods: scikit-learn sees a regressor or a transformer
    assert hasattr(auto, "predict") and not hasattr(auto, "transform")
    assert hasattr(matrix, "transform") and not hasattr(matrix, "predict")
    assert not hasattr(ItemKNN(input="matrix"), "inverse_transform")
    for method in ("transform", "score", "inverse_transform"):
        with pytest.raises(NotFittedError, match="not fitted"):
            getattr(matrix, method)(np.ones((3, 3)))
    with pytest.raises(InputError, match="input must be one of"):
        ALS(input="rows").fit(np.ones((3, 3)))
    with pytest.raises(InputError, match="Negative values in data passed to ALS"):
        ALS(k=1, nonnegative=True, input="matrix").fit(-np.ones((3, 3)))
