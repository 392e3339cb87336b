"""One parameter protocol for every estimator (dmf.params, issue 27 line 5):
each constructor parameter has an entry in its class's constraints table, a
bad value of each is an InputError naming it at fit, and get_params /
set_params / clone / repr follow scikit-learn's conventions."""

from __future__ import annotations

import inspect
import math
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse
from sklearn.base import clone

import dmf
import dmf.cf
from dmf.cf import ALS, SGD, Baseline, ItemKNN, UserKNN
from dmf.errors import InputError
from dmf.params import Estimator, Interval, Options, is_satisfied

RUN = dmf.RunOptions(progress=False)

#: A valid value, other than the default, of every parameter of every class.
CHANGED = {
    dmf.NMF: dict(n_components=3, init="nndsvd", solver="mu", beta_loss="kullback-leibler",
                  tol=0.0, max_iter=5, random_state=7, alpha_W=0.1, alpha_H=0.2,
                  l1_ratio=0.5, verbose=1, out="memory://p/nmf.zarr",
                  storage_options={"anon": True}, checkpoint_every=3, hals_sweeps=2,
                  options=RUN),
    dmf.TruncatedSVD: dict(n_components=3, algorithm="arpack", n_iter="auto",
                           n_oversamples=0, power_iteration_normalizer="LU", random_state=3,
                           tol=1e-6, out=Path("svd.zarr"), storage_options={}, options=RUN),
    ALS: dict(k=3, reg=0.0, max_iter=2, tol=0, seed=1, biases=False, nonnegative=True,
              implicit=np.True_, alpha=1.5, cg_steps=2, out="memory://p/als.zarr",
              checkpoint_every=2, progress=False, input="matrix", options=RUN),
    SGD: dict(k=2, lr=0.1, reg=0.0, n_epochs=2, tol=0.1, seed=np.int64(0), batch_size=4,
              out="memory://p/sgd.zarr", checkpoint_every=2, progress=True, input="pairs",
              options=RUN),
    ItemKNN: dict(k=5, similarity="cosine", shrinkage=0.0, min_support=0, min_k=0,
                  n_candidates=5, reg_user=0.0, reg_item=1.0, n_epochs=0, panel_bytes=1024,
                  input="matrix"),
    UserKNN: dict(k=5, similarity=np.str_("pearson"), shrinkage=1, min_support=2, min_k=2,
                  n_candidates=9, reg_user=1.0, reg_item=0.0, n_epochs=1, panel_bytes=2048,
                  input="pairs"),
    Baseline: dict(reg_user=0, reg_item=0.5, n_epochs=0),
}
CLASSES = list(CHANGED)
IDS = [cls.__name__ for cls in CLASSES]


def test_every_estimator_class_of_dmf_is_covered():
    exported = [getattr(dmf.cf, name) for name in dir(dmf.cf) if not name.startswith("_")]
    models = {obj for obj in exported if inspect.isclass(obj) and hasattr(obj, "fit")}
    assert models <= set(CLASSES), sorted(c.__name__ for c in models - set(CLASSES))
    assert all(issubclass(cls, Estimator) for cls in CLASSES)


def _names(cls) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_each_parameter_has_its_constraints_and_a_valid_change_passes(cls):
    assert sorted(cls._parameter_constraints) == sorted(_names(cls))
    assert sorted(CHANGED[cls]) == sorted(_names(cls))  # each is changed below
    cls(**CHANGED[cls])._validate_params()
    cls()._validate_params()  # the defaults are valid


def _data(cls):
    if cls in (dmf.NMF, dmf.TruncatedSVD):
        return np.random.default_rng(0).random((8, 5))
    return scipy.sparse.csr_matrix(np.array([[5.0, 0, 3.0], [4.0, 2.0, 0], [0, 1.0, 4.0]]))


#: Candidate bad values; each parameter is tried with those none of its
#: constraints admit (object() fails every constraint, so each gets one).
CANDIDATES = [object(), "no-such-option", -1, -0.5, 0, 0.0, 2.5, math.nan, True, [1]]


def _bad_values(constraints):
    return [v for v in CANDIDATES if not any(is_satisfied(c, v) for c in constraints)]


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_a_bad_value_of_each_parameter_is_an_input_error_naming_it_at_fit(cls):
    data = _data(cls)
    tried = 0
    for name, constraints in cls._parameter_constraints.items():
        for bad in _bad_values(constraints):
            est = cls().set_params(**{name: bad})  # stored as given: checked at fit
            assert getattr(est, name) is bad
            with pytest.raises(InputError) as err:
                est.fit(data)
            message = str(err.value)
            assert message.startswith(f"{cls.__name__}: {name} must be "), message
            assert message.endswith(f", got {bad!r}") and "\n" not in message, message
            tried += 1
    assert tried >= 2 * len(cls._parameter_constraints)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_get_params_set_params_clone_and_repr_round_trip(cls):
    changed = CHANGED[cls]
    est = cls(**changed)
    params = est.get_params()
    assert list(params) == _names(cls)  # the constructor's order
    assert all(params[name] is value for name, value in changed.items())
    copy = clone(est)
    assert copy is not est and copy.get_params() == params
    fresh = cls()
    assert fresh.set_params(**params) is fresh and fresh.get_params() == params
    assert repr(cls()) == f"{cls.__name__}()"
    shown = ", ".join(f"{name}={params[name]!r}" for name in _names(cls))
    assert repr(est) == f"{cls.__name__}({shown})"
    with pytest.raises(ValueError, match=rf"invalid parameter 'nope' for estimator "
                                         rf"{cls.__name__}\(\)\. Valid parameters are: "
                                         rf"\['{_names(cls)[0]}', "):
        cls().set_params(nope=1)


class _Wrapper(Estimator):
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "inner": [Baseline], "weight": [Interval(Real, 0, 1)]}

    def __init__(self, inner=None, weight=0.5):
        self.inner = inner
        self.weight = weight


def test_nested_estimators_get_and_set_deep_params():
    outer = _Wrapper(inner=Baseline(n_epochs=2))
    deep = outer.get_params()
    assert deep["inner__n_epochs"] == 2 and deep["inner__reg_user"] == 15.0
    assert "inner__n_epochs" not in outer.get_params(deep=False)
    outer.set_params(inner__reg_item=3.0, weight=0.25)
    assert outer.inner.reg_item == 3.0 and outer.weight == 0.25
    assert repr(outer) == "_Wrapper(inner=Baseline(reg_item=3.0, n_epochs=2), weight=0.25)"
    copy = clone(outer)
    assert copy.inner is not outer.inner  # cloned, not shared
    assert copy.inner.get_params() == outer.inner.get_params() and copy.weight == 0.25
    with pytest.raises(InputError, match=r"^_Wrapper: inner must be a Baseline, got None$"):
        _Wrapper()._validate_params()


def test_constraints_admit_what_they_say():
    positive = Interval(Integral, 1, None)
    assert [v in positive for v in (1, np.int64(3), 0, 1.0, True)] == [
        True, True, False, False, False]
    unit = Interval(Real, 0, 1, closed="neither")
    assert [v in unit for v in (0.5, np.float32(0.5), 0, 1, math.nan, np.False_)] == [
        True, True, False, False, False, False]
    assert str(unit) == "a number in (0, 1)" and str(positive) == "an int >= 1"
    assert str(Interval(Real, None, 0, closed="right")) == "a number <= 0"
    modes = Options("auto", "matrix")
    assert ["auto" in modes, np.str_("matrix") in modes, 1 in modes,
            np.array(["auto"]) in modes] == [True, True, False, False]
    assert (1 in Options(1, 2), True in Options(1, 2)) == (True, False)
    assert is_satisfied("random_state", np.random.default_rng(0))
    assert not is_satisfied("random_state", -1) and not is_satisfied("boolean", 1)


@pytest.mark.parametrize(("cls", "numpy_scalars"), [
    (dmf.NMF, dict(max_iter=np.int64(5), tol=np.float32(0.0))),
    (dmf.TruncatedSVD, dict(n_oversamples=np.int64(3))),
    (ALS, dict(reg=np.float32(0.1), max_iter=np.int64(2), tol=np.float64(0.0))),
    (SGD, dict(lr=np.float32(0.01), n_epochs=np.int64(2))),
], ids=["NMF", "TruncatedSVD", "ALS", "SGD"])
def test_numpy_scalars_the_table_accepts_also_fit(cls, numpy_scalars):
    """A numpy number that passes the parameter table is not refused by the
    solver's own check afterwards."""
    k = {"n_components": 2} if cls in (dmf.NMF, dmf.TruncatedSVD) else {"k": 2}
    model = cls(**k, **numpy_scalars)
    model._validate_params()
    model.fit(_data(cls))
