"""The R factor by blocks of rows (TSQR) against LAPACK's QR of the whole matrix."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from statsmodels_lmer import linalg
from statsmodels_lmer.linalg import r_factor


def _tall(n: int, p: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[:, 0] = 1.0
    X[:, 1] = 1e6 + rng.normal(size=n)  # far from zero: its distance from the intercept is small
    X[:, -1] = X[:, 2] + X[:, 3]  # aliased (last: after it R is not unique)
    return X


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize(("n", "p"), [(50_000, 12), (9_000, 7), (40_001, 150)])
def test_blocks_give_lapacks_factor(n, p, threaded, monkeypatch):
    if threaded:  # the blocks in a thread pool, as for n p^2 from 1e10 on
        monkeypatch.setattr(linalg, "R_FACTOR_THREADED_WORK", 0.0)
    X = _tall(n, p)
    whole = np.linalg.qr(X, mode="r")
    blocked = r_factor(X)
    assert blocked.shape == whole.shape == (p, p)
    assert np.allclose(np.tril(blocked, -1), 0.0)
    norms = np.linalg.norm(X, axis=0)
    # |diag(R)|: each column's distance from the earlier ones, to round-off in its norm
    # (rows may differ in sign; the aliased last column's is round-off in both)
    assert np.allclose(
        np.abs(np.diagonal(blocked)), np.abs(np.diagonal(whole)), rtol=1e-12, atol=1e-13 * norms
    )
    assert abs(blocked[-1, -1]) < 1e-12 * norms[-1]
    gram = X.T @ X
    error = (blocked.T @ blocked - gram) / np.outer(norms, norms)
    assert np.abs(error).max() < 1e-13


def test_the_distance_of_a_far_column_keeps_its_digits():
    X = _tall(60_000, 6, seed=3)
    distance = abs(r_factor(X)[1, 1]) / np.linalg.norm(X[:, 1])
    centred = X[:, 1] - X[:, 1].mean()
    assert distance == pytest.approx(np.linalg.norm(centred) / np.linalg.norm(X[:, 1]), rel=1e-8)


def test_short_last_block_and_wide_and_small_matrices():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3 * linalg.R_FACTOR_BLOCK_ROWS + 3, 20))  # a last block of 3 rows
    assert np.allclose(np.abs(r_factor(X)), np.abs(np.linalg.qr(X, mode="r")), atol=1e-9)
    wide = rng.normal(size=(5, 9))
    assert np.array_equal(r_factor(wide), np.linalg.qr(wide, mode="r"))
    assert r_factor(np.empty((10, 0))).shape == (0, 0)


def test_blas_threads_restored(monkeypatch):
    monkeypatch.setattr(linalg, "R_FACTOR_THREADED_WORK", 0.0)
    before = [(p["internal_api"], p["num_threads"]) for p in threadpool_info()]
    r_factor(_tall(30_000, 8))
    assert [(p["internal_api"], p["num_threads"]) for p in threadpool_info()] == before


@pytest.mark.parametrize("weighted", [False, True])
def test_column_magnitudes_of_a_block_equal_those_of_its_columns(weighted):
    # the design is summarized as one block (its columns one by one took 2.8 s at
    # 2e5 x 433); columns whose squares leave double precision are summed scaled
    from statsmodels_lmer.data_checks import ColumnMagnitudes

    rng = np.random.default_rng(5)
    X = rng.normal(size=(5000, 6))
    X[:, 1] = 1e6 + X[:, 1]
    X[:, 2] *= 1e-170  # squares underflow
    X[:, 3] *= 1e170  # squares overflow
    X[:, 4] = 0.0
    weights = rng.uniform(0.1, 3.0, 5000) if weighted else None
    names = [f"c{j}" for j in range(6)]
    block = ColumnMagnitudes.of([(names, X)], weights)
    one_by_one = ColumnMagnitudes.of({n: X[:, j].copy() for j, n in enumerate(names)}, weights)
    assert block.labels == names
    np.testing.assert_array_equal(block.top, one_by_one.top)
    sizes, expected = block.log10_rms(weighted), one_by_one.log10_rms(weighted)
    np.testing.assert_allclose(sizes, expected, rtol=1e-13, atol=1e-13, equal_nan=True)
    w = np.ones(5000) if weights is None else weights
    rms = np.sqrt(np.sum(w * (X[:, 3] / 1e170) ** 2) / 5000)  # the weighted root mean square
    assert sizes[3] == pytest.approx(170 + np.log10(rms), abs=1e-12)
    assert np.isnan(sizes[4])
