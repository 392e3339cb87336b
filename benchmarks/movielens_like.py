"""Generated ratings shaped like MovieLens 100k, for the neighbourhood models.

No real ratings ship with dmf and the benchmarks run offline, so the
neighbourhood comparisons (issue 24: ItemKNN and UserKNN against
scikit-surprise's KNNBaseline and against the Baseline model) use ratings
with MovieLens' structure: a skewed user activity (log-normal, at least 20
ratings each, as MovieLens keeps), a skewed item popularity (Zipf-like,
rated items drawn without replacement in proportion to it), user and item
biases (popular items rated a little higher), a low-rank taste, and integer
ratings 1-5 (mean about 3.5, spread about 1.1, as ML-100k's 3.53 and 1.13).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse


def movielens_like(users: int = 943, items: int = 1682, ratings: int = 100_000, *,
                   rank: int = 8, seed: int = 0) -> scipy.sparse.csr_matrix:
    """users x items integer ratings 1-5 (about ``ratings`` of them)."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 0.9, users)
    counts = np.clip(np.rint(activity / activity.sum() * ratings), min(20, items),
                     items // 2).astype(np.int64)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    popularity = popularity[rng.permutation(items)]
    # each user's items: the top counts[u] of log(popularity) + Gumbel noise,
    # a draw without replacement in proportion to popularity
    keys = np.log(popularity)[None, :] + rng.gumbel(size=(users, items))
    order = np.argsort(-keys, axis=1)
    rows = np.repeat(np.arange(users), counts)
    cols = np.concatenate([order[u, :c] for u, c in enumerate(counts)])
    log_pop = np.log(popularity)
    b_item = rng.normal(0.0, 0.45, items) + 0.25 * (log_pop - log_pop.mean()) / log_pop.std()
    b_user = rng.normal(0.0, 0.4, users)
    P = rng.normal(0.0, 0.45, (users, rank))
    Q = rng.normal(0.0, 0.45, (items, rank))
    taste = np.einsum("ij,ij->i", P[rows], Q[cols])
    values = 3.33 + b_user[rows] + b_item[cols] + taste + rng.normal(0.0, 0.8, rows.size)
    values = np.clip(np.rint(values), 1, 5)
    return scipy.sparse.csr_matrix((values, (rows, cols)), shape=(users, items))
