"""Parse lme4 model formulas into a fixed part and random-effects bar terms.

The fixed part is left as text for statsmodels' formula machinery (patsy);
each ``(lhs | group)`` term becomes a :class:`BarTerm`. The lme4 shorthands are
expanded here: ``(x || g)`` into uncorrelated terms ``(1 | g) + (0 + x | g)``
and ``(1 | a/b)`` into ``(1 | b:a) + (1 | a)``. lme4's ``offset(...)`` terms of
the fixed part are taken out of it here (``ParsedFormula.offsets``; evaluated
by :mod:`statsmodels_lmer.offsets`).
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
from .transform_rows import r_ordered

__all__ = [
    "BarTerm",
    "ParsedFormula",
    "bare_name",
    "deep_parsing",
    "model_desc",
    "not_python",
    "offset_code",
    "parse_formula",
    "quote_formula",
    "quote_names",
    "r_function_hint",
    "r_powers",
    "same_code",
    "update_formula",
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
    name : str or None
        The grouping factor's name when it is not the factors joined by ``":"``:
        lme4 names the innermost term of ``a/b/c`` ``"c:(b:a)"``.
    """

    lhs: str
    factors: tuple[str, ...]
    name: str | None = None

    @property
    def group(self) -> str:
        """The grouping factor's name as lme4 prints it (``"cask:batch"``, ``"c:(b:a)"``).

        ``name`` when given (the nested terms of ``a/b/c``), else the factors
        joined by ``":"``.
        """
        return self.name or ":".join(self.factors)

    def __str__(self) -> str:
        """The term as formula text that parses back to it."""
        if all(_NAME.match(name) for name in self.factors):
            return f"({self.lhs} | {self.group})"
        group = ":".join(name if _NAME.match(name) else f"Q({name!r})" for name in self.factors)
        return f"({self.lhs} | {group})"


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed-effects part, bar terms and offsets.

    ``offsets`` holds the code inside each ``offset(...)`` term of the fixed
    part (lme4's offsets, summed with the ``offset=`` keyword); they are not
    part of ``fixed_rhs``.
    """

    response: str
    fixed_rhs: str
    bars: tuple[BarTerm, ...]
    offsets: tuple[str, ...] = ()

    @property
    def fixed(self) -> str:
        """The fixed-effects formula ``response ~ rhs`` for patsy (without the offsets)."""
        return f"{self.response} ~ {self.fixed_rhs}"

    def text(self, fixed_rhs: str | None = None, bars: Iterable[BarTerm] | None = None) -> str:
        """The lme4 formula, optionally with another fixed part or other bar terms.

        The offsets are kept: the reduced models of ``ranova`` and ``drop1``
        have them, as lmerTest's.
        """
        rhs = self.fixed_rhs if fixed_rhs is None else fixed_rhs
        parts = [rhs, *(f"offset({code})" for code in self.offsets)]
        parts += [str(bar) for bar in (self.bars if bars is None else bars)]
        return f"{self.response} ~ {' + '.join(parts)}"


def parse_formula(formula: str, require_random: bool = True) -> ParsedFormula:
    """Split an lme4 formula into its fixed part and expanded bar terms.

    Parsed once per formula text (the result is frozen): a parse costs 50 us.

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
        random terms were given), the random terms, with ``||`` and ``/``
        expanded as lme4 does, and the code of each ``offset(...)`` term.

    Raises
    ------
    FormulaError
        When the formula is malformed; the message says what and where.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, got {type(formula).__name__}")
    return _parsed(formula, bool(require_random))


@lru_cache(maxsize=512)
def _parsed(formula: str, require_random: bool) -> ParsedFormula:
    with deep_parsing(formula):
        return _parse(formula, require_random)


_DOT = re.compile(r"(?<![\w.])\.(?![\w.])")
"""A ``.`` standing alone (not in ``np.log``, ``x.2`` or ``.5``)."""


def update_formula(old: str, new: str) -> str:
    """The formula of ``update(m, new)`` as R's ``update.formula`` builds it.

    ``.`` on the left of ``new`` stands for the old response (``np.log(.)``
    too), ``.`` on the right for the old terms, to which ``+ term`` adds and
    from which ``- term`` removes: ``". ~ . - Days"``, ``". ~ . + (1 | g)"``,
    ``"~ . - (Days | Subject)"`` (an empty left side keeps the response).
    A ``new`` without a standalone ``.`` is returned as given. The fixed part
    is simplified by patsy's term algebra (``a*b - a:b``), random-effects
    terms are matched by their text without spaces.

    Raises
    ------
    FormulaError
        ``new`` is malformed, or removes a random-effects term the old
        formula does not have.
    """
    if not isinstance(new, str):
        raise FormulaError(f"formula must be a string, got {type(new).__name__}")
    if not _DOT.search(new):
        return new
    old_lhs, old_rhs = _split_tilde(old)
    if new.count("~") != 1:
        raise FormulaError(f"formula {new!r} must have exactly one '~'")
    new_lhs, new_rhs = new.split("~")
    lhs = _DOT.sub(lambda _: old_lhs, new_lhs.strip()) if new_lhs.strip() else old_lhs
    _check_balanced(new_rhs, new)
    fixed: list[tuple[str, str]] = []
    bars: list[str] = []
    for sign, segment in _updated_segments(old_rhs, old, new_rhs, new):
        if _bar_interior(segment) is None:
            fixed.append((sign, segment.strip()))
        elif sign == "+":
            bars.append(segment.strip())
        else:
            _remove_bar(bars, segment.strip(), old)
    terms = model_desc(_join_fixed(fixed, new)).rhs_termlist
    names = [term.name() for term in terms if term.factors]
    if not any(not term.factors for term in terms):
        names.insert(0, "0")
    return f"{lhs} ~ {' + '.join([' + '.join(names) or '1', *bars])}"


def _updated_segments(old_rhs: str, old: str, new_rhs: str, new: str) -> list[tuple[str, str]]:
    """The signed terms of ``new_rhs`` with a ``.`` replaced by the old ones."""
    segments: list[tuple[str, str]] = []
    for sign, segment in _split_top_level(new_rhs, new):
        if segment.strip() != "." and _DOT.search(segment):
            raise FormulaError(
                f"'.' in {segment.strip()!r} of {new!r}: in an update '.' stands for the old "
                "terms only as a whole term; write them out, e.g. '. ~ . + x + Days:x'"
            )
        if segment.strip() != ".":
            segments.append((sign, segment))
        elif sign == "-":
            raise FormulaError(f"'- .' in {new!r} would remove every term; write the new terms")
        else:
            segments.extend(_split_top_level(old_rhs, old))
    return segments


def _remove_bar(bars: list[str], segment: str, old: str) -> None:
    """Remove the random-effects term ``segment`` (compared without spaces).

    A part of an uncorrelated term, ``(0 + Days | Subject)`` of ``(Days ||
    Subject)``, is removed from the term written out, as lme4 (whose model
    formula has ``||`` expanded) removes it; every copy of the term goes, as
    R's ``update`` removes a term.
    """
    key = "".join(segment.split())
    keys = ["".join(bar.split()) for bar in bars]
    if key not in keys:
        expanded = [part for bar in bars for part in _double_bar_parts(bar)]
        if len(expanded) > len(bars) and key in ["".join(b.split()) for b in expanded]:
            bars[:] = expanded
            keys = ["".join(bar.split()) for bar in bars]
    if key not in keys:
        raise FormulaError(
            f"cannot remove {segment!r}: the formula {old!r} has the random-effects "
            f"terms {', '.join(bars) or 'none'}"
        )
    bars[:] = [bar for bar, other in zip(bars, keys) if other != key]  # every copy, as R


def _double_bar_parts(bar: str) -> list[str]:
    """``(x || g)`` written out as ``(1 | g)``, ``(0 + x | g)``; other terms as they are."""
    inner = _bar_interior(bar)
    position = _find_top_level(inner, "|")
    if inner[position + 1 : position + 2] != "|":
        return [bar]
    group = inner[position + 2 :].strip()
    return [f"({part} | {group})" for part in _uncorrelated_parts(inner[:position].strip(), bar)]


def _parse(formula: str, require_random: bool) -> ParsedFormula:
    formula = r_powers(formula)
    response, rhs = _split_tilde(formula)
    _refuse_backticks(formula)
    _check_balanced(rhs, formula)
    _check_balanced(response, formula)
    response = _response_expression(response)
    fixed_parts: list[tuple[str, str]] = []
    bars: list[BarTerm] = []
    offsets: list[str] = []
    for sign, segment in _split_top_level(rhs, formula):
        inner = _bar_interior(segment)
        code = offset_code(segment)
        if code is not None:
            if sign == "-":
                raise FormulaError(f"offset term {segment.strip()!r} cannot be subtracted")
            if not code.strip():
                raise FormulaError(f"offset term {segment.strip()!r} in {formula!r} is empty")
            if not any(same_code(code, other) for other in offsets):  # R keeps one of repeats
                offsets.append(code.strip())
            continue
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
    return ParsedFormula(response, _join_fixed(fixed_parts, formula), tuple(bars), tuple(offsets))


_OFFSET = re.compile(r"^offset\s*\(")


def _refuse_backticks(formula: str) -> None:
    """R's backtick-quoted names (```reaction time```) are ``Q("reaction time")`` here."""
    quoted = re.findall(r"`([^`]*)`", formula)
    if quoted:
        spelled = ", ".join(f'Q("{name}")' for name in quoted)
        raise FormulaError(
            f"formula {formula!r} quotes names with R's backticks; write {spelled} instead"
        )


def same_code(first: str, second: str) -> bool:
    """Whether two pieces of Python code are the same expression (spacing and
    redundant parentheses aside), as R's ``terms`` matches repeated terms."""
    try:
        return ast.dump(ast.parse(first.strip(), mode="eval")) == ast.dump(
            ast.parse(second.strip(), mode="eval")
        )
    except SyntaxError:
        return first.strip() == second.strip()


def offset_code(segment: str) -> str | None:
    """The code inside ``offset(...)`` when the term ``segment`` is one, else None.

    This is the one place where lme4's offset terms are recognized: a whole
    term of the fixed part (``offset(np.log(t))``), not a factor inside one.
    """
    text = segment.strip()
    match = _OFFSET.match(text)
    if match is None or not _bar_interior_closes(text[match.end() - 1 :]):
        return None
    return text[match.end() : -1]


def not_python(err: SyntaxError) -> str:
    """The message for a term that is not a Python expression (R's ``as.numeric(x)``)."""
    code = (err.text or "").strip()
    return (
        f"the term {code!r} is not a Python expression (patsy evaluates terms as Python: "
        "R code such as as.numeric(x) or x %in% g has no meaning here; use e.g. np.log(x), "
        "C(x) or x:g)"
    )


_RESPONSE_OPERATORS = frozenset("+-*/%:&|")


def _response_expression(response: str) -> str:
    """The response as patsy should evaluate it: in ``I()`` when it has arithmetic.

    R evaluates a formula's left side as an expression (``Yield - 1500 ~ ...``,
    ``Reaction / Days ~ ...``); patsy reads it as a formula, where ``-`` and ``/``
    are term algebra (a patsy error, or a response of two columns). Operators
    outside any bracket therefore put the whole side in ``I()``.
    """
    if any(ch in _RESPONSE_OPERATORS for _, ch in _top_level(response)):
        return f"I({response})"
    return response


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
    return [
        BarTerm(part, factors, None if name == ":".join(factors) else name)
        for part in lhs_parts
        for factors, name in groups
    ]


def _check_lhs(lhs: str, original: str) -> None:
    try:
        model_desc(lhs)
    except _PATSY_ERRORS as err:
        raise FormulaError(
            f"cannot read the left side {lhs!r} of random-effects term {original!r}: "
            f"{_message(err)}"
        ) from None
    _check_codes(lhs, f"random-effects term {original!r}")


def _check_codes(text: str, where: str) -> None:
    """Refuse R's ``%in%`` (and other ``%op%``) in a term before patsy runs its code.

    Other code is checked when evaluated: names such as ``class`` or ``x.1`` are
    quoted first, once the data's columns are known.
    """
    desc = model_desc(text)
    for term in desc.lhs_termlist + desc.rhs_termlist:
        for factor in term.factors:
            if re.search(r"%\s*\w+\s*%", factor.code):
                raise FormulaError(
                    f"term {factor.code!r} of the {where} uses an R operator: R's %in% is "
                    "not supported, write 'f:x' or 'f/x'"
                )


def _expand_nesting(group_text: str, original: str) -> list[tuple[tuple[str, ...], str]]:
    """The (factors, name) of each term of a grouping expression, innermost first.

    ``a/b/c`` -> ``[((c, b, a), "c:(b:a)"), ((b, a), "b:a"), ((a,), "a")]``;
    ``a:b`` -> ``[((a, b), "a:b")]``.

    Each part may be parenthesised (``a/(b)``) and each name quoted as
    ``Q("my g")``. The names are lme4's: an inner level joined to the
    interaction of the outer ones, in parentheses when that has several factors.
    """
    parts = _split_unquoted(_strip_parentheses(group_text), "/")
    nested = [_strip_parentheses(part) for part in parts]
    levels: list[tuple[tuple[str, ...], str]] = []
    for part in nested:
        plain = part if "Q(" in part else part.replace("(", "").replace(")", "")
        factors = _split_unquoted(plain, ":")
        names = tuple(_column_name(name) for name in factors)
        bad = [shown for shown, name in zip(factors, names) if name is None]
        if bad or not part:
            shown = bad[0].strip() if bad else part
            raise FormulaError(
                f"grouping factor {shown!r} in random-effects term {original!r} "
                "is not a column name; use plain names joined by ':' or '/' "
                "(a name with spaces or symbols as Q('my group'))"
            )
        written = "".join(part.split()) if plain != part else ":".join(names)
        levels.append((names, written))
    expanded = []
    combined: tuple[str, ...] = ()
    name = ""
    for names, inner in levels:
        outer = f"({name})" if len(combined) > 1 else name
        name = f"{inner}:{outer}" if combined else inner
        combined = names + combined
        expanded.append((combined, name))
    return expanded[::-1]  # innermost first, as lme4's findbars lists them


def _split_unquoted(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside quoted strings (``Q("g:1")`` stays whole)."""
    parts, start, quote = [], 0, None
    for position, char in enumerate(text):
        if quote is not None:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == separator:
            parts.append(text[start:position])
            start = position + 1
    parts.append(text[start:])
    return parts


def _strip_parentheses(text: str) -> str:
    """``text`` without whitespace and redundant enclosing parentheses: ``((a))`` -> ``a``."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and _bar_interior_closes(text):
        text = text[1:-1].strip()
    return text


def _bar_interior_closes(text: str) -> bool:
    """True when the opening parenthesis of ``text`` closes at its last character."""
    for pos, _, depth in _depths(text):
        if depth == 0:
            return pos == len(text) - 1
    return False


def _column_name(text: str) -> str | None:
    """The column a grouping factor's text names (``g``, ``Q("my g")``), else None."""
    text = text.strip()
    if _NAME.match(text):
        return text
    if text.startswith("Q("):
        return bare_name(text)
    return None


def _uncorrelated_parts(lhs: str, original: str) -> list[str]:
    """Split ``x + z`` of ``(x + z || g)`` into ``1``, ``0 + x``, ``0 + z``."""
    desc = model_desc(lhs)
    parts = []
    for term in r_ordered(desc.rhs_termlist):  # as R's terms()
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
    _check_codes(text, f"fixed-effects part of {formula!r}")
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


def r_powers(formula: str) -> str:
    """``formula`` with R's ``^`` written as ``**`` (outside string literals).

    In an lme4 formula ``^`` is a power both inside ``I()`` (``I(x^2)``) and
    between terms (``(a + b)^2``, all interactions up to order 2); patsy
    writes both as ``**``, and Python's ``^`` (bitwise xor) would silently
    give ``x xor 2`` for an integer column.
    """
    if "^" not in formula:
        return formula
    out: list[str] = []
    pos = 0
    while pos < len(formula):
        ch = formula[pos]
        end = _literal_end(formula, pos) if ch in "'\"" else pos + 1
        out.append("**" if ch == "^" else formula[pos:end])
        pos = end
    return "".join(out)


# R functions users write in lme4 formulas, and what to write here instead
_R_FUNCTIONS = {
    "factor": "use C(x) for R's factor(x)",
    "as.factor": "use C(x) for R's as.factor(x)",
    "offset": (
        "offset(...) must be a term of its own, as in 'y ~ x + offset(np.log(t)) + (1 | g)'"
    ),
    "dummy": (
        'for lme4\'s dummy(f, "b") write I((f == "b") * 1), as in \'(0 + I((f == "b") * 1) | g)\''
    ),
    "relevel": 'use C(f, Treatment(reference="b")) for R\'s relevel(f, "b")',
    "ifelse": "use np.where(condition, yes, no) for R's ifelse()",
    "as.numeric": "use I(x * 1.0) or a numeric column for R's as.numeric(x)",
}


def r_function_hint(message: str) -> str:
    """Advice for a formula that calls an R function (``log(x)``) that Python does not know.

    ``message`` is the error patsy reported ("name 'log' is not defined");
    the hint is empty for other errors.
    """
    match = re.search(r"name '([\w.]+)' is not defined", message)
    if match is None:
        return ""
    name = match.group(1)
    if name in _R_FUNCTIONS:
        return f"; {_R_FUNCTIONS[name]}"
    if name in _NUMPY_NAMES:
        return f"; for R's {name}() write np.{name}(...)"
    return ""


_NUMPY_NAMES = frozenset(
    {"log", "log2", "log10", "log1p", "exp", "expm1", "sqrt", "abs", "sin", "cos", "tan"}
    | {"floor", "ceil", "round", "sign", "tanh", "sinh", "cosh", "arcsin", "arccos", "arctan"}
)


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
    return _quoted(text, _names_to_quote(columns))


def _names_to_quote(columns: Iterable[Any]) -> set[str]:
    """The column names :func:`quote_names` wraps in ``Q("...")``."""
    return {c for c in columns if isinstance(c, str) and _needs_quoting(c)}


def _quoted(text: str, wanted: set[str]) -> str:
    """``text`` with the names in ``wanted`` wrapped in ``Q("...")`` (see :func:`quote_names`)."""
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
    """The formula with :func:`quote_names` applied to the response, fixed part, bar columns
    and offsets.

    The formula itself when no column needs quoting (the names to quote are found once).
    """
    wanted = _names_to_quote(columns)
    if not wanted:
        return parsed
    bars = tuple(replace(bar, lhs=_quoted(bar.lhs, wanted)) for bar in parsed.bars)
    return ParsedFormula(
        _quoted(parsed.response, wanted),
        _quoted(parsed.fixed_rhs, wanted),
        bars,
        tuple(_quoted(code, wanted) for code in parsed.offsets),
    )
