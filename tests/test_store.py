"""The dense store: save_matrix / open_matrix round trips, the store format,
every URL kind, errors, safe overwrites, and the synthetic generator."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import _procs
import dask
import dask.array as da
import fsspec
import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import zarr
from distributed import get_task_stream
from hypothesis import given, settings
from hypothesis import strategies as st

import dmf
from dmf.errors import DmfWarning, InputError, StoreError
from dmf.store.dense_read import TARGET_CHUNK_BYTES, default_chunks

# -- helpers -----------------------------------------------------------------


def assert_same_bits(actual, expected):
    """Bit-for-bit equality: same dtype, shape and bytes (so -0.0 != 0.0 and
    subnormals must survive, which np.array_equal would not check)."""
    actual = np.asarray(actual)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes()


def assert_one_line(exc_info, *fragments):
    """A CLI-ready message: one line, naming what it must name."""
    text = str(exc_info.value)
    assert "\n" not in text, text
    for fragment in fragments:
        assert str(fragment) in text, f"{fragment!r} not in {text!r}"


def special_matrix(shape, dtype, seed=0):
    """Random values plus the ones a lossy path would change: signed zeros,
    subnormals, the extremes of the range."""
    dtype = np.dtype(dtype)
    info = np.finfo(dtype)
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    specials = np.array([-0.0, 0.0, info.smallest_subnormal, -info.smallest_subnormal,
                         info.smallest_subnormal * 3, info.tiny, info.max, -info.max,
                         info.eps], dtype=dtype)
    flat = x.reshape(-1)
    flat[: specials.size] = specials
    flat[-specials.size:] = specials[::-1]
    return x


def files_of(path):
    """{relative path: bytes} of every file under ``path``."""
    out = {}
    for root, _dirs, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = fh.read()
    return out


def zarr_json(path):
    with open(os.path.join(path, "zarr.json")) as fh:
        return json.load(fh)


# -- round trips ---------------------------------------------------------------

SHAPE = (30, 11)

# name -> (input as a function of the numpy matrix, chunks= for save_matrix,
#          expected stored chunks)
CHUNKINGS = {
    "regular": (lambda x: x, (7, 5), (7, 5)),
    # dask input whose irregular blocks straddle the stored chunks
    "irregular": (lambda x: da.from_array(x, chunks=((5, 10, 3, 12), (4, 7))), 8, (8, 11)),
    "single": (lambda x: x, None, SHAPE),
}


@pytest.mark.parametrize("chunking", sorted(CHUNKINGS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_roundtrip_is_bit_exact(tmp_path, dtype, chunking):
    make_input, chunks, stored_chunks = CHUNKINGS[chunking]
    x = special_matrix(SHAPE, dtype)
    url = str(tmp_path / "x.zarr")

    with warnings.catch_warnings():
        warnings.simplefilter("error", DmfWarning)  # float input: nothing changed, no warning
        assert dmf.save_matrix(make_input(x), url, chunks=chunks) == url
        y = dmf.open_matrix(url)

    assert zarr.open_array(url, mode="r").chunks == stored_chunks
    assert y.chunksize == stored_chunks
    assert y.dtype == np.dtype(dtype)
    assert_same_bits(y.compute(), x)


def _shapes_and_chunks():
    @st.composite
    def build(draw):
        m = draw(st.integers(1, 24))
        n = draw(st.integers(1, 12))
        chunks = (draw(st.integers(1, m)), draw(st.integers(1, n)))
        input_chunks = draw(st.none() | st.tuples(st.integers(1, m), st.integers(1, n)))
        return (m, n), chunks, input_chunks

    return build()


# Few, fixed examples: the suite must be fast and give the same answer twice.
@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(dtype=st.sampled_from(["float32", "float64"]), data=st.data(),
       layout=_shapes_and_chunks())
def test_roundtrip_property(dtype, data, layout):
    shape, chunks, input_chunks = layout
    width = 32 if dtype == "float32" else 64
    x = data.draw(hnp.arrays(dtype, shape, elements=st.floats(
        allow_nan=False, allow_infinity=False, allow_subnormal=True, width=width)))
    src = x if input_chunks is None else da.from_array(x, chunks=input_chunks)
    with tempfile.TemporaryDirectory() as tmp:
        url = os.path.join(tmp, "x.zarr")
        dmf.save_matrix(src, url, chunks=chunks)
        y = dmf.open_matrix(url)
        assert y.chunksize == chunks
        assert_same_bits(y.compute(), x)


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool"])
def test_integers_become_float64_with_a_warning(tmp_path, dtype):
    x = (np.arange(24).reshape(6, 4) % 3).astype(dtype)
    url = str(tmp_path / "x.zarr")
    with pytest.warns(DmfWarning, match="float64"):
        dmf.save_matrix(x, url)
    stored = zarr.open_array(url, mode="r")
    assert stored.dtype == np.float64
    assert stored.attrs["dmf"]["source_dtype"] == str(np.dtype(dtype))
    assert_same_bits(dmf.open_matrix(url).compute(), x.astype(np.float64))


# 2**53 + 1 is the first integer float64 cannot hold (it rounds to 2**53).
@pytest.mark.parametrize("value", [2**53 + 1, -(2**53 + 1), 2**62])
def test_integers_beyond_2_53_are_refused(tmp_path, value):
    x = np.zeros((4, 3), dtype=np.int64)
    x[2, 1] = value
    url = tmp_path / "x.zarr"
    with pytest.warns(DmfWarning), pytest.raises(InputError) as err:
        dmf.save_matrix(x, url)
    assert_one_line(err, "row 2, column 1", "2**53")
    assert not url.exists()


def test_default_chunks_are_row_blocks_of_about_64_mib():
    assert TARGET_CHUNK_BYTES == 64 * 2**20
    m = 1_000_000
    rows, cols = default_chunks((m, 1000), "float32")
    assert (rows, cols) == (16667, 1000)
    # at most 64 MiB per block, in the fewest blocks (4 GB / 64 MiB -> 60),
    # of equal size, so that no short last block is stored padded
    assert rows * cols * 4 <= TARGET_CHUNK_BYTES
    assert math.ceil(m / rows) == math.ceil(m * cols * 4 / TARGET_CHUNK_BYTES) == 60
    assert default_chunks((10, 1000), "float64") == (10, 1000)  # small: one block
    # a single row over 64 MiB: split the columns instead, evenly
    assert default_chunks((5, 10_000_000), "float64") == (1, 5_000_000)


def test_stored_array_gets_default_chunks(tmp_path):
    shape = (400_000, 50)  # 80 MB of float32: two row blocks by default
    x = da.ones(shape, dtype="float32", chunks=(50_000, 50))
    url = str(tmp_path / "x.zarr")
    dmf.save_matrix(x, url)
    expected = default_chunks(shape, "float32")
    assert expected == (200_000, 50)
    assert zarr_json(url)["chunk_grid"]["configuration"]["chunk_shape"] == list(expected)
    y = dmf.open_matrix(url)
    assert y.chunks == ((200_000, 200_000), (50,))
    assert float(y.sum().compute()) == shape[0] * shape[1]


def test_writes_zarr_format_3(tmp_path):
    url = str(tmp_path / "x.zarr")
    dmf.save_matrix(np.eye(3, dtype="float32"), url)
    meta = zarr_json(url)
    assert meta["zarr_format"] == 3
    assert meta["node_type"] == "array"
    assert meta["data_type"] == "float32"
    assert meta["attributes"]["dmf"]["kind"] == "dense"
    assert meta["attributes"]["dmf"]["complete"] is True
    assert not (tmp_path / "x.zarr" / ".zarray").exists()


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16"])
def test_reads_zarr_format_2(tmp_path, dtype):
    x = (np.random.default_rng(1).standard_normal((20, 6)) * 100).astype(dtype)
    url = str(tmp_path / "v2.zarr")
    z = zarr.create_array(store=url, shape=x.shape, chunks=(7, 6), dtype=dtype, zarr_format=2)
    z[:] = x
    assert (tmp_path / "v2.zarr" / ".zarray").exists()
    assert not (tmp_path / "v2.zarr" / "zarr.json").exists()

    if dtype == "int16":
        with pytest.warns(DmfWarning, match="float64"):
            y = dmf.open_matrix(url)
        expected = x.astype(np.float64)
    else:
        y = dmf.open_matrix(url)
        expected = x
    assert y.chunks == ((7, 7, 6), (6,))
    assert_same_bits(y.compute(), expected)


URL_KINDS = ["absolute", "relative", "file-url", "memory", "s3"]


@pytest.mark.parametrize("kind", URL_KINDS)
def test_every_url_kind_round_trips(kind, tmp_path, monkeypatch, memory_url, request):
    options = None
    if kind == "absolute":
        url = expected = str(tmp_path / "x.zarr")
    elif kind == "relative":
        monkeypatch.chdir(tmp_path)
        url = os.path.join("sub", "x.zarr")
        expected = os.path.join(os.getcwd(), "sub", "x.zarr")
    elif kind == "file-url":
        url = "file://" + str(tmp_path / "x.zarr")
        expected = str(tmp_path / "x.zarr")
    elif kind == "memory":
        url = expected = f"{memory_url}/x.zarr"
    else:
        s3 = request.getfixturevalue("s3")
        url = expected = f"{s3.url}/data/x.zarr"
        options = s3.storage_options

    x = special_matrix((17, 5), "float64")
    assert dmf.save_matrix(x, url, chunks=(4, 5), storage_options=options) == expected
    if kind == "relative":
        monkeypatch.chdir(tmp_path.parent)  # the stored path is absolute: cwd no longer matters
        url = expected
    y = dmf.open_matrix(url, storage_options=options)
    assert y.chunksize == (4, 5)
    assert_same_bits(y.compute(), x)

    # it really is where the URL says
    if kind == "s3":
        import s3fs

        fs = s3fs.S3FileSystem(**options)
        assert fs.exists(expected.removeprefix("s3://") + "/zarr.json")
    elif kind == "memory":
        assert fsspec.filesystem("memory").exists(expected + "/zarr.json")
    else:
        assert os.path.exists(os.path.join(expected, "zarr.json"))


def test_s3_fixture_is_local_and_fresh(s3):
    import s3fs

    assert s3.storage_options["client_kwargs"]["endpoint_url"].startswith("http://127.0.0.1:")
    # fake credentials only, and no instance metadata service
    assert s3.storage_options["key"] == os.environ["AWS_ACCESS_KEY_ID"] == "dmf-test-key"
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    fs = s3fs.S3FileSystem(**s3.storage_options)
    bucket = s3.url.removeprefix("s3://")
    assert fs.ls(bucket) == []
    fs.pipe(f"{bucket}/probe", b"x")
    assert fs.cat(f"{bucket}/probe") == b"x"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_write_and_read_on_the_cluster(local_client, tmp_path, where, request):
    options = None
    if where == "s3":
        s3 = request.getfixturevalue("s3")
        url, options = f"{s3.url}/x.zarr", s3.storage_options
    else:
        url = str(tmp_path / "x.zarr")
    x = special_matrix((90, 8), "float32", seed=3)
    src = da.from_array(x, chunks=(25, 8))

    with get_task_stream(local_client) as writes:
        dmf.save_matrix(src, url, chunks=(20, 8), storage_options=options)
    with get_task_stream(local_client) as reads:
        y = dmf.open_matrix(url, storage_options=options)
        total = y.sum(dtype=np.float64).compute()
        back = y.compute()
    # the blocks were written and read by the worker processes
    workers = set(local_client.scheduler_info()["workers"])
    for stream in (writes, reads):
        assert stream.data and {t["worker"] for t in stream.data} <= workers
    assert_same_bits(back, x)
    # the same graph on threads: the same reduction tree, so the same bits
    # (x holds +-max float32 values, so any other summation order differs)
    assert total == y.sum(dtype=np.float64).compute(scheduler="threads")


def test_memory_store_on_the_cluster(local_client, memory_url):
    url = f"{memory_url}/x.zarr"
    x = np.arange(60, dtype="float64").reshape(12, 5)
    # writing a memory:// store must stay in this process even with a cluster
    dmf.save_matrix(da.from_array(x, chunks=(4, 5)), url, chunks=(4, 5))
    y = dmf.open_matrix(url)
    assert_same_bits(y.compute(scheduler="threads"), x)
    # workers cannot see this process's memory: an error, never zeros
    with pytest.raises(StoreError) as err:
        y.sum().compute()
    assert_one_line(err, url, "memory://")


# -- errors --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_missing_store(tmp_path, memory_url, kind):
    url = str(tmp_path / "nope.zarr") if kind == "local" else f"{memory_url}/nope.zarr"
    with pytest.raises(StoreError) as err:
        dmf.open_matrix(url)
    assert_one_line(err, url)


@pytest.mark.parametrize("kind", ["directory", "file"])
def test_not_a_zarr_store(tmp_path, kind):
    path = tmp_path / "data"
    if kind == "directory":
        path.mkdir()
        (path / "x.csv").write_text("1,2\n3,4\n")
    else:
        path.write_text("1,2\n3,4\n")
    with pytest.raises(StoreError) as err:
        dmf.open_matrix(path)
    assert_one_line(err, path, "not a Zarr store")


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)], ids=["1d", "3d"])
def test_not_2d_stored(tmp_path, shape):
    url = str(tmp_path / "a.zarr")
    zarr.create_array(store=url, shape=shape, dtype="float64")[...] = 1.0
    with pytest.raises(InputError) as err:
        dmf.open_matrix(url)
    assert_one_line(err, url, f"{len(shape)}-D")


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)], ids=["1d", "3d"])
@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_not_2d_saved(tmp_path, shape, lazy):
    x = np.ones(shape)
    url = tmp_path / "a.zarr"
    with pytest.raises(InputError) as err:
        dmf.save_matrix(da.from_array(x) if lazy else x, url)
    assert_one_line(err, f"{len(shape)}-D")
    assert list(tmp_path.iterdir()) == []


def test_empty(tmp_path):
    url = tmp_path / "e.zarr"
    for shape in [(0, 3), (3, 0)]:
        with pytest.raises(InputError) as err:
            dmf.save_matrix(np.zeros(shape), url)
        assert_one_line(err, "empty")
    assert list(tmp_path.iterdir()) == []
    zarr.create_array(store=str(url), shape=(0, 3), chunks=(1, 3), dtype="float64")
    with pytest.raises(InputError) as err:
        dmf.open_matrix(url)
    assert_one_line(err, url, "empty")


@pytest.mark.parametrize("x", [np.ones((3, 2), dtype=np.complex128),
                               np.array([["a", "b"], ["c", "d"]])],
                         ids=["complex", "str"])
def test_unsupported_dtype_saved(tmp_path, x):
    url = tmp_path / "x.zarr"
    with pytest.raises(InputError) as err:
        dmf.save_matrix(x, url)
    assert_one_line(err, "dtype", x.dtype)
    assert list(tmp_path.iterdir()) == []


def test_unsupported_dtype_stored(tmp_path):
    url = str(tmp_path / "c.zarr")
    zarr.create_array(store=url, shape=(3, 2), dtype="complex64")[...] = 1 + 2j
    with pytest.raises(InputError) as err:
        dmf.open_matrix(url)
    assert_one_line(err, url, "complex64")


# A bad chunk must be an error naming its file, never silently wrong values.
@pytest.mark.parametrize("codec", ["lz4", "none"])
@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_corrupt_chunk_names_the_file(tmp_path, codec, damage):
    x = np.random.default_rng(2).standard_normal((40, 6))
    url = str(tmp_path / "x.zarr")
    dmf.save_matrix(x, url, chunks=(10, 6), codec=codec)
    chunk = tmp_path / "x.zarr" / "c" / "2" / "0"  # rows 20-29
    data = chunk.read_bytes()
    if damage == "truncated":
        chunk.write_bytes(data[: len(data) // 2])
    else:
        chunk.write_bytes(bytes(b ^ 0x5A for b in data[:32]) + data[32:])

    y = dmf.open_matrix(url)
    assert_same_bits(y[:20].compute(), x[:20])  # the good chunks still read
    with pytest.raises(StoreError) as err:
        y.compute()
    assert_one_line(err, chunk)


def test_a_checked_chunk_is_checked_again_once_its_file_changes(tmp_path, monkeypatch):
    """A plain chunk's checksum is computed once per version of its file in
    a process (dmf.store.dense_read): read again unchanged, it is not
    recomputed; damaged in place afterwards, it is caught."""
    from dmf.store import dense_read

    x = np.random.default_rng(3).standard_normal((40, 6))
    url = str(tmp_path / "x.zarr")
    dmf.save_matrix(x, url, chunks=(10, 6))
    monkeypatch.setattr(dense_read, "SETTLED_NS", 0)  # the file was written just now
    calls = []
    real = dense_read.google_crc32c.value
    monkeypatch.setattr(dense_read.google_crc32c, "value", lambda b: calls.append(1) or real(b))
    y = dmf.open_matrix(url)
    assert_same_bits(y.compute(scheduler="sync"), x)
    assert len(calls) == 4
    assert_same_bits(y.compute(scheduler="sync"), x)
    assert len(calls) == 4  # unchanged files: not checked again
    time.sleep(0.05)  # past a tick of the coarse clock that stamps file times
    chunk = tmp_path / "x.zarr" / "c" / "2" / "0"
    data = chunk.read_bytes()
    chunk.write_bytes(bytes(b ^ 0x5A for b in data[:32]) + data[32:])  # same size, same CRC
    with pytest.raises(StoreError) as err:
        y.compute(scheduler="sync")
    assert_one_line(err, chunk)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_chunks_read_straight_from_their_files(tmp_path, dtype, monkeypatch):
    """The default codec's chunks are mapped without zarr's decoding (see
    dmf.store.dense_read), or read where mapping fails: the same bits as zarr
    for edge chunks and for a chunk of fill values (stored too: dmf writes
    every chunk); a checksummed trailer damaged alone is caught."""
    from dmf.store.dense_read import RawChunks, bytes_mapped

    x = np.random.default_rng(3).standard_normal((43, 11)).astype(dtype)
    x[10:20] = 0.0  # the fill value: zarr would write no file for that chunk
    url = tmp_path / "x.zarr"
    dmf.save_matrix(x, url, chunks=(10, 4))
    assert RawChunks.of(zarr.open_array(url, mode="r")) is not None
    assert (url / "c" / "1" / "0").exists()
    before = bytes_mapped()
    assert_same_bits(dmf.open_matrix(url).compute(), zarr.open_array(url, mode="r")[...])
    assert_same_bits(dmf.open_matrix(url).compute(), x)
    assert bytes_mapped() > before  # mapped, not read
    with monkeypatch.context() as m:  # a filesystem that cannot map: read instead
        m.setattr("mmap.mmap", lambda *a, **k: (_ for _ in ()).throw(OSError("no mmap")))
        before = bytes_mapped()
        assert_same_bits(dmf.open_matrix(url).compute(), x)
        assert bytes_mapped() == before

    dmf.save_matrix(x, tmp_path / "lz4.zarr", chunks=(10, 4), codec="lz4")
    assert RawChunks.of(zarr.open_array(tmp_path / "lz4.zarr", mode="r")) is None

    chunk = url / "c" / "4" / "2"  # the corner chunk: 3 x 3 of 10 x 4 stored
    data = chunk.read_bytes()
    chunk.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(StoreError) as err:
        dmf.open_matrix(url).compute()
    assert_one_line(err, chunk, "checksum")


def make_bad_matrix():
    """Two NaN and one Inf, in two column blocks of (10, 5): the first in
    row-major order, (2, 9), is not in the first block."""
    x = np.ones((20, 10))
    x[4, 1] = np.nan
    x[2, 9] = np.inf
    x[15, 3] = np.nan
    return x


@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_check_finite(lazy):
    x = make_bad_matrix()
    src = da.from_array(x, chunks=(10, 5)) if lazy else x
    with pytest.raises(InputError) as err:
        dmf.check_finite(src, name="X.npy")
    assert_one_line(err, "X.npy", "2 NaN", "1 Inf", "row 2, column 9")
    dmf.check_finite(np.ones((3, 3)))  # finite passes
    dmf.check_finite(da.ones((30, 3), chunks=7))


@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_save_refuses_nan_and_leaves_nothing(tmp_path, lazy):
    x = make_bad_matrix()
    src = da.from_array(x, chunks=(10, 5)) if lazy else x
    with pytest.raises(InputError) as err:
        dmf.save_matrix(src, tmp_path / "x.zarr", chunks=(10, 5))
    assert_one_line(err, "2 NaN", "1 Inf", "row 2, column 9")
    assert list(tmp_path.iterdir()) == []


class Place(NamedTuple):
    """A store URL and a snapshot of everything in its folder or bucket."""

    url: str
    options: dict | None
    snapshot: Callable[[], dict[str, bytes]]


@pytest.fixture(params=["local", "s3"])
def place(request, tmp_path) -> Place:
    if request.param == "s3":
        import s3fs

        s3 = request.getfixturevalue("s3")
        fs = s3fs.S3FileSystem(**s3.storage_options)
        bucket = s3.url.removeprefix("s3://")

        def snapshot():
            fs.invalidate_cache()
            return {p.removeprefix(bucket + "/"): fs.cat_file(p) for p in fs.find(bucket)}

        return Place(f"{s3.url}/x.zarr", s3.storage_options, snapshot)

    return Place(str(tmp_path / "x.zarr"), None, lambda: files_of(tmp_path))


def test_failed_overwrite_keeps_the_good_store(place):
    good = np.arange(200, dtype="float64").reshape(20, 10)
    dmf.save_matrix(good, place.url, chunks=(10, 5), storage_options=place.options)
    before = place.snapshot()
    for src in (make_bad_matrix(), da.from_array(make_bad_matrix(), chunks=(10, 5))):
        with pytest.raises(InputError):
            dmf.save_matrix(src, place.url, overwrite=True, storage_options=place.options)
        # same files, same bytes, and no staging copies left beside it
        assert place.snapshot() == before
    assert_same_bits(dmf.open_matrix(place.url, storage_options=place.options).compute(), good)


def test_overwrite_replaces_and_leaves_nothing_beside(place):
    old = np.arange(200, dtype="float64").reshape(20, 10)
    new = -np.arange(60, dtype="float32").reshape(12, 5)
    dmf.save_matrix(old, place.url, chunks=(5, 5), storage_options=place.options)
    dmf.save_matrix(new, place.url, overwrite=True, storage_options=place.options)
    assert_same_bits(dmf.open_matrix(place.url, storage_options=place.options).compute(), new)
    # the new store's files only: no staging copy, no old chunks
    assert sorted(place.snapshot()) == ["x.zarr/c/0/0", "x.zarr/zarr.json"]


def test_no_overwrite_by_default(tmp_path):
    url = str(tmp_path / "x.zarr")
    dmf.save_matrix(np.ones((3, 3)), url)
    before = files_of(url)
    with pytest.raises(StoreError) as err:
        dmf.save_matrix(np.zeros((3, 3)), url)
    assert_one_line(err, url, "overwrite")
    assert files_of(url) == before


# Writes a slow matrix so it can be killed half-way (one block = 0.2 s).
_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import dask.array as da
    import dmf

    def slow(block):
        time.sleep(0.2)
        return block

    x = da.ones((4000, 10), chunks=(100, 10)).map_blocks(slow)
    dmf.save_matrix(x, sys.argv[1], chunks=(100, 10))
""")


def test_store_of_a_killed_writer_is_refused_then_replaced(tmp_path):
    url = tmp_path / "x.zarr"
    writer = _procs.Proc([sys.executable, "-c", _KILLED_WRITER, str(url)],
                         tmp_path / "writer.log", tmp_path)
    try:
        # wait until it has written the metadata and some blocks
        _procs.wait_for(lambda: (url / "c").is_dir() and len(list((url / "c").iterdir())) >= 2,
                        60, "the writer to write blocks")
        assert writer.alive(), writer.log_tail()
    finally:
        writer.kill()
    assert writer.popen.returncode == -signal.SIGKILL
    assert zarr_json(url)["attributes"]["dmf"]["complete"] is False

    with pytest.raises(StoreError) as err:
        dmf.open_matrix(url)
    assert_one_line(err, url, "incomplete")

    # nothing worth keeping: the next save replaces it without overwrite=True
    new = np.full((50, 10), 7.0)
    dmf.save_matrix(new, url, chunks=(25, 10))
    assert_same_bits(dmf.open_matrix(url).compute(), new)
    # and no stale blocks of the killed write remain
    chunk_files = sorted(str(p.relative_to(url)) for p in (url / "c").rglob("*") if p.is_file())
    assert chunk_files == ["c/0/0", "c/1/0"]
    assert sorted(os.listdir(tmp_path)) == ["writer.log", "x.zarr"]


# -- dmf.generate.lowrank ------------------------------------------------------


def _read(url):
    return dmf.open_matrix(url).compute()


def test_lowrank_is_deterministic(tmp_path):
    kw = dict(noise=0.1, chunks=64, dtype="float32")
    a = dmf.generate.lowrank(tmp_path / "a.zarr", (300, 40), 5, seed=3, **kw)
    b = dmf.generate.lowrank(tmp_path / "b.zarr", (300, 40), 5, seed=3, **kw)
    c = dmf.generate.lowrank(tmp_path / "c.zarr", (300, 40), 5, seed=4, **kw)
    xa, xb, xc = (_read(tmp_path / f"{n}.zarr") for n in "abc")
    assert_same_bits(xb, xa)
    assert a["singular_values"] == b["singular_values"]
    for f in ("W", "H"):
        assert_same_bits(_read(tmp_path / f"b.factors.zarr/{f}"),
                         _read(tmp_path / f"a.factors.zarr/{f}"))
    assert not np.array_equal(xc, xa)
    assert c["singular_values"] != a["singular_values"]


def test_lowrank_singular_values_are_true(tmp_path):
    rank = 4
    info = dmf.generate.lowrank(tmp_path / "x.zarr", (200, 30), rank, seed=1, chunks=50)
    x = _read(tmp_path / "x.zarr")
    s = np.linalg.svd(x, compute_uv=False)
    stored = zarr.open_array(str(tmp_path / "x.zarr"), mode="r").attrs["dmf"]["generator"]
    assert stored["singular_values"] == info["singular_values"]
    assert len(info["singular_values"]) == rank
    np.testing.assert_allclose(info["singular_values"], s[:rank], rtol=1e-10)
    assert s[rank] < 1e-10 * s[0]  # and nothing beyond the rank


def test_lowrank_nonnegative(tmp_path):
    dmf.generate.lowrank(tmp_path / "x.zarr", (200, 30), 3, seed=2, chunks=64, noise=0.5,
                         nonnegative=True, dtype="float32")
    x = _read(tmp_path / "x.zarr")
    assert x.dtype == np.float32
    assert x.min() >= 0
    assert (x == 0).any()  # the noise pushed some entries below 0: they were clipped
    for f in ("W", "H"):
        assert _read(tmp_path / f"x.factors.zarr/{f}").min() >= 0


def test_lowrank_planted_factors_reproduce_x(tmp_path):
    m, n, rank = 150, 25, 3
    info = dmf.generate.lowrank(tmp_path / "x.zarr", (m, n), rank, seed=5, chunks=40)
    assert info["factors"] == "x.factors.zarr"
    w = _read(tmp_path / "x.factors.zarr/W")
    h = _read(tmp_path / "x.factors.zarr/H")
    assert w.shape == (m, rank) and h.shape == (rank, n)
    np.testing.assert_allclose(w @ h, _read(tmp_path / "x.zarr"), rtol=1e-12, atol=1e-12)


def test_lowrank_same_bits_on_a_cluster(local_client, tmp_path):
    kw = dict(noise=0.2, seed=9, chunks=32, dtype="float64")
    with dask.config.set(scheduler="threads"):
        a = dmf.generate.lowrank(tmp_path / "threads.zarr", (160, 20), 3, **kw)
    with get_task_stream(local_client) as tasks:
        b = dmf.generate.lowrank(tmp_path / "cluster.zarr", (160, 20), 3, **kw)
    assert tasks.data, "the cluster did not run the generator"
    assert_same_bits(_read(tmp_path / "cluster.zarr"), _read(tmp_path / "threads.zarr"))
    assert_same_bits(_read(tmp_path / "cluster.factors.zarr/W"),
                     _read(tmp_path / "threads.factors.zarr/W"))
    assert a["singular_values"] == b["singular_values"]


def test_lowrank_decay_gives_a_falling_spectrum(memory_url):
    info = dmf.generate.lowrank(f"{memory_url}/x.zarr", (500, 40), 6, seed=0, decay=0.5)
    s = np.linalg.svd(dmf.open_matrix(f"{memory_url}/x.zarr").compute(), compute_uv=False)
    assert np.allclose(s[:6], info["singular_values"], rtol=1e-10)
    # each value well below the one before (geometric-ish fall), nothing beyond the rank
    assert (s[1:6] / s[:5] < 0.8).all() and s[6] < 1e-10 * s[0]
    assert info["decay"] == 0.5
