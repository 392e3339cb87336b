"""Scaling with workers, and what an iteration sends.

``python -m benchmarks.scaling [--data DIR] [--size 4GB] [--cols 5000]
[--repeat 3] [--iters 3]``

On one float32 ``lowrank --nonnegative`` store (4 GB by default, kept under
``--data``, warm), alternately on a local cluster of 1 worker and one of 2
workers (1 thread each, 1 GiB each, each started once, the rounds
interleaved), times an NMF MU run (the engine's seconds per iteration) and a
randomized SVD (k = 20, q = 2), and counts what each sends: the bytes the
workers sent one another (``transfer_outgoing_bytes_total``) and every
byte over the loopback interface (client, scheduler and workers: all of a
local cluster's traffic), per NMF iteration. Prints a markdown table and
the 2-worker speed-ups (issue 25's target: >= 1.7x).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import dask

import dmf
from benchmarks.nmf import nonnegative_store

K = 20


def _loopback_bytes() -> int:
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                fields = rest.split()
                return int(fields[0]) + int(fields[8])  # received + sent
    return 0


def _worker_sent(client) -> int:
    return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total).values())


def _measure(client, url: str, iters: int) -> dict[str, float]:
    common = {"init": "random", "tol": 0, "seed": 0, "cache": False, "progress": False}
    # the iterations' bytes: a run of iters + 1 minus a run of 1
    counts = []
    for n in (1, iters + 1):
        lo, sent = _loopback_bytes(), _worker_sent(client)
        result = dmf.nmf(url, K, solver="mu", max_iter=n, **common)
        counts.append((_loopback_bytes() - lo, _worker_sent(client) - sent))
    t0 = time.perf_counter()
    dmf.svd(url, K, method="randomized", n_iter=2, seed=0, progress=False, cache=False)
    svd_s = time.perf_counter() - t0
    return {"nmf s/iter": result.attrs["timings"]["seconds_per_iter"], "svd s": svd_s,
            "loopback MiB/iter": (counts[1][0] - counts[0][0]) / iters / 2**20,
            "worker-to-worker MiB/iter": (counts[1][1] - counts[0][1]) / iters / 2**20}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("bench-data"))
    p.add_argument("--size", default="4GB")
    p.add_argument("--cols", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--iters", type=int, default=3)
    args = p.parse_args(argv)
    url = str(nonnegative_store(args.data.resolve(), args.size, args.cols, K, seed=0))
    rows: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with dmf.connect(n_workers=1, threads_per_worker=1, memory_limit="1GiB") as one, \
            dmf.connect(n_workers=2, threads_per_worker=1, memory_limit="1GiB") as two:
        clients = {1: one, 2: two}
        for r in range(args.repeat + 1):  # the first round warms up
            for workers, client in clients.items():
                with dask.config.set(scheduler=client):
                    measured = _measure(client, url, args.iters)
                print(f"round {r}, {workers} worker(s): {measured}", flush=True)
                if r:
                    rows[workers].append(measured)
    medians = {w: {key: statistics.median(m[key] for m in ms) for key in ms[0]}
               for w, ms in rows.items()}
    keys = list(medians[1])
    print(f"### Scaling: {url}, medians of {args.repeat}\n")
    print("| workers | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for w, m in medians.items():
        print(f"| {w} | " + " | ".join(f"{m[k]:.3g}" for k in keys) + " |")
    nmf = medians[1]["nmf s/iter"] / medians[2]["nmf s/iter"]
    svd = medians[1]["svd s"] / medians[2]["svd s"]
    print(f"\n2 workers against 1: NMF iteration {nmf:.2f}x, randomized SVD {svd:.2f}x "
          "(target >= 1.7x)")
    print(f"\nCommand: `python -m benchmarks.scaling --data {args.data} --size {args.size} "
          f"--cols {args.cols} --repeat {args.repeat} --iters {args.iters}`")


if __name__ == "__main__":
    main()
