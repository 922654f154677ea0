"""Prediction for new data, as lme4's ``predict.merMod``.

The fixed part goes through the model's own patsy design (factor levels,
``I()``, ``C()`` and stateful transforms as fitted); each random term's columns
through the design of its left side on the training data. Levels not seen in
fitting get zero random effects when ``allow_new_levels=True`` (so a new cask
in a known batch keeps the batch effect); rows with a missing value give NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import patsy

from ..distributed.dask_fit import is_dask_frame
from ..exceptions import DataError, FormulaError, UnknownColumnError
from ..formula import BarTerm, parse_formula
from ..frame import names_in_code
from ..random_effects import term_contribution
from ..terms import RandomTerm

__all__ = ["complete_rows", "fixed_matrix", "predict", "selected_terms", "term_design", "term_rows"]

_NO_RANDOM = {"0", "~0", "~ 0", "na", "~1", "~ 1"}
_ENV = patsy.EvalEnvironment([{"np": np, "numpy": np}])


def selected_terms(model: Any, re_formula: Any) -> list[tuple[int, list[int]]]:
    """Model terms (index, column positions) that ``re_formula`` keeps.

    ``None`` keeps every term; ``"0"`` / ``"~0"`` none; a formula of bar
    terms (``"~ (1 | Subject)"``) the matching terms and columns.
    """
    terms = model.random_terms
    if re_formula is None:
        return [(i, list(range(t.n_cols))) for i, t in enumerate(terms)]
    text = str(re_formula).strip()
    if text.lower() in _NO_RANDOM:
        return []
    rhs = text[1:] if text.startswith("~") else text
    bars = parse_formula(f"_y ~ {rhs}").bars
    return [_match_bar(model, bar) for bar in bars]


def _match_bar(model: Any, bar: BarTerm) -> tuple[int, list[int]]:
    wanted = _lhs_names(model, bar.lhs)
    for index, term in enumerate(model.random_terms):
        if term.group == bar.group and set(wanted) <= set(term.column_names):
            return index, [term.column_names.index(name) for name in wanted]
    raise FormulaError(
        f"re_formula term {bar} does not match a random-effects term of the model "
        f"({', '.join(f'({t.lhs} | {t.group})' for t in model.random_terms)})"
    )


def _lhs_names(model: Any, lhs: str) -> list[str]:
    if lhs.strip() == "1":
        return ["Intercept"]
    return list(term_design(model, lhs).column_names)


def term_design(model: Any, lhs: str) -> Any:
    """patsy design of a random term's columns, built on the training rows."""
    return patsy.dmatrix(lhs, model.data.frame, eval_env=_ENV).design_info


def _columns_needed(model: Any, terms: list[tuple[int, list[int]]]) -> set[str]:
    codes = [f.code for f in model.data.model_spec.factor_infos]
    names: set[str] = set()
    for code in codes:
        names |= names_in_code(code)
    for index, _ in terms:
        term = model.random_terms[index]
        names |= set(term.factors)
        if term.lhs.strip() != "1":
            for factor in term_design(model, term.lhs).factor_infos:
                names |= names_in_code(factor.code)
    return names


def predict(
    res: Any,
    newdata: pd.DataFrame | None = None,
    re_formula: Any = None,
    allow_new_levels: bool = False,
) -> np.ndarray:
    """Predictions on the response scale; see :meth:`LmerResults.predict`."""
    model = res.model
    if (
        getattr(model, "partitions", None) is not None
    ):  # fitted from a Dask DataFrame: lazy predictions
        return _predict_partitioned(res, newdata, re_formula, allow_new_levels)
    if is_dask_frame(newdata):
        raise TypeError(
            "predictions for a Dask DataFrame need a model fitted from a Dask DataFrame; "
            "compute() the frame to predict with this model"
        )
    if newdata is None:
        newdata = model.data.frame
    if not isinstance(newdata, pd.DataFrame):
        raise TypeError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    terms = selected_terms(model, re_formula)
    complete = complete_rows(model, newdata, terms)
    rows = newdata.loc[complete]
    values = _fixed_part(res, rows)
    for index, cols in terms:
        values = values + _random_part(res, rows, index, cols, allow_new_levels)
    out = np.full(len(newdata), np.nan)
    out[complete] = values
    return out


def _predict_partitioned(res: Any, newdata: Any, re_formula: Any, allow_new_levels: bool) -> Any:
    rows = res.model.partitions
    newdata = rows.frame if newdata is None else newdata
    if not is_dask_frame(newdata):
        raise TypeError(
            "a model fitted from a Dask DataFrame predicts for a Dask DataFrame, got "
            f"{type(newdata).__name__}; use dask.dataframe.from_pandas"
        )
    return rows.predict(res, newdata, selected_terms(res.model, re_formula), allow_new_levels)


def complete_rows(
    model: Any, newdata: pd.DataFrame, terms: list[tuple[int, list[int]]]
) -> np.ndarray:
    """Boolean mask of rows with no missing value in a column the prediction uses."""
    needed = _columns_needed(model, terms)
    columns = [c for c in newdata.columns if str(c) in needed]
    present = set(map(str, newdata.columns))
    group_missing = [f for i, _ in terms for f in model.random_terms[i].factors if f not in present]
    if group_missing:
        raise UnknownColumnError(f"newdata lacks the grouping column(s) {group_missing}")
    if not columns:
        return np.ones(len(newdata), dtype=bool)
    return ~newdata[columns].isna().any(axis=1).to_numpy()


def _fixed_part(res: Any, rows: pd.DataFrame) -> np.ndarray:
    return fixed_matrix(res.model, rows) @ np.asarray(res.params, dtype=float)


def fixed_matrix(model: Any, rows: pd.DataFrame) -> np.ndarray:
    """The fixed-effects model matrix of new rows (the model's own coding)."""
    try:
        (design,) = patsy.build_design_matrices(
            [model.data.model_spec], rows, return_type="dataframe", NA_action="raise"
        )
    except patsy.PatsyError as err:
        raise DataError(f"cannot build the fixed effects for newdata: {err.message}") from None
    except (NameError, KeyError) as err:
        raise UnknownColumnError(f"newdata lacks a column the model uses: {err}") from None
    return design[list(model.exog_names)].to_numpy(dtype=float)


def _random_part(
    res: Any, rows: pd.DataFrame, index: int, cols: list[int], allow_new_levels: bool
) -> np.ndarray:
    Z, codes = term_rows(res.model, index, rows, allow_new_levels)
    return term_contribution(Z[:, cols], codes, res.conditional_modes[index][:, cols])


def term_rows(
    model: Any, index: int, rows: pd.DataFrame, allow_new_levels: bool
) -> tuple[np.ndarray, np.ndarray]:
    """A term's columns and level codes for new rows (-1 for unseen levels)."""
    term: RandomTerm = model.random_terms[index]
    codes = _new_codes(term, rows)
    unseen = codes < 0
    if unseen.any() and not allow_new_levels:
        labels = sorted(set(_labels(term, rows)[unseen]))
        raise DataError(
            f"newdata has levels of {term.group!r} not seen in fitting "
            f"({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''}); "
            "pass allow_new_levels=True to predict them with zero random effects"
        )
    return _term_columns(model, term, rows), codes


def _labels(term: RandomTerm, rows: pd.DataFrame) -> np.ndarray:
    parts = [rows[f].astype(str).to_numpy(dtype=object) for f in term.factors]
    labels = parts[0]
    for part in parts[1:]:
        labels = labels + ":" + part
    return np.asarray(labels, dtype=object)


def _new_codes(term: RandomTerm, rows: pd.DataFrame) -> np.ndarray:
    lookup = {str(level): code for code, level in enumerate(term.levels)}
    return np.array([lookup.get(label, -1) for label in _labels(term, rows)], dtype=np.int64)


def _term_columns(model: Any, term: RandomTerm, rows: pd.DataFrame) -> np.ndarray:
    if term.lhs.strip() == "1":
        return np.ones((len(rows), 1))
    (design,) = patsy.build_design_matrices(
        [term_design(model, term.lhs)], rows, return_type="dataframe", NA_action="raise"
    )
    return design.to_numpy(dtype=float)
