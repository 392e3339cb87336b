"""Checks of the CF solvers' inputs, each failing with an InputError that
says how to fix it."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from dmf.cf.data import Ratings, as_ratings
from dmf.cf.passes import rating_facts
from dmf.errors import InputError
from dmf.linalg.svd import check_k


def number(value, name: str, *, low: float = 0.0, strict: bool = False) -> float:
    """``value`` (a Python or numpy number, as the estimators' tables
    accept) as a float >= low (> low when ``strict``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not (
            value > low if strict else value >= low):
        raise InputError(f"{name} must be a number {'>' if strict else '>='} {low:g}, "
                         f"got {value!r}")
    return float(value)


def integer(value, name: str, *, low: int = 1) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or value.__index__() < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    return value.__index__()


def checked_ratings(R, k, *, storage_options: dict | None = None,
                    nonnegative: str | None = None) -> tuple[Ratings, int, dict[str, Any]]:
    """The ratings, k, and their facts (mean, count...) from one pass over
    the rating values; refuses no ratings, NaN/Inf, and negative ratings
    when ``nonnegative`` names the reason they are not allowed."""
    ratings = as_ratings(R, storage_options=storage_options)
    k = check_k(k, ratings.shape)
    facts = rating_facts(ratings.by_user)
    name = str(ratings.location) if ratings.location is not None else "ratings"
    if facts["count"] == 0:
        raise InputError(f"{name}: no ratings are stored; a model needs at least one")
    if facts["nonfinite"]:
        raise InputError(f"{name}: {int(facts['nonfinite'])} NaN or Inf ratings; drop or fix "
                         "them before fitting")
    if nonnegative and facts["min"] < 0:
        raise InputError(f"{name}: negative ratings (min {facts['min']:g}); {nonnegative}")
    return ratings, k, facts
