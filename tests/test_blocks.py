"""dmf.blocks: the row pass and its named sums, in both orientations of the
small factor (NMF's k x n H, a CF half-step's n x k other side)."""

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse

from dmf import blocks
from dmf.cf.data import ratings_from_scipy
from dmf.cf.passes import item_counts


def _project(X_b, W_b, H, scale):
    """New rows X_b H (H n x k) or X_b H^T (H k x n), and named sums."""
    n = X_b.shape[1]
    M = H if H.shape[0] == n and H.shape[1] == W_b.shape[1] else H.T
    return X_b @ M * scale, {"col_sums": X_b.sum(axis=0), "rows": float(X_b.shape[0]),
                             "old": W_b.sum()}


@pytest.mark.parametrize(("n", "k", "tall"), [(7, 3, True), (7, 3, False), (4, 4, True)])
def test_row_pass_takes_the_small_factor_either_way_and_names_the_sums(n, k, tall):
    rng = np.random.default_rng(0)
    X = rng.random((30, n))
    W = rng.random((30, k))
    H = rng.random((n, k)) if tall else rng.random((k, n))
    Xd = da.from_array(X, chunks=(8, n))
    # a dask factor in several chunks goes in as one key
    Hd = da.from_array(H, chunks=(2, 2))
    parts = {"col_sums": (n,), "rows": (), "old": ()}
    with dask.config.set(scheduler="synchronous"):
        W_new, sums = blocks.row_pass(_project, Xd, da.from_array(W, chunks=(5, k)), Hd, 2.0,
                                      parts=parts)
        W_new = W_new.compute()
    assert W_new.shape == (30, k)
    np.testing.assert_allclose(W_new, X @ (H if tall else H.T) * 2.0, rtol=1e-12)
    assert set(sums) == set(parts)
    np.testing.assert_allclose(sums["col_sums"], X.sum(axis=0), rtol=1e-12)
    assert sums["rows"].shape == () and float(sums["rows"]) == 30.0
    np.testing.assert_allclose(float(sums["old"]), W.sum(), rtol=1e-12)


def test_row_sums_adds_named_parts_over_a_ratings_view():
    R = scipy.sparse.random(90, 25, density=0.2, random_state=3, format="csr")
    view = ratings_from_scipy(R, block_rows=20).by_user
    assert view.numblocks[0] > 1
    with dask.config.set(scheduler="synchronous"):
        counts = blocks.row_sums(item_counts, view, parts={"item_counts": (25,)})
    assert list(counts) == ["item_counts"]
    assert counts["item_counts"].dtype == np.float64
    assert np.array_equal(counts["item_counts"], np.bincount(R.indices, minlength=25))
