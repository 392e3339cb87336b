"""``dmf.cf``: collaborative filtering out of core.

Latent factors (:class:`ALS` explicit with biases and implicit, :class:`SGD`,
masked NMF), neighbourhoods (:class:`ItemKNN`, :class:`UserKNN` on the :class:`Baseline`
mu + b_u + b_i), recommendations and metrics, on ratings read by user and by
item block (:class:`Ratings`).

Examples
--------
>>> import scipy.sparse, dmf
>>> R = scipy.sparse.random(60, 30, density=0.3, random_state=0, format="csr")
>>> R.data = 1 + 4 * R.data                        # ratings from 1 to 5
>>> train, test = dmf.cf.train_test_split(R, seed=0)
>>> model = dmf.cf.ALS(k=3, reg=0.1, max_iter=5, seed=0).fit(train)
>>> bool(dmf.cf.rmse(model.model_, test) < 2)
True
>>> dmf.cf.recommend(model.model_, train, 3, n=2).items.shape
(2,)
"""

from dmf.cf.als import ALS, als, masked_nmf
from dmf.cf.baseline import Baseline, baseline_biases
from dmf.cf.data import Ratings, as_ratings
from dmf.cf.knn import ItemKNN, item_neighbours
from dmf.cf.metrics import (
    evaluate,
    mae,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    rmse,
)
from dmf.cf.model import LatentFactors
from dmf.cf.recommend import (
    Recommendation,
    read_recommendations,
    recommend,
    recommend_all,
    similar_items,
)
from dmf.cf.sgd import SGD, sgd
from dmf.cf.split import train_test_split
from dmf.cf.store import open_ratings, save_ratings
from dmf.cf.user_knn import UserKNN

__all__ = [
    "ALS",
    "SGD",
    "Baseline",
    "ItemKNN",
    "LatentFactors",
    "Ratings",
    "Recommendation",
    "UserKNN",
    "als",
    "as_ratings",
    "baseline_biases",
    "evaluate",
    "item_neighbours",
    "mae",
    "map_at_k",
    "masked_nmf",
    "ndcg_at_k",
    "open_ratings",
    "precision_at_k",
    "read_recommendations",
    "recall_at_k",
    "recommend",
    "recommend_all",
    "rmse",
    "save_ratings",
    "sgd",
    "similar_items",
    "train_test_split",
]
