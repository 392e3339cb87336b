"""dmf: distributed, out-of-core matrix factorization on Zarr and Dask.

Examples
--------
>>> import numpy as np, dmf
>>> dmf.save_matrix(np.ones((4, 2)), "memory://doc/init.zarr")
'memory://doc/init.zarr'
>>> dmf.open_matrix("memory://doc/init.zarr").shape
(4, 2)
"""

from dmf import cf, errors
from dmf._version import __version__
from dmf.engine.cluster import connect
from dmf.estimators import NMF, TruncatedSVD
from dmf.linalg import svd
from dmf.nmf import nmf, nmtf
from dmf.rank import RankSelection, select_rank
from dmf.results import NMFResult, NMTFResult, SVDResult, load
from dmf.store import generate
from dmf.store.api import open_matrix, save_matrix
from dmf.store.ingest import ingest
from dmf.store.validate import check_finite

__all__ = [
    "NMF",
    "NMFResult",
    "NMTFResult",
    "RankSelection",
    "SVDResult",
    "TruncatedSVD",
    "__version__",
    "cf",
    "check_finite",
    "connect",
    "errors",
    "generate",
    "ingest",
    "load",
    "nmf",
    "nmtf",
    "open_matrix",
    "save_matrix",
    "select_rank",
    "svd",
]
