"""Parse lme4 model formulas into a fixed part and random-effects bar terms.

The fixed part is left as text for statsmodels' formula machinery (patsy);
each ``(lhs | group)`` term becomes a :class:`BarTerm`. The lme4 shorthands are
expanded here: ``(x || g)`` into uncorrelated terms ``(1 | g) + (0 + x | g)``
and ``(1 | a/b)`` into ``(1 | b:a) + (1 | a)``.
"""

from __future__ import annotations

import ast
import keyword
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import patsy

from .exceptions import FormulaError

__all__ = [
    "BarTerm",
    "ParsedFormula",
    "bare_name",
    "deep_parsing",
    "model_desc",
    "not_python",
    "parse_formula",
    "quote_formula",
    "quote_names",
    "r_power_in_identity",
]


@lru_cache(maxsize=512)
def model_desc(text: str) -> patsy.ModelDesc:
    """patsy's ``ModelDesc`` of a formula text, parsed once per text (read it, do not change it).

    A fit parses its fixed part and each bar's left side several times
    (checks, the used columns); a parse costs 30-50 us.
    """
    return patsy.ModelDesc.from_formula(text)


def bare_name(code: str) -> str | None:
    """The column a patsy factor's code names on its own (``x`` or ``Q("x")``), else None.

    ``x + 1``, ``C(x)``, ``np.log(x)``, constants (``True``) and ``Q`` of a
    non-string give None.
    """
    try:
        node = ast.parse(code.strip(), mode="eval").body
    except SyntaxError:
        return None
    if isinstance(node, ast.Name):
        return node.id
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Q"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


# a column name: letters (any script), digits, "_" and R's "."; not starting with a digit
_NAME = re.compile(r"^(?:[^\W\d]|\.)[\w.]*$")
_OPEN = "([{"
_CLOSE = ")]}"


@dataclass(frozen=True)
class BarTerm:
    """One random-effects term ``(lhs | group)`` after expansion.

    Attributes
    ----------
    lhs : str
        Right-hand side of a patsy formula giving the term's columns
        (``"1"``, ``"1 + Days"``, ``"0 + C(f)"``).
    factors : tuple of str
        Names of the data columns whose interaction is the grouping factor,
        e.g. ``("cask", "batch")`` for ``cask:batch``.
    """

    lhs: str
    factors: tuple[str, ...]

    @property
    def group(self) -> str:
        """The grouping factor's name as lme4 prints it (``"cask:batch"``)."""
        return ":".join(self.factors)

    def __str__(self) -> str:
        return f"({self.lhs} | {self.group})"


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed-effects part and bar terms."""

    response: str
    fixed_rhs: str
    bars: tuple[BarTerm, ...]

    @property
    def fixed(self) -> str:
        """The fixed-effects formula ``response ~ rhs`` for patsy."""
        return f"{self.response} ~ {self.fixed_rhs}"


def parse_formula(formula: str, require_random: bool = True) -> ParsedFormula:
    """Split an lme4 formula into its fixed part and expanded bar terms.

    Parameters
    ----------
    formula : str
        A two-sided formula such as ``"y ~ x + (1 + x | g) + (1 | a/b)"``.
    require_random : bool
        Refuse a formula without random-effects terms (the default); False
        returns it with no bar terms (for MixedLM-style ``groups=``).

    Returns
    -------
    ParsedFormula
        The response, the fixed-effects right-hand side (``"1"`` when only
        random terms were given) and the random terms, with ``||`` and ``/``
        expanded as lme4 does.

    Raises
    ------
    FormulaError
        When the formula is malformed; the message says what and where.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, got {type(formula).__name__}")
    with deep_parsing(formula):
        return _parse(formula, require_random)


def _parse(formula: str, require_random: bool) -> ParsedFormula:
    response, rhs = _split_tilde(formula)
    _check_balanced(rhs, formula)
    response, rhs = r_power_in_identity(response), r_power_in_identity(rhs)
    fixed_parts: list[tuple[str, str]] = []
    bars: list[BarTerm] = []
    for sign, segment in _split_top_level(rhs, formula):
        inner = _bar_interior(segment)
        if inner is None:
            if _find_top_level(segment, "|") >= 0:
                raise FormulaError(
                    f"random-effects term {segment.strip()!r} must be enclosed in "
                    f"parentheses, as in '({segment.strip()})'"
                )
            if segment.strip() == ".":
                raise FormulaError(
                    f"'.' (every other column) in {formula!r} is not supported: "
                    "name the predictors, e.g. 'y ~ x1 + x2 + (1 | g)'"
                )
            fixed_parts.append((sign, segment.strip()))
            continue
        if sign == "-":
            raise FormulaError(f"random-effects term {segment.strip()!r} cannot be subtracted")
        bars.extend(_expand_bar(inner, segment.strip()))
    if not bars and require_random:
        raise FormulaError(
            f"formula {formula!r} has no random-effects term such as '(1 | group)'; "
            "use statsmodels' OLS for a model without random effects"
        )
    return ParsedFormula(response, _join_fixed(fixed_parts, formula), tuple(bars))


def not_python(err: SyntaxError) -> str:
    """The message for a term that is not a Python expression (R's ``as.numeric(x)``)."""
    code = (err.text or "").strip()
    return (
        f"the term {code!r} is not a Python expression (patsy evaluates terms as Python: "
        "R code such as as.numeric(x) or x %in% g has no meaning here; use e.g. np.log(x), "
        "C(x) or x:g)"
    )


_IDENTITY_CALL = re.compile(r"(?<![\w.])I\s*\(")


def r_power_in_identity(text: str) -> str:
    """R's power ``^`` inside ``I(...)`` written as Python's ``**``.

    R users write ``I(age^2)``; patsy evaluates ``I()`` as Python, where ``^``
    is the bitwise XOR: an error for float columns and silently ``Days XOR 2``
    for integer ones. ``I(age^2)`` becomes ``I(age**2)`` (patsy names the
    column ``I(age ** 2)``).
    """
    pieces, done = [], 0
    for match in _IDENTITY_CALL.finditer(text):
        if match.start() < done:
            continue  # an I() inside one already rewritten
        end = _closing_paren(text, match.end() - 1)
        pieces.append(text[done : match.start()])
        pieces.append(text[match.start() : end].replace("^", "**"))
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def _closing_paren(text: str, open_pos: int) -> int:
    """The position just after the bracket closing the one at ``open_pos`` (or the end)."""
    depth = 0
    for pos in range(open_pos, len(text)):
        depth += (text[pos] in _OPEN) - (text[pos] in _CLOSE)
        if depth == 0:
            return pos + 1
    return len(text)


def _split_tilde(formula: str) -> tuple[str, str]:
    positions = [i for i, ch in enumerate(formula) if ch == "~"]
    if len(positions) != 1:
        raise FormulaError(
            f"formula {formula!r} must have exactly one '~' separating the "
            f"response from the terms (found {len(positions)})"
        )
    response, rhs = formula[: positions[0]].strip(), formula[positions[0] + 1 :]
    if not response:
        raise FormulaError(f"formula {formula!r} has no response left of '~'")
    if not rhs.strip():
        raise FormulaError(f"formula {formula!r} has no terms right of '~'")
    return response, rhs


def _depths(text: str):
    """(position, character, bracket depth after it) for each character."""
    depth = 0
    for pos, ch in enumerate(text):
        depth += (ch in _OPEN) - (ch in _CLOSE)
        yield pos, ch, depth


def _check_balanced(text: str, formula: str) -> None:
    depth = 0
    for pos, ch, depth in _depths(text):
        if depth < 0:
            raise FormulaError(f"unmatched {ch!r} at position {pos} of the terms in {formula!r}")
    if depth:
        raise FormulaError(f"unclosed parenthesis in the terms of {formula!r}")


def _top_level(text: str):
    """(position, character) pairs of the characters outside any bracket."""
    for pos, ch, depth in _depths(text):
        if depth == 0 and ch not in _CLOSE:
            yield pos, ch


def _split_top_level(rhs: str, formula: str) -> list[tuple[str, str]]:
    """Split at '+' and '-' outside parentheses; return (sign, text) pairs."""
    segments: list[tuple[str, str]] = []
    start, sign = 0, "+"
    for pos, ch in _top_level(rhs):
        if ch in "+-" and not _is_exponent_sign(rhs, pos):
            segments.append((sign, rhs[start:pos]))
            sign, start = ch, pos + 1
    segments.append((sign, rhs[start:]))
    for index, (_, text) in enumerate(segments):
        if not text.strip() and index > 0:
            raise FormulaError(f"empty term next to '+' or '-' in {formula!r}")
    return [(s, t) for s, t in segments if t.strip()]


def _is_exponent_sign(text: str, pos: int) -> bool:
    """True for the sign in a float literal such as ``1e-3``."""
    return (
        pos >= 2
        and text[pos - 1] in "eE"
        and text[pos - 2].isdigit()
        and pos + 1 < len(text)
        and text[pos + 1].isdigit()
    )


def _find_top_level(text: str, char: str) -> int:
    return next((pos for pos, ch in _top_level(text) if ch == char), -1)


def _bar_interior(segment: str) -> str | None:
    """The text inside ``( ... )`` when the segment is a parenthesised bar term."""
    text = segment.strip()
    if not (text.startswith("(") and text.endswith(")")):
        return None
    depth = 0
    for pos, ch in enumerate(text):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0 and pos != len(text) - 1:
                return None  # e.g. "(a + b):c"
    inner = text[1:-1]
    if _find_top_level(inner, "|") >= 0:
        return inner
    return _bar_interior(inner)  # lme4 accepts redundant parentheses: ((1 | g))


def _expand_bar(inner: str, original: str) -> list[BarTerm]:
    bar = _find_top_level(inner, "|")
    double = inner[bar + 1 : bar + 2] == "|"
    lhs = inner[:bar].strip()
    group_text = inner[bar + (2 if double else 1) :].strip()
    if not lhs:
        raise FormulaError(
            f"random-effects term {original!r} has nothing left of '|'; "
            "write '(1 | group)' for a random intercept"
        )
    if not group_text:
        raise FormulaError(f"random-effects term {original!r} has no grouping factor")
    if _find_top_level(group_text, "|") >= 0:
        raise FormulaError(f"random-effects term {original!r} has more than one '|'")
    _check_lhs(lhs, original)
    groups = _expand_nesting(group_text, original)
    lhs_parts = _uncorrelated_parts(lhs, original) if double else [lhs]
    # lme4 splits "||" first, then "/": (x || a/b) -> (1|b:a) (1|a) (0+x|b:a) (0+x|a)
    return [BarTerm(part, factors) for part in lhs_parts for factors in groups]


def _check_lhs(lhs: str, original: str) -> None:
    try:
        model_desc(lhs)
    except _PATSY_ERRORS as err:
        raise FormulaError(
            f"cannot read the left side {lhs!r} of random-effects term {original!r}: "
            f"{_message(err)}"
        ) from None


def _expand_nesting(group_text: str, original: str) -> list[tuple[str, ...]]:
    """``a/b/c`` -> [(c, b, a), (b, a), (a,)]; ``a:b`` -> [(a, b)]."""
    text = group_text.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    nested = [part.strip() for part in text.split("/")]
    levels: list[tuple[str, ...]] = []
    for part in nested:
        names = tuple(name.strip() for name in part.split(":"))
        bad = [name for name in names if not _NAME.match(name)]
        if bad or not part:
            shown = bad[0] if bad else part
            raise FormulaError(
                f"grouping factor {shown!r} in random-effects term {original!r} "
                "is not a column name; use plain names joined by ':' or '/'"
            )
        levels.append(names)
    expanded = []
    for depth in range(len(levels)):
        combined: tuple[str, ...] = ()
        for names in reversed(levels[: depth + 1]):
            combined += names
        expanded.append(combined)
    return expanded[::-1]  # innermost first, as lme4's findbars lists them


def _uncorrelated_parts(lhs: str, original: str) -> list[str]:
    """Split ``x + z`` of ``(x + z || g)`` into ``1``, ``0 + x``, ``0 + z``."""
    desc = model_desc(lhs)
    # R's terms() orders by degree (main effects before interactions)
    ordered = sorted(desc.rhs_termlist, key=lambda term: len(term.factors))
    parts = []
    for term in ordered:
        parts.append("1" if not term.factors else f"0 + {term.name()}")
    if not parts:
        raise FormulaError(f"random-effects term {original!r} has no columns")
    return parts


def _join_fixed(parts: list[tuple[str, str]], formula: str) -> str:
    if not parts:
        return "1"
    text = parts[0][1] if parts[0][0] == "+" else f"-{parts[0][1]}"
    for sign, segment in parts[1:]:
        text += f" {sign} {segment}"
    try:
        model_desc(text)
    except _PATSY_ERRORS as err:
        raise FormulaError(
            f"cannot read the fixed-effects part {text!r} of {formula!r}: {_message(err)}"
        ) from None
    return text


# patsy raises its own error for bad formulas, but a few inputs reach an
# internal assertion or Python's tokenizer first.
_PATSY_ERRORS = (patsy.PatsyError, AssertionError, SyntaxError, ValueError, TypeError)


def _message(err: Exception) -> str:
    return getattr(err, "message", None) or str(err) or type(err).__name__


@contextmanager
def deep_parsing(text: str) -> Iterator[None]:
    """Let patsy parse long formulas.

    patsy parses ``a + b + ...`` recursively, a few frames per term, so a
    formula of several hundred terms exceeds Python's default recursion
    limit. The limit is raised for the duration, in proportion to the
    formula's operators, and restored after.
    """
    operators = sum(text.count(op) for op in "+-*:/")
    needed = 1000 + 25 * operators
    old = sys.getrecursionlimit()
    if needed > old:
        sys.setrecursionlimit(needed)
    try:
        yield
    finally:
        if needed > old:
            sys.setrecursionlimit(old)


def _needs_quoting(name: str) -> bool:
    """A column name patsy cannot read as a Python name (``x.1``, ``class``), or ``Intercept``."""
    return bool(_NAME.match(name)) and (
        not name.isidentifier() or keyword.iskeyword(name) or name == "Intercept"
    )


def _literal_end(text: str, start: int) -> int:
    """Position after the string literal that opens at ``start``."""
    quote = text[start]
    pos = start + 1
    while pos < len(text) and text[pos] != quote:
        pos += 2 if text[pos] == "\\" else 1
    return pos + 1


def _token_end(text: str, start: int) -> int:
    pos = start + 1
    while pos < len(text) and (text[pos].isalnum() or text[pos] in "._"):
        pos += 1
    return pos


def quote_names(text: str, columns: Iterable[Any]) -> str:
    """``text`` with column names that patsy cannot read wrapped in ``Q("...")``.

    R-style names such as ``x.1``, Python keywords used as names and a column
    named ``Intercept`` (which would clash with the intercept's name) are
    quoted; string literals, numbers and everything else are left alone.
    """
    wanted = {c for c in columns if isinstance(c, str) and _needs_quoting(c)}
    if not wanted:
        return text
    out: list[str] = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch in "'\"":
            end = _literal_end(text, pos)
        elif ch.isdigit() or (ch == "." and text[pos + 1 : pos + 2].isdigit()):
            end = _token_end(text, pos)  # a number such as 1.5 or 1e-3
        elif ch.isidentifier() or ch == ".":
            end = _token_end(text, pos)
            token = text[pos:end]
            if token in wanted and not text[:pos].rstrip().endswith("."):
                out.append(f'Q("{token}")')
                pos = end
                continue
        else:
            end = pos + 1
        out.append(text[pos:end])
        pos = end
    return "".join(out)


def quote_formula(parsed: ParsedFormula, columns: Iterable[Any]) -> ParsedFormula:
    """The formula with :func:`quote_names` applied to the response, fixed part and bar columns."""
    columns = list(columns)
    bars = tuple(replace(bar, lhs=quote_names(bar.lhs, columns)) for bar in parsed.bars)
    return ParsedFormula(
        quote_names(parsed.response, columns), quote_names(parsed.fixed_rhs, columns), bars
    )
