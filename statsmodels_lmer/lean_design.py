"""The fixed part of common formulas without patsy's data passes.

patsy's ``dmatrices`` makes a memorizing pass and a building pass over the
data: about 0.5 ms for ``Reaction ~ Days`` and 2 ms for cake's
``angle ~ recipe * temperature``, a quarter to a half of building a small
model. For the formulas most models use, the model matrix follows from the
columns' types alone:

* the response and every numeric term are bare numeric columns (``x``,
  ``Q("x.1")``);
* categorical terms are bare categorical columns (pandas ``Categorical``, or
  strings) and their interactions, in a hierarchical formula with an
  intercept (every lower-order margin of an interaction present, as
  ``a * b``): patsy then codes every factor by treatment contrasts against
  its first level.

Here the columns are built directly and patsy's own ``DesignInfo`` is
assembled from its public pieces (the factor protocol's
``memorize_passes_needed``, ``FactorInfo``, ``SubtermInfo`` and the
``Treatment`` contrast), in patsy's order: the intercept, the categorical
terms by degree, then the numeric terms. Predictions on new data go through
patsy exactly as for a model built by ``dmatrices``. Anything else (function
calls, numeric-by-categorical interactions, no intercept with a categorical
term, booleans, nullable dtypes, one-level factors, stateful transforms)
returns None and goes through patsy.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import patsy
from patsy.contrasts import Treatment
from patsy.design_info import FactorInfo, SubtermInfo

from .columns import column_array
from .formula import bare_name, model_desc

__all__ = ["lean_design"]


@dataclass
class _Factor:
    """One bare column of the formula: its values (numeric) or codes and levels (categorical)."""

    factor: Any
    state: dict[str, Any]
    values: np.ndarray | None = None
    codes: np.ndarray | None = None
    levels: tuple | None = None

    @property
    def categorical(self) -> bool:
        return self.codes is not None


def lean_design(
    fixed: str, frame: pd.DataFrame, eval_env: Any
) -> tuple[pd.Series, pd.DataFrame, patsy.DesignInfo] | None:
    """``(endog, exog, design_info)`` as patsy's ``dmatrices`` would give them, or None.

    Parameters
    ----------
    fixed : str
        The fixed part, ``"y ~ x + g"`` (column names quoted as patsy needs).
    frame : pandas.DataFrame
        The complete rows.
    eval_env : patsy.EvalEnvironment
        Kept in the factors' state, as patsy keeps it.

    Returns
    -------
    tuple or None
        None when the formula is not one of those described in the module.
    """
    desc = model_desc(fixed)
    if len(desc.lhs_termlist) != 1 or not isinstance(eval_env, patsy.EvalEnvironment):
        return None
    lhs = desc.lhs_termlist[0].factors
    response = _bare_column(lhs[0], frame) if len(lhs) == 1 else None
    if response is None or response[0] is None:  # not one numeric column
        return None
    seen: dict[Any, _Factor | None] = {}  # each factor described once
    terms = _ordered_terms(desc.rhs_termlist, frame, eval_env, seen)
    if terms is None:
        return None
    names, blocks, term_codings, factor_infos = [], [], OrderedDict(), {}
    n = len(frame)
    for term, factors in terms:
        if not factors:  # the intercept
            names.append("Intercept")
            blocks.append(np.ones((n, 1)))
            term_codings[term] = [SubtermInfo([], {}, 1)]
        elif not factors[0].categorical:
            (only,) = factors
            names.append(only.factor.name())
            blocks.append(only.values[:, None])
            term_codings[term] = [SubtermInfo([only.factor], {}, 1)]
            factor_infos[only.factor] = FactorInfo(only.factor, "numerical", only.state, 1)
        else:
            columns, contrasts = _treatment_columns(factors, n)
            names.extend(_column_names(factors, contrasts))
            blocks.append(columns)
            term_codings[term] = [
                SubtermInfo(
                    [f.factor for f in factors],
                    {f.factor: c for f, c in zip(factors, contrasts)},
                    columns.shape[1],
                )
            ]
            for f in factors:
                factor_infos[f.factor] = FactorInfo(
                    f.factor, "categorical", f.state, categories=f.levels
                )
    X = np.hstack(blocks) if blocks else np.empty((n, 0))
    design_info = patsy.DesignInfo(names, factor_infos, term_codings)
    endog = pd.Series(response[0], index=frame.index, name=lhs[0].name())
    exog = pd.DataFrame(X, index=frame.index, columns=names)
    return endog, exog, design_info


def _ordered_terms(
    termlist: list[Any], frame: pd.DataFrame, eval_env: Any, seen: dict[Any, _Factor | None]
) -> list[tuple[Any, list[_Factor]]] | None:
    """The terms in patsy's order with their factors, or None when not a lean formula.

    patsy puts the terms without numeric factors first (the intercept, then
    by degree, stable), then each numeric factor's terms in order of appearance.
    """
    intercept, categorical, numeric = [], [], []
    for term in termlist:
        factors = _bare_factors(term, frame, eval_env, seen)
        if factors is None:
            return None
        kinds = {f.categorical for f in factors}
        if not factors:
            intercept.append((term, factors))
        elif kinds == {True}:
            categorical.append((term, factors))
        elif len(factors) == 1:
            numeric.append((term, factors))
        else:  # numeric interactions or numeric-by-categorical: patsy's bucket rules
            return None
    if categorical and not (intercept and _hierarchical([t for t, _ in categorical])):
        return None
    categorical.sort(key=lambda item: len(item[1]))
    return intercept + categorical + numeric


def _hierarchical(terms: list[Any]) -> bool:
    """Every proper, non-empty subset of each term's factors is a term too (``a * b``)."""
    present = {frozenset(term.factors) for term in terms}
    for term in terms:
        for size in range(1, len(term.factors)):
            for subset in itertools.combinations(term.factors, size):
                if frozenset(subset) not in present:
                    return False
    return True


def _bare_factors(
    term: Any, frame: pd.DataFrame, eval_env: Any, seen: dict[Any, _Factor | None]
) -> list[_Factor] | None:
    """The term's factors when each is a bare column of a supported type, else None."""
    out = []
    for factor in term.factors:
        if factor not in seen:
            seen[factor] = _bare_factor(factor, frame, eval_env)
        if seen[factor] is None:
            return None
        out.append(seen[factor])
    return out


def _bare_factor(factor: Any, frame: pd.DataFrame, eval_env: Any) -> _Factor | None:
    """A right-hand side factor with patsy's state (the design's predictions evaluate it)."""
    described = _bare_column(factor, frame)
    if described is None:
        return None
    state: dict[str, Any] = {}
    if factor.memorize_passes_needed(state, eval_env) != 0:
        return None
    return _Factor(factor, state, *described)


def _bare_column(factor: Any, frame: pd.DataFrame) -> tuple | None:
    """:func:`_describe` of the column a factor names on its own, or None.

    The response needs no more: patsy's state (20-50 us a factor) serves only
    the right-hand side's design.
    """
    name = bare_name(getattr(factor, "code", ""))
    if name is None or name not in frame.columns:
        return None
    values = column_array(frame, name)
    if values is None:  # a duplicated column name
        return None
    return _describe(values)


def _describe(values: Any) -> tuple | None:
    """``(values, None, None)`` of a numeric column, ``(None, codes, levels)`` of a categorical.

    ``values`` is the column's array (:func:`~statsmodels_lmer.columns.column_array`).
    """
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiu":
        return np.asarray(values, dtype=float), None, None
    if isinstance(dtype, pd.CategoricalDtype):
        levels = tuple(dtype.categories)
        codes = np.asarray(values.codes)
    elif pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        unique = pd.unique(np.asarray(values, dtype=object))
        if not all(isinstance(value, str) for value in unique):
            return None
        levels = tuple(sorted(unique))  # patsy's order for strings
        codes = pd.Categorical(values, categories=levels).codes
    else:
        return None
    if len(levels) < 2 or np.any(codes < 0):
        return None
    return None, codes.astype(np.intp), levels


def _treatment_columns(factors: list[_Factor], n: int) -> tuple[np.ndarray, list[Any]]:
    """The columns of a categorical term, the first factor's levels varying fastest."""
    contrasts = [Treatment().code_without_intercept(list(f.levels)) for f in factors]
    widths = [len(f.levels) - 1 for f in factors]
    column = np.zeros(n, dtype=np.intp)
    inside = np.ones(n, dtype=bool)  # rows at no factor's reference level
    stride = 1
    for f, width in zip(factors, widths):
        inside &= f.codes > 0
        column += (f.codes - 1) * stride
        stride *= width
    columns = np.zeros((n, stride))
    rows = np.flatnonzero(inside)
    columns[rows, column[rows]] = 1.0
    return columns, contrasts


def _column_names(factors: list[_Factor], contrasts: list[Any]) -> list[str]:
    """``g[T.b]:h[T.u]`` for each column, the first factor varying fastest."""
    parts = [
        [f.factor.name() + suffix for suffix in c.column_suffixes]
        for f, c in zip(factors, contrasts)
    ]
    combos = itertools.product(*reversed(parts))  # the last factor slowest
    return [":".join(reversed(combo)) for combo in combos]
