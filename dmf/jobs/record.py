"""The job's output store: its run records and what each step last made.

The root of a job is a Zarr group whose ``attrs["dmf"]`` holds::

    kind: job          job: NAME
    steps: {NAME: {identity, fingerprint, status, out, finished, facts}}
    runs: [the last RUNS_KEPT run records, newest last]

Each step's result lives beside, as ``ROOT/NAME`` (unless the step says
``out:``). A run record holds the start and end, the per-step actions and
timings, the versions of dmf and its libraries, the scheduler, and the exit
status.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import socket
from datetime import UTC, datetime
from typing import Any

import zarr

from dmf._version import __version__
from dmf.errors import CheckpointMismatch, StoreError
from dmf.store.location import Location, dmf_attrs
from dmf.wording import printed_path

RUNS_KEPT = 20


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    """Versions of what computed a result (for the run record), read from the
    installed packages' metadata: importing Dask here would cost a job whose
    steps are all complete a second."""
    found = {"dmf": __version__}
    for name in ("dask", "distributed", "zarr", "numpy", "scipy", "fsspec"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - dependencies
            found[name] = "unknown"
    found["python"] = platform.python_version()
    return found


class JobRoot:
    """The root group of a job (created on first use)."""

    def __init__(self, location: Location, job: str):
        self.location = location
        self.job = job

    def check(self) -> None:
        """Refuse a root that holds something else or another job's output."""
        if not self.location.exists():
            return
        if not self.location.join("zarr.json").exists():
            fs, path = self.location.filesystem()
            try:
                names = fs.ls(path, detail=False)
            except (FileNotFoundError, NotADirectoryError):
                names = [path]
            if any(not n.rstrip("/").rsplit("/", 1)[-1].startswith("dmf-lock.json")
                   for n in names):
                raise StoreError(f"{self.location}: exists and is not the output of a dmf "
                                 "job; choose another root")
            return
        meta = dmf_attrs(self.location.open_node())
        if meta.get("kind") != "job":
            raise StoreError(f"{self.location}: holds a {meta.get('kind', 'Zarr store')}, not "
                             "the output of a dmf job; choose another root")
        if meta.get("job") != self.job:
            raise CheckpointMismatch(f"{self.location}: holds the output of job "
                                     f"{meta.get('job')!r}, not {self.job!r}; choose "
                                     "another root")

    def _group(self) -> zarr.Group:
        return zarr.open_group(store=self.location.zarr_store(), mode="a", zarr_format=3)

    def meta(self) -> dict[str, Any]:
        if not self.location.join("zarr.json").exists():
            return {"kind": "job", "job": self.job, "steps": {}, "runs": []}
        return dmf_attrs(self.location.open_node())

    def save(self, meta: dict[str, Any]) -> None:
        self._group().update_attributes({"dmf": json.loads(json.dumps(meta, default=str))})

    def step_record(self, name: str) -> dict[str, Any] | None:
        return self.meta().get("steps", {}).get(name)

    def set_step(self, name: str, record: dict[str, Any]) -> None:
        meta = self.meta()
        meta.setdefault("steps", {})[name] = record
        self.save(meta)

    def add_run(self, run: dict[str, Any]) -> None:
        meta = self.meta()
        runs = [r for r in meta.get("runs", []) if r.get("run_id") != run["run_id"]]
        meta["runs"] = [*runs, run][-RUNS_KEPT:]
        self.save(meta)


def new_run(spec, scheduler: str | None) -> dict[str, Any]:
    return {"run_id": hashlib.sha256(f"{now()} {socket.gethostname()} {id(spec)}".encode())
            .hexdigest()[:12],
            "job": spec.job, "spec": spec.path, "spec_sha256": spec.sha256,
            "started": now(), "ended": None, "seconds": None, "status": "running",
            "exit_code": None, "error": None, "host": socket.gethostname(),
            "scheduler": scheduler, "versions": versions(), "steps": []}


def format_summary(run: dict[str, Any]) -> str:
    """The run record as the table ``dmf run`` prints at the end."""
    lines = [f"job {run['job']}: {run['status']} in {run['seconds'] or 0:.1f} s "
             f"(exit {run['exit_code']}, scheduler {run['scheduler'] or 'none'})"]
    width = max([len(s["name"]) for s in run["steps"]] + [4])
    for step in run["steps"]:
        where = f"  {printed_path(step['out'])}" if step.get("out") else ""
        tries = f", {step['attempts']} tries" if step.get("attempts", 1) > 1 else ""
        lines.append(f"  {step['name']:<{width}}  {step['action']:<9} "
                     f"{step.get('seconds') or 0:7.1f} s{tries}{where}")
    if run.get("error"):
        lines.append(f"  error: {run['error']}")
    return "\n".join(lines)
