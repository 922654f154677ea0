"""One run of the optimizer the lme4 way: boundary handling and verification.

lme4's ``optimizeLmer`` around one optimizer run: a restart when a parameter
sits on its bound while the objective decreases into the interior
(``restart_edge``) and snapping parameters within ``boundary_tol`` of their
bound onto it when that does not make the objective worse
(``check.boundary``); here also a verification of the optimum by restarts
from the estimate.
"""

from __future__ import annotations

import time

import numpy as np

from .optimizers import (
    Objective,
    OptimizerResult,
    has_gradient,
    minimize_theta,
    restart_from_estimate,
)
from .options import FitOptions

__all__ = ["optimize_lmer"]

Settings = tuple[int | None, float, float]
"""``(maxiter, xtol, ftol)`` of each optimizer run."""

EDGE_STEP = 1e-5
"""Step of lme4's one-sided derivative test for ``restart_edge``."""

EDGE_NUDGE = 1e-3
"""A gradient method restarts from the edge with the element moved this far off its bound.

On the bound of a scalar term the criterion is even, so its gradient there is
exactly 0 and a gradient method started there would not move.
"""

VERIFY_MAX_ROUNDS = 5
"""Verifying restarts at most."""


def optimize_lmer(
    objective: Objective, start: np.ndarray, lower: np.ndarray, options: FitOptions
) -> OptimizerResult:
    """One optimizer run plus lme4's boundary handling (``optimizeLmer``) and verification.

    After :func:`minimize_theta`:

    * ``restart_edge``: for theta elements exactly on their lower bound, the
      one-sided difference ``(f(theta + 1e-5 e_i) - f(theta)) / 1e-5`` is
      computed; when any is negative (the objective falls into the interior)
      the optimizer is run again from the estimate (a gradient method with
      those elements moved 1e-3 off the bound, where the gradient is not 0,
      keeping the new optimum only when it is lower).
    * ``verify``: the optimizer is restarted from its estimate (NLopt ones
      with a small first step: 1e-3 of each element, at least 1e-4) until a
      restart lowers the objective by at most ``verify_tol``, at most five
      times. BOBYQA can stop on ``ftol_abs`` well above the optimum
      (2.9e-5 on a singular fit of the cake data, 1.9e-7 on InstEval); a
      restart costs 6-30 evaluations on small models. ``verified`` records
      the outcome.
    * ``boundary_tol``: each element within ``boundary_tol`` of its bound (but
      not on it) is set to the bound in turn and kept there when the
      objective is not higher than the best value so far. (lme4 compares every
      trial with the optimizer's value, so a later snap could undo part of an
      earlier improvement.) ``0`` disables this.

    The settings come from ``options`` (:class:`FitOptions`); the result's
    ``n_evaluations`` and ``seconds`` include the extra work, ``restarted``,
    ``verify_rounds`` and ``boundary_snapped`` say what was done.
    """
    began = time.perf_counter()
    lower = np.asarray(lower, dtype=float)
    settings = (options.maxiter, options.xtol, options.ftol)
    result = minimize_theta(objective, start, lower, options.method, *settings)
    extra = 0
    if options.restart_edge:
        extra += _restart_from_edge(objective, result, lower, settings)
    if options.verify:
        extra += _verify(objective, result, lower, settings, options.verify_tol)
    if options.boundary_tol > 0:
        extra += _snap_to_boundary(objective, result, lower, options.boundary_tol)
    result.n_evaluations += extra
    result.seconds = time.perf_counter() - began
    return result


def _adopt(result: OptimizerResult, other: OptimizerResult) -> None:
    result.theta, result.fun = other.theta, other.fun
    result.message, result.success = other.message, other.success


def _restart_from_edge(
    objective: Objective, result: OptimizerResult, lower: np.ndarray, settings: Settings
) -> int:
    """lme4's ``restart_edge``; updates ``result`` and returns the evaluations used."""
    on_edge = np.flatnonzero(result.theta == lower)
    if not on_edge.size:
        return 0
    base = float(objective(result.theta))
    used = 1
    slopes = []
    for index in on_edge:
        moved = result.theta.copy()
        moved[index] = lower[index] + EDGE_STEP
        slopes.append((float(objective(moved)) - base) / EDGE_STEP)
        used += 1
    if any(slope < 0 for slope in slopes):
        start = result.theta.copy()
        nudged = has_gradient(objective) and result.method == "lbfgsb"
        if nudged:
            moved = on_edge[np.asarray(slopes) < 0]
            start[moved] = lower[moved] + EDGE_NUDGE
        again = minimize_theta(objective, start, lower, result.method, *settings)
        used += again.n_evaluations
        result.n_gradients += again.n_gradients
        if not nudged or again.fun < result.fun:
            _adopt(result, again)
        result.restarted = True
    return used


def _verify(
    objective: Objective, result: OptimizerResult, lower: np.ndarray, settings: Settings, tol: float
) -> int:
    """Restart until the objective no longer falls by more than ``tol``; returns evaluations."""
    used = 0
    improvement = np.inf
    while result.verify_rounds < VERIFY_MAX_ROUNDS and improvement > tol:
        again = restart_from_estimate(objective, result, lower, *settings)
        used += again.n_evaluations
        result.n_gradients += again.n_gradients
        result.verify_rounds += 1
        improvement = max(result.fun - again.fun, 0.0) if np.isfinite(result.fun) else np.inf
        if again.fun < result.fun:  # the message and success flag stay the first run's
            result.theta, result.fun = again.theta, again.fun
    result.verify_improvement = float(improvement)
    result.verified = bool(improvement <= tol)
    return used


def _snap_to_boundary(
    objective: Objective, result: OptimizerResult, lower: np.ndarray, boundary_tol: float
) -> int:
    """lme4's ``boundary.tol`` handling; updates ``result`` and returns the evaluations used."""
    gap = result.theta - lower
    near = np.flatnonzero((gap > 0) & (gap < boundary_tol))
    theta, best = result.theta.copy(), result.fun
    for index in near:
        trial = theta.copy()
        trial[index] = lower[index]
        value = float(objective(trial))
        if value <= best:
            theta, best = trial, value
            result.boundary_snapped.append(int(index))
    if result.boundary_snapped:
        result.theta, result.fun = theta, best
    return int(near.size)
