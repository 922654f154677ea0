"""Exact (R)LRT for one variance component against RLRsim 3.1-8 (tests/fixtures/rlrsim.json).

The fixture (make_rlrsim_fixtures.R) holds, for each case, the eigenvalues RLRsim
passes to its simulator, the observed statistic, and summaries of the simulated
null distribution at 1e4, 1e5 and 1e6 draws with R's random numbers. The
deterministic parts (eigenvalues, statistic) must agree to rounding; the
simulated distribution can only agree within Monte Carlo error, because R's
random stream cannot be reproduced in Python.

Monte Carlo tolerance. We draw ``NSIM = 10_000`` values and compare them with
R's 1e6-draw reference. For a reference quantile ``q_p`` the share of our draws
at or below ``q_p`` is a binomial proportion with standard error
``sqrt(p (1 - p) / NSIM)``; R's own quantile carries an error of the same form
with 1e6 draws. We accept ``|F_ours(q_p) - p| <= 4 * sqrt(p (1 - p) (1/NSIM +
1/1e6))`` (four standard errors: a false alarm has probability about 6e-5 per
comparison; with a fixed seed the test is deterministic anyway). The same bound
applies to the point mass at zero and to the p-value. The mean is compared within
four standard errors of the sample mean.
"""

from __future__ import annotations

import json
import warnings
from functools import cache

import numpy as np
import pytest
import statsmodels.formula.api as smf
from conftest import FIXTURES
from statsmodels.tools.sm_exceptions import HypothesisTestWarning

import statsmodels_lmer as sml
from statsmodels_lmer.inference.exact_lrt import (
    LambdaGrid,
    exact_lrt,
    exact_rlrt,
    null_eigenvalues,
    simulate_null,
)

NSIM = 10_000
REFERENCE = "nsim_1000000"
SEED = 20240611


@cache
def cases() -> dict:
    return json.loads((FIXTURES / "rlrsim.json").read_text())["cases"]


def data_for(formula: str):
    name = {"Yield": "Dyestuff", "Reaction": "sleepstudy", "MathAch": "hsb"}[formula.split()[0]]
    return sml.datasets.load(name)


@cache
def fit(formula: str, reml: bool):
    return sml.lmer(formula, data_for(formula), REML=reml)


@cache
def run(name: str):
    case = cases()[name]
    f = case["formula_m"]
    if case["test"] == "exactLRT":
        return exact_lrt(fit(f, False), nsim=NSIM, seed=SEED, progress=False)
    if "formula_mA" in case:
        alt, null = fit(case["formula_mA"], True), fit(case["formula_m0"], True)
        return exact_rlrt(fit(f, True), alt, null, nsim=NSIM, seed=SEED, progress=False)
    return exact_rlrt(fit(f, True), nsim=NSIM, seed=SEED, progress=False)


def mc_bound(p: float, nsim: int = NSIM, nref: int = 1_000_000) -> float:
    return 4.0 * np.sqrt(p * (1.0 - p) * (1.0 / nsim + 1.0 / nref))


NAMES = sorted(json.loads((FIXTURES / "rlrsim.json").read_text())["cases"])


@pytest.mark.parametrize("name", NAMES)
def test_eigenvalues_are_rlrsims(name):
    case = cases()[name]
    result = run(name)
    assert (result.n, result.p) == (case["n"], case["p"])
    np.testing.assert_allclose(result.mu, case["mu"], rtol=0, atol=1e-12)
    if "xi" in case:
        np.testing.assert_allclose(result.xi, case["xi"], rtol=0, atol=1e-12)
    model = fit(case["formula_m"], case["REML"]).model
    mu, xi = null_eigenvalues(model.exog, model.random_terms[0].z_matrix())
    np.testing.assert_allclose(mu, case["mu_unnormalized"], rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(xi, case["xi_unnormalized"], rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_statistic_is_rlrsims(name):
    # Differences of optimized criteria: our optima agree with lme4's to ~1e-9.
    ref = cases()[name]["simulations"][REFERENCE]["statistic"]
    assert run(name).statistic == pytest.approx(ref, rel=1e-8, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_null_distribution_matches_rlrsim_within_monte_carlo_error(name):
    ref = cases()[name]["simulations"][REFERENCE]
    result = run(name)
    assert result.nsim == NSIM
    for label, q in ref["null_quantiles"].items():
        p = float(label)
        if q == 0:  # inside the point mass at zero: compared through prop_zero
            continue
        share = float(np.mean(result.sample <= q))
        assert abs(share - p) <= mc_bound(p), (label, share)
    pz = ref["prop_zero"]
    assert abs(result.prop_zero - pz) <= mc_bound(pz)
    se_mean = result.sample.std(ddof=1) / np.sqrt(NSIM)
    assert abs(result.sample.mean() - ref["mean"]) <= 4 * se_mean
    p_ref = ref["p_value"]
    assert abs(result.pvalue - p_ref) <= max(mc_bound(p_ref), 1e-12)


def test_same_seed_same_sample_and_balanced_cases_share_their_distribution():
    # (a) and (c) of the fixture have the same n, p and eigenvalues: R draws the same
    # sample for both, and so do we.
    a, c = run("sleepstudy_slope_rlrt"), run("sleepstudy_intercept_rlrt")
    np.testing.assert_allclose(a.sample, c.sample, rtol=1e-10, atol=1e-12)  # mu to rounding
    again = exact_rlrt(fit("Yield ~ 1 + (1 | Batch)", True), nsim=500, seed=3, progress=False)
    other = exact_rlrt(fit("Yield ~ 1 + (1 | Batch)", True), nsim=500, seed=3, progress=False)
    np.testing.assert_array_equal(again.sample, other.sample)


def loop_statistic(mu, xi, n, p, q, w2, rest, extra, lam):
    """RLRsim's C++ loop for one draw, written out: walk the grid, stop at the first decrease."""
    reml = xi is None
    n0 = n - p if reml else n
    penalty_eigs = mu if reml else xi
    best = 0.0
    for value in lam[1:]:
        num = sum(value * m / (1 + value * m) * w for m, w in zip(mu, w2))
        den = sum(w / (1 + value * m) for m, w in zip(mu, w2)) + rest
        f = n0 * np.log(1 + num / den) - sum(np.log(1 + value * e) for e in penalty_eigs)
        if f >= best:
            best = f
        else:
            break
    if not reml and q > 0:
        best += n * np.log(1 + extra / (sum(w2) + rest))
    return best


@pytest.mark.parametrize("reml", [True, False])
def test_vectorized_grid_search_is_rlrsims_loop(reml):
    mu = np.array([1.0, 0.6, 0.3, 0.0])
    xi = None if reml else np.array([1.0, 0.8, 0.5, 0.4])
    n, p, q, nsim = 15, 2, 0 if reml else 1, 40
    grid = LambdaGrid()
    out = simulate_null(mu, n, p, nsim, np.random.default_rng(7), xi, q, grid, progress=False)
    rng = np.random.default_rng(7)  # the same draws, in simulate_null's order
    rest = rng.chisquare(n - p - mu.size, nsim)
    w2 = rng.chisquare(1.0, (nsim, mu.size))
    extra = rng.chisquare(q, nsim) if q else np.zeros(nsim)
    expected = [
        loop_statistic(mu, xi, n, p, q, w2[i], rest[i], extra[i], grid.values())
        for i in range(nsim)
    ]
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    if reml:  # the point mass at zero is there (the LRT's fixed-effect part moves it)
        assert np.mean(out == 0) > 0.2


def test_statistic_zero_gives_pvalue_one_and_warns_about_mass_at_zero():
    # Dyestuff2 has a zero variance estimate: RLRT = 0, p = 1 (RLRsim does not simulate).
    res = sml.lmer("Yield ~ 1 + (1 | Batch)", sml.datasets.load("Dyestuff2"), check_conv=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HypothesisTestWarning)
        result = res.exact_rlrt(nsim=200, seed=1, progress=False)
    assert result.statistic == 0.0
    assert result.pvalue == 1.0
    # a grid whose first step is huge: f < 0 there for nearly every draw
    with pytest.warns(HypothesisTestWarning, match="mass .* at zero"):
        exact_rlrt(res, nsim=50, seed=1, grid=LambdaGrid(10, 11, 3), progress=False)


def test_results_methods_and_ols_null_model():
    res = fit("Reaction ~ Days + (1 | Subject)", False)
    data = data_for("Reaction")
    by_method = res.exact_lrt(nsim=300, seed=2, progress=False)
    ols = smf.ols("Reaction ~ Days", data).fit()
    with_ols = res.exact_lrt(ols, nsim=300, seed=2, progress=False)
    assert with_ols.statistic == pytest.approx(by_method.statistic, rel=1e-10)
    np.testing.assert_array_equal(with_ols.sample, by_method.sample)
    # q = 1 fixed effect tested along: the null distribution moves right
    smaller = smf.ols("Reaction ~ 1", data).fit()
    joint = res.exact_lrt(smaller, nsim=2000, seed=2, progress=False)
    assert joint.q == 1
    assert joint.statistic == pytest.approx(2 * (res.llf - smaller.llf), rel=1e-12)
    assert joint.sample.mean() > by_method.sample.mean() + 0.5
    text = repr(joint)
    assert "LRT =" in text and "2000 simulated values" in text


def test_reml_fit_is_refitted_for_the_lrt_and_ml_fit_for_the_rlrt():
    reml, ml = fit("Yield ~ 1 + (1 | Batch)", True), fit("Yield ~ 1 + (1 | Batch)", False)
    a = exact_lrt(reml, nsim=100, seed=1, progress=False)
    b = exact_lrt(ml, nsim=100, seed=1, progress=False)
    assert a.statistic == pytest.approx(b.statistic, rel=1e-7)
    c = exact_rlrt(ml, nsim=100, seed=1, progress=False)
    d = exact_rlrt(reml, nsim=100, seed=1, progress=False)
    assert c.statistic == pytest.approx(d.statistic, rel=1e-7)


def test_weights_enter_the_eigenvalues_through_the_square_root():
    rng = np.random.default_rng(4)
    X = np.column_stack([np.ones(12), rng.normal(size=12)])
    Z = np.kron(np.eye(4), np.ones((3, 1)))
    w = rng.uniform(0.5, 2.0, 12)
    mu, xi = null_eigenvalues(X, Z, w)
    root = np.sqrt(w)[:, None]
    Xw, Zw = X * root, Z * root
    p0 = np.eye(12) - Xw @ np.linalg.solve(Xw.T @ Xw, Xw.T)
    np.testing.assert_allclose(
        mu, np.clip(np.linalg.eigvalsh(Zw.T @ p0 @ Zw)[::-1], 0, None), atol=1e-12
    )
    np.testing.assert_allclose(xi, np.linalg.eigvalsh(Zw.T @ Zw)[::-1], atol=1e-12)


def test_bad_input_is_refused_clearly():
    full = fit("Reaction ~ Days + (Days | Subject)", True)
    with pytest.raises(ValueError, match="exactly one random effect with one variance parameter"):
        exact_rlrt(full, nsim=10)
    m = fit("Reaction ~ Days + (0 + Days | Subject)", True)
    with pytest.raises(ValueError, match="give both"):
        exact_rlrt(m, m_alt=full, nsim=10)
    m0 = fit("Reaction ~ Days + (1 | Subject)", True)
    with pytest.raises(ValueError, match="exactly one variance parameter more"):
        exact_rlrt(m, full, m0, nsim=10)
    other = fit("Reaction ~ 1 + (1 | Subject)", True)
    with pytest.raises(ValueError, match="same fixed effects"):
        exact_rlrt(m, m0, other, nsim=10)
    with pytest.raises(TypeError, match="nsim"):
        exact_rlrt(m0, nsim=10.5)
    with pytest.raises(ValueError, match="nsim"):
        exact_rlrt(m0, nsim=0)
