"""Model comparison: likelihood-ratio tables (lme4's ``anova``), ``ranova``, ``drop1``.

* :func:`anova` compares nested fits by likelihood ratio, as lme4's
  ``anova(m0, m1)``: REML fits are refitted by ML first.
* :func:`ranova` removes or reduces each random-effects term in turn, as
  lmerTest's ``ranova`` (likelihood ratio, REML kept for REML fits).
* :func:`drop1` drops each marginal fixed-effect term: F tests with
  Satterthwaite/Kenward-Roger df (lmerTest) or likelihood-ratio tests (lme4).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import patsy
from scipy import stats
from statsmodels.tools.sm_exceptions import ValueWarning

from ..arguments import check_bool
from ..engine.objective import profiled_criterion
from ..exceptions import DataError, ignored_warnings, warn
from ..formula import BarTerm, parse_formula
from ..inference.contrasts import fixed_terms, marginal_terms
from ..inference.hypotheses import drop1_f_table
from ..tables import LmerTable, model_heading
from ..terms import term_level_keys

__all__ = [
    "REFIT_NOTE",
    "anova",
    "check_comparable",
    "drop1",
    "drop1_scope",
    "krmodcomp",
    "model_restriction",
    "random_reductions",
    "ranova",
    "refit_formula",
    "satmodcomp",
]


def anova(
    *results: Any,
    names: list[str] | None = None,
    refit: bool = True,
    type: int | str | None = None,
    ddf: str | None = None,
) -> pd.DataFrame:
    """Likelihood-ratio comparison of nested models, as lme4's ``anova``.

    With one model, its ANOVA table (lmerTest's ``anova(m)``: type III,
    Satterthwaite's df, or ``type=``/``ddf=`` as :meth:`LmerResults.anova`).

    Parameters
    ----------
    *results : LmerResults
        One fit, or two or more fits to the same data.
    names : list of str, optional
        Row labels; default ``model_1, model_2, ...`` in the order given.
    refit : bool
        Refit REML fits by ML first (lme4's default, and the table's
        ``refit_ml`` attribute and printed note say so). ``refit=False``
        compares the REML likelihoods as they are, which is meaningful only
        when the models have the same fixed effects (a warning says when
        they do not).
    type, ddf
        For one model: the ANOVA table's type and df method (default 3 and
        Satterthwaite). Refused with several models, whose comparison is a
        likelihood-ratio test.

    Returns
    -------
    pandas.DataFrame
        Ordered by number of parameters, with columns ``formula, npar, AIC,
        BIC, llf, deviance, chisq, df, pvalue``; printed as lme4 prints it.
        As in lme4, ``deviance`` is ``-2 llf`` (the REML criterion for REML
        fits compared with ``refit=False``) and ``chisq`` is
        ``2 max(0, llf - llf_previous)``: never negative.

    Raises
    ------
    DataError
        When the models were not fitted to the same observations.
    """
    if not results:
        raise ValueError("anova() needs one fitted model (its ANOVA table) or several to compare")
    _check_results(results)
    refit = check_bool("refit", refit)
    if len(results) == 1:
        return results[0].anova(type=3 if type is None else type, ddf=ddf or "satterthwaite")
    if type is not None or ddf is not None:
        raise TypeError(
            "type= and ddf= apply to one model's ANOVA table; anova() of several models "
            "is a likelihood-ratio comparison"
        )
    for res in results:
        res.model.require_data("anova() of several models (ML refits and data checks)")
    if names is not None and (
        isinstance(names, str)
        or len(set(map(str, names))) != len(list(names))
        or not all(isinstance(n, str) for n in names)
    ):
        raise ValueError(f"names must be a list of distinct strings, one per model, got {names!r}")
    names = list(names) if names is not None else [f"model_{i + 1}" for i in range(len(results))]
    if len(names) != len(results):
        raise ValueError("names must have one entry per model")
    _check_same_data(results)
    fits = _comparable_fits(results, refit)
    refitted = refit and any(res.reml for res in results)
    rows = []
    for name, res in zip(names, fits):
        formula = getattr(res.model, "lmer_formula", None) or ""
        rows.append((name, formula, res.n_params, res.aic, res.bic, res.llf, -2.0 * res.llf))
    table = pd.DataFrame(
        rows, columns=["model", "formula", "npar", "AIC", "BIC", "llf", "deviance"]
    ).set_index("model")
    table = table.iloc[np.argsort(table["npar"].to_numpy(), kind="stable")]
    chisq = 2 * np.maximum(0.0, np.diff(table["llf"].to_numpy()))  # lme4: pmax(0, .)
    dfs = np.diff(table["npar"].to_numpy())
    table["chisq"] = np.concatenate([[np.nan], chisq])
    table["df"] = np.concatenate([[np.nan], dfs])
    with np.errstate(invalid="ignore"):
        table["pvalue"] = np.concatenate(
            [[np.nan], np.where(dfs > 0, stats.chi2.sf(chisq, np.maximum(dfs, 1)), np.nan)]
        )
    table.attrs["refit_ml"] = refitted
    heading = []
    if refitted:
        table.attrs["note"] = REFIT_NOTE
        heading.append(REFIT_NOTE)
    data_name = getattr(results[0].model, "data_name", None)
    if data_name:
        heading.append(f"Data: {data_name}")
    heading.append("Models:")
    heading.extend(f"{name}: {formula}" for name, formula in table["formula"].items())
    return LmerTable.from_frame(table, heading, hidden_columns=["formula"])


REFIT_NOTE = "refitting model(s) with ML (instead of REML)"
"""lme4's message when ``anova`` refits REML fits by maximum likelihood."""


def _comparable_fits(results: tuple[Any, ...], refit: bool) -> list[Any]:
    if refit:
        return [res.refit_ml() if res.reml else res for res in results]
    if len({res.reml for res in results}) > 1:
        raise ValueError(
            "refit=False compares the likelihoods as fitted, but some fits are REML and "
            "some ML; refit them alike (or leave refit=True)"
        )
    exog_names = {tuple(res.model.exog_names) for res in results}
    if results[0].reml and len(exog_names) > 1:
        warn(
            "REML likelihoods of models with different fixed effects are not comparable; "
            "use refit=True (the default) to compare them by ML",
            ValueWarning,
        )
    return list(results)


def check_comparable(*results: Any, where: str = "anova()") -> None:
    """Refuse anything but Lmer fits of one data set (as :func:`anova` does).

    ``where`` names the caller in the messages.

    Raises
    ------
    TypeError
        An argument is not a fitted Lmer model.
    DataError
        The fits used different rows, responses, weights, offsets or shared columns.
    """
    _check_results(results, where)
    _check_same_data(results)


def _check_results(results: tuple[Any, ...], where: str = "anova()") -> None:
    for position, res in enumerate(results, start=1):
        model = getattr(res, "model", None)
        if not (hasattr(model, "random_terms") and hasattr(res, "reml")):
            raise TypeError(
                f"{where} compares fitted Lmer results; argument {position} is "
                f"{type(res).__name__} ({str(res)[:40]!r})"
            )


def _data_record(res: Any, groups: list[str], columns: list[str]) -> pd.DataFrame:
    """The data a fit used, one row per observation: response, weights, offset, groups, X."""
    model = res.model
    n = int(res.nobs)
    record = {
        "the response": np.asarray(model.endog, dtype=float),
        "the weights": np.ones(n) if model.weights is None else model.weights,
        "the offset": np.zeros(n) if model.offset is None else model.offset,
    }
    for group in groups:
        term = next(t for t in model.random_terms if t.group == group)
        record[f"grouping factor {group!r}"] = term_level_keys(term)[term.codes]
    exog = pd.DataFrame(np.asarray(model.exog, dtype=float), columns=model.exog_names)
    for column in columns:
        record[f"fixed-effects column {column!r}"] = exog[column].to_numpy()
    return pd.DataFrame(record)


def _same_rows(first: pd.DataFrame, other: pd.DataFrame, columns: list[str]) -> bool:
    """Whether the two records hold the same rows of ``columns``, in any order."""
    a = first[columns].sort_values(columns, kind="stable", ignore_index=True)
    b = other[columns].sort_values(columns, kind="stable", ignore_index=True)
    for column in columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        if x.dtype == object:
            if not np.array_equal(x, y):
                return False
        elif not np.allclose(x, y, rtol=1e-10, atol=0.0, equal_nan=True):
            return False
    return True


def _check_same_data(results: tuple[Any, ...]) -> None:
    """Refuse fits of different data: response, weights, offset, shared groups and columns.

    Rows may come in another order; what must agree is the set of rows, each
    with its response, weight, offset, level of every grouping factor the
    models share and value of every fixed-effects column they share.
    """
    first = results[0]
    groups = set.intersection(*({t.group for t in r.model.random_terms} for r in results))
    shared = set.intersection(*(set(r.model.exog_names) for r in results))
    groups_list = sorted(groups)
    columns_list = [c for c in first.model.exog_names if c in shared]
    on_cluster = any(_on_cluster(res) for res in results)
    base = None if on_cluster else _data_record(first, groups_list, columns_list)
    for position, res in enumerate(results[1:], start=2):
        if res.nobs != first.nobs:
            raise DataError(
                f"models were not all fitted to the same data: model 1 has {first.nobs} "
                f"observations and model {position} {res.nobs}; compare fits of one data "
                "set, with the same rows (watch missing values)"
            )
        if on_cluster:
            if not np.allclose(_response_summary(first), _response_summary(res), rtol=1e-10):
                raise DataError(
                    f"models 1 and {position} were not fitted to the same data: the response "
                    "differs (compared by its mean and variance, the rows being on a Dask "
                    "cluster); compare fits of one data set"
                )
            continue
        record = _data_record(res, groups_list, columns_list)
        names = list(base.columns)
        if _same_rows(base, record, names):
            continue
        differ = [c for c in names[1:] if not _same_rows(base, record, [names[0], c])]
        if not _same_rows(base, record, names[:1]):
            differ.insert(0, names[0])
        raise DataError(
            f"models 1 and {position} were not fitted to the same data: "
            f"{', '.join(differ) or 'the rows'} {'differs' if len(differ) == 1 else 'differ'} "
            "(compared row by row, in any order); "
            "compare fits of one data set"
        )


def _on_cluster(res: Any) -> bool:
    """Whether the model's rows stay on a Dask cluster."""
    return getattr(res.model, "partitions", None) is not None


def _response_summary(res: Any) -> np.ndarray:
    """Mean and variance of the response (from the sums for rows on a Dask cluster)."""
    if _on_cluster(res):
        moments = res.model.partitions.response
        return np.array([moments.mean[0], moments.variance[0]])
    y = np.asarray(res.model.endog, dtype=float)
    return np.array([y.mean(), y.var(ddof=1)])


def refit_formula(res: Any, formula: str, reml: bool | None = None) -> Any:
    """Fit another formula to the same rows, weights and offset as ``res``.

    :meth:`LmerResults.update`, with the data-scale warnings of the reduced
    models silenced (the full model has already shown them).
    """
    with ignored_warnings(ValueWarning):
        return res.update(formula, reml=res.reml if reml is None else reml)


def _reduced_bars(bar: BarTerm, reduce_terms: bool = True) -> list[tuple[str, BarTerm | None]]:
    """lmerTest's reductions of one bar term: (label, replacement or None); the whole
    term removed without ``reduce_terms``."""
    label = f"({bar.lhs} | {bar.group})"
    if not reduce_terms:
        return [(label, None)]
    desc = patsy.ModelDesc.from_formula(bar.lhs)
    terms = [t for t in desc.rhs_termlist if t.factors]
    droppable = [
        t for t in terms if not any(set(t.factors) < set(o.factors) for o in terms if o != t)
    ]
    if not droppable:
        return [(label, None)]
    out = []
    has_intercept = any(not t.factors for t in desc.rhs_termlist)
    for term in droppable:
        rest = [t.name() for t in terms if t != term]
        prefix = ["1"] if has_intercept else ["0"]
        lhs = " + ".join(prefix + rest) if rest else "1"
        out.append((f"{term.name()} in {label}", replace(bar, lhs=lhs)))
    return out


def _distinct_bars(bars: list[BarTerm]) -> list[BarTerm]:
    """The bars without repeats, as R's formula terms (``(x || g)`` reduced to
    ``(1 | g) + (1 | g)`` is lmerTest's ``(1 | g)``)."""
    seen: set[str] = set()
    distinct = []
    for bar in bars:
        text = "".join(str(bar).split())
        if text not in seen:
            seen.add(text)
            distinct.append(bar)
    return distinct


def random_reductions(res: Any, reduce_terms: bool = True) -> dict[str, str | None]:
    """lmerTest's reductions of the random part: ``ranova``'s row label -> formula.

    Each term ``(1 | g)`` is removed, a term with slopes loses each droppable
    column term (or, without ``reduce_terms``, is removed); the formula is None
    when no random-effects term is left.
    """
    parsed = parse_formula(res.model.lmer_formula)
    reductions: dict[str, str | None] = {}
    for index, bar in enumerate(parsed.bars):
        others = [b for j, b in enumerate(parsed.bars) if j != index]
        for label, replacement in _reduced_bars(bar, reduce_terms):
            bars = others[:index] + ([replacement] if replacement else []) + others[index:]
            bars = _distinct_bars(bars)
            reductions[label] = parsed.text(bars=bars) if bars else None
    return reductions


def ranova(res: Any, reduce_terms: bool = True) -> pd.DataFrame:
    """Likelihood-ratio tests for the random-effects terms, as lmerTest's ``ranova``.

    Each term ``(1 | g)`` is removed; a term with slopes ``(x | g)`` is reduced
    by dropping each droppable column term (``(x | g)`` -> ``(1 | g)``), or
    removed as a whole with ``reduce_terms=False`` (lmerTest's
    ``reduce.terms = FALSE``). Fits keep REML or ML as the original; a model
    left without random effects is fitted by least squares (its REML
    log-likelihood for REML fits, as R's ``logLik.lm``).

    Returns
    -------
    LmerTable
        A DataFrame with rows ``<none>`` and one per reduction; columns
        ``npar, llf, AIC, LRT, df, pvalue``; printed under lmerTest's heading.
    """
    reduce_terms = check_bool("reduce_terms", reduce_terms)
    rows = {"<none>": (res.n_params, res.llf)}
    for label, formula in random_reductions(res, reduce_terms).items():
        if formula is not None:
            reduced = refit_formula(res, formula)
            rows[label] = (reduced.n_params, reduced.llf)
        else:
            rows[label] = _least_squares_loglik(res)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["npar", "llf"])
    table["AIC"] = -2 * table["llf"] + 2 * table["npar"]
    full_npar, full_llf = rows["<none>"]
    lrt = 2 * (full_llf - table["llf"])
    # a reduction that changes nothing (a term with no variance) differs by
    # round-off only: 0, as lme4's identical fits give, so that ties stay ties
    # (step() then eliminates the first of them, as lmerTest)
    lrt = lrt.where(lrt.abs() > _LRT_ROUNDOFF * max(1.0, abs(full_llf)), 0.0)
    dfs = full_npar - table["npar"]
    table["LRT"] = lrt.where(table.index != "<none>")
    table["df"] = dfs.where(table.index != "<none>")
    table["pvalue"] = stats.chi2.sf(table["LRT"], table["df"])
    title = "ANOVA-like table for random-effects: Single term deletions"
    return LmerTable.from_frame(table, model_heading(title, res.model.lmer_formula))


_LRT_ROUNDOFF = 1e-10
"""Likelihood ratios below this (relative to the log-likelihood) are round-off."""


def _least_squares_loglik(res: Any) -> tuple[int, float]:
    """(npar, log-likelihood) of the fixed-effects-only model (R's logLik.lm)."""
    if _on_cluster(res):
        return _least_squares_from_sums(res)
    model = res.model
    X = np.asarray(model.exog, dtype=float)
    y = np.asarray(model.endog, dtype=float)
    if model.offset is not None:
        y = y - model.offset
    w = np.ones(len(y)) if model.weights is None else model.weights
    root = np.sqrt(w)
    q, r = np.linalg.qr(X * root[:, None])
    resid = y * root - q @ (q.T @ (y * root))
    n, p = X.shape
    ld_rx2 = 2.0 * float(np.sum(np.log(np.abs(np.diag(r)))))
    criterion = profiled_criterion(
        0.0, ld_rx2, float(resid @ resid), n, p, float(np.sum(np.log(w))), res.reml
    )
    return p + 1, -0.5 * criterion


def _least_squares_from_sums(res: Any) -> tuple[int, float]:
    """:func:`_least_squares_loglik` from the cross-products ``[X y]' W [X y]``."""
    cross = res.model.cross_products
    p = cross.n_fixed
    block = cross.fixed_block()
    chol = np.linalg.cholesky(block[:p, :p])
    solved = np.linalg.solve(chol, block[:p, p])
    ld_rx2 = 2.0 * float(np.sum(np.log(np.diag(chol))))
    rss = float(block[p, p] - solved @ solved)
    criterion = profiled_criterion(0.0, ld_rx2, rss, cross.nobs, p, cross.sum_log_weights, res.reml)
    return p + 1, -0.5 * criterion


def drop1_scope(model: Any, scope: Any) -> list[str]:
    """The marginal terms ``drop1`` tests: all of them, or those ``scope`` names.

    ``scope``: a term name, a list of them or a one-sided formula (``"~ x + f"``),
    as lme4's and lmerTest's ``scope``; terms are matched by their variables
    (``"x:f"`` is ``f:x``).

    Raises
    ------
    ValueError
        A name that is no term of the model, or a term that another contains
        (only marginal terms can be dropped, as in lmerTest).
    """
    droppable = marginal_terms(model)
    if scope is None:
        return droppable
    if isinstance(scope, str):
        text = scope.split("~", 1)[1] if "~" in scope else scope
        wanted = [t for t in patsy.ModelDesc.from_formula(text).rhs_termlist if t.factors]
    else:
        wanted = [patsy.ModelDesc.from_formula(str(name)).rhs_termlist[-1] for name in scope]
    terms, _ = fixed_terms(model)
    by_variables = {t.variables: t.name for t in terms}
    chosen = []
    for term in wanted:
        name = by_variables.get(frozenset(f.name() for f in term.factors))
        if name is None:
            raise ValueError(
                f"scope term {term.name()!r} is not a fixed-effect term of the model "
                f"(its terms: {', '.join(t.name for t in terms)})"
            )
        if name not in droppable:
            raise ValueError(
                f"scope term {name!r} is contained in another term: only marginal terms "
                f"can be dropped ({', '.join(droppable)})"
            )
        chosen.append(name)
    return [name for name in droppable if name in chosen]


def drop1(res: Any, test: str = "F", ddf: str = "satterthwaite", scope: Any = None) -> pd.DataFrame:
    """Tests of dropping each marginal fixed-effect term.

    Parameters
    ----------
    test : {"F", "Chisq"}
        ``"F"``: lmerTest's F tests of the term's coefficients (columns
        ``SumSq, MeanSq, NumDF, DenDF, F, pvalue``). ``"Chisq"``: lme4's
        likelihood-ratio tests, refitting by ML without each term (columns
        ``npar, AIC, LRT, df, pvalue``).
    ddf : {"satterthwaite", "kenward-roger", "residual"}
        Denominator df for ``test="F"``.
    scope : str, list of str or None
        The terms to test (:func:`drop1_scope`); None: every marginal term.

    Returns
    -------
    pandas.DataFrame
    """
    if not isinstance(test, str):
        raise TypeError(f"test must be 'F' or 'Chisq', got {test!r}")
    if test.upper() == "F":
        return drop1_f_table(res, ddf, drop1_scope(res.model, scope))
    if test.lower() not in ("chisq", "lrt"):
        raise ValueError(f"test must be 'F' or 'Chisq'; got {test!r}")
    full = res.refit_ml() if res.reml else res
    parsed = parse_formula(res.model.lmer_formula)
    terms, has_intercept = fixed_terms(res.model)
    rows = {"<none>": (full.n_params, full.aic, np.nan, np.nan, np.nan)}
    for name in drop1_scope(res.model, scope):
        kept = [t.name for t in terms if t.name != name]
        rhs = " + ".join((["1"] if has_intercept else ["0"]) + kept)
        reduced = refit_formula(res, parsed.text(fixed_rhs=rhs), reml=False)
        lrt = 2 * (full.llf - reduced.llf)
        df = full.n_params - reduced.n_params
        rows[name] = (reduced.n_params, reduced.aic, lrt, df, stats.chi2.sf(lrt, df))
    table = pd.DataFrame.from_dict(
        rows, orient="index", columns=["npar", "AIC", "LRT", "df", "pvalue"]
    )
    heading = model_heading("Single term deletions", res.model.lmer_formula)
    return LmerTable.from_frame(table, heading)


def model_restriction(large_exog: np.ndarray, small_exog: np.ndarray) -> np.ndarray:
    """``L`` with ``{X_large b : L b = 0}`` the span of ``X_small`` (pbkrtest's
    ``model2restrictionMatrix``): the rows span the directions of the large model's
    coefficients that leave the small model's column space.

    Raises
    ------
    ValueError
        The small model's columns are not in the span of the large model's.
    """
    large = np.asarray(large_exog, dtype=float)
    scale = _column_norms(large)
    large = large / scale
    small = np.asarray(small_exog, dtype=float)
    small = small / _column_norms(small)  # a time stamp next to the intercept keeps its rank
    basis = _column_basis(large)
    if small.shape[1]:
        outside = small - basis @ (basis.T @ small)
        if np.linalg.norm(outside) > 1e-8 * max(np.linalg.norm(small), 1.0):
            raise ValueError(
                "the small model's fixed effects are not nested in the large model's: "
                "its columns are not combinations of the large model's"
            )
    small_basis = _column_basis(small) if small.shape[1] else np.zeros((len(large), 0))
    residual = large - small_basis @ (small_basis.T @ large)
    _, values, rows = np.linalg.svd(residual, full_matrices=False)
    keep = values > 1e-8  # against columns scaled to a unit norm
    restriction = rows[keep] / scale  # l' (b * scale) = 0 in the scaled columns
    if not len(restriction):
        return restriction
    # orthonormal rows, as pbkrtest's: a multi-row Satterthwaite df depends on the
    # basis of the rows' span up to a rotation only
    return np.linalg.qr(restriction.T)[0].T


def _column_norms(matrix: np.ndarray) -> np.ndarray:
    """Each column's norm (1 for a zero column)."""
    norms = np.linalg.norm(matrix, axis=0)
    return np.where(norms > 0, norms, 1.0)


def _column_basis(matrix: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns' span (numerical rank)."""
    left, values, _ = np.linalg.svd(matrix, full_matrices=False)
    if not values.size:
        return left
    return left[:, values > 1e-10 * values[0]]


def _modcomp(large: Any, small: Any, ddf: str, where: str) -> Any:
    """The F test of the small model's restriction in the large fit (pbkrtest's form).

    As pbkrtest: the fits may come in either order (the one with more fixed
    columns is the large one), and an ML fit is refitted by REML first.
    """
    if isinstance(small, str):
        small = large.update(small)
    check_comparable(large, small, where=where)
    if len(small.model.exog_names) > len(large.model.exog_names):
        large, small = small, large
    if not large.reml:
        large = large.update(reml=True)
    for res in (large, small):
        res.model.require_data(where)
        if _on_cluster(res):
            raise TypeError(f"{where} needs the fixed-effects rows in memory (a Dask model)")
    restriction = model_restriction(large.model.exog, small.model.exog)
    if not len(restriction):
        raise ValueError(f"{where}: the two models have the same fixed effects; nothing to test")
    return large.f_test(restriction, ddf=ddf)


def krmodcomp(large: Any, small: Any) -> Any:
    """Kenward-Roger F test of a small model against a large one (pbkrtest's ``KRmodcomp``).

    Parameters
    ----------
    large : LmerResults
        The large fit (an ML fit is refitted by REML first, as pbkrtest does).
    small : LmerResults or str
        A fit whose fixed effects are nested in ``large``'s, on the same rows, or
        a formula for ``large.update`` (``". ~ . - x"``); the two fits may come
        in either order. Only its fixed part matters: the restriction
        ``L b = 0`` it makes (:func:`model_restriction`) is tested in
        ``large``, as ``large.f_test(L, ddf="kenward-roger")``.

    Returns
    -------
    ContrastResults
        ``fvalue``, ``df_num``, ``df_denom``, ``pvalue``.
    """
    return _modcomp(large, small, "kenward-roger", "krmodcomp()")


def satmodcomp(large: Any, small: Any) -> Any:
    """Satterthwaite F test of a small model against a large one (pbkrtest's ``SATmodcomp``).

    Parameters are those of :func:`krmodcomp`; the test is
    ``large.f_test(L, ddf="satterthwaite")``.
    """
    return _modcomp(large, small, "satterthwaite", "satmodcomp()")
