"""``dmf.cf.sgd``: stochastic gradient descent for latent factors (Funk SVD).

Funk's update rules, for each observed rating with e = r - prediction:

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

**Compiled.** A block's ratings go through one call of
:func:`dmf.cf.kernels.sgd_block` (numba), in an order shuffled by a stream
keyed by (epoch seed, block). ``batch_size=1`` (default) applies each
rating's rule at once: exact sequential SGD, as Surprise's SVD. A larger
batch applies its rules with the factors as they were at the batch's start,
a user or item met several times in a batch getting the mean of its steps
(the sum would multiply the step by its count and diverge on popular items).
The loss of an epoch is the squared errors as the ratings met them (before
their updates, as most SGD implementations report it) plus the penalty of
the factors at the epoch's end; the returned factors' exact objective and
training RMSE take one pass at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar, Unpack

import dask
import dask.array as da
import numpy as np

from dmf.blocks import Piece, Small, Tall, row_blocks, row_sums
from dmf.cf import kernels
from dmf.cf.checks import checked_ratings, integer, number
from dmf.cf.explicit import finish
from dmf.cf.fitting import fit_model
from dmf.cf.model import LatentFactors
from dmf.cf.params import LATENT_CONSTRAINTS, LatentFactorsMixin
from dmf.cf.passes import OBJECTIVE_PARTS, as_csr, bounded_rows, item_counts, random_rows
from dmf.engine.driver import Context, Solver, State, Stats
from dmf.engine.options import RunKeywords, RunOptions, run_options
from dmf.params import Interval

#: Standard deviation of the random start of p and q (biases start at 0).
INIT_SCALE = 0.1


@dataclass(frozen=True)
class Rule:
    """What a block's share of an epoch takes besides the arrays and its
    stream: Funk's rule's global mean, learning rate and penalty, and the
    ratings updated at once."""

    mu: float
    lr: float
    reg: float
    batch_size: int


def sgd_block(block, Ub, V, seed: int, index: int, rule: Rule):
    """One block's share of an epoch (compiled, one call: see
    :func:`dmf.cf.kernels.sgd_block`), by name: the new rows ``U``, the new
    item side ``V`` and ``errors`` [[sum of e^2 before each update,
    sum n_u |[p_u, b_u]|^2 of the new rows]]."""

    mu, lr, reg, batch_size = rule.mu, rule.lr, rule.reg, rule.batch_size
    block = as_csr(block)
    U = np.array(Ub, dtype=np.float64, order="C")
    V = np.array(V, dtype=np.float64, order="C")
    sq_err = kernels.sgd_block(*kernels.csr_arrays(block), U, V, float(mu), float(lr), float(reg),
                               np.uint64(seed), np.uint64(index), int(batch_size))
    counts = np.diff(block.indptr).astype(np.float64)
    return {"U": U, "V": V,
            "errors": np.array([[sq_err, float(counts @ np.einsum("ij,ij->i", U, U))]])}


def _epoch(by_user: da.Array, U: da.Array, V: np.ndarray, seed, order, rule: Rule):
    """The chain of one epoch: block tasks in ``order``, each handing the
    item side to the next. Returns (U, V, [sum of e^2, user penalty]), lazy.

    Not a :func:`dmf.blocks.row_pass`: the item side is not a sum of the
    blocks' parts but passed down the chain, each task updating what the
    previous one returned. Each task is :func:`dmf.blocks.row_blocks` of
    one block (the block, its rows of U, the item side as one key)."""
    U = U.rechunk((by_user.chunks[0], (U.shape[1],)))
    item_side = np.asarray(V, dtype=np.float64)
    each = {"U": Piece((None, U.shape[1])), "V": Piece(V.shape), "errors": Piece((1, 2))}
    new_rows: dict[int, da.Array] = {}
    errors = []
    for b in order:
        b = int(b)
        task = row_blocks(sgd_block, by_user.blocks[b], Tall(U.blocks[b]), Small(item_side),
                          seed, b, rule, each=each).each
        new_rows[b], item_side = task["U"], task["V"]
        errors.append(task["errors"])
    U_new = da.concatenate([new_rows[b] for b in range(by_user.numblocks[0])], axis=0)
    # summed in block order, whatever the epoch's order
    sums = da.concatenate([errors[int(np.flatnonzero(order == b)[0])]
                           for b in range(len(order))]).sum(axis=0)
    return U_new, item_side, sums


def _objective_sums(block, own_b, other, mu, k, biases) -> dict:
    """The exact objective's sums of a block's rows as they are
    (:data:`dmf.cf.passes.OBJECTIVE_PARTS`), compiled, one call."""

    block = as_csr(block)
    penalty, sq_err = kernels.objective_rows(*kernels.csr_arrays(block), kernels.aligned(other),
                                             kernels.aligned(own_b), float(mu), k, biases)
    return {"penalty": penalty, "sq_err": sq_err, "count": float(block.nnz)}


class SgdSolver(Solver):
    """SGD epochs on the engine (state: U = [P | b_u], dask; V = [Q | b_i],
    numpy): one epoch a step, a chain of block tasks over ``by_user``."""

    name = "cf-sgd"

    def __init__(self, ratings, k: int, *, lr: float, reg: float, mu: float, batch_size: int,
                 params: dict):
        self.ratings, self.k, self.reg, self.mu, self.params = ratings, k, reg, mu, params
        self.rule = Rule(mu, lr, reg, batch_size)
        self.by_user = bounded_rows(ratings.by_user, k + 1)
        self.by_item = bounded_rows(ratings.by_item, k + 1)
        self.width = k + 1

    def init(self, _X, ctx: Context) -> State:
        seed = int(ctx.rng.integers(2**63))
        U = random_rows(self.by_user.chunks[0], self.width, seed, INIT_SCALE, zero_last=True)
        V = random_rows(self.by_item.chunks[0], self.width, seed + 1, INIT_SCALE,
                        zero_last=True)
        return {"U": U, "V": np.asarray(V.compute()),
                "item_counts": item_counts(self.by_user)}

    def step(self, _X, state: State, ctx: Context) -> tuple[State, Stats]:
        seed = int(ctx.rng.integers(2**63))
        order = ctx.rng.permutation(self.by_user.numblocks[0])
        U, V, sums = _epoch(self.by_user, state["U"], state["V"], seed, order, self.rule)
        U, V, sums = dask.persist(U, V, sums)  # one persist: one read of the ratings
        V, (sq_err, user_penalty) = dask.compute(V, sums)
        V = np.asarray(V)
        n_i = state["item_counts"]
        loss = float(sq_err) + self.reg * (float(user_penalty)
                                           + float(n_i @ np.einsum("ij,ij->i", V, V)))
        return {**state, "U": U, "V": V}, Stats(loss=loss)

    def result(self, _X, state: State):
        by_user, k, mu = self.by_user, self.k, self.mu
        U, V = state["U"], state["V"]
        # by users: each task reads its own users' rows in order and the
        # small item side at random (by items, every rating fetched a random
        # user row: measured slower)
        user = row_sums(_objective_sums, by_user, Tall(U), Small(np.asarray(V, dtype=np.float64)),
                        mu, k, True, parts=OBJECTIVE_PARTS)
        sq_err, user_penalty = float(user["sq_err"]), float(user["penalty"])
        item_penalty = float(state["item_counts"] @ np.einsum("ij,ij->i", V, V))
        rmse = float(np.sqrt(sq_err / float(user["count"])))
        return finish(self.ratings, U.rechunk((by_user.chunks[0], (self.width,))), V, k,
                      biases=True, mu=mu,
                      meta={"algorithm": "cf-sgd", "train_rmse": rmse,
                            "final_objective": sq_err + self.reg * (user_penalty + item_penalty)})


#: The name :func:`sgd` builds it by.


def sgd(
    R,
    k: int = 10,
    *,
    lr: float = 0.01,
    reg: float = 0.02,
    n_epochs: int = 20,
    tol: float = 0.0,
    seed: int | None = None,
    batch_size: int = 1,
    options: RunOptions | None = None,
    **run_keywords: Unpack[RunKeywords],
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
        Ratings updated at once (see the module's notes); 1 (default) is
        exact sequential SGD.
    options : RunOptions, optional
    **run_keywords
        Run options, as for :func:`dmf.cf.als.als`.

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
    opts = run_options(options, run_keywords, "sgd").refuse(("cache",), "dmf.cf.sgd")
    ratings, k, facts = checked_ratings(R, k, storage_options=opts.storage_options)
    params = {"k": k, "lr": lr, "reg": reg, "n_epochs": n_epochs, "tol": tol,
              "batch_size": batch_size}
    solver = SgdSolver(ratings, k, lr=lr, reg=reg, mu=facts["mean"], batch_size=batch_size,
                        params=params)
    return fit_model(solver, ratings, seed=seed, max_iter=n_epochs, tol=tol, options=opts)


class SGD(LatentFactorsMixin):
    """Stochastic gradient descent, scikit-learn style (see :func:`sgd` for
    the parameters other than ``input``; run options as :class:`ALS`).

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

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **LATENT_CONSTRAINTS,
        "lr": [Interval(Real, 0, None, closed="neither")],
        "reg": [Interval(Real, 0, None)],
        "n_epochs": [Interval(Integral, 1, None)],
        "tol": [Interval(Real, 0, None)],
        "batch_size": [Interval(Integral, 1, None)],
    }

    def __init__(self, k: int = 10, *, lr: float = 0.01, reg: float = 0.02,
                 n_epochs: int = 20, tol: float = 0.0, seed: int | None = None,
                 batch_size: int = 1, out=None, checkpoint_every: int | None = None,
                 progress: bool | None = None, input: str = "auto",
                 options: RunOptions | None = None):
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
        self.options = options

    def _fit_ratings(self, ratings) -> SGD:
        return self._set_model(sgd(ratings, **self._solver_params()))
