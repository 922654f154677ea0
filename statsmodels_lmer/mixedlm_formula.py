"""statsmodels MixedLM's model specification written as lme4 bar terms.

``MixedLM.from_formula(formula, data, groups=G, re_formula=R, vc_formula=VC)``
describes one grouping factor ``G`` with

* ``re_formula``: random coefficients with a full covariance matrix, one set
  per group: lme4's ``(R | G)``. The default is a random intercept when
  ``vc_formula`` is not given, and nothing when it is;
* ``vc_formula``: variance components. Each entry's formula is evaluated
  within each group, and every column it gives there gets an independent
  random coefficient; all share one variance. ``{"f": "0 + C(f)"}`` is one
  effect per level of ``f`` within each group, lme4's ``(1 | G:f)``, and
  ``{"x": "0 + x"}`` (numeric ``x``) a random slope per group with its own
  variance, ``(0 + x | G)``. When ``G`` is constant (MixedLM's idiom for
  crossed effects: one group holding every row) ``G:`` is left out, so
  ``{"a": "0 + C(a)", "b": "0 + C(b)"}`` becomes ``(1 | a) + (1 | b)``.

:func:`translate_mixedlm` returns the lme4 formula, the data (with the
grouping column added when ``groups`` is an array) and a
:class:`MixedLMSpec` recording which term is which, for MixedLM's result
names (``cov_re``, ``vcomp``, ``random_effects``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import patsy

from .arguments import check_frame
from .exceptions import DataError, FormulaError, UnknownColumnError
from .formula import parse_formula

__all__ = ["MixedLMSpec", "VarianceComponent", "translate_mixedlm"]

_CATEGORICAL_CALL = re.compile(r"^C\(\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*(,.*)?\)$")
_COLUMN_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
DEFAULT_GROUP_NAME = "Group"
"""Name given to ``groups`` passed as an unnamed array (MixedLM's own choice)."""


@dataclass(frozen=True)
class VarianceComponent:
    """One ``vc_formula`` entry and the lme4 term it became.

    Attributes
    ----------
    name : str
        The ``vc_formula`` key (MixedLM's ``exog_vc.names``).
    formula : str
        The entry's formula as given.
    group : str
        The lme4 grouping factor of its term (``"Litter:Pig"``; ``"Pig"``
        when the MixedLM group is constant).
    factors : tuple of str
        The categorical columns of the entry (``("Pig",)``), empty for a
        numeric random slope.
    column_label : str
        patsy's name of the entry's columns within a group, with a ``{}``
        slot for the level of each categorical factor in ``factors``' order:
        ``"C(Pig)[{}]"`` (MixedLM's random-effect names are
        ``"name[C(Pig)[4601]]"``), ``"C(f)[{}]:x"`` for a slope per level,
        or the numeric column's name.
    lhs : str
        The term's left side (``"1"`` or ``"0 + x"``).
    """

    name: str
    formula: str
    group: str
    factors: tuple[str, ...]
    column_label: str
    lhs: str

    @property
    def bar(self) -> str:
        """The lme4 term, e.g. ``"(1 | Litter:Pig)"``."""
        return f"({self.lhs} | {self.group})"


@dataclass(frozen=True)
class MixedLMSpec:
    """How a MixedLM-style specification maps onto lme4 terms.

    Attributes
    ----------
    groups : str
        The grouping column (added to the data when given as an array).
    re_lhs : str or None
        Left side of the ``(re | groups)`` term, None when there is none.
    vc : tuple of VarianceComponent
        The variance components in MixedLM's order (sorted by name).
    constant_groups : bool
        Whether ``groups`` has a single value (MixedLM's crossed idiom).
    """

    groups: str
    re_lhs: str | None
    vc: tuple[VarianceComponent, ...]
    constant_groups: bool

    @property
    def bars(self) -> list[str]:
        """The lme4 terms, random coefficients first."""
        re_bar = [] if self.re_lhs is None else [f"({self.re_lhs} | {self.groups})"]
        return re_bar + [component.bar for component in self.vc]


def translate_mixedlm(
    formula: str,
    data: Any,
    groups: Any = None,
    re_formula: str | None = None,
    vc_formula: dict[str, str] | None = None,
) -> tuple[str, pd.DataFrame, MixedLMSpec]:
    """MixedLM's ``groups``, ``re_formula`` and ``vc_formula`` as an lme4 formula.

    Parameters
    ----------
    formula : str
        The fixed-effects formula, without bar terms (``"Weight ~ Time"``).
    data : pandas.DataFrame
        The data; not modified (a new frame is returned when a column is added).
    groups : str or array_like
        Grouping column name, or one value per row of ``data`` (the column
        is then added under the array's name, or ``"Group"``).
    re_formula : str, optional
        Random coefficients per group, e.g. ``"~Time"`` or ``"1"``.
    vc_formula : dict of str, optional
        Variance components, e.g. ``{"Litter": "0 + C(Litter)"}``.

    Returns
    -------
    formula : str
        The lme4 formula, e.g. ``"Weight ~ Time + (Time | Pig)"``.
    data : pandas.DataFrame
        The data to fit.
    spec : MixedLMSpec

    Raises
    ------
    FormulaError
        The formula already has bar terms, or a ``vc_formula`` entry has no
        lme4 equivalent.
    UnknownColumnError
        ``groups`` or a variance-component factor is not a column.
    DataError
        ``groups`` has the wrong length.
    """
    if groups is None:
        raise FormulaError("re_formula and vc_formula need groups= (MixedLM's grouping variable)")
    parsed = parse_formula(formula, require_random=False)
    if parsed.bars:
        raise FormulaError(
            f"formula {formula!r} has random-effects terms "
            f"({', '.join(map(str, parsed.bars))}) and groups= was given as well: "
            "use either lme4's bar terms or MixedLM's groups=/re_formula=/vc_formula=, "
            "not both"
        )
    check_frame(data)
    group_name, data = _group_column(groups, data)
    constant = data[group_name].nunique(dropna=True) == 1
    if vc_formula is not None and not isinstance(vc_formula, dict):
        raise TypeError(
            f"vc_formula must be a dict of name -> formula, got {type(vc_formula).__name__}"
        )
    if re_formula is None:
        re_lhs = "1" if vc_formula is None else None
    else:
        re_lhs = _formula_rhs(re_formula, "re_formula")
    components = tuple(
        _variance_component(name, text, group_name, constant, data)
        for name, text in sorted((vc_formula or {}).items())
    )
    spec = MixedLMSpec(group_name, re_lhs, components, bool(constant))
    if not spec.bars:
        raise FormulaError("the MixedLM specification has no random effects")
    return f"{formula} + {' + '.join(spec.bars)}", data, spec


def _group_column(groups: Any, data: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The grouping column's name, and the data with it added if needed."""
    if isinstance(groups, str):
        if groups not in data.columns:
            raise UnknownColumnError(f"groups column {groups!r} is not in the data")
        if not _COLUMN_NAME.match(groups):
            raise FormulaError(
                f"groups column {groups!r} is not a plain name; rename the column "
                "(letters, digits, '_' and '.')"
            )
        return groups, data
    values = np.asarray(groups)
    if values.ndim != 1 or len(values) != len(data):
        raise DataError(
            f"groups must have one value per row of the data ({len(data)}), "
            f"got shape {values.shape}"
        )
    name = getattr(groups, "name", None)
    if isinstance(name, str) and _COLUMN_NAME.match(name):
        if name in data.columns and np.array_equal(
            data[name].to_numpy(), values, equal_nan=values.dtype.kind == "f"
        ):
            return name, data
    else:
        name = DEFAULT_GROUP_NAME
    while name in data.columns:
        name = f"{name}_"
    return name, data.assign(**{name: values})


def _formula_rhs(text: Any, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise FormulaError(f"{what} must be a formula string such as '~Time', got {text!r}")
    rhs = text.strip()
    if rhs.startswith("~"):
        rhs = rhs[1:].strip()
    if "~" in rhs or not rhs:
        raise FormulaError(f"{what} {text!r} must be one-sided, such as '~Time' or '1'")
    try:
        patsy.ModelDesc.from_formula(rhs)
    except patsy.PatsyError as err:
        raise FormulaError(f"cannot read {what} {text!r}: {err.message}") from None
    return rhs


def _variance_component(
    name: str, text: str, group: str, constant: bool, data: pd.DataFrame
) -> VarianceComponent:
    rhs = _formula_rhs(text, f"vc_formula[{name!r}]")
    desc = patsy.ModelDesc.from_formula(rhs)
    terms = [term for term in desc.rhs_termlist if term.factors]
    has_intercept = any(not term.factors for term in desc.rhs_termlist)
    if not terms:
        lhs, factors, label = "1", (), "Intercept"
    elif len(terms) > 1 or has_intercept:
        raise FormulaError(
            f"vc_formula[{name!r}] = {text!r} has no lme4 equivalent: write each "
            "variance component as one term without intercept, such as '0 + C(f)' "
            "(a random effect per level of f within each group) or '0 + x' (a "
            "random slope), and use one vc_formula entry per term"
        )
    else:
        lhs, factors, label = _component_term(name, terms[0], data)
    group_factors = factors if constant and factors else (group, *factors)
    if constant and not factors:
        raise FormulaError(
            f"vc_formula[{name!r}] = {text!r} is a single effect shared by all rows "
            "(groups has one value); it cannot be told apart from the residual"
        )
    return VarianceComponent(name, text, ":".join(group_factors), factors, label, lhs)


def _component_term(name: str, term: Any, data: pd.DataFrame) -> tuple[str, tuple[str, ...], str]:
    """(lhs, categorical factors, column label) of one variance-component term."""
    categorical: list[str] = []
    numeric: list[str] = []
    label_parts: list[str] = []
    for factor in term.factors:
        code = factor.code.strip()
        call = _CATEGORICAL_CALL.match(code)
        escaped = code.replace("{", "{{").replace("}", "}}")
        if call and call.group(2):
            raise FormulaError(
                f"vc_formula[{name!r}] codes {call.group(1)!r} as {code}: lme4 has no "
                "variance component on contrast-coded columns (MixedLM puts iid effects "
                f"on those columns); write C({call.group(1)}) for one effect per level, "
                f"lme4's (1 | group:{call.group(1)})"
            )
        if call:
            categorical.append(_checked_column(call.group(1), name, data))
        elif code in data.columns and not _is_numeric(data[code]):
            categorical.append(_checked_column(code, name, data))
        else:
            numeric.append(code)
            label_parts.append(escaped)
            continue
        label_parts.append(escaped + "[{}]")
    lhs = "1" if not numeric else f"0 + {':'.join(numeric)}"
    return lhs, tuple(categorical), ":".join(label_parts)


def _checked_column(column: str, name: str, data: pd.DataFrame) -> str:
    if column not in data.columns:
        raise UnknownColumnError(f"vc_formula[{name!r}] uses {column!r}, which is not in the data")
    return column


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
