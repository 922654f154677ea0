"""Regression tests for discrepancies found by differential fuzzing against R.

Reference numbers: lmerTest 3.1-3, pbkrtest 0.5.2 and lme4 1.1-31
(tests/fixtures/fuzz_inference.json, from make_fuzz_inference_fixtures.R) on
the random data sets tests/fixtures/data/fuzz_*.csv. ANOVA tables are
evaluated at lme4's theta (``results_at``) so that they measure the method.
Tolerances: F 1e-8 relative (a ratio of quadratic forms, exact on both
sides); denominator df 1e-5 relative (lmerTest's numDeriv Hessian against our
analytic one agrees to about 1e-7 on regular fits; the sum-contrast case is a
singular fit, where the boundary differences across theta = 0 make it 1e-6).
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import statsmodels_lmer as sml


@cache
def fixture() -> dict:
    return json.loads((FIXTURES / "fuzz_inference.json").read_text())


def fuzz_data(case: dict) -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "data" / case["data"])


@cache
def anova_fit(name: str, formula: str):
    case = fixture()[name]
    model = sml.Lmer.from_formula(formula, fuzz_data(case))
    return case, model.results_at(case["theta"], reml=case["REML"])


ANOVA_CASES = {
    "containment": ("y ~ x + f1:x + (1 | g) + (1 | g:h)", {"x": "x", "x:f1": "f1:x"}),
    "sum_type3": (
        "y ~ C(f1, Sum) * C(f2, Sum) + (1 | g) + (1 | g:h)",
        {"f1": "C(f1, Sum)", "f2": "C(f2, Sum)", "f1:f2": "C(f1, Sum):C(f2, Sum)"},
    ),
}


@pytest.mark.parametrize("name", sorted(ANOVA_CASES))
@pytest.mark.parametrize(
    ("table", "type_", "ddf"),
    [
        ("type3_satterthwaite", 3, "satterthwaite"),
        ("type3_kenward_roger", 3, "kenward-roger"),
        ("type1_satterthwaite", 1, "satterthwaite"),
    ],
)
def test_anova_matches_lmertest(name: str, table: str, type_: int, ddf: str) -> None:
    """Type III contrasts as lmerTest's: its containment rule and, for sum
    contrasts, its rows (the treatment contrasts mapped to the model's coding).

    Before the fix, ``y ~ x + f1:x`` tested the average slope for ``x``
    (F 168.8 against lmerTest's 71.49) and the sum-coded tables had other df
    (f1: 53.04 against 53.22).
    """
    formula, names = ANOVA_CASES[name]
    case, res = anova_fit(name, formula)
    ours = res.anova(type=type_, ddf=ddf)
    for row in case[table]:
        term = names[row["term"]]
        assert ours.loc[term, "NumDF"] == row["NumDF"]
        np.testing.assert_allclose(ours.loc[term, "F"], row["F"], rtol=1e-8)
        np.testing.assert_allclose(ours.loc[term, "DenDF"], row["DenDF"], rtol=1e-5)


def test_unused_category_sum_coding_as_lme4() -> None:
    # unused categories of a pandas Categorical are dropped before coding, as R's model
    # frame drops unused levels; before, with C(f, Sum) the last used level got 0 instead
    # of -1 once the aliased column was dropped (REML criterion 267.18 against 269.95)
    case = fixture()["unused_sum"]
    data = fuzz_data(case)
    data["f1"] = pd.Categorical(data["f1"], categories=case["levels"])
    res = sml.lmer("y ~ C(f1, Sum) + x + (1 | g)", data)
    assert len(res.params) == len(case["fixef"])
    np.testing.assert_allclose(res.params, case["fixef"], atol=1e-4 * float(np.min(res.bse)))
    # The REML criterion depends on the coding of X (log|X'X|), so it differs too.
    np.testing.assert_allclose(res.reml_criterion, case["REMLcrit"], rtol=1e-7)


def test_boundary_fit_reaches_best_lme4_optimum() -> None:
    case = fixture()["boundary"]
    res = sml.lmer("y ~ x * z + (x | g) + (1 | h)", fuzz_data(case))
    best = min(case["REMLcrit"])
    assert res.reml_criterion <= best + 1e-6


def test_profile_grid_interval_with_non_monotone_tail() -> None:
    # the inner fits at |zeta| > 3.5 jump to a mode with a large (1|b:a) variance, so
    # zeta is not monotone there; the limits come from the increasing part around the
    # estimate (before: NaN for the intercept; ends='search' gives -4.0125, 1.2558)
    case = fixture()["profile"]
    res = sml.lmer("y ~ x + I(x**2) + (1 | a/b)", fuzz_data(case), REML=False)
    np.testing.assert_allclose(res.deviance, case["deviance"], rtol=1e-7)
    prof = res.profile(which=["Intercept"])
    with pytest.warns(ConvergenceWarning, match="non-monotonic profile for Intercept beyond"):
        spline = prof.confint().to_numpy()[0]
    # lme4 itself falls back to linear interpolation here ("bad spline fit"), so
    # its limits are good to about 1e-3 only.
    np.testing.assert_allclose(spline, case["intercept_profile_ci"], rtol=1e-3)
    # the direct search for zeta = -+1.96 (the exact profile): the spline's 2e-4
    search = res.confint(parm=["Intercept"], ends="search").to_numpy()[0]
    np.testing.assert_allclose(spline, search, rtol=2e-4)
    # confint on the grid searches the limits of a non-monotone profile
    with pytest.warns(ConvergenceWarning, match="Intercept: its limits were searched"):
        ours = res.confint(parm=["Intercept"], ends="grid").to_numpy()[0]
    np.testing.assert_allclose(ours, search, rtol=1e-12)


def test_profile_of_a_correlation_flat_at_the_bound_is_searched() -> None:
    """``(x | g)``: the correlation's profile flattens towards -1, R's back-spline fails.
    The spline on the monotone part gave -0.4804 / 0.7240 and lme4 1.1-31's linear
    interpolation -0.485621 / 0.730524; the exact profile's limits are searched."""
    data = pd.read_csv(FIXTURES / "data" / "profile_correlation.csv")
    res = sml.lmer("y ~ a + x + (x | g)", data)
    with pytest.warns(ConvergenceWarning, match=r"\.sig02: its limits were searched"):
        grid = res.confint(parm=[".sig02"], ends="grid").to_numpy()[0]
    search = res.confint(parm=[".sig02"], ends="search").to_numpy()[0]
    np.testing.assert_allclose(grid, search, rtol=1e-12)
    np.testing.assert_allclose(grid, [-0.485621, 0.730524], atol=5e-3)  # lme4's line


def test_profile_of_a_correlation_takes_the_zero_sd_minimum() -> None:
    """Orthodont's girls, ``distance ~ age + (age | Subject)``: with sd(age) = 0 the
    correlation has no effect, so its profile never rises above that minimum (lme4 1.1-31:
    zeta -1.876467 at .sig01 1.969870, .sigma 0.7681236) and the 95 % lower limit is the
    bound -1, as lme4's. The inner fit, started next to the last point, stopped on the
    interior branch: -0.8436, with impossible zetas (-2.85, -4.05) in the profile."""
    data = pd.read_csv(FIXTURES / "data" / "gallery_Orthodont.csv.gz")
    girls = data[data["Sex"] == "Female"]
    res = sml.lmer("distance ~ age + (age | Subject)", girls)
    with pytest.warns(ConvergenceWarning, match=r"\.sig02"):
        limits = res.confint(parm=[".sig02"]).to_numpy()[0]
    np.testing.assert_array_equal(limits, [-1.0, 1.0])
    search = res.confint(parm=[".sig02"], ends="search").to_numpy()[0]
    np.testing.assert_array_equal(search, [-1.0, 1.0])
    frame = res.profile(which=[".sig02"]).frame
    rows = frame[frame[".par"] == ".sig02"]
    assert rows[".zeta"].min() == pytest.approx(-1.876467, abs=2e-6)
    flat = rows[rows[".sig03"] == 0.0]
    assert len(flat) >= 1
    np.testing.assert_allclose(flat[[".sig01", ".sigma"]].iloc[0], [1.969870, 0.7681236], atol=2e-6)
