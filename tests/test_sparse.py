"""Sparse stores: the anndata CSR encoding, written and read by dmf."""

from __future__ import annotations

import os
import warnings

import dask.array as da
import numpy as np
import pytest
import scipy.sparse
import zarr

import dmf
from dmf.errors import DmfWarning, InputError, StoreError
from dmf.store.location import Location
from dmf.store.sparse_format import ENCODING, canonical_csr
from dmf.store.sparse_read import open_csr
from dmf.store.sparse_row_blocks import even_row_blocks, plan_row_blocks
from dmf.store.sparse_write import save_csr
from dmf.store.triplets import write_csr_from_triplets


def random_csr(m=200, n=50, density=0.1, dtype=np.float64, seed=0):
    x = scipy.sparse.random(m, n, density=density, format="csr", dtype=dtype,
                            random_state=seed)
    x.data += 0.5  # no accidental explicit zeros
    return x


def open_group(path):
    return zarr.open_group(store=Location.parse(path).zarr_store(read_only=True), mode="r")


def assert_same_csr(stored, expected):
    """Bit-exact: same dtype, indptr, indices and data."""
    expected = canonical_csr(expected)
    assert stored.dtype == expected.dtype
    np.testing.assert_array_equal(stored.indptr, expected.indptr)
    np.testing.assert_array_equal(stored.indices, expected.indices)
    np.testing.assert_array_equal(stored.data, expected.data)


def stored_arrays(path):
    g = open_group(path)
    return scipy.sparse.csr_matrix((g["data"][:], g["indices"][:], g["indptr"][:]),
                                   shape=tuple(g.attrs["shape"]))


# -- the on-disk format ------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_bit_exact(tmp_path, dtype):
    keep = np.ones(200, dtype)
    keep[[3, 4, 100]] = 0
    x = scipy.sparse.diags(keep) @ random_csr(dtype=dtype)  # with empty rows
    x.eliminate_zeros()
    assert (np.diff(x.indptr) == 0).sum() >= 3
    url = dmf.save_matrix(x, tmp_path / "x.zarr")
    g = open_group(url)
    attrs = g.attrs.asdict()
    assert {k: attrs[k] for k in ENCODING} == ENCODING
    assert attrs["shape"] == [200, 50]
    assert attrs["dmf"]["kind"] == "sparse" and attrs["dmf"]["complete"] is True
    assert attrs["dmf"]["nnz"] == x.nnz
    assert g["indptr"].dtype == np.int64 and g["indices"].dtype == np.int32
    assert_same_csr(stored_arrays(url), x)
    y = dmf.open_matrix(url).compute()
    assert isinstance(y, scipy.sparse.csr_matrix)
    assert_same_csr(y, x)


def test_duplicates_summed_and_any_format(tmp_path):
    coo = scipy.sparse.coo_matrix(
        ([1.0, 2.0, 3.0, 0.0, 4.0], ([2, 0, 2, 1, 0], [1, 3, 1, 0, 0])), shape=(4, 5))
    for fmt in ("coo", "csc", "lil", "dok"):
        url = dmf.save_matrix(coo.asformat(fmt), tmp_path / f"{fmt}.zarr")
        assert_same_csr(stored_arrays(url), coo.tocsr())
    # unsorted indices in a csr input are sorted on the way
    unsorted = scipy.sparse.csr_matrix(([1.0, 2.0], [3, 1], [0, 2]), shape=(1, 4))
    url = dmf.save_matrix(unsorted, tmp_path / "unsorted.zarr")
    np.testing.assert_array_equal(stored_arrays(url).indices, [1, 3])
    assert unsorted.indices.tolist() == [3, 1]  # the input is left alone


def test_empty_matrix_of_zeros(tmp_path):
    x = scipy.sparse.csr_matrix((5, 3))
    url = dmf.save_matrix(x, tmp_path / "z.zarr")
    y = dmf.open_matrix(url).compute()
    assert y.nnz == 0 and y.shape == (5, 3)


def test_integers_become_float64(tmp_path):
    x = scipy.sparse.csr_matrix(np.arange(12).reshape(3, 4))
    with pytest.warns(DmfWarning, match="float64"):
        url = dmf.save_matrix(x, tmp_path / "i.zarr")
    g = open_group(url)
    assert g["data"].dtype == np.float64
    assert g.attrs["dmf"]["source_dtype"] == "int64"
    assert (dmf.open_matrix(url).compute() != x).nnz == 0


def test_nan_refused_and_existing_store_kept(tmp_path):
    good = random_csr()
    url = dmf.save_matrix(good, tmp_path / "x.zarr")
    bad = good.copy()
    bad.data[[5, 9]] = [np.nan, np.inf]
    row, col = bad.nonzero()
    with pytest.raises(InputError, match=rf"1 NaN and 1 Inf values \(first at row {row[5]}, "
                                         rf"column {col[5]}\)"):
        dmf.save_matrix(bad, url, overwrite=True)
    assert_same_csr(dmf.open_matrix(url).compute(), good)
    assert sorted(os.listdir(tmp_path)) == ["x.zarr"]


def test_exists_without_overwrite(tmp_path):
    url = dmf.save_matrix(random_csr(), tmp_path / "x.zarr")
    with pytest.raises(StoreError, match="already exists"):
        dmf.save_matrix(random_csr(seed=1), url)
    new = random_csr(seed=2)
    dmf.save_matrix(new, url, overwrite=True)
    assert_same_csr(dmf.open_matrix(url).compute(), new)


def test_not_a_matrix():
    with pytest.raises(InputError, match="2-D"):
        save_csr(scipy.sparse.coo_array(([1.0], ([0],)), shape=(3,)),
                 Location.parse("memory://t/vec.zarr"))
    with pytest.raises(InputError, match="complex"):
        dmf.save_matrix(scipy.sparse.csr_matrix(np.eye(2) * 1j), "memory://t/c.zarr")


# -- reading in row blocks ---------------------------------------------------


def test_open_csr_blocks_by_nnz(tmp_path):
    x = random_csr(m=500, n=40, density=0.2)
    url = dmf.save_matrix(x, tmp_path / "x.zarr")
    # 12 bytes per value (float64 + int32): about 100 values per block
    X = open_csr(open_group(url), Location.parse(url), target_bytes=1200)
    assert X.numblocks[0] > 20 and X.shape == x.shape
    assert isinstance(X._meta, scipy.sparse.csr_matrix) and X.dtype == np.float64
    for i in (0, 7, X.numblocks[0] - 1):
        block = X.blocks[i].compute()
        assert isinstance(block, scipy.sparse.csr_matrix)
        assert block.nnz <= max(100, block.getnnz(axis=1).max())
    assert_same_csr(X.compute(), x)


def test_dask_sparse_input(tmp_path):
    x = random_csr(m=300, n=60)
    src = dmf.save_matrix(x, tmp_path / "src.zarr")
    X = open_csr(open_group(src), Location.parse(src), target_bytes=2000)
    url = dmf.save_matrix(X, tmp_path / "copy.zarr")
    assert_same_csr(stored_arrays(url), x)
    # column blocks are joined
    Y = da.from_array(x, chunks=(70, 25), asarray=False)
    url = dmf.save_matrix(Y, tmp_path / "cols.zarr")
    assert_same_csr(stored_arrays(url), x)


def test_many_stored_chunks(tmp_path, monkeypatch):
    """Appends are cut into whole chunks of a growing array."""
    import dmf.store.sparse_write as sparse_module

    monkeypatch.setattr(sparse_module, "CHUNK_ELEMENTS", 64)
    x = random_csr(m=300, n=50)  # ~1500 values: ~25 chunks
    url = dmf.save_matrix(x, tmp_path / "x.zarr")
    g = open_group(url)
    assert g["data"].chunks == g["indices"].chunks == g["indptr"].chunks == (64,)
    assert_same_csr(stored_arrays(url), x)
    X = open_csr(g, Location.parse(url), target_bytes=1000)
    assert X.numblocks[0] > 10
    assert_same_csr(X.compute(), x)
    coo = x.tocoo()
    loc = Location.parse(tmp_path / "t.zarr")
    write_csr_from_triplets([(coo.row, coo.col, coo.data)], loc, x.shape, "float64",
                            target_bytes=500)
    assert_same_csr(stored_arrays(loc.url), x)


def test_incomplete_store_refused(tmp_path):
    url = dmf.save_matrix(random_csr(), tmp_path / "x.zarr")
    g = zarr.open_group(url, mode="r+")
    g.update_attributes({"dmf": {**g.attrs["dmf"], "complete": False}})
    with pytest.raises(StoreError, match="incomplete"):
        dmf.open_matrix(url)


def test_corrupt_chunk_names_store(tmp_path):
    url = dmf.save_matrix(random_csr(), tmp_path / "x.zarr")
    chunk = os.path.join(url, "data", "c", "0")
    with open(chunk, "wb") as f:
        f.write(b"not a blosc frame")
    X = dmf.open_matrix(url)
    with pytest.raises(StoreError, match=r"x\.zarr/data/c/0: chunk cannot be read"):
        X.compute()


def test_inconsistent_lengths(tmp_path):
    url = dmf.save_matrix(random_csr(), tmp_path / "x.zarr")
    g = zarr.open_group(url, mode="r+")
    g["data"].resize((10,))
    with pytest.raises(StoreError, match="corrupt"):
        dmf.open_matrix(url)


def test_nan_in_foreign_store(tmp_path):
    """A store written by another tool may hold NaN: reading it says where."""
    x = random_csr(m=20, n=10, density=0.3)
    x.data[4] = np.nan
    row, col = x.nonzero()
    g = zarr.open_group(str(tmp_path / "f.zarr"), mode="w", zarr_format=3,
                        attributes={**ENCODING, "shape": [20, 10]})
    for name in ("data", "indices", "indptr"):
        g.create_array(name, data=getattr(x, name))
    X = dmf.open_matrix(tmp_path / "f.zarr")
    with pytest.raises(InputError, match=rf"1 NaN .*row {row[4]}, column {col[4]}"):
        X.compute()


def test_plan_row_blocks_matches_greedy():
    rng = np.random.default_rng(3)
    for _ in range(50):
        m = int(rng.integers(1, 60))
        counts = rng.integers(0, 8, m) * (rng.random(m) < 0.8)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        max_nnz, max_rows = int(rng.integers(1, 15)), int(rng.integers(1, 20))
        expected, r0 = [0], 0
        while r0 < m:  # greedy: as many rows as fit, at least one
            r1 = r0 + 1
            while r1 < m and r1 - r0 < max_rows and indptr[r1 + 1] - indptr[r0] <= max_nnz:
                r1 += 1
            expected.append(r1)
            r0 = r1
        piece = int(rng.integers(1, 10))
        got = plan_row_blocks(lambda a, b, p=indptr: p[a:b], m, max_nnz, max_rows, piece=piece)
        assert got == expected


def test_even_row_blocks_balance_the_greedy_plan():
    rng = np.random.default_rng(4)
    for _ in range(50):
        m = int(rng.integers(2, 400))
        counts = rng.integers(0, 9, m)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        max_nnz = int(rng.integers(8, max(9, indptr[-1])))
        plans = [even_row_blocks(lambda a, b, p=indptr: p[a:b], m, max_nnz, m, piece=piece)
                 for piece in (1, 7, m)]
        assert plans[0] == plans[1] == plans[2]  # whatever the pieces indptr is read in
        bounds = plans[0]
        greedy = plan_row_blocks(lambda a, b, p=indptr: p[a:b], m, max_nnz, m)
        assert bounds[0] == 0 and bounds[-1] == m and len(bounds) <= len(greedy)
        assert (np.diff(bounds) > 0).all()
        sizes = np.diff(indptr[bounds])
        # each block within a row of its share (rows hold at most 8 entries)
        assert np.abs(sizes - indptr[-1] / (len(bounds) - 1)).max() <= 8


# -- building from triplets ----------------------------------------------------


def test_triplets_any_order_with_duplicates(tmp_path):
    rng = np.random.default_rng(1)
    m, n, k = 300, 80, 5000
    rows, cols = rng.integers(0, m, k), rng.integers(0, n, k)
    rows[:50] = 7  # a busy row
    vals = rng.integers(1, 10, k).astype(np.float64)  # exact sums, any order
    pieces = np.array_split(rng.permutation(k), 9)
    chunks = [(rows[p], cols[p], vals[p]) for p in pieces]
    loc = Location.parse(tmp_path / "t.zarr")
    # about 100 entries per spilled block: many blocks
    write_csr_from_triplets(lambda: iter(chunks), loc, (m, n), "float32",
                            target_bytes=2000, tmpdir=tmp_path)
    expected = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(m, n)).tocsr()
    stored = stored_arrays(loc.url)
    assert stored.dtype == np.float32
    assert_same_csr(stored, expected.astype(np.float32))
    assert sorted(os.listdir(tmp_path)) == ["t.zarr"]  # spill files are gone


def test_triplets_errors(tmp_path):
    loc = Location.parse(tmp_path / "t.zarr")
    chunk = (np.array([0, 1]), np.array([0, 5]), np.array([1.0, 2.0]))
    with pytest.raises(InputError, match=r"entry 1 at \(row 1, column 5\) lies outside"):
        write_csr_from_triplets([chunk], loc, (2, 5), "float64")
    nan = (np.array([1, 0]), np.array([2, 1]), np.array([1.0, np.nan]))
    with pytest.raises(InputError, match=r"1 NaN .*row 0, column 1"):
        write_csr_from_triplets([nan], loc, (2, 5), "float64")
    with pytest.raises(TypeError, match="twice"):
        write_csr_from_triplets(iter([chunk]), loc, (2, 6), "float64")
    overflow = (np.array([0, 0]), np.array([0, 0]), np.array([3e38, 3e38]))
    with pytest.raises(InputError, match="after summing duplicates"):
        write_csr_from_triplets([overflow], loc, (1, 1), "float32")
    assert not os.path.exists(loc.url)


def test_anndata_reads_dmf_and_dmf_reads_anndata(tmp_path):
    anndata = pytest.importorskip("anndata")
    x = random_csr(dtype=np.float32)
    url = dmf.save_matrix(x, tmp_path / "x.zarr")
    read = anndata.io.read_elem(zarr.open_group(url, mode="r"))
    assert isinstance(read, scipy.sparse.csr_matrix)
    assert_same_csr(read, x)

    g = zarr.open_group(str(tmp_path / "a.zarr"), mode="w", zarr_format=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's own notices about zarr 3
        anndata.io.write_elem(g, "X", x)
    assert_same_csr(dmf.open_matrix(tmp_path / "a.zarr" / "X").compute(), x)


def test_sparse_on_s3(s3, monkeypatch):
    """Growing arrays on an object store, and a failed overwrite there."""
    import dmf.store.sparse_write as sparse_module

    monkeypatch.setattr(sparse_module, "CHUNK_ELEMENTS", 256)
    options = s3.storage_options
    x = random_csr(m=300, n=40)
    url = f"{s3.url}/x.zarr"
    dmf.save_matrix(x, url, storage_options=options)
    assert_same_csr(dmf.open_matrix(url, storage_options=options).compute(), x)
    bad = x.copy()
    bad.data[0] = np.nan
    with pytest.raises(InputError):
        dmf.save_matrix(bad, url, overwrite=True, storage_options=options)
    assert_same_csr(dmf.open_matrix(url, storage_options=options).compute(), x)
    coo = random_csr(m=300, n=40, seed=5).tocoo()
    loc = Location.parse(f"{s3.url}/t.zarr", options)
    write_csr_from_triplets([(coo.row, coo.col, coo.data)], loc, coo.shape, "float64")
    assert_same_csr(dmf.open_matrix(loc.url, storage_options=options).compute(), coo.tocsr())
