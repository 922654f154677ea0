"""Optimizers over theta: a registry of bound-constrained minimizers.

lme4's default for ``lmer`` is BOBYQA from NLopt with ``xtol_abs = ftol_abs =
1e-8``; it is used here when the optional ``nlopt`` package is installed.
Without it the default is scipy's L-BFGS-B on finite differences, which
reaches the same optimum on the reference models. Every optimizer minimizes
the profiled objective subject to theta's lower bounds.

:func:`optimize_lmer` adds lme4's handling of the boundary around one
optimizer run (``optimizeLmer``): a restart when a parameter sits on its
bound while the objective decreases into the interior (``restart_edge``),
and snapping parameters within ``boundary_tol`` of their bound onto it when
that does not make the objective worse (``check.boundary``).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

__all__ = [
    "OptimizerResult",
    "available_optimizers",
    "default_optimizer",
    "minimize_theta",
    "optimize_lmer",
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
        Objective evaluations used by the optimizer.
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
        Whether :func:`optimize_lmer` restarted the optimizer from the edge.
    boundary_snapped : list of int
        Indices of theta that :func:`optimize_lmer` moved onto their bound.
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
    polished: bool = False


def available_optimizers() -> list[str]:
    """Names of the optimizers usable on this installation."""
    names = ["lbfgsb", "nelder-mead", "powell", "cobyqa", "trust-constr"]
    if HAVE_NLOPT:
        names = ["bobyqa", "nlopt-nelder-mead"] + names
    return names


def default_optimizer() -> str:
    """``"bobyqa"`` when nlopt is installed (as lme4), else ``"lbfgsb"``."""
    return "bobyqa" if HAVE_NLOPT else "lbfgsb"


def minimize_theta(
    objective: Objective,
    start: np.ndarray,
    lower: np.ndarray,
    method: str | None = None,
    maxiter: int | None = None,
    xtol: float = 1e-8,
    ftol: float = 1e-8,
    initial_step: np.ndarray | None = None,
) -> OptimizerResult:
    """Minimize ``objective`` over theta subject to ``theta >= lower``.

    Parameters
    ----------
    objective : callable
        Maps theta to the deviance or REML criterion.
    start : ndarray
        Starting theta (within bounds).
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
        First step (trust-region radius) of the NLopt optimizers; ignored by
        the scipy ones. Default: NLopt's own choice.

    Returns
    -------
    OptimizerResult
    """
    name = (method or default_optimizer()).lower()
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown optimizer {method!r}; available: {', '.join(available_optimizers())}"
        )
    if name in ("bobyqa", "nlopt-nelder-mead") and not HAVE_NLOPT:
        raise ImportError(
            f"optimizer {name!r} needs the optional package nlopt: "
            "pip install 'statsmodels_lmer[bobyqa]'"
        )
    start = np.maximum(np.asarray(start, dtype=float), lower)
    counter = _Counter(objective)
    began = time.perf_counter()
    step = {} if initial_step is None else {"initial_step": initial_step}
    theta, fun, message, success = _REGISTRY[name](
        counter, start, lower, maxiter or 100_000, xtol, ftol, **step
    )
    seconds = time.perf_counter() - began
    options = {"maxiter": maxiter or 100_000, "xtol": xtol, "ftol": ftol}
    return OptimizerResult(
        np.asarray(theta, dtype=float),
        float(fun),
        counter.calls,
        name,
        message,
        bool(success),
        seconds,
        options,
    )


EDGE_STEP = 1e-5
"""Step of lme4's one-sided derivative test for ``restart_edge``."""

POLISH_STEP = 1e-3
POLISH_MIN_STEP = 1e-4
"""First step of the polishing run: relative to theta, and at least this."""


def optimize_lmer(
    objective: Objective,
    start: np.ndarray,
    lower: np.ndarray,
    method: str | None = None,
    maxiter: int | None = None,
    xtol: float = 1e-8,
    ftol: float = 1e-8,
    restart_edge: bool = True,
    boundary_tol: float = 1e-5,
    polish: bool = False,
) -> OptimizerResult:
    """One optimizer run plus lme4's boundary handling (``optimizeLmer``).

    After :func:`minimize_theta`:

    * ``restart_edge``: for theta elements exactly on their lower bound, the
      one-sided difference ``(f(theta + 1e-5 e_i) - f(theta)) / 1e-5`` is
      computed; when any is negative (the objective falls into the interior)
      the optimizer is run again from the estimate.
    * ``boundary_tol``: each element within ``boundary_tol`` of its bound (but
      not on it) is set to the bound in turn and kept there when the
      objective is lower than the best value so far. (lme4 compares every
      trial with the optimizer's value, so a later snap could undo part of an
      earlier improvement.) ``0`` disables this.

    * ``polish`` (NLopt optimizers): a second run from the estimate with a
      small first step (1e-3 of each element, at least 1e-4). BOBYQA can stop
      on ``ftol_abs`` while still 1e-7 above the optimum (InstEval from lme4's
      start); the second run costs 6-20 evaluations and is kept only if it
      improves the objective.

    Parameters are those of :func:`minimize_theta`; the result's
    ``n_evaluations`` and ``seconds`` include the extra work, ``restarted``
    and ``boundary_snapped`` say what was done.
    """
    began = time.perf_counter()
    result = minimize_theta(objective, start, lower, method, maxiter, xtol, ftol)
    extra = 0
    lower = np.asarray(lower, dtype=float)
    if restart_edge:
        on_edge = np.flatnonzero(result.theta == lower)
        if on_edge.size:
            base = float(objective(result.theta))
            extra += 1
            slopes = []
            for index in on_edge:
                moved = result.theta.copy()
                moved[index] = lower[index] + EDGE_STEP
                slopes.append((float(objective(moved)) - base) / EDGE_STEP)
                extra += 1
            if any(slope < 0 for slope in slopes):
                again = minimize_theta(objective, result.theta, lower, method, maxiter, xtol, ftol)
                extra += result.n_evaluations
                result = again
                result.restarted = True
    if polish:
        extra += polish_theta(objective, result, lower, maxiter, xtol, ftol)
    if boundary_tol > 0:
        gap = result.theta - lower
        near = np.flatnonzero((gap > 0) & (gap < boundary_tol))
        if near.size:
            theta, best = result.theta.copy(), result.fun
            for index in near:
                trial = theta.copy()
                trial[index] = lower[index]
                value = float(objective(trial))
                extra += 1
                if value < best:
                    theta, best = trial, value
                    result.boundary_snapped.append(int(index))
            if result.boundary_snapped:
                result.theta, result.fun = theta, best
    result.n_evaluations += extra
    result.seconds = time.perf_counter() - began
    result.options = {
        **result.options,
        "restart_edge": bool(restart_edge),
        "boundary_tol": float(boundary_tol),
        "polish": bool(polish),
    }
    return result


def polish_theta(
    objective: Objective,
    result: OptimizerResult,
    lower: np.ndarray,
    maxiter: int | None = None,
    xtol: float = 1e-8,
    ftol: float = 1e-8,
) -> int:
    """Rerun the optimizer from its estimate (NLopt ones with a small first step).

    ``result`` is updated in place when the objective improves; returns the
    number of evaluations used.
    """
    step = None
    if result.method in ("bobyqa", "nlopt-nelder-mead"):
        step = np.maximum(POLISH_STEP * np.abs(result.theta), POLISH_MIN_STEP)
    again = minimize_theta(
        objective, result.theta, lower, result.method, maxiter, xtol, ftol, initial_step=step
    )
    if again.fun <= result.fun:
        result.theta, result.fun = again.theta, again.fun
        result.polished = True
    return again.n_evaluations


class _Counter:
    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.calls = 0

    def __call__(self, theta: np.ndarray, *args: Any) -> float:
        self.calls += 1
        value = self.objective(np.asarray(theta, dtype=float))
        return value if np.isfinite(value) else 1e300


def _nlopt(algorithm_name: str):
    def run(fun, start, lower, maxiter, xtol, ftol, initial_step=None):
        import nlopt

        algorithm = getattr(nlopt, algorithm_name)
        opt = nlopt.opt(algorithm, len(start))
        opt.set_min_objective(lambda x, grad: fun(x))
        opt.set_lower_bounds(lower)
        opt.set_xtol_abs(xtol)
        opt.set_ftol_abs(ftol)
        opt.set_maxeval(int(maxiter))
        if initial_step is not None:
            opt.set_initial_step(initial_step)
        theta = opt.optimize(start)
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
    def run(fun, start, lower, maxiter, xtol, ftol, initial_step=None):
        bounds = optimize.Bounds(lower, np.full(len(lower), np.inf))
        result = optimize.minimize(
            fun,
            start,
            method=method,
            jac=jac,
            bounds=bounds,
            options=options(maxiter, xtol, ftol),
        )
        return result.x, result.fun, str(result.message), bool(result.success)

    return run


_REGISTRY: dict[str, Callable[..., tuple[np.ndarray, float, str, bool]]] = {
    "bobyqa": _nlopt("LN_BOBYQA"),
    "nlopt-nelder-mead": _nlopt("LN_NELDERMEAD"),
    # central differences: forward ones leave L-BFGS-B 1e-5 short of the
    # optimum on some models (Pastes); 3-point gradients reach it
    "lbfgsb": _scipy(
        "L-BFGS-B", lambda n, x, f: {"maxfun": n, "ftol": 1e-12, "gtol": 1e-7}, jac="3-point"
    ),
    "nelder-mead": _scipy(
        "Nelder-Mead",
        lambda n, x, f: {"maxfev": n, "xatol": x, "fatol": f, "adaptive": True},
    ),
    "powell": _scipy("Powell", lambda n, x, f: {"maxfev": n, "xtol": x, "ftol": 1e-12}),
    "cobyqa": _scipy("COBYQA", lambda n, x, f: {"maxfev": n, "final_tr_radius": x}),
    "trust-constr": _scipy("trust-constr", lambda n, x, f: {"maxiter": n, "xtol": x, "gtol": 1e-8}),
}
