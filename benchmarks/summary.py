"""A suite's summary: the markdown table of its targets or ratios, built
from its :class:`~benchmarks.harness.Result` rows (the harness's own table
of every case uses the same rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the harness imports this module
    from benchmarks.harness import Result


def by_name(results: list[Result]) -> dict[str, Result]:
    """Results keyed by their case's name (for a suite's summary)."""
    return {r.case.name: r for r in results}


def ran(*results: Result | None) -> bool:
    """Whether every one of ``results`` exists and has repetitions (its case
    did not fail): what a summary needs before it compares them."""
    return all(r is not None and bool(r.reps) for r in results)


def verdict(ok: bool | None) -> str:
    """A target's verdict: PASS, FAIL, or n/a where nothing was measured."""
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


#: The header of a summary's table of targets.
TARGETS_HEADER = ("target", "measured", "verdict")


def table_row(*cells: object) -> str:
    """One row of a markdown table."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table_head(*header: str) -> list[str]:
    """A markdown table's header row and the rule under it."""
    return [table_row(*header), "|" + "---|" * len(header)]
