"""The estimators' parameter protocol: scikit-learn's ``BaseEstimator``
conventions and a parameter-constraints table, written without
scikit-learn (never a runtime dependency of dmf).

Every estimator class (:class:`dmf.NMF`, :class:`dmf.TruncatedSVD`, and
dmf.cf's ``ALS``, ``SGD``, ``ItemKNN``, ``UserKNN``, ``Baseline``) derives
from :class:`Estimator`, which gives it:

- ``get_params(deep=True)``: the constructor's parameters by name, in the
  constructor's order (scikit-learn sorts them; ``clone``, ``Pipeline`` and
  ``GridSearchCV`` read a dict either way), with ``name__sub`` entries for a
  parameter that is an estimator itself when ``deep``;
- ``set_params(**params)``: sets them (``name__sub`` on a nested estimator);
  an unknown name is a ValueError naming the valid ones;
- a repr that shows the parameters changed from their defaults;
- ``_validate_params()``: each parameter checked against the class's
  ``_parameter_constraints`` table, once, at the start of ``fit`` (the
  constructor and ``set_params`` only store, as scikit-learn requires).

A table maps every constructor parameter to a list of constraints; a value
that meets any one of them is valid:

- ``None``: the value None;
- a type, e.g. ``dict``: an instance of it;
- :class:`Interval`: a number (an int for ``Integral``; never a bool or
  NaN) in a range;
- :class:`Options`: one of a few values;
- ``"boolean"``: a bool (numpy's too);
- ``"random_state"``: an int >= 0, a numpy RandomState or Generator.

An invalid value is an :class:`~dmf.errors.InputError` of one line naming
the estimator, the parameter, what it may be and what it got. Checks that
depend on the data (k at most min(m, n)) or on other parameters stay where
they are.

Examples
--------
>>> from numbers import Integral, Real
>>> class Smoother(Estimator):
...     _parameter_constraints = {"width": [Interval(Integral, 1, None)],
...                               "kind": [Options("box", "gauss")],
...                               "scale": [Interval(Real, 0, None, closed="neither"), None]}
...     def __init__(self, width=3, *, kind="box", scale=None):
...         self.width, self.kind, self.scale = width, kind, scale
>>> Smoother(kind="gauss")
Smoother(kind='gauss')
>>> Smoother().get_params()
{'width': 3, 'kind': 'box', 'scale': None}
>>> Smoother().set_params(width=0)._validate_params()
Traceback (most recent call last):
...
dmf.errors.InputError: Smoother: width must be an int >= 1, got 0
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections import defaultdict
from typing import Any, ClassVar

import numpy as np

from dmf.errors import InputError

__all__ = ["Estimator", "Interval", "Options", "describe", "is_satisfied"]


class Interval:
    """Numbers of ``kind`` (``numbers.Integral`` or ``numbers.Real``) between
    ``left`` and ``right`` (None: unbounded), ``closed`` at "left", "right",
    "both" or "neither" end. Bools and NaN are in no interval.

    Examples
    --------
    >>> from numbers import Real
    >>> half_open = Interval(Real, 0, 1, closed="right")
    >>> [x in half_open for x in (0, 0.5, 1, True)], str(half_open)
    ([False, True, True, False], 'a number in (0, 1]')
    """

    def __init__(self, kind: type, left: float | None, right: float | None, *,
                 closed: str = "left"):
        if kind not in (numbers.Integral, numbers.Real):
            raise ValueError(f"Interval kind must be numbers.Integral or numbers.Real, got {kind}")
        if closed not in ("left", "right", "both", "neither"):
            raise ValueError(f"closed must be 'left', 'right', 'both' or 'neither', got {closed!r}")
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, self.kind):
            return False
        if not isinstance(value, numbers.Integral) and math.isnan(value):
            return False
        if self.left is not None and (value < self.left or (
                value == self.left and self.closed not in ("left", "both"))):
            return False
        return self.right is None or value < self.right or (
            value == self.right and self.closed in ("right", "both"))

    def __str__(self) -> str:
        noun = "an int" if self.kind is numbers.Integral else "a number"
        left_in = self.closed in ("left", "both")
        right_in = self.closed in ("right", "both")
        if self.left is None and self.right is None:
            return noun
        if self.right is None:
            return f"{noun} {'>=' if left_in else '>'} {self.left}"
        if self.left is None:
            return f"{noun} {'<=' if right_in else '<'} {self.right}"
        return (f"{noun} in {'[' if left_in else '('}{self.left}, "
                f"{self.right}{']' if right_in else ')'}")


class Options:
    """One of ``values`` (equal and of the same type: 1 is not True; a
    numpy string is a string).

    Examples
    --------
    >>> solver = Options("cd", "mu")
    >>> "mu" in solver, "lbfgs" in solver, str(solver), str(Options("auto"))
    (True, False, "one of 'cd', 'mu'", "'auto'")
    """

    def __init__(self, *values: Any):
        self.values = values

    def __contains__(self, value: Any) -> bool:
        try:
            return any((type(value) is type(v) or (isinstance(value, str) and isinstance(v, str)))
                       and bool(value == v) for v in self.values)
        except (TypeError, ValueError):  # an array compared elementwise
            return False

    def __str__(self) -> str:
        shown = ", ".join(map(repr, self.values))
        return shown if len(self.values) == 1 else f"one of {shown}"


def is_satisfied(constraint: Any, value: Any) -> bool:
    """Whether ``value`` meets one constraint of a table (see the module)."""
    if constraint is None:
        return value is None
    if isinstance(constraint, (Interval, Options)):
        return value in constraint
    if constraint == "boolean":
        return isinstance(value, (bool, np.bool_))
    if constraint == "random_state":
        return (value in Interval(numbers.Integral, 0, None)
                or isinstance(value, (np.random.RandomState, np.random.Generator)))
    if isinstance(constraint, (type, tuple)):
        return isinstance(value, constraint)
    raise ValueError(f"unknown parameter constraint {constraint!r}")


def describe(constraint: Any) -> str:
    """What a constraint admits, in words."""
    if constraint is None:
        return "None"
    if constraint == "boolean":
        return "a bool"
    if constraint == "random_state":
        return "an int >= 0, a numpy RandomState, a numpy Generator"
    if isinstance(constraint, tuple):
        return " or ".join(describe(c) for c in constraint)
    if isinstance(constraint, type):
        return f"a {constraint.__name__}"
    return str(constraint)


def _shown(value: Any) -> str:
    """``repr(value)`` on one line, cut to a readable length."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


def _differs(value: Any, default: Any) -> bool:
    """Whether a parameter's value differs from its default, as
    scikit-learn's repr decides it (by repr; NaN equals NaN)."""
    if default is inspect.Parameter.empty:
        return True
    both_nan = all(isinstance(v, float) and math.isnan(v) for v in (value, default))
    return not both_nan and (value is not default and repr(value) != repr(default))


class Estimator:
    """scikit-learn's parameter protocol (``get_params``, ``set_params``,
    the repr) and the validation of the parameters against
    ``_parameter_constraints`` (see the module)."""

    #: Parameter name -> the constraints its value may meet (any one).
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The constructor's parameter names, in its order."""
        if cls.__init__ is object.__init__:
            return []
        names = []
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.kind == p.VAR_POSITIONAL:
                raise RuntimeError(f"{cls.__name__}'s constructor takes *{p.name}: an "
                                   "estimator names its parameters")
            if p.name != "self" and p.kind != p.VAR_KEYWORD:
                names.append(p.name)
        return names

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters by name; with ``deep``, also those
        of parameters that are estimators themselves, as ``name__sub``."""
        out: dict[str, Any] = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{sub}", v) for sub, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params: Any):
        """Set parameters by name (``name__sub``: a nested estimator's);
        returns the estimator. Values are checked at ``fit``, not here."""
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict[str, dict[str, Any]] = defaultdict(dict)
        for key, value in params.items():
            name, delim, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for estimator {self!r}. "
                                 f"Valid parameters are: {self._get_param_names()!r}.")
            if delim:
                nested[name][sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default
                    for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{name}={value!r}" for name, value in self.get_params(deep=False).items()
                   if _differs(value, defaults.get(name, inspect.Parameter.empty))]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _validate_params(self) -> None:
        """Check every parameter against ``_parameter_constraints``
        (InputError naming the first invalid one); ``fit`` calls it first."""
        for name, value in self.get_params(deep=False).items():
            constraints = self._parameter_constraints.get(name)
            if constraints is None:  # a subclass's own parameter, as scikit-learn skips it
                continue
            if not any(is_satisfied(c, value) for c in constraints):
                allowed = [describe(c) for c in constraints]
                words = (", ".join(allowed[:-1]) + " or " + allowed[-1] if len(allowed) > 1
                         else allowed[0])
                raise InputError(f"{type(self).__name__}: {name} must be {words}, "
                                 f"got {_shown(value)}")
