"""Running a latent-factor solver on the engine and returning its model."""

from __future__ import annotations

import os
from typing import Any

from dmf.cf.data import Ratings
from dmf.cf.model import LatentFactors
from dmf.engine.driver import Solver, run


def fit_model(solver: Solver, ratings: Ratings, *, seed: int | None, max_iter: int, tol: float,
              out: str | os.PathLike | None = None, storage_options: dict | None = None,
              checkpoint_every: int | None = None, checkpoint_seconds: float | None = None,
              resume: bool = True, damaged_checkpoints: str = "start-over",
              progress: bool | None = None,
              callback=None) -> LatentFactors:
    """``solver`` on the engine over ``ratings`` (the by-user view is the
    engine's X; the content token identifies the input): progress,
    checkpoints, resume and the output lock come from there."""
    options: dict[str, Any] = {"out": out, "storage_options": storage_options,
                               "checkpoint_every": checkpoint_every,
                               "checkpoint_seconds": checkpoint_seconds, "resume": resume,
                               "damaged_checkpoints": damaged_checkpoints,
                               "progress": progress, "callback": callback}
    result = run(solver, ratings.by_user, seed=seed, max_iter=max_iter, tol=tol,
                 input_token=ratings.token, **options)
    return LatentFactors.from_run(result)
