"""ICC and R2 (against the R package performance 0.10.2), variance explained,
centering, REsim and prediction intervals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

import statsmodels_lmer as sml

ICC = json.loads((FIXTURES / "lme4_tools.json").read_text())["icc_r2"]["models"]


@pytest.mark.parametrize("name", sorted(ICC))
def test_icc_and_r2_match_performance(name):
    spec = ICC[name]
    model = sml.Lmer.from_formula(spec["formula"], sml.datasets.load(spec["dataset"]))
    res = model.results_at(spec["theta"], reml=spec["REML"])
    icc = res.icc()
    assert icc.loc["all", "adjusted"] == pytest.approx(spec["icc"]["adjusted"], rel=1e-6)
    assert icc.loc["all", "conditional"] == pytest.approx(spec["icc"]["conditional"], rel=1e-6)
    r2 = res.r2()
    assert r2["marginal"] == pytest.approx(spec["r2_nakagawa"]["marginal"], abs=1e-9)
    assert r2["conditional"] == pytest.approx(spec["r2_nakagawa"]["conditional"], rel=1e-6)
    if name == "penicillin_reml":  # per-factor ICCs (performance gives them without slopes)
        for row in spec["icc_by_group"]:
            assert icc.loc[row["Group"], "adjusted"] == pytest.approx(row["ICC"], rel=1e-6)


def test_variance_explained_between_nested_models():
    data = sml.datasets.load("sleepstudy")
    empty = sml.lmer("Reaction ~ 1 + (1 | Subject)", data)
    full = sml.lmer("Reaction ~ Days + (1 | Subject)", data)
    table = sml.variance_explained(empty, full)
    assert list(table["grp"]) == ["Subject", "Residual"]
    e, f = empty.varcorr["vcov"], full.varcorr["vcov"]
    assert table.loc[1, "explained"] == pytest.approx((e.iloc[-1] - f.iloc[-1]) / e.iloc[-1])
    assert table.loc[1, "explained"] > 0.5  # Days explains most within-subject variance


def test_center_grand_and_group_mean():
    data = pd.DataFrame({"g": ["a", "a", "b", "b"], "x": [1.0, 3.0, 10.0, 14.0]})
    before = data.copy()
    grand = sml.center(data, "x")
    np.testing.assert_allclose(grand["x_c"], [-6.0, -4.0, 3.0, 7.0])
    split = sml.center(data, ["x"], by="g")
    np.testing.assert_allclose(split["x_within"], [-1.0, 1.0, -2.0, 2.0])
    np.testing.assert_allclose(split["x_between"], [-5.0, -5.0, 5.0, 5.0])
    np.testing.assert_allclose(7.0 + split["x_between"] + split["x_within"], data["x"])
    pd.testing.assert_frame_equal(data, before)
    with pytest.raises(KeyError, match="not in the data"):
        sml.center(data, "y")


@pytest.fixture(scope="module")
def sleep_fit():
    return sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))


def test_resim_recovers_conditional_modes_and_sds(sleep_fit):
    sims = sleep_fit.resim(n_sims=4000, seed=1)
    table = sleep_fit.ranef_table()
    assert len(sims) == len(table) == 36
    merged = table.merge(
        sims, left_on=["grpvar", "term", "grp"], right_on=["groupFctr", "term", "groupID"]
    )
    # mean of 4000 draws: standard error condsd / 63
    assert np.all(np.abs(merged["mean"] - merged["condval"]) < 4 * merged["condsd"] / 63)
    np.testing.assert_allclose(merged["sd"], merged["condsd"], rtol=0.06)
    again = sleep_fit.resim(n_sims=10, seed=9)
    pd.testing.assert_frame_equal(again, sleep_fit.resim(n_sims=10, seed=9))


def test_predict_interval_covers_and_widens_for_new_levels(sleep_fit):
    newdata = pd.DataFrame({"Subject": ["308", "999"], "Days": [1.0, 1.0]})
    out = sleep_fit.predict_interval(newdata, level=0.9, n_sims=4000, seed=2, allow_new_levels=True)
    point = sleep_fit.predict(newdata, allow_new_levels=True)
    assert np.all((out["lower"] < point) & (point < out["upper"]))
    np.testing.assert_allclose(out["fit"], point, atol=2.0)
    width = out["upper"] - out["lower"]
    assert width.iloc[1] > width.iloc[0]  # an unknown subject adds its random effects
    # new level, no residual: the interval of X b + z'b with b ~ N(0, Sigma)
    mean_only = sleep_fit.predict_interval(
        newdata.iloc[[1]],
        level=0.9,
        n_sims=20000,
        seed=3,
        include_residual=False,
        allow_new_levels=True,
    )
    vc = sleep_fit.varcorr["vcov"]
    random_var = vc.iloc[0] + 2 * vc.iloc[2] + vc.iloc[1]  # z = (1, 1): Days = 1
    fixed_var = float(sleep_fit.cov_params().to_numpy().sum())  # x = (1, 1)
    expected = 2 * 1.6449 * np.sqrt(random_var + fixed_var)
    width = (mean_only["upper"] - mean_only["lower"]).iloc[0]
    assert width == pytest.approx(expected, rel=0.03)  # 20000 draws: quantiles to ~1%


def test_variance_explained_refuses_fits_on_different_rows():
    """A missing predictor value drops rows from the full model only; the comparison of
    its variances with the reduced model's was silently between different samples."""
    data = sml.datasets.load("sleepstudy").assign(x=lambda d: d["Days"].astype(float))
    data.loc[:9, "x"] = np.nan
    reduced = sml.lmer("Reaction ~ 1 + (1 | Subject)", data)
    full = sml.lmer("Reaction ~ x + (1 | Subject)", data)
    with pytest.raises(ValueError, match="different rows \\(180 and 170"):
        sml.variance_explained(reduced, full)
    same = sml.lmer("Reaction ~ 1 + (1 | Subject)", data.dropna(subset=["x"]))
    assert len(sml.variance_explained(same, full)) == 2
