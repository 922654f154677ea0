"""Panel tools against linearmodels 7.1 on its wage_panel (balanced) and jobtraining data.

Reference values: ``fixtures/linearmodels_panel.json`` (``make_panel_fixtures.py``;
definitions in ``linearmodels_panel_method.md``). Where the estimator is the
same (the within estimator, the R^2 measures of given coefficients, the
Hausman formula, Mundlak's coefficients) the numbers agree to 1e-10. Our
random-effects fit is REML, linearmodels' Swamy-Arora: on the balanced panel
the two give the same between variance, so Mundlak's Wald statistics agree
too; on the unbalanced one they differ, and the tests say by how much.
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.tools.sm_exceptions import ValueWarning

import statsmodels_lmer as sml
from statsmodels_lmer.tools.panel import hausman_statistic, rsquared_measures

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REF = json.loads((FIXTURES / "linearmodels_panel.json").read_text())
DATASETS = list(REF["datasets"])
R2 = ["within", "between", "overall"]


def info(name: str) -> dict:
    return REF["datasets"][name]


@cache
def data(name: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURES / info(name)["file"])


@cache
def random_effects_fit(name: str):
    spec = info(name)
    regressors = spec["time_varying"] + spec["time_invariant"]
    formula = f"{spec['dependent']} ~ 1 + {' + '.join(regressors)} + (1 | {spec['entity']})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sml.lmer(formula, data(name))


def reference(name: str, model: str, cov: str = "unadjusted") -> dict:
    return info(name)["models"][model]["fits"][cov]


def named_matrix(block: dict) -> pd.DataFrame:
    return pd.DataFrame(block["matrix"], index=block["names"], columns=block["names"])


@pytest.mark.parametrize("name", DATASETS)
def test_within_estimator_is_panelols(name):
    within = random_effects_fit(name).within_estimator()
    ref = reference(name, "within")
    clustered = reference(name, "within", "clustered")
    names = list(within.params.index)
    assert names == list(ref["params"])
    np.testing.assert_allclose(within.params, [ref["params"][n] for n in names], rtol=1e-10)
    np.testing.assert_allclose(within.cov, named_matrix(ref["cov"]).loc[names, names], rtol=1e-10)
    expected = named_matrix(clustered["cov"]).loc[names, names].to_numpy()
    np.testing.assert_allclose(within.cov_clustered, expected, rtol=1e-10)
    assert within.s2 == pytest.approx(ref["s2"], rel=1e-12)
    assert within.df_resid == ref["df_resid"]
    np.testing.assert_allclose(within.rsquared[R2], [ref[f"rsquared_{k}"] for k in R2], rtol=1e-10)
    assert within.dropped == info(name)["time_invariant"]


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("estimator", ["pooled", "between", "random", "within"])
def test_rsquared_definitions_are_linearmodels(name, estimator):
    res = random_effects_fit(name)
    ref = reference(name, estimator)
    X = np.asarray(res.model.exog)
    y = np.asarray(res.model.endog)
    beta = np.array([ref["params"].get(n, 0.0) for n in res.model.exog_names])
    if estimator == "within":  # the constant is the grand mean: kept as given
        beta[0] = ref["params"]["Intercept"]
    codes = res.model.random_terms[0].codes
    measures = rsquared_measures(y, X, codes, beta, has_constant=True)
    np.testing.assert_allclose(measures[R2], [ref[f"rsquared_{k}"] for k in R2], rtol=1e-10)


@pytest.mark.parametrize("name", DATASETS)
def test_rsquared_of_our_fit(name):
    res = random_effects_fit(name)
    values = [res.rsquared_within, res.rsquared_between, res.rsquared_overall]
    np.testing.assert_allclose(values, res.panel_rsquared()[R2], rtol=1e-15)
    ref = reference(name, "random")
    # REML's and Swamy-Arora's variance components (their df differ) move the
    # RE coefficients slightly; the R^2 measures differ by up to 2.6e-4.
    np.testing.assert_allclose(values, [ref[f"rsquared_{k}"] for k in R2], atol=3e-4)


@pytest.mark.parametrize("name", DATASETS)
def test_hausman_formula_is_linearmodels(name):
    """The statistic of linearmodels' own estimates (default, sigmamore, sigmaless)."""
    spec = info(name)
    names = spec["time_varying"]
    fe, re = reference(name, "within"), reference(name, "random")
    b_fe = [fe["params"][n] for n in names]
    b_re = [re["params"][n] for n in names]
    v_fe = named_matrix(fe["cov"]).loc[names, names].to_numpy()
    v_re = named_matrix(re["cov"]).loc[names, names].to_numpy()
    stored = spec["hausman"]["linearmodels"]
    statistic, df, pvalue = hausman_statistic(b_fe, v_fe, b_re, v_re)
    assert statistic == pytest.approx(stored["default"]["stat"], rel=1e-10)
    assert (df, pvalue) == (
        stored["default"]["df"],
        pytest.approx(stored["default"]["pval"], rel=1e-8),
    )
    more = hausman_statistic(b_fe, v_fe * re["s2"] / fe["s2"], b_re, v_re)[0]
    less = hausman_statistic(b_fe, v_fe, b_re, v_re * fe["s2"] / re["s2"])[0]
    assert more == pytest.approx(stored["sigmamore"]["stat"], rel=1e-10)
    assert less == pytest.approx(stored["sigmaless"]["stat"], rel=1e-10)


def test_classic_hausman_of_our_fit():
    res = random_effects_fit("wage_panel")
    test = res.hausman(method="classic")
    assert test.coefficients == info("wage_panel")["time_varying"]
    within = res.within_estimator()
    names = test.coefficients
    expected = hausman_statistic(
        within.params[names],
        within.cov.loc[names, names],
        res.params[names],
        res.cov_params().loc[names, names],
    )
    assert test.statistic == pytest.approx(expected[0], rel=1e-12)
    # REML's V_RE is not linearmodels' (own s2 and variance components): 26.7 vs 31.5
    assert test.statistic == pytest.approx(26.744, abs=1e-3)
    assert info("wage_panel")["hausman"]["classic"]["stat"] == pytest.approx(31.451, abs=1e-3)


@pytest.mark.parametrize("name", DATASETS)
def test_mundlak_coefficients_are_the_within_estimates(name):
    test = random_effects_fit(name).hausman()
    spec = info(name)
    within = reference(name, "within")
    names = spec["time_varying"]
    np.testing.assert_allclose(
        test.fit.params[names], [within["params"][n] for n in names], rtol=1e-8
    )
    assert test.distribution == "F" and test.df == len(names)
    assert test.cov_type == f"cluster-robust CR2 by {spec['entity']} ({spec['entities']} clusters)"


def test_mundlak_wald_matches_linearmodels_on_the_balanced_panel():
    res = random_effects_fit("wage_panel")
    stored = info("wage_panel")["mundlak"]
    plain = res.hausman(cov_type="nonrobust")
    # balanced: REML's between variance is the ANOVA (Swamy-Arora) one; the
    # remaining 1.5e-7 is linearmodels' s2 (n - k) against REML's sigma^2
    assert plain.statistic == pytest.approx(
        stored["unadjusted"]["wald_means_zero"]["stat"], rel=1e-6
    )
    robust = res.hausman(cov_type="CR0")
    n, k = len(data("wage_panel")), len(robust.fit.params)
    # linearmodels' clustered covariance is CR0 times n / (n - k)
    expected = stored["clustered"]["wald_means_zero"]["stat"]
    assert robust.wald * (n - k) / n == pytest.approx(expected, rel=1e-8)


def test_mundlak_on_the_unbalanced_panel_differs_as_documented():
    res = random_effects_fit("jobtraining")
    stored = info("jobtraining")["mundlak"]
    plain = res.hausman(cov_type="nonrobust")
    assert plain.statistic == pytest.approx(3.0967, abs=1e-4)
    assert stored["unadjusted"]["wald_means_zero"]["stat"] == pytest.approx(3.1148, abs=1e-4)
    robust = res.hausman()
    assert robust.pvalue > 0.5 and robust.df_denom < res.model.random_terms[0].n_levels


def test_mundlak_helper_adds_entity_means():
    frame = data("jobtraining")
    out = sml.mundlak(frame, ["lemploy", "grant"], by="fcode")
    assert "mean_lemploy" not in frame.columns
    expected = frame.groupby("fcode")["lemploy"].transform("mean")
    np.testing.assert_allclose(out["mean_lemploy"], expected)
    res = sml.lmer("hrsemp ~ lemploy + grant + mean_lemploy + mean_grant + (1 | fcode)", out)
    within = sml.lmer("hrsemp ~ lemploy + grant + (1 | fcode)", frame).within_estimator()
    np.testing.assert_allclose(
        res.params[["lemploy", "grant"]], within.params[["lemploy", "grant"]], rtol=1e-7
    )


def test_panel_tools_need_one_entity():
    res = sml.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", sml.datasets.load("Penicillin"))
    with pytest.raises(ValueError, match="entity="):
        _ = res.rsquared_within
    assert res.panel_rsquared(entity="plate")["overall"] == 0.0
    with pytest.raises(ValueError, match="method"):
        random_effects_fit("jobtraining").hausman(method="wu")


def test_mundlak_refuses_a_balanced_design_with_nothing_to_test():
    res = sml.lmer("Reaction ~ Days + (1 | Subject)", sml.datasets.load("sleepstudy"))
    with pytest.raises(ValueError, match="do not vary across entities"):
        res.hausman()


def _experience_panel() -> pd.DataFrame:
    """A balanced panel where experience rises by 1 a year for everyone (plm's Wages)."""
    rng = np.random.default_rng(11)
    n_id, n_t = 60, 6
    ids = np.repeat(np.arange(n_id), n_t)
    time = np.tile(np.arange(1, n_t + 1), n_id)
    start = rng.integers(1, 20, n_id)
    data = pd.DataFrame({"id": ids, "time": time, "exp": start[ids] + time})
    data["wks"] = rng.normal(46, 4, len(data))
    u = rng.normal(0, 0.3, n_id)[ids]
    data["y"] = 5 + 0.02 * data["exp"] + 0.01 * data["wks"] + u + rng.normal(0, 0.2, len(data))
    return data


def test_within_estimator_drops_regressors_absorbed_after_demeaning():
    """exp is year dummies plus an entity constant: the within estimator returned 0.31
    with SE 977 (plm drops a column); now exp is dropped, named, and the rest is the
    within estimator without it."""
    data = _experience_panel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("y ~ exp + wks + C(time) + (1 | id)", data)
        plain = sml.lmer("y ~ wks + C(time) + (1 | id)", data)
    with pytest.warns(ValueWarning, match="exp is a linear combination"):
        within = res.within_estimator()
    assert within.collinear == ["exp"] and "exp" in within.dropped
    expected = plain.within_estimator()
    np.testing.assert_allclose(within.params[expected.params.index], expected.params, rtol=1e-9)
    np.testing.assert_allclose(within.bse[expected.params.index], expected.bse, rtol=1e-9)
    with pytest.warns(ValueWarning), pytest.raises(ValueError, match="exp is absorbed"):
        res.hausman(method="classic")


def test_classic_hausman_does_not_depend_on_units():
    """Population in persons instead of millions: 22.5 on 2 df instead of 37.5 on 3, and a
    false 'not positive definite' warning (the eigenvalue cut saw the units)."""
    data = _experience_panel().assign(
        x=lambda d: d["wks"] + np.random.default_rng(2).normal(size=len(d))
    )
    statistics = []
    for scale in (1.0, 1e8):
        scaled = data.assign(xs=data["x"] * scale)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sml.lmer("y ~ wks + xs + (1 | id)", scaled)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no pseudo-inverse warning
            test = res.hausman(method="classic")
        statistics.append((test.statistic, test.df))
    assert statistics[1][1] == statistics[0][1] == 2
    assert statistics[1][0] == pytest.approx(statistics[0][0], rel=1e-5)


def test_within_estimator_of_a_constant_implied_by_time_invariant_dummies():
    """``0 + C(sector) + x`` with sector constant within firms is ``C(sector) + x``: the
    within estimator lost its constant and R^2 between came out as -2.7 (EmplUK)."""
    data = _experience_panel()
    data["sector"] = (data["id"] % 3).map({0: "a", 1: "b", 2: "c"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        usual = sml.lmer("y ~ C(sector) + wks + (1 | id)", data)
        implied = sml.lmer("y ~ 0 + C(sector) + wks + (1 | id)", data)
    a, b = usual.within_estimator(), implied.within_estimator()
    assert list(b.params.index) == ["Intercept", "wks"]
    np.testing.assert_allclose(b.params, a.params, rtol=1e-10)
    np.testing.assert_allclose(b.rsquared, a.rsquared, rtol=1e-10)
    np.testing.assert_allclose(  # two fits: their optima agree to about 1e-7
        implied.hausman(method="classic").statistic,
        usual.hausman(method="classic").statistic,
        rtol=1e-5,
    )


def test_entity_with_missing_values_is_named():
    data = _experience_panel().assign(other=lambda d: d["id"].astype(float))
    data.loc[data["id"] == 3, "other"] = np.nan
    res = sml.lmer("y ~ wks + (1 | id)", data)
    with pytest.raises(ValueError, match="entity column 'other' has 6 missing values"):
        res.within_estimator(entity="other")


def test_hausman_refuses_two_way_random_effects():
    """The classic test compared a one-way within estimator with the two-way fit (9.5 on
    2 df; plm's two-way phtest 47.6 on 4); the default one failed asking for coarser
    clusters, which hausman() cannot take."""
    data = _experience_panel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("y ~ wks + (1 | id) + (1 | time)", data)
    for method in ("classic", "mundlak"):
        with pytest.raises(ValueError, match=r"one-way.*id, time.*C\(year\)"):
            res.hausman(method=method)
