"""Reading uncompressed chunks of a local store without zarr's decoding.

dmf's default codec is none, with a CRC-32C (see :mod:`dmf.store.codecs`):
a chunk file is the chunk's raw little-endian bytes and four bytes of
checksum. Zarr decodes such a chunk through three fresh buffers of the
chunk's size (the file's bytes, the bytes without the checksum, the output
array) and copies between them; on a Dask worker every fresh buffer above
128 KiB is also a fresh mmap whose pages fault in one by one (Dask sets
``MALLOC_TRIM_THRESHOLD_``). Here the file is mapped, privately
(copy-on-write: writes to the array never reach the file), the array is a
view of the map, and the checksum is computed over it. Mapping shares the
page cache's pages instead of copying them, and on warm cache that copy is
most of a read (measured by ``python -m benchmarks.nmf_block`` and
``python -m benchmarks svd``: see benchmarks/README.md).

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

import math
import mmap
import os
import sys
import time
from dataclasses import dataclass

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.storage import LocalStore

from dmf.errors import DmfWarning, warn


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
