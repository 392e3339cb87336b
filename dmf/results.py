"""``dmf.load``: a stored result back as its object, and the result types
by their public path (``dmf.results.SVDResult``, ``NMFResult``,
``NMTFResult``).

Each result type lives beside the function that makes it (SVDResult in
:mod:`dmf.linalg.result`, NMFResult in :mod:`dmf.nmf.api`, NMTFResult in
:mod:`dmf.nmf.tri`, LatentFactors in :mod:`dmf.cf.model`), so the
algorithms import nothing from this module; :func:`load` sits above them all.
CF's types come through the lazy package :mod:`dmf.cf`, loaded only when a
CF result is (its modules bring numba).
"""

from __future__ import annotations

import os

from dmf import cf
from dmf.engine.output import read_complete_result
from dmf.errors import InputError
from dmf.linalg.result import SVDResult
from dmf.nmf.api import NMFResult
from dmf.nmf.tri import NMTFResult
from dmf.rank import _from_meta as rank_from_meta


def load(url: str | os.PathLike, *, storage_options: dict | None = None
         ) -> SVDResult | NMFResult | NMTFResult | cf.LatentFactors | cf.ItemKNN:
    """The result stored at ``url`` (written with ``out=`` or by the CLI).

    Examples
    --------
    >>> import numpy as np, dmf
    >>> X = np.diag([3.0, 2.0, 1.0])
    >>> _ = dmf.svd(X, 2, method="power", out="memory://doc/r.zarr", seed=0)
    >>> dmf.load("memory://doc/r.zarr").S.round(6).tolist()
    [3.0, 2.0]
    """
    location, meta, arrays = read_complete_result(url, storage_options)
    algorithm = meta.get("algorithm", "")
    if algorithm.startswith("svd-"):
        return SVDResult.from_arrays(arrays, algorithm[4:],
                                     SVDResult.stored_facts(meta, str(location)))
    if algorithm.startswith("nmf-"):
        return NMFResult.from_arrays(arrays, NMFResult.stored_facts(meta, str(location)))
    if algorithm.startswith("nmtf-"):
        return NMTFResult.from_arrays(arrays, NMTFResult.stored_facts(meta, str(location)))
    if algorithm.startswith("rank-"):
        return rank_from_meta(location, meta, arrays)
    if algorithm in ("cf-knn", "cf-user-knn"):
        return cf.knn_store.load_knn(location, meta)
    if algorithm.startswith("cf-"):
        return cf.LatentFactors.from_arrays(arrays, meta, location=str(location))
    raise InputError(f"{location}: results of {algorithm!r} cannot be loaded by this "
                     "version of dmf")


__all__ = ["NMFResult", "NMTFResult", "SVDResult", "load"]
