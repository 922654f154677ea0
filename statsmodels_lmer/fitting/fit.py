"""One fit of theta, start to verdict: the options, the run and its typed summary.

:func:`fit_theta` runs the optimizer with lme4's boundary handling
(:func:`~statsmodels_lmer.fitting.optimizers.optimize_lmer`), verifies the
optimum by restarting from it, computes lme4's convergence derivatives and
checks, and returns an :class:`OptSummary`: what was done, whether the fit
converged, and the warnings to emit. Nothing here emits a warning; the model
does, so that the warnings point at the caller's line.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from ..exceptions import LmerConvergenceWarning, SingularFitWarning
from .convergence import (
    GRAD_TOL,
    HESS_TOL,
    SINGULAR_MESSAGE,
    ConvergenceCheck,
    check_conv,
    deriv12,
)
from .optimizers import Objective, OptimizerResult, available_optimizers, optimize_lmer

__all__ = ["NOBS_MAX_DERIVS", "VERIFY_TOL", "FitOptions", "OptSummary", "fit_theta"]

NOBS_MAX_DERIVS = 10_000
"""Above this many observations the convergence derivatives are skipped by default."""

VERIFY_TOL = 1e-6
"""A restart from the estimate must not lower the objective by more than this."""


@dataclass(frozen=True)
class FitOptions:
    """The fit keywords of :meth:`statsmodels_lmer.Lmer.fit` (lme4's ``lmerControl``).

    Attributes
    ----------
    method : str or None
        Optimizer name (:func:`~statsmodels_lmer.fitting.optimizers.available_optimizers`);
        default BOBYQA when nlopt is installed, else L-BFGS-B.
    maxiter : int or None
        Limit on objective evaluations of each optimizer run (default 100000).
    xtol, ftol : float
        Absolute tolerances on theta and on the objective (lme4: 1e-8 each).
    check_conv : bool
        Run lme4's convergence checks and warn.
    calc_derivs : bool or None
        Compute the finite-difference gradient and Hessian at the optimum;
        default on up to 10,000 observations (as newer lme4).
    verify : bool
        Restart the optimizer from its estimate until a restart lowers the
        objective by at most ``verify_tol``; a fit whose optimum is not
        verified this way is not reported converged.
    verify_tol : float
        See ``verify`` (1e-6 on the deviance scale).
    boundary_tol : float
        lme4's ``boundary.tol``: elements this close to their bound are moved
        onto it when that does not increase the objective; 0 disables.
    restart_edge : bool
        lme4's ``restart_edge``.
    grad_tol, hess_tol : float
        lme4's ``check.conv.grad`` (2e-3) and ``check.conv.hess`` (1e-6).
    """

    method: str | None = None
    maxiter: int | None = None
    xtol: float = 1e-8
    ftol: float = 1e-8
    check_conv: bool = True
    calc_derivs: bool | None = None
    verify: bool = True
    verify_tol: float = VERIFY_TOL
    boundary_tol: float = 1e-5
    restart_edge: bool = True
    grad_tol: float = GRAD_TOL
    hess_tol: float = HESS_TOL

    def __post_init__(self) -> None:
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
            _check_bool(name, getattr(self, name))
        if self.calc_derivs is not None:
            _check_bool("calc_derivs", self.calc_derivs)

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


def unknown_keyword_error(where: str, unknown: list[str], known: list[str]) -> TypeError:
    """A TypeError naming unknown keywords and suggesting close known ones."""
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
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


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")


@dataclass
class OptSummary:
    """What one fit of theta did and found (lme4's ``optinfo``, typed).

    Attributes
    ----------
    optimizer : str
        The optimizer's registry name.
    start : ndarray
        The starting theta.
    theta : ndarray
        The estimate.
    objective : float
        The objective at ``theta``.
    feval : int
        Objective evaluations, restarts and verification included (not the
        derivative checks).
    message : str
        The optimizer's own message.
    optimizer_success : bool
        Whether the optimizer reported success.
    seconds : float
        Time spent optimizing (derivatives excluded).
    options : FitOptions
        The options, resolved.
    restarted : bool
        Restarted from the edge (lme4's ``restart_edge``).
    boundary_snapped : list of int
        Elements moved onto their bound (lme4's ``boundary.tol``).
    verify_rounds : int
        Restarts used to verify the optimum.
    verify_improvement : float or None
        How much the last verifying restart lowered the objective.
    verified : bool or None
        Whether the optimum was verified (None when verification was off).
    derivs : dict or None
        ``{"gradient", "Hessian"}`` at the estimate (lme4's ``derivs``).
    conv : ConvergenceCheck or None
        lme4's ``checkConv`` outcome.
    messages : list of (str, type)
        Warnings to emit, with their categories.
    """

    optimizer: str
    start: np.ndarray
    theta: np.ndarray
    objective: float
    feval: int
    message: str
    optimizer_success: bool
    seconds: float
    options: FitOptions
    restarted: bool = False
    boundary_snapped: list[int] = field(default_factory=list)
    verify_rounds: int = 0
    verify_improvement: float | None = None
    verified: bool | None = None
    derivs: dict[str, np.ndarray] | None = None
    conv: ConvergenceCheck | None = None
    messages: list[tuple[str, type[Warning]]] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        """The optimum is verified (or the optimizer succeeded) and no check failed.

        A verified optimum counts even when the first run stopped on its
        evaluation limit; an unverified one never does.
        """
        failed_check = self.conv is not None and self.conv.failed
        reached = self.verified if self.verified is not None else self.optimizer_success
        return bool(reached) and not failed_check

    @property
    def singular(self) -> bool:
        """Whether the checks found a boundary (singular) fit."""
        return self.conv is not None and self.conv.singular

    @property
    def warnings(self) -> list[str]:
        """The texts of the warnings."""
        return [text for text, _ in self.messages]

    @classmethod
    def fixed(cls, theta: np.ndarray, objective: float) -> OptSummary:
        """The summary of theta held fixed (no optimization)."""
        theta = np.asarray(theta, dtype=float)
        options = FitOptions(check_conv=False, verify=False)
        return cls(
            "fixed", theta.copy(), theta, objective, 0, "theta held fixed", True, 0.0, options
        )

    def as_optinfo(self) -> dict[str, Any]:
        """The plain dictionary of ``res.optinfo`` (lme4's ``optinfo`` layout)."""
        return {
            "optimizer": self.optimizer,
            "feval": self.feval,
            "message": self.message,
            "success": self.optimizer_success,
            "seconds": self.seconds,
            "objective": self.objective,
            "start": self.start,
            "control": self.options.as_dict(),
            "restarted": self.restarted,
            "boundary_snapped": list(self.boundary_snapped),
            "verify_rounds": self.verify_rounds,
            "verify_improvement": self.verify_improvement,
            "verified": self.verified,
            "derivs": self.derivs,
            "conv": None if self.conv is None else self.conv.as_dict(),
            "warnings": self.warnings,
        }


def fit_theta(
    objective: Objective,
    start: np.ndarray,
    lower: np.ndarray,
    options: FitOptions,
    nobs: float,
) -> OptSummary:
    """Optimize, verify and check one fit of theta.

    Parameters
    ----------
    objective : callable
        The criterion of theta.
    start, lower : ndarray
        Starting theta and lower bounds.
    options : FitOptions
    nobs : float
        Number of observations (decides ``calc_derivs`` by default).

    Returns
    -------
    OptSummary
    """
    opts = options.resolved(nobs)
    result = optimize_lmer(
        objective,
        start,
        lower,
        opts.method,
        opts.maxiter,
        opts.xtol,
        opts.ftol,
        restart_edge=opts.restart_edge,
        boundary_tol=opts.boundary_tol,
        verify=opts.verify,
        verify_tol=opts.verify_tol,
    )
    summary = _summary(result, start, opts)
    if opts.calc_derivs:
        summary.derivs = deriv12(objective, result.theta, fx=result.fun)
    if opts.check_conv:
        summary.conv = check_conv(
            summary.derivs, result.theta, lower, grad_tol=opts.grad_tol, hess_tol=opts.hess_tol
        )
    summary.messages = _messages(summary)
    return summary


def _summary(result: OptimizerResult, start: np.ndarray, opts: FitOptions) -> OptSummary:
    return OptSummary(
        optimizer=result.method,
        start=np.asarray(start, dtype=float).copy(),
        theta=result.theta,
        objective=result.fun,
        feval=result.n_evaluations,
        message=result.message,
        optimizer_success=result.success,
        seconds=result.seconds,
        options=opts,
        restarted=result.restarted,
        boundary_snapped=list(result.boundary_snapped),
        verify_rounds=result.verify_rounds,
        verify_improvement=result.verify_improvement,
        verified=result.verified,
    )


def _messages(summary: OptSummary) -> list[tuple[str, type[Warning]]]:
    out: list[tuple[str, type[Warning]]] = []
    unverified = (
        f"after {summary.verify_rounds} restarts from the estimate the objective still "
        f"fell by {summary.verify_improvement:.3g} (tol = {summary.options.verify_tol:g})"
    )
    if not summary.optimizer_success and summary.verified is not True:
        text = f"optimizer {summary.optimizer} did not converge: {summary.message}"
        if summary.verified is False:
            text += f"; {unverified}"
        out.append((text, LmerConvergenceWarning))
    elif summary.verified is False:
        text = f"the optimum is not verified: {unverified}; compare optimizers with res.allfit()"
        out.append((text, LmerConvergenceWarning))
    conv = summary.conv
    if conv is not None:
        if conv.singular:
            out.append((SINGULAR_MESSAGE, SingularFitWarning))
        out.extend((text, LmerConvergenceWarning) for text in conv.warnings)
    return out
