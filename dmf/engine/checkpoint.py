"""Checkpoints of a solver's state, written so that a crash never tears one.

Layout, inside the job's output group::

    OUT/checkpoints/                group; attrs["dmf"]["latest"] is the pointer
    OUT/checkpoints/ckpt-00000010/  one checkpoint: a group of arrays, attrs hold
                                    iteration, RNG state, loss history, scalars,
                                    the job's identity, complete

A checkpoint is written completely (arrays, then its attrs with
``complete: true``) before the pointer is moved to it; the pointer is one
small metadata document, replaced atomically (a rename on local disks, one
PUT on object stores). A crash at any moment leaves the pointer on the
previous complete checkpoint. Older checkpoints, and any partial one a crash
left behind, are pruned after the pointer moves.

Every array of a checkpoint carries a CRC-32C per chunk and stores every
chunk (see :mod:`dmf.store.dense_read`). Resuming reads the newest checkpoint
whole and checks it: a checksum that fails, a missing chunk, unreadable
metadata, a directory that is gone or values that are not finite make it
skipped, with a warning naming it and why, and the previous one (``keep``
is 2 for this) is tried. When none is valid the job starts over or stops
(:class:`~dmf.errors.DamagedCheckpoint`, exit 2, nothing changed), as the
user chose (``damaged_checkpoints``, :data:`dmf.engine.options.DAMAGED_CHOICES`). Pruning
keeps the checkpoint just written, so the last valid one is never deleted.

Dask arrays in the state (tall factors) are written by the workers, block by
block, and come back as lazy arrays read from the checkpoint: this also cuts
their task lineage, so the scheduler's memory does not grow with the
iteration count.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr

from dmf.engine.faults import failpoint
from dmf.engine.identity import FINGERPRINT, IDENTITY, recorded
from dmf.engine.options import check_damaged_choice
from dmf.errors import DamagedCheckpoint, DmfWarning, warn
from dmf.store.dense_read import open_dense, read_whole
from dmf.store.dense_write import checked_array_options
from dmf.store.dims import group_dimension_names
from dmf.store.location import Location, one_line

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d{8})$")

class Incomplete(ValueError):
    """A checkpoint whose writer stopped before marking it complete."""


@dataclass
class Checkpoint:
    """What a checkpoint restores."""

    iteration: int
    state: dict[str, Any]
    rng_state: dict[str, Any]
    history: list[float]
    #: What the checkpoint recorded of its job (:func:`dmf.engine.identity.recorded`).
    recorded: dict[str, Any]
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

    def __init__(self, location: Location, *, keep: int = 2,
                 fence: Callable[[], None] | None = None):
        self.location = location
        self.keep = max(1, int(keep))
        #: Called before anything is written; raises if this job may no
        #: longer write here (the output lock's check).
        self.fence = fence or (lambda: None)

    # -- pointer ------------------------------------------------------------
    def _root(self, *, create: bool = False) -> zarr.Group | None:
        if create:
            try:
                return zarr.open_group(store=self.location.zarr_store(), mode="a",
                                       zarr_format=3)
            except Exception:  # noqa: BLE001 - a damaged pointer document: write it anew
                self.location.join("zarr.json").remove()
                return zarr.open_group(store=self.location.zarr_store(), mode="a",
                                       zarr_format=3)
        if not self.location.join("zarr.json").exists():
            return None
        return zarr.open_group(store=self.location.zarr_store(read_only=True), mode="r")

    def _pointer(self) -> str | None:
        root = self._root()
        if root is None:
            return None
        return dict(root.attrs).get("dmf", {}).get("latest")

    # -- reading ------------------------------------------------------------
    def latest(self, *, verify: bool = True,
               damaged: str = "start-over") -> Checkpoint | None:
        """The newest valid checkpoint: the pointer's, else (with a warning
        naming what was skipped and why) the newest older one that is valid;
        None when there is none.

        ``verify`` reads the tall arrays through once to check their
        checksums (the small ones are always read). ``damaged``: when there
        are checkpoints but none is valid, ``"start-over"`` warns and returns
        None, ``"stop"`` raises DamagedCheckpoint naming what was skipped.
        """
        skipped = []
        try:
            pointer = self._pointer()
        except Exception as exc:  # noqa: BLE001 - any damage to the pointer's document
            pointer = None
            skipped.append(f"the pointer ({one_line(exc)})")
        names = self.names()
        candidates = [n for n in reversed(names) if pointer is None or n < pointer]
        if pointer is not None:
            candidates.insert(0, pointer)
        elif not skipped and not names:
            return None
        for name in candidates:
            try:
                found = self.load(name, verify=verify)
            except Incomplete:
                if name != pointer:  # a write a kill stopped before the pointer moved
                    continue  # to it: not damage (the pointer moves only to complete ones)
                skipped.append(f"{name} (incomplete, yet the pointer is on it)")
                continue
            except Exception as exc:  # noqa: BLE001 - any failure means: not this one
                skipped.append(f"{name} ({one_line(exc)})")
                continue
            if skipped:
                _warn_skipped(self.location, skipped, f"resuming from {name}")
            return found
        if skipped and check_damaged_choice(damaged) == "stop":
            raise DamagedCheckpoint(
                f"{self.location}: no valid checkpoint is left (skipped {'; '.join(skipped)}); "
                "stopped as asked (damaged checkpoints: stop), nothing changed; "
                "--damaged-checkpoints start-over (damaged_checkpoints='start-over') or "
                "--no-resume starts over")
        if skipped:
            _warn_skipped(self.location, skipped, "no valid checkpoint is left; starting over")
        return None

    def just_written(self) -> Checkpoint:
        """The pointer's checkpoint, which this process has just written:
        not read through again, and no falling back."""
        return self.load(self._pointer(), verify=False)

    def load(self, name: str, *, verify: bool = True) -> Checkpoint:
        """The checkpoint ``name``; raises if it is incomplete or damaged."""
        where = self.location.join(name)
        group = zarr.open_group(store=where.zarr_store(read_only=True), mode="r")
        meta = dict(group.attrs).get("dmf", {})
        if meta.get("complete") is not True:
            raise Incomplete("incomplete: its writer stopped before finishing it")
        state: dict[str, Any] = dict(meta["scalars"])
        for key, kind in meta["arrays"].items():
            arr = group[key]
            if kind == "dask":
                lazy = open_dense(arr, where.join(key))
                if verify:  # every chunk read once: checksums, missing chunks, NaN
                    _check_finite(bool(da.isfinite(lazy).all().compute()), key)
                state[key] = lazy.rechunk(tuple(tuple(c) for c in meta["chunks"][key]))
            else:
                state[key] = read_whole(arr, where.join(key))
                if state[key].dtype.kind == "f":
                    _check_finite(bool(np.isfinite(state[key]).all()), key)
        return Checkpoint(
            iteration=int(meta["iteration"]),
            state=state,
            rng_state=meta["rng_state"],
            history=[float(h) for h in meta["history"]],
            recorded={k: meta[k] for k in (IDENTITY, FINGERPRINT) if k in meta},
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
        identity: dict[str, Any],
    ) -> str:
        self.fence()
        name = f"ckpt-{iteration:08d}"
        where = self.location.join(name)
        where.remove()  # the remains of a crash while writing this very one
        self._root(create=True)
        group = zarr.open_group(store=where.zarr_store(), mode="w", zarr_format=3)
        arrays, chunks, scalars, pending = {}, {}, {}, []
        dims = group_dimension_names({key: value.shape for key, value in state.items()
                                      if isinstance(value, (da.Array, np.ndarray))})
        for key, value in state.items():
            if isinstance(value, da.Array):
                target = group.create_array(key, shape=value.shape, dtype=value.dtype,
                                            chunks=tuple(max(c) for c in value.chunks),
                                            fill_value=0, dimension_names=dims[key],
                                            **checked_array_options())
                pending.append(da.store(value.rechunk(target.chunks), target, lock=False,
                                        compute=False))
                arrays[key], chunks[key] = "dask", [list(c) for c in value.chunks]
            elif isinstance(value, np.ndarray):
                group.create_array(key, data=value, chunks=value.shape or None,
                                   dimension_names=dims[key], **checked_array_options())
                arrays[key] = "numpy"
            else:
                scalars[key] = jsonable(value)
        if pending:
            dask.compute(*pending)
        failpoint("checkpoint-arrays")
        group.update_attributes({"dmf": {
            "iteration": iteration, "arrays": arrays, "chunks": chunks, "scalars": scalars,
            "rng_state": jsonable(rng_state), "history": [float(h) for h in history],
            **recorded(identity), "complete": True,
        }})
        failpoint("checkpoint-complete")
        self.fence()
        # The pointer moves last: up to here the previous checkpoint is the valid one.
        self._root(create=True).update_attributes(
            {"dmf": {"latest": name, "iteration": iteration}})
        failpoint("checkpoint-pointer")
        self.prune()
        log.debug("checkpoint %s written", name)
        return name

    def prune(self) -> None:
        """Keep the newest ``keep`` checkpoints up to the pointer; drop the
        rest, including partial ones newer than the pointer. Called after
        the pointer moved to the checkpoint just written, which is kept."""
        latest = self._pointer()
        if latest is None:
            return  # never delete what a lost pointer might have to fall back on
        names = self.names()
        valid = [n for n in names if latest is not None and n <= latest]
        keep = set(valid[-self.keep:])
        for n in names:
            if n not in keep:
                self.location.join(n).remove()

    def clear(self) -> None:
        self.location.remove()


def _check_finite(finite: bool, key: str) -> None:
    if not finite:
        raise ValueError(f"{key} holds NaN or Inf")


def _warn_skipped(location: Location, skipped: list[str], outcome: str) -> None:
    message = f"{location}: skipped damaged checkpoint data: {'; '.join(skipped)}; {outcome}"
    warn(message, DmfWarning)
