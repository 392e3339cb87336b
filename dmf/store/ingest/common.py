"""What every ingest format shares: the job (source, target, options) and its
dense writer, and read errors turned into one-line messages."""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from dmf.errors import DmfError, DmfWarning, InputError, warn
from dmf.store.dense_read import normalize_chunks
from dmf.store.dense_write import (
    commit_target,
    create_dense,
    mark_complete,
    prepare_target,
    write_block,
)
from dmf.store.location import Location, one_line
from dmf.store.streaming import BoundedPool, closing
from dmf.store.validate import check_shape, precast, raise_for_reports, storage_dtype

#: Blocks being written at once. With the block being read meanwhile, two
#: blocks are in flight: reading overlaps compression, and memory stays about
#: three blocks (a write holds its block plus Zarr's encoding buffers).
_IN_FLIGHT = 1


@contextlib.contextmanager
def reading(path: str):
    """Turn a failure to read or parse ``path`` into a one-line InputError."""
    try:
        yield
    except DmfError:
        raise
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except (OSError, ValueError, OverflowError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"{path}: cannot be read, it is malformed or truncated "
                         f"({one_line(exc)})") from None


@dataclass
class Job:
    """One ingest: the source file and its format, where to write, and how."""

    path: str
    fmt: str
    location: Location
    overwrite: bool
    chunks: Any
    codec: str | None
    dtype: np.dtype | None

    def storage(self, source: np.dtype) -> np.dtype:
        """The stored dtype for values read as ``source``."""
        if self.dtype is None:
            return storage_dtype(source, self.path)
        if np.dtype(source).kind not in "iubf":
            storage_dtype(source, self.path)  # raises with the usual message
        return self.dtype

    def attrs(self, source: np.dtype, stored: np.dtype) -> dict:
        attrs = {"source": {"path": os.path.abspath(self.path), "format": self.fmt}}
        if np.dtype(source) != stored:
            attrs["source_dtype"] = str(source)
        return attrs

    def no_chunks(self) -> None:
        if self.chunks is not None:
            warn(f"{self.path}: chunks apply to dense results; a sparse store is "
                 "chunked by number of values", DmfWarning)

    def write_dense(self, shape, source: np.dtype,
                    blocks: Callable[[int], Iterator[tuple[int, np.ndarray]]]) -> None:
        """Write the row blocks ``blocks(rows_per_block)`` yields, as
        ``(first_row, block)``, into a dense store, checking every value."""
        check_shape(shape, self.path)
        stored = self.storage(source)
        chunks = normalize_chunks(self.chunks, shape, stored)
        staging = prepare_target(self.location, self.overwrite)
        try:
            zarray = create_dense(staging, shape, stored, chunks, codec=self.codec,
                                  attrs=self.attrs(source, stored))
            futures, rows = [], 0
            with BoundedPool(_IN_FLIGHT) as pool:
                for r0, block in closing(blocks(chunks[0])):
                    info = {0: {"array-location": [(r0, r0 + len(block)), (0, shape[1])]}}
                    futures.append(pool.submit(write_block, precast(block, stored), zarray,
                                               stored, shape[1], block_info=info))
                    rows += len(block)
                    del block  # the writer holds it now; let it go when written
            if rows != shape[0]:
                raise InputError(f"{self.path}: {rows} rows read, {shape[0]} expected; "
                                 "the file changed while it was read")
            raise_for_reports(np.concatenate([f.result() for f in futures]), shape, self.path)
            mark_complete(zarray)
        except BaseException:
            staging.remove()
            raise
        commit_target(staging, self.location)


__all__ = ["Job", "reading"]
