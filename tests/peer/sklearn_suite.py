"""Adopt a scikit-learn test module into a dmf test module (see conftest)."""

from __future__ import annotations

import types

#: The tests of scikit-learn's test_nmf.py expected to fail against dmf.NMF.
NMF_EXPECTED_FAILURES = {
    "test_parameter_checking": "an exact message: dmf's names the solver it maps 'cd' onto",
    "test_nmf_custom_init_shape_error": "an exact message: dmf's names the expected shape",
}
# scikit-learn's own non_negative_factorization (dmf has no such function)
# against dmf.NMF: equal for mu from nndsvd (same bits), not otherwise
NMF_EXPECTED_FAILURES.update({
    f"test_non_negative_factorization_consistency[{alpha_W}-{alpha_H}-{case}]":
        "scikit-learn's non_negative_factorization against dmf.NMF: 'random' init draws "
        "from RandomState's stream, and dmf's 'cd' is accelerated (hals_sweeps='auto')"
    for alpha_W in ("0.0", "1.0", "same") for alpha_H in ("0.0", "1.0")
    for case in ("cd-random", "cd-nndsvd", "mu-random")})


def adopt(suite: types.ModuleType, namespace: dict, substitutes: dict,
          part: tuple[int, int] = (0, 1)) -> None:
    """Point ``suite``'s names in ``substitutes`` at dmf's objects, then
    expose its globals (tests and fixtures among them) in ``namespace``, a
    test module's globals, for pytest to collect there: the tests run
    scikit-learn's code, which now finds dmf's objects under those names.
    ``part`` (i, parts): only the i-th of ``parts`` shares of the tests (in
    name order), so that a long suite spreads over test processes."""
    for name, obj in substitutes.items():
        setattr(suite, name, obj)
    tests = sorted(name for name in vars(suite) if name.startswith("test_"))
    index, parts = part
    mine = set(tests[index * len(tests) // parts:(index + 1) * len(tests) // parts])
    for name, obj in vars(suite).items():
        if not name.startswith("__") and (not name.startswith("test_") or name in mine):
            namespace.setdefault(name, obj)
