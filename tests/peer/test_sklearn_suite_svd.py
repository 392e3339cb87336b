"""scikit-learn's sklearn/decomposition/tests/test_truncated_svd.py, run
against ``dmf.TruncatedSVD`` (see conftest.py)."""

import sklearn.decomposition.tests.test_truncated_svd as suite
from sklearn_suite import adopt

import dmf

EXPECTED_FAILURES = {
    "test_too_many_components[arpack-55]":
        "ARPACK's own limit k < min(m, n); dmf's exact methods compute k = min(m, n) too",
}

adopt(suite, globals(), {"TruncatedSVD": dmf.TruncatedSVD})
