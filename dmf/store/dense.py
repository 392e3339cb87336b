"""Dense matrices in Zarr: write them safely, read them lazily.

A dense matrix is a 2-D Zarr array (format 3 written; 2 and 3 read), chunked
in row blocks of about 64 MiB, with ``attrs["dmf"] = {"kind": "dense", ...}``.

Writes are safe for a good result already there: a new store is written next
to it and swapped in only once complete and checked. ``attrs["dmf"]["complete"]``
is set last.

Every array dmf writes stores every chunk, even one of zeros (Zarr leaves
those out by default), and says so in ``attrs["dmf"]["chunks_written"]``
(``"all"``): reading such an array, a missing chunk file is damage and an
error naming it, never a block of fill values. Arrays without that mark
(other writers, older dmf) keep Zarr's meaning, where an absent chunk holds
the fill value.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import uuid
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
import zarr.storage

from dmf._version import __version__
from dmf.errors import DmfWarning, InputError, StoreError, warn
from dmf.store import codecs
from dmf.store.dims import MATRIX
from dmf.store.location import Location, dmf_attrs, one_line
from dmf.store.rawchunks import ChunkMissing, RawChunks
from dmf.store.validate import (
    block_report,
    check_shape,
    map_block_reports,
    raise_for_reports,
    storage_dtype,
)

#: Target size of one chunk: large enough that per-chunk overhead is noise,
#: small enough that a worker holds several at once.
TARGET_CHUNK_BYTES = 64 * 2**20
#: The largest row block of an array already in memory (see :func:`in_memory_chunks`).
IN_MEMORY_CHUNK_BYTES = 256 * 2**20


def default_chunks(
    shape: tuple[int, int], dtype, target_bytes: int = TARGET_CHUNK_BYTES
) -> tuple[int, int]:
    """Row blocks of at most ``target_bytes``, as few as possible and of
    equal size (a short last block would be stored padded to full size);
    column blocks too only when one row alone is larger than that.

    Examples
    --------
    >>> default_chunks((1_000_000, 1000), "float32")  # 60 blocks of 63.6 MiB
    (16667, 1000)
    >>> default_chunks((10, 1000), "float64")
    (10, 1000)
    """
    m, n = int(shape[0]), int(shape[1])
    itemsize = np.dtype(dtype).itemsize
    row_bytes = n * itemsize
    if row_bytes <= target_bytes:
        return (_even_split(m, target_bytes // row_bytes), n)
    return (1, _even_split(n, target_bytes // itemsize))


def _even_split(length: int, most: int) -> int:
    """The block length that covers ``length`` in the fewest blocks of at
    most ``most``, with the blocks as equal as possible."""
    blocks = max(1, math.ceil(length / max(1, most)))
    return max(1, math.ceil(length / blocks))


def normalize_chunks(chunks, shape: tuple[int, int], dtype) -> tuple[int, int]:
    """Regular Zarr chunks from ``None`` (default), an int (rows per block) or
    a (rows, columns) pair."""
    if chunks is None:
        return default_chunks(shape, dtype)
    if isinstance(chunks, (int, np.integer)):
        chunks = (int(chunks), shape[1])
    try:
        rows, cols = (int(c) for c in chunks)
    except (TypeError, ValueError):
        raise InputError(
            f"chunks must be an int (rows per block) or a (rows, columns) pair, got {chunks!r}"
        ) from None
    if rows <= 0 or cols <= 0:
        raise InputError(f"chunks must be positive, got {(rows, cols)}")
    return (min(rows, shape[0]), min(cols, shape[1]))


#: Zarr's array config for every array dmf writes: store all chunks.
WRITE_EVERY_CHUNK = {"write_empty_chunks": True}
#: ``attrs["dmf"]["chunks_written"]`` of an array whose every chunk is stored.
ALL_CHUNKS = "all"


def checked_array_options(**dmf_meta) -> dict[str, Any]:
    """The options of ``create_array`` for an array dmf writes and reads back
    (checkpoints, results): a CRC-32C of every chunk, every chunk stored,
    and the mark that says so (set at creation: such arrays are written
    whole, and their group's completion flag says when they are)."""
    return {"compressors": codecs.compressors(None), "config": WRITE_EVERY_CHUNK,
            "attributes": {"dmf": {"chunks_written": ALL_CHUNKS, **dmf_meta}}}


def every_chunk_written(zarray: zarr.Array) -> bool:
    """Whether dmf recorded that every chunk of ``zarray`` is stored."""
    written = dmf_attrs(zarray).get("chunks_written")
    return written == ALL_CHUNKS or (isinstance(written, int) and written == zarray.nchunks)


def check_every_chunk_present(zarray: zarr.Array, location: Location) -> None:
    """StoreError naming a missing chunk of an array whose every chunk dmf
    wrote (one listing of the array's folder; for arrays not read chunk by
    chunk through :class:`ChunkReader`)."""
    if not every_chunk_written(zarray) or zarray.nchunks_initialized == zarray.nchunks:
        return
    for coords in itertools.product(*(range(math.ceil(s / c)) for s, c in
                                      zip(zarray.shape, zarray.chunks, strict=True))):
        name = zarray.metadata.encode_chunk_key(coords)
        if not location.join(name).exists():
            raise StoreError(f"{location}/{name}: chunk file missing; dmf wrote every chunk "
                             "of this array, so the store is damaged")


def chunk_coords(key, shape, chunks) -> list[tuple[int, ...]]:
    """The coordinates of the chunks a basic-indexing ``key`` touches."""
    key = key if isinstance(key, tuple) else (key,)
    key = key + (slice(None),) * (len(shape) - len(key))
    ranges = []
    for k, size, chunk in zip(key, shape, chunks, strict=True):
        if isinstance(k, slice):
            start, stop, step = k.indices(size)
            if stop <= start:
                return []
            last = start + ((stop - 1 - start) // step) * step
            ranges.append(range(start // chunk, last // chunk + 1))
        else:
            index = int(k) % size if size else 0
            ranges.append(range(index // chunk, index // chunk + 1))
    return list(itertools.product(*ranges))


# --------------------------------------------------------------------------
# reading


class ChunkReader:
    """Array-like view of a Zarr array for ``dask.array.from_array`` that
    names the chunk file when a read fails, and refuses to read a
    process-local store from another process (a Dask worker would silently
    see zeros)."""

    def __init__(self, zarray: zarr.Array, location: Location):
        self.zarray = zarray
        self.location = location
        self.shape = zarray.shape
        # zarr may report an explicit byte order ('<f4'); dmf shows native names.
        self.dtype = (zarray.dtype.newbyteorder("=") if zarray.dtype.kind in "fiub"
                      else zarray.dtype)
        self.ndim = zarray.ndim
        self._owner_pid = os.getpid()
        self._every_chunk = every_chunk_written(zarray)
        self._raw = RawChunks.of(zarray, every_chunk=self._every_chunk)
        self._identity = _identity(location, dmf_attrs(zarray).get("write_id"))

    def __dask_tokenize__(self):
        # the attrs carry the write id: a store written again at the same URL
        # with the same shape is another input
        return (self.location.url, self.zarray.metadata.to_dict())

    def __getitem__(self, key):
        if self.location.is_process_local and os.getpid() != self._owner_pid:
            raise StoreError(
                f"{self.location}: a memory:// store cannot be read by Dask workers in "
                "other processes; use a local path or s3:// with a cluster"
            )
        try:
            region = self._raw.region(key) if self._raw is not None else None
            if region is not None:
                block = self._raw.read(*region)
            else:
                self._check_present(key)
                # Decoded chunks may start at any byte; BLAS rounds differently on
                # unaligned data, so results would depend on the worker.
                block = np.require(self.zarray[key], requirements="A")
        except ChunkMissing as exc:
            raise StoreError(f"{self.location}/{exc}: chunk file missing; dmf wrote every "
                             "chunk of this array, so the store is damaged") from None
        except Exception as exc:  # noqa: BLE001 - any decode failure means a bad chunk
            raise StoreError(
                f"{self.location}/{self._bad_chunk(key)}: chunk cannot be read, the "
                f"store is corrupt or truncated ({one_line(exc)})"
            ) from None
        # Checked after the read: a store swapped in before it was read from is
        # seen here, one swapped in after it was read from did not matter.
        if self._identity is not None and _identity(
                self.location, self._identity[1]) != self._identity:
            raise StoreError(f"{self.location}: the store was replaced while it was being "
                             "read (written again, e.g. with --overwrite); what was read "
                             "would mix two versions: run again")
        return block

    def _check_present(self, key) -> None:
        """Raise ChunkMissing for a chunk of ``key`` that dmf wrote and is gone."""
        if not self._every_chunk:
            return
        for coords in chunk_coords(key, self.shape, self.zarray.chunks):
            name = self.zarray.metadata.encode_chunk_key(coords)
            if not self.location.join(name).exists():
                raise ChunkMissing(name)

    def _bad_chunk(self, key) -> str:
        """The first chunk of ``key`` that fails to decode (the first one of
        ``key`` if each decodes alone)."""
        found = chunk_coords(key, self.shape, self.zarray.chunks) or [(0,) * self.ndim]
        for coords in found:
            part = tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, self.zarray.chunks,
                                                                      strict=True))
            try:
                self.zarray[part]
            except Exception:  # noqa: BLE001 - this is the one
                return self.zarray.metadata.encode_chunk_key(coords)
        return self.zarray.metadata.encode_chunk_key(found[0])


def _identity(location: Location, write_id: str | None) -> tuple | None:
    """What tells this version of a store from the next one swapped in at
    the same place (:func:`commit_target`): a local folder's device and
    inode (one stat); elsewhere the write id in its ``zarr.json`` (one small
    read; only given ``write_id``, the one read at open, since a store
    without one cannot be told apart). None: nothing to check (memory,
    foreign object stores)."""
    if location.is_local:
        try:
            stat = os.stat(location.url)
        except OSError:
            return (-1, -1)
        return (stat.st_dev, stat.st_ino)
    if location.is_process_local or write_id is None:
        return None
    fs, path = location.join("zarr.json").filesystem()
    try:
        fs.invalidate_cache(path)
        meta = json.loads(fs.cat_file(path))
        current = meta["attributes"]["dmf"]["write_id"]
    except Exception:  # noqa: BLE001 - gone, torn or rewritten by another writer
        current = None
    return ("write_id", current)


def read_whole(zarray: zarr.Array, location: Location) -> np.ndarray:
    """All of a small array, in memory, each chunk checked: a missing or
    damaged chunk is a StoreError naming it."""
    return ChunkReader(zarray, location)[tuple(slice(None) for _ in zarray.shape)]


def check_complete(node, location: Location) -> None:
    if dmf_attrs(node).get("complete") is False:
        raise StoreError(
            f"{location}: incomplete store (its writer stopped before finishing); "
            "write it again"
        )


#: Stored chunks smaller than this are read several to a task (see :func:`read_chunks`).
TINY_CHUNK_BYTES = 4096
#: More tasks than this for one pass over a matrix is a store no one can
#: factorize here (64 TB in blocks of 64 MiB): refused before any is built.
MAX_READ_TASKS = 1_000_000


def read_chunks(zarray: zarr.Array, location: Location) -> tuple[int, ...]:
    """The blocks to read a stored matrix in: its chunks, or whole multiples
    of them of about :data:`TARGET_CHUNK_BYTES` where they are tiny (a 1 x 1
    chunking would make a task per value), with a note. Refuses a shape
    whose reading would take more than :data:`MAX_READ_TASKS` tasks."""
    chunks = tuple(int(c) for c in zarray.chunks)
    itemsize = np.dtype(zarray.dtype).itemsize if zarray.dtype.kind in "fiub" else 8
    if math.prod(chunks) * itemsize < TINY_CHUNK_BYTES and zarray.nchunks > 10_000:
        rows, cols = default_chunks(zarray.shape, zarray.dtype if zarray.dtype.kind in "fiub"
                                    else np.float64)
        stored, chunks = chunks, (max(chunks[0], rows // chunks[0] * chunks[0]),
                                  max(chunks[1], cols // chunks[1] * chunks[1]))
    tasks = math.prod(math.ceil(s / c) for s, c in zip(zarray.shape, chunks, strict=True))
    if tasks > MAX_READ_TASKS:
        raise InputError(f"{location}: its metadata claims a {zarray.shape[0]} x "
                         f"{zarray.shape[1]} matrix, {tasks:,} blocks to read; refusing it")
    if chunks != tuple(zarray.chunks):
        warn(f"{location}: stored in {stored[0]} x {stored[1]} chunks, tiny for its "
             f"shape; read {chunks[0]} x {chunks[1]} at a time (rewrite it with "
             "larger chunks to read it faster)", DmfWarning)
    return chunks


def open_dense(zarray: zarr.Array, location: Location) -> da.Array:
    """A lazy dask array over a dense Zarr array, one task per chunk (or per
    group of tiny chunks)."""
    check_shape(zarray.shape, str(location))
    check_complete(zarray, location)
    chunks = read_chunks(zarray, location)
    reader = ChunkReader(zarray, location)
    x = da.from_array(reader, chunks=chunks, asarray=False, inline_array=True,
                      name=f"read-{dask.base.tokenize(reader)}",
                      meta=np.empty((0, 0), dtype=reader.dtype))
    if x.dtype.kind in "iub":
        warn(f"{location}: {x.dtype} values are read as float64", DmfWarning)
        x = x.astype(np.float64)
    elif x.dtype not in (np.float32, np.float64):
        storage_dtype(x.dtype, str(location))  # raises for what cannot be converted
        x = x.astype(np.float32)
    return x


# --------------------------------------------------------------------------
# writing


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


class InMemory:
    """A numpy array as ``dask.array.from_array`` input, without the copy
    from_array makes of anything that has a ``copy`` method (a whole copy
    of a large input): blocks are views of the caller's array, as
    scikit-learn uses it, so it must not change while dmf works on it."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __getitem__(self, key):
        return self.array[key]


def location_of(zarray: zarr.Array) -> Location:
    """The Location of an already open Zarr array (for messages and checks)."""
    store = zarray.store
    sub = zarray.path
    if isinstance(store, zarr.storage.LocalStore):
        return Location.parse(os.path.join(str(store.root), sub))
    if isinstance(store, zarr.storage.FsspecStore):
        protocol = store.fs.protocol
        protocol = protocol[0] if isinstance(protocol, (tuple, list)) else protocol
        path = "/".join(p for p in (store.path.strip("/"), sub) if p)
        return Location(f"{protocol}://{path}")
    # zarr's own MemoryStore and anything else we cannot name lives in-process
    return Location(f"memory://zarr-{id(store):x}/{sub}")


def in_memory_chunks(shape: tuple[int, int], dtype, cores: int | None = None) -> tuple[int, int]:
    """Row blocks for an array already in memory: up to
    :data:`IN_MEMORY_CHUNK_BYTES` each (nothing is read, and the blocks are
    views of the array, so large ones cost no memory), as few as that
    allows, their number rounded up to a multiple of the cores when there
    are several (5 blocks on 2 threads take 3 rounds where 6 smaller ones
    take the time of 2.5).

    Fewer, larger blocks mean fewer tasks per pass, which measured faster
    (benchmarks/README.md).

    Examples
    --------
    >>> in_memory_chunks((20000, 2000), "float64", cores=2)  # 2 blocks of 160 MB
    (10000, 2000)
    >>> in_memory_chunks((20000, 5000), "float64", cores=2)  # 4 blocks of 200 MB
    (5000, 5000)
    >>> in_memory_chunks((100, 10), "float64", cores=2)  # one block stays one
    (100, 10)
    """
    rows, cols = default_chunks(shape, dtype, IN_MEMORY_CHUNK_BYTES)
    blocks = math.ceil(shape[0] / rows)
    cores = cores or os.cpu_count() or 1
    if blocks < 2 or cols < shape[1] or blocks % cores == 0:
        return rows, cols
    return _even_split(shape[0], math.ceil(shape[0] / (math.ceil(blocks / cores) * cores))), cols


def as_dask(x, *, chunks=None) -> da.Array:
    """A dask array over an open matrix (zarr, dask, numpy); a URL is opened
    by :func:`dmf.store.api.open_matrix` first, which knows sparse stores too."""
    if isinstance(x, zarr.Array):
        return open_dense(x, location_of(x))
    if isinstance(x, da.Array):
        return x
    arr = np.asarray(x)
    if chunks is None and arr.ndim == 2 and arr.size:
        chunks = in_memory_chunks(arr.shape, arr.dtype)
    # name=False: a random name rather than a hash of the whole array (slow
    # on a large one); whoever needs a content token for numpy input (a resumable
    # job) computes it. The view keeps from_array from copying the array.
    return da.from_array(InMemory(arr), chunks=normalize_chunks(chunks, arr.shape, arr.dtype)
                         if arr.ndim == 2 and arr.size else -1, name=False, asarray=False,
                         meta=np.empty((0,) * arr.ndim, dtype=arr.dtype))


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
