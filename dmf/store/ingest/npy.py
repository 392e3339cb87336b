"""Ingest of ``.npy`` files: read block by block into a fresh buffer, C or
Fortran order."""

from __future__ import annotations

import os

import numpy as np

from dmf.errors import InputError
from dmf.store.ingest.common import Job, reading
from dmf.store.validate import check_shape

#: Bytes of Fortran-order columns read at once before transposing them.
_FORTRAN_GATHER = 4 * 2**20


def npy_header(file, path: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of a .npy file (or zip member)."""
    version = np.lib.format.read_magic(file)
    read = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise InputError(f"{path}: .npy format version {version} is not supported")
    shape, fortran, dtype = read(file)
    if dtype.hasobject:
        raise InputError(f"{path}: holds Python objects, not numbers")
    return shape, fortran, dtype


def ingest_npy(job: Job) -> None:
    with reading(job.path), open(job.path, "rb") as f:
        shape, fortran, dtype = npy_header(f, job.path)
        offset = f.tell()
        size = os.fstat(f.fileno()).st_size
    check_shape(shape, job.path)
    m, n = shape
    if size < offset + m * n * dtype.itemsize:
        raise InputError(f"{job.path}: truncated ({size} bytes, the header announces "
                         f"{offset + m * n * dtype.itemsize})")

    # Plain reads into a fresh buffer rather than a memory map: mapped pages
    # count in RSS for as long as the map lives, a buffer is one block.
    def blocks(rows: int):
        with reading(job.path), open(job.path, "rb", buffering=0) as f:
            for r0 in range(0, m, rows):
                count = min(rows, m - r0)
                block = np.empty((count, n), dtype)
                if fortran:
                    # One contiguous piece per column, gathered a few MiB at a
                    # time and transposed into the C-order block Zarr wants,
                    # so no second full-size copy is made.
                    group = max(1, _FORTRAN_GATHER // (count * dtype.itemsize))
                    pieces = np.empty((min(group, n), count), dtype)
                    for j0 in range(0, n, group):
                        j1 = min(j0 + group, n)
                        for j in range(j0, j1):
                            read_into(f, offset + (j * m + r0) * dtype.itemsize,
                                       pieces[j - j0])
                        block[:, j0:j1] = pieces[:j1 - j0].T
                else:
                    read_into(f, offset + r0 * n * dtype.itemsize, block)
                yield r0, block

    job.write_dense(shape, dtype, blocks)


def read_into(f, offset: int, out: np.ndarray) -> None:
    """Fill ``out`` with the bytes of ``f`` from ``offset`` on."""
    view = memoryview(out.reshape(-1).view(np.uint8))
    f.seek(offset)
    while len(view):
        got = f.readinto(view)
        if not got:
            raise EOFError("unexpected end of file")
        view = view[got:]


__all__ = ["ingest_npy", "npy_header", "read_into"]
