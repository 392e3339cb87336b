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

from dmf.lazy import attach

# The public names are listed once, in __init__.pyi, and load on first use
# (PEP 562): a module that needs one CF type (dmf.results' loader: the
# latent-factor model) does not load every CF module and numba with it.
__getattr__, __dir__, __all__ = attach(__name__, __file__)
