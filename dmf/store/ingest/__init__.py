"""Convert matrix files into dmf's Zarr stores, streaming.

``ingest`` never holds a whole file: it reads row blocks and writes each as
soon as it is complete, through a small thread pool so that compression
overlaps reading. Memory is a few blocks whatever the file size.

=========================  ==================================================
format (extension)         how it is read
=========================  ==================================================
npy (``.npy``)             read block by block into a fresh buffer (C or
                           Fortran order); no memory map, whose pages would
                           pile up in RSS
csv, tsv, txt              numeric text; the delimiter comes from the
(``.csv .tsv .txt``)       extension or is sniffed, a first line with a word
                           above a number is a header, columns are chosen
                           by name or position (text columns skipped); a
                           first pass counts the lines
mtx (``.mtx``)             Matrix Market: ``array`` (column-major, spilled
                           per row block to temporary files) gives a dense
                           store, ``coordinate`` a sparse one
npz (``.npz``)             scipy.sparse.save_npz: CSR is streamed from the
                           zip members; CSC and COO go through the
                           (row, column, value) builder
ratings (by ``format``     ``user, item, rating[, timestamp]`` lines with
only)                      any ids: a ratings store (CSR, its CSC twin, ids,
                           times; :mod:`dmf.store.ingest.ratings`)
=========================  ==================================================

Text formats may be gzip-compressed (``.csv.gz``, ``.mtx.gz``). Dense
results are checked exactly as :func:`dmf.save_matrix` checks them (NaN/Inf
and integers beyond 2**53 refused, integers stored as float64); a store
already at the target is replaced only once the new one is complete.
Ingest runs in the client process: the file is local to it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dmf.errors import InputError, existing_file
from dmf.store.ingest.common import Job
from dmf.store.ingest.mtx import ingest_mtx
from dmf.store.ingest.npy import ingest_npy
from dmf.store.ingest.npz import ingest_npz
from dmf.store.ingest.ratings import ingest_ratings
from dmf.store.ingest.text import ingest_text
from dmf.store.location import Location

_BY_EXTENSION = {".npy": "npy", ".csv": "csv", ".tsv": "tsv", ".txt": "txt",
                 ".mtx": "mtx", ".npz": "npz"}
_TEXT = ("csv", "tsv", "txt")
_TEXT_OPTIONS = ("delimiter", "header", "columns", "usecols")
_OPTIONS = {"npy": (), "csv": _TEXT_OPTIONS, "tsv": _TEXT_OPTIONS,
            "txt": _TEXT_OPTIONS, "mtx": ("tmpdir",), "npz": ("tmpdir",),
            "ratings": ("delimiter", "header", "tmpdir", "columns", "duplicates")}
SUPPORTED = tuple(_OPTIONS)


def ingest(
    src: str | os.PathLike,
    url: str | os.PathLike,
    *,
    format: str | None = None,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    chunks=None,
    codec: str | None = None,
    dtype=None,
    **opts,
) -> str:
    """Convert a matrix file into a Zarr store, streaming in row blocks.

    Parameters
    ----------
    src : str or path
        A local file: ``.npy``, ``.csv``/``.tsv``/``.txt``, ``.mtx``,
        ``.npz`` (scipy.sparse.save_npz), or ratings (``format="ratings"``);
        text formats may end in ``.gz``.
    url : str or path
        Where to write: a local path or an fsspec URL.
    format : {"npy", "csv", "tsv", "txt", "mtx", "npz", "ratings"}, optional
        Overrides the format the extension says. ``"ratings"`` reads
        ``user, item, rating[, timestamp]`` lines with any ids (delimiter
        and header detected) into a ratings store: the CSR by user, its CSC
        twin by item, the ids (sorted) and the times; a pair rated twice
        keeps the latest rating (see :mod:`dmf.store.ingest.ratings`).
    overwrite : bool
        Replace a store already there; it stays intact until the new one is
        complete.
    storage_options : dict, optional
        Passed to fsspec for ``url``.
    chunks : int or (int, int), optional
        Chunks of a dense result, as for :func:`dmf.save_matrix`. Sparse
        results are chunked by number of stored values.
    codec : str, optional
        Compression preset (see :mod:`dmf.store.codecs`).
    dtype : {"float32", "float64"}, optional
        The stored dtype. Default: float32 and float64 are kept, integers
        become float64 (with a :class:`DmfWarning`), text becomes float64.
    **opts
        ``delimiter`` (text, ratings; ``None`` means detect it for ratings,
        whitespace for text), ``header`` (text, ratings: True, False, or
        None to detect it: for text, a word above a number), ``columns``
        (text, pandas' ``usecols`` by either name: the columns to read,
        header names or 0-based positions, a list or "a,c", in that order;
        by default a column whose first value is text, an id, is skipped
        with a warning. Ratings: {role: header name} or "user=NAME,item=NAME",
        for headers whose names are not user, item, rating, timestamp),
        ``tmpdir`` (mtx, npz, ratings: where temporary spill files go),
        ``duplicates`` (ratings: "last", the default, keeps the latest
        rating of a repeated pair and warns with the count; "sum" adds them).

    Returns
    -------
    str
        The normalized URL of the store.

    Raises
    ------
    InputError
        No such file, unknown format, malformed or truncated file (the
        message names the file and, for text, the line), NaN or Inf, not a
        real matrix. Nothing is left at ``url``.
    StoreError
        ``url`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import os, tempfile, numpy as np, dmf
    >>> tmp = tempfile.TemporaryDirectory()
    >>> src = os.path.join(tmp.name, "x.csv")
    >>> with open(src, "w") as f:
    ...     _ = f.write("a,b\\n1,2\\n3,4\\n")
    >>> dmf.ingest(src, "memory://doc/ingest-x.zarr")
    'memory://doc/ingest-x.zarr'
    >>> dmf.open_matrix("memory://doc/ingest-x.zarr").compute()
    array([[1., 2.],
           [3., 4.]])
    >>> tmp.cleanup()
    """
    path = existing_file(src, "a matrix file")
    fmt = _format_of(path, format)
    unknown = sorted(set(opts) - set(_OPTIONS[fmt]))
    if unknown:
        allowed = ", ".join(_OPTIONS[fmt]) or "none"
        raise InputError(f"{path}: unknown option(s) {', '.join(unknown)} for format {fmt} "
                         f"(accepted: {allowed})")
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            dtype = str(dtype)  # refused just below
        if dtype not in (np.float32, np.float64):
            raise InputError(f"{path}: dtype must be float32 or float64, got {dtype}")
    job = Job(path, fmt, Location.parse(url, storage_options), overwrite, chunks, codec, dtype)
    if fmt == "npy":
        ingest_npy(job)
    elif fmt in _TEXT:
        ingest_text(job, **opts)
    elif fmt == "mtx":
        ingest_mtx(job, **opts)
    elif fmt == "ratings":
        ingest_ratings(job, **opts)
    else:
        ingest_npz(job, **opts)
    return str(job.location)


def _format_of(path: str, format: str | None) -> str:
    listed = ", ".join(SUPPORTED)
    if format is not None:
        fmt = str(format).lower().lstrip(".")
        if fmt not in _OPTIONS:
            raise InputError(f"{path}: unknown format {format!r}; supported: {listed}")
        return fmt
    base = path[:-3] if path.lower().endswith(".gz") else path
    ext = os.path.splitext(base)[1].lower()
    fmt = _BY_EXTENSION.get(ext)
    if fmt is None:
        raise InputError(f"{path}: cannot tell the format from the extension {ext or '(none)'!r}; "
                         f"supported: {listed} (pass format=...)")
    if base != path and fmt in ("npy", "npz"):
        raise InputError(f"{path}: a gzip-compressed {fmt} file cannot be streamed; "
                         "decompress it first")
    return fmt


__all__ = ["SUPPORTED", "ingest"]
