"""Compiled row-wise kernels of the latent-factor solvers (numba).

Each function takes one row block of ratings as its CSR arrays (``indptr``
int64, ``indices`` int32, ``data`` float64) and is called once per block
from the Dask task, so Python never loops over rows or ratings:

- :func:`sgd_block`: an SGD epoch's share of one block (shuffled ratings,
  sequential updates or mean-of-batch updates);
- :func:`explicit_rows`: ALS-WR's normal equations per row, biases solved
  jointly through a constant feature, by Cholesky;
- :func:`implicit_rows`: Hu-Koren-Volinsky implicit ALS by conjugate
  gradient on each row's confidence-weighted system, without forming it
  (Takacs et al. 2011, as the ``implicit`` package does).

Memory per call is the block, its own factor rows and O(K^2) scratch: the
K x K systems are formed and solved one row at a time, never stacked.

Determinism: plain loops in a fixed order, no BLAS (whose results depend
on its thread count: measured on explicit ALS's K x K products), dot
products in four running sums written out (a fixed order; fastmath's
reassociation let the compiler choose the order, and in loops that also
write it chose by the scratch arrays' addresses: the same call gave
different last bits), except SGD's, which only read and may be summed in
the compiler's vector lanes (see :func:`_dot_rr_vector`); where
many dot products share a vector (implicit ALS's y_i . p over a row's
ratings) they run as one loop across the products, which the compiler
vectorizes without reordering any sum; fastmath limited to contraction
(FMA, chosen at compile time), and a shuffle drawn from splitmix64 keyed by
(seed, block): the same inputs give the same bits on any scheduler, at any
alignment. Machines of different instruction sets may differ in the last
bits (FMA or not), as with BLAS. ``nogil``: blocks of a pass run in parallel
on a worker's threads. ``cache``: compiled once per machine into
``__pycache__`` (or ``NUMBA_CACHE_DIR``): the first calls on a machine
compile, later processes load them (benchmarks/README.md has the times).
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = {"cache": True, "nogil": True, "fastmath": {"contract"}, "error_model": "numpy"}

#: For a dot product that only reads: the vectorizer may reassociate its sum.
_JIT_REASSOC = {**_JIT, "fastmath": {"contract", "reassoc"}}

#: A row's CG stops when its squared residual falls to this (as implicit).
RESIDUAL_FLOOR = 1e-20

#: Most ratings of a row gathered at once by :func:`implicit_rows` (a row's
#: factor rows transposed: K x (the block's longest row, at most SEGMENT)
#: float64 of scratch); longer rows are handled in segments, gathered again
#: at each of their CG products.
SEGMENT = 4096


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@numba.njit(**_JIT)
def _splitmix64(state):
    """(next state, output) of splitmix64 (Steele et al. 2014)."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return state, z ^ (z >> np.uint64(31))


@numba.njit(**_JIT)
def _dot_rv(A, i, v, n):
    """A[i, :n] . v[:n] in four running sums (a fixed order, which the
    compiler may still pack into one vector operation)."""
    s0 = s1 = s2 = s3 = 0.0
    a = 0
    while a + 4 <= n:
        s0 += A[i, a] * v[a]
        s1 += A[i, a + 1] * v[a + 1]
        s2 += A[i, a + 2] * v[a + 2]
        s3 += A[i, a + 3] * v[a + 3]
        a += 4
    while a < n:
        s0 += A[i, a] * v[a]
        a += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(**_JIT)
def _dot_rr(A, i, B, j, n):
    """A[i, :n] . B[j, :n], as :func:`_dot_rv`."""
    s0 = s1 = s2 = s3 = 0.0
    a = 0
    while a + 4 <= n:
        s0 += A[i, a] * B[j, a]
        s1 += A[i, a + 1] * B[j, a + 1]
        s2 += A[i, a + 2] * B[j, a + 2]
        s3 += A[i, a + 3] * B[j, a + 3]
        a += 4
    while a < n:
        s0 += A[i, a] * B[j, a]
        a += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(**_JIT_REASSOC)
def _dot_rr_vector(A, i, B, j, n):
    """A[i, :n] . B[j, :n] as the compiler's vector loop sums it: the order is
    fixed by n and the instruction set alone, as the loop writes nothing
    (no runtime overlap checks choosing between two loops) and x86 loops
    are not peeled for alignment; tests check that rows at any offset give
    the same bits. SGD's dot products depend on each other (every rating
    moves the next one's rows), so they cannot run across ratings as
    implicit ALS's do: this sums one in vector lanes instead."""
    s = 0.0
    for a in range(n):
        s += A[i, a] * B[j, a]
    return s


@numba.njit(**_JIT)
def _dot_vv(u, v, n):
    """u[:n] . v[:n], as :func:`_dot_rv`."""
    s0 = s1 = s2 = s3 = 0.0
    a = 0
    while a + 4 <= n:
        s0 += u[a] * v[a]
        s1 += u[a + 1] * v[a + 1]
        s2 += u[a + 2] * v[a + 2]
        s3 += u[a + 3] * v[a + 3]
        a += 4
    while a < n:
        s0 += u[a] * v[a]
        a += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(**_JIT)
def shuffled(n, seed, index):
    """A permutation of range(n) by Fisher-Yates, drawn from splitmix64
    keyed by (seed, index): the same on every machine."""
    state, _ = _splitmix64(np.uint64(seed))
    state, _ = _splitmix64(state ^ np.uint64(index))
    order = np.arange(n)
    for j in range(n - 1, 0, -1):
        state, z = _splitmix64(state)
        t = np.int64(z % np.uint64(j + 1))
        order[j], order[t] = order[t], order[j]
    return order


@numba.njit(**_JIT)
def sgd_block(indptr, indices, data, U, V, mu, lr, reg, seed, index, batch):
    """One block's share of an SGD epoch, updating U (the block's rows
    [p_u, b_u]) and V (every item's [q_i, b_i]) in place.

    ``batch == 1``: the rows in a shuffled order, each row's ratings in
    turn, each rating's rule applied at once (sequential SGD as Surprise's,
    which visits the ratings row by row; shuffling the ratings themselves
    costs several times more in cache misses). Larger batches: the ratings shuffled,
    each batch's rules applied with the factors as they were at its start,
    a row met several times in a batch getting the mean of its steps.
    Returns the sum of squared errors as the ratings were met.
    """
    rows = U.shape[0]
    K = U.shape[1]
    k = K - 1
    sq_err = 0.0
    if batch <= 1:
        order = shuffled(rows, seed, index)
        for t in range(rows):
            u = order[t]
            for j in range(indptr[u], indptr[u + 1]):
                i = indices[j]
                e = data[j] - mu - U[u, k] - V[i, k] - _dot_rr_vector(U, u, V, i, k)
                sq_err += e * e
                U[u, k] += lr * (e - reg * U[u, k])
                V[i, k] += lr * (e - reg * V[i, k])
                for f in range(k):
                    pf = U[u, f]
                    qf = V[i, f]
                    U[u, f] = pf + lr * (e * qf - reg * pf)
                    V[i, f] = qf + lr * (e * pf - reg * qf)
        return sq_err
    # batches: the ratings themselves shuffled (a batch of one row's
    # ratings would average that row's steps to nothing)
    nnz = indptr[rows]
    row_of = np.empty(nnz, dtype=np.int32)
    for u in range(rows):
        for j in range(indptr[u], indptr[u + 1]):
            row_of[j] = u
    rating = shuffled(nnz, seed, index)
    dU = np.zeros((rows, K))
    dV = np.zeros((V.shape[0], K))
    nU = np.zeros(rows)
    nV = np.zeros(V.shape[0])
    met_u = np.empty(batch, dtype=np.int64)
    met_i = np.empty(batch, dtype=np.int64)
    for b0 in range(0, nnz, batch):
        b1 = min(nnz, b0 + batch)
        mu_count = 0
        mi_count = 0
        for t in range(b0, b1):
            j = rating[t]
            u = row_of[j]
            i = indices[j]
            e = data[j] - mu - U[u, k] - V[i, k] - _dot_rr_vector(U, u, V, i, k)
            sq_err += e * e
            if nU[u] == 0:
                met_u[mu_count] = u
                mu_count += 1
            if nV[i] == 0:
                met_i[mi_count] = i
                mi_count += 1
            nU[u] += 1.0
            nV[i] += 1.0
            dU[u, k] += e - reg * U[u, k]
            dV[i, k] += e - reg * V[i, k]
            for f in range(k):
                dU[u, f] += e * V[i, f] - reg * U[u, f]
                dV[i, f] += e * U[u, f] - reg * V[i, f]
        _apply_mean_steps(U, dU, nU, met_u, mu_count, lr)
        _apply_mean_steps(V, dV, nV, met_i, mi_count, lr)
    return sq_err


@numba.njit(**_JIT)
def _apply_mean_steps(F, dF, nF, met, count, lr):
    """End of an SGD batch: each of the ``count`` rows ``met`` of factors F
    takes the mean of its summed steps dF (over nF ratings); the sums are
    cleared for the next batch."""
    K = F.shape[1]
    for s in range(count):
        r = met[s]
        for f in range(K):
            F[r, f] += lr * (dF[r, f] / nF[r])
            dF[r, f] = 0.0
        nF[r] = 0.0


@numba.njit(**_JIT)
def _cholesky_solve(A, b, K):
    """Solve A x = b in place (x in b) for symmetric positive definite A,
    of which only the lower triangle is read (and overwritten)."""
    for j in range(K):
        d = np.sqrt(A[j, j] - _dot_rr(A, j, A, j, j))
        A[j, j] = d
        for i in range(j + 1, K):
            A[i, j] = (A[i, j] - _dot_rr(A, i, A, j, j)) / d
    for i in range(K):  # L y = b
        b[i] = (b[i] - _dot_rv(A, i, b, i)) / A[i, i]
    for i in range(K - 1, -1, -1):  # L^T x = y
        s = b[i]
        for p in range(i + 1, K):
            s -= A[p, i] * b[p]
        b[i] = s / A[i, i]


@numba.njit(**_JIT)
def _feature(other, i, k, biases, f):
    """f = [q_i, 1] (or q_i) into ``f``; returns the target offset b_i."""
    for a in range(k):
        f[a] = other[i, a]
    if biases:
        f[k] = 1.0
        return other[i, k]
    return 0.0


@numba.njit(**_JIT)
def explicit_rows(indptr, indices, data, other, out, mu, k, biases, reg, errors):
    """ALS-WR's solve of every row of a block into ``out``.

    Row u with items I_u: x_u = [p_u, b_u] (or p_u without biases) minimizes
    sum_i (t_ui - f_i . x_u)^2 + reg n_u |x_u|^2 with features
    f_i = [q_i, 1] and targets t_ui = r_ui - mu - b_i, ``other`` holding
    [q_i, b_i] per item. A row with n_u >= K unknowns solves the K x K
    normal equations (G^T G + reg n_u I) x = G^T t; a shorter one the
    n_u x n_u dual (G G^T + reg n_u I) z = t, x = G^T z (the same
    minimizer, at n_u^2 K instead of K^3 / 6 + n_u K^2 / 2: most rows of
    sparse data). Rows without ratings get 0. Returns (sum n_u |x_u|^2,
    squared error of the new rows if ``errors``).
    """
    rows = out.shape[0]
    K = out.shape[1]
    A = np.empty((K, K))
    G = np.empty((K, K))
    b = np.empty(K)
    f = np.empty(K)
    x = np.empty(K)
    penalty = 0.0
    sq_err = 0.0
    for u in range(rows):
        start, stop = indptr[u], indptr[u + 1]
        n_u = stop - start
        if n_u == 0:
            out[u, :] = 0.0
            continue
        ridge = reg * n_u
        if n_u < K:  # dual: G (n_u x K) gathered, z in b
            for jj in range(n_u):
                j = start + jj
                b[jj] = data[j] - mu - _feature(other, indices[j], k, biases, G[jj])
            for a in range(n_u):
                for c in range(a + 1):
                    A[a, c] = _dot_rr(G, a, G, c, K)
                A[a, a] += ridge
            _cholesky_solve(A, b, n_u)
            x[:] = 0.0
            for jj in range(n_u):
                z = b[jj]
                for a in range(K):
                    x[a] += z * G[jj, a]
        else:
            A[:, :] = 0.0
            x[:] = 0.0
            for j in range(start, stop):
                t = data[j] - mu - _feature(other, indices[j], k, biases, f)
                for a in range(K):
                    fa = f[a]
                    x[a] += t * fa
                    for c in range(a + 1):
                        A[a, c] += fa * f[c]
            for a in range(K):
                A[a, a] += ridge
            _cholesky_solve(A, x, K)
        norm = 0.0
        for a in range(K):
            out[u, a] = x[a]
            norm += x[a] * x[a]
        penalty += n_u * norm
        if errors:
            for j in range(start, stop):
                i = indices[j]
                e = data[j] - mu - _dot_rv(other, i, x, k)
                if biases:
                    e -= other[i, k] + x[k]
                sq_err += e * e
    return penalty, sq_err


@numba.njit(**_JIT)
def objective_rows(indptr, indices, data, other, X, mu, k, biases):
    """ALS-WR's objective terms of a block's rows ``X`` as they are, without
    solving: (sum n_u |x_u|^2, sum of squared errors), same notation as
    :func:`explicit_rows`."""
    penalty = 0.0
    sq_err = 0.0
    for u in range(X.shape[0]):
        start, stop = indptr[u], indptr[u + 1]
        norm = 0.0
        for a in range(X.shape[1]):
            norm += X[u, a] * X[u, a]
        penalty += (stop - start) * norm
        for j in range(start, stop):
            i = indices[j]
            e = data[j] - mu - _dot_rr(other, i, X, u, k)
            if biases:
                e -= other[i, k] + X[u, k]
            sq_err += e * e
    return penalty, sq_err


@numba.njit(**_JIT)
def _stride(n):
    """A row length of at least ``n`` float64 that is not a multiple of 1 KiB:
    rows whose stride is put the same column of every row into a few cache
    sets, which then thrash."""
    stride = n + 8
    if stride % 128 == 0:
        stride += 8
    return stride


@numba.njit(**_JIT)
def _gather_t(Y, indices, s0, s1, Gt):
    """Gt[:, j] = Y[indices[s0 + j], :] for the ratings s0..s1 (four rows
    at a time: four stores to each cache line of Gt)."""
    K = Y.shape[1]
    n = s1 - s0
    j = 0
    while j + 4 <= n:
        i0, i1 = indices[s0 + j], indices[s0 + j + 1]
        i2, i3 = indices[s0 + j + 2], indices[s0 + j + 3]
        for a in range(K):
            Gt[a, j] = Y[i0, a]
            Gt[a, j + 1] = Y[i1, a]
            Gt[a, j + 2] = Y[i2, a]
            Gt[a, j + 3] = Y[i3, a]
        j += 4
    while j < n:
        i = indices[s0 + j]
        for a in range(K):
            Gt[a, j] = Y[i, a]
        j += 1


@numba.njit(**_JIT)
def _dots_t(Gt, n, v, w):
    """w[j] = Gt[:, j] . v for j < n (Gt^T v), each summed in the order a = 0, 1, ...
    The loop runs across j, so it is vectorized without reordering any sum
    (a dot product's own reduction is not: numba leaves reductions scalar
    unless fastmath may reorder them, which would cost determinism)."""
    K = Gt.shape[0]
    for j in range(n):
        w[j] = 0.0
    a = 0
    while a + 4 <= K:
        v0, v1, v2, v3 = v[a], v[a + 1], v[a + 2], v[a + 3]
        for j in range(n):
            w[j] = (((w[j] + Gt[a, j] * v0) + Gt[a + 1, j] * v1) + Gt[a + 2, j] * v2
                    ) + Gt[a + 3, j] * v3
        a += 4
    while a < K:
        va = v[a]
        for j in range(n):
            w[j] += Gt[a, j] * va
        a += 1


@numba.njit(**_JIT)
def _segment_dots(Y, indices, s0, stop, seg, held, Gt, v, w):
    """w[j] = y_i . v for the ratings s0..s1 of a row (s1 returned: at most
    ``seg`` of them), gathering their rows first unless the whole row is
    ``held`` in Gt already."""
    s1 = min(stop, s0 + seg)
    if not held:
        _gather_t(Y, indices, s0, s1, Gt)
    _dots_t(Gt, s1 - s0, v, w)
    return s1


@numba.njit(**_JIT)
def _add_rows(Y, indices, s0, s1, coef, out):
    """out += sum_j coef[j] Y[indices[s0 + j]] (in the order j = 0, 1, ...)."""
    K = Y.shape[1]
    for j in range(s1 - s0):
        cj = coef[j]
        i = indices[s0 + j]
        for a in range(K):
            out[a] += cj * Y[i, a]


@numba.njit(**_JIT)
def implicit_rows(indptr, indices, data, Y, A0, X, alpha, steps, losses):
    """``steps`` of conjugate gradient on each row's implicit-ALS system,
    from the row's previous x in ``X`` (updated in place).

    Row u's system is (A0 + Y_u^T (C_u - I) Y_u) x = Y_u^T C_u p_u with
    A0 = Y^T Y + reg I, c = 1 + alpha r and p = [r > 0] at u's ratings; the
    product with it costs u's ratings only. u's rows of Y are gathered once,
    transposed, so that the products y_i . v of all its ratings run as one
    vectorized loop. Returns, if ``losses``, the nonzero terms of the
    objective, sum c (p - x.y)^2 - (x.y)^2, of the new rows.
    """
    rows = X.shape[0]
    K = X.shape[1]
    x = np.empty(K)
    r = np.empty(K)
    p = np.empty(K)
    Ap = np.empty(K)
    longest = 1
    for u in range(rows):
        longest = max(longest, indptr[u + 1] - indptr[u])
    seg = min(longest, SEGMENT)
    Gt = np.empty((K, _stride(seg)))
    w = np.empty(seg)
    coef = np.empty(seg)
    nz = 0.0
    for u in range(rows):
        start, stop = indptr[u], indptr[u + 1]
        held = stop - start <= seg  # gathered once for every use
        if held:
            _gather_t(Y, indices, start, stop, Gt)
        for a in range(K):
            x[a] = X[u, a]
        _dots_t(A0, K, x, r)  # A0 x, A0 symmetric: its columns are its rows
        for a in range(K):
            r[a] = -r[a]
        for s0 in range(start, stop, seg):  # r = b - A x
            s1 = _segment_dots(Y, indices, s0, stop, seg, held, Gt, x, w)
            for j in range(s1 - s0):
                d = data[s0 + j]
                extra = alpha * d
                pref = 1.0 if d > 0 else 0.0
                coef[j] = (1.0 + extra) * pref - extra * w[j]
            _add_rows(Y, indices, s0, s1, coef, r)
        rs = _dot_vv(r, r, K)
        for a in range(K):
            p[a] = r[a]
        if rs > RESIDUAL_FLOOR:
            for _ in range(steps):
                _dots_t(A0, K, p, Ap)
                for s0 in range(start, stop, seg):
                    s1 = _segment_dots(Y, indices, s0, stop, seg, held, Gt, p, w)
                    for j in range(s1 - s0):
                        coef[j] = alpha * data[s0 + j] * w[j]
                    _add_rows(Y, indices, s0, s1, coef, Ap)
                pAp = _dot_vv(p, Ap, K)
                if pAp <= 0:
                    break
                step = rs / pAp
                for a in range(K):
                    x[a] += step * p[a]
                    r[a] -= step * Ap[a]
                rs_new = _dot_vv(r, r, K)
                if rs_new <= RESIDUAL_FLOOR:
                    break
                ratio = rs_new / rs
                for a in range(K):
                    p[a] = r[a] + ratio * p[a]
                rs = rs_new
            for a in range(K):
                X[u, a] = x[a]
        if losses:
            for s0 in range(start, stop, seg):
                s1 = _segment_dots(Y, indices, s0, stop, seg, held, Gt, x, w)
                for j in range(s1 - s0):
                    d = data[s0 + j]
                    c = 1.0 + alpha * d
                    pref = 1.0 if d > 0 else 0.0
                    nz += c * (pref - w[j]) ** 2 - w[j] * w[j]
    return nz


def aligned(x, dtype=np.float64) -> np.ndarray:
    """``x`` as a C-contiguous, aligned array of ``dtype``, copied only when
    it is not one: an array that came inside a message may start at any byte
    (see dmf.blocks.run_block), and numba would compile another version for
    it (and its vector loops may round differently)."""
    return np.require(x, dtype=dtype, requirements=["C", "A"])


def csr_arrays(block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A canonical CSR block's (indptr int64, indices int32, data float64),
    the kernels' one signature (copies only what has another dtype or is
    unaligned)."""
    return aligned(block.indptr, np.int64), aligned(block.indices, np.int32), aligned(block.data)
