"""lme4's ``offset(...)`` terms: evaluating them on rows of data.

The terms are recognized once, when the formula is parsed
(:func:`statsmodels_lmer.formula.offset_code`; their codes are
``ParsedFormula.offsets``). Here their codes are evaluated, as R evaluates the
offset variables of a model frame: each on the rows of the data, the data's
columns first, then the formula's environment. The offsets of a model are
the sum of its ``offset(...)`` terms and of the ``offset=`` keyword, as
lme4's ``model.offset`` (``lmer(y ~ x + offset(o1), offset = o2)`` fits with
``o1 + o2``); a missing (NaN) offset value drops the row in fitting, as R's
``na.omit`` does, and gives a NaN prediction.

Predictions for new data evaluate the terms on the new rows, as lme4's
``predict.merMod`` does. The terms are plain expressions, not patsy designs: a
stateful transform inside one (``offset(scale(z))``) is computed on the rows it
is given, the fitted rows complete in the model's columns and then each new
data set (lme4's ``predict`` too evaluates it on the new data).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import patsy
import patsy.builtins

from .data_checks import plain_columns
from .exceptions import DataError, FormulaError, ResponseTypeError, UnknownColumnError
from .transform_rows import names_in_code
from .transforms import FORMULA_TRANSFORMS

__all__ = ["add_offsets", "formula_offset", "offset_env"]

_PATSY_BUILTINS = {name: getattr(patsy.builtins, name) for name in patsy.builtins.__all__}
"""``I``, ``Q``, ``C``, ...: the names patsy adds to every term's evaluation."""


def offset_env(eval_env: Any) -> patsy.EvalEnvironment:
    """Where offset terms look up names that are not columns.

    The model's environment when it is one (the caller's namespace, the
    restricted whitelist, or a fitted model's captured names); numpy and
    R's transforms otherwise.
    """
    if isinstance(eval_env, patsy.EvalEnvironment):
        return eval_env
    return patsy.EvalEnvironment([{"np": np, "numpy": np, **FORMULA_TRANSFORMS}])


def formula_offset(
    codes: Sequence[str], data: pd.DataFrame, eval_env: Any, where: str = "the data"
) -> np.ndarray | None:
    """The sum of the offset terms ``codes`` on the rows of ``data`` (None without terms).

    Parameters
    ----------
    codes : sequence of str
        The code inside each ``offset(...)`` term (``"np.log(t)"``).
    data : pandas.DataFrame
        The rows; never modified.
    eval_env : patsy.EvalEnvironment or int
        See :func:`offset_env`.
    where : str
        What ``data`` is, for messages (``"the data"``, ``"newdata"``).

    Returns
    -------
    ndarray or None
        One float per row; NaN where a term is missing.

    Raises
    ------
    UnknownColumnError
        A term uses a name that is neither a column nor in the environment.
    ResponseTypeError
        A term's values are not numbers.
    FormulaError
        A term's expression fails otherwise (``t.foo``, ``1 / 0``).
    DataError
        A term does not give one value per row, or gives infinite values.
    """
    if not codes:
        return None
    read = frozenset().union(*(names_in_code(code) for code in codes))
    data = plain_columns(data, [c for c in data.columns if str(c) in read])  # as patsy reads
    env = offset_env(eval_env).with_outer_namespace(_PATSY_BUILTINS)
    total = np.zeros(len(data))
    for code in codes:
        total = total + _term_values(code, data, env, where)
    return total


def add_offsets(first: np.ndarray | None, second: np.ndarray | None) -> np.ndarray | None:
    """The sum of two offsets either of which may be absent (None)."""
    if first is None:
        return second
    if second is None:
        return first
    return first + second


def _term_values(code: str, data: pd.DataFrame, env: Any, where: str) -> np.ndarray:
    term = f"offset({code})"
    try:
        value = env.eval(code, inner_namespace=data)
    except NameError as err:
        name = getattr(err, "name", None) or str(err)
        raise UnknownColumnError(
            f"{term} uses {name!r}, which is neither a column of {where} nor a name the "
            f"formula can see (columns: {', '.join(map(str, data.columns[:20]))})"
        ) from None
    except (TypeError, ValueError) as err:
        raise ResponseTypeError(
            f"cannot evaluate {term} on {where} as numbers: {type(err).__name__}: {err}"
        ) from None
    except Exception as err:  # any error of the user's expression, named
        raise FormulaError(
            f"cannot evaluate {term} on {where}: {type(err).__name__}: {err}"
        ) from None
    array = _as_floats(value, term)
    if array.ndim == 0 or array.shape != (len(data),):
        raise DataError(
            f"{term} must give one value per row of {where} ({len(data)}), got shape {array.shape}"
        )
    if np.any(np.isinf(array)):
        raise DataError(
            f"{term} has {int(np.isinf(array).sum())} infinite values on {where} "
            "(np.log of 0?); drop those rows"
        )
    return array


def _as_floats(value: Any, term: str) -> np.ndarray:
    """The values of one offset term as floats (NaN for missing ones), or a ResponseTypeError."""
    refused = ResponseTypeError(f"{term} must be numeric, got {_kind(value)}")
    if isinstance(value, pd.Series | pd.Index) and not isinstance(value.dtype, np.dtype):
        if isinstance(value.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(
            value.dtype
        ):
            raise refused  # categories, strings: R's offsets are numbers
        return value.to_numpy(dtype=float, na_value=np.nan)
    array = np.asarray(value)
    if array.dtype.kind == "O" and pd.api.types.infer_dtype(array.ravel(), skipna=True) in (
        "integer",
        "floating",
        "mixed-integer-float",
        "decimal",
        "empty",
    ):  # numbers stored as objects (None for missing ones)
        return pd.Series(array.ravel(), dtype=object).astype(float).to_numpy().reshape(array.shape)
    if array.dtype.kind not in "biuf":
        raise refused
    return array.astype(float)


def _kind(value: Any) -> str:
    dtype = getattr(value, "dtype", None)
    return f"values of dtype {dtype}" if dtype is not None else type(value).__name__
