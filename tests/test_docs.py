"""Every code block in README.md and docs/ is executed (or says why not).

- ```console blocks: each ``$ command`` runs in a scratch folder (with
  ``pipelines/`` and ``examples/`` linked in) and must exit 0; ``dmf``
  commands run in this process on threads (``--workers 0``; a ``dmf run``
  job on the session's LocalCluster, ``$DASK_SCHEDULER_ADDRESS``), other
  commands in a shell.
- python blocks that call ``dmf.connect()`` get the session's LocalCluster.
- ```python blocks run with ``__name__ == "__main__"`` in the same folder.
- ```pycon blocks (a session with ``>>>``) run as doctests; the sessions
  of one page continue one another, as a reader's would.
- ```yaml blocks must parse.
- A block right after ``<!-- not run: REASON -->`` is not run; the reason
  must say why (what cannot run here, and which test covers it instead).
- ```text blocks are pictures, not code.

Blocks of one file share their folder, in order, like a reader at a shell.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from dmf.cli import main

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")
LANGUAGES = {"console", "python", "pycon", "yaml", "text"}


def blocks(path: Path) -> list[tuple[int, str, str, str | None]]:
    """(line, language, body, reason not to run) of each fenced block."""
    found, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, language = i + 1, match.group(1)
        end = next(j for j in range(start, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.search(before)
        found.append((start, language, "\n".join(lines[start:end]),
                      skip.group(1) if skip else None))
        i = end + 1
    return found


def commands(body: str) -> list[str]:
    """The ``$ `` lines of a console block, continuation lines joined."""
    out, current = [], None
    for line in body.splitlines():
        if current is not None:
            current += " " + line.strip()
        elif line.startswith("$ "):
            current = line[2:].strip()
        else:
            continue
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        out.append(current)
        current = None
    return out


@contextlib.contextmanager
def inside(folder: Path):
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def run_console(body: str, where: str) -> None:
    for command in commands(body):
        words = shlex.split(command, comments=True)
        if words and words[0] in ("dmf", ".venv/bin/dmf"):
            # threads in this process: the same work as on a cluster (the
            # cluster runs are tested elsewhere), without a cluster's
            # per-task overhead, which is most of a small example's time
            threads = [] if "--scheduler" in words else ["--workers", "0"]
            with contextlib.suppress(SystemExit):  # --help exits 0 through argparse
                code = main([*threads, *words[1:]])
                assert code == 0, f"{where}: `{command}` exited {code}"
            continue
        done = subprocess.run(command.replace(".venv/bin/", ""), shell=True,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{where}: `{command}` failed:\n{done.stderr[-2000:]}"


def run_doctest(body: str, where: str, session: dict) -> None:
    import doctest

    test = doctest.DocTestParser().get_doctest(body, session, where, where, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, clear_globs=False)
    session.update(test.globs)
    assert runner.failures == 0, f"{where}: the session's output differs (see above)"


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_code_blocks_run(path, tmp_path, local_cluster, monkeypatch, capsys):
    found = blocks(path)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", local_cluster.scheduler.address)
    for name in ("pipelines", "examples"):
        (tmp_path / name).symlink_to(REPO / name)
    session = {"__name__": "__main__"}  # the >>> sessions of one page continue
    with inside(tmp_path):
        for line, language, body, reason in found:
            where = f"{path.relative_to(REPO)}:{line}"
            assert language in LANGUAGES, f"{where}: say what the block is ({LANGUAGES})"
            if reason is not None:
                assert len(reason.split()) >= 4, f"{where}: say why it is not run"
                continue
            if language == "console":
                run_console(body, where)
            elif language == "python":
                exec(compile(body, where, "exec"), {"__name__": "__main__"})
            elif language == "pycon":
                run_doctest(body, where, session)
            elif language == "yaml":
                yaml.safe_load(body)
    capsys.readouterr()


def test_guides_can_run_in_one_folder():
    """A file the examples make has one recipe across all the pages (a
    reader runs the guides one after another in one folder): the same
    name for another shape would be refused or mistaken for the other."""
    made: dict[str, set[str]] = {}
    for path in DOCS:
        for _, language, body, reason in blocks(path):
            if language != "console" or reason is not None:
                continue
            for command in commands(body):
                words = shlex.split(command, comments=True)
                if words[:2] not in (["dmf", "generate"], ["dmf", "ingest"]) \
                        or "--overwrite" in words:
                    continue
                out = words[3]  # dmf generate KIND OUT, dmf ingest SRC OUT
                made.setdefault(out, set()).add(" ".join(words))
    twice = {out: recipes for out, recipes in made.items() if len(recipes) > 1}
    assert made and not twice, twice


def test_the_harness_reads_blocks_and_commands(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("text\n\n```console\n$ dmf info a \\\n   --json\nout\n$ ls\n```\n\n"
                   "<!-- not run: needs a GPU, see test_x -->\n```python\nboom()\n```\n")
    (first, second) = blocks(doc)
    assert commands(first[2]) == ["dmf info a --json", "ls"] and first[3] is None
    assert second[1] == "python" and second[3] == "needs a GPU, see test_x"


def test_api_reference_is_current():
    import importlib.util

    spec = importlib.util.spec_from_file_location("apidoc", REPO / "docs" / "apidoc.py")
    apidoc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(apidoc)
    assert (REPO / "docs" / "api.md").read_text() == apidoc.build(), (
        "docs/api.md is stale: run .venv/bin/python docs/apidoc.py")
