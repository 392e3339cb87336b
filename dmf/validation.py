"""Input checks and tags shared by dmf's scikit-learn-style classes.

:mod:`dmf.estimators` (``NMF``, ``TruncatedSVD``) and the matrix mode of
the collaborative-filtering classes (``dmf.cf.ALS``, ``SGD``, ``ItemKNN``
with ``input="matrix"``) validate in-memory input the way scikit-learn's
``check_array`` does, with its wording, so that scikit-learn's estimator
checks accept dmf's errors; they are :class:`~dmf.errors.InputError`, a
ValueError. scikit-learn itself is imported only by :func:`transformer_tags`,
which scikit-learn calls. :data:`RUN_OPTION_CONSTRAINTS` are the
constraints-table entries (:mod:`dmf.params`) of the run options the
estimators take.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from numbers import Integral
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.sparse

from dmf.engine.cluster import current_client
from dmf.engine.options import RunOptions
from dmf.errors import InputError
from dmf.params import Interval
from dmf.store.location import Location

#: In-memory input up to this size is computed with Dask's synchronous
#: scheduler (see :func:`small_input_scheduler`).
SMALL_INPUT_BYTES = 4 * 2**20
_SYNC_LOCK = threading.RLock()

#: The run options an estimator's constructor takes one by one, and its
#: ``options``, as entries of its parameter-constraints table (the values
#: themselves are checked again by :class:`~dmf.engine.options.RunOptions`).
RUN_OPTION_CONSTRAINTS: dict[str, list[Any]] = {
    "out": [str, os.PathLike, Location, None],
    "storage_options": [Mapping, None],
    "checkpoint_every": [Interval(Integral, 1, None), None],
    "progress": ["boolean", None],
    "options": [RunOptions, None],
}


def run_option_constraints(*names: str) -> dict[str, list[Any]]:
    """The entries of :data:`RUN_OPTION_CONSTRAINTS` an estimator takes."""
    return {name: RUN_OPTION_CONSTRAINTS[name] for name in names}


def is_out_of_core(X) -> bool:
    """Whether X is read lazily (a URL, a dask or a Zarr array)."""
    import zarr

    return isinstance(X, (str, os.PathLike, da.Array, zarr.Array))


def validated_array(X, name: str):
    """numpy or scipy.sparse CSR X validated as scikit-learn's check_array
    would: 2-D, non-empty, real, finite; integers, booleans and numbers held
    in object arrays become float64.

    Examples
    --------
    >>> validated_array([[1, 2], [3, 4]], "NMF").dtype
    dtype('float64')
    >>> validated_array([[1.0, float("nan")]], "NMF")
    Traceback (most recent call last):
    ...
    dmf.errors.InputError: NMF: Input contains NaN or infinity
    """
    if scipy.sparse.issparse(X):
        X = scipy.sparse.csr_matrix(X)
        if X.dtype not in (np.float32, np.float64):
            if np.iscomplexobj(X.data):
                raise InputError(f"{name}: Complex data not supported")
            X = X.astype(np.float64)
        if not np.isfinite(X.data).all():
            raise InputError(f"{name}: Input contains NaN or infinity")
        check_2d_shape(X.shape, name)
        return X
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise InputError(f"{name}: Complex data not supported")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)  # a TypeError for what is not a number, as numpy's
    if X.ndim != 2:
        raise InputError(f"{name}: Expected a 2D array, got a {X.ndim}D array of shape "
                         f"{X.shape} instead. Reshape your data with X.reshape(-1, 1) for a "
                         "single feature or X.reshape(1, -1) for a single sample")
    check_2d_shape(X.shape, name)
    if not np.isfinite(X).all():
        raise InputError(f"{name}: Input contains NaN or infinity")
    return X


def check_2d_shape(shape, name: str) -> None:
    """No samples or no features: scikit-learn's error."""
    if shape[0] == 0:
        raise InputError(f"{name}: Found array with 0 sample(s) (shape={tuple(shape)}) while "
                         "a minimum of 1 is required.")
    if shape[1] == 0:
        raise InputError(f"{name}: Found array with 0 feature(s) (shape={tuple(shape)}) while "
                         "a minimum of 1 is required.")


def check_non_negative(X, name: str) -> None:
    """Refuse negative entries of an in-memory X (the stored ones of a
    sparse X), in scikit-learn's words."""
    values = X.data if scipy.sparse.issparse(X) else X
    if values.size and values.min() < 0:
        raise InputError(f"Negative values in data passed to {name}: "
                         f"{int((values < 0).sum())} entries of X are < 0")


def check_n_features(n_features: int, expected: int, name: str) -> None:
    """X's number of columns against the fit's, in scikit-learn's words."""
    if n_features != expected:
        raise InputError(f"X has {n_features} features, but {name} is expecting "
                         f"{expected} features as input.")


@contextlib.contextmanager
def small_input_scheduler(X, in_memory: bool):
    """Dask's synchronous scheduler while fitting or transforming a small
    in-memory X, when no cluster client and no scheduler is configured.

    Such an X is one block, so the threaded scheduler has nothing to run in
    parallel, and with the few-millisecond tasks of a small matrix its
    thread hand-offs cost more than the arithmetic (about a fifth of a fit's
    time). Dask's configuration is process-wide: the lock keeps concurrent
    calls from restoring each other's setting out of order, and other
    threads computing with Dask meanwhile run synchronously too.
    """
    nbytes = X.data.nbytes if scipy.sparse.issparse(X) else getattr(X, "nbytes", 0)
    if (not in_memory or nbytes > SMALL_INPUT_BYTES or current_client() is not None
            or dask.config.get("scheduler", None) is not None):
        yield
        return
    with _SYNC_LOCK, dask.config.set(scheduler="synchronous"):
        yield


def transformer_tags(*, positive_only: bool, preserves_dtype: list[str]):
    """scikit-learn's tags of a transformer of a matrix (sparse input
    taken, no target). scikit-learn calls ``__sklearn_tags__``, and only
    then is it imported."""
    from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

    return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                transformer_tags=TransformerTags(preserves_dtype=preserves_dtype),
                input_tags=InputTags(sparse=True, allow_nan=False, positive_only=positive_only))
