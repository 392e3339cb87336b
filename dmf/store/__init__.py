"""Zarr I/O for dmf: dense and sparse matrices, ingest, synthetic data.

Its public names (``__init__.pyi``) load on first use (PEP 562), so that a module needing only
one light part of the store (the CLI's error translation in
:mod:`dmf.store.failures`, the job runner's :class:`Location`) imports
neither Zarr nor Dask's array package through this package.
"""

from dmf.lazy import attach

# The public names are listed once, in __init__.pyi.
__getattr__, __dir__, __all__ = attach(__name__, __file__)
