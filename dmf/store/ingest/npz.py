"""Ingest of ``.npz`` files: scipy.sparse's (CSR streamed from the zip
members, CSC and COO through the (row, column, value) builder), or numpy's
``np.savez`` of one 2-D array (a dense store, streamed in row blocks)."""

from __future__ import annotations

import contextlib
import itertools
import os
import zipfile
from collections.abc import Iterator

import numpy as np
import scipy.sparse

from dmf.errors import InputError
from dmf.store.ingest.common import Job, reading
from dmf.store.ingest.npy import npy_header, read_into
from dmf.store.sparse_row_blocks import csr_row_blocks
from dmf.store.sparse_write import write_csr_blocks
from dmf.store.triplets import write_csr_from_triplets
from dmf.store.validate import check_shape

#: Entries read at once from the members of a CSC or COO .npz.
_TRIPLET_CHUNK = 2**18


class _NpyMember:
    """A .npy member of a zip archive, read sequentially in pieces."""

    def __init__(self, archive: zipfile.ZipFile, name: str, path: str):
        self.path = path
        self.name = name
        try:
            self.file = archive.open(f"{name}.npy")
        except KeyError:
            raise InputError(f"{path}: no '{name}' member; not a scipy.sparse .npz file") from None
        self.shape, self.fortran_order, self.dtype = npy_header(self.file,
                                                                 f"{path} (member {name})")
        self.size = int(np.prod(self.shape))
        self.remaining = self.size

    def read(self, count: int) -> np.ndarray:
        count = min(int(count), self.remaining)
        nbytes = count * self.dtype.itemsize
        buffer = self.file.read(nbytes)
        if len(buffer) != nbytes:
            raise InputError(f"{self.path}: member '{self.name}' is truncated")
        self.remaining -= count
        return np.frombuffer(buffer, self.dtype)

    def read_all(self) -> np.ndarray:
        values = self.read(self.remaining)
        return values.reshape(self.shape, order="F" if self.fortran_order else "C")

    def close(self) -> None:
        self.file.close()


def ingest_npz(job: Job, tmpdir: str | os.PathLike | None = None) -> None:
    path = job.path
    with reading(path):
        archive = zipfile.ZipFile(path)
    arrays = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    if "format" not in arrays:
        with archive:
            if len(arrays) != 1:
                raise InputError(f"{path}: holds {len(arrays)} arrays "
                                 f"({', '.join(arrays) or 'none'}); dmf reads np.savez of one "
                                 "2-D array, or a scipy.sparse.save_npz file")
            _ingest_dense(job, archive, arrays[0])
        return
    job.no_chunks()
    with archive, contextlib.ExitStack() as stack:
        def member(name: str) -> _NpyMember:
            with reading(path):
                opened = _NpyMember(archive, name, path)
            stack.callback(opened.close)
            return opened

        with reading(path):
            fmt = member("format").read_all().item()
            fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
            shape = tuple(int(s) for s in member("shape").read_all())
        check_shape(shape, path)
        data = member("data")
        source = data.dtype
        stored = job.storage(source)
        options = dict(overwrite=job.overwrite, codec=job.codec,
                       attrs=job.attrs(source, stored), name=path)
        if fmt == "csr":
            with reading(path):
                indptr = _indptr(member("indptr"), shape[0], data.size, path)
            indices = member("indices")
            write_csr_blocks(_npz_csr_blocks(path, shape, indptr, data, indices),
                             job.location, shape, stored, nnz_hint=data.size, **options)
        elif fmt in ("csc", "coo"):
            chunks = _npz_triplets(path, archive, fmt, shape, data.size)
            write_csr_from_triplets(chunks, job.location, shape, stored, tmpdir=tmpdir,
                                    **options)
        else:
            raise InputError(f"{path}: holds a {fmt} matrix; convert it to csr, csc or coo "
                             "before saving")


def _ingest_dense(job: Job, archive: zipfile.ZipFile, name: str) -> None:
    """The one array of an ``np.savez`` archive, read in row blocks from its
    member (inflated as it is read: no temporary copy)."""
    where = f"{job.path} (array {name})"
    with reading(job.path), archive.open(f"{name}.npy") as f:
        shape, fortran, dtype = npy_header(f, where)
        offset = f.tell()
    check_shape(shape, where)
    if fortran:
        raise InputError(f"{where}: Fortran order cannot be streamed from a zip member; "
                         "save np.ascontiguousarray(X), or np.save it to a .npy file")
    m, n = shape

    def blocks(rows: int):
        with reading(job.path), archive.open(f"{name}.npy") as f:
            for r0 in range(0, m, rows):
                block = np.empty((min(rows, m - r0), n), dtype)
                read_into(f, offset + r0 * n * dtype.itemsize, block)  # forward only
                yield r0, block

    job.write_dense(shape, dtype, blocks)


def _indptr(member: _NpyMember, nrows: int, nnz: int, path: str) -> np.ndarray:
    indptr = member.read_all().astype(np.int64, copy=False)
    if len(indptr) != nrows + 1 or indptr[0] != 0 or indptr[-1] != nnz or (
            np.diff(indptr) < 0).any():
        raise InputError(f"{path}: inconsistent indptr (corrupt file)")
    return indptr


def _npz_csr_blocks(path, shape, indptr, data: _NpyMember, indices: _NpyMember) -> Iterator:
    for r0, r1 in itertools.pairwise(csr_row_blocks(indptr, data.dtype, indices.dtype)):
        count = int(indptr[r1] - indptr[r0])
        with reading(path):
            values, cols = data.read(count), indices.read(count)
        if len(cols) and (cols.min() < 0 or cols.max() >= shape[1]):
            raise InputError(f"{path}: column index out of range in rows {r0}..{r1 - 1} "
                             "(corrupt file)")
        yield scipy.sparse.csr_matrix((values, cols, indptr[r0:r1 + 1] - indptr[r0]),
                                      shape=(r1 - r0, shape[1]))


def _npz_triplets(path: str, archive: zipfile.ZipFile, fmt: str, shape, nnz: int):
    """A callable giving fresh (rows, cols, vals) chunks of a CSC or COO npz."""
    if fmt == "csc":
        with reading(path):
            opened = _NpyMember(archive, "indptr", path)
            try:
                indptr = _indptr(opened, shape[1], nnz, path)
            finally:
                opened.close()

    def chunks() -> Iterator[tuple]:
        with reading(path), contextlib.ExitStack() as stack:
            def member(name: str, skip: int = 0) -> _NpyMember:
                opened = _NpyMember(archive, name, path)
                stack.callback(opened.close)
                while skip:  # the second row of a 2 x nnz "coords"
                    skip -= len(opened.read(min(skip, _TRIPLET_CHUNK)))
                return opened

            data = member("data")
            if fmt == "csc":
                rows = member("indices")
            elif "row.npy" in archive.namelist():
                rows, cols = member("row"), member("col")
            else:
                rows, cols = member("coords"), member("coords", skip=nnz)
                if rows.fortran_order:
                    raise InputError(f"{path}: Fortran-ordered coords are not supported")
            for k0 in range(0, nnz, _TRIPLET_CHUNK):
                count = min(_TRIPLET_CHUNK, nnz - k0)
                r, v = rows.read(count), data.read(count)
                if fmt == "csc":
                    k = np.arange(k0, k0 + count)
                    c = np.searchsorted(indptr, k, side="right") - 1
                else:
                    c = cols.read(count)
                yield r, c, v

    return chunks


__all__ = ["ingest_npz"]
