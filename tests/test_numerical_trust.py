"""Numerical trust (issue 23): scikit-learn's TruncatedSVD contract, float32
accuracy, tsqr's small values, unknown chunk sizes, warnings in
scikit-learn's terms and at the user's line, eigh on a flat spectrum,
HALS with a fixed sweep count under any row chunking."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import dask.array as da
import numpy as np
import pytest
import scipy.sparse
import sklearn.exceptions

import dmf
from dmf.errors import ConvergenceWarning, InputError

EPS32 = float(np.finfo(np.float32).eps)


# -- line 1: TruncatedSVD's contract ------------------------------------------------

def test_fit_transform_is_transform_and_variance_is_that_of_x_v():
    X = np.random.default_rng(0).random((60, 55))
    t = dmf.TruncatedSVD(5, n_iter=7, random_state=42)
    A = t.fit_transform(X)
    B = t.transform(X)
    assert np.abs(A - B).max() <= 1e-15 * np.abs(B).max()  # was 1.1e-3 (U S)
    assert np.allclose(t.explained_variance_, np.var(B, axis=0), rtol=1e-12)
    assert np.allclose(t.explained_variance_ratio_,
                       np.var(B, axis=0) / np.var(X, axis=0).sum(), rtol=1e-10)


def test_arpack_takes_sparse_input_and_agrees_with_dense():
    X = scipy.sparse.random(80, 30, density=0.2, format="csr", random_state=0)
    sparse = dmf.TruncatedSVD(4, algorithm="arpack").fit(X)
    dense = dmf.TruncatedSVD(4, algorithm="arpack").fit(X.toarray())
    assert np.allclose(sparse.singular_values_, dense.singular_values_, rtol=1e-10)
    assert np.allclose(sparse.components_, dense.components_, atol=1e-8)
    s = np.linalg.svd(X.toarray(), compute_uv=False)
    assert np.allclose(sparse.singular_values_, s[:4], rtol=1e-10)


# -- line 3: float32 -----------------------------------------------------------------

@pytest.fixture(scope="module")
def low_rank_plus_noise():
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((5000, 5)) @ rng.standard_normal((5, 200)) * .01
         + 1e-6 * rng.standard_normal((5000, 200))).astype(np.float32)
    X64 = X.astype(np.float64)  # float64 LAPACK's values (through X^T X: to 1e-11 s_1 here)
    return X, np.sqrt(np.clip(np.linalg.eigvalsh(X64.T @ X64)[::-1], 0, None))


@pytest.mark.parametrize("method", ["randomized", "gram", "auto"])
def test_float32_is_as_accurate_as_float32_allows(low_rank_plus_noise, method):
    X, s64 = low_rank_plus_noise
    r = dmf.svd(X, 10, method=method, seed=0)
    assert r.S.dtype == np.float32
    assert np.abs(r.S - s64[:10]).max() <= 10 * EPS32 * s64[0]  # randomized: was 22
    U = r.U.compute().astype(np.float64)
    assert np.abs(U.T @ U - np.eye(10)).max() <= 1e-5  # was 1.2e-3 (randomized), 5.5e-4


# -- line 4: tsqr's small values -----------------------------------------------------

def test_tsqr_keeps_real_small_values_and_zeroes_rounding():
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.standard_normal((100000, 4)))
    V, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    s = np.array([1, .1, .01, .001])
    X = ((Q * s) @ V).astype(np.float32)
    r = dmf.svd(da.from_array(X, chunks=(25000, -1)), 4, method="tsqr")
    assert np.allclose(r.S, s, rtol=1e-3)  # was [1, .1, 0, 0]
    A = rng.standard_normal((2000, 5)) @ rng.standard_normal((5, 12))  # rank 5
    r = dmf.svd(da.from_array(A, chunks=(300, -1)), method="tsqr")
    assert (r.S[:5] > 0).all() and (r.S[5:] == 0).all()


# -- line 5: unknown chunk sizes -----------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda Y: dmf.svd(Y, 3), lambda Y: dmf.nmf(Y, 3, max_iter=2),
    lambda Y: dmf.TruncatedSVD(3).fit(Y), lambda Y: dmf.NMF(3, max_iter=2).fit(Y),
    lambda Y: dmf.select_rank(Y, [2, 3], method="svd"),
], ids=["svd", "nmf", "TruncatedSVD", "NMF", "select_rank"])
def test_unknown_chunk_sizes_are_refused_in_one_line(call):
    X = da.from_array(np.random.default_rng(0).random((100, 20)), chunks=(30, 20))
    Y = X[X[:, 0] > 0.3]
    with pytest.raises(InputError, match=r"unknown chunk sizes.*compute_chunk_sizes\(\)") as err:
        call(Y)
    assert "\n" not in str(err.value)


# -- line 6: warnings ----------------------------------------------------------------

def test_convergence_warning_is_scikit_learns_and_points_at_the_callers_line():
    assert issubclass(ConvergenceWarning, sklearn.exceptions.ConvergenceWarning)
    assert issubclass(ConvergenceWarning, dmf.errors.DmfWarning)
    X = np.random.default_rng(0).random((20, 10))
    calls = [lambda: dmf.NMF(2, max_iter=3, solver="mu").fit(X),
             lambda: dmf.nmf(X, 2, max_iter=3, tol=1e-12),
             lambda: dmf.NMF(2, init="nndsvd", solver="mu", max_iter=500, tol=0.1).fit(X)]
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        assert caught and all(w.filename == __file__ for w in caught), \
            [(w.category, w.filename) for w in caught]


def test_importing_dmf_does_not_import_scikit_learn():
    code = "import sys, dmf, dmf.errors; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ}, check=True).stdout
    assert out.strip() == "False"


# -- line 7: rank selection finds planted ranks --------------------------------------

def test_default_rank_selection_finds_rank_7_under_noise():
    rng = np.random.default_rng(3)
    X = rng.random((600, 7)) @ rng.random((7, 150)) + 0.01 * rng.random((600, 150))
    r = dmf.select_rank(X, range(2, 13), seed=0)
    assert (r.method, r.k) == ("bcv", 7)  # masked MU: 11 (under-fitted small ks)
    err = dict(zip(r.table["k"].tolist(), r.table["heldout_rmse"].tolist(), strict=True))
    assert err[7] < 0.05 * err[6]  # the planted rank is a cliff
    assert max(err[k] for k in range(7, 13)) < 1.01 * err[7]  # and more ks win nothing


def test_default_rank_selection_finds_noiseless_rank_5_out_of_core(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((2000, 5)) @ rng.random((5, 100))
    in_memory = dmf.select_rank(X, range(2, 13), seed=0)
    assert in_memory.k == 5  # masked MU: 7 to 12
    url = dmf.save_matrix(X, str(tmp_path / "x.zarr"), chunks=300)  # 7 row blocks
    stored = dmf.select_rank(url, range(2, 13), seed=0)
    assert stored.k == 5
    assert np.allclose(stored.table["heldout_rmse"], in_memory.table["heldout_rmse"],
                       rtol=1e-9, atol=1e-12)


# -- line 8: eigh's default iterations, HALS under any chunking ---------------------

def test_eigh_default_is_exact_on_a_flat_spectrum():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((50, 50)))
    lam = np.linspace(2.0, 1.0, 50)
    A = (Q * lam) @ Q.T
    r = dmf.svd((A + A.T) / 2, 5, method="eigh", seed=0)
    assert np.abs(r.eigenvalues - lam[:5]).max() <= 1e-3 * lam[0]  # was 4.6e-2


@pytest.mark.parametrize("sweeps", [1, 3])
def test_fixed_hals_sweeps_give_the_same_iterates_for_any_row_chunking(sweeps):
    # "auto" decides its count per block row: documented as chunking-dependent
    rng = np.random.default_rng(0)
    X = rng.random((300, 6)) @ rng.random((6, 40)) + 0.01 * rng.random((300, 40))
    runs = [dmf.nmf(da.from_array(X, chunks=(rows, -1)), 6, solver="hals", max_iter=30,
                    tol=0, seed=0, hals_sweeps=sweeps) for rows in (300, 97)]
    W0, W1 = (r.W.compute() for r in runs)
    assert np.abs(W0 - W1).max() <= 1e-10 * np.abs(W0).max()
    assert np.abs(runs[0].H - runs[1].H).max() <= 1e-10 * np.abs(runs[0].H).max()
