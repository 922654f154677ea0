"""Refit a model with every optimizer and compare, as lme4's ``allFit``.

A fit that warns about convergence is often fine: the optimum is just hard to
certify. Refitting from the same start with several optimizers tells the two
cases apart. When optimizers built on different methods (model-based trust
region, simplex, quasi-Newton, conjugate directions) reach the same
log-likelihood and the same fixed effects, the warning was a false alarm;
when they disagree, the model needs attention (rescale predictors, simplify
the random effects).

>>> from statsmodels_lmer.allfit import allfit
>>> af = allfit(res, progress=False)
>>> af.table          # one row per optimizer
>>> print(af.summary())  # which optimizers agree with the best fit
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .._parallel import Progress, effective_jobs, map_in_workers
from ..arguments import check_names, check_nonnegative
from ..exceptions import recorded_warnings
from ..fitting.optimizers import available_optimizers
from ..fitting.options import FitOptions
from ..graphics.allfit import plot_allfit
from ..random_effects import varcorr_labels

__all__ = ["AllFitResult", "AllFitSummary", "allfit"]

LLF_TOL = 1e-6
"""Log-likelihoods within this (absolute) of the best agree."""

FIXEF_RTOL = 1e-4
"""Fixed effects within this (relative) of the best fit's agree."""


@dataclass
class _Outcome:
    name: str
    fit: Any
    warnings: list[str]
    seconds: float
    error: BaseException | None


def _fit_one(task: tuple[Any, bool, np.ndarray, FitOptions]) -> _Outcome:
    """One refit, with its warnings recorded rather than raised."""
    model, reml, start, options = task
    began = time.perf_counter()
    with recorded_warnings() as texts:
        try:
            fit = model.fit(reml=reml, start_theta=start, **options.as_dict())
            error = None
        except Exception as err:  # lme4's catch.errs: a failing optimizer is a row
            fit, error = None, err
    seconds = time.perf_counter() - began
    return _Outcome(options.method or "", fit, texts, seconds, error)


def allfit(
    res: Any,
    optimizers: list[str] | None = None,
    progress: bool | None = None,
    n_jobs: int | None = 1,
) -> AllFitResult:
    """Refit ``res``'s model with every available optimizer, as lme4's ``allFit``.

    Each refit uses the same criterion (REML or ML), the same starting theta
    and the same fit options as the original fit; only the optimizer
    changes. Warnings are recorded per optimizer, not raised; an optimizer
    that raises an error gives a row with ``ok = False``.

    Parameters
    ----------
    res : LmerResults
        A fitted model.
    optimizers : str or list of str, optional
        A name or names from :func:`statsmodels_lmer.available_optimizers`
        (each tried once); default all of them.
    progress : bool or None
        Progress bar naming each optimizer as it finishes (tqdm; without it,
        one line per optimizer on stderr). None (default): the package
        setting (:func:`statsmodels_lmer.set_progress`), shown once the refits
        have run for a couple of seconds.
    n_jobs : int or None
        Worker processes, as joblib's ``n_jobs`` (``-1``: every CPU). Fit
        times are then measured inside the workers.

    Returns
    -------
    AllFitResult
        ``table`` (one row per optimizer) and ``summary()``.
    """
    names = _checked_optimizers(optimizers)
    known = available_optimizers()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"unknown or unavailable optimizers {unknown}; available: {', '.join(known)}"
        )
    if not names:
        raise ValueError("no optimizers to try")
    model = res.model
    summary = res.opt_summary
    start = np.asarray(summary.start, dtype=float)
    tasks = [(model, bool(res.reml), start, replace(summary.options, method=n)) for n in names]
    n_jobs = effective_jobs(n_jobs, len(names))
    outcomes: dict[str, _Outcome] = {}
    with Progress(len(names), "allfit", "optimizer", enabled=progress) as bar:
        if n_jobs > 1:
            done = map_in_workers(_fit_one, tasks, n_jobs)
        else:
            done = ((index, _fit_one(task)) for index, task in enumerate(tasks))
        for _, outcome in done:
            outcomes[outcome.name] = outcome
            status = "failed" if outcome.error is not None else "OK"
            bar.update(note=f"{outcome.name} : [{status}]")
    return AllFitResult(res, [outcomes[name] for name in names])


def _checked_optimizers(optimizers: Any) -> list[str]:
    """``optimizers`` as a list of names without repeats (a single name allowed)."""
    if optimizers is None:
        return list(available_optimizers())
    names = check_names("optimizers", optimizers, "optimizer names")
    wrong = [name for name in names if not isinstance(name, str)]
    if wrong:
        raise TypeError(f"optimizers must be names (strings), got {wrong[0]!r}")
    return names


class AllFitResult:
    """Refits of one model with several optimizers (lme4's ``allFit`` object).

    Attributes
    ----------
    original : LmerResults
        The fit that was refitted.
    fits : dict
        Optimizer name -> results (None when the optimizer raised).
    errors : dict
        Optimizer name -> the exception it raised (only failed ones).
    warnings : dict
        Optimizer name -> list of warning texts from its fit.
    table : pandas.DataFrame
        One row per optimizer (index ``optimizer``): ``ok`` (no error),
        ``converged``, ``warnings`` (texts joined by ``" | "``), ``llf``,
        ``seconds``, ``feval``, ``sigma``, ``theta.0 ... theta.k`` (in the
        order of ``model.theta_names``), then one column per fixed-effect
        coefficient (prefixed ``fixef.`` only if a name would clash with the
        columns before).
    """

    def __init__(self, original: Any, outcomes: list[_Outcome]) -> None:
        self.original = original
        self.fits = {o.name: o.fit for o in outcomes}
        self.errors = {o.name: o.error for o in outcomes if o.error is not None}
        self.warnings = {o.name: list(o.warnings) for o in outcomes}
        self.seconds = {o.name: o.seconds for o in outcomes}
        self.theta_names = list(original.model.theta_names)
        self.fixef_names = [str(name) for name in original.model.exog_names]
        self.table = self._make_table(outcomes)

    @property
    def optimizers(self) -> list[str]:
        """The optimizers tried, in order."""
        return list(self.fits)

    plot = plot_allfit
    """Estimates per optimizer (:func:`statsmodels_lmer.graphics.plot_allfit`)."""

    def _fixef_columns(self, fixed: list[str]) -> dict[str, str]:
        return {name: (f"fixef.{name}" if name in fixed else name) for name in self.fixef_names}

    def _make_table(self, outcomes: list[_Outcome]) -> pd.DataFrame:
        theta_cols = [f"theta.{i}" for i in range(len(self.theta_names))]
        fixed = ["ok", "converged", "warnings", "llf", "seconds", "feval", "sigma", *theta_cols]
        fixef_cols = self._fixef_columns(fixed)
        rows = []
        for outcome in outcomes:
            fit = outcome.fit
            row: dict[str, Any] = {
                "ok": fit is not None,
                "converged": bool(fit.converged) if fit is not None else False,
                "warnings": " | ".join(outcome.warnings + _error_text(outcome)),
                "llf": float(fit.llf) if fit is not None else np.nan,
                "seconds": outcome.seconds,
                "feval": int(fit.optinfo["feval"]) if fit is not None else -1,
                "sigma": float(fit.sigma) if fit is not None else np.nan,
            }
            theta = np.asarray(fit.theta) if fit is not None else np.full(len(theta_cols), np.nan)
            row.update(dict(zip(theta_cols, theta)))
            params = (
                np.asarray(fit.params, dtype=float)
                if fit is not None
                else np.full(len(self.fixef_names), np.nan)
            )
            row.update({fixef_cols[n]: v for n, v in zip(self.fixef_names, params)})
            rows.append(row)
        table = pd.DataFrame(rows, index=pd.Index([o.name for o in outcomes], name="optimizer"))
        return table[fixed + list(fixef_cols.values())]

    def summary(self, llf_tol: float = LLF_TOL, fixef_rtol: float = FIXEF_RTOL) -> AllFitSummary:
        """Which optimizers agree with the best fit, as lme4's ``summary(allFit(m))``.

        Parameters
        ----------
        llf_tol : float
            Absolute tolerance on the log-likelihood (default 1e-6).
        fixef_rtol : float
            Relative tolerance on each fixed effect (default 1e-4), relative
            to ``max(|beta_best|, se_best)`` so that a coefficient near zero
            is judged on the scale of its standard error.

        Returns
        -------
        AllFitSummary

        Raises
        ------
        TypeError, ValueError
            When a tolerance is not a finite number at least 0.
        """
        llf_tol = check_nonnegative("llf_tol", llf_tol)
        fixef_rtol = check_nonnegative("fixef_rtol", fixef_rtol)
        return AllFitSummary(self, llf_tol, fixef_rtol)

    def __repr__(self) -> str:
        ok = self.table[self.table["ok"]]
        lines = [
            f"allfit of {_describe(self.original)}",
            f"optimizers ({len(self.table)}): {', '.join(self.table.index)}",
        ]
        if len(self.errors):
            lines.append(f"{len(self.errors)} optimizer(s) failed: {', '.join(self.errors)}")
        if len(ok):
            nll = -ok["llf"].to_numpy()
            spread = nll - nll.min()
            sd = float(np.std(nll, ddof=1)) if len(nll) > 1 else 0.0
            lines.append(
                f"differences in negative log-likelihoods: max={spread.max():.3g}; std dev={sd:.3g}"
            )
        return "\n".join(lines)


def _error_text(outcome: _Outcome) -> list[str]:
    if outcome.error is None:
        return []
    return [f"{type(outcome.error).__name__}: {outcome.error}"]


def _describe(res: Any) -> str:
    formula = getattr(res.model, "formula", None) or "model"
    criterion = "REML" if getattr(res, "reml", True) else "ML"
    return f"{formula} ({criterion})"


def _sdcor_names(varcorr: pd.DataFrame) -> list[str]:
    names = []
    for grp, var1, var2 in zip(varcorr["grp"], varcorr["var1"], varcorr["var2"]):
        if grp == "Residual":
            names.append("sigma")
        elif var2 is None or (isinstance(var2, float) and np.isnan(var2)):
            names.append(f"{grp}.{var1}")
        else:
            names.append(f"{grp}.{var1}.{var2}")
    return names


@dataclass(eq=False, repr=False)
class AllFitSummary:
    """Agreement of the optimizers (lme4's ``summary.allFit``).

    Attributes mirror lme4's: ``which_ok``, ``msgs``, ``fixef``, ``llik``,
    ``sdcor``, ``theta``, ``times``, ``feval``; plus ``sdcor_labels`` (each
    ``sdcor`` column's descriptive name, ``sd_Intercept|Subject``), ``best`` (the optimizer
    with the highest log-likelihood), ``agree`` (per optimizer: log-likelihood
    within ``llf_tol`` of the best and every fixed effect within
    ``fixef_rtol``), ``agreeing`` and ``disagreeing`` (names) and
    :meth:`to_frame`. ``str()`` gives the report.
    """

    result: AllFitResult
    llf_tol: float = LLF_TOL
    fixef_rtol: float = FIXEF_RTOL
    which_ok: pd.Series = field(init=False)
    msgs: dict[str, list[str]] = field(init=False)
    fixef: pd.DataFrame = field(init=False)
    llik: pd.Series = field(init=False)
    sdcor: pd.DataFrame = field(init=False)
    theta: pd.DataFrame = field(init=False)
    times: pd.Series = field(init=False)
    feval: pd.Series = field(init=False)
    best: str | None = field(init=False)
    llf_diff: pd.Series = field(init=False)
    fixef_rel_diff: pd.Series = field(init=False)
    agree: pd.Series = field(init=False)
    sdcor_labels: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        result = self.result
        table = result.table
        self.which_ok = table["ok"].copy()
        ok_names = [name for name in table.index if table.at[name, "ok"]]
        fits = {name: result.fits[name] for name in ok_names}
        self.msgs = {name: result.warnings[name] for name in ok_names}
        self.fixef = pd.DataFrame(
            [np.asarray(fit.params, dtype=float) for fit in fits.values()],
            index=pd.Index(ok_names, name="optimizer"),
            columns=result.fixef_names,
        )
        self.llik = pd.Series({n: float(f.llf) for n, f in fits.items()}, name="llf", dtype=float)
        sdcor_rows, sdcor_cols = [], None
        for fit in fits.values():
            varcorr = fit.varcorr
            sdcor_cols = sdcor_cols or _sdcor_names(varcorr)
            sdcor_rows.append(varcorr["sdcor"].to_numpy(dtype=float))
        self.sdcor = pd.DataFrame(sdcor_rows, index=pd.Index(ok_names, name="optimizer"))
        self.sdcor_labels = {}
        if sdcor_cols:
            self.sdcor.columns = sdcor_cols
            terms = result.original.model.random_terms
            varcorr = next(iter(fits.values())).varcorr
            self.sdcor_labels = dict(zip(sdcor_cols, varcorr_labels(varcorr, terms)))
        self.theta = pd.DataFrame(
            [np.asarray(fit.theta) for fit in fits.values()],
            index=pd.Index(ok_names, name="optimizer"),
            columns=result.theta_names,
        )
        self.times = table.loc[ok_names, "seconds"].astype(float)
        self.feval = table.loc[ok_names, "feval"].astype(int)
        if not ok_names:
            self.best = None
            empty = pd.Series(dtype=float)
            self.llf_diff, self.fixef_rel_diff = empty, empty
            self.agree = pd.Series(False, index=table.index, name="agree")
            return
        self.best = str(self.llik.idxmax())
        best_fit = fits[self.best]
        self.llf_diff = (self.llik.max() - self.llik).rename("llf_diff")
        beta_best = np.asarray(best_fit.params, dtype=float)
        scale = np.maximum(np.abs(beta_best), np.asarray(best_fit.bse, dtype=float))
        scale = np.where(scale > 0, scale, 1.0)
        rel = (self.fixef - beta_best).abs() / scale
        self.fixef_rel_diff = (
            rel.max(axis=1) if rel.shape[1] else pd.Series(0.0, index=ok_names)
        ).rename("fixef_rel_diff")
        agree = (self.llf_diff <= self.llf_tol) & (self.fixef_rel_diff <= self.fixef_rtol)
        self.agree = agree.reindex(table.index, fill_value=False).astype(bool).rename("agree")

    @property
    def agreeing(self) -> list[str]:
        """Optimizers whose fit agrees with the best one."""
        return [name for name, flag in self.agree.items() if flag]

    @property
    def disagreeing(self) -> list[str]:
        """Optimizers that failed or whose fit differs from the best one."""
        return [name for name, flag in self.agree.items() if not flag]

    @property
    def all_agree(self) -> bool:
        """True when every optimizer ran and agrees with the best fit."""
        return bool(len(self.agree)) and bool(self.agree.all())

    def to_frame(self) -> pd.DataFrame:
        """One row per optimizer: agreement, differences, convergence, time."""
        table = self.result.table
        frame = pd.DataFrame(
            {
                "agree": self.agree,
                "llf": table["llf"],
                "llf_diff": self.llf_diff.reindex(table.index),
                "fixef_rel_diff": self.fixef_rel_diff.reindex(table.index),
                "converged": table["converged"],
                "n_warnings": [len(self.result.warnings[n]) for n in table.index],
                "seconds": table["seconds"],
                "feval": table["feval"],
            },
            index=table.index,
        )
        return frame

    def as_text(self) -> str:
        """The report as text."""
        lines = [f"allfit of {_describe(self.result.original)}"]
        n_total, n_ok = len(self.which_ok), int(self.which_ok.sum())
        lines.append(f"{n_total} optimizers, {n_ok} ran without error")
        if self.best is None:
            lines.append("no optimizer produced a fit")
            return "\n".join(lines)
        lines.append(f"best log-likelihood {self.llik[self.best]:.6f} ({self.best})")
        criteria = (
            f"log-likelihood within {self.llf_tol:g} of the best and fixed effects "
            f"within {self.fixef_rtol:g} relative"
        )
        if self.all_agree:
            lines.append(f"all {n_total} optimizers agree ({criteria})")
        else:
            lines.append(
                f"{len(self.agreeing)} of {n_total} optimizers agree ({criteria}): "
                f"{', '.join(self.agreeing) or '(none)'}"
            )
            lines.append(f"not agreeing: {', '.join(self.disagreeing)}")
        warned = [name for name, texts in self.result.warnings.items() if texts]
        if warned:
            lines.append(f"optimizers with warnings: {', '.join(warned)}")
        lines.append("")
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            lines.append(self.to_frame().to_string(float_format=lambda v: f"{v:.6g}"))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()
