"""Fits on the analytic gradient: the gradient's local model, its verification, L-BFGS-B's stops.

``fitting.run.gradient_model`` is checked on a function whose forward
differences are known in closed form and on the profiled deviance against
central differences of the gradient and lme4's ``deriv12``;
``optimize_lmer`` against call counts and the boundary of its rule (at most
:data:`LOCAL_GRADIENT_MAX_K` theta, diagonals at least 1e-4); L-BFGS-B's
``polished`` stops (``fitting.lbfgsb``) on smooth test functions whose
minima are known.
"""

from __future__ import annotations

import dataclasses
import warnings
from functools import cache

import numpy as np
import pytest
from conftest import SLOPES_COVARIANCES, crossed_slopes_frame

import statsmodels_lmer as sml
from statsmodels_lmer.engine.gradient import ProfiledGradient, jacobian_of_gradient
from statsmodels_lmer.fitting.convergence import deriv12
from statsmodels_lmer.fitting.fit import uses_gradient
from statsmodels_lmer.fitting.lbfgsb import (
    SHORT_STALL_CALLS,
    STALL_CALLS,
    minimize_with_gradient,
)
from statsmodels_lmer.fitting.optimizers import RECENT_GRADIENTS, minimize_theta
from statsmodels_lmer.fitting.options import FitOptions
from statsmodels_lmer.fitting.run import (
    LOCAL_GRADIENT_MAX_K,
    gradient_model,
    local_verification,
    optimize_lmer,
)

SETTLED = "stopped: the last gains were below 1e-6"
STALLED = "stopped: no improvement in the last calls"


class Recorded:
    """An objective with the calls made to it: ``("value" | "gradient", theta)``."""

    def __init__(self, objective) -> None:
        self.objective = objective
        self.calls: list[tuple[str, np.ndarray]] = []
        if hasattr(objective, "flip_columns"):  # the deviance's map of theta within its bounds
            self.flip_columns = objective.flip_columns

    def __call__(self, theta: np.ndarray) -> float:
        self.calls.append(("value", np.array(theta, dtype=float)))
        return self.objective(theta)

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        self.calls.append(("gradient", np.array(theta, dtype=float)))
        return self.objective.value_and_gradient(theta)

    def difference_steps(self, theta: np.ndarray) -> np.ndarray:
        return self.objective.difference_steps(theta)

    def count(self, kind: str) -> int:
        return sum(1 for name, _ in self.calls if name == kind)


class Cubic:
    """``f(x) = 100 + d' A d / 2 + sum(c d^3)`` with ``d = x - center``, its gradient and steps.

    A forward difference of the gradient in coordinate ``j`` with step ``h`` is
    exactly ``A e_j + 3 c_j (2 d_j + h) e_j``.
    """

    def __init__(self, A: np.ndarray, center: np.ndarray, cubic: np.ndarray | None = None):
        self.A, self.center = A, center
        self.cubic = np.zeros(len(center)) if cubic is None else cubic

    def __call__(self, x: np.ndarray) -> float:
        d = np.asarray(x, dtype=float) - self.center
        return float(100.0 + d @ self.A @ d / 2 + self.cubic @ d**3)

    def value_and_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        d = np.asarray(x, dtype=float) - self.center
        return self(x), self.A @ d + 3 * self.cubic * d**2

    def difference_steps(self, x: np.ndarray) -> np.ndarray:
        return 1e-4 * np.maximum(np.abs(x), 0.5)


def spd_matrix(k: int, condition: float, seed: int = 0) -> np.ndarray:
    """A random symmetric positive definite matrix with eigenvalues from 1 to ``condition``."""
    Q = np.linalg.qr(np.random.default_rng(seed).normal(size=(k, k)))[0]
    return (Q * np.geomspace(1.0, condition, k)) @ Q.T


# -- gradient_model -------------------------------------------------------------


@pytest.mark.parametrize("given", [True, False])
def test_gradient_model_is_forward_differences_of_the_gradient(given):
    k = 5
    rng = np.random.default_rng(1)
    cubic = Cubic(spd_matrix(k, 50.0), rng.normal(size=k), cubic=rng.normal(size=k))
    x = cubic.center + 0.3 * rng.normal(size=k)
    recorded = Recorded(cubic)
    gradient = cubic.value_and_gradient(x)[1] if given else None
    model = gradient_model(recorded, x, gradient)
    assert recorded.count("gradient") == (k if given else k + 1)
    assert recorded.count("value") == 0
    d, h = x - cubic.center, cubic.difference_steps(x)
    exact = cubic.A + np.diag(6 * cubic.cubic * d)
    forward = exact + np.diag(3 * cubic.cubic * h)  # the O(h) error of a forward difference
    np.testing.assert_allclose(model["Hessian"], forward, rtol=0, atol=1e-8)
    np.testing.assert_allclose(model["gradient"], cubic.A @ d + 3 * cubic.cubic * d**2, rtol=1e-14)
    moved = [theta for kind, theta in recorded.calls if kind == "gradient"][-k:]
    for j, theta in enumerate(moved):  # one coordinate at a time, by its step
        np.testing.assert_array_equal(theta - x, np.eye(k)[j] * ((x[j] + h[j]) - x[j]))


def secant_case(cubic_scale: float) -> tuple:
    """A cubic in 5 variables, a point near its minimum and its analytic Hessian there."""
    k = 5
    rng = np.random.default_rng(4)
    cubic = Cubic(spd_matrix(k, 50.0), rng.normal(size=k), cubic=cubic_scale * rng.normal(size=k))
    x = cubic.center + 1e-3 * rng.normal(size=k)
    exact = cubic.A + np.diag(6 * cubic.cubic * (x - cubic.center))
    return cubic, x, exact


def test_gradient_model_uses_nearby_secants_and_completes_them():
    cubic, x, exact = secant_case(cubic_scale=0.0)  # a quadratic: secants are exact
    rng = np.random.default_rng(5)
    scale = cubic.difference_steps(x) / 1e-4
    near = [x + 1e-3 * scale * rng.normal(size=x.size) / 3 for _ in range(3)]
    nearby = [(p, cubic.value_and_gradient(p)[1]) for p in near]
    recorded = Recorded(cubic)
    model = gradient_model(recorded, x, cubic.value_and_gradient(x)[1], nearby)
    assert recorded.count("gradient") == x.size - 3  # two completion steps only
    np.testing.assert_allclose(model["Hessian"], exact, rtol=0, atol=1e-7)
    for point in [theta for _, theta in recorded.calls]:  # completions: steps of 1e-4 of the scale
        assert np.linalg.norm((point - x) / scale) == pytest.approx(1e-4, rel=1e-9)


def test_gradient_model_skips_far_parallel_and_failed_secants():
    cubic, x, exact = secant_case(cubic_scale=1.0)
    scale = cubic.difference_steps(x) / 1e-4
    direction = np.linspace(1.0, 2.0, x.size)
    direction /= np.linalg.norm(direction)
    usable = x + 1e-3 * scale * direction
    parallel = x + 2e-3 * scale * direction  # nothing new beyond the first
    far = x + 0.1 * scale * direction[::-1]  # beyond SECANT_MAX_STEP
    failed = x + 1e-3 * scale * direction[::-1]
    nearby = [(p, cubic.value_and_gradient(p)[1]) for p in (usable, parallel, far)]
    nearby.append((failed, np.full(x.size, np.nan)))
    recorded = Recorded(cubic)
    model = gradient_model(recorded, x, cubic.value_and_gradient(x)[1], nearby)
    assert recorded.count("gradient") == x.size - 1
    # the secant of length 1e-3 carries an O(1e-3) error of the cubic terms
    largest = np.abs(exact).max()
    np.testing.assert_allclose(model["Hessian"], exact, rtol=0, atol=1e-2 * largest)


# -- the model on the gradient path -----------------------------------------------

FORMULA = "y ~ x + (x | g1) + (x | g2)"


@cache
def model(seed: int = 0, singular: bool = False) -> sml.Lmer:
    covariances = SLOPES_COVARIANCES
    if singular:  # no slope variance for g2
        covariances = (covariances[0], np.array([[0.6, 0.0], [0.0, 0.0]]))
    frame = crossed_slopes_frame(seed=seed, covariances=covariances)
    built = sml.Lmer.from_formula(FORMULA, frame)
    assert uses_gradient(built.devfun(True))
    return built


@cache
def fit(seed: int = 0, singular: bool = False, **kwargs) -> sml.LmerResults:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sml.SingularFitWarning)
        return model(seed, singular).fit(**kwargs)


@pytest.fixture
def one_thread():
    """BLAS on one thread, as fits run on this small dense block (threads cost more here)."""
    with model().devfun(True).blas_threads():
        yield


@pytest.mark.usefixtures("one_thread")
def test_gradient_model_agrees_with_central_differences_and_deriv12():
    objective = ProfiledGradient(model().devfun(True))
    theta = fit().theta
    recorded = Recorded(objective)
    gradient = objective.value_and_gradient(theta)[1]
    hessian = gradient_model(recorded, theta, gradient)["Hessian"]
    assert recorded.count("gradient") == theta.size and recorded.count("value") == 0
    steps = objective.difference_steps(theta)
    central = jacobian_of_gradient(lambda t: objective.value_and_gradient(t)[1], theta, steps)
    lme4 = deriv12(objective, theta)["Hessian"]
    # forward differences are O(h) accurate (h = 1e-4 relative): 2.2e-4 of the largest
    # element measured against both; central differences and deriv12 are O(h^2)
    for reference in (central, lme4):
        scale = np.abs(reference).max()
        np.testing.assert_allclose(hessian, reference, rtol=0, atol=1e-3 * scale)
    np.testing.assert_allclose(central, lme4, rtol=0, atol=1e-4 * np.abs(lme4).max())
    np.testing.assert_array_equal(hessian, hessian.T)


@pytest.mark.usefixtures("one_thread")
def test_local_verification_by_gradient_polishes_a_nearby_point():
    objective = ProfiledGradient(model().devfun(True))
    optimum = fit(method="bobyqa").theta
    lower = np.array(model().theta_lower, dtype=float)
    near = optimum + 2e-3 * np.array([1.0, -1.0, 1.0, -1.0, 1.0, 1.0])
    value = objective(near)
    recorded = Recorded(objective)
    verified, derivs, theta, best, calls = local_verification(
        recorded, near, value, lower, 1e-6, by_gradient=True
    )
    assert not verified and derivs is None  # the model predicts a larger decrease than 1e-6
    assert calls == len(recorded.calls) == near.size + 2  # k + 1 gradients, the Newton value
    assert best < value - 1e-4
    assert np.abs(theta - optimum).max() < 0.1 * np.abs(near - optimum).max()
    # from the Newton point, with its gradient known: verified in k gradients and one value
    gradient = objective.value_and_gradient(theta)[1]
    again = Recorded(objective)
    verified, derivs, polished, final, calls = local_verification(
        again, theta, best, lower, 1e-6, by_gradient=True, gradient=gradient
    )
    assert verified and calls == near.size + 1
    assert (again.count("gradient"), again.count("value")) == (near.size, 1)
    np.testing.assert_array_equal(derivs["gradient"], gradient)
    assert final <= best
    assert final == pytest.approx(fit(method="bobyqa").objective, abs=1e-7)
    np.testing.assert_allclose(polished, optimum, atol=1e-5)


def test_interior_gradient_fit_is_verified_by_the_local_model():
    res, lme4 = fit(), fit(method="bobyqa")
    info = res.optinfo
    assert info["optimizer"] == "lbfgsb"
    assert (info["verify_method"], info["verified"], info["verify_rounds"]) == ("local", True, 0)
    assert 0 < info["n_gradients"] < info["feval"]
    assert res.objective == pytest.approx(lme4.objective, rel=1e-7)
    np.testing.assert_allclose(res.theta, lme4.theta, atol=1e-4 * np.abs(lme4.theta).max())


@pytest.mark.usefixtures("one_thread")
def test_optimize_lmer_counts_and_places_the_verification_gradients():
    objective = ProfiledGradient(model().devfun(True))
    recorded = Recorded(objective)
    lower = np.array(model().theta_lower, dtype=float)
    start = np.array(fit().optinfo["start"], dtype=float)
    result = optimize_lmer(recorded, start, lower, FitOptions().resolved(model().nobs))
    assert (result.verify_method, result.verified) == ("local", True)
    assert result.n_gradients == recorded.count("gradient")
    assert result.n_evaluations == len(recorded.calls)
    assert result.fun == pytest.approx(fit(method="bobyqa").objective, rel=1e-7)
    # the optimizer alone, with the same stops: the check added at most k gradients
    # (fewer where its last steps served as secants) and the Newton point's value
    alone = Recorded(objective)
    polished = minimize_theta(
        alone, start, lower, "lbfgsb", polished=lambda t: bool(np.all(np.abs(t[lower == 0]) > 1e-4))
    )
    added = result.n_gradients - polished.n_gradients
    assert 0 <= added <= start.size
    assert all(  # the fit's calls begin with the optimizer's
        a[0] == b[0] and np.array_equal(a[1], b[1])
        for a, b in zip(recorded.calls, alone.calls, strict=False)
    )
    assert recorded.count("value") - alone.count("value") <= 1


def test_singular_gradient_fit_is_verified_by_restarts():
    res, lme4 = fit(seed=2, singular=True), fit(seed=2, singular=True, method="bobyqa")
    info = res.optinfo
    assert info["optimizer"] == "lbfgsb"
    assert np.min(res.theta[model(2, True).theta_lower == 0]) < 1e-4  # singular
    assert (info["verify_method"], info["verified"]) == ("restart", True)
    assert info["verify_rounds"] >= 1
    assert res.objective == pytest.approx(lme4.objective, rel=1e-7)


def test_no_verification_when_not_asked():
    res = fit(verify=False)
    info = res.optinfo
    assert info["verify_method"] is None and info["verified"] is None
    assert info["message"] != SETTLED  # no polished stops without the local check
    assert res.objective == pytest.approx(fit(method="bobyqa").objective, rel=1e-7)


@pytest.mark.usefixtures("one_thread")
def test_gradient_at_theta_is_the_gradient_there():
    objective = ProfiledGradient(model().devfun(True))
    lower = np.array(model().theta_lower, dtype=float)
    result = minimize_theta(objective, fit().optinfo["start"], lower, "lbfgsb")
    np.testing.assert_allclose(
        result.gradient_at_theta(), objective.value_and_gradient(result.theta)[1], rtol=1e-10
    )
    moved = dataclasses.replace(result, theta=result.theta + 1e-8)
    assert moved.gradient_at_theta() is None
    assert dataclasses.replace(result, gradients=()).gradient_at_theta() is None
    # the last gradients evaluated, newest first
    assert 0 < len(result.gradients) <= RECENT_GRADIENTS
    for point, gradient in result.gradients[:3]:
        np.testing.assert_allclose(gradient, objective.value_and_gradient(point)[1], rtol=1e-10)


# -- optimize_lmer on functions with known minima ---------------------------------


def quadratic_minimum(k: int, smallest_diagonal: float = 0.5, seed: int = 2) -> tuple:
    """``(objective, lower, minimum)`` with half the elements bounded at 0 like diagonals."""
    rng = np.random.default_rng(seed)
    lower = np.where(np.arange(k) % 2 == 0, 0.0, -np.inf)
    minimum = rng.uniform(0.5, 1.5, k) * np.where(lower == 0, 1.0, rng.choice([-1, 1], k))
    minimum[0] = smallest_diagonal
    return Recorded(Cubic(50.0 * spd_matrix(k, 100.0, seed), minimum)), lower, minimum


@pytest.mark.parametrize(
    ("k", "smallest", "method"),
    [
        (4, 0.5, "local"),
        (LOCAL_GRADIENT_MAX_K, 0.5, "local"),
        (LOCAL_GRADIENT_MAX_K + 1, 0.5, "restart"),
        (6, 2e-4, "local"),
        (6, 5e-5, "restart"),  # interior, but below lme4's singular tolerance 1e-4
    ],
)
def test_local_check_by_gradient_up_to_ten_theta_at_interior_points(k, smallest, method):
    objective, lower, minimum = quadratic_minimum(k, smallest)
    start = np.where(lower == 0, 1.0, 0.0)
    result = optimize_lmer(objective, start, lower, FitOptions(calc_derivs=False))
    assert (result.method, result.verify_method, result.verified) == ("lbfgsb", method, True)
    assert result.n_gradients == objective.count("gradient")
    # the Newton point is taken when it gains more than 1e-8 (NEWTON_MIN_GAIN): within that
    # value of the minimum theta is within sqrt(2e-8 / 50), 50 the smallest curvature
    assert result.fun - 100.0 <= 1e-8
    np.testing.assert_allclose(result.theta, minimum, rtol=0, atol=2e-5)


# -- minimize_with_gradient's polished stops ----------------------------------------


class Counted:
    """``theta -> (value, gradient)`` recording its points and values."""

    def __init__(self, fg) -> None:
        self.fg = fg
        self.points: list[np.ndarray] = []
        self.values: list[float] = []

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.points.append(np.array(x))
        value, gradient = self.fg(x)
        self.values.append(value)
        return value, gradient


def rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    """Rosenbrock's function (minimum 0 at ones) and its gradient."""
    value = np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    gradient = np.zeros_like(x)
    gradient[:-1] += -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    gradient[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return float(value), gradient


def quadratic(k: int = 6, condition: float = 1e3, scale: float = 1.0) -> tuple:
    """``(fg, minimum point, minimum value)`` of a convex quadratic."""
    cubic = Cubic(spd_matrix(k, condition), np.random.default_rng(7).normal(size=k))

    def fg(x):
        value, gradient = cubic.value_and_gradient(x)
        return scale * value, scale * gradient

    return fg, cubic.center, 100.0 * scale


def run(fg, start, polished, lower=None, upper=None) -> tuple:
    counted = Counted(fg)
    lower = np.full(start.size, -np.inf) if lower is None else lower
    upper = np.full(start.size, np.inf) if upper is None else upper
    return counted, *minimize_with_gradient(counted, start, lower, upper, 1000, None, polished)


QUADRATIC = quadratic()
SMOOTH = {
    "quadratic": (QUADRATIC[0], np.zeros(6), QUADRATIC[2]),
    "rosenbrock": (rosenbrock, np.array([-1.2, 1.0, -1.2, 1.0]), 0.0),
}


@pytest.mark.parametrize("name", list(SMOOTH))
def test_polished_run_stops_early_near_the_minimum(name):
    fg, start, minimum = SMOOTH[name]
    full, _, value, _message, success = run(fg, start, None)
    short, _, polished_value, polished_message, ok = run(fg, start, lambda t: True)
    assert success and ok and polished_message in (SETTLED, STALLED)
    assert len(short.points) < len(full.points)
    assert value - minimum < 1e-9
    assert polished_value - minimum < 1e-6
    assert polished_value == min(short.values)


@pytest.mark.parametrize("name", list(SMOOTH))
def test_polished_false_changes_nothing(name):
    fg, start, _ = SMOOTH[name]
    plain = run(fg, start, None)
    declined = run(fg, start, lambda t: False)
    assert len(declined[0].points) == len(plain[0].points)
    for a, b in zip(declined[0].points, plain[0].points):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(declined[1], plain[1])
    assert declined[2:] == plain[2:]


def test_polished_run_with_a_minimum_on_a_bound():
    """The quadratic's unconstrained minimum has elements below 0; the bounded one is known."""
    A = spd_matrix(6, 1e3, seed=4)
    minimum = np.array([0.0, 0.0, 0.7, 1.2, 0.3, 0.9])
    multipliers = np.array([2.0, 0.5, 0, 0, 0, 0])  # KKT: the gradient at the minimum
    cubic = Cubic(A, minimum - np.linalg.solve(A, multipliers))
    assert np.all(cubic.center[:2] < 0)  # the bounds bind
    value_at_minimum = cubic(minimum)
    lower = np.zeros(6)
    for polished in (None, lambda t: True):
        _counted, theta, value, _message, success = run(
            cubic.value_and_gradient, np.ones(6), polished, lower=lower
        )
        assert success and np.all(theta >= 0)
        assert value - value_at_minimum < 1e-6
        np.testing.assert_allclose(theta[:2], 0.0, atol=1e-6)
        # within 1e-6 in value, with curvatures of at least 1: within sqrt(2e-6) in theta
        np.testing.assert_allclose(theta, minimum, atol=1.5e-3)


def test_short_stall_near_a_polished_minimum():
    """On a plateau 0.01 above the minimum (gradient 1e-5 of the quadratic's) no call gains:
    the run stops 2 calls after the plateau's first point when polished, else 6."""
    fg, _, minimum = quadratic()

    def plateau(x):
        value, gradient = fg(x)
        return (value, gradient) if value > minimum + 0.01 else (minimum + 0.01, 1e-5 * gradient)

    for polished, calls in ((None, STALL_CALLS), (lambda t: True, SHORT_STALL_CALLS)):
        counted, _, value, message, _ = run(plateau, np.zeros(6), polished)
        assert message == STALLED
        assert value == minimum + 0.01
        first = counted.values.index(value)
        assert len(counted.values) - 1 - first == calls


def test_no_rerun_after_a_settled_stop():
    """A stiff quadratic (condition 1e4): the gains settle below 1e-6 while the projected
    gradient is still above the rerun limit; the run ends at its best point."""
    fg, _center, minimum = quadratic(condition=1e4)
    start = np.zeros(6)
    counted, theta, value, message, _ = run(fg, start, lambda t: True)
    assert message == SETTLED
    limit = max(1e-3, 1e-6 * np.abs(fg(start)[1]).max())
    assert np.abs(fg(theta)[1]).max() > limit  # a run ending here otherwise is rerun
    np.testing.assert_array_equal(counted.points[-1], theta)  # the last call: no new run
    plain, _, plain_value, _, _ = run(fg, start, None)
    assert plain_value - minimum < 1e-9 < value - minimum
    assert len(counted.points) < len(plain.points)


@pytest.mark.parametrize("first_step", [None, 0.05, 0.3])
def test_first_move_has_the_length_asked_for(first_step):
    """L-BFGS-B's first trial point is a move of ``first_step`` (default 1) along -gradient;
    the run still ends at the minimum, within the bounds."""
    fg, _center, minimum = quadratic()
    start = np.full(6, 0.5)
    counted = Counted(fg)
    lower, upper = np.full(6, -np.inf), np.full(6, np.inf)
    _, value, _, success = minimize_with_gradient(
        counted, start, lower, upper, 1000, None, None, first_step
    )
    move = counted.points[1] - counted.points[0]
    gradient = fg(start)[1]
    np.testing.assert_allclose(np.linalg.norm(move), first_step or 1.0, rtol=1e-12)
    np.testing.assert_allclose(move, -np.linalg.norm(move) * gradient / np.linalg.norm(gradient))
    assert success and value - minimum < 1e-9


def test_moment_start_takes_a_short_first_move():
    """The fit from the moment start (InstEval's design on 8,000 rows) moves 0.25 |theta| in
    root mean square first (initial_step), not 1; it ends where a fit from the same start
    with a unit first move ends, to 1e-9 of the criterion."""
    data = sml.datasets.load("InstEval").iloc[:8000]
    model = sml.Lmer.from_formula("y ~ service + (1|s) + (1|d)", data)
    points = []
    value_and_gradient = ProfiledGradient.value_and_gradient

    def record(self, theta):
        points.append(np.array(theta))
        return value_and_gradient(self, theta)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ProfiledGradient, "value_and_gradient", record)
        short = model.fit(reml=False, method="lbfgsb")
        start = short.optinfo["start"]
        unit = model.fit(reml=False, method="lbfgsb", start_theta=start)
    assert short.optinfo["optimizer"] == "lbfgsb" and short.optinfo["n_gradients"] >= 3
    rms = np.sqrt(np.mean((0.25 * np.maximum(np.abs(start), 0.1)) ** 2))
    np.testing.assert_allclose(np.linalg.norm(points[1] - points[0]), rms, rtol=1e-9)
    assert abs(short.deviance - unit.deviance) < 1e-9 * unit.deviance
