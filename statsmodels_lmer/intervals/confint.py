"""Confidence intervals for variance parameters and fixed effects (lme4's ``confint``).

Not to be confused with statsmodels' ``conf_int``: ``LmerResults.conf_int``
gives intervals for the fixed effects only, with Satterthwaite's t quantiles
(lmerTest's); :func:`confint` follows lme4 and covers the variance
parameters too, by likelihood profile (default), Wald or bootstrap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .bootstrap import bootstrap, check_level
from .parameters import (
    default_statistics,
    descriptive_statistics,
    parameter_names,
    percent_labels,
    select_parameters,
)
from .profile import profile

__all__ = ["confint"]


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
    check_level(level)
    names = parameter_names(res, signames)
    n_var = len(names) - len(res.model.exog_names)
    chosen = [names[i] for i in select_parameters(parm, names, n_var)]
    kind = str(method).lower()
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
        prof = profile(res, which=chosen, signames=signames, **kwargs)
        return prof.confint(level=level).reindex(chosen)
    if kind == "boot":
        func = default_statistics if signames else descriptive_statistics
        boot = bootstrap(res, nsim, seed=seed, func=func, **kwargs)
        return boot.confint(level, boot_type).reindex(chosen)
    raise ValueError(f"method must be 'profile', 'wald' or 'boot', got {method!r}")
