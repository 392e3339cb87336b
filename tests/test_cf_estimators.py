"""The CF models as scikit-learn estimators: parameters, clone, fit(X, y) on
(user, item) pairs, score, GridSearchCV and Pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from dmf.cf import ALS, SGD, ItemKNN


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    m, n, k = 200, 40, 3
    P, Q = rng.normal(size=(m, k)), rng.normal(size=(n, k))
    users, items = np.nonzero(rng.random((m, n)) < 0.35)
    ratings = 3 + (P[users] * Q[items]).sum(1) + 0.1 * rng.normal(size=users.size)
    return np.c_[users, items], ratings


MODELS = [ALS(k=3, max_iter=5, seed=0), SGD(k=3, n_epochs=20, lr=0.05, seed=0),
          ItemKNN(k=10)]


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
