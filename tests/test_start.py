"""The start from regressions within each level (``fitting.start``) and where fits use it.

:func:`level_regression_theta` is checked against the truth of simulated data,
against a plain re-implementation here (a least-squares fit per level in a
loop, ``np.cov``, a Cholesky factor written out in lme4's order), and on the
inputs where it must give up (None). :class:`Lmer` fits on the analytic
gradient start from it; other fits keep lme4's start.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import SLOPES_COVARIANCES, crossed_slopes_frame

import statsmodels_lmer as sml
from statsmodels_lmer.fitting.fit import uses_gradient
from statsmodels_lmer.fitting.start import EIGEN_FLOOR, MIN_LEVELS, level_regression_theta

# -- an independent re-implementation ------------------------------------------


def reference_moments(
    y: np.ndarray, X: np.ndarray, codes: list[np.ndarray], columns: list[np.ndarray]
) -> tuple[list[np.ndarray], float]:
    """``([Sigma_t], sigma^2)`` of the moment method, one level at a time.

    A level is used when it has more rows than the term has columns and its
    ``Z_l' Z_l`` has a condition number (ratio of singular values) below 1e8.
    """
    if X.shape[1]:
        residual = y - X @ np.linalg.pinv(X) @ y
        rank = np.linalg.matrix_rank(X)
    else:
        residual, rank = y, 0
    total = residual @ residual / (len(y) - rank)
    covariances, within = [], []
    for term_codes, Z in zip(codes, columns):
        p = Z.shape[1]
        coefs, inverses, rss, dof = [], [], 0.0, 0
        for level in np.unique(term_codes):
            rows = term_codes == level
            Z_l, r_l = Z[rows], residual[rows]
            gram = Z_l.T @ Z_l
            singular_values = np.linalg.svd(gram, compute_uv=False)
            if rows.sum() <= p or not singular_values[-1] > singular_values[0] / 1e8:
                continue
            b_l = np.linalg.lstsq(Z_l, r_l, rcond=None)[0]
            coefs.append(b_l)
            inverses.append(np.linalg.inv(gram))
            rss += float(np.sum((r_l - Z_l @ b_l) ** 2))
            dof += int(rows.sum()) - p
        s2 = rss / dof
        spread = np.cov(np.array(coefs).T).reshape(p, p)
        covariances.append(spread - s2 * np.mean(inverses, axis=0))
        within.append(s2)
    return covariances, sum(within) - (len(within) - 1) * total


def lme4_theta(relative: np.ndarray) -> np.ndarray:
    """The Cholesky factor of a relative covariance, lower triangle column by column."""
    T = np.linalg.cholesky(relative)
    p = T.shape[0]
    return np.array([T[i, j] for j in range(p) for i in range(j, p)])


def design(frame: pd.DataFrame, slopes: tuple[str, ...] = ("x",)) -> np.ndarray:
    """An intercept and the given columns."""
    return np.column_stack([np.ones(len(frame))] + [frame[c].to_numpy() for c in slopes])


# -- data ---------------------------------------------------------------------


def small_case(seed: int = 5) -> tuple[np.ndarray, np.ndarray, list, list, list]:
    """``(y, X, codes, columns, n_levels)`` of ``y ~ x + (x + z | g1) + (x | g2)``.

    Odd but legal: ``g1`` has a level without rows, one with three rows
    (not more than its three columns) and one where ``x`` is constant
    (``Z_l' Z_l`` singular); those three must be left out.
    """
    rng = np.random.default_rng(seed)
    n = 700
    g1, g2 = rng.integers(0, 30, n), rng.integers(0, 20, n)
    g1[g1 == 29] = 0
    g1[:3] = 29  # three rows
    x, z = rng.normal(size=n), rng.normal(size=n)
    x[g1 == 28] = 0.7  # constant within the level
    b1 = rng.multivariate_normal(
        np.zeros(3), [[1, 0.2, 0.1], [0.2, 0.6, -0.2], [0.1, -0.2, 0.5]], 30
    )
    b2 = rng.multivariate_normal(np.zeros(2), SLOPES_COVARIANCES[1], 20)
    y = 2 + x + (b1[g1] * np.column_stack([np.ones(n), x, z])).sum(axis=1)
    y += b2[g2, 0] + b2[g2, 1] * x + rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    Z1 = np.column_stack([np.ones(n), x, z])
    return y, X, [g1, g2], [Z1, X.copy()], [31, 20]  # level 30 of g1 has no rows


def single_term(counts: list[int], seed: int = 0, noise: float = 1.0) -> tuple:
    """``(y, X, codes, columns, n_levels)`` of ``y ~ x + (x | g)`` with the given rows per level."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(len(counts)), counts)
    n = codes.size
    x = rng.normal(size=n)
    b = rng.multivariate_normal(np.zeros(2), SLOPES_COVARIANCES[0], len(counts))
    y = 1 + 0.5 * x + b[codes, 0] + b[codes, 1] * x + noise * rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    return y, X, [codes], [X.copy()], [len(counts)]


def assert_moments_positive(case: tuple) -> None:
    """The reference's ``sigma^2`` and each ``Sigma_t``'s largest eigenvalue are positive."""
    covariances, sigma2 = reference_moments(*case[:4])
    assert sigma2 > 0
    assert all(np.linalg.eigvalsh(cov)[-1] > 0 for cov in covariances)


# -- level_regression_theta -----------------------------------------------------


def test_equals_a_per_level_reimplementation():
    y, X, codes, columns, n_levels = small_case()
    counts = np.bincount(codes[0], minlength=n_levels[0])
    assert counts[30] == 0 and counts[29] == 3  # the odd levels are there
    covariances, sigma2 = reference_moments(y, X, codes, columns)
    relatives = [cov / sigma2 for cov in covariances]
    for relative in relatives:  # the eigenvalue floor is not in play
        values = np.linalg.eigvalsh(relative)
        assert values[0] > EIGEN_FLOOR * values[-1]
    expected = np.concatenate([lme4_theta(r) for r in relatives])
    theta = level_regression_theta(y, X, codes, columns, n_levels)
    assert theta.shape == (9,)
    np.testing.assert_allclose(theta, expected, rtol=1e-10, atol=1e-12)


def test_close_to_the_truth_on_many_levels():
    frame = crossed_slopes_frame(seed=11, n=20_000, levels=(400, 300))
    X = design(frame)
    codes = [frame[g].astype(int).to_numpy() for g in ("g1", "g2")]
    theta = level_regression_theta(frame["y"].to_numpy(), X, codes, [X, X], [400, 300])
    truth = np.concatenate([lme4_theta(cov) for cov in SLOPES_COVARIANCES])  # sigma = 1
    # Sampling error: over 100 simulated data sets of this size the estimate's standard
    # deviation is at most 0.043 per element and its bias at most 0.025; 0.2 is > 4 SD + bias.
    np.testing.assert_allclose(theta, truth, atol=0.2)
    assert not np.allclose(theta, truth, atol=1e-3)  # an estimate, not the truth


def test_theta_is_in_lme4s_order():
    """Swapping the p = 3 term's columns permutes its covariance, not theta's slots."""
    y, X, codes, columns, n_levels = small_case()
    theta = level_regression_theta(y, X, codes, columns, n_levels)
    swapped = columns[0][:, [0, 2, 1]]
    other = level_regression_theta(y, X, codes, [swapped, columns[1]], n_levels)

    def covariance(part: np.ndarray) -> np.ndarray:
        T = np.zeros((3, 3))
        T[[0, 1, 2, 1, 2, 2], [0, 0, 0, 1, 1, 2]] = part  # column by column
        return T @ T.T

    permuted = covariance(theta[:6])[np.ix_([0, 2, 1], [0, 2, 1])]
    np.testing.assert_allclose(covariance(other[:6]), permuted, rtol=1e-10)
    np.testing.assert_allclose(other[6:], theta[6:], rtol=1e-12)


def test_integer_response_and_float32_fixed_effects_are_read_as_float64():
    y, X, codes, columns, n_levels = small_case()
    y_int = np.round(10 * y).astype(np.int64)
    X32 = X.astype(np.float32)
    theta = level_regression_theta(
        y_int, X32, [c.astype(np.int32) for c in codes], columns, np.array(n_levels, np.int16)
    )
    covariances, sigma2 = reference_moments(y_int.astype(float), X32.astype(float), codes, columns)
    reference = np.concatenate([lme4_theta(c / sigma2) for c in covariances])
    np.testing.assert_allclose(theta, reference, rtol=1e-10, atol=1e-12)
    same = level_regression_theta(y_int.astype(float), X32.astype(float), codes, columns, n_levels)
    np.testing.assert_array_equal(theta, same)


def test_float32_term_columns_are_read_as_float64():
    y, X, codes, columns, n_levels = small_case()
    columns32 = [c.astype(np.float32) for c in columns]
    theta = level_regression_theta(y, X, codes, columns32, n_levels)
    as_float64 = [c.astype(float) for c in columns32]
    covariances, sigma2 = reference_moments(y, X, codes, as_float64)
    reference = np.concatenate([lme4_theta(c / sigma2) for c in covariances])
    np.testing.assert_allclose(theta, reference, rtol=1e-10, atol=1e-12)


def test_rank_deficient_and_empty_fixed_effects():
    y, X, codes, columns, n_levels = small_case()
    theta = level_regression_theta(y, X, codes, columns, n_levels)
    doubled = np.column_stack([X, 2 * X[:, 1]])  # the same column space
    np.testing.assert_allclose(
        level_regression_theta(y, doubled, codes, columns, n_levels), theta, rtol=1e-10
    )
    residual = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]  # no fixed effects left to fit
    none = np.empty((len(y), 0))
    covariances, sigma2 = reference_moments(residual, none, codes, columns)
    expected = np.concatenate([lme4_theta(c / sigma2) for c in covariances])
    np.testing.assert_allclose(
        level_regression_theta(residual, none, codes, columns, n_levels), expected, rtol=1e-10
    )


def test_scalar_term_beside_a_vector_term():
    y, X, codes, columns, n_levels = small_case()
    intercept = [columns[0], np.ones((len(y), 1))]
    covariances, sigma2 = reference_moments(y, X, codes, intercept)
    expected = np.concatenate([lme4_theta(c / sigma2) for c in covariances])
    theta = level_regression_theta(y, X, codes, intercept, n_levels)
    assert theta.shape == (7,)
    np.testing.assert_allclose(theta, expected, rtol=1e-10)


def test_small_eigenvalues_are_raised_to_the_floor():
    """Slopes equal to twice the intercepts: ``Sigma`` is near rank one."""
    rng = np.random.default_rng(3)
    codes = np.repeat(np.arange(40), 60)
    x = rng.normal(size=codes.size)
    b = rng.normal(size=40)
    y = b[codes] * (1 + 2 * x) + 0.5 * rng.normal(size=codes.size)
    X = np.column_stack([np.ones(codes.size), x])
    covariances, sigma2 = reference_moments(y, X, [codes], [X])
    # the floor applies to the covariance of the columns in units of their root mean squares
    scale = np.sqrt(np.mean(X * X, axis=0))
    values, vectors = np.linalg.eigh(covariances[0] / sigma2 * np.outer(scale, scale))
    assert values[0] < EIGEN_FLOOR * values[-1]  # the floor is in play
    theta = level_regression_theta(y, X, [codes], [X], [40])
    T = np.array([[theta[0], 0.0], [theta[1], theta[2]]]) * scale[:, None]
    got_values, got_vectors = np.linalg.eigh(T @ T.T)
    np.testing.assert_allclose(got_values, [EIGEN_FLOOR * values[-1], values[-1]], rtol=1e-9)
    assert abs(got_vectors[:, 1] @ vectors[:, 1]) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("factor", [1e-6, 1e3])
def test_start_does_not_depend_on_the_columns_units(factor):
    # a slope on x * factor: the same start, its slope row divided by factor
    rng = np.random.default_rng(4)
    codes = np.repeat(np.arange(30), 20)
    x = rng.normal(size=codes.size)
    y = rng.normal(size=30)[codes] * (1 + 0.5 * x) + rng.normal(size=codes.size)
    X = np.column_stack([np.ones(codes.size), x])
    base = level_regression_theta(y, X, [codes], [X], [30])
    scaled = X * [1.0, factor]
    theta = level_regression_theta(y, scaled, [codes], [scaled], [30])
    np.testing.assert_allclose(theta, base / [1.0, factor, factor], rtol=1e-9)


@pytest.mark.parametrize("levels", [MIN_LEVELS - 1, MIN_LEVELS])
def test_needs_ten_usable_levels(levels):
    counts = [40] * levels + [2] * 5  # five more levels with only two rows: not usable
    case = single_term(counts)
    assert_moments_positive(case)  # the number of levels is the only obstacle
    theta = level_regression_theta(*case)
    assert (theta is None) == (levels < MIN_LEVELS)


@pytest.mark.parametrize(("rows", "usable"), [(10, False), (15, True)])
def test_needs_half_the_rows_in_usable_levels(rows, usable):
    """20 levels of ``rows`` rows and 150 of two rows (no more than the two columns)."""
    counts = [rows] * 20 + [2] * 150
    case = single_term(counts)
    assert_moments_positive(case)  # the share of rows used is the only obstacle
    theta = level_regression_theta(*case)
    assert (theta is not None) == usable  # 15 rows: exactly half, still used


def test_none_when_every_level_is_singular():
    y, X, codes, _columns, n_levels = single_term([30] * 20)
    x = np.repeat(np.linspace(-1, 1, 20), 30)  # constant within each level
    Z = np.column_stack([np.ones_like(x), x])
    assert level_regression_theta(y, X, codes, [Z], n_levels) is None


def test_none_without_residual_variance():
    """An exact fit within each level: ``s^2`` is rounding, not positive."""
    y, X, codes, columns, n_levels = single_term([30] * 20, noise=0.0)
    assert level_regression_theta(y, X, codes, columns, n_levels) is None


def test_none_when_the_variance_estimate_is_negative():
    """The same factor twice under two names: ``sigma^2 = 2 s^2 - var(r)`` is below 0."""
    y, X, codes, columns, n_levels = single_term([30] * 20)
    twice = (y, X, codes * 2, columns * 2)
    assert reference_moments(*twice)[1] < 0
    assert level_regression_theta(*twice, n_levels * 2) is None


def test_none_when_the_level_coefficients_do_not_vary():
    """Residuals orthogonal to each level's columns: ``cov(b_l) = 0``, ``Sigma`` negative."""
    y, X, codes, columns, n_levels = single_term([30] * 20)
    for level in range(20):
        rows = codes[0] == level
        fitted = X[rows] @ np.linalg.lstsq(X[rows], y[rows], rcond=None)[0]
        y[rows] += 1 + 0.5 * X[rows, 1] - fitted
    covariances, _ = reference_moments(y, X, codes, columns)
    assert np.linalg.eigvalsh(covariances[0])[-1] < 0
    assert level_regression_theta(y, X, codes, columns, n_levels) is None


def test_does_not_modify_its_inputs():
    y, X, codes, columns, n_levels = small_case()
    copies = [y.copy(), X.copy(), [c.copy() for c in codes], [c.copy() for c in columns]]
    level_regression_theta(y, X, codes, columns, n_levels)
    np.testing.assert_array_equal(y, copies[0])
    np.testing.assert_array_equal(X, copies[1])
    for given, kept in zip(codes + columns, copies[2] + copies[3]):
        np.testing.assert_array_equal(given, kept)


# -- Lmer -----------------------------------------------------------------------

FORMULA = "y ~ x + (x | g1) + (x | g2)"


@cache
def frame() -> pd.DataFrame:
    return crossed_slopes_frame()


@cache
def model(formula: str = FORMULA, **kwargs) -> sml.Lmer:
    built = sml.Lmer.from_formula(formula, frame(), **kwargs)
    assert uses_gradient(built.devfun(True))  # else the start is never used
    return built


@cache
def fit(formula: str = FORMULA, method: str | None = None, **kwargs) -> sml.LmerResults:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sml.SingularFitWarning)
        return model(formula, **kwargs).fit(method=method)


def regression_start(fitted: sml.Lmer, response: np.ndarray) -> np.ndarray | None:
    terms = fitted.random_terms
    return level_regression_theta(
        response,
        fitted.exog,
        [t.codes for t in terms],
        [t.Z for t in terms],
        [t.n_levels for t in terms],
    )


def test_gradient_fit_starts_from_the_regressions():
    res = fit()
    assert res.optinfo["optimizer"] == "lbfgsb"
    expected = regression_start(model(), np.asarray(model().endog, dtype=float))
    np.testing.assert_allclose(res.optinfo["start"], expected, rtol=1e-12)
    assert not np.allclose(expected, model().theta_start, atol=0.05)
    devfun = model().devfun(True)
    assert devfun(expected) < devfun(np.asarray(model().theta_start, dtype=float)) - 10


def test_start_reaches_lme4s_optimum():
    res, lme4 = fit(), fit(method="bobyqa")
    np.testing.assert_array_equal(lme4.optinfo["start"], model().theta_start)
    assert res.objective == pytest.approx(lme4.objective, rel=1e-7)
    np.testing.assert_allclose(res.theta, lme4.theta, atol=1e-4 * np.abs(lme4.theta).max())


def test_offset_is_subtracted_from_the_response():
    res, fitted = fit(offset="off"), model(offset="off")
    data = frame()
    expected = regression_start(fitted, (data["y"] - data["off"]).to_numpy())
    np.testing.assert_allclose(res.optinfo["start"], expected, rtol=1e-12)
    ignored = regression_start(fitted, data["y"].to_numpy())
    assert not np.allclose(expected, ignored, atol=0.05)  # the offset matters here


@pytest.mark.parametrize(
    ("formula", "kwargs", "fit_kwargs"),
    [
        (FORMULA, {}, {"method": "bobyqa"}),
        (FORMULA, {}, {"method": "lbfgsb"}),
        (FORMULA, {"weights": "w"}, {}),
        ("y ~ x + (1 | g1) + (0 + x | g1) + (x | g2)", {}, {}),
        ("y ~ x + (x || g1) + (x | g2)", {}, {}),
        ("y ~ x + (0 + x | g1) + (1 | g2)", {}, {}),
    ],
    ids=["bobyqa", "lbfgsb-asked", "weights", "shared-factor", "double-bar", "all-scalar"],
)
def test_other_fits_keep_lme4s_start(formula, kwargs, fit_kwargs):
    fitted = model(formula, **kwargs)
    # the regressions give a start here (even on a shared factor): the model declines it
    assert regression_start(fitted, np.asarray(fitted.endog, dtype=float)) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sml.SingularFitWarning)
        res = fitted.fit(**fit_kwargs)
    np.testing.assert_array_equal(res.optinfo["start"], fitted.theta_start)


def test_given_start_is_kept():
    start = np.array([0.5, 0.1, 0.5, 0.5, -0.1, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sml.SingularFitWarning)
        res = model().fit(start_theta=start)
    np.testing.assert_array_equal(res.optinfo["start"], start)
    assert res.objective == pytest.approx(fit().objective, rel=1e-7)


def test_scalar_and_vector_terms_start_from_the_regressions():
    """``(1 | g1) + (x | g2)``: lme4's group-mean start needs intercepts only, so this one."""
    res = fit("y ~ x + (1 | g1) + (x | g2)")
    fitted = model("y ~ x + (1 | g1) + (x | g2)")
    expected = regression_start(fitted, np.asarray(fitted.endog, dtype=float))
    assert expected.shape == (4,)
    np.testing.assert_allclose(res.optinfo["start"], expected, rtol=1e-12)
