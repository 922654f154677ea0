"""Fixed-effects columns far from zero (``engine/centering.py``).

A predictor ``xb = 1e6 + xc`` next to an intercept is the same model as ``xc``:
the criterion is the same function of theta, the slopes are equal and the
intercepts differ by ``1e6`` times the slope. Before the engine centred such
columns the REML criterion of ``y ~ xb + (1 | g)`` was off by 0.06 (below the
true minimum) and its fit stopped at theta 1.0097 instead of 1.0320.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tools.sm_exceptions import ValueWarning

import statsmodels_lmer as sml
from statsmodels_lmer.engine.centering import FixedCentering
from statsmodels_lmer.engine.sparse import sparse_backend
from statsmodels_lmer.inference.satterthwaite import Satterthwaite

OFFSET = 1e6


def offset_data(seed: int = 3, n: int = 240) -> pd.DataFrame:
    """Crossed groups, a predictor far from zero (``xb``) and the same one near zero
    (``xc = xb - 1e6``, exact: both lie within a factor of two of 1e6)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 24, n), rng.integers(0, 9, n)
    xb = OFFSET + rng.normal(size=n)
    z = rng.normal(size=n)
    y = 0.8 * (xb - OFFSET) + 0.3 * z + rng.normal(size=24)[a] + 0.5 * rng.normal(size=9)[b]
    y += rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n)
    return pd.DataFrame({"a": a, "b": b, "xb": xb, "xc": xb - OFFSET, "z": z, "y": y, "w": w})


FORMULAS = ["y ~ {x} + (1 | a)", "y ~ {x} + z + (1 | a) + (1 | b)"]


def pair(formula: str, **kwargs) -> tuple[sml.Lmer, sml.Lmer]:
    data = offset_data()
    return tuple(sml.Lmer.from_formula(formula.format(x=x), data, **kwargs) for x in ("xb", "xc"))


def transform(p: int) -> np.ndarray:
    """``T`` with ``beta_xb = T beta_xc``: the intercept loses 1e6 times the slope."""
    T = np.eye(p)
    T[0, 1] = -OFFSET
    return T


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_criterion_is_that_of_the_centred_column(formula, reml, weighted):
    far, near = pair(formula, weights="w" if weighted else None)
    assert far.cross_products.centering is not None
    assert near.cross_products.centering is None
    strategies = [None, "pairs"] + (
        ["sparse"] if sparse_backend() and "+ (1 | b)" in formula else []
    )
    for strategy in strategies:
        f_far, f_near = far.devfun(reml, strategy=strategy), near.devfun(reml, strategy=strategy)
        for scale in (0.3, 1.0, 2.5):
            theta = np.full(far.theta_start.size, scale)
            assert f_far(theta) == pytest.approx(f_near(theta), rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("formula", FORMULAS)
def test_estimates_and_inference_map_back(formula):
    far, near = pair(formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ValueWarning)
        res_far, res_near = far.fit(), near.fit()
    assert res_far.reml_criterion == pytest.approx(res_near.reml_criterion, rel=1e-12)
    np.testing.assert_allclose(res_far.theta, res_near.theta, rtol=1e-6)
    T = transform(len(res_far.params))
    beta_near = np.asarray(res_near.params)
    np.testing.assert_allclose(res_far.params, T @ beta_near, rtol=1e-7, atol=1e-6)
    expected = T @ np.asarray(res_near.cov_params()) @ T.T
    np.testing.assert_allclose(res_far.cov_params(), expected, rtol=1e-6)
    # the slope's inference is the same: Satterthwaite, Kenward-Roger, anova
    for ddf in ("satterthwaite", "kenward-roger"):
        mine = res_far.coef_table(ddf=ddf).iloc[1]
        theirs = res_near.coef_table(ddf=ddf).iloc[1]
        np.testing.assert_allclose(mine.to_numpy(dtype=float), theirs.to_numpy(dtype=float), 1e-6)
    np.testing.assert_allclose(
        res_far.anova().to_numpy(dtype=float), res_near.anova().to_numpy(dtype=float), rtol=1e-6
    )
    # the intercept at xb = 1e6 is xc's intercept: a contrast through the intercept
    contrast_far, contrast_near = np.zeros((2, len(beta_near)))
    contrast_far[:2], contrast_near[0] = [1.0, OFFSET], 1.0
    numderiv = [Satterthwaite(r, method="numderiv") for r in (res_far, res_near)]
    for method in ("kenward_roger", "satterthwaite", "numderiv"):
        if method == "numderiv":
            mine, theirs = (s.test(c) for s, c in zip(numderiv, (contrast_far, contrast_near)))
        else:
            mine = getattr(res_far, method).test(contrast_far)
            theirs = getattr(res_near, method).test(contrast_near)
        for name in ("den_df", "statistic", "pvalue", "cov"):
            assert getattr(mine, name) == pytest.approx(getattr(theirs, name), rel=1e-6), name
    np.testing.assert_allclose(res_far.fittedvalues, res_near.fittedvalues, rtol=1e-9, atol=1e-9)


def test_refit_keeps_the_centring():
    far, near = pair(FORMULAS[0])
    res_far, res_near = far.fit(), near.fit()
    y2 = offset_data(seed=9).y.to_numpy()
    new_far, new_near = res_far.refit(y2), res_near.refit(y2)
    assert new_far.reml_criterion == pytest.approx(new_near.reml_criterion, rel=1e-12)
    T = transform(2)
    np.testing.assert_allclose(new_far.params, T @ np.asarray(new_near.params), rtol=1e-7)


def test_profile_interval_of_the_slope_is_the_same():
    far, near = pair(FORMULAS[0])
    mine = far.fit().confint(method="profile").loc["xb"].to_numpy()
    theirs = near.fit().confint(method="profile").loc["xc"].to_numpy()
    np.testing.assert_allclose(mine, theirs, rtol=1e-5)


def test_ordinary_columns_are_left_alone():
    sleep = sml.Lmer.from_formula(
        "Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy")
    )
    assert sleep.cross_products.centering is None
    apart = np.column_stack([np.ones(5), np.arange(5.0), np.arange(5.0) ** 2])
    assert FixedCentering.of(apart) is None


def test_transform_arithmetic_against_matrices():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=30), np.ones(30), rng.normal(size=30), np.ones(30)])
    X[:, 2] += 1e5  # far from zero: centred on the intercept (column 1)
    X[:, 3] = 3.0 * X[:, 0] + 1e4 * X[:, 2] + rng.normal(size=30)  # near the span of 0 and 2
    centering = FixedCentering.of(X)
    np.testing.assert_array_equal(centering.columns, [2, 3])
    C, T = centering.coefficients, centering.transform
    np.testing.assert_allclose(np.triu(C), C)
    np.testing.assert_allclose(np.diagonal(C), 1.0)
    np.testing.assert_allclose(T @ C, np.eye(4), atol=1e-12)
    centred = centering.apply(X)
    np.testing.assert_allclose(centred @ C, X, rtol=1e-12)
    unit = centred / np.linalg.norm(centred, axis=0)
    for j in centering.columns:  # orthogonal to the columns before it
        np.testing.assert_allclose(unit[:, :j].T @ unit[:, j], 0.0, atol=1e-6)  # was 1 - 1e-17
    beta = rng.normal(size=4)
    np.testing.assert_allclose(centering.beta(beta), T @ beta)
    L = rng.normal(size=(2, 4))
    np.testing.assert_allclose(centering.contrast(L), L @ T)
    np.testing.assert_allclose(centering.contrast(L[0]), L[0] @ T)
    V = rng.normal(size=(3, 4, 4))
    np.testing.assert_allclose(centering.covariance(V), T @ V @ T.T)
    Z = rng.normal(size=(30, 5))
    ztwx, xtwx = centering.original_cross(Z.T @ centred, centred.T @ centred)
    np.testing.assert_allclose(ztwx, Z.T @ X, rtol=1e-9)
    np.testing.assert_allclose(xtwx, X.T @ X, rtol=1e-9)


def test_random_column_far_from_zero_is_named_in_a_warning():
    with pytest.warns(ValueWarning, match=r"random-effects column 'xb' of \(xb \| a\) is far"):
        sml.Lmer.from_formula("y ~ xb + (xb | a)", offset_data())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ValueWarning)
        sml.Lmer.from_formula("y ~ xb + (xc | a)", offset_data())


def interaction_data(shift: float, seed: int = 1, n: int = 160) -> pd.DataFrame:
    """``a * x`` with ``x`` moved by ``shift``: the columns ``a:x`` lie near ``shift * a``."""
    rng = np.random.default_rng(seed)
    g, h = rng.integers(0, 16, n), rng.integers(0, 8, n)
    a, x = rng.choice(list("pqr"), n), rng.normal(size=n)
    y = 1 + 0.5 * (a == "q") + x + 0.8 * rng.normal(size=16)[g] + 0.5 * rng.normal(size=8)[h]
    y += 0.4 * rng.normal(size=16)[g] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y + 0.3 * shift, "g": g, "h": h, "a": a, "x": x + shift})


def test_interaction_with_a_covariate_far_from_zero():
    """The type I test of ``a`` (entered before ``x``) does not depend on ``x``'s zero.
    At a shift of 1e5 its Kenward-Roger df were infinite and its p-value NaN (pbkrtest
    0.5.2: 136.92 against 137.79 unshifted); the a:x columns are centred on ``a``."""
    near, far = (
        sml.lmer("y ~ a * x + (1 | g) + (1 | h)", interaction_data(shift)) for shift in (0.0, 1e5)
    )
    assert far.model.cross_products.centering is not None
    assert far.reml_criterion == pytest.approx(near.reml_criterion, rel=1e-10)
    for ddf in ("kenward-roger", "satterthwaite"):
        mine = far.anova(type=1, ddf=ddf).loc["a"].to_numpy(dtype=float)
        theirs = near.anova(type=1, ddf=ddf).loc["a"].to_numpy(dtype=float)
        np.testing.assert_allclose(mine, theirs, rtol=1e-6)


@pytest.mark.parametrize(
    ("offset", "centred"), [(10.0, False), (1e3, True), (1e8, True), (1e12, True)]
)
def test_columns_are_centred_when_their_distance_is_below_a_hundredth(offset, centred):
    """x = offset + N(0, 1) next to the intercept: distance / norm about 1 / offset
    (1e12: the squares of the Gram matrix underflow eps; still flagged)."""
    rng = np.random.default_rng(4)
    X = np.column_stack([np.ones(50), offset + rng.normal(size=50), np.zeros(50)])
    found = FixedCentering.of(X)
    assert (found is not None) == centred
    if centred:
        np.testing.assert_array_equal(found.columns, [1])


def test_an_exactly_dependent_column_does_not_break_the_check():
    X = np.column_stack([np.ones(20), np.arange(20.0), 2.0 * np.arange(20.0) + 1.0])
    found = FixedCentering.of(X)
    assert found is not None and 2 in found.columns
    assert np.all(np.isfinite(found.coefficients))
