"""Random-effects terms: grouping codes, model columns, theta template and Lambda.

A term ``(x | g)`` with ``p`` columns and ``l`` levels contributes ``l * p``
random effects ordered level by level, and a relative covariance factor
``Lambda_i = I_l (x) T_i`` whose lower-triangular ``p x p`` block ``T_i`` is
filled column by column from the term's slice of ``theta`` (lme4's order).
"""

from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import patsy
import scipy.sparse as sp

from .columns import column_array, suggest_column, undefined_name
from .exceptions import DataError, FormulaError, UnknownColumnError
from .formula import BarTerm, not_python, r_function_hint
from .parametrization import factor_from_theta, tril_colmajor
from .transform_rows import design_matrix, r_term_order, readable_name

__all__ = [
    "RandomTerm",
    "build_random_terms",
    "carry_theta",
    "grouping_codes",
    "level_key",
    "level_keys",
    "lme4_term_order",
    "match_levels",
    "order_terms",
    "row_level_keys",
    "term_columns_error",
    "term_level_keys",
    "unique_names",
]


@dataclass(eq=False)
class RandomTerm:
    """One random-effects term evaluated on the data.

    Attributes
    ----------
    label : str
        Name used in variance tables (lme4's ``grp``; a second term on the
        same grouping factor is labelled ``"g.1"``).
    group : str
        The grouping factor's name (``"Subject"``, ``"cask:batch"``).
    column_names : tuple of str
        Names of the term's model columns (patsy's, e.g. ``"Intercept"``).
    codes : ndarray of int64, shape (n,)
        Level index of each observation.
    levels : pandas.Index
        Level labels, in the grouping factor's level order.
    Z : ndarray, shape (n, p)
        The term's raw model columns (before the Khatri-Rao product).
    lhs : str
        The patsy formula of the columns (``"1"``, ``"1 + Days"``).
    factors : tuple of str
        The data columns whose interaction is the grouping factor.
    """

    label: str
    group: str
    column_names: tuple[str, ...]
    codes: np.ndarray
    levels: pd.Index
    Z: np.ndarray
    lhs: str = "1"
    factors: tuple[str, ...] = ()

    @property
    def n_levels(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.levels)

    @property
    def n_cols(self) -> int:
        """Number of model columns ``p``."""
        return self.Z.shape[1]

    @property
    def n_random(self) -> int:
        """Number of random effects ``l * p``."""
        return self.n_levels * self.n_cols

    @property
    def n_theta(self) -> int:
        """Length of this term's slice of theta."""
        return self.n_cols * (self.n_cols + 1) // 2

    def theta_lower(self) -> np.ndarray:
        """Lower bounds: 0 for diagonal elements, -inf off the diagonal."""
        rows, cols = tril_colmajor(self.n_cols)
        return np.where(rows == cols, 0.0, -np.inf)

    def theta_start(self) -> np.ndarray:
        """lme4's starting values: 1 on the diagonal, 0 elsewhere."""
        rows, cols = tril_colmajor(self.n_cols)
        return np.where(rows == cols, 1.0, 0.0)

    def theta_names(self) -> list[str]:
        """lme4-style names ``group.col1`` / ``group.col2.col1`` of theta."""
        rows, cols = tril_colmajor(self.n_cols)
        names = []
        for r, c in zip(rows, cols):
            if r == c:
                names.append(f"{self.group}.{self.column_names[r]}")
            else:
                names.append(f"{self.group}.{self.column_names[r]}.{self.column_names[c]}")
        return names

    def factor(self, theta_part: np.ndarray) -> np.ndarray:
        """The lower-triangular ``T`` filled from this term's theta."""
        return factor_from_theta(theta_part, self.n_cols)

    def lambda_block(self, theta_part: np.ndarray) -> sp.csr_matrix:
        """``Lambda_i = I_l (x) T_i`` as a sparse matrix."""
        return sp.kron(sp.identity(self.n_levels, format="csr"), self.factor(theta_part))

    def z_matrix(self) -> sp.csr_matrix:
        """The term's sparse model matrix ``Z_i`` (n x l p), lme4's column order."""
        n, p = self.Z.shape
        cols = (self.codes[:, None] * p + np.arange(p)[None, :]).ravel()
        rows = np.repeat(np.arange(n), p)
        return sp.csr_matrix((self.Z.ravel(), (rows, cols)), shape=(n, self.n_random))


def unique_names(names: list[str]) -> list[str]:
    """``names`` with repeats suffixed ``.1``, ``.2``, ... as R's ``make.unique``.

    Two terms on one factor can share a column (``(1 + x | g) + (1 | g)``, or
    ``(x || g)`` next to ``(x | g)``); lme4 names their theta ``g.(Intercept)``
    and ``g.(Intercept).1``.
    """
    taken = set(names)
    counts: dict[str, int] = {}
    out = []
    for name in names:
        if name not in counts:
            counts[name] = 0
            out.append(name)
            continue
        while True:
            counts[name] += 1
            candidate = f"{name}.{counts[name]}"
            if candidate not in taken:
                break
        taken.add(candidate)
        out.append(candidate)
    return out


def lme4_term_order(n_levels: list[int]) -> list[int]:
    """lme4's term order: by decreasing number of levels, only if needed.

    lme4 reorders only when some term has more levels than the one before
    it, and then takes ``rev(order(nl))`` (ties in reverse input order).
    """
    if all(b <= a for a, b in itertools.pairwise(n_levels)):
        return list(range(len(n_levels)))
    ascending = sorted(range(len(n_levels)), key=lambda i: n_levels[i])
    return ascending[::-1]


def carry_theta(
    theta: np.ndarray, source_terms: list[RandomTerm], target_terms: list[RandomTerm]
) -> np.ndarray | None:
    """``theta`` of one model's terms, rearranged for another model's terms.

    Terms are matched by grouping factor and columns (two alike in their
    order). A model refitted on fewer rows can order its terms otherwise,
    since lme4 orders them by number of levels. None when some target term
    has no match.
    """
    blocks: dict[tuple[str, tuple[str, ...]], list[np.ndarray]] = {}
    start = 0
    for term in source_terms:
        key = (term.group, tuple(term.column_names))
        blocks.setdefault(key, []).append(np.asarray(theta[start : start + term.n_theta]))
        start += term.n_theta
    carried = []
    for term in target_terms:
        matches = blocks.get((term.group, tuple(term.column_names)))
        if not matches:
            return None
        carried.append(matches.pop(0))
    return np.concatenate(carried)


def grouping_codes(frame: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Codes and levels of one column or of the interaction of several.

    Levels follow R's ``a:b``: the first factor varies slowest, each factor's
    levels in their own order (categories order for a categorical, sorted
    otherwise); combinations that do not occur are dropped. One column keeps
    its own level type (an integer column gives integer levels); an
    interaction is labelled ``"b1:a1"`` from each value's :func:`level_keys`.
    """
    combined = np.zeros(len(frame), dtype=np.int64)
    per_factor: list[pd.Index] = []
    for name in factors:
        values = column_array(frame, name)
        codes, levels = _factor_codes(frame[name] if values is None else values)
        combined = combined * len(levels) + codes
        per_factor.append(levels)
    used, codes = compact_codes(combined, np.prod([len(levels) for levels in per_factor]))
    if len(per_factor) == 1:
        levels = per_factor[0]
        every = len(used) == len(levels)  # no unused category: the levels as they are
        return codes.astype(np.int64), levels if every else levels[used]
    # each factor's levels are distinct: their keys one by one (factorizing a
    # Series of them cost 100 us a factor)
    labels = [
        np.array([level_key(v) for v in levels.tolist()], dtype=object) for levels in per_factor
    ]
    remainder = used.copy()
    parts = []
    for level_labels in reversed(labels):
        parts.append(level_labels[remainder % len(level_labels)])
        remainder //= len(level_labels)
    parts.reverse()
    names = pd.Index([":".join(map(str, combo)) for combo in zip(*parts)], dtype=object)
    if not names.is_unique:
        _refuse_ambiguous_labels(names, factors)
    return codes.astype(np.int64), names


def _refuse_ambiguous_labels(names: pd.Index, factors: tuple[str, ...]) -> None:
    """Raise: two combinations of levels share the label ``a:b`` (levels holding ``:``).

    Predictions and every table of random effects match levels by that label;
    lme4 would merge the two groups into one.
    """
    twice = names[names.duplicated()][0]
    raise DataError(
        f"the grouping factor {':'.join(factors)!r} has two combinations of levels "
        f"labelled {twice!r} (levels containing ':'); rename those levels, e.g. "
        "replace ':' by '_'"
    )


def level_key(value: Any) -> str:
    """The text a level is matched by: equal values give equal text whatever their type.

    ``3``, ``3.0``, ``np.int32(3)`` and ``"3"`` all give ``"3"`` (as R's
    ``as.character``); ``2.5`` gives ``"2.5"``; booleans ``"TRUE"``/``"FALSE"``
    (R's labels of a logical in an interaction such as ``lg:g``).
    """
    if isinstance(value, bool | np.bool_):
        return "TRUE" if value else "FALSE"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value)


def level_keys(values: pd.Series) -> np.ndarray:
    """:func:`level_key` of each value (``None`` for a missing one), as an object array."""
    codes, uniques = pd.factorize(values)
    keys = np.array([level_key(v) for v in np.asarray(uniques, dtype=object)] + [None])
    return keys[np.where(codes >= 0, codes, len(keys) - 1)]


def term_level_keys(term: RandomTerm) -> np.ndarray:
    """The :func:`level_keys` of a term's levels (interaction labels are keys already)."""
    if len(term.factors) > 1:
        return np.asarray(term.levels, dtype=object)
    return level_keys(pd.Series(term.levels))


def row_level_keys(term: RandomTerm, rows: pd.DataFrame) -> np.ndarray:
    """Each row's level of a term as :func:`level_keys` text (``a:b`` for an interaction);
    ``None`` where a factor's value is missing."""
    parts = [level_keys(rows[name]) for name in term.factors]
    missing = np.zeros(len(rows), dtype=bool)
    for part in parts:
        missing |= pd.isna(part)
    keys = np.where(missing, "", parts[0])
    for part in parts[1:]:
        keys = keys + ":" + np.where(missing, "", part)
    keys = np.asarray(keys, dtype=object)
    keys[missing] = None
    return keys


def match_levels(term: RandomTerm, rows: pd.DataFrame, allow_new_levels: bool) -> np.ndarray:
    """Each row's level code in ``term``, matched by value across dtypes (:func:`level_key`).

    Levels not seen in fitting, and rows missing a grouping value (as lme4's
    ``predict.merMod``), get -1 when ``allow_new_levels``.

    Raises
    ------
    DataError
        Rows have levels not seen in fitting and ``allow_new_levels`` is False.
    """
    lookup: dict[str, int] = {}
    for code, key in enumerate(term_level_keys(term)):
        lookup.setdefault(key, code)
    row_keys = row_level_keys(term, rows)
    row_codes, keys = pd.factorize(row_keys)  # a missing key (None) is code -1
    mapped = np.array([lookup.get(key, -1) for key in keys] + [-1], dtype=np.int64)
    codes = mapped[np.where(row_codes >= 0, row_codes, len(mapped) - 1)]
    missing = row_codes < 0
    unseen = codes < 0
    if unseen.any() and not allow_new_levels:
        row_keys = np.where(missing, "a missing value", row_keys)
        labels = sorted(set(row_keys[unseen]))
        raise DataError(
            f"newdata has levels of {term.group!r} not seen in fitting "
            f"({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''}); "
            "pass allow_new_levels=True to predict them with zero random effects"
        )
    return codes


def compact_codes(combined: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct values and each row's index among them.

    ``np.unique`` sorts all n values; when the value range is not much larger
    than n, marking the values present and numbering them is linear.
    """
    if size > max(4 * len(combined), 1_000_000):
        used, inverse = np.unique(combined, return_inverse=True)
        return used, inverse.ravel()
    present = np.bincount(combined, minlength=int(size)) > 0
    used = np.flatnonzero(present)
    number = np.cumsum(present) - 1
    return used, number[combined]


def _factor_codes(values: Any) -> tuple[np.ndarray, pd.Index]:
    """Codes and levels of one column's values (its array, or a Series)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        categorical = values.array if isinstance(values, pd.Series) else values
        return categorical.codes.astype(np.int64), categorical.categories
    try:
        codes, levels = pd.factorize(values, sort=True)
    except TypeError:  # mixed types that do not sort
        codes, levels = pd.factorize(pd.Series(values).astype(str), sort=True)
    if values.dtype == object and len({type(level) for level in levels}) > 1:
        # 3, 3.0 and "3" are one level, as R's as.character and predict() see them
        key_codes, keys = pd.factorize(pd.Series(level_keys(pd.Series(levels))), sort=True)
        return key_codes[codes].astype(np.int64), pd.Index(keys, dtype=object)
    return codes.astype(np.int64), pd.Index(levels)


def build_random_terms(
    bars: tuple[BarTerm, ...],
    frame: pd.DataFrame,
    eval_env: Any = 0,
    transform_data: pd.DataFrame | None = None,
) -> list[RandomTerm]:
    """Evaluate the bar terms on complete-case data, in lme4's term order.

    Parameters
    ----------
    bars : tuple of BarTerm
        Expanded bar terms from :func:`statsmodels_lmer.formula.parse_formula`.
    frame : pandas.DataFrame
        The data with incomplete rows already removed.
    eval_env : patsy.EvalEnvironment or int
        Where patsy looks up names that are not columns.
    transform_data : pandas.DataFrame, optional
        All rows of the columns stateful transforms read (their statistics are
        learned there, as in R; :mod:`~statsmodels_lmer.transform_rows`).

    Returns
    -------
    list of RandomTerm
    """
    return order_terms([_evaluate_bar(bar, frame, eval_env, transform_data) for bar in bars])


def order_terms(terms: list[RandomTerm]) -> list[RandomTerm]:
    """The terms in lme4's order, a second term on a factor labelled ``"g.1"``."""
    order = lme4_term_order([term.n_levels for term in terms])
    terms = [terms[i] for i in order]
    seen: dict[str, int] = {}
    for term in terms:
        count = seen.get(term.group, 0)
        seen[term.group] = count + 1
        if count:
            term.label = f"{term.group}.{count}"
    return terms


def _evaluate_bar(
    bar: BarTerm, frame: pd.DataFrame, eval_env: Any, transform_data: pd.DataFrame | None
) -> RandomTerm:
    for name in bar.factors:
        if name not in frame.columns:
            raise UnknownColumnError(
                f"grouping factor {name!r} of random-effects term {bar} is not a "
                f"column of the data (columns: {', '.join(map(str, frame.columns))})"
            )
    codes, levels = grouping_codes(frame, bar.factors)
    simple = _simple_columns(bar.lhs, frame)
    Z, names = simple if simple is not None else _term_columns(bar, frame, eval_env, transform_data)
    return RandomTerm(bar.group, bar.group, names, codes, levels, Z, bar.lhs, bar.factors)


def _simple_columns(lhs: str, frame: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """Columns of a left side made of ``1``/``0`` and numeric column names only.

    The common ``1``, ``x``, ``1 + x`` and ``0 + x`` need no patsy pass; they
    give the columns patsy would (``Intercept`` first unless removed). Anything
    else returns None and goes through patsy.
    """
    tokens = [t.strip() for t in lhs.split("+")]
    intercept = "0" not in tokens and "-1" not in lhs
    names = [t for t in tokens if t not in ("0", "1")]
    if "-" in lhs.replace("-1", "") or any(t not in frame.columns for t in names):
        return None
    values = [column_array(frame, t) for t in names]  # None: a duplicated name
    if len(set(names)) != len(names) or any(
        v is None
        or not pd.api.types.is_numeric_dtype(v.dtype)
        or pd.api.types.is_bool_dtype(v.dtype)
        for v in values
    ):
        return None
    columns = [np.ones(len(frame))] if intercept else []
    columns += [np.asarray(v, dtype=float) for v in values]
    if not columns:
        return None
    values = np.column_stack(columns)
    if not np.all(np.isfinite(values)):
        return None  # patsy's path reports it
    return values, (("Intercept",) if intercept else ()) + tuple(names)


def term_columns_error(lhs: str, term: str, message: str, columns: Any) -> Exception:
    """Our error for patsy's failure (``message``) to evaluate a random term's columns.

    An R function gets its Python spelling; a name that is neither a column
    (of ``columns``, the data's) nor in the formula's scope an
    :class:`UnknownColumnError` suggesting close column names.
    """
    where = f"cannot evaluate the columns {lhs!r} of random-effects term {term}"
    hint = r_function_hint(message)
    name = undefined_name(message)
    if name is not None and not hint and name not in set(map(str, columns)):
        return UnknownColumnError(
            f"{where}: {name!r} is neither a column of the data nor a name the formula "
            f"can see{suggest_column(name, columns)}"
        )
    return FormulaError(f"{where}: {message}{hint}")


def _term_columns(
    bar: BarTerm, frame: pd.DataFrame, eval_env: Any, transform_data: pd.DataFrame | None
) -> tuple[np.ndarray, tuple[str, ...]]:
    try:
        design = design_matrix(
            bar.lhs,
            frame,
            eval_env,
            transform_data,
            NA_action="raise",
            return_type="dataframe",
        )
    except patsy.PatsyError as err:
        if "missing values" in err.message:  # NaN made by a transform, e.g. np.log(-1)
            raise DataError(
                f"random-effects term {bar} has non-finite values in its columns (its "
                "transform gives NaN on some rows)"
            ) from None
        raise term_columns_error(bar.lhs, str(bar), err.message, frame.columns) from None
    except SyntaxError as err:
        raise FormulaError(
            f"cannot evaluate the columns of random-effects term {bar}: {not_python(err)}"
        ) from None
    names = r_term_order(design.design_info, bar.lhs).column_names  # lme4's column order
    values = design[names].to_numpy(dtype=float)
    if values.shape[1] == 0:
        raise FormulaError(f"random-effects term {bar} has no columns")
    if not np.all(np.isfinite(values)):
        raise DataError(f"random-effects term {bar} has non-finite values in its columns")
    return values, tuple(readable_name(name) for name in names)
