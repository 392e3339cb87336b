"""A job's output group: identity, status, checkpoints, final arrays.

The output of a job is a Zarr group whose ``attrs["dmf"]`` says what made it
(algorithm, parameters, seed, input: its ``identity`` and ``fingerprint``,
:mod:`dmf.engine.identity`), and whether it is
``running`` or ``complete``. Running the same job again resumes from its
checkpoints, or does nothing when it is complete; a different job is refused
(:class:`~dmf.errors.CheckpointMismatch`, naming what differs) unless told to
start over.

Starting over where a complete result is (``resume=False``, CLI
``--no-resume``) never damages it: the new run writes its checkpoints and
result in a hidden sibling, ``.NAME.dmf-next``, swapped in only once
complete (:func:`dmf.store.dense_write.commit_target`). A run killed before that
leaves the old result whole, and the next start over clears the sibling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import zarr

from dmf._version import __version__
from dmf.engine.checkpoint import Checkpoints, jsonable
from dmf.engine.faults import failpoint
from dmf.engine.identity import difference, recorded, refusal
from dmf.engine.lock import LOCK_NAME
from dmf.errors import CheckpointMismatch, InputError, StoreError
from dmf.store.api import open_matrix
from dmf.store.dense_read import read_whole
from dmf.store.dense_write import checked_array_options, commit_target, save_dense
from dmf.store.dims import group_dimension_names
from dmf.store.location import Location, dmf_attrs

log = logging.getLogger(__name__)


class JobOutput:
    """The output group of one job."""

    def __init__(self, location: Location, *, keep: int = 2):
        self.location = location
        self.keep = keep
        #: Called before each write; raises if this job lost the output's lock.
        self.fence: Callable[[], None] = lambda: None
        self.checkpoints = self._checkpoints()
        #: Where the result goes once complete, when this run writes beside it.
        self.destination: Location | None = None

    def _checkpoints(self) -> Checkpoints:
        return Checkpoints(self.location.join("checkpoints"), keep=self.keep,
                           fence=lambda: self.fence())

    # -- inspecting ---------------------------------------------------------
    def existing_meta(self) -> dict[str, Any] | None:
        """``attrs["dmf"]`` of a result already here; None if nothing is here.

        Raises StoreError if something that is not a dmf result is here: a job
        never writes over a matrix or a foreign store.
        """
        if not self.location.exists():
            return None
        if not self.location.join("zarr.json").exists():
            if _only_lock_files(self.location):
                return None
            raise StoreError(f"{self.location}: exists and is not a dmf result; "
                             "choose another output")
        node = self.location.open_node()
        meta = dmf_attrs(node)
        if not isinstance(node, zarr.Group) or meta.get("kind") != "result":
            raise StoreError(f"{self.location}: holds a {meta.get('kind', 'Zarr store')}, "
                             "not a dmf result; choose another output")
        return meta

    def check_job(self, identity: dict[str, Any], *, resume: bool) -> str:
        """``"fresh"``, ``"resume"`` or ``"complete"`` for the job of
        ``identity`` (:func:`dmf.engine.identity.job_identity`) here."""
        meta = self.existing_meta()
        if meta is None or not resume:
            return "fresh"
        diff = difference(meta, identity)
        if diff:
            raise CheckpointMismatch(refusal(
                self.location, f"a {meta.get('status', 'running')} result", diff,
                "use --no-resume (resume=False) to replace it, or another output"))
        return "complete" if meta.get("status") == "complete" else "resume"

    # -- writing ------------------------------------------------------------
    def begin(self, identity: dict[str, Any], meta: dict[str, Any], *, fresh: bool) -> None:
        """Mark the output as a running job; drop old checkpoints when fresh,
        and write beside a complete result that starting over would damage."""
        if fresh:
            existing = self.existing_meta()
            if existing is not None and existing.get("status") == "complete":
                self._write_beside()
            self.checkpoints.clear()
        group = zarr.open_group(store=self.location.zarr_store(), mode="a", zarr_format=3)
        attrs = {"kind": "result", "status": "running", "dmf_version": __version__,
                 **recorded(identity), **jsonable(meta)}
        group.update_attributes({"dmf": attrs})

    def write_result(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        """Write the final arrays, then mark the result complete, then drop
        the checkpoints (they are not needed once the result is whole)."""
        self.fence()
        dims = group_dimension_names({name: np.shape(v) for name, v in arrays.items()})
        for name, value in arrays.items():
            target = self.location.join(name)
            if isinstance(value, da.Array):
                save_dense(value, target, overwrite=True, name=f"{self.location}/{name}",
                           dims=dims[name])
            else:
                value = np.asarray(value)
                target.remove()
                zarr.create_array(store=target.zarr_store(), data=value, zarr_format=3,
                                  chunks=value.shape or None, dimension_names=dims[name],
                                  **checked_array_options())
        failpoint("result-arrays")
        self.fence()
        group = zarr.open_group(store=self.location.zarr_store(), mode="a", zarr_format=3)
        attrs = dmf_attrs(group)
        # Which arrays are tall (read back lazily) and which small (in memory).
        kinds = {name: "dask" if isinstance(v, da.Array) else "numpy"
                 for name, v in arrays.items()}
        attrs.update(jsonable(meta), status="complete", result_arrays=kinds)
        group.update_attributes({"dmf": attrs})
        self.checkpoints.clear()
        if self.destination is not None:
            self.fence()
            commit_target(self.location, self.destination)
            self.location, self.destination = self.destination, None
            self.checkpoints = self._checkpoints()

    def _write_beside(self) -> None:
        """Write this run in ``.NAME.dmf-next`` (emptied first: the remains
        of an earlier start over that was stopped), for ``write_result`` to
        swap in."""
        self.destination = self.location
        self.location = self.location.sibling(f".{self.location.name}.dmf-next")
        self.location.remove()
        self.checkpoints = self._checkpoints()

    def meta(self) -> dict[str, Any]:
        return dmf_attrs(self.location.open_node())

    def read_arrays(self) -> dict[str, Any]:
        """The result's arrays: tall ones lazily, small ones in memory."""
        return read_result_arrays(self.location, self.meta())


def read_result_arrays(location: Location, meta: dict[str, Any]) -> dict[str, Any]:
    arrays = {}
    for name, kind in (meta.get("result_arrays") or {}).items():
        where = location.join(name)
        arrays[name] = (open_matrix(where) if kind == "dask"
                        else read_whole(where.open_node(), where))
    return arrays


def read_complete_result(url, storage_options: dict | None = None
                         ) -> tuple[Location, dict[str, Any], dict[str, Any]]:
    """The location, ``attrs["dmf"]`` and arrays of the complete result at
    ``url``: what :func:`dmf.load` and ``LatentFactors.load`` build their
    objects from. InputError when ``url`` holds no dmf result, or one whose
    job is still running or was interrupted."""
    location = Location.parse(url, storage_options)
    meta = dmf_attrs(location.open_node())
    if meta.get("kind") != "result":
        raise InputError(f"{location}: not a dmf result (kind {meta.get('kind')!r})")
    if meta.get("status") != "complete":
        raise InputError(f"{location}: the job is still running or was interrupted "
                         f"(status {meta.get('status')!r}); rerun it to finish")
    return location, meta, read_result_arrays(location, meta)


def _only_lock_files(location: Location) -> bool:
    fs, path = location.filesystem()
    try:
        names = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(path, detail=False)]
    except (FileNotFoundError, NotADirectoryError):
        return False
    return all(n.startswith(LOCK_NAME) for n in names)  # the lock and its temp files
