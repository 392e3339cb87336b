"""Property tests (hypothesis) of the SVD methods and of NMF (mu, hals) over
shapes, dtypes, chunkings and ranks. Few examples each, no deadline: every
example is a real run of dmf on a small matrix."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import dmf

# no shrinking: a failing example is reported as drawn (shrinking one re-runs
# dmf hundreds of times); derandomized, so every run draws the same examples
SETTINGS = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TOLERANCE = {np.float32: 1e-4, np.float64: 1e-9}


@st.composite
def matrices(draw, *, tall: bool = False, symmetric: bool = False, nonnegative: bool = False):
    """(dask X, numpy X in float64, k): a random matrix of planted rank r, in
    float32 or float64, chunked regularly, irregularly or as one block."""
    m = draw(st.integers(8, 40))
    n = m if symmetric else draw(st.integers(3, m if tall else 30))
    rank = draw(st.integers(1, min(m, n)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    left, right = rng.random((m, rank)), rng.random((rank, n))
    if not nonnegative:
        left, right = left - 0.5, right - 0.5
    A = left @ (left.T if symmetric else right)
    A = A.astype(dtype)
    kind = draw(st.sampled_from(["regular", "irregular", "single"]))
    if kind == "single":
        rows = (m,)
    elif kind == "regular":
        step = draw(st.integers(3, max(3, m // 2)))
        rows = tuple([step] * (m // step) + ([m % step] if m % step else []))
    else:
        cut = sorted(draw(st.sets(st.integers(1, m - 1), min_size=1, max_size=3)))
        rows = tuple(np.diff([0, *cut, m]).tolist())
    k = draw(st.integers(1, min(m, n)))
    return da.from_array(A, chunks=(rows, -1)), A.astype(np.float64), k


def check_svd(r, A: np.ndarray, k: int, *, exact: bool, converged: bool = True,
              resolved: float = 0.0, loose: float = 0.0) -> None:
    """Sorted non-negative S, orthonormal U and Vt (for the values above
    ``resolved`` s_1: power iteration's vectors of values just above its
    cut-off, sqrt(max(m, n) eps) s_1, are noise; their orthonormality to
    ``loose``: power iteration's vectors are as accurate as its residual
    tolerance), the Eckart-Young bound, and for ``exact`` methods the
    optimal error and numpy's values."""
    tol = TOLERANCE[np.float32 if r.S.dtype == np.float32 else np.float64]
    s = np.linalg.svd(A, compute_uv=False)
    S = r.S.astype(np.float64)
    assert S.shape == (k,) and (S >= 0).all() and (np.diff(S) <= 0).all()
    U = r.U.compute().astype(np.float64)
    Vt = r.Vt.astype(np.float64)
    keep = S >= resolved * s[0]
    U, Vt = U[:, keep], Vt[keep]
    if converged:  # U = X V / S: orthonormal once V holds singular vectors
        assert np.abs(U.T @ U - np.eye(len(U.T))).max() <= max(100 * tol, loose)
    assert np.abs(Vt @ Vt.T - np.eye(len(Vt))).max() <= max(100 * tol, loose)
    # no rank-k approximation beats the SVD's: Eckart-Young bounds the error below
    error = np.linalg.norm(A - (U * S[keep]) @ Vt)
    best = np.sqrt((s[int(keep.sum()):] ** 2).sum())
    scale = max(s[0], 1e-300)
    assert error >= best - 10 * tol * scale
    if r.method != "sketch":  # a projection's values never exceed X's (the sketch's can)
        assert S[0] <= s[0] * (1 + 10 * tol)
    if exact:
        assert error <= best + 10 * tol * scale
        assert np.abs(S - s[:k]).max() <= 10 * tol * scale


@pytest.mark.parametrize("method", ["randomized", "sketch", "power", "auto"])
@SETTINGS
@given(data=matrices())
def test_svd_properties(method, data):
    X, A, k = data
    options = {"tol": 1e-6, "max_iter": 200} if method == "power" else {}
    if method == "randomized":
        options["n_iter"] = 2
    with warnings.catch_warnings(record=True) as caught:  # power: close values
        warnings.simplefilter("always", dmf.errors.DmfWarning)
        r = dmf.svd(X, k, method=method, seed=0, **options)
    check_svd(r, A, k, exact=method == "auto", converged=not caught,
              resolved=1e-3 if method == "power" else 0.0,
              loose=1e-4 if method == "power" else 0.0)


@pytest.mark.parametrize("method", ["gram", "tsqr"])
@SETTINGS
@given(data=matrices(tall=True))
def test_exact_svd_properties(method, data):
    X, A, k = data
    check_svd(dmf.svd(X, k, method=method), A, k, exact=True)


@SETTINGS
@given(data=matrices(symmetric=True))
def test_eigh_properties(data):
    X, A, k = data
    r = dmf.svd(X, k, method="eigh", seed=0)
    check_svd(r, A, k, exact=True)
    lam = np.linalg.eigvalsh(A)
    top = lam[np.argsort(-np.abs(lam), kind="stable")[:k]]
    tol = TOLERANCE[np.float32 if r.S.dtype == np.float32 else np.float64]
    assert np.allclose(np.sort(np.abs(r.eigenvalues)), np.sort(np.abs(top)),
                       atol=10 * tol * np.abs(lam).max())


@pytest.mark.parametrize("solver", ["mu", "hals"])
@SETTINGS
@given(data=matrices(nonnegative=True))
def test_nmf_properties(solver, data):
    X, A, k = data
    r = dmf.nmf(X, k, solver=solver, max_iter=15, tol=0, seed=0)
    W = r.W.compute()
    assert W.shape == (A.shape[0], k) and r.H.shape == (k, A.shape[1])
    assert (W >= 0).all() and (r.H >= 0).all()
    assert np.isfinite(W).all() and np.isfinite(r.H).all()
    history = np.asarray(r.loss_history)
    # the loss is 0.5 (|X|^2 - 2 <W, X H^T> + <W^T W, H H^T>): its rounding
    # is relative to |X|^2, not to itself (it cancels near an exact fit)
    scale = 0.5 * float((A**2).sum())
    tol = TOLERANCE[np.float32 if W.dtype == np.float32 else np.float64]
    if solver == "mu":  # multiplicative updates never increase the loss
        assert (np.diff(history) <= 10 * tol * scale).all(), history
    # no worse than the start, never below zero
    assert history[-1] <= history[0] + 10 * tol * scale and history[-1] >= -tol * scale
