"""Where a store lives: local paths and fsspec URLs behind one small type.

Every public function that takes a path also takes an fsspec URL
(``s3://``, ``memory://``, ``file://``...) with ``storage_options``. This
module turns either into a :class:`Location`, which knows how to open a Zarr
store there, whether something exists there, and how to remove or replace it.
Local paths are made absolute, because Dask workers may run in another
working directory.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import zarr
import zarr.storage

from dmf.errors import DmfError, StoreError
from dmf.store.failures import BUCKET_PROTOCOLS, environment_failure, missing_bucket

# Buckets known to exist, per (protocol, endpoint): looked up once per process.
_BUCKETS_SEEN: set[tuple[str, str, str]] = set()

# Files whose presence makes a directory a Zarr node, by format.
ZARR_V3_META = "zarr.json"
ZARR_V2_META = (".zarray", ".zgroup")


@dataclass(frozen=True)
class Location:
    """A local path or an fsspec URL, with the options to open it.

    Examples
    --------
    >>> Location.parse("data/x.zarr").protocol
    'file'
    >>> Location.parse("s3://bucket/x.zarr", {"anon": True}).protocol
    's3'
    """

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(
        cls, url: str | os.PathLike | Location, storage_options: dict[str, Any] | None = None
    ) -> Location:
        if isinstance(url, Location):
            if storage_options:
                return cls(url.url, dict(storage_options))
            return url
        text = os.fspath(url)
        if text.startswith("file://"):
            text = text[len("file://") :]
        if "://" not in text:
            text = os.path.abspath(os.path.expanduser(text))
        else:
            text = text.rstrip("/")
        return cls(text, dict(storage_options or {}))

    # -- what kind of place -------------------------------------------------
    @property
    def protocol(self) -> str:
        return self.url.split("://", 1)[0] if "://" in self.url else "file"

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def is_process_local(self) -> bool:
        """True for ``memory://``: other processes (Dask workers) cannot see it."""
        return self.protocol == "memory"

    @property
    def name(self) -> str:
        return posixpath.basename(self.url.rstrip("/"))

    def __str__(self) -> str:
        return self.url

    # -- derived locations --------------------------------------------------
    def join(self, *parts: str) -> Location:
        if self.is_local:
            return Location(os.path.join(self.url, *parts), self.storage_options)
        return Location(posixpath.join(self.url, *parts), self.storage_options)

    def sibling(self, name: str) -> Location:
        """A location next to this one, in the same folder or bucket prefix."""
        if self.is_local:
            return Location(os.path.join(os.path.dirname(self.url), name), self.storage_options)
        head = self.url.rsplit("/", 1)[0]
        return Location(f"{head}/{name}", self.storage_options)

    # -- filesystem operations ----------------------------------------------
    def filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        """A synchronous fsspec filesystem and the path on it."""
        if self.is_local:
            return fsspec.filesystem("file"), self.url
        fs, path = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, path

    @contextlib.contextmanager
    def reaching(self) -> Iterator[None]:
        """Environment failures raised in the block (credentials, endpoint,
        access, bucket, disk full or read-only) become one
        :class:`~dmf.errors.EnvironmentFailure` naming this location."""
        try:
            yield
        except DmfError:
            raise
        except Exception as exc:
            failure = environment_failure(exc, self.url, self.storage_options)
            if failure is None:
                raise
            raise failure from exc

    def exists(self) -> bool:
        """Whether something is here. A missing bucket, missing credentials,
        an endpoint that does not answer raise an EnvironmentFailure instead
        of answering no: the fix is not in the input."""
        if self.is_local:
            return os.path.exists(self.url)
        with self.reaching():
            fs, path = self.filesystem()
            try:
                fs.invalidate_cache(path)
            except Exception:  # noqa: BLE001 - not every filesystem caches
                pass
            found = bool(fs.exists(path))
            if not found:
                self._check_bucket(fs, path)
        return found

    def _check_bucket(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        if self.protocol not in BUCKET_PROTOCOLS:
            return
        bucket = path.split("/", 1)[0]
        key = (self.protocol, str(sorted(self.storage_options.items())), bucket)
        if key in _BUCKETS_SEEN:
            return
        if not fs.exists(bucket):
            raise missing_bucket(self.url, self.storage_options)
        _BUCKETS_SEEN.add(key)

    def is_zarr_node(self) -> bool:
        return any(self.join(meta).exists() for meta in (ZARR_V3_META, *ZARR_V2_META))

    def remove(self) -> None:
        """Delete whatever is here (a whole store); no error if nothing is."""
        with self.reaching():
            self._remove()

    def _remove(self) -> None:
        if self.is_local:
            if os.path.isdir(self.url):
                shutil.rmtree(self.url)
            elif os.path.exists(self.url):
                os.remove(self.url)
            return
        fs, path = self.filesystem()
        if fs.exists(path):
            fs.rm(path, recursive=True)

    def move_to(self, target: Location) -> None:
        """Move this store to ``target`` (which must not exist).

        Atomic on a local filesystem (one rename). Object stores have no
        rename and no real folders: every object is copied (server side),
        then the source is deleted.
        """
        if self.is_local and target.is_local:
            os.rename(self.url, target.url)
            return
        fs, path = self.filesystem()
        _, target_path = target.filesystem()
        path = path.rstrip("/")
        fs.invalidate_cache(path)
        # Metadata last, the root's very last: until then the target is not a
        # store at all, so a crash mid-move never leaves one that looks whole.
        files = sorted(fs.find(path), key=lambda f: (_is_metadata(f), -f.count("/")))
        for source in files:
            fs.copy(source, target_path.rstrip("/") + source[len(path):])
        fs.rm(path, recursive=True)

    def size_on_store(self) -> int:
        """Bytes this store occupies: the sum of its files' sizes."""
        if self.is_local:
            total = 0
            for root, _dirs, files in os.walk(self.url):
                total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
            return total
        fs, path = self.filesystem()
        return int(fs.du(path, total=True))

    def memory_bytes(self) -> int | None:
        """Bytes what is here takes in memory once read: a Zarr array's shape
        times its item size, the sum of a group's arrays (a sparse matrix's
        data, indices and pointers), a plain file's size; None when nothing
        is here. Reads metadata only.

        Examples
        --------
        >>> import numpy as np, dmf
        >>> _ = dmf.save_matrix(np.zeros((4, 2), "float32"), "memory://doc/bytes.zarr")
        >>> Location.parse("memory://doc/bytes.zarr").memory_bytes()
        32
        >>> Location.parse("memory://doc/none.zarr").memory_bytes() is None
        True
        """
        if not self.exists():
            return None
        if not self.is_zarr_node():
            return self.size_on_store()
        node = self.open_node()
        if isinstance(node, zarr.Array):
            return int(node.nbytes)
        with warnings.catch_warnings():
            # a job's root holds its report and lock files beside the Zarr nodes
            warnings.filterwarnings("ignore", "Object at .* is not recognized", UserWarning)
            members = node.members(max_depth=None)
        return sum(int(m.nbytes) for _, m in members if isinstance(m, zarr.Array))

    # -- zarr ---------------------------------------------------------------
    def zarr_store(self, *, read_only: bool = False) -> zarr.abc.store.Store:
        if self.is_local:
            if not read_only:
                os.makedirs(self.url, exist_ok=True)
            return zarr.storage.LocalStore(self.url, read_only=read_only)
        return zarr.storage.FsspecStore.from_url(
            self.url, storage_options=self.storage_options or None, read_only=read_only
        )

    def open_node(self) -> zarr.Array | zarr.Group:
        """Open the Zarr array or group here, read-only, or raise ``StoreError``."""
        if not self.exists():
            raise StoreError(f"{self}: no such file or directory")
        if not self.is_zarr_node():
            raise StoreError(
                f"{self}: not a Zarr store (no {ZARR_V3_META}, .zarray or .zgroup); "
                "convert files with `dmf ingest SRC OUT`"
            )
        try:
            with self.reaching():
                return zarr.open(store=self.zarr_store(read_only=True), mode="r")
        except DmfError:
            raise
        except Exception as exc:
            raise StoreError(f"{self}: corrupt Zarr metadata ({one_line(exc)})") from exc


def dmf_attrs(node: zarr.Array | zarr.Group) -> dict[str, Any]:
    """``attrs["dmf"]`` of a Zarr node, or {} (here, not in :mod:`dmf.store.dense_read`,
    so that reading a job's records imports no Dask)."""
    attrs = node.attrs.asdict() if hasattr(node.attrs, "asdict") else dict(node.attrs)
    value = attrs.get("dmf", {})
    return value if isinstance(value, dict) else {}


def _is_metadata(key: str) -> bool:
    return key.rsplit("/", 1)[-1] in (ZARR_V3_META, *ZARR_V2_META, ".zattrs")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {first}"
