"""Panel-data tools for random-intercept models: R^2 measures, within estimator, Hausman.

The random-intercept model ``y ~ x + (1 | entity)`` is econometrics' random
effects (RE) model, fitted here by REML or ML instead of the Swamy-Arora
moment estimator of ``linearmodels.RandomEffects`` (so the variance
components, and hence the coefficients, differ slightly). The definitions
below are ``linearmodels``' (7.1):

* R^2 measures for coefficients ``b`` (``1 - RSS / TSS``, so they can be
  negative): overall ``1 - sum (y - x b)^2 / sum (y - ybar)^2``; between on
  the entity means, ``1 - sum_i (ybar_i - xbar_i b)^2 / sum_i (ybar_i - m)^2``
  with ``m`` the simple mean of the entity means; within on the
  entity-demeaned data. Without a constant the overall and between totals are
  uncentred; with only a constant all three are 0.
* The within (fixed effects) estimator: OLS of ``y_it - ybar_i + ybar`` on
  ``x_it - xbar_i + xbar`` (the constant kept, time-invariant columns
  dropped), ``s2 = RSS / (n - k - (N - 1))``; its entity-clustered
  covariance scales ``sum_g s_g s_g'`` by ``n / (n - k)``. A constant implied
  by the dummies of a time-varying factor counts as one. Without a constant:
  OLS of ``y_it - ybar_i`` on ``x_it - xbar_i``, ``s2 = RSS / (n - k - N)``.
* The classic Hausman statistic ``(b_FE - b_RE)' (V_FE - V_RE)^-1 (b_FE - b_RE)``
  over the time-varying coefficients, chi-square with as many df.
* Mundlak's version: add the entity means of the time-varying regressors
  (over the estimation sample) and test that their coefficients are 0. With
  a cluster-robust covariance it stays valid when the model's errors are not
  homoskedastic and independent, which the classic test assumes; this is the
  recommended form. The coefficients of the time-varying regressors in that
  fit equal the within estimates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.tools.sm_exceptions import ValueWarning

from ..arguments import check_column_names, check_frame
from ..data_checks import native_byte_order
from ..exceptions import ignored_warnings, warn
from ..frame import aliased_columns
from ..terms import grouping_codes

__all__ = [
    "HausmanResult",
    "WithinEstimate",
    "hausman",
    "hausman_statistic",
    "mundlak",
    "panel_entity",
    "panel_rsquared",
    "rsquared_measures",
    "within_estimator",
]

_VARYING_TOL = 1e-10


def panel_entity(model: Any, entity: str | None = None) -> tuple[str, np.ndarray]:
    """The entity variable and its codes for the fitted rows.

    Default: the model's grouping factor when there is only one (as in
    ``y ~ x + (1 | firm)``); otherwise ``entity`` must name a column.
    """
    if entity is None:
        groups = list(dict.fromkeys(term.group for term in model.random_terms))
        if len(groups) != 1:
            raise ValueError(
                f"the model has several grouping factors ({', '.join(groups)}); "
                "pass entity= to say which one is the panel's entity"
            )
        term = model.random_terms[0]
        return term.group, term.codes
    frame = model.data.frame
    if entity not in frame.columns:
        raise KeyError(f"entity column {entity!r} is not in the fitted data")
    missing = int(frame[entity].isna().sum())
    if missing:
        raise ValueError(
            f"entity column {entity!r} has {missing} missing values among the fitted rows; "
            "give every row its entity (or fit on the rows that have one)"
        )
    codes, _ = grouping_codes(frame, (entity,))
    return entity, codes


def _entity_means(values: np.ndarray, codes: np.ndarray, n_entities: int) -> np.ndarray:
    counts = np.bincount(codes, minlength=n_entities).astype(float)
    if values.ndim == 1:
        return np.bincount(codes, values, minlength=n_entities) / counts
    return np.column_stack(
        [
            np.bincount(codes, values[:, k], minlength=n_entities) / counts
            for k in range(values.shape[1])
        ]
    )


def rsquared_measures(
    y: np.ndarray, X: np.ndarray, codes: np.ndarray, beta: np.ndarray, has_constant: bool
) -> pd.Series:
    """linearmodels' ``rsquared_within``, ``rsquared_between`` and ``rsquared_overall``.

    Parameters
    ----------
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p)
    codes : ndarray of int, shape (n,)
        Entity of each row.
    beta : ndarray, shape (p,)
        The coefficients to evaluate.
    has_constant : bool
        Whether ``X`` holds a constant column.

    Returns
    -------
    pandas.Series
        Index ``within, between, overall``.
    """
    names = ["within", "between", "overall"]
    if has_constant and X.shape[1] == 1:
        return pd.Series(0.0, index=names, name="rsquared")
    n_entities = int(codes.max()) + 1
    y_bar = _entity_means(y, codes, n_entities)
    X_bar = _entity_means(X, codes, n_entities)
    y_within = y - y_bar[codes]
    X_within = X - X_bar[codes]
    within = _one_minus_ratio(y_within - X_within @ beta, y_within)
    between_total = y_bar - y_bar.mean() if has_constant else y_bar
    between = _one_minus_ratio(y_bar - X_bar @ beta, between_total)
    overall_total = y - y.mean() if has_constant else y
    overall = _one_minus_ratio(y - X @ beta, overall_total)
    return pd.Series([within, between, overall], index=names, name="rsquared")


def _one_minus_ratio(residual: np.ndarray, total: np.ndarray) -> float:
    tss = float(total @ total)
    if tss <= np.finfo(float).eps * max(len(total), 1):
        return float("nan")
    return 1.0 - float(residual @ residual) / tss


def _regression_arrays(model: Any) -> tuple[np.ndarray, np.ndarray]:
    if model.weights is not None:
        raise ValueError("the panel tools are not available for models with prior weights")
    X = np.asarray(model.exog, dtype=float)
    y = np.asarray(model.endog, dtype=float)
    if model.offset is not None:
        y = y - model.offset
    return y, X


def _constant_column(X: np.ndarray) -> int | None:
    for k in range(X.shape[1]):
        if np.all(X[:, k] == 1.0):
            return k
    return None


def _spans_constant(X: np.ndarray) -> bool:
    """Whether a constant is a column of ``X`` or a combination of them (dummies of a factor)."""
    if _constant_column(X) is not None:
        return True
    ones = np.ones(X.shape[0])
    coef, *_ = np.linalg.lstsq(X, ones, rcond=None)
    return bool(np.linalg.norm(X @ coef - ones) < 1e-8 * np.sqrt(X.shape[0]))


def panel_rsquared(res: Any, entity: str | None = None) -> pd.Series:
    """The R^2 measures of a fit's fixed effects (see :func:`rsquared_measures`)."""
    model = res.model
    _, codes = panel_entity(model, entity)
    y, X = _regression_arrays(model)
    beta = np.asarray(res.params, dtype=float)
    return rsquared_measures(y, X, codes, beta, _spans_constant(X))


@dataclass
class WithinEstimate:
    """The within (fixed effects) estimator, as ``linearmodels.PanelOLS(entity_effects=True)``.

    Attributes
    ----------
    params : pandas.Series
        Coefficients: the constant (when the model has one: the grand mean
        ``ybar - xbar' b``) and the time-varying regressors.
    cov : pandas.DataFrame
        Unadjusted covariance ``s2 (X*' X*)^-1``.
    cov_clustered : pandas.DataFrame
        Clustered by entity, scaled by ``n / (n - k)``.
    s2 : float
        ``RSS / (n - k - (N - 1))`` (``RSS / (n - k - N)`` without a constant).
    nobs, n_entities, df_resid : int
    entity : str
    dropped : list of str
        Time-invariant columns, absorbed by the entity effects, and the
        ``collinear`` ones.
    rsquared : pandas.Series
        The R^2 measures of ``params``.
    collinear : list of str
        Time-varying columns that are linear combinations of the others once
        demeaned by entity (experience next to year dummies), dropped as plm
        drops them.
    """

    params: pd.Series
    cov: pd.DataFrame
    cov_clustered: pd.DataFrame
    s2: float
    nobs: int
    n_entities: int
    df_resid: int
    entity: str
    dropped: list[str] = field(default_factory=list)
    rsquared: pd.Series | None = None
    collinear: list[str] = field(default_factory=list)

    @property
    def bse(self) -> pd.Series:
        """Unadjusted standard errors."""
        return pd.Series(np.sqrt(np.diag(self.cov)), index=self.params.index, name="bse")


def _time_varying(X: np.ndarray, codes: np.ndarray, n_entities: int) -> np.ndarray:
    demeaned = X - _entity_means(X, codes, n_entities)[codes]
    scale = np.maximum(np.abs(X).max(axis=0), 1.0)
    return np.abs(demeaned).max(axis=0) > _VARYING_TOL * scale


def within_estimator(res: Any, entity: str | None = None) -> WithinEstimate:
    """The within estimator of a model's fixed part, by entity.

    Parameters
    ----------
    res : LmerResults
        A fit (only its data and fixed-effects design are used).
    entity : str, optional
        The entity column; default the model's only grouping factor.

    Returns
    -------
    WithinEstimate
    """
    model = res.model
    name, codes = panel_entity(model, entity)
    y, X = _regression_arrays(model)
    n_entities = int(codes.max()) + 1
    names = list(model.exog_names)
    constant = _constant_column(X)
    varying = _time_varying(X, codes, n_entities)
    if constant is None and _spans_constant(X) and not _spans_constant(X[:, varying]):
        # the constant is implied by time-invariant dummies (0 + C(sector) + x): made
        # explicit, as with C(sector) + x (without it R^2 between came out as -2.7)
        X, names, constant = np.column_stack([np.ones(len(y)), X]), ["Intercept", *names], 0
        varying = np.concatenate([[False], varying])
    keep = [k for k in range(X.shape[1]) if varying[k] or k == constant]
    if not np.any(varying):
        raise ValueError(
            f"no regressor of the model varies within the entities of {name!r}: the within "
            "estimator is empty (is entity= the panel's entity?)"
        )
    Xk = X[:, keep]
    y_star = y - _entity_means(y, codes, n_entities)[codes]
    X_star = Xk - _entity_means(Xk, codes, n_entities)[codes]
    has_constant = _spans_constant(Xk)
    if has_constant:
        # the grand means put back give the constant (explicit, or implied by
        # the dummies of a time-varying factor) its meaning, as linearmodels
        y_star += y.mean()
        X_star += Xk.mean(axis=0)
    if constant is not None:
        X_star[:, keep.index(constant)] = 1.0
    collinear = aliased_columns(X_star)  # e.g. experience next to year dummies
    absorbed = [names[keep[j]] for j in collinear]
    if collinear:
        verb = "is a linear combination" if len(collinear) == 1 else "are linear combinations"
        warn(
            f"{', '.join(absorbed)} {verb} of the other regressors once demeaned by entity: "
            "dropped from the within estimator (as plm drops them)",
            ValueWarning,
        )
        X_star = np.delete(X_star, collinear, axis=1)
        keep = [k for j, k in enumerate(keep) if j not in collinear]
    beta, *_ = np.linalg.lstsq(X_star, y_star, rcond=None)
    resid = y_star - X_star @ beta
    n, k = X_star.shape
    # every entity has its own effect: N of them, one taken by the constant
    df_resid = n - k - n_entities + has_constant
    s2 = float(resid @ resid) / df_resid
    xtx_inv = np.linalg.inv(X_star.T @ X_star)
    scores = np.column_stack(
        [np.bincount(codes, X_star[:, j] * resid, minlength=n_entities) for j in range(k)]
    )
    clustered = xtx_inv @ (n / (n - k) * scores.T @ scores) @ xtx_inv
    kept = [names[j] for j in keep]
    full_beta = np.zeros(X.shape[1])
    full_beta[keep] = beta
    return WithinEstimate(
        params=pd.Series(beta, index=kept, name="params"),
        cov=pd.DataFrame(s2 * xtx_inv, index=kept, columns=kept),
        cov_clustered=pd.DataFrame(clustered, index=kept, columns=kept),
        s2=s2,
        nobs=n,
        n_entities=n_entities,
        df_resid=df_resid,
        entity=name,
        dropped=[names[j] for j in range(X.shape[1]) if j not in keep],
        rsquared=rsquared_measures(y, X, codes, full_beta, _spans_constant(X)),
        collinear=absorbed,
    )


@dataclass
class HausmanResult:
    """A test of random against fixed effects.

    Attributes
    ----------
    statistic : float
        Chi-square statistic, or the F statistic of a cluster-robust Mundlak test.
    df : int
        Number of coefficients compared (numerator df).
    pvalue : float
    distribution : str
        ``"chi2"`` or ``"F"``.
    df_denom : float or None
        Denominator df of an F test (HTZ).
    method : str
        ``"classic"`` or ``"mundlak"``.
    cov_type : str
        The covariance used.
    coefficients : list of str
        The regressors compared (time-varying).
    wald : float
        The Wald chi-square statistic (the classic statistic, or Mundlak's
        ``(R b)' (R V R')^-1 (R b)`` with the chosen covariance).
    fit : object or None
        The Mundlak fit (for ``method="mundlak"``).
    """

    statistic: float
    df: int
    pvalue: float
    distribution: str
    df_denom: float | None
    method: str
    cov_type: str
    coefficients: list[str]
    wald: float
    fit: Any = None

    def __str__(self) -> str:
        dist = "chi2" if self.distribution == "chi2" else f"F({self.df}, {self.df_denom:.2f})"
        lines = [
            f"Hausman test ({self.method}, {self.cov_type} covariance): random vs fixed effects",
            f"H0: the random effects are uncorrelated with {', '.join(self.coefficients)}",
            f"statistic = {self.statistic:.4f} ~ {dist}"
            + (f" with {self.df} df" if self.distribution == "chi2" else "")
            + f", p-value = {self.pvalue:.4g}",
        ]
        return "\n".join(lines)


def hausman_statistic(
    b_fe: np.ndarray, cov_fe: np.ndarray, b_re: np.ndarray, cov_re: np.ndarray
) -> tuple[float, int, float]:
    """``(b_FE - b_RE)' (V_FE - V_RE)^-1 (b_FE - b_RE)``, its df and chi-square p-value.

    When ``V_FE - V_RE`` is not positive definite a pseudo-inverse over its
    positive eigenvalues is used, with a warning, and the df is their number.
    The coefficients are first put on the scale of their FE standard errors:
    the statistic does not change, and the eigenvalue cut no longer depends on
    the regressors' units (population in persons dropped a direction).
    """
    scale = np.sqrt(np.maximum(np.diag(np.asarray(cov_fe, dtype=float)), np.finfo(float).tiny))
    diff = (np.asarray(b_fe, dtype=float) - np.asarray(b_re, dtype=float)) / scale
    var = (np.asarray(cov_fe, dtype=float) - np.asarray(cov_re, dtype=float)) / np.outer(
        scale, scale
    )
    values, vectors = np.linalg.eigh((var + var.T) / 2)
    positive = values > 1e-12 * max(np.abs(values).max(), 1e-300)
    if not positive.all():
        warn(
            "V_FE - V_RE is not positive definite; the Hausman statistic uses its "
            "pseudo-inverse (the robust Mundlak form, method='mundlak', avoids this)",
            ValueWarning,
        )
    projected = vectors[:, positive].T @ diff
    statistic = float(np.sum(projected**2 / values[positive]))
    df = int(positive.sum())
    return statistic, df, float(stats.chi2.sf(statistic, df))


def hausman(
    res: Any,
    method: str = "mundlak",
    cov_type: str | None = None,
    entity: str | None = None,
) -> HausmanResult:
    """Test random effects against fixed effects for a random-intercept model.

    Parameters
    ----------
    res : LmerResults
        The random effects fit, e.g. of ``y ~ x + (1 | entity)``.
    method : {"mundlak", "classic"}
        ``"mundlak"`` (recommended): refit with the entity means of the
        time-varying regressors and test their coefficients; ``"classic"``:
        Hausman's contrast of the within estimator (computed here) and the
        fit's own estimates with their model-based covariances.
    cov_type : {"CR2", "CR1S", "CR1", "CR0", "nonrobust"}
        For ``"mundlak"``: cluster-robust by entity (an F test with
        clubSandwich's HTZ df) or model-based (a chi-square Wald test).
        Default CR2. ``"classic"`` uses the model-based covariances
        (Hausman's contrast needs them): a ``cov_type`` other than
        ``"nonrobust"`` is refused.
    entity : str, optional
        The entity column; default the model's only grouping factor.

    Returns
    -------
    HausmanResult
    """
    groups = list(dict.fromkeys(term.group for term in res.model.random_terms))
    if len(groups) > 1:
        raise ValueError(
            f"hausman() tests a one-way random-effects model; this one has random effects "
            f"for {', '.join(groups)}. For two-way panels keep the entity random and make "
            "time fixed, e.g. y ~ x + C(year) + (1 | firm) (a one-way within estimator "
            "would be compared with a two-way fit)"
        )
    if cov_type is not None and not isinstance(cov_type, str):
        raise TypeError(f"cov_type must be a string such as 'CR2', got {cov_type!r}")
    if method == "classic":
        if cov_type not in (None, "nonrobust"):
            raise ValueError(
                f"method='classic' compares the model-based (nonrobust) covariances; "
                f"cov_type={cov_type!r} applies to method='mundlak' only"
            )
        return _classic(res, entity)
    if method == "mundlak":
        return _mundlak(res, cov_type or "CR2", entity)
    raise ValueError(f"method must be 'mundlak' or 'classic'; got {method!r}")


def _classic(res: Any, entity: str | None) -> HausmanResult:
    within = within_estimator(res, entity)
    if within.collinear:
        raise ValueError(
            f"the classic Hausman test compares coefficients both fits identify, but "
            f"{', '.join(within.collinear)} is absorbed by the other regressors once "
            "demeaned by entity (e.g. experience by year dummies): drop one of them from "
            "the formula (plm drops the last year dummy), or use method='mundlak'"
        )
    constant = _constant_names(res)
    exog_names = set(res.model.exog_names)  # not an Intercept made explicit by the within fit
    names = [n for n in within.params.index if n not in constant and n in exog_names]
    positions = [list(res.model.exog_names).index(n) for n in names]
    b_re = np.asarray(res.params, dtype=float)[positions]
    cov_re = np.asarray(res.normalized_cov_params, dtype=float)[np.ix_(positions, positions)]
    statistic, df, pvalue = hausman_statistic(
        within.params[names].to_numpy(),
        within.cov.loc[names, names].to_numpy(),
        b_re,
        cov_re * res.scale,
    )
    return HausmanResult(
        statistic, df, pvalue, "chi2", None, "classic", "nonrobust", names, statistic
    )


def _constant_names(res: Any) -> set[str]:
    X = np.asarray(res.model.exog, dtype=float)
    k = _constant_column(X)
    return set() if k is None else {list(res.model.exog_names)[k]}


def _mundlak(res: Any, cov_type: str, entity: str | None) -> HausmanResult:
    model = res.model
    name, codes = panel_entity(model, entity)
    _, X = _regression_arrays(model)
    n_entities = int(codes.max()) + 1
    varying = _time_varying(X, codes, n_entities)
    names = [n for n, v in zip(model.exog_names, varying) if v]
    if not names:
        raise ValueError(
            f"no regressor of the model varies within the entities of {name!r}: there is "
            "no time-varying regressor to test (is entity= the panel's entity?)"
        )
    means = _entity_means(X[:, varying], codes, n_entities)[codes]
    frame = model.data.frame.copy()
    columns = _free_names([f"mean_{_plain(n)}" for n in names], frame.columns)
    for column, values in zip(columns, means.T):
        frame[column] = values
    formula = model.lmer_formula + "".join(f" + {c}" for c in columns)
    # means constant across entities are aliased with the intercept and dropped
    with ignored_warnings(message="fixed-effect model matrix is rank deficient"):
        fit = res.update(formula, data=frame, offset=model.offset_argument, subset=None)
    kept = [(n, c) for n, c in zip(names, columns) if c in fit.model.exog_names]
    if not kept:
        raise ValueError(
            f"the entity means of {', '.join(names)} do not vary across entities (a "
            "balanced design): the random and fixed effects estimates coincide and "
            "there is nothing to test"
        )
    names, columns = [n for n, _ in kept], [c for _, c in kept]
    restriction = np.zeros((len(columns), len(fit.model.exog_names)))
    for row, column in enumerate(columns):
        restriction[row, list(fit.model.exog_names).index(column)] = 1.0
    if str(cov_type).lower() == "nonrobust":
        wald = fit.wald_test(restriction, use_f=False, scalar=True)
        statistic = float(np.squeeze(wald.statistic))
        pvalue = float(stats.chi2.sf(statistic, len(columns)))
        return HausmanResult(
            statistic,
            len(columns),
            pvalue,
            "chi2",
            None,
            "mundlak",
            "nonrobust",
            names,
            statistic,
            fit,
        )
    robust = fit.get_robustcov_results(cov_type, groups=pd.Series(codes, name=name))
    test = robust.f_test(restriction)
    wald = robust.wald_test(restriction, use_f=False, scalar=True)
    return HausmanResult(
        float(np.squeeze(test.fvalue)),
        len(columns),
        float(test.pvalue),
        "F",
        float(test.df_denom),
        "mundlak",
        robust.cov_kwds["description"],
        names,
        float(np.squeeze(wald.statistic)),
        robust,
    )


def _plain(name: str) -> str:
    return re.sub(r"\W+", "_", name).strip("_") or "x"


def _free_names(names: list[str], taken: Any) -> list[str]:
    used = set(map(str, taken))
    out = []
    for candidate in names:
        while candidate in used:
            candidate += "_"
        used.add(candidate)
        out.append(candidate)
    return out


def mundlak(
    data: pd.DataFrame, columns: str | list[str], by: str, prefix: str = "mean_"
) -> pd.DataFrame:
    """Add the entity means of columns (Mundlak's correlated random effects device).

    Parameters
    ----------
    data : pandas.DataFrame
        Not modified; a new frame is returned. Drop the rows the model will
        not use (missing values) first, so that the means are over the
        estimation sample.
    columns : str or list of str
        Numeric columns.
    by : str
        The entity column.
    prefix : str
        The new columns are ``prefix + column``; they must not be in the data
        already (``ValueError``, e.g. with ``prefix=""``).

    Returns
    -------
    pandas.DataFrame
        With ``mean_x`` (the mean of ``x`` within each entity) for each column.
    """
    check_frame(data)
    columns = check_column_names(columns)
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {prefix!r}")
    if by not in data.columns:
        raise KeyError(f"entity column {by!r} is not in the data")
    for column in columns:
        if column not in data.columns:
            raise KeyError(f"column {column!r} is not in the data")
    sources = {*columns, by}
    taken = [f"{prefix}{column}" for column in columns if f"{prefix}{column}" in sources]
    if taken:
        raise ValueError(
            f"prefix {prefix!r} would overwrite the columns {taken} the means are taken "
            "from; choose another prefix"
        )
    out = native_byte_order(data).copy()  # grouped by its columns, which pandas must hash
    for column in columns:
        values = pd.to_numeric(data[column], errors="raise").astype(float)
        out[f"{prefix}{column}"] = values.groupby(out[by], observed=True).transform("mean")
    return out
