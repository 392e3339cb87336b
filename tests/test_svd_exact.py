"""Exact SVD (issue 10): method="tsqr", "gram" and "auto", every triplet."""

from __future__ import annotations

import json
import subprocess
import sys

import dask.array as da
import numpy as np
import pytest

import dmf
from dmf.errors import InputError
from dmf.linalg.common import fix_signs
from dmf.linalg.svd import choose_method
from dmf.store.info import describe, format_facts

COURSE_A = np.array([[1, 2, 3, 4, 3, 3], [1, 2, 3, 4, 3, 3],
                     [3, 3, 3, 1, 4, 5], [3, 3, 3, 1, 4, 5]], dtype=float)

CHUNKINGS = {"regular": (50, 20), "irregular": ((30, 110, 60, 100), (25, 15)),
             "single": (-1, -1)}


def well_conditioned(m=300, n=40, seed=0):
    """s from 10 down to 1: gram loses nothing visible at 1e-10."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (U * np.linspace(10.0, 1.0, n)) @ V.T


def numpy_reference(A):
    """numpy's SVD with dmf's sign rule (each row of Vt: largest entry positive)."""
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    signs = fix_signs(Vt.T)
    return U * signs, s, Vt * signs[:, None]


@pytest.mark.parametrize("chunks", CHUNKINGS.values(), ids=CHUNKINGS.keys())
@pytest.mark.parametrize("method", ["tsqr", "gram"])
def test_every_triplet_agrees_with_numpy(method, chunks):
    A = well_conditioned()
    U0, s0, Vt0 = numpy_reference(A)
    r = dmf.svd(da.from_array(A, chunks=chunks), method=method)  # k=None: all 40
    assert r.method == method and r.S.shape == (40,)
    assert np.abs(r.S - s0).max() <= 1e-10 * s0[0]
    assert np.abs(r.Vt - Vt0).max() <= 1e-10
    assert np.abs(r.U.compute() - U0).max() <= 1e-10


def test_top_k_and_float32():
    A = well_conditioned()
    _, s0, Vt0 = numpy_reference(A)
    for method in ("tsqr", "gram"):
        r = dmf.svd(A, 7, method=method)
        assert np.allclose(r.S, s0[:7], rtol=1e-12) and np.allclose(r.Vt, Vt0[:7], atol=1e-10)
        f = dmf.svd(A.astype(np.float32), 7, method=method)
        assert f.S.dtype == np.float32 and np.allclose(f.S, s0[:7], rtol=1e-5)


@pytest.mark.parametrize("method", ["auto", "randomized"])
def test_course_example_is_exact_on_the_wide_matrix(method):
    # auto and randomized take a wide X as it is (auto: tsqr on X^T, a view)
    r = dmf.svd(COURSE_A, 4, method=method, seed=0)
    U = r.U.compute()
    assert np.allclose(r.S[:2], [14.7385, 4.0958], atol=1e-4)
    assert r.S[2] == 0.0 and r.S[3] == 0.0
    assert np.abs(U).max() <= 1.0 and np.allclose(U.T @ U, np.eye(4), atol=1e-12)
    assert np.abs((U * r.S) @ r.Vt - COURSE_A).max() <= 1e-12


@pytest.mark.parametrize("method", ["tsqr", "gram"])
def test_course_example_through_its_transpose(method):
    r = dmf.svd(COURSE_A.T, method=method)  # 6 x 4, tall: all 4 triplets
    U = r.U.compute()
    assert np.allclose(r.S[:2], [14.7385, 4.0958], atol=1e-4)
    assert r.S[2] == 0.0 and r.S[3] == 0.0
    assert np.abs(U).max() <= 1.0 and np.allclose(U.T @ U, np.eye(4), atol=1e-12)
    assert np.abs((U * r.S) @ r.Vt - COURSE_A.T).max() <= 1e-12
    # A = (Vt.T) S (U.T): the course's factors of A itself
    assert np.abs((r.Vt.T * r.S) @ U.T - COURSE_A).max() <= 1e-12


@pytest.mark.parametrize("method", ["tsqr", "gram"])
def test_wide_input_is_refused_by_the_exact_methods(method):
    with pytest.raises(InputError, match=r"4 x 6.*transpose X\.T.*'randomized'"):
        dmf.svd(COURSE_A, 4, method=method)


def test_gram_rank_deficient_gives_exact_zeros_never_garbage():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((200, 10)) @ rng.standard_normal((10, 30))  # rank 10
    r = dmf.svd(da.from_array(A, chunks=(64, -1)), method="gram")
    assert (r.S[10:] == 0.0).all() and (r.S[:10] > 0).all()
    U = r.U.compute()
    assert np.isfinite(U).all() and np.abs(U).max() <= 1.0
    assert np.allclose(U.T @ U, np.eye(30), atol=1e-10)
    assert np.allclose((U * r.S) @ r.Vt, A, atol=1e-10)


def test_auto_choice_by_shape_dtype_and_k():
    assert choose_method((10**6, 500), np.float64, None)[0] == "tsqr"
    assert choose_method((10**6, 500), np.float32, None)[0] == "gram"
    assert choose_method((10**6, 500), np.float64, None, sparse=True)[0] == "gram"
    assert choose_method((10**6, 5000), np.float64, 10)[0] == "randomized"
    assert choose_method((10**6, 5000), np.float64, 4000)[0] == "tsqr"
    assert choose_method((10**6, 9000), np.float64, None)[0] == "randomized"


def test_auto_is_the_default_for_every_triplet_and_says_what_it_ran(tmp_path):
    A = well_conditioned(m=120, n=30)
    r = dmf.svd(A.astype(np.float32), out=tmp_path / "r.zarr")
    assert r.method == "gram" and r.attrs["method_requested"] == "auto"
    assert "float32" in r.attrs["method_reason"]
    text = format_facts(describe(tmp_path / "r.zarr"))
    assert "svd-gram" in text and "method             gram (chosen by auto: exact" in text
    # k close to min(m, n) (k + oversamples >= n): auto too; a small k: randomized
    assert dmf.svd(A, 25).method == "tsqr"
    assert dmf.svd(A, 3, seed=0).method == "randomized"


def test_every_triplet_needs_an_exact_method():
    with pytest.raises(InputError, match="k=None"):
        dmf.svd(well_conditioned(), method="randomized")


def test_without_u_nothing_is_formed_or_stored(tmp_path):
    A = well_conditioned(m=120, n=30)
    r = dmf.svd(A, method="tsqr", compute_u=False, out=tmp_path / "r.zarr")
    assert r.U is None and r.S.shape == (30,)
    back = dmf.load(tmp_path / "r.zarr")
    assert back.U is None and np.array_equal(back.S, r.S)


_COUNT_PASSES = """
import json, sys
import psutil
from dmf.store.dense_read import bytes_mapped  # mapped chunks: read_chars misses them
import dask
import dmf
url, stored = sys.argv[1], int(sys.argv[2])
dask.config.set(scheduler="threads")
dmf.svd(url, 3, method="randomized", seed=0, cache=False)   # warm up the imports
proc = psutil.Process()
bytes_read = lambda: proc.io_counters().read_chars + bytes_mapped()  # noqa: E731
out = {}
for method in ("tsqr", "gram"):
    before = bytes_read()
    r = dmf.svd(url, method=method, cache=False)
    middle = bytes_read()
    r.U.compute()
    out[method] = [(middle - before) / stored, (bytes_read() - middle) / stored]
print(json.dumps(out))
"""


def test_one_pass_for_v_and_s_one_more_for_u(tmp_path):
    """Bytes read / bytes of the store, counted in a fresh process
    (read_chars counts socket reads too)."""
    url = tmp_path / "X.zarr"
    dmf.save_matrix(well_conditioned(m=4000, n=50), url, chunks=500)
    stored = sum(p.stat().st_size for p in (url / "c").rglob("*") if p.is_file())
    done = subprocess.run([sys.executable, "-c", _COUNT_PASSES, str(url), str(stored)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for method, (vs, u) in json.loads(done.stdout.strip().splitlines()[-1]).items():
        assert 1 <= vs < 1.2, (method, vs)
        assert 1 <= u < 1.2, (method, u)
