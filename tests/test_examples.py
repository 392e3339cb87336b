"""The worked examples in examples/ run and show what they claim."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_nmf_learns_sparse_parts_where_svd_learns_holistic_components(tmp_path):
    digits = load("digits_parts")
    parts = digits.factorize(max_iter=60)
    assert parts["X"].shape == (1797, 64)
    assert parts["nmf"].shape == parts["svd"].shape == (digits.K, 64)
    assert (parts["nmf"] >= 0).all()
    assert (parts["svd"] < 0).any(axis=1)[1:].all()  # every component but the first has both signs
    # parts: most pixels of an NMF component are off; SVD components are dense
    assert digits.sparsity(parts["nmf"]) > 2 * digits.sparsity(parts["svd"])
    # the SVD is the best rank-k fit: NMF's non-negativity costs some error
    assert parts["svd_error"] < parts["nmf_error"] < 1.5 * parts["svd_error"]
    png = tmp_path / "parts.png"
    digits.plot(parts, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert np.isfinite(parts["nmf_error"])
