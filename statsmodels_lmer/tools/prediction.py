"""Predictions with standard errors, as statsmodels' ``get_prediction``.

Two kinds of prediction for rows ``x`` (fixed part) and ``z`` (random part):

* population level (default): ``x' beta`` with standard error
  ``sqrt(x' V x)`` (``V = cov_params()``: model-based, or cluster-robust
  when the results use a robust covariance) and the t quantile of the
  contrast's own denominator df (Satterthwaite or clubSandwich, as the
  results' tests);
* conditional (``conditional=True``): ``x' beta + z' b`` with the standard
  error of its prediction error, Henderson's
  ``sigma^2 [z' K z + (x - a)' C (x - a)]`` with
  ``K = Lambda (Lambda' Z' W Z Lambda + I)^-1 Lambda'`` (lme4's conditional
  variance of ``b`` given beta), ``C = (R_X' R_X)^-1``
  and ``a = X' W Z K z`` (the coupling of ``beta`` and ``b``), i.e. the
  ``(x, z)`` quadratic form in the inverse of the mixed-model equations.
  Levels not seen in fitting add their random effect's full variance
  ``sigma^2 z' T T' z``. Normal quantiles.

Observation intervals add the variance of a new observation: the residual
``sigma^2`` and, for the population-level prediction, the random effects'
``z' Sigma z``; they use normal quantiles and treat the variance parameters
as known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import patsy
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import stats

from ..arguments import check_alpha, check_bool, check_frame
from ..distributed.dask_fit import refuse_on_cluster
from ..engine.cost import available_memory
from ..exceptions import DataError
from ..inference.hypotheses import contrast_test
from ..random_effects import scaled_z
from .predict import (
    complete_rows,
    fitted_frame,
    fitted_types,
    fixed_matrix,
    patsy_rows,
    predict,
    row_values,
    term_design,
    term_rows,
)

__all__ = ["PredictionResults", "cooks_distance", "get_prediction", "hatvalues"]


@dataclass
class PredictionResults:
    """Predictions and their standard errors (statsmodels' ``PredictionResults`` layout).

    Attributes
    ----------
    predicted_mean : ndarray
        The predictions (NaN for rows with a missing value).
    se_mean : ndarray
        Their standard errors.
    df : ndarray
        Degrees of freedom of the mean intervals (inf: normal quantiles).
    se_obs : ndarray
        Standard errors for a new observation.
    row_labels : pandas.Index
        The rows' labels.
    conditional : bool
        Whether the random effects are included.
    """

    predicted_mean: np.ndarray
    se_mean: np.ndarray
    df: np.ndarray
    se_obs: np.ndarray
    row_labels: pd.Index
    conditional: bool

    @property
    def var_pred_mean(self) -> np.ndarray:
        """Variance of the predictions (statsmodels' name)."""
        return self.se_mean**2

    def conf_int(self, obs: bool = False, alpha: float = 0.05) -> np.ndarray:
        """Intervals for the mean (t with each row's df) or a new observation (normal)."""
        alpha = check_alpha(alpha)
        if check_bool("obs", obs):
            half = stats.norm.ppf(1 - alpha / 2) * self.se_obs
        else:
            half = stats.t.ppf(1 - alpha / 2, self.df) * self.se_mean
        return np.column_stack([self.predicted_mean - half, self.predicted_mean + half])

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """Columns ``mean, mean_se, mean_ci_lower, mean_ci_upper, obs_ci_lower,
        obs_ci_upper`` (statsmodels') and ``df``."""
        mean_ci = self.conf_int(alpha=alpha)
        obs_ci = self.conf_int(obs=True, alpha=alpha)
        return pd.DataFrame(
            {
                "mean": self.predicted_mean,
                "mean_se": self.se_mean,
                "mean_ci_lower": mean_ci[:, 0],
                "mean_ci_upper": mean_ci[:, 1],
                "obs_ci_lower": obs_ci[:, 0],
                "obs_ci_upper": obs_ci[:, 1],
                "df": self.df,
            },
            index=self.row_labels,
        )


def get_prediction(
    res: Any,
    newdata: pd.DataFrame | None = None,
    conditional: bool = False,
    allow_new_levels: bool = False,
) -> PredictionResults:
    """Predictions with standard errors; see the module notes.

    Parameters
    ----------
    res : LmerResults
    newdata : pandas.DataFrame, optional
        Default the fitted rows.
    conditional : bool
        Include the random effects (lme4's default ``predict``) instead of
        the population-level prediction.
    allow_new_levels : bool
        For ``conditional=True``: unseen levels get zero random effects
        (and their variance) instead of an error.

    Returns
    -------
    PredictionResults
    """
    model = res.model
    refuse_on_cluster(model, "get_prediction() (use predict())")
    rows_given = newdata is not None
    if newdata is None:
        newdata = fitted_frame(model)
    check_frame(newdata, "newdata")
    newdata = fitted_types(model, newdata)
    terms = [(i, list(range(t.n_cols))) for i, t in enumerate(model.random_terms)]
    mean = predict(res, newdata, None if conditional else "0", allow_new_levels)
    residual_var = _residual_variance(res, newdata, rows_given)
    used = terms if conditional else []
    complete = complete_rows(model, newdata, used, allow_new_levels) & np.isfinite(mean)
    rows = newdata.loc[complete]
    X = fixed_matrix(model, rows)
    shape = len(newdata)
    se, df, se_obs = (np.full(shape, np.nan) for _ in range(3))
    sigma2 = residual_var[complete]
    if conditional:
        var_mean = _conditional_variance(res, rows, X, allow_new_levels)
        se[complete] = np.sqrt(var_mean)
        df[complete] = np.inf
        se_obs[complete] = np.sqrt(var_mean + sigma2)
    else:
        cov = np.asarray(res.cov_params(), dtype=float)
        var_mean = np.einsum("ij,jk,ik->i", X, cov, X)
        se[complete] = np.sqrt(var_mean)
        df[complete] = _row_df(res, X)
        se_obs[complete] = np.sqrt(var_mean + _random_variance(res, rows) + sigma2)
    return PredictionResults(mean, se, df, se_obs, newdata.index, bool(conditional))


def hatvalues(res: Any) -> np.ndarray:
    """Diagonal of the hat matrix of the conditional fitted values (lme4's ``hatvalues``).

    ``h_i = d fitted_i / d y_i`` at the estimated theta: ``w_i a_i' C^-1 a_i``,
    where ``a_i = (x_i, Lambda' z_i)`` and ``C`` is the matrix of the weighted
    mixed-model equations, i.e. the conditional prediction's error variance
    (module notes) times ``w_i / sigma^2``. The values sum to the effective
    number of parameters of the conditional fit.

    Parameters
    ----------
    res : LmerResults

    Returns
    -------
    ndarray
        One value in ``[0, 1]`` per fitted row.
    """
    model = res.model
    refuse_on_cluster(model, "hatvalues()")
    model.require_data("hatvalues()")
    exog = np.asarray(model.exog, dtype=float)
    variance = _conditional_variance(res, model.data.frame, exog, allow_new_levels=False)
    weights = np.ones(len(exog)) if model.weights is None else np.asarray(model.weights)
    return weights * variance / res.scale


def cooks_distance(res: Any) -> np.ndarray:
    """Cook's distance of each fitted row from its leverage (lme4's ``cooks.distance(m)``).

    ``D_i = (r_i / (1 - h_i))^2 h_i / (sigma^2 p)``: ``r_i`` the Pearson
    residual, ``h_i`` the leverage (:func:`hatvalues`), ``p`` the rank of ``X``;
    NaN where ``h_i = 1``. A one-step measure at the estimated theta; the
    distances of refits without rows or groups are ``res.influence()``'s.

    Parameters
    ----------
    res : LmerResults

    Returns
    -------
    ndarray
        One value per fitted row.
    """
    hat = hatvalues(res)
    pearson = np.asarray(res.residuals(type="pearson"), dtype=float)
    rank = len(res.model.exog_names)  # aliased columns are dropped: X has full rank
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (pearson / (1.0 - hat)) ** 2 * hat / (float(res.sigma) ** 2 * rank)
    out[~np.isfinite(out)] = np.nan
    return out


def _residual_variance(res: Any, newdata: pd.DataFrame, rows_given: bool) -> np.ndarray:
    """``sigma^2 / w`` for each row: the weights of the fitted rows, or of their column.

    NaN for every row when the model's weights were an array and the rows are
    new (their weights are unknown), so that no observation interval is wrong.
    """
    sigma2 = float(res.scale)
    try:
        weights = row_values(res.model, newdata, rows_given, None, "weights")
    except DataError:
        return np.full(len(newdata), np.nan)
    return np.full(len(newdata), sigma2) if weights is None else sigma2 / weights


def _row_df(res: Any, X: np.ndarray) -> np.ndarray:
    """Denominator df of each row's contrast (computed once per distinct row)."""
    if len(X) == 0:
        return np.empty(0)
    unique, inverse = np.unique(X, axis=0, return_inverse=True)
    values = np.array([contrast_test(res, row[None, :]).den_df for row in unique])
    return values[inverse.ravel()]


def _random_variance(res: Any, rows: pd.DataFrame) -> np.ndarray:
    """``sum_i z_i' Sigma_i z_i`` for each row: the random effects' marginal variance."""
    model = res.model
    total = np.zeros(len(rows))
    rows = patsy_rows(model, rows)
    for index, term in enumerate(model.random_terms):
        if term.lhs.strip() == "1":
            Z = np.ones((len(rows), 1))
        else:
            (design,) = patsy.build_design_matrices(
                [term_design(model, term.lhs)], rows, return_type="matrix"
            )
            Z = np.asarray(design, dtype=float)
        total += np.einsum("ij,jk,ik->i", Z, res.term_covariance(index), Z)
    return total


def _conditional_variance(
    res: Any, rows: pd.DataFrame, X: np.ndarray, allow_new_levels: bool
) -> np.ndarray:
    """Henderson's prediction-error variance of ``x' beta + z' b`` for each row."""
    if len(X) == 0:
        return np.empty(0)
    model = res.model
    train = scaled_z(model.random_terms, np.asarray(res.theta, dtype=float), model.theta_slices)
    weights = np.ones(train.shape[0]) if model.weights is None else model.weights
    weighted = sp.diags(weights) @ train
    system = (train.T @ weighted + sp.identity(train.shape[1])).tocsc()
    coupling = (weighted.T @ np.asarray(model.exog, dtype=float)).T  # X' W Z Lambda
    new_rows, new_level_var = _scaled_new_rows(res, rows, allow_new_levels)
    inverse, lu = _inverse_or_lu(system)
    spherical = _quadratic_diagonal(inverse, lu, new_rows)  # z' Lambda M^-1 Lambda' z
    solved_coupling = inverse @ coupling.T if inverse is not None else lu.solve(coupling.T)
    gap = X - new_rows @ solved_coupling  # x - (M^-1 Lambda' Z' W X)' Lambda' z
    bread = np.asarray(res.normalized_cov_params, dtype=float)
    fixed = np.einsum("ij,jk,ik->i", gap, bread, gap)
    return res.scale * (spherical + fixed) + new_level_var


DENSE_INVERSE_BYTES = 2 * 2**30
"""Systems whose dense inverse needs at most this much memory (three arrays of order q:
the system, its factor and the inverse; order 9459) are inverted densely for the rows'
quadratic forms, when the memory is available; larger ones are solved by their sparse LU,
a block of rows at a time (29 times slower at order 6000)."""

_BLOCK_BYTES = 64 * 2**20
"""The dense products of one block of rows take at most this much memory."""


def _inverse_or_lu(system: sp.csc_matrix) -> tuple[np.ndarray | None, Any]:
    """The dense inverse of the sparse SPD system ``M`` (small orders), else its sparse LU."""
    room = available_memory()
    limit = DENSE_INVERSE_BYTES if room is None else min(DENSE_INVERSE_BYTES, room / 2)
    if 3 * 8 * system.shape[0] ** 2 <= limit:
        return sla.cho_solve(sla.cho_factor(system.toarray()), np.eye(system.shape[0])), None
    return None, spla.splu(system)


def _quadratic_diagonal(inverse: np.ndarray | None, lu: Any, rows: sp.csr_matrix) -> np.ndarray:
    """``diag(R M^-1 R')`` for sparse rows ``R``, a block of rows at a time.

    From ``M``'s dense inverse, ``R M^-1`` costs a row's nonzeros times ``q``;
    else from its LU. The whole ``M^-1 R'`` at once was an ``(q, n)`` dense array
    (2.4 GB on InstEval's 73,421 rows and 4,114 effects), and its solve cost
    ``q^2 n``: hatvalues() took 311 s and 7.5 GB there.
    """
    n, q = rows.shape
    out = np.empty(n)
    size = max(1, _BLOCK_BYTES // (8 * max(q, 1)))
    for start in range(0, n, size):
        block = rows[start : start + size]
        # R M^-1 (M symmetric)
        products = block @ inverse if inverse is not None else lu.solve(block.T.toarray()).T
        out[start : start + size] = np.asarray(block.multiply(products).sum(axis=1)).ravel()
    return out


def _scaled_new_rows(
    res: Any, rows: pd.DataFrame, allow_new_levels: bool
) -> tuple[sp.csr_matrix, np.ndarray]:
    """``z' Lambda`` of new rows (m x q) and the variance of their unseen levels."""
    model = res.model
    blocks = []
    new_var = np.zeros(len(rows))
    for index, term in enumerate(model.random_terms):
        Z, codes = term_rows(model, index, rows, allow_new_levels)
        T = term.factor(res.theta[model.theta_slices[index]])
        scaled = Z @ T
        known = codes >= 0
        new_var[~known] += res.scale * np.sum(scaled[~known] ** 2, axis=1)
        p = term.n_cols
        row_index = np.repeat(np.flatnonzero(known), p)
        col_index = (codes[known][:, None] * p + np.arange(p)[None, :]).ravel()
        values = scaled[known].ravel()
        blocks.append(
            sp.csr_matrix((values, (row_index, col_index)), shape=(len(rows), term.n_random))
        )
    return sp.hstack(blocks, format="csr"), new_var
