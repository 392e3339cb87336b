"""Accuracy of predicted ratings and quality of top-k recommendations.

**Rating error.** :func:`rmse` and :func:`mae` take either a model and test
ratings (predictions are made a user block at a time) or two arrays.

**Ranking.** For each user, ``recommended`` is a ranked list of items and
``relevant`` the held-out items that count as hits (a collection, or a
mapping item -> gain for graded relevance in nDCG; any other metric uses
relevance as binary). With ``hits@k`` the relevant items among the first k
recommended and R the user's relevant items:

- precision@k = hits@k / k (k, not the length of a shorter list)
- recall@k    = hits@k / |R|
- nDCG@k      = DCG@k / IDCG@k, DCG@k = sum_{r <= k} gain(rec_r) / log2(r + 1),
                IDCG@k the same for the best ordering of R (scikit-learn's
                ``ndcg_score`` with linear gains)
- AP@k        = sum_{r <= k, rec_r in R} precision@r / min(k, |R|)  (MAP@k:
                its mean)

each averaged over the users with at least one relevant item (NaN when
there are none). Recommended lists are assumed free of repeats; -1 entries
are padding.

**Evaluation.** :func:`evaluate` scores a model on a test split: RMSE and
MAE over every test rating, and the ranking metrics of the model's top-k
(training items excluded, popularity for users without training ratings,
as :func:`dmf.cf.recommend.recommend` does) against relevant test items:
those rated ``>= threshold``, or every held-out item when ``threshold`` is
None (implicit data). It walks the user blocks once, holding one block's
dense scores at a time.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse

from dmf.cf.data import as_ratings
from dmf.cf.recommend import (
    SCORE_BYTES,
    check_model,
    check_ratings,
    popularity,
    recommend_block,
    score_rows,
)
from dmf.cf.rows import as_csr, block_bounds
from dmf.errors import InputError

# -- ranking on a block: recommended (u x k, -1 padded) vs relevant (csr u x items) --


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def _ranking_sums(rec: np.ndarray, rel: scipy.sparse.csr_matrix, k: int
                  ) -> tuple[np.ndarray, int]:
    """Sums over the users with a relevant item of precision, recall, nDCG
    and AP at k, and how many such users there are."""
    rec = np.asarray(rec, dtype=np.int64)[:, :k]
    if rec.shape[1] < k:  # a shorter list counts as padded
        rec = np.pad(rec, ((0, 0), (0, k - rec.shape[1])), constant_values=-1)
    rel = as_csr(rel)
    rel.eliminate_zeros()  # a gain of 0 is not relevant
    n_rel = np.diff(rel.indptr)
    users = n_rel > 0
    if not users.any():
        return np.zeros(4), 0
    width = rel.shape[1]
    row_of = np.repeat(np.arange(rel.shape[0]), n_rel)
    keys = row_of * width + rel.indices  # sorted: rows ascending, indices sorted
    valid = (rec >= 0) & (rec < width)
    rec_keys = np.arange(rec.shape[0])[:, None] * width + np.where(valid, rec, 0)
    pos = np.minimum(np.searchsorted(keys, rec_keys), max(len(keys) - 1, 0))
    hit = valid & (keys[pos] == rec_keys)
    gain = np.where(hit, rel.data[pos], 0.0)
    disc = _discounts(k)
    n_hits = hit.sum(axis=1)
    # ideal DCG: each user's k largest gains, in order
    order = np.lexsort((-rel.data, row_of))
    rank = np.arange(rel.nnz) - rel.indptr[row_of[order]]
    top = rank < k
    idcg = np.bincount(row_of[order][top], weights=rel.data[order][top] * disc[rank[top]],
                       minlength=rel.shape[0])
    dcg = gain @ disc
    precision_at_r = np.cumsum(hit, axis=1) / np.arange(1, k + 1)
    ap = (precision_at_r * hit).sum(axis=1) / np.maximum(np.minimum(n_rel, k), 1)
    sums = np.array([(n_hits / k)[users].sum(), (n_hits / np.maximum(n_rel, 1))[users].sum(),
                     np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)[users].sum(),
                     ap[users].sum()])
    return sums, int(users.sum())


def _as_block(recommended, relevant) -> tuple[np.ndarray, scipy.sparse.csr_matrix]:
    """Lists of recommended items and of relevant items (collections or
    item -> gain mappings; or a users x items sparse matrix of gains) as a
    -1 padded index matrix and a csr matrix over one item vocabulary."""
    if scipy.sparse.issparse(recommended):
        raise InputError("recommended must be ranked lists of items (a 2-D array or a list "
                         "of lists), not a sparse matrix")
    if isinstance(recommended, np.ndarray) and recommended.ndim == 2:
        rec_lists = list(recommended)
    else:
        rec_lists = [np.asarray(r).ravel() for r in recommended]
    if scipy.sparse.issparse(relevant):
        rel = as_csr(relevant)
        if rel.shape[0] != len(rec_lists):
            raise InputError(f"recommended has {len(rec_lists)} users but relevant has "
                             f"{rel.shape[0]}; give one row per user in both")
        width = max((len(r) for r in rec_lists), default=0)
        rec = np.full((len(rec_lists), width), -1, dtype=np.int64)
        for u, r in enumerate(rec_lists):
            rec[u, :len(r)] = np.asarray(r, dtype=np.int64)
        return rec, rel
    rel_lists = list(relevant)
    if len(rel_lists) != len(rec_lists):
        raise InputError(f"recommended has {len(rec_lists)} users but relevant has "
                         f"{len(rel_lists)}; give one entry per user in both")
    items, gains = [], []
    for r in rel_lists:
        if isinstance(r, Mapping):
            items.append(np.asarray(list(r.keys())))
            gains.append(np.asarray(list(r.values()), dtype=np.float64))
        else:
            arr = np.asarray(list(r) if isinstance(r, (set, frozenset)) else r).ravel()
            items.append(arr)
            gains.append(np.ones(len(arr)))
    padded = [np.asarray(r)[np.asarray(r) != -1] if np.asarray(r).dtype.kind in "iu"
              else np.asarray(r) for r in rec_lists]
    everything = [a for a in items + padded if len(a)]
    vocab = np.unique(np.concatenate(everything)) if everything else np.array([])
    width = max((len(r) for r in rec_lists), default=0)
    rec = np.full((len(rec_lists), width), -1, dtype=np.int64)
    for u, (r, kept) in enumerate(zip(rec_lists, padded, strict=True)):
        positions = np.flatnonzero(np.asarray(r) != -1) if np.asarray(r).dtype.kind in "iu" \
            else np.arange(len(r))
        rec[u, positions] = np.searchsorted(vocab, kept)
    rows = np.repeat(np.arange(len(items)), [len(a) for a in items])
    cols = np.searchsorted(vocab, np.concatenate(items)) if rows.size else np.array([], int)
    rel = scipy.sparse.csr_matrix((np.concatenate(gains) if rows.size else np.array([]),
                                   (rows, cols)), shape=(len(items), len(vocab)))
    rel.sum_duplicates()
    return rec, rel


def _ranking(recommended, relevant, k: int, which: int) -> float:
    if int(k) != k or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    rec, rel = _as_block(recommended, relevant)
    if which != 2:  # only nDCG grades relevance
        rel.data = (rel.data != 0).astype(np.float64)
    sums, users = _ranking_sums(rec, rel, int(k))
    return float(sums[which] / users) if users else float("nan")


# -- rating error ------------------------------------------------------------------


def _rating_errors(model, test) -> tuple[float, float, int]:
    """Sum of squared and of absolute errors of ``model`` on the test
    ratings, and their count, a user block at a time."""
    check_model(model)
    T = as_ratings(test)
    check_ratings(model, T, "test ratings")
    sq = ab = 0.0
    count = 0
    for start, stop in block_bounds(T.by_user):
        block = as_csr(T.by_user[start:stop].compute())
        if not block.nnz:
            continue
        users = start + np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
        err = np.asarray(model.predict(users, block.indices), dtype=np.float64) - block.data
        sq += float(err @ err)
        ab += float(np.abs(err).sum())
        count += block.nnz
    return sq, ab, count


def _errors(a, b) -> np.ndarray | tuple[float, float, int]:
    if hasattr(a, "predict") and hasattr(a, "scores"):
        return _rating_errors(a, b)
    y_true = np.asarray(a, dtype=np.float64).ravel()
    y_pred = np.asarray(b, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise InputError(f"rmse/mae need a model and test ratings, or two arrays of the same "
                         f"non-zero length; got lengths {y_true.size} and {y_pred.size}")
    return y_pred - y_true


# -- public ------------------------------------------------------------------------


def rmse(model_or_true, test_or_pred) -> float:
    """Root mean squared error: ``rmse(model, test_ratings)`` or
    ``rmse(y_true, y_pred)``.

    Examples
    --------
    >>> rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    1.1547005383792515
    """
    errors = _errors(model_or_true, test_or_pred)
    if isinstance(errors, tuple):
        sq, _, count = errors
        return float(np.sqrt(sq / count)) if count else float("nan")
    return float(np.sqrt(np.mean(errors * errors)))


def mae(model_or_true, test_or_pred) -> float:
    """Mean absolute error: ``mae(model, test_ratings)`` or ``mae(y_true, y_pred)``.

    Examples
    --------
    >>> mae([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    0.6666666666666666
    """
    errors = _errors(model_or_true, test_or_pred)
    if isinstance(errors, tuple):
        _, ab, count = errors
        return ab / count if count else float("nan")
    return float(np.mean(np.abs(errors)))


def precision_at_k(recommended, relevant, k: int = 10) -> float:
    """Mean over users with a relevant item of hits@k / k.

    Examples
    --------
    >>> precision_at_k([[1, 2, 3], [4, 5, 6]], [{1, 3}, {9}], k=2)
    0.25
    """
    return _ranking(recommended, relevant, k, 0)


def recall_at_k(recommended, relevant, k: int = 10) -> float:
    """Mean over users with a relevant item of hits@k / (their relevant items).

    Examples
    --------
    >>> recall_at_k([[1, 2, 3], [4, 5, 6]], [{1, 3}, {9}], k=2)
    0.25
    """
    return _ranking(recommended, relevant, k, 1)


def ndcg_at_k(recommended, relevant, k: int = 10) -> float:
    """Mean nDCG@k (linear gains, log2 discount); ``relevant`` entries may
    map items to graded gains.

    Examples
    --------
    >>> round(ndcg_at_k([[1, 2, 3]], [{3}], k=3), 4)
    0.5
    >>> round(ndcg_at_k([[1, 2]], [{1: 1.0, 2: 3.0}], k=2), 4)
    0.7967
    """
    return _ranking(recommended, relevant, k, 2)


def map_at_k(recommended, relevant, k: int = 10) -> float:
    """Mean average precision at k (AP normalized by min(k, |relevant|)).

    Examples
    --------
    >>> map_at_k([[1, 2, 3]], [{1, 3}], k=3)
    0.8333333333333333
    """
    return _ranking(recommended, relevant, k, 3)


def evaluate(model, train, test, k: int = 10, *, threshold: float | None = None,
             exclude_seen: bool = True, score_bytes: int = SCORE_BYTES) -> dict[str, float]:
    """RMSE, MAE and the ranking metrics at ``k`` of a model on a test split.

    Parameters
    ----------
    model : fitted recommender (ItemKNN, Baseline, ALS, SGD...)
    train, test : Ratings, scipy.sparse matrices or ratings store URLs
        Same users and items (a split of one matrix): train gives the items
        not to recommend again and the cold users, test the ratings to
        predict and the relevant items.
    k : int
    threshold : float, optional
        Test ratings ``>= threshold`` are relevant; None: all of them.
    exclude_seen : bool
        Leave training items out of the top-k.
    score_bytes : int
        Memory for one user block's dense scores.

    Returns
    -------
    dict
        ``rmse``, ``mae``, ``precision_at_k``, ``recall_at_k``,
        ``ndcg_at_k``, ``map_at_k``, ``k``, ``n_ratings`` (test ratings),
        ``n_users`` (users with a relevant test item, the ranking metrics'
        denominator).

    Examples
    --------
    >>> import scipy.sparse
    >>> from dmf.cf.baseline import Baseline
    >>> train = scipy.sparse.csr_matrix([[5.0, 0, 3.0, 0], [4.0, 2.0, 0, 0]])
    >>> test = scipy.sparse.csr_matrix([[0, 0, 0, 4.0], [0, 0, 1.0, 0]])
    >>> scores = evaluate(Baseline().fit(train), train, test, k=1)
    >>> scores["precision_at_k"], scores["n_users"]
    (0.5, 2)
    """
    check_model(model)
    if int(k) != k or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    Tr, Te = as_ratings(train), as_ratings(test)
    check_ratings(model, Tr, "training ratings")
    check_ratings(model, Te, "test ratings")
    rows = score_rows(Te.shape[1], score_bytes)
    fallback = popularity(model, Tr)
    sq = ab = 0.0
    n_ratings = n_users = 0
    ranking = np.zeros(4)
    for start, stop in block_bounds(Te.by_user):
        test_block = as_csr(Te.by_user[start:stop].compute())
        if not test_block.nnz:
            continue
        train_block = as_csr(Tr.by_user[start:stop].compute())
        for s0 in range(0, stop - start, rows):
            s1 = min(stop - start, s0 + rows)
            tb = test_block[s0:s1]
            if not tb.nnz:
                continue
            users = start + s0 + np.repeat(np.arange(tb.shape[0]), np.diff(tb.indptr))
            err = np.asarray(model.predict(users, tb.indices), dtype=np.float64) - tb.data
            sq += float(err @ err)
            ab += float(np.abs(err).sum())
            n_ratings += tb.nnz
            rel = tb.copy()
            rel.data = (np.ones_like(rel.data) if threshold is None
                        else (rel.data >= threshold).astype(np.float64))
            rel.eliminate_zeros()
            who = np.flatnonzero(np.diff(rel.indptr) > 0)  # score only those users
            if not who.size:
                continue
            idx, _, _ = recommend_block(model, start + s0 + who, train_block[s0:s1][who], k,
                                        exclude_seen=exclude_seen, fallback=fallback)
            sums, count = _ranking_sums(idx, rel[who], int(k))
            ranking += sums
            n_users += count
    means = ranking / n_users if n_users else np.full(4, np.nan)
    return {"rmse": float(np.sqrt(sq / n_ratings)) if n_ratings else float("nan"),
            "mae": ab / n_ratings if n_ratings else float("nan"),
            "precision_at_k": float(means[0]), "recall_at_k": float(means[1]),
            "ndcg_at_k": float(means[2]), "map_at_k": float(means[3]),
            "k": int(k), "n_ratings": int(n_ratings), "n_users": int(n_users)}
