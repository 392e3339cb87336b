"""Running a latent-factor solver on the engine and returning its model."""

from __future__ import annotations

from dmf.cf.data import Ratings
from dmf.cf.model import LatentFactors
from dmf.engine.driver import Solver, run
from dmf.engine.options import RunOptions


def fit_model(solver: Solver, ratings: Ratings, *, seed: int | None, max_iter: int, tol: float,
              options: RunOptions) -> LatentFactors:
    """``solver`` on the engine over ``ratings`` (the by-user view is the
    engine's X; the content token identifies the input): progress,
    checkpoints, resume and the output lock come from there."""
    result = run(solver, ratings.by_user, seed=seed, max_iter=max_iter, tol=tol,
                 options=options, input_token=ratings.token)
    return LatentFactors.from_run(result)
