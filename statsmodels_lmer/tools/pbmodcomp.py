"""Parametric bootstrap comparison of nested models, as pbkrtest's ``PBmodcomp``.

Both models are fitted by maximum likelihood (REML fits are refitted). The
observed statistic is the likelihood ratio ``2 (llf_large - llf_small)``. Its
reference distribution comes from ``nsim`` responses simulated from the small
model (new random effects, :meth:`LmerResults.simulate`), each refitted with
both models (:meth:`LmerResults.refit`, through
:func:`~statsmodels_lmer.intervals.bootstrap.bootstrap`: the same seeds,
workers and progress bar). :func:`summarize_reference` then gives pbkrtest's
tests: the chi-square LRT, the bootstrap p-value ``(1 + #extreme) / (1 + npos)``
over the positive simulated statistics, and the Gamma, Bartlett-corrected and
F approximations from their mean and variance (Halekoh and Hojsgaard, 2014,
J. Stat. Softw. 59(9)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..arguments import check_count
from ..exceptions import DataError, FormulaError
from ..inference.contrast_results import f_pvalue
from ..intervals.bootstrap import bootstrap
from ..tables import LmerTable
from .compare import check_comparable

__all__ = ["PBModComp", "pbmodcomp", "summarize_reference"]

_COLUMNS = ["stat", "df", "ddf", "pvalue"]


@dataclass
class PBModComp:
    """pbkrtest's ``summary(PBmodcomp(large, small))``.

    Attributes
    ----------
    test : LmerTable
        Rows ``LRT`` (chi-square), ``PBtest`` (bootstrap), ``Gamma``,
        ``Bartlett``, ``F``; columns ``stat, df, ddf, pvalue``.
    reference : ndarray
        The simulated statistics (NaN where a refit failed).
    n_extreme : int
        Positive simulated statistics above the observed one.
    npos : int
        Positive simulated statistics (the ones the tests use).
    moments : dict
        ``mean`` and ``var`` of the positive simulated statistics.
    gamma : dict
        ``scale`` and ``shape`` of the Gamma approximation.
    se, ci : float, tuple of float
        Monte Carlo standard error and 95% interval of the bootstrap p-value.
    formula_large, formula_small : str
        The two models.
    failures : int
        Simulations whose refit failed (left out).
    """

    test: LmerTable
    reference: np.ndarray
    n_extreme: int
    npos: int
    moments: dict[str, float]
    gamma: dict[str, float]
    se: float
    ci: tuple[float, float]
    formula_large: str = ""
    formula_small: str = ""
    failures: int = 0
    nsim: int = field(init=False)

    def __post_init__(self) -> None:
        self.nsim = len(self.reference)

    @property
    def pvalue(self) -> float:
        """The bootstrap p-value (row ``PBtest``)."""
        return float(self.test.loc["PBtest", "pvalue"])

    def __str__(self) -> str:
        lines = [f"Bootstrap test; samples: {self.nsim}; extremes: {self.n_extreme};"]
        if self.npos < self.nsim:
            lines.append(
                f"Requested samples: {self.nsim} Used samples: {self.npos} "
                f"Extremes: {self.n_extreme}"
            )
        if self.formula_large:
            lines += [f"large : {self.formula_large}", f"small : {self.formula_small}"]
        lines.append(self.test.to_text())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def summarize_reference(statistic: float, df: int, reference: np.ndarray) -> PBModComp:
    """pbkrtest's tests from an observed statistic and its simulated values.

    Parameters
    ----------
    statistic : float
        The observed ``2 (llf_large - llf_small)`` (ML).
    df : int
        The difference in the number of parameters.
    reference : array_like
        Simulated statistics; NaN entries (failed refits) are left out and,
        as in pbkrtest, only positive ones are used.

    Returns
    -------
    PBModComp
    """
    reference = np.asarray(reference, dtype=float)
    positive = reference[np.isfinite(reference) & (reference > 0)]
    npos = len(positive)
    if npos < 2:
        raise ValueError(
            f"only {npos} of the {len(reference)} simulated statistics are positive; increase nsim"
        )
    mean, var = float(np.mean(positive)), float(np.var(positive, ddof=1))
    n_extreme = int(np.sum(statistic < positive))
    p_boot = (1 + n_extreme) / (1 + npos)
    bartlett = df * statistic / mean
    ddf = 2 * mean / (mean - 1)
    shape, scale = mean**2 / var, var / mean
    rows = {
        "LRT": [statistic, df, np.nan, stats.chi2.sf(statistic, df)],
        "PBtest": [statistic, np.nan, np.nan, p_boot],
        "Gamma": [statistic, np.nan, np.nan, stats.gamma.sf(statistic, shape, scale=scale)],
        "Bartlett": [bartlett, df, np.nan, stats.chi2.sf(bartlett, df)],
        "F": [statistic / df, df, ddf, f_pvalue(statistic / df, df, ddf) if ddf > 0 else np.nan],
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=_COLUMNS)
    se = float(np.sqrt(p_boot * (1 - p_boot) / npos))
    return PBModComp(
        test=LmerTable.from_frame(table, [], ["pvalue"]),
        reference=reference,
        n_extreme=n_extreme,
        npos=npos,
        moments={"mean": mean, "var": var},
        gamma={"scale": scale, "shape": shape},
        se=se,
        ci=(p_boot - 1.96 * se, p_boot + 1.96 * se),
        failures=int(np.sum(~np.isfinite(reference))),
    )


class _LargeModelRatio:
    """The likelihood ratio of the large model refitted to a refit's response (picklable)."""

    def __init__(self, large: Any) -> None:
        self.large = large

    def __call__(self, small_refit: Any) -> float:
        response = np.asarray(small_refit.model.endog, dtype=float)
        return 2.0 * (float(self.large.refit(response).llf) - float(small_refit.llf))


def pbmodcomp(
    large: Any,
    small: Any,
    nsim: int = 1000,
    seed: Any = None,
    n_jobs: int | None = 1,
    progress: bool | None = None,
) -> PBModComp:
    """Parametric bootstrap test of a small model against a large one (pbkrtest's ``PBmodcomp``).

    Parameters
    ----------
    large : LmerResults
        The large model.
    small : LmerResults or str
        The small (nested) model, fitted to the same rows, or a formula for
        ``large.update`` (R's dots work: ``". ~ . - x"``).
    nsim : int
        Simulated responses (pbkrtest's default 1000).
    seed : int or numpy.random.Generator, optional
        The same seed gives the same statistics whatever ``n_jobs``.
    n_jobs : int or None
        Worker processes for the refits (``-1``: every CPU).
    progress : bool or None
        Progress bar over the refits (default: the package setting).

    Returns
    -------
    PBModComp

    Raises
    ------
    DataError
        The models were fitted to different rows (or in another order).
    ValueError
        The small model does not have fewer parameters.
    """
    nsim = check_count("nsim", nsim)
    if isinstance(small, str):
        if "~" not in small:  # pbkrtest's remove-a-term shorthand is a formula here
            raise FormulaError(
                f"small={small!r} is not a formula: give the small model as a fit or as "
                f"an update formula of the large one, e.g. '. ~ . - {small.strip()}'"
            )
        small = large.update(small)
        same_fixed = list(small.model.exog_names) == list(large.model.exog_names)
        if small.n_params == large.n_params and same_fixed:
            raise ValueError(
                "the formula given for the small model leaves the model unchanged (a term "
                f"it removes is not in {large.model.lmer_formula!r}?)"
            )
    check_comparable(large, small, where="pbmodcomp()")
    large_ml = large.refit_ml() if large.reml else large
    small_ml = small.refit_ml() if small.reml else small
    _check_nested_rows(large_ml, small_ml)
    statistic = 2.0 * (float(large_ml.llf) - float(small_ml.llf))
    df = int(large_ml.n_params - small_ml.n_params)
    boot = bootstrap(
        small_ml, nsim, seed, func=_LargeModelRatio(large_ml), progress=progress, n_jobs=n_jobs
    )
    result = summarize_reference(statistic, df, boot.frame.iloc[:, 0].to_numpy(dtype=float))
    result.formula_large = str(large.model.lmer_formula)
    result.formula_small = str(small.model.lmer_formula)
    return result


def _check_nested_rows(large: Any, small: Any) -> None:
    """Fewer parameters in the small model, and the rows in the same order."""
    if small.n_params >= large.n_params:
        raise ValueError(
            f"the small model has {small.n_params} parameters and the large one "
            f"{large.n_params}; pass the nested (smaller) model second"
        )
    if not np.array_equal(
        np.asarray(large.model.endog, dtype=float), np.asarray(small.model.endog, dtype=float)
    ):
        raise DataError(
            "the two models hold the same rows in another order; the bootstrap refits "
            "both to each simulated response row by row: fit them to one data frame"
        )
