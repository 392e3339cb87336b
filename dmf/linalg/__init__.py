"""The SVD family."""

from dmf.linalg.svd import svd

__all__ = ["svd"]
