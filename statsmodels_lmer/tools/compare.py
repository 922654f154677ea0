"""Model comparison: likelihood-ratio tables (lme4's ``anova``), ``ranova``, ``drop1``.

* :func:`anova` compares nested fits by likelihood ratio, as lme4's
  ``anova(m0, m1)``: REML fits are refitted by ML first.
* :func:`ranova` removes or reduces each random-effects term in turn, as
  lmerTest's ``ranova`` (likelihood ratio, REML kept for REML fits).
* :func:`drop1` drops each marginal fixed-effect term: F tests with
  Satterthwaite/Kenward-Roger df (lmerTest) or likelihood-ratio tests (lme4).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import patsy
from scipy import stats
from statsmodels.tools.sm_exceptions import ValueWarning

from ..engine.objective import profiled_criterion
from ..exceptions import DataError
from ..formula import BarTerm, ParsedFormula, parse_formula
from ..inference.contrasts import fixed_terms, marginal_terms
from ..inference.hypotheses import drop1_f_table

__all__ = ["anova", "drop1", "ranova", "refit_formula"]


def anova(*results: Any, names: list[str] | None = None) -> pd.DataFrame:
    """Likelihood-ratio comparison of nested models, as lme4's ``anova``.

    Parameters
    ----------
    *results : LmerResults
        Two or more fits to the same data. REML fits are refitted by ML
        first (as lme4 does), and the table's ``refit_ml`` attribute says so.
    names : list of str, optional
        Row labels; default ``model_1, model_2, ...`` in the order given.

    Returns
    -------
    pandas.DataFrame
        Ordered by number of parameters, with columns ``formula, npar, AIC,
        BIC, llf, deviance, chisq, df, pvalue``.

    Raises
    ------
    DataError
        When the models were not fitted to the same observations.
    """
    if len(results) < 2:
        raise ValueError("anova() compares two or more fitted models")
    names = list(names) if names is not None else [f"model_{i + 1}" for i in range(len(results))]
    if len(names) != len(results):
        raise ValueError("names must have one entry per model")
    _check_same_data(results)
    refitted = any(res.reml for res in results)
    fits = [res.refit_ml() if res.reml else res for res in results]
    rows = []
    for name, res in zip(names, fits):
        formula = getattr(res.model, "lmer_formula", None) or ""
        rows.append((name, formula, res.n_params, res.aic, res.bic, res.llf, res.deviance))
    table = pd.DataFrame(
        rows, columns=["model", "formula", "npar", "AIC", "BIC", "llf", "deviance"]
    ).set_index("model")
    table = table.iloc[np.argsort(table["npar"].to_numpy(), kind="stable")]
    chisq = 2 * np.diff(table["llf"].to_numpy())
    dfs = np.diff(table["npar"].to_numpy())
    table["chisq"] = np.concatenate([[np.nan], chisq])
    table["df"] = np.concatenate([[np.nan], dfs])
    with np.errstate(invalid="ignore"):
        table["pvalue"] = np.concatenate(
            [[np.nan], np.where(dfs > 0, stats.chi2.sf(chisq, np.maximum(dfs, 1)), np.nan)]
        )
    table.attrs["refit_ml"] = refitted
    if refitted:
        table.attrs["note"] = "refitted model(s) with ML (instead of REML)"
    return table


def _check_same_data(results: tuple[Any, ...]) -> None:
    first = results[0]
    y0 = _sorted_response(first)
    for res in results[1:]:
        y = _sorted_response(res)
        if res.nobs != first.nobs or y.shape != y0.shape or not np.allclose(y, y0):
            raise DataError(
                "models were not all fitted to the same data "
                f"(nobs {first.nobs} and {res.nobs}); compare fits of one data set, "
                "with the same rows (watch missing values)"
            )


def _sorted_response(res: Any) -> np.ndarray:
    """The sorted responses; their mean and variance for rows on a Dask cluster."""
    rows = getattr(res.model, "partitions", None)
    if rows is not None:
        return np.array([rows.response.mean[0], rows.response.variance[0]])
    return np.sort(np.asarray(res.model.endog, dtype=float))


def refit_formula(res: Any, formula: str, reml: bool | None = None) -> Any:
    """Fit another formula to the same rows, weights and offset as ``res``.

    :meth:`LmerResults.update`, with the data-scale warnings of the reduced
    models silenced (the full model has already shown them).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ValueWarning)
        return res.update(formula, reml=res.reml if reml is None else reml)


def _formula_text(parsed: ParsedFormula, bars: list[BarTerm], fixed_rhs: str | None = None) -> str:
    rhs = fixed_rhs if fixed_rhs is not None else parsed.fixed_rhs
    random = " + ".join(str(bar) for bar in bars)
    return f"{parsed.response} ~ {rhs}" + (f" + {random}" if random else "")


def _reduced_bars(bar: BarTerm) -> list[tuple[str, BarTerm | None]]:
    """lmerTest's reductions of one bar term: (label, replacement or None)."""
    label = f"({bar.lhs} | {bar.group})"
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
        out.append((f"{term.name()} in {label}", BarTerm(lhs, bar.factors)))
    return out


def ranova(res: Any) -> pd.DataFrame:
    """Likelihood-ratio tests for the random-effects terms, as lmerTest's ``ranova``.

    Each term ``(1 | g)`` is removed; a term with slopes ``(x | g)`` is reduced
    by dropping each droppable column term (``(x | g)`` -> ``(1 | g)``). Fits
    keep REML or ML as the original; a model left without random effects is
    fitted by least squares (its REML log-likelihood for REML fits, as R's
    ``logLik.lm``).

    Returns
    -------
    pandas.DataFrame
        Rows ``<none>`` and one per reduction; columns ``npar, llf, AIC, LRT,
        df, pvalue``.
    """
    parsed = parse_formula(res.model.lmer_formula)
    rows = {"<none>": (res.n_params, res.llf)}
    for index, bar in enumerate(parsed.bars):
        others = [b for j, b in enumerate(parsed.bars) if j != index]
        for label, replacement in _reduced_bars(bar):
            bars = others[:index] + ([replacement] if replacement else []) + others[index:]
            if bars:
                reduced = refit_formula(res, _formula_text(parsed, bars))
                rows[label] = (reduced.n_params, reduced.llf)
            else:
                rows[label] = _least_squares_loglik(res)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["npar", "llf"])
    table["AIC"] = -2 * table["llf"] + 2 * table["npar"]
    full_npar, full_llf = rows["<none>"]
    lrt = 2 * (full_llf - table["llf"])
    dfs = full_npar - table["npar"]
    table["LRT"] = lrt.where(table.index != "<none>")
    table["df"] = dfs.where(table.index != "<none>")
    table["pvalue"] = stats.chi2.sf(table["LRT"], table["df"])
    return table


def _least_squares_loglik(res: Any) -> tuple[int, float]:
    """(npar, log-likelihood) of the fixed-effects-only model (R's logLik.lm)."""
    model = res.model
    if getattr(model, "partitions", None) is not None:
        return _least_squares_from_sums(res)
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
    r, p = cross.n_random_rest, cross.n_fixed
    block = cross.a_rr[r:, r:]
    chol = np.linalg.cholesky(block[:p, :p])
    solved = np.linalg.solve(chol, block[:p, p])
    ld_rx2 = 2.0 * float(np.sum(np.log(np.diag(chol))))
    rss = float(block[p, p] - solved @ solved)
    criterion = profiled_criterion(0.0, ld_rx2, rss, cross.nobs, p, cross.sum_log_weights, res.reml)
    return p + 1, -0.5 * criterion


def drop1(res: Any, test: str = "F", ddf: str = "satterthwaite") -> pd.DataFrame:
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

    Returns
    -------
    pandas.DataFrame
    """
    if test.upper() == "F":
        return drop1_f_table(res, ddf)
    if test.lower() not in ("chisq", "lrt"):
        raise ValueError(f"test must be 'F' or 'Chisq'; got {test!r}")
    full = res.refit_ml() if res.reml else res
    parsed = parse_formula(res.model.lmer_formula)
    terms, has_intercept = fixed_terms(res.model)
    rows = {"<none>": (full.n_params, full.aic, np.nan, np.nan, np.nan)}
    for name in marginal_terms(res.model):
        kept = [t.name for t in terms if t.name != name]
        rhs = " + ".join((["1"] if has_intercept else ["0"]) + kept)
        reduced = refit_formula(res, _formula_text(parsed, list(parsed.bars), rhs), reml=False)
        lrt = 2 * (full.llf - reduced.llf)
        df = full.n_params - reduced.n_params
        rows[name] = (reduced.n_params, reduced.aic, lrt, df, stats.chi2.sf(lrt, df))
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["npar", "AIC", "LRT", "df", "pvalue"]
    )
