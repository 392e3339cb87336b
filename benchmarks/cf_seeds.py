"""nDCG@10 of implicit ALS over seeds, dmf against ``implicit`` (issue 24,
line 2: "nDCG@10 equal within seed noise").

``python -m benchmarks.cf_seeds [--data bench-data] [--seeds 5] [--iters 2]``

Both fit the planted clicks of ``cf --parts S`` (generated there first;
100000 x 20000, split 80/20 by click) at k = 64, alpha 40, reg 0.1, one
thread each, once per seed, and are scored by dmf.cf's metrics on the
held-out clicks (training clicks excluded). Prints each seed's nDCG@10 and
precision@10 and, per package, the mean and the spread across seeds.
Quality only: no timing, so a busy machine does not change the figures.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import dask

import dmf
from benchmarks.cf import _implicit_als, _in_memory, _precision_of


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cf_seeds", description=__doc__)
    p.add_argument("--data", type=Path, default=Path("bench-data"))
    p.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (default 5)")
    p.add_argument("--iters", type=int, default=2, help="ALS iterations (default 2, as S3)")
    args = p.parse_args(argv)
    split = (args.data / "cf" / "100000x20000-d0.005-rank10-noise0.5-seed0" / "clicks-split")
    if not (split / "train.zarr").exists():
        raise SystemExit(f"cf_seeds: no clicks at {split}; run `python -m benchmarks cf "
                         "--parts S` once to generate them")
    train, test = _in_memory({"t": split / "train.zarr", "v": split / "test.zarr"}, "t", "v")
    score = _precision_of(train, test)
    found: dict[str, list[float]] = {"implicit": [], "dmf": []}
    print("| seed | implicit nDCG@10 | dmf nDCG@10 | implicit precision@10 | dmf precision@10 |")
    print("|---|---|---|---|---|")
    for seed in range(args.seeds):
        theirs = score(_implicit_als(train, 64, args.iters, 1, seed)())
        with dask.config.set(scheduler="threads", num_workers=1):
            ours = score(dmf.cf.als(train, 64, implicit=True, alpha=40.0, reg=0.1,
                                    max_iter=args.iters, tol=0, seed=seed, progress=False))
        found["implicit"].append(theirs["ndcg@10"])
        found["dmf"].append(ours["ndcg@10"])
        print(f"| {seed} | {theirs['ndcg@10']:.4f} | {ours['ndcg@10']:.4f} | "
              f"{theirs['precision@10']:.4f} | {ours['precision@10']:.4f} |", flush=True)
    print()
    for name, values in found.items():
        print(f"{name}: nDCG@10 mean {statistics.mean(values):.4f}, range "
              f"{min(values):.4f}-{max(values):.4f}, std {statistics.stdev(values):.4f}")


if __name__ == "__main__":
    main()
