"""Restricted formulas: column names, numbers, operators and a whitelist of transforms.

Formulas are Python: patsy evaluates each term (``I(x**2)``, ``np.log(x)``) as
Python code, as statsmodels does, so a formula can run any code
(``I(__import__('os').system(...))``). A service that takes formulas from
untrusted users passes ``restricted=True``: every term's code is then parsed
(never evaluated) and checked against the whitelist below before patsy sees
it, and names are looked up in the data and this whitelist only, never in the
caller's namespace.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any

import numpy as np
import patsy

from .exceptions import UnsafeFormulaError
from .formula import BarTerm, ParsedFormula, deep_parsing
from .transforms import FORMULA_TRANSFORMS

__all__ = [
    "MAX_FORMULA_LENGTH",
    "SAFE_FUNCTIONS",
    "SAFE_NUMPY_FUNCTIONS",
    "check_bars",
    "check_restricted",
    "restricted_env",
]

SAFE_FUNCTIONS = frozenset(
    {"I", "C", "Q", "center", "standardize", "scale", "bs", "ns", "cr", "cc"}
    | {"Treatment", "Sum", "Diff", "Helmert", "Poly"}
)
"""patsy's transforms and contrasts allowed by name: ``I(x**2)``, ``C(f, Sum)``."""

SAFE_NUMPY_FUNCTIONS = frozenset(
    {"log", "log1p", "log2", "log10", "exp", "expm1", "sqrt", "cbrt", "abs", "square"}
    | {"sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh"}
    | {"floor", "ceil", "round", "sign"}
)
"""numpy functions allowed as ``np.<name>(...)`` or ``numpy.<name>(...)``."""

MAX_FORMULA_LENGTH = 10_000
"""Longest formula accepted in restricted mode (characters)."""

MAX_EXPONENT = 100.0
"""Largest ``|c|`` allowed in ``x ** c`` (a constant exponent; huge powers of integers hang)."""

_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)
_COMPARISONS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
_CONTRASTS = {"Treatment", "Sum", "Diff", "Helmert", "Poly"}
_TAKES_STRINGS = {"Q", "C"} | _CONTRASTS


def restricted_env() -> patsy.EvalEnvironment:
    """The only namespace a restricted formula sees besides the data: numpy as ``np``."""
    return patsy.EvalEnvironment([{"np": np, "numpy": np}, FORMULA_TRANSFORMS])


def check_restricted(parsed: ParsedFormula, columns: Iterable[Any]) -> None:
    """Refuse a formula with anything but columns, numbers, operators and whitelisted transforms.

    Parameters
    ----------
    parsed : ParsedFormula
        The formula, with column names already quoted.
    columns : iterable
        The data's column names.

    Raises
    ------
    UnsafeFormulaError
        Naming the offending code and what is allowed.
    """
    names = {str(c) for c in columns}
    text = parsed.text()
    if len(text) > MAX_FORMULA_LENGTH:
        raise UnsafeFormulaError(
            f"formula of {len(text)} characters: restricted mode accepts at most "
            f"{MAX_FORMULA_LENGTH}"
        )
    _check_code(parsed.response, names)
    with deep_parsing(parsed.fixed):
        desc = patsy.ModelDesc.from_formula(parsed.fixed)
    for term in desc.rhs_termlist:
        for factor in term.factors:
            _check_code(factor.code, names)
    for code in parsed.offsets:
        _check_code(code, names)
    check_bars(parsed.bars, names)


def check_bars(bars: Iterable[BarTerm], columns: Iterable[Any]) -> None:
    """:func:`check_restricted` for random-effects terms (also used on ``re_formula``)."""
    names = {str(c) for c in columns}
    for bar in bars:
        for factor_name in bar.factors:
            if factor_name not in names:
                raise UnsafeFormulaError(
                    f"grouping factor {factor_name!r} is not a column of the data"
                )
        for term in patsy.ModelDesc.from_formula(bar.lhs).rhs_termlist:
            for factor in term.factors:
                _check_code(factor.code, names)


def _check_code(code: str, columns: set[str]) -> None:
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        raise UnsafeFormulaError(f"cannot read the term {code!r} as an expression") from None
    _check_node(tree.body, code, columns)


def _refuse(code: str, what: str) -> UnsafeFormulaError:
    return UnsafeFormulaError(
        f"restricted formula: {what} in {code!r}. Allowed are column names, numbers, "
        "+ - * / ** and comparisons, and the transforms "
        f"{', '.join(sorted(SAFE_FUNCTIONS))} and np.{{{', '.join(sorted(SAFE_NUMPY_FUNCTIONS))}}}"
    )


def _check_node(node: ast.AST, code: str, columns: set[str]) -> None:
    if isinstance(node, ast.Name):
        if node.id not in columns:
            raise _refuse(code, f"the name {node.id!r} is not a column of the data")
    elif isinstance(node, ast.Constant):
        if not (node.value is None or isinstance(node.value, int | float)):
            raise _refuse(code, f"the constant {node.value!r} is not a number")
    elif isinstance(node, ast.BinOp):
        if not isinstance(node.op, _OPERATORS):
            raise _refuse(code, f"the operator {type(node.op).__name__}")
        if isinstance(node.op, ast.Pow):
            _check_exponent(node.right, code)
        _check_node(node.left, code, columns)
        _check_node(node.right, code, columns)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, _OPERATORS):
            raise _refuse(code, f"the operator {type(node.op).__name__}")
        _check_node(node.operand, code, columns)
    elif isinstance(node, ast.Compare):
        if not all(isinstance(op, _COMPARISONS) for op in node.ops):
            raise _refuse(code, "a comparison other than < <= > >= == !=")
        for part in [node.left, *node.comparators]:
            _check_node(part, code, columns)
    elif isinstance(node, ast.Call):
        _check_call(node, code, columns)
    else:
        raise _refuse(code, f"a {type(node).__name__} expression")


def _check_exponent(node: ast.AST, code: str) -> None:
    value = node.operand if isinstance(node, ast.UnaryOp) else node
    if not (
        isinstance(value, ast.Constant)
        and isinstance(value.value, int | float)
        and abs(value.value) <= MAX_EXPONENT
    ):
        raise _refuse(code, f"an exponent that is not a number of at most {MAX_EXPONENT:g}")


def _function_name(func: ast.AST, code: str) -> str:
    if isinstance(func, ast.Name) and func.id in SAFE_FUNCTIONS:
        return func.id
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in ("np", "numpy")
        and func.attr in SAFE_NUMPY_FUNCTIONS
    ):
        return f"np.{func.attr}"
    raise _refuse(code, f"the function {ast.unparse(func)!r} is not on the whitelist")


def _check_call(node: ast.Call, code: str, columns: set[str]) -> None:
    name = _function_name(node.func, code)
    arguments = [*node.args, *(k.value for k in node.keywords)]
    if any(k.arg is None for k in node.keywords) or any(
        isinstance(a, ast.Starred) for a in node.args
    ):
        raise _refuse(code, "unpacked arguments (* or **)")
    if name == "Q":
        if not (
            len(node.args) == 1
            and not node.keywords
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value) in columns
        ):
            raise _refuse(code, "Q() of something other than a column name")
        return
    for argument in arguments:
        if name in _TAKES_STRINGS and (
            (isinstance(argument, ast.Constant) and isinstance(argument.value, str))
            or (isinstance(argument, ast.Name) and argument.id in _CONTRASTS)
        ):
            continue
        _check_node(argument, code, columns)
