"""Writing a dense matrix store safely: create, write checked blocks, commit.

A dense matrix is a 2-D Zarr array (format 3), chunked in row blocks of
about 64 MiB, with ``attrs["dmf"] = {"kind": "dense", ...}`` (read by
:mod:`dmf.store.dense_read`).

Writes are safe for a good result already there: a new store is written next
to it and swapped in only once complete and checked. ``attrs["dmf"]["complete"]``
is set last.

Every array dmf writes stores every chunk, even one of zeros (Zarr leaves
those out by default), and says so in ``attrs["dmf"]["chunks_written"]``
(``"all"``), which makes a missing chunk file an error when read.
"""

from __future__ import annotations

import uuid
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr

from dmf._version import __version__
from dmf.errors import StoreError
from dmf.store import codecs
from dmf.store.dense_read import ALL_CHUNKS, as_dask, normalize_chunks
from dmf.store.dims import MATRIX
from dmf.store.location import Location, dmf_attrs
from dmf.store.validate import (
    block_report,
    check_shape,
    map_block_reports,
    raise_for_reports,
    storage_dtype,
)

#: Zarr's array config for every array dmf writes: store all chunks.
WRITE_EVERY_CHUNK = {"write_empty_chunks": True}


def checked_array_options(**dmf_meta) -> dict[str, Any]:
    """The options of ``create_array`` for an array dmf writes and reads back
    (checkpoints, results): a CRC-32C of every chunk, every chunk stored,
    and the mark that says so (set at creation: such arrays are written
    whole, and their group's completion flag says when they are)."""
    return {"compressors": codecs.compressors(None), "config": WRITE_EVERY_CHUNK,
            "attributes": {"dmf": {"chunks_written": ALL_CHUNKS, **dmf_meta}}}


def write_block(block, zarray, dtype, ncols, block_info=None):
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    report = block_report(block, r0, c0, ncols)
    if not (report[0] or report[1] or report[3]):
        # A bad block is not written: the whole store is dropped anyway.
        zarray[r0:r1, c0:c1] = block.astype(dtype, copy=False)
    return report[None, :]


def create_dense(
    location: Location, shape, dtype, chunks, *, codec: str | None = None, attrs=None,
    dims: tuple[str, str] = MATRIX,
) -> zarr.Array:
    """An empty dense array marked incomplete, ready for blocks to be written;
    ``dims`` are its axes' names (xarray reads them)."""
    meta = {"kind": "dense", "complete": False, "dmf_version": __version__,
            "write_id": uuid.uuid4().hex, **(attrs or {})}
    return zarr.create_array(
        store=location.zarr_store(),
        shape=tuple(int(s) for s in shape),
        chunks=tuple(int(c) for c in chunks),
        dtype=np.dtype(dtype),
        compressors=codecs.compressors(codec),
        fill_value=0,
        attributes={"dmf": meta},
        dimension_names=dims,
        zarr_format=3,
        overwrite=True,
        config=WRITE_EVERY_CHUNK,
    )


def mark_complete(zarray: zarr.Array | zarr.Group, **extra) -> None:
    """Set ``complete``; for an array whose every chunk is stored, also the
    mark that makes a missing chunk an error when read."""
    meta = dmf_attrs(zarray)
    if isinstance(zarray, zarr.Array) and zarray.nchunks_initialized == zarray.nchunks:
        extra = {**extra, "chunks_written": ALL_CHUNKS}
    meta.update(extra, complete=True)
    zarray.update_attributes({"dmf": meta})


def write_dask(
    x: da.Array, zarray: zarr.Array, *, name: str, scheduler: str | None = None,
    extra: list | None = None,
) -> list:
    """Write ``x`` into ``zarray`` block by block, checking every value on the
    way (one pass). Raises :class:`InputError` naming the first bad value.

    ``extra`` are further dask collections computed in the same pass (for
    instance statistics of a generator); their results are returned.
    """
    x = x.rechunk(zarray.chunks)
    reports = map_block_reports(x, write_block, zarray, zarray.dtype, x.shape[1])
    kwargs = {"scheduler": scheduler} if scheduler else {}
    reports, *results = dask.compute(reports, *(extra or []), **kwargs)
    raise_for_reports(reports, x.shape, name)
    return results


def prepare_target(location: Location, overwrite: bool) -> Location:
    """Where to write: the target itself when nothing good is there, else a
    hidden sibling that replaces the target once complete."""
    if not location.exists():
        return location
    if location.is_zarr_node():
        try:
            node = location.open_node()
        except StoreError:
            node = None
        if node is not None and dmf_attrs(node).get("complete") is False:
            return location  # the remains of an interrupted write: nothing to keep
    if not overwrite:
        raise StoreError(
            f"{location}: already exists; pass overwrite=True (CLI: --overwrite) to replace it"
        )
    return location.sibling(f".{location.name}.dmf-tmp-{uuid.uuid4().hex[:8]}")


def commit_target(staging: Location, location: Location) -> None:
    """Put a completely written ``staging`` store in place of ``location``.

    The old store is moved aside first and deleted last, so a crash in
    between leaves it recoverable (``.NAME.dmf-old-*``) rather than lost.
    """
    if staging == location:
        return
    trash = location.sibling(f".{location.name}.dmf-old-{uuid.uuid4().hex[:8]}")
    location.move_to(trash)
    staging.move_to(location)
    trash.remove()


def scheduler_for(location: Location, *inputs) -> str | None:
    """Force the threaded scheduler when data cannot leave this process."""
    if location.is_process_local or any(isinstance(i, np.ndarray) for i in inputs):
        return "threads"
    return None


def save_dense(
    x, location: Location, *, chunks=None, overwrite: bool = False, codec: str | None = None,
    attrs: dict | None = None, name: str | None = None, dims: tuple[str, str] = MATRIX,
) -> zarr.Array:
    name = name or "input array"
    arr = as_dask(x)
    check_shape(arr.shape, name)
    dtype = storage_dtype(arr.dtype, name)
    extra_attrs = dict(attrs or {})
    if dtype != arr.dtype:
        extra_attrs.setdefault("source_dtype", str(arr.dtype))
    chunks = normalize_chunks(chunks, arr.shape, dtype)
    staging = prepare_target(location, overwrite)
    try:
        zarray = create_dense(staging, arr.shape, dtype, chunks, codec=codec, attrs=extra_attrs,
                              dims=dims)
        write_dask(arr, zarray, name=name, scheduler=scheduler_for(location, x))
        mark_complete(zarray)
    except BaseException:
        staging.remove()
        raise
    commit_target(staging, location)
    return zarr.open_array(store=location.zarr_store(read_only=True), mode="r")
