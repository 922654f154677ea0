"""Multilevel summaries: ICC, Nakagawa's R2, variance explained, centering.

Variance components follow Nakagawa, Johnson & Schielzeth (2017) as the R
package ``performance`` (``insight::get_variance``) computes them:

* fixed: the variance of the fixed-effects predictions ``var(X beta)``;
* random: for each term, the mean over observations of ``z_i' Sigma z_i``
  (the term's covariance ``Sigma`` and its model row ``z_i``; the intercept
  variance for a random-intercept term);
* residual: ``sigma^2``.

The adjusted ICC is ``random / (random + residual)``, the conditional ICC
``random / (fixed + random + residual)``; marginal R2 is ``fixed / total`` and
conditional R2 ``(fixed + random) / total``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..arguments import check_column_names, check_frame
from ..data_checks import native_byte_order

__all__ = ["center", "icc", "r2", "variance_components", "variance_explained"]


def variance_components(res: Any) -> dict[str, Any]:
    """Fixed, random (total and per grouping factor) and residual variances."""
    model = getattr(res, "_results", res).model
    fitted_fixed = np.asarray(model.exog, dtype=float) @ np.asarray(res.params, dtype=float)
    by_group: dict[str, float] = {}
    for index, term in enumerate(model.random_terms):
        cov = res.term_covariance(index)
        per_row = np.einsum("np,pq,nq->n", term.Z, cov, term.Z)
        by_group[term.group] = by_group.get(term.group, 0.0) + float(per_row.mean())
    return {
        "fixed": float(np.var(fitted_fixed, ddof=1)) if len(fitted_fixed) > 1 else 0.0,
        "random": float(sum(by_group.values())),
        "by_group": by_group,
        "residual": float(res.scale),
    }


def icc(res: Any) -> pd.DataFrame:
    """Intraclass correlations, as ``performance::icc``.

    Returns
    -------
    pandas.DataFrame
        Index ``"all"`` then each grouping factor; columns ``adjusted``
        (random / (random + residual)) and ``conditional`` (random / total,
        including the fixed-effects variance). With random slopes the
        per-factor values are approximate, as ``performance`` warns.
    """
    parts = variance_components(res)
    adjusted_total = parts["random"] + parts["residual"]
    total = parts["fixed"] + adjusted_total
    rows = {"all": (parts["random"] / adjusted_total, parts["random"] / total)}
    for group, value in parts["by_group"].items():
        rows[group] = (value / adjusted_total, value / total)
    return pd.DataFrame.from_dict(rows, orient="index", columns=["adjusted", "conditional"])


def r2(res: Any) -> pd.Series:
    """Nakagawa's marginal and conditional R2, as ``performance::r2_nakagawa``."""
    parts = variance_components(res)
    total = parts["fixed"] + parts["random"] + parts["residual"]
    return pd.Series(
        {
            "marginal": parts["fixed"] / total,
            "conditional": (parts["fixed"] + parts["random"]) / total,
        },
        name="r2",
    )


def variance_explained(res_reduced: Any, res_full: Any) -> pd.DataFrame:
    """Proportional reduction of each variance component between two models.

    For each variance (each term's variances and the residual) present in
    both fits: ``(reduced - full) / reduced``, the share of that level's
    variance explained by the predictors added in the full model (Raudenbush
    & Bryk's proportion of variance explained per level).

    Parameters
    ----------
    res_reduced : LmerResults
        The model without the predictors (e.g. the empty model).
    res_full : LmerResults
        The model with them, on the same data.

    Returns
    -------
    pandas.DataFrame
        Columns ``grp, var1, vcov_reduced, vcov_full, explained``.
    """
    for fit, name in ((res_reduced, "res_reduced"), (res_full, "res_full")):
        if not (hasattr(fit, "varcorr") and hasattr(fit, "nobs")):
            raise TypeError(f"{name} must be a fitted lmer model (LmerResults), got {fit!r}")
    n_reduced, n_full = int(res_reduced.nobs), int(res_full.nobs)
    if n_reduced != n_full:
        raise ValueError(
            f"the models are fitted on different rows ({n_reduced} and {n_full}, e.g. missing "
            "values in a predictor of the full model only): fit the reduced model on the "
            "full model's rows, e.g. data.dropna(subset=[...])"
        )
    keys = ["grp", "var1"]
    reduced = res_reduced.varcorr
    full = res_full.varcorr
    reduced = reduced[reduced["var2"].isna()][keys + ["vcov"]]
    full = full[full["var2"].isna()][keys + ["vcov"]]
    merged = reduced.merge(full, on=keys, how="inner", suffixes=("_reduced", "_full"))
    merged["explained"] = (merged["vcov_reduced"] - merged["vcov_full"]) / merged["vcov_reduced"]
    return merged.reset_index(drop=True)


def center(data: pd.DataFrame, columns: str | list[str], by: str | None = None) -> pd.DataFrame:
    """Grand-mean or group-mean centering, with a within/between decomposition.

    Parameters
    ----------
    data : pandas.DataFrame
        Not modified; a new frame is returned.
    columns : str or list of str
        Numeric columns to center.
    by : str, optional
        Grouping column. Without it each column ``x`` gets ``x_c = x -
        mean(x)`` (grand-mean centering). With it, ``x_between`` (the group
        mean of ``x``, grand-mean centered: the contextual/between part) and
        ``x_within`` (``x`` minus its group mean: group-mean centering) are
        added, so that ``x = mean(x) + x_between + x_within``.

    Returns
    -------
    pandas.DataFrame
    """
    check_frame(data)
    columns = check_column_names(columns)
    if by is not None and by not in data.columns:
        raise KeyError(f"column {by!r} (by=) is not in the data")
    out = native_byte_order(data).copy()  # grouped by its columns, which pandas must hash
    for column in columns:
        if column not in data.columns:
            raise KeyError(f"column {column!r} is not in the data")
        values = pd.to_numeric(data[column], errors="raise").astype(float)
        grand = values.mean()
        if by is None:
            out[f"{column}_c"] = values - grand
            continue
        group_mean = values.groupby(out[by], observed=True).transform("mean")
        out[f"{column}_between"] = group_mean - grand
        out[f"{column}_within"] = values - group_mean
    return out
