"""lmerTest's step(): backward elimination against tests/fixtures/step.json.

make_step_fixtures.R runs lmerTest 3.1.3 on lmerTest's ham data and on a
simulated design whose random slope has no variance; each case's random and
fixed tables (row order, what was eliminated, the numbers) and the model found
are compared.
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
from statsmodels_lmer.formula import model_desc, parse_formula
from statsmodels_lmer.tools.step import StepResult

CASES = {case["name"]: case for case in json.loads((FIXTURES / "step.json").read_text())}
DATA = {
    "ham2": ("ham.csv", ["Consumer", "Product", "Information", "Gender"]),
    "slopes2": ("step_slopes.csv", ["f", "g", "h"]),
}
ARGUMENTS = {
    "keep": "keep",
    "ddf": "ddf",
    "alpha.random": "alpha_random",
    "alpha.fixed": "alpha_fixed",
    "reduce.random": "reduce_random",
    "reduce.fixed": "reduce_fixed",
}
RANDOM_COLUMNS = {"npar": "npar", "logLik": "llf", "AIC": "AIC", "LRT": "LRT", "Df": "df"}
FIXED_COLUMNS = {"Sum Sq": "SumSq", "Mean Sq": "MeanSq", "NumDF": "NumDF", "F value": "F"}


@cache
def data(name: str) -> pd.DataFrame:
    file, factors = DATA[name]
    frame = pd.read_csv(FIXTURES / "data" / file)
    return frame.astype({column: str for column in factors})


@cache
def stepped(name: str) -> StepResult:
    case = CASES[name]
    args = case["args"] or {}
    kwargs = {ARGUMENTS[key]: value for key, value in args.items()}
    if "keep" in kwargs:
        kwargs["keep"] = [kwargs["keep"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer(case["formula"], data(case["data"]), REML=case["REML"])
        return res.step(**kwargs)


def _rows(records: list[dict], eliminated: bool) -> list[dict]:
    return (
        [r for r in records if (r.get("Eliminated") or 0) > 0 or r["term"] == "<none>"]
        if (eliminated)
        else [r for r in records if r.get("Eliminated") == 0]
    )


def _terms(formula: str) -> tuple[set[str], set[str]]:
    parsed = parse_formula(formula)
    fixed = {term.name() for term in model_desc(parsed.fixed_rhs).rhs_termlist}
    return fixed, {"".join(str(bar).split()) for bar in parsed.bars}


@pytest.mark.parametrize("name", sorted(CASES))
def test_random_table_as_lmertest(name):
    table = stepped(name).random
    expected = CASES[name]["random"]
    eliminated = _rows(expected, eliminated=True)
    # eliminated rows in order, then the final model's ranova rows (any order)
    assert list(table.index[: len(eliminated)]) == [r["term"] for r in eliminated]
    assert sorted(table.index[len(eliminated) :]) == sorted(
        r["term"] for r in _rows(expected, eliminated=False)
    )
    for record in expected:
        row = table.loc[record["term"]]
        expected_eliminated = record.get("Eliminated")
        if expected_eliminated is None:  # the <none> row: NA in R
            assert np.isnan(row["Eliminated"])
        else:
            assert row["Eliminated"] == expected_eliminated
        for r_name, name_here in RANDOM_COLUMNS.items():
            if record.get(r_name) is None:
                assert np.isnan(row[name_here])
                continue
            # llf and AIC: the optimum (1e-8 relative); LRT: a difference of two
            # of them (absolute: 2 x 1e-8 x 1400 ~ 3e-5)
            tolerance = {"rel": 1e-8} if r_name != "LRT" else {"abs": 1e-4}
            assert row[name_here] == pytest.approx(record[r_name], **tolerance), r_name
        if record.get("Pr(>Chisq)") is not None:
            assert row["pvalue"] == pytest.approx(record["Pr(>Chisq)"], rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixed_table_as_lmertest(name):
    table = stepped(name).fixed
    expected = CASES[name]["fixed"]
    eliminated = [r for r in expected if r["Eliminated"] > 0]
    assert list(table.index[: len(eliminated)]) == [r["term"] for r in eliminated]
    assert sorted(table.index[len(eliminated) :]) == sorted(
        r["term"] for r in expected if r["Eliminated"] == 0
    )
    for record in expected:
        row = table.loc[record["term"]]
        assert row["Eliminated"] == record["Eliminated"]
        for r_name, name_here in FIXED_COLUMNS.items():
            # 1e-4: sums of squares move with theta, which is flat here. The
            # refitted models' criteria agree with lme4's to 1e-11 (REML) with
            # theta 1e-6 apart; in the ML case lme4 stops 2.5e-8 above our
            # optimum (2691.543861194 against 2691.543861169), theta 1e-5 apart,
            # and the sums of squares differ by 2e-5 relative
            assert row[name_here] == pytest.approx(record[r_name], rel=1e-4), r_name
        # df move with theta as the sums of squares do (above): 1e-4
        assert row["DenDF"] == pytest.approx(record["DenDF"], rel=1e-4)
        assert row["pvalue"] == pytest.approx(record["Pr(>F)"], rel=1e-4)


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_found_as_lmertest(name):
    result = stepped(name)
    assert _terms(result.model.model.lmer_formula) == _terms(CASES[name]["final"])
    assert result.get_model() is result.model
    text = str(result)
    assert text.startswith("Backward reduced random-effect table:")
    assert "Model found:\n" + result.model.model.lmer_formula in text


def test_last_random_term_is_kept_with_a_note():
    # lmerTest goes on with lm() here; we keep the term and say so
    rows = data("slopes2").assign(k=lambda d: (np.arange(len(d)) % 5).astype(str))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("y ~ x + (1 | k)", rows)  # k: groups of rows with no variance
        result = res.step(reduce_fixed=False)
    assert result.model.model.lmer_formula == res.model.lmer_formula
    assert "would leave no random effects" in result.note
    assert list(result.random.index) == ["<none>", "(1 | k)"]
    assert result.random.loc["(1 | k)", "pvalue"] > 0.1
    assert result.note in str(result)


def test_keep_and_arguments_are_checked():
    res = stepped("ham").model
    with pytest.warns(Warning, match="keep: Nonsense ignored"):
        res.step(keep=["Nonsense"], reduce_random=False)
    with pytest.raises(ValueError, match="ddf must be 'satterthwaite' or 'kenward-roger'"):
        res.step(ddf="residual")
