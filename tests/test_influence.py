"""Group-deletion influence diagnostics (HLMdiag's definitions), checked by brute force.

HLMdiag is not installable here (not in Debian, CRAN unreachable), so the
one-step measures are checked against what they are by definition: deleting the
group's rows and re-estimating the fixed effects with the variance parameters
(theta and sigma) held at the full-data estimates. Our engine does that with a
model built on the remaining rows and ``results_at(theta)``. The ``full`` variant
is checked against a refit of the reduced data, and leverage against HLMdiag's
dense formula ``H1 = X (X'V^-1 X)^-1 X' V^-1``, ``H2 = Z D Z' V^-1 (I - H1)``.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import case_data, fitted_case
from statsmodels.tools import sm_exceptions

import statsmodels_lmer as sml


def held_fixed_measures(res, data, keep, kwargs):
    """Cook's distance, MDFFITS, COVRATIO, COVTRACE by deleting rows, V held fixed."""
    sub_kwargs = {k: np.asarray(data[v])[keep] for k, v in kwargs.items()}
    model = sml.Lmer.from_formula(res.model.lmer_formula, data[keep], **sub_kwargs)
    reduced = model.results_at(res.theta, reml=res.reml)
    change = np.asarray(res.params) - np.asarray(reduced.params)
    cov = np.asarray(res.cov_params())
    cov_del = np.asarray(reduced.cov_params()) / reduced.scale * res.scale  # sigma held fixed
    p = cov.shape[0]
    return change, [
        change @ np.linalg.solve(cov, change) / p,
        change @ np.linalg.solve(cov_del, change) / p,
        abs(np.trace(np.linalg.solve(cov, cov_del)) - p),
        np.linalg.det(cov_del) / np.linalg.det(cov),
    ]


@pytest.mark.parametrize(
    ("case", "group", "levels"),
    [
        ("sleepstudy_reml", "Subject", ["308", "309", "335", "372"]),
        ("penicillin_reml", "plate", ["a", "k", "x"]),
        ("penicillin_reml", "sample", ["A", "F"]),
        ("pastes_explicit", "batch", ["A", "J"]),
        ("sleepstudy_weights_offset_reml", "Subject", ["310", "337"]),
    ],
)
def test_one_step_measures_are_deletion_with_variances_held_fixed(case, group, levels):
    spec, data, res = fitted_case(case)
    data, kwargs = case_data(spec)
    infl = res.influence(group=group, progress=False)
    assert infl.group == infl.frame.index.name == group
    for level in levels:
        keep = (data[group].astype(str) != level).to_numpy()
        change, measures = held_fixed_measures(res, data, keep, kwargs)
        row = infl.frame.loc[level]
        np.testing.assert_allclose(infl.beta_change.loc[level], change, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(
            row[["cooks_distance", "mdffits", "covtrace", "covratio"]].to_numpy(float),
            measures,
            rtol=1e-7,
            atol=1e-12,
        )
        assert row["n_obs"] == int((~keep).sum())


def hlmdiag_leverage(res):
    """HLMdiag's leverage.lmerMod with dense n x n matrices, prior weights included."""
    model = res.model
    X = np.asarray(model.exog)
    A = (sp.hstack([t.z_matrix() for t in model.random_terms]) @ res.Lambda).toarray()
    n, s2 = X.shape[0], res.scale
    zdz = s2 * A @ A.T
    w = np.ones(n) if model.weights is None else np.asarray(model.weights)
    vinv = np.linalg.inv(zdz + s2 * np.diag(1 / w))  # V = sigma^2 (W^-1 + A A')
    h1 = X @ np.linalg.solve(X.T @ vinv @ X, X.T) @ vinv
    h2 = zdz @ vinv @ (np.eye(n) - h1)
    return np.diag(h1), np.diag(h2), np.diag(zdz) / s2


@pytest.mark.parametrize(
    ("case", "group"), [("sleepstudy_reml", "Subject"), ("pastes_nested", "batch")]
)
def test_leverage_is_hlmdiags(case, group):
    _, _, res = fitted_case(case)
    infl = res.influence(group=group, progress=False)
    fixef, ranef, ranef_uc = hlmdiag_leverage(res)
    term = next(t for t in res.model.random_terms if t.group == group)
    frame = pd.DataFrame(
        {"fixef": fixef, "ranef": ranef, "uc": ranef_uc, "g": np.asarray(term.levels)[term.codes]}
    )
    means = frame.groupby("g", sort=False).mean().reindex(infl.frame.index)
    np.testing.assert_allclose(infl.frame["leverage_fixef"], means["fixef"], atol=1e-12)
    np.testing.assert_allclose(infl.frame["leverage_ranef"], means["ranef"], atol=1e-12)
    np.testing.assert_allclose(infl.frame["leverage"], means["fixef"] + means["ranef"], atol=1e-12)
    np.testing.assert_allclose(infl.frame["leverage_ranef_uc"], means["uc"], atol=1e-12)


def test_full_refits_compare_each_refit():
    spec, data, res = fitted_case("pastes_nested")
    infl = res.influence(group="batch", method="full", progress=False)
    level = "D"
    keep = (data["batch"].astype(str) != level).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit = sml.lmer(spec["formula"], data[keep], start_theta=res.theta)
    change = np.asarray(res.params) - np.asarray(refit.params)
    cov, cov_del = np.asarray(res.cov_params()), np.asarray(refit.cov_params())
    row = infl.frame.loc[level]
    np.testing.assert_allclose(infl.beta_change.loc[level], change, rtol=1e-6, atol=1e-8)
    assert row["cooks_distance"] == pytest.approx(change @ np.linalg.solve(cov, change), rel=1e-5)
    assert row["mdffits"] == pytest.approx(change @ np.linalg.solve(cov_del, change), rel=1e-5)
    assert row["covratio"] == pytest.approx(np.linalg.det(cov_del) / np.linalg.det(cov), rel=1e-5)
    rvc = refit.varcorr["vcov"].to_numpy() / res.varcorr["vcov"].to_numpy() - 1
    rvc_cols = [c for c in infl.frame.columns if c.startswith("rvc_")]
    assert rvc_cols == ["rvc_var_Intercept|cask:batch", "rvc_var_Intercept|batch", "rvc_sigma2"]
    np.testing.assert_allclose(row[rvc_cols].to_numpy(float), rvc, rtol=1e-4, atol=1e-6)
    # leverage does not depend on the deletion method
    one_step = res.influence(group="batch", progress=False)
    np.testing.assert_allclose(infl.frame["leverage"], one_step.frame["leverage"])


def test_result_object_and_errors():
    _, _, res = fitted_case("sleepstudy_reml")
    infl = res.influence(progress=False)
    assert infl.group == "Subject" and infl.method == "one-step"
    assert infl.frame.shape == (18, 9)
    values = infl.frame["cooks_distance"].to_numpy()
    q1, q3 = np.quantile(values, [0.25, 0.75])
    assert infl.cutoffs("cooks_distance") == pytest.approx((-np.inf, q3 + 3 * (q3 - q1)))
    low, high = infl.cutoffs("covratio")
    q1, q3 = np.quantile(infl.frame["covratio"], [0.25, 0.75])
    assert (low, high) == pytest.approx((q1 - 3 * (q3 - q1), q3 + 3 * (q3 - q1)))
    assert "largest Cook's distance: 309" in repr(infl)
    again = pickle.loads(pickle.dumps(infl))
    pd.testing.assert_frame_equal(again.frame, infl.frame)
    with pytest.raises(KeyError, match="grouping factors are"):
        res.influence(group="Days")
    with pytest.raises(ValueError, match="one-step"):
        res.influence(method="approx")


def test_relative_variance_changes_have_two_sided_cutoffs():
    """HLMdiag flags a variance component that drops without a group as well as one that
    grows: sleepstudy's subjects 332 (-0.274) and 308 (-0.146) are below Q1 - 3 IQR of
    rvc_sigma2 (-0.109), and were not flagged."""
    _, _, res = fitted_case("sleepstudy_reml")
    infl = res.influence(method="full", progress=False)
    values = infl.frame["rvc_sigma2"]
    q1, q3 = np.quantile(values, [0.25, 0.75])
    low, high = infl.cutoffs("rvc_sigma2")
    assert (low, high) == pytest.approx((q1 - 3 * (q3 - q1), q3 + 3 * (q3 - q1)))
    assert set(values.index[values < low]) >= {"332", "308"}


# -- deleting single observations (lme4's influence(m) without groups) -------------

INFLUENCE_CASES = json.loads(
    (Path(__file__).parent / "fixtures" / "influence_cases.json").read_text()
)


def influence_case_fit(case):
    """The fit of one case of influence_cases.json, and its data and model keywords."""
    data = sml.datasets.load(case["dataset"])
    kwargs = {}
    if case["weights"]:  # as make_influence_fixtures.R
        data = data.assign(w=1 + (data["Days"] % 3) / 2, off=data["Days"] / 10)
        kwargs = {"weights": "w", "offset": "off"}
    res = sml.Lmer.from_formula(case["formula"], data, **kwargs).fit(reml=case["REML"])
    return res, data, kwargs


@pytest.mark.parametrize("name", sorted(INFLUENCE_CASES))
def test_observation_refits_are_lme4_case_deletion(name):
    """lme4 refits without each row from theta (maxfun 1000); both converge on every row.
    Tolerance 1e-4 SE for dfbeta, as for estimates; lme4's Cook's distance is ours
    times (n - p) / n, compared to 1e-3 of its largest value (it squares dfbeta, whose
    optimizer noise of up to 5e-5 SE dominates the smallest distances)."""
    case = INFLUENCE_CASES[name]
    res, data, _ = influence_case_fit(case)
    infl = res.influence(group="observation", method="full", progress=False)
    assert infl.group == infl.frame.index.name == "observation"
    assert list(infl.frame.index) == list(data.index)
    assert (infl.frame["n_obs"] == 1).all()
    rows = np.asarray(case["row"])
    assert all(case["converged"])
    dfbeta = -infl.beta_change.to_numpy()[rows]
    se = np.asarray(case["se"])
    np.testing.assert_array_less(np.abs(dfbeta - np.asarray(case["dfbeta"])) / se, 1e-4)
    n, p = len(data), len(se)
    lme4_cooks = np.asarray(case["cooks"])
    ours = infl.frame["cooks_distance"].to_numpy()[rows] * (n - p) / n
    np.testing.assert_allclose(ours, lme4_cooks, rtol=0, atol=1e-3 * lme4_cooks.max())


@pytest.mark.parametrize("name", sorted(INFLUENCE_CASES))
def test_observation_one_step_is_row_deletion_with_variances_held_fixed(name):
    res, data, kwargs = influence_case_fit(INFLUENCE_CASES[name])
    infl = res.influence(group="observation", progress=False)
    for row in [0, 7, 61, len(data) - 1]:
        keep = np.ones(len(data), dtype=bool)
        keep[row] = False
        change, measures = held_fixed_measures(res, data, keep, kwargs)
        np.testing.assert_allclose(infl.beta_change.iloc[row], change, rtol=1e-7, atol=1e-10)
        got = infl.frame.iloc[row][["cooks_distance", "mdffits", "covtrace", "covratio"]]
        np.testing.assert_allclose(got.to_numpy(float), measures, rtol=1e-7, atol=1e-12)
    fixef, ranef, ranef_uc = hlmdiag_leverage(res)
    np.testing.assert_allclose(infl.frame["leverage_fixef"], fixef, atol=1e-12)
    np.testing.assert_allclose(infl.frame["leverage_ranef"], ranef, atol=1e-12)
    np.testing.assert_allclose(infl.frame["leverage"], fixef + ranef, atol=1e-12)
    np.testing.assert_allclose(infl.frame["leverage_ranef_uc"], ranef_uc, atol=1e-12)


def test_observation_rows_are_labelled_by_the_fitted_rows():
    """Shuffled string labels and a dropped missing response: each row keeps its label."""
    data = sml.datasets.load("sleepstudy")
    rng = np.random.default_rng(5)
    shuffled = data.iloc[rng.permutation(len(data))].copy()
    shuffled.index = [f"r{i}" for i in shuffled.index]
    shuffled.loc["r10", "Reaction"] = np.nan
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", shuffled)
    infl = res.influence(group="observation", progress=False)
    assert len(infl.frame) == 179 and "r10" not in infl.frame.index
    plain = sml.lmer("Reaction ~ Days + (Days | Subject)", data.drop(index=10))
    reference = plain.influence(group="observation", progress=False).frame
    reference.index = [f"r{i}" for i in reference.index]
    # shuffled rows stop the optimizer elsewhere (theta to 1e-8), moving small Cook's
    # distances by 1e-5; a misaligned row would differ by orders of magnitude
    pd.testing.assert_frame_equal(
        infl.frame.loc[reference.index], reference, check_names=False, rtol=1e-4
    )


def undetermined_data():
    """sleepstudy with a fixed factor f whose level "c" has one row (label 5), which is
    also the only row of level "solo" of a second grouping factor g."""
    data = sml.datasets.load("sleepstudy").copy()
    data["f"] = np.where(data.index < 90, "b", "a")
    data.loc[5, "f"] = "c"
    data["g"] = data["Subject"].astype(str)
    data.loc[5, "g"] = "solo"
    return data


@pytest.mark.parametrize(
    ("formula", "group", "label"),
    [
        ("Reaction ~ Days + f + (Days | Subject)", "observation", 5),
        ("Reaction ~ Days + f + (1 | Subject) + (1 | g)", "g", "solo"),
    ],
)
@pytest.mark.parametrize("method", ["one-step", "full"])
def test_deletion_that_leaves_a_fixed_effect_undetermined_is_nan(formula, group, label, method):
    """Without its one row, f[T.c] has no data: Cook's distance and the rest are NaN
    (they were 4.9 and 3.7e15 for the group, or a broadcast error in the refits)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sml.SingularFitWarning)
        res = sml.lmer(formula, undetermined_data())
    with pytest.warns(sm_exceptions.ValueWarning, match=f"deleting {group} {label} leaves"):
        infl = res.influence(group=group, method=method, progress=False)
    measures = infl.frame.columns.drop(["n_obs"]).drop(infl.frame.filter(like="leverage").columns)
    assert infl.frame.loc[label, measures].isna().all()
    assert infl.beta_change.loc[label].isna().all()
    others = infl.frame.drop(index=label)
    assert np.isfinite(others[measures].to_numpy(float)).all()
    assert np.isfinite(infl.frame.filter(like="leverage").to_numpy(float)).all()


def test_full_refits_follow_terms_reordered_by_fewer_levels():
    """a and b have 10 levels each; without a level of a, lme4's order puts b first.
    The refits started from a misordered theta (an error for (x | a)), and the relative
    variance changes compared components of different terms."""
    rng = np.random.default_rng(3)
    n = 300
    data = pd.DataFrame(
        {
            "a": rng.integers(0, 10, n).astype(str),
            "b": rng.integers(0, 10, n).astype(str),
            "x": rng.normal(size=n),
        }
    )
    ua, ub = rng.normal(size=(10, 2)), 0.5 * rng.normal(size=10)
    codes_a, codes_b = data["a"].astype(int), data["b"].astype(int)
    data["y"] = 1 + data["x"] + ua[codes_a, 0] + ua[codes_a, 1] * data["x"] + ub[codes_b]
    data["y"] += rng.normal(size=n)
    formula = "y ~ x + (x | a) + (1 | b)"
    res = sml.lmer(formula, data)
    infl = res.influence(group="a", method="full", progress=False)
    reduced = sml.lmer(formula, data[data["a"] != "0"])
    assert [t.group for t in reduced.model.random_terms] == ["b", "a"]
    np.testing.assert_allclose(
        infl.beta_change.loc["0"], np.asarray(res.params) - np.asarray(reduced.params), rtol=1e-5
    )
    key = ["grp", "var1", "var2"]
    full_vc = res.varcorr.set_index(key)["vcov"]
    rvc = reduced.varcorr.set_index(key)["vcov"].reindex(full_vc.index) / full_vc - 1
    np.testing.assert_allclose(
        infl.frame.loc["0"].filter(like="rvc_").to_numpy(float), rvc, rtol=1e-4, atol=1e-6
    )


def test_observation_group_name():
    _, _, res = fitted_case("sleepstudy_reml")
    with pytest.raises(KeyError, match="group='observation' deletes each row"):
        res.influence(group="Days")
    data = sml.datasets.load("sleepstudy").rename(columns={"Subject": "observation"})
    own = sml.lmer("Reaction ~ Days + (Days | observation)", data)
    infl = own.influence(group="observation", progress=False)
    assert len(infl.frame) == 18  # a grouping factor of that name wins


def test_influence_after_remove_data_says_why():
    data = sml.datasets.load("sleepstudy")
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", data)
    res.remove_data()
    for group in (None, "observation"):
        with pytest.raises(ValueError, match="influence diagnostics need the model's rows"):
            res.influence(group=group, progress=False)
