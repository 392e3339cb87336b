"""What a result store records about the job that made it, and how a rerun
compares: one identity for the engine, rank selection, job steps and audio.

An identity is a JSON mapping built by :func:`job_identity`: what ran
(``algorithm``: a solver's name, ``rank-bcv``, a job step's kind,
``audio-separate``), its parameters in named groups (the engine's
``parameters`` and ``seed``; a job step's ``params`` and ``argv``), and
``inputs``, each described by :func:`describe_input` as it is now (a matrix
or a dmf store: shape, dtype, chunks, token; a plain file: path, size,
mtime). A store keeps it whole under ``identity`` and its digest under
``fingerprint`` (:func:`recorded`): a result group's and a checkpoint's
``attrs["dmf"]``, a job root's ``steps[NAME]``, an audio separation's
marker. A rerun builds its own and compares (:func:`difference`): the same
job resumes, or is skipped once complete; another one is named by its
first difference, in the one message of :func:`refusal`.

Records of older dmf versions are read by :func:`read_identity`: an engine
result's or checkpoint's ``fingerprint`` converts exactly (the same job
still resumes or is skipped); a job step's hashed inputs cannot be
compared, so such a step runs again.

Imports nothing heavy: a job whose steps are all complete compares
identities without loading Dask.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dmf.store.location import Location

#: Where a store keeps the identity whole, and where its digest.
IDENTITY, FINGERPRINT = "identity", "fingerprint"
#: The keys of an input's description: a matrix or Zarr store, a plain file
#: (on an object store also its version, ``token``: see :func:`_describe_file`).
MATRIX_KEYS = ("shape", "dtype", "chunks", "token")
FILE_KEYS = ("path", "size", "mtime_ns")
#: Parameter groups that restate the others (a job step's command line):
#: compared last, so that a difference is named where the user set it.
RESTATED = ("argv",)
#: What :func:`difference` says of a record it cannot compare.
OLDER = "recorded by an older dmf, in a form this one cannot compare"


def job_identity(algorithm: str, inputs: Mapping[str, dict | None],
                 **parameters: Any) -> dict[str, Any]:
    """The identity of a job: what ran, its parameters by group, its inputs
    (each from :func:`describe_input`), as a store keeps it (plain JSON).

    Examples
    --------
    >>> job_identity("nmf", {"input": {"shape": (2, 3)}}, parameters={"k": 2}, seed=0)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'algorithm': 'nmf', 'parameters': {'k': 2}, 'seed': 0,
     'inputs': {'input': {'shape': [2, 3]}}}
    """
    whole = {"algorithm": algorithm, **parameters, "inputs": dict(inputs)}
    return json.loads(json.dumps(whole, default=_plain))


def describe_input(source: Any, *, token: str | None = None,
                   storage_options: dict | None = None) -> dict[str, Any] | None:
    """What an input is now, for an identity.

    ``source`` is a dask array (the matrix a solver runs on: its shape,
    dtype, chunks and ``token``, by default its dask name, which for a
    stored matrix covers its URL and write id), or a URL or path: a Zarr
    store (its shape, dtype and chunks when it is an array, and its dmf
    write id, or else the hash of its metadata, as token) or a plain file
    (path, size, modification time in ns). None if nothing is at the URL.

    Examples
    --------
    >>> import dask.array as da
    >>> describe_input(da.zeros((4, 2), chunks=(3, 2)), token="t")
    {'shape': [4, 2], 'dtype': 'float64', 'chunks': [[3, 1], [2]], 'token': 't'}
    """
    if not isinstance(source, (str, os.PathLike, Location)):
        return {"shape": list(source.shape), "dtype": str(source.dtype),
                "chunks": [list(c) for c in source.chunks], "token": token or source.name}
    location = Location.parse(source, storage_options)
    fs, path = location.filesystem()
    with location.reaching():
        return _describe_store(fs, path) or _describe_file(location, fs, path)


def recorded(identity: dict[str, Any]) -> dict[str, Any]:
    """What a store keeps of ``identity``: the whole, and its digest."""
    return {IDENTITY: identity, FINGERPRINT: digest(identity)}


def read_identity(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The identity a record holds (a result's or checkpoint's ``attrs["dmf"]``,
    a job step's record, a marker), in today's form; None when it holds none
    that can be compared (nothing, or a job step's record made by an older dmf,
    which kept a hash of each input's metadata)."""
    record = record or {}
    stored = record.get(IDENTITY)
    if isinstance(stored, dict) and "algorithm" in stored and all(
            isinstance(v, dict) for v in (stored.get("inputs") or {}).values()):
        return stored
    older = record.get(FINGERPRINT)
    if isinstance(older, dict) and {"algorithm", "parameters", "input", "seed"} <= set(older):
        # an engine result or checkpoint of an older dmf: the same facts, laid out
        # before inputs were named
        return job_identity(older["algorithm"], {"input": older["input"]},
                            parameters=older["parameters"], seed=older["seed"])
    return None


def difference(record: Mapping[str, Any] | None, identity: dict[str, Any]) -> str | None:
    """None when ``record`` holds ``identity``; otherwise its first difference
    (:func:`first_difference`, restated groups last), or :data:`OLDER`.

    Examples
    --------
    >>> ident = job_identity("svd", {}, params={"k": 2}, argv=["svd", "--k", "2"])
    >>> difference(recorded(ident), ident) is None
    True
    >>> other = job_identity("svd", {}, params={"k": 3}, argv=["svd", "--k", "3"])
    >>> difference(recorded(ident), other)
    'params.k: 2 (stored) vs 3 (this job)'
    """
    stored = read_identity(record)
    if stored is None:
        return OLDER
    first = [{k: v for k, v in i.items() if k not in RESTATED} for i in (stored, identity)]
    restated = [{k: i.get(k) for k in RESTATED if k in i} for i in (stored, identity)]
    return first_difference(*first) or first_difference(*restated)


def refusal(where: Any, holds: str, diff: str, remedy: str) -> str:
    """The one message refusing to go on over another job's store.

    Examples
    --------
    >>> print(refusal("out.zarr", "a complete result", "seed: 3 (stored) vs 4 (this job)",
    ...               "use --no-resume to replace it"))  # doctest: +NORMALIZE_WHITESPACE
    out.zarr: holds a complete result of a different job
    (seed: 3 (stored) vs 4 (this job)); use --no-resume to replace it
    """
    if diff == OLDER:
        return (f"{where}: holds {holds} made by an older dmf, whose record of the job "
                f"this one cannot compare; {remedy}")
    return f"{where}: holds {holds} of a different job ({diff}); {remedy}"


def digest(identity: dict[str, Any]) -> str:
    """The SHA-256 of ``identity`` as canonical JSON (keys sorted).

    Examples
    --------
    >>> digest({"b": 1, "a": [2]}) == digest({"a": [2], "b": 1})
    True
    >>> len(digest({}))
    64
    """
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def first_difference(old: Any, new: Any, path: str = "") -> str | None:
    """The first place two identities differ, as ``a.b: OLD != NEW``.

    Examples
    --------
    >>> first_difference({"p": {"k": 5}}, {"p": {"k": 6}})
    'p.k: 5 (stored) vs 6 (this job)'
    >>> first_difference({"a": 1}, {"a": 1}) is None
    True
    """
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            diff = first_difference(old.get(key), new.get(key), sub)
            if diff:
                return diff
        return None
    if old != new:
        return f"{path}: {old!r} (stored) vs {new!r} (this job)"
    return None


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain Python, for JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not part of a job's identity")


def _describe_store(fs, path: str) -> dict[str, Any] | None:
    """A Zarr node's description from its metadata documents (format 3 or
    2); None if ``path`` holds none."""
    path = path.rstrip("/")
    docs = {}
    for name in ("zarr.json", ".zarray", ".zgroup", ".zattrs"):
        try:
            docs[name] = fs.cat_file(f"{path}/{name}")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        if name == "zarr.json":
            break
    if not docs:
        return None
    meta = json.loads(docs.get("zarr.json") or docs.get(".zarray") or b"{}")
    attrs = meta.get("attributes") or json.loads(docs.get(".zattrs") or b"{}")
    shape = meta.get("shape") or attrs.get("shape")
    grid = meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape") \
        or meta.get("chunks")
    chunks = ([[min(c, n - i) for i in range(0, n, c)] for n, c in zip(shape, grid, strict=True)]
              if shape is not None and grid else None)
    dtype = meta.get("data_type") or meta.get("dtype")
    write_id = (attrs.get("dmf") or {}).get("write_id") if isinstance(attrs, dict) else None
    token = write_id or "sha256:" + hashlib.sha256(b"".join(docs.values())).hexdigest()
    return {"shape": list(shape) if shape is not None else None,
            "dtype": dtype if isinstance(dtype, str) or dtype is None else json.dumps(dtype),
            "chunks": chunks, "token": token}


def _describe_file(location: Location, fs, path: str) -> dict[str, Any] | None:
    """A plain file's path, size and modification time (ns), and on an object
    store its version token; None if missing."""
    if location.is_local:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return {"path": location.url, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    when = next((info[k] for k in ("mtime", "LastModified", "Last-Modified", "created")
                 if k in info), None)
    described = {"path": location.url, "size": info.get("size"), "mtime_ns": _nanoseconds(when)}
    # an object store's own version of the content: a replacement of the same
    # size within the second (S3's LastModified) or without a parsable time
    # (HTTP) still differs by it
    token = next((info[k] for k in ("ETag", "etag", "VersionId", "generation") if info.get(k)),
                 None)
    return {**described, "token": str(token)} if token is not None else described


def _nanoseconds(when: Any) -> int | None:
    """A filesystem's modification time (seconds, a datetime or its ISO text) in ns."""
    if isinstance(when, str):
        try:
            when = float(when)
        except ValueError:
            try:
                when = datetime.fromisoformat(when)
            except ValueError:
                try:  # HTTP's Last-Modified (RFC 1123)
                    when = email.utils.parsedate_to_datetime(when)
                except (TypeError, ValueError):
                    return None
    if isinstance(when, datetime):
        when = when.timestamp()
    return int(when * 1e9) if isinstance(when, (int, float)) else None
