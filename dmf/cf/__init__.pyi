# dmf.cf's public names, written once (see dmf/cf/__init__.py).
from . import knn_store
from .als import ALS, als, masked_nmf
from .baseline import Baseline, baseline_biases
from .data import Ratings, as_ratings
from .knn import ItemKNN, item_neighbours
from .metrics import (
    evaluate,
    mae,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    rmse,
)
from .model import LatentFactors
from .recommend import (
    Recommendation,
    read_recommendations,
    recommend,
    recommend_all,
    similar_items,
)
from .sgd import SGD, sgd
from .split import train_test_split
from .store import open_ratings, save_ratings
from .user_knn import UserKNN
