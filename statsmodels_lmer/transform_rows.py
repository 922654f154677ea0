"""Stateful transforms learn their statistics from all rows of the data, as in R.

R's ``model.frame`` evaluates ``scale(x)``, ``ns(x, df = 3)`` or ``poly(x, 2)``
on every row of the data, before rows with a missing value in another column
are dropped and before ``subset`` is applied (lme4 keeps the learned
statistics in the terms' ``predvars``); each transform ignores the rows where
its own input is missing. patsy, given the complete rows only, would learn
them from those: with missing values elsewhere or a subset, ``scale(x)`` was
centred and scaled by other numbers than lme4's (a coefficient of 1.20 where
lme4 gives 1.68).

A model keeps the columns its stateful transforms read, for all rows of the
data (``model.data.transform_data``, from
:func:`statsmodels_lmer.frame.transform_source`); :func:`design_matrix` builds a patsy design on
the complete rows with the statistics learned on those rows
(:func:`relearn_transforms`), for the fit, predictions and the type III
contrasts alike.
"""

from __future__ import annotations

import ast
import re
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import pandas as pd
import patsy

__all__ = [
    "design_matrix",
    "names_in_code",
    "patsy_columns",
    "r_ordered",
    "r_term_order",
    "readable_design",
    "readable_name",
    "relearn_transforms",
    "stateful_factors",
]


def stateful_factors(design_info: Any) -> list[tuple[Any, dict]]:
    """The factors of a patsy design that hold a stateful transform, with their states."""
    return [
        (factor, info.state)
        for factor, info in design_info.factor_infos.items()
        if isinstance(getattr(info, "state", None), dict) and info.state.get("transforms")
    ]


def relearn_transforms(design_info: Any, source: pd.DataFrame | None, columns: Any = ()) -> bool:
    """Memorize the design's stateful transforms again on ``source`` (in place).

    Each factor with a stateful transform sees the rows of ``source`` where
    every column it reads is present (R's transforms drop their own missing
    values). A factor reading one of ``columns`` (the data's) that ``source``
    lacks keeps what it learned. Returns whether a factor was relearned;
    ``source`` None (no rows were dropped) leaves the design as it is.
    """
    if source is None:
        return False
    relearned = False
    held = {str(c) for c in source.columns}
    for factor, state in stateful_factors(design_info):
        read = _names_in(factor)
        if any(str(c) in read and str(c) not in held for c in columns):
            continue
        names = [c for c in source.columns if str(c) in read]
        rows = source[names]
        rows = rows.loc[~rows.isna().any(axis=1).to_numpy()]
        data = patsy_columns(rows, names)  # as the fit reads them
        fresh: dict[str, Any] = {}
        passes = factor.memorize_passes_needed(fresh, state["eval_env"])
        for which in range(passes):
            factor.memorize_chunk(fresh, which, data)
            factor.memorize_finish(fresh, which)
        state.clear()
        state.update(fresh)
        relearned = True
    return relearned


def design_matrix(
    formula_like: Any,
    frame: Any,
    eval_env: Any,
    source: pd.DataFrame | None = None,
    **options: Any,
) -> Any:
    """``patsy.dmatrix(formula_like, frame, ...)`` with the transforms learned on ``source``.

    An integer ``eval_env`` counts frames from the caller, as patsy's does.
    """
    if isinstance(eval_env, int):
        eval_env = patsy.EvalEnvironment.capture(eval_env, reference=1)
    design = patsy.dmatrix(formula_like, frame, eval_env=eval_env, **options)
    info = design.design_info
    if not relearn_transforms(info, source, getattr(frame, "columns", ())):
        return design
    (design,) = patsy.build_design_matrices([info], frame, **options)
    return design


def r_ordered(terms: list[Any]) -> list[Any]:
    """patsy terms in the order of R's ``terms()``: by number of factors (main
    effects before interactions), then as written."""
    return sorted(terms, key=lambda term: len(term.factors))  # stable: as written


def r_term_order(info: Any, formula: str) -> Any:
    """A patsy design of a one-sided ``formula`` with its columns in R's order.

    patsy puts terms without numeric factors first (``x + f`` gives
    ``f[T.b], x``); R's ``model.matrix`` orders terms by their number of
    factors and then as written (``x, fb``). lme4 builds a bar term's columns
    that way, and theta, Lambda and the variance table follow them. The
    returned ``DesignInfo`` builds the same columns in R's order (``info``
    itself when the orders agree or the formula cannot be matched to it).
    """
    try:
        written = patsy.ModelDesc.from_formula(formula).rhs_termlist
    except patsy.PatsyError:
        return info
    ordered = r_ordered(written)
    if list(info.term_codings) == ordered or set(info.term_codings) != set(ordered):
        return info
    codings = OrderedDict((term, info.term_codings[term]) for term in ordered)
    names = [name for term in ordered for name in info.column_names[info.term_slices[term]]]
    return patsy.DesignInfo(names, factor_infos=info.factor_infos, term_codings=codings)


def _names_in(factor: Any) -> frozenset[str]:
    """Names a patsy factor's code reads (``Q("...")`` strings too)."""
    return names_in_code(getattr(factor, "code", ""))


@lru_cache(maxsize=1024)
def names_in_code(code: str) -> frozenset[str]:
    """Variable names (and ``Q("...")`` strings) in a patsy factor's code.

    Parsed once per code (a fit reads the response's and each term's a few
    times: 5-10 us a parse).
    """
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "Q"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return frozenset(names)


def patsy_columns(frame: pd.DataFrame, used: list[Any]) -> dict[str, Any]:
    """The used columns for patsy, plain numeric ones as arrays (several times faster)."""
    out = {}
    for name in used:
        values = frame[name]  # once: a column lookup builds a Series (10-20 us)
        out[str(name)] = values.to_numpy() if _is_plain_numeric(values) else values
    return out


def _is_plain_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


_NUMPY_REPR = re.compile(r"np\.(?:u?int\d+|float\d+|bool_?|str_)\((.*?)\)(?=[\]:])")
"""numpy 2's scalar repr (``np.int64(1936)``) inside a patsy level label."""


_TIME_REPR = re.compile(r"(?:Timestamp|np\.datetime64)\('([^']*)'\)(?=[\]:])")
"""A date level: pandas' ``Timestamp('...')`` (in memory) or ``np.datetime64('...')`` (Dask)."""


def readable_name(name: str) -> str:
    """A patsy column name with numpy 2's scalar reprs as plain values.

    patsy labels a level by ``repr``: an integer column in ``C(year)`` gave
    ``C(year)[T.np.int64(1936)]``, where R, formulaic and patsy under numpy 1
    give ``C(year)[T.1936]`` (the name ``params`` and ``t_test`` expect).
    Dates become pandas' text of the time (``C(day)[T.2020-01-02 00:00:00]``),
    in memory and on Dask alike.
    """
    if "np." in name:
        name = _NUMPY_REPR.sub(r"\1", name)
    if "(" in name and ("Timestamp(" in name or "datetime64(" in name):
        name = _TIME_REPR.sub(lambda m: str(pd.Timestamp(m.group(1))), name)
    return name


def readable_design(info: Any) -> Any:
    """``info`` (a patsy ``DesignInfo``) with :func:`readable_name` column names."""
    names = [readable_name(name) for name in info.column_names]
    if names == list(info.column_names) or len(set(names)) != len(names):
        return info
    return patsy.DesignInfo(names, factor_infos=info.factor_infos, term_codings=info.term_codings)
