"""The ``report`` step: a Markdown page of what a job's steps made, and
the HTML page of :mod:`dmf.report` (figures inline) beside it.

It is written from the stores' own metadata (no pass over any matrix): for
each step its action and time in the last run, and its result's shape,
algorithm, iterations, final loss, singular values, or metrics.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import dmf
from dmf import store
from dmf.jobs.record import JobRoot, now
from dmf.store.location import Location

KEPT = ("kind", "shape", "dtype", "nnz", "algorithm", "status", "n_iter", "final_loss")


def result_facts(url: str, storage_options: dict | None) -> dict[str, Any]:
    """The few facts of a store worth keeping in the run record.

    Examples
    --------
    >>> import numpy as np, dmf
    >>> _ = dmf.save_matrix(np.ones((3, 2)), "memory://doc/report-facts.zarr")
    >>> result_facts("memory://doc/report-facts.zarr", None)
    {'kind': 'dense', 'shape': [3, 2], 'dtype': 'float64'}
    """
    facts = store.info.describe(url, storage_options=storage_options)
    kept = {k: facts[k] for k in KEPT if facts.get(k) is not None}
    if facts.get("kind") == "result":
        result = dmf.load(url, storage_options=storage_options)
        values = getattr(result, "S", None)
        if values is not None:
            kept["singular_values"] = [float(v) for v in values[:10]]
        ratio = getattr(result, "explained_variance_ratio_", None)
        if ratio is not None:
            kept["explained_variance_ratio"] = round(float(sum(ratio)), 6)
        err = getattr(result, "reconstruction_err_", None)
        if err is not None:
            kept["reconstruction_err"] = float(err)
    return kept


def write_report(root: JobRoot, step, url: str, storage_options: dict | None) -> None:
    """Write the Markdown report of ``step.params["steps"]`` to ``url``."""
    meta = root.meta()
    run = (meta.get("runs") or [{}])[-1]
    done = {s["name"]: s for s in run.get("steps", [])}
    lines = [f"# {meta.get('job')}: report", "",
             f"Written {now()} by run {run.get('run_id')} (started {run.get('started')}, "
             f"scheduler {run.get('scheduler')}).", "",
             "| step | kind | this run | seconds | result |", "|---|---|---|---|---|"]
    for name in step.params["steps"]:
        entry = done.get(name, {})
        stored = meta.get("steps", {}).get(name, {})
        lines.append(f"| {name} | {entry.get('kind', '')} | {entry.get('action', '')} | "
                     f"{entry.get('seconds', '')} | {stored.get('out') or ''} |")
    for name in step.params["steps"]:
        stored = meta.get("steps", {}).get(name, {})
        facts = stored.get("facts") or {}
        if not facts:
            continue
        lines += ["", f"## {name}", ""]
        for key, value in facts.items():
            if isinstance(value, dict):
                lines.append(f"- `{key}`")
                lines += [f"  - {k}: {dmf.report.show(v)}" for k, v in value.items()]
            else:
                lines.append(f"- {key}: {dmf.report.show(value)}")
    versions = run.get("versions") or {}
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    _write_text(Location.parse(url, storage_options), "\n".join(lines))
    if url.endswith(".md"):  # and the page with figures (dmf report ROOT) beside it
        page = dmf.report.build(root.location.url, storage_options=storage_options)
        _write_text(Location.parse(url[:-3] + ".html", storage_options), page.render())


def _write_text(location: Location, text: str) -> None:
    """Replace the file at ``location`` whole (a reader never sees half)."""
    if location.is_local:
        os.makedirs(os.path.dirname(os.path.abspath(location.url)), exist_ok=True)
        tmp = f"{location.url}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, location.url)
        return
    fs, path = location.filesystem()
    fs.pipe_file(path, text.encode())  # one object PUT: whole or absent
