"""``dmf.cf.als``: alternating least squares for collaborative filtering.

Three models share the alternating scheme (a user half-step reading
``by_user`` once, then an item half-step reading ``by_item`` once, one task
per row block, the other side's factor as one graph key):

- explicit ratings, ALS-WR with biases (:mod:`dmf.cf.explicit`);
- implicit feedback, Hu-Koren-Volinsky by conjugate gradient
  (:mod:`dmf.cf.implicit`), ``implicit=True``;
- non-negative factors, masked NMF by multiplicative updates
  (:mod:`dmf.cf.masked`), ``nonnegative=True``.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar, Unpack

from dmf.cf.checks import checked_ratings, integer, number
from dmf.cf.explicit import ExplicitSolver
from dmf.cf.fitting import fit_model
from dmf.cf.implicit import ImplicitSolver
from dmf.cf.masked import MaskedSolver
from dmf.cf.model import LatentFactors
from dmf.cf.params import LATENT_CONSTRAINTS, LatentFactorsMixin
from dmf.engine.options import RunKeywords, RunOptions, run_options
from dmf.errors import InputError
from dmf.params import Interval


def als(
    R,
    k: int = 10,
    *,
    reg: float = 0.1,
    max_iter: int = 10,
    tol: float = 1e-4,
    seed: int | None = None,
    biases: bool = True,
    nonnegative: bool = False,
    implicit: bool = False,
    alpha: float = 40.0,
    cg_steps: int = 3,
    options: RunOptions | None = None,
    **run_keywords: Unpack[RunKeywords],
) -> LatentFactors:
    """Latent factors of a ratings matrix by alternating least squares.

    Explicit (default): minimizes sum over observed ratings of
    (r_ui - mu - b_u - b_i - p_u . q_i)^2 + reg (sum_u n_u (|p_u|^2 + b_u^2)
    + sum_i n_i (|q_i|^2 + b_i^2)), ALS-WR's count-weighted penalty, mu the
    global mean; biases are solved jointly with the factors (a constant
    column). Each iteration reads the ratings twice, once per view.

    Parameters
    ----------
    R : ratings store URL, scipy.sparse matrix or Ratings
        users x items; stored entries are the observed ratings.
    k : int
        Number of latent factors, 1 <= k <= min(m, n).
    reg : float
        Regularization lambda, >= 0 (> 0 for explicit ratings); scaled by
        each row's count for explicit ratings and masked NMF, plain for
        implicit feedback.
    max_iter, tol :
        At most ``max_iter`` iterations; stop when the objective changes by
        less than ``tol`` relative (0: run them all).
    seed : int, optional
        Same seed, ratings and chunks: bitwise the same factors, on any
        number of workers and after any kill and resume.
    biases : bool
        Fit mu + b_u + b_i (explicit only; False: r ~ p_u . q_i).
    nonnegative : bool
        Masked NMF (:mod:`dmf.cf.masked`): W, H >= 0 fitted to the observed
        ratings by multiplicative updates, no biases; ratings must be >= 0.
    implicit : bool
        Implicit feedback (:mod:`dmf.cf.implicit`): preference [r > 0] with
        confidence 1 + alpha r over every pair, ``cg_steps`` conjugate
        gradient steps per row and half-step; ratings must be >= 0.
    alpha : float
        Confidence scale of implicit feedback.
    cg_steps : int
        Conjugate-gradient steps per half-step (implicit; 3 as ``implicit``).
    options : RunOptions, optional
        Store the model (a result group with ``P``, ``Q``, ``user_bias``,
        ``item_bias``, the ids), checkpoint, resume, progress, a callback
        (:class:`dmf.RunOptions`; ``cache`` is not taken: the ratings are
        read from the store on each pass).
    **run_keywords
        The same options as keywords (``out=``, ``checkpoint_every=``, ...),
        instead of ``options``, as for :func:`dmf.nmf`.

    Returns
    -------
    LatentFactors
        ``loss_history`` holds the training objective after each iteration
        (``attrs["train_rmse"]``: of the returned factors).

    Examples
    --------
    >>> import numpy as np, scipy.sparse, dmf
    >>> rng = np.random.default_rng(0)
    >>> full = rng.random((60, 2)) @ rng.random((2, 40)) * 4 + 1
    >>> R = scipy.sparse.random(60, 40, density=0.5, random_state=0, format="csr")
    >>> R.data = full[R.nonzero()]
    >>> model = dmf.cf.als(R, 2, reg=0.01, max_iter=20, seed=0)
    >>> bool(model.attrs["train_rmse"] < 0.05)
    True
    >>> h = model.loss_history
    >>> all(b <= a * (1 + 1e-12) for a, b in zip(h, h[1:]))
    True
    """
    reg = number(reg, "reg")
    max_iter = integer(max_iter, "max_iter")
    tol = number(tol, "tol")
    opts = run_options(options, run_keywords, "als").refuse(("cache",), "dmf.cf.als")
    if nonnegative and implicit:
        raise InputError("nonnegative=True and implicit=True cannot be combined; choose one")
    why = ("masked NMF needs non-negative ratings" if nonnegative else
           "implicit feedback needs counts >= 0 (r > 0 is a preference)" if implicit else None)
    ratings, k, facts = checked_ratings(R, k, storage_options=opts.storage_options,
                                        nonnegative=why)
    params: dict[str, Any] = {"k": k, "reg": reg, "max_iter": max_iter, "tol": tol}
    if implicit:
        alpha = number(alpha, "alpha", strict=True)
        cg_steps = integer(cg_steps, "cg_steps")
        solver = ImplicitSolver(ratings, k, reg=reg, alpha=alpha, cg_steps=cg_steps,
                                 params={**params, "alpha": alpha, "cg_steps": cg_steps})
    elif nonnegative:
        solver = MaskedSolver(ratings, k, reg=reg, mean=facts["mean"], params=params)
    else:
        if reg == 0:
            raise InputError("explicit ALS needs reg > 0 (a user with fewer ratings than "
                             "k + 1 has a singular system without it); try reg=0.1")
        biases = bool(biases)
        solver = ExplicitSolver(ratings, k, reg=reg, biases=biases,
                                 mu=facts["mean"] if biases else 0.0,
                                 params={**params, "biases": biases})
    return fit_model(solver, ratings, seed=seed, max_iter=max_iter, tol=tol, options=opts)


def masked_nmf(R, k: int = 10, *, reg: float = 0.0, **als_keywords) -> LatentFactors:
    """Non-negative W (users x k) and H (k x items) fitted to the observed
    ratings only: ``als(R, k, nonnegative=True, ...)`` (see
    :mod:`dmf.cf.masked`); ``model.P`` is W, ``model.Q`` is H^T.

    Examples
    --------
    >>> import numpy as np, scipy.sparse
    >>> R = scipy.sparse.random(50, 30, density=0.4, random_state=1, format="csr")
    >>> model = masked_nmf(R, 3, reg=0.01, max_iter=30, tol=0, seed=0)
    >>> bool((model.Q >= 0).all() and (model.P.compute() >= 0).all())
    True
    """
    return als(R, k, reg=reg, nonnegative=True, **als_keywords)


class ALS(LatentFactorsMixin):
    """Alternating least squares, scikit-learn style (see :func:`als` for
    the parameters other than ``input``; the run options are ``out``,
    ``checkpoint_every``, ``progress`` or one :class:`dmf.RunOptions`,
    ``options``).

    Parameters
    ----------
    input : {"auto", "pairs", "matrix"}
        What ``fit``, ``predict`` and ``score`` take. "auto" (or "pairs"):
        ``fit(R)`` a ratings matrix (a store URL, a ``Ratings``, a
        scipy.sparse matrix) or ``fit(X, y)`` (user, item) index pairs and
        their ratings, ``predict(users, items)`` or ``predict(X)`` of pairs,
        ``score(X, y)`` R^2 on pairs: a scikit-learn regressor of ratings.
        "matrix": a scikit-learn transformer of a ratings matrix, as
        :class:`dmf.NMF` (:mod:`dmf.cf.matrix`): X is users x items (numpy,
        scipy.sparse, dask or Zarr, a ``Ratings`` or a URL; every entry of a
        dense X is a rating, the stored entries of a sparse one), y is
        ignored; ``fit`` learns the item side (``components_`` = Q^T);
        ``transform(X)`` folds each row in against it (the user half-step:
        [p_u, b_u], k + 1 columns, with biases; p_u, k columns, without),
        so rows of a new matrix work; ``inverse_transform`` gives their
        predicted ratings mu + b_u + b_i + p_u . q_i of every item;
        ``score(X)`` is R^2 over X's observed entries. No ``predict`` in
        this mode (scikit-learn's gives one value a row). With
        ``nonnegative`` or ``implicit``, X must be non-negative.

    Attributes
    ----------
    model_ : LatentFactors
    P_, Q_ : numpy.ndarray
        User (m x k) and item (n x k) factors.
    user_bias_, item_bias_, global_mean_
        b_u, b_i and mu (zeros without biases).
    loss_history_, n_iter_
    components_ : numpy.ndarray
        ``input="matrix"``: Q^T, k x n_items.
    n_components_, n_features_in_ : int
        ``input="matrix"``: k and n_items.

    Examples
    --------
    >>> import numpy as np, scipy.sparse
    >>> R = scipy.sparse.random(40, 30, density=0.3, random_state=0, format="csr") * 5
    >>> est = ALS(k=3, max_iter=5, seed=0).fit(R)
    >>> est.P_.shape, est.Q_.shape, est.predict([0, 1], [2, 3]).shape
    ((40, 3), (30, 3), (2,))

    A transformer of a ratings matrix:

    >>> rng = np.random.default_rng(0)
    >>> X = 3 + rng.normal(size=(40, 2)) @ rng.normal(size=(2, 12))  # all observed
    >>> est = ALS(k=2, reg=1e-3, max_iter=10, seed=0, input="matrix").fit(X)
    >>> est.components_.shape, est.transform(X[:5]).shape   # [p_u, b_u] per row
    ((2, 12), (5, 3))
    >>> bool(np.abs(est.inverse_transform(est.transform(X)) - X).max() < 0.1)
    True
    >>> round(est.score(X), 3)                      # R^2 over the observed entries
    1.0
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **LATENT_CONSTRAINTS,
        "reg": [Interval(Real, 0, None)],  # > 0 for explicit ratings: checked by als
        "max_iter": [Interval(Integral, 1, None)],
        "tol": [Interval(Real, 0, None)],
        "biases": ["boolean"],
        "nonnegative": ["boolean"],
        "implicit": ["boolean"],
        "alpha": [Interval(Real, 0, None, closed="neither")],
        "cg_steps": [Interval(Integral, 1, None)],
    }

    def __init__(self, k: int = 10, *, reg: float = 0.1, max_iter: int = 10,
                 tol: float = 1e-4, seed: int | None = None, biases: bool = True,
                 nonnegative: bool = False, implicit: bool = False, alpha: float = 40.0,
                 cg_steps: int = 3, out=None, checkpoint_every: int | None = None,
                 progress: bool | None = None, input: str = "auto",
                 options: RunOptions | None = None):
        self.k = k
        self.reg = reg
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.biases = biases
        self.nonnegative = nonnegative
        self.implicit = implicit
        self.alpha = alpha
        self.cg_steps = cg_steps
        self.out = out
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.input = input
        self.options = options

    def _fit_ratings(self, ratings) -> ALS:
        return self._set_model(als(ratings, **self._solver_params()))

    def _positive_only(self) -> bool:
        # masked NMF and implicit feedback refuse negative ratings
        return bool(self.nonnegative or self.implicit)

    def _fold_spec(self) -> dict[str, Any]:
        reg = float(self.reg)
        if self.implicit:
            return {"kind": "implicit", "reg": reg, "alpha": float(self.alpha),
                    "cg_steps": int(self.cg_steps)}
        if self.nonnegative:
            return {"kind": "masked", "reg": reg}
        return {"kind": "explicit", "biases": bool(self.biases), "reg": reg}
