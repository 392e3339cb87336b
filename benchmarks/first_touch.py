"""What a new user waits for: whole commands, start-up included, side by side.

``python -m benchmarks.first_touch [--data DIR] [--repeat N] [--warmup N]
[--no-cluster-row]``

Each case is one fresh process, timed from its start to its exit (wall
time, and its CPU time), the cases' repetitions interleaved (A, B, C, A, B, C, ...) so that a
busy machine slows every case alike. Prints one markdown table of medians:

- ``dmf svd S.zarr s.zarr -k 5`` on a 20000 x 300 float32 matrix, against
  the same ``dmf.svd`` call in a plain Python process (target: at most
  1.3x); for information, the same command on a local cluster of 2 workers
  (``--workers 2``: what it ran on before small work stayed in process);
- ``dmf run JOB.yaml`` of a job whose steps are all complete (target: at
  most 1.5 s);
- ``dmf --help`` (target: at most 0.5 s);
- for scale: a Python that does nothing.

Nothing here needs a cluster of the benchmark harness: run it alone, on a
quiet machine for figures worth quoting. Data (``S.zarr``, the job) is made
once under ``--data`` and reused.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dmf

SHAPE = (20000, 300)
#: case -> (target, relative to which case or None for seconds)
TARGETS = {"dmf svd": (1.3, "dmf.svd in plain Python"), "dmf run (all complete)": (1.5, None),
           "dmf --help": (0.5, None)}


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    before: tuple[Path, ...] = ()  # removed before each round, untimed


def prepare(data: Path) -> dict[str, Path]:
    """S.zarr and a job whose steps are all complete, made once."""
    data.mkdir(parents=True, exist_ok=True)
    x = data / "first-touch-S.zarr"
    if not x.exists():
        dmf.generate.lowrank(str(x), SHAPE, 10, dtype="float32", seed=0, save_factors=False)
    job = data / "first-touch-job.yaml"
    job.write_text(f"job: first-touch\nroot: {data / 'first-touch-job'}\n"
                   "cluster: {workers: 0}\nsteps:\n"
                   "  - {step: generate, name: X, shape: 2000x50, rank: 3}\n"
                   "  - {step: svd, x: X, k: 3}\n")
    done = subprocess.run([sys.executable, "-m", "dmf", "-q", "run", str(job)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"could not complete the job first:\n{done.stderr}")
    return {"x": x, "job": job, "out": data / "first-touch-s.zarr"}


def cases(paths: dict[str, Path], with_cluster: bool) -> list[Case]:
    x, out = str(paths["x"]), paths["out"]
    plain = f"import dmf; dmf.svd({x!r}, 5, seed=0, out={str(out)!r})"
    listed = [
        Case("dmf svd", [sys.executable, "-m", "dmf", "svd", x, str(out), "-k", "5"], (out,)),
        Case("dmf.svd in plain Python", [sys.executable, "-c", plain], (out,)),
    ]
    if with_cluster:
        listed.append(Case("dmf --workers 2 svd (a local cluster)",
                           [sys.executable, "-m", "dmf", "--workers", "2", "svd", x, str(out),
                            "-k", "5"], (out,)))
    listed += [
        Case("dmf run (all complete)", [sys.executable, "-m", "dmf", "run", str(paths["job"])]),
        Case("dmf --help", [sys.executable, "-m", "dmf", "--help"]),
        Case("python -c pass", [sys.executable, "-c", "pass"]),
    ]
    return listed


def run_once(case: Case, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the process and its
    children) of one run: on a busy machine the CPU time says what the
    command costs, the wall time what the user waits."""
    for path in case.before:
        shutil.rmtree(path, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(case.argv, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{case.name} failed ({done.returncode}):\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def table(times: dict[str, list[float]], cpu: dict[str, list[float]]) -> str:
    medians = {name: statistics.median(t) for name, t in times.items()}
    cpus = {name: statistics.median(t) for name, t in cpu.items()}
    lines = ["| case | median wall s (min-max) | median CPU s | target | wall | CPU | holds |",
             "|---|---|---|---|---|---|---|"]
    for name, t in times.items():
        target, relative_to = TARGETS.get(name, (None, None))
        if target is None:
            goal = wall = spent = holds = ""
        elif relative_to:
            ratio = medians[name] / medians[relative_to]
            goal, wall = f"<= {target}x {relative_to}", f"{ratio:.2f}x"
            spent = f"{cpus[name] / cpus[relative_to]:.2f}x"
            holds = "yes" if ratio <= target else "NO"
        else:
            goal, wall, spent = f"<= {target} s", f"{medians[name]:.2f} s", f"{cpus[name]:.2f} s"
            holds = "yes" if medians[name] <= target else "NO"
        lines.append(f"| {name} | {medians[name]:.2f} ({min(t):.2f}-{max(t):.2f}) | "
                     f"{cpus[name]:.2f} | {goal} | {wall} | {spent} | {holds} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_touch",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("bench-data"))
    parser.add_argument("--repeat", type=int, default=5, help="recorded rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded rounds (default 1)")
    parser.add_argument("--no-cluster-row", action="store_true",
                        help="skip the --workers 2 row (the slowest)")
    args = parser.parse_args(argv)
    paths = prepare(args.data.resolve())
    listed = cases(paths, not args.no_cluster_row)
    env = dict(os.environ)
    env.pop("DASK_SCHEDULER_ADDRESS", None)  # the default: dmf chooses
    times: dict[str, list[float]] = {c.name: [] for c in listed}
    cpu: dict[str, list[float]] = {c.name: [] for c in listed}
    for round_ in range(args.warmup + args.repeat):
        print(f"round {round_ + 1} of {args.warmup + args.repeat}", file=sys.stderr)
        for case in listed:
            seconds, spent = run_once(case, env)
            if round_ >= args.warmup:
                times[case.name].append(seconds)
                cpu[case.name].append(spent)
    print(table(times, cpu))
    print(f"\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"`{shlex.join(['python', '-m', 'benchmarks.first_touch', *(argv or sys.argv[1:])])}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
