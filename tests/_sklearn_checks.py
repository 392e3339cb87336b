"""scikit-learn's estimator checks over dmf's classes, with no expected
failures: one decorator for every test module that runs them."""

from __future__ import annotations

import warnings

from sklearn.utils.estimator_checks import parametrize_with_checks

from dmf.errors import ConvergenceWarning


def all_checks(estimators):
    """``parametrize_with_checks`` over ``estimators``, none allowed to fail
    (dmf's classes implement scikit-learn's protocol without inheriting
    from its base classes, which scikit-learn warns about)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Estimator .* does not inherit from", UserWarning)
        return parametrize_with_checks(estimators, expected_failed_checks=lambda est: {})


def run_check(estimator, check) -> None:
    """One check; the checks' tiny fits stop at max_iter by design."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
