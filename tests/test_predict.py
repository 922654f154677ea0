"""Prediction (against lme4's predict.merMod), simulation, refit and update."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import DataError

PREDICT = json.loads((FIXTURES / "lme4_tools.json").read_text())["predict"]
RE_FORMULAS = {
    "re_form_NULL": None,
    "re_form_NA": "~0",
    "re_form_intercept_only": "~ (1 | Subject)",
    "re_form_batch_only": "~ (1 | batch)",
}


@pytest.mark.parametrize("key", sorted(PREDICT))
def test_predictions_match_lme4_with_new_levels(key):
    spec = PREDICT[key]
    model = sml.Lmer.from_formula(spec["formula"], sml.datasets.load(spec["dataset"]))
    res = model.results_at(spec["theta"], reml=spec["REML"])
    newdata = pd.DataFrame(spec["newdata"])
    for name, expected in spec["predictions"].items():
        ours = res.predict(newdata, re_formula=RE_FORMULAS[name], allow_new_levels=True)
        np.testing.assert_allclose(ours, expected["values"], rtol=1e-10, err_msg=name)


@pytest.fixture(scope="module")
def sleep_fit():
    return sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))


def test_unseen_levels_need_permission(sleep_fit):
    newdata = pd.DataFrame({"Subject": ["308", "999"], "Days": [1.0, 2.0]})
    with pytest.raises(sml.DataError, match="allow_new_levels=True"):
        sleep_fit.predict(newdata)


def test_missing_values_give_nan_and_default_is_fitted(sleep_fit):
    newdata = pd.DataFrame({"Subject": ["308", "309", None], "Days": [1.0, np.nan, 3.0]})
    out = sleep_fit.predict(newdata)
    assert np.isfinite(out[0]) and np.isnan(out[1]) and np.isnan(out[2])
    np.testing.assert_allclose(sleep_fit.predict(), sleep_fit.fittedvalues)


def test_predict_applies_the_models_transforms():
    data = sml.datasets.load("cake")
    res = sml.lmer("angle ~ recipe + I(temp / 10) + (1 | recipe:replicate)", data)
    head = data.iloc[:7]
    np.testing.assert_allclose(res.predict(head), res.fittedvalues.iloc[:7], rtol=1e-12)
    np.testing.assert_allclose(
        res.predict(head, re_formula="0"),
        np.asarray(res.model.exog)[:7] @ res.params.to_numpy(),
        rtol=1e-12,
    )


def test_bad_re_formula(sleep_fit):
    with pytest.raises(sml.FormulaError, match="does not match"):
        sleep_fit.predict(re_formula="~ (1 | Days)")


def test_simulate_is_reproducible_and_matches_the_model(sleep_fit):
    a = sleep_fit.simulate(4, seed=11)
    b = sleep_fit.simulate(4, seed=11)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["sim_1", "sim_2", "sim_3", "sim_4"]
    big = sleep_fit.simulate(2000, seed=3).to_numpy()
    fixed = np.asarray(sleep_fit.model.exog) @ sleep_fit.params.to_numpy()
    # marginal mean X beta and marginal variance sigma^2 + z' Sigma z per row
    cov = sleep_fit.varcorr
    var_int, var_days = cov["vcov"].iloc[0], cov["vcov"].iloc[1]
    cov_id = cov["vcov"].iloc[2]
    days = sleep_fit.model.data.frame["Days"].to_numpy()
    marginal_var = sleep_fit.scale + var_int + 2 * days * cov_id + days**2 * var_days
    se_mean = np.sqrt(marginal_var / 2000)
    assert np.max(np.abs(big.mean(axis=1) - fixed) / se_mean) < 4.5  # 180 rows, Monte-Carlo
    ratio = big.var(axis=1) / marginal_var
    assert np.all(np.abs(ratio - 1) < 0.2)  # sd of a variance ratio with 2000 draws: 0.03
    conditional = sleep_fit.simulate(2000, seed=4, use_u=True).to_numpy()
    np.testing.assert_allclose(conditional.mean(axis=1), sleep_fit.fittedvalues, atol=3.0)


def test_refit_and_update(sleep_fit):
    y = sleep_fit.simulate(1, seed=5)["sim_1"]
    again = sleep_fit.refit(y)
    direct = sml.lmer(
        "Reaction ~ Days + (Days | Subject)",
        sleep_fit.model.data.frame.assign(Reaction=y.to_numpy()),
    )
    assert again.objective == pytest.approx(direct.objective, rel=1e-9)
    intercept_only = sleep_fit.update("Reaction ~ Days + (1 | Subject)")
    assert intercept_only.llf == pytest.approx(-893.2325426974605, rel=1e-8)  # lmerTest ranova
    ml = sleep_fit.update(reml=False)
    assert ml.objective == pytest.approx(1751.9393444632096, rel=1e-9)
    assert sleep_fit.update(REML=False).objective == ml.objective  # lme4's spelling
    # R's update dots: '.' is the old formula's side (update(m, . ~ . - (Days | Subject) + ...))
    dotted = sleep_fit.update(". ~ . - (Days | Subject) + (1 | Subject)")
    assert dotted.model.lmer_formula == "Reaction ~ Days + (1 | Subject)"
    assert dotted.llf == intercept_only.llf
    with pytest.raises(ValueError, match="180 values"):
        sleep_fit.refit(np.ones(3))


def test_update_of_an_uncorrelated_term_as_lme4():
    """lme4's test-lmer.R: removing either part of ``(Days || Subject)`` (REML criteria
    from lme4 1.1-31)."""
    res = sml.lmer("Reaction ~ Days + (Days || Subject)", sml.datasets.load("sleepstudy"))
    slope_removed = res.update(". ~ . - (0 + Days | Subject)")
    assert slope_removed.reml_criterion == pytest.approx(1786.4650853949, rel=1e-9)
    intercept_removed = res.update(". ~ . - (1 | Subject)")
    assert intercept_removed.reml_criterion == pytest.approx(1766.525027, rel=1e-8)


def test_refit_takes_one_value_per_row_of_the_data_as_lme4():
    """lme4's test-NAhandling.R: ``refit(m, data$y)`` with the NA rows' values ignored.
    Both an array of the data's length and a Series with the data's labels were refused
    ("endog must have 177 values, got 180")."""
    data = sml.datasets.load("sleepstudy")
    data.loc[data.index[[0, 50, 179]], "Reaction"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("Reaction ~ Days + (Days | Subject)", data)
        y = data["Reaction"].fillna(0.0) * 1.1 + np.arange(180) % 7
        expected = res.refit(y.drop(data.index[[0, 50, 179]]).to_numpy())
        for full in (y.to_numpy(), y, y.sample(frac=1.0, random_state=1)):
            again = res.refit(full)
            assert again.reml_criterion == expected.reml_criterion
            np.testing.assert_array_equal(again.params, expected.params)
    assert res.model.dropped_rows.tolist() == [0, 50, 179]
    with pytest.raises(ValueError, match=r"refit\(\) also takes 180, one per row"):
        res.refit(np.ones(179))
    longer = pd.Series(np.ones(250))  # its labels include the data's: still too long
    with pytest.raises(ValueError, match="endog must have 177 values, got 250"):
        res.refit(longer)
    with pytest.raises(DataError, match="its labels are not the data's"):
        res.refit(pd.Series(y.to_numpy(), index=np.arange(1000, 1180)))
    column = res.refit(y.to_numpy()[:, None])  # a column vector, as lme4's matrix
    assert column.reml_criterion == expected.reml_criterion


def test_re_form_na_and_missing_newdata_columns(sleep_fit):
    rows = sleep_fit.model.data.frame.head(4)
    population = sleep_fit.predict(rows, re_formula="0")
    # lme4's re.form = NA: no random effects
    np.testing.assert_array_equal(sleep_fit.predict(rows, re_formula=np.nan), population)
    np.testing.assert_array_equal(sleep_fit.predict(rows, re_formula=pd.NA), population)
    expected = sleep_fit.params["Intercept"] + sleep_fit.params["Days"] * rows["Days"]
    np.testing.assert_allclose(population, expected, rtol=1e-12)
    # patsy said "Error evaluating factor: NameError: name 'Days' is not defined"
    with pytest.raises(KeyError, match="newdata lacks column 'Days', which the model uses"):
        sleep_fit.predict(rows.drop(columns="Days"))


def test_missing_grouping_value_is_a_new_level_when_allowed():
    """lme4's predict.merMod takes a row missing its grouping value as a new level with
    ``allow.new.levels = TRUE`` (sleepstudy, ``(Days | Subject)``: 273.3299 272.3397
    216.5492); without it lme4 refuses the row, here it is NaN as other missing values."""
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    for subject in (["308", None, "309"], [308, np.nan, 309]):
        new = pd.DataFrame({"Days": [1, 2, 3], "Subject": subject})
        allowed = res.predict(new, allow_new_levels=True)
        np.testing.assert_allclose(allowed, [273.3299, 272.3397, 216.5492], atol=1e-4)
        assert allowed[1] == pytest.approx(res.predict(new, re_formula="0")[1], rel=1e-14)
        strict = np.asarray(res.predict(new))
        assert np.isnan(strict[1]) and np.allclose(strict[[0, 2]], allowed[[0, 2]])
        frame = res.get_prediction(new, conditional=True, allow_new_levels=True).summary_frame()
        np.testing.assert_allclose(frame["mean"], allowed, rtol=1e-12)
        interval = res.predict_interval(new, n_sims=200, seed=1, allow_new_levels=True)
        assert np.all(np.isfinite(np.asarray(interval, dtype=float)))


def test_category_only_in_rows_left_out_does_not_break_predict():
    """Level c of f occurs only in rows dropped for a missing x; newdata with such a row
    (NaN anyway) failed as a whole: "mismatching levels: expected ('b', 'a'), got
    ('c', 'b', 'a')". The Dask path gave NaN for that row only."""
    rng = np.random.default_rng(1)
    n = 300
    data = pd.DataFrame(
        {
            "g": rng.integers(0, 15, n),
            "x": rng.normal(size=n),
            "f": pd.Categorical(rng.choice(list("abc"), n), categories=["c", "b", "a"]),
        }
    )
    data["y"] = data.x + rng.normal(size=15)[data.g] + rng.normal(size=n)
    data.loc[data.f == "c", "x"] = np.nan
    res = sml.lmer("y ~ x + f + (1 | g)", data)
    new = pd.concat([data[data.f != "c"].head(4), data[data.f == "c"].head(1)])
    predicted = np.asarray(res.predict(new))
    assert np.isnan(predicted[-1])
    np.testing.assert_allclose(predicted[:4], res.predict(new.head(4)), rtol=1e-14)
    np.testing.assert_allclose(predicted[:4], res.fittedvalues.loc[new.index[:4]], rtol=1e-12)
