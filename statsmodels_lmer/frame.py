"""The model frame: from a formula and a DataFrame to checked model arrays.

Like lme4's ``model.frame`` with ``na.omit``: find every column the formula
uses, drop (and count) rows with a missing value in any of them, then build
the fixed-effects matrices through statsmodels' formula machinery (patsy) and
the random terms on the complete rows. The caller's DataFrame is never
modified.
"""

from __future__ import annotations

import ast
import difflib
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import patsy
from statsmodels.tools.sm_exceptions import ValueWarning

from .exceptions import DataError, FormulaError, ResponseTypeError, UnknownColumnError
from .formula import ParsedFormula
from .terms import RandomTerm, build_random_terms

__all__ = [
    "ModelFrame",
    "aliased_columns",
    "build_model_frame",
    "check_fixed_values",
    "check_groups",
    "check_response_width",
    "check_scale_x",
    "check_weight_counts",
    "fixed_part_error",
    "names_in_code",
    "patsy_columns",
    "scales_differ",
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
        Prior weights and offset for the complete rows.
    frame : pandas.DataFrame
        The complete rows of the data (a new frame).
    n_dropped : int
        Rows dropped for missing values.
    dropped_columns : list of str
        Fixed-effects columns dropped as aliased (rank deficiency).
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


def build_model_frame(
    parsed: ParsedFormula,
    data: Any,
    weights: Any = None,
    offset: Any = None,
    subset: Any = None,
    missing: str = "drop",
    eval_env: Any = 0,
) -> ModelFrame:
    """Build and check the model arrays; see :class:`ModelFrame`.

    Raises
    ------
    UnknownColumnError
        A grouping factor, weights or offset column is not in the data.
    DataError
        No usable rows, missing values with ``missing="raise"``, non-finite
        values, invalid weights, or grouping factors lme4 would refuse.
    ResponseTypeError
        The response, weights or offset are not numeric.
    FormulaError
        patsy cannot evaluate the fixed part.
    """
    data = _as_frame(data)
    if subset is not None:
        data = data.loc[subset]
    if missing not in ("drop", "raise", "none"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    weights = _column_or_array(weights, data, "weights")
    offset = _column_or_array(offset, data, "offset")
    used = used_columns(parsed, data)
    incomplete = np.zeros(len(data), dtype=bool)
    if used:
        incomplete |= data[used].isna().any(axis=1).to_numpy()
    for extra in (weights, offset):
        if extra is not None:
            incomplete |= np.isnan(extra)
    n_dropped = int(incomplete.sum())
    if n_dropped and missing != "drop":
        raise DataError(
            f"{n_dropped} of {len(data)} rows have missing values in the columns "
            f"the model uses ({', '.join(map(str, used))}); pass missing='drop' to "
            "drop them"
        )
    frame = data.loc[~incomplete] if n_dropped else data.copy(deep=False)
    if len(frame) == 0:
        raise DataError("no rows left to fit: every row has a missing value")
    weights = None if weights is None else weights[~incomplete]
    offset = None if offset is None else offset[~incomplete]
    _check_weights(weights)
    endog, exog, design_info = _fixed_part(parsed, frame, used, eval_env)
    exog, dropped = _drop_aliased(exog)
    if check_scale_x(exog.to_numpy(dtype=float)):
        warnings.warn(SCALE_MESSAGE, ValueWarning, stacklevel=3)
    terms = build_random_terms(parsed.bars, frame, eval_env)
    check_groups(terms, len(frame))
    return ModelFrame(endog, exog, design_info, terms, weights, offset, frame, n_dropped, dropped)


def _as_frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, dict):
        frame = pd.DataFrame(data)
    else:
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if len(frame) == 0:
        raise DataError("data has no rows")
    return frame


def _column_or_array(value: Any, data: pd.DataFrame, what: str) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in data.columns:
            raise UnknownColumnError(
                f"{what} column {value!r} is not in the data{_suggest(value, data)}"
            )
        value = data[value]
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ResponseTypeError(f"{what} must be numeric") from None
    if array.shape != (len(data),):
        raise DataError(
            f"{what} must have one value per row of the data ({len(data)}), got shape {array.shape}"
        )
    if np.any(np.isinf(array)):
        raise DataError(f"{what} has infinite values")
    return array


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


def names_in_code(code: str) -> set[str]:
    """Variable names (and ``Q("...")`` strings) in a patsy factor's code."""
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        return set()
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
    return names


def used_columns(parsed: ParsedFormula, data: Any) -> list[str]:
    """The columns of ``data`` the formula uses, in the data's column order.

    ``data`` is anything with ``columns`` (a pandas or Dask DataFrame).

    Raises
    ------
    UnknownColumnError
        The response or a grouping factor is not a column.
    """
    codes: list[str] = []
    for text in [parsed.fixed] + [f"~ {bar.lhs}" for bar in parsed.bars]:
        desc = patsy.ModelDesc.from_formula(text)
        for term in desc.lhs_termlist + desc.rhs_termlist:
            codes.extend(factor.code for factor in term.factors)
    names: set[str] = set()
    for code in codes:
        names |= names_in_code(code)
    response_names = names_in_code(parsed.response)
    columns = set(map(str, data.columns))
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
    return [column for column in data.columns if str(column) in names]


def _suggest(name: str, data: Any) -> str:
    close = difflib.get_close_matches(name, list(map(str, data.columns)), n=3)
    if close:
        return f" (did you mean {', '.join(map(repr, close))}?)"
    return f" (columns: {', '.join(map(str, data.columns[:20]))})"


# Rows with missing values are already gone; patsy need not look for them again.
_NO_NA = patsy.NAAction(on_NA="raise", NA_types=[])


def _fixed_part(
    parsed: ParsedFormula, frame: pd.DataFrame, used: list[str], eval_env: Any
) -> tuple[pd.Series, pd.DataFrame, Any]:
    columns = patsy_columns(frame, used)
    try:
        y, X = patsy.dmatrices(
            parsed.fixed, columns, eval_env=eval_env, NA_action=_NO_NA, return_type="matrix"
        )
    except (patsy.PatsyError, NameError) as err:
        raise fixed_part_error(parsed.fixed, err) from None
    check_response_width(parsed.response, y.design_info.column_names)
    check_fixed_values(parsed.response, np.asarray(y)[:, 0], np.asarray(X), X.design_info)
    endog = pd.Series(np.asarray(y)[:, 0], index=frame.index, name=y.design_info.column_names[0])
    exog = pd.DataFrame(np.asarray(X), index=frame.index, columns=X.design_info.column_names)
    return endog, exog, X.design_info


def fixed_part_error(fixed: str, err: Exception) -> Exception:
    """Our error for patsy's failure to evaluate the fixed part ``fixed``."""
    message = getattr(err, "message", None) or str(err)
    if isinstance(err, NameError) or "is not defined" in message or "not found" in message:
        return UnknownColumnError(f"cannot evaluate the fixed part {fixed!r}: {message}")
    return FormulaError(f"cannot evaluate the fixed part {fixed!r}: {message}")


def check_response_width(response: str, y_names: list[str]) -> None:
    """Refuse a response that patsy expanded to several columns (a non-numeric one)."""
    if len(y_names) != 1:
        raise ResponseTypeError(
            f"response {response!r} is not numeric (it expanded to the "
            f"columns {y_names}); convert it to numbers first"
        )


def check_fixed_values(response: str, y: np.ndarray, X: np.ndarray, design_info: Any) -> None:
    """Refuse non-finite values in the response or the fixed-effects columns.

    Raises
    ------
    DataError
        Naming the response or the fixed-effects columns at fault.
    """
    if not np.all(np.isfinite(y)):
        raise DataError(f"response {response!r} has non-finite values")
    finite = np.isfinite(X).all(axis=0)
    if not finite.all():
        bad = [name for name, ok in zip(design_info.column_names, finite) if not ok]
        raise DataError(f"fixed-effects columns {bad} have non-finite values")


def patsy_columns(frame: pd.DataFrame, used: list[str]) -> dict[str, Any]:
    """The used columns for patsy, plain numeric ones as arrays (several times faster)."""
    return {str(c): frame[c].to_numpy() if _is_plain_numeric(frame[c]) else frame[c] for c in used}


def _is_plain_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def aliased_columns(X: np.ndarray, tol: float = 1e-7) -> list[int]:
    """Indices of columns that are linear combinations of earlier ones.

    Like R's ``qr(X, tol = 1e-7)`` used by lme4: a column is aliased when its
    residual after projection on the kept earlier columns is below ``tol``
    times its norm.
    """
    if X.shape[1] == 0:
        return []
    diag = np.abs(np.diagonal(np.linalg.qr(X, mode="r")))
    norms = np.linalg.norm(X, axis=0)
    return [j for j in range(X.shape[1]) if norms[j] == 0 or diag[j] < tol * norms[j]]


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
    with np.errstate(divide="ignore", invalid="ignore"):
        log_sd = np.log(sd)
        ratios = np.abs(log_sd[:, None] - log_sd[None, :])
        values = np.concatenate([np.abs(log_sd), ratios[np.tril_indices(len(sd), -1)]])
    return bool(np.any(values[~np.isnan(values)] > np.log(tol)))


def _drop_aliased(exog: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    aliased = aliased_columns(exog.to_numpy(dtype=float))
    if not aliased:
        return exog, []
    names = [str(exog.columns[j]) for j in aliased]
    warn_aliased(names, stacklevel=5)
    return exog.drop(columns=names), names


def warn_aliased(names: list[str], stacklevel: int = 2) -> None:
    """lme4's warning that aliased fixed-effects columns are dropped."""
    warnings.warn(
        f"fixed-effect model matrix is rank deficient so dropping {len(names)} "
        f"column{'s' if len(names) > 1 else ''} / coefficient{'s' if len(names) > 1 else ''}: "
        f"{', '.join(names)}",
        ValueWarning,
        stacklevel=stacklevel,
    )


def check_groups(terms: list[RandomTerm], nobs: int) -> None:
    """lme4's checks of the numbers of levels and random effects against ``nobs``.

    Raises
    ------
    DataError
    """
    for term in terms:
        if term.n_levels < 2:
            raise DataError(
                f"grouping factor {term.group!r} has only one level; a random effect "
                "needs at least two groups"
            )
        if term.n_levels >= nobs:
            raise DataError(
                f"grouping factor {term.group!r} has {term.n_levels} levels for {nobs} "
                "observations; with as many levels as observations its variance cannot "
                "be told apart from the residual variance"
            )
        if term.n_random >= nobs:
            raise DataError(
                f"random-effects term for {term.group!r} has {term.n_random} random "
                f"effects for {nobs} observations; the random-effects parameters and "
                "the residual variance are probably unidentifiable"
            )
