"""dmf.ingest: every format round-trips, every bad file is named, memory stays
bounded."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.io
import scipy.sparse

import dmf
from dmf.errors import DmfWarning, InputError, StoreError


def dense_of(url):
    x = dmf.open_matrix(url).compute()
    return x.toarray() if scipy.sparse.issparse(x) else x


def assert_ingests(src, expected, tmp_path, **kwargs):
    url = dmf.ingest(src, tmp_path / "out.zarr", overwrite=True, **kwargs)
    assert url == str(tmp_path / "out.zarr")
    got = dense_of(url)
    expected = expected.toarray() if scipy.sparse.issparse(expected) else np.asarray(expected)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    return got


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((37, 6))


@pytest.fixture
def s():
    m = scipy.sparse.random(40, 25, density=0.15, format="coo", random_state=2)
    m.data = np.round(m.data * 100) - 50  # a few exact, signed values
    return m


# -- npy ------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_npy(tmp_path, monkeypatch, x, order, dtype):
    import dmf.store.ingest.npy as ingest_module

    monkeypatch.setattr(ingest_module, "_FORTRAN_GATHER", 100)  # a few columns at a time
    src = tmp_path / "x.npy"
    arr = np.asarray(x, dtype=dtype, order=order)
    np.save(src, arr)
    got = assert_ingests(src, arr, tmp_path, chunks=5)  # several blocks, a ragged last one
    assert got.dtype == dtype


def test_npy_integers_and_byte_order(tmp_path):
    src = tmp_path / "i.npy"
    np.save(src, np.arange(12, dtype=">i4").reshape(4, 3))
    with pytest.warns(DmfWarning, match="float64"):
        got = assert_ingests(src, np.arange(12).reshape(4, 3), tmp_path)
    assert got.dtype == np.float64
    np.save(src, np.arange(6.0, dtype=">f8").reshape(2, 3))
    assert_ingests(src, np.arange(6.0).reshape(2, 3), tmp_path)


def test_dtype_option(tmp_path, x):
    src = tmp_path / "x.npy"
    np.save(src, x)
    got = assert_ingests(src, x.astype(np.float32), tmp_path, dtype="float32")
    assert got.dtype == np.float32


# -- csv / tsv / txt ------------------------------------------------------------------


@pytest.mark.parametrize("name, delimiter, header", [
    ("x.csv", ",", None),
    ("h.csv", ",", "a,b,c,d,e,f"),
    ("x.tsv", "\t", None),
    ("h.tsv", "\t", "a\tb\tc\td\te\tf"),
    ("x.txt", " ", None),
    ("s.txt", ";", "first;second;c;d;e;f"),
])
def test_text(tmp_path, x, name, delimiter, header):
    src = tmp_path / name
    np.savetxt(src, x, delimiter=delimiter, header=header or "", comments="", fmt="%.17g")
    got = assert_ingests(src, x, tmp_path, chunks=4)
    assert got.dtype == np.float64


def test_text_details(tmp_path):
    src = tmp_path / "m.csv"
    src.write_text("\ufeff# a comment\nx, y\n\n1, 2\n 3 ,4\n# more\n5,6\n\n")
    assert_ingests(src, [[1, 2], [3, 4], [5, 6]], tmp_path)
    single = tmp_path / "one.csv"
    single.write_text("1\n2\n3\n")
    assert_ingests(single, [[1], [2], [3]], tmp_path)
    gz = tmp_path / "g.csv.gz"
    with gzip.open(gz, "wt") as f:
        f.write("1,2\n3,4\n")
    assert_ingests(gz, [[1, 2], [3, 4]], tmp_path)
    # header=True drops a first line even when it is numeric
    forced = tmp_path / "f.csv"
    forced.write_text("1,2\n3,4\n")
    assert_ingests(forced, [[3, 4]], tmp_path, header=True)
    # format= overrides the extension
    other = tmp_path / "data.dat"
    other.write_text("1 2\n3 4\n")
    assert_ingests(other, [[1, 2], [3, 4]], tmp_path, format="txt")


def test_text_columns_by_name_and_id_columns(tmp_path, monkeypatch):
    src = tmp_path / "ids.csv"
    src.write_text("id,a,b,c\nu1,1,2,3\nu2,4,5,6\n")
    # an id column of strings is skipped, and said so; its header is detected
    with pytest.warns(DmfWarning, match=r"ids\.csv: skipped column 0 \('id'\): text such as "
                                        r"'u1' on line 2"):
        assert_ingests(src, [[1, 2, 3], [4, 5, 6]], tmp_path)
    # columns by name or 0-based position, in the order given (pandas' usecols too)
    assert_ingests(src, [[3, 1], [6, 4]], tmp_path, columns=["c", "a"])
    assert_ingests(src, [[1, 3], [4, 6]], tmp_path, usecols=[1, 3])
    with pytest.raises(InputError, match=r"ids\.csv: no column 'z' \(the header has id, a, "
                                         r"b, c"):
        dmf.ingest(src, tmp_path / "bad.zarr", columns=["z"])
    with pytest.raises(InputError, match=r"ids\.csv: line 2, column 1: 'u1' is not a number"):
        dmf.ingest(src, tmp_path / "bad.zarr", columns=["id", "a"])
    # a line with another number of values is refused, chosen columns or not
    monkeypatch.setattr("dmf.store.ingest.lines._BATCH_CHARS", 20)
    src.write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n")
    with pytest.raises(InputError, match=r"ids\.csv: line 4 has 4 values, expected 3"):
        dmf.ingest(src, tmp_path / "bad.zarr", columns=["a"])


def test_ingest_command_says_what_it_wrote(tmp_path, capsys):
    from dmf.cli import main

    src = tmp_path / "ids.csv"
    src.write_text("id,a,b\nu1,1,2\nu2,4,5\nu3,7,8\n")
    assert main(["-q", "--workers", "0", "ingest", str(src), str(tmp_path / "o.zarr"),
                 "--columns", "b,1", "--chunks", "2"]) == 0
    out = capsys.readouterr().out
    assert out == f"wrote {tmp_path / 'o.zarr'}: dense 3 x 2 float64, chunks 2 x 2\n"
    np.testing.assert_array_equal(dense_of(tmp_path / "o.zarr"), [[2, 1], [5, 4], [8, 7]])


def test_text_parsed_in_batches(tmp_path, monkeypatch, x):
    """Batches of a line or two: blocks straddle batches, the header and
    comments fall anywhere, line numbers in errors stay right."""
    import dmf.store.ingest.lines as ingest_module

    monkeypatch.setattr(ingest_module, "_BATCH_CHARS", 60)
    lines = [",".join(f"{v:.17g}" for v in row) for row in x]
    lines[10:10] = ["# a comment", ""]
    src = tmp_path / "x.csv"
    src.write_text("# made by a test\na,b,c,d,e,f\n" + "\n".join(lines) + "\n")
    assert_ingests(src, x, tmp_path, chunks=7)
    lines[30] = "1,2,3"  # file line 2 + 30 + 1
    src.write_text("# made by a test\na,b,c,d,e,f\n" + "\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"x\.csv: line 33 has 3 values, expected 6 "
                                         r"\(as on line 3\)"):
        dmf.ingest(src, tmp_path / "bad.zarr")


# -- Matrix Market ------------------------------------------------------------------


def test_mtx_array(tmp_path, x):
    src = tmp_path / "a.mtx"
    scipy.io.mmwrite(src, x, precision=17)
    assert_ingests(src, x, tmp_path, chunks=6)
    assert not dmf.open_matrix(tmp_path / "out.zarr").dtype.kind == "O"


def test_mtx_coordinate(tmp_path, s):
    src = tmp_path / "c.mtx"
    scipy.io.mmwrite(src, s)
    assert_ingests(src, s, tmp_path)
    assert scipy.sparse.issparse(dmf.open_matrix(tmp_path / "out.zarr").compute())


@pytest.mark.parametrize("symmetry", ["symmetric", "skew-symmetric"])
@pytest.mark.parametrize("sparse", [True, False])
def test_mtx_symmetric(tmp_path, s, symmetry, sparse):
    lower = np.tril(s.toarray()[:25], -1)
    full = lower + lower.T if symmetry == "symmetric" else lower - lower.T
    if symmetry == "symmetric":
        full += np.diag(np.arange(25.0))
    src = tmp_path / "s.mtx"
    scipy.io.mmwrite(src, scipy.sparse.coo_matrix(full) if sparse else full, symmetry=symmetry)
    assert_ingests(src, full, tmp_path)


def test_mtx_pattern_and_integer(tmp_path, s):
    pattern = (s != 0).astype(np.int64)
    src = tmp_path / "p.mtx"
    scipy.io.mmwrite(src, pattern, field="pattern")
    assert "pattern" in src.read_text().splitlines()[0]
    assert_ingests(src, pattern, tmp_path)
    src = tmp_path / "i.mtx"
    scipy.io.mmwrite(src, s.astype(np.int64), field="integer")
    with pytest.warns(DmfWarning, match="float64"):
        assert_ingests(src, s, tmp_path)


def test_mtx_duplicates_summed(tmp_path):
    src = tmp_path / "d.mtx"
    src.write_text("%%MatrixMarket matrix coordinate real general\n% a comment\n"
                   "2 3 3\n2 3 1.5\n1 1 4\n2 3 2.5\n")
    assert_ingests(src, [[4, 0, 0], [0, 0, 4]], tmp_path)


@pytest.mark.parametrize("layout", ["coordinate", "array"])
def test_mtx_small_batches_and_comments(tmp_path, monkeypatch, s, layout):
    import dmf.store.ingest.lines as ingest_module

    monkeypatch.setattr(ingest_module, "_BATCH_CHARS", 40)
    src = tmp_path / "c.mtx"
    scipy.io.mmwrite(src, s if layout == "coordinate" else s.toarray())
    head, *rest = src.read_text().splitlines(keepends=True)
    rest.insert(len(rest) // 2, "% a comment among the entries\n\n")
    src.write_text(head + "".join(rest))
    assert_ingests(src, s, tmp_path)
    bad = len(rest) - 3
    rest[bad] = "1 x 2\n" if layout == "coordinate" else "x\n"
    src.write_text(head + "".join(rest))
    line = bad + 2 + 1  # the banner, the comment inserted above
    with pytest.raises(InputError, match=rf"c\.mtx: line {line}: 'x' is not"):
        dmf.ingest(src, tmp_path / "bad.zarr")


# -- npz ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("compressed", [True, False])
def test_npz(tmp_path, s, fmt, compressed):
    src = tmp_path / f"{fmt}.npz"
    scipy.sparse.save_npz(src, s.asformat(fmt), compressed=compressed)
    assert_ingests(src, s, tmp_path)


def test_npz_streams_in_blocks(tmp_path, monkeypatch, s):
    """Small row blocks and triplet chunks: many pieces, same result."""
    import dmf.store.ingest.npz as ingest_module
    import dmf.store.sparse_row_blocks as sparse_module

    monkeypatch.setattr(ingest_module, "_TRIPLET_CHUNK", 7)
    real = sparse_module.csr_row_blocks
    monkeypatch.setattr(ingest_module, "csr_row_blocks",
                        lambda indptr, d, i: real(indptr, d, i, target_bytes=40))
    for fmt in ("csr", "csc", "coo"):
        src = tmp_path / f"{fmt}.npz"
        scipy.sparse.save_npz(src, s.asformat(fmt))
        assert_ingests(src, s, tmp_path)


def test_npz_coo_coords(tmp_path, monkeypatch, s):
    """The layout scipy announces for COO: one 2 x nnz ``coords`` member."""
    import dmf.store.ingest.npz as ingest_module

    monkeypatch.setattr(ingest_module, "_TRIPLET_CHUNK", 9)
    src = tmp_path / "coords.npz"
    np.savez(src, format=np.array(b"coo"), shape=np.array(s.shape), data=s.data,
             coords=np.vstack([s.row, s.col]))
    assert_ingests(src, s, tmp_path)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_of_one_dense_array(tmp_path, monkeypatch, x, save):
    src = tmp_path / "x.npz"
    save(src, x.astype(np.float32))
    got = assert_ingests(src, x.astype(np.float32), tmp_path, chunks=5)  # 8 row blocks
    assert got.dtype == np.float32
    save(src, X=np.asfortranarray(x))
    with pytest.raises(InputError, match=r"x\.npz \(array X\): Fortran order"):
        dmf.ingest(src, tmp_path / "f.zarr")


def test_npz_float32_kept(tmp_path, s):
    src = tmp_path / "f.npz"
    scipy.sparse.save_npz(src, s.tocsr().astype(np.float32))
    assert_ingests(src, s.astype(np.float32), tmp_path)
    assert dmf.open_matrix(tmp_path / "out.zarr").dtype == np.float32


# -- errors ---------------------------------------------------------------------------


def write(path, text):
    path.write_text(text)
    return path


def npy(path, arr):
    np.save(path, arr)
    return path


MM = "%%MatrixMarket matrix coordinate real general\n"
ERRORS = [
    ("missing.npy", None, r"missing\.npy: no such file"),
    ("x.xyz", "1\n", r"x\.xyz: cannot tell the format .* npy, csv, tsv, txt, mtx, npz"),
    ("ragged.csv", "1,2,3\n4,5,6\n7,8\n", r"ragged\.csv: line 3 has 2 values, expected 3"),
    ("word.csv", "1,2\n3,x\n", r"word\.csv: line 2, column 2: 'x' is not a number"),
    ("nan.csv", "a,b\n1,2\n3,nan\n",
     r"nan\.csv: 1 NaN and 0 Inf values \(first at row 1, column 1\)"),
    ("big.csv", "1,2\n1e400,4\n", r"big\.csv: 0 NaN and 1 Inf values \(first at row 1, column 0\)"),
    ("empty.csv", "\n", r"empty\.csv: no data"),
    ("vec.npy", np.arange(4.0), r"vec\.npy: expected a 2-D matrix, got a 1-D array"),
    ("cube.npy", np.zeros((2, 2, 2)), r"cube\.npy: expected a 2-D matrix, got a 3-D array"),
    ("huge.npy", np.array([[1, 2**53 + 1]]), r"huge\.npy: 1 integers beyond 2\*\*53 .*column 1"),
    ("cplx.npy", np.ones((2, 2), complex), r"cplx\.npy: unsupported dtype complex128"),
    ("garbage.npy", "not a npy file", r"garbage\.npy: cannot be read"),
    ("cplx.mtx", "%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 2\n",
     r"cplx\.mtx: complex Matrix Market data is not supported"),
    ("short.mtx", MM + "3 3 3\n1 1 1\n2 2 2\n",
     r"short\.mtx: 2 entries found, .* says 3; .*truncated"),
    ("out.mtx", MM + "3 3 1\n4 1 1\n", r"out\.mtx: line 3: entry \(4, 1\) lies outside"),
    ("bad.mtx", MM + "3 3 1\n1 1 one\n", r"bad\.mtx: line 3: 'one' is not a number"),
    ("nomm.mtx", "1 2 3\n", r"nomm\.mtx: not a Matrix Market file"),
    ("plain.npz", None, r"plain\.npz \(array a\): expected a 2-D matrix, got a 1-D array"),
    ("two.npz", None, r"two\.npz: holds 2 arrays \(a, b\); dmf reads np\.savez of one 2-D"),
    ("binary.csv", None, r"binary\.csv: not a UTF-8 text file"),
]


@pytest.mark.parametrize("name, content, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(tmp_path, name, content, message):
    src = tmp_path / name
    if isinstance(content, str):
        write(src, content)
    elif isinstance(content, np.ndarray):
        npy(src, content)
    elif name == "plain.npz":
        np.savez(src, a=np.ones(3))
    elif name == "two.npz":
        np.savez(src, a=np.ones((2, 2)), b=np.ones((2, 2)))
    elif name == "binary.csv":
        src.write_bytes(bytes(range(256)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmfWarning)
        with pytest.raises(InputError, match=message) as info:
            dmf.ingest(src, tmp_path / "out.zarr")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.zarr").exists()


def test_truncated_files(tmp_path, s):
    good = tmp_path / "good.npy"
    np.save(good, np.ones((10, 10)))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-8])
    with pytest.raises(InputError, match=r"cut\.npy: truncated"):
        dmf.ingest(cut, tmp_path / "a.zarr")
    npz = tmp_path / "good.npz"
    scipy.sparse.save_npz(npz, s.tocsr())
    cut = tmp_path / "cut.npz"
    cut.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.npz: cannot be read"):
        dmf.ingest(cut, tmp_path / "b.zarr")


def test_usage_errors(tmp_path, x):
    src = npy(tmp_path / "x.npy", x)
    with pytest.raises(InputError, match="unknown format 'parquet'; supported: npy, csv"):
        dmf.ingest(src, tmp_path / "o.zarr", format="parquet")
    with pytest.raises(InputError, match=r"unknown option.* delimiter"):
        dmf.ingest(src, tmp_path / "o.zarr", delimiter=",")
    with pytest.raises(InputError, match="dtype must be float32 or float64"):
        dmf.ingest(src, tmp_path / "o.zarr", dtype="int32")
    dmf.ingest(src, tmp_path / "o.zarr")
    with pytest.raises(StoreError, match="already exists"):
        dmf.ingest(src, tmp_path / "o.zarr")


@pytest.mark.parametrize("bad", ["nan.csv", "nan.npz", "short.mtx", "nan.npy"])
def test_failed_ingest_keeps_existing_store(tmp_path, x, bad):
    url = dmf.save_matrix(x, tmp_path / "good.zarr")
    src = tmp_path / bad
    if bad == "nan.csv":
        write(src, "1,2\n3,nan\n")
    elif bad == "nan.npz":
        scipy.sparse.save_npz(src, scipy.sparse.csr_matrix(np.array([[1.0, np.nan]])))
    elif bad == "short.mtx":
        write(src, MM + "2 2 2\n1 1 1\n")
    else:
        npy(src, np.array([[1.0, np.inf]]))
    with pytest.raises(InputError):
        dmf.ingest(src, url, overwrite=True)
    np.testing.assert_array_equal(dense_of(url), x)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".zarr") == ["good.zarr"]
    assert not [p for p in tmp_path.iterdir() if "dmf-tmp" in p.name]


# -- memory ---------------------------------------------------------------------------

_PEAK = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-c", sys.argv[1]], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_bytes(code: str) -> int:
    """Peak RSS of a fresh ``python -c code``, measured by a helper process
    whose only child it is."""
    out = subprocess.run([sys.executable, "-c", _PEAK, code], check=True,
                         capture_output=True, text=True, timeout=120)
    return int(out.stdout.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units")
def test_npy_ingest_memory_is_bounded(tmp_path):
    """The proportional version of '1 GB .npy ingests below 500 MB RSS'."""
    rows, cols = 8192, 8192  # 256 MiB of float32
    src = tmp_path / "big.npy"
    out = np.lib.format.open_memmap(src, mode="w+", dtype=np.float32, shape=(rows, cols))
    rng = np.random.default_rng(0)
    for r in range(0, rows, 1024):
        out[r:r + 1024] = rng.random((1024, cols), dtype=np.float32)
    out.flush()
    del out
    size = os.path.getsize(src)

    # import dmf is lazy: the baseline loads what an ingest imports, so that
    # the growth measured is the ingest's own memory
    baseline = peak_rss_bytes("import dask.array, zarr, dmf; dmf.ingest; dmf.open_matrix")
    chunk_rows = 16 * 2**20 // (cols * 4)  # 16 MiB chunks
    peak = peak_rss_bytes(
        f"import dmf; dmf.ingest({str(src)!r}, {str(tmp_path / 'big.zarr')!r}, "
        f"chunks={chunk_rows})")
    growth = peak - baseline
    print(f"baseline {baseline / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB, "
          f"growth {growth / 2**20:.0f} MiB for {size / 2**20:.0f} MiB")
    assert growth < size / 2, f"RSS grew by {growth / 2**20:.0f} MiB for a " \
                              f"{size / 2**20:.0f} MiB file"
    got = dmf.open_matrix(tmp_path / "big.zarr")
    assert got.chunks[0][0] == chunk_rows
    mapped = np.load(src, mmap_mode="r")
    for r in (0, 4000, rows - 10):
        np.testing.assert_array_equal(got[r:r + 10].compute(), mapped[r:r + 10])
