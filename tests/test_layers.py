"""dmf's imports point down its layers, with no known violation left
(issue 27, line 1; the checker is ``python -m dmf.tools.layers``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dmf.tools import layers


def test_no_import_breaks_the_layering():
    """No upward import, no cycle, no function-level import of a dmf module:
    the baseline of known violations is empty and must stay so."""
    found = sorted(v.key for v in layers.check())
    assert found == [], ("imports that break the layering (fix them; see "
                         "python -m dmf.tools.layers):\n" + "\n".join(found))
    assert layers.BASELINE.exists() and layers.read_baseline() == set()


def test_every_dmf_module_has_a_layer():
    modules = layers.module_names(layers.PACKAGE_DIR)
    assert "dmf.tools.layers" in modules and "dmf.store.ingest.npy" in modules
    assert [m for m in modules if layers.layer_of(m) is None] == []


def _package(root: Path, files: dict[str, str]) -> Path:
    """A package named dmf under ``root`` holding ``files`` (path -> source)."""
    for name, source in files.items():
        path = root / "dmf" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root / "dmf"


SMALL = {
    "__init__.py": "",
    "errors.py": "",
    "store/__init__.py": "",
    "store/a.py": "import os\nfrom dmf.engine import b\nfrom dmf import errors\n",
    "engine/__init__.py": "",
    "engine/b.py": ("import dask\n\n\ndef f():\n"
                    "    import matplotlib\n    from ..store import a  # late: a imports b\n"),
    "nmf/__init__.py": "from . import x\n",
    "nmf/x.py": "from .y import z\n",
    "nmf/y.py": "import dmf.nmf.x\n\nz = 1\n",
    "cli.py": "class Command:\n    def run(self):\n        from dmf.nmf import x\n",
    "newthing.py": "",
}


def test_the_checker_finds_each_kind_of_violation(tmp_path):
    found = {v.key: v for v in layers.check(_package(tmp_path, SMALL))}
    assert sorted(found) == sorted([
        "unplaced dmf.newthing",
        "upward dmf.store.a -> dmf.engine.b",
        "cycle top-level (2 modules): dmf.nmf.x dmf.nmf.y",
        "cycle all-imports (2 modules): dmf.engine.b dmf.store.a",
        "cycle all-imports (2 modules): dmf.nmf.x dmf.nmf.y",
        "function dmf.engine.b -> dmf.store.a in f",
        "lazy-cli dmf.cli -> dmf.nmf.x in Command.run",
    ])
    assert found["upward dmf.store.a -> dmf.engine.b"].details == [
        "dmf.store.a -> dmf.engine.b (line 2; store imports engine)"]
    assert found["function dmf.engine.b -> dmf.store.a in f"].details == [
        "dmf.engine.b -> dmf.store.a (line 6, in f, late: a imports b)"]


def test_the_command_fails_on_a_new_violation_and_on_a_fixed_one(tmp_path, capsys):
    package = _package(tmp_path, SMALL)
    baseline = tmp_path / "baseline.txt"
    args = ["--package-dir", str(package), "--baseline", str(baseline)]
    assert layers.main([*args, "--write-baseline"]) == 0
    assert len(layers.read_baseline(baseline)) == 7
    assert layers.main(args) == 0
    assert "baseline: 7 known, 0 new, 0 fixed" in capsys.readouterr().out

    (package / "store" / "c.py").write_text("from dmf.cli import Command\n")
    assert layers.main(args) == 1
    out = capsys.readouterr().out
    assert "  NEW dmf.store.c -> dmf.cli (line 1; store imports cli)" in out
    assert "new (not in the baseline): upward dmf.store.c -> dmf.cli" in out

    (package / "store" / "c.py").unlink()
    (package / "newthing.py").unlink()
    assert layers.main(args) == 1
    assert "fixed (remove from the baseline): unplaced dmf.newthing" in capsys.readouterr().out


def test_a_lazy_package_gives_any_submodule_as_an_attribute():
    # as an eager package does once the submodule is imported anywhere: the
    # benchmarks reached dmf.cf.data so, and it broke when dmf.cf went lazy
    code = ("import dmf; print(dmf.cf.data.ratings_from_scipy.__name__, "
            "dmf.store.location.Location.__name__)\n"
            "try:\n    dmf.cf.no_such_module\nexcept AttributeError:\n    print('refused')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ratings_from_scipy", "Location", "refused"]
