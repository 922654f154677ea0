"""The fixed part of a formula made of numeric columns, without patsy's data passes.

``Reaction ~ Days``, ``y ~ 0 + x + z``: when the response and every fixed
term are bare numeric columns (plus the intercept), the model matrix is those
columns, and patsy's description of it needs no look at the data. patsy's
``dmatrices`` still makes a memorizing pass and a building pass over the data,
about 0.5 ms for sleepstudy, a quarter of building the model. Here the
columns are taken directly and patsy's own ``DesignInfo`` is assembled from
its factor protocol (``memorize_passes_needed`` with no pass needed), so
predictions on new data go through patsy exactly as for a model built by
``dmatrices``. Anything else (categorical or boolean columns, functions,
interactions, stateful transforms, nullable dtypes) returns None and goes
through patsy.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd
import patsy
from patsy.design_info import FactorInfo, SubtermInfo

from .formula import model_desc

__all__ = ["numeric_design"]


def numeric_design(
    fixed: str, frame: pd.DataFrame, eval_env: Any
) -> tuple[pd.Series, pd.DataFrame, patsy.DesignInfo] | None:
    """``(endog, exog, design_info)`` as patsy's ``dmatrices`` would give them, or None.

    Parameters
    ----------
    fixed : str
        The fixed part, ``"y ~ x + z"`` (column names quoted as patsy needs).
    frame : pandas.DataFrame
        The complete rows.
    eval_env : patsy.EvalEnvironment
        Kept in the factors' state, as patsy keeps it.

    Returns
    -------
    tuple or None
        None when a term is not a bare numeric column or the intercept.
    """
    desc = model_desc(fixed)
    if len(desc.lhs_termlist) != 1 or not isinstance(eval_env, patsy.EvalEnvironment):
        return None
    response = _numeric_factor(desc.lhs_termlist[0], frame, eval_env)
    if response is None:
        return None
    intercept = [term for term in desc.rhs_termlist if not term.factors]
    columns = [_numeric_factor(term, frame, eval_env) for term in desc.rhs_termlist if term.factors]
    if any(column is None for column in columns):
        return None
    term_codings: OrderedDict = OrderedDict()
    names, values = [], []
    if intercept:  # patsy puts the intercept first
        term_codings[intercept[0]] = [SubtermInfo([], {}, 1)]
        names.append("Intercept")
        values.append(np.ones(len(frame)))
    factor_infos = {}
    for term, factor, state, column in columns:
        term_codings[term] = [SubtermInfo([factor], {}, 1)]
        factor_infos[factor] = FactorInfo(factor, "numerical", state, num_columns=1)
        names.append(factor.name())
        values.append(column)
    X = np.column_stack(values) if values else np.empty((len(frame), 0))
    design_info = patsy.DesignInfo(names, factor_infos, term_codings)
    _, factor, _, y = response
    endog = pd.Series(y, index=frame.index, name=factor.name())
    exog = pd.DataFrame(X, index=frame.index, columns=names)
    return endog, exog, design_info


def _numeric_factor(term: Any, frame: pd.DataFrame, eval_env: Any) -> tuple | None:
    """``(term, factor, state, float column)`` of a one-factor term naming a numeric column."""
    if len(term.factors) != 1:
        return None
    factor = term.factors[0]
    name = _column_name(getattr(factor, "code", ""))
    if name is None or name not in frame.columns:
        return None
    values = frame[name]
    if not isinstance(values, pd.Series):  # a duplicated column name
        return None
    dtype = values.dtype
    if not isinstance(dtype, np.dtype) or dtype.kind not in "fiu":
        return None
    state: dict[str, Any] = {}
    if factor.memorize_passes_needed(state, eval_env) != 0:
        return None
    return term, factor, state, values.to_numpy(dtype=float)


def _column_name(code: str) -> str | None:
    """The column a factor's code names: ``x`` or ``Q("x")``/``Q('x')``; else None."""
    code = code.strip()
    if code.isidentifier():
        return code
    for quote in ('"', "'"):
        start, end = f"Q({quote}", f"{quote})"
        if code.startswith(start) and code.endswith(end):
            inner = code[len(start) : -len(end)]
            if quote not in inner and "\\" not in inner:
                return inner
    return None
