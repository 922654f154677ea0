"""The lme4 formula parser: expansion of bar terms and clear errors."""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import FormulaError
from statsmodels_lmer.formula import BarTerm, parse_formula, update_formula


def test_random_slope_term():
    parsed = parse_formula("Reaction ~ Days + (Days | Subject)")
    assert parsed.response == "Reaction"
    assert parsed.fixed == "Reaction ~ Days"
    assert parsed.bars == (BarTerm("Days", ("Subject",)),)


def test_random_only_formula_keeps_intercept():
    assert parse_formula("y ~ (1 | g)").fixed_rhs == "1"
    assert parse_formula("y ~ 0 + (1 | g)").fixed_rhs == "0"


def test_nested_slash_expands_as_lme4():
    parsed = parse_formula("strength ~ 1 + (1 | batch/cask)")
    assert [bar.group for bar in parsed.bars] == ["cask:batch", "batch"]
    three = parse_formula("y ~ (1 | a/b/c)")
    # lme4's findbars names the innermost term c:(b:a)
    assert [bar.group for bar in three.bars] == ["c:(b:a)", "b:a", "a"]
    assert [bar.factors for bar in three.bars] == [("c", "b", "a"), ("b", "a"), ("a",)]
    assert parse_formula(f"y ~ {three.bars[0]}").bars == three.bars[:1]


def test_explicit_interaction_group():
    parsed = parse_formula("y ~ (1 | a:b)")
    assert parsed.bars[0].factors == ("a", "b")
    assert parsed.bars[0].group == "a:b"


def test_double_bar_splits_into_uncorrelated_terms():
    parsed = parse_formula("y ~ x + (x || g)")
    assert [(bar.lhs, bar.group) for bar in parsed.bars] == [("1", "g"), ("0 + x", "g")]
    no_intercept = parse_formula("y ~ x + (0 + x + z || g)")
    assert [bar.lhs for bar in no_intercept.bars] == ["0 + x", "0 + z"]


def test_transformations_and_factors_inside_bars():
    parsed = parse_formula("y ~ I(x**2) + C(f) + (0 + C(f) | g) + (1 + I(x**2) | h)")
    assert parsed.fixed_rhs == "I(x**2) + C(f)"
    assert parsed.bars[0].lhs == "0 + C(f)"
    assert parsed.bars[1].lhs == "1 + I(x**2)"


def test_subtracted_intercept_stays_in_fixed_part():
    parsed = parse_formula("y ~ x + (1 | g) - 1")
    assert parsed.fixed_rhs == "x - 1"


def test_parenthesised_fixed_expression_is_not_a_bar():
    parsed = parse_formula("y ~ (a + b):c + (1 | g)")
    assert parsed.fixed_rhs == "(a + b):c"
    assert len(parsed.bars) == 1


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ x", "no random-effects term"),
        ("y ~ x + 1|g", "must be enclosed in parentheses"),
        ("y ~ (|g)", "nothing left of '|'"),
        ("y ~ (1|)", "no grouping factor"),
        ("y ~ (1|g", "unclosed parenthesis"),
        ("y ~ (1|g))", "unmatched ')'"),
        ("y ~ (1|g+h)", "is not a column name"),
        ("~ (1|g)", "no response"),
        ("y ~ x + + (1|g)", "empty term"),
        ("y ~ x - (1|g)", "cannot be subtracted"),
        ("y ~ (1|g|h)", "more than one '|'"),
        ("y ~ x ~ (1|g)", "exactly one '~'"),
        ("y ~ (1 + |g)", "cannot read the left side"),
        ("y ~ x $ z + (1|g)", "cannot read the fixed-effects part"),
        ("y ~ (1|a//b)", "is not a column name"),
    ],
)
def test_malformed_formulas_raise_value_errors_that_say_what(formula, message):
    with pytest.raises(FormulaError, match=re.escape(message)) as info:
        parse_formula(formula)
    assert isinstance(info.value, ValueError)


def test_non_string_formula_is_refused():
    with pytest.raises(FormulaError, match="must be a string"):
        parse_formula(42)


def test_double_bar_orders_terms_as_r_terms():
    parsed = parse_formula("y ~ (x:z + w || g)")
    assert [bar.lhs for bar in parsed.bars] == ["1", "0 + w", "0 + x:z"]
    nested = parse_formula("y ~ (x || a/b)")
    assert [(bar.lhs, bar.group) for bar in nested.bars] == [
        ("1", "b:a"),
        ("1", "a"),
        ("0 + x", "b:a"),
        ("0 + x", "a"),
    ]


def test_bare_name_reads_a_column_or_a_quoted_one_only():
    from statsmodels_lmer.formula import bare_name

    assert bare_name("Days") == "Days"
    assert bare_name('Q("x.1")') == "x.1"
    assert bare_name("Q('odd name')") == "odd name"
    assert bare_name('Q("a\\"b")') == 'a"b'
    for code in ("np.log(x)", "C(g)", "x + 1", "True", "Q(3)", "Q(x)", "x:z", ""):
        assert bare_name(code) is None, code


OLD = "Reaction ~ Days + (Days | Subject)"


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (". ~ . - Days", "Reaction ~ 1 + (Days | Subject)"),
        (". ~ . + (1 | g)", "Reaction ~ Days + (Days | Subject) + (1 | g)"),
        ("~ . - (Days|Subject) + (1|Subject)", "Reaction ~ Days + (1|Subject)"),
        ("np.log(.) ~ .", "np.log(Reaction) ~ Days + (Days | Subject)"),
        (". ~ . - 1", "Reaction ~ 0 + Days + (Days | Subject)"),
        (". ~ . + x:Days", "Reaction ~ Days + x:Days + (Days | Subject)"),
        ("y ~ x.2 + (1 | g)", "y ~ x.2 + (1 | g)"),  # no standalone dot: as given
    ],
)
def test_update_formula_dots_as_r(new, expected):
    # R: update(Reaction ~ Days + (Days | Subject), new), with lme4's bar terms kept
    assert update_formula(OLD, new) == expected


def test_update_formula_term_algebra_and_intercept():
    old = "y ~ 0 + a*b + (1 | g) + (0 + x | g)"
    assert update_formula(old, ". ~ . - a:b - (0 + x|g)") == "y ~ 0 + a + b + (1 | g)"
    assert update_formula("y ~ 0 + a + (1 | g)", ". ~ . - a") == "y ~ 0 + (1 | g)"


def test_update_removes_a_part_of_an_uncorrelated_term():
    """lme4's model formula has ``||`` written out, so ``- (0 + Days | Subject)`` removes
    that part (lme4's test-lmer.R); the term was matched as written and refused."""
    old = "Reaction ~ Days + (Days || Subject) + (1 | g)"
    assert update_formula(old, ". ~ . - (0 + Days | Subject)") == (
        "Reaction ~ Days + (1 | Subject) + (1 | g)"
    )
    assert update_formula(old, ". ~ . - (1|Subject)") == (
        "Reaction ~ Days + (0 + Days | Subject) + (1 | g)"
    )
    assert update_formula(old, ". ~ . - (Days || Subject)") == "Reaction ~ Days + (1 | g)"
    two = "Reaction ~ Days + (Days || Subject) + (z || Subject)"  # R removes every copy
    assert update_formula(two, ". ~ . - (1 | Subject)") == (
        "Reaction ~ Days + (0 + Days | Subject) + (0 + z | Subject)"
    )
    with pytest.raises(FormulaError, match="cannot remove"):
        update_formula(old, ". ~ . - (0 + x | Subject)")


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (". ~ . - (1 | Subject)", "cannot remove '\\(1 \\| Subject\\)'"),
        (". ~ .*x", "stands for the old terms only as a whole term"),
        (". ~ . - .", "would remove every term"),
        (". ~ . ~ x", "exactly one '~'"),
    ],
)
def test_update_formula_errors(new, message):
    with pytest.raises(FormulaError, match=message):
        update_formula(OLD, new)


def test_r_power_inside_identity_is_a_power():
    """R's I(x^2) squares; Python's ^ would be XOR (silently, on integer columns)."""
    parsed = parse_formula("y ~ x + I(x^2) + I((x - 1)^3) + (x + I(x^2) | g)")
    assert parsed.fixed_rhs == "x + I(x**2) + I((x - 1)**3)"
    assert parsed.bars == (BarTerm("x + I(x**2)", ("g",)),)
    assert parse_formula("y ~ np.exp(x) + (1 | g)").fixed_rhs == "np.exp(x)"


def test_r_power_gives_the_square_of_an_integer_column():
    data = sml.datasets.load("sleepstudy")  # Days is int64: Days ^ 2 would be Days XOR 2
    model = sml.Lmer.from_formula("Reaction ~ Days + I(Days^2) + (1 | Subject)", data)
    np.testing.assert_array_equal(model.exog[:, 2], data["Days"].to_numpy() ** 2)


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ as.numeric(Days) + (1 | Subject)",
        "Reaction ~ Days %in% Subject + (1 | Subject)",
        "Reaction ~ Days + (as.numeric(Days) | Subject)",
    ],
)
def test_r_code_that_is_not_python_is_a_formula_error(formula):
    """patsy raised a bare SyntaxError (not a ValueError) for R-only code."""
    data = sml.datasets.load("sleepstudy")
    with pytest.raises(FormulaError, match=r"is not a Python expression|uses an R operator"):
        sml.Lmer.from_formula(formula, data)


def test_callers_names_do_not_hide_formula_syntax():
    """A module imported as C (or a number called I) made ``C(temp, Poly)`` fail with
    "'module' object is not callable"; C, I and Q are patsy's in every formula."""
    C, I, Q = np, 3, "text"  # noqa: E741
    cake = sml.datasets.load("cake")
    formula = "angle ~ C(recipe, Sum) + I(temp / 10) + (1 | Q('replicate'))"
    res = sml.lmer(formula, cake)
    assert list(res.params.index) == [
        "Intercept",
        "C(recipe, Sum)[S.A]",
        "C(recipe, Sum)[S.B]",
        "I(temp / 10)",
    ]
    assert C is np and I == 3 and Q == "text"  # the caller's names are untouched
    plain = sml.lmer("angle ~ C(recipe, Sum) + I(temp / 10) + (1 | replicate)", cake)
    assert res.llf == pytest.approx(plain.llf, rel=1e-12)


@pytest.mark.filterwarnings("ignore::statsmodels_lmer.exceptions.SingularFitWarning")
def test_integer_levels_are_named_by_their_values():
    """Under numpy 2 patsy named an int64 level by its repr: C(year)[T.np.int64(1937)],
    so ``params["C(year)[T.1937]"]`` and ``t_test("C(year)[T.1937] = 0")`` failed."""
    data = sml.datasets.load("sleepstudy")
    data = data.assign(year=(data["Days"] % 3 + 1936).astype("int64"), half=data["Days"] % 2 / 2)
    res = sml.lmer("Reaction ~ C(year) + C(half) + Days + (0 + C(year) | Subject)", data)
    assert list(res.params.index) == [
        "Intercept",
        "C(year)[T.1937]",
        "C(year)[T.1938]",
        "C(half)[T.0.5]",
        "Days",
    ]
    assert list(res.ranef["Subject"].columns) == ["C(year)[1936]", "C(year)[1937]", "C(year)[1938]"]
    test = res.t_test("C(year)[T.1937] = 0")
    assert float(test.effect[0]) == res.params["C(year)[T.1937]"]
    np.testing.assert_allclose(res.predict(data.head(5)), res.fittedvalues.iloc[:5], rtol=1e-12)
    assert list(res.anova().index) == ["C(year)", "C(half)", "Days"]
    loaded = pickle.loads(pickle.dumps(res))  # the design is rebuilt with the same names
    np.testing.assert_allclose(loaded.predict(data.head(5)), res.predict(data.head(5)))
    assert list(loaded.anova(type=1).index) == ["C(year)", "C(half)", "Days"]
    dd = pytest.importorskip("dask.dataframe")
    on_dask = sml.lmer(
        "Reaction ~ C(year) + Days + (1 | Subject)", dd.from_pandas(data, npartitions=2)
    )
    assert list(on_dask.params.index) == ["Intercept", "C(year)[T.1937]", "C(year)[T.1938]", "Days"]
    for kind in (3, 2, 1):  # types 1 and 2 lost the term (the design kept numpy's names)
        assert list(on_dask.anova(type=kind).index) == ["C(year)", "Days"]


def test_date_levels_are_named_alike_in_memory_and_on_dask():
    """C(day) was C(day)[T.Timestamp('2020-01-02 00:00:00')] in memory and
    C(day)[T.np.datetime64('2020-01-02T00:00:00.000000000')] on Dask."""
    data = sml.datasets.load("sleepstudy")
    data["day"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(data["Days"] % 3, unit="D")
    names = ["Intercept", "C(day)[T.2020-01-02 00:00:00]", "C(day)[T.2020-01-03 00:00:00]"]
    res = sml.lmer("Reaction ~ C(day) + (1 | Subject)", data)
    assert list(res.params.index) == names
    dd = pytest.importorskip("dask.dataframe")
    on_dask = sml.lmer("Reaction ~ C(day) + (1 | Subject)", dd.from_pandas(data, npartitions=2))
    assert list(on_dask.params.index) == names


# -- lme4's column order inside a bar term (tests/fixtures/term_order.json) -----------

TERM_ORDER = json.loads((Path(__file__).parent / "fixtures" / "term_order.json").read_text())


def sleepstudy_late():
    """sleepstudy with late = Days >= 5 ("no"/"yes"), as make_term_order_fixtures.R."""
    data = sml.datasets.load("sleepstudy")
    return data.assign(late=np.where(data["Days"] >= 5, "yes", "no"))


@pytest.mark.parametrize("name", sorted(TERM_ORDER))
def test_bar_term_columns_follow_lme4s_order(name):
    """patsy would put the factor column first ((late + Days | Subject)'s order), so
    theta, devfun and start_theta moved between the packages meant other parameters:
    devfun at the same theta was off by 2.8 REML units in the probe's example."""
    case = TERM_ORDER[name]
    data = sleepstudy_late()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits
        res = sml.lmer(case["formula"], data)
    names = [
        c.replace("[T.", "").replace("[", "").replace("]", "")
        for c in res.model.random_terms[0].column_names
    ]
    assert ["(Intercept)" if c == "Intercept" else c for c in names] == case["columns"]
    devfun = res.model.devfun(True)
    assert devfun(np.asarray(case["theta_at"])) == pytest.approx(case["devfun_at"], rel=1e-10)
    assert res.reml_criterion <= case["REMLcrit"] * (1 + 1e-7)
    # newdata rows are built in the same order
    np.testing.assert_allclose(res.predict(data), res.fittedvalues, rtol=1e-12)
    dd = pytest.importorskip("dask.dataframe")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_dask = sml.lmer(case["formula"], dd.from_pandas(data, npartitions=3))
    assert on_dask.model.random_terms[0].column_names == res.model.random_terms[0].column_names
    assert on_dask.reml_criterion == pytest.approx(res.reml_criterion, rel=1e-9)


def test_a_repeated_offset_term_counts_once():
    """R's terms() keeps one of repeated identical terms, offsets included: lme4 fits
    offset(z) + offset(z) as offset(z); it was fitted as offset(2 * z)."""
    data = sml.datasets.load("sleepstudy").assign(z=lambda d: 3 * d["Days"])
    once = sml.lmer("Reaction ~ Days + (1 | Subject) + offset(z)", data)
    for formula in [
        "Reaction ~ Days + (1 | Subject) + offset(z) + offset(z)",
        "Reaction ~ Days + offset( z ) + (1 | Subject) + offset((z))",
    ]:
        twice = sml.lmer(formula, data)
        assert twice.model.offset_terms == ("z",)
        assert twice.reml_criterion == pytest.approx(once.reml_criterion, rel=1e-12)
    summed = sml.lmer("Reaction ~ Days + (1 | Subject) + offset(z) + offset(1 * z)", data)
    np.testing.assert_allclose(summed.model.offset, 2 * data["z"])


def test_arithmetic_on_the_response_is_an_expression_as_in_r():
    """R evaluates the left side (MixedModels.jl's tests fit ``yield - 1500 ~ ...``);
    patsy read ``-`` and ``/`` there as term algebra: a patsy error, or "not numeric"
    naming a column 'Reaction / Days' that does not exist."""
    assert parse_formula("Yield - 1500 ~ 0 + (1|Batch)").response == "I(Yield - 1500)"
    assert parse_formula("y^2 / 10 ~ x + (1|g)").response == "I(y**2 / 10)"
    assert parse_formula("np.log(y) ~ x + (1|g)").response == "np.log(y)"
    assert parse_formula('Q("a-b") ~ x + (1|g)').response == 'Q("a-b")'
    dyestuff = sml.datasets.load("Dyestuff")
    res = sml.lmer("Yield - 1500 ~ 0 + (1|Batch)", dyestuff, REML=False)
    assert res.deviance == pytest.approx(329.356872, rel=1e-8)  # lme4 1.1-31
    sleep = sml.datasets.load("sleepstudy").query("Days > 0")
    ratio = sml.lmer("Reaction / Days ~ 1 + (1|Subject)", sleep)
    written = sml.lmer("ratio ~ 1 + (1|Subject)", sleep.assign(ratio=sleep.Reaction / sleep.Days))
    assert ratio.llf == pytest.approx(written.llf, rel=1e-12)
