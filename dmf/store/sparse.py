"""Sparse matrices in Zarr: the anndata on-disk CSR encoding.

(Stub: filled in by the ingest/sparse work.)
"""

from __future__ import annotations

import dask.array as da
import scipy.sparse


def is_csr_group(group) -> bool:
    return dict(group.attrs).get("encoding-type") == "csr_matrix"


def is_sparse_dask(x) -> bool:
    return isinstance(x, da.Array) and scipy.sparse.issparse(x._meta)


def open_csr(group, location):
    raise NotImplementedError


def save_csr(x, location, *, overwrite=False, codec=None, attrs=None):
    raise NotImplementedError
