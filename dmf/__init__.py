"""dmf: distributed, out-of-core matrix factorization on Zarr and Dask.

The public names below are loaded on first use (PEP 562): ``import dmf``
and the ``dmf`` command's parser stay light (no Dask, Zarr or numba until a
name that needs them is touched), so ``dmf --help`` answers at once.

Examples
--------
>>> import numpy as np, dmf
>>> dmf.save_matrix(np.ones((4, 2)), "memory://doc/init.zarr")
'memory://doc/init.zarr'
>>> dmf.open_matrix("memory://doc/init.zarr").shape
(4, 2)
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from dmf._version import __version__

# Public name -> (module, attribute in it; None: the module itself).
_PUBLIC = {
    "NMF": ("dmf.estimators", "NMF"),
    "NMFResult": ("dmf.results", "NMFResult"),
    "NMTFResult": ("dmf.results", "NMTFResult"),
    "RankSelection": ("dmf.rank", "RankSelection"),
    "SVDResult": ("dmf.results", "SVDResult"),
    "TruncatedSVD": ("dmf.estimators", "TruncatedSVD"),
    "cf": ("dmf.cf", None),
    "check_finite": ("dmf.store.validate", "check_finite"),
    "connect": ("dmf.engine.cluster", "connect"),
    "errors": ("dmf.errors", None),
    "generate": ("dmf.store.generate", None),
    "ingest": ("dmf.store.ingest", "ingest"),
    "load": ("dmf.results", "load"),
    "nmf": ("dmf.nmf", "nmf"),
    "nmtf": ("dmf.nmf", "nmtf"),
    "open_matrix": ("dmf.store.api", "open_matrix"),
    "save_matrix": ("dmf.store.api", "save_matrix"),
    "select_rank": ("dmf.rank", "select_rank"),
    "svd": ("dmf.linalg", "svd"),
}

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads these
    from dmf import cf, errors
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


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'dmf' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


# Public functions named as the subpackage that defines them (dmf.nmf).
_SHADOWED = {n for n, (m, a) in _PUBLIC.items() if a is not None and m == f"dmf.{n}"}


class _Package(types.ModuleType):
    """Importing the subpackage ``dmf.nmf`` binds it as ``dmf.nmf``, over the
    function ``dmf.nmf`` (the eager ``from dmf.nmf import nmf`` used to bind
    the function back): the function stays, loaded by ``__getattr__``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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
