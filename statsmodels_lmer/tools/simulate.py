"""Simulation from a fitted model and refits: lme4's ``simulate`` and ``refit``.

New random effects are drawn as ``b = Lambda u`` with ``u ~ N(0, sigma^2 I)``,
residuals as ``e ~ N(0, sigma^2 / w)``. Terms listed in ``re_formula`` (or all
terms with ``use_u=True``) keep their estimated conditional modes instead,
as lme4's ``use.u`` / ``re.form``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..arguments import check_bool, check_count, check_frame, check_positive, random_generator
from ..distributed.dask_fit import is_dask_frame
from ..exceptions import DataError
from ..fitting.options import CLOSE_START_STEP
from ..frame import rows_by_label
from ..random_effects import new_level_draws, term_contribution
from ..terms import row_level_keys
from .predict import (
    complete_rows,
    fitted_frame,
    fitted_keyword,
    fitted_types,
    fixed_matrix,
    patsy_rows,
    row_offsets,
    row_values,
    selected_terms,
    term_rows,
)

__all__ = ["refit", "simulate", "simulation_parameters", "update_arguments"]


def simulate(
    res: Any,
    nsim: int = 1,
    *,
    seed: Any = None,
    re_formula: Any = None,
    use_u: bool = False,
    newdata: pd.DataFrame | None = None,
    newparams: dict[str, Any] | None = None,
    allow_new_levels: bool = False,
    weights: Any = None,
    offset: Any = None,
) -> pd.DataFrame:
    """Simulated responses, one column per simulation (``sim_1``, ...).

    Parameters
    ----------
    nsim : int
        Number of simulated response vectors.
    seed : int or numpy.random.Generator, optional
        Seed for reproducible draws.
    re_formula : str, optional
        Random-effects terms to condition on (keep their estimates), e.g.
        ``"~ (1 | Subject)"``; the others are drawn anew.
    use_u : bool
        Condition on all estimated random effects (lme4's ``use.u = TRUE``).
    newdata : pandas.DataFrame, optional
        Rows to simulate for instead of the fitted ones (lme4's ``newdata``),
        e.g. a planned design for a power analysis; the response column is not
        needed. Random effects are drawn for each level present in ``newdata``
        (seen in fitting or not); a conditioned term keeps the estimates of
        the levels seen in fitting and draws new levels, which need
        ``allow_new_levels`` (lme4 gives them 0 instead). Rows with a missing
        value in a used column give NaN.
    newparams : dict, optional
        Parameters to simulate from instead of the estimates (lme4's
        ``newparams``): any of ``"beta"`` (one value per fixed effect, or a
        mapping from their names), ``"theta"`` (lme4's order,
        :attr:`Lmer.theta_names`, or a mapping from all those names) and
        ``"sigma"``. Not with ``use_u`` or ``re_formula`` when it changes
        theta or sigma (the estimated random effects belong to the fitted ones).
    allow_new_levels : bool
        Accept levels of a conditioned term not seen in fitting (drawn anew).
        Terms that are not conditioned draw every level anyway, seen or not
        (lme4 asks for ``allow.new.levels`` there too).
    weights, offset : array_like or str, optional
        Prior weights (the residual variance is ``sigma^2 / w``) and offset of
        the rows of ``newdata`` (only with ``newdata``); by default from the
        columns the model took them from (lme4 uses weights of 1 for
        ``newdata``). A model fitted with arrays needs them for new rows.

    Returns
    -------
    pandas.DataFrame
        Indexed like the fitted rows, or like ``newdata``.
    """
    nsim = check_count("nsim", nsim)
    rng = random_generator(seed)
    use_u = check_bool("use_u", use_u)
    allow_new_levels = check_bool("allow_new_levels", allow_new_levels)
    model = res.model
    beta, theta, sigma = simulation_parameters(res, newparams)
    keep = _conditioned(model, re_formula, use_u)
    if keep and newparams is not None and ({"theta", "sigma"} & set(newparams)):
        raise ValueError(
            "newparams with theta or sigma cannot be combined with use_u or re_formula: "
            "the estimated random effects belong to the fitted parameters"
        )
    if newdata is None:
        if weights is not None or offset is not None:
            raise ValueError(
                "weights= and offset= are for the rows of newdata; the fitted rows keep the "
                "model's (update() the model to change them)"
            )
        rows = _fitted_rows(res, beta, keep)
    else:
        rows = _new_rows(res, newdata, beta, keep, allow_new_levels, weights, offset)
    factors = [
        term.factor(theta[model.theta_slices[index]])
        for index, term in enumerate(model.random_terms)
    ]
    sims = np.full((len(rows.complete), nsim), np.nan)
    n = int(rows.complete.sum())
    for k in range(nsim):
        y = rows.mean.copy()
        for index, (Z, codes, kept) in enumerate(rows.terms):
            drawn = np.isnan(kept[:, 0]) if kept.size else np.zeros(0, dtype=bool)
            effects = kept
            if drawn.any():  # no draw for a fully conditioned term (the same stream as lme4)
                effects = new_level_draws(factors[index], sigma, len(kept), rng)
                effects[~drawn] = kept[~drawn]
            y += term_contribution(Z, codes, effects)
        noise = rng.standard_normal(n) * sigma
        if rows.weights is not None:
            noise = noise / np.sqrt(rows.weights)
        sims[rows.complete, k] = y + noise
    return pd.DataFrame(sims, index=rows.index, columns=[f"sim_{k + 1}" for k in range(nsim)])


@dataclass
class _SimulationRows:
    """What a simulation needs of its rows (the complete ones, in order).

    ``terms`` holds per random term its columns ``Z``, each row's level code and
    the estimated effects of the levels to keep (a NaN row: drawn anew).
    """

    mean: np.ndarray
    terms: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    weights: np.ndarray | None
    complete: np.ndarray
    index: Any


def _fitted_rows(res: Any, beta: np.ndarray, keep: set[int]) -> _SimulationRows:
    model = res.model
    model.require_data("Simulations of the fitted rows")
    mean = np.asarray(model.exog, dtype=float) @ beta
    if model.offset is not None:
        mean = mean + model.offset
    terms = []
    for index, term in enumerate(model.random_terms):
        kept = np.full((term.n_levels, term.n_cols), np.nan)
        if index in keep:
            kept = np.asarray(res.conditional_modes[index], dtype=float)
        terms.append((term.Z, term.codes, kept))
    complete = np.ones(len(mean), dtype=bool)
    index = getattr(model.data, "row_labels", None)
    return _SimulationRows(mean, terms, model.weights, complete, index)


def _new_rows(
    res: Any,
    newdata: Any,
    beta: np.ndarray,
    keep: set[int],
    allow_new_levels: bool,
    weights: Any,
    offset: Any,
) -> _SimulationRows:
    model = res.model
    if model.partitions is not None or is_dask_frame(newdata):
        raise TypeError(
            "simulate(newdata=) needs an in-memory model and a pandas DataFrame; "
            "compute() the data first"
        )
    check_frame(newdata, "newdata")
    fitted_frame(model)  # a model built from arrays has no formula to evaluate
    newdata = fitted_types(model, newdata)
    every_term = [(i, list(range(t.n_cols))) for i, t in enumerate(model.random_terms)]
    complete = complete_rows(model, newdata, every_term)
    row_offset = row_offsets(model, newdata, True, offset)
    row_weights = row_values(model, newdata, True, weights, "weights")
    for values in (row_offset, row_weights):
        if values is not None:
            complete &= ~np.isnan(values)
    rows = newdata.loc[complete]
    mean = fixed_matrix(model, rows) @ beta
    if row_offset is not None:
        mean = mean + row_offset[complete]
    terms = []
    for index, term in enumerate(model.random_terms):
        try:
            Z, fitted_codes = term_rows(model, index, rows, index not in keep or allow_new_levels)
        except DataError as err:  # a conditioned term's new levels
            text = str(err).split("; pass allow_new_levels")[0]
            raise DataError(
                f"{text}; the term is conditioned on its estimates (use_u / re_formula): "
                "pass allow_new_levels=True to draw new levels anew"
            ) from None
        codes, first = pd.factorize(row_level_keys(term, patsy_rows(model, rows)))
        kept = np.full((len(first), term.n_cols), np.nan)
        if index in keep:
            level_codes = fitted_codes[np.unique(codes, return_index=True)[1]]
            seen = level_codes >= 0
            kept[seen] = np.asarray(res.conditional_modes[index], dtype=float)[level_codes[seen]]
        terms.append((Z, codes, kept))
    if row_weights is not None:
        row_weights = row_weights[complete]
    return _SimulationRows(mean, terms, row_weights, complete, newdata.index)


def simulation_parameters(
    res: Any, newparams: dict[str, Any] | None
) -> tuple[np.ndarray, np.ndarray, float]:
    """``(beta, theta, sigma)``: the estimates, with ``newparams``' values where given.

    Raises
    ------
    ValueError
        An unknown key, a wrong length, a theta below its lower bounds, a
        non-positive or non-finite value.
    KeyError
        ``beta`` as a mapping with names that are not fixed effects.
    """
    model = res.model
    beta = np.asarray(res.params, dtype=float).copy()
    theta = np.asarray(res.theta, dtype=float).copy()
    sigma = float(res.sigma)
    if newparams is None:
        return beta, theta, sigma
    unknown = set(newparams) - {"beta", "theta", "sigma"}
    if unknown:
        raise ValueError(
            f"newparams has unknown keys {sorted(unknown)}; use 'beta', 'theta' and 'sigma'"
        )
    if "beta" in newparams:
        beta = _new_beta(newparams["beta"], list(model.exog_names), beta)
    if "theta" in newparams:
        theta = _new_theta(newparams["theta"], model.theta_names)
        if theta.size != len(model.theta_lower):
            raise ValueError(
                f"newparams['theta'] needs {len(model.theta_lower)} values "
                f"({', '.join(model.theta_names)}), got {theta.size}"
            )
        if not np.all(np.isfinite(theta)) or np.any(theta < model.theta_lower):
            raise ValueError("newparams['theta'] must be finite, with diagonal elements at least 0")
    if "sigma" in newparams:
        sigma = check_positive("newparams['sigma']", newparams["sigma"])
    return beta, theta, sigma


def _new_theta(given: Any, names: list[str]) -> np.ndarray:
    """theta as an array in lme4's order; a mapping must name every element."""
    if isinstance(given, dict | pd.Series):
        values = dict(given)
        unknown = [name for name in values if name not in names]
        absent = [name for name in names if name not in values]
        if unknown or absent:
            raise KeyError(
                f"newparams['theta'] as a mapping needs exactly the names {names}; "
                f"unknown {unknown}, absent {absent}"
            )
        return np.array([float(values[name]) for name in names])
    return np.asarray(given, dtype=float).ravel()


def _new_beta(given: Any, names: list[str], estimate: np.ndarray) -> np.ndarray:
    if isinstance(given, dict | pd.Series):
        values = dict(given)
        unknown = [name for name in values if name not in names]
        if unknown:
            raise KeyError(
                f"newparams['beta'] names {unknown} that are not fixed effects ({', '.join(names)})"
            )
        beta = estimate.copy()
        for name, value in values.items():
            beta[names.index(name)] = float(value)
    else:
        beta = np.asarray(given, dtype=float).ravel()
        if beta.size != len(names):
            raise ValueError(
                f"newparams['beta'] needs {len(names)} values ({', '.join(names)}), got {beta.size}"
            )
    if not np.all(np.isfinite(beta)):
        raise ValueError("newparams['beta'] must be finite")
    return beta


def _conditioned(model: Any, re_formula: Any, use_u: bool) -> set[int]:
    if use_u:
        return set(range(len(model.random_terms)))
    if re_formula is None:
        return set()
    return {index for index, _ in selected_terms(model, re_formula)}


def refit(res: Any, endog: Any, **fit_kwargs: Any) -> Any:
    """The same model fitted to a new response vector (lme4's ``refit``).

    Parameters
    ----------
    endog : array_like, shape (nobs,)
        New response for the fitted rows; a pandas Series is matched to them
        by its index (in another order it is reordered; other labels are
        refused). As lme4's ``refit``, one value per row of the data also
        works when rows were dropped for missing values: a Series with the
        data's labels, or an array of the data's length whose dropped rows'
        values are ignored.
    **fit_kwargs
        Passed to :meth:`Lmer.fit`; by default the same REML setting and the
        optimizer the fit was asked for (``method=``; else the default choice),
        starting from the fitted theta with a first BOBYQA step of
        a quarter of it (``initial_step=0.25``: sleepstudy's parametric
        bootstrap refits took 45 evaluations on average instead of 67).
    """
    if endog is None:
        raise TypeError("refit() needs the new response: one number per fitted row")
    res.model.require_data("refit() and its cross-products")
    new = res.model.with_response(
        _fitted_rows_response(res.model, endog)
    )  # reuses the cross-products but the response's
    fit_kwargs.setdefault("reml", res.reml)
    method = getattr(getattr(res, "opt_summary", None), "options", None)
    if method is not None and method.method is not None:  # the optimizer the user chose
        fit_kwargs.setdefault("method", method.method)
    fit_kwargs.setdefault("start_theta", res.theta)
    fit_kwargs.setdefault("initial_step", CLOSE_START_STEP)
    return new.fit(**fit_kwargs)


def _fitted_rows_response(model: Any, endog: Any) -> Any:
    """``refit``'s response for the fitted rows: a Series by label; one value per row of
    the data (lme4 takes those when rows were dropped) without the dropped rows."""
    frame = getattr(model.data, "frame", None)
    dropped = model.dropped_rows if model.dropped_rows is not None else np.empty(0, int)
    whole = int(model.nobs) + len(dropped)  # rows of the data
    if isinstance(endog, pd.Series) and frame is not None:  # by label, as weights are
        if len(dropped) and len(endog) == whole:
            labels = endog.index
            if not (labels.is_unique and frame.index.isin(labels).all()):
                raise DataError(
                    f"endog is a pandas Series of {whole} values, one per row of the data, "
                    "but its labels are not the data's: pass endog.to_numpy() to take them "
                    "in the order of the data's rows"
                )
            return endog.reindex(frame.index)
        return rows_by_label(endog, frame, "endog", "the fitted rows")
    values = np.asarray(endog)
    if values.ndim == 2 and 1 in values.shape:  # a column or a row
        values = values.ravel()
    if len(dropped) and values.ndim == 1 and len(values) == whole:
        return np.delete(values, dropped)
    return values


def update_arguments(
    model: Any, data: Any, model_kwargs: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """The data and model keywords of ``update``: the model's own unless given.

    Without new data, the fitted rows with their weights and offset (the
    ``offset=`` keyword's; the formula's ``offset(...)`` terms are evaluated
    again from the formula). With new data, the weights and offset come from
    the same columns; a model whose
    weights or offset were arrays cannot know them for other data, so they
    must be given. The formula is evaluated as the model's was (restricted,
    or with the names its formula used).

    ``missing`` is carried. ``subset`` is not: for new data it must be given
    again (lme4 evaluates its subset expression in the new data; a mask of the
    old rows means nothing there).

    Raises
    ------
    DataError
        New data for a model fitted with weight or offset arrays, or with
        ``subset=``, without them.
    """
    kwargs = dict(model_kwargs)
    kwargs.setdefault("missing", getattr(model, "missing", "drop"))
    if data is not None and getattr(model, "subset_given", False) and "subset" not in kwargs:
        raise DataError(
            "the model was fitted with subset=: pass subset= for the new data (a selection "
            "of its rows, e.g. subset=d2.Days < 8, as lme4 reads its subset in the new "
            "data), or subset=None for all of them"
        )
    for what in ("weights", "offset"):
        column = getattr(model, f"{what}_column", None)
        if what in kwargs:
            continue
        if data is None:
            kwargs[what] = column if column is not None else fitted_keyword(model, what)
        elif column is not None:
            kwargs[what] = column
        elif fitted_keyword(model, what) is not None:
            raise DataError(
                f"the model was fitted with {what} given as an array: pass {what}= for the "
                "new data (or None to fit without)"
            )
    own = getattr(model.data, "transform_data", None)
    if data is None and own is not None:  # the statistics of the model's transforms
        kwargs.setdefault("transform_data", own)
    if model.restricted:
        kwargs.setdefault("restricted", True)
    else:
        kwargs.setdefault("eval_env", model.formula_env())
    return (model.data.frame if data is None else data), kwargs
