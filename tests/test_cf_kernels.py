"""The compiled row-wise kernels (dmf.cf.kernels) against plain numpy
references: ALS-WR's per-row solves (primal and dual forms, with and without
biases), implicit ALS's CG against the exact solve of each row's
confidence-weighted system, SGD's sequential rule and its shuffle."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from dmf.cf import kernels
from dmf.cf.kernels import csr_arrays


def ratings(m, n, density, seed):
    rng = np.random.default_rng(seed)
    R = scipy.sparse.random(m, n, density=density, random_state=seed, format="csr")
    R.data = rng.integers(1, 6, R.nnz).astype(np.float64)
    return R


@pytest.mark.parametrize("biases", [True, False])
def test_explicit_rows_are_the_ridge_solutions_of_every_row(biases):
    R = ratings(60, 40, 0.3, 1)
    R.data[R.indptr[3]:R.indptr[4]] = 0.0
    R.eliminate_zeros()  # an empty row
    counts = np.diff(R.indptr)
    k = 12
    K = k + biases
    assert (counts < K).any() and (counts >= K).any()  # both the dual and the primal form
    other = np.random.default_rng(2).standard_normal((40, K))
    out = np.full((60, K), np.nan)
    mu, reg = 3.0, 0.1
    penalty, sq_err = kernels.explicit_rows(*csr_arrays(R), other, out, mu, k, biases, reg, True)
    want_penalty = want_sq = 0.0
    for u in range(60):
        cols = R.indices[R.indptr[u]:R.indptr[u + 1]]
        if not len(cols):
            np.testing.assert_array_equal(out[u], 0.0)
            continue
        F = np.c_[other[cols, :k], np.ones(len(cols))] if biases else other[cols, :k]
        t = R.data[R.indptr[u]:R.indptr[u + 1]] - mu - (other[cols, k] if biases else 0.0)
        x = np.linalg.solve(F.T @ F + reg * len(cols) * np.eye(K), F.T @ t)
        np.testing.assert_allclose(out[u], x, rtol=1e-10, atol=1e-12)
        want_penalty += len(cols) * x @ x
        want_sq += np.sum((t - F @ x) ** 2)
    assert penalty == pytest.approx(want_penalty, rel=1e-10)
    assert sq_err == pytest.approx(want_sq, rel=1e-10)
    # the objective of the rows as they are (SGD's last pass): the same terms
    again = kernels.objective_rows(*csr_arrays(R), other, out, mu, k, biases)
    assert again == pytest.approx((want_penalty, want_sq), rel=1e-10)


@pytest.mark.parametrize("n, density", [(50, 0.2), (kernels.SEGMENT * 2 + 7, 0.6)])
def test_implicit_cg_converges_to_each_rows_confidence_weighted_solution(n, density):
    R = ratings(30, n, density, 3)  # the second: rows longer than a segment
    R.data[::7] = 0.0  # stored zeros: no preference, confidence 1
    if n > kernels.SEGMENT:
        assert np.diff(R.indptr).max() > kernels.SEGMENT
    k, alpha, reg = 5, 4.0, 0.3
    rng = np.random.default_rng(4)
    Y = rng.standard_normal((n, k))
    A0 = Y.T @ Y + reg * np.eye(k)
    X = np.zeros((30, k))
    kernels.implicit_rows(*csr_arrays(R), Y, A0, X, alpha, 3 * k, False)  # CG: exact in k steps
    for u in range(30):
        dense = R[u].toarray().ravel()
        c = 1.0 + alpha * dense
        p = (dense > 0).astype(float)
        x = np.linalg.solve(Y.T @ (c[:, None] * Y) + reg * np.eye(k), Y.T @ (c * p))
        np.testing.assert_allclose(X[u], x, rtol=1e-8, atol=1e-10)
    # the objective's nonzero terms, of the rows as they are
    X0 = X.copy()
    nz = kernels.implicit_rows(*csr_arrays(R), Y, A0, X, alpha, 0, True)
    np.testing.assert_array_equal(X, X0)  # 0 steps: unchanged
    xy = np.einsum("ij,ij->i", Y[R.indices], X[np.repeat(np.arange(30), np.diff(R.indptr))])
    c = 1.0 + alpha * R.data
    assert nz == pytest.approx(float(c @ ((R.data > 0) - xy) ** 2 - xy @ xy), rel=1e-10)


def sequential_sgd(R, U, V, mu, lr, reg, order):
    """The rule rating by rating, in plain Python."""
    k = U.shape[1] - 1
    sq = 0.0
    for u in order:
        for j in range(R.indptr[u], R.indptr[u + 1]):
            i = R.indices[j]
            e = R.data[j] - mu - U[u, k] - V[i, k] - U[u, :k] @ V[i, :k]
            sq += e * e
            du = np.r_[e * V[i, :k], e] - reg * U[u]
            dv = np.r_[e * U[u, :k], e] - reg * V[i]
            U[u] += lr * du
            V[i] += lr * dv
    return sq


def test_sgd_block_is_the_sequential_rule_over_shuffled_rows():
    R = ratings(20, 15, 0.4, 5)
    rng = np.random.default_rng(6)
    U, V = rng.standard_normal((20, 4)) * 0.1, rng.standard_normal((15, 4)) * 0.1
    U2, V2 = U.copy(), V.copy()
    order = kernels.shuffled(20, np.uint64(11), np.uint64(2))
    assert sorted(order) == list(range(20)) and list(order) != list(range(20))
    sq = kernels.sgd_block(*csr_arrays(R), U, V, 3.0, 0.05, 0.02, np.uint64(11),
                           np.uint64(2), 1)
    want = sequential_sgd(R, U2, V2, 3.0, 0.05, 0.02, order)
    np.testing.assert_allclose(U, U2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(V, V2, rtol=1e-12, atol=1e-14)
    assert sq == pytest.approx(want, rel=1e-12)


def test_sgd_batches_of_distinct_rows_are_the_sequential_rule():
    # one rating per row and per column: every batch's rows are distinct
    R = scipy.sparse.csr_matrix((np.arange(1.0, 9.0), (np.arange(8), np.arange(8)[::-1])),
                                shape=(8, 8))
    rng = np.random.default_rng(7)
    U, V = rng.standard_normal((8, 3)), rng.standard_normal((8, 3))
    U2, V2 = U.copy(), V.copy()
    kernels.sgd_block(*csr_arrays(R), U, V, 1.0, 0.1, 0.01, np.uint64(3), np.uint64(0), 1)
    kernels.sgd_block(*csr_arrays(R), U2, V2, 1.0, 0.1, 0.01, np.uint64(3), np.uint64(0), 4)
    np.testing.assert_allclose(U, U2, rtol=1e-12)
    np.testing.assert_allclose(V, V2, rtol=1e-12)


def test_shuffles_depend_on_seed_and_block_only():
    a = kernels.shuffled(1000, np.uint64(5), np.uint64(1))
    assert (a == kernels.shuffled(1000, np.uint64(5), np.uint64(1))).all()
    assert (a != kernels.shuffled(1000, np.uint64(5), np.uint64(2))).any()
    assert (a != kernels.shuffled(1000, np.uint64(6), np.uint64(1))).any()
    assert np.array_equal(np.sort(a), np.arange(1000))


def misaligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` starting 3 bytes into a buffer, as an array inside a
    message may arrive on a worker."""
    raw = np.zeros(a.nbytes + 8, np.uint8)
    out = np.frombuffer(raw[3:3 + a.nbytes].data, dtype=a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def test_the_tasks_give_the_same_bits_for_misaligned_arrays():
    from dmf.cf import explicit, implicit
    from dmf.cf.sgd import Rule, _objective_sums, sgd_block

    R = ratings(40, 30, 0.3, 8)
    odd = scipy.sparse.csr_matrix((misaligned(R.data), misaligned(R.indices),
                                   misaligned(R.indptr)), shape=R.shape)
    rng = np.random.default_rng(9)
    V, U = rng.standard_normal((30, 5)), rng.standard_normal((40, 5))
    gram = V.T @ V

    def rows_and_sums(result):  # a row pass's (new rows, named sums), as a list
        rows, sums = result
        return [rows, *sums.values()]

    runs = [
        lambda B, V, U: rows_and_sums(explicit._half_rows(B, U, V, True,
                                                          explicit.RowSolve(3.0, 4, True, 0.1))),
        lambda B, V, U: rows_and_sums(implicit._half_rows(B, U, V, gram, True,
                                                          implicit.RowSolve(2.0, 0.1, 3))),
        lambda B, V, U: list(sgd_block(B, U, V, 5, 1, Rule(3.0, 0.01, 0.02, 1)).values()),
        lambda B, V, U: list(_objective_sums(B, U, V, 3.0, 4, True).values()),
    ]
    for t, run in enumerate(runs):
        want, got = run(R, V, U), run(odd, misaligned(V), misaligned(U))
        for a, b in zip(want, got, strict=True):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), t


def at_offset(a: np.ndarray, words: int) -> np.ndarray:
    """A copy of ``a`` starting ``words`` float64 into a 64-byte aligned
    buffer: the same values at another place in a vector register's reach."""
    raw = np.zeros(a.size + 16, np.float64)
    start = (-raw.ctypes.data % 64) // 8 + words
    out = raw[start:start + a.size].reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("k", [3, 8, 37, 100])
def test_sgd_gives_the_same_bits_for_rows_at_any_offset(k):
    # SGD's dot products are summed in the compiler's vector lanes: the order
    # must not depend on where the rows sit
    R = ratings(50, 40, 0.3, 12)
    rng = np.random.default_rng(13)
    U0, V0 = rng.standard_normal((50, k + 1)) * 0.1, rng.standard_normal((40, k + 1)) * 0.1
    runs = []
    for words in range(8):
        U, V = at_offset(U0, words), at_offset(V0, (words * 3) % 8)
        sq = kernels.sgd_block(*csr_arrays(R), U, V, 3.0, 0.05, 0.02, np.uint64(4),
                               np.uint64(1), 1)
        runs.append((U.tobytes(), V.tobytes(), sq))
    assert all(run == runs[0] for run in runs)
