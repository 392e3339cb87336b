"""What is in a store: the facts ``dmf info`` prints."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import zarr

from dmf.store import codecs
from dmf.store.location import Location, dmf_attrs
from dmf.wording import plural


def describe(url: str | os.PathLike, *, storage_options: dict | None = None) -> dict[str, Any]:
    """A dict describing the store at ``url``: its kind (dense, sparse,
    result, group), shape, dtype, chunks, codec, stored and logical bytes; for
    a result its algorithm, status, iterations and final loss.

    Examples
    --------
    >>> import numpy as np, dmf
    >>> _ = dmf.save_matrix(np.zeros((4, 2), "float32"), "memory://doc/info.zarr")
    >>> d = describe("memory://doc/info.zarr")
    >>> d["kind"], d["shape"], d["dtype"], d["logical_bytes"]
    ('dense', [4, 2], 'float32', 32)
    """
    location = Location.parse(url, storage_options)
    node = location.open_node()
    meta = dmf_attrs(node)
    facts: dict[str, Any] = {"url": str(location), "zarr_format": node.metadata.zarr_format}
    if isinstance(node, zarr.Array):
        facts.update(kind="dense", **_array_facts(node))
    elif dict(node.attrs).get("encoding-type") == "csr_matrix":
        # a ratings store is a CSR store with a CSC twin, ids and times
        facts.update(kind="ratings" if meta.get("kind") == "ratings" else "sparse",
                     **_sparse_facts(node))
        if "csc" in node:
            facts["twin"] = "csc (by item)"
        if "timestamps" in node:
            facts["timestamps"] = True
    elif meta.get("kind") == "result":
        facts.update(kind="result", **_result_facts(node, meta))
    elif meta.get("kind") == "job":
        facts.update(kind="job", **_job_facts(meta))
    else:
        facts.update(kind=meta.get("kind", "group"), arrays=_members(node))
    facts["stored_bytes"] = location.size_on_store()
    if facts.get("logical_bytes"):
        ratio = facts["logical_bytes"] / max(facts["stored_bytes"], 1)
        facts["compression_ratio"] = round(ratio, 3)
    if "complete" in meta:
        facts["complete"] = bool(meta["complete"])
    for key in ("generator", "source_dtype", "source"):
        if key in meta:
            facts[key] = meta[key]
    return facts


def _array_facts(arr: zarr.Array) -> dict[str, Any]:
    return {
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
        "chunks": list(arr.chunks),
        "codec": codecs.describe(arr.compressors),
        "logical_bytes": int(np.prod(arr.shape, dtype=np.int64)) * arr.dtype.itemsize,
    }


def _sparse_facts(group: zarr.Group) -> dict[str, Any]:
    data, indptr = group["data"], group["indptr"]
    shape = [int(s) for s in group.attrs["shape"]]
    nnz = int(indptr[-1]) if indptr.shape[0] else 0
    logical = sum(int(group[a].nbytes) for a in ("data", "indices", "indptr"))
    return {
        "shape": shape,
        "dtype": str(data.dtype),
        "nnz": nnz,
        "density": nnz / max(1, shape[0] * shape[1]),
        "chunks": list(data.chunks),
        "codec": codecs.describe(data.compressors),
        "logical_bytes": logical,
    }


def _members(group: zarr.Group) -> dict[str, Any]:
    with warnings.catch_warnings():
        # a job's root holds its report and lock files beside the Zarr nodes
        warnings.filterwarnings("ignore", "Object at .* is not recognized", UserWarning)
        members = sorted(group.members())
    return {
        name: {"shape": list(member.shape), "dtype": str(member.dtype)}
        for name, member in members
        if isinstance(member, zarr.Array)
    }


def _result_facts(group: zarr.Group, meta: dict[str, Any]) -> dict[str, Any]:
    history = meta.get("loss_history") or []
    return {
        "algorithm": meta.get("algorithm"),
        "status": meta.get("status"),
        "n_iter": meta.get("n_iter"),
        "final_loss": history[-1] if history else meta.get("final_loss"),
        "parameters": meta.get("parameters", {}),
        "arrays": _members(group),
        **{key: meta[key] for key in ("eigenvalues", "explained_variance_ratio",
                                     "relative_error_estimate", "method",
                                     "method_requested", "method_reason") if key in meta},
    }


def _job_facts(meta: dict[str, Any]) -> dict[str, Any]:
    """The root of a ``dmf run`` job: its last run and its steps."""
    runs = meta.get("runs") or []
    last = runs[-1] if runs else {}
    return {
        "job": meta.get("job"),
        "runs": len(runs),
        "last_run": {k: last.get(k) for k in ("status", "exit_code", "started", "ended",
                                              "seconds", "scheduler", "error")},
        "last_run_steps": [f"{s['name']} {s['action']} {s.get('seconds', 0):.1f} s"
                           for s in last.get("steps", [])],
        "steps": {name: {"status": r.get("status"), "out": r.get("out")}
                  for name, r in (meta.get("steps") or {}).items()},
    }


def format_facts(facts: dict[str, Any]) -> str:
    """Human-readable lines, one fact per line."""
    lines = []
    order = ["url", "kind", "shape", "dtype", "nnz", "density", "twin", "timestamps",
             "chunks", "codec",
             "zarr_format", "logical_bytes", "stored_bytes", "compression_ratio", "complete",
             "algorithm", "status", "n_iter", "final_loss", "source_dtype", "source"]
    for key in order:
        if key in facts:
            lines.append(f"{key:18} {_show(key, facts[key])}")
    if facts.get("kind") == "job":
        last = facts["last_run"]
        lines.append(f"{'job':18} {facts['job']} ({plural(facts['runs'], 'run')} kept)")
        lines.append(f"{'last run':18} {last['status']} (exit {last['exit_code']}), "
                     f"{last['started']} to {last['ended']}, {last['seconds']} s, "
                     f"scheduler {last['scheduler']}")
        if last.get("error"):
            lines.append(f"{'error':18} {last['error']}")
        for text in facts["last_run_steps"]:
            lines.append(f"{'  step':18} {text}")
        for name, step in facts["steps"].items():
            lines.append(f"{'result ' + name:18} {step['status']}  {step['out'] or ''}")
        return "\n".join(lines)
    for name, arr in (facts.get("arrays") or {}).items():
        lines.append(f"{'array ' + name:18} {'x'.join(map(str, arr['shape']))} {arr['dtype']}")
    for key, value in (facts.get("parameters") or {}).items():
        lines.append(f"{'param ' + key:18} {value}")
    for key in ("eigenvalues", "explained_variance_ratio"):
        if facts.get(key):
            lines.append(f"{key[:18]:18} {', '.join(f'{v:.4g}' for v in facts[key][:10])}")
    if facts.get("method_requested"):  # dmf.svd(method="auto"): what it ran, and why
        lines.append(f"{'method':18} {facts.get('method')} (chosen by "
                     f"{facts['method_requested']}: {facts.get('method_reason')})")
    if "relative_error_estimate" in facts:
        lines.append(f"{'est. rel. error':18} {facts['relative_error_estimate']:.3g}")
    gen = facts.get("generator")
    if gen:
        sv = gen.get("singular_values") or []
        shown = ", ".join(f"{s:.6g}" for s in sv[:5]) + (", ..." if len(sv) > 5 else "")
        shape_facts = (f"density={gen.get('density')} mu={gen.get('mu')}"
                       if gen.get("kind") == "ratings" else
                       f"nonnegative={gen.get('nonnegative')} decay={gen.get('decay', 1.0)}")
        lines.append(f"{'generator':18} {gen.get('kind')} rank={gen.get('rank')} "
                     f"noise={gen.get('noise')} seed={gen.get('seed')} {shape_facts}")
        if sv:
            lines.append(f"{'true singular vals':18} {shown}")
        if gen.get("factors"):
            lines.append(f"{'planted factors':18} {gen['factors']} (beside this store)")
    return "\n".join(lines)


def _show(key: str, value: Any) -> str:
    if key in ("shape", "chunks"):
        return " x ".join(str(v) for v in value)
    if key.endswith("_bytes"):
        return f"{value:,} ({_human(value)})"
    if key == "density":
        return f"{value:.3g}"
    return str(value)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)  # pragma: no cover
