"""Zarr I/O for dmf: dense and sparse matrices, ingest, synthetic data.

The names below load on first use (PEP 562), so that a module needing only
one light part of the store (the CLI's error translation in
:mod:`dmf.store.failures`, the job runner's :class:`Location`) imports
neither Zarr nor Dask's array package through this package.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ loads these
    from dmf.store.api import open_matrix, save_matrix
    from dmf.store.location import Location

_PUBLIC = {"Location": "dmf.store.location", "open_matrix": "dmf.store.api",
           "save_matrix": "dmf.store.api"}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'dmf.store' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


__all__ = ["Location", "open_matrix", "save_matrix"]
