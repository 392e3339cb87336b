"""Keeping X in memory between passes, when it fits.

An iterative method reads X once per iteration. When X fits comfortably in
the cluster's memory (``cache="auto"``: under 40% of the workers' memory
limits together, or a quarter of this machine's available memory with the
threaded scheduler), it is read from the store once and kept; otherwise it
is streamed from the store on every pass, and workers hold only a few blocks
at a time.
"""

from __future__ import annotations

import logging
import os

import dask
import dask.array as da
import numpy as np
import psutil

from dmf.engine.cluster import current_client
from dmf.engine.options import RunOptions
from dmf.store.api import as_matrix

log = logging.getLogger(__name__)

CLUSTER_FRACTION = 0.4
LOCAL_FRACTION = 0.25


def memory_budget() -> int:
    """Bytes X may take when cached."""
    client = current_client()
    if client is None:
        return int(psutil.virtual_memory().available * LOCAL_FRACTION)
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return int(sum(w.get("memory_limit") or 0 for w in workers) * CLUSTER_FRACTION)


def numpy_input(X, cache: bool | str, out) -> tuple[bool | str, str | None]:
    """For a numpy X: no cached copy (it is in memory already, a copy would
    double it) and, when the job is stored, a token of the content for its
    fingerprint (the dask name of an array made from memory is random).
    Anything else: ``cache`` as given and no token."""
    if not isinstance(X, np.ndarray):
        return cache, None
    return False, ("ndarray-" + dask.base.tokenize(X)) if out is not None else None


def run_input(X, options: RunOptions) -> tuple[da.Array, bool | str, str | None, str]:
    """X as the dask array a method runs on (opened with the options'
    storage options), whether to cache it, its content token (see
    :func:`numpy_input`) and its name for messages (the URL, or "input
    matrix")."""
    name = str(X) if isinstance(X, (str, os.PathLike)) else "input matrix"
    cache, token = numpy_input(X, options.cache, options.out)
    return as_matrix(X, storage_options=options.storage_options), cache, token, name


def cache_input(X: da.Array, cache: bool | str = "auto") -> da.Array:
    """X persisted in memory if ``cache`` is True, or "auto" and it fits."""
    if cache not in (True, False, "auto"):
        raise ValueError(f"cache must be True, False or 'auto', got {cache!r}")
    if cache is False:
        return X
    nbytes = X.nbytes if not hasattr(X._meta, "nnz") else 0  # sparse: unknown size
    if cache == "auto" and (nbytes == 0 or nbytes > memory_budget()):
        log.info("streaming X from the store on every pass (%d bytes)", X.nbytes)
        return X
    log.info("caching X in memory (%d bytes)", X.nbytes)
    return X.persist()
