"""Differential fuzzing of post-fit quantities against lme4 1.1-31.

Reference numbers: tests/fixtures/fuzz_postfit.json, written by
make_fuzz_postfit_fixtures.R from the seeded random designs of
make_fuzz_postfit_data.py (tests/fixtures/data/fuzz_postfit_*.csv): prior
weights, an offset (lme4's ``offset =`` argument), missing values in the
response, a covariate and the grouping factor, unbalanced groups with
single-row levels, a fixed factor with an unused level, singular fits, ML and
REML, nested and crossed terms, random slopes.

The deterministic quantities are compared at lme4's theta
(``model.results_at``), so that they test the post-fit computations rather
than where two optimizers stop; they agree to about 1e-12, and are held to
1e-6 relative. The fits themselves are compared separately.
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
from statsmodels_lmer.exceptions import DataError, FormulaError, UnknownColumnError
from statsmodels_lmer.tools import prediction
from statsmodels_lmer.tools.predict import selected_terms

RTOL = 1e-6
CASES = [
    "intercept_w",
    "slope_off_ml",
    "crossed_w_off",
    "nested_w_ml",
    "uncorr_singular",
    "slope_crossed_off",
    "singular_w_ml",
    "factor_x_ml",
    "large_mean_w",
]


@cache
def references() -> dict:
    return json.loads((FIXTURES / "fuzz_postfit.json").read_text())


def read_case(name: str) -> pd.DataFrame:
    data = pd.read_csv(FIXTURES / "data" / f"fuzz_postfit_{name}.csv")
    return data.astype({"g": "Int64", "f": pd.CategoricalDtype(list("abcd"))})


def r_name(name: str) -> str:
    """Our (patsy's) name of an lme4 coefficient: ``fb:x`` -> ``f[T.b]:x``."""
    name = "Intercept" if name == "(Intercept)" else name
    return re.sub(r"\bf([a-d])\b", r"f[T.\1]", name)


def keywords(ref: dict) -> dict:
    return {
        **({"weights": "w"} if ref["weights"] else {}),
        **({"offset": "o"} if ref["offset"] else {}),
    }


@cache
def fitted(name: str):
    """(data, lme4 reference, our fit, our results at lme4's theta)."""
    ref = references()[name]
    data = read_case(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits
        fit = sml.lmer(ref["formula"], data, REML=ref["REML"], **keywords(ref))
    at_lme4 = fit.model.results_at(np.atleast_1d(ref["theta"]), reml=ref["REML"])
    return data, ref, fit, at_lme4


def newdata(name: str) -> pd.DataFrame:
    return read_case(f"{name}_new")


def fixef_reference(values: dict) -> pd.Series:
    series = pd.Series(values, dtype=float)
    series.index = series.index.map(r_name)
    return series


def assert_close(ours, theirs, rtol: float = RTOL) -> None:
    """Relative agreement, with an absolute floor of rtol for values near 0."""
    np.testing.assert_allclose(
        np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float), rtol=rtol, atol=rtol
    )


@pytest.mark.parametrize("name", CASES)
def test_rows_design_and_counts(name: str) -> None:
    """Same rows dropped for missing values, same model matrix, nobs and df.residual."""
    _, ref, fit, _ = fitted(name)
    np.testing.assert_array_equal(np.asarray(fit.model.data.row_labels), ref["rows"])
    assert fit.nobs == ref["nobs"]
    assert fit.df_resid == ref["df_residual"]
    X = pd.DataFrame(ref["X"], columns=[r_name(c) for c in ref["X_names"]])
    ours = pd.DataFrame(np.asarray(fit.model.exog), columns=fit.model.exog_names)
    assert sorted(ours.columns) == sorted(X.columns)  # "d" of f, never used, has no column
    np.testing.assert_array_equal(ours[X.columns].to_numpy(), X.to_numpy())


@pytest.mark.parametrize("name", CASES)
def test_fit_reaches_lme4(name: str) -> None:
    """lme4's log-likelihood (lme4 with rhoend 1e-12); fixed effects within 1e-4 SE."""
    _, ref, fit, _ = fitted(name)
    assert fit.llf == pytest.approx(ref["logLik"], rel=1e-8)
    fixef = fixef_reference(ref["fixef"])
    gap = (fit.params[fixef.index] - fixef) / fit.bse[fixef.index]
    assert np.abs(gap).max() < 1e-4
    assert fit.is_singular() == ref["singular"]


@pytest.mark.parametrize("name", CASES)
def test_likelihood_summaries(name: str) -> None:
    """logLik, AIC, BIC, ML deviance, REMLcrit, sigma, vcov, VarCorr at lme4's theta."""
    _, ref, _, res = fitted(name)
    assert_close(
        [res.llf, res.aic, res.bic, res.deviance, res.sigma],
        [ref["logLik"], ref["AIC"], ref["BIC"], ref["deviance_ml"], ref["sigma"]],
    )
    assert res.n_params == ref["df_logLik"]
    if ref["REML"]:
        assert res.reml_criterion == pytest.approx(ref["REMLcrit"], rel=RTOL)
    fixef = fixef_reference(ref["fixef"])
    assert_close(res.params[fixef.index], fixef)
    vcov = pd.DataFrame(ref["vcov"], index=fixef.index, columns=fixef.index)
    assert_close(res.cov_params().loc[fixef.index, fixef.index], vcov)
    varcorr = pd.DataFrame(ref["varcorr"])
    assert_close(res.varcorr["vcov"], varcorr["vcov"])
    assert_close(res.varcorr["sdcor"], varcorr["sdcor"])


@pytest.mark.parametrize("name", CASES)
def test_fitted_residuals_hatvalues(name: str) -> None:
    """fitted, residuals of every type and scaling, predict(), hatvalues."""
    _, ref, _, res = fitted(name)
    assert_close(res.fittedvalues, ref["fitted"])
    assert_close(res.predict(), ref["predict_fitted"])
    assert_close(res.resid, ref["resid_response"])
    # lme4's "working" is its "response" residual and "deviance" its "pearson" one
    assert_close(res.residuals("response"), ref["resid_working"])
    assert_close(res.residuals("pearson"), ref["resid_pearson"])
    assert_close(res.residuals("pearson"), ref["resid_deviance"])
    assert_close(res.residuals("pearson", scaled=True), ref["resid_pearson_scaled"])
    assert_close(res.residuals("response", scaled=True), ref["resid_response_scaled"])
    assert_close(res.hatvalues(), ref["hatvalues"])


def test_hatvalues_are_the_derivative_of_the_fitted_values() -> None:
    """h_i = d fitted_i / d y_i at fixed theta, weights and offset included."""
    _, _, _, res = fitted("crossed_w_off")
    model = res.model
    step = 1e-3
    y = np.asarray(model.endog, dtype=float)
    derivative = []
    fitted_values = np.asarray(res.fittedvalues)
    for i in (0, 7, 20):
        bumped = y.copy()
        bumped[i] += step
        moved = model.with_response(bumped).results_at(res.theta, reml=res.reml)
        derivative.append((np.asarray(moved.fittedvalues)[i] - fitted_values[i]) / step)
    # the fitted values are linear in y at fixed theta: round-off only
    np.testing.assert_allclose(derivative, res.hatvalues()[[0, 7, 20]], rtol=1e-8)


def test_hatvalues_by_blocks_of_rows_from_the_inverse_or_the_lu(monkeypatch) -> None:
    """The rows' quadratic forms come in blocks of rows, from the system's dense inverse
    (small systems) or its sparse LU: InstEval's hatvalues() formed one dense (q, n)
    array, 7.5 GB and 311 s (lme4: 19 s); now 0.7 GB and 8 s. Both paths agree."""
    _, ref, _, res = fitted("crossed_w_off")
    dense = res.hatvalues()
    monkeypatch.setattr(prediction, "DENSE_INVERSE_BYTES", 0)  # the sparse LU
    monkeypatch.setattr(prediction, "_BLOCK_BYTES", 8 * 3 * res.model.random_terms[0].n_levels)
    blocked = res.hatvalues()
    np.testing.assert_allclose(blocked, dense, rtol=1e-10, atol=1e-14)
    assert_close(blocked, ref["hatvalues"])


@pytest.mark.parametrize("name", CASES)
def test_ranef_coef(name: str) -> None:
    """Conditional modes and SDs (condVar) and coef() per level, at lme4's theta."""
    _, ref, _, res = fitted(name)
    theirs = pd.DataFrame(ref["ranef"]).replace({"term": {"(Intercept)": "Intercept"}})
    ours = res.ranef_table().astype({"grpvar": str, "term": str, "grp": str})
    merged = theirs.merge(ours, on=["grpvar", "term", "grp"], suffixes=("_lme4", ""))
    assert len(merged) == len(theirs) == len(ours)
    assert_close(merged["condval"], merged["condval_lme4"])
    assert_close(merged["condsd"], merged["condsd_lme4"])
    coefs = res.coef()
    assert sorted(coefs) == sorted(ref["coef"])
    for group, table in ref["coef"].items():
        expected = pd.DataFrame(
            table["values"], index=table["levels"], columns=[r_name(c) for c in table["names"]]
        )
        ours = coefs[group].set_axis(coefs[group].index.astype(str))
        assert_close(ours.loc[expected.index, expected.columns], expected)


@pytest.mark.parametrize("name", CASES)
def test_conditional_covariances_and_random_design(name: str) -> None:
    """lme4's postVar arrays, ngrps, and rows of Z Lambda Lambda' Z' (getME pieces)."""
    _, ref, _, res = fitted(name)
    terms = res.model.random_terms
    for group, post in (ref["postvar"] or {}).items():  # [] when every factor has two terms
        (index,) = [i for i, t in enumerate(terms) if t.group == group]
        q, _, n_levels = post["dim"]
        theirs = np.asarray(post["values"]).reshape((n_levels, q, q))  # R's column-major
        position = pd.Index(terms[index].levels.astype(str)).get_indexer(post["levels"])
        assert (position >= 0).all()
        assert_close(res.conditional_covariances[index][position], theirs)
    assert res.ngroups == ref["ngrps"]
    zl = sml.random_effects.scaled_z(terms, np.asarray(res.theta), res.model.theta_slices)
    marginal = (zl @ zl.T).toarray() if hasattr(zl, "toarray") else zl @ zl.T
    assert_close(np.diag(marginal), ref["zl_rows"]["diag"])
    assert_close(marginal.sum(axis=1), ref["zl_rows"]["row_sums"])


@pytest.mark.parametrize("name", CASES)
def test_predict_newdata(name: str) -> None:
    """New levels, re_formula "0" / NA / one term, offsets from newdata, NA rows.

    newdata: 8 fitted rows, 4 with new levels of g (and h), one with x missing,
    one with g missing, and an offset column of its own. lme4 reads the offset
    of new rows from ``offset(o)`` in the formula only; its ``offset =``
    argument is dropped for newdata (``predict_offset_argument``), whereas
    ours comes from the offset's column.
    """
    _, ref, _, res = fitted(name)
    new = newdata(name)
    population = res.predict(new, re_formula="0")
    assert_close(population, ref["predict_new_pop"])
    assert_close(res.predict(new, re_formula=np.nan), ref["predict_new_pop"])
    assert_close(res.predict(new.head(8)), ref["predict_known"])
    first = res.predict(new, re_formula=f"~ ({ref['first_bar']})", allow_new_levels=True)
    full = res.predict(new, allow_new_levels=True)
    assert list(full.index) == list(new.index)
    # the last row has g missing: with allow_new_levels a new level, as lme4 takes it
    assert np.isfinite(full.iloc[-1])
    assert_close(full, ref["predict_new"])
    assert_close(first, ref["predict_new_first"])
    assert np.isnan(res.predict(new.tail(1), re_formula=f"~ ({ref['first_bar']})").iloc[0]) == (
        "g" in ref["first_bar"]
    )  # without allow_new_levels: NaN (lme4 refuses the row)
    if ref["offset"]:
        without = np.asarray(ref["predict_offset_argument"], dtype=float)
        assert_close(full.iloc[:-1] - new["o"].iloc[:-1], without[:-1])


@pytest.mark.parametrize("name", CASES)
def test_confint_wald(name: str) -> None:
    _, ref, _, res = fitted(name)
    fixef = fixef_reference(ref["fixef"])
    ours = res.confint(method="wald").loc[fixef.index]
    assert_close(ours, np.asarray(ref["confint_wald"]))


def profile_rows(name: str) -> tuple[pd.DataFrame, np.ndarray]:
    _, ref, fit, _ = fitted(name)
    theirs = ref["confint_profile"]
    n_var = sum(n.startswith(("sd_", "cor_", "sigma")) for n in theirs["names"])
    ours = fit.confint()
    order = list(ours.index[:n_var]) + [r_name(n) for n in theirs["names"][n_var:]]
    return ours.loc[order], np.asarray(theirs["values"], dtype=float)


def test_confint_profile_slopes() -> None:
    """Profile intervals of a random-slope ML fit with an offset.

    lme4 interpolates a spline through profile points 0.02 zeta apart; near
    the correlation's bound of -1 that interpolation moves the lower limit of
    .sig02 by 3e-5 when lme4's grid is made four times finer (-0.92910 to
    -0.92908; ours -0.92895), so that one limit is held to 2e-4.
    """
    ours, theirs = profile_rows("slope_off_ml")
    values = ours.to_numpy()
    assert abs(values[1, 0] - theirs[1, 0]) < 2e-4
    mask = np.ones_like(values, dtype=bool)
    mask[1, 0] = False
    # profile limits are found by root finding on an interpolated zeta: 1e-5
    np.testing.assert_allclose(values[mask], theirs[mask], rtol=1e-5)


def test_confint_profile_singular_fit() -> None:
    """At a singular fit (.sig01 = 0) the variance limits agree with lme4's.

    lme4's fixed-effect intervals there are 0.16 to 0.78 times as wide as the
    Wald intervals (x: [0.570, 0.704] around 0.573, Wald [0.150, 0.995]),
    lme4's profile failing at the boundary; ours are within 10% of the Wald
    widths, as the nearly quadratic likelihood in beta implies.
    """
    ours, theirs = profile_rows("intercept_w")
    assert_close(ours.iloc[:2], theirs[:2], rtol=1e-5)
    _, _, fit, _ = fitted("intercept_w")
    fixed = ours.iloc[2:]
    wald = fit.confint(method="wald").loc[fixed.index]
    wald_width = (wald.iloc[:, 1] - wald.iloc[:, 0]).to_numpy()
    ours_width = (fixed.iloc[:, 1] - fixed.iloc[:, 0]).to_numpy()
    np.testing.assert_allclose(ours_width / wald_width, 1, atol=0.1)
    assert ((theirs[2:, 1] - theirs[2:, 0]) / wald_width).min() < 0.2


@pytest.mark.parametrize("name", CASES)
def test_refit_update_refit_ml(name: str) -> None:
    """refit(new response), update(. ~ . - x) and refit_ml against fresh lme4 fits.

    Both refit and update keep the fitted rows (update's documented data),
    so lme4's references are fresh fits to those rows; lme4's own
    refit(m, newresp) stopped up to 3.9 log-likelihood units lower here
    (from a boundary start).
    """
    data, ref, fit, _ = fitted(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refitted = fit.refit(data["y2"].to_numpy()[ref["rows"]])
        updated = fit.update(ref["update"]["formula"])
        ml = fit.refit_ml()
    assert refitted.llf == pytest.approx(ref["refit"]["logLik"], rel=1e-8)
    fixef = fixef_reference(ref["refit"]["fixef"])
    assert np.abs((refitted.params[fixef.index] - fixef) / refitted.bse[fixef.index]).max() < 1e-4
    assert updated.nobs == ref["update"]["nobs"]
    assert updated.llf == pytest.approx(ref["update"]["logLik"], rel=1e-8)
    assert ml.llf == pytest.approx(ref["refit_ml"]["logLik"], rel=1e-8)


def first_term_variance(res, re_formula: str) -> np.ndarray:
    """``z' Sigma z`` per fitted row of the term ``re_formula`` selects."""
    ((index, _),) = selected_terms(res.model, re_formula)
    Z = res.model.random_terms[index].Z
    return np.einsum("ij,jk,ik->i", Z, res.term_covariance(index), Z)


SEVERAL_TERMS = ["crossed_w_off", "nested_w_ml", "uncorr_singular", "slope_crossed_off"]
SIMULATIONS = [(name, use_u) for name in CASES for use_u in (False, True)] + [
    (name, "first") for name in [*SEVERAL_TERMS, "large_mean_w"]
]


@pytest.mark.parametrize(("name", "use_u"), SIMULATIONS)
def test_simulate_moments(name: str, use_u) -> None:
    """Means and variances of 4000 simulations per row against lme4's 4000.

    Each difference is divided by its simulation SE (variance of a mean
    ``v / n``; of a sample variance ``2 v^2 / (n - 1)``, both samples); the
    largest of 2 x 2 x (25 to 66) z values is held below 4.5. lme4 1.1-31's
    simulate draws the residual as ``sigma e`` whatever the prior weights; ours
    is ``sigma e / sqrt(w)``, the fitted model's: lme4's variances are shifted by
    ``sigma^2 (1 / w - 1)`` before the comparison.

    ``"first"``: conditional on the first random term only (lme4's ``re.form``),
    for models with several. The means are lme4's; the variances are those of
    lme4's unconditional simulation less the first term's ``z' Sigma z``:
    lme4 1.1-31 draws the other terms with the first term's covariance factor
    (on crossed_w_off without weights, ``re.form = ~(1 | g)`` gave variances of
    1.653, ``sigma^2 + sigma_g^2``, instead of ``sigma^2 + sigma_h^2`` = 1.786).
    """
    _, ref, _, res = fitted(name)
    if use_u == "first":
        re_formula = f"~ ({ref['first_bar']})"
        sims = res.simulate(4000, seed=7, re_formula=re_formula).to_numpy()
        mean = np.asarray(ref["sim_first"]["mean"])
        lme4_var = np.asarray(ref["sim"]["var"]) - first_term_variance(res, re_formula)
    else:
        sims = res.simulate(4000, seed=7, use_u=use_u).to_numpy()
        theirs = ref["sim_u" if use_u else "sim"]
        mean, lme4_var = np.asarray(theirs["mean"]), np.asarray(theirs["var"])
    n = sims.shape[1]
    var = lme4_var
    if res.model.weights is not None:
        var = lme4_var + res.sigma**2 * (1 / res.model.weights - 1)
    ours_var = sims.var(axis=1, ddof=1)
    z_mean = (sims.mean(axis=1) - mean) / np.sqrt((lme4_var + ours_var) / n)
    z_var = (ours_var - var) / np.sqrt(2 * (lme4_var**2 + ours_var**2) / (n - 1))
    assert np.abs(z_mean).max() < 4.5
    assert np.abs(z_var).max() < 4.5


@pytest.mark.parametrize("name", ["crossed_w_off", "slope_crossed_off", "nested_w_ml"])
def test_pickle_and_data_unchanged(name: str) -> None:
    """Unpickled results predict the same; the caller's frames are unchanged."""
    data, _, fit, _ = fitted(name)
    assert data.equals(read_case(name))
    new = newdata(name)
    copy = new.copy(deep=True)
    expected = fit.predict(new, allow_new_levels=True)
    pd.testing.assert_frame_equal(new, copy)
    restored = pickle.loads(pickle.dumps(fit))
    pd.testing.assert_series_equal(restored.predict(new, allow_new_levels=True), expected)
    np.testing.assert_array_equal(restored.hatvalues(), fit.hatvalues())
    pd.testing.assert_frame_equal(restored.ranef_table(), fit.ranef_table())


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (lambda d: d.drop(columns="x"), UnknownColumnError, "'x'"),
        (lambda d: d.drop(columns="o"), UnknownColumnError, "'o'"),
        (lambda d: d.drop(columns="g"), UnknownColumnError, "'g'"),
        (lambda d: d.assign(f="zz"), DataError, "'zz'"),
        (lambda d: d.assign(x=d["x"].astype(str)), DataError, "column 'x'"),
        (lambda d: d, DataError, "101, 102, 103"),
    ],
)
def test_bad_newdata_names_the_problem(change, error, words: str) -> None:
    _, _, fit, _ = fitted("slope_crossed_off")
    with pytest.raises(error, match=re.escape(words)):
        fit.predict(change(newdata("slope_crossed_off")))


def test_bad_predict_arguments_name_the_problem() -> None:
    _, _, fit, _ = fitted("slope_crossed_off")
    new = newdata("slope_crossed_off")
    with pytest.raises(DataError, match=r"one value per row of newdata \(14\)"):
        fit.predict(new, offset=np.zeros(3), allow_new_levels=True)
    with pytest.raises(FormulaError, match=r"\(1 \| zz\)"):
        fit.predict(new, re_formula="~ (1 | zz)")


def test_large_mean_response_keeps_its_digits() -> None:
    """A response of mean 1e5 and spread 1 fits as the same response shifted to 0.

    The engine read the pwrss off the Cholesky factor of the cross-products of
    ``[Z X y]``, ``y'Wy`` minus the fitted part: with y around 1e5 it kept only
    ~10 of 16 digits. At lme4's theta sigma was 1.0525248 (lme4 1.0525283,
    3.3e-6 relative) and the fitted log-likelihood -60.015344 (lme4 -60.015236);
    now the sums are of ``y - X beta_ols``, and both agree to 1e-12.
    """
    data, ref, fit, res = fitted("large_mean_w")
    centred = data.assign(y=data["y"] - 1e5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shifted = sml.lmer(ref["formula"], centred, REML=ref["REML"], weights="w")
    at_theta = shifted.model.results_at(res.theta, reml=ref["REML"])
    assert res.sigma == pytest.approx(at_theta.sigma, rel=1e-10)
    assert res.llf == pytest.approx(at_theta.llf, rel=1e-10)
    expected = at_theta.params.copy()
    expected["Intercept"] += 1e5
    # y near 1e5 is stored to about 1e-11 (and so is y - 1e5): slopes agree to that
    np.testing.assert_allclose(res.params, expected, rtol=1e-12, atol=1e-9)
    assert fit.llf == pytest.approx(shifted.llf, rel=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit = fit.refit(np.asarray(fit.model.endog) + 1.0)  # the refit path's sums too
    assert refit.llf == pytest.approx(shifted.llf, rel=1e-9)


def test_cooks_distance_from_the_leverages_as_lme4() -> None:
    """lme4's cooks.distance(m) (MixedModels.jl tests it): (r / (1 - h))^2 h / (sigma^2 p),
    at lme4's theta; lme4 1.1-31's values of the first six rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sml.Lmer.from_formula(
            "Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy")
        )
        res = model.results_at([0.966741773967, 0.015169058896, 0.230909953208])
    expected = [0.00496313251482, 0.04020620185561, 0.22609918475812]
    expected += [0.00731324699133, 0.05057304171421, 0.36195137318203]
    np.testing.assert_allclose(res.cooks_distance()[:6], expected, rtol=1e-8)
