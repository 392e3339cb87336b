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

import sys
import types
from typing import Any

from dmf.lazy import attach

# The public names are listed once, in __init__.pyi (SPEC 1's lazy stub).
__getattr__, __dir__, __all__ = attach(__name__, __file__)


# Public functions named as the subpackage that defines them (dmf.nmf).
_SHADOWED = {"nmf"}


class _Package(types.ModuleType):
    """Importing the subpackage ``dmf.nmf`` binds it as ``dmf.nmf``, over the
    function ``dmf.nmf`` (the eager ``from dmf.nmf import nmf`` used to bind
    the function back): the function stays, loaded by ``__getattr__``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
