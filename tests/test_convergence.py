"""lme4's convergence checks, boundary handling and the scale check.

Reference: tests/fixtures/lme4_tools.json, section ``convergence_warning``
(make_tools_fixtures.R): lme4 1.1-31's ``optinfo$derivs`` at its own theta,
the scaled gradient, the Hessian eigenvalues and the exact warning texts for
``Reaction ~ Days2 + (Days2 | Subject)`` with ``Days2 = Days * 100`` (and
``* 1000``), and a clean model without any message.

Our optimizer may stop at a better optimum than lme4 on the badly scaled
model, so the derivative checks are compared at lme4's recorded theta.
"""

from __future__ import annotations

import json
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
from conftest import FIXTURES, crossed_frame
from statsmodels.tools.sm_exceptions import ConvergenceWarning, ValueWarning

import statsmodels_lmer as sml
from statsmodels_lmer.engine.gradient import (
    ProfiledGradient,
    gradient_available,
    jacobian_of_gradient,
)
from statsmodels_lmer.exceptions import LmerConvergenceWarning, SingularFitWarning
from statsmodels_lmer.fitting import optimizers
from statsmodels_lmer.fitting.convergence import (
    SINGULAR_MESSAGE,
    check_conv,
    check_hessian,
    deriv12,
    scaled_gradient,
)
from statsmodels_lmer.fitting.fit import convergence_derivatives
from statsmodels_lmer.fitting.options import FitOptions
from statsmodels_lmer.fitting.run import local_verification, optimize_lmer, quadratic_model
from statsmodels_lmer.frame import SCALE_MESSAGE, check_scale_x


@cache
def conv_fixture() -> dict:
    return json.loads((FIXTURES / "lme4_tools.json").read_text())["convergence_warning"]


def conv_cases() -> dict[str, dict]:
    section = conv_fixture()
    cases = [section["warning_model"], section["clean_model"]]
    cases += section["additional_warning_models"]
    return {case["name"]: case for case in cases}


def case_model(case: dict) -> sml.Lmer:
    data = sml.datasets.load(case["dataset"])
    derived = case.get("derived_column")
    if derived:
        data = data.assign(**{derived["column"]: data.eval(derived["expr"])})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ValueWarning)  # the scale check, tested below
        return sml.Lmer.from_formula(case["formula"], data)


def fit_recording(model: sml.Lmer, **kwargs):
    """Fit and return (results, [(category, text), ...]) of every warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(**kwargs)
    return res, [(w.category, str(w.message)) for w in caught]


# -- derivatives and checks at lme4's theta ----------------------------------
@pytest.mark.parametrize("name", sorted(conv_cases()))
def test_deriv12_matches_lme4_at_its_theta(name):
    case = conv_cases()[name]
    model = case_model(case)
    derivs = deriv12(model.devfun(case["REML"]), case["theta"], fx=case["objective"])
    np.testing.assert_allclose(derivs["gradient"], case["gradient"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(derivs["Hessian"], case["Hessian"], rtol=1e-4)
    np.testing.assert_allclose(derivs["Hessian"], derivs["Hessian"].T)


@pytest.mark.parametrize("name", sorted(conv_cases()))
def test_check_conv_reproduces_lme4_messages_at_its_theta(name):
    case = conv_cases()[name]
    model = case_model(case)
    derivs = deriv12(model.devfun(case["REML"]), case["theta"], fx=case["objective"])
    conv = check_conv(derivs, np.asarray(case["theta"]), model.theta_lower)
    assert conv.max_grad == pytest.approx(case["max_grad"], rel=1e-4, abs=1e-7)
    np.testing.assert_allclose(conv.scaled_gradient, case["scaled_gradient"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(conv.hessian_eigenvalues, case["hessian_eigenvalues"], rtol=1e-4)
    assert conv.messages == case["conv_lme4_messages"]
    assert conv.code == case["conv_lme4_code"]
    # the warnings lme4 raised, minus the scale warning that comes from the model frame
    expected = [text for text in case["warnings"] if text != SCALE_MESSAGE]
    assert conv.warnings == expected
    assert conv.failed == bool(case["warnings"])
    assert not conv.singular


def test_warning_text_of_the_fixture_model():
    case = conv_cases()["sleepstudy_days100"]
    assert case["warnings"][0] == (
        "Model failed to converge with max|grad| = 2.70086 (tol = 0.002, component 1)"
    )
    model = case_model(case)
    derivs = deriv12(model.devfun(True), case["theta"], fx=case["objective"])
    conv = check_conv(derivs, np.asarray(case["theta"]), model.theta_lower)
    assert conv.warnings[0] == case["warnings"][0]
    assert conv.component == 1


# -- fitting -----------------------------------------------------------------
def test_badly_scaled_model_warns_with_figures():
    case = conv_cases()["sleepstudy_days100"]
    model = case_model(case)
    # (no match=: pytest.warns would re-emit the non-matching gradient warning)
    with pytest.warns(LmerConvergenceWarning) as record:
        res = model.fit(reml=True)
    info = res.optinfo
    texts = [str(w.message) for w in record if issubclass(w.category, LmerConvergenceWarning)]
    assert texts == info["warnings"]
    assert "Model is nearly unidentifiable: very large eigenvalue\n - Rescale variables?" in texts
    # at least as good an optimum as lme4's
    assert res.objective <= case["objective"] + 1e-8
    conv = info["conv"]
    assert 2 in conv["code"]
    assert conv["hessian_eigenvalues"][0] > 1e6
    assert set(info["derivs"]) == {"gradient", "Hessian"}
    assert info["derivs"]["Hessian"].shape == (3, 3)
    # the converged flag follows the gradient check (codes 2/3 alone do not fail a fit)
    assert res.converged == (conv["max_grad"] <= 2e-3)
    if not res.converged:
        assert any(t.startswith("Model failed to converge with max|grad| = ") for t in texts)


def test_convergence_warning_is_a_statsmodels_convergence_warning():
    assert issubclass(LmerConvergenceWarning, ConvergenceWarning)


def test_clean_model_has_no_warning_and_lme4_derivatives():
    case = conv_cases()["sleepstudy_reml"]
    res, caught = fit_recording(case_model(case), reml=True)
    assert caught == []
    assert res.converged
    info = res.optinfo
    assert info["warnings"] == []
    assert info["conv"]["messages"] == []
    assert info["conv"]["code"] == []
    assert info["conv"]["max_grad"] < 2e-3
    # same optimum as lme4 to ~1e-6 in theta, so the Hessians agree to FD accuracy
    np.testing.assert_allclose(info["derivs"]["Hessian"], case["Hessian"], rtol=1e-3)
    np.testing.assert_allclose(info["derivs"]["gradient"], 0.0, atol=2e-3)


def test_singular_fit_warns_and_skips_derivative_checks():
    data = sml.datasets.load("Dyestuff2")
    model = sml.Lmer.from_formula("Yield ~ 1 + (1 | Batch)", data)
    with pytest.warns(SingularFitWarning) as record:
        res = model.fit()
    assert [str(w.message) for w in record] == [SINGULAR_MESSAGE]
    assert SINGULAR_MESSAGE.startswith("boundary (singular) fit: ")
    assert "res.is_singular()" in SINGULAR_MESSAGE and "docs/checks.md" in SINGULAR_MESSAGE
    assert res.converged
    assert res.is_singular()
    conv = res.optinfo["conv"]
    assert conv["singular"]
    assert conv["messages"] == [SINGULAR_MESSAGE]
    assert conv["max_grad"] is None
    assert res.optinfo["warnings"] == [SINGULAR_MESSAGE]


def test_check_conv_and_calc_derivs_switches():
    case = conv_cases()["sleepstudy_days100"]
    model = case_model(case)
    res, caught = fit_recording(model, check_conv=False)
    assert caught == []
    assert res.optinfo["conv"] is None
    assert res.optinfo["derivs"] is not None
    res, caught = fit_recording(model, calc_derivs=False)
    assert caught == []
    assert res.optinfo["derivs"] is None
    assert res.optinfo["conv"]["messages"] == []
    assert res.optinfo["control"]["calc_derivs"] is False


def test_lmer_passes_control_keywords():
    case = conv_cases()["sleepstudy_days100"]
    data = sml.datasets.load("sleepstudy").assign(Days2=lambda d: d["Days"] * 100)
    res = sml.lmer(case["formula"], data, check_conv=False, boundary_tol=0.0)
    assert res.optinfo["conv"] is None
    assert res.optinfo["control"]["boundary_tol"] == 0.0


def test_tolerances_are_used():
    case = conv_cases()["sleepstudy_reml"]
    model = case_model(case)
    with pytest.warns(LmerConvergenceWarning, match=r"max\|grad\| = .* \(tol = 1e-12,"):
        res = model.fit(grad_tol=1e-12)
    assert not res.converged
    assert res.optinfo["conv"]["failed"]


# -- check_hessian and friends -------------------------------------------------
def test_hessian_with_negative_eigenvalue():
    codes, messages, ev = check_hessian(np.diag([2.0, -1.0]))
    assert codes == [-3]
    assert messages == ["Model failed to converge: degenerate  Hessian with 1 negative eigenvalues"]
    np.testing.assert_allclose(ev, [2.0, -1.0])


def test_numerically_singular_hessian():
    codes, messages, _ = check_hessian(np.diag([2.0, 1e-9]))
    assert codes == [-4]
    assert messages == ["Hessian is numerically singular: parameters are not uniquely determined"]


def test_large_eigenvalue_ratio_and_very_large_eigenvalue():
    codes, messages, _ = check_hessian(np.diag([1e7, 1.0]))
    assert codes == [2, 3]
    assert messages == [
        "Model is nearly unidentifiable: very large eigenvalue\n - Rescale variables?",
        "Model is nearly unidentifiable: large eigenvalue ratio\n - Rescale variables?",
    ]
    assert check_hessian(np.diag([3.0, 1.0]))[:2] == ([], [])


def test_gradient_check_uses_the_smaller_of_scaled_and_plain_gradient():
    # flat curvature: scaled gradient large, plain gradient tiny -> no warning
    derivs = {"gradient": np.array([1e-4]), "Hessian": np.array([[1e-4]])}
    assert scaled_gradient(derivs["gradient"], derivs["Hessian"])[0] == pytest.approx(1e-2)
    conv = check_conv(derivs, np.array([1.0]), np.array([0.0]), hess_tol=1e-9)
    assert conv.max_grad == pytest.approx(1e-4)
    assert not conv.failed


def test_unable_to_scale_gradient_and_nan_gradient():
    derivs = {"gradient": np.array([1.0, 1.0]), "Hessian": np.diag([1.0, -1.0])}
    conv = check_conv(derivs, np.array([1.0, 1.0]), np.zeros(2))
    assert conv.messages[0] == "unable to evaluate scaled gradient"
    assert conv.failed
    nan = {"gradient": np.array([np.nan]), "Hessian": np.array([[1.0]])}
    conv = check_conv(nan, np.array([1.0]), np.zeros(1))
    assert conv.code == [-5] and conv.messages == ["Gradient contains NAs"]


def test_deriv12_on_a_quadratic():
    A = np.array([[3.0, 1.0], [1.0, 2.0]])

    def f(x):
        return 0.5 * x @ A @ x + x[0]

    derivs = deriv12(f, [0.5, -1.0])
    np.testing.assert_allclose(derivs["Hessian"], A, rtol=1e-6)
    np.testing.assert_allclose(derivs["gradient"], A @ [0.5, -1.0] + [1.0, 0.0], rtol=1e-8)


# -- boundary handling -----------------------------------------------------------
@pytest.fixture
def scripted_optimizer():
    """Register an optimizer "scripted" that returns the given thetas in turn."""
    script: list[np.ndarray] = []
    starts: list[np.ndarray] = []

    def run(fun, start, lower, upper, maxiter, xtol, ftol):
        starts.append(np.array(start))
        theta = np.asarray(script.pop(0), dtype=float)
        return theta, fun(theta), "scripted", True

    optimizers.register_optimizer("scripted", run)
    yield script, starts
    optimizers.unregister_optimizer("scripted")


def test_boundary_snapping_keeps_improvements_only(scripted_optimizer):
    script, _ = scripted_optimizer

    def f(theta):  # decreasing towards the bound in theta[0], increasing in theta[1]
        return theta[0] + (theta[1] - 3e-6) ** 2 + (theta[2] - 1.0) ** 2

    lower = np.array([0.0, 0.0, -np.inf])
    script.append([4e-6, 3e-6, 1.0])
    result = optimize_lmer(f, np.ones(3), lower, FitOptions(method="scripted", verify=False))
    np.testing.assert_array_equal(result.theta, [0.0, 3e-6, 1.0])
    assert result.boundary_snapped == [0]
    assert result.fun == pytest.approx(f(result.theta))

    script.append([4e-6, 3e-6, 1.0])
    result = optimize_lmer(
        f, np.ones(3), lower, FitOptions(method="scripted", verify=False, boundary_tol=0.0)
    )
    np.testing.assert_array_equal(result.theta, [4e-6, 3e-6, 1.0])
    assert result.boundary_snapped == []


def test_restart_edge_when_objective_falls_into_the_interior(scripted_optimizer):
    script, starts = scripted_optimizer

    def f(theta):
        return (theta[0] - 0.5) ** 2

    lower = np.array([0.0])
    script.extend([[0.0], [0.5]])
    result = optimize_lmer(f, np.ones(1), lower, FitOptions(method="scripted", verify=False))
    assert result.restarted
    np.testing.assert_array_equal(starts[1], [0.0])  # restarted from the estimate
    assert result.theta[0] == 0.5

    script.append([0.0])
    result = optimize_lmer(
        f, np.ones(1), lower, FitOptions(method="scripted", verify=False, restart_edge=False)
    )
    assert not result.restarted and result.theta[0] == 0.0


def test_no_restart_when_the_bound_is_the_optimum(scripted_optimizer):
    script, starts = scripted_optimizer
    script.append([0.0, 2.0])
    result = optimize_lmer(
        lambda t: t[0] + (t[1] - 2.0) ** 2,
        np.ones(2),
        np.array([0.0, 0.0]),
        FitOptions(method="scripted", verify=False),
    )
    assert not result.restarted
    assert len(starts) == 1


# -- verification of the optimum by its local quadratic model ------------------
CENTER = np.array([0.8, -0.3])
CURVATURE = np.array([[40.0, 5.0], [5.0, 2.0]])


def bowl(theta):
    """A quadratic with its minimum 7.0 at CENTER."""
    d = np.asarray(theta) - CENTER
    return 7.0 + 0.5 * d @ CURVATURE @ d


def test_local_verification_verifies_and_polishes_a_near_minimum():
    start = CENTER + [1e-4, -2e-4]  # predicted decrease 2.7e-7 < 1e-6
    lower = np.array([0.0, -np.inf])
    verified, derivs, theta, value, calls = local_verification(
        bowl, start, bowl(start), lower, 1e-6
    )
    assert verified and calls == 2 * 2**2 + 1
    np.testing.assert_allclose(theta, CENTER, atol=1e-9)  # the Newton point of a quadratic
    assert value == pytest.approx(7.0, abs=1e-12)
    # the derivatives are those at the start (where they were taken)
    np.testing.assert_allclose(derivs["gradient"], CURVATURE @ (start - CENTER), atol=1e-7)
    np.testing.assert_allclose(derivs["Hessian"], CURVATURE, rtol=1e-6)


def test_local_verification_keeps_an_estimate_within_newton_min_gain():
    start = CENTER + [1e-6, 0.0]  # 2e-11 above the minimum: less than 1e-4 of an SE away
    verified, derivs, theta, value, _ = local_verification(
        bowl, start, bowl(start), -np.inf * np.ones(2), 1e-6
    )
    assert verified
    np.testing.assert_array_equal(theta, start)
    assert value == bowl(start)
    np.testing.assert_allclose(derivs["gradient"], CURVATURE @ [1e-6, 0.0], atol=1e-7)


def test_local_verification_refuses_what_it_cannot_vouch_for():
    lower = np.array([0.0, -np.inf])
    far = CENTER + [0.05, 0.1]  # the model predicts a decrease of 0.035
    verified, derivs, theta, _, _ = local_verification(bowl, far, bowl(far), lower, 1e-6)
    assert not verified and derivs is None
    np.testing.assert_allclose(theta, CENTER, atol=1e-9)  # the lowest point is kept
    # the Newton point below a bound
    start, bound = CENTER + [1e-4, 0.0], np.array([0.80005, -1.0])
    verified, *_ = local_verification(bowl, start, bowl(start), bound, 1.0)
    assert not verified
    # a saddle: the Hessian is not positive definite

    def saddle(t):
        return t[0] ** 2 - t[1] ** 2

    verified, derivs, *_ = local_verification(saddle, np.array([0.5, 0.0]), 0.25, lower, 1e-6)
    assert not verified and derivs is None


def test_quadratic_model_matches_analytic_derivatives():
    def f(t):
        return np.exp(t[0]) * np.sin(t[1]) + t[0] * t[2] ** 2

    x = np.array([0.3, 0.7, -0.4])
    model = quadratic_model(f, x, f(x))
    e0, s1, c1 = np.exp(x[0]), np.sin(x[1]), np.cos(x[1])
    gradient = [e0 * s1 + x[2] ** 2, e0 * c1, 2 * x[0] * x[2]]
    hessian = [[e0 * s1, e0 * c1, 2 * x[2]], [e0 * c1, -e0 * s1, 0.0], [2 * x[2], 0.0, 2 * x[0]]]
    np.testing.assert_allclose(model["gradient"], gradient, rtol=1e-7)
    # forward differences off the diagonal: O(h) = 1e-4
    np.testing.assert_allclose(model["Hessian"], hessian, atol=3e-4)


def test_optimize_lmer_verifies_small_fits_locally(scripted_optimizer):
    script, starts = scripted_optimizer
    lower = np.array([0.0, -np.inf])
    options = FitOptions(method="scripted")
    script.append(CENTER + [0.05, 0.1])  # far: a Newton round, then a verifying one
    result = optimize_lmer(bowl, np.ones(2), lower, options)
    assert result.verified and result.verify_method == "local" and result.verify_rounds == 0
    assert len(starts) == 1  # no restart
    np.testing.assert_allclose(result.theta, CENTER, atol=1e-9)
    # k (k + 3) / 2 = 5 differences and the Newton point in each of the two rounds
    assert result.n_evaluations == 1 + 2 * (5 + 1)
    assert result.derivs is None  # not asked for: the cheaper model is not lme4's deriv12
    script.append(CENTER)
    result = optimize_lmer(bowl, np.ones(2), lower, options, derivs_wanted=True)
    assert result.verified and result.n_evaluations == 1 + 2 * 2**2 + 1
    np.testing.assert_allclose(result.derivs["gradient"], 0.0, atol=1e-7)  # deriv12 at CENTER

    def tilted(t):  # not a quadratic: the Newton point leaves a gap, the restarts close it
        return bowl(t) + 3.0 * (t[0] - CENTER[0]) ** 4

    script.extend([CENTER + [0.3, 0.0], CENTER])
    result = optimize_lmer(tilted, np.ones(2), lower, FitOptions(method="scripted"))
    assert result.verified
    # within 1e-8 of the minimum (a smaller gain does not move the estimate)
    assert result.fun == tilted(result.theta) and result.fun - 7.0 <= 1e-8
    np.testing.assert_allclose(result.theta, CENTER, atol=1e-4)


def test_local_verification_hands_over_to_restarts(scripted_optimizer):
    script, starts = scripted_optimizer

    def saddle(t):
        return 1.0 + (t[0] - 0.5) ** 2 - 1e-3 * (t[1] - 0.5) ** 2

    script.extend([[0.5, 0.5], [0.5, 0.5]])
    lower = np.array([0.0, 0.0])
    result = optimize_lmer(saddle, np.ones(2), lower, FitOptions(method="scripted"))
    # a user optimizer verified by restarts is cross-checked by BOBYQA from its estimate
    assert result.verify_method == "restart; bobyqa from the estimate" and result.verify_rounds == 1
    # the restart starts from the lowest point of the stencil
    np.testing.assert_allclose(starts[1], [0.5, 0.5], atol=1.01e-4)
    assert saddle(starts[1]) < 1.0
    # four theta: restarts unless the caller wants deriv12's derivatives anyway
    four = np.array([0.0, -np.inf, 0.0, 0.0])
    optimum = [0.8, -0.3, 1.0, 2.0]

    def bowl4(t):
        return bowl(t[:2]) + (t[2] - 1.0) ** 2 + 3.0 * (t[3] - 2.0) ** 2

    script.extend([optimum, optimum])
    result = optimize_lmer(bowl4, np.ones(4), four, FitOptions(method="scripted"))
    assert result.verify_method == "restart; bobyqa from the estimate" and result.derivs is None
    script.append([0.8 + 1e-4, -0.3, 1.0, 2.0])
    result = optimize_lmer(
        bowl4, np.ones(4), four, FitOptions(method="scripted"), derivs_wanted=True
    )
    assert result.verify_method == "local" and result.verified
    # moved to the Newton point: the gradient there, by central differences
    np.testing.assert_allclose(result.theta, optimum, atol=1e-9)
    np.testing.assert_allclose(result.derivs["gradient"], 0.0, atol=1e-7)
    np.testing.assert_allclose(result.derivs["Hessian"][:2, :2], CURVATURE, rtol=1e-6)
    assert result.n_evaluations == 1 + 2 * 4**2 + 1 + 2 * 4


def test_fits_verified_locally_report_derivatives_at_the_estimate():
    model = sml.Lmer.from_formula(
        "Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy")
    )
    res = model.fit()
    info = res.optinfo
    assert info["verify_method"] == "local" and info["verified"] and info["verify_rounds"] == 0
    fresh = deriv12(model.devfun(True), res.theta)  # an independent evaluation at the estimate
    np.testing.assert_allclose(info["derivs"]["gradient"], fresh["gradient"], atol=1e-6)
    np.testing.assert_allclose(info["derivs"]["Hessian"], fresh["Hessian"], rtol=1e-4)


def test_two_theta_fit_is_verified_locally_at_the_optimum():
    data = crossed_frame(seed=5, n=12_000, levels=(300, 40, 5), slope=0.0)
    rng = np.random.default_rng(5)
    data["y"] += (
        rng.normal(size=300)[data["a"].astype(int)] + rng.normal(size=40)[data["b"].astype(int)]
    )
    model = sml.Lmer.from_formula("y ~ x + (1|a) + (1|b)", data)
    res = model.fit()
    info = res.optinfo
    assert info["verify_method"] == "local" and info["verified"]
    assert info["derivs"] is None  # 12,000 rows: no convergence derivatives by default
    # the same optimum as an independent tight Nelder-Mead run on the criterion
    criterion = model.devfun(True)
    tight = scipy.optimize.minimize(
        criterion, res.theta * 1.05, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12}
    )
    assert res.objective <= tight.fun + 1e-9
    np.testing.assert_allclose(res.theta, tight.x, rtol=1e-5)


def test_optimizer_failure_is_a_convergence_warning():
    model = sml.Lmer.from_formula(
        "Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy")
    )
    with pytest.warns(LmerConvergenceWarning, match="optimizer .* did not converge"):
        res = model.fit(maxiter=5, calc_derivs=False)
    assert not res.converged
    assert res.optinfo["warnings"][0].startswith("optimizer ")


# -- predictor scales ----------------------------------------------------------
def test_predictors_on_very_different_scales_warn():
    data = sml.datasets.load("sleepstudy").assign(Days2=lambda d: d["Days"] * 1000)
    with pytest.warns(ValueWarning, match=SCALE_MESSAGE):
        sml.Lmer.from_formula("Reaction ~ Days2 + (1 | Subject)", data)
    assert SCALE_MESSAGE == (
        "Some predictor variables are on very different scales: consider rescaling"
    )


def test_scale_check_thresholds_as_lme4():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    one = np.ones(200)
    dummy = (x > 0).astype(float)
    assert not check_scale_x(np.column_stack([one, x, dummy]))
    assert not check_scale_x(np.column_stack([one, 900 * x / x.std(ddof=1)]))
    assert check_scale_x(np.column_stack([one, 1100 * x / x.std(ddof=1)]))
    assert check_scale_x(np.column_stack([one, x / x.std(ddof=1) / 1100]))
    # two predictors whose SDs differ by more than 1000 (each within 1000 of 1)
    assert check_scale_x(np.column_stack([x * 40, x / 40]))
    assert not check_scale_x(np.column_stack([x * 30, x / 30]))
    # 0/1 columns and the intercept are never compared
    assert not check_scale_x(np.column_stack([one, dummy]))


def test_sleepstudy_days100_has_no_scale_warning():
    # lme4 does not warn about scales for Days * 100 (sd 287 < 1000)
    data = sml.datasets.load("sleepstudy").assign(Days2=lambda d: d["Days"] * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ValueWarning)
        sml.Lmer.from_formula("Reaction ~ Days2 + (Days2 | Subject)", data)


# -- analytic derivatives ----------------------------------------------------
def richardson_gradient(objective, theta: np.ndarray) -> np.ndarray:
    """Central differences of the criterion at steps h and h/2, extrapolated.

    ``h = 1e-3 |theta|`` (at least 1e-6): numDeriv's ``1e-4 |theta|`` is so
    small for sleepstudy's 0.015 that the criterion's rounding noise (~1e-11)
    makes the reference itself a few percent off.
    """
    steps = np.maximum(1e-3 * np.abs(theta), 1e-6)

    def central(scale: float) -> np.ndarray:
        return np.array(
            [
                (objective(theta + scale * h * e) - objective(theta - scale * h * e))
                / (2 * scale * h)
                for h, e in zip(steps, np.eye(theta.size))
            ]
        )

    return (4 * central(0.5) - central(1.0)) / 3


@pytest.mark.parametrize("name", sorted(conv_cases()))
def test_analytic_derivatives_equal_accurate_differences(name):
    """At lme4's theta: the analytic gradient against Richardson differences of the
    criterion, and the Hessian (central differences of the gradient) against a
    Richardson extrapolation of differences of the gradient with 10 times the steps."""
    case = conv_cases()[name]
    model = case_model(case)
    objective = ProfiledGradient(model.devfun(True))  # fits of these tiny models use BOBYQA
    theta = np.asarray(case["theta"], dtype=float)
    derivs = convergence_derivatives(objective, theta, case["objective"])
    gradient = richardson_gradient(objective, theta)

    def differences(steps: np.ndarray) -> np.ndarray:
        return jacobian_of_gradient(lambda t: objective.value_and_gradient(t)[1], theta, steps)

    steps = 10 * objective.difference_steps(theta)
    hess = (4 * differences(steps / 2) - differences(steps)) / 3
    scale = np.abs(hess).max()
    # the Richardson differences of the criterion are good to ~1e-8 of the Hessian's scale
    np.testing.assert_allclose(derivs["gradient"], gradient, rtol=1e-6, atol=1e-8 * scale)
    np.testing.assert_allclose(derivs["Hessian"], hess, rtol=2e-6, atol=1e-9 * scale)
    if name == "sleepstudy_reml":
        # lme4's deriv12 differs by its own step error only (on the badly scaled models
        # its absolute step 1e-4 is as large as theta, and its Hessian is 64 % off)
        np.testing.assert_allclose(derivs["Hessian"], case["Hessian"], rtol=2e-3)


def test_deriv_method_deriv12_gives_lme4s_differences():
    case = conv_cases()["sleepstudy_days100"]
    model = case_model(case)
    res, _ = fit_recording(model, reml=True, deriv_method="deriv12")
    devfun = model.devfun(True)
    expected = deriv12(devfun, res.theta, fx=devfun(res.theta))
    np.testing.assert_array_equal(res.optinfo["derivs"]["Hessian"], expected["Hessian"])
    np.testing.assert_array_equal(res.optinfo["derivs"]["gradient"], expected["gradient"])
    assert res.optinfo["control"]["deriv_method"] == "deriv12"
    with pytest.raises(ValueError, match="deriv_method must be one of 'analytic', 'deriv12'"):
        FitOptions(deriv_method="numeric")
    with pytest.raises(TypeError, match="deriv_method must be a string"):
        FitOptions(deriv_method=1)


def test_singular_fit_computes_no_derivatives():
    data = sml.datasets.load("Dyestuff2")
    with pytest.warns(SingularFitWarning):
        res = sml.Lmer.from_formula("Yield ~ 1 + (1 | Batch)", data).fit()
    assert res.optinfo["derivs"] is None
    assert res.theta[0] == 0.0  # on the bound exactly, as lme4 reports it


def gradient_model() -> sml.Lmer:
    """A crossed model whose fits use the gradient (seven theta, not on the tiny path)."""
    data = crossed_frame(seed=3, n=900, levels=(60, 20, 8))
    rng = np.random.default_rng(4)
    for column, sd in [("a", 0.8), ("b", 0.5), ("c", 0.4)]:  # an effect of every factor
        codes = data[column].astype(int).to_numpy()
        data["y"] += sd * rng.normal(size=codes.max() + 1)[codes]
        data["y"] += 0.4 * sd * rng.normal(size=codes.max() + 1)[codes] * data["x"]
    return sml.Lmer.from_formula("y ~ x + (1 | a) + (x | b) + (x | c)", data)


def fit_quietly(model: sml.Lmer, **kwargs):
    """A fit of :func:`gradient_model` (its slopes' correlation is estimated at +-1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        return model.fit(**kwargs)


def test_gradient_fit_restarts_off_the_edge():
    """On the bound of a scalar term the gradient is 0: the restart moves off it."""
    model = gradient_model()
    assert gradient_available(model.devfun(True))
    reference = fit_quietly(model, method="bobyqa")
    start = np.array(model.theta_start, dtype=float)
    start[0] = 0.0  # the scalar term (1 | a) on its bound
    res = fit_quietly(model, start_theta=start, verify=False)
    assert res.optinfo["optimizer"] == "lbfgsb"
    assert res.optinfo["restarted"]
    assert res.objective == pytest.approx(reference.objective, abs=1e-6)


def test_default_optimizer_uses_the_gradient_and_bobyqa_is_lme4s():
    model = gradient_model()
    res = fit_quietly(model)
    assert res.optinfo["optimizer"] == "lbfgsb"
    assert 0 < res.optinfo["n_gradients"] <= res.optinfo["feval"]
    lme4 = fit_quietly(model, method="bobyqa")
    assert lme4.optinfo["optimizer"] == "bobyqa" and lme4.optinfo["n_gradients"] == 0
    assert res.objective <= lme4.objective + 1e-9
    assert optimizers.default_optimizer(gradient=True) == "lbfgsb"


# -- the first step of BOBYQA --------------------------------------------------
def test_initial_step_is_checked_and_recorded():
    model = sml.Lmer.from_formula("Yield ~ 1 + (1|Batch)", sml.datasets.load("Dyestuff"))
    with pytest.raises(ValueError, match="initial_step must be a positive"):
        model.fit(initial_step=0.0)
    with pytest.raises(TypeError, match="initial_step must be a number"):
        model.fit(initial_step="small")
    res = model.fit(initial_step=0.5)
    assert res.optinfo["control"]["initial_step"] == 0.5


def test_first_step_follows_theta_with_a_floor():
    from statsmodels_lmer.model import first_step

    np.testing.assert_allclose(first_step(np.array([2.0, 0.0, -0.5]), 0.25), [0.5, 0.025, 0.125])


def test_refits_start_close_and_reach_a_fresh_fits_optimum():
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    ys = np.asarray(res.simulate(8, seed=4))
    data = res.model.data.frame
    steps, defaults = [], []
    for k in range(ys.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = res.refit(ys[:, k])
            nlopt_default = res.refit(ys[:, k], initial_step=None)
            fresh = sml.lmer("Reaction ~ Days + (Days | Subject)", data.assign(Reaction=ys[:, k]))
        assert again.optinfo["control"]["initial_step"] == 0.25
        # an independent fit from lme4's start reaches the same optimum
        assert again.objective == pytest.approx(fresh.objective, abs=1e-6)
        assert nlopt_default.objective == pytest.approx(fresh.objective, abs=1e-6)
        steps.append(again.optinfo["feval"])
        defaults.append(nlopt_default.optinfo["feval"])
    assert np.mean(steps) < np.mean(defaults)


def near_exact_group_means(seed: int = 8) -> pd.DataFrame:
    """A response within 1e-9 of its fixed part plus group effects (optimum theta near 1e9)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200)
    y = 1.0 + x + rng.normal(size=20)[g] + 1e-9 * rng.normal(size=200)
    return pd.DataFrame({"g": g, "x": x, "y": y})


def test_criterion_not_reproducible_at_the_estimate_is_not_converged():
    """Where the penalized system is numerically singular the optimizer's value and the
    criterion recomputed at the estimate differ (by 10 on about -5180 here): no optimum
    can be verified, so the fit is not converged and says why."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sml.lmer("y ~ x + (1 | g)", near_exact_group_means())
    texts = [str(w.message) for w in caught if issubclass(w.category, LmerConvergenceWarning)]
    assert any("not reproducible at the estimate" in text for text in texts)
    assert not res.converged
    assert res.optinfo["reproduced_gap"] > 1e-8 * abs(res.optinfo["objective"])


def test_criterion_is_reproduced_at_ordinary_estimates():
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    assert res.converged
    assert res.optinfo["reproduced_gap"] <= 1e-12 * abs(res.optinfo["objective"])


def test_optimizers_that_stall_are_cross_checked():
    """A small maximal subject x item design (45 rows): Nelder-Mead stopped at REML
    144.520958 and restarting it from there confirmed it, so the fit said converged and
    verified; BOBYQA from that estimate (with its edge restart) reaches 142.458419, the
    default fit's and lme4's optimum. The estimate is now cross-checked and taken."""
    data = pd.read_csv(
        FIXTURES / "data" / "maximal_small_nelder_mead.csv", dtype={"subj": str, "item": str}
    )
    formula = "y ~ x + z + (1 + x + z | subj) + (1 + x + z | item)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        best = sml.lmer(formula, data)
        res = sml.lmer(formula, data, method="nelder-mead")
    assert res.reml_criterion == pytest.approx(142.458419, abs=1e-6)
    assert res.reml_criterion <= best.reml_criterion + 1e-6
    assert res.optinfo["optimizer"] == "nelder-mead" and res.converged
    assert res.optinfo["verify_method"] == "restart; bobyqa from the estimate"
    assert res.optinfo["verify_improvement"] > 2.0


def test_failing_lme4_start_on_extreme_scales_is_skipped():
    """Oxboys' cubic growth model with age in thousandths: the extra start from lme4's own
    fit hit a non-positive-definite system and the default fit raised numpy's LinAlgError,
    where BOBYQA and L-BFGS-B alone reach ML deviance 618.1091 (that of age unscaled)."""
    data = pd.read_csv(FIXTURES / "data" / "gallery_Oxboys.csv.gz", dtype={"Subject": str})
    formula = "height ~ age + I(age**2) + I(age**3) + (age + I(age**2) + I(age**3) | Subject)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaled = sml.lmer(formula, data.assign(age=data["age"] * 1000), REML=False)
        plain = sml.lmer(formula, data, REML=False)
    assert scaled.deviance == pytest.approx(plain.deviance, abs=1e-5)
    assert scaled.deviance == pytest.approx(618.1091, abs=1e-4)


def test_failed_gradient_check_tries_the_other_default_optimizer():
    """ML fit of a small maximal design: BOBYQA ended at 169.754715 (verified by restarts,
    but lme4's gradient check failed: converged False); lme4 and L-BFGS-B reach 169.754435.
    The other default optimizer now runs from the estimate and its fit is taken."""
    data = pd.read_csv(
        FIXTURES / "data" / "maximal_small_gradient_check.csv", dtype={"subj": str, "item": str}
    )
    formula = "y ~ x + z + (1 + x + z | subj) + (1 + x + z | item)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sml.lmer(formula, data, REML=False)
    assert res.deviance == pytest.approx(169.75443524, abs=1e-6)
    assert res.converged and res.optinfo["other_optimizer"] is not None
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def far_slope_fit(scale: float, shift: float):
    data = sml.datasets.load("sleepstudy")
    data = data.assign(Days=data["Days"] * scale + shift)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sml.lmer("Reaction ~ Days + (Days | Subject)", data)
    return res, [str(w.message) for w in caught]


def test_a_fit_short_of_the_centred_models_optimum_is_not_converged():
    """``(Days | Subject)`` with Days -> Days / 1000 + 1000 is sleepstudy's model, whose REML
    criterion at the optimum is 1743.628272 + 2 log(1e-3) = 1729.812761. Every optimizer (lme4's
    too) stops at a singular point 42.8 above it, which passed as converged (singular fits
    skip the derivative checks). The fit of the centred model now verifies it."""
    res, messages = far_slope_fit(1e-3, 1e3)
    centred = res.opt_summary.centred
    optimum = 1743.6282720 + 2 * np.log(1e-3)
    assert centred["objective"] == pytest.approx(optimum, rel=1e-8)
    assert centred["first_objective"] - optimum > 40  # the first fit stopped 42.8 short
    # fitted again from the centred optimum mapped back: 0.14 short, in these columns the
    # criterion cannot be evaluated much closer (an intercept SD of 2e5 sigma)
    assert centred["restarted"] and 1e-6 < centred["gap"] < 1.0
    assert centred["short"] and centred["gap"] == pytest.approx(-2 * res.llf - optimum, rel=1e-6)
    assert not res.converged
    assert res.params["Days"] == pytest.approx(10467.28596, rel=1e-4)  # sleepstudy's 10.4673
    assert any("is far from zero against its spread" in m for m in messages)
    assert any("centred reaches a REML criterion 0.1" in m for m in messages)
    assert res.optinfo["centred"]["columns"] == ["'Days' of (Days | Subject)"]


def test_a_fit_short_of_the_centred_optimum_is_fitted_again_from_it():
    """Days / 1000 + 10: the first fit stopped 0.66 above the optimum; fitted again from the
    centred model's optimum mapped back (T T' = S T_c T_c' S') it reaches it."""
    res, messages = far_slope_fit(1e-3, 10.0)
    centred = res.opt_summary.centred
    optimum = 1743.6282720 + 2 * np.log(1e-3)
    assert centred["first_objective"] - optimum > 0.5 and centred["restarted"]
    assert abs(centred["gap"]) < 1e-6 and not centred["short"] and res.converged
    assert -2 * res.llf == pytest.approx(optimum, abs=1e-6)
    assert not any("centred reaches" in m for m in messages)


def test_a_far_column_fit_at_the_centred_models_optimum_stays_converged():
    res, messages = far_slope_fit(1e-2, 10.0)
    centred = res.opt_summary.centred
    optimum = 1743.6282720 + 2 * np.log(1e-2)
    assert centred["objective"] == pytest.approx(optimum, rel=1e-8)
    assert not centred["short"] and abs(centred["gap"]) < 1e-6
    assert res.converged and not any("centred reaches" in m for m in messages)
    near, _ = far_slope_fit(1.0, 0.0)
    assert near.opt_summary.centred is None  # no column far from zero: no second fit


def test_a_flat_variance_is_snapped_to_zero_despite_round_off():
    """``y ~ x + f + (1 | f)`` by ML: the fixed effects explain f's variance, the criterion is
    flat in theta, and BOBYQA stopped at 5e-9, 1.1e-13 below the value at 0 by round-off:
    lme4's strict comparison kept it. The snap now allows round-off."""
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"f": rng.integers(0, 8, 200).astype(str), "x": rng.normal(size=200)})
    data["y"] = data["x"] + rng.normal(size=200) + data["f"].astype(int) * 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("y ~ x + f + (1 | f)", data, REML=False)
    assert res.theta[0] == 0.0 and res.optinfo["boundary_snapped"] == [0]
    devfun = res.model.devfun(reml=False)
    assert abs(devfun(np.array([5e-9])) - devfun(np.zeros(1))) < 1e-10
