"""Simulation summaries of random effects and prediction intervals.

* :func:`resim` draws each level's random effects from their conditional
  distribution ``N(b_hat, condVar)`` (as merTools' ``REsim``) and summarizes
  the draws by mean, median and standard deviation.
* :func:`predict_interval` builds prediction intervals by simulation (in the
  spirit of merTools' ``predictInterval``): fixed effects are drawn from
  ``N(beta_hat, vcov)``, random effects of known levels from their
  conditional distribution and of new levels from ``N(0, Sigma)``, and (by
  default) a residual from ``N(0, sigma^2 / w)``; the interval is formed by
  quantiles of the simulated predictions and ``fit`` is their median.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..arguments import check_bool, check_count, check_frame, check_level, random_generator
from ..distributed.dask_fit import is_dask_frame
from ..random_effects import conditional_draws, new_level_draws, term_contribution
from .predict import (
    complete_rows,
    fitted_frame,
    fitted_types,
    fixed_matrix,
    row_offsets,
    row_values,
    selected_terms,
    term_rows,
)

__all__ = ["predict_interval", "resim"]


def _conditional_draws(res: Any, index: int, n_sims: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of one term's random effects, shape (n_sims, levels, cols)."""
    modes, cov = res.conditional_modes[index], res.conditional_covariances[index]
    return conditional_draws(modes, cov, n_sims, rng)


def resim(res: Any, n_sims: int = 1000, seed: Any = None) -> pd.DataFrame:
    """Summaries of random effects simulated from their conditional distribution.

    Parameters
    ----------
    n_sims : int
        Draws per level.
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    pandas.DataFrame
        Columns ``groupFctr, groupID, term, mean, median, sd`` (merTools'
        names), one row per level and column of each term.
    """
    n_sims = check_count("n_sims", n_sims)
    rng = np.random.default_rng(seed)
    frames = []
    for index, term in enumerate(res.model.random_terms):
        draws = _conditional_draws(res, index, n_sims, rng)
        for j, name in enumerate(term.column_names):
            column = draws[:, :, j]
            frames.append(
                pd.DataFrame(
                    {
                        "groupFctr": term.group,
                        "groupID": np.asarray(term.levels, dtype=object),
                        "term": name,
                        "mean": column.mean(axis=0),
                        "median": np.median(column, axis=0),
                        "sd": column.std(axis=0, ddof=1),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def predict_interval(
    res: Any,
    newdata: pd.DataFrame | None = None,
    *,
    level: float = 0.95,
    n_sims: int = 1000,
    seed: Any = None,
    re_formula: Any = None,
    allow_new_levels: bool = False,
    include_residual: bool = True,
    offset: Any = None,
    weights: Any = None,
) -> pd.DataFrame:
    """Simulation-based prediction intervals (see the module docstring).

    Parameters
    ----------
    newdata : pandas.DataFrame, optional
        Default the fitted rows.
    level : float
        Coverage of the interval.
    n_sims : int
        Number of simulated predictions per row.
    seed : int or numpy.random.Generator, optional
    include_residual : bool
        Add residual noise (an interval for a new observation) or not (an
        interval for the conditional mean). The fixed and random effects are
        drawn independently, as merTools draws them, which ignores their
        negative correlation: the conditional-mean interval is conservative
        (24-34% wider than the exact prediction-error interval in a simulation
        study); :meth:`LmerResults.get_prediction` gives exact standard errors.
    re_formula, allow_new_levels, offset
        As in :meth:`LmerResults.predict`.
    weights : array_like or str, optional
        Prior weights of each row: the residual variance is ``sigma^2 / w``.
        By default the fitted weights for the fitted rows, or the column they
        were taken from; a model fitted with a weights array needs them for
        new data when ``include_residual`` is True.

    Returns
    -------
    pandas.DataFrame
        Columns ``fit`` (median), ``lower``, ``upper``; NaN for rows with
        missing values.
    """
    check_level(level)
    check_count("n_sims", n_sims, minimum=2)
    rng = random_generator(seed)
    allow_new_levels = check_bool("allow_new_levels", allow_new_levels)
    include_residual = check_bool("include_residual", include_residual)
    model = res.model
    rows_given = newdata is not None
    newdata = fitted_frame(model) if newdata is None else newdata
    if is_dask_frame(newdata):
        raise TypeError(
            "predict_interval() simulates on rows in memory; pass a pandas DataFrame "
            "(for a Dask DataFrame, compute() the rows wanted, e.g. ddf.head(1000))"
        )
    check_frame(newdata, "newdata")
    newdata = fitted_types(model, newdata)
    terms = selected_terms(model, re_formula)
    complete = complete_rows(model, newdata, terms, allow_new_levels)
    row_offset = row_offsets(model, newdata, rows_given, offset)
    row_weights = (
        row_values(model, newdata, rows_given, weights, "weights") if include_residual else None
    )
    for values in (row_offset, row_weights):
        if values is not None:
            complete &= ~np.isnan(values)
    rows = newdata.loc[complete]
    X = fixed_matrix(model, rows)
    beta = rng.multivariate_normal(
        np.asarray(res.params, dtype=float), np.asarray(res.cov_params()), size=n_sims
    )
    sims = beta @ X.T  # (n_sims, rows)
    if row_offset is not None:
        sims += row_offset[complete]
    for index, cols in terms:
        sims += _random_draws(res, rows, index, cols, n_sims, rng, allow_new_levels)
    if include_residual:
        noise = rng.standard_normal(sims.shape) * res.sigma
        if row_weights is not None:
            noise /= np.sqrt(row_weights[complete])
        sims += noise
    alpha = 1 - level
    stats = np.quantile(sims, [0.5, alpha / 2, 1 - alpha / 2], axis=0)
    out = pd.DataFrame(np.nan, index=newdata.index, columns=["fit", "lower", "upper"])
    out.loc[complete] = stats.T
    return out


def _random_draws(
    res: Any,
    rows: pd.DataFrame,
    index: int,
    cols: list[int],
    n_sims: int,
    rng: np.random.Generator,
    allow_new_levels: bool,
) -> np.ndarray:
    model = res.model
    Z, codes = term_rows(model, index, rows, allow_new_levels)
    draws = _conditional_draws(res, index, n_sims, rng)  # (s, levels, cols)
    new = codes < 0
    if new.any():
        # each row of a new level gets its own draw, as merTools does
        T = model.random_terms[index].factor(res.theta[model.theta_slices[index]])
        fresh = new_level_draws(T, res.sigma, int(new.sum()), rng, n_draws=n_sims)
        levels = draws.shape[1]
        draws = np.concatenate([draws, fresh], axis=1)
        codes = codes.copy()
        codes[new] = levels + np.arange(int(new.sum()))
    return term_contribution(Z[:, cols], codes, draws[:, :, cols])
