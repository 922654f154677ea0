"""Regression tests for discrepancies found by differential fuzzing of the post-fit tools.

Reference numbers: lme4 1.1-31 (tests/fixtures/fuzz_tools.json, from
make_fuzz_tools_fixtures.R) on random data sets of the fuzz driver
(tests/fixtures/data/fuzz_tools_*.csv). Tests without R numbers check the
tools against a computation of their own (the conditional covariances of
the random effects).
"""

from __future__ import annotations

import json
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

import statsmodels_lmer as sml


@cache
def fixture() -> dict:
    return json.loads((FIXTURES / "fuzz_tools.json").read_text())


def fuzz_data(name: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "data" / name)


def quiet_fit(formula: str, data: pd.DataFrame, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits and the REML-anova warning
        return sml.lmer(formula, data, **kwargs)


@pytest.mark.parametrize("refit", [False, True])
def test_anova_table_as_lme4(refit: bool) -> None:
    """``chisq`` is clamped at 0 and ``deviance`` is ``-2 llf``, as lme4's anova.

    The larger model of this weighted pair has the lower REML likelihood:
    ``refit=False`` gave chisq = -0.86 (p = 1) and the ML deviance at the REML
    estimates in the deviance column.
    """
    case = fixture()["anova_lrt"]
    data = fuzz_data(case["data"])
    small = quiet_fit(case["small"], data, weights="w")
    large = quiet_fit(case["large"], data, weights="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = sml.anova(small, large, refit=refit)
    ref = case["refit_true" if refit else "refit_false"]
    for ours, theirs in (("AIC", "AIC"), ("BIC", "BIC"), ("llf", "llf"), ("deviance", "deviance")):
        np.testing.assert_allclose(table[ours].to_numpy(), ref[theirs], rtol=1e-8)
    assert table["chisq"].iloc[1] == pytest.approx(ref["chisq"], rel=1e-6, abs=1e-8)
    assert table["pvalue"].iloc[1] == pytest.approx(ref["pvalue"], rel=1e-6)


@cache
def singular_slope_fit():
    """``(x | g)`` with the correlation estimated as -1 (theta[2] = 0)."""
    data = fuzz_data("fuzz_tools_slope_singular.csv")
    res = quiet_fit("y ~ x + z + f + (x | g)", data, REML=False)
    assert res.is_singular()
    return data, res


def test_resim_on_singular_slope_fit() -> None:
    """Draws from a rank-one conditional covariance (LinAlgError before).

    The draws' SDs equal the conditional SDs within Monte Carlo error: the
    SD of a sample SD of n normal draws is about sd / sqrt(2 n).
    """
    _, res = singular_slope_fit()
    n_sims = 4000
    draws = res.resim(n_sims, seed=1)
    table = res.ranef_table()
    merged = draws.merge(
        table, left_on=["groupFctr", "groupID", "term"], right_on=["grpvar", "grp", "term"]
    )
    assert len(merged) == len(table)
    z_sd = (merged["sd"] - merged["condsd"]) / (merged["condsd"] / np.sqrt(2 * n_sims))
    z_mean = (merged["mean"] - merged["condval"]) / (merged["condsd"] / np.sqrt(n_sims))
    assert np.abs(z_sd).max() < 4.5
    assert np.abs(z_mean).max() < 4.5


def test_predict_interval_on_singular_slope_fit() -> None:
    """predict_interval works where the conditional covariance is singular."""
    data, res = singular_slope_fit()
    interval = res.predict_interval(data.head(5), seed=2, n_sims=2000)
    assert np.isfinite(interval.to_numpy()).all()
    assert (interval["lower"] < interval["fit"]).all()
    assert (interval["fit"] < interval["upper"]).all()


def test_predict_interval_with_unused_categories() -> None:
    """New rows whose Categorical keeps a category the fit dropped, as ``predict``.

    predict_interval raised DataError ("mismatching levels") on the very
    DataFrame the model was fitted to; predict and get_prediction recode.
    """
    data, _ = singular_slope_fit()
    data = data.assign(f=pd.Categorical(data["f"], categories=["a", "b", "c", "unused"]))
    res = quiet_fit("y ~ x + z + f + (x | g)", data, REML=False)
    plain = data.assign(f=data["f"].astype(str))
    ours = res.predict_interval(data.head(5), seed=3, n_sims=500)
    expected = res.predict_interval(plain.head(5), seed=3, n_sims=500)
    pd.testing.assert_frame_equal(ours, expected)


def refit_from_singular_fit(case: dict):
    """Refit (as the bootstrap does) of a singular fit to a simulated response."""
    data = fuzz_data(case["data"])
    res = quiet_fit(case["formula"], data, REML=case["REML"], weights="w")
    assert res.is_singular()
    y_sim = data.loc[res.model.data.row_labels, "y_sim"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return res.refit(y_sim)


def default_fit(case: dict):
    return quiet_fit(case["formula"], fuzz_data(case["data"]), REML=case["REML"])


@pytest.mark.parametrize(
    ("name", "fit_case"),
    [("refit_singular_start", refit_from_singular_fit), ("fit_local_optimum", default_fit)],
)
def test_reaches_lme4_optimum(name: str, fit_case) -> None:
    """Same rows as lme4's fit and its log-likelihood (lme4 with rhoend 1e-10).

    Both stopped at a boundary local optimum before the second start of singular
    fits: the refit (as the bootstrap's) from the fitted boundary theta 11.6
    log-likelihood units below a fresh fit, and the default fit (BOBYQA from the
    group-means start) at theta[2] = 0, 1.31 units below lme4's. L-BFGS-B from
    lme4's start reaches lme4's optimum, and the lower fit is kept.
    """
    case = fixture()[name]
    res = fit_case(case)
    assert res.nobs == case["nobs"]
    assert res.llf == pytest.approx(case["llf"], rel=1e-7)
    second = res.optinfo["second_start"]
    assert second["method"] == "lbfgsb" and second["adopted"]
    # the results' objective is evaluated again on the solution's path: 1e-10 apart
    assert second["objective"] == pytest.approx(res.objective, rel=1e-9)


def test_second_start_only_for_singular_default_fits_of_cheap_models() -> None:
    case = fixture()["fit_local_optimum"]
    data = fuzz_data(case["data"])
    chosen = quiet_fit(case["formula"], data, REML=case["REML"], method="bobyqa")
    assert chosen.optinfo["second_start"] is None  # an explicit optimizer is honoured
    assert chosen.llf < case["llf"] - 1.0  # and stays where BOBYQA stops
    regular = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    assert regular.optinfo["second_start"] is None  # not singular
    singular = quiet_fit("Yield ~ 1 + (1 | Batch)", sml.datasets.load("Dyestuff2"))
    second = singular.optinfo["second_start"]
    assert second["method"] == "lbfgsb" and not second["adopted"]
    assert second["objective"] >= singular.objective - 1e-8
