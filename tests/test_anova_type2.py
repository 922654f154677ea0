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
