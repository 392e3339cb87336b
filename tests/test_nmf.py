"""NMF by multiplicative updates: agreement with scikit-learn, monotone
objective, dtypes, one read per iteration, determinism, resume, errors."""

from __future__ import annotations

import signal
import subprocess
import sys

import _procs
import dask
import dask.array as da
import numpy as np
import psutil
import pytest
import scipy.sparse
import zarr
from _procs import bytes_read
from sklearn.decomposition import NMF, non_negative_factorization
from sklearn.decomposition._nmf import _beta_divergence, _initialize_nmf

import dmf
from dmf.engine.checkpoint import Checkpoints
from dmf.engine.driver import Context
from dmf.errors import ConvergenceWarning, DmfWarning, InputError
from dmf.nmf.init import nndsvd_init
from dmf.store.location import Location

CHUNKINGS = {"regular": (60, -1), "irregular": ((50, 90, 20, 40), (40,)), "single": (-1, -1),
             "column-blocked": (60, 15)}


def planted(m=200, n=40, rank=5, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    return rng.random((m, rank)) @ rng.random((rank, n)) + noise * rng.random((m, n))


def start(m=200, n=40, k=5, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((m, k)), rng.random((k, n))


def objective(X, W, H, beta, alpha, l1_ratio):
    m, n = X.shape
    l1_W, l2_W = n * alpha * l1_ratio, n * alpha * (1 - l1_ratio)
    l1_H, l2_H = m * alpha * l1_ratio, m * alpha * (1 - l1_ratio)
    return (_beta_divergence(X, W, H, beta) + l1_W * W.sum() + 0.5 * l2_W * (W ** 2).sum()
            + l1_H * H.sum() + 0.5 * l2_H * (H ** 2).sum())


@pytest.mark.parametrize("alpha", [0.0, 0.01], ids=["plain", "regularized"])
@pytest.mark.parametrize("beta", [2, 1, 0, 0.5, 3])
def test_mu_equals_scikit_learn(beta, alpha):
    X = planted()
    W0, H0 = start()
    Ws, Hs, _ = non_negative_factorization(X, n_components=5, init="custom", W=W0.copy(),
                                           H=H0.copy(), solver="mu", beta_loss=beta,
                                           max_iter=50, tol=0, alpha_W=alpha, l1_ratio=0.3)
    r = dmf.nmf(da.from_array(X, chunks=(60, -1)), 5, loss=beta, solver="mu", init="custom",
                W=W0, H=H0, max_iter=50, tol=0, alpha_W=alpha, l1_ratio=0.3, seed=0)
    W = r.W.compute()
    assert np.abs(W - Ws).max() <= 1e-6 * np.abs(Ws).max()
    assert np.abs(r.H - Hs).max() <= 1e-6 * np.abs(Hs).max()
    # entry 0 is the starting objective, the stored one that of the result
    assert r.loss_history[0] == pytest.approx(objective(X, W0, H0, beta, alpha, 0.3), rel=1e-9)
    assert r.attrs["final_objective"] == pytest.approx(objective(X, W, r.H, beta, alpha, 0.3),
                                                       rel=1e-9)
    assert r.reconstruction_err_ == pytest.approx(
        _beta_divergence(X, W, r.H, beta, square_root=True), rel=1e-9)
    assert r.n_iter == 50 and len(r.loss_history) == 50


@pytest.mark.parametrize("alpha", [0.0, 0.01], ids=["plain", "regularized"])
def test_hals_equals_scikit_learn_cd(alpha):
    X = planted()
    W0, H0 = start()
    Ws, Hs, _ = non_negative_factorization(X, n_components=5, init="custom", W=W0.copy(),
                                           H=H0.copy(), solver="cd", max_iter=50, tol=0,
                                           alpha_W=alpha, l1_ratio=0.3)
    r = dmf.nmf(da.from_array(X, chunks=(60, -1)), 5, init="custom", W=W0, H=H0,
                max_iter=50, tol=0, alpha_W=alpha, l1_ratio=0.3, hals_sweeps=1)
    assert r.attrs["solver"] == "hals" and r.n_iter == 50  # auto: hals for Frobenius
    assert np.abs(r.W.compute() - Ws).max() <= 1e-6 * np.abs(Ws).max()
    assert np.abs(r.H - Hs).max() <= 1e-6 * np.abs(Hs).max()
    assert r.loss_history[0] == pytest.approx(objective(X, W0, H0, 2, alpha, 0.3), rel=1e-9)
    h = np.array(r.loss_history)
    assert (np.diff(h) <= 1e-12 * h[:-1]).all()


@pytest.mark.parametrize("tol", [1e-2, 3e-3])
def test_hals_stops_where_scikit_learn_cd_stops(tol):
    rng = np.random.default_rng(0)
    X = rng.random((200, 6)) @ rng.random((6, 40))
    W0, H0 = rng.random((200, 6)), rng.random((6, 40))
    _, Hs, n_iter = non_negative_factorization(X, n_components=6, init="custom", W=W0.copy(),
                                               H=H0.copy(), solver="cd", max_iter=3000, tol=tol)
    r = dmf.nmf(X, 6, solver="hals", W=W0, H=H0, max_iter=3000, tol=tol, hals_sweeps=1)
    assert r.converged and r.n_iter == n_iter < 3000
    assert np.abs(r.H - Hs).max() <= 1e-6 * np.abs(Hs).max()


@pytest.mark.parametrize("alpha", [0.0, 0.01], ids=["plain", "regularized"])
def test_accelerated_hals_gets_further_per_read_of_x(alpha):
    """hals_sweeps="auto" (the default): more sweeps per read of X, the
    objective still never increases and is far lower after as many
    iterations as scikit-learn's cd; a fixed count differs from 1."""
    X = planted()
    W0, H0 = start()
    runs = {s: dmf.nmf(da.from_array(X, chunks=(60, -1)), 5, W=W0, H=H0, max_iter=30, tol=0,
                       alpha_W=alpha, l1_ratio=0.3, hals_sweeps=s) for s in ("auto", 1, 3)}
    final = {s: r.attrs["final_objective"] for s, r in runs.items()}
    assert final["auto"] < final[3] < final[1]
    if not alpha:  # measured 0.81 against 7.2 after 30 iterations
        assert final["auto"] < 0.2 * final[1]
    for r in runs.values():
        h = np.array(r.loss_history)
        assert (np.diff(h) <= 1e-12 * h[:-1]).all()
        assert (r.W.compute() >= 0).all() and (r.H >= 0).all()
        W = r.W.compute()
        assert r.attrs["final_objective"] == pytest.approx(
            objective(X, W, r.H, 2, alpha, 0.3), rel=1e-9)
    assert runs["auto"].attrs["parameters"]["hals_sweeps"] == "auto"


def test_accelerated_hals_converges_in_fewer_iterations_than_cd():
    X = planted(m=100, n=30, rank=4, noise=0.05)
    W0, H0 = start(m=100, n=30, k=4)
    Ws, Hs, n_iter = non_negative_factorization(X, n_components=4, init="custom", W=W0.copy(),
                                                H=H0.copy(), solver="cd", max_iter=3000,
                                                tol=1e-4)
    fast = dmf.nmf(X, 4, W=W0, H=H0, max_iter=3000, tol=1e-4)
    assert fast.converged
    assert fast.n_iter < 0.9 * n_iter  # measured 282 against 385
    assert fast.reconstruction_err_ <= _beta_divergence(X, Ws, Hs, 2, square_root=True)


def test_callback_can_end_a_fit_at_a_target():
    X = planted()
    W0, H0 = start()
    target = dmf.nmf(X, 5, W=W0, H=H0, max_iter=40, tol=0).loss_history[25]
    seen = []

    def reached(it, _state, stats):
        seen.append(it)
        return stats.loss <= target

    r = dmf.nmf(X, 5, W=W0, H=H0, max_iter=40, tol=1e-12, callback=reached)
    assert r.n_iter == seen[-1] == 26 and not r.converged
    assert r.attrs["stopped_by_callback"] and r.attrs["final_objective"] <= target


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "fast"])
def test_hals_sweeps_must_be_auto_or_a_count(bad):
    with pytest.raises(InputError, match="hals_sweeps must be 'auto' or an int >= 1"):
        dmf.nmf(planted(), 5, hals_sweeps=bad)


def test_hals_sweeps_is_for_hals():
    with pytest.raises(InputError, match="hals_sweeps applies to solver='hals'"):
        dmf.nmf(planted(), 5, solver="mu", hals_sweeps=2)


@pytest.mark.parametrize("chunks", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_any_chunking_gives_the_same_factors(chunks):
    X = planted()
    W0, H0 = start()
    ref = dmf.nmf(X, 5, loss="kl", W=W0, H=H0, max_iter=20, tol=0)
    r = dmf.nmf(da.from_array(X, chunks=chunks), 5, loss="kl", W=W0, H=H0, max_iter=20, tol=0)
    np.testing.assert_allclose(r.W.compute(), ref.W.compute(), rtol=1e-10)
    np.testing.assert_allclose(r.H, ref.H, rtol=1e-10)


@pytest.mark.parametrize("loss", ["frobenius", "kl", "is", 0.5, 3.0])
def test_objective_never_increases_and_factors_stay_nonnegative(loss):
    X = planted(noise=0.1) + 0.01  # no zeros: Itakura-Saito is defined
    r = dmf.nmf(X, 4, loss=loss, max_iter=80, tol=0, seed=3)
    h = np.array(r.loss_history)
    assert (np.diff(h) <= 1e-12 * np.abs(h[:-1])).all(), h
    assert h[-1] < 0.5 * h[0]
    assert (r.W.compute() >= 0).all() and (r.H >= 0).all()


@pytest.mark.parametrize(("solver", "loss"), [("hals", 2), ("mu", 2), ("mu", 1)])
def test_dtype_preserved_and_float32_agrees_with_float64(solver, loss):
    # float32 X is multiplied in float32 (sums across slices in float64), as
    # scikit-learn computes on float32 input: the factors differ from
    # float64's by about what scikit-learn's own float32 run differs by
    # (here 1.6e-5 of the largest entry for cd, 1e-6 for mu; dmf's less)
    X = planted()
    X[::7, ::3] = 0.0  # zeros: KL's objective leaves them out (its masked path)
    W0, H0 = start()
    r64 = dmf.nmf(X, 5, solver=solver, loss=loss, W=W0, H=H0, max_iter=30, tol=0)
    r32 = dmf.nmf(X.astype(np.float32), 5, solver=solver, loss=loss, W=W0, H=H0,
                  max_iter=30, tol=0)
    assert r32.W.dtype == np.float32 and r32.H.dtype == np.float32
    assert r64.W.dtype == np.float64
    for a, b in ((r32.W.compute(), r64.W.compute()), (r32.H, r64.H)):
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max()
    h32, h64 = np.array(r32.loss_history), np.array(r64.loss_history)
    assert np.abs(h32 - h64).max() <= 1e-5 * h64[0]


@pytest.mark.parametrize(("solver", "loss"), [("hals", 2), ("mu", 2), ("mu", 1)])
def test_float32_objective_never_increases_beyond_rounding(solver, loss):
    X = (planted(noise=0.1) + 0.01).astype(np.float32)
    r = dmf.nmf(X, 4, solver=solver, loss=loss, max_iter=80, tol=0, seed=3)
    h = np.array(r.loss_history)
    assert (np.diff(h) <= 1e-6 * h[0]).all(), h
    assert h[-1] < 0.5 * h[0]
    assert r.attrs["final_objective"] == pytest.approx(h[-1], rel=1e-2)


@pytest.mark.parametrize(("beta", "tol"), [(2, 3e-3), (1, 3e-3)])
def test_mu_stops_where_scikit_learn_stops(beta, tol):
    rng = np.random.default_rng(0)
    X = rng.random((500, 15)) @ rng.random((15, 80)) + 0.01 * rng.random((500, 80))
    W0, H0 = rng.random((500, 10)), rng.random((10, 80))
    fitted = NMF(10, solver="mu", beta_loss=beta, init="custom", tol=tol, max_iter=1000).fit(
        X, W=W0.copy(), H=H0.copy())
    r = dmf.nmf(X, 10, loss=beta, solver="mu", W=W0, H=H0, tol=tol, max_iter=1000)
    assert r.converged and r.n_iter == fitted.n_iter_ < 1000
    assert len(r.loss_history) == r.n_iter + 1  # one more pass measured the answer
    assert np.abs(r.H - fitted.components_).max() <= 1e-6 * np.abs(fitted.components_).max()
    assert r.reconstruction_err_ == pytest.approx(fitted.reconstruction_err_, rel=1e-9)


@pytest.mark.parametrize("variant", ["nndsvd", "nndsvda"])
def test_nndsvd_starts_equal_scikit_learns(variant):
    X = planted(m=300, n=50, rank=6)
    Ws, Hs = _initialize_nmf(X, 5, init=variant, random_state=0)
    W, H = nndsvd_init(5, variant, X.mean(), solver="hals")(
        da.from_array(X, chunks=(70, -1)), Context(rng=np.random.default_rng(0)))
    W = W.compute()
    assert np.abs(W - Ws).max() <= 1e-8 * np.abs(Ws).max()
    assert np.abs(H - Hs).max() <= 1e-8 * np.abs(Hs).max()
    assert ((W == 0) == (Ws == 0)).all()


def test_nndsvdar_fills_nndsvds_zeros_with_small_values():
    X = planted(m=300, n=50, rank=6)
    ctx = lambda: Context(rng=np.random.default_rng(0))  # noqa: E731
    Xd = da.from_array(X, chunks=(70, -1))
    W0, H0 = nndsvd_init(5, "nndsvd", X.mean(), solver="hals")(Xd, ctx())
    W1, H1 = nndsvd_init(5, "nndsvdar", X.mean(), solver="hals")(Xd, ctx())
    W0, W1 = W0.compute(), W1.compute()
    for zero, filled in ((W0 == 0, W1), (H0 == 0, H1)):
        assert zero.any()
        assert (filled[zero] > 0).all() and (filled[zero] < X.mean()).all()
    assert np.array_equal(W1[W0 > 0], W0[W0 > 0]) and np.array_equal(H1[H0 > 0], H0[H0 > 0])


def test_mu_with_nndsvd_warns_as_scikit_learn_does():
    with pytest.warns(DmfWarning, match="cannot update zeros"):
        dmf.nmf(planted(), 5, solver="mu", init="nndsvd", max_iter=2, tol=0)


def test_default_start_is_nndsvda():
    X = planted()
    r = dmf.nmf(X, 5, max_iter=30, tol=0, seed=0)
    ref = dmf.nmf(X, 5, init="nndsvda", max_iter=30, tol=0, seed=0)
    other = dmf.nmf(X, 5, init="random", max_iter=30, tol=0, seed=0)
    assert np.array_equal(r.H, ref.H) and not np.array_equal(r.H, other.H)


@pytest.mark.parametrize(("solver", "beta"), [("cd", 2), ("mu", 2), ("mu", 1), ("mu", 0.5)])
def test_transform_equals_scikit_learns(solver, beta):
    X, X_new = planted(), planted(m=50, seed=4)
    fitted = NMF(5, solver=solver, beta_loss=beta, init="random", random_state=0, max_iter=50,
                 tol=0).fit(X)
    hals = {"solver": "hals", "hals_sweeps": 1} if solver == "cd" else {"solver": "mu"}
    r = dmf.nmf(X, 5, loss=beta, init="random", max_iter=2, tol=0, seed=0, **hals)
    r.H = fitted.components_.copy()  # the same H for both
    W = r.transform(da.from_array(X_new, chunks=(20, -1)), max_iter=50, tol=0).compute()
    assert np.abs(W - fitted.transform(X_new)).max() <= 1e-10 * np.abs(W).max()
    back = r.inverse_transform(W).compute()
    np.testing.assert_allclose(back, fitted.inverse_transform(W), rtol=1e-12)


def test_fixed_h_needs_h_and_no_w():
    with pytest.raises(InputError, match="pass H"):
        dmf.nmf(planted(), 5, update_H=False)


def test_l1_loss_sees_through_sparse_large_outliers():
    rng = np.random.default_rng(0)
    clean = rng.random((400, 4)) @ rng.random((4, 60))
    X = clean.copy()
    hit = rng.random(X.shape) < 0.03
    X[hit] += 20 * clean.max() * rng.random(int(hit.sum()))  # 3% of entries, huge
    errors = {}
    for loss in ("l1", "frobenius"):
        r = dmf.nmf(da.from_array(X, chunks=(200, -1)), 4, loss=loss, max_iter=100, tol=0,
                    seed=0)
        errors[loss] = np.abs(r.W.compute() @ r.H - clean).sum() / clean.sum()
        if loss == "l1":
            h = np.array(r.loss_history)
            assert (np.diff(h) <= 1e-12 * h[:-1]).all()  # sum |X - WH| never increases
            assert r.loss == "l1" and r.reconstruction_err_ == pytest.approx(
                np.abs(X - r.W.compute() @ r.H).sum(), rel=1e-9)
    assert errors["l1"] < 0.25 < 1.0 < errors["frobenius"], errors


@pytest.mark.parametrize(("beta", "solver"), [(2, "mu"), (1, "mu"), (2, "hals")])
def test_sparse_and_dense_agree_and_equal_scikit_learn(tmp_path, beta, solver):
    S = scipy.sparse.random(300, 40, density=0.3, format="csr", random_state=1)
    W0, H0 = start(m=300)
    url = dmf.save_matrix(S, tmp_path / "S.zarr")
    sparse_blocks = da.from_array(S, chunks=(70, -1), asarray=False)
    _, Hs, _ = non_negative_factorization(S, n_components=5, init="custom", W=W0.copy(),
                                          H=H0.copy(), beta_loss=beta, max_iter=30, tol=0,
                                          solver="cd" if solver == "hals" else "mu")
    sweeps = {"hals_sweeps": 1} if solver == "hals" else {}  # scikit-learn's cd
    dense = dmf.nmf(S.toarray(), 5, loss=beta, solver=solver, W=W0, H=H0, max_iter=30, tol=0,
                    **sweeps)
    for X in (url, sparse_blocks):
        r = dmf.nmf(X, 5, loss=beta, solver=solver, W=W0, H=H0, max_iter=30, tol=0, **sweeps)
        np.testing.assert_allclose(r.W.compute(), dense.W.compute(), rtol=1e-10)
        np.testing.assert_allclose(r.H, dense.H, rtol=1e-10)
        assert np.abs(r.H - Hs).max() <= 1e-6 * np.abs(Hs).max()
        assert r.reconstruction_err_ == pytest.approx(dense.reconstruction_err_, rel=1e-10)
        assert r.loss_history == pytest.approx(dense.loss_history, rel=1e-10)


def test_sparse_with_a_loss_that_needs_wh_everywhere_is_refused():
    S = scipy.sparse.random(50, 20, density=0.3, format="csr", random_state=0)
    for loss in ("is", 0.5, "l1"):
        with pytest.raises(InputError, match="frobenius or kl loss only"):
            dmf.nmf(S, 3, loss=loss)
    S.data[3] = -1.0
    with pytest.raises(InputError, match="1 negative values"):
        dmf.nmf(S, 3)


def test_warm_start_from_a_saved_result(tmp_path):
    X = planted()
    first = dmf.nmf(X, 5, max_iter=20, tol=0, seed=0, out=tmp_path / "a.zarr")
    saved = dmf.load(tmp_path / "a.zarr")
    more = dmf.nmf(X, 5, W=saved.W, H=saved.H, max_iter=10, tol=0)
    # loss_history[0] is |X|^2 - 2 <W, X H^T> + <W^T W, H H^T>, which cancels
    # down to the fit's size: it keeps |X|^2 / D times eps less than D itself
    assert more.loss_history[0] == pytest.approx(first.attrs["final_objective"], rel=1e-10)
    assert more.attrs["final_objective"] < first.attrs["final_objective"]


def test_max_iter_before_tol_warns_as_scikit_learn_does():
    with pytest.warns(ConvergenceWarning, match="max_iter=20"):
        r = dmf.nmf(planted(), 5, max_iter=20, tol=1e-9, seed=0)
    assert not r.converged and r.n_iter == 20


@pytest.mark.parametrize("loss", ["kl", "frobenius"])  # mu; hals with its repeated sweeps
def test_reads_x_once_per_iteration(tmp_path, loss):
    url = tmp_path / "X.zarr"
    dmf.save_matrix(planted(m=4000, n=100), url, chunks=500)
    stored = sum(p.stat().st_size for p in (url / "c").rglob("*") if p.is_file())
    proc = psutil.Process()
    before = bytes_read(proc)
    dmf.nmf(url, 5, loss=loss, init="random", max_iter=10, tol=0, seed=0, cache=False)
    passes = (bytes_read(proc) - before) / stored
    # 10 iterations, one check of X's signs before them, one objective after
    assert 12 <= passes < 12.5, passes


@pytest.mark.parametrize("loss", ["kl", "frobenius"])  # mu; hals, whose sweeps stop by block
def test_same_bits_on_a_cluster_and_in_process(local_client, tmp_path, loss):
    url = tmp_path / "X.zarr"
    dmf.save_matrix(planted(m=1000), url, chunks=150)
    on_cluster = dmf.nmf(url, 5, loss=loss, max_iter=15, tol=0, seed=5)
    with dask.config.set(scheduler="threads"):
        in_process = dmf.nmf(url, 5, loss=loss, max_iter=15, tol=0, seed=5)
    assert on_cluster.W.compute().tobytes() == in_process.W.compute().tobytes()
    assert on_cluster.H.tobytes() == in_process.H.tobytes()


def _misaligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` that starts 3 bytes past a 64-byte boundary, as an
    array received inside a message from another process can."""
    buffer = np.empty(a.nbytes + 64, np.uint8)
    start = (-buffer.ctypes.data) % 64 + 3
    copy = buffer[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    copy[...] = a
    assert not copy.flags.aligned
    return copy


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.0, 1.5])
def test_a_block_step_gives_the_same_bits_for_misaligned_arrays(beta):
    # numpy multiplies an unaligned array without BLAS: other rounding, and so
    # other bits on a cluster (H arrives at any byte) than in process
    from dmf import blocks
    from dmf.nmf import mu

    rng = np.random.default_rng(0)
    X, W, H = rng.random((150, 40)), rng.random((150, 5)), rng.random((5, 40))
    args = (H @ H.T, H.sum(axis=1), mu.RowUpdate(beta, mu.exponent(beta)))
    def flat(rows_and_sums):  # the new rows, and the named sums in one vector
        rows, named = rows_and_sums
        return rows, np.concatenate([np.ravel(value) for value in named.values()])

    aligned = flat(blocks.run_block(mu._row_step, X, W, H, *args))
    received = flat(blocks.run_block(mu._row_step, _misaligned(X), _misaligned(W),
                                     _misaligned(H), *args))
    assert aligned[0].tobytes() == received[0].tobytes()
    assert aligned[1].tobytes() == received[1].tobytes()


def _cli(x, out, loss, solver):
    return [sys.executable, "-m", "dmf", "--workers", "0", "-q", "nmf", str(x), str(out), "-k",
            "4", "--loss", loss, "--solver", solver, "--init", "random", "--max-iter", "12",
            "--tol", "0", "--checkpoint-every", "3", "--seed", "2"]


@pytest.mark.parametrize(("loss", "solver"), [("kl", "mu"), ("frobenius", "hals"), ("l1", "mu")])
def test_killed_and_rerun_gives_the_same_bits(tmp_path, loss, solver):
    x = tmp_path / "X.zarr"
    dmf.save_matrix(planted(m=600), x, chunks=100)
    ref = tmp_path / "ref.zarr"
    done = subprocess.run(_cli(x, ref, loss, solver), capture_output=True, timeout=300)
    assert done.returncode == 0
    out, marker = tmp_path / "out.zarr", tmp_path / "marker"
    proc = _procs.start_until_failpoint(_cli(x, out, loss, solver), "iteration:8", marker)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    latest = Checkpoints(Location.parse(out / "checkpoints")).latest()
    assert latest.iteration == 6  # killed in iteration 8: the rerun resumes from 6
    again = subprocess.run(_cli(x, out, loss, solver), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    a, b = zarr.open_group(str(ref), mode="r"), zarr.open_group(str(out), mode="r")
    assert a.attrs["dmf"]["n_iter"] == b.attrs["dmf"]["n_iter"] == 12
    for name in ("W", "H"):
        assert np.asarray(a[name][...]).tobytes() == np.asarray(b[name][...]).tobytes()
    loaded = dmf.load(out)
    assert isinstance(loaded, dmf.NMFResult) and loaded.attrs["solver"] == (
        "mu-l1" if loss == "l1" else solver)


@pytest.mark.parametrize(
    ("X", "kwargs", "message"),
    [
        (-planted(), {}, "negative values (first at row 0, column 0)"),
        (np.where(np.eye(200, 40) > 0, 0.0, planted()), {"loss": "is"}, "add a small offset"),
        (np.full((5, 4), np.nan), {}, "NaN"),
        (planted(), {"k": 0}, "k must be between 1"),
        (planted(), {"k": 41}, "k must be between 1"),
        (planted(), {"loss": "hinge"}, "unknown NMF loss"),
        (planted(), {"init": "custom"}, "needs both W and H"),
        (planted(), {"W": np.ones((3, 5)), "H": np.ones((5, 40))}, "W must have shape"),
        (planted(), {"alpha_W": -1.0}, "alpha_W must be a number >= 0"),
        (planted(), {"solver": "hals", "loss": "kl"}, "Frobenius loss only"),
        (planted(), {"solver": "hals", "loss": "l1"}, "reweighted multiplicative"),
    ],
)
def test_bad_input_is_an_input_error(X, kwargs, message):
    kwargs = {"k": 5, **kwargs}
    k = kwargs.pop("k")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dmf.nmf(X, k, max_iter=2, **kwargs)


def test_cli_hals_sweeps(tmp_path):
    x = tmp_path / "X.zarr"
    dmf.save_matrix(planted(), x)
    base = [sys.executable, "-m", "dmf", "--workers", "0", "-q", "nmf", str(x)]
    opts = ["-k", "5", "--init", "random", "--max-iter", "15", "--tol", "0", "--seed", "3"]
    done = subprocess.run([*base, str(tmp_path / "one.zarr"), *opts, "--hals-sweeps", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    one = dmf.load(tmp_path / "one.zarr")
    ref = dmf.nmf(x, 5, init="random", max_iter=15, tol=0, seed=3, hals_sweeps=1)
    assert one.attrs["parameters"]["hals_sweeps"] == 1
    np.testing.assert_allclose(one.H, ref.H, rtol=1e-12)
    bad = subprocess.run([*base, str(tmp_path / "bad.zarr"), *opts, "--hals-sweeps", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "expected 'auto' or an integer >= 1" in bad.stderr
    assert not (tmp_path / "bad.zarr").exists()


def test_cli_bad_input_exits_2(tmp_path):
    x = tmp_path / "neg.zarr"
    dmf.save_matrix(-planted(), x)
    done = subprocess.run([sys.executable, "-m", "dmf", "--workers", "0", "nmf", str(x),
                           str(tmp_path / "out.zarr"), "-k", "3"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert str(x) in done.stderr and "negative values" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
