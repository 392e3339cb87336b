"""The base of every fitted result type (SVDResult, NMFResult, NMTFResult,
LatentFactors): the facts of the iterative run that made it, and how they
are read from a finished run or from a stored result's ``attrs["dmf"]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from dmf.engine.driver import RunResult


@dataclass(kw_only=True)
class FittedRun:
    """What a fit records besides its arrays (keyword-only fields, after
    each result type's own).

    Attributes
    ----------
    n_iter : int
        Iterations (steps, epochs) that made the result.
    loss_history : list of float
        What the method measured after each iteration.
    converged : bool
    location : str or None
        Where the result is stored, if it is.
    attrs : dict
        Parameters, timings, fingerprint and the method's own facts.
    """

    #: The ``attrs`` entry that counts the iterations which made the
    #: returned factors, where it differs from the run's step count (NMF:
    #: mu stopped by ``tol`` reads X once more); None: the step count.
    n_iter_attr: ClassVar[str | None] = None

    n_iter: int = 0
    loss_history: list[float] = field(default_factory=list)
    converged: bool = True
    location: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def run_facts(cls, run: RunResult) -> dict[str, Any]:
        """The keyword arguments of these fields for the result of ``run``."""
        attrs = run.attrs()
        n_iter = attrs.get(cls.n_iter_attr, run.n_iter) if cls.n_iter_attr else run.n_iter
        return {"n_iter": int(n_iter), "loss_history": run.loss_history,
                "converged": run.converged, "location": run.url, "attrs": attrs}

    @classmethod
    def stored_facts(cls, meta: dict[str, Any], location: str | None) -> dict[str, Any]:
        """The keyword arguments of these fields for a stored result whose
        ``attrs["dmf"]`` is ``meta``."""
        n_iter = meta.get("n_iter", 0)
        if cls.n_iter_attr:
            n_iter = meta.get(cls.n_iter_attr, n_iter)
        return {"n_iter": int(n_iter), "loss_history": list(meta.get("loss_history", [])),
                "converged": bool(meta.get("converged", True)), "location": location,
                "attrs": meta}
