"""The fit keywords of ``Lmer.fit`` (lme4's ``lmerControl``), checked."""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from .._parallel import check_threads
from ..arguments import check_bool
from .convergence import GRAD_TOL, HESS_TOL
from .optimizers import available_optimizers

__all__ = [
    "CLOSE_START_STEP",
    "DERIV_METHODS",
    "NOBS_MAX_DERIVS",
    "VERIFY_TOL",
    "FitOptions",
    "unknown_keyword_error",
]

NOBS_MAX_DERIVS = 10_000
"""Above this many observations the convergence derivatives are skipped by default."""

DERIV_METHODS = ("analytic", "deriv12")
"""Values of ``deriv_method``."""

CLOSE_START_STEP = 0.25
"""``initial_step`` from a start close to the optimum: lme4's start estimated from
group means, or a fitted theta in a refit (new response, REML to ML).

NLopt's default first step is about 0.75 theta. From a start estimated from
the data a quarter of theta reached the same optimum in fewer evaluations:
InstEval 41 -> 27, Penicillin 43 -> 32, a 2e5-row crossed model with 2e4 x
1e3 levels 39 -> 25 (REML); sleepstudy's bootstrap refits 67 -> 45.
"""

VERIFY_TOL = 1e-6
"""A restart from the estimate must not lower the objective by more than this."""


@dataclass(frozen=True)
class FitOptions:
    """The fit keywords of :meth:`statsmodels_lmer.Lmer.fit` (lme4's ``lmerControl``).

    Attributes
    ----------
    method : str or None
        Optimizer name (:func:`~statsmodels_lmer.fitting.optimizers.available_optimizers`);
        default L-BFGS-B on the analytic gradient where the engine has one,
        else BOBYQA when nlopt is installed (lme4's), else L-BFGS-B on
        finite differences.
    maxiter : int or None
        Limit on objective evaluations of each optimizer run (default 100000).
    xtol, ftol : float
        Absolute tolerances on theta and on the objective (lme4: 1e-8 each).
    check_conv : bool
        Run lme4's convergence checks and warn.
    calc_derivs : bool or None
        Compute the gradient and Hessian at the optimum for the checks;
        default on up to 10,000 observations (as newer lme4). They are never
        computed at a singular fit, where the checks ignore them.
    deriv_method : {"analytic", "deriv12"}
        How: the analytic gradient and central differences of it (``2 k``
        gradients; the default where the engine has the gradient), or lme4's
        ``deriv12`` finite differences of the criterion (``2 k^2``
        evaluations; lme4's numbers).
    verify : bool
        Verify the optimum: by its local quadratic model (interior estimate,
        at most three theta or lme4's derivatives wanted anyway), else by
        restarting the optimizer from its estimate until a restart lowers
        the objective by at most ``verify_tol``; a fit whose optimum is not
        verified is not reported converged.
    verify_tol : float
        See ``verify`` (1e-6 on the deviance scale).
    boundary_tol : float
        lme4's ``boundary.tol``: elements this close to their bound are moved
        onto it when that does not increase the objective; 0 disables.
    restart_edge : bool
        lme4's ``restart_edge``.
    grad_tol, hess_tol : float
        lme4's ``check.conv.grad`` (2e-3) and ``check.conv.hess`` (1e-6).
    threads : int or None
        BLAS threads for the fit and the computations on it (Satterthwaite,
        Kenward-Roger, profiles). None: one thread when the dense block is
        smaller than ``statsmodels_lmer._parallel.SMALL_BLOCK`` rows, BLAS's
        default otherwise.
    initial_step : float or None
        First step of the NLopt optimizers (BOBYQA's ``rhobeg``) relative to
        the start: ``initial_step * max(|theta|, 0.1)`` per element. None:
        0.25 from lme4's start estimated from group means, NLopt's own
        choice (about 0.75 theta) otherwise. Refits from a fitted theta
        (``res.refit``, the parametric bootstrap) use 0.25.
    progress : bool or None
        A bar counting the fit's evaluations, with the lowest objective so
        far (:class:`~statsmodels_lmer._parallel.EvaluationProgress`). None:
        the package setting (:func:`~statsmodels_lmer.set_progress`), drawn
        only once the fit has run two seconds, and never for the fits inside
        a job with its own bar (bootstrap, allfit, ...); True: from the
        first evaluation; False: never.
    """

    method: str | None = None
    maxiter: int | None = None
    xtol: float = 1e-8
    ftol: float = 1e-8
    check_conv: bool = True
    calc_derivs: bool | None = None
    deriv_method: str = "analytic"
    verify: bool = True
    verify_tol: float = VERIFY_TOL
    boundary_tol: float = 1e-5
    restart_edge: bool = True
    grad_tol: float = GRAD_TOL
    hess_tol: float = HESS_TOL
    threads: int | None = None
    initial_step: float | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", _our_method(self.method))
        if self.method is not None:
            if not isinstance(self.method, str):
                raise TypeError(
                    f"method must be an optimizer name (a string), got {self.method!r}; "
                    f"available: {', '.join(available_optimizers())}"
                )
            known = [*available_optimizers()]
            if self.method.lower() not in known:
                raise ValueError(
                    f"unknown optimizer {self.method!r}; available: {', '.join(known)}"
                )
        if self.maxiter is not None:
            if isinstance(self.maxiter, bool) or not isinstance(self.maxiter, int | np.integer):
                raise TypeError(f"maxiter must be a whole number, got {self.maxiter!r}")
            if self.maxiter < 1:
                raise ValueError(f"maxiter must be at least 1, got {self.maxiter}")
        for name in ("xtol", "ftol", "verify_tol", "grad_tol", "hess_tol"):
            _check_positive(name, getattr(self, name))
        _check_nonnegative("boundary_tol", self.boundary_tol)
        for name in ("check_conv", "verify", "restart_edge"):
            check_bool(name, getattr(self, name))
        if self.calc_derivs is not None:
            check_bool("calc_derivs", self.calc_derivs)
        if not isinstance(self.deriv_method, str):
            raise TypeError(f"deriv_method must be a string, got {self.deriv_method!r}")
        if self.deriv_method not in DERIV_METHODS:
            raise ValueError(
                f"deriv_method must be one of {', '.join(map(repr, DERIV_METHODS))}, "
                f"got {self.deriv_method!r}"
            )
        check_threads(self.threads)
        if self.initial_step is not None:
            _check_positive("initial_step", self.initial_step)
        if self.progress is not None:
            check_bool("progress", self.progress)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The keyword names."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def split(cls, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split keywords into (fit keywords, the others)."""
        names = cls.names()
        fit = {k: v for k, v in kwargs.items() if k in names}
        return fit, {k: v for k, v in kwargs.items() if k not in names}

    def resolved(self, nobs: float) -> FitOptions:
        """These options with ``calc_derivs`` decided by the number of observations."""
        if self.calc_derivs is not None:
            return self
        return replace(self, calc_derivs=bool(nobs <= NOBS_MAX_DERIVS))

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain dictionary."""
        return asdict(self)


MIXEDLM_METHODS = {"lbfgs": "lbfgsb", "nm": "nelder-mead", "powell": "powell"}
"""MixedLM's optimizer names and ours (its "bfgs", "cg" and "newton" have none)."""


def _our_method(method: Any) -> Any:
    """``method`` with MixedLM's names (``"lbfgs"``, or a list tried in turn) as ours.

    Of a list, the first optimizer is used: every fit verifies its optimum
    (docs/checks.md), where MixedLM tries the next one when the first fails.
    """
    if isinstance(method, list | tuple) and method and all(isinstance(m, str) for m in method):
        method = method[0]
    if isinstance(method, str) and method.lower() in ("bfgs", "cg", "newton"):
        raise ValueError(
            f"unknown optimizer {method!r} (MixedLM's): here use 'lbfgsb' (L-BFGS-B on the "
            f"analytic gradient) or one of {', '.join(available_optimizers())}"
        )
    if isinstance(method, str):
        return MIXEDLM_METHODS.get(method.lower(), method)
    return method


def unknown_keyword_error(where: str, unknown: list[str], known: list[str]) -> TypeError:
    """A TypeError naming unknown keywords and suggesting close known ones (any case)."""
    by_lower = {k.lower(): k for k in known}
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
        hint = f" (did you mean {by_lower[close[0]]!r}?)" if close else ""
        parts.append(f"{name!r}{hint}")
    plural = "s" if len(unknown) > 1 else ""
    return TypeError(f"{where} got unexpected keyword argument{plural} {', '.join(parts)}")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _check_nonnegative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
