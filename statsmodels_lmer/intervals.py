"""Likelihood profiles, parametric bootstrap and confidence intervals (lme4 1.1-31).

* :func:`profile` is lme4's ``profile.merMod``: the signed square root of the
  likelihood-ratio statistic, ``zeta = sign(par - par_hat) sqrt(dev(par) - dev_hat)``,
  on a grid on both sides of each estimate, everything else profiled out.
  REML fits are refitted by ML first, as lme4 does, so the profiles (and the
  profile intervals) of a REML fit and of the ML fit agree.
* :func:`bootstrap` is lme4's ``bootMer(type = "parametric", use.u = FALSE)``.
* :func:`confint` is ``confint.merMod`` with methods ``"profile"``, ``"wald"``
  and ``"boot"``.

Parameters are named as lme4's ``confint`` rows: ``.sig01, .sig02, ...`` for
the random-effects standard deviations and correlations in theta order (per
term, the lower triangle column by column: a diagonal position is a standard
deviation, an off-diagonal one a correlation), ``.sigma`` for the residual
standard deviation, then the fixed effects under their statsmodels names.
With ``signames=False`` the variance parameters get lme4's descriptive names
(``sd_Intercept|Subject``, ``cor_Days.Intercept|Subject``, ``sigma``).
See docs/intervals.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import pickle
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import interpolate, optimize, stats

from .exceptions import SingularFitWarning

__all__ = [
    "bootstrap",
    "confint",
    "confint_bootstrap",
    "confint_profile",
    "parameter_names",
    "profile",
    "variance_parameters",
]

_LOG_2PI = math.log(2.0 * math.pi)
_HAVE_NLOPT = importlib.util.find_spec("nlopt") is not None


# -- parameters on lme4's standard-deviation / correlation scale --------------
def _tril(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a ``p x p`` lower triangle, column by column."""
    rows, cols = np.tril_indices(p)
    order = np.lexsort((rows, cols))
    return rows[order], cols[order]


def parameter_names(res: Any, signames: bool = True) -> list[str]:
    """Names of the variance parameters then the fixed effects, as lme4's ``confint`` rows.

    Parameters
    ----------
    res : LmerResults
    signames : bool
        ``.sig01, ..., .sigma`` (lme4's default) or descriptive names
        ``sd_<column>|<group>``, ``cor_<column>.<column>|<group>``, ``sigma``
        (lme4's ``oldNames = FALSE``).
    """
    return _variance_names(res.model, signames) + list(res.model.exog_names)


def _variance_names(model: Any, signames: bool) -> list[str]:
    if signames:
        n_theta = sum(term.n_theta for term in model.random_terms)
        return [f".sig{k:02d}" for k in range(1, n_theta + 1)] + [".sigma"]
    names = []
    for term in model.random_terms:
        cols = term.column_names
        for r, c in zip(*_tril(term.n_cols)):
            if r == c:
                names.append(f"sd_{cols[r]}|{term.group}")
            else:
                names.append(f"cor_{cols[r]}.{cols[c]}|{term.group}")
    return names + ["sigma"]


def _sdcor(model: Any, theta: np.ndarray, sigma: float) -> np.ndarray:
    """lme4's ``Cv_to_Sv``: theta and sigma -> (sd's and correlations, sigma)."""
    out = []
    for term, sl in zip(model.random_terms, model.theta_slices):
        T = term.factor(np.asarray(theta, dtype=float)[sl])
        cov = sigma**2 * (T @ T.T)
        sd = np.sqrt(np.diag(cov))
        for r, c in zip(*_tril(term.n_cols)):
            if r == c:
                out.append(sd[r])
            else:
                denom = sd[r] * sd[c]
                out.append(cov[r, c] / denom if denom > 0 else np.nan)
    return np.array(out + [sigma])


def _theta(model: Any, sdcor: np.ndarray) -> np.ndarray | None:
    """lme4's ``Sv_to_Cv``: (sd's, correlations, sigma) -> theta; None if not PSD."""
    sigma = sdcor[-1]
    out, start = [], 0
    for term in model.random_terms:
        p, k = term.n_cols, term.n_theta
        values = sdcor[start : start + k]
        start += k
        rows, cols = _tril(p)
        cor = np.eye(p)
        sd = np.empty(p)
        for v, r, c in zip(values, rows, cols):
            if r == c:
                sd[r] = v
            else:
                cor[r, c] = cor[c, r] = v
        L = _safe_cholesky(cor * np.outer(sd, sd) / sigma**2)
        if L is None:
            return None
        out.append(L[rows, cols])
    return np.concatenate(out)


def _safe_cholesky(a: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots allowed)."""
    p = a.shape[0]
    L = np.zeros_like(a)
    scale = max(float(np.max(np.abs(np.diag(a)))), 1e-300)
    for j in range(p):
        d = a[j, j] - L[j, :j] @ L[j, :j]
        rest = a[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]
        if d < -1e-12 * scale:
            return None
        if d <= 1e-12 * scale:  # a zero pivot: the rest of the column must vanish too
            if np.any(np.abs(rest) > 1e-6 * scale):
                return None
            continue
        L[j, j] = math.sqrt(d)
        L[j + 1 :, j] = rest / L[j, j]
    return L


def _variance_bounds(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on the sd/cor scale: sd in [0, inf), cor in [-1, 1], sigma in [0, inf)."""
    diagonal = np.asarray(model.theta_lower) == 0
    lower = np.where(diagonal, 0.0, -1.0)
    upper = np.where(diagonal, np.inf, 1.0)
    return np.append(lower, 0.0), np.append(upper, np.inf)


def variance_parameters(res: Any, signames: bool = True) -> pd.Series:
    """The random-effects sd's and correlations and sigma, named as lme4's ``confint`` rows."""
    values = _sdcor(res.model, np.asarray(res.theta), float(res.sigma))
    return pd.Series(values, index=_variance_names(res.model, signames))


def _default_statistics(fit: Any) -> pd.Series:
    """The default bootstrap statistic: variance parameters then fixed effects."""
    variance = variance_parameters(fit)
    fixed = pd.Series(np.asarray(fit.params, dtype=float), index=list(fit.model.exog_names))
    return pd.concat([variance, fixed])


def _descriptive_statistics(fit: Any) -> pd.Series:
    """:func:`_default_statistics` with descriptive names (``sd_Days|Subject``)."""
    stat = _default_statistics(fit)
    stat.index = parameter_names(fit, False)
    return stat


# -- a bounded minimizer ------------------------------------------------------
def _minimize(
    fun: Callable[[np.ndarray], float],
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    xtol: float = 1e-10,
    ftol: float = 1e-10,
    maxeval: int = 20_000,
) -> tuple[np.ndarray, float]:
    """Minimize ``fun`` within bounds: NLopt's BOBYQA (lme4's optimizer) or L-BFGS-B."""
    start = np.clip(np.nan_to_num(np.asarray(start, dtype=float)), lower, upper)
    best = {"x": start, "f": np.inf}

    def safe(x: np.ndarray, *_: Any) -> float:
        value = fun(np.asarray(x, dtype=float))
        if value < best["f"]:
            best["x"], best["f"] = np.array(x, dtype=float), value
        return value if np.isfinite(value) else 1e300

    if start.size == 0:
        return start, float(fun(start))
    if _HAVE_NLOPT:
        import nlopt

        opt = nlopt.opt(nlopt.LN_BOBYQA, start.size)
        opt.set_min_objective(safe)
        opt.set_lower_bounds(lower)
        opt.set_upper_bounds(upper)
        opt.set_xtol_abs(xtol)
        opt.set_xtol_rel(xtol)
        opt.set_ftol_abs(ftol)
        opt.set_maxeval(maxeval)
        step = np.maximum(0.1 * np.abs(start), 1e-2)
        room = np.maximum(upper - start, start - lower)
        opt.set_initial_step(np.minimum(step, np.where(np.isfinite(room), room, step)))
        # On a roundoff stop the best point so far is as good as it gets.
        with contextlib.suppress(nlopt.RoundoffLimited):
            opt.optimize(start)
        return best["x"], float(best["f"])
    optimize.minimize(
        safe,
        start,
        method="L-BFGS-B",
        bounds=optimize.Bounds(lower, upper),
        options={"maxfun": maxeval, "ftol": 1e-15, "gtol": 1e-9},
    )
    return best["x"], float(best["f"])


# -- profile -------------------------------------------------------------------
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
        theta, base = _minimize(
            objective, np.asarray(ml.theta), theta_lower, np.full(theta_lower.size, np.inf)
        )
        if not base <= ml.deviance:
            theta, base = np.asarray(ml.theta, dtype=float), float(ml.deviance)
        solution = objective.solve(theta)
        n = objective.cross.nobs
        sigma = math.sqrt(solution.pwrss / n)
        var = _sdcor(model, theta, sigma)
        stderr = sigma * np.sqrt(np.diag(solution.vcov_unscaled))
        lower, upper = _variance_bounds(model)
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

    # lme4's devfun2: (sd's, cor's, sigma) -> ML deviance, beta profiled out
    def devfun2(self, pars: np.ndarray) -> float:
        sigma = pars[-1]
        theta = _theta(self.model, pars) if sigma > 0 else None
        if theta is None:
            return np.inf
        try:
            ld_l2, _, pwrss, _ = self.objective.components(theta)
        except np.linalg.LinAlgError:
            return np.inf
        n = self.objective.cross.nobs
        ld_w = self.objective.cross.sum_log_weights
        return ld_l2 - ld_w + pwrss / sigma**2 + n * (_LOG_2PI + 2.0 * math.log(sigma))

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
        theta = _theta(self.model, pars)
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
        n = self.objective.cross.nobs
        ld_w = self.objective.cross.sum_log_weights

        def pieces(theta: np.ndarray) -> tuple[float, Any, float]:
            sol = self.objective.solve(theta)
            v_jj = sol.vcov_unscaled[j, j]
            r2 = sol.pwrss + (value - sol.beta[j]) ** 2 / v_jj
            return sol.log_det_l2 - ld_w + n * (1.0 + _LOG_2PI + math.log(r2 / n)), sol, r2

        def fun(theta: np.ndarray) -> float:
            try:
                return pieces(theta)[0]
            except (np.linalg.LinAlgError, ValueError):
                return np.inf

        lower = np.asarray(self.model.theta_lower, dtype=float)
        theta, dev = _minimize(fun, start, lower, np.full(lower.size, np.inf))
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


def _select(which: Any, names: list[str], n_var: int) -> list[int]:
    """lme4's ``get.which``: None, names, ``"theta_"``, ``"beta_"`` or positions."""
    if which is None:
        return list(range(len(names)))
    items = [which] if isinstance(which, str | int | np.integer) else list(which)
    chosen: set[int] = set()
    for item in items:
        if isinstance(item, str):
            if item == "theta_":
                chosen.update(range(n_var))
            elif item == "beta_":
                chosen.update(range(n_var, len(names)))
            elif item in names:
                chosen.add(names.index(item))
            else:
                raise KeyError(f"unknown parameter {item!r}; parameters are {names}")
        else:
            chosen.add(int(item) % len(names))
    return sorted(chosen)


@dataclass(frozen=True)
class _Grid:
    """lme4's grid controls."""

    cutoff: float
    delta: float
    maxpts: int
    maxmult: float


def _profile_parameter(prof: _Profiler, w: int, grid: _Grid, values: Any = None) -> np.ndarray:
    """Profile rows (zeta, all parameters) for parameter ``w``, sorted by its value."""
    n_var = prof.n_var
    estimate, lower, upper = prof.opt[w], prof.lower[w], prof.upper[w]
    base_row = np.concatenate([[0.0], prof.opt])
    theta = {"last": prof.theta_hat}  # fixed effects: start where the last point ended
    if w < n_var:
        keep = np.arange(n_var) != w

        def point(value: float, last: np.ndarray) -> np.ndarray:
            return prof.variance_point(w, value, last[1 : 1 + n_var][keep])

        shift = 1e-3 if estimate == 0 else estimate * 1.01
    else:
        j = w - n_var

        def point(value: float, last: np.ndarray) -> np.ndarray:
            row, theta["last"] = prof.fixed_point(j, value, theta["last"])
            return row

        shift = estimate + grid.delta * prof.stderr[j]
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
) -> pd.DataFrame:
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

    Returns
    -------
    pandas.DataFrame
        lme4's ``as.data.frame(profile(m))``: columns ``.zeta``, one per parameter
        (the values of all parameters at each profile point) and ``.par`` (the name of
        the profiled parameter), rows sorted by ``.par`` then by its value.
        ``attrs`` holds ``estimates``, ``lower`` and ``upper`` (dicts by parameter),
        ``deviance`` (the ML deviance at the estimates), ``cutoff`` and ``refit_ml``.
    """
    prof = _Profiler.from_results(res)
    names = _variance_names(prof.model, signames) + list(prof.model.exog_names)
    n_var, n_par = prof.n_var, len(names)
    chosen = _select(which, names, n_var)
    cutoff = math.sqrt(stats.chi2.ppf(1.0 - alpha_max, n_par))
    delta = cutoff * delta_cutoff if delta is None else float(delta)
    grid = _Grid(cutoff, delta, maxpts, maxmult)
    frames = []
    for w in chosen:
        if not np.isfinite(prof.opt[w]):
            warnings.warn(
                f"{names[w]} is not identified at the estimates (a correlation of a zero "
                "standard deviation); not profiled",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        values = None if at is None or names[w] not in at else at[names[w]]
        rows = _profile_parameter(prof, w, grid, values)
        frame = pd.DataFrame(rows, columns=[".zeta", *names])
        frame[".par"] = names[w]
        frames.append(frame)
    if prof.lowest < -max(1e-6, 1e-10 * abs(prof.base)):
        warnings.warn(
            f"profiling found a deviance {-prof.lowest:.3g} below the fit's: "
            "the fit is not at the optimum",
            RuntimeWarning,
            stacklevel=2,
        )
    if frames:
        out = pd.concat(frames, ignore_index=True)
    else:
        out = pd.DataFrame(columns=[".zeta", *names, ".par"])
    out.attrs.update(
        {
            "estimates": dict(zip(names, map(float, prof.opt))),
            "lower": dict(zip(names, map(float, prof.lower))),
            "upper": dict(zip(names, map(float, prof.upper))),
            "deviance": float(prof.base),
            "cutoff": float(cutoff),
            "refit_ml": bool(res.reml),
        }
    )
    return out


# -- splines: R's interpSpline and backSpline --------------------------------
def _back_spline(par: np.ndarray, zeta: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """par as a function of zeta, as R's ``backSpline(interpSpline(zeta ~ par))``.

    The forward spline is the natural cubic interpolating spline of zeta on par. The
    backward one interpolates par at the knots' zeta values with slopes 1 / zeta'(par):
    cubic Hermite pieces inside, quadratic end pieces (linear when a quadratic would
    turn back). Outside the range of zeta it is NaN.
    """
    order = np.argsort(par)
    x, y = par[order], zeta[order]
    if x.size < 2 or np.any(np.diff(x) <= 0):
        raise ValueError("knot positions must be strictly increasing")
    if x.size == 2:
        slope = np.full(2, (y[1] - y[0]) / (x[1] - x[0]))
    else:
        slope = interpolate.CubicSpline(x, y, bc_type="natural")(x, 1)
    dy, dx = np.diff(y), np.diff(x)
    if not np.all(dy > 0):
        raise ValueError("spline must be monotone")
    k = x.size - 1
    coef = np.zeros((k, 4))
    coef[:, 0] = x[:-1]
    inv = 1.0 / slope
    coef[:, 1] = inv[:-1]
    for i in range(k):
        a = np.array([[dy[i] ** 2, dy[i] ** 3], [2 * dy[i], 3 * dy[i] ** 2]])
        b = np.array([dx[i] - dy[i] * inv[i], inv[i + 1] - inv[i]])
        coef[i, 2:] = np.linalg.solve(a, b)
    if k > 1:
        coef[0, 3] = coef[-1, 3] = 0.0
        a = np.array([[dy[0], dy[0] ** 2], [1.0, 2 * dy[0]]])
        coef[0, 1:3] = np.linalg.solve(a, np.array([dx[0], inv[1]]))
        coef[-1, 2] = (dx[-1] - dy[-1] * coef[-1, 1]) / dy[-1] ** 2
    if coef[0, 2] > 0:
        coef[0, 2], coef[0, 1] = 0.0, dx[0] / dy[0]
    if coef[-1, 2] < 0:
        coef[-1, 2], coef[-1, 1] = 0.0, dx[-1] / dy[-1]
    knots = y

    def predict(z: np.ndarray) -> np.ndarray:
        z = np.atleast_1d(np.asarray(z, dtype=float))
        i = np.searchsorted(knots, z, side="left") - 1  # knots[i] < z <= knots[i + 1]
        i[z == knots[0]] = 0
        ok = (i >= 0) & (i < k)
        out = np.full(z.shape, np.nan)
        d = z[ok] - knots[i[ok]]
        c = coef[i[ok]]
        out[ok] = c[:, 0] + d * (c[:, 1] + d * (c[:, 2] + d * c[:, 3]))
        return out

    return predict


def _percent_labels(probs: Sequence[float]) -> list[str]:
    """R's ``format.perc(probs, 3)``: ``"2.5 %"``, ``"97.5 %"``."""
    texts = [f"{100 * p:.3g}" for p in probs]
    decimals = max(len(t.split(".")[1]) if "." in t and "e" not in t else 0 for t in texts)
    return [f"{100 * p:.{decimals}f} %" for p in probs]


def confint_profile(prof: pd.DataFrame, parm: Any = None, level: float = 0.95) -> pd.DataFrame:
    """Profile confidence intervals from a :func:`profile` frame (lme4's ``confint.thpr``).

    The limits solve ``zeta = qnorm((1 -+ level) / 2)`` on R's back-spline of the profile.
    Where the profile stops at a bound before reaching the quantile (a standard deviation
    at 0, a correlation at -1 or 1), the limit is that bound; a fixed effect gets NaN.
    A non-monotone profile falls back to linear interpolation, or NaN (with a warning)
    when zeta decreases by more than 0.01.
    """
    names = list(dict.fromkeys(prof[".par"]))
    if parm is not None:
        wanted = [parm] if isinstance(parm, str) else list(parm)
        names = [name for name in names if name in wanted]
    alpha = (1.0 - level) / 2.0
    probs = [alpha, 1.0 - alpha]
    zeta = stats.norm.ppf(probs)
    lower = prof.attrs.get("lower", {})
    upper = prof.attrs.get("upper", {})
    out = np.full((len(names), 2), np.nan)
    for row, name in enumerate(names):
        part = prof.loc[prof[".par"] == name, [name, ".zeta"]].dropna()
        part = part.sort_values(name)
        x, z = part[name].to_numpy(float), part[".zeta"].to_numpy(float)
        try:
            limits = _back_spline(x, z)(zeta)
        except (ValueError, np.linalg.LinAlgError):
            if np.any(np.diff(z) < -1e-2) or z.size < 2:
                warnings.warn(f"non-monotonic profile for {name}", RuntimeWarning, stacklevel=2)
                continue
            warnings.warn(
                f"bad spline fit for {name}: falling back to linear interpolation",
                RuntimeWarning,
                stacklevel=2,
            )
            limits = np.interp(zeta, z, x, left=np.nan, right=np.nan)
        if np.isnan(limits[0]):
            limits[0] = _bound(lower.get(name, np.nan))
        if np.isnan(limits[1]):
            limits[1] = _bound(upper.get(name, np.nan))
        out[row] = limits
    return pd.DataFrame(out, index=names, columns=_percent_labels(probs))


def _bound(value: float) -> float:
    return value if np.isfinite(value) else np.nan


# -- parametric bootstrap ------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _worker_init(payload: bytes) -> None:
    _WORKER["res"], _WORKER["func"], _WORKER["fit_kwargs"] = pickle.loads(payload)


def _worker_run(ys: np.ndarray) -> list[tuple[Any, str | None, list[str]]]:
    return _refit_many(_WORKER["res"], _WORKER["func"], _WORKER["fit_kwargs"], ys)


def _refit_many(
    res: Any, func: Callable[[Any], Any], fit_kwargs: dict[str, Any], ys: np.ndarray
) -> list[tuple[Any, str | None, list[str]]]:
    """Refit each column of ``ys``: (statistic or None, error, warning texts)."""
    out = []
    for k in range(ys.shape[1]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value = func(res.refit(ys[:, k], **fit_kwargs))
                error = None
            except Exception as exc:  # a failed refit is recorded, not raised
                value, error = None, f"{type(exc).__name__}: {exc}"
        out.append((value, error, [str(w.message) for w in caught]))
    return out


def _wrapped(res: Any) -> Any:
    from .results import LmerResults, LmerResultsWrapper

    return LmerResultsWrapper(res) if isinstance(res, LmerResults) else res


def _as_series(value: Any) -> pd.Series:
    if isinstance(value, pd.Series):
        return value
    if isinstance(value, dict):
        return pd.Series(value, dtype=float)
    return pd.Series(np.atleast_1d(np.asarray(value, dtype=float)))


def _progress_bar(total: int, enabled: bool) -> Any:
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc="bootstrap", unit="refit")
        except ImportError:
            pass
    return None


def bootstrap(
    res: Any,
    nsim: int,
    seed: Any = None,
    func: Callable[[Any], Any] | None = None,
    progress: bool = True,
    n_jobs: int = 1,
    use_u: bool = False,
    fit_kwargs: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Parametric bootstrap, as lme4's ``bootMer(m, FUN, nsim, type = "parametric")``.

    ``nsim`` responses are simulated from the fitted model with new random effects
    (:meth:`LmerResults.simulate`), each is refitted with :meth:`LmerResults.refit`
    (same REML/ML setting, starting at the fitted theta) and ``func`` is applied to
    each refit.

    Parameters
    ----------
    res : LmerResults
    nsim : int
        Number of bootstrap replicates.
    seed : int or numpy.random.Generator, optional
        The same seed gives the same frame, whatever ``n_jobs``: all responses are drawn
        in this process, in order.
    func : callable, optional
        ``func(fitted_results) -> pandas.Series`` (or dict / array). Default: the
        variance parameters on lme4's scale named as ``confint``'s rows (``.sig01, ...,
        .sigma``), then the fixed effects.
    progress : bool
        Show a tqdm progress bar when tqdm is installed.
    n_jobs : int
        Worker processes (``concurrent.futures.ProcessPoolExecutor``); ``func`` must then
        pickle (a module-level function). ``-1`` uses every CPU.
    use_u : bool
        Condition on the estimated random effects (lme4's ``use.u = TRUE``).
    fit_kwargs : dict, optional
        Extra keywords for the refits (:meth:`Lmer.fit`).

    Returns
    -------
    pandas.DataFrame
        One row per replicate (index 0..nsim-1), one column per statistic. A refit
        that raised gives a NaN row. ``attrs``: ``t0`` (``func`` at the fit, a dict),
        ``nsim``, ``failures`` (number of failed refits), ``errors`` and ``warnings``
        (dicts of message -> count of replicates) and ``seed``.
    """
    nsim = int(nsim)
    if nsim < 1:
        raise ValueError("nsim must be at least 1")
    res = _wrapped(res)  # func sees what fit() returns: pandas-aware results
    func = _default_statistics if func is None else func
    t0 = _as_series(func(res))  # fails early when func does not work on the fit itself
    fit_kwargs = dict(fit_kwargs or {})
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if n_jobs is None or n_jobs == 0:
        n_jobs = 1
    if n_jobs < 0:
        import os

        n_jobs = max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    n_jobs = min(int(n_jobs), nsim)
    chunk = max(1, min(50, math.ceil(nsim / (4 * n_jobs))))
    sizes = [min(chunk, nsim - start) for start in range(0, nsim, chunk)]

    def draw(size: int) -> np.ndarray:
        return res.simulate(size, seed=rng, use_u=use_u).to_numpy(dtype=float)

    bar = _progress_bar(nsim, progress)
    results: list[tuple[Any, str | None, list[str]]] = []
    try:
        if n_jobs == 1:
            for size in sizes:
                results.extend(_refit_many(res, func, fit_kwargs, draw(size)))
                if bar is not None:
                    bar.update(size)
        else:
            results = _bootstrap_parallel(res, func, fit_kwargs, sizes, draw, n_jobs, bar)
    finally:
        if bar is not None:
            bar.close()
    return _bootstrap_frame(t0, results, nsim, seed)


def _bootstrap_parallel(
    res: Any,
    func: Callable[[Any], Any],
    fit_kwargs: dict[str, Any],
    sizes: list[int],
    draw: Callable[[int], np.ndarray],
    n_jobs: int,
    bar: Any,
) -> list[tuple[Any, str | None, list[str]]]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    try:
        payload = pickle.dumps((res, func, fit_kwargs))
    except Exception as exc:
        raise ValueError(
            "n_jobs > 1 needs picklable results and func (a module-level function, "
            f"not a lambda): {exc}"
        ) from exc
    done: dict[int, list[tuple[Any, str | None, list[str]]]] = {}
    with ProcessPoolExecutor(n_jobs, initializer=_worker_init, initargs=(payload,)) as pool:
        pending: dict[Any, tuple[int, int]] = {}
        queue = list(enumerate(sizes))
        while queue or pending:
            # Draw (in order, in this process) only a few chunks ahead of the workers.
            while queue and len(pending) < 2 * n_jobs:
                index, size = queue.pop(0)
                pending[pool.submit(_worker_run, draw(size))] = (index, size)
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                index, size = pending.pop(future)
                done[index] = future.result()
                if bar is not None:
                    bar.update(size)
    return [item for index in sorted(done) for item in done[index]]


def _bootstrap_frame(
    t0: pd.Series,
    results: list[tuple[Any, str | None, list[str]]],
    nsim: int,
    seed: Any,
) -> pd.DataFrame:
    rows = [None if value is None else _as_series(value) for value, _, _ in results]
    columns = list(t0.index)
    for row in rows:
        if row is not None:
            columns.extend(c for c in row.index if c not in columns)
    values = np.full((nsim, len(columns)), np.nan)
    for k, row in enumerate(rows):
        if row is not None:
            values[k] = row.reindex(columns).to_numpy(dtype=float)
    frame = pd.DataFrame(values, columns=columns)
    errors = Counter(error for _, error, _ in results if error is not None)
    warned = Counter(text for _, _, texts in results for text in dict.fromkeys(texts))
    frame.attrs.update(
        {
            "t0": {str(k): float(v) for k, v in t0.items()},
            "nsim": nsim,
            "failures": int(sum(errors.values())),
            "errors": dict(errors),
            "warnings": dict(warned),
            "seed": seed if isinstance(seed, int | type(None)) else repr(seed),
        }
    )
    if frame.attrs["failures"]:
        warnings.warn(
            f"{frame.attrs['failures']} of {nsim} bootstrap refits failed (NaN rows)",
            RuntimeWarning,
            stacklevel=3,
        )
    return frame


def _norm_inter(t: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Percentile end points as R's ``boot:::norm.inter`` (normal-scale interpolation)."""
    t = np.sort(t[np.isfinite(t)])
    r = t.size
    out = np.full(alpha.shape, np.nan)
    if r == 0:
        return out
    rk = (r + 1) * alpha
    for i, (a, pos) in enumerate(zip(alpha, rk)):
        k = math.trunc(pos)
        if k == pos:
            out[i] = t[min(max(k, 1), r) - 1]
        elif k <= 0:
            out[i] = t[0]
        elif k >= r:
            out[i] = t[-1]
        else:
            lo, hi = stats.norm.ppf(k / (r + 1)), stats.norm.ppf((k + 1) / (r + 1))
            out[i] = t[k - 1] + (stats.norm.ppf(a) - lo) / (hi - lo) * (t[k] - t[k - 1])
    return out


def confint_bootstrap(
    boot: pd.DataFrame,
    level: float = 0.95,
    boot_type: str = "perc",
    t0: Any = None,
) -> pd.DataFrame:
    """Bootstrap confidence intervals from a :func:`bootstrap` frame (lme4's ``confint.bootMer``).

    Parameters
    ----------
    boot : pandas.DataFrame
        Replicates, one column per statistic.
    level : float
    boot_type : {"perc", "basic", "norm"}
        Percentile (R's ``boot.ci`` interpolation), basic (``2 t0 - percentiles``) or
        normal with bootstrap bias correction.
    t0 : Series or dict, optional
        Estimates at the fit (default ``boot.attrs["t0"]``); needed for basic and norm.
    """
    alpha = (1.0 - level) / 2.0
    probs = np.array([alpha, 1.0 - alpha])
    t0 = pd.Series(boot.attrs.get("t0", {}) if t0 is None else t0, dtype=float)
    out = np.full((boot.shape[1], 2), np.nan)
    for i, name in enumerate(boot.columns):
        t = boot[name].to_numpy(dtype=float)
        t = t[np.isfinite(t)]
        if t.size == 0:
            continue
        if boot_type == "perc":
            out[i] = _norm_inter(t, probs)
        elif boot_type == "basic":
            out[i] = 2 * t0.get(name, np.nan) - _norm_inter(t, probs[::-1])
        elif boot_type == "norm":
            est = t0.get(name, np.nan)
            bias = t.mean() - est
            half = t.std(ddof=1) * stats.norm.ppf(1.0 - alpha)
            out[i] = [est - bias - half, est - bias + half]
        else:
            raise ValueError(f"boot_type must be 'perc', 'basic' or 'norm', got {boot_type!r}")
    return pd.DataFrame(out, index=list(boot.columns), columns=_percent_labels(probs))


# -- confint -------------------------------------------------------------------
def confint(
    res: Any,
    method: str = "profile",
    level: float = 0.95,
    parm: Any = None,
    nsim: int = 500,
    seed: Any = None,
    boot_type: str = "perc",
    signames: bool = True,
    **kwargs: Any,
) -> pd.DataFrame:
    """Confidence intervals for the variance parameters and fixed effects (``confint.merMod``).

    Parameters
    ----------
    res : LmerResults
    method : {"profile", "wald", "boot"}
        ``"profile"``: likelihood-profile intervals (:func:`profile`, ML deviance, also
        for REML fits, as lme4). ``"wald"``: ``fixef -+ qnorm((1 + level) / 2) * SE`` with
        the fit's own standard errors; NaN for the variance parameters, as lme4.
        ``"boot"``: parametric-bootstrap intervals (:func:`bootstrap`, ``nsim``
        replicates, ``seed``) of type ``boot_type``.
    level : float
        Confidence level.
    parm : None, str, int or sequence
        Parameters (as :func:`profile`'s ``which``); default all.
    nsim, seed, boot_type
        For ``method="boot"``.
    signames : bool
        ``.sig01``-style row names (default) or descriptive ones.
    **kwargs
        Passed to :func:`profile` or :func:`bootstrap` (e.g. ``n_jobs``, ``progress``).

    Returns
    -------
    pandas.DataFrame
        One row per parameter (``.sig01, ..., .sigma``, then the fixed effects), columns
        labelled as R's: ``"2.5 %"`` and ``"97.5 %"`` for ``level=0.95`` (lower, upper).
    """
    names = parameter_names(res, signames)
    n_var = len(names) - len(res.model.exog_names)
    chosen = [names[i] for i in _select(parm, names, n_var)]
    kind = method.lower()
    alpha = (1.0 - level) / 2.0
    labels = _percent_labels([alpha, 1.0 - alpha])
    if kind == "wald":
        out = pd.DataFrame(np.nan, index=names, columns=labels)
        params = np.asarray(res.params, dtype=float)
        bse = np.asarray(res.bse, dtype=float)
        q = stats.norm.ppf(1.0 - alpha)
        out.iloc[n_var:, 0] = params - q * bse
        out.iloc[n_var:, 1] = params + q * bse
        return out.loc[chosen]
    if kind == "profile":
        prof = profile(res, which=chosen, signames=signames, **kwargs)
        return confint_profile(prof, level=level).reindex(chosen)
    if kind == "boot":
        kwargs.setdefault("progress", False)
        func = _default_statistics if signames else _descriptive_statistics
        boot = bootstrap(res, nsim, seed=seed, func=func, **kwargs)
        return confint_bootstrap(boot, level, boot_type).reindex(chosen)
    raise ValueError(f"method must be 'profile', 'wald' or 'boot', got {method!r}")
