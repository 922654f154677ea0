"""Optimizers over theta: a registry of bound-constrained minimizers.

The default is L-BFGS-B on the criterion and its analytic gradient
(:mod:`statsmodels_lmer.fitting.lbfgsb`) wherever the objective provides a
gradient (``value_and_gradient``; the engine's
:class:`~statsmodels_lmer.engine.gradient.ProfiledGradient`). Elsewhere it is
lme4's: BOBYQA from NLopt with ``xtol_abs = ftol_abs = 1e-8`` when the
optional ``nlopt`` package is installed, else scipy's L-BFGS-B on finite
differences. ``method="bobyqa"`` gives lme4's optimizer. Every optimizer
minimizes the objective subject to theta's lower bounds (see docs/checks.md
for the evidence behind the default).

:func:`minimize_theta` is the one bounded minimizer of the package;
:func:`restart_from_estimate` reruns it from an estimate with a small first
step. lme4's handling of the boundary around a run lives in
:mod:`statsmodels_lmer.fitting.fit`.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from .lbfgsb import minimize_with_gradient

__all__ = [
    "SELF_VERIFYING",
    "OptimizerResult",
    "available_optimizers",
    "cross_check_optimizer",
    "default_optimizer",
    "has_gradient",
    "minimize_theta",
    "register_optimizer",
    "restart_from_estimate",
    "unregister_optimizer",
]

HAVE_NLOPT = importlib.util.find_spec("nlopt") is not None

Objective = Callable[[np.ndarray], float]


@dataclass
class OptimizerResult:
    """What an optimizer returned.

    Attributes
    ----------
    theta : ndarray
        The minimizing theta.
    fun : float
        The objective there.
    n_evaluations : int
        Objective evaluations used by the optimizer (with or without gradient).
    method : str
        Registry name of the optimizer.
    message : str
        The optimizer's own message.
    success : bool
        Whether the optimizer reported success.
    seconds : float
        Wall-clock time of the optimization.
    options : dict
        Tolerances and limits used.
    restarted : bool
        Whether the optimizer was restarted from the edge (lme4's ``restart_edge``).
    boundary_snapped : list of int
        Indices of theta moved onto their bound (lme4's ``boundary.tol``).
    verify_rounds : int
        Restarts from the estimate made to verify the optimum.
    verify_improvement : float or None
        How much the last verification (restart or local check) lowered the objective.
    verified : bool or None
        Whether the optimum was verified: by the local quadratic model, or
        by a restart that lowered the objective by at most the tolerance
        (None when no verification was asked for).
    n_gradients : int
        How many of the evaluations also gave the analytic gradient.
    verify_method : str or None
        ``"local"`` (the local quadratic model verified the optimum),
        ``"restart"`` (restarts did, or were tried last), None (not asked for).
    derivs : dict or None
        lme4's ``deriv12`` gradient and Hessian at ``theta`` when the local
        verification computed them there.
    gradients : tuple
        ``(point, analytic gradient)`` of the last :data:`RECENT_GRADIENTS`
        gradient evaluations, newest first (the local verification reuses
        the one at ``theta`` and the nearby ones as secants).
    """

    theta: np.ndarray
    fun: float
    n_evaluations: int
    method: str
    message: str
    success: bool
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    restarted: bool = False
    boundary_snapped: list[int] = field(default_factory=list)
    verify_rounds: int = 0
    verify_improvement: float | None = None
    verified: bool | None = None
    n_gradients: int = 0
    verify_method: str | None = None
    derivs: dict[str, np.ndarray] | None = None
    gradients: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    def gradient_at_theta(self) -> np.ndarray | None:
        """The analytic gradient at :attr:`theta` when the optimizer evaluated it there."""
        for point, gradient in self.gradients:
            if np.array_equal(point, self.theta):
                return gradient
        return None


RECENT_GRADIENTS = 12
"""Gradient evaluations an :class:`OptimizerResult` keeps (:attr:`~OptimizerResult.gradients`)."""


_NLOPT_METHODS = ("bobyqa", "nlopt-nelder-mead")

OptimizerFunction = Callable[..., tuple[np.ndarray, float, str, bool]]
"""``f(objective, start, lower, upper, maxiter, xtol, ftol) -> (theta, fun, message, success)``."""

_USER_OPTIMIZERS: dict[str, OptimizerFunction] = {}


def register_optimizer(name: str, function: OptimizerFunction) -> None:
    """Make an optimizer of your own available by name (in ``fit`` and ``allfit``).

    Parameters
    ----------
    name : str
        The name to use as ``method=``; must not be a built-in one.
    function : callable
        ``function(objective, start, lower, upper, maxiter, xtol, ftol)``
        minimizing ``objective`` (a function of a theta array) within the
        bounds and returning ``(theta, value, message, success)``.
    """
    key = str(name).lower()
    if key in _REGISTRY:
        raise ValueError(f"{name!r} is a built-in optimizer")
    if not callable(function):
        raise TypeError(f"function must be callable, got {function!r}")
    _USER_OPTIMIZERS[key] = function


def unregister_optimizer(name: str) -> None:
    """Remove an optimizer added by :func:`register_optimizer`."""
    _USER_OPTIMIZERS.pop(str(name).lower(), None)


def available_optimizers() -> list[str]:
    """Names of the optimizers usable on this installation (registered ones last)."""
    names = ["lbfgsb", "nelder-mead", "powell", "cobyqa", "trust-constr"]
    if HAVE_NLOPT:
        names = ["bobyqa", "nlopt-nelder-mead"] + names
    return names + list(_USER_OPTIMIZERS)


def default_optimizer(gradient: bool = False) -> str:
    """``"lbfgsb"`` for an objective with a gradient; else ``"bobyqa"`` with nlopt (as lme4).

    Without nlopt and without a gradient: ``"lbfgsb"`` on finite differences.
    """
    return "bobyqa" if HAVE_NLOPT and not gradient else "lbfgsb"


def has_gradient(objective: Objective) -> bool:
    """Whether ``objective`` provides ``value_and_gradient`` (the analytic gradient)."""
    return callable(getattr(objective, "value_and_gradient", None))


def minimize_theta(
    objective: Objective,
    start: np.ndarray,
    lower: np.ndarray,
    method: str | None = None,
    maxiter: int | None = None,
    xtol: float = 1e-8,
    ftol: float = 1e-8,
    initial_step: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    xtol_rel: float | None = None,
    polished: Callable[[np.ndarray], bool] | None = None,
) -> OptimizerResult:
    """Minimize ``objective`` over theta subject to ``lower <= theta <= upper``.

    This is the one bound-constrained minimizer of the package: the fit, its
    restarts and the likelihood profiles all use it. The best point evaluated
    is returned, whatever the optimizer reports (an NLopt round-off stop keeps
    the best point so far).

    Parameters
    ----------
    objective : callable
        Maps theta to the deviance or REML criterion.
    start : ndarray
        Starting theta (moved into the bounds).
    lower : ndarray
        Lower bounds (``-inf`` where unbounded).
    method : str, optional
        One of :func:`available_optimizers`; default :func:`default_optimizer`.
    maxiter : int, optional
        Limit on objective evaluations (iterations for scipy methods that
        count those); default 100000 as lme4.
    xtol, ftol : float
        Absolute tolerances on theta and on the objective (NLopt meaning;
        passed to the closest scipy option otherwise).
    initial_step : ndarray, optional
        First step (trust-region radius) of the NLopt optimizers; for
        L-BFGS-B on the analytic gradient, its root mean square is the
        length of the first move (a unit move from a start close to the
        optimum overshoots: InstEval's fit from the moment start took 16
        gradients with it, 13 with the step ``0.25 |theta|``); ignored by the
        other scipy optimizers. Default: each optimizer's own choice.
    upper : ndarray, optional
        Upper bounds; default none (``inf``).
    xtol_rel : float, optional
        Relative tolerance on theta (NLopt optimizers only).
    polished : callable, optional
        ``theta -> bool``: where a local check will verify and polish the
        estimate, L-BFGS-B may stop earlier (see
        :func:`~statsmodels_lmer.fitting.lbfgsb.minimize_with_gradient`).

    Returns
    -------
    OptimizerResult
    """
    name = (method or default_optimizer(has_gradient(objective))).lower()
    if name not in _REGISTRY and name not in _USER_OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {method!r}; available: {', '.join(available_optimizers())}"
        )
    if name in _NLOPT_METHODS and not HAVE_NLOPT:
        raise ImportError(
            f"optimizer {name!r} needs the optional package nlopt: "
            "pip install 'statsmodels_lmer[bobyqa]'"
        )
    lower = np.asarray(lower, dtype=float)
    upper = np.full(lower.shape, np.inf) if upper is None else np.asarray(upper, dtype=float)
    start = np.clip(np.asarray(start, dtype=float), lower, upper)
    counter = _Counter(objective)
    began = time.perf_counter()
    limit = maxiter or 100_000
    bounds = _Bounds(lower, upper, initial_step, xtol_rel, polished)
    if name in _USER_OPTIMIZERS:
        run = _USER_OPTIMIZERS[name]
        theta, fun, message, success = run(counter, start, lower, upper, limit, xtol, ftol)
    else:
        theta, fun, message, success = _REGISTRY[name](counter, start, bounds, limit, xtol, ftol)
    theta, fun = np.asarray(theta, dtype=float), float(fun)
    if counter.best_fun < fun:
        theta, fun = counter.best_theta, counter.best_fun
    seconds = time.perf_counter() - began
    options = {"maxiter": limit, "xtol": xtol, "ftol": ftol}
    return OptimizerResult(
        theta,
        fun,
        counter.calls,
        name,
        message,
        bool(success),
        seconds,
        options,
        n_gradients=counter.gradients,
        gradients=tuple(reversed(counter.recent)),
    )


VERIFY_STEP = 1e-3
VERIFY_MIN_STEP = 1e-4
"""First step of a restart from an estimate: relative to theta, and at least this."""


SELF_VERIFYING = ("bobyqa", "lbfgsb")
"""Optimizers whose restart from their own estimate verifies it. The others (Nelder-Mead,
Powell, COBYQA, ...) can stall again where they stopped: a REML fit by Nelder-Mead ended
2.06 above the optimum and its restart confirmed it; they are cross-checked by
:func:`cross_check_optimizer`."""


def cross_check_optimizer() -> str:
    """The optimizer that cross-checks the others' estimates: BOBYQA, else L-BFGS-B."""
    return "bobyqa" if HAVE_NLOPT else "lbfgsb"


def restart_from_estimate(
    objective: Objective,
    result: OptimizerResult,
    lower: np.ndarray,
    maxiter: int | None = None,
    xtol: float = 1e-8,
    ftol: float = 1e-8,
) -> OptimizerResult:
    """A new run of the same optimizer from ``result``'s estimate (NLopt: a small first step)."""
    step = None
    if result.method in _NLOPT_METHODS:
        step = np.maximum(VERIFY_STEP * np.abs(result.theta), VERIFY_MIN_STEP)
    return minimize_theta(
        objective, result.theta, lower, result.method, maxiter, xtol, ftol, initial_step=step
    )


@dataclass(frozen=True)
class _Bounds:
    """Bounds and per-optimizer settings of one minimization (NLopt steps, L-BFGS-B polish)."""

    lower: np.ndarray
    upper: np.ndarray
    initial_step: np.ndarray | None = None
    xtol_rel: float | None = None
    polished: Callable[[np.ndarray], bool] | None = None


class _Counter:
    """Counts evaluations, keeps the best point, and maps non-finite values to 1e300."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.calls = 0
        self.gradients = 0
        self.best_fun = np.inf
        self.best_theta: np.ndarray | None = None
        self.recent: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=RECENT_GRADIENTS)

    def __call__(self, theta: np.ndarray, *args: Any) -> float:
        self.calls += 1
        theta = np.array(theta, dtype=float)  # a copy: NLopt reuses its buffer
        value = float(self.objective(theta))
        self._keep(theta, value)
        return value if math.isfinite(value) else 1e300

    def _keep(self, theta: np.ndarray, value: float) -> None:
        if value < self.best_fun:
            self.best_fun, self.best_theta = value, theta

    @property
    def has_gradient(self) -> bool:
        return has_gradient(self.objective)

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective's value and analytic gradient (NaN gradient where it fails)."""
        self.calls += 1
        self.gradients += 1
        theta = np.array(theta, dtype=float)
        value, gradient = self.objective.value_and_gradient(theta)
        gradient = np.asarray(gradient, dtype=float)
        self._keep(theta, float(value))
        self.recent.append((theta, gradient.copy()))
        return float(value), gradient

    @property
    def flip(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The objective's map to equivalent theta within the bounds, if it has one."""
        return getattr(self.objective, "flip_columns", None)


def _nlopt(algorithm_name: str):
    def run(fun, start, bounds, maxiter, xtol, ftol):
        import nlopt

        algorithm = getattr(nlopt, algorithm_name)
        opt = nlopt.opt(algorithm, len(start))
        opt.set_min_objective(lambda x, grad: fun(x))
        opt.set_lower_bounds(bounds.lower)
        if np.any(np.isfinite(bounds.upper)):
            opt.set_upper_bounds(bounds.upper)
        opt.set_xtol_abs(xtol)
        if bounds.xtol_rel is not None:
            opt.set_xtol_rel(bounds.xtol_rel)
        opt.set_ftol_abs(ftol)
        opt.set_maxeval(int(maxiter))
        if bounds.initial_step is not None:
            opt.set_initial_step(bounds.initial_step)
        if len(start) == 0:
            return start, fun(start), "no parameters", True
        try:
            theta = opt.optimize(start)
        except nlopt.RoundoffLimited:  # the best point so far is as good as it gets
            return fun.best_theta, fun.best_fun, "NLOPT_ROUNDOFF_LIMITED", True
        code = opt.last_optimize_result()
        success = code > 0 and code != nlopt.MAXEVAL_REACHED
        return theta, opt.last_optimum_value(), _NLOPT_MESSAGES.get(code, str(code)), success

    return run


_NLOPT_MESSAGES = {
    1: "NLOPT_SUCCESS",
    2: "NLOPT_STOPVAL_REACHED",
    3: "NLOPT_FTOL_REACHED: Optimization stopped because ftol_abs was reached.",
    4: "NLOPT_XTOL_REACHED: Optimization stopped because xtol_abs was reached.",
    5: "NLOPT_MAXEVAL_REACHED: Optimization stopped because maxeval was reached.",
    6: "NLOPT_MAXTIME_REACHED",
}


def _scipy(method: str, options: Callable[[int, float, float], dict[str, Any]], jac: Any = None):
    def run(fun, start, bounds, maxiter, xtol, ftol):
        if len(start) == 0:
            return start, fun(start), "no parameters", True
        result = optimize.minimize(
            fun,
            start,
            method=method,
            jac=jac,
            bounds=optimize.Bounds(bounds.lower, bounds.upper),
            options=options(maxiter, xtol, ftol),
        )
        return result.x, result.fun, str(result.message), bool(result.success)

    return run


# central differences: forward ones leave L-BFGS-B 1e-5 short of the
# optimum on some models (Pastes); 3-point gradients reach it
_lbfgsb_differences = _scipy(
    "L-BFGS-B", lambda n, x, f: {"maxfun": n, "ftol": 1e-12, "gtol": 1e-7}, jac="3-point"
)


def _lbfgsb(fun, start, bounds, maxiter, xtol, ftol):
    """L-BFGS-B: on the analytic gradient when the objective has one, else on differences."""
    if len(start) == 0 or not fun.has_gradient:
        return _lbfgsb_differences(fun, start, bounds, maxiter, xtol, ftol)
    # the unconstrained first phase applies to theta's own bounds only
    theta_bounds = np.all(np.isin(bounds.lower, (0.0, -np.inf))) and np.all(np.isinf(bounds.upper))
    flip = fun.flip if theta_bounds else None
    step = bounds.initial_step
    first = None if step is None else float(np.sqrt(np.mean(np.square(step))))
    return minimize_with_gradient(
        fun.value_and_gradient,
        start,
        bounds.lower,
        bounds.upper,
        maxiter,
        flip,
        bounds.polished,
        first,
    )


_REGISTRY: dict[str, Callable[..., tuple[np.ndarray, float, str, bool]]] = {
    "bobyqa": _nlopt("LN_BOBYQA"),
    "nlopt-nelder-mead": _nlopt("LN_NELDERMEAD"),
    "lbfgsb": _lbfgsb,
    "nelder-mead": _scipy(
        "Nelder-Mead",
        lambda n, x, f: {"maxfev": n, "xatol": x, "fatol": f, "adaptive": True},
    ),
    "powell": _scipy("Powell", lambda n, x, f: {"maxfev": n, "xtol": x, "ftol": 1e-12}),
    "cobyqa": _scipy("COBYQA", lambda n, x, f: {"maxfev": n, "final_tr_radius": x}),
    "trust-constr": _scipy("trust-constr", lambda n, x, f: {"maxiter": n, "xtol": x, "gtol": 1e-8}),
}
