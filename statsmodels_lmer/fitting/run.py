"""One run of the optimizer the lme4 way: boundary handling and verification.

lme4's ``optimizeLmer`` around one optimizer run: a restart when a parameter
sits on its bound while the objective decreases into the interior
(``restart_edge``) and snapping parameters within ``boundary_tol`` of their
bound onto it when that does not make the objective worse
(``check.boundary``); here also a verification of the optimum: by the local
quadratic model (finite differences of values, lme4's ``deriv12``
derivatives, or differences of the analytic gradient) where that is cheap,
else by restarts from the estimate.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from ..engine.gradient import POLISHED_MAX_THETA, relative_steps
from ..linalg import cho_factor, cho_solve
from .convergence import DERIV12_STEP, SINGULAR_TOL, central_differences, deriv12
from .optimizers import (
    SELF_VERIFYING,
    Objective,
    OptimizerResult,
    cross_check_optimizer,
    has_gradient,
    minimize_theta,
    restart_from_estimate,
)
from .options import FitOptions

__all__ = ["gradient_model", "local_verification", "optimize_lmer", "quadratic_model"]

Settings = tuple[int | None, float, float]
"""``(maxiter, xtol, ftol)`` of each optimizer run."""

EDGE_STEP = 1e-5
"""Step of lme4's one-sided derivative test for ``restart_edge``."""

RELEASE_STEP = 1e-3
"""Length of the first column of ``T`` with which a collapsed vector term is probed.

A term whose theta are all 0 is a stationary point of the criterion in those
theta (it depends on them through ``T T'``), and the one-sided differences of
``restart_edge`` look along single elements only, that is along ``e_i e_i'``
in the term's covariance. The criterion may fall along a correlated direction
``v v'`` all the same (:func:`_release_direction`).
"""

EDGE_NUDGE = 1e-3
"""A gradient method restarts from the edge with the element moved this far off its bound.

On the bound of a scalar term the criterion is even, so its gradient there is
exactly 0 and a gradient method started there would not move.
"""

VERIFY_MAX_ROUNDS = 5
"""Verifying restarts at most."""

LOCAL_MAX_ROUNDS = 3
"""Local checks at most (each from the Newton point of the one before)."""

NEWTON_MIN_GAIN = 1e-8
"""A verified estimate moves to its Newton point when that lowers the objective by more.

The deviance is ``-2`` log-likelihood, so a move with ``delta' H delta / 2 = g``
(``H`` the Hessian of the deviance) is ``sqrt(g)`` standard errors of theta
(covariance ``2 H^-1``): gains below 1e-8 move the estimate by less than 1e-4
of its standard error, and keeping it saves the derivatives' re-evaluation.
"""

LOCAL_MAX_K = 3
"""Up to this many theta the optimum is verified by its local quadratic model.

Without lme4's derivatives to reuse, the model costs ``k (k + 3) / 2``
evaluations plus one for the Newton point (6 for two theta, 10 for three),
against 13-17 for a BOBYQA restart with two theta (crossed ``(1|A) + (1|B)``
fits) and 14 with three (InstEval). With more theta the local check is used
only when lme4's ``deriv12`` derivatives are wanted anyway.
"""


LOCAL_GRADIENT_MAX_K = POLISHED_MAX_THETA
"""Up to this many theta, a fit on the analytic gradient is verified by its local model.

The Hessian comes from changes of the gradient (:func:`gradient_model`: at
most ``k`` gradients, fewer where the optimizer's last steps serve as
secants, and one value for the Newton point), against 5-6 gradients for a
restart from the estimate; its Newton step is also what lets L-BFGS-B stop
early (:func:`~statsmodels_lmer.fitting.lbfgsb.minimize_with_gradient`'s
``polished``). Such fits use it with any number of theta up to this one
(:data:`LOCAL_MAX_K` applies to fits without the gradient).
"""


def optimize_lmer(
    objective: Objective,
    start: np.ndarray,
    lower: np.ndarray,
    options: FitOptions,
    initial_step: np.ndarray | None = None,
    derivs_wanted: bool = False,
) -> OptimizerResult:
    """One optimizer run plus lme4's boundary handling (``optimizeLmer``) and verification.

    After :func:`minimize_theta`:

    * ``restart_edge``: for theta elements exactly on their lower bound, the
      one-sided difference ``(f(theta + 1e-5 e_i) - f(theta)) / 1e-5`` is
      computed; when any is negative (the objective falls into the interior)
      the optimizer is run again from the estimate (a gradient method with
      those elements moved 1e-3 off the bound, where the gradient is not 0,
      keeping the new optimum only when it is lower).
    * ``verify``: BOBYQA can stop on ``ftol_abs`` well above the optimum
      (2.9e-5 on a singular fit of the cake data, 1.9e-7 on InstEval), so
      the optimum is verified. At an interior estimate (no bounded element
      below lme4's singular tolerance 1e-4) with at most :data:`LOCAL_MAX_K`
      theta, or when the caller wants lme4's ``deriv12`` derivatives there
      anyway (``derivs_wanted``), by the local quadratic model
      (:func:`local_verification`: ``k (k + 3) / 2 + 1`` evaluations, or
      ``2 k^2 + 1`` with ``deriv12``, whose derivatives are then kept in
      ``result.derivs``); with up to :data:`LOCAL_GRADIENT_MAX_K` theta and
      L-BFGS-B on the analytic gradient, by the model from differences of
      that gradient (:func:`gradient_model`). Otherwise, or when that check
      fails, the optimizer is restarted from its estimate (NLopt ones with a
      small first step: 1e-3 of each element, at least 1e-4) until a
      restart lowers the objective by at most ``verify_tol``, at most five
      times; a restart costs 6-30 evaluations on small models. ``verified``
      and ``verify_method`` record the outcome.
    * ``boundary_tol``: each element within ``boundary_tol`` of its bound (but
      not on it) is set to the bound in turn and kept there when the
      objective is not higher than the best value so far. (lme4 compares every
      trial with the optimizer's value, so a later snap could undo part of an
      earlier improvement.) ``0`` disables this.

    The settings come from ``options`` (:class:`FitOptions`); the result's
    ``n_evaluations`` and ``seconds`` include the extra work, ``restarted``,
    ``verify_rounds`` and ``boundary_snapped`` say what was done.
    ``initial_step`` is the NLopt optimizers' first step of the first run.
    """
    began = time.perf_counter()
    lower = np.asarray(lower, dtype=float)
    settings = (options.maxiter, options.xtol, options.ftol)
    polished = _gradient_polish(objective, lower, options)
    result = minimize_theta(
        objective,
        start,
        lower,
        options.method,
        *settings,
        initial_step=initial_step,
        polished=polished,
    )
    extra = 0
    if options.restart_edge:
        extra += _restart_from_edge(objective, result, lower, settings)
    if options.verify:
        tol = options.verify_tol
        model = _local_model(objective, result, lower, derivs_wanted)
        if model is not None:
            extra += _verify_locally(objective, result, lower, tol, model)
        if result.verified is not True:
            extra += _verify(objective, result, lower, settings, tol)
    if options.boundary_tol > 0:
        extra += _snap_to_boundary(objective, result, lower, options.boundary_tol)
        if result.boundary_snapped:  # the derivatives were taken elsewhere
            result.derivs = None
    restarted = result.verify_method == "restart"  # a local check is independent already
    if options.verify and restarted and result.verified and result.method not in SELF_VERIFYING:
        extra += _cross_check(objective, result, lower, options, derivs_wanted)
    result.n_evaluations += extra
    result.seconds = time.perf_counter() - began
    return result


def _cross_check(
    objective: Objective,
    result: OptimizerResult,
    lower: np.ndarray,
    options: FitOptions,
    derivs_wanted: bool,
) -> int:
    """A whole fit by :func:`cross_check_optimizer` from an estimate of an optimizer
    outside :data:`SELF_VERIFYING`; its estimate is taken when lower by more than
    ``verify_tol`` (``verify_method`` says so). Returns the evaluations.

    Such optimizers can stall again where they stopped: a REML fit by
    Nelder-Mead ended 2.06 above the optimum, its own restart confirmed it, and
    BOBYQA from there (with its edge restart) reached the optimum.
    """
    second = cross_check_optimizer()
    check = optimize_lmer(
        objective, result.theta, lower, replace(options, method=second), None, derivs_wanted
    )
    result.n_gradients += check.n_gradients
    gain = result.fun - check.fun
    result.verify_method = f"{result.verify_method}; {second} from the estimate"
    if gain > options.verify_tol:
        result.theta, result.fun = check.theta, check.fun
        result.verified, result.derivs = check.verified, check.derivs
        result.verify_improvement = float(gain)
        result.boundary_snapped = list(check.boundary_snapped)
    return check.n_evaluations


def _adopt(result: OptimizerResult, other: OptimizerResult) -> None:
    result.theta, result.fun = other.theta, other.fun
    result.message, result.success = other.message, other.success


def _restart_from_edge(
    objective: Objective, result: OptimizerResult, lower: np.ndarray, settings: Settings
) -> int:
    """lme4's ``restart_edge``, its mirror and collapsed vector terms; updates ``result``
    and returns the evaluations.

    A diagonal element at 0 whose column of ``T`` has nonzero elements below
    it sits on a mirror plane: the criterion is even in each column, so
    moving the element below 0 is moving it above 0 with the rest of its
    column negated. The one-sided difference is taken on that side too
    (:func:`_mirror_slopes`); where only it falls, the optimizer restarts
    from the mirrored estimate, whose value is the same. Where neither
    falls, and after any restart, a vector term whose theta are all 0 is
    probed along correlated directions (:func:`_release_collapsed`), and the
    optimizer restarts from a lower point found there, its result kept when
    lower (a restart from a falling edge could end on such a term).
    """
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
    falling = on_edge[np.asarray(slopes) < 0]
    start = result.theta.copy()
    mirrored = not falling.size
    if mirrored:
        falling, mirror_used = _mirror_slopes(objective, result.theta, lower, on_edge, base)
        used += mirror_used
        if not falling.size:
            return used + _restart_released(objective, result, lower, base, settings)
        for index in falling:
            start[_column_below(lower, index)] *= -1.0
    nudged = has_gradient(objective) and result.method == "lbfgsb"
    if nudged:
        start[falling] = lower[falling] + EDGE_NUDGE
    step = None  # L-BFGS-B's restart: a unit first move, as tuned with EDGE_NUDGE
    if result.method != "lbfgsb":
        step = relative_steps(start, EDGE_RESTART_STEP, EDGE_RESTART_MIN_STEP)
    again = minimize_theta(objective, start, lower, result.method, *settings, initial_step=step)
    used += again.n_evaluations
    result.n_gradients += again.n_gradients
    improved = again.fun < result.fun
    if not (nudged or mirrored) or improved:
        _adopt(result, again)
    result.restarted = True
    # wherever the restart ended, a collapsed term may still fall
    used += _restart_released(objective, result, lower, float(result.fun), settings)
    return used


EDGE_RESTART_STEP = 0.1
"""First step of an NLopt optimizer's restart from the edge, relative to each element
(at least :data:`EDGE_RESTART_MIN_STEP`). With NLopt's own choice BOBYQA crawled: on
``y ~ x + (1 | h) + (0 + f | g) + (1 | site) + (1 | g:h)`` (16,756 rows, the sparse
path) the restart took 4,326 evaluations (35 s) to fall 1.8 units below where the fit
stopped, and with this step 257 to the same optimum."""

EDGE_RESTART_MIN_STEP = 0.05
"""The least first step of a restart from the edge (an element at 0 among them)."""


def _restart_released(
    objective: Objective,
    result: OptimizerResult,
    lower: np.ndarray,
    base: float,
    settings: Settings,
) -> int:
    """The optimizer from a released collapsed term (:func:`_release_collapsed`), adopted
    when lower; the evaluations. ``base``: the objective at ``result.theta``."""
    start, used = _release_collapsed(objective, result.theta, lower, base)
    if start is None:
        return used
    again = minimize_theta(objective, start, lower, result.method, *settings)
    result.n_gradients += again.n_gradients
    result.restarted = True
    if again.fun < result.fun:
        _adopt(result, again)
    return used + again.n_evaluations


def _term_blocks(lower: np.ndarray) -> list[tuple[int, int]]:
    """``(first index, p)`` of each term in theta, read from the bounds.

    A term's theta are its ``T`` column by column, each column a diagonal
    element (bound 0) and the ``p - 1``, ``p - 2``, ... elements below it.
    """
    blocks, index = [], 0
    while index < lower.size:
        p = _column_below(lower, index).size + 1
        blocks.append((index, p))
        index += p * (p + 1) // 2
    return blocks


def _release_collapsed(
    objective: Objective, theta: np.ndarray, lower: np.ndarray, base: float
) -> tuple[np.ndarray | None, int]:
    """A point off a collapsed vector term where the objective falls, and the evaluations.

    For each vector term whose theta are all within lme4's singular tolerance
    (1e-4) of 0,
    the curvature ``G`` of the objective in the term's covariance is probed
    with ``T``'s first column at :data:`RELEASE_STEP` times ``u``, ``u`` the
    unit vectors and their pairwise sums (``p (p + 1) / 2`` evaluations):
    ``f = f_0 + d^2 u' G u``. Where ``G`` has a negative eigenvalue, the
    point along its eigenvector is evaluated and returned when it is lower.
    """
    used = 0
    for first, p in _term_blocks(lower):
        part = slice(first, first + p * (p + 1) // 2)
        if p < 2 or np.any(np.abs(theta[part]) >= SINGULAR_TOL):
            continue
        direction, probes = _release_direction(objective, theta, first, p, base)
        used += probes
        if direction is None:
            continue
        moved = _with_first_column(theta, first, p, RELEASE_STEP * direction)
        used += 1
        if float(objective(moved)) < base:
            return moved, used
    return None, used


def _release_direction(
    objective: Objective, theta: np.ndarray, first: int, p: int, base: float
) -> tuple[np.ndarray | None, int]:
    """The eigenvector of the probed curvature ``G`` with a negative eigenvalue, or None."""
    step = RELEASE_STEP

    def curvature(u: np.ndarray) -> float:
        moved = _with_first_column(theta, first, p, step * u)
        return (float(objective(moved)) - base) / step**2

    eye = np.eye(p)
    G = np.diag([curvature(e) for e in eye])
    for i, j in itertools.combinations(range(p), 2):
        both = curvature((eye[i] + eye[j]) / np.sqrt(2.0))
        G[i, j] = G[j, i] = both - (G[i, i] + G[j, j]) / 2.0
    values, vectors = np.linalg.eigh(G)
    probes = p * (p + 1) // 2
    if not (np.isfinite(values[0]) and values[0] < 0):
        return None, probes
    direction = vectors[:, 0]
    return (direction if direction[0] >= 0 else -direction), probes


def _with_first_column(theta: np.ndarray, first: int, p: int, column: np.ndarray) -> np.ndarray:
    """theta with a term's ``T`` set to ``column`` in its first column and 0 elsewhere."""
    out = theta.copy()
    out[first : first + p * (p + 1) // 2] = 0.0
    out[first : first + p] = column
    return out


def _column_below(lower: np.ndarray, index: int) -> np.ndarray:
    """Indices of the elements below the diagonal element ``index`` in its column of ``T``.

    In lme4's order (each term's lower triangle column by column) they are the
    unbounded elements that follow it.
    """
    end = index + 1
    while end < lower.size and lower[end] == -np.inf:
        end += 1
    return np.arange(index + 1, end)


def _mirror_slopes(
    objective: Objective, theta: np.ndarray, lower: np.ndarray, on_edge: np.ndarray, base: float
) -> tuple[np.ndarray, int]:
    """Diagonal elements at 0 into whose mirror side the objective falls, and the evaluations.

    For each such element with a nonzero column below it, the one-sided
    difference ``(f(theta') - f(theta)) / EDGE_STEP`` at ``theta'``: the
    element at ``EDGE_STEP`` and the rest of its column negated.
    """
    falling, used = [], 0
    for index in on_edge:
        below = _column_below(lower, index)
        if lower[index] != 0 or not np.any(theta[below] != 0):
            continue
        moved = theta.copy()
        moved[below] *= -1.0
        moved[index] = EDGE_STEP
        used += 1
        if float(objective(moved)) < base:
            falling.append(index)
    return np.asarray(falling, dtype=int), used


def _gradient_polish(
    objective: Objective, lower: np.ndarray, options: FitOptions
) -> Callable[[np.ndarray], bool] | None:
    """Where the gradient's local model will verify and polish an L-BFGS-B estimate.

    With verification on and at most :data:`LOCAL_GRADIENT_MAX_K` theta: at
    interior points (diagonals, of either sign in the unconstrained phase, at
    least lme4's singular tolerance). None otherwise.
    """
    if not (options.verify and has_gradient(objective)) or lower.size > LOCAL_GRADIENT_MAX_K:
        return None

    def polished(theta: np.ndarray) -> bool:
        return _interior(np.abs(theta), lower)

    return polished


def _local_model(
    objective: Objective, result: OptimizerResult, lower: np.ndarray, derivs_wanted: bool
) -> str | None:
    """The local model that verifies ``result`` (see :func:`local_verification`), or None."""
    k = result.theta.size
    if not (k and _interior(result.theta, lower)):
        return None
    if derivs_wanted:
        return "deriv12"
    on_gradient = result.method == "lbfgsb" and has_gradient(objective)
    if on_gradient and k <= LOCAL_GRADIENT_MAX_K:
        return "gradient"
    if k <= LOCAL_MAX_K:
        return "values"
    return None


def _interior(theta: np.ndarray, lower: np.ndarray) -> bool:
    """No element bounded at 0 below lme4's singular tolerance (no snapping can follow)."""
    return bool(np.all(theta[lower == 0] >= SINGULAR_TOL))


class _Lowest:
    """The objective, keeping the lowest value and its point."""

    def __init__(self, objective: Objective, theta: np.ndarray, value: float) -> None:
        self.objective = objective
        self.theta, self.value = theta, value
        self.calls = 0
        self.gradients = 0

    def __call__(self, theta: np.ndarray) -> float:
        self.calls += 1
        return self._keep(theta, float(self.objective(theta)))

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective's value (kept when lowest) and analytic gradient."""
        self.calls += 1
        self.gradients += 1
        value, gradient = self.objective.value_and_gradient(theta)
        return self._keep(theta, float(value)), np.asarray(gradient, dtype=float)

    def difference_steps(self, theta: np.ndarray) -> np.ndarray:
        """The objective's steps for differences of its gradient."""
        return self.objective.difference_steps(theta)

    def _keep(self, theta: np.ndarray, value: float) -> float:
        if value < self.value:
            self.theta, self.value = np.array(theta, dtype=float), value
        return value


def local_verification(
    objective: Objective,
    theta: np.ndarray,
    value: float,
    lower: np.ndarray,
    tol: float,
    lme4_derivs: bool = True,
    by_gradient: bool = False,
    gradient: np.ndarray | None = None,
    nearby: Sequence[tuple[np.ndarray, np.ndarray]] = (),
) -> tuple[bool, dict[str, np.ndarray] | None, np.ndarray, float, int]:
    """Verify a minimum by its local quadratic model, and polish it.

    With ``g`` and ``H`` the gradient and Hessian at ``theta`` by finite
    differences of step 1e-4 (lme4's ``deriv12`` with ``lme4_derivs``,
    ``2 k^2`` evaluations; :func:`gradient_model` with ``by_gradient``, at
    most ``k`` analytic gradients (fewer with secants to ``nearby`` points
    and their gradients), one more without ``gradient`` at ``theta``; else
    :func:`quadratic_model`, ``k (k + 3) / 2`` evaluations), the estimate is
    verified
    when ``H`` is positive definite, the decrease the model predicts,
    ``g' H^-1 g / 2``, is at most ``tol``, the Newton point
    ``theta + s`` (``s = -H^-1 g``) lies within the bounds, and no point of
    the stencil nor the Newton point is lower than ``value`` by more than
    ``tol``. The Newton point, when lower by more than :data:`NEWTON_MIN_GAIN`,
    becomes the estimate: the
    optimizer's stop is within ``tol`` of the minimum in value but can be
    1e-4 away in theta on a flat surface, and the Newton point is much
    closer.

    Returns
    -------
    verified : bool
    derivs : dict or None
        ``{"gradient", "Hessian"}`` at ``theta`` when verified.
    best_theta, best_value
        The Newton point when verified and lower, else the lowest point evaluated.
    evaluations : int
    """
    lowest = _Lowest(objective, theta, value)
    if by_gradient:
        derivs = gradient_model(lowest, theta, gradient, nearby)
    elif lme4_derivs:
        derivs = deriv12(lowest, theta, fx=value)
    else:
        derivs = quadratic_model(lowest, theta, value)
    gradient, hessian = derivs["gradient"], derivs["Hessian"]
    step = _newton_step(gradient, hessian)
    if step is None or np.any(theta + step < lower):
        return False, None, lowest.theta, lowest.value, lowest.calls
    predicted = -0.5 * float(gradient @ step)
    newton_value = lowest(theta + step)
    if predicted > tol or value - lowest.value > tol:
        return False, None, lowest.theta, lowest.value, lowest.calls
    if newton_value < value - NEWTON_MIN_GAIN:
        return True, derivs, theta + step, newton_value, lowest.calls
    return True, derivs, theta, value, lowest.calls


def quadratic_model(objective: Objective, theta: np.ndarray, value: float) -> dict[str, np.ndarray]:
    """Gradient and Hessian by finite differences in ``k (k + 3) / 2`` evaluations.

    Central differences (step ``h`` = 1e-4) for the gradient and the diagonal;
    forward ones for the off-diagonal elements,
    ``H_ij = (f(x + h e_i + h e_j) - f(x + h e_i) - f(x + h e_j) + f(x)) / h^2``,
    accurate to ``O(h)``: enough to judge a Newton step (lme4's ``deriv12``
    spends four evaluations on each of them).
    """
    k, h = theta.size, DERIV12_STEP
    plus, gradient, diagonal = central_differences(objective, theta, value, h)
    hessian = np.diag(diagonal)
    for j in range(k):
        for i in range(j):
            step = np.zeros(k)
            step[[i, j]] = h
            both = float(objective(theta + step))
            hessian[i, j] = hessian[j, i] = (both - plus[i] - plus[j] + value) / h**2
    return {"gradient": gradient, "Hessian": hessian}


SECANT_MAX_STEP = 1e-2
"""Largest step of a secant in :func:`gradient_model`, relative to theta's scale."""

SECANT_MIN_NEW = 0.5
"""A secant is used when at least this part of its step is new to the steps already used."""


def gradient_model(
    objective: Objective,
    theta: np.ndarray,
    gradient: np.ndarray | None = None,
    nearby: Sequence[tuple[np.ndarray, np.ndarray]] = (),
) -> dict[str, np.ndarray]:
    """Gradient and Hessian from at most ``k`` analytic gradients: forward differences.

    ``H S = Y`` for ``k`` independent steps ``S`` from ``theta`` and the
    changes ``Y`` of the gradient, symmetrized. The steps are the secants to
    ``nearby`` points with their gradients (an optimizer's last evaluations;
    used when within :data:`SECANT_MAX_STEP` of ``theta`` in the scale of
    the objective's :meth:`difference_steps`, and at least
    :data:`SECANT_MIN_NEW` of their length new to the steps taken before),
    completed by steps of that scale's 1e-4 (``difference_steps`` itself
    when no secant is used). Accurate to ``O(step)``: enough to judge a
    Newton step.

    Parameters
    ----------
    objective : callable
        With ``value_and_gradient`` and ``difference_steps`` (a
        :class:`~statsmodels_lmer.engine.gradient.ProfiledGradient`).
    theta : ndarray
        Where the model is taken.
    gradient : ndarray, optional
        ``g(theta)`` when known (else one more gradient).
    nearby : sequence of (ndarray, ndarray)
        Points and their gradients to use as secants.

    Returns
    -------
    dict
        ``{"gradient", "Hessian"}`` at ``theta``.
    """
    theta = np.asarray(theta, dtype=float)
    if gradient is None:
        gradient = objective.value_and_gradient(theta)[1]
    gradient = np.asarray(gradient, dtype=float)
    steps = objective.difference_steps(theta)
    scale = steps / DERIV12_STEP
    basis, moves, changes = _secants(theta, gradient, scale, nearby)
    for direction in _completion(basis, theta.size):
        move = steps * direction
        moves.append(move)
        changes.append(objective.value_and_gradient(theta + move)[1] - gradient)
    hessian = np.linalg.solve(np.array(moves), np.array(changes)).T  # H moves' = changes'
    return {"gradient": gradient, "Hessian": (hessian + hessian.T) / 2}


def _secants(
    theta: np.ndarray,
    gradient: np.ndarray,
    scale: np.ndarray,
    nearby: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Orthonormal basis (scaled), steps and gradient changes of the usable secants."""
    basis: list[np.ndarray] = []
    moves: list[np.ndarray] = []
    changes: list[np.ndarray] = []
    for point, other in nearby:
        move = np.asarray(point, dtype=float) - theta
        relative = move / scale
        length = float(np.linalg.norm(relative))
        if not (0 < length <= SECANT_MAX_STEP and np.all(np.isfinite(other))):
            continue
        new = relative - sum((q @ relative) * q for q in basis)
        if np.linalg.norm(new) < SECANT_MIN_NEW * length:
            continue
        basis.append(new / np.linalg.norm(new))
        moves.append(move)
        changes.append(np.asarray(other, dtype=float) - gradient)
        if len(basis) == theta.size:
            break
    return basis, moves, changes


def _completion(basis: list[np.ndarray], k: int) -> list[np.ndarray]:
    """Unit vectors completing an orthonormal ``basis`` of ``R^k`` (the unit ones if empty)."""
    if not basis:
        return list(np.eye(k))
    q, _ = np.linalg.qr(np.column_stack(basis), mode="complete")
    return list(q[:, len(basis) :].T)


def _newton_step(gradient: np.ndarray, hessian: np.ndarray) -> np.ndarray | None:
    """``-H^-1 g``; None when ``H`` is not positive definite or not finite."""
    if not (np.all(np.isfinite(hessian)) and np.all(np.isfinite(gradient))):
        return None
    try:
        factor = cho_factor(hessian)
    except np.linalg.LinAlgError:
        return None
    return -cho_solve(factor, gradient)


def _verify_locally(
    objective: Objective,
    result: OptimizerResult,
    lower: np.ndarray,
    tol: float,
    model: str,
) -> int:
    """:func:`local_verification` of ``result``, repeated from a Newton point that helped.

    Up to :data:`LOCAL_MAX_ROUNDS` checks: a check that fails but whose
    Newton point lowered the objective by more than ``tol`` is repeated from
    there (Newton's method on the finite-difference model). With ``model``
    ``"deriv12"`` the model is lme4's ``deriv12``, kept in
    ``result.derivs``; when the estimate moved to a Newton point, the gradient
    and the Hessian's diagonal are evaluated there (``2 k`` evaluations).
    Otherwise the cheaper :func:`quadratic_model` (``"values"``) or
    :func:`gradient_model` (``"gradient"``) is used and no derivatives are
    kept. Updates ``result``; returns the evaluations used.
    """
    result.verify_method = "local"
    derivs_wanted = model == "deriv12"
    used = 0
    for _ in range(LOCAL_MAX_ROUNDS):
        by_gradient = model == "gradient"
        gradient = result.gradient_at_theta() if by_gradient else None
        counted = _Lowest(objective, result.theta, result.fun)
        verified, derivs, theta, value, calls = local_verification(
            counted,
            result.theta,
            result.fun,
            lower,
            tol,
            lme4_derivs=derivs_wanted,
            by_gradient=by_gradient,
            gradient=gradient,
            nearby=result.gradients if by_gradient else (),
        )
        result.n_gradients += counted.gradients
        used += calls
        improvement = float(result.fun - value)
        result.verify_improvement = improvement
        moved = value < result.fun
        if moved:  # the estimate, or where the next check or the restarts start
            result.theta, result.fun = theta, value
        if verified:
            if not derivs_wanted:
                derivs = None  # not lme4's: kept for the check only
            elif moved:
                derivs = _derivatives_moved(objective, theta, value, derivs["Hessian"])
                used += 2 * theta.size
            result.verified, result.derivs = True, derivs
            break
        if improvement <= tol:
            break
    return used


def _derivatives_moved(
    objective: Objective, theta: np.ndarray, value: float, hessian: np.ndarray
) -> dict[str, np.ndarray]:
    """``deriv12``'s gradient and Hessian diagonal at ``theta``; off-diagonal from ``hessian``.

    ``2 k`` evaluations instead of ``2 k^2``: after a Newton step of about
    1e-4 or less the off-diagonal second differences are unchanged to that order.
    """
    _, gradient, diagonal = central_differences(objective, theta, value)
    hessian = np.array(hessian, dtype=float)
    np.fill_diagonal(hessian, diagonal)
    return {"gradient": gradient, "Hessian": hessian}


def _verify(
    objective: Objective, result: OptimizerResult, lower: np.ndarray, settings: Settings, tol: float
) -> int:
    """Restart until the objective no longer falls by more than ``tol``; returns evaluations."""
    result.verify_method = "restart"
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


SNAP_ROUNDOFF = 1e-13
"""Relative round-off of the criterion below which a point on the bound counts as no worse."""


def _snap_to_boundary(
    objective: Objective, result: OptimizerResult, lower: np.ndarray, boundary_tol: float
) -> int:
    """lme4's ``boundary.tol`` handling; updates ``result`` and returns the evaluations used.

    A point on the bound is taken when its value is no worse than the estimate's up to
    round-off (:data:`SNAP_ROUNDOFF` of the value): on a flat direction (a variance the
    fixed effects already explain) lme4's strict comparison kept theta 5e-9, 1e-13 lower
    by round-off, instead of 0.
    """
    gap = result.theta - lower
    near = np.flatnonzero((gap > 0) & (gap < boundary_tol))
    theta, best = result.theta.copy(), result.fun
    for index in near:
        trial = theta.copy()
        trial[index] = lower[index]
        value = float(objective(trial))
        if value <= best + SNAP_ROUNDOFF * max(1.0, abs(best)):
            theta, best = trial, value
            result.boundary_snapped.append(int(index))
    if result.boundary_snapped:
        result.theta, result.fun = theta, best
    return int(near.size)
