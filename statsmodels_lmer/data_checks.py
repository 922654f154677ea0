"""Checks of the data a model is built from: what cannot be fitted is refused by name.

Each check either passes, converts legal-but-odd input to what it means (numbers
stored as Python objects), or raises an error that names the column and says
what to do. The frame built from them belongs to the model: later changes to the
caller's DataFrame do not reach it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .columns import column_array
from .exceptions import DataError, ResponseTypeError

if TYPE_CHECKING:
    from .terms import RandomTerm

__all__ = [
    "EXACT_FIT_TOL",
    "FAR_MESSAGE",
    "MAX_LOG10_MAGNITUDE",
    "ColumnMagnitudes",
    "check_exact_fit",
    "check_magnitudes",
    "check_observation_counts",
    "check_observations",
    "check_response_type",
    "check_unique_columns",
    "check_zero_columns",
    "column_dtypes",
    "confounded_terms",
    "copy_on_write",
    "drop_unused_categories",
    "far_column_names",
    "far_columns",
    "far_positions",
    "far_random_columns",
    "fitted_terms_size",
    "native_byte_order",
    "numeric_objects",
    "owned_frame",
    "plain_columns",
    "random_columns",
    "refuse_datetimes",
    "refuse_non_real",
    "select_rows",
    "subset_positions",
    "unidentified_terms",
    "with_columns",
]

MAX_LOG10_MAGNITUDE = 150.0
"""Largest ``|log10|`` of a column's root mean square (squares must stay within 1e+-300)."""

EXACT_FIT_TOL = 1e-14
"""A response whose residual on the fixed effects is this small (relative) is fitted exactly.

Exact fits leave 1 to 4 machine epsilons (``y = X b`` computed in floating
point, 20 to 1e6 rows, columns offset by 1e6 or scaled by 1e8); a response
``1e9 + 1e-2 N(0, 1)`` (1e-11) still holds four digits of its noise and fits
as in lme4, and sleepstudy's ``Reaction + 1e15`` (4.7e-14: its values vary by
200 roundings) fits as ``Reaction`` does (refused with 1e-13 before).
"""

SQUARE_SAFE = 1e100
"""Columns whose largest ``|value|`` lies within ``1e+-100`` are summed squared as they are."""

FAR_RESPONSE_RANGE = 1e-8
"""A response whose range is below this times its largest size is far from zero."""


def copy_on_write() -> bool:
    """Whether pandas copies on write (pandas 3, or the option set in pandas 2)."""
    if int(pd.__version__.split(".", 1)[0]) >= 3:
        return True
    try:
        return pd.get_option("mode.copy_on_write") is True
    except KeyError:  # pandas without the option
        return False


def owned_frame(data: pd.DataFrame) -> pd.DataFrame:
    """A frame the caller cannot change afterwards.

    Under copy-on-write a shallow copy is enough (a later write by the caller
    copies); otherwise the values are copied.
    """
    return data.copy(deep=not copy_on_write())


def select_rows(data: pd.DataFrame, subset: Any) -> pd.DataFrame:
    """``data.loc[subset]``, refused clearly when it fails or selects nothing."""
    try:
        rows = data.loc[subset]
    except (KeyError, IndexError, TypeError, ValueError, pd.errors.IndexingError) as err:
        raise DataError(
            f"subset cannot select rows of the data ({type(err).__name__}: {err}); pass a "
            "boolean mask with one value per row, a list of index labels or a slice"
        ) from None
    if not isinstance(rows, pd.DataFrame):
        raise DataError("subset must select rows (a mask, a list of labels or a slice)")
    if len(rows) == 0:
        raise DataError(f"subset selects none of the {len(data)} rows of the data")
    return rows


def subset_positions(data: pd.DataFrame, subset: Any) -> np.ndarray:
    """The positions in ``data`` of the rows ``data.loc[subset]`` selects, in its order.

    Call after :func:`select_rows` accepted ``subset``.
    """
    return pd.Series(np.arange(len(data)), index=data.index).loc[subset].to_numpy()


def _is_number(value: Any) -> bool:
    """A real number (``Decimal`` too, as databases give them), not a boolean."""
    return isinstance(value, numbers.Real | Decimal) and not isinstance(value, bool | np.bool_)


def numeric_objects(
    frame: pd.DataFrame, names: list[str], dtypes: dict[Any, Any] | None = None
) -> pd.DataFrame:
    """``frame`` with object columns that hold only numbers converted to float.

    Such columns (numbers read as Python objects, ``Decimal`` and ``Fraction``
    values included) would otherwise become factors with a level per distinct
    value. Columns holding anything else (strings, mixed values) are left as
    they are. ``dtypes``: :func:`column_dtypes` of the frame, when already known.
    """
    dtypes = column_dtypes(frame) if dtypes is None else dtypes
    converted = {}
    for name in names:
        dtype = dtypes.get(name)
        if getattr(dtype, "kind", "") != "O" or isinstance(dtype, pd.CategoricalDtype):
            continue
        values = frame[name]
        if not isinstance(values, pd.Series) or values.dtype != object:
            continue
        present = values.dropna()
        if len(present) and all(_is_number(v) for v in present):
            converted[name] = values.where(values.notna(), np.nan).astype(float)
    return frame.assign(**converted) if converted else frame


def drop_unused_categories(
    frame: pd.DataFrame, names: list[str], dtypes: dict[Any, Any] | None = None
) -> pd.DataFrame:
    """``frame`` with the categories no row uses removed from its categorical columns.

    R's model frame drops unused factor levels (``drop.unused.levels``), so
    lme4 codes only the levels present in the rows fitted. patsy codes every
    category: an unused one gives an all-zero column (dropped as aliased),
    which with sum contrasts leaves the last used level coded 0 instead of
    -1, and with an unused first category moves the reference level.
    ``dtypes``: :func:`column_dtypes` of the frame, when already known.
    """
    dtypes = column_dtypes(frame) if dtypes is None else dtypes
    shrunk = {}
    for name in names:
        if not isinstance(dtypes.get(name), pd.CategoricalDtype):
            continue
        values = column_array(frame, name)
        if values is None:  # a duplicated name: refused elsewhere
            continue
        codes = values.codes
        used = np.bincount(codes[codes >= 0], minlength=len(values.categories))
        if not used.all():
            shrunk[name] = frame[name].cat.remove_unused_categories()
    return with_columns(frame, shrunk)


_CONTAINERS = (list, tuple, dict, set, frozenset, np.ndarray, pd.Series, pd.DataFrame)


def refuse_containers(frame: pd.DataFrame, names: list[Any], dtypes: dict[Any, Any]) -> None:
    """Refuse a used object column with a list, tuple, dict, set or array in a cell.

    patsy would fail deep inside (``unhashable type: 'list'``) or, for a grouping
    factor, make a level of each container. Only object columns that pandas
    infers as mixed are scanned (one C pass otherwise). ``dtypes``:
    :func:`column_dtypes` of the frame.

    Raises
    ------
    DataError
    """
    for name in dict.fromkeys(names):
        dtype = dtypes.get(name)
        if getattr(dtype, "kind", "") != "O":
            continue
        if isinstance(dtype, pd.CategoricalDtype) and not _mixed(dtype.categories):
            continue  # a container can only be a value through the categories
        values = frame[name]
        if not _mixed(values):
            continue
        for label, value in values.items():
            if isinstance(value, _CONTAINERS):
                raise DataError(
                    f"column {name!r} holds a {type(value).__name__} ({value!r:.40}) in row "
                    f"{label!r}; each cell of a column the model uses must hold one value "
                    "(a number, a string or a category): unpack or drop such cells first"
                )


def _mixed(values: Any) -> bool:
    """Whether pandas infers the values as mixed (a container can only hide there)."""
    return pd.api.types.infer_dtype(values, skipna=True).startswith("mixed")


def column_dtypes(frame: pd.DataFrame, names: list[Any] | None = None) -> dict[Any, Any]:
    """Each column's dtype by name (a duplicated name: its last column's).

    One mapping for the per-column checks of the model frame: looking a column
    up costs about 13 us each, ``frame.dtypes`` about 20 us once. ``names``:
    only those columns (names the data holds once), read from their arrays
    (:func:`~statsmodels_lmer.columns.column_array`) without ``frame.dtypes``'
    Series (70 us in a fit of a three-column frame).
    """
    if names is None:
        return dict(zip(frame.columns, frame.dtypes))
    return {name: column_array(frame, name).dtype for name in names}


def check_unique_columns(data: pd.DataFrame, names: list[Any]) -> None:
    """Refuse a column the model uses whose name the data holds more than once.

    Raises
    ------
    DataError
    """
    if data.columns.is_unique:  # the usual case, without counting (0.1 us against 0.1 ms)
        return
    counts = pd.Index(data.columns).value_counts()
    for name in dict.fromkeys(names):
        if counts.get(name, 0) > 1:
            raise DataError(
                f"column {name!r} appears {counts[name]} times in the data; the model "
                "cannot tell which to use: drop or rename the copies"
            )


def plain_columns(
    frame: pd.DataFrame, names: list[Any], dtypes: dict[Any, Any] | None = None
) -> pd.DataFrame:
    """``frame`` with the columns ``names`` in types that patsy reads.

    * integers narrower than 64 bits (numpy, nullable or Arrow) become int64
      and floats narrower than 64 bits float64: patsy evaluates ``I(age**2)``,
      ``offset(10 * t)`` or ``np.exp(x)`` in the column's own type, so int8
      ages wrapped around and float32 squares lost half their digits (R reads
      every number as a double). Grouping factors' labels do not change: they
      are read as int64 and float64 values already;
    * pandas' nullable and Arrow booleans become numpy booleans: patsy codes
      numpy booleans as a factor (as R codes logicals) but fails on the
      ``boolean`` and ``bool[pyarrow]`` dtypes;
    * Arrow text (``pd.ArrowDtype`` strings, as from
      ``dtype_backend="pyarrow"``) becomes Python strings and Arrow decimals
      floats: patsy cannot read the first dtype and makes factors of the
      second's objects; a dictionary-encoded column is coded as its values
      (a text column's levels are sorted, whatever the dictionary's order).

    Columns still holding a missing value keep their dtype (rows with one are
    dropped before). ``dtypes``: :func:`column_dtypes` of the frame, when already known.
    """
    dtypes = column_dtypes(frame) if dtypes is None else dtypes
    converted = {}
    for name in names:
        dtype = dtypes.get(name)
        if dtype is None or _plain_categories(dtype):
            continue  # not a column, or one patsy reads (looked up only when needed)
        wide = _wide_number(dtype)
        if wide is None and isinstance(dtype, np.dtype):
            continue  # patsy reads it as it is
        values = frame[name]
        if not isinstance(values, pd.Series):
            continue  # a duplicated name
        plain = _plain_values(values, dtype) if wide is None else _widened(values, wide)
        if plain is not None:
            converted[name] = plain
    return with_columns(frame, converted)


def _wide_number(dtype: Any) -> np.dtype | None:
    """int64 or float64 for integers or floats narrower than 64 bits, else None.

    Booleans stay (patsy codes them as factors).
    """
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return None
    kind = getattr(dtype, "kind", None)
    size = getattr(dtype, "itemsize", None)
    if size is None:  # Arrow: its numpy counterpart
        numpy_type = getattr(dtype, "numpy_dtype", None)
        kind, size = getattr(numpy_type, "kind", None), getattr(numpy_type, "itemsize", 8)
    if size is None or size >= 8:
        return None
    if kind in "iu":
        return np.dtype(np.int64)
    if kind == "f":
        return np.dtype(np.float64)
    return None


def _widened(values: pd.Series, wide: np.dtype) -> np.ndarray | None:
    """``values`` as ``wide`` numbers; None (kept) while a value is missing."""
    if not isinstance(values.dtype, np.dtype) and values.isna().any():
        return None
    return values.to_numpy(dtype=wide)


def _plain_categories(dtype: Any) -> bool:
    """A categorical dtype patsy reads as it is (categories not booleans)."""
    return isinstance(dtype, pd.CategoricalDtype) and not pd.api.types.is_bool_dtype(dtype)


def _plain_values(values: pd.Series, dtype: Any) -> np.ndarray | None:
    """``values`` converted as :func:`plain_columns` says, or None to keep them."""
    if isinstance(dtype, np.dtype):
        return None
    arrow_type = getattr(dtype, "pyarrow_dtype", None)
    boolean = pd.api.types.is_bool_dtype(dtype)
    if not boolean and (arrow_type is None or dtype.kind not in "OU"):
        return None
    if values.isna().any():
        return None
    if boolean:
        return values.to_numpy(dtype=bool)
    if hasattr(arrow_type, "index_type"):  # dictionary-encoded: its values
        decoded = values.astype(pd.ArrowDtype(arrow_type.value_type))
        plain = _plain_values(decoded, decoded.dtype)
        return decoded.to_numpy() if plain is None else plain
    if pd.api.types.is_numeric_dtype(dtype):  # decimals
        return values.to_numpy(dtype=float)
    return values.to_numpy(dtype=object) if dtype.kind == "U" else None  # not lists, structs


def native_byte_order(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its numpy columns in non-native byte order in the native one.

    Big-endian arrays (as read from FITS files) are legal numpy, but pandas'
    hashing (grouping factors) and, in pandas 2, its row selection refuse
    them: ``Big-endian buffer not supported on little-endian compiler``.
    """
    dtypes = frame.dtypes.to_numpy()  # no pass over the column names when none is swapped
    if all(not isinstance(dtype, np.dtype) or dtype.isnative for dtype in dtypes):
        return frame
    swapped = {
        name: frame[name].to_numpy().astype(dtype.newbyteorder("="))
        for name, dtype in column_dtypes(frame).items()
        if isinstance(dtype, np.dtype) and not dtype.isnative
    }
    return with_columns(frame, swapped)


def with_columns(frame: pd.DataFrame, replaced: dict[Any, Any]) -> pd.DataFrame:
    """``frame`` with the columns in ``replaced`` swapped for new values (a new frame).

    Unlike ``assign`` it takes any column name, not only strings.
    """
    if not replaced:
        return frame
    out = frame.copy(deep=False)
    for name, values in replaced.items():
        out[name] = values
    return out


_TIME_KINDS = "mM"  # numpy kinds of datetime64 and timedelta64


def refuse_non_real(
    frame: pd.DataFrame,
    predictors: list[Any],
    response: list[Any],
    dtypes: dict[Any, Any] | None = None,
) -> None:
    """Refuse complex numbers used as a column and dates or times as the response.

    ``predictors`` and ``response`` are the bare columns
    (:func:`~statsmodels_lmer.frame.bare_columns`); ``dtypes``: :func:`column_dtypes`
    of the frame, when already known.

    Raises
    ------
    ResponseTypeError
        The response holds complex numbers, dates or times.
    DataError
        A predictor holds complex numbers.
    """
    dtypes = column_dtypes(frame) if dtypes is None else dtypes
    for name in [*response, *predictors]:
        dtype = dtypes.get(name)
        kind = getattr(dtype, "kind", "")
        error = ResponseTypeError if name in response else DataError
        if kind == "c":
            raise error(
                f"column {name!r} holds complex numbers; a linear mixed model needs real "
                f"numbers: use np.real(df[{name!r}]) or np.abs(df[{name!r}]) as you mean it"
            )
        if name in response and (kind in _TIME_KINDS or isinstance(dtype, pd.DatetimeTZDtype)):
            raise ResponseTypeError(
                f"response {name!r} holds dates or times ({dtype}); convert it "
                f"to a number first, e.g. df[{name!r}].dt.total_seconds() for durations"
            )


def refuse_datetimes(
    frame: pd.DataFrame, bare_names: list[str], dtypes: dict[Any, Any] | None = None
) -> None:
    """Refuse dates and times used directly as predictors (patsy would make factors of them).

    Parameters
    ----------
    bare_names : list of str
        Columns used as a whole term or random-effect column (``t``, not ``C(t)``).
    dtypes : dict, optional
        :func:`column_dtypes` of the frame, when already known.

    Raises
    ------
    DataError
    """
    dtypes = column_dtypes(frame) if dtypes is None else dtypes
    for name in bare_names:
        dtype = dtypes.get(name)
        if getattr(dtype, "kind", "") in _TIME_KINDS or isinstance(
            dtype, pd.DatetimeTZDtype | pd.PeriodDtype
        ):
            raise DataError(
                f"column {name!r} holds dates or times ({dtype}); as a predictor it would "
                "become a factor with a level per value. Convert it to a number first, "
                f"e.g. (df[{name!r}] - df[{name!r}].min()).dt.days, or write C({name}) "
                "for a factor"
            )


def check_response_type(name: str, design_info: Any) -> None:
    """Refuse a response that patsy codes as a factor (strings, categories, booleans).

    Raises
    ------
    ResponseTypeError
    """
    columns = design_info.column_names
    categorical = [f for f, info in design_info.factor_infos.items() if info.type != "numerical"]
    if categorical or len(columns) != 1:
        shown = ", ".join(map(repr, columns[:3])) + (
            f", ... ({len(columns)} columns)" if len(columns) > 3 else ""
        )
        raise ResponseTypeError(
            f"response {name!r} is not numeric (it holds strings, categories or booleans "
            f"and would be coded as {shown}); convert it to numbers first, e.g. "
            f"pd.to_numeric(df[{name!r}])"
        )


def check_observations(name: str, y: np.ndarray, n_fixed: int, offset: bool = False) -> None:
    """Refuse a constant response and fewer observations than coefficients.

    Parameters
    ----------
    name : str
        The response's name, for messages.
    y : ndarray
        The response minus any offset.
    n_fixed : int
        Number of fixed-effects columns (after dropping aliased ones).
    offset : bool
        Whether an offset was subtracted (for the message).

    Raises
    ------
    DataError
    """
    y_range = (float(np.min(y)), float(np.max(y))) if len(y) else (0.0, 0.0)
    check_observation_counts(name, len(y), n_fixed, y_range, offset)


def check_observation_counts(
    name: str, n: int, n_fixed: int, y_range: tuple[float, float], offset: bool = False
) -> None:
    """:func:`check_observations` from the number of rows and the response's range.

    ``y_range`` is the smallest and largest value of the response minus any
    offset (what data in partitions can tell).

    Raises
    ------
    DataError
    """
    if n <= n_fixed:
        raise DataError(
            f"{n} observations for {n_fixed} fixed-effects coefficients: a model needs more "
            "observations than coefficients; drop terms or add data"
        )
    low, high = y_range
    if high == low:
        raise DataError(
            f"response {name!r} is constant (every value is {low:g}"
            f"{' after subtracting the offset' if offset else ''}); there is no variation "
            "to model"
        )


def check_exact_fit(
    name: str,
    residual: float,
    y_norm: float,
    y_range: tuple[float, float] | None = None,
    terms_size: float = 0.0,
) -> None:
    """Refuse a response the fixed effects reproduce exactly (residual variance 0).

    Parameters
    ----------
    name : str
        The response's name, for messages.
    residual : float
        The norm of the residual of the least-squares fit of ``y`` on the
        fixed effects (the last ``|R_ii|`` of the QR factor of ``[X y]``).
    y_norm : float
        The norm of the response minus any offset.
    y_range : (float, float), optional
        The smallest and largest value of the response minus any offset: when
        the values are far from zero against their range, the message says so
        (their variation may be lost to rounding).
    terms_size : float, optional
        :func:`fitted_terms_size`: the residual is judged against the larger
        of it and ``y_norm``.

    Raises
    ------
    DataError
        When ``residual`` is at most :data:`EXACT_FIT_TOL` times the larger of
        ``y_norm`` and ``terms_size``: sigma would be 0 and the likelihood unbounded.
    """
    if residual > EXACT_FIT_TOL * max(y_norm, terms_size):
        return
    far = ""
    if y_range is not None:
        low, high = y_range
        size = max(abs(low), abs(high))
        if high - low < FAR_RESPONSE_RANGE * size:
            digits = math.log10(max((high - low) / (size * np.finfo(float).eps), 1.0))
            far = (
                f". Its values are far from zero against their range ({low:.17g} to "
                f"{high:.17g}), where double precision keeps {digits:.1f} digits of their "
                "variation: subtract a constant first (e.g. their mean; the model is the same)"
            )
    how = "to within double precision's rounding" if far else "exactly"
    raise DataError(
        f"the fixed effects reproduce response {name!r} {how} (residual variance 0): the "
        f"likelihood has no maximum. Check that the response is not a function of the "
        f"predictors{far}"
    )


@dataclass
class ColumnMagnitudes:
    """What :func:`check_magnitudes` needs of named columns; summaries of parts of the rows add.

    Attributes
    ----------
    labels : list of str
        The columns' names, for messages.
    top : ndarray
        Each column's largest ``|value|`` (0 for no rows).
    weighted, plain : ndarray
        Sums over rows of ``w (value / top)**2`` and ``(value / top)**2``.
    n : int
        Number of rows.
    weight_sum : float or None
        Sum of the weights (None without weights).
    """

    labels: list[str]
    top: np.ndarray
    weighted: np.ndarray
    plain: np.ndarray
    n: int
    weight_sum: float | None

    @classmethod
    def of(
        cls,
        columns: dict[str, np.ndarray] | list[tuple[list[str], np.ndarray]],
        weights: np.ndarray | None,
    ) -> ColumnMagnitudes:
        """The summary of some rows of the named columns.

        ``columns``: named 1-D columns, or blocks ``(names, 2-D array)`` with a
        name for each column of the array (a fixed-effects design is summarized
        as it is stored: gathering its columns one by one took 2.8 s for
        2e5 x 433).
        """
        if isinstance(columns, dict):
            columns = [([name], np.asarray(v, dtype=float)[:, None]) for name, v in columns.items()]
        parts = [cls._of_block(names, block, weights) for names, block in columns]
        n = parts[0].n if parts else 0
        weight_sum = None if weights is None else float(np.sum(weights))
        if not parts:
            empty = np.empty(0)
            return cls([], empty, empty, empty, n, weight_sum)
        return cls(
            [label for part in parts for label in part.labels],
            np.concatenate([part.top for part in parts]),
            np.concatenate([part.weighted for part in parts]),
            np.concatenate([part.plain for part in parts]),
            n,
            weight_sum,
        )

    @classmethod
    def _of_block(
        cls, labels: list[str], values: np.ndarray, weights: np.ndarray | None
    ) -> ColumnMagnitudes:
        values = np.asarray(values, dtype=float)
        n = len(values)
        top = np.maximum(np.max(values, axis=0, initial=0.0), -np.min(values, axis=0, initial=0.0))
        divisor = np.where(top > 0, top, 1.0)
        with np.errstate(over="ignore", under="ignore"):  # columns beyond: redone below
            plain = np.einsum("ij,ij->j", values, values) / divisor**2
            weighted = (
                plain
                if weights is None
                else np.einsum("i,ij,ij->j", weights, values, values) / divisor**2
            )
        beyond = np.flatnonzero((top > 0) & ((top <= SQUARE_SAFE**-1) | (top >= SQUARE_SAFE)))
        if beyond.size:  # squares out of reach: summed scaled to a largest |value| of 1
            scaled = values[:, beyond] / divisor[beyond]
            squares = scaled * scaled
            plain, weighted = plain.copy(), weighted.copy()
            plain[beyond] = squares.sum(axis=0)
            weighted[beyond] = plain[beyond] if weights is None else weights @ squares
        return cls(labels, top, weighted, plain, n, None)

    def __add__(self, other: ColumnMagnitudes) -> ColumnMagnitudes:
        top = np.maximum(self.top, other.top)

        def rescaled(part: ColumnMagnitudes, sums: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(part.top > 0, sums * (part.top / top) ** 2, 0.0)

        weight_sum = (
            None if self.weight_sum is None else self.weight_sum + (other.weight_sum or 0.0)
        )
        return ColumnMagnitudes(
            self.labels,
            top,
            rescaled(self, self.weighted) + rescaled(other, other.weighted),
            rescaled(self, self.plain) + rescaled(other, other.plain),
            self.n + other.n,
            weight_sum,
        )

    def log10_rms(self, weighted: bool) -> np.ndarray:
        """``log10`` of each column's (weighted) root mean square; NaN for all-zero columns."""
        sums = self.weighted if weighted else self.plain
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.log10(self.top) + 0.5 * np.log10(sums / max(self.n, 1))
        out[(self.top == 0) | ~np.isfinite(self.top)] = np.nan
        return out

    def check(self) -> None:
        """Refuse columns outside double precision's reach (see :func:`check_magnitudes`)."""
        sizes = self.log10_rms(self.weight_sum is not None)
        if not np.any(np.abs(sizes) > MAX_LOG10_MAGNITUDE):  # NaN (all zeros) passes
            return
        plain = self.log10_rms(False)
        for label, size, unweighted in zip(self.labels, sizes, plain):
            if np.isnan(size) or abs(size) <= MAX_LOG10_MAGNITUDE:
                continue
            problem = (
                f"their squares {'overflow' if size > 0 else 'underflow'} double precision, so "
                "no estimate could be trusted"
            )
            if self.weight_sum is not None and abs(unweighted) <= MAX_LOG10_MAGNITUDE:
                factor = round(math.log10(self.weight_sum / self.n))
                raise DataError(
                    f"the weights (about 1e{factor:d}) make the weighted values of {label} "
                    f"about 1e{size:.0f}: {problem}. Divide the weights by 1e{factor:d}; only "
                    "sigma changes, by the square root of that factor"
                )
            raise DataError(
                f"{label} has values of magnitude about 1e{size:.0f}: {problem}. Rescale it, "
                f"e.g. divide by 1e{round(size):d}, and its estimates scale back by that factor"
            )


def check_magnitudes(
    columns: dict[str, np.ndarray] | list[tuple[list[str], np.ndarray]],
    weights: np.ndarray | None,
) -> None:
    """Refuse columns whose squares overflow or underflow double precision.

    Each column's root mean square, weighted by ``sqrt(weights)``, must lie
    within ``10**+-MAX_LOG10_MAGNITUDE``. Outside, the cross-products the fit
    is built from (and sigma squared or the variance of a coefficient) cannot
    be represented, and the fit would be NaN or silently wrong.

    Parameters
    ----------
    columns : dict of str to ndarray, or list of (list of str, ndarray)
        Named columns (response, fixed-effects and random-effects columns), or
        blocks of columns with their names (:meth:`ColumnMagnitudes.of`).
    weights : ndarray or None

    Raises
    ------
    DataError
        Naming the column, its magnitude and a power of ten to divide by.
    """
    ColumnMagnitudes.of(columns, weights).check()


def far_random_columns(terms: list[RandomTerm], ratio: float = 100.0) -> list[str]:
    """Columns of random terms with an intercept whose mean exceeds ``ratio`` standard
    deviations (``(x | g)`` with ``x = 1e6 + N(0, 1)``), named for messages.

    Such a term is the model of the centred column, but its covariance at the
    optimum has a correlation within about ``1 / ratio^2`` of -1 or 1 and a huge
    intercept variance, which optimizers do not reach (lme4 and this package stopped
    4 to 100 REML units above the optimum of the same model written with the
    centred column).
    """
    return far_column_names(terms, [far_columns(term, ratio) for term in terms])


def far_column_names(terms: list[RandomTerm], positions: list[list[int]]) -> list[str]:
    """The columns at ``positions`` (per term) named for messages (``'x' of (x | g)``)."""
    return [_far_name(term, j) for term, cols in zip(terms, positions) for j in cols]


FAR_MESSAGE = (
    "random-effects column {names} is far from zero against its spread: the fit may stop "
    "short of the optimum (a correlation near +-1). Center it, e.g. x - x.mean(); the model "
    "is the same"
)
"""The warning for :func:`far_random_columns`' columns (``names`` joined by commas)."""


def far_columns(term: RandomTerm, ratio: float = 100.0) -> list[int]:
    """Positions of the columns of ``term`` that :func:`far_random_columns` names."""
    if term.Z is None:
        return []
    Z = np.asarray(term.Z, dtype=float)
    return far_positions(term, Z.mean(axis=0), Z.std(axis=0), ratio)


def far_positions(
    term: RandomTerm, mean: np.ndarray, sd: np.ndarray, ratio: float = 100.0
) -> list[int]:
    """Non-intercept columns of a term with an intercept whose absolute mean exceeds ``ratio`` SDs.

    ``mean`` and ``sd``: the term's column means and standard deviations
    (``ddof = 0``) over the rows.
    """
    if "Intercept" not in term.column_names:
        return []
    return [
        j
        for j, column in enumerate(term.column_names)
        if column != "Intercept" and sd[j] > 0 and abs(mean[j]) > ratio * sd[j]
    ]


def _far_name(term: RandomTerm, j: int) -> str:
    return f"{term.column_names[j]!r} of ({term.lhs} | {term.group})"


def check_zero_columns(terms: list[Any], zero: list[np.ndarray] | None = None) -> None:
    """Refuse a random-effects column that is zero on every row.

    Its variance and covariances do not enter the likelihood: the fit would
    report its starting value (lme4 1.1-31 crashes on ``(0 + zero | g)``).
    ``zero``: per term, whether each column is zero on every row (a Dask
    fit's, from the summed moments); by default found from the terms' rows.

    Raises
    ------
    DataError
    """
    for position, term in enumerate(terms):
        if zero is None:
            Z = np.asarray(term.Z, dtype=float)
            flags = ~np.any(Z, axis=0) if Z.shape[0] else np.zeros(Z.shape[1], dtype=bool)
        else:
            flags = np.asarray(zero[position], dtype=bool)
        names = [name for name, flag in zip(term.column_names, flags) if flag]
        if names:
            many = len(names) > 1
            raise DataError(
                f"random-effects term ({term.lhs} | {term.group}): column{'s' * many} "
                f"{', '.join(repr(name) for name in names)} {'are' if many else 'is'} zero on "
                f"every row, so {'their' if many else 'its'} variance cannot be estimated; "
                f"leave {'them' if many else 'it'} out of the term"
            )


def fitted_terms_size(factor: np.ndarray, kept: list[int]) -> float:
    """``sum_j |b_j| ||x_j||`` for the least-squares fit ``X b`` of ``y`` on the ``kept``
    columns, from the R factor of ``[X y]`` (``y`` last; ``||x_j||`` is the norm of
    ``R``'s column): the size of the terms that the fitted values sum.

    Rounding leaves an exact fit ``y = X b`` a residual of a few epsilons of this
    size, which can be far above ``||y||``: ``y = 300 x1 - 300 x2 + x3`` with
    ``x2`` near ``x1`` left 5.5e-14 of ``||y||``.
    """
    p = factor.shape[1] - 1
    if not kept or factor.shape[0] == 0:
        return 0.0
    columns = factor[:, kept]
    coefficients = np.linalg.lstsq(columns, factor[:, p], rcond=None)[0]
    return float(np.abs(coefficients) @ np.linalg.norm(columns, axis=0))


def unidentified_terms(terms: list[RandomTerm]) -> list[str]:
    """Messages for vector-valued terms whose covariance the data cannot identify.

    When every column of ``(1 + x | g)`` is constant within each level of
    ``g`` (``x`` varies only between the levels, as a teacher's class type),
    level ``i`` contributes one effect ``z_i' b_i`` of variance ``z_i' Sigma
    z_i``: only the span of ``vech(z z')`` over the distinct rows ``z`` is
    identified. Fewer dimensions than parameters leave a ridge of equal
    likelihood, and the fitted covariance is any point on it (the dense and
    sparse engines stopped at standard deviations 19.7 and 13.5 on mlmRev's
    star). Terms fitted on a Dask cluster (no rows here) are not checked.
    """
    out = []
    for term in terms:
        p = term.n_cols
        Z = np.asarray(term.Z, dtype=float)
        if p < 2 or Z.shape[0] == 0:
            continue
        order = np.argsort(term.codes, kind="stable")
        starts = np.flatnonzero(np.diff(term.codes[order], prepend=-1))
        ordered = Z[order]
        spread = np.maximum.reduceat(ordered, starts) - np.minimum.reduceat(ordered, starts)
        if np.any(spread > 1e-12 * np.abs(Z).max(axis=0)):  # relative: x * 1e-13 varies
            continue  # some column varies within a level
        patterns = np.unique(ordered[starts], axis=0)
        rows, cols = np.tril_indices(p)
        products = patterns[:, rows] * patterns[:, cols]  # vech(z z') of each pattern
        identified = int(np.linalg.matrix_rank(products))
        needed = p * (p + 1) // 2
        if identified < needed:
            out.append(
                f"random-effects term ({term.lhs} | {term.group}): every column is constant "
                f"within each level of {term.group}, so its {len(patterns)} distinct rows "
                f"identify only {identified} of its {needed} variance parameters and the "
                "fitted covariance is one point of a ridge of equal likelihood. Keep such "
                f"between-{term.group} variables as fixed effects and simplify the term, "
                f"e.g. (1 | {term.group})"
            )
    return out


CONFOUNDING_WORK = 2e8
"""Largest ``n p max(p, q)`` for which :func:`confounded_terms` checks a term (a second)."""


def confounded_terms(X: np.ndarray, terms: list[RandomTerm]) -> list[str]:
    """Messages for random terms whose variances the data cannot tell from the fixed
    effects or from another term.

    - A term column whose effects lie in the span of the fixed effects
      (``y ~ f + (1 | f)``, or the intercepts of ``y ~ x + f + (x | f)``): they
      are absorbed by ``X beta``. The REML criterion is flat in that variance
      (the fit reported theta 0.547 as converged where lme4 stopped at 0.182);
      ML puts it at 0.
    - Two terms that group the rows alike and share a column (one factor under
      two names): only the sum of that column's variances is identified.

    A column's effects can be in the span only when the factor has no more
    levels than ``X`` has columns; the span is checked only where it is cheap
    (:data:`CONFOUNDING_WORK`).
    """
    out = []
    n, p = X.shape
    basis = None
    for term in terms:
        work = n * p * max(p, term.n_levels) * term.n_cols
        if term.Z.shape[0] != n or term.n_levels > p or work > CONFOUNDING_WORK:
            continue
        if basis is None:
            basis, _ = np.linalg.qr(X)
        Z = term.z_matrix().toarray()
        absorbed = []
        for j, column in enumerate(term.column_names):
            effects = Z[:, j :: term.n_cols]  # this column's effect of every level
            residual = effects - basis @ (basis.T @ effects)
            norms = np.linalg.norm(effects, axis=0)
            if np.all(np.linalg.norm(residual, axis=0) <= 1e-8 * norms):
                absorbed.append(column)
        if absorbed:
            names = ", ".join(absorbed)
            which = f"column {names} lies" if len(absorbed) == 1 else f"columns {names} lie"
            out.append(
                f"random-effects term ({term.lhs} | {term.group}): its {which} in the span "
                f"of the fixed effects (e.g. {term.group} is also a fixed factor), so its "
                "variance is not identified: the REML criterion is flat in it (ML puts it at "
                "0). Remove it from the term, or the fixed factor from the fixed part"
            )
    for i, first in enumerate(terms):
        for second in terms[i + 1 :]:
            shared = _shared_columns(first, second)
            if shared:
                out.append(
                    f"random-effects terms ({first.lhs} | {first.group}) and ({second.lhs} | "
                    f"{second.group}) group the rows alike and share the column "
                    f"{', '.join(shared)}: only the sum of its variances is identified, and "
                    "the split between the terms is arbitrary. Keep it in one term"
                )
    return out


def _shared_columns(first: RandomTerm, second: RandomTerm) -> list[str]:
    """The columns two terms share when they group the rows into the same sets."""
    if first.n_levels != second.n_levels or first.Z.shape[0] != second.Z.shape[0]:
        return []
    if first.Z.shape[0] == 0:
        return []
    pairs = np.unique(np.stack([first.codes, second.codes]), axis=1)
    if pairs.shape[1] != first.n_levels:
        return []
    return [
        name
        for j, name in enumerate(first.column_names)
        if any(np.array_equal(first.Z[:, j], second.Z[:, k]) for k in range(second.n_cols))
    ]


def random_columns(terms: list[RandomTerm]) -> dict[str, np.ndarray]:
    """The random-effects columns that are not intercepts, named for messages."""
    out = {}
    for term in terms:
        for j, column in enumerate(term.column_names):
            if column != "Intercept":
                out[f"random-effects column {column!r} of ({term.lhs} | {term.group})"] = term.Z[
                    :, j
                ]
    return out
