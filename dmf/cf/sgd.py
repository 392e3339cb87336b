"""``dmf.cf.sgd``: stochastic gradient descent for latent factors (Funk SVD).

The course's rules, for each observed rating with e = r - prediction:

    b_u += lr (e - reg b_u)            b_i += lr (e - reg b_i)
    p_u += lr (e q_i - reg p_u)        q_i += lr (e p_u - reg q_i)

(the variant W_i <- (1 - alpha lambda / n_i) W_i - alpha (W_i H_j - X_ij) H_j
spreads a row's penalty over its n_i ratings instead; the rule above applies
the penalty once per rating, which is the same objective as ALS-WR's
count-weighted one, so the two solvers minimize the same function and their
losses compare). The objective is

    sum (r - mu - b_u - b_i - p_u . q_i)^2
      + reg (sum_u n_u (|p_u|^2 + b_u^2) + sum_i n_i (|q_i|^2 + b_i^2)).

**Out of core, deterministic.** An epoch is one pass over ``by_user``: its
row blocks in an order drawn from the job's seeded generator, as a chain of
tasks. Each task gets its block, its users' rows [p_u, b_u] and the whole
item side [q_i, b_i] (n x (k+1), small), shuffles the block's ratings with
a stream keyed by (epoch seed, block), and returns its updated users, the
updated item side (handed to the next task) and its sum of squared errors.
Memory: one block plus the item side. The chain is sequential by nature
(every rating may move every item): one core per job.

**Vectorized.** Pure Python per rating runs at about 0.3 M ratings/s; the
ratings are taken in mini-batches of ``batch_size`` and each batch's rules
are applied at once with the factors as they were at the batch's start. A
user or item met several times in a batch gets the mean of its updates (the
sum would multiply the step by its count and diverge on popular items);
with distinct users and items in a batch this is exactly the sequential
rule. The loss of an epoch is the squared errors as the batches met them
(before their updates, as most SGD implementations report it) plus the
penalty of the factors at the epoch's end; the returned factors' exact
objective and training RMSE take one pass at the end.
"""

from __future__ import annotations

import os
from typing import Any

import dask
import dask.array as da
import numpy as np

from dmf.cf.checks import checked_ratings, integer, number
from dmf.cf.explicit import features, finish
from dmf.cf.fitting import fit_model
from dmf.cf.model import LatentFactors
from dmf.cf.normal import row_of_each, rowwise_dot
from dmf.cf.params import LatentFactorsMixin
from dmf.cf.passes import SUB_RATINGS, as_csr, half_step, one_key, packed, random_rows, row_groups
from dmf.engine.driver import Context, Solver, State, Stats
from dmf.linalg.products import part_of

#: Standard deviation of the random start of p and q (biases start at 0).
INIT_SCALE = 0.1


class _Groups:
    """For every mini-batch of a shuffled sequence of keys (users or
    items), where its rows are once sorted by key, where each key's run
    starts and how long it is: computed for the whole block at once (two
    sorts), so the per-batch work is a gather and one ``np.add.reduceat``."""

    def __init__(self, keys: np.ndarray, size: int, batch_size: int):
        position = np.arange(len(keys))
        batch = position // batch_size
        self.order = np.argsort(batch * size + keys, kind="stable")  # batch-major
        sorted_keys = keys[self.order]
        sorted_batch = batch[self.order]
        starts = np.flatnonzero(np.r_[True, (sorted_keys[1:] != sorted_keys[:-1])
                                      | (sorted_batch[1:] != sorted_batch[:-1])])
        self.keys = sorted_keys[starts]
        self.counts = np.diff(np.r_[starts, len(keys)]).astype(np.float64)[:, None]
        self.starts = starts
        bounds = np.arange(0, len(keys) + batch_size, batch_size)
        self.first = np.searchsorted(starts, np.minimum(bounds, len(keys)))
        self.batch_size = batch_size

    def mean_step(self, b: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batch b's distinct keys and the mean of ``values`` (the batch's
        rows, in shuffled order) over each key's rows."""
        s0 = b * self.batch_size
        s1 = s0 + len(values)
        g0, g1 = self.first[b], self.first[b + 1]
        sums = np.add.reduceat(values[self.order[s0:s1] - s0], self.starts[g0:g1] - s0, axis=0)
        return self.keys[g0:g1], sums / self.counts[g0:g1]


def sgd_block(block, Ub, V, mu: float, lr: float, reg: float, seed: int, index: int,
              batch_size: int):
    """One block's share of an epoch: its ratings in a shuffled order, in
    mini-batches. Returns (new U_b, new V, [sum of e^2 before each update,
    sum n_u |[p_u, b_u]|^2 of the new rows])."""
    block = as_csr(block)
    U = np.array(Ub, dtype=np.float64)
    V = np.array(V, dtype=np.float64)
    k = U.shape[1] - 1
    order = np.random.default_rng([seed, index]).permutation(block.nnz)
    users = row_of_each(block.indptr)[order]
    items = block.indices[order].astype(np.int64)
    values = block.data[order]
    sq_err = 0.0
    # the batches' bookkeeping a segment at a time: memory bounded by a
    # segment whatever the block (segments hold whole batches, so the
    # updates are the same as with one segment)
    segment = batch_size * max(1, SUB_RATINGS // batch_size)
    for s0 in range(0, block.nnz, segment):
        seg_users, seg_items = users[s0:s0 + segment], items[s0:s0 + segment]
        seg_values = values[s0:s0 + segment]
        by_user, by_item = (_Groups(seg_users, block.shape[0], batch_size),
                            _Groups(seg_items, V.shape[0], batch_size))
        for b, b0 in enumerate(range(0, len(seg_values), batch_size)):
            u, i = seg_users[b0:b0 + batch_size], seg_items[b0:b0 + batch_size]
            pu, qi = U[u], V[i]
            e = seg_values[b0:b0 + batch_size] - mu - pu[:, k] - qi[:, k] - rowwise_dot(
                pu[:, :k], qi[:, :k])
            sq_err += float(e @ e)
            # gradient steps for [p_u, b_u] and [q_i, b_i]: e [q_i, 1] - reg [p_u, b_u]
            du = np.empty_like(pu)
            du[:, :k] = e[:, None] * qi[:, :k]
            du[:, k] = e
            du -= reg * pu
            di = np.empty_like(qi)
            di[:, :k] = e[:, None] * pu[:, :k]
            di[:, k] = e
            di -= reg * qi
            ukeys, ustep = by_user.mean_step(b, du)
            ikeys, istep = by_item.mean_step(b, di)
            U[ukeys] += lr * ustep
            V[ikeys] += lr * istep
    counts = np.diff(block.indptr).astype(np.float64)
    out = np.empty(1, dtype=object)
    out[0] = (U, V, np.array([sq_err, float(counts @ np.einsum("ij,ij->i", U, U))]))
    return out


def _epoch(by_user: da.Array, U: da.Array, V: np.ndarray, mu, lr, reg, seed, order,
           batch_size):
    """The chain of one epoch: block tasks in ``order``, each handing the
    item side to the next. Returns (U, V, [sum of e^2, user penalty]), lazy."""
    U = U.rechunk((by_user.chunks[0], (U.shape[1],)))
    item_side = one_key(V)
    new_rows: dict[int, da.Array] = {}
    errors = []
    for b in order:
        b = int(b)
        task = da.map_blocks(sgd_block, by_user.blocks[b], U.blocks[b], item_side, mu, lr,
                             reg, seed, b, batch_size, dtype=object, drop_axis=1,
                             chunks=((1,),), meta=np.empty((0,), dtype=object))
        new_rows[b] = task.map_blocks(part_of, 0, False, new_axis=1,
                                      chunks=(by_user.chunks[0][b:b + 1], (U.shape[1],)),
                                      dtype=np.float64, meta=np.empty((0, 0)))
        item_side = task.map_blocks(part_of, 1, False, new_axis=1,
                                    chunks=((V.shape[0],), (V.shape[1],)),
                                    dtype=np.float64, meta=np.empty((0, 0)))
        errors.append(task.map_blocks(part_of, 2, True, new_axis=1, chunks=((1,), (2,)),
                                      dtype=np.float64, meta=np.empty((0, 0))))
    U_new = da.concatenate([new_rows[b] for b in range(by_user.numblocks[0])], axis=0)
    # summed in block order, whatever the epoch's order
    sums = da.concatenate([errors[int(np.flatnonzero(order == b)[0])]
                           for b in range(len(order))]).sum(axis=0)
    return U_new, item_side, sums


def _penalty_rows(block, own_b, other, mu, k, biases, errors):
    """sum n_u |x_u|^2 and the squared errors of a block's rows (no update:
    the exact objective of the factors as they are), a row group at a time
    so the gathered rows stay small."""
    block = as_csr(block)
    F, offsets = features(np.asarray(other, dtype=np.float64), k, biases)
    x = np.asarray(own_b, dtype=np.float64)
    counts = np.diff(block.indptr).astype(np.float64)
    sq_err = 0.0
    if errors:
        for r0, r1 in row_groups(block.indptr):
            sub = block[r0:r1]
            targets = sub.data - mu - (offsets[sub.indices] if biases else 0.0)
            e = targets - rowwise_dot(F[sub.indices], x[r0:r1][row_of_each(sub.indptr)])
            sq_err += float(e @ e)
    return packed(x, [float(counts @ np.einsum("ij,ij->i", x, x)), sq_err, float(block.nnz)])


def sgd_solver(ratings, k: int, *, lr: float, reg: float, mu: float, batch_size: int,
               params: dict) -> Solver:
    """SGD epochs on the engine (state: U = [P | b_u], dask; V = [Q | b_i], numpy)."""
    by_user, by_item = ratings.by_user, ratings.by_item
    width = k + 1

    def init(_X, ctx: Context) -> State:
        seed = int(ctx.rng.integers(2**63))
        U = random_rows(by_user.chunks[0], width, seed, INIT_SCALE).map_blocks(
            _zero_last, dtype=np.float64)
        V = random_rows(by_item.chunks[0], width, seed + 1, INIT_SCALE).map_blocks(
            _zero_last, dtype=np.float64)
        return {"U": U, "V": np.asarray(V.compute()),
                "item_counts": _item_counts(by_user, V.shape[0])}

    def step(_X, state: State, ctx: Context) -> tuple[State, Stats]:
        seed = int(ctx.rng.integers(2**63))
        order = ctx.rng.permutation(by_user.numblocks[0])
        U, V, sums = _epoch(by_user, state["U"], state["V"], mu, lr, reg, seed, order,
                            batch_size)
        U, V, sums = dask.persist(U, V, sums)  # one persist: one read of the ratings
        V, (sq_err, user_penalty) = dask.compute(V, sums)
        V = np.asarray(V)
        n_i = state["item_counts"]
        loss = float(sq_err) + reg * (float(user_penalty)
                                      + float(n_i @ np.einsum("ij,ij->i", V, V)))
        return {**state, "U": U, "V": V}, Stats(loss=loss)

    def finalize(_X, state: State):
        U, V = state["U"], state["V"]
        _, (penalty, sq_err, count) = half_step(_penalty_rows, by_item, one_key(V), U, mu, k,
                                                True, True, size=3)
        U = U.rechunk((by_user.chunks[0], (width,)))
        user_penalty = float((_counts(by_user) * (U * U).sum(axis=1)).sum().compute())
        rmse = float(np.sqrt(sq_err / count))
        return finish(ratings, U, V, k, True, mu,
                      {"algorithm": "cf-sgd", "train_rmse": rmse,
                       "final_objective": sq_err + reg * (penalty + user_penalty)})

    return Solver(name="cf-sgd", params=params, init=init, step=step, finalize=finalize)


def _counts(view: da.Array) -> da.Array:
    return view.map_blocks(lambda b: np.diff(b.indptr).astype(np.float64), drop_axis=1,
                           dtype=np.float64, meta=np.empty((0,)))


def _item_counts(by_user: da.Array, n: int) -> np.ndarray:
    """n_i from the column indices of the by-user view (one pass)."""
    parts = by_user.map_blocks(lambda b: np.bincount(b.indices, minlength=n)[None]
                               .astype(np.float64), chunks=((1,) * by_user.numblocks[0], (n,)),
                               dtype=np.float64, meta=np.empty((0, 0)))
    return np.asarray(parts.sum(axis=0).compute())


def _zero_last(block):
    block = block.copy()
    block[:, -1] = 0.0
    return block


def sgd(
    R,
    k: int = 10,
    *,
    lr: float = 0.01,
    reg: float = 0.02,
    n_epochs: int = 20,
    tol: float = 0.0,
    seed: int | None = None,
    batch_size: int = 256,
    out: str | os.PathLike | None = None,
    storage_options: dict[str, Any] | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = None,
    resume: bool = True,
    progress: bool | None = None,
    callback=None,
) -> LatentFactors:
    """Latent factors with biases by stochastic gradient descent.

    Parameters
    ----------
    R : ratings store URL, scipy.sparse matrix or Ratings
    k : int
        Number of latent factors.
    lr, reg : float
        Learning rate and regularization of the rules above.
    n_epochs : int
        Passes over the ratings.
    tol : float
        Stop early when the epoch loss changes by less than this (relative);
        0 (default): run ``n_epochs``.
    seed : int, optional
        Seeds the start, the block order and every shuffle: same seed,
        ratings and chunks, bitwise the same factors (also after a resume).
    batch_size : int
        Ratings updated at once (see the module's notes); 1 is exact
        sequential SGD (slow).
    out, storage_options, checkpoint_every, checkpoint_seconds, resume, progress, callback :
        As for :func:`dmf.cf.als.als`.

    Returns
    -------
    LatentFactors

    Examples
    --------
    >>> import numpy as np, scipy.sparse
    >>> rng = np.random.default_rng(0)
    >>> full = rng.random((80, 2)) @ rng.random((2, 50)) * 4 + 1
    >>> R = scipy.sparse.random(80, 50, density=0.5, random_state=0, format="csr")
    >>> R.data = full[R.nonzero()]
    >>> model = sgd(R, 2, lr=0.02, reg=0.001, n_epochs=40, seed=0, batch_size=16)
    >>> bool(model.attrs["train_rmse"] < 0.3)
    True
    """
    lr = number(lr, "lr", strict=True)
    reg = number(reg, "reg")
    n_epochs = integer(n_epochs, "n_epochs")
    tol = number(tol, "tol")
    batch_size = integer(batch_size, "batch_size")
    ratings, k, facts = checked_ratings(R, k, storage_options=storage_options)
    params = {"k": k, "lr": lr, "reg": reg, "n_epochs": n_epochs, "tol": tol,
              "batch_size": batch_size}
    solver = sgd_solver(ratings, k, lr=lr, reg=reg, mu=facts["mean"], batch_size=batch_size,
                        params=params)
    return fit_model(solver, ratings, seed=seed, max_iter=n_epochs, tol=tol, out=out,
                     storage_options=storage_options, checkpoint_every=checkpoint_every,
                     checkpoint_seconds=checkpoint_seconds, resume=resume, progress=progress,
                     callback=callback)


class SGD(LatentFactorsMixin):
    """Stochastic gradient descent, scikit-learn style (see :func:`sgd` for
    the parameters other than ``input``).

    Parameters
    ----------
    input : {"auto", "pairs", "matrix"}
        As for :class:`ALS`: "auto" (or "pairs"), a regressor of ratings
        (``fit(R)`` or ``fit(X, y)`` of (user, item) pairs); "matrix", a
        transformer of a ratings matrix X (users x items). ``transform``
        folds each row in against the fitted item side by the exact
        regularized least squares of SGD's objective (which is ALS-WR's,
        with ``reg``): [p_u, b_u], k + 1 columns; ``inverse_transform``
        gives the predicted ratings of every item; ``components_`` is Q^T.

    Examples
    --------
    >>> import numpy as np, scipy.sparse
    >>> R = scipy.sparse.random(40, 30, density=0.3, random_state=0, format="csr") * 5
    >>> est = SGD(k=3, n_epochs=3, seed=0).fit(R)
    >>> est.P_.shape, est.Q_.shape, len(est.loss_history_)
    ((40, 3), (30, 3), 3)
    >>> X = R.toarray()[:, :8]                            # dense: all observed
    >>> est = SGD(k=2, n_epochs=3, seed=0, input="matrix").fit(X)
    >>> est.components_.shape, est.transform(X).shape
    ((2, 8), (40, 3))
    >>> est.inverse_transform(est.transform(X[:2])).shape  # predicted ratings
    (2, 8)
    """

    def __init__(self, k: int = 10, *, lr: float = 0.01, reg: float = 0.02,
                 n_epochs: int = 20, tol: float = 0.0, seed: int | None = None,
                 batch_size: int = 256, out=None, checkpoint_every: int | None = None,
                 progress: bool | None = None, input: str = "auto"):
        self.k = k
        self.lr = lr
        self.reg = reg
        self.n_epochs = n_epochs
        self.tol = tol
        self.seed = seed
        self.batch_size = batch_size
        self.out = out
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.input = input

    def _fit_ratings(self, ratings) -> SGD:
        return self._set_model(sgd(ratings, **self._solver_params()))
