"""Formula forms an lme4 user writes, fitted, against lme4 + lmerTest.

References: ``tests/fixtures/fuzz_formula_fit.json`` from
``make_fuzz_formula_fixtures.R`` (data ``fixtures/data/fuzz_formula.csv.gz``).
Cases found by the differential fuzzing of fitted formulas: before the fixes,
``scale(x)`` was patsy's (``ddof=0``: coefficients ``sqrt(n / (n - 1))`` times
R's, another REML criterion), ``I(d^2)`` of an integer column was Python's
bitwise xor, ``(1 | g/h/k)`` was named ``k:h:g`` (lme4: ``k:(h:g)``), the levels
of a logical in ``lg:g`` were ``True:1`` (lme4: ``TRUE:1``) and two terms
sharing a column on one factor gave two theta elements the same name.
"""

from __future__ import annotations

import json
import re
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import FormulaError
from statsmodels_lmer.splines import natural_spline_basis

# cases whose coefficient names are patsy's own (contrast or spline names): by position
PATSY_NAMES = {
    "ordered_poly": ["Intercept", "C(o, Poly).Linear", "C(o, Poly).Quadratic", "x"],
    "sum_contrasts": ["Intercept", "C(f, Sum)[S.a]", "C(f, Sum)[S.b]", "x"],
    "bspline": ["Intercept"] + [f"bs(x, df=4)[{i}]" for i in range(4)],
    "natural_spline": ["Intercept"] + [f"ns(x, df=3)[{i}]" for i in range(3)] + ["z"],
}
# random-effects columns with patsy's names, for R's splines::ns(z, ...)1, 2
SPLINE = "ns(z, knots=[0], boundary_knots=[-2, 2])"
RANDOM_PATSY_NAMES = {"natural_spline_knots": ["Intercept", f"{SPLINE}[0]", f"{SPLINE}[1]"]}
# the variances of the two terms sharing columns are not identified (lme4 warns so)
UNIDENTIFIED = {"repeated_theta"}


@cache
def references() -> dict:
    return json.loads((FIXTURES / "fuzz_formula_fit.json").read_text())


@cache
def data() -> pd.DataFrame:
    frame = pd.read_csv(
        FIXTURES / "data" / "fuzz_formula.csv.gz",
        dtype={"gs": str, "h": str, "k": str, "f": str, "o": str},
    )
    return frame.assign(
        o=pd.Categorical(frame["o"], categories=["lo", "mid", "hi"], ordered=True),
        fc=pd.Categorical(frame["f"], categories=["b", "a", "c"]),
    )


@cache
def fitted(key: str):
    case = references()[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sml.Lmer.from_formula(case["py"], data()).fit(reml=case["REML"])


def lme4_name(name: str) -> str:
    """lme4's name of one of our (patsy's) column names: ``fc[T.a]:x`` -> ``fca:x``."""
    parts = []
    for part in name.split(":"):
        match = re.fullmatch(r"(.+)\[(?:T\.)?(.+)\]", part)
        if part == "Intercept":
            part = "(Intercept)"
        elif match:
            level = {"True": "TRUE", "False": "FALSE"}.get(match[2], match[2])
            part = match[1] + level
        parts.append(
            part.replace("np.log(", "log(")
            .replace(" ** ", "^")
            .replace("center=False", "center = FALSE")
        )
    return ":".join(parts)


def lme4_theta_name(name: str) -> str:
    """lme4's name of one of our theta names (``g.lg[T.True]`` -> ``g.lgTRUE``)."""
    parts = re.split(r"\.(?![^\[(]*[\])])", name.replace("np.log(", "log("))
    return ".".join([parts[0]] + [lme4_name(part) for part in parts[1:]])


def matched_fixef(key: str) -> list[int]:
    """Positions in lme4's fixef of our coefficients (names mapped, or by position)."""
    res, ref = fitted(key), references()[key]
    ours = list(res.params.index)
    if key in PATSY_NAMES:
        assert ours == PATSY_NAMES[key]
        return list(range(len(ours)))
    names = list(ref["beta"])
    assert sorted(lme4_name(n) for n in ours) == sorted(names)
    return [names.index(lme4_name(n)) for n in ours]


KEYS = [key for key in references() if key != "ns_basis"]


@pytest.mark.parametrize("key", KEYS)
def test_objective_and_fixed_effects(key):
    res, ref = fitted(key), references()[key]
    assert -2 * res.llf == pytest.approx(ref["objective"], rel=1e-7)
    order = matched_fixef(key)
    beta = np.asarray(list(ref["beta"].values()))[order]
    se = np.asarray(ref["se"])[order]
    np.testing.assert_allclose(res.params, beta, rtol=0, atol=1e-4 * se.min())
    np.testing.assert_allclose(res.bse, se, rtol=1e-4)
    # conditional fitted values follow theta, which lme4's BOBYQA leaves up to a few 1e-4
    # from the optimum on the flat or singular fits here (see the theta test)
    np.testing.assert_allclose(res.fittedvalues, ref["fitted"], rtol=0, atol=2e-4 * res.sigma)


@pytest.mark.parametrize("key", KEYS)
def test_random_effects_names(key):
    res, ref = fitted(key), references()[key]
    if key in RANDOM_PATSY_NAMES:
        assert list(res.ranef["g"].columns) == RANDOM_PATSY_NAMES[key]
        assert len(res.model.theta_names) == len(ref["theta"])
        return
    assert [lme4_theta_name(name) for name in res.model.theta_names] == list(ref["theta"])
    assert len(set(res.model.theta_names)) == len(res.model.theta_names)
    assert list(res.varcorr["grp"]) == ref["varcorr"]["grp"]
    var1 = [lme4_name(v) if isinstance(v, str) else "NA" for v in res.varcorr["var1"]]
    assert var1 == ["NA" if v is None else v for v in ref["varcorr"]["var1"]]
    assert list(res.ranef) == ref["ranef_names"]
    for group, expected in ref["ranef"].items():
        table = res.ranef[group]
        assert [lme4_name(c) for c in table.columns] == expected["columns"]
        assert [str(level) for level in table.index] == expected["rows"]


@pytest.mark.parametrize("key", [k for k in KEYS if k not in UNIDENTIFIED])
def test_variance_components_and_conditional_modes(key):
    res, ref = fitted(key), references()[key]
    # theta to 5e-4: lme4's BOBYQA stops up to a few 1e-4 from the optimum on a singular
    # fit (nested_slope: 2.2e-4 where ours is 0 at a lower criterion)
    np.testing.assert_allclose(res.theta, list(ref["theta"].values()), rtol=0, atol=5e-4)
    np.testing.assert_allclose(res.varcorr["vcov"], ref["varcorr"]["vcov"], rtol=1e-3, atol=1e-6)
    for group, expected in ref["ranef"].items():
        values = res.ranef[group].to_numpy()
        np.testing.assert_allclose(values, expected["values"], rtol=0, atol=2e-4 * res.sigma)


@pytest.mark.parametrize("key", [k for k in KEYS if k not in UNIDENTIFIED])
def test_satterthwaite_df_and_anova(key):
    res, ref = fitted(key), references()[key]
    order = matched_fixef(key)
    # lmerTest's df come from a numerical Hessian (numDeriv): 1e-3 relative
    np.testing.assert_allclose(res.ddf, np.asarray(ref["df"])[order], rtol=1e-3)
    table = res.anova()
    rows = ref["anova"]["rows"]
    if key not in PATSY_NAMES:
        assert sorted(lme4_name(r) for r in table.index) == sorted(rows)
        positions = [rows.index(lme4_name(r)) for r in table.index]
    else:
        positions = list(range(len(rows)))
    np.testing.assert_array_equal(table["NumDF"], np.asarray(ref["anova"]["numdf"])[positions])
    np.testing.assert_allclose(table["F"], np.asarray(ref["anova"]["F"])[positions], rtol=1e-4)
    np.testing.assert_allclose(
        table["DenDF"], np.asarray(ref["anova"]["dendf"])[positions], rtol=1e-3
    )


def test_r_scale_differs_from_patsys_by_the_degrees_of_freedom():
    n = len(data())
    ours = fitted("scale_ml").params["scale(x)"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        patsy_scale = sml.lmer("y ~ scale(x, ddof=0) + (1 | g)", data(), REML=False)
    assert patsy_scale.params.iloc[1] == pytest.approx(ours * np.sqrt((n - 1) / n), rel=1e-10)


def test_caret_is_a_power_not_xor():
    res = fitted("power_of_integer")
    assert "I(d ** 2)" in res.params.index
    again = sml.lmer("y ~ I(d**2) + x + (1 | g)", data())
    assert again.reml_criterion == pytest.approx(res.reml_criterion, rel=1e-12)


def test_nested_names_parse_back_and_predict():
    res = fitted("nested_three")
    assert list(res.ngroups) == ["k:(h:g)", "h:g", "g"]
    new = data().iloc[:5]
    part = res.predict(new, re_formula="~ (1 | k:(h:g))")
    full = res.predict(new, re_formula="~ (1 | g/h/k)")
    assert not np.allclose(part, full)
    np.testing.assert_allclose(full, res.fittedvalues.iloc[:5], rtol=1e-12)


@pytest.mark.parametrize(
    "formula, message",
    [
        ("y ~ log(w) + (1 | g)", r"for R's log\(\) write np.log"),
        ("y ~ x + (sqrt(w) | g)", r"for R's sqrt\(\) write np.sqrt"),
        ("y ~ factor(d) + (1 | g)", r"use C\(x\) for R's factor\(x\)"),
        ("y ~ x %in% f + (1 | g)", "R.s %in% is not supported"),
        ("y ~ x + (0 + dummy(f, 'b') | g)", r"write I\(\(f == \"b\"\) \* 1\)"),
        ("y ~ relevel(f, 'b') + (1 | g)", r"C\(f, Treatment\(reference="),
        ("y ~ ifelse(x > 0, 1, 0) + (1 | g)", r"np.where\(condition, yes, no\)"),
        ("y ~ poly(x, w, degree=2) + (1 | g)", r"poly\(\) takes one variable"),
    ],
)
def test_r_functions_get_a_pointer_to_the_python_spelling(formula, message):
    with pytest.raises(FormulaError, match=message):
        sml.lmer(formula, data())


@pytest.mark.parametrize("intercept", [False, True])
def test_natural_spline_basis_is_rs(intercept):
    ref = references()["ns_basis"]
    basis = natural_spline_basis(
        np.asarray(ref["x"]), np.asarray(ref["knots"]), tuple(ref["boundary"]), intercept
    )
    expected = ref["basis_intercept" if intercept else "basis"]
    np.testing.assert_allclose(basis, expected, rtol=1e-12, atol=1e-14)


def test_r_scale_is_learned_from_dask_partitions():
    dd = pytest.importorskip("dask.dataframe")
    formula = "y ~ scale(x) + scale(z, center=False) + (1 | g)"
    frame = data()[["y", "x", "z", "g"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = sml.lmer(formula, frame)
        parts = sml.lmer(formula, dd.from_pandas(frame, npartitions=3))
    np.testing.assert_allclose(parts.params, whole.params, rtol=1e-10)
    assert parts.reml_criterion == pytest.approx(whole.reml_criterion, rel=1e-12)


def test_anova_evaluates_the_callers_functions():
    # before: type III contrasts rebuilt the terms with numpy only (NameError for twice)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = sml.lmer("y ~ twice(x) + z + f + (1 | g)", data()).anova()
        plain = sml.lmer("y ~ x + z + f + (1 | g)", data()).anova()
    np.testing.assert_allclose(own["F"], plain["F"], rtol=1e-6)
    assert list(own.index) == ["twice(x)", "z", "f"]


def twice(x):
    return 2 * x


def test_parenthesised_and_quoted_grouping_factors():
    frame = data().rename(columns={"g": "my g"})
    res = sml.lmer("y ~ x + (1 | Q('my g')/(h))", frame)
    plain = sml.lmer("y ~ x + (1 | g/h)", data())
    assert res.reml_criterion == pytest.approx(plain.reml_criterion, rel=1e-10)
    assert list(res.ngroups) == ["h:my g", "my g"]
