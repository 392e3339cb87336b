"""The block products under every SVD method: the moments that ride along
with a pass (column sums, sum of squares, squared row sums)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.sparse

from dmf.linalg.products import column_moments, gram_with_moments, split_gram, split_moments

CHUNKINGS = {"regular": (100, 40), "irregular": ((50, 250, 120, 180), (30, 50)),
             "single": (-1, -1)}


def exact_moments(A: np.ndarray) -> np.ndarray:
    A = A.astype(np.float64)
    return np.concatenate([A.sum(axis=0), [(A * A).sum(), (A.sum(axis=1) ** 2).sum()]])


@pytest.mark.parametrize("chunks", CHUNKINGS.values(), ids=CHUNKINGS.keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_moments_with_a_pass_are_float64_sums(chunks, dtype):
    # a large mean: the total variance sumsq / m - |mean|^2 cancels, so sums
    # kept in float32 anywhere (about 1e-7 off here) would be caught
    A = (np.random.default_rng(0).standard_normal((600, 80)) + 50).astype(dtype)
    want = exact_moments(A)
    X = da.from_array(A, chunks=chunks)
    alone = np.hstack(list(split_moments(column_moments(X).compute()).values()))
    _, fused = split_gram(gram_with_moments(X, np.eye(80)[:, :3]).compute())
    fused = np.hstack(list(fused.values()))
    for got in (alone, fused):
        assert np.max(np.abs(got - want) / np.abs(want)) < 1e-13
    assert np.array_equal(alone, fused)  # the same sums whichever pass made them


def test_moments_of_sparse_blocks():
    S = scipy.sparse.random(300, 40, density=0.1, format="csr", random_state=0)
    X = da.from_array(S, chunks=(70, -1), asarray=False)
    got = np.hstack(list(split_moments(column_moments(X).compute()).values()))
    assert np.allclose(got, exact_moments(S.toarray()), rtol=1e-13)
