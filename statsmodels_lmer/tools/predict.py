"""Prediction for new data, as lme4's ``predict.merMod``.

The fixed part goes through the model's own patsy design (factor levels,
``I()``, ``C()`` and stateful transforms as fitted); each random term's columns
through the design of its left side on the training data. Levels not seen in
fitting get zero random effects when ``allow_new_levels=True`` (so a new cask
in a known batch keeps the batch effect); rows with a missing value give NaN.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import patsy

from ..arguments import check_frame
from ..data_checks import (
    column_dtypes,
    native_byte_order,
    numeric_objects,
    plain_columns,
    with_columns,
)
from ..distributed.dask_fit import is_dask_frame
from ..exceptions import DataError, FormulaError, UnknownColumnError
from ..formula import BarTerm, parse_formula
from ..frame import column_or_array
from ..offsets import add_offsets, formula_offset
from ..random_effects import term_contribution
from ..restricted import check_bars
from ..terms import RandomTerm, match_levels
from ..transform_rows import design_matrix, names_in_code, r_term_order

__all__ = [
    "complete_rows",
    "fitted_frame",
    "fitted_keyword",
    "fitted_types",
    "fixed_matrix",
    "patsy_rows",
    "predict",
    "row_offsets",
    "row_values",
    "selected_terms",
    "term_design",
    "term_rows",
]

_NO_RANDOM = {"0", "~0", "~ 0", "na", "~1", "~ 1"}


def selected_terms(model: Any, re_formula: Any) -> list[tuple[int, list[int]]]:
    """Model terms (index, column positions) that ``re_formula`` keeps.

    ``None`` keeps every term; ``"0"`` / ``"~0"`` none; a formula of bar
    terms (``"~ (1 | Subject)"``) the matching terms and columns.
    """
    terms = model.random_terms
    if re_formula is None:
        return [(i, list(range(t.n_cols))) for i, t in enumerate(terms)]
    if re_formula is pd.NA or (isinstance(re_formula, float) and np.isnan(re_formula)):
        return []  # lme4's re.form = NA
    text = str(re_formula).strip()
    if text.lower() in _NO_RANDOM:
        return []
    rhs = text[1:] if text.startswith("~") else text
    bars = parse_formula(f"_y ~ {rhs}").bars
    if model.restricted:
        check_bars(bars, model.data.frame.columns)
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
    if model.partitions is not None:  # rows on a Dask cluster: the design learned in passes
        return list(model.partitions.learned_designs([lhs])[0].column_names)
    return list(term_design(model, lhs).column_names)


def term_design(model: Any, lhs: str) -> Any:
    """patsy design of a random term's columns, built on the training rows
    (stateful transforms learned on all rows of the data, as in fitting)."""
    source = getattr(model.data, "transform_data", None)
    design = design_matrix(lhs, fitted_frame(model), model.formula_env(), source)
    return r_term_order(design.design_info, lhs)


def _columns_needed(
    model: Any, terms: list[tuple[int, list[int]]], grouping: bool = True
) -> set[str]:
    """Names the prediction reads: the fixed part's, the terms' columns and (``grouping``)
    their grouping factors."""
    codes = [f.code for f in _design_spec(model).factor_infos]
    names: set[str] = set()
    for code in codes:
        names |= names_in_code(code)
    for index, _ in terms:
        term = model.random_terms[index]
        if grouping:
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
    offset: Any = None,
) -> np.ndarray:
    """Predictions on the response scale; see :meth:`LmerResults.predict`."""
    model = res.model
    if model.partitions is not None:  # fitted from a Dask DataFrame: lazy predictions
        return _predict_partitioned(res, newdata, re_formula, allow_new_levels, offset)
    if is_dask_frame(newdata):
        raise TypeError(
            "predictions for a Dask DataFrame need a model fitted from a Dask DataFrame; "
            "compute() the frame to predict with this model"
        )
    rows_given = newdata is not None
    if not rows_given and offset is None and getattr(model.data, "frame", None) is None:
        return _fitted_rows(res, selected_terms(model, re_formula))  # a model from arrays
    newdata = fitted_frame(model) if newdata is None else newdata
    check_frame(newdata, "newdata")
    newdata = fitted_types(model, newdata)
    terms = selected_terms(model, re_formula)
    complete = complete_rows(model, newdata, terms, allow_new_levels)
    row_offset = row_offsets(model, newdata, rows_given, offset)
    if row_offset is not None:
        complete &= ~np.isnan(row_offset)
    rows = newdata.loc[complete]
    values = _fixed_part(res, rows)
    if row_offset is not None:
        values = values + row_offset[complete]
    for index, cols in terms:
        values = values + _random_part(res, rows, index, cols, allow_new_levels)
    out = np.full(len(newdata), np.nan)
    out[complete] = values
    return out


def _fitted_rows(res: Any, terms: list[tuple[int, list[int]]]) -> np.ndarray:
    """Predictions for the fitted rows from the model's own arrays (no frame needed)."""
    model = res.model
    values = np.array(res.fittedvalues_marginal, dtype=float)
    for index, cols in terms:
        term = model.random_terms[index]
        modes = res.conditional_modes[index][:, cols]
        values = values + term_contribution(term.Z[:, cols], term.codes, modes)
    return values


def fitted_frame(model: Any) -> pd.DataFrame:
    """The rows the model was built from (its model frame).

    Raises
    ------
    DataError
        A model built from arrays (``Lmer(endog, exog, random_terms)``) has no
        frame: its columns cannot be evaluated on other rows.
    """
    frame = getattr(model.data, "frame", None)
    if frame is None:
        raise DataError(
            "predictions and simulations from rows need a model built from a formula and "
            "a DataFrame (Lmer.from_formula or lmer); this model was built from arrays, so "
            "its columns cannot be evaluated on other rows: fit it by formula"
        )
    return frame


def fitted_types(model: Any, newdata: pd.DataFrame) -> pd.DataFrame:
    """``newdata`` with its categorical columns on the categories of the fitted rows
    and its numpy columns in native byte order
    (:func:`~statsmodels_lmer.data_checks.native_byte_order`).

    The fit drops the categories no fitted row uses (as R's model frame drops
    unused levels), and patsy refuses a ``Categorical`` whose categories differ
    from the fitted ones: new rows holding only fitted values are recoded to
    the fitted categories. A column with values the fit never saw is left as
    it is (a new level of a grouping factor, or patsy's error for a fixed factor).
    A categorical column that was not categorical in fitting is read by its
    values, as the fitted column was (patsy refuses categories that differ
    from the fitted levels, even in order).
    """
    newdata = native_byte_order(newdata)
    fitted = fitted_frame(model)
    fitted_dtypes = column_dtypes(fitted)
    recoded = {}
    for name, dtype in column_dtypes(newdata).items():
        if not (isinstance(dtype, pd.CategoricalDtype) and name in fitted_dtypes):
            continue
        values, known = newdata[name], fitted[name]
        if not (isinstance(values, pd.Series) and isinstance(known, pd.Series)):
            continue  # a duplicated column name
        if not isinstance(fitted_dtypes[name], pd.CategoricalDtype):
            recoded[name] = values.astype(object)  # read by value, as the fitted column
            continue
        levels = known.cat.categories
        if values.cat.categories.equals(levels):
            continue
        present = values.cat.categories[np.unique(values.cat.codes[values.cat.codes >= 0])]
        if present.isin(levels).all():
            recoded[name] = values.cat.set_categories(levels)
    return with_columns(newdata, recoded)


def _predict_partitioned(
    res: Any, newdata: Any, re_formula: Any, allow_new_levels: bool, offset: Any
) -> Any:
    model = res.model
    rows = model.partitions
    newdata = rows.frame if newdata is None else newdata
    if not is_dask_frame(newdata):
        raise TypeError(
            "a model fitted from a Dask DataFrame predicts for a Dask DataFrame, got "
            f"{type(newdata).__name__}; use dask.dataframe.from_pandas"
        )
    if offset is not None and not isinstance(offset, str):
        raise TypeError(
            "for a Dask DataFrame, offset must be the name of a column of newdata, got "
            f"{type(offset).__name__}"
        )
    offset_column = offset if offset is not None else model.offset_column
    terms = selected_terms(model, re_formula)
    return rows.predict(res, newdata, terms, allow_new_levels, offset_column)


def row_offsets(
    model: Any, newdata: pd.DataFrame, rows_given: bool, given: Any
) -> np.ndarray | None:
    """The offset of each row of ``newdata`` (None when the model has none).

    For the fitted rows (``rows_given`` False, no ``given``) the fitted
    offset. Otherwise the formula's ``offset(...)`` terms evaluated on the
    rows, as lme4's ``predict.merMod``, plus the ``offset=`` keyword's part
    (:func:`row_values`): ``given`` when given, else the column the model
    took it from.

    Raises
    ------
    UnknownColumnError
        newdata lacks a column an offset term or the offset column needs.
    DataError
        The model's ``offset=`` was an array and newdata has other rows.
    """
    if given is None and not rows_given:
        return None if model.offset is None else np.asarray(model.offset, dtype=float)
    terms = formula_offset(model.offset_terms, newdata, model.formula_env(), "newdata")
    return add_offsets(terms, row_values(model, newdata, rows_given, given, "offset"))


def fitted_keyword(model: Any, what: str) -> np.ndarray | None:
    """The model's values of the ``weights=`` or ``offset=`` keyword for its rows.

    For the offset, the keyword's part only (without the formula's
    ``offset(...)`` terms).
    """
    return getattr(model, "offset_argument" if what == "offset" else what)


def row_values(
    model: Any, newdata: pd.DataFrame, rows_given: bool, given: Any, what: str
) -> np.ndarray | None:
    """The weights, or the ``offset=`` keyword's offset, of each row of ``newdata``
    (None when the model has none).

    ``given`` (an array or a column name) wins; otherwise the fitted values
    for the fitted rows, or the column the model took them from.

    Parameters
    ----------
    what : {"offset", "weights"}

    Raises
    ------
    DataError
        The model's were an array and newdata has other rows: pass them.
    UnknownColumnError
        newdata lacks the column.
    """
    fitted = fitted_keyword(model, what)
    column = getattr(model, f"{what}_column", None)
    if given is None and not rows_given:
        return None if fitted is None else np.asarray(fitted, dtype=float)
    if given is None and fitted is None:
        return None
    if given is None and column is None:
        raise DataError(
            f"the model was fitted with {what} given as an array, so they are unknown for "
            f"newdata: pass {what}= with one value per row of newdata (or a column name)"
        )
    values = column_or_array(column if given is None else given, newdata, what, "newdata")
    if what == "weights" and np.any(values[~np.isnan(values)] <= 0):
        raise DataError(
            "weights must be positive for the rows of newdata: the residual variance is sigma^2 / w"
        )
    return values


def complete_rows(
    model: Any,
    newdata: pd.DataFrame,
    terms: list[tuple[int, list[int]]],
    allow_new_levels: bool = False,
) -> np.ndarray:
    """Boolean mask of rows with no missing value in a column the prediction uses.

    With ``allow_new_levels`` a missing grouping value does not count: its row
    is predicted as a new level, as lme4's ``predict.merMod`` does (without it
    lme4 refuses such rows; they give NaN here, as other missing values do).
    """
    needed = _columns_needed(model, terms, grouping=not allow_new_levels)
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


_UNDEFINED_NAME = re.compile(r"NameError: name '([^']+)' is not defined")
"""How patsy reports a column the rows do not have."""


def _design_spec(model: Any) -> Any:
    """The model's patsy design of the fixed part (its ``model_spec``)."""
    spec = getattr(model.data, "model_spec", None)
    if spec is None:
        model.formula_env()  # raises when the pickle lost a function the formula uses
        raise FormulaError("the fixed-effects design of this model could not be rebuilt")
    return spec


def fixed_matrix(model: Any, rows: pd.DataFrame) -> np.ndarray:
    """The fixed-effects model matrix of new rows (the model's own coding).

    The rows' categoricals are put on the fitted categories again: rows left
    out for a missing value may have held the only new category.
    """
    spec = _design_spec(model)
    rows = patsy_rows(model, fitted_types(model, rows))
    try:
        (design,) = patsy.build_design_matrices(
            [spec], rows, return_type="dataframe", NA_action="raise"
        )
    except patsy.PatsyError as err:
        missing = _UNDEFINED_NAME.search(err.message)
        if missing and missing.group(1) in model.data.frame.columns:
            raise UnknownColumnError(
                f"newdata lacks column {missing.group(1)!r}, which the model uses"
            ) from None
        raise DataError(f"cannot build the fixed effects for newdata: {err.message}") from None
    except (NameError, KeyError) as err:
        raise UnknownColumnError(f"newdata lacks a column the model uses: {err}") from None
    except (TypeError, ValueError, AttributeError) as err:
        changed = _type_changes(model, rows)
        raise DataError(
            "cannot build the fixed effects for newdata: "
            + (f"{changed}; convert them back" if changed else f"{type(err).__name__}: {err}")
        ) from None
    return design[list(model.exog_names)].to_numpy(dtype=float)


def patsy_rows(model: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with their columns as the fit read them (the same conversions).

    Numbers stored as objects in a column that was numeric in fitting become
    floats (:func:`~statsmodels_lmer.data_checks.numeric_objects`), then
    :func:`~statsmodels_lmer.data_checks.plain_columns`: the data a model was
    fitted on predict as they are.
    """
    fitted = column_dtypes(model.data.frame)
    numbers = [
        name
        for name, dtype in column_dtypes(rows).items()
        if getattr(dtype, "kind", "") == "O"
        and pd.api.types.is_numeric_dtype(fitted.get(name, object))
    ]
    return plain_columns(numeric_objects(rows, numbers), list(rows.columns))


def _type_changes(model: Any, rows: pd.DataFrame) -> str:
    """Columns numeric in fitting and not in newdata, or the other way round."""
    fitted = model.data.frame
    numeric = pd.api.types.is_numeric_dtype
    return "; ".join(
        f"column {c!r} was {fitted[c].dtype} in fitting and is {rows[c].dtype} in newdata"
        for c in rows.columns
        if c in fitted.columns and numeric(fitted[c]) != numeric(rows[c])
    )


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
    rows = patsy_rows(model, rows)
    codes = match_levels(term, rows, allow_new_levels)
    return _term_columns(model, term, rows), codes


def _term_columns(model: Any, term: RandomTerm, rows: pd.DataFrame) -> np.ndarray:
    if term.lhs.strip() == "1":
        return np.ones((len(rows), 1))
    (design,) = patsy.build_design_matrices(
        [term_design(model, term.lhs)], rows, return_type="dataframe", NA_action="raise"
    )
    return design.to_numpy(dtype=float)
