"""statsmodels habits (t tests, predictions, printing) and lme4 habits (anova, summary)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import FormulaError
from statsmodels_lmer.random_effects import scaled_z
from statsmodels_lmer.summary import random_effects_table
from statsmodels_lmer.tables import format_pvalue


@pytest.fixture(scope="module")
def sleep():
    return sml.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def res(sleep):
    return sml.lmer("Reaction ~ Days + (Days | Subject)", sleep)


@pytest.fixture(scope="module")
def cake_res():
    return sml.lmer("angle ~ recipe + temp + (1 | replicate)", sml.datasets.load("cake"))


# -- t tests ------------------------------------------------------------------


def test_multi_row_t_test_has_per_row_df(res):
    test = res.t_test("Days = 10, Intercept = 250")
    np.testing.assert_allclose(test.df_denom, [res.ddf["Days"], res.ddf["Intercept"]], rtol=1e-12)
    frame = test.summary_frame()
    assert list(frame.index) == ["Days = 10", "Intercept = 250"]
    assert list(frame.columns) == [
        "coef",
        "std err",
        "t",
        "P>|t|",
        "Conf. Int. Low",
        "Conf. Int. Upp.",
        "df",
    ]
    single = res.t_test("Days = 10")
    np.testing.assert_allclose(frame.iloc[0, :6], single.summary_frame().iloc[0, :6], rtol=1e-12)
    np.testing.assert_allclose(test.conf_int()[0], single.conf_int()[0], rtol=1e-12)
    np.testing.assert_allclose(res.conf_int().loc["Days"], single.conf_int()[0] + [0, 0])
    assert single.tvalue.shape == (1, 1) and np.ndim(single.pvalue) == 0  # statsmodels' shapes
    text = str(test)
    assert "Days = 10" in text and "satterthwaite" in text and "17.0000" in text


def test_t_test_pairwise_uses_each_contrast_df(cake_res):
    pairs = cake_res.t_test_pairwise("recipe").result_frame
    assert list(pairs.index) == ["B-A", "C-A", "C-B"]
    direct = cake_res.t_test("recipe[T.C] - recipe[T.B] = 0")
    assert pairs.loc["C-B", "t"] == pytest.approx(float(direct.tvalue[0, 0]), rel=1e-10)
    assert pairs.loc["C-B", "df"] == pytest.approx(float(direct.df_denom), rel=1e-10)
    assert "pvalue-hs" in pairs.columns


@pytest.mark.parametrize(
    ("term", "error", "message"),
    [
        ("C(recipe)", KeyError, r"no fixed-effects term 'C\(recipe\)'.*'recipe'"),
        ("temp", ValueError, "'temp' is numeric"),
    ],
)
def test_t_test_pairwise_names_a_bad_term(cake_res, term, error, message):
    """statsmodels' own messages were "'C(recipe)' is not in list" and a TypeError."""
    with pytest.raises(error, match=message):
        cake_res.t_test_pairwise(term)


def test_t_test_use_t(res):
    """use_t=True is the default (Satterthwaite t); use_t=False gives statsmodels' z tests."""
    default, explicit = res.t_test("Days = 10"), res.t_test("Days = 10", use_t=True)
    assert float(explicit.pvalue) == float(default.pvalue)
    z = res.t_test("Days = 10", use_t=False)
    statistic = (res.params["Days"] - 10) / res.bse["Days"]
    assert float(z.statistic[0, 0]) == pytest.approx(statistic, rel=1e-12)
    assert float(z.pvalue) == pytest.approx(2 * stats.norm.sf(abs(statistic)), rel=1e-12)
    assert z.distribution == "norm" and float(z.pvalue) < float(default.pvalue)
    with pytest.raises(TypeError, match="choose ddf="):
        res.t_test("Days = 10", cov_p=np.eye(2))


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, -0.1, "0.05"])
def test_conf_int_refuses_alpha_outside_0_1(res, alpha):
    """alpha = 1.5 gave intervals with the lower limit above the upper one."""
    error = TypeError if isinstance(alpha, str) else ValueError
    with pytest.raises(error, match="alpha must"):
        res.conf_int(alpha=alpha)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Dayz = 1", "did you mean 'Days'"),
        ("Days = = 1", "expected a noun"),
        ("Days +", "cannot read the hypothesis"),
        ("", "empty hypothesis"),
    ],
)
def test_malformed_hypotheses_are_clear_errors(res, text, message):
    with pytest.raises(FormulaError, match=message):
        res.t_test(text)
    with pytest.raises(FormulaError, match=r"The coefficients are: Intercept, Days|empty"):
        res.f_test(text)


# -- predictions ----------------------------------------------------------------


def test_population_prediction_standard_errors(res):
    new = pd.DataFrame({"Days": [0.0, 4.5, np.nan]}, index=["a", "b", "c"])
    frame = res.get_prediction(new).summary_frame(alpha=0.1)
    assert list(frame.columns) == [
        "mean",
        "mean_se",
        "mean_ci_lower",
        "mean_ci_upper",
        "obs_ci_lower",
        "obs_ci_upper",
        "df",
    ]
    assert list(frame.index) == ["a", "b", "c"] and frame.loc["c"].isna().all()
    x = np.array([1.0, 4.5])
    cov = np.asarray(res.cov_params())
    assert frame.loc["b", "mean"] == pytest.approx(x @ np.asarray(res.params), rel=1e-12)
    assert frame.loc["b", "mean_se"] == pytest.approx(np.sqrt(x @ cov @ x), rel=1e-12)
    test = res.t_test((x[None, :], 0.0))
    assert frame.loc["b", "df"] == pytest.approx(float(test.df_denom), rel=1e-10)
    lower, upper = test.conf_int(alpha=0.1)[0]
    assert (frame.loc["b", "mean_ci_lower"], frame.loc["b", "mean_ci_upper"]) == (
        pytest.approx(lower, rel=1e-10),
        pytest.approx(upper, rel=1e-10),
    )
    # a new observation adds the random effects' and the residual variance
    z = np.array([1.0, 4.5])
    var_obs = x @ cov @ x + z @ res.term_covariance(0) @ z + res.scale
    half = (frame.loc["b", "obs_ci_upper"] - frame.loc["b", "obs_ci_lower"]) / 2
    assert half == pytest.approx(1.6448536269514722 * np.sqrt(var_obs), rel=1e-10)


def test_conditional_prediction_errors_are_those_of_the_mixed_model_equations(res):
    model = res.model
    X = np.asarray(model.exog)
    ZL = scaled_z(model.random_terms, res.theta, model.theta_slices).toarray()
    system = np.block([[X.T @ X, X.T @ ZL], [ZL.T @ X, ZL.T @ ZL + np.eye(ZL.shape[1])]])
    rows = np.hstack([X, ZL])
    expected = np.sqrt(res.scale * np.einsum("ij,jk,ik->i", rows, np.linalg.inv(system), rows))
    pred = res.get_prediction(conditional=True)
    np.testing.assert_allclose(pred.se_mean, expected, rtol=1e-9)
    np.testing.assert_allclose(pred.predicted_mean, res.fittedvalues, rtol=1e-12)
    assert np.all(np.isinf(pred.df))


def test_conditional_prediction_of_a_new_level_adds_its_variance(res):
    new = pd.DataFrame({"Subject": ["999"], "Days": [3.0]})
    with pytest.raises(sml.DataError, match="not seen in fitting"):
        res.get_prediction(new, conditional=True)
    pred = res.get_prediction(new, conditional=True, allow_new_levels=True)
    marginal = res.get_prediction(new)
    z = np.array([1.0, 3.0])
    expected = np.sqrt(marginal.se_mean[0] ** 2 + z @ res.term_covariance(0) @ z)
    assert pred.se_mean[0] == pytest.approx(expected, rel=1e-10)


def test_predict_returns_a_series_for_new_data(res, sleep):
    new = sleep.iloc[[3, 40]]
    out = res.predict(new)
    assert isinstance(out, pd.Series) and list(out.index) == [3, 40]
    np.testing.assert_allclose(out, np.asarray(res.fittedvalues)[[3, 40]], rtol=1e-12)
    assert isinstance(res.predict(), np.ndarray)


# -- printing -------------------------------------------------------------------


def test_print_and_repr(res):
    text = str(res)
    for item in [
        "Linear mixed model fit by REML",
        "Formula: Reaction ~ Days + (Days | Subject)",
        "Data: sleepstudy (180 observations)",
        "REML criterion at convergence: 1743.6",
        "Number of obs: 180, groups: Subject, 18",
        "Fixed Effects:",
    ]:
        assert item in text
    assert repr(res).startswith("<LmerResults (REML) Reaction ~ Days + (Days | Subject); 180 obs")


def test_summary_prints_like_lme4(res):
    text = res.summary().as_text()
    assert "\nREML criterion at convergence: 1743.6\n" in text
    fixed = text[text.index("Fixed effects:") :]
    assert "< 2e-16" in fixed and "3.26e-06" in fixed


def test_summary2_tables_are_numeric(res):
    tables = res.summary2().tables
    fixed, variances = tables[1], tables[2]
    assert fixed.loc["Days", "Estimate"] == pytest.approx(res.params["Days"])
    assert fixed["Pr(>|t|)"].dtype == float
    assert variances.loc["Subject Days Var", "Var/Cov"] == pytest.approx(
        res.term_covariance(0)[1, 1]
    )
    assert variances.loc["Residual Var", "SD/Corr"] == pytest.approx(res.sigma)


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e-20, "< 2e-16"), (3.2641e-06, "3.26e-06"), (0.01234, "0.0123"), (0.766, "0.766")],
)
def test_pvalues_print_as_r(value, text):
    assert format_pvalue(value) == text


# -- anova ----------------------------------------------------------------------


def test_anova_prints_the_refit_note_and_models(res, sleep):
    small = sml.lmer("Reaction ~ Days + (1 | Subject)", sleep)
    table = sml.anova(small, res)
    text = repr(table)
    assert text.startswith("refitting model(s) with ML (instead of REML)\nData: sleepstudy")
    assert "model_1: Reaction ~ Days + (1 | Subject)" in text
    assert table.attrs["refit_ml"] is True
    assert table.loc["model_2", "llf"] == pytest.approx(res.refit_ml().llf, rel=1e-10)


def test_anova_without_refit_compares_reml_fits(res, sleep):
    small = sml.lmer("Reaction ~ Days + (1 | Subject)", sleep)
    table = sml.anova(small, res, refit=False)
    assert table.attrs["refit_ml"] is False
    assert "refitting" not in repr(table)
    np.testing.assert_allclose(table["llf"], [small.llf, res.llf], rtol=1e-12)
    assert table.loc["model_2", "chisq"] == pytest.approx(2 * (res.llf - small.llf), rel=1e-10)
    other_fixed = sml.lmer("Reaction ~ 1 + (Days | Subject)", sleep)
    with pytest.warns(UserWarning, match="not comparable"):
        sml.anova(other_fixed, res, refit=False)
    with pytest.raises(ValueError, match="some fits are REML"):
        sml.anova(res.refit_ml(), small, refit=False)


def test_anova_of_one_model_is_its_type3_table(res):
    table = sml.anova(res)
    assert repr(table).startswith("Type III Analysis of Variance Table with Satterthwaite's method")
    assert table.loc["Days", "pvalue"] == pytest.approx(float(res.pvalues["Days"]), rel=1e-8)


def test_single_term_deletion_tables_print_the_r_headings(res):
    """lmerTest's ranova/drop1 and lme4's drop1 print a title and the model's formula
    above the table (ours printed bare DataFrames)."""
    formula = "Reaction ~ Days + (Days | Subject)"
    expected = {
        "ANOVA-like table for random-effects: Single term deletions": res.ranova(),
        "Single term deletions using Satterthwaite's method:": res.drop1(),
        "Single term deletions using Kenward-Roger's method:": res.drop1(ddf="kenward-roger"),
        "Single term deletions": res.drop1(test="Chisq"),
    }
    for title, table in expected.items():
        assert repr(table).splitlines()[:4] == [title, "", "Model:", formula]
    ranova = expected["ANOVA-like table for random-effects: Single term deletions"]
    assert "4.99e-10" in repr(ranova)  # lmerTest: 4.99e-10
    assert ranova.loc["Days in (Days | Subject)", "LRT"] == pytest.approx(42.837, abs=1e-3)


def test_a_grouping_factor_named_residual_keeps_its_own_rows(sleep):
    """lme4 prints the residual row under its own "Residual" label; a grouping column named
    Residual merged with it (no label on the residual row, or "Residual Var" twice)."""
    res = sml.lmer(
        "Reaction ~ Days + (Days | Residual)", sleep.rename(columns={"Subject": "Residual"})
    )
    table = random_effects_table(res)
    assert list(table["Groups"]) == ["Residual", "", "Residual"]
    assert list(table["Name"]) == ["Intercept", "Days", ""]
    variances = res.summary2().tables[2]
    assert list(variances.index) == [
        "Residual Intercept Var",
        "Residual Days Var",
        "Residual Intercept x Days Cov",
        "Residual Var",
    ]
    assert variances.loc["Residual Var", "SD/Corr"] == pytest.approx(res.sigma)


def test_data_name_only_when_known(sleep):
    plain = pd.DataFrame(sleep.to_dict("list"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("Reaction ~ Days + (1 | Subject)", plain)
    assert "   Data: 180 observations" in res.summary().as_text()


def test_summary_keeps_four_significant_digits_of_small_numbers(sleep):
    """lmerTest prints an SE of 0.002158 where we printed 0.0022, and a variance of 2.6e-05
    as 0.0000; p > 12 gets lme4's "not shown" note."""
    data = sleep.assign(hours=sleep["Days"] * 24.0 * 60)  # minutes: a small slope
    res = sml.lmer("Reaction ~ hours + (1 | Subject)", data)
    text = res.summary().as_text()
    se = float(res.bse["hours"])
    assert 1e-4 < se < 1e-2 and f"{se:.{3 - int(np.floor(np.log10(se)))}f}" in text
    cake = sml.lmer(
        "angle ~ recipe * temperature + (1 | recipe:replicate)", sml.datasets.load("cake")
    )
    assert "Correlation matrix not shown by default, as p = 18 > 12" in cake.summary().as_text()
