"""Tests of fixed-effect contrasts with a choice of denominator df, and tables.

``ddf`` is one of ``"satterthwaite"`` (lmerTest's default), ``"kenward-roger"``
(pbkrtest, REML fits) or ``"residual"`` (``n - p``, plain t and F).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import numpy as np
import pandas as pd
import patsy
from scipy import stats
from statsmodels.formula._manager import FormulaManager
from statsmodels.tools.sm_exceptions import ValueWarning

from ..exceptions import FormulaError, warn
from ..tables import LmerTable, model_heading
from .contrast_results import LmerContrastResults, f_pvalue
from .contrasts import (
    fixed_terms,
    marginal_contrasts,
    marginal_terms,
    type1_contrasts,
    type2_contrasts,
    type3_contrasts,
)
from .satterthwaite import ContrastTest

__all__ = [
    "DDF_METHODS",
    "anova_table",
    "check_ddf",
    "coef_table",
    "contrast_test",
    "drop1_f_table",
    "lme4_anova_table",
    "parse_constraints",
    "refuse_null_contrast",
    "t_tests",
    "warn_rank_deficient",
]

DDF_METHODS = ("satterthwaite", "kenward-roger", "residual")
_ALIASES = {"kr": "kenward-roger", "kenward_roger": "kenward-roger", "lme4": "residual"}


def check_ddf(ddf: str) -> str:
    """Normalize a ``ddf`` name, or raise a ValueError listing the choices.

    As lmerTest's ``match.arg``, a unique start of a name works (``"Sat"``,
    ``"Kenward"``); ``"kr"``, ``"kenward_roger"`` and ``"lme4"`` are aliases.
    """
    text = str(ddf).lower()
    name = _ALIASES.get(text, text)
    starts = [m for m in (*DDF_METHODS, "lme4") if text and m.startswith(text)]
    if name not in DDF_METHODS and len(starts) == 1:
        name = _ALIASES.get(starts[0], starts[0])
    if name not in DDF_METHODS:
        raise ValueError(f"ddf must be one of {', '.join(DDF_METHODS)}; got {ddf!r}")
    return name


def parse_constraints(res: Any, r_matrix: Any) -> tuple[np.ndarray, np.ndarray]:
    """Constraint matrix ``L`` and right-hand side ``q`` as statsmodels reads them.

    Accepts a string (``"Days = 10"``, ``"a = 0, b = 0"``), a list of strings,
    a tuple ``(L, q)`` or an array ``L`` (then ``q = 0``).
    """
    names = list(res.model.exog_names)
    if r_matrix is None:
        raise TypeError(
            "the hypothesis (r_matrix) is required: 'Days = 10', a contrast matrix, or (L, q)"
        )
    if isinstance(r_matrix, (str, list)) and (
        isinstance(r_matrix, str) or all(isinstance(r, str) for r in r_matrix)
    ):
        L, q = _string_constraints(r_matrix, names)
    elif isinstance(r_matrix, tuple):
        if len(r_matrix) != 2:
            raise TypeError(f"a hypothesis tuple must be (L, q), got {len(r_matrix)} items")
        L, q = r_matrix
    else:
        L, q = r_matrix, None
    try:
        L = np.atleast_2d(np.asarray(L, dtype=float))
        q = None if q is None else np.asarray(q, dtype=float).ravel()
    except (TypeError, ValueError):
        raise TypeError(f"the contrast matrix and q must be numbers, got {r_matrix!r}") from None
    if L.ndim != 2 or L.shape[1] != len(names):
        raise ValueError(f"contrast matrix must have {len(names)} columns ({', '.join(names)})")
    if L.shape[0] == 0:
        raise ValueError("the contrast matrix has no rows: there is nothing to test")
    if not np.all(np.isfinite(L)) or (q is not None and not np.all(np.isfinite(q))):
        raise ValueError("the contrast matrix and q must be finite numbers")
    if q is None:
        q = np.zeros(L.shape[0])
    elif q.size not in (1, L.shape[0]):
        raise ValueError(f"q must have {L.shape[0]} value(s), one per contrast row, got {q.size}")
    return L, np.broadcast_to(q, (L.shape[0],)).copy()


def _string_constraints(text: str | list[str], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Constraints written as text, with a clear error for malformed ones."""
    parts = [text] if isinstance(text, str) else list(text)
    if not parts or any(not part.strip() for part in parts):
        raise FormulaError(
            f"empty hypothesis {text!r}; write it as 'Days = 10' or 'a = 0, b = 0' "
            f"with the coefficients {', '.join(names)}"
        )
    try:
        lc = FormulaManager().get_linear_constraints(text, names)
    except (patsy.PatsyError, IndexError, ValueError, SyntaxError) as err:
        raise FormulaError(_constraint_message(text, names, err)) from None
    return lc.constraint_matrix, lc.constraint_values


def _constraint_message(text: Any, names: list[str], err: Exception) -> str:
    detail = getattr(err, "message", None) or str(err) or type(err).__name__
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", " ".join(np.atleast_1d(text))))
    unknown = sorted(w for w in words if w not in names and not any(w in n for n in names))
    hint = ""
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f"; {unknown[0]!r} is not a coefficient" + (
            f" (did you mean {close[0]!r}?)" if close else ""
        )
    return (
        f"cannot read the hypothesis {text!r}: {detail.splitlines()[0]}{hint}. "
        f"The coefficients are: {', '.join(names)}"
    )


def constraint_labels(r_matrix: Any, n_rows: int) -> list[str] | None:
    """Row labels for a hypothesis given as text (one per constraint), else None."""
    if isinstance(r_matrix, str):
        parts = [p.strip() for p in r_matrix.split(",")]
    elif isinstance(r_matrix, list) and all(isinstance(r, str) for r in r_matrix):
        parts = [p.strip() for p in r_matrix]
    else:
        return None
    return parts if len(parts) == n_rows else None


def t_tests(res: Any, r_matrix: Any, ddf: str = "satterthwaite") -> LmerContrastResults:
    """One t test per row of a hypothesis, each with its own denominator df.

    An all-zero row tests nothing: estimate and SE 0, df and t NaN, as
    lmerTest's ``contest1D`` gives it, whatever the df method.
    """
    L, q = parse_constraints(res, r_matrix)
    tests = [contrast_test(res, row[None, :], 0.0, ddf) if np.any(row != 0) else None for row in L]
    effect = np.array([0.0 if t is None else t.estimate[0] for t in tests])
    sd = np.sqrt(np.array([0.0 if t is None else t.cov[0, 0] for t in tests]))
    df = np.array([np.nan if t is None else t.den_df for t in tests])
    method = "clubSandwich Satterthwaite" if getattr(res, "robust", None) else check_ddf(ddf)
    names = constraint_labels(r_matrix, len(L))
    with np.errstate(invalid="ignore", divide="ignore"):  # a zero row: NaN, as lmerTest
        statistic = np.where(sd > 0, (effect - q) / sd, np.nan)
    return LmerContrastResults(effect, sd, statistic, df, names, method)


def contrast_test(
    res: Any, L: np.ndarray, rhs: Any = 0.0, ddf: str = "satterthwaite"
) -> ContrastTest:
    """t test (one row) or F test (several rows) of ``L beta = rhs``."""
    method = check_ddf(ddf)
    robust = getattr(res, "robust", None)
    if robust is not None:
        if method != "satterthwaite":
            raise ValueError(
                f"ddf={ddf!r} is not available with a cluster-robust covariance; its tests "
                "use clubSandwich's Satterthwaite df (one row) and HTZ F (several rows)"
            )
        return robust.test(L, rhs)
    if method == "satterthwaite":
        return res.satterthwaite.test(L, rhs)
    if method == "kenward-roger":
        return _kenward_roger_test(res, L, rhs)
    return _residual_test(res, L, rhs)


def refuse_null_contrast(L: np.ndarray, q: np.ndarray) -> None:
    """A ValueError for an F test whose contrast rows are all zero (nothing to test), or
    with a zero row whose right-hand side is not (``0 = 5``: false whatever beta is)."""
    zero = ~np.any(np.asarray(L) != 0, axis=1)
    if zero.all():
        raise ValueError(
            "every row of the contrast matrix is zero: the F test has nothing to test "
            "(0 numerator df)"
        )
    impossible = np.flatnonzero(zero & (np.asarray(q) != 0))
    if impossible.size:
        row = int(impossible[0])
        raise ValueError(
            f"contrast row {row} is zero with a right-hand side of {float(q[row]):g}: "
            f"'0 = {float(q[row]):g}' holds for no coefficients; leave the row out"
        )


def warn_rank_deficient(L: np.ndarray) -> None:
    """lmerTest's contestMD warning for a contrast matrix whose rows are dependent.

    The test uses the rows' span (its rank as numerator df); with an
    inconsistent right-hand side that drops a constraint, so say so.
    """
    L = np.atleast_2d(np.asarray(L, dtype=float))
    if L.shape[0] < 2:
        return
    rank = int(np.linalg.matrix_rank(L))
    if rank < L.shape[0]:
        warn(
            f"Contrast is rank deficient and test may be affected: {L.shape[0]} rows of "
            f"rank {rank}; the F test is of their span ({rank} numerator df)",
            ValueWarning,
        )


def _kenward_roger_test(res: Any, L: np.ndarray, rhs: Any) -> ContrastTest:
    if not res.reml:
        raise ValueError(
            "Kenward-Roger's method is only available for REML fits; refit with reml=True "
            "or use ddf='satterthwaite'"
        )
    kr = res.kenward_roger.test(L, rhs)
    is_t = np.atleast_2d(L).shape[0] == 1
    return ContrastTest(
        kr.estimate,
        kr.cov,
        float(kr.statistic),
        kr.num_df,
        kr.den_df,
        kr.pvalue,
        kr.mean_sq,
        is_t,
    )


def _residual_test(res: Any, L: np.ndarray, rhs: Any) -> ContrastTest:
    L = np.atleast_2d(np.asarray(L, dtype=float))
    rhs = np.broadcast_to(np.asarray(rhs, dtype=float), (L.shape[0],))
    beta = np.asarray(res.params, dtype=float)
    cov = L @ np.asarray(res.cov_params()) @ L.T
    estimate = L @ beta
    df = float(res.df_resid_inference)
    if L.shape[0] == 1:
        t = float((estimate[0] - rhs[0]) / np.sqrt(cov[0, 0]))
        p = float(2 * stats.t.sf(abs(t), df))
        return ContrastTest(estimate, cov, t, 1, df, p, t**2 * res.scale, True)
    diff = estimate - rhs
    rank = np.linalg.matrix_rank(cov)
    fvalue = float(diff @ np.linalg.pinv(cov) @ diff / rank)
    p = f_pvalue(fvalue, rank, df)
    return ContrastTest(estimate, cov, fvalue, rank, df, p, fvalue * res.scale)


def coef_table(res: Any, ddf: str = "satterthwaite") -> pd.DataFrame:
    """Columns ``coef, std_err, df, t, pvalue`` for each fixed effect."""
    names = list(res.model.exog_names)
    rows = []
    for row in np.eye(len(names)):
        test = contrast_test(res, row[None, :], 0.0, ddf)
        se = float(np.sqrt(test.cov[0, 0]))
        rows.append((float(test.estimate[0]), se, test.den_df, test.statistic, test.pvalue))
    return pd.DataFrame(rows, index=names, columns=["coef", "std_err", "df", "t", "pvalue"])


_TABLE_COLUMNS = ["SumSq", "MeanSq", "NumDF", "DenDF", "F", "pvalue"]
_ALIASED_ROW = [np.nan] * len(_TABLE_COLUMNS)


def _f_row(test: ContrastTest) -> list[float]:
    fvalue = test.fvalue
    pvalue = f_pvalue(fvalue, test.num_df, test.den_df)
    return [test.mean_sq * test.num_df, test.mean_sq, test.num_df, test.den_df, fvalue, pvalue]


def anova_table(res: Any, type: int | str = 3, ddf: str = "satterthwaite") -> pd.DataFrame:
    """lmerTest's ANOVA table of the fixed-effect terms (type 1 or 3).

    Printed as lmerTest prints it: "Type III Analysis of Variance Table with
    Satterthwaite's method" above the table, p-values as ``< 2e-16``.
    """
    kind = {"3": 3, "III": 3, "2": 2, "II": 2, "1": 1, "I": 1}.get(str(type).upper())
    if kind is None:
        raise ValueError(f"type must be 1, 2 or 3 (or 'I', 'II', 'III'); got {type!r}")
    if str(ddf) and "lme4".startswith(str(ddf).lower()):  # lmerTest's match.arg: "lme"
        return lme4_anova_table(res)
    contrasts = {1: type1_contrasts, 2: type2_contrasts, 3: type3_contrasts}[kind](res.model)
    rows = {
        term: _f_row(contrast_test(res, L, 0.0, ddf))
        for term, L in contrasts.items()
        if L.shape[0] > 0
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=_TABLE_COLUMNS)
    return LmerTable.from_frame(table, [f"{_TYPE_NAMES[kind]} with {_method_name(res, ddf)}"])


def lme4_anova_table(res: Any) -> LmerTable:
    """lme4's ``anova(m)`` (lmerTest's ``anova(m, ddf = "lme4")``): sequential sums of squares.

    Each term's sum of squares is that of its entries of ``R_X beta``, with
    ``R_X`` the Cholesky factor of the fixed effects' unscaled precision and the
    columns in R's order (the intercept, then the terms as the formula orders
    them); ``F`` is its mean square over ``sigma^2``. lme4 gives no df or
    p-values; whatever ``type`` says, this is the one table lme4 has.
    """
    terms, _ = fixed_terms(res.model)
    in_terms = [c for t in terms for c in t.columns]
    order = [c for c in range(len(res.model.exog_names)) if c not in set(in_terms)] + in_terms
    ordered = np.linalg.qr(_fixed_precision_factor(res)[:, order], mode="r")
    effects = ordered @ np.asarray(res.params, dtype=float)[order]
    row_of = {column: row for row, column in enumerate(order)}
    rows = {}
    for term in (t for t in terms if t.columns):  # an aliased term has no row, as in lme4
        sum_sq = float(np.sum(effects[[row_of[c] for c in term.columns]] ** 2))
        npar = len(term.columns)
        rows[term.name] = (npar, sum_sq, sum_sq / npar, sum_sq / npar / float(res.sigma) ** 2)
    table = pd.DataFrame.from_dict(
        rows, orient="index", columns=["npar", "SumSq", "MeanSq", "F"]
    ).astype({"npar": int})
    return LmerTable.from_frame(table, ["Analysis of Variance Table"])


def _fixed_precision_factor(res: Any) -> np.ndarray:
    """``R_X``: ``R_X' R_X`` is the fixed effects' unscaled precision, in ``X``'s columns.

    From the engine's factor of its own columns ``X T`` (``T = C^-1``, columns
    far from zero centred on earlier ones: docs/engine.md), ``R_X = R~ C``:
    inverting the covariance of a column like ``1e6 + N(0, 1)`` loses its digits.
    """
    devfun = res.model.devfun(res.reml)
    engine = devfun.engine_vcov_unscaled(np.asarray(res.theta, dtype=float))
    factor = np.linalg.cholesky(np.linalg.inv(engine)).T
    centering = devfun.cross.centering
    return factor if centering is None else factor @ centering.coefficients


_TYPE_NAMES = {
    1: "Type I Analysis of Variance Table",
    2: "Type II Analysis of Variance Table",
    3: "Type III Analysis of Variance Table",
}


def _method_name(res: Any, ddf: str) -> str:
    if getattr(res, "robust", None) is not None:
        return f"the {res.robust.description} covariance (HTZ F tests)"
    return {
        "satterthwaite": "Satterthwaite's method",
        "kenward-roger": "Kenward-Roger's method",
        "residual": "residual df (n - p)",
    }[check_ddf(ddf)]


def drop1_f_table(
    res: Any, ddf: str = "satterthwaite", terms: list[str] | None = None
) -> pd.DataFrame:
    """lmerTest's ``drop1``: F tests of the marginal terms (those droppable), or of
    ``terms`` (some of them)."""
    contrasts = marginal_contrasts(res.model)
    # dropping a term that leaves the model the same (its columns aliased):
    # an all-NaN row, lmerTest's NA row, which step() never eliminates
    rows = {
        term: _f_row(contrast_test(res, contrasts[term], 0.0, ddf))
        if contrasts[term].shape[0] > 0
        else _ALIASED_ROW
        for term in (marginal_terms(res.model) if terms is None else terms)
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=_TABLE_COLUMNS)
    title = f"Single term deletions using {_method_name(res, ddf)}:"
    formula = getattr(res.model, "lmer_formula", None)
    return LmerTable.from_frame(table, model_heading(title, formula))
