"""Codec: how fast a full read pass over X is with each compression setting.

The same float32 matrix (``dmf.generate.lowrank`` with noise, so the low
mantissa bits are random, as in real data) is stored once per codec with the
same chunks. For each store, three ways of reading every byte of it:

- ``raw``: the chunk files read with plain ``open().read()`` in ``--threads``
  threads, no decoding: the I/O limit;
- ``threads``: ``open_matrix(url).sum().compute()`` on dask's threaded
  scheduler (``--threads`` threads) in this process;
- ``cluster``: the same on the local cluster (``--workers`` processes of
  ``--threads-per-worker`` threads);
- ``nmf``: NMF iterations (MU, k = 20, random start, X not cached in
  memory) on the local cluster, seconds per iteration from the second on
  (the first follows the start's passes, which have just read X).

each with a warm page cache and, with ``--cache warm,cold``, a cold one
(the store's files evicted with ``posix_fadvise(DONTNEED)`` before each run,
and for ``nmf`` after each iteration too, so that every iteration reads the
disk as on a store larger than memory).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask.array as da
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

import dmf
from benchmarks.harness import Case, Data, Env, Suite, add_lowrank_arguments
from dmf.store import codecs as dmf_codecs
from dmf.store.dense_read import default_chunks

NAME = "codec"
HELP = "full read pass per compression codec (raw I/O, threads, cluster; warm and cold)"

#: Settings tried here that are not dmf presets (yet). dmf's presets end
#: with a CRC-32C checksum; these carry one too, except the two that measure
#: zarr's own default and the checksum's cost.
EXTRA_CODECS: dict[str, tuple] = {
    # What zarr writes when not told otherwise: zstd level 0, no checksum.
    "zarr-default": (ZstdCodec(level=0),),
    # Raw bytes without the checksum: its cost is "none" minus this.
    "none-nocrc": (),
    # Level barely changes LZ4's decode speed; it is here to show that.
    "lz4-1": (BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"), Crc32cCodec()),
    "lz4-2": (BloscCodec(cname="lz4", clevel=2, shuffle="shuffle"), Crc32cCodec()),
    "lz4-3": (BloscCodec(cname="lz4", clevel=3, shuffle="shuffle"), Crc32cCodec()),
    # zstd at the levels that decode fastest (issue 25 asks for 1-3).
    "zstd-1": (ZstdCodec(level=1), Crc32cCodec()),
    "zstd-2": (ZstdCodec(level=2), Crc32cCodec()),
    "zstd-3": (ZstdCodec(level=3), Crc32cCodec()),
    # Bit shuffle compresses floats better than byte shuffle, at some decode cost.
    "lz4-bitshuffle": (BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
                       Crc32cCodec()),
}

DEFAULT_CODECS = "zarr-default,zstd,blosc-zstd,lz4,lz4-bitshuffle,none,none-nocrc"
MODES = ("raw", "threads", "cluster", "nmf")
#: NMF iterations per ``nmf`` run: the first is not timed (see the module doc).
NMF_ITERATIONS = 3
BASELINE = "zarr-default / threads (warm)"
FLOAT32 = 4


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_lowrank_arguments(p, dtype="float32", size="2GB", cols=1000, rank=10, noise=0.1)
    p.add_argument("--chunk-rows", type=int, default=None,
                   help="rows per chunk (default: dmf's, about 64 MiB per chunk)")
    p.add_argument("--codecs", default=DEFAULT_CODECS,
                   help=f"comma-separated; dmf presets {sorted(dmf_codecs.PRESETS)} "
                        f"and {sorted(EXTRA_CODECS)} (default {DEFAULT_CODECS})")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated, of raw,threads,"
                   "cluster,nmf (default all)")
    p.add_argument("--cache", default="warm,cold", help="warm, cold or warm,cold (default)")


def parse_size(text: str) -> int:
    """Bytes from ``2GB``, ``300MB``, ``1.5GiB`` or a plain number.

    >>> parse_size("2GB"), parse_size("1KiB"), parse_size("10")
    (2000000000, 1024, 10)
    """
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(i?)b?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    number, prefix, binary = m.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** " kmgt".index(prefix or " "))


def _csv(text: str, allowed) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise SystemExit(f"codec: unknown {bad or text!r}; choose from {sorted(allowed)}")
    return items


def compressors_of(codec: str) -> tuple:
    return EXTRA_CODECS[codec] if codec in EXTRA_CODECS else dmf_codecs.compressors(codec)


# --------------------------------------------------------------------------
# data: generated once per (shape, rank, noise, seed, chunks), kept in --data


def _complete(path: Path, shape: tuple[int, int]) -> bool:
    try:
        arr = zarr.open_array(store=str(path), mode="r")
    except Exception:  # noqa: BLE001 - missing or broken: write it again
        return False
    meta = arr.attrs.get("dmf", {})
    return tuple(arr.shape) == shape and isinstance(meta, dict) and meta.get("complete") is True


def _write_copy(src: Path, dst: Path, codec: str) -> None:
    """Re-encode the ``none`` store with ``codec``: same values, same chunks.

    Written with zarr directly (dmf.save_matrix only takes preset names), to
    a temporary name renamed at the end, so an interrupted copy is not reused.
    """
    x = dmf.open_matrix(src)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    arr = zarr.create_array(
        store=str(tmp), shape=x.shape, chunks=x.chunksize, dtype=x.dtype,
        compressors=compressors_of(codec), fill_value=0, zarr_format=3,
        attributes={"dmf": {"kind": "dense", "complete": True, "codec": codec}},
    )
    da.store(x, arr, lock=False)  # on the cluster: the client is the default scheduler
    shutil.rmtree(dst, ignore_errors=True)
    os.rename(tmp, dst)


def prepare(args: argparse.Namespace, env: Env, codecs: list[str]) -> dict[str, Path]:
    m = max(1, round(parse_size(args.size) / (args.cols * FLOAT32)))
    shape = (m, args.cols)
    rows = args.chunk_rows or default_chunks(shape, "float32")[0]
    args.chunk_rows = rows  # the printed command then names it, whatever dmf's default becomes
    # NMF needs X >= 0: with the nmf mode, every codec reads nonnegative data
    nonnegative = "nmf" in _csv(args.modes, MODES)
    folder = env.data_dir / NAME / (
        f"{m}x{args.cols}-rank{args.rank}-noise{args.noise:g}-seed{args.seed}-rows{rows}"
        + ("-nonnegative" if nonnegative else ""))
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "none.zarr"
    if not _complete(source, shape):
        print(f"generating {source} ...", flush=True)
        dmf.generate.lowrank(source, shape, args.rank, noise=args.noise, seed=args.seed,
                             dtype="float32", chunks=(rows, args.cols), codec="none",
                             nonnegative=nonnegative, save_factors=False, overwrite=True)
    stores = {}
    for codec in codecs:
        path = folder / f"{codec}.zarr"
        if not _complete(path, shape):
            print(f"writing {path} ...", flush=True)
            _write_copy(source, path, codec)
        stores[codec] = path
    return stores


# --------------------------------------------------------------------------
# the cases


def _sum_pass(path: Path) -> Callable[[], object]:
    x = dmf.open_matrix(path)  # outside the timing: a pass reuses an open array
    return lambda: x.sum().compute()


def _read_file(path: Path) -> int:
    with open(path, "rb") as f:
        return len(f.read())


def _raw_read(files: list[Path], threads: int) -> Callable[[], object]:
    def run() -> int:
        with ThreadPoolExecutor(threads) as pool:
            return sum(pool.map(_read_file, files))

    return run


def _nmf_iterations(data: Data, cold: bool, k: int = 20) -> Callable[[], object]:
    """MU iterations from scikit-learn's random start, X read from the store
    at each (``cache=False``); returns the seconds of iterations 2.. (timed
    between callbacks, the eviction of a cold run left out)."""

    def run() -> list[float]:
        seconds: list[float] = []
        started = [0.0]

        def each(iteration, _state, _stats):
            if iteration > 1:
                seconds.append(time.perf_counter() - started[0])
            if cold:
                data.evict()
            started[0] = time.perf_counter()

        dmf.nmf(str(data.paths[0]), k, solver="mu", init="random", seed=0, tol=0,
                max_iter=NMF_ITERATIONS, cache=False, progress=False, callback=each)
        return seconds

    return run


def _seconds_per_iteration(seconds: list[float]) -> dict[str, float]:
    return {"s/iter": statistics.median(seconds)}


def build(args: argparse.Namespace, env: Env) -> Suite:
    codecs = _csv(args.codecs, {*dmf_codecs.PRESETS, *EXTRA_CODECS})
    modes = _csv(args.modes, MODES)
    caches = _csv(args.cache, ("warm", "cold"))
    stores = prepare(args, env, codecs)

    data = {}
    for codec, path in stores.items():
        shape = zarr.open_array(store=str(path), mode="r").shape
        data[codec] = Data(codec, (path,), logical_bytes=shape[0] * shape[1] * FLOAT32)

    cases = []
    for cache in caches:
        for mode in modes:
            for codec in codecs:
                d = data[codec]
                measure = None
                if mode == "raw":
                    chunks = [f for f in d.files() if f.name != "zarr.json"]
                    run, where = _raw_read(chunks, env.threads), "client"
                elif mode == "nmf":
                    run, where = _nmf_iterations(d, cache == "cold"), "cluster"
                    measure = _seconds_per_iteration
                else:
                    run, where = _sum_pass(d.paths[0]), mode
                cases.append(Case(f"{codec} / {mode}", run, d, where=where, cache=cache,
                                  measure=measure))

    baseline = args.baseline or BASELINE
    if not args.baseline and baseline not in {c.key for c in cases}:
        baseline = cases[0].key  # zstd or threads left out: compare with the first row

    first = zarr.open_array(store=str(stores[codecs[0]]), mode="r")
    m, n = first.shape
    notes = [
        f"Data: `lowrank{' --nonnegative' if 'nmf' in modes else ''}` {m} x {n} float32, "
        f"rank {args.rank}, noise {args.noise:g}, "
        f"seed {args.seed}, chunks {first.chunks[0]} x {first.chunks[1]} "
        f"({first.nchunks} chunks of {first.chunks[0] * n * FLOAT32 / 2**20:.0f} MiB); "
        f"`{env.threads}` threads for threads/raw rows, cluster "
        f"{len(env.worker_pids())} workers.",
        "",
        "| codec | setting | stored MB | compression ratio |",
        "|---|---|---|---|",
    ]
    for codec in codecs:
        stored = data[codec].nbytes()
        logical = data[codec].logical_bytes or 0
        setting = dmf_codecs.describe(compressors_of(codec))
        notes.append(f"| {codec} | {setting} | {stored / 1e6:.0f} | {logical / stored:.3f} |")
    return Suite(title=f"Codec: full read pass of a {m} x {n} float32 matrix",
                 cases=cases, baseline=baseline, notes=notes)
