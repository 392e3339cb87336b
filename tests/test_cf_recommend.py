"""recommend, similar_items and recommend_all on any model implementing the
recommender protocol: seen items excluded, n items sorted by score, cold
users flagged with a popularity fallback, a table written to Zarr."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import zarr

from dmf.cf.baseline import Baseline
from dmf.cf.data import ratings_from_scipy
from dmf.cf.knn import ItemKNN
from dmf.cf.recommend import read_recommendations, recommend, recommend_all, similar_items
from dmf.errors import DmfWarning, InputError, StoreError


class Latent:
    """A latent-factor model as the ALS/SGD ones look from outside."""

    def __init__(self, P, Q, user_ids, item_ids):
        self.P, self.Q, self.user_ids, self.item_ids = P, Q, user_ids, item_ids
        self.item_bias, self.global_mean = np.zeros(len(Q)), 0.0  # a model without biases

    def predict(self, users, items):
        return np.einsum("ij,ij->i", self.P[users], self.Q[items])

    def scores(self, users):
        return self.P[users] @ self.Q.T


def ratings(m=25, n=10, seed=2):
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((m, n)) < 0.4, rng.integers(1, 6, (m, n)), 0).astype(float)
    dense[3] = 0  # a user with no ratings
    return scipy.sparse.csr_matrix(dense)


@pytest.fixture(scope="module")
def knn():
    R = ratings()
    ids = np.array([f"u{i}" for i in range(R.shape[0])])
    items = np.arange(100, 100 + R.shape[1])
    Rr = ratings_from_scipy(R, block_rows=6, user_ids=ids, item_ids=items)
    return ItemKNN(k=5, shrinkage=1).fit(Rr), Rr, R


def test_recommend_excludes_seen_and_sorts(knn):
    model, Rr, R = knn
    for u in (0, 7, 24):
        rec = recommend(model, Rr, f"u{u}", n=4)
        seen = set(R[u].indices)
        assert not seen & set(rec.indices.tolist())
        assert len(rec.items) == min(4, R.shape[1] - len(seen))
        assert np.all(np.diff(rec.scores) <= 0)
        np.testing.assert_array_equal(rec.items, 100 + rec.indices)
        best = np.delete(model.scores([u])[0], sorted(seen))
        assert rec.scores[0] == pytest.approx(best.max())
        assert rec.known and not rec.cold_start
    everything = recommend(model, Rr, "u0", n=10, exclude_seen=False)
    assert len(everything.items) == 10


def test_unknown_and_cold_users_get_flagged_popular_items(knn):
    model, Rr, _ = knn
    popular = np.argsort(-(model.global_mean_ + model.item_bias_), kind="stable")[:3]
    with pytest.warns(DmfWarning, match="'nobody' is not in the model"):
        rec = recommend(model, Rr, "nobody", n=3)
    assert not rec.known and rec.cold_start
    np.testing.assert_array_equal(rec.indices, popular)
    with pytest.warns(DmfWarning, match="'u3' has no training ratings"):
        rec = recommend(model, Rr, "u3", n=3)
    assert rec.known and rec.cold_start
    np.testing.assert_array_equal(rec.indices, popular)


def test_fallback_counts_ratings_for_models_without_biases():
    R = ratings(seed=1)
    model = Latent(np.ones((R.shape[0], 2)), np.zeros((R.shape[1], 2)),
                   np.arange(R.shape[0]), np.arange(R.shape[1]))
    counts = np.diff(scipy.sparse.csc_matrix(R).indptr)
    with pytest.warns(DmfWarning):
        rec = recommend(model, R, 1000, n=4)
    np.testing.assert_array_equal(rec.scores, np.sort(counts)[::-1][:4])


def test_similar_items_knn_latent_and_unknown(knn):
    model, _, _ = knn
    sim = similar_items(model, 100, n=3)
    row = model.neighbours_[0].toarray()[0]
    np.testing.assert_allclose(sim.scores, np.sort(row)[::-1][:3])
    assert 100 not in sim.items.tolist()
    Q = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    latent = Latent(np.ones((2, 2)), Q, np.arange(2), np.array(list("abcd")))
    sim = similar_items(latent, "a", n=2)
    assert sim.items.tolist() == ["b", "c"]
    with pytest.warns(DmfWarning, match="not in the model"):
        assert similar_items(model, 5, n=2).cold_start
    with pytest.raises(InputError, match="neither item neighbours nor item factors"):
        similar_items(Baseline().fit(ratings()), 0)


def test_recommend_all_writes_a_readable_table(knn, tmp_path):
    model, Rr, _ = knn
    out = tmp_path / "recs.zarr"
    with pytest.warns(DmfWarning, match="1 of 25 users have no training ratings"):
        url = recommend_all(model, Rr, 4, out=out, score_bytes=8 * 10 * 4)
    group = read_recommendations(url)
    assert group.attrs["dmf"]["complete"] is True
    items, scores = group["items"][:], group["scores"][:]
    assert items.shape == scores.shape == (25, 4)
    assert group["cold_start"][:].tolist() == [u == 3 for u in range(25)]
    assert group["user_ids"][:].tolist() == [f"u{i}" for i in range(25)]
    for u in (0, 3, 13):
        with pytest.warns(DmfWarning) if u == 3 else _nothing():
            rec = recommend(model, Rr, f"u{u}", n=4)
        np.testing.assert_array_equal(items[u, :len(rec.indices)], rec.indices)
        np.testing.assert_allclose(scores[u, :len(rec.indices)], rec.scores)
    with pytest.raises(StoreError, match="already exists"):
        recommend_all(model, Rr, 4, out=out)
    with pytest.warns(DmfWarning):
        recommend_all(Baseline().fit(Rr), Rr, 2, out=out, overwrite=True)
    assert read_recommendations(out)["items"].shape == (25, 2)
    meta = dict(group.attrs["dmf"])
    writable = zarr.open_group(str(out), mode="r+")
    writable.attrs["dmf"] = {**meta, "complete": False}
    with pytest.raises(StoreError, match="incomplete"):
        read_recommendations(out)


def test_bad_input(knn):
    model, Rr, _ = knn
    with pytest.raises(InputError, match="not a fitted recommender"):
        recommend(object(), Rr, "u0")
    with pytest.raises(InputError, match="fitted on 25 users x 10 items"):
        recommend(model, scipy.sparse.csr_matrix((3, 3)), "u0")
    with pytest.raises(InputError, match="positive integer"):
        recommend(model, Rr, "u0", n=0)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
