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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .._parallel import Progress
from ..exceptions import SingularFitWarning, warn
from ..fitting.optimizers import HAVE_NLOPT, minimize_theta
from ..graphics.profile import plot_profile
from ..parametrization import sdcor_to_theta, theta_to_sdcor
from ..splines import back_spline
from .parameters import percent_labels, select_parameters, variance_bounds, variance_names

__all__ = ["ProfileResult", "confint_profile", "profile"]


def _sdcor(model: Any, theta: np.ndarray, sigma: float) -> np.ndarray:
    return theta_to_sdcor(model.random_terms, model.theta_slices, theta, sigma)


def _minimize(
    fun: Callable[[np.ndarray], float],
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Minimize within bounds with tight tolerances: BOBYQA (lme4's) or L-BFGS-B."""
    start = np.nan_to_num(np.asarray(start, dtype=float))
    if start.size == 0:
        return start, float(fun(start))
    upper = np.full(start.size, np.inf) if upper is None else upper
    start = np.clip(start, lower, upper)
    step = np.maximum(0.1 * np.abs(start), 1e-2)
    room = np.maximum(upper - start, start - lower)
    step = np.minimum(step, np.where(np.isfinite(room), room, step))
    result = minimize_theta(
        fun,
        start,
        lower,
        method="bobyqa" if HAVE_NLOPT else "lbfgsb",
        maxiter=20_000,
        xtol=1e-10,
        ftol=1e-10,
        initial_step=step,
        upper=upper,
        xtol_rel=1e-10,
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

    @classmethod
    def from_results(cls, res: Any) -> _Profiler:
        with warnings.catch_warnings():  # the fit itself has warned already
            warnings.simplefilter("ignore", SingularFitWarning)
            ml = res.refit_ml() if res.reml else res
        model = ml.model
        objective = model.devfun(reml=False)
        theta_lower = np.asarray(model.theta_lower, dtype=float)
        # Polish the ML optimum so that zeta is exactly 0 at the estimates.
        theta, base = _minimize(objective, np.asarray(ml.theta), theta_lower)
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

    def variance_point(self, w: int, value: float, start: np.ndarray) -> np.ndarray:
        """A profile row with variance parameter ``w`` held at ``value``."""
        keep = np.arange(self.n_var) != w

        def fun(others: np.ndarray) -> float:
            pars = np.empty(self.n_var)
            pars[w], pars[keep] = value, others
            return self.devfun2(pars)

        lower, upper = self.lower[: self.n_var][keep], self.upper[: self.n_var][keep]
        others, dev = _minimize(fun, start, lower, upper)
        if not np.isfinite(dev):
            return self._failed(w, value)
        pars = np.empty(self.n_var)
        pars[w], pars[keep] = value, others
        theta = sdcor_to_theta(self.model.random_terms, pars)
        beta = self.objective.solve(theta).beta
        var = _sdcor(self.model, theta, pars[-1])
        var[w] = value  # keep the profiled value exactly (and a cor of a zero sd)
        return np.concatenate([[self._zeta(value, self.opt[w], dev)], var, beta])

    def _failed(self, w: int, value: float) -> np.ndarray:
        """The row of a point where no finite deviance was found: NaN but the value."""
        row = np.full(1 + self.opt.size, np.nan)
        row[1 + w] = value
        return row

    def fixed_point(self, j: int, value: float, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        theta, dev = _minimize(fun, start, lower)
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
    """lme4's ``fillmat``: step away from the estimate until |zeta| exceeds the cutoff.

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
    n_var = prof.n_var
    estimate, lower, upper = prof.opt[w], prof.lower[w], prof.upper[w]
    base_row = np.concatenate([[0.0], prof.opt])
    theta = {"last": prof.theta_hat}  # fixed effects: start where the last point ended
    if w < n_var:
        keep = np.arange(n_var) != w

        def compute(value: float, last: np.ndarray) -> np.ndarray:
            return prof.variance_point(w, value, last[1 : 1 + n_var][keep])

        shift = 1e-3 if estimate == 0 else estimate * 1.01
    else:
        j = w - n_var

        def compute(value: float, last: np.ndarray) -> np.ndarray:
            row, theta["last"] = prof.fixed_point(j, value, theta["last"])
            return row

        shift = estimate + grid.delta * prof.stderr[j]

    def point(value: float, last: np.ndarray) -> np.ndarray:
        row = compute(value, last)
        if report is not None:
            report(row)
        return row

    if values is not None:
        rows = [base_row]
        for value in np.unique(np.asarray(values, dtype=float)):
            if lower <= value <= upper and value != estimate:
                theta["last"] = prof.theta_hat
                rows.append(point(float(value), base_row))
    else:
        shifted = point(min(upper, max(lower, shift)), base_row)
        rows = _fill([base_row, shifted], 1 + w, lower, upper, point, grid)
        if estimate > lower:
            theta["last"] = prof.theta_hat
            rows += _fill([shifted, base_row], 1 + w, lower, upper, point, grid)
    table = np.array(rows)
    _, first = np.unique(table[:, 1 + w], return_index=True)
    table = table[np.sort(first)]
    return table[np.argsort(table[:, 1 + w], kind="stable")]


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
    |zeta| exceeds ``sqrt(qchisq(1 - alpha_max, npar))`` with ``npar`` the total number
    of parameters, a bound is reached, or ``maxpts`` points were used on one side.

    Parameters
    ----------
    res : LmerResults
    which : None, str, int or sequence
        Parameters to profile: names (see :func:`parameter_names`), positions,
        ``"theta_"`` (all variance parameters) or ``"beta_"`` (all fixed effects);
        default all.
    alpha_max : float
        Sets the largest |zeta| profiled (lme4's ``alphamax``).
    maxpts, delta, delta_cutoff, maxmult
        lme4's grid controls; ``delta`` defaults to ``delta_cutoff`` times the cutoff.
    signames : bool
        ``.sig01``-style names (default) or descriptive ones (``sd_Days|Subject``).
    at : dict, optional
        ``{name: values}``: profile these parameters at exactly these values instead of
        on lme4's adaptive grid (the estimate is added; values outside the parameter's
        bounds are dropped).

    progress : bool or None
        Progress bar, one step per profiled parameter, naming the parameter
        and the current zeta. None (default): the package setting
        (:func:`statsmodels_lmer.set_progress`), shown once profiling has run
        for a couple of seconds.

    Returns
    -------
    ProfileResult
        ``.frame`` is lme4's ``as.data.frame(profile(m))``; ``.confint()`` and
        ``.plot()`` give the intervals and the zeta plots.
    """
    prof = _Profiler.from_results(res)
    names = variance_names(prof.model, signames) + list(prof.model.exog_names)
    n_var, n_par = prof.n_var, len(names)
    chosen = select_parameters(which, names, n_var)
    cutoff = math.sqrt(stats.chi2.ppf(1.0 - alpha_max, n_par))
    delta = cutoff * delta_cutoff if delta is None else float(delta)
    grid = _Grid(cutoff, delta, maxpts, maxmult)
    frames = []
    bar = Progress(len(chosen), "profile", "parameter", enabled=progress)
    for w in chosen:

        def report(row: np.ndarray, name: str = names[w]) -> None:
            bar.note(f"{name}: zeta {row[0]:+.2f}")

        if not np.isfinite(prof.opt[w]):
            warn(
                f"{names[w]} is not identified at the estimates (a correlation of a zero "
                "standard deviation); not profiled",
                RuntimeWarning,
            )
            bar.update(note=names[w])
            continue
        values = None if at is None or names[w] not in at else at[names[w]]
        rows = _profile_parameter(prof, w, grid, values, report)
        bar.update(note=names[w])
        frame = pd.DataFrame(rows, columns=[".zeta", *names])
        frame[".par"] = names[w]
        frames.append(frame)
    if prof.lowest < -max(1e-6, 1e-10 * abs(prof.base)):
        warn(
            f"profiling found a deviance {-prof.lowest:.3g} below the fit's: "
            "the fit is not at the optimum",
            RuntimeWarning,
        )
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
        cutoff=float(cutoff),
        refit_ml=bool(res.reml),
        labels=dict(zip(names, variance_names(prof.model, False) + list(prof.model.exog_names))),
    )


def confint_profile(prof: ProfileResult, parm: Any = None, level: float = 0.95) -> pd.DataFrame:
    """Profile confidence intervals from a :func:`profile` (lme4's ``confint.thpr``).

    The limits solve ``zeta = qnorm((1 -+ level) / 2)`` on R's back-spline of the profile.
    Where the profile stops at a bound before reaching the quantile (a standard deviation
    at 0, a correlation at -1 or 1), the limit is that bound; a fixed effect gets NaN.
    A non-monotone profile falls back to linear interpolation, or NaN (with a warning)
    when zeta decreases by more than 0.01.
    """
    frame = prof.frame
    names = list(dict.fromkeys(frame[".par"]))
    if parm is not None:
        wanted = [parm] if isinstance(parm, str) else list(parm)
        names = [name for name in names if name in wanted]
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
            if np.any(np.diff(z) < -1e-2) or z.size < 2:
                warn(f"non-monotonic profile for {name}", RuntimeWarning)
                continue
            warn(
                f"bad spline fit for {name}: falling back to linear interpolation",
                RuntimeWarning,
            )
            limits = np.interp(zeta, z, x, left=np.nan, right=np.nan)
        if np.isnan(limits[0]):
            limits[0] = _bound(lower.get(name, np.nan))
        if np.isnan(limits[1]):
            limits[1] = _bound(upper.get(name, np.nan))
        out[row] = limits
    return pd.DataFrame(out, index=names, columns=percent_labels(probs))


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
        The largest |zeta| profiled.
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
