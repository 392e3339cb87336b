"""What the ``dmf`` command prints: -q is errors only and never hides a
result, -v lines carry times, paths are absolute, counts agree with their
nouns, every required option says what it is, commands that start no
cluster list no cluster options, descriptions wrap."""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dmf.cli import build_parser, main
from dmf.errors import DmfWarning

REPO = Path(__file__).resolve().parent.parent
NO_CLUSTER = [["info"], ["ingest"], ["report"], ["generate", "ratings"], ["cf", "split"],
              ["audio", "demo"]]
CLUSTER = [["svd"], ["nmf"], ["rank"], ["run"], ["generate", "lowrank"], ["cf", "train"],
           ["cf", "recommend"], ["audio", "separate"]]


@pytest.fixture(autouse=True)
def _dmf_log_level():
    """main() sets the dmf logger's level for its process (-q: ERROR); give
    the tests after these their own back."""
    logger = logging.getLogger("dmf")
    level = logger.level
    yield
    logger.setLevel(level)


def subcommands(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subcommands(sub, (*path, name))
    yield path, parser


def parser_of(path):
    return dict(subcommands(build_parser()))[tuple(path)]


def test_quiet_keeps_results_on_stdout_and_drops_notes(tmp_path, capsys):
    ratings, model = tmp_path / "R.zarr", tmp_path / "als"
    assert main(["-q", "generate", "ratings", str(ratings), "--users", "40", "--items", "20",
                 "--density", "0.3", "--rank", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {ratings}: 40 users x 20 items")
    assert main(["-q", "--workers", "0", "cf", "train", str(ratings), str(model), "-k", "2",
                 "--max-iter", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {model}: als") and "1 iteration\n" in out
    assert main(["-q", "--workers", "0", "cf", "recommend", str(model), str(ratings),
                 "--user", "1", "-n", "3"]) == 0
    captured = capsys.readouterr()
    assert re.fullmatch(r"1: (\d+ \(\S+\), ){2}\d+ \(\S+\)\n", captured.out), captured.out
    assert captured.err == ""
    # a note (an id column skipped) without -q; nothing on stderr with it
    src = tmp_path / "ids.csv"
    src.write_text("id,a\nu1,1\nu2,2\n")
    with warnings.catch_warnings():
        warnings.simplefilter("always", DmfWarning)
        assert main(["ingest", str(src), str(tmp_path / "a.zarr")]) == 0
        assert "dmf: note:" in capsys.readouterr().err
        assert main(["-q", "ingest", str(src), str(tmp_path / "b.zarr")]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith(f"wrote {tmp_path / 'b.zarr'}: ")


def test_paths_are_printed_absolute(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--workers", "0", "generate", "lowrank", "X.zarr", "--shape", "30x8",
                 "--rank", "2", "--no-factors"]) == 0
    assert main(["--workers", "0", "svd", "X.zarr", "svd.zarr", "-k", "2"]) == 0
    assert main(["--workers", "0", "nmf", "X.zarr", "nmf.zarr", "-k", "2", "--max-iter", "1",
                 "--init", "random"]) == 2  # X has negative entries: refused
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {tmp_path / 'X.zarr'}: 30 x 8")
    assert lines[1].startswith(f"wrote {tmp_path / 'svd.zarr'}: U, S, Vt")


def test_verbose_log_lines_carry_times(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "dmf", "-v", "--workers", "0", "generate", "lowrank",
         str(tmp_path / "X.zarr"), "--shape", "20x5", "--rank", "2", "--nonnegative"],
        capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "dmf", "-v", "--workers", "0", "nmf", str(tmp_path / "X.zarr"),
         str(tmp_path / "nmf.zarr"), "-k", "2", "--max-iter", "1", "--tol", "0"],
        capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    logged = [line for line in done.stderr.splitlines() if " dmf: INFO: " in line]
    assert logged, done.stderr
    for line in logged:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} dmf: INFO: ", line), line
    assert "1 iteration," in done.stdout and "1 iterations" not in done.stdout


def test_every_required_option_and_argument_has_help():
    missing = [(" ".join(path), action.dest) for path, parser in subcommands(build_parser())
               for action in parser._actions
               if (action.required or not action.option_strings) and not action.help
               and not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)]
    assert missing == []


@pytest.mark.parametrize("path", NO_CLUSTER + CLUSTER, ids=" ".join)
def test_cluster_options_only_where_a_cluster_starts(path):
    text = parser_of(path).format_help()
    assert ("--workers" in text) == (path in CLUSTER), text
    assert "--quiet" in text and "--storage-options" in text


def test_long_descriptions_wrap(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    for path in (["svd"], ["nmf"], ["cf", "train"], ["audio", "separate"]):
        text = parser_of(path).format_help()
        description = text.split("\n\n")[1]
        assert max(len(line) for line in description.splitlines()) <= 80, description


def test_quiet_run_prints_the_summary_only(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(f"job: tiny\nroot: {tmp_path / 'out'}\ncluster: {{workers: 0}}\nsteps:\n"
                   "  - step: generate\n    name: X\n    shape: 50x10\n    rank: 2\n")
    assert main(["-q", "run", str(job)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("job tiny: complete in ") and len(lines) == 2, captured.out
    assert lines[1].split()[:2] == ["X", "run"] and captured.err == ""
