"""Likelihood profiles and profile confidence intervals (lme4 1.1-31).

:func:`profile` is lme4's ``profile.merMod``: the signed square root of the
likelihood-ratio statistic, ``zeta = sign(par - par_hat) sqrt(dev(par) - dev_hat)``,
on a grid on both sides of each estimate, everything else profiled out.
REML fits are refitted by ML first, as lme4 does, so the profiles (and the
profile intervals) of a REML fit and of the ML fit agree. It returns a
:class:`ProfileResult`. See docs/intervals.md.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning, EstimationWarning

from .._parallel import Progress, effective_jobs, map_in_workers
from ..arguments import (
    check_bool,
    check_count,
    check_level,
    check_positions,
    check_positive,
    check_unit_interval,
)
from ..exceptions import SingularFitWarning, ignored_warnings, warn
from ..fitting.optimizers import HAVE_NLOPT, minimize_theta
from ..graphics.profile import plot_profile
from ..parametrization import correlation_sds, sdcor_to_theta, theta_to_sdcor
from ..splines import back_spline
from .parameters import (
    parameter_names,
    percent_labels,
    select_parameters,
    selection_items,
    variance_bounds,
    variance_names,
)

__all__ = ["ProfileResult", "confint_profile", "profile", "profile_limits"]


def _sdcor(model: Any, theta: np.ndarray, sigma: float) -> np.ndarray:
    return theta_to_sdcor(model.random_terms, model.theta_slices, theta, sigma)


@dataclass(frozen=True)
class _Tolerances:
    """BOBYQA's stopping rule and first step (relative to each start element, at least a floor)."""

    xtol: float
    ftol: float
    xtol_rel: float
    step: float
    step_floor: float


TIGHT = _Tolerances(1e-10, 1e-10, 1e-10, 0.1, 1e-2)
"""For the optimum the profile starts from (zeta is measured from its deviance)."""

POINT = _Tolerances(1e-10, 1e-9, 1e-7, 0.01, 1e-3)
"""For each profile point, warm-started next to its optimum: a first step of 1 % and a
relative tolerance of 1e-7 in the parameters take about half the evaluations of
TIGHT and move the interval limits by less than 1e-9 (InstEval; lme4's fixtures).
``ftol`` is 1e-9, not lme4's 1e-8: with sleepstudy's weights of
``tests/fixtures/data/sleepstudy_weights.csv`` one point stopped after 14 evaluations
9.3e-4 above its optimum (a limit off by 1.3e-4 of the half-width); 1e-9 costs about
11 % more evaluations (InstEval's profile confint: 18.9 s to 21.8 s)."""


SEARCH = _Tolerances(1e-10, 1e-9, 1e-7, 0.001, 1e-4)
"""For the points of a search for a profile limit (:func:`profile_limits`), started from
a line through the nearest points found: a first step of 0.1 % (InstEval: a quarter
fewer evaluations than POINT, the same limits to 1e-9)."""


def _minimize(
    fun: Callable[[np.ndarray], float],
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray | None = None,
    tolerances: _Tolerances = POINT,
) -> tuple[np.ndarray, float]:
    """Minimize within bounds: BOBYQA (lme4's) or L-BFGS-B."""
    start = np.nan_to_num(np.asarray(start, dtype=float))
    if start.size == 0:
        return start, float(fun(start))
    upper = np.full(start.size, np.inf) if upper is None else upper
    start = np.clip(start, lower, upper)
    step = np.maximum(tolerances.step * np.abs(start), tolerances.step_floor)
    room = np.maximum(upper - start, start - lower)
    step = np.minimum(step, np.where(np.isfinite(room), room, step))
    result = minimize_theta(
        fun,
        start,
        lower,
        method="bobyqa" if HAVE_NLOPT else "lbfgsb",
        maxiter=20_000,
        xtol=tolerances.xtol,
        ftol=tolerances.ftol,
        initial_step=step,
        upper=upper,
        xtol_rel=tolerances.xtol_rel,
    )
    return result.theta, result.fun


@dataclass(eq=False)
class _Profiler:
    """The ML deviance of an ML fit in lme4's profiling parametrizations."""

    model: Any
    objective: Any  # ProfiledDeviance (ML)
    theta_hat: np.ndarray
    base: float
    opt: np.ndarray  # variance parameters (sd/cor scale, sigma) then beta
    stderr: np.ndarray
    n_var: int
    lower: np.ndarray
    upper: np.ndarray
    lowest: float = 0.0  # the lowest deviance difference met while profiling
    flat: dict[int, tuple[float, np.ndarray]] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["objective"]  # the cross-products: rebuilt from the model (workers)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.objective = self.model.devfun(reml=False)

    @classmethod
    def from_results(cls, res: Any) -> _Profiler:
        with ignored_warnings(SingularFitWarning):  # the fit itself has warned already
            ml = res.refit_ml() if res.reml else res
        model = ml.model
        objective = model.devfun(reml=False)
        theta_lower = np.asarray(model.theta_lower, dtype=float)
        # Polish the ML optimum so that zeta is exactly 0 at the estimates.
        theta, base = _minimize(objective, np.asarray(ml.theta), theta_lower, tolerances=TIGHT)
        if not base <= ml.deviance:
            theta, base = np.asarray(ml.theta, dtype=float), float(ml.deviance)
        solution = objective.solve(theta)
        sigma = math.sqrt(solution.pwrss / objective.nobs)
        var = _sdcor(model, theta, sigma)
        stderr = sigma * np.sqrt(np.diag(solution.vcov_unscaled))
        lower, upper = variance_bounds(model)
        return cls(
            model,
            objective,
            theta,
            base,
            np.concatenate([var, solution.beta]),
            stderr,
            var.size,
            np.concatenate([lower, np.full(solution.beta.size, -np.inf)]),
            np.concatenate([upper, np.full(solution.beta.size, np.inf)]),
        )

    def devfun2(self, pars: np.ndarray) -> float:
        """lme4's ``devfun2``: (sd's, cor's, sigma) -> ML deviance, beta profiled out."""
        sigma = pars[-1]
        theta = sdcor_to_theta(self.model.random_terms, pars) if sigma > 0 else None
        if theta is None:
            return np.inf
        try:
            return self.objective.deviance(theta, sigma)
        except np.linalg.LinAlgError:
            return np.inf

    def _zeta(self, value: float, estimate: float, deviance: float) -> float:
        diff = deviance - self.base
        self.lowest = min(self.lowest, diff)
        return float(np.sign(value - estimate) * math.sqrt(max(diff, 0.0)))

    def variance_point(
        self, w: int, value: float, start: np.ndarray, tolerances: _Tolerances = POINT
    ) -> np.ndarray:
        """A profile row with variance parameter ``w`` held at ``value``."""
        keep = np.arange(self.n_var) != w

        def fun(others: np.ndarray) -> float:
            pars = np.empty(self.n_var)
            pars[w], pars[keep] = value, others
            return self.devfun2(pars)

        lower, upper = self.lower[: self.n_var][keep], self.upper[: self.n_var][keep]
        others, dev = _minimize(fun, start, lower, upper, tolerances)
        pars = np.empty(self.n_var)
        pars[w], pars[keep] = value, others
        flat_dev, flat_pars = self.flat_minimum(w)
        if flat_dev < dev:  # the inner fit stopped on the interior branch
            pars, dev = flat_pars.copy(), flat_dev
            pars[w] = value
        if not np.isfinite(dev):
            return self._failed(w, value)
        theta = sdcor_to_theta(self.model.random_terms, pars)
        beta = self.objective.solve(theta).beta
        var = _sdcor(self.model, theta, pars[-1])
        var[w] = value  # keep the profiled value exactly (and a cor of a zero sd)
        return np.concatenate([[self._zeta(value, self.opt[w], dev)], var, beta])

    def flat_minimum(self, w: int) -> tuple[float, np.ndarray]:
        """The lowest deviance where correlation ``w`` has no effect, with its parameters.

        With either standard deviation that a correlation couples at 0, the
        deviance does not depend on the correlation: the profile of a
        correlation is never above the lower of these two minima (over the
        other parameters), which the inner fit, started on the interior branch
        next to the last point, can miss (Orthodont's girls, ``(age | Subject)``:
        a lower limit -0.8436 at a local minimum, where the profile stays above
        zeta -1.876 down to -1, lme4's limit). ``inf`` for an sd or sigma.
        Computed once per parameter.
        """
        if w in self.flat:
            return self.flat[w]
        couples = correlation_sds(self.model.random_terms, w)
        best, best_pars = np.inf, np.full(self.n_var, np.nan)
        for sd in couples:
            fixed = np.zeros(self.n_var, dtype=bool)
            fixed[[w, sd]] = True

            def fun(others: np.ndarray, fixed: np.ndarray = fixed, sd: int = sd) -> float:
                pars = self.opt[: self.n_var].copy()
                pars[sd], pars[~fixed] = 0.0, others
                return self.devfun2(pars)

            start = self.opt[: self.n_var][~fixed]
            lower, upper = self.lower[: self.n_var][~fixed], self.upper[: self.n_var][~fixed]
            others, dev = _minimize(fun, start, lower, upper, TIGHT)
            if dev < best:
                best_pars = self.opt[: self.n_var].copy()
                best_pars[sd], best_pars[~fixed] = 0.0, others
                best = dev
        self.flat[w] = (best, best_pars)
        return self.flat[w]

    def _failed(self, w: int, value: float) -> np.ndarray:
        """The row of a point where no finite deviance was found: NaN but the value."""
        row = np.full(1 + self.opt.size, np.nan)
        row[1 + w] = value
        return row

    def fixed_point(
        self, j: int, value: float, start: np.ndarray, tolerances: _Tolerances = POINT
    ) -> tuple[np.ndarray, np.ndarray]:
        """A profile row with fixed effect ``j`` held at ``value``, and its theta."""
        n = self.objective.nobs

        def pieces(theta: np.ndarray) -> tuple[float, Any, float]:
            sol = self.objective.solve(theta)
            v_jj = sol.vcov_unscaled[j, j]
            r2 = sol.pwrss + (value - sol.beta[j]) ** 2 / v_jj
            return self.objective.criterion(sol.log_det_l2, 0.0, r2, False), sol, r2

        def fun(theta: np.ndarray) -> float:
            try:
                return pieces(theta)[0]
            except (np.linalg.LinAlgError, ValueError):
                return np.inf

        lower = np.asarray(self.model.theta_lower, dtype=float)
        theta, dev = _minimize(fun, start, lower, tolerances=tolerances)
        if not np.isfinite(dev):
            return self._failed(self.n_var + j, value), start
        dev, sol, r2 = pieces(theta)
        sigma = math.sqrt(r2 / n)
        v = sol.vcov_unscaled
        beta = sol.beta + v[:, j] / v[j, j] * (value - sol.beta[j])
        beta[j] = value
        row = np.concatenate(
            [[self._zeta(value, self.opt[self.n_var + j], dev)], _sdcor(self.model, theta, sigma)]
            + [beta]
        )
        return row, theta


def _next_value(
    prev: np.ndarray,
    last: np.ndarray,
    column: int,
    delta: float,
    lower: float,
    upper: float,
    maxmult: float,
    minstep: float = 1e-6,
) -> float:
    """lme4's ``nextpar``: a secant step aiming at a zeta increment of ``delta``."""
    num = last[column] - prev[column]
    denom = last[0] - prev[0]
    if not np.isfinite(denom) or denom == 0:
        step = minstep
    else:
        step = delta * num / denom
        if step < 0:
            step = minstep
        elif abs(step) > maxmult * abs(num):
            step = maxmult * abs(num)
    return float(min(upper, max(lower, last[column] + np.sign(num) * step)))


def _fill(
    rows: list[np.ndarray],
    column: int,
    lower: float,
    upper: float,
    point: Callable[[float, np.ndarray], np.ndarray],
    grid: _Grid,
) -> list[np.ndarray]:
    """lme4's ``fillmat``: step away from the estimate until ``|zeta|`` exceeds the cutoff.

    Stops at a bound, after ``maxpts`` points, or (unlike lme4, which creeps on in
    steps of 1e-6) at a point where the inner optimization failed.
    """
    while len(rows) < grid.maxpts:
        last = rows[-1]
        value, zeta = last[column], last[0]
        if not (lower < value < upper) or not abs(zeta) <= grid.cutoff:
            break
        nxt = _next_value(rows[-2], last, column, grid.delta, lower, upper, grid.maxmult)
        rows.append(point(nxt, last))
    return rows


@dataclass(frozen=True)
class _Grid:
    """lme4's grid controls."""

    cutoff: float
    delta: float
    maxpts: int
    maxmult: float


def _point_function(
    prof: _Profiler,
    w: int,
    grid: _Grid,
    tolerances: _Tolerances,
    report: Callable[[np.ndarray], None] | None = None,
) -> tuple[Callable[[float, np.ndarray], np.ndarray], float, Callable[[], None]]:
    """``point(value, last_row) -> row`` for parameter ``w``, lme4's first value and a reset.

    The inner optimization starts from ``last_row``: for a variance parameter
    from its other variance parameters, for a fixed effect from its theta
    (from the theta where the last point ended when ``last_row`` has none, as
    after a failed point; ``reset`` goes back to the estimate's).
    """
    n_var = prof.n_var
    estimate = prof.opt[w]
    theta = {"last": prof.theta_hat}
    if w < n_var:
        keep = np.arange(n_var) != w

        def compute(value: float, last: np.ndarray) -> np.ndarray:
            return prof.variance_point(w, value, last[1 : 1 + n_var][keep], tolerances)

        shift = 1e-3 if estimate == 0 else estimate * 1.01
    else:
        j = w - n_var

        def compute(value: float, last: np.ndarray) -> np.ndarray:
            start = sdcor_to_theta(prof.model.random_terms, last[1 : 1 + n_var])
            if start is None or not np.all(np.isfinite(start)):
                start = theta["last"]
            row, theta["last"] = prof.fixed_point(j, value, start, tolerances)
            return row

        shift = estimate + grid.delta * prof.stderr[j]

    def point(value: float, last: np.ndarray) -> np.ndarray:
        row = compute(value, last)
        if report is not None:
            report(row)
        return row

    def reset() -> None:
        theta["last"] = prof.theta_hat

    return point, shift, reset


def _profile_parameter(
    prof: _Profiler,
    w: int,
    grid: _Grid,
    values: Any = None,
    report: Callable[[np.ndarray], None] | None = None,
) -> np.ndarray:
    """Profile rows (zeta, all parameters) for parameter ``w``, sorted by its value.

    ``report`` is called with each new row (for a progress bar).
    """
    estimate, lower, upper = prof.opt[w], prof.lower[w], prof.upper[w]
    base_row = np.concatenate([[0.0], prof.opt])
    # grid points start next to their optimum (the previous point's); values asked
    # for start from the estimate, possibly far away
    tolerances = POINT if values is None else TIGHT
    point, shift, reset = _point_function(prof, w, grid, tolerances, report)
    if values is not None:
        rows = [base_row]
        for value in np.unique(np.asarray(values, dtype=float)):
            if np.isfinite(value) and lower <= value <= upper and value != estimate:
                reset()
                rows.append(point(float(value), base_row))
    else:
        shifted = point(min(upper, max(lower, shift)), base_row)
        rows = _fill([base_row, shifted], 1 + w, lower, upper, point, grid)
        if estimate > lower:
            reset()
            rows += _fill([shifted, base_row], 1 + w, lower, upper, point, grid)
    table = np.array(rows)
    _, first = np.unique(table[:, 1 + w], return_index=True)
    table = table[np.sort(first)]
    return table[np.argsort(table[:, 1 + w], kind="stable")]


LIMIT_TOL = 1e-6
"""The search for a profile limit stops when zeta is this close to its target."""

LIMIT_INTERPOLATE = 1e-4
"""Within this distance of the target the next guess (the quadratic in zeta through the
three nearest points) is the limit, without computing its point: its error, about the
third derivative times the product of the three distances, is below 1e-9 relative on the
fixture models and InstEval."""

LIMIT_POINTS = 30
"""Profile points at most in the search for one limit."""


def _search_limit(
    point: Callable[[float, np.ndarray], np.ndarray],
    base_row: np.ndarray,
    column: int,
    target: float,
    first: float,
    bound: float,
) -> float:
    """The value where zeta reaches ``target``, from the estimate (zeta 0) and ``first``.

    Each next value interpolates the value as a quadratic in zeta through the
    three points nearest the target (a line through two at first), kept
    within the bracket once a point has passed the target (else the bracket's
    midpoint) and to at most :data:`LIMIT_GROWTH` times the last step before.
    The search ends at a point within :data:`LIMIT_TOL` of the target, or,
    once three points have been computed and the last is within
    :data:`LIMIT_INTERPOLATE`, at the next guess. A profile that reaches
    ``bound`` short of the target gives ``bound``; a point whose inner
    optimization fails is retried halfway back.
    """
    sign = 1.0 if target > 0 else -1.0
    seen = [(0.0, float(base_row[column]))]  # (zeta, value)
    rows = [base_row]
    value = first
    for _ in range(LIMIT_POINTS):
        row = point(value, _predicted_row(rows, column, value))
        zeta = row[0]
        if not np.isfinite(zeta):
            value = 0.5 * (value + seen[-1][1])  # back towards the last good point
            continue
        if abs(zeta - target) <= LIMIT_TOL:
            return value
        if sign * (zeta - target) < 0 and value == bound:
            return bound
        seen.append((float(zeta), value))
        rows.append(row)
        value = _next_limit_guess(seen, target, sign, bound)
        if abs(zeta - target) <= LIMIT_INTERPOLATE and len(seen) > 3:
            return value  # the quadratic through the nearest three points
    short, past = _split_at_target(seen, target, sign)
    if not past:
        return np.nan
    (z_near, v_near), (z_far, v_far) = short, past
    return float(v_near + (target - z_near) * (v_far - v_near) / (z_far - z_near))


def _split_at_target(
    seen: list[tuple[float, float]], target: float, sign: float
) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """The point nearest the target short of it, and the nearest past it (or None)."""
    short = [p for p in seen if sign * (p[0] - target) < 0]
    past = [p for p in seen if sign * (p[0] - target) >= 0]
    nearest_short = max(short, key=lambda p: sign * p[0])
    return nearest_short, (min(past, key=lambda p: sign * p[0]) if past else None)


def _predicted_row(rows: list[np.ndarray], column: int, value: float) -> np.ndarray:
    """A start for the point at ``value``: the line through the two nearest rows."""
    if len(rows) < 2:
        return rows[-1]
    a, b = sorted(rows, key=lambda r: abs(r[column] - value))[:2]
    if a[column] == b[column] or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return a
    return a + (value - a[column]) * (b - a) / (b[column] - a[column])


LIMIT_GROWTH = 100.0
"""A search step is at most this many times the one before (the bracket then limits it)."""


def quadratic_through(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """The parabola through three points ``(x, y)`` (distinct ``x``), at ``at`` (Lagrange's
    form: nearly equal ``x`` give a large or non-finite value, never numpy's RankWarning)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        total = 0.0
        for i in range(3):
            others = [j for j in range(3) if j != i]
            weight = np.prod([(at - x[j]) / (x[i] - x[j]) for j in others])
            total += y[i] * weight
    return float(total)


def _next_limit_guess(
    seen: list[tuple[float, float]], target: float, sign: float, bound: float
) -> float:
    """The next value in the search of :func:`_search_limit`."""
    nearest = sorted(seen, key=lambda p: abs(p[0] - target))[:3]
    zetas = np.array([z for z, _ in nearest])
    values = np.array([v for _, v in nearest])
    if len(nearest) == 3 and len(np.unique(zetas)) == 3:
        guess = quadratic_through(zetas, values, target)
    else:
        (z0, v0), (z1, v1) = nearest[0], nearest[1]
        # a flat stretch (a correlation whose sd may be 0): as far as allowed
        guess = v0 + (target - z0) * (v1 - v0) / (z1 - z0) if z1 != z0 else np.nan
    short, past = _split_at_target(seen, target, sign)
    v_last = seen[-1][1]
    if past is not None:
        a, b = sorted([short[1], past[1]])
        return guess if a < guess < b else 0.5 * (a + b)
    step = abs(v_last - seen[-2][1])
    direction = np.sign(v_last - seen[0][1])
    if not np.isfinite(guess):
        guess = v_last + direction * LIMIT_GROWTH * step
    guess = float(np.clip(guess, v_last - LIMIT_GROWTH * step, v_last + LIMIT_GROWTH * step))
    if np.sign(guess - v_last) != direction:  # heading back: step on instead
        guess = v_last + direction * step
    return min(guess, bound) if direction > 0 else max(guess, bound)


def _parameter_limits(
    prof: _Profiler,
    w: int,
    grid: _Grid,
    quantile: float,
    report: Callable[[np.ndarray], None] | None = None,
) -> np.ndarray:
    """The lower and upper profile limits of parameter ``w`` (zeta = -quantile, +quantile).

    The first points are lme4's (1 % of the estimate, ``delta`` standard
    errors for a fixed effect), on either side. A variance parameter whose
    profile reaches its bound short of the quantile gets the bound; a fixed
    effect whose search fails gets NaN (as with the spline).
    """
    estimate, lower, upper = prof.opt[w], prof.lower[w], prof.upper[w]
    base_row = np.concatenate([[0.0], prof.opt])
    point, shift, reset = _point_function(prof, w, grid, SEARCH, report)
    out = np.full(2, np.nan)
    for side, (target, bound) in enumerate([(-quantile, lower), (quantile, upper)]):
        if estimate <= bound if side == 0 else estimate >= bound:
            out[side] = bound  # the estimate is on this bound
            continue
        reset()
        step = abs(shift - estimate)
        first = estimate - step if side == 0 else estimate + step
        first = min(upper, max(lower, first))
        out[side] = _search_limit(point, base_row, 1 + w, target, first, bound)
    return out


_WORKER: dict[str, Any] = {}

Task = tuple[str, int, Any]
"""``("grid", w, values)``: a profile of parameter ``w`` (lme4's grid, or at ``values``);
``("limits", w, quantile)``: its limits at zeta = -quantile and +quantile."""


def _run_task(
    prof: _Profiler, grid: _Grid, task: Task, report: Callable[[np.ndarray], None] | None = None
) -> np.ndarray:
    kind, w, argument = task
    if kind == "grid":
        return _profile_parameter(prof, w, grid, argument, report)
    return _parameter_limits(prof, w, grid, argument, report)


def _worker_init(payload: bytes) -> None:
    _WORKER["prof"], _WORKER["grid"] = pickle.loads(payload)


def _worker_run(task: Task) -> tuple[int, np.ndarray, float]:
    prof = _WORKER["prof"]
    prof.lowest = 0.0
    return task[1], _run_task(prof, _WORKER["grid"], task), prof.lowest


def _run_all(
    prof: _Profiler,
    grid: _Grid,
    tasks: list[Task],
    names: list[str],
    bar: Progress,
    n_jobs: int,
) -> dict[int, np.ndarray]:
    """Each task's result by parameter (here or in ``n_jobs`` worker processes)."""
    results: dict[int, np.ndarray] = {}
    if n_jobs > 1:
        payload = pickle.dumps((prof, grid))
        for _, (w, result, lowest) in map_in_workers(
            _worker_run, tasks, n_jobs, _worker_init, (payload,)
        ):
            results[w] = result
            prof.lowest = min(prof.lowest, lowest)
            bar.update(note=names[w])
        return results
    for task in tasks:
        w = task[1]

        def report(row: np.ndarray, name: str = names[w]) -> None:
            bar.note(f"{name}: zeta {row[0]:+.2f}")

        results[w] = _run_task(prof, grid, task, report)
        bar.update(note=names[w])
    return results


MIN_MAXPTS = 3
"""The smallest ``maxpts``: the estimate, lme4's first step and one secant step (lme4
does not check; its matrix of ``maxpts`` rows fails to take the first step at 1, and
at 2 holds only the first step on each side)."""


def _check_grid(
    alpha_max: Any, maxpts: Any, delta: Any, delta_cutoff: Any, maxmult: Any
) -> tuple[float, int, float | None, float, float]:
    """lme4's grid controls, checked (each error names the argument)."""
    alpha_max = check_unit_interval("alpha_max", alpha_max, "the cutoff's tail probability")
    if isinstance(maxpts, float) and maxpts.is_integer():  # 50.0, as R's numbers are
        maxpts = int(maxpts)
    maxpts = check_count("maxpts", maxpts, MIN_MAXPTS)
    delta = None if delta is None else check_positive("delta", delta)
    delta_cutoff = check_positive("delta_cutoff", delta_cutoff)
    maxmult = _check_maxmult(maxmult)
    return alpha_max, maxpts, delta, delta_cutoff, maxmult


def _check_maxmult(value: Any) -> float:
    """``maxmult``, at least 1: a step may grow to this many times the previous one;
    below 1 the steps shrink geometrically and may never reach the cutoff."""
    number = check_positive("maxmult", value)
    if number < 1.0:
        raise ValueError(
            "maxmult must be at least 1 (the most a step may grow over the previous one; "
            f"below 1 the steps shrink and may never reach the cutoff), got {value!r}"
        )
    return number


def _checked_at(at: Any, names: list[str], asked: list[str]) -> dict[str, np.ndarray] | None:
    """``at`` as ``{name: float array}``: a dict of profiled parameters' names.

    Raises
    ------
    TypeError
        ``at`` not a dict, or values that are not numbers.
    KeyError
        An unknown parameter name (listing the parameters).
    ValueError
        A parameter that is not profiled (``which``), or without values.
    """
    if at is None:
        return None
    if not isinstance(at, Mapping):
        raise TypeError(
            f"at must be a dict {{parameter name: values}}, got {type(at).__name__} {at!r}"
        )
    out = {}
    for key, values in at.items():
        if key not in names:
            raise KeyError(f"at: unknown parameter {key!r}; parameters are {names}")
        if key not in asked:
            raise ValueError(
                f"at: {key!r} is not among the parameters profiled ({', '.join(asked)}); "
                "add it to which="
            )
        if isinstance(values, str | bytes | bool | np.bool_):
            raise TypeError(f"at[{key!r}] must be numbers, got {values!r}")
        try:
            array = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
        except (TypeError, ValueError):
            raise TypeError(f"at[{key!r}] must be numbers, got {values!r}") from None
        out[key] = array
    return out


def _usable_at(at: dict[str, np.ndarray] | None, prof: _Profiler, names: list[str]) -> None:
    """Refuse a parameter of ``at`` left with no value to profile at (ValueError)."""
    for key, values in (at or {}).items():
        w = names.index(key)
        lower, upper, estimate = prof.lower[w], prof.upper[w], prof.opt[w]
        usable = np.isfinite(values) & (values >= lower) & (values <= upper) & (values != estimate)
        if not usable.any():
            raise ValueError(
                f"at[{key!r}] has no finite value within {key}'s bounds [{lower:g}, {upper:g}] "
                f"other than its estimate {estimate:.6g}, got {values.tolist()}"
            )


def _asked(res: Any, which: Any, signames: bool) -> list[int]:
    """Positions of the parameters ``which`` selects (the fit's names are the ML refit's)."""
    names = parameter_names(res, signames)
    return select_parameters(which, names, len(names) - len(res.model.exog_names))


def _profiled(
    res: Any, asked: list[int], signames: bool, alpha_max: float, delta: float | None, **grid: Any
) -> tuple[_Profiler, list[str], list[int], _Grid]:
    """The profiler, the parameter names, those of ``asked`` (positions) that are
    identified, and the grid."""
    prof = _Profiler.from_results(res)
    names = variance_names(prof.model, signames) + list(prof.model.exog_names)
    cutoff = math.sqrt(stats.chi2.ppf(1.0 - alpha_max, len(names)))
    delta = cutoff * grid.pop("delta_cutoff") if delta is None else float(delta)
    identified = []
    for w in asked:
        if np.isfinite(prof.opt[w]):
            identified.append(w)
            continue
        warn(
            f"{names[w]} is not identified at the estimates (a correlation of a zero "
            "standard deviation); not profiled",
            EstimationWarning,
        )
    return prof, names, identified, _Grid(cutoff, delta, grid["maxpts"], grid["maxmult"])


def _warn_if_lower(prof: _Profiler) -> None:
    if prof.lowest < -max(1e-6, 1e-10 * abs(prof.base)):
        warn(
            f"profiling found a deviance {-prof.lowest:.3g} below the fit's: "
            "the fit is not at the optimum",
            ConvergenceWarning,
        )


def profile_limits(
    res: Any,
    which: Any = None,
    level: float = 0.95,
    signames: bool = True,
    progress: bool | None = None,
    n_jobs: int | None = 1,
) -> pd.DataFrame:
    """Profile confidence limits found directly, without profiling on lme4's grid.

    The limits are where ``zeta`` (see :func:`profile`) reaches
    ``-+qnorm((1 + level) / 2)``. Each is searched for from the estimate:
    lme4's first step (1 % of a variance parameter, ``delta`` standard errors
    of a fixed effect), then the value interpolated as a quadratic in zeta
    through the nearest points (a line at first; within the bracket once the
    target is passed), until zeta is within 1e-6 of the target, or within
    1e-4 with three points (then the interpolated value). That takes 2-5
    profile points per limit, against the 15-20 per parameter of lme4's grid,
    which goes on to ``|zeta| = sqrt(qchisq(0.99, npar))``. The limits are
    those of the exact profile; lme4's (:func:`confint_profile`) interpolate
    the grid with a spline and differ by its error (up to 2e-4 relative on
    lme4's examples). The inner optimizations start from the line through
    the two nearest points.

    Parameters
    ----------
    res : LmerResults
    which : None, str, int or sequence
        Parameters, as for :func:`profile`.
    level : float
        Confidence level.
    signames : bool
        ``.sig01``-style names (default) or descriptive ones.
    progress : bool or None
        Progress bar, one step per parameter.
    n_jobs : int or None
        Worker processes searching the limits of different parameters at
        once, as joblib's ``n_jobs`` (``-1``: every CPU); the results are the
        same as in one process.

    Returns
    -------
    pandas.DataFrame
        One row per parameter, columns ``"2.5 %"`` and ``"97.5 %"`` (for 0.95).
    """
    level = check_level(level)
    signames = check_bool("signames", signames)
    asked = _asked(res, which, signames)  # checked before the ML refit
    effective_jobs(n_jobs)
    prof, names, chosen, grid = _profiled(
        res, asked, signames, 0.01, None, delta_cutoff=1 / 8, maxpts=100, maxmult=10.0
    )
    alpha = (1.0 - level) / 2.0
    quantile = float(stats.norm.ppf(1.0 - alpha))
    tasks: list[Task] = [("limits", w, quantile) for w in chosen]
    with Progress(len(asked), "profile limits", "parameter", enabled=progress) as bar:
        if len(asked) > len(chosen):
            bar.update(len(asked) - len(chosen))
        limits = _run_all(prof, grid, tasks, names, bar, effective_jobs(n_jobs, len(tasks)))
    _warn_if_lower(prof)
    out = np.full((len(asked), 2), np.nan)
    for row, w in enumerate(asked):
        if w in limits:
            out[row] = limits[w]
    return pd.DataFrame(
        out, index=[names[w] for w in asked], columns=percent_labels([alpha, 1.0 - alpha])
    )


def profile(
    res: Any,
    which: Any = None,
    alpha_max: float = 0.01,
    maxpts: int = 100,
    delta: float | None = None,
    delta_cutoff: float = 1 / 8,
    maxmult: float = 10.0,
    signames: bool = True,
    at: dict[str, Any] | None = None,
    progress: bool | None = None,
    n_jobs: int | None = 1,
) -> ProfileResult:
    """Likelihood profiles of the parameters, as lme4's ``profile.merMod``.

    For each parameter, ``zeta(par) = sign(par - par_hat) sqrt(dev(par) - dev_hat)`` with
    every other parameter profiled out, on a grid on both sides of the estimate. The ML
    deviance is used; a REML fit is refitted by ML first (lme4's ``devfun2`` calls
    ``refitML``). Variance parameters are profiled on the standard deviation / correlation
    scale (with the fixed effects profiled out and the other variance parameters
    optimized within their bounds); fixed effects by holding one coefficient fixed and
    optimizing theta.

    The grid is lme4's: the first step moves the estimate by 1% (by ``1e-3`` from a zero
    estimate; by ``delta`` standard errors for a fixed effect), then secant steps aim at
    increments of ``delta`` in zeta (at most ``maxmult`` times the previous step), until
    ``|zeta|`` exceeds ``sqrt(qchisq(1 - alpha_max, npar))`` with ``npar`` the total number
    of parameters, a bound is reached, or ``maxpts`` points were used on one side.

    Parameters
    ----------
    res : LmerResults
    which : None, str, int or sequence
        Parameters to profile: names (see :func:`parameter_names`), positions,
        ``"theta_"`` (all variance parameters) or ``"beta_"`` (all fixed effects);
        default all.
    alpha_max : float
        Sets the largest ``|zeta|`` profiled (lme4's ``alphamax``), strictly
        between 0 and 1.
    maxpts, delta, delta_cutoff, maxmult
        lme4's grid controls; ``delta`` defaults to ``delta_cutoff`` times the cutoff.
        ``maxpts`` (points on each side) is a whole number, at least 3; ``delta``
        and ``delta_cutoff`` are positive; ``maxmult`` (the most a step may grow
        over the previous one) is at least 1.
    signames : bool
        ``.sig01``-style names (default) or descriptive ones (``sd_Days|Subject``).
    at : dict, optional
        ``{name: values}``: profile these parameters at exactly these values instead of
        on lme4's adaptive grid (the estimate is added; values outside the parameter's
        bounds, and values that are not finite, are dropped). The names must be
        among the profiled parameters (``KeyError`` for unknown ones), and each
        must keep a value within its bounds (``ValueError``).

    progress : bool or None
        Progress bar, one step per profiled parameter, naming the parameter
        and the current zeta. None (default): the package setting
        (:func:`statsmodels_lmer.set_progress`), shown once profiling has run
        for a couple of seconds.
    n_jobs : int or None
        Worker processes profiling different parameters at once, as joblib's
        ``n_jobs`` (``-1``: every CPU); the results are the same as in one
        process.

    Returns
    -------
    ProfileResult
        ``.frame`` is lme4's ``as.data.frame(profile(m))``; ``.confint()`` and
        ``.plot()`` give the intervals and the zeta plots.
    """
    alpha_max, maxpts, delta, delta_cutoff, maxmult = _check_grid(
        alpha_max, maxpts, delta, delta_cutoff, maxmult
    )
    signames = check_bool("signames", signames)
    asked = _asked(res, which, signames)  # checked before the ML refit
    names = parameter_names(res, signames)
    at = _checked_at(at, names, [names[w] for w in asked])
    effective_jobs(n_jobs)
    prof, names, chosen, grid = _profiled(
        res,
        asked,
        signames,
        alpha_max,
        delta,
        delta_cutoff=delta_cutoff,
        maxpts=maxpts,
        maxmult=maxmult,
    )
    _usable_at(at, prof, names)
    tasks: list[Task] = [
        ("grid", w, None if at is None or names[w] not in at else at[names[w]]) for w in chosen
    ]
    bar = Progress(len(asked), "profile", "parameter", enabled=progress)
    if len(asked) > len(chosen):
        bar.update(len(asked) - len(chosen))
    tables = _run_all(prof, grid, tasks, names, bar, effective_jobs(n_jobs, len(tasks)))
    frames = []
    for w in chosen:
        frame = pd.DataFrame(tables[w], columns=[".zeta", *names])
        frame[".par"] = names[w]
        frames.append(frame)
    _warn_if_lower(prof)
    bar.close()
    if frames:
        out = pd.concat(frames, ignore_index=True)
    else:
        out = pd.DataFrame(columns=[".zeta", *names, ".par"])
    return ProfileResult(
        frame=out,
        estimates=dict(zip(names, map(float, prof.opt))),
        lower=dict(zip(names, map(float, prof.lower))),
        upper=dict(zip(names, map(float, prof.upper))),
        deviance=float(prof.base),
        cutoff=float(grid.cutoff),
        refit_ml=bool(res.reml),
        labels=dict(zip(names, variance_names(prof.model, False) + list(prof.model.exog_names))),
    )


def confint_profile(
    prof: ProfileResult, parm: Any = None, level: float = 0.95, broken: list | None = None
) -> pd.DataFrame:
    """Profile confidence intervals from a :func:`profile` (lme4's ``confint.thpr``).

    The limits solve ``zeta = qnorm((1 -+ level) / 2)`` on R's back-spline of the profile.
    Where the profile stops at a bound before reaching the quantile (a standard deviation
    at 0, a correlation at -1 or 1), the limit is that bound; a fixed effect gets NaN.
    A non-monotone profile falls back to linear interpolation, or NaN (with a warning)
    when zeta decreases by more than 0.01. When a list is given as ``broken``, the
    names of the non-monotone profiles are appended to it instead of warning (the
    caller searches their limits, see :func:`~..confint.confint`).

    ``parm``: None (all profiled parameters), a name, a position among the
    profiled parameters, or a list of them; ``level`` strictly between 0 and 1.

    Raises
    ------
    KeyError
        A parameter that was not profiled (naming those that were).
    """
    level = check_level(level)
    frame = prof.frame
    names = _profiled_selection(list(dict.fromkeys(frame[".par"])), parm)
    alpha = (1.0 - level) / 2.0
    probs = [alpha, 1.0 - alpha]
    zeta = stats.norm.ppf(probs)
    lower, upper = prof.lower, prof.upper
    out = np.full((len(names), 2), np.nan)
    for row, name in enumerate(names):
        part = frame.loc[frame[".par"] == name, [name, ".zeta"]].dropna()
        part = part.sort_values(name)
        x, z = part[name].to_numpy(float), part[".zeta"].to_numpy(float)
        try:
            limits = back_spline(x, z)(zeta)
        except (ValueError, np.linalg.LinAlgError):
            if broken is not None:
                broken.append(name)
                continue
            limits = _limits_of_broken_profile(name, x, z, zeta)
            if limits is None:
                continue
        if np.isnan(limits[0]):
            limits[0] = _bound(lower.get(name, np.nan))
        if np.isnan(limits[1]):
            limits[1] = _bound(upper.get(name, np.nan))
        out[row] = limits
    return pd.DataFrame(out, index=names, columns=percent_labels(probs))


def _profiled_selection(profiled: list[str], parm: Any) -> list[str]:
    """The profiled parameters ``parm`` asks for, in the profile's order, once each."""
    if parm is None:
        return profiled
    items = selection_items(parm, "parm")
    if not items:
        raise ValueError(f"parm selects no parameters; the profiled ones are {profiled}")
    wanted: set[str] = set()
    for item in items:
        if isinstance(item, str):
            if item not in profiled:
                raise KeyError(
                    f"parameter {item!r} was not profiled; the profiled parameters are {profiled}"
                )
            wanted.add(item)
        else:
            wanted.update(profiled[k] for k in check_positions("parm", [item], len(profiled)))
    return [name for name in profiled if name in wanted]


def _limits_of_broken_profile(
    name: str, x: np.ndarray, z: np.ndarray, zeta: np.ndarray
) -> np.ndarray | None:
    """Limits where R's back-spline fails: on the increasing part around the estimate.

    A profile whose inner fits jump to another mode far out (zeta decreasing
    beyond the limits asked for) still gives the limits from the points
    around the estimate over which zeta increases, when they reach the
    quantiles; else linear interpolation where zeta is nearly monotone (as
    lme4), else None (NaN limits), each with a warning.
    """
    low, high = _increasing_core(z)
    core_x, core_z = x[low : high + 1], z[low : high + 1]
    if (low > 0 or high < z.size - 1) and core_z[0] <= zeta[0] and core_z[-1] >= zeta[-1]:
        try:
            limits = back_spline(core_x, core_z)(zeta)
        except (ValueError, np.linalg.LinAlgError):
            pass
        else:
            warn(
                f"non-monotonic profile for {name} beyond zeta {core_z[0]:.3g} and "
                f"{core_z[-1]:.3g}: the limits come from the part within",
                ConvergenceWarning,
            )
            return limits
    if np.any(np.diff(z) < -1e-2) or z.size < 2:
        warn(f"non-monotonic profile for {name}", ConvergenceWarning)
        return None
    warn(f"bad spline fit for {name}: falling back to linear interpolation", ConvergenceWarning)
    return np.interp(zeta, z, x, left=np.nan, right=np.nan)


def _increasing_core(z: np.ndarray) -> tuple[int, int]:
    """First and last index of the run around ``zeta = 0`` over which zeta increases."""
    centre = int(np.argmin(np.abs(z)))
    low = high = centre
    while low > 0 and z[low - 1] < z[low]:
        low -= 1
    while high < z.size - 1 and z[high + 1] > z[high]:
        high += 1
    return low, high


@dataclass(eq=False)
class ProfileResult:
    """Likelihood profiles of a fit (lme4's ``thpr`` object).

    Attributes
    ----------
    frame : pandas.DataFrame
        lme4's ``as.data.frame(profile(m))``: columns ``.zeta``, one per
        parameter (the values of all parameters at each profile point) and
        ``.par`` (the name of the profiled parameter), rows sorted by ``.par``
        then by its value.
    estimates, lower, upper : dict
        Each parameter's estimate and bounds (sd/cor scale).
    deviance : float
        The ML deviance at the estimates.
    cutoff : float
        The largest ``|zeta|`` profiled.
    refit_ml : bool
        Whether a REML fit was refitted by ML to profile it (as lme4).
    labels : dict
        Each parameter's descriptive name (``.sig01`` -> ``sd_Intercept|Subject``,
        ``.sigma`` -> ``sigma``; fixed effects keep theirs), used by :meth:`plot`.
    """

    frame: pd.DataFrame
    estimates: dict[str, float]
    lower: dict[str, float]
    upper: dict[str, float]
    deviance: float
    cutoff: float
    refit_ml: bool
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def parameters(self) -> list[str]:
        """The profiled parameters, in order."""
        return list(dict.fromkeys(self.frame[".par"]))

    confint = confint_profile
    """Profile confidence intervals (:func:`confint_profile`)."""

    plot = plot_profile
    """zeta against each parameter (:func:`statsmodels_lmer.graphics.plot_profile`)."""

    def __repr__(self) -> str:
        return (
            f"<ProfileResult: {len(self.parameters)} parameters, {len(self.frame)} points, "
            f"deviance {self.deviance:.6g}{', refitted by ML' if self.refit_ml else ''}>"
        )


def _bound(value: float) -> float:
    return value if np.isfinite(value) else np.nan
