"""Check that dmf's imports point down its layers, in no circle (issue 27, line 1).

``python -m dmf.tools.layers`` (or ``make layers``) parses every module of the
dmf package with :mod:`ast`, importing none, and reports four kinds of
violation:

- **upward**: an import (at any level) of a module in a higher layer;
- **cycle**: a strongly connected component of the module graph, once with
  top-level imports only (an import-time circle) and once with all imports;
- **function**: an import of a dmf module inside a function, which hides a
  dependency from a reader (third-party imports inside functions are not
  reported: the optional heavy ones, matplotlib, soundfile, s3fs, numba,
  belong there);
- **lazy-cli**: the same inside ``dmf/cli.py``, ``dmf/cli_*.py`` and
  ``dmf/jobs/``, kept apart because the CLI imports lazily on purpose
  (``dmf --help`` and ``dmf run`` load no ``dask.array``: issue 21,
  tests/test_placement.py); still violations, counted on their own.

The layers, from the bottom; a module may import its own layer and those
below it:

=========== ==============================================================
base        modules every layer may use: ``errors``, ``wording``,
            ``_version``, ``lazy`` (the lazy packages' loader), ``params``
            (the estimators' parameter protocol)
store       ``dmf.store`` (Zarr I/O, ingest)
blocks      the row pass: ``dmf.blocks`` (NMF's and CF's solvers use it;
            it builds every per-row-block graph and its tree of sums), and
            ``dmf.linalg.products``, the SVD family's row functions (block
            products and moments) that ``dmf.blocks`` runs.
engine      ``dmf.engine`` (the loop, checkpoints, cluster; knows no algorithm)
algorithms  ``dmf.linalg``, ``dmf.nmf``, ``dmf.cf``, and ``validation``
            (the estimators' input checks and small-input scheduler, used
            by dmf.cf's models and ``estimators``; it asks the engine for
            the current client)
api         the package ``dmf`` (its ``__init__`` and lazy stub), ``estimators``,
            ``results`` (``dmf.load``), ``report``, ``rank``
            (``dmf.select_rank``), ``sklearn_output`` (the estimators'
            mixin), ``dmf.audio`` (source separation: a pipeline over
            ``dmf.nmf`` that writes a :mod:`dmf.report` page, as ``rank``
            is one over svd and nmf)
cli         ``cli``, ``cli_*``, ``__main__``, ``dmf.jobs``, ``dmf.tools``
=========== ==============================================================

The public functions that today live in algorithm packages (``dmf.nmf.api``,
``dmf.linalg.svd``, ``dmf.nmf.tri``) are counted with their package, and so
are the result types they return (``SVDResult`` in ``dmf.linalg.result``,
``NMFResult`` beside ``dmf.nmf``, whose ``transform`` calls it, ``NMTFResult``
beside ``dmf.nmtf``); ``dmf.results`` re-exports them. A package's lazy stub
(``__init__.pyi``, read by lazy_loader) counts as top-level imports of the
package. A module that matches no entry of :data:`LAYER_OF` is a violation
too (kind ``unplaced``): each new module must be given a layer here.

Today's violations are listed in ``layers_baseline.txt`` beside this file,
one per line without line numbers. The check fails (exit status 1) on a
violation missing from it, and on a line of it that no longer occurs (a
fixed violation: remove it, or rewrite the file with ``--write-baseline``),
so the count only goes down.

Examples
--------
>>> layer_of("dmf.blocks"), layer_of("dmf.cf.passes"), layer_of("dmf.errors")
('blocks', 'algorithms', 'base')
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The layers, from the bottom.
LAYERS = ("base", "store", "blocks", "engine", "algorithms", "api", "cli")

#: Module name or package prefix -> layer; the longest matching entry wins.
LAYER_OF = {
    "dmf._version": "base",
    "dmf.errors": "base",
    "dmf.lazy": "base",
    "dmf.params": "base",
    "dmf.validation": "algorithms",
    "dmf.wording": "base",
    "dmf.store": "store",
    "dmf.blocks": "blocks",
    "dmf.linalg.products": "blocks",
    "dmf.engine": "engine",
    "dmf.linalg": "algorithms",
    "dmf.nmf": "algorithms",
    "dmf.cf": "algorithms",
    "dmf.audio": "api",
    "dmf": "api",  # the package itself only: see layer_of
    "dmf.estimators": "api",
    "dmf.results": "api",
    "dmf.report": "api",
    "dmf.rank": "api",
    "dmf.sklearn_output": "api",
    "dmf.cli": "cli",
    "dmf.cli_args": "cli",
    "dmf.cli_cf": "cli",
    "dmf.cli_matrix": "cli",
    "dmf.cli_audio": "cli",
    "dmf.__main__": "cli",
    "dmf.jobs": "cli",
    "dmf.tools": "cli",
}

#: Modules whose function-level imports are the CLI's deliberate lazy loading.
LAZY_CLI = ("dmf.cli", "dmf.cli_", "dmf.__main__", "dmf.jobs")

PACKAGE_DIR = Path(__file__).resolve().parent.parent
BASELINE = Path(__file__).resolve().with_name("layers_baseline.txt")

KINDS = ("unplaced", "upward", "cycle", "function", "lazy-cli")


@dataclass(frozen=True)
class Import:
    """One import of a dmf module by a dmf module, as written in the source."""

    module: str
    target: str
    line: int
    function: str | None  # qualified name of the enclosing function, or None at top level
    note: str  # "lazy stub", "type checking" or the line's trailing comment, or ""


@dataclass
class Violation:
    """One violation: ``key`` is its stable baseline line, ``details`` what a reader needs."""

    kind: str
    key: str
    details: list[str]


def layer_of(module: str) -> str | None:
    """The layer of a module (by its dotted name), or None when it has none."""
    if module == "dmf":
        return "api"
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        layer = LAYER_OF.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    return None


def module_names(package_dir: Path) -> dict[str, Path]:
    """Every module of the package under ``package_dir``, by dotted name."""
    root = package_dir.name
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = [root, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _comment(source_lines: list[str], line: int) -> str:
    text = source_lines[line - 1]
    return text.split("#", 1)[1].strip() if "#" in text else ""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ImportCollector(ast.NodeVisitor):
    """Records each import with the function around it (by qualified name)."""

    def __init__(self, module: str, is_package: bool, modules: Iterable[str],
                 source_lines: list[str], note: str = "") -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.modules = set(modules)
        self.source_lines = source_lines
        self.note = note
        self.scope: list[str] = []
        self.functions = 0
        self.type_checking = 0
        self.found: list[Import] = []

    def _nearest(self, name: str) -> str:
        while name not in self.modules and "." in name:
            name = name.rpartition(".")[0]
        return name

    def _targets(self, node: ast.Import | ast.ImportFrom) -> list[str]:
        root = self.module.split(".")[0]
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            return [self._nearest(n) for n in names if n == root or n.startswith(root + ".")]
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module or ""
        if not (base == root or base.startswith(root + ".")):
            return []
        targets = []
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            targets.append(submodule if submodule in self.modules else self._nearest(base))
        return targets

    def _record(self, node: ast.Import | ast.ImportFrom) -> None:
        function = ".".join(self.scope) if self.functions else None
        note = self.note or ("type checking" if self.type_checking else "")
        note = note or _comment(self.source_lines, node.lineno)
        for target in dict.fromkeys(self._targets(node)):
            if target != self.module:
                self.found.append(Import(self.module, target, node.lineno, function, note))

    visit_Import = _record
    visit_ImportFrom = _record

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.functions += 1
        self.generic_visit(node)
        self.functions -= 1
        self.scope.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.type_checking += 1
        for child in node.body:
            self.visit(child)
        self.type_checking -= 1
        for child in node.orelse:
            self.visit(child)


def scan(package_dir: Path = PACKAGE_DIR) -> tuple[list[str], list[Import]]:
    """All module names of the package and all their imports of its modules."""
    paths = module_names(package_dir)
    imports: list[Import] = []
    for module, path in paths.items():
        is_package = path.name == "__init__.py"
        sources = [(path, "")]
        stub = path.with_suffix(".pyi")
        if is_package and stub.exists():
            sources.append((stub, "lazy stub"))
        for source_path, note in sources:
            text = source_path.read_text(encoding="utf-8")
            collector = _ImportCollector(module, is_package, paths, text.splitlines(), note)
            collector.visit(ast.parse(text, filename=str(source_path)))
            imports.extend(collector.found)
    return sorted(paths), imports


def strongly_connected(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted.

    Examples
    --------
    >>> strongly_connected("abcd", [("a", "b"), ("b", "a"), ("b", "c"), ("c", "d")])
    [['a', 'b']]
    """
    successors: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        successors[source].add(target)
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(successors[node]):
            if successor not in index:
                visit(successor)
                lowlink[node] = min(lowlink[node], lowlink[successor])
            elif successor in on_stack:
                lowlink[node] = min(lowlink[node], index[successor])
        if lowlink[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(components, key=lambda c: (-len(c), c))


def _where(imp: Import) -> str:
    parts = [f"line {imp.line}"]
    if imp.function:
        parts.append(f"in {imp.function}")
    if imp.note:
        parts.append(imp.note)
    return ", ".join(parts)


def _cycles(kind: str, modules: list[str], imports: list[Import]) -> list[Violation]:
    found = []
    for members in strongly_connected(modules, [(i.module, i.target) for i in imports]):
        inside = set(members)
        edges = [f"{i.module} -> {i.target} ({_where(i)})" for i in imports
                 if i.module in inside and i.target in inside]
        key = f"cycle {kind} ({len(members)} modules): {' '.join(members)}"
        found.append(Violation("cycle", key, edges))
    return found


def violations(modules: list[str], imports: list[Import]) -> list[Violation]:
    """Every violation of the layering rule, in :data:`KINDS` order."""
    found = [Violation("unplaced", f"unplaced {m}", [f"{m} (no entry in LAYER_OF)"])
             for m in modules if layer_of(m) is None]
    rank = {layer: n for n, layer in enumerate(LAYERS)}
    upward: dict[str, list[str]] = defaultdict(list)
    function_level: dict[tuple[str, str], list[str]] = defaultdict(list)
    for imp in imports:
        low, high = layer_of(imp.module), layer_of(imp.target)
        if low is not None and high is not None and rank[high] > rank[low]:
            upward[f"upward {imp.module} -> {imp.target}"].append(
                f"{imp.module} -> {imp.target} ({_where(imp)}; {low} imports {high})")
        if imp.function:
            kind = "lazy-cli" if imp.module.startswith(LAZY_CLI) else "function"
            key = f"{kind} {imp.module} -> {imp.target} in {imp.function}"
            function_level[kind, key].append(f"{imp.module} -> {imp.target} ({_where(imp)})")
    found += [Violation("upward", key, details) for key, details in sorted(upward.items())]
    found += _cycles("top-level", modules, [i for i in imports if i.function is None])
    found += _cycles("all-imports", modules, imports)
    found += [Violation(kind, key, details)
              for (kind, key), details in sorted(function_level.items())]
    return found


def check(package_dir: Path = PACKAGE_DIR) -> list[Violation]:
    """The violations in the package under ``package_dir`` (dmf itself by default)."""
    return violations(*scan(package_dir))


def read_baseline(path: Path = BASELINE) -> set[str]:
    """The baseline's violation keys (blank lines and ``#`` comments skipped)."""
    if not path.exists():
        return set()
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def write_baseline(found: list[Violation], path: Path = BASELINE) -> None:
    """Write ``found``'s keys, sorted, as the new baseline."""
    header = ("# Known layering violations (python -m dmf.tools.layers --write-baseline).\n"
              "# Issue 27 line 1: this list only shrinks; remove a line when it is fixed.\n")
    path.write_text(header + "".join(f"{key}\n" for key in sorted(v.key for v in found)),
                    encoding="utf-8")


def summary(found: list[Violation]) -> list[str]:
    """The counts per kind, with the cycles' sizes."""
    lines = []
    for kind in KINDS:
        of_kind = [v for v in found if v.kind == kind]
        if kind != "cycle":
            lines.append(f"{kind + ':':<12}{len(of_kind):>4}")
            continue
        for scope in ("top-level", "all-imports"):
            sizes = [len(v.key.split(": ", 1)[1].split()) for v in of_kind
                     if v.key.startswith(f"cycle {scope} ")]
            shown = f" (sizes {', '.join(map(str, sizes))})" if sizes else ""
            lines.append(f"{'cycle:':<12}{len(sizes):>4}  {scope}{shown}")
    return lines


def report(found: list[Violation], baseline: set[str]) -> tuple[list[str], bool]:
    """The human report, and whether the check passes against ``baseline``."""
    keys = {v.key for v in found}
    new = sorted(keys - baseline)
    fixed = sorted(baseline - keys)
    lines = [f"dmf layers, from the bottom: {' < '.join(LAYERS)}", *summary(found)]
    for kind in KINDS:
        of_kind = [v for v in found if v.kind == kind]
        if of_kind:
            lines.append(f"\n{kind}:")
        for v in of_kind:
            mark = "NEW " if v.key in new else ""
            if kind == "cycle":
                lines.append(f"  {mark}{v.key}")
                lines += [f"      {edge}" for edge in v.details]
            else:
                lines += [f"  {mark}{detail}" for detail in v.details]
    lines.append(f"\nbaseline: {len(baseline)} known, {len(new)} new, {len(fixed)} fixed")
    lines += [f"  new (not in the baseline): {key}" for key in new]
    lines += [f"  fixed (remove from the baseline): {key}" for key in fixed]
    return lines, not new and not fixed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dmf.tools.layers``: 0 when the violations are the baseline's, else 1."""
    parser = argparse.ArgumentParser(prog="python -m dmf.tools.layers",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("--write-baseline", action="store_true",
                        help="record today's violations as the baseline")
    parser.add_argument("--baseline", type=Path, default=BASELINE, help="the baseline file")
    parser.add_argument("--package-dir", type=Path, default=PACKAGE_DIR,
                        help="the package to check (default: dmf's own source)")
    args = parser.parse_args(argv)
    found = check(args.package_dir)
    if args.write_baseline:
        write_baseline(found, args.baseline)
        print(f"wrote {len(found)} violations to {args.baseline}")
        return 0
    lines, ok = report(found, read_baseline(args.baseline))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
