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

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import case_data, fitted_case

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
    """HLMdiag's leverage.lmerMod with dense n x n matrices (V = sigma^2 (I + A A'))."""
    model = res.model
    X = np.asarray(model.exog)
    A = (sp.hstack([t.z_matrix() for t in model.random_terms]) @ res.Lambda).toarray()
    n, s2 = X.shape[0], res.scale
    zdz = s2 * A @ A.T
    vinv = np.linalg.inv(zdz + s2 * np.eye(n))
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
