"""Optimizers over theta: a registry of bound-constrained minimizers.

lme4's default for ``lmer`` is BOBYQA from NLopt with ``xtol_abs = ftol_abs =
1e-8``; it is used here when the optional ``nlopt`` package is installed.
Without it the default is scipy's L-BFGS-B on finite differences, which
reaches the same optimum on the reference models. Every optimizer minimizes
the profiled objective subject to theta's lower bounds.
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
    """

    theta: np.ndarray
    fun: float
    n_evaluations: int
    method: str
    message: str
    success: bool
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)


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
    theta, fun, message, success = _REGISTRY[name](
        counter, start, lower, maxiter or 100_000, xtol, ftol
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


class _Counter:
    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.calls = 0

    def __call__(self, theta: np.ndarray, *args: Any) -> float:
        self.calls += 1
        value = self.objective(np.asarray(theta, dtype=float))
        return value if np.isfinite(value) else 1e300


def _nlopt(algorithm_name: str):
    def run(fun, start, lower, maxiter, xtol, ftol):
        import nlopt

        algorithm = getattr(nlopt, algorithm_name)
        opt = nlopt.opt(algorithm, len(start))
        opt.set_min_objective(lambda x, grad: fun(x))
        opt.set_lower_bounds(lower)
        opt.set_xtol_abs(xtol)
        opt.set_ftol_abs(ftol)
        opt.set_maxeval(int(maxiter))
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


def _scipy(method: str, options: Callable[[int, float, float], dict[str, Any]]):
    def run(fun, start, lower, maxiter, xtol, ftol):
        bounds = optimize.Bounds(lower, np.full(len(lower), np.inf))
        result = optimize.minimize(
            fun, start, method=method, bounds=bounds, options=options(maxiter, xtol, ftol)
        )
        return result.x, result.fun, str(result.message), bool(result.success)

    return run


_REGISTRY: dict[str, Callable[..., tuple[np.ndarray, float, str, bool]]] = {
    "bobyqa": _nlopt("LN_BOBYQA"),
    "nlopt-nelder-mead": _nlopt("LN_NELDERMEAD"),
    "lbfgsb": _scipy("L-BFGS-B", lambda n, x, f: {"maxfun": n, "ftol": 1e-14, "gtol": 1e-7}),
    "nelder-mead": _scipy(
        "Nelder-Mead",
        lambda n, x, f: {"maxfev": n, "xatol": x, "fatol": f, "adaptive": True},
    ),
    "powell": _scipy("Powell", lambda n, x, f: {"maxfev": n, "xtol": x, "ftol": 1e-12}),
    "cobyqa": _scipy("COBYQA", lambda n, x, f: {"maxfev": n, "final_tr_radius": x}),
    "trust-constr": _scipy("trust-constr", lambda n, x, f: {"maxiter": n, "xtol": x, "gtol": 1e-8}),
}
