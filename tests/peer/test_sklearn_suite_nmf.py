"""scikit-learn's sklearn/decomposition/tests/test_nmf.py, run against
``dmf.NMF`` (see conftest.py)."""

import sklearn.decomposition.tests.test_nmf as suite
from sklearn_suite import adopt

import dmf

EXPECTED_FAILURES = {
    "test_parameter_checking": "an exact message: dmf's names the solver it maps 'cd' onto",
    "test_nmf_custom_init_shape_error": "an exact message: dmf's names the expected shape",
    "test_non_negative_factorization_consistency":
        "compares scikit-learn's own non_negative_factorization (dmf has no such function) "
        "with dmf.NMF: 'random' init draws from RandomState's stream, 'cd' is accelerated",
}

adopt(suite, globals(), {"NMF": dmf.NMF})
