"""Satterthwaite df, contrasts, ANOVA tables, drop1, ranova and LRTs against
lmerTest 3.1.3 (tests/fixtures/lmertest_inference.json, from
make_inference_fixtures.R).

Models are evaluated at lme4's own theta (``results_at``) so that the
comparison measures the method, not optimizer noise. Tolerances: Satterthwaite
df 1e-3 relative as the issue asks (we measure ~1e-7; the worst is 1.5e-5 on
the non-converged cake_temp_reml fit, whose Hessian is ill-conditioned),
F/t statistics and sums of squares 1e-6, LRT chi-square 1e-6.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES, core_cases, patsy_name

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import SingularFitWarning


@cache
def inference_fixture() -> dict:
    return json.loads((FIXTURES / "lmertest_inference.json").read_text())


MODELS = sorted(inference_fixture()["models"])


def model_data(case: dict) -> pd.DataFrame:
    data = sml.datasets.load(case["dataset"])
    if case["name"] == "sleepstudy_factor":
        # grp = 'even' if int(Subject) is even else 'odd' (derived_columns in the fixture)
        parity = np.where(data["Subject"].astype(str).astype(int) % 2 == 0, "even", "odd")
        data = data.assign(grp=pd.Categorical(parity, categories=["even", "odd"]))
    return data


@cache
def at_lme4_theta(name: str):
    case = inference_fixture()["models"][name]
    data = model_data(case)
    model = sml.Lmer.from_formula(case["formula"], data)
    return case, data, model.results_at(case["theta"], reml=case["REML"])


def column_order(case: dict, data: pd.DataFrame, res) -> list[int]:
    """Position of each R coefficient in our params."""
    ours = list(res.params.index)
    return [ours.index(patsy_name(n, data)) for n in case["fixef_names"]]


def as_ours(L_r: list, order: list[int], p: int) -> np.ndarray:
    L_r = np.atleast_2d(np.asarray(L_r, dtype=float))
    L = np.zeros((L_r.shape[0], p))
    L[:, order] = L_r
    return L


@pytest.mark.parametrize("name", MODELS)
def test_coefficient_table_satterthwaite(name):
    case, data, res = at_lme4_theta(name)
    table = res.coef_table()
    for row in case["satterthwaite"]:
        ours = table.loc[patsy_name(row["term"], data)]
        assert ours["df"] == pytest.approx(row["df"], rel=1e-3)
        assert ours["t"] == pytest.approx(row["t"], rel=1e-6)
        assert ours["std_err"] == pytest.approx(row["se"], rel=1e-6)
        assert ours["pvalue"] == pytest.approx(row["p"], rel=1e-3)
        assert res.ddf[patsy_name(row["term"], data)] == ours["df"]


@pytest.mark.parametrize("name", MODELS)
def test_coefficient_table_kenward_roger(name):
    case, data, res = at_lme4_theta(name)
    table = res.coef_table(ddf="kenward-roger")
    for row in case["kenward_roger"]:
        ours = table.loc[patsy_name(row["term"], data)]
        assert ours["df"] == pytest.approx(row["df"], rel=1e-4)
        assert ours["t"] == pytest.approx(row["t"], rel=1e-6)
        assert ours["std_err"] == pytest.approx(row["se"], rel=1e-6)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kind", [3, 1])
def test_anova_tables_kenward_roger(name, kind):
    case, _, res = at_lme4_theta(name)
    _compare_f_table(res.anova(type=kind, ddf="kenward-roger"), case[f"anova{kind}_kr"])


@pytest.mark.parametrize("name", MODELS)
def test_contrasts_kenward_roger_through_statsmodels_api(name):
    case, data, res = at_lme4_theta(name)
    order = column_order(case, data, res)
    for contrast in case["contrasts"]:
        L = as_ours(contrast["L"], order, len(order))
        if L.shape[0] == 1:
            ref = contrast["contest1D_kr"]
            test = res.t_test(L, ddf="kenward-roger")
            assert test.df_denom == pytest.approx(ref["df"], rel=1e-4)
            assert float(test.tvalue[0, 0]) == pytest.approx(ref["t"], rel=1e-6)
        ref = contrast["contestMD_kr"]
        ftest = res.f_test(L, ddf="kenward-roger")
        assert float(ftest.df_denom) == pytest.approx(ref["DenDF"], rel=1e-4)
        assert float(ftest.fvalue) == pytest.approx(ref["F"], rel=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_contrasts_satterthwaite(name):
    case, data, res = at_lme4_theta(name)
    order = column_order(case, data, res)
    p = len(order)
    for contrast in case["contrasts"]:
        L = as_ours(contrast["L"], order, p)
        if L.shape[0] == 1:
            ref = contrast["contest1D_satterthwaite"]
            test = res.t_test(L)
            assert test.df_denom == pytest.approx(ref["df"], rel=1e-3), contrast["name"]
            assert float(test.tvalue[0, 0]) == pytest.approx(ref["t"], rel=1e-6)
            assert float(test.sd[0, 0]) == pytest.approx(ref["se"], rel=1e-6)
        ref = contrast["contestMD_satterthwaite"]
        ftest = res.f_test(L)
        assert ftest.df_num == ref["NumDF"]
        assert float(ftest.df_denom) == pytest.approx(ref["DenDF"], rel=1e-3), contrast["name"]
        assert float(ftest.fvalue) == pytest.approx(ref["F"], rel=1e-6)


def _compare_f_table(ours: pd.DataFrame, reference: list[dict]) -> None:
    assert len(ours) == len(reference)
    for row in reference:
        mine = ours.loc[row["term"]]
        assert mine["NumDF"] == row["NumDF"]
        assert mine["DenDF"] == pytest.approx(row["DenDF"], rel=1e-3), row["term"]
        assert mine["F"] == pytest.approx(row["F"], rel=1e-6), row["term"]
        assert mine["SumSq"] == pytest.approx(row["SumSq"], rel=1e-6)
        assert mine["MeanSq"] == pytest.approx(row["MeanSq"], rel=1e-6)
        assert mine["pvalue"] == pytest.approx(row["p"], rel=1e-3)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kind", [3, 1])
def test_anova_tables_satterthwaite(name, kind):
    case, _, res = at_lme4_theta(name)
    reference = case[f"anova{kind}_satterthwaite"]
    _compare_f_table(res.anova(type=kind), reference)


@pytest.mark.parametrize("name", MODELS)
def test_drop1_f_tests(name):
    case, _, res = at_lme4_theta(name)
    _compare_f_table(res.drop1(), case["drop1"])


@pytest.mark.parametrize(
    "name", ["sleepstudy_reml", "penicillin_reml", "pastes_nested", "cake_reml"]
)
def test_ranova(name):
    case, _, _ = at_lme4_theta(name)
    res = sml.lmer(case["formula"], model_data(case), REML=case["REML"])
    table = res.ranova()
    assert list(table.index) == [row["term"] for row in case["ranova"]]
    for row in case["ranova"]:
        mine = table.loc[row["term"]]
        assert mine["npar"] == row["npar"]
        assert mine["llf"] == pytest.approx(row["logLik"], rel=1e-7)
        if row["LRT"] is not None:
            assert mine["LRT"] == pytest.approx(row["LRT"], rel=1e-5, abs=1e-6)
            assert mine["df"] == row["Df"]


def test_ranova_without_reducing_terms_as_lmertest():
    """lmerTest's ``ranova(m, reduce.terms = FALSE)`` removes each term as a whole
    (log-likelihoods from lmerTest 3.1-3; g takes the row number modulo 4)."""
    data = sml.datasets.load("sleepstudy")
    data["g"] = (np.arange(len(data)) % 4).astype(str)
    with pytest.warns(SingularFitWarning):
        res = sml.lmer("Reaction ~ Days + (Days | Subject) + (1 | g)", data)
    table = res.ranova(reduce_terms=False)
    assert list(table.index) == ["<none>", "(Days | Subject)", "(1 | g)"]
    assert table["npar"].tolist() == [7, 4, 6]
    np.testing.assert_allclose(
        table["llf"], [-871.814135979, -946.831831736, -871.814135980], rtol=1e-9
    )
    assert table.loc["(Days | Subject)", "df"] == 3
    assert table.loc["(Days | Subject)", "LRT"] == pytest.approx(150.035391513, rel=1e-7)
    assert res.ranova().index[1] == "Days in (Days | Subject)"  # the default reduces


@pytest.mark.parametrize("comparison", sorted(inference_fixture()["lrt"]))
def test_likelihood_ratio_tables(comparison):
    spec = inference_fixture()["lrt"][comparison]
    data = sml.datasets.load(spec["dataset"])
    m0 = sml.lmer(spec["m0"], data, REML=spec["fitted_REML"])
    m1 = sml.lmer(spec["m1"], data, REML=spec["fitted_REML"])
    table = sml.anova(m1, m0, names=["m1", "m0"])
    assert list(table.index) == ["m0", "m1"]
    assert table.attrs["refit_ml"] == spec["refit_ml"]
    for row in spec["table"]:
        mine = table.loc[row["model"]]
        assert mine["npar"] == row["npar"]
        assert mine["llf"] == pytest.approx(row["logLik"], rel=1e-8)
        assert mine["AIC"] == pytest.approx(row["AIC"], rel=1e-8)
        assert mine["BIC"] == pytest.approx(row["BIC"], rel=1e-8)
        assert mine["deviance"] == pytest.approx(row["deviance"], rel=1e-8)
        if row["Chisq"] is not None:
            assert mine["chisq"] == pytest.approx(row["Chisq"], rel=1e-6)
            assert mine["df"] == row["Df"]
            assert mine["pvalue"] == pytest.approx(row["Pr(>Chisq)"], rel=1e-5)


def test_anova_refuses_models_on_different_data():
    data = sml.datasets.load("sleepstudy")
    full = sml.lmer("Reaction ~ Days + (Days | Subject)", data)
    subset = sml.lmer("Reaction ~ Days + (1 | Subject)", data, subset=data["Days"] < 8)
    with pytest.raises(sml.DataError, match="same data"):
        sml.anova(full, subset)
    # one model: its type III table, as lmerTest's anova(m)
    pd.testing.assert_frame_equal(pd.DataFrame(sml.anova(full)), pd.DataFrame(full.anova()))
    with pytest.raises(ValueError, match="needs one fitted model"):
        sml.anova()


def test_drop1_likelihood_ratio():
    data = sml.datasets.load("sleepstudy")
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", data)
    table = res.drop1(test="Chisq")
    spec = inference_fixture()["lrt"]["sleepstudy_fixed_days"]["table"][1]
    assert table.loc["Days", "LRT"] == pytest.approx(spec["Chisq"], rel=1e-6)
    assert table.loc["Days", "df"] == 1


def test_summary_reports_satterthwaite():
    model = sml.Lmer.from_formula(
        "Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy")
    )
    # lmerTest's df are those at lme4's (default-tolerance) theta
    text = model.results_at(core_cases()["sleepstudy_reml"]["theta"]).summary().as_text()
    assert "Satterthwaite's method" in text
    assert "16.9997" in text  # intercept df, lmerTest 16.99973


def test_type3_keeps_a_treatment_reference_level():
    """C(f, Treatment(reference="b")) is R's relevel(f, "b"), which lmerTest's remade
    design keeps; recoding it to the first level moved the DenDF of the type III row by
    2e-5 relative (227.02622 against lmerTest's 227.03146 in the probe's data)."""
    data = sml.datasets.load("sleepstudy")
    rng = np.random.default_rng(7)  # unbalanced: with balanced cells the bases agree
    data = data.assign(f=rng.choice(["a", "b", "c"], size=len(data), p=[0.5, 0.3, 0.2]))
    releveled = data.assign(f=pd.Categorical(data["f"], categories=["b", "a", "c"]))
    coded = sml.lmer("Reaction ~ C(f, Treatment(reference='b')) + Days + (Days | Subject)", data)
    plain = sml.lmer("Reaction ~ f + Days + (Days | Subject)", releveled)
    for kind in (1, 2, 3):
        first, second = coded.anova(type=kind), plain.anova(type=kind)
        np.testing.assert_allclose(first.to_numpy(float), second.to_numpy(float), rtol=1e-7)


@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger", "residual"])
def test_an_all_zero_contrast_row_is_the_same_for_every_df_method(ddf):
    """lmerTest's contest1D gives an all-zero row NaN df and p; with Kenward-Roger t_test
    raised a ValueError from the inside instead. f_test of all-zero rows gave F = NaN
    with df_num 0 and no word: it is refused."""
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    frame = res.t_test(np.array([[0.0, 1.0], [0.0, 0.0]]), ddf=ddf).summary_frame()
    assert frame["coef"].iloc[1] == 0 and np.isnan(frame["df"].iloc[1])
    assert np.isnan(frame["P>|t|"].iloc[1])
    assert frame["t"].iloc[0] == pytest.approx(res.tvalues["Days"], rel=1e-9)
    with pytest.raises(ValueError, match="every row of the contrast matrix is zero"):
        res.f_test(np.zeros((2, 2)), ddf=ddf)
    shifted = res.t_test((np.zeros((1, 2)), np.array([5.0])), ddf=ddf).summary_frame()
    assert np.isnan(shifted["t"].iloc[0])  # was -inf
    with pytest.raises(ValueError, match="'0 = 5' holds for no coefficients"):
        res.f_test((np.array([[0.0, 1.0], [0.0, 0.0]]), np.array([0.0, 5.0])), ddf=ddf)


def test_pbmodcomp_names_the_update_formula_for_a_term():
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    with pytest.raises(sml.exceptions.FormulaError, match=r"e\.g\. '\. ~ \. - Days'"):
        res.pbmodcomp("Days", nsim=2)


def test_ddf_takes_a_unique_start_of_a_name_as_lmertest():
    """lmerTest's match.arg takes ddf = "Sat" or "Kenward"; "Sat" was refused here."""
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    for start, full in (
        ("Sat", "satterthwaite"),
        ("Kenward", "kenward-roger"),
        ("res", "residual"),
    ):
        pd.testing.assert_frame_equal(res.coef_table(ddf=start), res.coef_table(ddf=full))
    assert list(res.anova(ddf="lme").columns) == ["npar", "SumSq", "MeanSq", "F"]
    with pytest.raises(ValueError, match="ddf must be one of"):
        res.coef_table(ddf="satx")


def test_model_pair_tests_as_pbkrtest():
    """pbkrtest's KRmodcomp(large, small) and SATmodcomp(large, small): the restriction
    the small model's fixed part makes, tested in the large fit (pbkrtest 0.5.2 at lme4's
    theta). Only f_test with a hand-made matrix did this."""
    data = sml.datasets.load("sleepstudy")
    large = sml.Lmer.from_formula("Reaction ~ Days + I(Days**2) + (Days | Subject)", data)
    large = large.results_at([0.969750490836556, 0.014934312704956, 0.231571844990316])
    small = sml.lmer("Reaction ~ 1 + (Days | Subject)", data)
    kr = sml.krmodcomp(large, small)
    assert (kr.fvalue, kr.df_num) == (pytest.approx(23.3645180805, rel=1e-9), 2)
    assert kr.df_denom == pytest.approx(39.8170424428, rel=1e-8)
    assert kr.pvalue == pytest.approx(1.93765624842e-07, rel=1e-7)
    sat = large.satmodcomp(small)
    assert sat.fvalue == pytest.approx(23.7543535019, rel=1e-9)
    assert sat.df_denom == pytest.approx(51.563034459, rel=1e-7)  # lmerTest: numDeriv Hessian
    by_formula = large.krmodcomp(". ~ . - Days - I(Days**2)")
    assert by_formula.df_denom == pytest.approx(kr.df_denom, rel=1e-12)
    other = sml.lmer("Reaction ~ I(Days**3) + (Days | Subject)", data)
    with pytest.raises(ValueError, match="not nested"):
        sml.krmodcomp(large, other)
    with pytest.raises(ValueError, match="the same fixed effects"):
        sml.satmodcomp(large, large)


def test_drop1_scope_tests_the_named_marginal_terms():
    """lme4's and lmerTest's drop1(m, scope = ...); the rows are those of the full table."""
    cake = sml.datasets.load("cake")
    cake = cake.assign(rep=cake["replicate"].astype(float))
    res = sml.lmer("angle ~ recipe * temp + rep + (1 | recipe:replicate)", cake)
    full = res.drop1()
    for scope in ("~ rep", ["rep"], "rep"):
        pd.testing.assert_frame_equal(res.drop1(scope=scope), full.loc[["rep"]])
    chisq = res.drop1(test="Chisq", scope="~ temp:recipe")  # either order of the variables
    assert list(chisq.index) == ["<none>", "recipe:temp"]
    assert chisq.loc["recipe:temp", "LRT"] == pytest.approx(
        res.drop1(test="Chisq").loc["recipe:temp", "LRT"], rel=1e-12
    )
    with pytest.raises(ValueError, match="'temp' is contained in another term"):
        res.drop1(scope="~ temp")
    with pytest.raises(ValueError, match="'nothing' is not a fixed-effect term"):
        res.drop1(scope=["nothing"])


def test_model_pair_tests_with_a_time_stamp_ml_fits_and_either_order():
    """The small model's columns were not scaled before their rank was taken: with a time
    stamp t = 1.7e9 + 1e4 N(0, 1) in both models its rank came out 1, and an 'Intercept =
    0' row joined the restriction (krmodcomp F 122.7 on 3 df instead of 0.859 on 2, the
    f_test of f). As pbkrtest, ML fits are refitted by REML and either order works."""
    rng = np.random.default_rng(8)
    n, groups = 300, rng.integers(0, 20, 300)
    t = 1.7e9 + 1e4 * rng.normal(size=n)
    f = rng.choice(list("abc"), n)
    y = 1e-4 * (t - 1.7e9) + rng.normal(size=20)[groups] + rng.normal(size=n)
    data = pd.DataFrame({"y": y, "t": t, "f": f, "g": groups.astype(str)})
    large = sml.lmer("y ~ t + f + (1 | g)", data)
    small = sml.lmer("y ~ t + (1 | g)", data)
    direct = large.f_test("f[T.b] = 0, f[T.c] = 0", ddf="kenward-roger")
    kr = sml.krmodcomp(small, large)  # either order
    assert (kr.df_num, kr.fvalue) == (2, pytest.approx(direct.fvalue, rel=1e-8))
    assert kr.df_denom == pytest.approx(direct.df_denom, rel=1e-8)
    ml_large, ml_small = large.update(REML=False), small.update(REML=False)
    sat = sml.satmodcomp(ml_large, ml_small)
    assert sat.fvalue == pytest.approx(large.satmodcomp(small).fvalue, rel=1e-6)
