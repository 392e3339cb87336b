"""Adopt a scikit-learn test module into a dmf test module (see conftest)."""

from __future__ import annotations

import types


def adopt(suite: types.ModuleType, namespace: dict, substitutes: dict) -> None:
    """Point ``suite``'s names in ``substitutes`` at dmf's objects, then
    expose its globals (tests and fixtures among them) in ``namespace``, a
    test module's globals, for pytest to collect there: the tests run
    scikit-learn's code, which now finds dmf's objects under those names."""
    for name, obj in substitutes.items():
        setattr(suite, name, obj)
    for name, obj in vars(suite).items():
        if not name.startswith("__"):
            namespace.setdefault(name, obj)
