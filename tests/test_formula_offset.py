"""lme4's ``offset(...)`` terms in formulas: tests/fixtures/formula_offset.json
(make_formula_offset_fixtures.R, lme4 1.1-31 and lmerTest 3.1-3).

The data (tests/fixtures/data/formula_offset.csv) have 205 rows; lme4 drops 5:
two with a missing ``t``, two with a missing ``x`` and one whose ``log(t)`` is
NaN (``t < 0``). lme4's fits used BOBYQA with ``rhoend = 1e-12``.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import (
    DataError,
    FormulaError,
    ResponseTypeError,
    UnknownColumnError,
    UnsafeFormulaError,
)
from statsmodels_lmer.formula import parse_formula, update_formula

FIXTURE = json.loads((FIXTURES / "formula_offset.json").read_text())
CASES = {case["name"]: case for case in FIXTURE["cases"]}
NEWDATA = pd.DataFrame(FIXTURE["newdata"])


def data() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "data" / "formula_offset.csv")


@cache
def fitted(name: str):
    case = CASES[name]
    keywords = {"offset": "o2"} if case["argument"] else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # np.log(-1.5): NaN, as R warns
        return sml.lmer(case["python"], data(), REML=case["REML"], **keywords)


def _named(values: dict) -> pd.Series:
    return pd.Series(values).rename(index={"(Intercept)": "Intercept"})


@pytest.mark.parametrize("name", sorted(CASES))
def test_fit_as_lme4(name):
    case, res = CASES[name], fitted(name)
    assert res.nobs == case["nobs"] == 200
    assert res.model.n_dropped == 5
    assert res.objective == pytest.approx(case["objective"], rel=1e-7)
    beta, se = _named(case["beta"]), _named(case["se"])
    assert list(res.params.index) == list(beta.index)  # the offsets are no fixed effects
    assert np.all(np.abs(res.params - beta) <= 1e-4 * se)
    assert np.asarray(res.bse) == pytest.approx(se.to_numpy(), rel=1e-5)
    assert res.theta == pytest.approx(case["theta"], abs=1e-5)
    assert res.sigma == pytest.approx(case["sigma"], rel=1e-5)
    assert np.asarray(res.fittedvalues)[:8] == pytest.approx(case["fitted_head"], abs=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_predict_newdata_evaluates_the_offset_terms(name):
    """lme4's predict() evaluates offset(...) on newdata and drops its offset= argument;
    ours adds the keyword's column of newdata as well (documented in docs/formulas.md)."""
    case, res = CASES[name], fitted(name)
    keyword = NEWDATA["o2"].to_numpy() if case["argument"] else 0.0
    conditional = res.predict(NEWDATA, allow_new_levels=True)
    marginal = res.predict(NEWDATA, re_formula=np.nan)
    assert np.asarray(conditional) - keyword == pytest.approx(case["predict_new"], abs=1e-6)
    assert np.asarray(marginal) - keyword == pytest.approx(case["predict_new_pop"], abs=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_anova_and_ranova_as_lmertest(name):
    case, res = CASES[name], fitted(name)
    table = res.anova(type=3, ddf="satterthwaite")
    assert list(table.index) == [row["term"] for row in case["anova"]]
    for row, (_, ours) in zip(case["anova"], table.iterrows()):
        # lmerTest's Satterthwaite df come from a numerical Hessian (measured: 1.5e-7)
        assert ours["F"] == pytest.approx(row["F value"], rel=1e-6)
        assert ours["DenDF"] == pytest.approx(row["DenDF"], rel=1e-6)
    ranova = res.ranova()
    assert list(ranova.index) == [row["term"] for row in case["ranova"]]
    for row, (_, ours) in zip(case["ranova"], ranova.iterrows()):
        assert ours["npar"] == row["npar"]
        assert ours["llf"] == pytest.approx(row["logLik"], rel=1e-7)


@pytest.mark.parametrize("name", [n for n in sorted(CASES) if not CASES[n]["REML"]])
def test_reduced_models_keep_the_offsets(name):
    case, res = CASES[name], fitted(name)
    reduced = res.update(". ~ . - x")
    assert reduced.model.offset_terms == res.model.offset_terms
    assert reduced.llf == pytest.approx(case["without_x_loglik"], rel=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sml.SingularFitWarning)  # (x || g) without x
        table = res.drop1(test="Chisq")
    lrt = 2 * (res.llf - case["without_x_loglik"])
    assert table.loc["x", "LRT"] == pytest.approx(lrt, abs=1e-5)


def test_formula_offset_equals_keyword_offset():
    frame = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        keyword = sml.lmer("y ~ x + (1 | g)", frame.assign(lt=np.log(frame["t"])), offset="lt")
    res = fitted("exposure_reml")
    assert res.objective == pytest.approx(keyword.objective, rel=1e-12)
    assert np.asarray(res.model.offset) == pytest.approx(np.asarray(keyword.model.offset))
    assert res.model.offset_argument is None and res.model.offset_terms == ("np.log(t)",)


def test_both_offsets_are_summed():
    res = fitted("formula_and_argument")
    rows = data().dropna(subset=["x", "t"]).query("t > 0")
    expected = np.log(rows["t"].to_numpy()) + rows["o2"].to_numpy()
    assert np.asarray(res.model.offset) == pytest.approx(expected, rel=1e-15)
    assert np.asarray(res.model.offset_argument) == pytest.approx(rows["o2"].to_numpy())


def test_refit_update_and_simulate_keep_the_offset():
    res = fitted("two_offsets_slope")
    again = res.refit(np.asarray(res.model.endog))
    assert again.objective == pytest.approx(res.objective, rel=1e-9)
    assert np.abs(again.params - res.params).max() <= 1e-4 * res.bse.min()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        same = res.update(data=data())  # the offsets evaluated again on the new data
    assert same.objective == pytest.approx(res.objective, rel=1e-9)
    sims = res.simulate(nsim=400, seed=1, use_u=True)
    # with the random effects held, the simulations' mean is the fitted value
    # (offset included) up to noise of sd sigma / 20
    assert np.abs(sims.mean(axis=1).to_numpy() - res.fittedvalues).max() < 5 * res.sigma / 20


def test_influence_refits_count_the_offset_once():
    """HLMdiag's full case deletion refits on the rows without each group."""
    res = fitted("formula_and_argument")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = res.influence("g", method="full").frame
        frame = data()
        without = sml.lmer(
            CASES["formula_and_argument"]["python"], frame[frame.g != "g01"], offset="o2"
        )
    change = np.asarray(res.params) - np.asarray(without.params)
    cooks = change @ np.linalg.solve(np.asarray(res.cov_params()), change) / 2
    assert table.loc["g01", "cooks_distance"] == pytest.approx(cooks, rel=1e-6)


def test_step_keeps_the_offsets():
    res = fitted("two_offsets_slope")
    found = res.step()
    assert found.model.model.offset_terms == ("np.log(t)", "2 * z")
    assert found.random.loc["x in (x | g)", "llf"] == pytest.approx(
        CASES["two_offsets_slope"]["ranova"][1]["logLik"], rel=1e-7
    )


def test_update_with_an_offset_formula():
    res = fitted("exposure_ml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        more = res.update(". ~ . + offset(2 * z)")
        explicit = sml.lmer(
            "y ~ x + offset(np.log(t)) + offset(2 * z) + (1 | g)", data(), REML=False
        )
    assert more.model.offset_terms == ("np.log(t)", "2 * z")
    assert more.objective == pytest.approx(explicit.objective, rel=1e-12)
    assert update_formula("y ~ x + offset(z) + (1 | g)", ". ~ . - offset(z)") == "y ~ x + (1 | g)"


def test_parse_extracts_offsets():
    parsed = parse_formula("y ~ offset(np.log(t)) + x + offset (2*z) + (1 | g)")
    assert parsed.offsets == ("np.log(t)", "2*z")
    assert parsed.fixed == "y ~ x"
    assert parsed.text() == "y ~ x + offset(np.log(t)) + offset(2*z) + (1 | g)"
    assert parse_formula("y ~ offset(t) + (1 | g)").fixed == "y ~ 1"
    assert parse_formula("y ~ offsets(t) + (1 | g)").offsets == ()


def test_pickle_round_trip():
    res = fitted("formula_and_argument")
    loaded = pickle.loads(pickle.dumps(res))
    assert loaded.model.offset_terms == res.model.offset_terms
    assert np.asarray(loaded.predict(NEWDATA, allow_new_levels=True)) == pytest.approx(
        np.asarray(res.predict(NEWDATA, allow_new_levels=True)), rel=1e-14
    )


@pytest.mark.parametrize(
    ("formula", "rename", "dtype"),
    [
        ("y ~ x + offset(np.log(t.1)) + (1 | g)", "t.1", None),  # quoted as Q("t.1")
        ("y ~ x + offset(np.log(Q('my t'))) + (1 | g)", "my t", None),
        ("y ~ x + offset(np.log(t)) + (1 | g)", "t", "Float64"),
    ],
)
def test_offset_columns_read_as_the_formula_reads_them(formula, rename, dtype):
    frame = data().dropna().query("t > 0")
    base = sml.lmer("y ~ x + offset(np.log(t)) + (1 | g)", frame)
    other = frame.rename(columns={"t": rename})
    if dtype is not None:
        other = other.astype({rename: dtype})
    res = sml.lmer(formula, other)
    assert res.objective == pytest.approx(base.objective, rel=1e-14)
    assert np.asarray(res.predict(other.head(3))) == pytest.approx(
        np.asarray(base.predict(frame.head(3))), rel=1e-12
    )


def test_predict_missing_offset_values_give_nan():
    res = fitted("exposure_reml")
    rows = NEWDATA.assign(t=[1.0, np.nan, 4.0, -1.0, 3.0, 1.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = np.asarray(res.predict(rows, allow_new_levels=True))
    assert np.isnan(values[[1, 3]]).all() and np.isfinite(values[[0, 2, 4, 5]]).all()
    with pytest.raises(UnknownColumnError, match=re.escape("offset(np.log(t)) uses 't'")):
        res.predict(NEWDATA.drop(columns="t"), allow_new_levels=True)


def test_keyword_array_offset_needs_values_for_newdata():
    frame = data().dropna().query("t > 0")
    res = sml.lmer("y ~ x + offset(np.log(t)) + (1 | g)", frame, offset=frame["o2"].to_numpy())
    with pytest.raises(DataError, match="pass offset="):
        res.predict(NEWDATA, allow_new_levels=True)
    given = res.predict(NEWDATA, allow_new_levels=True, offset=NEWDATA["o2"].to_numpy())
    by_column = fitted("formula_and_argument").predict(NEWDATA, allow_new_levels=True)
    assert np.asarray(given) == pytest.approx(np.asarray(by_column), abs=1e-5)


def test_mixedlm_style_formula():
    frame = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sml.mixedlm("y ~ x + offset(np.log(t))", frame, groups="g").fit()
    assert res.objective == pytest.approx(CASES["exposure_reml"]["objective"], rel=1e-7)


def test_restricted_mode_checks_offsets():
    frame = data().dropna().query("t > 0")
    res = sml.lmer("y ~ x + offset(np.log(t)) + (1 | g)", frame, restricted=True)
    assert res.model.offset_terms == ("np.log(t)",)
    with pytest.raises(UnsafeFormulaError, match="__import__"):
        sml.lmer("y ~ x + offset(__import__('os').getpid()) + (1 | g)", frame, restricted=True)


@pytest.mark.parametrize(
    ("formula", "error", "match"),
    [
        ("y ~ x + offset(np.log(tt)) + (1 | g)", UnknownColumnError, r"offset\(np.log\(tt\)\)"),
        ("y ~ x + offset(g) + (1 | g)", ResponseTypeError, re.escape("offset(g) must be numeric")),
        ("y ~ x + offset(np.log(g)) + (1 | g)", ResponseTypeError, re.escape("offset(np.log(g))")),
        ("y ~ x - offset(t) + (1 | g)", FormulaError, "cannot be subtracted"),
        ("y ~ x + offset() + (1 | g)", FormulaError, "is empty"),
        ("y ~ x + x:offset(t) + (1 | g)", FormulaError, "must be a term of its own"),
        ("y ~ x + offset(np.log(t - 1.5)) + (1 | g)", DataError, "infinite"),
        ("y ~ x + offset(1.0) + (1 | g)", DataError, "one value per row"),
        ("y ~ x + offset(t.real.foo) + (1 | g)", FormulaError, "AttributeError"),
    ],
)
def test_bad_offsets(formula, error, match):
    frame = data().dropna().query("t > 0")
    frame.loc[frame.index[0], "t"] = 1.5  # log(0) for the last case
    before = frame.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(error, match=match):
            sml.lmer(formula, frame)
    pd.testing.assert_frame_equal(frame, before)


def test_missing_raise_counts_missing_offsets():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(DataError, match="5 of 205 rows have missing values"):
            sml.lmer("y ~ x + offset(np.log(t)) + (1 | g)", data(), missing="raise")


def test_dask_refuses_formula_offsets():
    dd = pytest.importorskip("dask.dataframe")
    frame = dd.from_pandas(data().dropna().query("t > 0"), npartitions=2)
    with pytest.raises(FormulaError, match="pass offset='off'"):
        sml.lmer("y ~ x + offset(np.log(t)) + (1 | g)", frame)
