"""Simulation from a fitted model and refits: lme4's ``simulate`` and ``refit``.

New random effects are drawn as ``b = Lambda u`` with ``u ~ N(0, sigma^2 I)``,
residuals as ``e ~ N(0, sigma^2 / w)``. Terms listed in ``re_formula`` (or all
terms with ``use_u=True``) keep their estimated conditional modes instead,
as lme4's ``use.u`` / ``re.form``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import DataError
from ..fitting.options import CLOSE_START_STEP
from ..frame import rows_by_label
from ..intervals.bootstrap import check_count
from ..random_effects import new_level_draws, term_contribution
from .predict import fitted_keyword, selected_terms

__all__ = ["refit", "simulate", "update_arguments"]


def simulate(
    res: Any, nsim: int = 1, *, seed: Any = None, re_formula: Any = None, use_u: bool = False
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

    Returns
    -------
    pandas.DataFrame
        Indexed like the fitted rows.
    """
    nsim = check_count("nsim", nsim)
    rng = np.random.default_rng(seed)
    model = res.model
    n = int(res.nobs)
    mean = np.asarray(model.exog, dtype=float) @ np.asarray(res.params, dtype=float)
    if model.offset is not None:
        mean = mean + model.offset
    keep = _conditioned(model, re_formula, use_u)
    sims = np.empty((n, nsim))
    for k in range(nsim):
        y = mean.copy()
        for index, term in enumerate(model.random_terms):
            if index in keep:
                effects = res.conditional_modes[index]
            else:
                T = term.factor(res.theta[model.theta_slices[index]])
                effects = new_level_draws(T, res.sigma, term.n_levels, rng)
            y += term_contribution(term.Z, term.codes, effects)
        noise = rng.standard_normal(n) * res.sigma
        if model.weights is not None:
            noise = noise / np.sqrt(model.weights)
        sims[:, k] = y + noise
    index = getattr(model.data, "row_labels", None)
    return pd.DataFrame(sims, index=index, columns=[f"sim_{k + 1}" for k in range(nsim)])


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
        by its index (in another order it is reordered; other labels are refused).
    **fit_kwargs
        Passed to :meth:`Lmer.fit`; by default the same REML setting and
        optimizer, starting from the fitted theta with a first BOBYQA step of
        a quarter of it (``initial_step=0.25``: sleepstudy's parametric
        bootstrap refits took 45 evaluations on average instead of 67).
    """
    frame = getattr(res.model.data, "frame", None)
    if isinstance(endog, pd.Series) and frame is not None:  # by label, as weights are
        endog = rows_by_label(endog, frame, "endog", "the fitted rows")
    new = res.model.with_response(endog)  # reuses the cross-products but the response's
    fit_kwargs.setdefault("reml", res.reml)
    fit_kwargs.setdefault("start_theta", res.theta)
    fit_kwargs.setdefault("initial_step", CLOSE_START_STEP)
    return new.fit(**fit_kwargs)


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
