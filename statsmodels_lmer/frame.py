"""The model frame: from a formula and a DataFrame to checked model arrays.

Like lme4's ``model.frame`` with ``na.omit``: find every column the formula
uses, drop (and count) rows with a missing value in any of them, then build
the fixed-effects matrices through statsmodels' formula machinery (patsy) and
the random terms on the complete rows. The caller's DataFrame is never
modified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import patsy
from statsmodels.tools.sm_exceptions import ValueWarning

from .columns import column_array, suggest_column, undefined_name
from .data_checks import (
    FAR_MESSAGE,
    check_exact_fit,
    check_magnitudes,
    check_observations,
    check_response_type,
    check_unique_columns,
    check_zero_columns,
    column_dtypes,
    confounded_terms,
    drop_unused_categories,
    far_random_columns,
    fitted_terms_size,
    native_byte_order,
    numeric_objects,
    owned_frame,
    plain_columns,
    random_columns,
    refuse_containers,
    refuse_datetimes,
    refuse_non_real,
    select_rows,
    subset_positions,
    unidentified_terms,
)
from .exceptions import DataError, FormulaError, ResponseTypeError, UnknownColumnError, warn
from .formula import (
    ParsedFormula,
    bare_name,
    deep_parsing,
    model_desc,
    not_python,
    quote_formula,
    r_function_hint,
)
from .lean_design import lean_design
from .linalg import r_factor
from .offsets import add_offsets, formula_offset
from .terms import RandomTerm, build_random_terms
from .transform_rows import names_in_code, patsy_columns, readable_design, relearn_transforms
from .transforms import FORMULA_TRANSFORMS

__all__ = [
    "ModelFrame",
    "aliased_columns",
    "bare_columns",
    "build_model_frame",
    "check_fixed_values",
    "check_groups",
    "check_response_fit",
    "check_scale_x",
    "check_weight_counts",
    "checked_drop_cols",
    "column_or_array",
    "fixed_part_error",
    "magnitude_columns",
    "missing_rows",
    "qr_diagonal",
    "rows_by_label",
    "scales_differ",
    "subset_values",
    "used_columns",
    "warn_aliased",
]

SCALE_MESSAGE = "Some predictor variables are on very different scales: consider rescaling"
"""lme4's ``check.scaleX`` warning."""


@dataclass(eq=False)
class ModelFrame:
    """Everything the model needs from the data, checked.

    Attributes
    ----------
    endog : pandas.Series
        The response.
    exog : pandas.DataFrame
        The fixed-effects model matrix (statsmodels/patsy column names).
    design_info : patsy.DesignInfo
        patsy's description of ``exog`` (for new data).
    terms : list of RandomTerm
        Random terms, in lme4's order.
    weights, offset : ndarray or None
        Prior weights and offset for the complete rows; ``offset`` is the
        total, the formula's ``offset(...)`` terms plus the ``offset=`` keyword.
    frame : pandas.DataFrame
        The complete rows of the data (a new frame).
    n_dropped : int
        Rows dropped for missing values.
    dropped_columns : list of str
        Fixed-effects columns dropped as aliased (rank deficiency).
    formula : ParsedFormula or None
        The formula as evaluated (column names patsy cannot read quoted).
    codes : tuple of str
        The Python code of the response and of every term (patsy's factor codes).
    transform_data : pandas.DataFrame or None
        The columns the stateful transforms read, for every row of the data
        (before ``subset`` and the dropping of incomplete rows), where their
        statistics are learned as in R (:mod:`~statsmodels_lmer.transform_rows`);
        None when no row was left out or no stateful transform is used.
    offset_terms : tuple of str
        The code inside each ``offset(...)`` term of the formula (as evaluated,
        column names quoted).
    offset_argument : ndarray or None
        The ``offset=`` keyword's part of ``offset`` (lme4's ``offset`` argument).
    dropped_rows : ndarray of int
        Positions of the rows dropped for missing values, in the data (after
        ``subset``): lme4's ``na.action``.
    """

    endog: pd.Series
    exog: pd.DataFrame
    design_info: Any
    terms: list[RandomTerm]
    weights: np.ndarray | None
    offset: np.ndarray | None
    frame: pd.DataFrame
    n_dropped: int
    dropped_columns: list[str]
    formula: ParsedFormula | None = None
    codes: tuple[str, ...] = ()
    transform_data: pd.DataFrame | None = None
    offset_terms: tuple[str, ...] = ()
    offset_argument: np.ndarray | None = None
    dropped_rows: np.ndarray | None = None


def build_model_frame(
    parsed: ParsedFormula,
    data: Any,
    weights: Any = None,
    offset: Any = None,
    subset: Any = None,
    missing: str = "drop",
    eval_env: Any = 0,
    transform_data: pd.DataFrame | None = None,
    transform_missing: np.ndarray | None = None,
) -> ModelFrame:
    """Build and check the model arrays; see :class:`ModelFrame`.

    Column names patsy cannot read as Python (``x.1``, ``class``, a column
    named ``Intercept``) are quoted as ``Q("x.1")`` first.

    The formula's ``offset(...)`` terms are evaluated on the rows complete in
    the columns the model uses, and added to ``offset``
    (:mod:`~statsmodels_lmer.offsets`); a row where an offset is missing (NaN)
    is dropped as incomplete. So is a row where a transform in the fixed part
    gives NaN (``np.log(x)`` of a negative ``x``), as R's model frame drops it,
    with a ``ValueWarning``: the frame is built again with
    ``transform_missing``, those rows of the (subset) data marked.

    Raises
    ------
    UnknownColumnError
        A grouping factor, weights or offset column is not in the data, or an
        offset term uses a name that is neither a column nor in ``eval_env``.
    DataError
        No usable rows, missing values with ``missing="raise"``, non-finite
        values, invalid weights, grouping factors lme4 would refuse, a
        constant response, fewer observations than coefficients, dates used
        as predictors or values too large or small for double precision.
    ResponseTypeError
        The response, weights or offsets are not numeric.
    FormulaError
        patsy cannot evaluate the fixed part.
    """
    data_given, weights_given, offset_given = data, weights, offset
    data = _as_frame(data)
    source = data  # where stateful transforms learn (R: every row, before subset)
    if subset is not None:
        full, data = data, select_rows(data, subset)
        positions = subset_positions(full, subset)
        weights = rows_by_label(weights, full, "weights")
        offset = rows_by_label(offset, full, "offset")
        weights = subset_values(weights, len(full), positions, "weights")
        offset = subset_values(offset, len(full), positions, "offset")
    if missing not in ("drop", "raise", "none"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    parsed = quote_formula(parsed, data.columns)
    weights = column_or_array(weights, data, "weights")
    offset = column_or_array(offset, data, "offset")
    with deep_parsing(parsed.fixed):
        used, bare, codes = used_columns(parsed, data)
    check_unique_columns(data, used)
    incomplete = missing_rows(data, used)
    if transform_missing is not None:
        incomplete |= transform_missing
    for extra in (weights, offset):
        if extra is not None:
            incomplete |= np.isnan(extra)
    offset_terms = _terms_offset(parsed, data, incomplete, eval_env)
    if offset_terms is not None:
        incomplete |= np.isnan(offset_terms)
    n_dropped = int(incomplete.sum())
    if n_dropped and missing != "drop":
        given = {"weights": (weights, weights_given), "offset": (offset, offset_given)}
        named = [str(c) for c in used] + [
            name if isinstance(name, str) else what
            for what, (values, name) in given.items()
            if values is not None and np.isnan(values).any()
        ]
        raise DataError(
            f"{n_dropped} of {len(data)} rows have missing values in the columns "
            f"the model uses ({', '.join(named)}); pass missing='drop' to drop them"
        )
    if n_dropped == len(data):
        raise DataError(
            f"no rows left to fit: every row has a missing value in a column the model "
            f"uses ({', '.join(map(str, used))}; {len(data)} rows)"
        )
    frame = data.loc[~incomplete] if n_dropped else owned_frame(data)
    predictors, response = bare_columns(parsed, used, bare)
    dtypes = column_dtypes(frame, used)  # one mapping for the checks (again if one changed)
    converted = numeric_objects(frame, predictors + response, dtypes)
    if converted is not frame:
        frame, dtypes = converted, column_dtypes(converted, used)
    refuse_containers(frame, used, dtypes)
    refuse_datetimes(frame, predictors, dtypes)
    refuse_non_real(frame, predictors, response, dtypes)
    frame = drop_unused_categories(frame, used, dtypes)
    frame = plain_columns(frame, used, dtypes)
    weights = None if weights is None else weights[~incomplete]
    argument = None if offset is None else offset[~incomplete]
    offset = add_offsets(None if offset_terms is None else offset_terms[~incomplete], argument)
    _check_weights(weights)
    if transform_data is not None:  # given (update() of a model): those rows
        source = _as_frame(transform_data)
    elif len(source) == len(frame):  # no row left out: patsy learns on the frame
        source = None
    with deep_parsing(parsed.fixed):
        learned_on = transform_source(parsed, source, eval_env)
        try:
            endog, exog, design_info = _fixed_part(parsed, frame, used, eval_env, learned_on)
        except _TransformNaNError as nan:
            again = (
                np.zeros(len(data), dtype=bool) if transform_missing is None else transform_missing
            )
            again[np.flatnonzero(~incomplete)[nan.rows]] = True
            warn(
                f"{', '.join(nan.names)} gives NaN on {int(nan.rows.sum())} rows (np.log of a "
                "negative value?); they are dropped as missing, as R's model frame drops them",
                ValueWarning,
            )
            arguments = (weights_given, offset_given, subset, missing, eval_env, transform_data)
            return build_model_frame(parsed, data_given, *arguments, transform_missing=again)
        transform_data = learned_on
    terms = build_random_terms(parsed.bars, frame, eval_env, transform_data)
    y = endog.to_numpy(dtype=float) - (0.0 if offset is None else offset)
    X = exog.to_numpy(dtype=float)
    check_magnitudes(magnitude_columns(parsed.response, y, list(exog.columns), X, terms), weights)
    factor = r_factor(np.column_stack([X, y]))
    diagonal = padded_diagonal(factor)
    aliased = aliased_columns(X, diagonal=diagonal[:-1])
    exog, dropped = _drop_aliased(exog, aliased)
    check_observations(parsed.response, y, exog.shape[1], offset is not None)
    _check_exact_fit_of(parsed.response, factor, y, kept_columns(X.shape[1], aliased))
    if check_scale_x(exog.to_numpy(dtype=float)):
        warn(SCALE_MESSAGE, ValueWarning)
    far = far_random_columns(terms)
    if far:
        warn(FAR_MESSAGE.format(names=", ".join(far)), ValueWarning)
    check_groups(terms, len(frame), partial(_missing_note, data, used, n_dropped))
    check_zero_columns(terms)
    for message in unidentified_terms(terms) + confounded_terms(exog.to_numpy(float), terms):
        warn(message, ValueWarning)
    return ModelFrame(
        endog,
        exog,
        design_info,
        terms,
        weights,
        offset,
        frame,
        n_dropped,
        dropped,
        parsed,
        codes,
        transform_data,
        parsed.offsets,
        argument,
        np.flatnonzero(incomplete),
    )


def _terms_offset(
    parsed: ParsedFormula, data: pd.DataFrame, incomplete: np.ndarray, eval_env: Any
) -> np.ndarray | None:
    """The formula's offset terms on every row of ``data`` (NaN on ``incomplete`` rows).

    They are evaluated on the rows complete in the model's columns only (a
    term such as ``np.log(t)`` may not accept what a missing value is stored as).
    """
    if not parsed.offsets:
        return None
    if not incomplete.any():
        return formula_offset(parsed.offsets, data, eval_env)
    values = np.full(len(data), np.nan)
    values[~incomplete] = formula_offset(parsed.offsets, data.loc[~incomplete], eval_env)
    return values


def missing_rows(data: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Rows with a missing value in any of ``columns`` (a boolean array).

    Column by column, without building the sub-frame: numpy floats by
    ``isnan``, numpy integers and booleans cannot be missing, anything else
    (objects, categories, strings, nullable dtypes) by pandas' ``isna``.
    """
    missing = np.zeros(len(data), dtype=bool)
    for name in columns:
        values = column_array(data, name)  # no Series (10-20 us each)
        if values is None:  # a duplicated column name
            missing |= data[name].isna().any(axis=1).to_numpy()
        elif isinstance(values.dtype, pd.CategoricalDtype):  # code -1 (40 us less than isna)
            missing |= values.codes < 0
        elif not isinstance(values.dtype, np.dtype) or values.dtype.kind not in "fiub":
            missing |= np.asarray(pd.isna(values), dtype=bool)
        elif values.dtype.kind == "f":
            missing |= np.isnan(values)
    return missing


def magnitude_columns(
    response: str, y: np.ndarray, names: list[str], X: np.ndarray, terms: list[RandomTerm]
) -> list[tuple[list[str], np.ndarray]]:
    """The columns whose magnitudes are checked (see :func:`check_magnitudes`), named,
    in blocks ``(names, 2-D array)``.

    The response minus any offset, every fixed-effects column (``names`` of
    the columns of ``X``, kept as one block) and the random-effects columns
    that are not intercepts.
    """
    random = random_columns(terms)
    blocks = [([f"response {response!r}"], np.asarray(y, dtype=float)[:, None])]
    blocks.append(([f"fixed-effects column {c!r}" for c in names], np.asarray(X, dtype=float)))
    if random:
        blocks.append((list(random), np.column_stack(list(random.values()))))
    return blocks


def bare_columns(parsed: ParsedFormula, used: list[str], bare: set[str]) -> tuple[list, list]:
    """The predictors used as whole terms (not grouping factors), and the response if bare.

    ``used`` and ``bare`` are from :func:`used_columns`: the columns whose values
    patsy reads as they are (numbers stored as objects are converted, dates refused).
    """
    grouping = {name for bar in parsed.bars for name in bar.factors}
    predictors = [c for c in used if str(c) in bare and c not in grouping]
    response = [c for c in used if str(c) == bare_name(parsed.response)]
    return predictors, response


def _as_frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, dict):
        frame = pd.DataFrame(data)
    else:
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if len(frame) == 0:
        raise DataError("data has no rows")
    return native_byte_order(frame)


def column_or_array(
    value: Any, data: pd.DataFrame, what: str, where: str = "the data"
) -> np.ndarray | None:
    """Weights or an offset given as a column name or an array: one float per row.

    Parameters
    ----------
    value : str, array_like or None
    data : pandas.DataFrame
        The rows (and columns) they belong to.
    what : str
        ``"weights"`` or ``"offset"``, for messages.
    where : str
        What ``data`` is, for messages (``"the data"``, ``"newdata"``).

    Raises
    ------
    UnknownColumnError, ResponseTypeError, DataError
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value not in data.columns:
            raise UnknownColumnError(
                f"{what} column {value!r} is not in {where}{_suggest(value, data)}"
            )
        value = data[value]
    else:
        value = rows_by_label(value, data, what, where)
    try:
        array = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise ResponseTypeError(f"{what} must be numeric") from None
    if array.shape != (len(data),):
        raise DataError(
            f"{what} must have one value per row of {where} ({len(data)}), got shape {array.shape}"
        )
    if np.any(np.isinf(array)):
        raise DataError(f"{what} has infinite values")
    return array


def rows_by_label(value: Any, data: pd.DataFrame, what: str, where: str = "the data") -> Any:
    """A pandas Series of weights or offsets put in the order of ``data``'s rows by its labels.

    A Series is matched to the rows by its index, as ``subset=`` and pandas
    match them: one whose index is the data's in another order (``w.sort_values()``)
    is reordered; one of the data's length whose labels are not the data's is
    refused, since matching by position would then be a guess. Anything else
    is returned as it is (arrays are taken in the order of the rows).

    Raises
    ------
    DataError
        A Series of ``len(data)`` values whose index labels are not the data's.
    """
    if not isinstance(value, pd.Series) or len(value) != len(data):
        return value
    index = value.index
    if index.equals(data.index):
        return value
    if index.is_unique and data.index.is_unique and index.isin(data.index).all():
        return value.reindex(data.index)
    raise DataError(
        f"{what} is a pandas Series whose index does not match the rows of {where}: "
        "its values are matched to rows by index label, as subset= and pandas match them; "
        f"pass {what}.to_numpy() to take them in the order of the rows, or give the "
        "Series the data's index"
    )


def subset_values(value: Any, n_rows: int, positions: np.ndarray, what: str) -> Any:
    """Weights or an offset as given with ``subset=``: for the selected rows.

    As in R, values for every one of the ``n_rows`` rows of the data are
    subset with them (the rows at ``positions``); values for the selected rows
    only, and column names, are returned as they are.

    Raises
    ------
    DataError
        An array whose length is neither.
    """
    if value is None or isinstance(value, str):
        return value
    array = np.asarray(value)
    if array.ndim == 1 and len(array) == n_rows:
        return array[positions]
    if array.ndim != 1 or len(array) != len(positions):
        raise DataError(
            f"{what} must have one value per row of the data ({n_rows}) or of the "
            f"{len(positions)} rows subset selects, got shape {array.shape}"
        )
    return value


def _check_weights(weights: np.ndarray | None) -> None:
    if weights is not None:
        check_weight_counts(int(np.sum(weights < 0)), int(np.sum(weights == 0)))


def check_weight_counts(n_negative: int, n_zero: int) -> None:
    """Refuse negative or zero prior weights, given how many there are.

    Raises
    ------
    DataError
    """
    if n_negative:
        raise DataError(f"weights must not be negative ({n_negative} are)")
    if n_zero:
        raise DataError(f"{n_zero} weights are zero; drop those rows instead")


def used_columns(parsed: ParsedFormula, data: Any) -> tuple[list[str], set[str], tuple[str, ...]]:
    """The columns the model uses, those used bare (a whole term: ``x``, not ``C(x)``),
    and the code of the response and of every term.

    ``data`` is anything with ``columns`` (a pandas or Dask DataFrame); the
    columns come in the data's order.

    Raises
    ------
    UnknownColumnError
        The response or a grouping factor is not a column.
    """
    codes: list[str] = []
    for text in [parsed.fixed] + [f"~ {bar.lhs}" for bar in parsed.bars]:
        desc = model_desc(text)
        for term in desc.rhs_termlist:
            codes.extend(factor.code for factor in term.factors)
    codes.extend(parsed.offsets)  # their columns are the model's too
    bare = {bare_name(code) for code in codes} - {None}
    names: set[str] = set()
    for code in codes:
        names |= names_in_code(code)
    response_names = names_in_code(parsed.response)
    in_order = list(data.columns)  # one pass over the (pandas 3: Arrow-backed) Index
    columns = set(map(str, in_order))
    if not response_names & columns and parsed.response not in columns:
        raise UnknownColumnError(
            f"response {parsed.response!r} is not a column of the data"
            f"{_suggest(parsed.response, data)}"
        )
    for bar in parsed.bars:
        for name in bar.factors:
            if name not in columns:
                raise UnknownColumnError(
                    f"grouping factor {name!r} of random-effects term {bar} is not a "
                    f"column of the data{_suggest(name, data)}"
                )
            names.add(name)
    names |= response_names
    used = [column for column in in_order if str(column) in names]
    return used, bare, (parsed.response, *codes)


def _suggest(name: str, data: Any) -> str:
    index_names = [str(level) for level in getattr(data.index, "names", []) if level is not None]
    if name in index_names:  # a (MultiIndex) level, as linearmodels' panels have them
        return " (it is a level of the index: pass data.reset_index())"
    return suggest_column(name, data.columns)


def _refuse_or_drop_nan(y: np.ndarray, X: np.ndarray, y_info: Any, X_info: Any) -> None:
    """Raise :class:`_TransformNaNError` for the rows where a transform gave NaN (the raw
    columns have no missing value here); the caller drops them as missing."""
    nan_rows = np.isnan(y) | np.isnan(X).any(axis=1)
    if nan_rows.any():
        names = [y_info.column_names[0]] if np.isnan(y).any() else []
        names += [n for n, bad in zip(X_info.column_names, np.isnan(X).any(axis=0)) if bad]
        raise _TransformNaNError(nan_rows, names)


class _TransformNaNError(Exception):
    """A transform in the fixed part gave NaN on ``rows`` (of the frame), in ``names``."""

    def __init__(self, rows: np.ndarray, names: list[str]) -> None:
        super().__init__(names)
        self.rows, self.names = rows, names


# Rows with missing values are already gone; patsy need not look for them again.
_NO_NA = patsy.NAAction(on_NA="raise", NA_types=[])


def _fixed_part(
    parsed: ParsedFormula,
    frame: pd.DataFrame,
    used: list[str],
    eval_env: Any,
    transform_data: pd.DataFrame | None = None,
) -> tuple[pd.Series, pd.DataFrame, Any]:
    """Response, fixed-effects matrix and its design; stateful transforms learn on
    ``transform_data`` when given (:func:`transform_source`)."""
    lean = lean_design(parsed.fixed, frame, eval_env)
    if lean is not None:  # bare columns: no transform
        endog, exog, design_info = lean
        check_fixed_values(parsed.response, endog.to_numpy(), exog.to_numpy(), design_info)
        refuse_empty_terms(design_info)
        return lean
    columns = patsy_columns(frame, used)
    try:
        y, X = patsy.dmatrices(
            parsed.fixed, columns, eval_env=eval_env, NA_action=_NO_NA, return_type="matrix"
        )
        infos = [y.design_info, X.design_info]
        if any([relearn_transforms(info, transform_data, used) for info in infos]):
            y, X = patsy.build_design_matrices(
                infos, columns, NA_action=_NO_NA, return_type="matrix"
            )
    except (patsy.PatsyError, NameError, SyntaxError) as err:
        raise fixed_part_error(parsed.fixed, err, frame.columns) from None
    check_response_type(parsed.response, y.design_info)
    values, matrix = np.asarray(y)[:, 0], np.asarray(X)
    if not (np.isfinite(values).all() and np.isfinite(matrix).all()):  # one pass when finite
        _refuse_or_drop_nan(values, matrix, y.design_info, X.design_info)
        check_fixed_values(parsed.response, values, matrix, X.design_info)
    endog = pd.Series(np.asarray(y)[:, 0], index=frame.index, name=y.design_info.column_names[0])
    design_info = readable_design(X.design_info)  # C(year)[T.1936], not [T.np.int64(1936)]
    refuse_empty_terms(design_info)
    exog = pd.DataFrame(np.asarray(X), index=frame.index, columns=design_info.column_names)
    return endog, exog, design_info


def refuse_empty_terms(design_info: Any) -> None:
    """Refuse a fixed-effects term left without columns: a factor with one level.

    patsy codes it by no column at all, so the term would vanish from the fit
    without a word; R's ``model.matrix`` stops ("contrasts can be applied
    only to factors with 2 or more levels").

    Raises
    ------
    DataError
    """
    for term, columns in design_info.term_slices.items():
        if term.factors and columns.stop == columns.start:
            levels = [
                list(design_info.factor_infos[factor].categories)
                for factor in term.factors
                if design_info.factor_infos[factor].type == "categorical"
            ]
            only = "; ".join(f"{values[0]!r}" for values in levels if len(values) == 1)
            raise DataError(
                f"fixed-effects term {term.name()} has no column: its factor has only one "
                f"level{f' ({only})' if only else ''} in the rows fitted, so it has no "
                "contrast to estimate; remove the term (or check subset= and missing values)"
            )


def transform_source(
    parsed: ParsedFormula, source: pd.DataFrame | None, eval_env: Any
) -> pd.DataFrame | None:
    """The columns of ``source`` read by the formula's stateful transforms (fixed and
    random parts), or None when there are none or ``source`` is None.

    The transforms are found by patsy's factors of the whole formula's terms;
    the columns are converted as the model frame's are
    (:func:`~statsmodels_lmer.data_checks.plain_columns`).
    """
    if source is None or not _may_hold_transforms(parsed):
        return None
    sides = [parsed.fixed] + [f"0 + {bar.lhs}" for bar in parsed.bars]
    codes = set()
    for side in sides:
        try:
            desc = patsy.ModelDesc.from_formula(side)
        except patsy.PatsyError:  # reported when the design is built
            continue
        for term in desc.lhs_termlist + desc.rhs_termlist:
            codes |= {factor.code for factor in term.factors}
    read = set()
    for code in codes:
        factor = patsy.EvalFactor(code)
        state: dict[str, Any] = {}
        try:
            factor.memorize_passes_needed(state, _transform_env(eval_env))
        except Exception:  # reported when the design is built
            continue
        if state.get("transforms"):
            read |= names_in_code(code)
    columns = [c for c in source.columns if str(c) in read]
    if not columns:
        return None
    return plain_columns(source[columns], columns)  # a new frame: never the caller's


def _may_hold_transforms(parsed: ParsedFormula) -> bool:
    """Whether any part of the formula calls a function (bare columns hold no transform)."""
    return "(" in parsed.fixed or any("(" in bar.lhs for bar in parsed.bars)


def _transform_env(eval_env: Any) -> patsy.EvalEnvironment:
    """The environment patsy finds the formula's transforms in (R's ones by default)."""
    if isinstance(eval_env, patsy.EvalEnvironment):
        return eval_env
    return patsy.EvalEnvironment([dict(FORMULA_TRANSFORMS)])


def fixed_part_error(fixed: str, err: Exception, columns: Any = None) -> Exception:
    """Our error for patsy's failure to evaluate the fixed part ``fixed``.

    ``columns``: the data's, to suggest close names for an unknown one.
    """
    if isinstance(err, SyntaxError):
        return FormulaError(f"cannot evaluate the fixed part {fixed!r}: {not_python(err)}")
    message = getattr(err, "message", None) or str(err)
    hint = r_function_hint(message)
    if hint:
        return FormulaError(f"cannot evaluate the fixed part {fixed!r}: {message}{hint}")
    if isinstance(err, NameError) or "is not defined" in message or "not found" in message:
        name = undefined_name(message)
        unknown = name is not None and columns is not None and name not in set(map(str, columns))
        hint = suggest_column(name, columns) if unknown else ""
        return UnknownColumnError(f"cannot evaluate the fixed part {fixed!r}: {message}{hint}")
    return FormulaError(f"cannot evaluate the fixed part {fixed!r}: {message}")


def check_fixed_values(response: str, y: np.ndarray, X: np.ndarray, design_info: Any) -> None:
    """Refuse non-finite values in the response or the fixed-effects columns.

    Raises
    ------
    DataError
        Naming the response or the fixed-effects columns at fault.
    """
    if not np.all(np.isfinite(y)):
        rows = int(np.sum(~np.isfinite(y)))
        raise DataError(f"response {response!r} has non-finite values on {rows} rows{_NAN_HINT}")
    finite = np.isfinite(X).all(axis=0)
    if not finite.all():
        bad = [name for name, ok in zip(design_info.column_names, finite) if not ok]
        rows = int(np.sum(~np.isfinite(X).all(axis=1)))
        raise DataError(
            f"fixed-effects columns {bad} have non-finite values on {rows} rows{_NAN_HINT}"
        )


_NAN_HINT = (
    " (a transform such as np.log gives -inf at 0, NaN below): leave those rows out of "
    "the data first"
)


def check_response_fit(
    name: str, y: np.ndarray, X: np.ndarray, weights: np.ndarray | None, offset: bool = False
) -> None:
    """Refuse a response (minus any offset) out of double precision's reach, constant, or
    fitted exactly by ``X``.

    The checks of :func:`build_model_frame` for a new response of the same
    model (``refit``, ``with_response``): ``X`` has no aliased columns.

    Raises
    ------
    DataError
    """
    check_magnitudes({f"response {name!r}": y}, weights)
    check_observations(name, y, X.shape[1], offset)
    factor = r_factor(np.column_stack([X, y]))
    _check_exact_fit_of(name, factor, y, list(range(X.shape[1])))


def _check_exact_fit_of(name: str, factor: np.ndarray, y: np.ndarray, kept: list[int]) -> None:
    """:func:`check_exact_fit` from the R factor of ``[X y]`` (``kept``: X's columns
    that are not aliased)."""
    check_exact_fit(
        name,
        padded_diagonal(factor)[-1],
        float(np.linalg.norm(y)),
        (float(np.min(y)), float(np.max(y))) if len(y) else None,
        fitted_terms_size(factor, kept),
    )


def qr_diagonal(X: np.ndarray) -> np.ndarray:
    """``|diag(R)|`` of ``X = QR`` (no pivoting): each column's residual norm on the earlier ones.

    With more columns than rows, the columns past the rank get 0.
    """
    return padded_diagonal(r_factor(X)) if X.shape[1] else np.zeros(0)


def padded_diagonal(factor: np.ndarray) -> np.ndarray:
    """``|diag(R)|`` of an R factor, with 0 for the columns past its rows (more columns
    than rows)."""
    diag = np.zeros(factor.shape[1])
    found = np.abs(np.diagonal(factor))
    diag[: len(found)] = found
    return diag


def aliased_columns(X: np.ndarray, tol: float = 1e-7, diagonal: Any = None) -> list[int]:
    """Indices of columns that are linear combinations of earlier ones.

    Like R's ``qr(X, tol = 1e-7)`` used by lme4: a column is aliased when its
    residual after projection on the kept earlier columns is below ``tol``
    times its norm. With more columns than rows, the columns past the rank
    are aliased. ``diagonal`` is :func:`qr_diagonal` of ``X`` when already known.
    """
    if X.shape[1] == 0:
        return []
    diag = qr_diagonal(X) if diagonal is None else diagonal
    norms = np.linalg.norm(X, axis=0)
    return [j for j in range(X.shape[1]) if norms[j] == 0 or diag[j] < tol * norms[j]]


def kept_columns(n_columns: int, aliased: list[int]) -> list[int]:
    """The positions ``0 .. n_columns - 1`` not in ``aliased``, in order."""
    dropped = set(aliased)
    return [j for j in range(n_columns) if j not in dropped]


def check_scale_x(X: np.ndarray, tol: float = 1e3) -> bool:
    """lme4's ``checkScaleX``: are the predictors on very different scales?

    Columns that are not 0/1 indicators (nor the intercept) count as
    continuous. True when the standard deviation of one of them is more than
    ``tol`` times, or less than ``1 / tol`` times, 1 or that of another one
    (``|log sd| > log tol`` or ``|log(sd_i / sd_j)| > log tol``).

    Parameters
    ----------
    X : ndarray, shape (n, p)
        The fixed-effects model matrix (after dropping aliased columns).
    tol : float
        lme4's ``tol = 1e3``.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] < 2:
        return False
    continuous = ~np.all((X == 0) | (X == 1), axis=0)
    if not np.any(continuous):
        return False
    return scales_differ(np.std(X[:, continuous], axis=0, ddof=1), tol)


def scales_differ(sd: np.ndarray, tol: float = 1e3) -> bool:
    """The test of :func:`check_scale_x` on the standard deviations of the continuous columns."""
    sd = np.asarray(sd, dtype=float)
    with np.errstate(divide="ignore"):
        log_sd = np.log(sd[~np.isnan(sd)])
    if not log_sd.size:
        return False
    limit = np.log(tol)
    if np.any(np.abs(log_sd) > limit):  # a 0 or infinite sd included
        return True
    return bool(log_sd.max() - log_sd.min() > limit)  # the largest ratio of two


def _drop_aliased(exog: pd.DataFrame, aliased: list[int]) -> tuple[pd.DataFrame, list[str]]:
    if not aliased:
        return exog, []
    names = [str(exog.columns[j]) for j in aliased]
    warn_aliased(names)
    return exog.drop(columns=names), names


def warn_aliased(names: list[str]) -> None:
    """lme4's warning that aliased fixed-effects columns are dropped (at the caller's line)."""
    warn(
        f"fixed-effect model matrix is rank deficient so dropping {len(names)} "
        f"column{'s' if len(names) > 1 else ''} / coefficient{'s' if len(names) > 1 else ''}: "
        f"{', '.join(names)}",
        ValueWarning,
    )


def checked_drop_cols(columns: list[str], drop_cols: Any) -> list[str]:
    """The fixed-effects columns that ``drop_cols`` (a name or a list of names) names.

    Raises
    ------
    UnknownColumnError
        A name is not one of ``columns``.
    """
    if not drop_cols:
        return []
    names = [drop_cols] if isinstance(drop_cols, str) else list(drop_cols)
    unknown = [name for name in names if name not in columns]
    if unknown:
        raise UnknownColumnError(
            f"drop_cols names {unknown}, which are not fixed-effects columns "
            f"({', '.join(map(str, columns))})"
        )
    return names


def _missing_note(data: pd.DataFrame, used: list[Any], n_dropped: int) -> str:
    """Which columns' missing values dropped rows, for messages ("" when none were)."""
    if not n_dropped:
        return ""
    counts = {str(c): int(data[c].isna().sum()) for c in used if c in data.columns}
    named = sorted((n, c) for c, n in counts.items() if n)[::-1][:3]
    which = ", ".join(f"{column} {count}" for count, column in named)
    return (
        f" (left after dropping {n_dropped} of {len(data)} rows with missing values"
        + (f"; missing per column: {which}" if which else "")
        + ")"
    )


def check_groups(
    terms: list[RandomTerm], nobs: int, dropped_note: Callable[[], str] = lambda: ""
) -> None:
    """lme4's checks of the numbers of levels and random effects against ``nobs``.

    ``dropped_note()`` tells, in the messages, how many rows missing values
    dropped (called only for a message: it counts them column by column).

    Raises
    ------
    DataError
    """
    for term in terms:
        if term.n_levels < 2:
            raise DataError(
                f"grouping factor {term.group!r} has only one level{dropped_note()}; a "
                "random effect needs at least two groups"
            )
        if term.n_levels >= nobs:
            raise DataError(
                f"grouping factor {term.group!r} has {term.n_levels} levels for {nobs} "
                f"observations{dropped_note()}; with as many levels as observations its "
                "variance cannot be told apart from the residual variance"
            )
        if term.n_random >= nobs:
            raise DataError(
                f"random-effects term for {term.group!r} has {term.n_random} random "
                f"effects for {nobs} observations; the random-effects parameters and "
                "the residual variance are probably unidentifiable"
            )
