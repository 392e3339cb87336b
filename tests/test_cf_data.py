"""Ratings data: ingest, synthetic ratings, stores (both views, ids, times)
and train/test splits, with small blocks so the out-of-core paths run."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import scipy.sparse
import zarr

import dmf
import dmf.store.ingest.lines as lines_module
import dmf.store.ingest.ratings as ingest_module
from dmf.cf.data import as_ratings, ratings_from_scipy
from dmf.cf.split import time_cutoff, train_test_split
from dmf.cf.store import open_ratings, save_ratings, with_timestamps
from dmf.cli import main
from dmf.errors import DmfWarning, InputError
from dmf.store import ratings as ratings_store
from dmf.store.ratings import write_ratings

# row blocks of a few rows, and the default (one block)
BLOCKS = [300, None]


def dense(x):
    return x.compute().toarray() if hasattr(x, "compute") else x.toarray()


def assert_views(r, expected, times=None):
    """by_user is ``expected``, by_item its transpose, times aligned."""
    np.testing.assert_array_equal(dense(r.by_user), expected.toarray())
    np.testing.assert_array_equal(dense(r.by_item), expected.toarray().T)
    assert r.by_item.compute().nnz == expected.nnz  # explicit zeros kept on both sides
    if times is None:
        assert r.timestamps is None
    else:
        stamps = r.timestamps.compute()
        got = r.by_user.compute()
        assert np.array_equal(stamps.indices, got.indices)
        assert np.array_equal(stamps.indptr, got.indptr)
        np.testing.assert_array_equal(stamps.toarray(), times.toarray())


@pytest.fixture
def small_blocks(monkeypatch, request):
    """Parse a few lines per batch, read back a few records at a time and
    build the store in blocks of a few rows (the out-of-core paths)."""
    target = getattr(request, "param", 300)
    if target:
        monkeypatch.setattr(lines_module, "_BATCH_CHARS", 40)
        monkeypatch.setattr(ingest_module, "_READ_RECORDS", 3)
        monkeypatch.setattr(ingest_module, "write_ratings",
                            functools.partial(write_ratings, target_bytes=target))
    return target


# -- ingest ---------------------------------------------------------------------


TSV = """\
user\tmovie\tstars\twhen
bob\tzorro\t4\t100
ann\talien\t3\t50
bob\tzorro\t2\t300
# a comment, and a blank line

carl\tbambi\t0\t10
ann\tzorro\t5\t70
bob\tzorro\t1\t200
ann\talien\t4.5\t50
"""


@pytest.mark.parametrize("small_blocks", BLOCKS, indirect=True)
def test_ingest_tsv_string_ids_header_duplicates(tmp_path, small_blocks):
    src = tmp_path / "r.tsv"
    src.write_text(TSV)
    with pytest.warns(DmfWarning, match=r"3 repeated \(user, item\) ratings replaced by a later "
                                        r"one \(kept the latest by timestamp, then the last line"):
        url = dmf.ingest(src, tmp_path / "r.zarr", format="ratings")
    r = open_ratings(url, target_bytes=small_blocks or 2**26)
    # ids sorted; bob/zorro: the latest time (300) wins over later lines;
    # ann/alien: equal times, the last line wins; carl's 0 is a rating
    assert r.user_ids.tolist() == ["ann", "bob", "carl"]
    assert r.item_ids.tolist() == ["alien", "bambi", "zorro"]
    expected = scipy.sparse.csr_matrix(
        (np.array([4.5, 5, 2, 0]), (np.array([0, 0, 1, 2]), np.array([0, 2, 2, 1]))),
        shape=(3, 3))
    times = scipy.sparse.csr_matrix(
        (np.array([50.0, 70, 300, 10]), (np.array([0, 0, 1, 2]), np.array([0, 2, 2, 1]))),
        shape=(3, 3))
    assert_views(r, expected, times)
    assert r.location is not None and r.token.startswith("ratings-")
    meta = zarr.open_group(url, mode="r").attrs["dmf"]
    assert meta["kind"] == "ratings" and meta["complete"] and meta["source_ratings"] == 7
    # a plain sparse matrix to everything else
    np.testing.assert_array_equal(dense(dmf.open_matrix(url)), expected.toarray())
    # the same from dmf.cf.data
    assert as_ratings(url).token == r.token


@pytest.mark.parametrize("delimiter", [",", ";", " ", "::", "\t"])
def test_ingest_integer_ids_no_header_no_times(tmp_path, delimiter):
    rows = [("10", "7", "1"), ("2", "7", "2"), ("33", "-1", "3"), ("10", "7", "5"),
            ("2", "100", "4")]
    text = "\n".join(delimiter.join(f if delimiter != " " else f"{f}  " for f in row)
                     for row in rows)
    src = tmp_path / "r.txt"
    src.write_text(text + "\n")
    with pytest.warns(DmfWarning, match=r"1 repeated .*kept the last line of each pair"):
        r = open_ratings(dmf.ingest(src, tmp_path / "r.zarr", format="ratings"))
    assert r.user_ids.tolist() == [2, 10, 33] and r.user_ids.dtype == np.int64
    assert r.item_ids.tolist() == [-1, 7, 100]
    # without times, the last of a duplicate pair in the file wins
    expected = np.array([[0, 2, 4], [0, 5, 0], [3, 0, 0]], dtype=float)
    np.testing.assert_array_equal(dense(r.by_user), expected)
    np.testing.assert_array_equal(dense(r.by_item), expected.T)
    assert r.timestamps is None


@pytest.mark.parametrize("content, message", [
    ("u1,1,5\n7,2,3\n", r"line 2: user id '7' is an integer, but the user ids before it "
                         r"are text \(line 1: 'u1'\)"),
    ("1,a,5\n2,b,3\n3,4,1\n", r"line 3: item id '4' is an integer, but the item ids"),
    ("7,a,5\n8,b,3\nx9,c,1\n", r"line 3: user id 'x9' is text, but the user ids before it "
                               r"are integers"),
    ("a,1,5\nb,01,3\n", r"line 2: item id '01' is the integer '1' of line 1 spelled "),
])
def test_ingest_ids_of_mixed_forms_are_errors_naming_the_line(tmp_path, content, message):
    src = tmp_path / "r.csv"
    src.write_text(content)
    with pytest.raises(InputError, match=message):
        dmf.ingest(src, tmp_path / "r.zarr", format="ratings")


@pytest.mark.parametrize("text, columns, timed", [
    # swapped: the names decide, not the positions
    ("movieId,userId,rating,timestamp\n100,7,4,50\n200,7,2,60\n100,9,5,70\n", None, True),
    # any order, case, blanks and underscores
    ("Timestamp;Product_ID;User ID;Rating\n50;100;7;4\n60;200;7;2\n70;100;9;5\n", None,
     True),
    # other names mapped by columns=; extra columns ignored
    ("when,sku,customer,stars\n50,100,7,4\n60,200,7,2\n70,100,9,5\n",
     "user=customer,item=sku,rating=stars,timestamp=when", True),
    ("note,sku,customer,stars,x\na,100,7,4,b\na,200,7,2,b\na,100,9,5,b\n",
     {"user": "customer", "product": "sku", "rating": "stars"}, False),
])
def test_ingest_header_names_choose_the_columns(tmp_path, text, columns, timed):
    src = tmp_path / "r.csv"
    src.write_text(text)
    r = open_ratings(dmf.ingest(src, tmp_path / "r.zarr", format="ratings", columns=columns))
    assert r.user_ids.tolist() == [7, 9] and r.item_ids.tolist() == [100, 200]
    np.testing.assert_array_equal(dense(r.by_user), [[4, 2], [5, 0]])
    assert (r.timestamps is not None) == timed


def test_ingest_columns_errors(tmp_path):
    src = tmp_path / "r.csv"
    src.write_text("a,b,c,d,e\n1,2,3,4,5\n")
    with pytest.raises(InputError, match=r"line 1: the header names no user or item or rating "
                                         r"column \(columns: a, b, c, d, e\).*--columns"):
        dmf.ingest(src, tmp_path / "r.zarr", format="ratings")
    with pytest.raises(InputError, match=r"the header has no column 'zz' for user"):
        dmf.ingest(src, tmp_path / "r.zarr", format="ratings", columns="user=zz")
    with pytest.raises(InputError, match=r"unknown role 'person'"):
        dmf.ingest(src, tmp_path / "r.zarr", format="ratings", columns="person=a")


def test_duplicates_keep_the_last_and_warn_everywhere_or_sum_when_asked(tmp_path):
    src = tmp_path / "r.csv"
    src.write_text("u,i,r\n1,1,4\n1,1,5\n2,1,1\n")
    with pytest.warns(DmfWarning, match=r"1 repeated \(user, item\) ratings replaced by a "
                                        r"later one"):
        r = open_ratings(dmf.ingest(src, tmp_path / "last.zarr", format="ratings"))
    np.testing.assert_array_equal(dense(r.by_user), [[5], [1]])
    with pytest.warns(DmfWarning, match=r"1 repeated .* added to their pair's"):
        r = open_ratings(dmf.ingest(src, tmp_path / "sum.zarr", format="ratings",
                                    duplicates="sum"))
    np.testing.assert_array_equal(dense(r.by_user), [[9], [1]])
    # COO input and fit(X, y): the same rule (they summed 4 and 5 into 9 before)
    coo = scipy.sparse.coo_matrix(([4.0, 5.0, 1.0], ([0, 0, 1], [0, 0, 0])), shape=(2, 1))
    with pytest.warns(DmfWarning, match="1 repeated"):
        np.testing.assert_array_equal(dense(ratings_from_scipy(coo).by_user), [[5], [1]])
    with pytest.warns(DmfWarning, match="1 repeated .* added"):
        summed = ratings_from_scipy(coo, duplicates="sum")
    np.testing.assert_array_equal(dense(summed.by_user), [[9], [1]])
    from dmf.cf.params import ratings_input
    with pytest.warns(DmfWarning, match=r"fit\(X, y\): 1 repeated"):
        R = ratings_input(np.array([[0, 0], [0, 0], [1, 0]]), [4.0, 5.0, 1.0])
    np.testing.assert_array_equal(R.toarray(), [[5], [1]])


@pytest.mark.parametrize("content, message", [
    ("", r"no ratings \(the file is empty\)"),
    ("user,item,rating\n", "only a header line"),
    ("# only\n\n# comments\n", "no ratings"),
    ("a,b,5\nc,d\n", r"line 2 has 2 fields, expected 3 \(as on line 1\)"),
    ("a,b,5,1,9\n", "line 1 has 5 fields, expected 3"),
    ("u,i,r\na,b,5\n\nc,d,five\n", r"line 4: rating 'five' is not a number"),
    ("a,b,5\na,c,nan\n", r"line 2: rating 'nan' is not a finite number"),
    ("a,b,5,1\na,c,4,inf\n", r"line 2: timestamp 'inf' is not a finite number"),
    ("a,b,5,1\na,c,4,noon\n", r"line 2: timestamp 'noon' is not a number"),
    ("a,b,5\n ,c,4\n", "line 2: empty user id"),
])
def test_ingest_bad_input_names_file_and_line(tmp_path, content, message):
    src = tmp_path / "bad.csv"
    src.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        dmf.ingest(src, tmp_path / "out.zarr", format="ratings")
    assert str(info.value).startswith(str(src))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.zarr").exists()


def test_ingest_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: no such file"):
        dmf.ingest(tmp_path / "nope.csv", tmp_path / "out.zarr", format="ratings")


def test_bad_ingest_keeps_the_good_store(tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("a,x,1\nb,y,2\n")
    bad.write_text("a,x,1\nb,y,oops\n")
    url = dmf.ingest(good, tmp_path / "r.zarr", format="ratings")
    before = open_ratings(url)
    with pytest.raises(InputError, match="line 2"):
        dmf.ingest(bad, url, format="ratings", overwrite=True)
    after = open_ratings(url)
    assert after.token == before.token
    np.testing.assert_array_equal(dense(after.by_user), [[1, 0], [0, 2]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "good.csv", "r.zarr"]


def test_cli_ingest_and_generate(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,5\na,c,nan\n")
    assert main(["ingest", str(bad), str(tmp_path / "o.zarr"), "--format", "ratings"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmf: error: ") and "bad.csv: line 2" in err
    assert "Traceback" not in err and err.count("\n") == 1
    good = tmp_path / "good.csv"
    good.write_text("a,b,5\na,c,4\n")
    assert main(["-q", "ingest", str(good), str(tmp_path / "o.zarr"), "--format",
                 "ratings"]) == 0
    assert open_ratings(tmp_path / "o.zarr").shape == (1, 2)
    out = tmp_path / "g.zarr"
    assert main(["generate", "ratings", str(out), "--users", "40", "--items", "10",
                 "--density", "0.2", "--rank", "2", "--seed", "3"]) == 0
    assert "40 users x 10 items" in capsys.readouterr().out
    assert open_ratings(out).shape == (40, 10)
    assert (tmp_path / "g.factors.zarr").exists()
    assert main(["info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "kind               ratings" in shown and "twin               csc" in shown
    assert "generator          ratings rank=2" in shown and "density=0.2" in shown
    assert main(["generate", "ratings", str(out), "--users", "40", "--items", "10",
                 "--density", "2", "--rank", "2"]) == 2
    assert "density must be in (0, 1]" in capsys.readouterr().err


# -- stores -----------------------------------------------------------------------


def test_save_and_open_ratings(memory_url):
    R = scipy.sparse.random(30, 12, density=0.3, format="csr", random_state=1)
    R.data[:3] = 0.0  # explicit zeros are ratings
    T = R.copy()
    T.data = np.arange(R.nnz, dtype=float)
    r = save_ratings(R, memory_url + "/r.zarr", user_ids=[f"u{i:02d}" for i in range(30)],
                     timestamps=T, target_bytes=200)
    assert r.by_user.numblocks[0] > 1
    assert_views(r, R, T)
    assert r.user_ids[3] == "u03" and r.item_ids.tolist() == list(range(12))
    # a Ratings is streamed to another store, ids and times kept
    copy = save_ratings(r, memory_url + "/copy.zarr")
    assert_views(copy, R, T)
    assert copy.user_ids.tolist() == r.user_ids.tolist()
    with pytest.raises(InputError, match="pattern"):
        save_ratings(R, memory_url + "/x.zarr", timestamps=T[:, :6])
    with pytest.raises(InputError, match="not unique"):
        save_ratings(R, memory_url + "/x.zarr", item_ids=[1] * 12)


def test_plain_sparse_store_gets_item_view_in_memory(tmp_path, monkeypatch):
    R = scipy.sparse.random(20, 8, density=0.3, format="csr", random_state=2)
    url = dmf.save_matrix(R, tmp_path / "plain.zarr")
    with pytest.warns(DmfWarning, match="no item view stored"):
        r = open_ratings(url)
    assert_views(r, R)
    monkeypatch.setattr(ratings_store, "IN_MEMORY_TWIN_BYTES", 10)
    with pytest.raises(InputError, match="--format ratings"):
        open_ratings(url)


def test_anndata_reads_both_views(tmp_path):
    anndata = pytest.importorskip("anndata")
    R = scipy.sparse.random(15, 9, density=0.3, format="csr", random_state=3)
    save_ratings(R, tmp_path / "r.zarr")
    group = zarr.open_group(tmp_path / "r.zarr", mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's own notices about zarr 3
        by_user = anndata.io.read_elem(group)
        by_item = anndata.io.read_elem(group["csc"])
    assert scipy.sparse.isspmatrix_csr(by_user) or by_user.format == "csr"
    assert by_item.format == "csc"
    np.testing.assert_array_equal(by_user.toarray(), R.toarray())
    np.testing.assert_array_equal(by_item.toarray(), R.toarray())


# -- generate ---------------------------------------------------------------------


def test_generate_ratings_planted_model(tmp_path):
    info = dmf.generate.ratings(tmp_path / "a.zarr", 500, 80, 0.05, 4, noise=0.2, seed=7)
    again = dmf.generate.ratings(tmp_path / "b.zarr", 500, 80, 0.05, 4, noise=0.2, seed=7,
                                 target_bytes=500)
    other = dmf.generate.ratings(tmp_path / "c.zarr", 500, 80, 0.05, 4, noise=0.2, seed=8)
    a, b = open_ratings(tmp_path / "a.zarr"), open_ratings(tmp_path / "b.zarr",
                                                          target_bytes=500)
    X = a.to_scipy()
    assert b.by_user.numblocks[0] > 1 and b.by_item.numblocks[0] > 1
    # deterministic for the seed, whatever the blocks; another seed differs
    assert (X != b.to_scipy()).nnz == 0 and info["nnz"] == again["nnz"] == X.nnz
    assert (dense(a.timestamps) == dense(b.timestamps)).all()
    assert (X != open_ratings(tmp_path / "c.zarr").to_scipy()).nnz > 0
    assert other["nnz"] != info["nnz"] or (X != open_ratings(tmp_path / "c.zarr").to_scipy()).nnz
    assert_views(a, X, a.timestamps.compute())
    # every user rates a few, about density * items on average
    counts = np.diff(X.indptr)
    assert counts.min() >= 3 and abs(counts.mean() - max(3, 0.05 * 80)) < 1.0
    # the planted model explains the ratings up to the noise
    f = zarr.open_group(tmp_path / info["factors"], mode="r")
    assert info["factors"] == "a.factors.zarr" and f.attrs["dmf"]["mu"] == 3.5
    rows, cols = X.nonzero()
    planted = (3.5 + f["user_bias"][:][rows] + f["item_bias"][:][cols]
               + np.einsum("ij,ij->i", f["P"][:][rows], f["Q"][:][cols]))
    residual = X[rows, cols].A1 - planted
    assert abs(residual.std() - 0.2) < 0.02 and abs(residual.mean()) < 0.03
    assert 3.0 < X.data.mean() < 4.0 and 0.8 < X.data.std() < 1.6
    t = X.copy()
    t.data = dense(a.timestamps)[rows, cols]
    assert t.data.min() >= 946_684_800


# -- split ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "r.zarr"
    dmf.generate.ratings(path, 300, 60, 0.1, 3, seed=1)
    return path


def parts(train, test):
    return train.to_scipy(), test.to_scipy()


def assert_partition(R, train, test):
    a, b = parts(train, test)
    X = R.to_scipy()
    assert train.shape == test.shape == R.shape
    assert a.nnz + b.nnz == X.nnz
    assert abs(a + b - X).max() == 0  # the union is the input...
    pattern = lambda x: x.astype(bool).astype(int) if x.nnz else x  # noqa: E731
    assert pattern(a).multiply(pattern(b)).nnz == 0  # ...and they are disjoint
    assert train.user_ids.tolist() == test.user_ids.tolist() == R.user_ids.tolist()
    assert train.item_ids.tolist() == test.item_ids.tolist() == R.item_ids.tolist()
    return a, b


@pytest.mark.parametrize("block", [400, 2**26])
@pytest.mark.parametrize("by", ["rating", "user", "time"])
def test_split_properties(generated, by, block):
    R = open_ratings(generated, target_bytes=block)
    whole = open_ratings(generated)
    X = R.to_scipy()
    train, test = train_test_split(R, by=by, test_size=0.25, k=2, seed=5)
    a, b = assert_partition(R, train, test)
    # the same split whatever the row blocks
    a1, b1 = parts(*train_test_split(whole, by=by, test_size=0.25, k=2, seed=5))
    assert (a1 != a).nnz == 0 and (b1 != b).nnz == 0
    # another seed gives another split (except the temporal one)
    b2 = train_test_split(R, by=by, test_size=0.25, k=2, seed=6)[1].to_scipy()
    assert ((b2 != b).nnz > 0) == (by != "time")
    if by == "rating":
        assert abs(b.nnz / X.nnz - 0.25) < 0.05
    elif by == "user":
        counts, test_counts = np.diff(X.indptr), np.diff(b.indptr)
        assert ((test_counts == 2) == (counts >= 3)).all()
        assert (test_counts[counts < 3] == 0).all()
    else:
        times_train, times_test = dense(train.timestamps), dense(test.timestamps)
        latest_train = times_train[a.nonzero()].max()
        assert times_test[b.nonzero()].min() > latest_train
        assert latest_train == time_cutoff(R, 0.25)
        assert 0.2 < b.nnz / X.nnz <= 0.25
    # times follow the ratings into train and test
    if by != "time":
        T = R.timestamps.compute()
        for part in (train, test):
            got = part.to_scipy()
            rows, cols = got.nonzero() if got.nnz else ([], [])
            np.testing.assert_array_equal(dense(part.timestamps)[rows, cols],
                                          T.toarray()[rows, cols])


def test_split_to_stores(generated, tmp_path):
    R = open_ratings(generated, target_bytes=400)
    memory = parts(*train_test_split(R, by="user", k=1, seed=2))
    train, test = train_test_split(R, by="user", k=1, seed=2, out=tmp_path / "split")
    assert train.location.url.endswith("split/train.zarr")
    assert test.location.url.endswith("split/test.zarr")
    a, b = assert_partition(R, train, test)
    assert (a != memory[0]).nnz == 0 and (b != memory[1]).nnz == 0
    np.testing.assert_array_equal(dense(test.by_item), b.toarray().T)
    assert test.timestamps is not None
    meta = zarr.open_group(tmp_path / "split/test.zarr", mode="r").attrs["dmf"]
    assert meta["split"]["part"] == "test" and meta["split"]["of"] == R.token
    # a pair of URLs, as given
    pair = (tmp_path / "tr.zarr", tmp_path / "te.zarr")
    train, test = train_test_split(R, by="rating", seed=2, out=pair)
    assert_partition(R, train, test)


def test_split_rules_on_scipy_and_errors():
    R = scipy.sparse.random(40, 30, density=0.2, format="csr", random_state=4)
    train, test = train_test_split(R, by="rating", seed=1)
    assert_partition(ratings_from_scipy(R), train, test)
    with pytest.raises(InputError, match="no timestamps"):
        train_test_split(R, by="time")
    with pytest.raises(InputError, match="by must be one of"):
        train_test_split(R, by="item")
    with pytest.raises(InputError, match="test_size"):
        train_test_split(R, test_size=1.0)
    with pytest.raises(InputError, match="k must be"):
        train_test_split(R, by="user", k=0)
    # ties at the cutoff stay in train
    T = R.copy()
    T.data = np.where(np.arange(R.nnz) % 2, 5.0, 1.0)
    timed = with_timestamps(ratings_from_scipy(R), T)
    train, test = train_test_split(timed, by="time", test_size=0.3)
    assert test.to_scipy().nnz == 0 and train.to_scipy().nnz == R.nnz


def test_time_cutoff_refines_histograms(monkeypatch):
    import dmf.cf.split as split_module

    monkeypatch.setattr(split_module, "_BINS", 4)
    monkeypatch.setattr(split_module, "_GATHER", 5)
    rng = np.random.default_rng(0)
    R = scipy.sparse.random(60, 50, density=0.2, format="csr", random_state=5)
    T = R.copy()
    T.data = np.round(rng.exponential(1000.0, R.nnz))  # skewed, with ties
    timed = with_timestamps(ratings_from_scipy(R, block_rows=7), T)
    for size in (0.01, 0.2, 0.5, 0.9):
        rank = int(np.ceil((1 - size) * R.nnz))
        assert time_cutoff(timed, size) == np.sort(T.data)[rank - 1]
