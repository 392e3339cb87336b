"""Tri-factorization X ~ W S H (dmf.nmtf) and orthogonal NMF/NMTF: the
updates against a numpy reference, monotone objective, non-negativity, one
read per iteration, planted co-clusters recovered, kill-and-resume, the
store contract, bad input."""

from __future__ import annotations

import signal
import subprocess
import sys

import _procs
import dask.array as da
import numpy as np
import psutil
import pytest
import scipy.sparse
import zarr
from _procs import bytes_read
from sklearn.metrics import adjusted_rand_score

import dmf
from dmf.engine.checkpoint import Checkpoints
from dmf.engine.driver import Context
from dmf.errors import DmfWarning, InputError
from dmf.nmf.beta import EPSILON
from dmf.nmf.tri import _random_start
from dmf.store.info import describe
from dmf.store.location import Location


def planted(m=200, n=40, k1=4, k2=3, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    return (rng.random((m, k1)) @ rng.random((k1, k2)) @ rng.random((k2, n))
            + noise * rng.random((m, n)))


def co_clusters(m=240, n=120, k=3, seed=0):
    """Rows in k groups, columns in k groups, a block's level high where the
    groups match: X = B[rows][:, cols] + noise, rows and columns shuffled."""
    rng = np.random.default_rng(seed)
    rows = rng.permutation(np.repeat(np.arange(k), m // k))
    cols = rng.permutation(np.repeat(np.arange(k), n // k))
    B = 4 * np.eye(k) + 0.2
    return B[rows][:, cols] + 0.2 * rng.random((m, n)), rows, cols


def _reference(X, W, S, H, beta, iterations):
    """The updates of dmf.nmf.tri's docstring, in memory (KL: S on even
    iterations, H on odd ones)."""
    def update(F, num, den):
        den = den.copy()
        den[den == 0] = EPSILON
        return F * (num / den)

    for it in range(iterations):
        M = S @ H
        if beta == 2:
            W = update(W, X @ M.T, W @ M @ M.T)
            S = update(S, W.T @ X @ H.T, W.T @ W @ S @ H @ H.T)
            H = update(H, S.T @ W.T @ X, S.T @ W.T @ W @ S @ H)
        else:
            W = update(W, (X / np.maximum(W @ M, EPSILON)) @ M.T,
                       np.broadcast_to(M.sum(axis=1), W.shape))
            R = X / np.maximum(W @ S @ H, EPSILON)
            if it % 2 == 0:
                S = update(S, W.T @ R @ H.T, np.outer(W.sum(axis=0), H.sum(axis=1)))
            else:
                H = update(H, S.T @ W.T @ R, np.broadcast_to((S.T @ W.sum(axis=0))[:, None],
                                                            H.shape))
    return W, S, H


@pytest.mark.parametrize("loss", ["frobenius", "kl"])
def test_updates_equal_the_reference_and_objective_never_increases(loss):
    X = planted()
    Xd = da.from_array(X, chunks=(60, -1))
    r = dmf.nmtf(Xd, 4, 3, loss=loss, max_iter=60, tol=0, seed=7)
    avg = float(np.cbrt(X.mean() / 12))
    W0, S0, H0 = _random_start(4, 3, avg)(Xd, Context(rng=np.random.default_rng(7)))
    W, S, H = _reference(X, W0.compute(), S0, H0, 2 if loss == "frobenius" else 1, 60)
    for got, want in ((r.W.compute(), W), (r.S, S), (r.H, H)):
        assert np.abs(got - want).max() <= 1e-8 * np.abs(want).max()
    assert r.W.shape == (200, 4) and r.S.shape == (4, 3) and r.H.shape == (3, 40)
    assert (r.W.compute() >= 0).all() and (r.S >= 0).all() and (r.H >= 0).all()
    h = np.array(r.loss_history)
    assert len(h) == r.n_iter == 60
    assert (np.diff(h) <= 1e-12 * h[:-1]).all(), h
    assert h[-1] < 0.01 * h[0]
    WSH = r.W.compute() @ r.S @ r.H
    if loss == "frobenius":  # entry 0 is the start's objective, final the result's
        assert h[0] == pytest.approx(0.5 * ((X - W0.compute() @ S0 @ H0) ** 2).sum(), rel=1e-9)
        assert r.reconstruction_err_ == pytest.approx(np.linalg.norm(X - WSH), rel=1e-9)
    else:
        kl = (X * np.log(X / WSH) - X + WSH).sum()
        assert r.attrs["final_divergence"] == pytest.approx(kl, rel=1e-9)


@pytest.mark.parametrize("loss", ["frobenius", "kl"])
def test_sparse_input_gives_the_dense_factors(loss):
    S = scipy.sparse.random(120, 30, density=0.3, format="csr", random_state=1)
    dense = dmf.nmtf(S.toarray(), 3, 2, loss=loss, max_iter=20, tol=0, seed=0)
    sparse = dmf.nmtf(S, 3, 2, loss=loss, max_iter=20, tol=0, seed=0)
    np.testing.assert_allclose(sparse.W.compute(), dense.W.compute(), rtol=1e-10)
    np.testing.assert_allclose(sparse.H, dense.H, rtol=1e-10)
    assert sparse.loss_history == pytest.approx(dense.loss_history, rel=1e-10)
    assert sparse.reconstruction_err_ == pytest.approx(dense.reconstruction_err_, rel=1e-10)


def test_reads_x_once_per_iteration(tmp_path):
    url = tmp_path / "X.zarr"
    dmf.save_matrix(planted(m=4000, n=100), url, chunks=500)
    stored = sum(p.stat().st_size for p in (url / "c").rglob("*") if p.is_file())
    proc = psutil.Process()
    for orthogonal in (None, "both"):
        before = bytes_read(proc)
        dmf.nmtf(url, 4, 3, orthogonal=orthogonal, max_iter=10, tol=0, seed=0, cache=False)
        passes = (bytes_read(proc) - before) / stored
        # 10 iterations, one check of X's signs before them, one objective after
        assert 12 <= passes < 12.5, (orthogonal, passes)


def test_orthogonal_nmtf_recovers_planted_co_clusters():
    X, rows, cols = co_clusters()
    r = dmf.nmtf(da.from_array(X, chunks=(80, -1)), 3, 3, orthogonal="both", max_iter=150,
                 tol=0, seed=0)
    err = r.attrs["orthogonality_error"]
    assert err["orthogonality_W"] < 0.05 and err["orthogonality_H"] < 0.05, err
    history = r.attrs["orthogonality_history"]
    assert len(history) == 150 and history[0]["orthogonality_W"] > 10 * err["orthogonality_W"]
    assert adjusted_rand_score(rows, r.W.compute().argmax(axis=1)) >= 0.9
    assert adjusted_rand_score(cols, r.H.argmax(axis=0)) >= 0.9


@pytest.mark.parametrize("side", ["W", "H"])
def test_orthogonal_nmf_recovers_planted_clusters(side):
    X, rows, cols = co_clusters()
    r = dmf.nmf(X, 3, orthogonal=side, init="random", max_iter=150, tol=0, seed=0)
    assert r.attrs["solver"] == "mu"  # auto: orthogonal updates are multiplicative
    err = r.attrs["orthogonality_error"][f"orthogonality_{side}"]
    assert err < 0.05, err
    labels = r.W.compute().argmax(axis=1) if side == "W" else r.H.argmax(axis=0)
    assert adjusted_rand_score(rows if side == "W" else cols, labels) >= 0.9
    assert (r.W.compute() >= 0).all() and (r.H >= 0).all()


def test_result_store_load_and_info(tmp_path):
    out = tmp_path / "r.zarr"
    r = dmf.nmtf(planted(), 4, 3, max_iter=5, tol=0, seed=0, out=out)
    group = zarr.open_group(str(out), mode="r")
    meta = group.attrs["dmf"]
    assert meta["algorithm"] == "nmtf-mu" and meta["status"] == "complete"
    loaded = dmf.load(out)
    assert isinstance(loaded, dmf.NMTFResult) and loaded.n_iter == 5
    assert loaded.S.tobytes() == r.S.tobytes() and loaded.H.tobytes() == r.H.tobytes()
    arrays = describe(str(out))["arrays"]
    assert {name: arrays[name]["shape"] for name in ("W", "S", "H")} == {
        "W": [200, 4], "S": [4, 3], "H": [3, 40]}
    shown = subprocess.run([sys.executable, "-m", "dmf", "info", str(out)], capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0 and "array S" in shown.stdout and "4x3" in shown.stdout


def _cli(x, out, *extra):
    return [sys.executable, "-m", "dmf", "--workers", "0", "-q", "nmf", str(x), str(out), "-k",
            "4", "--factors", "3", "--k2", "3", "--max-iter", "12", "--tol", "0",
            "--checkpoint-every", "3", "--seed", "2", *extra]


@pytest.mark.parametrize("extra", [("--loss", "kl"), ("--orthogonal", "both")],
                         ids=["kl", "orthogonal"])
def test_killed_and_rerun_gives_the_same_bits(tmp_path, extra):
    x = tmp_path / "X.zarr"
    dmf.save_matrix(planted(m=600), x, chunks=100)
    ref = tmp_path / "ref.zarr"
    done = subprocess.run(_cli(x, ref, *extra), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out, marker = tmp_path / "out.zarr", tmp_path / "marker"
    proc = _procs.start_until_failpoint(_cli(x, out, *extra), "iteration:8", marker)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    latest = Checkpoints(Location.parse(out / "checkpoints")).latest()
    assert latest.iteration == 6  # killed in iteration 8: the rerun resumes from 6
    again = subprocess.run(_cli(x, out, *extra), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    a, b = zarr.open_group(str(ref), mode="r"), zarr.open_group(str(out), mode="r")
    assert a.attrs["dmf"]["n_iter"] == b.attrs["dmf"]["n_iter"] == 12
    assert b.attrs["dmf"]["resumed_from"] == 6
    for name in ("W", "S", "H"):
        assert np.asarray(a[name][...]).tobytes() == np.asarray(b[name][...]).tobytes()
    assert a.attrs["dmf"].get("orthogonality_history") == b.attrs["dmf"].get(
        "orthogonality_history")


@pytest.mark.parametrize(
    ("X", "kwargs", "message"),
    [
        (-planted(), {}, "negative values (first at row 0, column 0)"),
        (planted(), {"k1": 0}, "k1 must be between 1"),
        (planted(), {"k2": 0}, "k2 must be between 1"),
        (planted(), {"k1": 41}, "k1 must be between 1 and min(m, n) = 40"),
        (planted(), {"k2": 41}, "k2 must be between 1 and min(m, n) = 40"),
        (planted(), {"loss": "is"}, "frobenius or kl loss only"),
        (planted(), {"loss": "kl", "orthogonal": "W"}, "Frobenius loss only"),
        (planted(), {"orthogonal": "rows"}, "orthogonal must be None, 'W', 'H' or 'both'"),
        (planted(), {"init": "nndsvda"}, "unknown NMTF init"),
        (np.full((5, 4), np.nan), {"k1": 2, "k2": 2}, "NaN"),
    ],
)
def test_bad_input_is_an_input_error(X, kwargs, message):
    kwargs = {"k1": 4, "k2": 3, **kwargs}
    k1, k2 = kwargs.pop("k1"), kwargs.pop("k2")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dmf.nmtf(X, k1, k2, max_iter=2, **kwargs)


def test_orthogonal_nmf_bad_input():
    with pytest.raises(InputError, match="multiplicative updates only"):
        dmf.nmf(planted(), 3, solver="hals", orthogonal="W")
    with pytest.raises(InputError, match="Frobenius loss only"):
        dmf.nmf(planted(), 3, loss="kl", orthogonal="H")
    with pytest.warns(DmfWarning, match="no free scale.*dmf.nmtf"):
        dmf.nmf(planted(), 3, orthogonal="both", init="random", max_iter=2, tol=0, seed=0)


@pytest.mark.parametrize(("extra", "message"), [((), "--factors 3 needs --k2"),
                                                (("--k2", "50"), "k2 must be between 1")])
def test_cli_bad_input_exits_2(tmp_path, extra, message):
    x = tmp_path / "X.zarr"
    dmf.save_matrix(planted(), x)
    done = subprocess.run([sys.executable, "-m", "dmf", "--workers", "0", "nmf", str(x),
                           str(tmp_path / "out.zarr"), "-k", "3", "--factors", "3", *extra],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
