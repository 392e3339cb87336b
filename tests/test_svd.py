"""The SVD family: randomized, sketch, eigh (and power where it applies)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import dask
import dask.array as da
import numpy as np
import psutil
import pytest
from _procs import bytes_read

import dmf
from dmf.errors import InputError

COURSE_A = np.array([[1, 2, 3, 4, 3, 3], [1, 2, 3, 4, 3, 3],
                     [3, 3, 3, 1, 4, 5], [3, 3, 3, 1, 4, 5]], dtype=float)

CHUNKINGS = {"regular": (100, 40), "irregular": ((50, 250, 120, 180), (30, 50)),
             "single": (-1, -1)}


def pass_counter(url) -> Callable[[], float]:
    """How many times this process has read the store at ``url`` since this
    call, in bytes read over bytes stored."""
    stored = sum(p.stat().st_size for p in (url / "c").rglob("*") if p.is_file())
    proc = psutil.Process()
    before = bytes_read(proc)
    return lambda: (bytes_read(proc) - before) / stored


def planted(m=600, n=80, rank=None, ratio=0.8, seed=0, dtype=np.float64):
    """U diag(s) V^T with s = 10 ratio^i (a gap at every step); exactly
    rank ``rank`` when given."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = 10 * ratio ** np.arange(n)
    if rank is not None:
        s[rank:] = 0
    return ((U * s) @ V.T).astype(dtype), s


def chunked(A, chunks):
    return da.from_array(A, chunks=chunks)


# gram and tsqr refuse the wide A (issue 10): tests/test_svd_exact.py factors A.T
@pytest.mark.parametrize("method", ["randomized", "sketch", "power", "auto"])
def test_course_example_is_exact(method):
    # power iteration is as exact as its residual tolerance allows
    extra = {"tol": 1e-13} if method == "power" else {}
    r = dmf.svd(COURSE_A, 4, method=method, seed=0, **extra)
    assert np.allclose(r.S[:2], [14.7385, 4.0958], atol=1e-4)
    assert r.S[2] == 0.0 and r.S[3] == 0.0
    U = r.U.compute()
    assert np.abs(U).max() <= 1.0
    assert np.allclose(U.T @ U, np.eye(4), atol=1e-12)
    assert np.allclose(r.Vt @ r.Vt.T, np.eye(4), atol=1e-12)
    assert np.abs((U * r.S) @ r.Vt - COURSE_A).max() <= 1e-12


@pytest.mark.parametrize("chunks", CHUNKINGS.values(), ids=CHUNKINGS.keys())
@pytest.mark.parametrize(("dtype", "bound"), [(np.float64, 1e-6), (np.float32, 1e-4)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("method", ["randomized", "sketch", "gram", "tsqr"])
def test_planted_singular_values_and_orthonormal_vectors(method, chunks, dtype, bound):
    # the sketch is exact on matrices of rank below its size; randomized
    # gets the top of any spectrum with a gap
    A, s = planted(dtype=dtype, rank=6 if method == "sketch" else None)
    r = dmf.svd(chunked(A, chunks), 5, method=method, seed=1)
    assert r.S.dtype == dtype and r.U.dtype == dtype and r.Vt.dtype == dtype
    rel = np.abs(r.S.astype(np.float64) - s[:5]) / s[:5]
    assert rel.max() <= bound, rel
    U = r.U.compute().astype(np.float64)
    V = r.Vt.astype(np.float64).T
    tol = 10 * np.finfo(dtype).eps ** 0.5 if dtype == np.float32 else 1e-10
    assert np.allclose(U.T @ U, np.eye(5), atol=tol)
    assert np.allclose(V.T @ V, np.eye(5), atol=tol)
    idx = np.argmax(np.abs(V), axis=0)
    assert (V[idx, np.arange(5)] > 0).all()  # the sign rule


def test_randomized_reads_x_q_plus_1_times(tmp_path):
    url = tmp_path / "X.zarr"
    A, _ = planted(m=4000, n=100)
    dmf.save_matrix(A, url, chunks=500)
    reads = pass_counter(url)
    r = dmf.svd(url, 5, method="randomized", n_iter=3, seed=0, cache=False)
    r.U.compute()
    passes = reads()
    assert 3 + 1 <= passes < 3 + 1.5, passes  # margin: imports read files too


@pytest.mark.parametrize(("method", "bound"), [("gram", 1e-8), ("tsqr", 1e-12)])
def test_exact_methods_read_x_once_and_u_once_more(tmp_path, method, bound):
    url = tmp_path / "X.zarr"
    A, s = planted(m=4000, n=100)
    dmf.save_matrix(A, url, chunks=500)
    reads = pass_counter(url)
    r = dmf.svd(url, 40, method=method, cache=False)
    assert 1 <= reads() < 1.5
    U = r.U.compute()
    assert 2 <= reads() < 2.5
    # gram goes through X^T X: accurate to about eps (s_1 / s_i)^2, 4e-9 for s_40;
    # tsqr squares nothing
    assert np.allclose(r.S, s[:40], rtol=bound)
    assert np.allclose(U.T @ U, np.eye(40), atol=bound)


def test_gram_refuses_a_large_small_side():
    with pytest.raises(InputError, match="min\\(m, n\\) <= 8192"):
        dmf.svd(da.zeros((8200, 8200), chunks=(1000, -1)), 2, method="gram")


def test_sketch_reads_x_exactly_once(tmp_path):
    url = tmp_path / "X.zarr"
    A, _ = planted(m=4000, n=100, rank=8)
    dmf.save_matrix(A, url, chunks=500)
    reads = pass_counter(url)
    r = dmf.svd(url, 5, method="sketch", seed=0, cache=False)
    U = r.U.compute()  # from the range sketch: no further read of X
    passes = reads()
    assert 1 <= passes < 1.5, passes  # margin: imports read files too
    assert np.allclose(U.T @ U, np.eye(5), atol=1e-10)


def test_sketch_error_estimate_tracks_the_true_error():
    rng = np.random.default_rng(3)
    A, _ = planted(m=2000, n=120, ratio=0.9, seed=3)
    A += 0.05 * rng.standard_normal(A.shape)
    r = dmf.svd(chunked(A, (250, -1)), 5, method="sketch", seed=4)
    true = np.linalg.norm(A - (r.U.compute() * r.S) @ r.Vt)
    assert 0.5 * true <= r.error_estimate <= 2.0 * true
    assert np.isclose(r.attrs["relative_error_estimate"],
                      r.error_estimate / np.linalg.norm(A))


@pytest.mark.parametrize("method", ["randomized", "sketch", "power"])
def test_explained_variance_matches_scikit_learn(method):
    from sklearn.decomposition import TruncatedSVD

    A, _ = planted(m=500, n=40, rank=8, seed=5)
    A += 1.0  # not centred: the column means matter
    r = dmf.svd(chunked(A, (100, -1)), 4, method=method, seed=0)
    ref = TruncatedSVD(4, algorithm="arpack").fit(A)
    assert np.allclose(r.explained_variance_, ref.explained_variance_, rtol=1e-6)
    assert np.allclose(r.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-6)


@pytest.mark.parametrize("chunks", [(40, -1), (-1, 500), (40, 500), (-1, -1)],
                         ids=["row-blocks", "column-blocks", "grid", "single"])
@pytest.mark.parametrize("method", ["randomized", "sketch", "auto"])  # auto: tsqr on X^T
def test_wide_matrices(chunks, method):
    T, s = planted(m=2000, n=120, rank=None if method == "randomized" else 7, seed=6)
    A = np.ascontiguousarray(T.T)  # 120 x 2000
    r = dmf.svd(chunked(A, chunks), 5, method=method, seed=0)
    assert r.U.shape == (120, 5) and r.Vt.shape == (5, 2000)
    assert np.allclose(r.S, s[:5], rtol=1e-6)
    U = r.U.compute()
    assert np.allclose(U.T @ U, np.eye(5), atol=1e-10)
    assert np.allclose(r.Vt @ r.Vt.T, np.eye(5), atol=1e-10)
    Ua, sa, Vta = np.linalg.svd(A, full_matrices=False)
    assert np.allclose((U * r.S) @ r.Vt, (Ua[:, :5] * sa[:5]) @ Vta[:5], atol=1e-8)
    assert "explained_variance" in r.attrs


def test_wide_column_blocked_store_is_read_through_its_transpose(tmp_path):
    """The transpose is a view, not a copy: q + 1 passes, as for a tall matrix."""
    T, s = planted(m=4000, n=100, seed=7)
    url = tmp_path / "W.zarr"
    dmf.save_matrix(np.ascontiguousarray(T.T), url, chunks=(100, 500))
    reads = pass_counter(url)
    r = dmf.svd(url, 4, method="randomized", n_iter=2, seed=0, cache=False)
    passes = reads()
    assert 2 + 1 <= passes < 2 + 1.5, passes  # margin: imports read files too
    assert np.allclose(r.S, s[:4], rtol=1e-6)


# -- eigh --------------------------------------------------------------------------

def planted_symmetric(n=300, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = 10 * 0.7 ** np.arange(n) * np.where(np.arange(n) % 2, -1.0, 1.0)
    A = (Q * lam) @ Q.T
    return ((A + A.T) / 2).astype(dtype), lam


@pytest.mark.parametrize("chunks", [(60, -1), ((50, 100, 150), (300,)), (-1, -1)],
                         ids=["regular", "irregular", "single"])
@pytest.mark.parametrize(("dtype", "bound"), [(np.float64, 1e-6), (np.float32, 1e-4)],
                         ids=["float64", "float32"])
def test_eigh_signed_eigenvalues_by_magnitude(chunks, dtype, bound):
    A, lam = planted_symmetric(dtype=dtype)
    r = dmf.svd(chunked(A, chunks), 5, method="eigh", seed=0)
    assert np.allclose(r.eigenvalues, lam[:5], rtol=bound)
    assert np.allclose(r.S, np.abs(lam[:5]), rtol=bound)
    V = r.U.compute().astype(np.float64)
    tol = 1e-3 if dtype == np.float32 else 1e-10
    assert np.allclose(V.T @ V, np.eye(5), atol=tol)
    # X v = lambda v
    assert np.allclose(A.astype(np.float64) @ V, V * r.eigenvalues, atol=100 * bound)
    # and U S Vt is the same rank-5 approximation
    assert np.allclose((V * r.S) @ r.Vt.astype(np.float64), (V * r.eigenvalues) @ V.T,
                       atol=100 * bound)


def test_eigh_refuses_asymmetric_and_non_square():
    A, _ = planted_symmetric(n=100)
    B = A.copy()
    B[3, 7] += 1.0
    with pytest.raises(InputError, match="not symmetric"):
        dmf.svd(B, 3, method="eigh", seed=0)
    r = dmf.svd(B, 3, method="eigh", seed=0, assume_symmetric=True)  # trusted, as asked
    assert r.S.shape == (3,)
    with pytest.raises(InputError, match="square"):
        dmf.svd(np.ones((10, 8)), 2, method="eigh")


# -- determinism, errors, CLI -----------------------------------------------------

@pytest.mark.parametrize("method", ["randomized", "sketch"])
def test_same_seed_same_bits_on_one_or_two_workers_and_in_process(tmp_path, method):
    url = tmp_path / "X.zarr"
    A, _ = planted(m=3000, n=60, rank=10 if method == "sketch" else None)
    dmf.save_matrix(A, url, chunks=400)
    results = []
    for workers in (1, 2):
        with dmf.connect(n_workers=workers, threads_per_worker=1, memory_limit="1GiB"):
            r = dmf.svd(url, 4, method=method, seed=11)
            results.append((r.U.compute().tobytes(), r.S.tobytes(), r.Vt.tobytes()))
    with dask.config.set(scheduler="threads"):  # and in this process
        r = dmf.svd(url, 4, method=method, seed=11)
        results.append((r.U.compute().tobytes(), r.S.tobytes(), r.Vt.tobytes()))
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be between 1 and min"),
        ({"k": 41}, "k must be between 1 and min"),
        ({"k": 3, "method": "nope"}, "unknown SVD method"),
        ({"k": 3, "n_iter": -1}, "n_iter"),
        ({"k": 3, "n_oversamples": -2}, "n_oversamples"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(InputError, match=message):
        dmf.svd(np.ones((50, 40)), **kwargs)


def test_unnormalized_power_iterations_refused_on_float32():
    with pytest.raises(InputError, match="normalizer='none'"):
        dmf.svd(np.ones((50, 40), dtype=np.float32), 3, normalizer="none")


@pytest.mark.parametrize("method", ["randomized", "sketch", "eigh"])
def test_nan_and_inf_named_with_count_and_position(method):
    A, _ = planted_symmetric(n=50)
    A[7, 3] = np.nan
    A[20, 2] = np.inf
    with pytest.raises(InputError, match=r"1 NaN and 1 Inf values \(first at row 7, column 3\)"):
        dmf.svd(chunked(A, (10, -1)), 3, method=method)


@pytest.mark.parametrize("method",
                         ["randomized", "sketch", "eigh", "power", "gram", "tsqr", "auto"])
def test_cli_every_method_writes_a_loadable_result(tmp_path, method):
    A, lam = planted_symmetric(n=200)
    x, out = tmp_path / "X.zarr", tmp_path / "svd.zarr"
    dmf.save_matrix(A, x, chunks=50)
    done = subprocess.run([sys.executable, "-m", "dmf", "--workers", "0", "svd", str(x),
                           str(out), "-k", "3", "--method", method],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    back = dmf.load(out)
    method = "tsqr" if method == "auto" else method  # auto: tsqr for a 200 x 200 float64
    assert back.method == method
    # one pass without power iterations is approximate on a full-rank matrix
    assert np.allclose(back.S, np.abs(lam[:3]), rtol=0.05 if method == "sketch" else 1e-6)
    assert back.U.shape == (200, 3) and back.Vt.shape == (3, 200)
    assert len(back.explained_variance_ratio_) == 3
    if method == "eigh":
        assert np.allclose(back.eigenvalues, lam[:3], rtol=1e-6)
        assert "eigenvalues: 10, -7, 4.9" in done.stdout
    info = subprocess.run([sys.executable, "-m", "dmf", "info", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert f"svd-{method}" in info.stdout and "complete" in info.stdout
