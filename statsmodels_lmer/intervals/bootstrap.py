"""Parametric bootstrap, as lme4's ``bootMer(type = "parametric")``, and its intervals.

:func:`bootstrap` simulates responses from the fitted model, refits each and
applies a statistic to each refit; it returns a :class:`BootstrapResult`.
"""

from __future__ import annotations

import inspect
import math
import pickle
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from .._parallel import Progress, effective_jobs, map_in_workers
from ..arguments import check_bool, check_count, check_level, random_generator
from ..exceptions import recorded_warnings, warn
from ..fitting.options import FitOptions, unknown_keyword_error
from ..graphics.bootstrap import plot_bootstrap
from .parameters import default_statistics, parameter_names, percent_labels

__all__ = [
    "BootstrapResult",
    "bootstrap",
    "confint_bootstrap",
    "norm_inter",
]

Outcome = tuple[Any, str | None, list[str]]
"""One refit: (statistic or None, error text, warning texts)."""


_WORKER: dict[str, Any] = {}


def _worker_init(payload: bytes) -> None:
    _WORKER["res"], _WORKER["func"], _WORKER["fit_kwargs"] = pickle.loads(payload)


def _worker_run(ys: np.ndarray) -> list[Outcome]:
    return _refit_many(_WORKER["res"], _WORKER["func"], _WORKER["fit_kwargs"], ys)


def _refit_many(
    res: Any, func: Callable[[Any], Any], fit_kwargs: dict[str, Any], ys: np.ndarray
) -> list[Outcome]:
    """Refit each column of ``ys``: (statistic or None, error, warning texts)."""
    out = []
    for k in range(ys.shape[1]):
        with recorded_warnings() as texts:
            try:
                value = func(res.refit(ys[:, k], **fit_kwargs))
                error = None
            except Exception as exc:  # a failed refit is recorded, not raised
                value, error = None, f"{type(exc).__name__}: {exc}"
        out.append((value, error, texts))
    return out


def _as_series(value: Any) -> pd.Series:
    """``func``'s value as a Series of floats (TypeError naming ``func`` otherwise)."""
    try:
        if isinstance(value, pd.Series):
            return value.astype(float)
        if isinstance(value, dict):
            return pd.Series(value, dtype=float)
        if isinstance(value, str | bytes):
            raise TypeError
        return pd.Series(np.atleast_1d(np.asarray(value, dtype=float)))
    except (TypeError, ValueError):
        raise TypeError(
            "func must return numbers (a pandas Series, a dict or a 1-D array of numbers), "
            f"got {type(value).__name__} {value!r}"
        ) from None


def _checked_fit_kwargs(res: Any, fit_kwargs: Any) -> dict[str, Any]:
    """``fit_kwargs`` checked up front: a dict of the keywords of the model's ``fit``,
    with valid values (as ``refit`` would check each replicate's)."""
    if fit_kwargs is None:
        return {}
    if not isinstance(fit_kwargs, Mapping):
        raise TypeError(
            f"fit_kwargs must be a dict of fit keywords, got {type(fit_kwargs).__name__} "
            f"{fit_kwargs!r}"
        )
    fit_kwargs = dict(fit_kwargs)
    signature = inspect.signature(res.model.fit).parameters
    named = [
        name
        for name, parameter in signature.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]
    known = [*named, *FitOptions.names()]
    unknown = [str(key) for key in fit_kwargs if key not in known]
    if unknown:
        raise unknown_keyword_error("bootstrap(fit_kwargs=...)", unknown, known)
    if "reml" in fit_kwargs:
        check_bool("fit_kwargs['reml']", fit_kwargs["reml"])
    options, _ = FitOptions.split(fit_kwargs)
    FitOptions(**options)  # the values, with errors naming them
    return fit_kwargs


def bootstrap(
    res: Any,
    nsim: int,
    seed: Any = None,
    func: Callable[[Any], Any] | None = None,
    progress: bool | None = None,
    n_jobs: int | None = 1,
    use_u: bool = False,
    fit_kwargs: dict[str, Any] | None = None,
) -> BootstrapResult:
    """Parametric bootstrap, as lme4's ``bootMer(m, FUN, nsim, type = "parametric")``.

    ``nsim`` responses are simulated from the fitted model with new random effects
    (:meth:`LmerResults.simulate`), each is refitted with :meth:`LmerResults.refit`
    (same REML/ML setting, starting at the fitted theta) and ``func`` is applied to
    each refit.

    Parameters
    ----------
    res : LmerResults
        A fit (pandas-aware, as ``fit()`` returns it: ``func`` sees such results).
    nsim : int
        Number of bootstrap replicates.
    seed : int or numpy.random.Generator, optional
        The same seed gives the same replicates, whatever ``n_jobs``: all responses are
        drawn in this process, in order.
    func : callable, optional
        ``func(fitted_results) -> pandas.Series`` (or dict / array). Default: the
        variance parameters on lme4's scale named as ``confint``'s rows (``.sig01, ...,
        .sigma``), then the fixed effects.
    progress : bool or None
        Progress bar over the refits. None (default): the package setting
        (:func:`statsmodels_lmer.set_progress`), shown once the bootstrap has
        run for a couple of seconds.
    n_jobs : int or None
        Worker processes, as joblib's ``n_jobs`` (``-1``: every CPU); ``func`` must then
        pickle (a module-level function).
    use_u : bool
        Condition on the estimated random effects (lme4's ``use.u = TRUE``).
    fit_kwargs : dict, optional
        Extra keywords for the refits (:meth:`Lmer.fit`), checked before any
        refit: unknown keywords and invalid values raise at once.

    Returns
    -------
    BootstrapResult

    Raises
    ------
    ValueError
        When every refit (or ``func`` on it) failed; the message gives the
        first error. When only some fail, their rows are NaN and a
        ``ConvergenceWarning`` gives the count.
    TypeError
        When ``fit_kwargs`` is not a dict of fit keywords, or ``func`` does not
        return numbers.
    """
    nsim = check_count("nsim", nsim)
    use_u = check_bool("use_u", use_u)
    fit_kwargs = _checked_fit_kwargs(res, fit_kwargs)
    n_jobs = effective_jobs(n_jobs, nsim)
    seed_record = _seed_record(seed)  # before the draws advance a Generator
    rng = random_generator(seed)  # a Generator given is used as it is
    func = default_statistics if func is None else func
    if not callable(func):
        raise TypeError(f"func must be a function of the fitted results, got {func!r}")
    labels = {}
    if func is default_statistics:
        labels = dict(zip(parameter_names(res), parameter_names(res, signames=False)))
    t0 = _as_series(func(res))  # fails early when func does not work on the fit itself
    chunk = max(1, min(50, math.ceil(nsim / (4 * n_jobs))))
    sizes = [min(chunk, nsim - start) for start in range(0, nsim, chunk)]

    def draws():
        for size in sizes:
            yield res.simulate(size, seed=rng, use_u=use_u).to_numpy(dtype=float)

    results: dict[int, list[Outcome]] = {}
    with Progress(nsim, "bootstrap", "refit", enabled=progress) as bar:
        if n_jobs == 1:
            for index, ys in enumerate(draws()):
                results[index] = _refit_many(res, func, fit_kwargs, ys)
                bar.update(ys.shape[1])
        else:
            payload = _payload(res, func, fit_kwargs)
            for index, outcomes in map_in_workers(
                _worker_run, draws(), n_jobs, _worker_init, (payload,)
            ):
                results[index] = outcomes
                bar.update(len(outcomes))
    ordered = [item for index in sorted(results) for item in results[index]]
    boot = _bootstrap_result(t0, ordered, nsim, seed_record)
    boot.labels = labels
    return boot


def _payload(res: Any, func: Callable[[Any], Any], fit_kwargs: dict[str, Any]) -> bytes:
    try:
        return pickle.dumps((res, func, fit_kwargs))
    except Exception as exc:
        raise ValueError(
            "n_jobs > 1 needs picklable results and func (a module-level function, "
            f"not a lambda): {exc}"
        ) from exc


def _bootstrap_result(
    t0: pd.Series, results: list[Outcome], nsim: int, seed: Any
) -> BootstrapResult:
    first_error = next((error for _, error, _ in results if error is not None), None)
    if first_error is not None and all(error is not None for _, error, _ in results):
        raise ValueError(
            f"all {nsim} bootstrap refits failed (or func raised on them); the first error: "
            f"{first_error}"
        )
    rows = [None if value is None else _as_series(value) for value, _, _ in results]
    columns = list(t0.index)
    for row in rows:
        if row is not None:
            columns.extend(c for c in row.index if c not in columns)
    values = np.full((nsim, len(columns)), np.nan)
    for k, row in enumerate(rows):
        if row is not None:
            values[k] = row.reindex(columns).to_numpy(dtype=float)
    errors = Counter(error for _, error, _ in results if error is not None)
    warned = Counter(text for _, _, texts in results for text in dict.fromkeys(texts))
    failures = int(sum(errors.values()))
    if failures:
        warn(
            f"{failures} of {nsim} bootstrap refits failed (NaN rows); "
            f"the first error: {first_error}",
            ConvergenceWarning,
        )
    return BootstrapResult(
        frame=pd.DataFrame(values, columns=columns),
        t0={str(k): float(v) for k, v in t0.items()},
        nsim=nsim,
        failures=failures,
        errors=dict(errors),
        warnings=dict(warned),
        seed=seed,
    )


def _seed_record(seed: Any) -> Any:
    """What reproduces the replicates: an int or None as given; a Generator's
    bit-generator state before the run; a SeedSequence's entropy and spawn key."""
    if seed is None or isinstance(seed, int | np.integer):
        return None if seed is None else int(seed)
    if isinstance(seed, np.random.Generator):
        return {"bit_generator_state": seed.bit_generator.state}
    if isinstance(seed, np.random.SeedSequence):
        return {"entropy": seed.entropy, "spawn_key": tuple(seed.spawn_key)}
    return repr(seed)


def norm_inter(t: np.ndarray, alpha: np.ndarray) -> np.ndarray:
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
    boot: BootstrapResult | pd.DataFrame,
    level: float = 0.95,
    boot_type: str = "perc",
    t0: Any = None,
) -> pd.DataFrame:
    """Bootstrap confidence intervals (lme4's ``confint.bootMer``).

    Parameters
    ----------
    boot : BootstrapResult or pandas.DataFrame
        Replicates, one column per statistic.
    level : float
    boot_type : {"perc", "basic", "norm"}
        Percentile (R's ``boot.ci`` interpolation), basic (``2 t0 - percentiles``) or
        normal with bootstrap bias correction.
    t0 : Series or dict, optional
        Estimates at the fit (default ``boot.t0`` of a BootstrapResult); needed for
        basic and norm.
    """
    if boot_type not in ("perc", "basic", "norm"):
        raise ValueError(f"boot_type must be 'perc', 'basic' or 'norm', got {boot_type!r}")
    check_level(level)
    frame = getattr(boot, "frame", boot)
    alpha = (1.0 - level) / 2.0
    probs = np.array([alpha, 1.0 - alpha])
    if t0 is None:
        t0 = getattr(boot, "t0", {})
    try:
        t0 = pd.Series(t0, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"t0 must map each statistic to a number (a dict or a Series), got {t0!r}"
        ) from None
    if boot_type != "perc":
        missing = [str(name) for name in frame.columns if name not in t0.index]
        if missing:
            raise KeyError(
                f"t0 lacks the statistics {missing}, which boot_type={boot_type!r} needs; "
                f"it has {[str(name) for name in t0.index]}"
            )
    out = np.full((frame.shape[1], 2), np.nan)
    for i, name in enumerate(frame.columns):
        t = frame[name].to_numpy(dtype=float)
        t = t[np.isfinite(t)]
        if t.size == 0:
            continue
        if boot_type == "perc":
            out[i] = norm_inter(t, probs)
        elif boot_type == "basic":
            out[i] = 2 * t0.get(name, np.nan) - norm_inter(t, probs[::-1])
        else:
            est = t0.get(name, np.nan)
            bias = t.mean() - est
            half = t.std(ddof=1) * stats.norm.ppf(1.0 - alpha)
            out[i] = [est - bias - half, est - bias + half]
    return pd.DataFrame(out, index=list(frame.columns), columns=percent_labels(probs))


@dataclass(eq=False)
class BootstrapResult:
    """Replicates of a parametric bootstrap (lme4's ``bootMer`` object).

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per replicate (index 0..nsim-1), one column per statistic;
        a refit that raised gives a NaN row.
    t0 : dict
        The statistic at the fit.
    nsim : int
        Number of replicates.
    failures : int
        Refits that raised.
    errors, warnings : dict
        Message -> number of replicates.
    seed : int, dict, str or None
        What reproduces the replicates: the int seed given; for a
        ``numpy.random.Generator``, ``{"bit_generator_state": ...}``, its
        state before the run (``g.bit_generator.state = ...`` on a Generator of
        the same kind replays it); for a ``SeedSequence``, its ``entropy`` and
        ``spawn_key``.
    labels : dict
        Descriptive names of the default statistics (``.sig01`` ->
        ``sd_Intercept|Subject``), used by :meth:`plot`; empty for a
        statistic of your own.
    """

    frame: pd.DataFrame
    t0: dict[str, float]
    nsim: int
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    seed: Any = None
    labels: dict[str, str] = field(default_factory=dict)

    confint = confint_bootstrap
    """Bootstrap confidence intervals (:func:`confint_bootstrap`)."""

    plot = plot_bootstrap
    """Histograms of the replicates (:func:`statsmodels_lmer.graphics.plot_bootstrap`)."""

    def __repr__(self) -> str:
        return (
            f"<BootstrapResult: {self.nsim} replicates of {self.frame.shape[1]} statistics, "
            f"{self.failures} failed>"
        )
