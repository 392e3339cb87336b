"""dmf.blocks: the row pass and its named sums, in both orientations of the
small factor (NMF's k x n H, a CF half-step's n x k other side)."""

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse

from dmf import blocks
from dmf.cf.data import ratings_from_scipy
from dmf.cf.passes import _block_item_counts


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
        counts = blocks.row_sums(_block_item_counts, view, parts={"item_counts": (25,)})
    assert list(counts) == ["item_counts"]
    assert counts["item_counts"].dtype == np.float64
    assert np.array_equal(counts["item_counts"], np.bincount(R.indices, minlength=25))


CHUNKINGS = {"regular": ((8, 8, 8, 6), (7,)), "irregular": ((3, 11, 1, 9, 6), (7,)),
             "single": ((30,), (7,)), "columns": ((8, 8, 8, 6), (3, 4))}


def _everything(blocks_row, W_b, H, M_pieces, scale, index):
    """Each kind of argument and result of row_blocks, from a row's list of
    blocks: new rows X_b M, a per-block row [index, rows], named sums."""
    X_b = np.hstack(blocks_row)
    M = np.vstack(M_pieces)
    return {"rows": X_b @ M * scale, "tag": np.array([[index, X_b.shape[0]]]),
            "gram": X_b.T @ X_b, "wh": W_b.sum() * H, "count": float(X_b.shape[0])}


@pytest.mark.parametrize("chunks", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_row_blocks_builds_every_kind_of_pass(chunks):
    rng = np.random.default_rng(1)
    X, W, H, M = rng.random((30, 7)), rng.random((30, 2)), rng.random((2, 3)), rng.random((7, 4))
    Xd = da.from_array(X, chunks=chunks)
    run = blocks.row_blocks(_everything, Xd, blocks.Tall(da.from_array(W, chunks=(10, 1))),
                            blocks.Small(H), blocks.Pieces(M), 2.0, columns=True, index=True,
                            each={"rows": blocks.Piece((None, 4)), "tag": blocks.Piece((1, 2))},
                            sums={"gram": (7, 7), "wh": (2, 3), "count": ()})
    assert run.each["rows"].chunks == (Xd.chunks[0], (4,))
    with dask.config.set(scheduler="threads"):
        rows, tag, sums = dask.compute(run.each["rows"], run.each["tag"], run.sums)
    with dask.config.set(scheduler="synchronous"):
        again = run.sums.compute()
    np.testing.assert_allclose(rows, X @ M * 2.0, rtol=1e-12)
    assert tag.tolist() == [[b, size] for b, size in enumerate(Xd.chunks[0])]
    assert list(sums) == ["gram", "wh", "count"]
    np.testing.assert_allclose(sums["gram"], X.T @ X, rtol=1e-12)
    np.testing.assert_allclose(sums["wh"], W.sum() * H, rtol=1e-12)
    assert sums["count"].shape == () and float(sums["count"]) == 30.0
    for name in sums:  # the fixed tree: the same bits on any scheduler
        assert sums[name].tobytes() == again[name].tobytes()


def test_row_blocks_fuses_the_reads_of_a_row_blocked_store(tmp_path):
    import zarr
    from dask.base import collections_to_expr

    z = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=(60, 5), chunks=(10, 5))
    z[:] = np.arange(300.0).reshape(60, 5)
    X = da.from_zarr(z)
    run = blocks.row_blocks(lambda b: {"rows": 2 * b, "s": b.sum(axis=0)}, X,
                            each={"rows": blocks.Piece((None, 5))}, sums={"s": (5,)})
    graph = dict(collections_to_expr([run.each["rows"], run.sums],
                                     optimize_graph=True).__dask_graph__())
    names = {str(key[0] if isinstance(key, tuple) else key) for key in graph}
    assert not [name for name in names if name.startswith("from-zarr")]  # no read task of its own
    assert np.array_equal(run.sums.compute()["s"], z[:].sum(axis=0))


def test_row_blocks_refuses_an_unmarked_dask_argument():
    X = da.ones((4, 2), chunks=2)
    with pytest.raises(TypeError, match="Small, Tall or Pieces"):
        blocks.row_blocks(lambda b, a: {}, X, da.ones(3))
