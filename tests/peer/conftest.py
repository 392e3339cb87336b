"""scikit-learn's own test files, run against dmf's estimators.

Each ``test_sklearn_suite_*.py`` module imports one of the installed
scikit-learn's test modules, points the names of the estimators under test
in that module at dmf's classes (their code is run from scikit-learn's
installation, not copied), and lists in ``EXPECTED_FAILURES`` the tests that
are expected to fail, each with its one-line reason. Those are marked
``xfail(strict=True)``: a listed test that starts passing fails the suite
too, so the list stays exact.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def global_random_seed() -> int:
    """scikit-learn's fixture of the same name, at its default seed."""
    return 42


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        # every item of the session comes here (doctests have no module)
        expected = getattr(getattr(item, "module", None), "EXPECTED_FAILURES", None)
        if expected is None:
            continue
        base = item.name.split("[")[0]
        reason = expected.get(item.name, expected.get(base))
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
