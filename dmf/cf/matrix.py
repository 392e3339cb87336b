"""Matrix mode of the CF estimators (``input="matrix"``).

With ``input="matrix"``, :class:`~dmf.cf.ALS`, :class:`~dmf.cf.SGD` and
:class:`~dmf.cf.ItemKNN` are scikit-learn transformers of a ratings matrix,
as :class:`dmf.NMF` is of a matrix: X is users x items (numpy,
scipy.sparse, dask or Zarr array, a :class:`~dmf.cf.Ratings` or a ratings
store URL); for a dense X every entry is an observed rating, for a sparse X
the stored entries are (explicit zeros included), as ``fit(R)`` reads them.
y is ignored.

``fit`` learns the item side. ``transform`` handles each row of X on its
own against that fixed item side, so rows of a new matrix work and a subset
of the rows gives the subset of the transform:

- latent factors (ALS, SGD): the row is *folded in*, its user factors
  solved for as the user half-step of ALS solves them (explicit ratings and
  SGD, whose objective is ALS-WR's: the exact regularized least-squares
  solution [p_u, b_u]; implicit feedback: conjugate gradient, k steps from
  zero, which is exact in exact arithmetic; masked NMF:
  :data:`MASKED_STEPS` multiplicative updates from sqrt(row mean / k));
- neighbourhoods (ItemKNN): the predicted rating of every item from the
  row's own ratings (:func:`dmf.cf.knn.knn_rows`).

In-memory input is validated as scikit-learn validates it
(:mod:`dmf.validation`); it gives numpy output, out-of-core input a lazy
dask array computed a row block at a time.
"""

from __future__ import annotations

import functools
import os
import types

import dask
import dask.array as da
import numpy as np
import scipy.sparse
import zarr

from dmf.blocks import Piece, row_blocks, row_sums
from dmf.cf import explicit, implicit, masked
from dmf.cf.data import Ratings, as_ratings, ratings_from_scipy
from dmf.cf.passes import as_csr
from dmf.errors import not_fitted
from dmf.store.api import as_matrix
from dmf.store.location import Location
from dmf.store.sparse_format import is_csr_group
from dmf.validation import (
    check_n_features,
    check_non_negative,
    is_out_of_core,
    small_input_scheduler,
    validated_array,
)

#: The values of the estimators' ``input`` parameter (checked by their
#: constraints tables).
INPUTS = ("auto", "pairs", "matrix")
#: Multiplicative updates of a masked-NMF fold-in (its solution is not in
#: closed form; the objective decreases with every update).
MASKED_STEPS = 100


class _OnlyWith:
    """A method present only for some values of ``input``: elsewhere reading
    it raises AttributeError, so ``hasattr`` is False (as scikit-learn's
    ``available_if``) and scikit-learn takes the estimator for what its
    mode makes it, a regressor of pairs or a transformer of a matrix."""

    def __init__(self, method, modes: tuple[str, ...]):
        self.method = method
        self.modes = modes
        functools.update_wrapper(self, method)

    def __get__(self, obj, owner=None):
        if obj is None:
            return self.method
        if getattr(obj, "input", "auto") not in self.modes:
            raise AttributeError(f"{type(obj).__name__}.{self.method.__name__} is not "
                                 f"available with input={obj.input!r}")
        return types.MethodType(self.method, obj)


def matrix_only(method) -> _OnlyWith:
    """``method`` with ``input="matrix"`` only (``transform``...)."""
    return _OnlyWith(method, ("matrix",))


def pairs_only(method) -> _OnlyWith:
    """``method`` with ``input="auto"`` or ``"pairs"`` only: ``predict``,
    whose ratings of pairs are one number a row; a transformer's
    predictions of a row are its ``inverse_transform(transform(X))``, and
    scikit-learn requires ``predict`` to give one value a row."""
    return _OnlyWith(method, ("auto", "pairs"))


# -- the matrix as ratings -------------------------------------------------------------


def full_csr(X: np.ndarray) -> scipy.sparse.csr_matrix:
    """A dense X as CSR with every entry stored (zeros are ratings too).

    Examples
    --------
    >>> full_csr(np.array([[0.0, 2.0]])).nnz
    2
    """
    m, n = X.shape
    return scipy.sparse.csr_matrix(
        (np.ascontiguousarray(X).ravel(), np.tile(np.arange(n), m), np.arange(0, m * n + 1, n)),
        shape=(m, n))


def _block_csr(block) -> scipy.sparse.csr_matrix:
    if scipy.sparse.issparse(block):
        return scipy.sparse.csr_matrix(block)
    return full_csr(np.asarray(block))


def _csr_rows(X: da.Array) -> da.Array:
    """A dask matrix as blocks of whole CSR rows (a ratings view)."""
    X = X.rechunk({1: -1})
    return X.map_blocks(_block_csr, dtype=X.dtype,
                        meta=scipy.sparse.csr_matrix((0, 0), dtype=X.dtype))


def _in_memory_rows(X, name: str, positive_only: bool) -> scipy.sparse.csr_matrix:
    X = validated_array(X, name)
    if positive_only:
        check_non_negative(X, name)
    return X if scipy.sparse.issparse(X) else full_csr(X)


def _is_ratings_source(X) -> bool:
    """A Ratings, or a URL of a ratings (CSR) store; the URL of a dense
    matrix store is a matrix like any other."""
    if isinstance(X, Ratings):
        return True
    if not isinstance(X, (str, os.PathLike, Location)):
        return False
    node = (X if isinstance(X, Location) else Location.parse(X)).open_node()
    return isinstance(node, zarr.Group) and is_csr_group(node)


def _is_lazy(X) -> bool:
    return is_out_of_core(X) or isinstance(X, Location)


def matrix_ratings(X, name: str, *, positive_only: bool
                   ) -> tuple[Ratings, scipy.sparse.csr_matrix | None]:
    """The :class:`Ratings` of a matrix X, and X as validated in memory
    (None for out-of-core X)."""
    if _is_ratings_source(X):
        return as_ratings(X), None
    if _is_lazy(X):
        arr = as_matrix(X, name=name)
        return Ratings(by_user=_csr_rows(arr), by_item=_csr_rows(arr.T),
                       user_ids=np.arange(arr.shape[0]), item_ids=np.arange(arr.shape[1]),
                       token="ratings-" + dask.base.tokenize(arr.name)), None
    rows = _in_memory_rows(X, name, positive_only)
    return ratings_from_scipy(rows, name=name), rows


def matrix_rows(X, name: str, *, positive_only: bool):
    """The rows of X as CSR: one matrix (in memory) or a dask array of CSR
    row blocks (out of core); and whether it is in memory."""
    if _is_ratings_source(X):
        return as_ratings(X).by_user, False
    if _is_lazy(X):
        return _csr_rows(as_matrix(X, name=name)), False
    return _in_memory_rows(X, name, positive_only), True


# -- what each row gives -----------------------------------------------------------------


def latent_rows(block, *, Q: np.ndarray, item_bias: np.ndarray, mu: float, fold: dict
                ) -> np.ndarray:
    """User factors of each row of ``block`` against the fixed item factors
    ``Q`` (n x k): [p_u, b_u] with biases, p_u without. The fold-in is one
    user half-step of the model's own solver, so it reuses that kernel."""
    block = as_csr(block)
    m, k = block.shape[0], Q.shape[1]
    Q = np.asarray(Q, dtype=np.float64)
    if fold["kind"] == "explicit":
        biases = fold["biases"]
        V = np.c_[Q, item_bias] if biases else Q
        start = np.empty((m, V.shape[1]))
        rows, _ = explicit._half_rows(block, start, V, False,
                                      explicit.RowSolve(mu if biases else 0.0, k, biases,
                                                        fold["reg"]))
    elif fold["kind"] == "implicit":
        rows, _ = implicit._half_rows(block, np.zeros((m, k)), Q, Q.T @ Q, False,
                                      implicit.RowSolve(fold["alpha"], fold["reg"],
                                                        max(k, fold["cg_steps"])))
    else:  # masked NMF: from sqrt(row mean / k), the scale of the fit's start
        counts = np.diff(block.indptr)
        sums = np.bincount(np.repeat(np.arange(m), counts), weights=block.data, minlength=m)
        means = np.divide(sums, counts, out=np.zeros(m), where=counts > 0)
        W = np.repeat(np.sqrt(np.maximum(means, masked.EPSILON) / k)[:, None], k, axis=1)
        for _ in range(MASKED_STEPS):
            W, _ = masked._half_rows(block, W, Q, fold["reg"], False)
        return W
    return rows


def latent_ratings(Z, *, Q: np.ndarray, item_bias: np.ndarray, mu: float, biases: bool
                   ) -> np.ndarray:
    """Predicted ratings mu + b_u + b_i + p_u . q_i of every item from user
    factors Z = [P | b_u] (Z = P without biases)."""
    k = Q.shape[1]
    Z = np.asarray(Z, dtype=np.float64)
    out = Z[:, :k] @ np.asarray(Q, dtype=np.float64).T + (mu + item_bias)[None, :]
    if biases:
        out += Z[:, k:k + 1]
    return out


def latent_predictions(block, *, Q: np.ndarray, item_bias: np.ndarray, mu: float, fold: dict
                       ) -> np.ndarray:
    """Predicted ratings of every item for the rows of ``block``, their
    user factors folded in first."""
    Z = latent_rows(block, Q=Q, item_bias=item_bias, mu=mu, fold=fold)
    return latent_ratings(Z, Q=Q, item_bias=item_bias, mu=mu,
                          biases=fold["kind"] == "explicit" and fold["biases"])


def _typed(func, dtype, block) -> np.ndarray:
    return func(block).astype(dtype, copy=False)


def _named_rows(func, dtype, block) -> dict[str, np.ndarray]:
    return {"rows": _typed(func, dtype, block)}


#: The named sums of :func:`_r2_terms`.
R2_PARTS = {"sse": (), "total": (), "squares": (), "count": ()}


def _r2_terms(block, func) -> dict[str, float]:
    """The sum of squared errors of a block's observed ratings against
    ``func``'s predictions of its rows, and the ratings' sum, sum of squares
    and count."""
    block = as_csr(block)
    predicted = func(block)[np.repeat(np.arange(block.shape[0]), np.diff(block.indptr)),
                            block.indices]
    r = block.data
    return {"sse": float(((r - predicted) ** 2).sum()), "total": float(r.sum()),
            "squares": float(r @ r), "count": float(r.size)}


class MatrixMixin:
    """fit / transform / predict / score of ``input="matrix"``. A class
    provides ``_fit_ratings(ratings)``, ``_n_items()``, ``_positive_only()``
    and ``_row_function()`` (a picklable function of a CSR block of rows:
    what ``transform`` returns for them) and ``_ratings_function()`` (their
    predicted ratings of every item)."""

    def _matrix_mode(self) -> bool:
        return getattr(self, "input", "auto") == "matrix"  # checked at fit

    def _positive_only(self) -> bool:
        return False

    def _fit_matrix(self, X):
        name = type(self).__name__
        ratings, rows = matrix_ratings(X, name, positive_only=self._positive_only())
        with small_input_scheduler(rows, rows is not None):
            self._fit_ratings(ratings)
        self.n_features_in_ = ratings.shape[1]
        return self

    def _fitted_rows(self, X):
        """The rows of X, checked against the fit (see :func:`matrix_rows`)."""
        name = type(self).__name__
        if not self.__sklearn_is_fitted__():
            raise not_fitted(name)
        rows, in_memory = matrix_rows(X, name, positive_only=self._positive_only())
        check_n_features(rows.shape[1], self._n_items(), name)
        return rows, in_memory

    @staticmethod
    def _map_rows(rows, in_memory: bool, func, width: int):
        """``func`` of ``rows`` (:meth:`_fitted_rows`): numpy for in-memory
        rows, else a dask array of ``width`` columns computed a row block at
        a time."""
        dtype = rows.dtype if rows.dtype in (np.float32, np.float64) else np.float64
        if in_memory:
            return _typed(func, dtype, rows)
        each = {"rows": Piece((None, width), dtype)}
        return row_blocks(functools.partial(_named_rows, func, dtype), rows,
                          each=each).each["rows"]

    def _score_matrix(self, X) -> float:
        """R^2 over the observed entries of X of their predictions from the
        rows' own ratings (higher is better; 1 is exact)."""
        rows, in_memory = self._fitted_rows(X)
        func = self._ratings_function()
        terms = (_r2_terms(rows, func) if in_memory
                 else row_sums(_r2_terms, rows, func, parts=R2_PARTS))
        sse, total, squares, count = (float(terms[name]) for name in R2_PARTS)
        spread = squares - total * total / count if count else 0.0
        return float(1.0 - sse / spread) if spread > 0 else 0.0

    @matrix_only
    def transform(self, X):
        """``input="matrix"``: what the fitted item side gives each row of X
        (see the class's ``input``); numpy for in-memory X, dask for dask,
        Zarr, a Ratings or a URL."""
        rows, in_memory = self._fitted_rows(X)
        return self._map_rows(rows, in_memory, self._row_function(), self._transform_width())

    @matrix_only
    def fit_transform(self, X, y=None):  # noqa: ARG002
        """``input="matrix"``: ``fit(X).transform(X)``."""
        return self.fit(X).transform(X)

    def _transform_width(self) -> int:
        return self._n_items()
