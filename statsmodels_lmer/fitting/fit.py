"""One fit of theta, start to verdict: the options, the run and its typed summary.

:func:`fit_theta` runs the optimizer with lme4's boundary handling
(:func:`~statsmodels_lmer.fitting.run.optimize_lmer`), verifies the
optimum (by its local quadratic model or by restarting from it), computes
lme4's convergence derivatives and checks, and returns an
:class:`OptSummary`: what was done, whether the fit converged, and the
warnings to emit. Nothing here emits a warning; the model
does, so that the warnings point at the caller's line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._parallel import EvaluationProgress
from ..engine.gradient import (
    ProfiledGradient,
    bobyqa_fit_calls,
    gradient_available,
    jacobian_of_gradient,
    predicted_seconds,
)
from ..engine.objective import ProfiledDeviance, Solution
from ..exceptions import DataError, LmerConvergenceWarning, SingularFitWarning
from .convergence import (
    SINGULAR_MESSAGE,
    SINGULAR_TOL,
    ConvergenceCheck,
    check_conv,
    deriv12,
)
from .optimizers import HAVE_NLOPT, Objective, OptimizerResult
from .options import FitOptions
from .rescale import Rescaled, optimizer_scale, theta_in_units
from .run import optimize_lmer

__all__ = [
    "REPRODUCED_TOL",
    "OptSummary",
    "check_estimates",
    "check_reproduced",
    "convergence_derivatives",
    "fit_theta",
    "with_gradient",
]


REPRODUCED_TOL = 1e-8
"""Relative gap (to ``max(1, |f|)``) allowed between the optimizer's value and the criterion
recomputed at the estimate."""


@dataclass
class OptSummary:
    """What one fit of theta did and found (lme4's ``optinfo``, typed).

    Attributes
    ----------
    run : OptimizerResult
        The optimizer run, restarts and verification included: ``theta``,
        ``fun``, ``n_evaluations``, ``method``, ``message``, ``success``,
        ``seconds``, ``restarted``, ``boundary_snapped``, ``verify_rounds``,
        ``verify_improvement``, ``verified``, ``verify_method``.
    start : ndarray
        The starting theta.
    options : FitOptions
        The options, resolved.
    derivs : dict or None
        ``{"gradient", "Hessian"}`` at the estimate (lme4's ``derivs``).
    conv : ConvergenceCheck or None
        lme4's ``checkConv`` outcome.
    messages : list of (str, type)
        Warnings to emit, with their categories.
    scale : ndarray or None
        The column scales the optimizer worked in (``phi = theta * scale``,
        :mod:`~statsmodels_lmer.fitting.rescale`), or None (theta itself).
    second_start : dict or None
        The check of a singular fit by a second optimizer from lme4's start
        (``method``, ``objective``, ``adopted``), or None when not made.
    boundary_probe : dict or None
        The check of an interior fit against the boundary (``probed``: theta
        elements set to 0 one at a time, ``lowest``: the lowest value there,
        ``adopted``: whether a restart from it was lower), or None when not made.
    reproduced_gap : float or None
        ``|f(theta) - fun|`` between the solution's criterion at the estimate and the
        optimizer's value there (0 to 4e-15 relative on ordinary models); above
        :data:`REPRODUCED_TOL` the fit does not count as converged. None: not compared.
    other_optimizer : str or None
        The default optimizer not used first, whose fit from the estimate was taken
        after lme4's checks failed there (:func:`_other_optimizer`); None.
    centred : dict or None
        The check of a fit with a random-effects column far from zero against
        its spread by the same model with the column centred (``columns``,
        ``objective``: the centred fit's criterion, ``gap``: this fit's
        criterion minus it, ``short``: whether the gap shows this fit stopped
        short; then the fit is not converged), or None when not made.
    """

    run: OptimizerResult
    start: np.ndarray
    options: FitOptions
    derivs: dict[str, np.ndarray] | None = None
    conv: ConvergenceCheck | None = None
    messages: list[tuple[str, type[Warning]]] = field(default_factory=list)
    scale: np.ndarray | None = None
    second_start: dict[str, Any] | None = None
    boundary_probe: dict[str, Any] | None = None
    reproduced_gap: float | None = None
    other_optimizer: str | None = None
    centred: dict[str, Any] | None = None

    @property
    def theta(self) -> np.ndarray:
        """The estimate."""
        return self.run.theta

    @property
    def verified(self) -> bool | None:
        """Whether the optimum was verified (None: not attempted); see ``run.verify_method``."""
        return self.run.verified

    @property
    def converged(self) -> bool:
        """The optimum is verified (or the optimizer succeeded) and no check failed.

        A verified optimum counts even when the first run stopped on its
        evaluation limit; an unverified one never does.
        """
        failed_check = self.conv is not None and self.conv.failed
        reached = self.run.verified if self.run.verified is not None else self.run.success
        short = self.centred is not None and self.centred["short"]
        return bool(reached) and not failed_check and self.reproduced and not short

    @property
    def reproduced(self) -> bool:
        """Whether the criterion at the estimate equals the optimizer's value (see
        ``reproduced_gap``)."""
        if self.reproduced_gap is None:
            return True
        return self.reproduced_gap <= REPRODUCED_TOL * max(1.0, abs(self.run.fun))

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
        run = OptimizerResult(theta, objective, 0, "fixed", "theta held fixed", True)
        return cls(run, theta.copy(), FitOptions(check_conv=False, verify=False))

    def as_optinfo(self) -> dict[str, Any]:
        """The plain dictionary of ``res.optinfo`` (lme4's ``optinfo`` layout)."""
        run = self.run
        return {
            "optimizer": run.method,
            "feval": run.n_evaluations,
            "n_gradients": run.n_gradients,
            "message": run.message,
            "success": run.success,
            "seconds": run.seconds,
            "objective": run.fun,
            "start": self.start,
            "control": self.options.as_dict(),
            "restarted": run.restarted,
            "boundary_snapped": list(run.boundary_snapped),
            "verify_rounds": run.verify_rounds,
            "verify_method": run.verify_method,
            "verify_improvement": run.verify_improvement,
            "verified": run.verified,
            "theta_scale": None if self.scale is None else self.scale.copy(),
            "second_start": self.second_start,
            "boundary_probe": self.boundary_probe,
            "derivs": self.derivs,
            "reproduced_gap": self.reproduced_gap,
            "other_optimizer": self.other_optimizer,
            "centred": self.centred,
            "conv": None if self.conv is None else self.conv.as_dict(),
            "warnings": self.warnings,
        }


def fit_theta(
    objective: Objective,
    start: np.ndarray,
    lower: np.ndarray,
    options: FitOptions,
    nobs: float,
    initial_step: np.ndarray | None = None,
    theta_scale: np.ndarray | None = None,
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
    initial_step : ndarray, optional
        First step of NLopt optimizers (default NLopt's own choice).
    theta_scale : ndarray, optional
        The column scale of each theta element
        (:func:`~statsmodels_lmer.fitting.rescale.theta_scales`): when some
        is extreme, the optimizer works on ``theta * scale``.

    Returns
    -------
    OptSummary
    """
    opts = options.resolved(nobs)
    objective = with_gradient(objective, close_start=initial_step is not None)
    scale = optimizer_scale(theta_scale)
    # lme4's derivatives are differences in theta: with a scale, taken after the run
    wanted = bool(opts.calc_derivs) and scale is None and _by_deriv12(objective, opts.deriv_method)
    lower = np.asarray(lower, dtype=float)
    with _watched(objective, opts.progress) as progress:
        run = _run_in_units(objective, start, lower, opts, initial_step, wanted, scale)
        second = probe = None
        if _second_start_wanted(objective, run, lower, opts):
            progress.set_stage("second start")
            run, second = _second_start(objective, run, lower, opts, scale)
        elif _boundary_probe_wanted(objective, run, lower, opts):
            progress.set_stage("boundary probe")
            run, probe = _boundary_probe(objective, run, lower, opts, scale)
        summary = _checked(objective, run, start, lower, opts, scale, wanted, progress)
        summary.second_start, summary.boundary_probe = second, probe
    other = _other_optimizer(run, opts, summary.conv)
    if other is not None:  # lme4's checks failed on a default fit: one more try
        again = _run_in_units(
            objective, run.theta, lower, replace(opts, method=other), None, wanted, scale
        )
        if again.fun < run.fun - opts.verify_tol:
            summary = _checked(objective, again, start, lower, opts, scale, wanted)
            summary.other_optimizer = other
    summary.messages = _messages(summary)
    return summary


def _other_optimizer(run: OptimizerResult, opts: FitOptions, conv: Any) -> str | None:
    """The default optimizer not used, when lme4's checks failed on a default fit.

    An ML fit of a small maximal design ended 2.8e-4 above the optimum by BOBYQA,
    verified by restarts but with max|grad| above lme4's 2e-3 (with one BLAS
    thread: 5e-5 above, a degenerate Hessian); L-BFGS-B from there reaches the
    optimum. Not at a singular fit, whose checks lme4 skips.
    """
    if opts.method is not None or conv is None or conv.singular or not conv.messages:
        return None
    if run.method == "lbfgsb":
        return "bobyqa" if HAVE_NLOPT else None
    return "lbfgsb" if run.method == "bobyqa" else None


def _checked(
    objective: Objective,
    run: OptimizerResult,
    start: np.ndarray,
    lower: np.ndarray,
    opts: FitOptions,
    scale: np.ndarray | None,
    wanted: bool,
    progress: Any = None,
) -> OptSummary:
    """The summary of ``run`` with lme4's convergence derivatives and checks (``conv``
    None without ``check_conv``)."""
    summary = OptSummary(run, np.asarray(start, dtype=float).copy(), opts, scale=scale)
    singular = bool(np.any(run.theta[lower == 0] < SINGULAR_TOL))
    if opts.calc_derivs and not singular:  # checkConv ignores them at a singular fit
        if wanted and run.derivs is not None:  # deriv12 at the estimate, from verification
            summary.derivs = run.derivs
        else:
            if progress is not None:
                progress.set_stage("convergence derivatives")
            summary.derivs = convergence_derivatives(
                objective, run.theta, run.fun, opts.deriv_method
            )
    if opts.check_conv:
        summary.conv = check_conv(
            summary.derivs, run.theta, lower, grad_tol=opts.grad_tol, hess_tol=opts.hess_tol
        )
    return summary


SECOND_START_SECONDS = 0.25
"""Singular fits of models whose BOBYQA fit is predicted to take at most this long are
checked by a second optimizer from lme4's start (:func:`_second_start`)."""


def _run_in_units(
    objective: Objective,
    start: np.ndarray,
    lower: np.ndarray,
    opts: FitOptions,
    initial_step: np.ndarray | None,
    wanted: bool,
    scale: np.ndarray | None,
) -> OptimizerResult:
    """:func:`optimize_lmer` in theta, or in ``theta * scale`` mapped back to theta."""
    if scale is None:
        return optimize_lmer(objective, start, lower, opts, initial_step, derivs_wanted=wanted)
    step = None if initial_step is None else initial_step * scale
    scaled = Rescaled(objective, scale)
    return theta_in_units(optimize_lmer(scaled, start * scale, lower, opts, step), scale)


def _second_start_wanted(
    objective: Objective, run: OptimizerResult, lower: np.ndarray, opts: FitOptions
) -> bool:
    """A singular default fit (no ``method``) of a cheap model (:data:`SECOND_START_SECONDS`)."""
    if opts.method is not None or not opts.verify or lower.size == 0:
        return False
    if not np.any(run.theta[lower == 0] < SINGULAR_TOL):
        return False
    return _cheap(objective, lower)


def _boundary_probe_wanted(
    objective: Objective, run: OptimizerResult, lower: np.ndarray, opts: FitOptions
) -> bool:
    """An interior default fit (no ``method``) of a cheap model (:data:`SECOND_START_SECONDS`)."""
    if opts.method is not None or not opts.verify or lower.size == 0:
        return False
    if np.any(run.theta[lower == 0] < SINGULAR_TOL):
        return False
    return _cheap(objective, lower)


def _boundary_probe(
    objective: Objective,
    run: OptimizerResult,
    lower: np.ndarray,
    opts: FitOptions,
    scale: np.ndarray | None,
) -> tuple[OptimizerResult, dict[str, Any]]:
    """``run``, or the optimizer's fit from the estimate with one diagonal at 0 when lower.

    A variance can have a local minimum inside and a lower one at 0: lmerTest's
    ranova refit of ``y ~ x * z + (1 | g)`` on 13 rows stopped at theta 1.82
    (REML criterion 44.5565) from both optimizers, where 0 gives 44.3566, as
    lme4 finds. Each theta element bounded at 0 is set to 0 in turn (one
    evaluation each); when one of these points is lower than the estimate by
    more than ``verify_tol``, the optimizer restarts from the lowest and its
    result is kept when lower.
    """
    diagonals = np.flatnonzero(lower == 0)
    points = []
    for j in diagonals:
        point = run.theta.copy()
        point[j] = 0.0
        points.append(point)
    values = [_value_or_inf(objective, point) for point in points]
    lowest = int(np.argmin(values))
    run.n_evaluations += len(points)
    info = {"probed": len(points), "lowest": float(values[lowest]), "adopted": False}
    if not values[lowest] < run.fun - opts.verify_tol:
        return run, info
    other = _run_in_units(objective, points[lowest], lower, opts, None, False, scale)
    best = _lower_of(run, other)
    info["adopted"] = best is other
    return best, info


def _lower_of(run: OptimizerResult, other: OptimizerResult) -> OptimizerResult:
    """The run with the lower objective (``run`` on a tie), charged with both runs' work."""
    if other.fun < run.fun:
        return _charged(other, run)
    return _charged(run, other)


def _charged(kept: OptimizerResult, other: OptimizerResult) -> OptimizerResult:
    """``kept``, charged with ``other``'s evaluations, gradients and seconds too."""
    kept.n_evaluations += other.n_evaluations
    kept.n_gradients += other.n_gradients
    kept.seconds += other.seconds
    return kept


def _value_or_inf(objective: Objective, theta: np.ndarray) -> float:
    """The criterion at ``theta``; infinite where it cannot be evaluated."""
    try:
        value = float(objective(theta))
    except (np.linalg.LinAlgError, ValueError):
        return float("inf")
    return value if np.isfinite(value) else float("inf")


def _cheap(objective: Objective, lower: np.ndarray) -> bool:
    """Whether a BOBYQA fit of the model is predicted within :data:`SECOND_START_SECONDS`."""
    devfun = _deviance_of(objective)
    if devfun is None or devfun.cross.product is None:
        return False
    evaluation, _ = predicted_seconds(devfun)
    return evaluation * bobyqa_fit_calls(lower.size) <= SECOND_START_SECONDS


UNSCALED_MIN_EVALUATIONS = 1000
"""lme4's own fit as a third start (:func:`_lme4_own_start`) may take as many evaluations
as the two runs before it, and at least this many: BOBYQA in theta flounders where a
column's scale is extreme (up to 50,000 evaluations, 12 s, with its restarts, on 40-row
designs whose two runs took 400)."""


def _second_start(
    objective: Objective,
    run: OptimizerResult,
    lower: np.ndarray,
    opts: FitOptions,
    scale: np.ndarray | None,
) -> tuple[OptimizerResult, dict[str, Any]]:
    """The lower of ``run`` and the other optimizer's fit from lme4's start.

    Singular fits sit on a boundary where separate local optima are common:
    BOBYQA from the group-means start stopped 1.31 log-likelihood units below
    the optimum L-BFGS-B reaches from lme4's start, and refits from a fitted
    boundary theta (the bootstrap's) up to 11.6 units below a fresh fit. The
    verification is local and cannot see them. lme4's start is 1 on the
    diagonals (in the columns' units when the optimizer works in them).

    When the optimizer works in the columns' units, lme4's own fit (BOBYQA in
    theta from 1 on the diagonals) is a third start: on a 65-row design with
    11 theta and a slope column of scale 0.002, both runs in the columns'
    units stopped at singular points 1.6 and 2.4 REML units above the interior
    optimum lme4 reaches, which BOBYQA in theta reaches too. ``unscaled``
    records its ``objective`` and whether it was ``adopted`` (None when not run).
    """
    method = "lbfgsb" if run.method != "lbfgsb" else ("bobyqa" if HAVE_NLOPT else None)
    if method is None:
        return run, {"method": None, "objective": None, "adopted": False, "unscaled": None}
    lme4_start = np.where(lower == 0, 1.0, 0.0)
    start = lme4_start if scale is None else lme4_start / scale
    other = _run_in_units(objective, start, lower, replace(opts, method=method), None, False, scale)
    best = _lower_of(run, other)
    info = {"method": method, "objective": float(other.fun), "adopted": best is other}
    info["unscaled"] = None
    if scale is not None and HAVE_NLOPT:
        best, info["unscaled"] = _lme4_own_start(objective, best, lower, lme4_start, opts, scale)
        info["adopted"] = info["adopted"] and not info["unscaled"]["adopted"]
    return best, info


def _lme4_own_start(
    objective: Objective,
    run: OptimizerResult,
    lower: np.ndarray,
    lme4_start: np.ndarray,
    opts: FitOptions,
    scale: np.ndarray,
) -> tuple[OptimizerResult, dict[str, Any]]:
    """``run``, or the fit from where lme4's own fit stops when that is lower.

    lme4's fit is BOBYQA in theta from ``lme4_start`` (1 on the diagonals), unverified and
    limited to :data:`UNSCALED_MIN_EVALUATIONS` or as many evaluations as
    ``run`` took; where it ends lower than ``run`` by more than
    ``verify_tol``, the default optimizer in the columns' units continues from
    there and is verified as any fit.
    """
    budget = max(UNSCALED_MIN_EVALUATIONS, run.n_evaluations)
    budget = min(budget, opts.maxiter or budget)
    lme4_fit = replace(opts, method="bobyqa", maxiter=budget, verify=False)
    try:
        own = _run_in_units(objective, lme4_start, lower, lme4_fit, None, False, None)
    except np.linalg.LinAlgError:  # lme4 fails there too (age * 1000 in Oxboys): skip it
        return run, {"objective": float("nan"), "adopted": False}
    info = {"objective": float(own.fun), "adopted": False}
    if not own.fun < run.fun - opts.verify_tol:
        return _charged(run, own), info
    continued = _charged(_run_in_units(objective, own.theta, lower, opts, None, False, scale), own)
    best = _lower_of(run, continued)
    info["adopted"] = best is continued
    return best, info


def _deviance_of(objective: Objective) -> ProfiledDeviance | None:
    """The engine's criterion behind ``objective`` (itself or its gradient's), or None."""
    devfun = objective.devfun if isinstance(objective, ProfiledGradient) else objective
    return devfun if isinstance(devfun, ProfiledDeviance) else None


@contextmanager
def _watched(objective: Objective, enabled: bool | None) -> Iterator[EvaluationProgress]:
    """A fit's progress display, fed by the engine's evaluations while the block runs."""
    devfun = _deviance_of(objective)
    if devfun is None:
        yield EvaluationProgress("fit", False)
        return
    progress = EvaluationProgress(f"fit ({'REML' if devfun.reml else 'ML'})", enabled)
    devfun.monitor = progress
    try:
        yield progress
    finally:
        devfun.monitor = None
        progress.close()


def with_gradient(objective: Objective, close_start: bool = False) -> Objective:
    """The objective with its analytic gradient where the engine provides one and it pays.

    A :class:`ProfiledDeviance` evaluated through the dense Schur complement
    becomes a :class:`ProfiledGradient` (same values, plus
    ``value_and_gradient``) when :func:`gradient_available` says so
    (``close_start``: the fit starts close to the optimum, where BOBYQA needs
    fewer evaluations); anything else is returned as it is.
    """
    if uses_gradient(objective, close_start):
        return ProfiledGradient(objective)
    return objective


def uses_gradient(objective: Objective, close_start: bool = False) -> bool:
    """Whether :func:`with_gradient` gives ``objective`` its analytic gradient."""
    return isinstance(objective, ProfiledDeviance) and gradient_available(objective, close_start)


def convergence_derivatives(
    objective: Objective, theta: np.ndarray, value: float, method: str = "analytic"
) -> dict[str, np.ndarray]:
    """Gradient and Hessian at the estimate for lme4's checks (``optinfo$derivs``).

    ``"analytic"`` (with a :class:`ProfiledGradient`): the analytic
    gradient and central differences of it for the Hessian (``2 k``
    gradients, steps of :meth:`ProfiledGradient.difference_steps`).
    Otherwise lme4's ``deriv12`` (``2 k^2`` evaluations, step 1e-4).
    """
    if not _by_deriv12(objective, method):

        def gradient(point: np.ndarray) -> np.ndarray:
            return objective.value_and_gradient(point)[1]

        steps = objective.difference_steps(theta)
        return {
            "gradient": gradient(theta),
            "Hessian": jacobian_of_gradient(gradient, theta, steps),
        }
    return deriv12(objective, theta, fx=value)


def _by_deriv12(objective: Objective, method: str) -> bool:
    """Whether :func:`convergence_derivatives` takes lme4's ``deriv12`` differences."""
    return not (method == "analytic" and isinstance(objective, ProfiledGradient))


def _unverified(summary: OptSummary) -> str:
    run = summary.run
    return (
        f"after {run.verify_rounds} restarts from the estimate the objective still "
        f"fell by {run.verify_improvement:.3g} (tol = {summary.options.verify_tol:g})"
    )


def _messages(summary: OptSummary) -> list[tuple[str, type[Warning]]]:
    out: list[tuple[str, type[Warning]]] = []
    run = summary.run
    if not run.success and run.verified is not True:
        text = f"optimizer {run.method} did not converge: {run.message}"
        if run.verified is False:
            text += f"; {_unverified(summary)}"
        out.append((text, LmerConvergenceWarning))
    elif run.verified is False:
        text = f"the optimum is not verified: {_unverified(summary)}; compare optimizers with "
        out.append((text + "res.allfit()", LmerConvergenceWarning))
    conv = summary.conv
    if conv is not None:
        if conv.singular:
            out.append((SINGULAR_MESSAGE, SingularFitWarning))
        out.extend((text, LmerConvergenceWarning) for text in conv.warnings)
    return out


def check_reproduced(summary: OptSummary, solution: Solution) -> None:
    """Compare the solution's criterion at the estimate with the optimizer's value there.

    On ordinary models the two agree to 4e-15 (relative; 70 fuzz and medium designs).
    Where the penalized system is numerically singular at the estimate they do not:
    a response within 1e-9 of its group means (theta near 3e6, the optimum near 1e9)
    gave -5172.7 and -5182.9, and a criterion that noisy has no verified optimum.
    Records the gap in ``summary.reproduced_gap`` and, beyond :data:`REPRODUCED_TOL`,
    adds a convergence warning (``summary.converged`` is then False).
    """
    fun = summary.run.fun
    if not (math.isfinite(fun) and math.isfinite(solution.objective_value)):
        return
    summary.reproduced_gap = abs(solution.objective_value - fun)
    if not summary.reproduced:
        summary.messages.append(
            (
                f"the criterion is not reproducible at the estimate ({fun:.10g} from the "
                f"optimizer, {solution.objective_value:.10g} from the solution): the "
                "penalized system is numerically near singular there, so no optimum could "
                "be verified. A variance ratio beyond double precision (a residual variance "
                "near 0 against the random effects) or extreme weights cause this; "
                "simplify the model or rescale the data",
                LmerConvergenceWarning,
            )
        )


def check_estimates(solution: Solution) -> None:
    """Refuse estimates that are not finite numbers: never a NaN presented as a fit.

    The data checks refuse single columns out of double precision's reach;
    this catches combinations (a response around 1e100 with a predictor
    around 1e-100 gives variances around 1e400) and a residual variance of 0.

    Raises
    ------
    DataError
    """
    sigma = float(solution.sigma)
    with np.errstate(over="ignore", invalid="ignore"):
        covariance = solution.vcov_unscaled * sigma * sigma
    if not math.isfinite(solution.objective_value):
        problem = "the objective is not finite at the estimate"
    elif not (math.isfinite(sigma * sigma) and sigma * sigma > 0):
        problem = f"the residual variance ({sigma:.3g} squared) cannot be represented"
    elif not np.all(np.isfinite(solution.beta)):
        problem = "the fixed effects are not finite"
    elif not np.all(np.isfinite(covariance)):
        problem = "the covariance of the fixed effects is not finite"
    else:
        return
    raise DataError(
        f"no trustworthy estimate: {problem}. The response and the predictors are on scales "
        "too far apart for double precision; rescale them to values near 1 (the estimates "
        "scale back by the same factors)"
    )
