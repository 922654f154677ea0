"""Property-based tests of the lme4 formula parser (hypothesis).

Generated valid formulas must parse to the terms lme4 would build; generated
garbage must either parse or raise ``FormulaError`` (a ``ValueError``), never
any other exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statsmodels_lmer.exceptions import FormulaError
from statsmodels_lmer.formula import BarTerm, ParsedFormula, parse_formula

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAMES = ["y", "x", "z", "w", "g", "h", "a", "b", "c", "Days", "Subject", "x_1", "x.2"]
RESPONSES = ["y", "Reaction", "np.log(y)", "I(y * 2)", "y.1"]
FIXED_TERMS = ["x", "z", "x:z", "x*z", "I(x**2)", "C(f)", "np.log(w)", "x.2", "C(f):x"]
# lhs of a bar term -> its uncorrelated parts under `||` (lme4's expandDoubleVerts)
BAR_LHS = {
    "1": ["1"],
    "x": ["1", "0 + x"],
    "1 + x": ["1", "0 + x"],
    "0 + x": ["0 + x"],
    "x + z": ["1", "0 + x", "0 + z"],
    "1 + x + z": ["1", "0 + x", "0 + z"],
    "0 + x + z": ["0 + x", "0 + z"],
    "C(f)": ["1", "0 + C(f)"],
    "0 + C(f)": ["0 + C(f)"],
    "I(x**2)": ["1", "0 + I(x ** 2)"],
    "x:z": ["1", "0 + x:z"],
}


def squash(text: str) -> str:
    """Text without whitespace (the parser keeps the user's spacing)."""
    return re.sub(r"\s+", "", text)


@dataclass
class Bar:
    lhs: str
    double: bool
    group: list[list[str]]  # "a:b/c" -> [["a", "b"], ["c"]]

    def text(self, space: str) -> str:
        bar = "||" if self.double else "|"
        group = "/".join(":".join(names) for names in self.group)
        return f"({space}{self.lhs}{space}{bar}{space}{group}{space})"

    def expected(self) -> list[tuple[str, tuple[str, ...]]]:
        """(lhs, factors) as lme4's findbars expands the term.

        ``||`` is expanded first (expandDoubleVerts), then each bar's ``/``
        (expandSlash), innermost grouping first: ``(x || a/b)`` is
        ``(1 | b:a), (1 | a), (0 + x | b:a), (0 + x | a)``.
        """
        groups = []
        for depth in range(len(self.group)):
            combined: tuple[str, ...] = ()
            for names in reversed(self.group[: depth + 1]):
                combined += tuple(names)
            groups.append(combined)
        groups.reverse()
        parts = BAR_LHS[self.lhs] if self.double else [self.lhs]
        return [(squash(part), factors) for part in parts for factors in groups]


group_names = st.lists(
    st.sampled_from(["g", "h", "a", "b", "c", "Subject", "g.1", "g_2"]),
    min_size=1,
    max_size=2,
    unique=True,
)
# `||` together with `/`: lme4 lists the terms lhs-first,
# (1|b:a), (1|a), (0+x|b:a), (0+x|a) (a parser bug this test found, now fixed).
DOUBLE_BAR_WITH_NESTING = True


@st.composite
def bars(draw):
    group = draw(st.lists(group_names, min_size=1, max_size=3))
    double = draw(st.booleans()) and (DOUBLE_BAR_WITH_NESTING or len(group) == 1)
    return Bar(draw(st.sampled_from(sorted(BAR_LHS))), double, group)


@st.composite
def formulas(draw):
    response = draw(st.sampled_from(RESPONSES))
    fixed = draw(st.lists(st.sampled_from(FIXED_TERMS), max_size=3, unique=True))
    intercept = draw(st.sampled_from(["", "1", "0", "-1"]))
    bar_terms = draw(st.lists(bars(), min_size=1, max_size=3))
    space = draw(st.sampled_from(["", " ", "  "]))
    pieces: list[str | Bar] = list(fixed)
    for bar in bar_terms:
        position = draw(st.integers(0, len(pieces)))
        pieces.insert(position, bar)
    if intercept in ("1", "0"):
        pieces.insert(0, intercept)
    sep = f"{space}+{space}"
    rhs = sep.join(p.text(space) if isinstance(p, Bar) else p for p in pieces)
    if intercept == "-1":
        rhs += f"{space}-{space}1"
    formula = f"{response}{space}~{space}{rhs}"
    fixed_parts = [p for p in pieces if not isinstance(p, Bar)]
    expected_fixed = " + ".join(fixed_parts) if fixed_parts else ""
    if intercept == "-1":
        expected_fixed = f"{expected_fixed} - 1" if expected_fixed else "-1"
    if not expected_fixed:
        expected_fixed = "1"
    expected_bars = [pair for p in pieces if isinstance(p, Bar) for pair in p.expected()]
    return formula, response, expected_fixed, expected_bars


@SETTINGS
@given(formulas())
def test_generated_valid_formulas_parse_to_lme4_terms(case):
    formula, response, fixed, expected_bars = case
    parsed = parse_formula(formula)
    assert isinstance(parsed, ParsedFormula)
    assert parsed.response == response
    assert squash(parsed.fixed_rhs) == squash(fixed)
    got = [(squash(bar.lhs), bar.factors) for bar in parsed.bars]
    assert got == expected_bars
    for bar in parsed.bars:
        assert isinstance(bar, BarTerm)
        # lme4's name: c:(b:a) for the innermost term of a/b/c
        assert re.sub("[()]", "", bar.group) == ":".join(bar.factors)
        assert parse_formula(f"y ~ {bar}").bars == (bar,)


# Inputs that once reached a bare AssertionError inside patsy (tokens.py); the
# parser now turns every patsy failure into a FormulaError.
PATSY_ASSERTION_CASES = ["y ~ x + (1|g) + =", "y~(=1|g)", "y~x.2+(<1||g)-1"]


@pytest.mark.parametrize("text", PATSY_ASSERTION_CASES)
def test_patsy_internal_errors_become_formula_errors(text):
    with pytest.raises(FormulaError):
        parse_formula(text)


def _parses_or_formula_error(text: str) -> None:
    try:
        parsed = parse_formula(text)
    except FormulaError as err:
        assert isinstance(err, ValueError)
        assert str(err)  # says what is wrong
    else:
        assert isinstance(parsed, ParsedFormula)
        assert parsed.bars


FORMULA_CHARS = "yxgab01 ~()|+-:/*.,[]{}'\"\\=%$!<>&^#@_?;`"


@SETTINGS
@given(st.text(alphabet=FORMULA_CHARS, max_size=40))
def test_garbage_from_formula_characters_raises_formula_error_only(text):
    _parses_or_formula_error(text)


@SETTINGS
@given(st.text(max_size=30))
def test_arbitrary_text_raises_formula_error_only(text):
    _parses_or_formula_error(text)


@st.composite
def mutated_formulas(draw):
    """A valid formula with a few characters deleted, inserted or replaced."""
    text = draw(formulas())[0]
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["delete", "insert", "replace"]))
        char = draw(st.sampled_from(FORMULA_CHARS))
        if action == "delete":
            text = text[:position] + text[position + 1 :]
        elif action == "insert":
            text = text[:position] + char + text[position:]
        else:
            text = text[:position] + char + text[position + 1 :]
    return text


@SETTINGS
@given(mutated_formulas())
def test_mutated_formulas_raise_formula_error_only(text):
    _parses_or_formula_error(text)


@SETTINGS
@given(st.text(alphabet=FORMULA_CHARS.replace("~", ""), max_size=40))
def test_text_without_tilde_is_a_formula_error(text):
    with pytest.raises(FormulaError, match="exactly one '~'"):
        parse_formula(text)


@SETTINGS
@given(formulas(), st.sampled_from(["(", ")"]))
def test_unbalanced_parentheses_are_formula_errors(case, paren):
    formula = case[0]
    broken = formula + paren if paren == ")" else formula.replace("~", "~ (", 1)
    with pytest.raises(FormulaError, match=r"unmatched|unclosed"):
        parse_formula(broken)


@SETTINGS
@given(st.lists(bars(), min_size=1, max_size=2))
def test_formula_without_response_is_a_formula_error(bar_terms):
    with pytest.raises(FormulaError, match="no response"):
        parse_formula("~ " + " + ".join(bar.text(" ") for bar in bar_terms))
