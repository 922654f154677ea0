"""lmerTest's type II ANOVA tables: tests/fixtures/anova_type2.json (make_anova_type2_fixtures.R).

Evaluated at lme4's theta (``results_at``) so that the comparison measures the
contrasts and df, not the optimizer: terms contained in no other term are
tested by their own coefficients, the others adjusted for every term that does
not contain them.
"""

from __future__ import annotations

import json
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

import statsmodels_lmer as sml

CASES = {case["name"]: case for case in json.loads((FIXTURES / "anova_type2.json").read_text())}
COLUMNS = {"Sum Sq": "SumSq", "Mean Sq": "MeanSq", "NumDF": "NumDF", "F value": "F"}
FACTORS = {"ham": ["Consumer", "Product", "Information", "Gender"], "step_slopes": ["f", "g", "h"]}


def data(name: str) -> pd.DataFrame:
    if name in FACTORS:
        file = "ham.csv" if name == "ham" else "step_slopes.csv"
        frame = pd.read_csv(FIXTURES / "data" / file)
        return frame.astype({column: str for column in FACTORS[name]})
    return sml.datasets.load(name)


@cache
def at_lme4_theta(name: str):
    case = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sml.Lmer.from_formula(case["formula"], data(case["data"]))
        return model.results_at(case["theta"], reml=case["REML"])


@pytest.mark.parametrize(
    ("name", "ddf"),
    [(name, ddf) for name in sorted(CASES) for ddf in ("satterthwaite", "kenward_roger")],
)
def test_type2_table_as_lmertest(name, ddf):
    case = CASES[name]
    if ddf not in case:
        pytest.skip("Kenward-Roger is for REML fits")
    table = at_lme4_theta(name).anova(type=2, ddf=ddf.replace("_", "-"))
    assert list(table.index) == [row["term"].replace("^", " ** ") for row in case[ddf]]
    for row, (_, ours) in zip(case[ddf], table.iterrows()):
        for r_name, name_here in COLUMNS.items():
            assert ours[name_here] == pytest.approx(row[r_name], rel=1e-8), (row["term"], r_name)
        # lmerTest's Satterthwaite df come from a numerical Hessian
        assert ours["DenDF"] == pytest.approx(
            row["DenDF"], rel=1e-5 if ddf == "satterthwaite" else 1e-8
        )
        assert ours["pvalue"] == pytest.approx(row["Pr(>F)"], rel=1e-5)
    assert table.heading[0].startswith("Type II Analysis of Variance Table with")


def test_type2_names_and_refusals():
    res = at_lme4_theta("cake")
    np.testing.assert_array_equal(res.anova(type="II")["F"], res.anova(type=2)["F"])
    with pytest.raises(ValueError, match="type must be 1, 2 or 3"):
        res.anova(type=4)


def test_sequential_tables_of_a_covariate_far_from_zero_are_those_of_the_centred_one():
    """Types I and II do not depend on where a covariate's zero is when it enters no
    interaction, and type I never does: ``y ~ x * f`` with ``x = 1e6 + N(0, 1)`` is
    ``x - 1e6`` in other units. The contrasts came from the Cholesky factor of X'X, whose
    squares lost the digits of x: x's type I sum of squares was 104.970604 against
    104.968583 (2e-5). They now come from the R factor of X."""
    rng = np.random.default_rng(3)
    n, groups = 400, rng.integers(0, 20, 400)
    x = 1e6 + rng.normal(size=n)
    f = rng.choice(list("abc"), n)
    y = 1e5 + 0.5 * (x - 1e6) + rng.normal(size=20)[groups] + rng.normal(size=n)
    frame = pd.DataFrame({"y": y, "x": x, "f": f, "g": groups.astype(str)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        far = sml.lmer("y ~ x * f + (1 | g)", frame)
        near = far.model.results_at(far.theta, reml=True)
        centred = sml.Lmer.from_formula("y ~ x * f + (1 | g)", frame.assign(x=x - 1e6))
        centred = centred.results_at(far.theta, reml=True)
    ours, exact = near.anova(type=1), centred.anova(type=1)
    np.testing.assert_allclose(ours["SumSq"], exact["SumSq"], rtol=1e-8)
    np.testing.assert_allclose(ours["DenDF"], exact["DenDF"], rtol=1e-6)
    assert near.anova(type=2).loc["x", "SumSq"] == pytest.approx(
        centred.anova(type=2).loc["x", "SumSq"], rel=1e-8
    )


def test_ddf_lme4_gives_lme4s_sequential_table_as_lmertest():
    """lmerTest's ``anova(m, ddf = "lme4")`` is lme4's own table (sums of squares of
    ``R_X beta``, no df); ``ddf="lme4"`` meant residual df here and gave a type III table
    (cake's recipe F 0.0957 against 0.2488). Reference: lme4 1.1-31 at its theta."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sml.Lmer.from_formula(
            "angle ~ recipe * temp + (1 | recipe:replicate)", sml.datasets.load("cake")
        )
        res = model.results_at([1.41413893248], reml=True)
    table = res.anova(ddf="lme4")
    assert table.heading == ["Analysis of Variance Table"]
    assert list(table.columns) == ["npar", "SumSq", "MeanSq", "F"]
    assert table["npar"].tolist() == [2, 1, 2]
    np.testing.assert_allclose(
        table["SumSq"], [10.39246543972, 1966.70507936496, 1.74158730158], rtol=1e-9
    )
    np.testing.assert_allclose(
        table["F"], [0.2487887361132, 94.1632327460222, 0.0416924459459], rtol=1e-9
    )
    assert res.anova(type=1, ddf="LME4").equals(table)  # lme4 has this one table


def test_lme4_table_of_a_covariate_far_from_zero_and_of_an_aliased_term():
    """lme4's sums of squares do not change when x is shifted; R_X came from inverting
    the covariance, whose digits a column like 1e6 + N(0, 1) loses (x's sum of squares
    97484 instead of 139.94, or a LinAlgError). An aliased term has no row, as in lme4
    (it raised ZeroDivisionError)."""
    rng = np.random.default_rng(11)
    n, groups = 300, rng.integers(0, 15, 300)
    x = rng.normal(size=n)
    f = rng.choice(list("abc"), n)
    y = 0.5 * x + (f == "b") + rng.normal(size=15)[groups] + rng.normal(size=n)
    frame = pd.DataFrame({"y": y, "x": x, "f": f, "g": groups.astype(str)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        near = sml.lmer("y ~ x * f + (1 | g)", frame)
        far = sml.Lmer.from_formula("y ~ x * f + (1 | g)", frame.assign(x=x + 1e6))
        far = far.results_at(near.theta, reml=True)
        aliased = sml.lmer("y ~ x + x2 + f + (1 | g)", frame.assign(x2=2 * x - 1))
        plain = sml.lmer("y ~ x + f + (1 | g)", frame)
    np.testing.assert_allclose(
        far.anova(ddf="lme4")["SumSq"], near.anova(ddf="lme4")["SumSq"], rtol=1e-7
    )
    table = aliased.anova(ddf="lme4")
    assert list(table.index) == ["x", "f"]
    np.testing.assert_allclose(table["F"], plain.anova(ddf="lme4")["F"], rtol=1e-6)
