"""Reading a dense matrix store: from the Zarr array to the bytes of a chunk.

A dense matrix is a 2-D Zarr array (format 3 written; 2 and 3 read), chunked
in row blocks of about 64 MiB, with ``attrs["dmf"] = {"kind": "dense", ...}``
(written by :mod:`dmf.store.dense_write`). :func:`open_dense` gives a lazy
dask array, one task per chunk, each reading its chunk through
:class:`ChunkReader`: a store not marked complete is refused, a chunk that
cannot be read is a StoreError naming its file, and a store swapped for
another version while it is read is refused.

Every array dmf writes stores every chunk, even one of zeros (Zarr leaves
those out by default), and says so in ``attrs["dmf"]["chunks_written"]``
(``"all"``): reading such an array, a missing chunk file is damage and an
error naming it, never a block of fill values. Arrays without that mark
(other writers, older dmf) keep Zarr's meaning, where an absent chunk holds
the fill value.

Mapped chunks (:class:`RawChunks`). dmf's default codec is none, with a
CRC-32C (see :mod:`dmf.store.codecs`): a chunk file is the chunk's raw
little-endian bytes and four bytes of checksum. Zarr decodes such a chunk
through three fresh buffers of the chunk's size (the file's bytes, the bytes
without the checksum, the output array) and copies between them; on a Dask
worker every fresh buffer above 128 KiB is also a fresh mmap whose pages
fault in one by one (Dask sets ``MALLOC_TRIM_THRESHOLD_``). Here the file is
mapped, privately (copy-on-write: writes to the array never reach the file),
the array is a view of the map, and the checksum is computed over it.
Mapping shares the page cache's pages instead of copying them, and on warm
cache that copy is most of a read (measured by ``python -m
benchmarks.nmf_block`` and ``python -m benchmarks svd``: see
benchmarks/README.md).

Mapped bytes never pass through ``read()``, so ``/proc/PID/io``'s
``read_chars`` does not count them: :func:`bytes_mapped` does (tests and
benchmarks that count passes over X add the two).

Only what is certain to be that layout is read this way: Zarr format 3, a
local directory store, a regular chunk grid, codecs ``bytes`` (little
endian, on a little-endian machine) with or without ``crc32c``, and a
request for exactly one whole chunk. Everything else goes through zarr.
Where a file cannot be mapped (some network or FUSE filesystems) it is read
into the array instead.

A chunk's checksum is computed once per version of its file in a process:
a file whose device, inode, size, modification and change times are those
of a file already checked, with the same stored checksum, is not checked
again (the check is a sizeable part of a mapped read with its use, on
every pass of an iterative method). Any write to the file changes
its change time, which no program can set back, and a rename brings
another inode: a changed file is checked again. Files changed within the
last second are checked every time (file times tick coarsely).

A file truncated or rewritten in place while a chunk of it is mapped would
fault (SIGBUS) or change under the array. Nothing in dmf's stack does that:
zarr's local store writes every chunk to a temporary file and renames it
over the old one, and dmf writes whole stores aside and swaps them in; a
renamed-over or unlinked file stays whole for whoever maps it. Only another
program rewriting chunk files in place while dmf reads them could.
"""

from __future__ import annotations

import itertools
import json
import math
import mmap
import os
import sys
import time
from dataclasses import dataclass

import dask
import dask.array as da
import google_crc32c
import numpy as np
import zarr
import zarr.storage
from zarr.codecs import BytesCodec, Crc32cCodec
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.storage import LocalStore

from dmf.errors import DmfWarning, InputError, StoreError, warn
from dmf.store.location import Location, dmf_attrs, one_line
from dmf.store.validate import check_shape, storage_dtype

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


#: ``attrs["dmf"]["chunks_written"]`` of an array whose every chunk is stored.
ALL_CHUNKS = "all"


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
# chunk files, mapped


class ChunkDamaged(ValueError):
    """The chunk file is not what its metadata says (short, long, or a
    checksum that does not match)."""


class ChunkMissing(LookupError):
    """A chunk file of an array whose every chunk was written is gone (the
    message is its key)."""


@dataclass(frozen=True)
class RawChunks:
    """Where a plain array's chunk files are and how to read one."""

    root: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    fill_value: object
    checksum: bool
    zarray: zarr.Array
    every_chunk: bool = False

    @classmethod
    def of(cls, zarray: zarr.Array, *, every_chunk: bool = False) -> RawChunks | None:
        """The reader of ``zarray``'s chunks, or None where zarr must decode them."""
        meta = zarray.metadata
        if (getattr(meta, "zarr_format", None) != 3 or sys.byteorder != "little"
                or not hasattr(mmap, "MAP_PRIVATE")
                or not isinstance(zarray.store, LocalStore)
                or not isinstance(meta.chunk_grid, RegularChunkGrid)):
            return None
        codecs = tuple(meta.codecs)
        if not codecs or not isinstance(codecs[0], BytesCodec):
            return None
        if codecs[0].endian is not None and codecs[0].endian.value != "little":
            return None
        rest = codecs[1:]
        if rest and not (len(rest) == 1 and isinstance(rest[0], Crc32cCodec)):
            return None
        dtype = np.dtype(zarray.dtype).newbyteorder("=")
        if dtype.kind not in "fiub":
            return None
        root = os.path.join(str(zarray.store.root), zarray.path) if zarray.path else str(
            zarray.store.root)
        return cls(root=root, shape=tuple(zarray.shape), chunks=tuple(zarray.chunks),
                   dtype=dtype, fill_value=meta.fill_value, checksum=bool(rest),
                   zarray=zarray, every_chunk=every_chunk)

    def region(self, key) -> tuple[tuple[int, ...], tuple[slice, ...]] | None:
        """The chunk coordinates of ``key`` when it is exactly one whole chunk
        (clipped at the array's edge), else None."""
        if not isinstance(key, tuple) or len(key) != len(self.shape):
            return None
        coords, parts = [], []
        for k, size, chunk in zip(key, self.shape, self.chunks, strict=True):
            if not isinstance(k, slice) or k.step not in (None, 1):
                return None
            start, stop, _ = k.indices(size)
            if start % chunk or stop != min(start + chunk, size):
                return None
            coords.append(start // chunk)
            parts.append(slice(0, stop - start))
        return tuple(coords), tuple(parts)

    def path(self, coords: tuple[int, ...]) -> str:
        return os.path.join(self.root, *self.zarray.metadata.encode_chunk_key(coords).split("/"))

    def read(self, coords: tuple[int, ...], parts: tuple[slice, ...]) -> np.ndarray:
        """The chunk at ``coords``, cut to ``parts`` (edge chunks are stored
        whole); the fill value where no file was written (Zarr leaves out
        chunks that hold only the fill value), unless every chunk was."""
        try:
            fd = os.open(self.path(coords), os.O_RDONLY)
        except FileNotFoundError:
            if self.every_chunk:
                raise ChunkMissing(self.zarray.metadata.encode_chunk_key(coords)) from None
            _note_absent(self.root)
            return np.full(tuple(s.stop for s in parts), self.fill_value, dtype=self.dtype)
        nbytes = math.prod(self.chunks) * self.dtype.itemsize
        expected = nbytes + (4 if self.checksum else 0)
        try:
            stat = os.fstat(fd)
            if stat.st_size != expected:
                raise ChunkDamaged(f"{stat.st_size} bytes where {expected} were written")
            out, trailer = _load(fd, stat.st_size, nbytes, self.dtype, self.chunks)
        finally:
            os.close(fd)
        if self.checksum:
            _check(out, trailer, stat)
        if all(s.stop == c for s, c in zip(parts, self.chunks, strict=True)):
            return out
        return np.ascontiguousarray(out[parts])


#: Arrays already noted as having absent chunks (one note per array and process).
_noted: set[str] = set()


def _note_absent(root: str) -> None:
    if root not in _noted:
        _noted.add(root)
        warn(f"{root}: some chunk files are absent and read as the fill value, as "
             "Zarr means them (a store dmf did not write)", DmfWarning)


_mapped = [0]
#: Chunk file versions whose checksum matched, with that checksum (see the
#: module docstring); dropped whole when it grows past _VERIFIED_MAX.
_verified: dict[tuple[int, ...], bytes] = {}
_VERIFIED_MAX = 1 << 16


#: A file is remembered as checked only if its change time was at least this
#: long ago: file times come from a coarse clock (a tick of up to 10 ms), so
#: a rewrite right after a check could otherwise keep the same times.
SETTLED_NS = 1_000_000_000


def _check(out: np.ndarray, trailer: bytes, stat: os.stat_result) -> None:
    version = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if _verified.get(version) == trailer:
        return
    if google_crc32c.value(out) != int.from_bytes(trailer, "little"):
        raise ChunkDamaged("its CRC-32C checksum does not match its bytes")
    if time.time_ns() - stat.st_ctime_ns >= SETTLED_NS:
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        _verified[version] = bytes(trailer)


def bytes_mapped() -> int:
    """Bytes of chunk files this process has mapped (what ``read_chars``
    misses), since it started."""
    return _mapped[0]


def _load(fd: int, size: int, nbytes: int, dtype: np.dtype, shape) -> tuple[np.ndarray, bytes]:
    """The chunk as an array and its trailing bytes: over a private map of
    the file, or read into a fresh array where mapping fails."""
    if nbytes:
        try:
            buf = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE,
                            prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError):
            pass
        else:
            _mapped[0] += size
            out = np.frombuffer(buf, dtype=dtype, count=nbytes // dtype.itemsize)
            return out.reshape(shape), buf[nbytes:size]
    out = np.empty(shape, dtype=dtype)
    with open(fd, "rb", buffering=0, closefd=False) as f:
        got = f.readinto(memoryview(out).cast("B")) if nbytes else 0
        trailer = f.read()
    if got != nbytes:
        raise ChunkDamaged(f"{got + len(trailer)} bytes where {size} were written")
    return out, trailer


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
    the same place (:func:`dmf.store.dense_write.commit_target`): a local folder's device and
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
