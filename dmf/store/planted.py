"""What both synthetic generators (:mod:`dmf.store.generate`'s ``lowrank``,
:mod:`dmf.store.generate_ratings`'s ``ratings``) share: the keyed random
streams that make a matrix the same for a seed whatever the blocking, and
where the planted factors are written."""

from __future__ import annotations

import numpy as np

from dmf.store.location import Location


def stream(seed: int, *key: int) -> np.random.Generator:
    """The random stream of ``seed`` and ``key`` (a block's, a group's):
    independent of every other key's.

    Examples
    --------
    >>> float(stream(0, 1, 2).random()) == float(stream(0, 1, 2).random())
    True
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def factors_location(location: Location) -> Location:
    """Where a generator writes the planted factors: ``X.zarr`` ->
    ``X.factors.zarr`` beside it.

    Examples
    --------
    >>> factors_location(Location.parse("s3://bucket/X.zarr")).url
    's3://bucket/X.factors.zarr'
    """
    name = location.name
    stem = name[: -len(".zarr")] if name.endswith(".zarr") else name
    return location.sibling(f"{stem}.factors.zarr")
