"""Zarr I/O for dmf: dense and sparse matrices, ingest, synthetic data."""

from dmf.store.api import open_matrix, save_matrix
from dmf.store.location import Location

__all__ = ["Location", "open_matrix", "save_matrix"]
