"""scikit-learn's sklearn/decomposition/tests/test_nmf.py, run against
``dmf.NMF`` (see conftest.py): part 1 of 2 of its tests (the suite
takes minutes: dmf's engine has a fixed cost per iteration)."""

import pytest
import sklearn.decomposition.tests.test_nmf as suite
from sklearn_suite import NMF_EXPECTED_FAILURES, adopt

import dmf

pytestmark = pytest.mark.slow
EXPECTED_FAILURES = NMF_EXPECTED_FAILURES

adopt(suite, globals(), {"NMF": dmf.NMF}, part=(0, 2))
