"""L-BFGS-B on the criterion and its analytic gradient: the package's default optimizer.

One call of the objective gives the value and the gradient from one
factorization (:class:`~statsmodels_lmer.engine.gradient.ProfiledGradient`).
The run is scipy's L-BFGS-B with a stopping rule suited to the criterion:

* ``ftol = 0`` and ``gtol = 1e-6`` (a tiny relative ``ftol`` stopped 2.6e-7
  above the optimum of the maximal kb07 model), ``maxcor = 20``;
* a *stall* stop after :data:`STALL_CALLS` calls in a row that do not lower
  the best value by more than ``max(1e-10, 1e-14 |f|)`` (line searches at the
  rounding level otherwise go on for dozens of calls);
* where the caller's ``polished(theta)`` says a local check will verify the
  estimate and move it to its Newton point (a fit with few parameters and an
  interior estimate, :func:`~statsmodels_lmer.fitting.run.optimize_lmer`):
  the stall stop after :data:`SHORT_STALL_CALLS` calls once the best
  point's projected gradient is below the rerun limit, and a *settled* stop
  when two new best points in a row gain less than :data:`SETTLE_GAINS`;
  the Newton step recovers what the last calls would have gained;
* a rerun from the best point with a fresh memory while the projected
  gradient is still above ``max(1e-3, 1e-6 |g0|)`` and the rerun improves.

With ``flip`` given (theta of a profiled criterion), the first run is
*unconstrained*: the criterion is even in each column of every ``T``, so the
lower bound 0 on the diagonals is only a sign convention, and a bounded run
can stop at a false boundary point whose mirror image is interior. The
columns are then flipped to nonnegative diagonals and a bounded run follows
only when a diagonal is below :data:`BOUNDED_FINISH` (a singular fit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize

__all__ = [
    "BOUNDED_FINISH",
    "SETTLE_GAINS",
    "SHORT_STALL_CALLS",
    "STALL_CALLS",
    "minimize_with_gradient",
]

STALL_CALLS = 6
"""Calls in a row without a real improvement that end a run.

On 40 synthetic singular-prone subject x item fits (4 x 4 and 8 x 8 random
slopes, 12-50 subjects x 12-30 items, REML and ML) 6 calls end within 1e-8 of
the best known optimum in 38 cases and within 3e-7 in all; 10 calls did so in
39 (1e-7) at 9 % more gradients (InstEval: 35 instead of 27).
"""

SHORT_STALL_CALLS = 2
"""The stall stop near an optimum that a local check will polish.

From ``theta = 1`` on the crossed ``(x|A) + (x|B)`` model (six theta), the
best point is within 1e-9 of the optimum after 18 gradients; 6 stalled calls
then cost 6 more at 1.5 s each.
"""

SETTLE_GAINS = (1e-3, 1e-6)
"""A polished run ends when two new best points in a row gain less than these.

L-BFGS-B converges superlinearly near the optimum: on ``(x|A) + (x|B)`` the
gains run 1.7e-4, 5e-7, 4.5e-8, so after a gain below 1e-6 what is left is
of its order, within the local check's tolerance (``verify_tol`` 1e-6),
whose Newton step recovers it.
"""

STALL_ABS, STALL_REL = 1e-10, 1e-14
"""An improvement counts when it exceeds ``max(STALL_ABS, STALL_REL |f|)``."""

RERUN_GRADIENT = 1e-3
"""A run ending with a larger projected gradient (also relative to the first) is rerun."""

MAX_RUNS = 5
"""Runs of L-BFGS-B at most in each phase."""

BOUNDED_FINISH = 1e-4
"""After the unconstrained run, a diagonal below this triggers the bounded run."""

ValueAndGradient = Callable[[np.ndarray], tuple[float, np.ndarray]]
Polished = Callable[[np.ndarray], bool] | None


class _StalledError(Exception):
    """Raised inside L-BFGS-B's function to end a stalled run."""


class _SettledError(Exception):
    """Raised inside L-BFGS-B's function when the gains have settled (:data:`SETTLE_GAINS`)."""


class _BudgetError(Exception):
    """Raised inside L-BFGS-B's function when the calls allowed are used up."""


class _Run:
    """The function given to L-BFGS-B: counts, keeps the best point, stops a stall."""

    def __init__(
        self, fg: ValueAndGradient, budget: list[int], lower: np.ndarray, polished: Polished
    ) -> None:
        self.fg = fg
        self.budget = budget  # calls left, shared by the runs of one minimization
        self.lower = lower
        self.polished = polished
        self.first_gradient: np.ndarray | None = None
        self.best_value = np.inf
        self.best_theta: np.ndarray | None = None
        self.best_gradient: np.ndarray | None = None
        self.since = 0
        self.gains = [np.inf, np.inf]  # of the last two new best points
        self.settled = False

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        if self.budget[0] <= 0:
            raise _BudgetError
        self.budget[0] -= 1
        value, gradient = self.fg(np.asarray(theta, dtype=float))
        gradient = np.asarray(gradient, dtype=float)
        if not (np.isfinite(value) and np.all(np.isfinite(gradient))):
            return 1e300, np.zeros_like(theta)
        if self.first_gradient is None:
            self.first_gradient = gradient.copy()
        if value < self.best_value - max(STALL_ABS, STALL_REL * abs(value)):
            self.since = 0
        else:
            self.since += 1
        if value < self.best_value:
            self.gains = [self.gains[1], self.best_value - value]
            self.best_value, self.best_theta = value, np.array(theta, dtype=float)
            self.best_gradient = gradient.copy()
            if self._settled() and self._will_be_polished():
                raise _SettledError
        if self.since >= self._stall_calls():
            raise _StalledError
        return value, gradient

    def _settled(self) -> bool:
        return all(gain < limit for gain, limit in zip(self.gains, SETTLE_GAINS))

    def _will_be_polished(self) -> bool:
        return self.polished is not None and bool(self.polished(self.best_theta))

    def _stall_calls(self) -> int:
        """:data:`SHORT_STALL_CALLS` near an optimum to be polished, else :data:`STALL_CALLS`."""
        if self.best_theta is None or not self._will_be_polished():
            return STALL_CALLS
        projected = _projected_gradient(self.best_theta, self.best_gradient, self.lower)
        near = projected <= _rerun_limit(self.first_gradient)
        return SHORT_STALL_CALLS if near else STALL_CALLS


def _projected_gradient(theta: np.ndarray, gradient: np.ndarray, lower: np.ndarray) -> float:
    """Largest gradient element that a move within the lower bounds could use."""
    if not gradient.size:
        return 0.0
    free = gradient.copy()
    free[(theta <= lower) & (gradient > 0)] = 0.0
    return float(np.max(np.abs(free)))


def _rerun_limit(first_gradient: np.ndarray | None) -> float:
    """A run ending with a projected gradient above this is rerun (:data:`RERUN_GRADIENT`)."""
    first = first_gradient if first_gradient is not None else np.zeros(1)
    return max(RERUN_GRADIENT, 1e-6 * float(np.max(np.abs(first), initial=0.0)))


@dataclass(frozen=True)
class _Phase:
    """What the runs of one phase share: the bounds, the calls left and the polish test."""

    lower: np.ndarray
    upper: np.ndarray
    budget: list[int]  # calls left, shared by every run of the minimization
    polished: Polished
    scale: float = 1.0  # L-BFGS-B works on theta / scale: its first move has this length


def _one_run(fg: ValueAndGradient, start: np.ndarray, phase: _Phase) -> tuple[_Run, str, bool]:
    lower, upper, scale = phase.lower, phase.upper, phase.scale
    run = _Run(fg, phase.budget, lower, phase.polished)
    limit = phase.budget[0] + 1  # our own counter stops first
    gtol = 1e-6 * scale  # on the scaled gradient: 1e-6 on theta's
    options = {"maxfun": limit, "maxiter": limit, "ftol": 0.0, "gtol": gtol, "maxcor": 20}

    def scaled_run(u: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = run(scale * u)
        return value, scale * gradient

    try:
        result = optimize.minimize(
            scaled_run,
            start / scale,
            jac=True,
            method="L-BFGS-B",
            bounds=optimize.Bounds(lower / scale, upper / scale),
            options=options,
        )
        message, success = str(result.message), True
    except _StalledError:
        message, success = "stopped: no improvement in the last calls", True
    except _SettledError:
        message, success = "stopped: the last gains were below 1e-6", True
        run.settled = True
    except _BudgetError:
        message, success = "stopped: the limit on evaluations (maxiter) was reached", False
    if run.best_theta is None:  # every call failed
        run.best_theta, run.best_value = np.array(start, dtype=float), np.inf
        run.best_gradient = np.zeros_like(start)
    return run, message, success


def _runs(
    fg: ValueAndGradient, start: np.ndarray, phase: _Phase
) -> tuple[np.ndarray, float, str, bool]:
    """L-BFGS-B, rerun from its best point while the projected gradient stays large
    (not after a settled stop)."""
    lower = phase.lower
    run, message, success = _one_run(fg, start, phase)
    theta, value = run.best_theta, run.best_value
    limit = _rerun_limit(run.first_gradient)
    gradient = run.best_gradient
    for _ in range(MAX_RUNS - 1):
        if not success or run.settled or _projected_gradient(theta, gradient, lower) <= limit:
            break
        run, message, success = _one_run(fg, theta, phase)
        improved = value - run.best_value > max(STALL_ABS, STALL_REL * abs(value))
        if run.best_value < value:
            theta, value, gradient = run.best_theta, run.best_value, run.best_gradient
        if not improved:
            break
    return theta, value, message, success


def minimize_with_gradient(
    fg: ValueAndGradient,
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    maxfun: int,
    flip: Callable[[np.ndarray], np.ndarray] | None = None,
    polished: Polished = None,
    first_step: float | None = None,
) -> tuple[np.ndarray, float, str, bool]:
    """Minimize with L-BFGS-B on values and gradients (see the module docstring).

    Parameters
    ----------
    fg : callable
        ``theta -> (value, gradient)``.
    start, lower, upper : ndarray
        Start and bounds.
    maxfun : int
        Limit on calls of ``fg`` in all.
    flip : callable, optional
        Maps an unconstrained theta to the equivalent one within the bounds;
        given, the first run is unconstrained.
    polished : callable, optional
        ``theta -> bool``: whether a local check will verify and polish an
        estimate there (the short stall and the settled stop apply).
    first_step : float, optional
        Length of each run's first move (L-BFGS-B runs on ``theta / first_step``;
        its first trial point is a move of length 1 along the projected
        gradient, and afterwards it scales its steps by the curvature it
        measures). Default: a move of length 1 in theta.

    Returns
    -------
    theta, value, message, success
    """
    start = np.asarray(start, dtype=float)
    budget = [int(maxfun)]
    scale = 1.0 if first_step is None or not first_step > 0 else float(first_step)
    if flip is not None:
        unbounded = np.full(start.size, np.inf)
        free = _Phase(-unbounded, unbounded, budget, polished, scale)
        theta, value, message, success = _runs(fg, start, free)
        if not success:
            return np.clip(flip(theta), lower, upper), value, message, success
        if np.isfinite(value):
            theta = np.clip(flip(theta), lower, upper)
            if np.all(theta[lower == 0] >= BOUNDED_FINISH):
                return theta, value, message, success
            start = theta
    return _runs(fg, start, _Phase(lower, upper, budget, polished, scale))
