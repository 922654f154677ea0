"""Confidence intervals for variance parameters and fixed effects (lme4's ``confint``).

Not to be confused with statsmodels' ``conf_int``: ``LmerResults.conf_int``
gives intervals for the fixed effects only, with Satterthwaite's t quantiles
(lmerTest's); :func:`confint` follows lme4 and covers the variance
parameters too, by likelihood profile (default), Wald or bootstrap.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from ..arguments import check_bool, check_level
from ..exceptions import warn
from .bootstrap import bootstrap
from .parameters import (
    default_statistics,
    descriptive_statistics,
    parameter_names,
    percent_labels,
    select_parameters,
)
from .profile import confint_profile, profile, profile_limits

ENDS_SEARCH_NOBS = 10_000
"""``ends="auto"`` searches the profile limits directly above this many observations."""

__all__ = ["ENDS_SEARCH_NOBS", "confint"]


def confint(
    res: Any,
    method: str = "profile",
    level: float = 0.95,
    parm: Any = None,
    nsim: int | None = None,
    seed: Any = None,
    boot_type: str | None = None,
    signames: bool = True,
    ends: str = "auto",
    **kwargs: Any,
) -> pd.DataFrame:
    """Confidence intervals for the variance parameters and fixed effects (``confint.merMod``).

    Parameters
    ----------
    res : LmerResults
        A fit (pandas-aware for ``method="boot"``: the statistic sees it).
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
        For ``method="boot"`` (500 replicates, no seed and ``"perc"`` by
        default); other methods ignore them.
    signames : bool
        ``.sig01``-style row names (default) or descriptive ones.
    ends : {"auto", "grid", "search"}
        How ``method="profile"`` finds the limits. ``"grid"``: lme4's way, the
        profile on lme4's grid (:func:`profile`) interpolated by a spline.
        ``"search"``: a direct search for zeta = -+quantile
        (:func:`profile_limits`), about a third of the profile points; the
        limits are those of the exact profile, which lme4's spline
        approximates to 2e-4 relative or better on lme4's examples.
        ``"auto"`` (default): ``"search"`` above 10,000 observations (where
        each point is costly), else ``"grid"``.
    **kwargs
        Passed to :func:`profile` (or :func:`profile_limits`) for
        ``"profile"`` and to :func:`bootstrap` for ``"boot"``, e.g. ``n_jobs``,
        ``progress``. A keyword of the other method is ignored (one loop can
        pass the same keywords to every method); a keyword of neither is a
        ``TypeError``.

    Returns
    -------
    pandas.DataFrame
        One row per parameter (``.sig01, ..., .sigma``, then the fixed effects), columns
        labelled as R's: ``"2.5 %"`` and ``"97.5 %"`` for ``level=0.95`` (lower, upper).

    Raises
    ------
    TypeError
        A keyword that neither :func:`profile` nor :func:`bootstrap` takes.
    """
    check_level(level)
    signames = check_bool("signames", signames)
    kind = str(method).lower()
    if kind not in ("profile", "wald", "boot"):
        raise ValueError(f"method must be 'profile', 'wald' or 'boot', got {method!r}")
    kwargs = _method_keywords(kind, kwargs)
    names = parameter_names(res, signames)
    n_var = len(names) - len(res.model.exog_names)
    chosen = [names[i] for i in select_parameters(parm, names, n_var, "parm")]
    alpha = (1.0 - level) / 2.0
    labels = percent_labels([alpha, 1.0 - alpha])
    if kind == "wald":
        out = pd.DataFrame(np.nan, index=names, columns=labels)
        params = np.asarray(res.params, dtype=float)
        bse = np.asarray(res.bse, dtype=float)
        q = stats.norm.ppf(1.0 - alpha)
        out.iloc[n_var:, 0] = params - q * bse
        out.iloc[n_var:, 1] = params + q * bse
        return out.loc[chosen]
    if kind == "profile":
        if _profile_ends(ends, res) == "search":
            limits = profile_limits(res, chosen, level=level, signames=signames, **kwargs)
            return limits.reindex(chosen)
        prof = profile(res, which=chosen, signames=signames, **kwargs)
        return _grid_limits(res, prof, chosen, level, signames, kwargs)
    if kind == "boot":
        func = default_statistics if signames else descriptive_statistics
        nsim = 500 if nsim is None else nsim
        boot = bootstrap(res, nsim, seed=seed, func=func, **kwargs)
        return boot.confint(level, "perc" if boot_type is None else boot_type).reindex(chosen)
    raise AssertionError(kind)  # checked above


_PROFILE_KEYWORDS = set(inspect.signature(profile).parameters) - {"res", "which", "signames"}
_BOOT_KEYWORDS = set(inspect.signature(bootstrap).parameters) - {"res", "nsim", "seed", "func"}


def _method_keywords(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords ``kind`` uses; those of the other method dropped, unknown ones refused."""
    unknown = [key for key in kwargs if key not in _PROFILE_KEYWORDS | _BOOT_KEYWORDS]
    if unknown:
        raise TypeError(
            f"confint() got unknown keyword(s) {unknown}; it passes "
            f"{sorted(_PROFILE_KEYWORDS)} to profile() and {sorted(_BOOT_KEYWORDS)} to "
            "bootstrap()"
        )
    wanted = {"profile": _PROFILE_KEYWORDS, "boot": _BOOT_KEYWORDS}.get(kind, set())
    return {key: value for key, value in kwargs.items() if key in wanted}


def _grid_limits(
    res: Any, prof: Any, chosen: list, level: float, signames: bool, kwargs: dict
) -> pd.DataFrame:
    """Limits from the grid profile's spline; those of non-monotone profiles searched.

    Where R's back-spline fails (zeta not increasing), lme4 interpolates
    linearly; the limits of the exact profile are searched instead
    (:func:`profile_limits`, 2-5 profile points each). On a ``(x | g)``
    correlation whose profile flattens at -1 the spline on the monotone part
    was 0.009 from the exact lower limit and lme4's line 0.004.
    """
    broken: list[str] = []
    table = confint_profile(prof, level=level, broken=broken).reindex(chosen)
    if broken:
        options = {k: v for k, v in kwargs.items() if k in ("progress", "n_jobs")}
        searched = profile_limits(res, broken, level=level, signames=signames, **options)
        table.loc[broken] = searched.loc[broken].to_numpy()
        warn(
            f"non-monotonic profile for {', '.join(broken)}: its limits were searched on the "
            "exact profile (ends='search') instead of interpolated",
            ConvergenceWarning,
        )
    return table


def _profile_ends(ends: str, res: Any) -> str:
    """``"grid"`` or ``"search"`` for ``confint(method="profile", ends=...)``."""
    if ends not in ("auto", "grid", "search"):
        raise ValueError(f"ends must be 'auto', 'grid' or 'search', got {ends!r}")
    if ends != "auto":
        return ends
    return "search" if res.model.nobs > ENDS_SEARCH_NOBS else "grid"
