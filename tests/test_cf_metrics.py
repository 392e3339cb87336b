"""Ranking and rating metrics: exact on hand-computed cases, nDCG equal to
scikit-learn's ndcg_score, and evaluate over user blocks equal to the
metrics applied to recommend's lists."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse
from sklearn.metrics import ndcg_score

from dmf.cf.baseline import Baseline
from dmf.cf.data import ratings_from_scipy
from dmf.cf.knn import ItemKNN
from dmf.cf.metrics import evaluate, mae, map_at_k, ndcg_at_k, precision_at_k, recall_at_k, rmse
from dmf.cf.recommend import recommend
from dmf.errors import InputError

REC = [[10, 20, 30, 40], [5, 6, 7, 8], [1, 2, 3, 4]]
REL = [{20, 40, 99}, {5}, set()]  # the third user has nothing relevant: not averaged


def test_precision_recall_hand_cases():
    # user 0: hits at ranks 2 and 4; user 1: hit at rank 1
    assert precision_at_k(REC, REL, k=2) == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert precision_at_k(REC, REL, k=4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert recall_at_k(REC, REL, k=2) == pytest.approx((1 / 3 + 1) / 2)
    assert recall_at_k(REC, REL, k=4) == pytest.approx((2 / 3 + 1) / 2)
    # a list shorter than k is padded: precision still divides by k
    assert precision_at_k([[5]], [{5}], k=3) == pytest.approx(1 / 3)
    assert math.isnan(precision_at_k([[1]], [set()], k=1))


def test_ndcg_and_map_hand_cases():
    d = [1 / math.log2(r + 1) for r in range(1, 5)]
    user0 = (d[1] + d[3]) / (d[0] + d[1] + d[2])  # 3 relevant, ideal fills ranks 1-3
    assert ndcg_at_k(REC, REL, k=4) == pytest.approx((user0 + 1.0) / 2)
    ap0 = (1 / 2 + 2 / 4) / 3  # min(k, |R|) = 3
    assert map_at_k(REC, REL, k=4) == pytest.approx((ap0 + 1.0) / 2)
    ap0_k2 = (1 / 2) / 2
    assert map_at_k(REC, REL, k=2) == pytest.approx((ap0_k2 + 1.0) / 2)
    # graded gains: nDCG uses them, the others see relevance as binary
    graded = [{30: 3.0, 10: 1.0}]
    ideal = 3 * d[0] + 1 * d[1]
    assert ndcg_at_k([[10, 20, 30]], graded, k=3) == pytest.approx((1 * d[0] + 3 * d[2]) / ideal)
    assert precision_at_k([[10, 20, 30]], graded, k=3) == pytest.approx(2 / 3)


def test_ids_padding_and_sparse_relevant():
    assert precision_at_k([["b", "a"]], [{"a"}], k=2) == pytest.approx(0.5)
    padded = np.array([[3, -1, -1], [0, 2, 1]])
    rel = scipy.sparse.csr_matrix(np.array([[0, 0, 0, 1.0], [0, 1.0, 0, 0]]))
    assert recall_at_k(padded, rel, k=3) == pytest.approx(1.0)
    assert precision_at_k(padded, rel, k=3) == pytest.approx((1 / 3 + 1 / 3) / 2)
    with pytest.raises(InputError, match="one entry per user"):
        precision_at_k([[1]], [{1}, {2}], k=1)
    with pytest.raises(InputError, match="positive integer"):
        ndcg_at_k([[1]], [{1}], k=0)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_ndcg_equals_scikit_learn(k):
    rng = np.random.default_rng(k)
    y_true = rng.integers(0, 4, size=(25, 12)).astype(float)
    y_true[y_true.sum(axis=1) == 0, 0] = 2.0  # every user has a relevant item
    y_score = rng.random((25, 12))  # distinct scores: no ties to average
    recommended = np.argsort(-y_score, axis=1)
    relevant = [{j: g for j, g in enumerate(row) if g > 0} for row in y_true]
    assert ndcg_at_k(recommended, relevant, k=k) == pytest.approx(
        ndcg_score(y_true, y_score, k=k), rel=1e-12)
    binary = (y_true > 0).astype(float)
    assert ndcg_at_k(recommended, [set(np.flatnonzero(r)) for r in binary], k=k) == \
        pytest.approx(ndcg_score(binary, y_score, k=k), rel=1e-12)


def test_rmse_mae_arrays_and_models():
    assert rmse([1.0, 2.0], [2.0, 4.0]) == pytest.approx(math.sqrt(2.5))
    assert mae([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.5)
    train = scipy.sparse.csr_matrix([[5.0, 3.0, 0], [4.0, 0, 1.0], [0, 2.0, 0]])
    test = scipy.sparse.csr_matrix([[0, 0, 4.0], [0, 2.0, 0], [3.0, 0, 0]])
    model = Baseline().fit(train)
    pred = model.predict([0, 1, 2], [2, 1, 0])
    assert rmse(model, test) == pytest.approx(rmse([4.0, 2.0, 3.0], pred), rel=1e-14)
    assert mae(model, ratings_from_scipy(test, block_rows=1)) == pytest.approx(
        mae([4.0, 2.0, 3.0], pred), rel=1e-14)
    with pytest.raises(InputError, match="same non-zero length"):
        rmse([1.0], [1.0, 2.0])
    with pytest.raises(InputError, match="fitted on 3 users x 3 items"):
        rmse(model, scipy.sparse.csr_matrix((4, 3)))


def split(m=40, n=30, seed=0):
    rng = np.random.default_rng(seed)
    full = np.clip(np.round(3 + rng.normal(size=(m, 2)) @ rng.normal(size=(2, n))), 1, 5)
    mask = rng.random((m, n)) < 0.3
    test = mask & (rng.random((m, n)) < 0.25)
    test[7] = mask[7]  # user 7: all held out, nothing in train (cold)
    train = mask & ~test
    return (scipy.sparse.csr_matrix(np.where(train, full, 0.0)),
            scipy.sparse.csr_matrix(np.where(test, full, 0.0)))


@pytest.mark.parametrize("threshold", [None, 4.0])
def test_evaluate_equals_metrics_of_recommend(threshold):
    train, test = split()
    model = ItemKNN(k=10, similarity="pearson", shrinkage=5).fit(train)
    recs, rels = [], []
    with pytest.warns(UserWarning, match="no training ratings"):  # user 7
        for u in range(train.shape[0]):
            row = test[u]
            keep = row.data >= threshold if threshold is not None else row.data > -np.inf
            recs.append(recommend(model, train, u, n=5).indices)
            rels.append(set(row.indices[keep]))
    want = {"precision_at_k": precision_at_k(recs, rels, 5),
            "recall_at_k": recall_at_k(recs, rels, 5), "ndcg_at_k": ndcg_at_k(recs, rels, 5),
            "map_at_k": map_at_k(recs, rels, 5), "rmse": rmse(model, test),
            "mae": mae(model, test)}
    for block_rows, score_bytes in [(40, 2**20), (9, 8 * 30 * 4)]:  # 4 users scored at a time
        got = evaluate(model, ratings_from_scipy(train, block_rows=block_rows),
                       ratings_from_scipy(test, block_rows=block_rows), k=5,
                       threshold=threshold, score_bytes=score_bytes)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-12), key
        assert got["n_ratings"] == test.nnz
        assert got["n_users"] == sum(1 for r in rels if r)
