"""Results inside statsmodels: classes, tests, intervals, summary, pickling."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import core_cases
from scipy import stats
from statsmodels.base.model import LikelihoodModel, LikelihoodModelResults

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import DataError


@pytest.fixture(scope="module")
def res():
    return sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))


def test_statsmodels_classes(res):
    assert isinstance(res.model, LikelihoodModel)
    assert isinstance(res._results, LikelihoodModelResults)
    assert isinstance(res.params, pd.Series)
    assert list(res.params.index) == ["Intercept", "Days"]


def test_one_call_and_model_fit_agree():
    data = sml.datasets.load("sleepstudy")
    a = sml.lmer("Reaction ~ Days + (Days | Subject)", data, REML=False)
    b = sml.Lmer.from_formula("Reaction ~ Days + (Days | Subject)", data).fit(reml=False)
    np.testing.assert_array_equal(a.params, b.params)
    assert not a.reml


def test_t_test_df_is_the_coefficient_satterthwaite_df(res):
    case = core_cases()["sleepstudy_reml"]["tight"]
    test = res.t_test("Days = 10")
    assert float(test.effect[0]) == pytest.approx(case["fixef"]["Days"], rel=1e-6)
    assert float(test.sd[0, 0]) == pytest.approx(case["se"]["Days"], rel=1e-5)
    assert test.df_denom == res.ddf["Days"]
    assert test.df_denom == pytest.approx(17.0, abs=1e-3)  # lmerTest: 16.99998
    t = (case["fixef"]["Days"] - 10) / case["se"]["Days"]
    assert float(test.tvalue[0, 0]) == pytest.approx(t, rel=1e-4)
    assert float(test.pvalue) == pytest.approx(2 * stats.t.sf(abs(t), res.ddf["Days"]), rel=1e-4)


def test_residual_ddf_on_request(res):
    assert res.t_test("Days = 10", ddf="residual").df_denom == 178
    assert res.f_test("Days = 0, Intercept = 250", ddf="residual").df_denom == 178
    with pytest.raises(ValueError, match="ddf must be one of"):
        res.t_test("Days = 0", ddf="containment")


def test_f_and_wald_tests(res):
    f = res.f_test("Days = 0, Intercept = 250")
    assert f.df_num == 2
    w = res.wald_test("Days = 0", scalar=True)
    assert float(w.statistic) == pytest.approx(float(res.tvalues["Days"]) ** 2, rel=1e-10)
    assert w.df_denom == pytest.approx(res.ddf["Days"])
    R = np.array([[0.0, 1.0]])
    assert float(res.f_test(R).fvalue) == pytest.approx(float(w.statistic), rel=1e-10)
    chi2 = res.wald_test("Days = 0", use_f=False, scalar=True)
    assert chi2.distribution == "chi2"
    terms = res.wald_test_terms().table
    assert terms.loc["Days", "df_denom"] == pytest.approx(res.ddf["Days"])


def test_conf_int_uses_satterthwaite_t_quantiles(res):
    ci = res.conf_int(0.05)
    q = stats.t.ppf(0.975, res.ddf["Days"])
    expected = res.params["Days"] + np.array([-1, 1]) * q * res.bse["Days"]
    np.testing.assert_allclose(ci.loc["Days"], expected, rtol=1e-12)
    assert list(ci.index) == ["Intercept", "Days"]


def test_conf_int_cols_selects_labelled_rows(res):
    # statsmodels' wrapper labelled any result with every name and failed on ``cols``
    full = res.conf_int(0.1)
    picked = res.conf_int(0.1, cols=[1])
    assert list(picked.index) == [full.index[1]]
    np.testing.assert_array_equal(picked.to_numpy(), full.iloc[[1]].to_numpy())
    np.testing.assert_array_equal(res._results.conf_int(0.1, cols=[1]), picked.to_numpy())


def test_cov_params_selections_on_the_wrapped_results(res):
    # statsmodels' wrapper labelled any result with every name and failed here
    full = res.cov_params()
    assert list(full.index) == list(full.columns) == ["Intercept", "Days"]
    picked = res.cov_params(column=[1])
    assert list(picked.index) == ["Days"]
    assert picked.iloc[0, 0] == full.loc["Days", "Days"]
    assert res.cov_params(column=1) == full.loc["Days", "Days"]
    contrast = np.array([[1.0, 10.0]])
    np.testing.assert_allclose(
        res.cov_params(r_matrix=contrast), contrast @ full.to_numpy() @ contrast.T, rtol=1e-12
    )


def test_fixed_effect_covariance_is_sigma2_rx_inverse(res):
    case = core_cases()["sleepstudy_reml"]["tight"]
    assert res.cov_params().loc["Days", "Days"] == pytest.approx(case["se"]["Days"] ** 2, rel=2e-5)
    assert res.scale == pytest.approx(res.sigma**2)


def test_pickle_round_trip(res):
    loaded = pickle.loads(pickle.dumps(res))
    pd.testing.assert_series_equal(loaded.params, res.params)
    assert loaded.llf == res.llf
    np.testing.assert_array_equal(loaded.theta, res.theta)
    assert loaded.t_test("Days = 10").df_denom == res.t_test("Days = 10").df_denom
    assert loaded.summary().as_text() == res.summary().as_text()
    pd.testing.assert_frame_equal(loaded.ranef_table(), res.ranef_table())


@pytest.mark.parametrize(
    ("formula", "dataset"),
    [
        ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
        ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    ],
)
def test_pickle_stays_small_after_post_fit_work(formula, dataset):
    fit = sml.lmer(formula, sml.datasets.load(dataset))
    fresh = len(pickle.dumps(fit))
    fit.summary()
    fit.anova()
    fit.confint()
    fit.coef_table(ddf="kenward-roger")
    fit.ranef_table()
    fit.predict()
    fit.icc()
    used = len(pickle.dumps(fit))
    assert used <= 1.10 * fresh, (fresh, used)
    loaded = pickle.loads(pickle.dumps(fit))
    np.testing.assert_array_equal(loaded.fittedvalues, fit.fittedvalues)
    pd.testing.assert_frame_equal(loaded.varcorr, fit.varcorr)


def test_summary_sections_in_lme4_order(res):
    # lme4's printed numbers are those at its own (default-tolerance) theta
    at_lme4 = res.model.results_at(core_cases()["sleepstudy_reml"]["theta"])
    text = at_lme4.summary().as_text()
    order = [
        "Linear mixed model fit by REML",
        "Formula: Reaction ~ Days + (Days | Subject)",
        "REML criterion at convergence: 1743.6",
        "Scaled residuals:",
        "Random effects:",
        "Number of obs: 180, groups: Subject, 18",
        "Fixed effects:",
        "Correlation of fixed effects:",
        "Satterthwaite's method",
    ]
    positions = [text.index(item) for item in order]
    assert positions == sorted(positions)
    assert "612.1" in text and "24.74" in text  # Subject intercept variance and SD
    html = res.summary().as_html()
    assert "<table" in html and "Random effects:" in html
    latex = res.summary().as_latex()
    assert "\\begin{tabular}" in latex


def test_ml_summary_shows_information_criteria():
    res = sml.lmer("Yield ~ 1 + (1 | Batch)", sml.datasets.load("Dyestuff"), REML=False)
    text = res.summary().as_text()
    assert "AIC" in text and "logLik" in text and "-163.6635" in text


def test_ranef_coef_and_lambda(res):
    ranef = res.ranef["Subject"]
    assert list(ranef.columns) == ["Intercept", "Days"]
    assert ranef.shape == (18, 2)
    coef = res.coef()["Subject"]
    np.testing.assert_allclose(coef["Days"], res.params["Days"] + ranef["Days"])
    assert res.Lambda.shape == (36, 36)
    T = res.Lambda.toarray()[:2, :2]
    np.testing.assert_allclose(T, [[res.theta[0], 0.0], [res.theta[1], res.theta[2]]])


def test_uncorrelated_terms_share_one_ranef_frame():
    res = sml.lmer("Reaction ~ Days + (Days || Subject)", sml.datasets.load("sleepstudy"))
    assert list(res.ranef) == ["Subject"]
    assert list(res.ranef["Subject"].columns) == ["Intercept", "Days"]
    assert list(res.varcorr["grp"]) == ["Subject", "Subject.1", "Residual"]


def test_residuals(res):
    np.testing.assert_allclose(res.resid + res.fittedvalues, res.model.endog)
    scaled = res.residuals(type="pearson", scaled=True)
    np.testing.assert_allclose(scaled, res.resid / res.sigma)
    with pytest.raises(ValueError, match="type must be"):
        res.residuals(type="deviance")


def test_fit_keywords(res):
    model = res.model
    again = model.fit(method="nelder-mead", start_theta=res.theta, maxiter=2000)
    assert again.objective == pytest.approx(res.objective, rel=1e-9)
    with pytest.raises(ValueError, match="theta must have 3 values"):
        model.fit(start_theta=[1.0])
    with pytest.raises(ValueError, match="unknown optimizer"):
        model.fit(method="newton")
    with pytest.raises(TypeError, match="unexpected keyword argument 'reml_typo'"):
        model.fit(reml_typo=True)


def test_optinfo_records_the_optimizer(res):
    info = res.optinfo
    assert info["feval"] > 10
    assert info["optimizer"] in sml.available_optimizers()
    assert res.converged


def test_marginal_fitted_values_and_residuals(res):
    X = np.asarray(res.model.exog)
    np.testing.assert_allclose(res.fittedvalues_marginal, X @ res.params.to_numpy())
    marginal = res.residuals(marginal=True)
    np.testing.assert_allclose(marginal, res.model.endog - X @ res.params.to_numpy())
    np.testing.assert_allclose(res.predict(re_formula="0"), res.fittedvalues_marginal)
    # conditional residuals are smaller: the random effects absorb subject differences
    assert np.std(res.resid) < np.std(marginal)


def test_summary_ddf_kenward_roger_as_lmertest(res):
    # lmerTest's summary(m, ddf = "Kenward-Roger"): KR's df and adjusted SEs
    # (coef_table is checked against pbkrtest in test_kenward_roger.py)
    kr = res.coef_table("kenward-roger")
    table = res.summary2(alpha=0.1, ddf="Kenward-Roger").tables[1]
    np.testing.assert_allclose(table["Std. Error"], kr["std_err"], rtol=1e-12)
    np.testing.assert_allclose(table["df"], kr["df"], rtol=1e-12)
    np.testing.assert_allclose(table["Pr(>|t|)"], kr["pvalue"], rtol=1e-12)
    half = stats.t.ppf(0.95, kr["df"]) * kr["std_err"]
    np.testing.assert_allclose(table["[0.05"], kr["coef"] - half, rtol=1e-12)
    assert "Kenward-Roger" in res.summary(ddf="kr").as_text()
    default = res.summary2().tables[1]
    np.testing.assert_allclose(default["df"], res.ddf, rtol=1e-12)
    np.testing.assert_allclose(default[["[0.025", "0.975]"]], res.conf_int(), rtol=1e-12)
    with pytest.raises(ValueError, match="ddf must be one of"):
        res.summary(ddf="lmerTest")
    with pytest.raises(ValueError, match="only available for REML"):
        res.refit_ml().summary(ddf="kenward-roger")


def test_remove_data_keeps_the_summary_and_names_what_needs_rows():
    # statsmodels' remove_data(): the summary failed with numpy's matmul error
    fit = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    params, table = fit.params.copy(), fit.coef_table()
    fit.remove_data()
    text = fit.summary().as_text()
    assert "remove_data() dropped the rows" in text
    assert "Days        10.4673" in text
    pd.testing.assert_frame_equal(fit.coef_table(), table)
    pd.testing.assert_series_equal(fit.params, params)
    with pytest.raises(DataError, match="ANOVA tables need the model's rows"):
        fit.anova()
    with pytest.raises(DataError, match="fitted values and residuals need the model's rows"):
        fit.resid  # noqa: B018


def test_coef_adds_factor_coded_random_effects_to_the_fixed_ones():
    """``score ~ Machine + (0 + Machine | Worker)``: lme4's coef gives worker 1 MachineB
    10.5199 (7.9667 + 2.5532), R naming both columns MachineB; ours kept 7.9667 for every
    worker and put the random part in a column of its own."""
    from conftest import FIXTURES

    data = pd.read_csv(FIXTURES / "data" / "gallery_Machines.csv.gz", dtype={"Worker": str})
    res = sml.lmer("score ~ Machine + (0 + Machine | Worker)", data)
    table = res.coef()["Worker"]
    ranef = res.ranef["Worker"]
    np.testing.assert_allclose(
        table["Machine[T.B]"], res.fixef["Machine[T.B]"] + ranef["Machine[B]"], rtol=1e-12
    )
    np.testing.assert_allclose(table["Machine[A]"], ranef["Machine[A]"], rtol=1e-12)
    # lme4 1.1-31's coef(m)$Worker["1", ]: MachineA 0.3120, MachineB 10.5199, MachineC 14.8470
    np.testing.assert_allclose(
        table.loc["1", ["Machine[A]", "Machine[T.B]", "Machine[T.C]"]],
        [0.3120, 10.5199, 14.8470],
        atol=2e-4,
    )


def test_update_with_new_data_asks_for_the_subset_again():
    """lme4's update(m, data = d2) applies the subset expression to d2 (108 rows of 144,
    REMLcrit 1043.284); ours silently fitted all 144 rows. missing= is carried."""
    data = sml.datasets.load("sleepstudy")
    res = sml.lmer("Reaction ~ Days + (1 | Subject)", data, subset=data["Days"] < 8)
    other = data[data["Subject"].astype(str) != "308"]
    with pytest.raises(DataError, match="fitted with subset=: pass subset= for the new data"):
        res.update(data=other)
    again = res.update(data=other, subset=other["Days"] < 8)
    direct = sml.lmer("Reaction ~ Days + (1 | Subject)", other[other["Days"] < 8])
    assert again.nobs == 136 and again.llf == pytest.approx(direct.llf, rel=1e-10)
    assert res.update(data=other, subset=None).nobs == 170
    strict = sml.lmer("Reaction ~ Days + (1 | Subject)", data, missing="raise")
    holes = other.assign(Days=other["Days"].where(other.index != other.index[0]))
    with pytest.raises(DataError, match="missing values"):
        strict.update(data=holes)


def test_refit_matches_a_series_by_label():
    """A Series of the new response in another order gave REML 1968.88 instead of 1865.21:
    it was taken by position."""
    data = sml.datasets.load("sleepstudy")
    res = sml.lmer("Reaction ~ Days + (1 | Subject)", data)
    y = res.simulate(1, seed=3).iloc[:, 0]
    reference = res.refit(y.to_numpy())
    shuffled = res.refit(y.sample(frac=1.0, random_state=1))
    assert shuffled.reml_criterion == pytest.approx(reference.reml_criterion, rel=1e-12)
    with pytest.raises(DataError, match="index does not match the rows of the fitted rows"):
        res.refit(pd.Series(y.to_numpy(), index=np.arange(len(y)) + 500))


def test_tools_refitting_the_fitted_rows_work_after_subset():
    """influence(method="full") and hausman() refit on the fitted rows with update(data=);
    with update(data=) asking for subset= again they failed on models fitted with one."""
    data = sml.datasets.load("sleepstudy")
    keep = ~((data["Subject"].astype(str) == "308") & (data["Days"] > 6))  # unbalanced
    res = sml.lmer("Reaction ~ Days + (1 | Subject)", data, subset=keep)
    direct = sml.lmer("Reaction ~ Days + (1 | Subject)", data[keep])
    full = res.influence(method="full").frame
    np.testing.assert_allclose(full, direct.influence(method="full").frame, rtol=1e-5)
    assert res.hausman().statistic == pytest.approx(direct.hausman().statistic, rel=1e-6)


def test_results_pickle_after_remove_data():
    """save(remove_data=True) wrote a file that could not be loaded: the solution was
    recomputed on load from the model's arrays, which remove_data() had taken."""
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    expected = (res.params.copy(), res.bse.copy(), res.llf, res.conf_int().copy())
    res.remove_data()
    back = pickle.loads(pickle.dumps(res))
    pd.testing.assert_series_equal(back.params, expected[0])
    pd.testing.assert_series_equal(back.bse, expected[1])
    assert back.llf == expected[2]
    pd.testing.assert_frame_equal(back.conf_int(), expected[3])
    assert "REML criterion" in back.summary().as_text()


def test_model_predict_adds_the_offset_of_its_rows():
    data = sml.datasets.load("sleepstudy").assign(off=lambda d: d["Days"] * 5.0)
    res = sml.lmer("Reaction ~ Days + (1 | Subject)", data, offset="off")
    fixed = res.model.predict(np.asarray(res.params))
    np.testing.assert_allclose(fixed, res.predict(data, re_formula="0"), rtol=1e-12)
    with pytest.raises(NotImplementedError, match="profiled over theta"):
        res.model.score(np.asarray(res.params))


def test_correlations_of_a_term_line_up_in_columns():
    """With three correlated columns the Corr column was one right-aligned string: the
    x row's corr(Intercept, x) stood under the z row's corr(x, z). lme4 starts each
    row's correlations at the left, one column per correlation."""
    data = sml.datasets.load("sleepstudy").assign(d2=lambda d: (d["Days"] - 4.5) ** 2 / 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("Reaction ~ Days + (Days + d2 | Subject)", data)
    text = str(res.summary())
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Random effects:"))
    header, _, days, d2 = lines[start + 1 : start + 5]
    vc = res.varcorr.set_index(["var1", "var2"])["sdcor"]
    first = f"{vc[('Intercept', 'Days')]:6.3f}"
    assert days.rstrip().endswith(first)
    column = days.rstrip().rindex(first)
    assert d2[column : column + 6] == f"{vc[('Intercept', 'd2')]:6.3f}"
    assert d2[column + 7 : column + 13] == f"{vc[('Days', 'd2')]:6.3f}"
    assert header.index("Corr") == column


def test_summary2_prints_small_numbers_and_latex_is_escaped():
    """summary2 printed a coefficient of 1e-05, its SE and p-value as 0.0000; as_latex
    left ~, |, < and _ for LaTeX to misread (and escaped a backslash twice)."""
    data = sml.datasets.load("sleepstudy").assign(us=lambda d: d["Days"] * 1e6)
    res = sml.lmer("Reaction ~ us + (1 | Subject)", data)
    text = res.summary2().as_text()
    row = next(line for line in text.splitlines() if line.startswith("us "))
    assert f"{res.params['us']:.3e}" in row and f"{res.bse['us']:.3e}" in row
    assert isinstance(res.summary2().tables[1].iloc[1, 0], float)  # tables stay numeric
    latex = res.summary().as_latex()
    assert r"Reaction \textasciitilde{} us + (1 \textbar{} Subject)" in latex
    assert r"Pr(\textgreater{}\textbar{}t\textbar{})" in latex
    assert r"statsmodels\_lmer" in latex and "~" not in latex.replace(r"\textasciitilde{}", "")
