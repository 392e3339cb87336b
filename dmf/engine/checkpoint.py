"""Checkpoints of a solver's state, written so that a crash never tears one.

Layout, inside the job's output group::

    OUT/checkpoints/                group; attrs["dmf"]["latest"] is the pointer
    OUT/checkpoints/ckpt-00000010/  one checkpoint: a group of arrays, attrs hold
                                    iteration, RNG state, loss history, scalars,
                                    fingerprint, complete

A checkpoint is written completely (arrays, then its attrs with
``complete: true``) before the pointer is moved to it; the pointer is one
small metadata document, replaced atomically (a rename on local disks, one
PUT on object stores). A crash at any moment leaves the pointer on the
previous complete checkpoint. Older checkpoints, and any partial one a crash
left behind, are pruned after the pointer moves.

Dask arrays in the state (tall factors) are written by the workers, block by
block, and come back as lazy arrays read from the checkpoint: this also cuts
their task lineage, so the scheduler's memory does not grow with the
iteration count.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr

from dmf.engine.faults import failpoint
from dmf.store.dense import open_dense
from dmf.store.location import Location

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d{8})$")


@dataclass
class Checkpoint:
    """What a checkpoint restores."""

    iteration: int
    state: dict[str, Any]
    rng_state: dict[str, Any]
    history: list[float]
    fingerprint: dict[str, Any]
    name: str


def jsonable(value: Any) -> Any:
    """Plain Python for JSON attrs; floats keep every bit (repr round-trips)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class Checkpoints:
    """The checkpoints of one output.

    Examples
    --------
    >>> import numpy as np
    >>> ck = Checkpoints(Location.parse("memory://doc/job/checkpoints"))
    >>> rng = np.random.default_rng(0)
    >>> ck.save(3, {"v": np.arange(3.0), "j": 1}, rng.bit_generator.state, [0.5, 0.25], {})
    'ckpt-00000003'
    >>> latest = ck.latest()
    >>> latest.iteration, latest.state["j"], latest.state["v"].tolist()
    (3, 1, [0.0, 1.0, 2.0])
    """

    def __init__(self, location: Location, *, keep: int = 2):
        self.location = location
        self.keep = max(1, int(keep))

    # -- pointer ------------------------------------------------------------
    def _root(self, *, create: bool = False) -> zarr.Group | None:
        if create:
            return zarr.open_group(store=self.location.zarr_store(), mode="a", zarr_format=3)
        if not self.location.join("zarr.json").exists():
            return None
        return zarr.open_group(store=self.location.zarr_store(read_only=True), mode="r")

    def _pointer(self) -> str | None:
        root = self._root()
        if root is None:
            return None
        return dict(root.attrs).get("dmf", {}).get("latest")

    # -- reading ------------------------------------------------------------
    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint, or None."""
        name = self._pointer()
        if name is None:
            return None
        return self.load(name)

    def load(self, name: str) -> Checkpoint:
        where = self.location.join(name)
        group = zarr.open_group(store=where.zarr_store(read_only=True), mode="r")
        meta = dict(group.attrs)["dmf"]
        state: dict[str, Any] = dict(meta["scalars"])
        for key, kind in meta["arrays"].items():
            arr = group[key]
            if kind == "dask":
                lazy = open_dense(arr, where.join(key))
                state[key] = lazy.rechunk(tuple(tuple(c) for c in meta["chunks"][key]))
            else:
                state[key] = arr[...]
        return Checkpoint(
            iteration=int(meta["iteration"]),
            state=state,
            rng_state=meta["rng_state"],
            history=[float(h) for h in meta["history"]],
            fingerprint=meta["fingerprint"],
            name=name,
        )

    def names(self) -> list[str]:
        fs, path = self.location.filesystem()
        try:
            entries = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        found = [e.rstrip("/").rsplit("/", 1)[-1] for e in entries]
        return sorted(n for n in found if _NAME.match(n))

    # -- writing ------------------------------------------------------------
    def save(
        self,
        iteration: int,
        state: dict[str, Any],
        rng_state: dict[str, Any],
        history: list[float],
        fingerprint: dict[str, Any],
    ) -> str:
        name = f"ckpt-{iteration:08d}"
        where = self.location.join(name)
        where.remove()  # the remains of a crash while writing this very one
        self._root(create=True)
        group = zarr.open_group(store=where.zarr_store(), mode="w", zarr_format=3)
        arrays, chunks, scalars, pending = {}, {}, {}, []
        for key, value in state.items():
            if isinstance(value, da.Array):
                target = group.create_array(key, shape=value.shape, dtype=value.dtype,
                                            chunks=tuple(max(c) for c in value.chunks),
                                            fill_value=0)
                pending.append(da.store(value.rechunk(target.chunks), target, lock=False,
                                        compute=False))
                arrays[key], chunks[key] = "dask", [list(c) for c in value.chunks]
            elif isinstance(value, np.ndarray):
                group.create_array(key, data=value, chunks=value.shape or None)
                arrays[key] = "numpy"
            else:
                scalars[key] = jsonable(value)
        if pending:
            dask.compute(*pending)
        failpoint("checkpoint-arrays")
        group.update_attributes({"dmf": {
            "iteration": iteration, "arrays": arrays, "chunks": chunks, "scalars": scalars,
            "rng_state": jsonable(rng_state), "history": [float(h) for h in history],
            "fingerprint": jsonable(fingerprint), "complete": True,
        }})
        failpoint("checkpoint-complete")
        # The pointer moves last: up to here the previous checkpoint is the valid one.
        self._root(create=True).update_attributes(
            {"dmf": {"latest": name, "iteration": iteration}})
        failpoint("checkpoint-pointer")
        self.prune()
        log.debug("checkpoint %s written", name)
        return name

    def prune(self) -> None:
        """Keep the newest ``keep`` checkpoints up to the pointer; drop the
        rest, including partial ones newer than the pointer."""
        latest = self._pointer()
        names = self.names()
        valid = [n for n in names if latest is not None and n <= latest]
        keep = set(valid[-self.keep:])
        for n in names:
            if n not in keep:
                self.location.join(n).remove()

    def clear(self) -> None:
        self.location.remove()
