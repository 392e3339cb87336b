"""Zarr I/O for dmf: dense and sparse matrices, ingest, synthetic data.

``open_matrix`` and ``save_matrix`` load on first use (PEP 562), so that a
module needing only :class:`Location` (the job runner, the lock) does not
import Dask's array package.
"""

from typing import TYPE_CHECKING, Any

from dmf.store.location import Location

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ loads these
    from dmf.store.api import open_matrix, save_matrix


def __getattr__(name: str) -> Any:
    if name in ("open_matrix", "save_matrix"):
        from dmf.store import api  # Dask's array package: on first use only (see above)

        return getattr(api, name)
    raise AttributeError(f"module 'dmf.store' has no attribute {name!r}")


__all__ = ["Location", "open_matrix", "save_matrix"]
