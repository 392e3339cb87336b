"""The shape of the solvers' code (issue 27 line 3): each solver is a class
with its loop in plain sight, and no task function takes a long row of
positional parameters (the constants go by keyword)."""

import ast
import inspect
from pathlib import Path

import pytest

import dmf
from dmf.cf.explicit import ExplicitSolver
from dmf.cf.implicit import ImplicitSolver
from dmf.cf.masked import MaskedSolver
from dmf.cf.sgd import SgdSolver
from dmf.engine.driver import Solver
from dmf.linalg.eigh import EighSolver
from dmf.linalg.gram import GramSolver
from dmf.linalg.power import PowerSolver
from dmf.linalg.randomized import RandomizedSolver
from dmf.linalg.sketch import SketchSolver
from dmf.linalg.tsqr import TsqrSolver
from dmf.nmf.hals import HALSSolver
from dmf.nmf.l1 import L1Solver
from dmf.nmf.masked import HoldoutSolver
from dmf.nmf.mu import MUSolver
from dmf.nmf.tri import TriSolver

PACKAGE = Path(dmf.__file__).parent
#: Compiled (numba) kernels: their hot loops take flat arrays, one call per block.
COMPILED = {"cf/kernels.py", "cf/knn_kernels.py"}
MOST_POSITIONAL = 6

SOLVERS = [TsqrSolver, GramSolver, RandomizedSolver, PowerSolver, EighSolver, SketchSolver,
           ExplicitSolver, ImplicitSolver, MaskedSolver, SgdSolver,
           MUSolver, HALSSolver, L1Solver, HoldoutSolver, TriSolver]


@pytest.mark.parametrize("cls", SOLVERS, ids=lambda c: c.__name__)
def test_each_solver_is_a_class_with_its_own_phases(cls):
    assert issubclass(cls, Solver)
    for phase in ("__init__", "init", "step", "result"):
        assert inspect.isfunction(vars(cls).get(phase)), phase  # written in the class


def _long_signatures(folder: str) -> list[str]:
    found = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in COMPILED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = [a.arg for a in node.args.posonlyargs + node.args.args]
                if args[:1] in (["self"], ["cls"]):
                    args = args[1:]
                if len(args) > MOST_POSITIONAL:
                    found.append(f"{name}:{node.lineno} {node.name} ({len(args)})")
    return found


@pytest.mark.parametrize("folder", ["linalg", "cf", "nmf"])
def test_no_function_takes_more_than_six_positional_parameters(folder):
    assert _long_signatures(folder) == []
