"""Issue 27 line 4: every public entry function of dmf is at most 60 lines of
code (the signature counted; the docstring, blank lines and comment-only lines
not). A longer one moves coherent steps into private helpers named for what
they do: validation, the graph it builds, what it writes, the result.

The public functions are those the public packages export (dmf, dmf.cf,
dmf.store, dmf.nmf) and those of the public modules they export (dmf.audio,
dmf.report, dmf.errors, dmf.generate, dmf.store.info, dmf.cf.knn_store, ...):
their ``__all__`` when they have one, else the functions they define.
Estimators' methods are not entry functions."""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
import types

import pytest

PACKAGES = ("dmf", "dmf.cf", "dmf.store", "dmf.nmf")
LIMIT = 60


def code_lines(source: str) -> int:
    """Lines of code of one function's source: not its docstring, not blank
    lines, not lines that hold only a comment."""
    source = textwrap.dedent(source)
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef), source[:80]
    docstring = set()
    first = node.body[0]
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        docstring = set(range(first.lineno, first.end_lineno + 1))
    return sum(1 for number, line in enumerate(source.splitlines(), 1)
               if number not in docstring and line.strip()
               and not line.strip().startswith("#"))


def _exported_functions(module: types.ModuleType, seen_modules: set[str]):
    listed = getattr(module, "__all__", None)
    names = listed if listed is not None else [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        value = getattr(module, name)
        if isinstance(value, types.ModuleType):
            # A module that a listing names is public; one merely imported is not.
            if (listed is not None and value.__name__.startswith("dmf.")
                    and value.__name__ not in seen_modules):
                seen_modules.add(value.__name__)
                yield from _exported_functions(value, seen_modules)
        elif inspect.isfunction(value) and (listed is not None
                                            or value.__module__ == module.__name__):
            yield f"{module.__name__}.{name}", inspect.unwrap(value)


def public_functions() -> dict[str, types.FunctionType]:
    """Each public function once, under the first public name found for it."""
    found: dict[tuple[str, str], tuple[str, types.FunctionType]] = {}
    seen_modules = set(PACKAGES)
    for package in PACKAGES:
        for name, func in _exported_functions(importlib.import_module(package), seen_modules):
            found.setdefault((func.__module__, func.__qualname__), (name, func))
    return dict(found.values())


def test_code_lines_counts_code_only():
    def sample(a,
               b):
        """Doc.

        More doc.
        """
        # a comment

        x = a + b  # a trailing comment counts: the line holds code
        return x

    assert code_lines(inspect.getsource(sample)) == 4


def test_the_public_functions_are_found():
    names = public_functions()
    for expected in ("dmf.svd", "dmf.nmf", "dmf.audio.separate", "dmf.store.generate.lowrank",
                     "dmf.store.generate.ratings", "dmf.cf.recommend_all", "dmf.select_rank"):
        assert expected in names, sorted(names)
    assert len(names) > 40


def test_public_entry_functions_are_at_most_60_lines():
    sizes = {name: code_lines(inspect.getsource(func))
             for name, func in public_functions().items()}
    too_long = {name: size for name, size in sorted(sizes.items()) if size > LIMIT}
    assert not too_long, (f"public functions over {LIMIT} lines of code (move coherent steps "
                          f"into private helpers): {too_long}")


@pytest.mark.parametrize("extra, expected", [(0, LIMIT), (1, LIMIT + 1)])
def test_the_limit_catches_a_function_one_line_too_long(extra, expected):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT - 2 + extra))
    source = f'def entry(a):\n    """Doc."""\n{body}\n    return a\n'
    assert code_lines(source) == expected
