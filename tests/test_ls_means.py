"""Least-squares means (``ls_means``, ``difflsmeans``) against lmerTest 3.1.3.

Reference values: tests/fixtures/ls_means.json, from make_ls_means_fixtures.R
(9 models: cake with an interaction in treatment and sum coding, Penicillin,
carrots with a covariate-by-factor interaction, sleepstudy's days as a factor
(ML), hsb, kb07's three-way design, and two simulated unbalanced designs with
weights, one with an empty cell). Models are evaluated at lme4's own theta
(``results_at``) so that the comparison measures the method, not optimizer
noise. Everything is compared to 1e-6 relative: estimates, bounds and t
values relative to the larger of the value and its standard error (t: and 1),
so that a difference near zero is judged on the scale of its uncertainty; SEs
and df relative to themselves; p-values relative to themselves or, for tiny
ones, on the log scale (see the comment in the test). Kenward-Roger is
compared on unweighted fits only: pbkrtest ignores prior weights.
"""

from __future__ import annotations

import json
import pickle
import re
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES
from scipy import stats
from statsmodels.tools.sm_exceptions import ValueWarning

import statsmodels_lmer as sml
from statsmodels_lmer.inference.ls_means import LS_MEANS_COLUMNS, ls_means_contrasts

RTOL = 1e-6
FIELDS = {
    "Estimate": "Estimate",
    "SE": "Std. Error",
    "df": "df",
    "t": "t value",
    "lower": "lower",
    "upper": "upper",
    "p": "Pr(>|t|)",
}


@cache
def fixture() -> dict:
    return json.loads((FIXTURES / "ls_means.json").read_text())


MODELS = sorted(fixture()["models"])
CALLS = [(name, i) for name in MODELS for i in range(len(fixture()["models"][name]["tables"]))]


def load_data(dataset: str) -> pd.DataFrame:
    if dataset.startswith("ls_means_"):
        return pd.read_csv(FIXTURES / "data" / f"{dataset}.csv")
    data = sml.datasets.load(dataset)
    if dataset == "sleepstudy":  # fDays = factor(Days) in the R script
        days = data["Days"].astype(int).astype(str)
        data = data.assign(fDays=pd.Categorical(days, categories=[str(d) for d in range(10)]))
    return data


def python_term(term: str, case: dict) -> str:
    """Our (patsy's) name of an R term label: sum-coded factors are ``C(f, Sum)``."""
    coded = set(case.get("sum_coded") or [])
    return ":".join(f"C({v}, Sum)" if v in coded else v for v in term.split(":"))


def python_formula(case: dict) -> str:
    formula = case["formula"]
    for name in case.get("sum_coded") or []:
        fixed, bars = formula.split("+ (", 1)
        fixed = re.sub(rf"\b{name}\b", f"C({name}, Sum)", fixed)
        formula = f"{fixed}+ ({bars}"
    return formula


@cache
def results(name: str):
    case = fixture()["models"][name]
    data = load_data(case["dataset"])
    weights = case.get("weights") or None
    if any("rank deficient" in m for m in case["messages"]):
        with pytest.warns(ValueWarning, match="rank deficient"):
            model = sml.Lmer.from_formula(python_formula(case), data, weights=weights)
    else:
        model = sml.Lmer.from_formula(python_formula(case), data, weights=weights)
    return model.results_at(case["theta"], reml=case["REML"])


def reference(case: dict, call: dict) -> pd.DataFrame:
    rows = call["rows"]
    index = pd.MultiIndex.from_tuples(
        [(python_term(r["term"], case), r["level"]) for r in rows], names=["term", "level"]
    )
    values = [[np.nan if r[k] is None else r[k] for k in FIELDS] for r in rows]
    return pd.DataFrame(values, index=index, columns=list(FIELDS.values()), dtype=float)


def computed(name: str, call: dict) -> pd.DataFrame:
    case = fixture()["models"][name]
    which = call["which"] or None
    if which is not None:
        which = [python_term(t, case) for t in which]
    ddf = call["ddf"].lower()
    res = results(name)
    if call["pairwise"]:
        return res.difflsmeans(which, ddf=ddf)
    return res.ls_means(which, ddf=ddf)


@pytest.mark.parametrize(("name", "index"), CALLS)
def test_matches_lmertest(name: str, index: int) -> None:
    case = fixture()["models"][name]
    call = case["tables"][index]
    expected = reference(case, call)
    table = computed(name, call)
    assert list(table.index) == list(expected.index)
    assert list(table.columns) == LS_MEANS_COLUMNS
    got, want = table.to_numpy(dtype=float), expected.to_numpy(dtype=float)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want[:, 0])
    got, want = got[ok], want[ok]
    se = want[:, [1]]
    on_se_scale = [0, 3, 4, 5]  # Estimate, t value, lower, upper
    scale = np.maximum(np.abs(want[:, on_se_scale]), np.hstack([se, np.ones_like(se), se, se]))
    np.testing.assert_array_less(np.abs(got[:, on_se_scale] - want[:, on_se_scale]), RTOL * scale)
    np.testing.assert_allclose(got[:, [1, 2]], want[:, [1, 2]], rtol=RTOL, atol=0)
    # p-values: relative 1e-6, or 1e-6 relative on the log scale. Satterthwaite's df
    # differ from lmerTest's by ~3e-8 relative (numerical derivatives), which moves a
    # p-value of 1e-26 by ~3e-6 relative; its logarithm moves by ~5e-8 relative.
    log_p, log_want = np.log(got[:, 6]), np.log(want[:, 6])
    np.testing.assert_allclose(log_p, log_want, rtol=RTOL, atol=RTOL)


def test_rank_deficient_rows_are_nan() -> None:
    table = results("empty_cell_ml").ls_means()
    nan_rows = table.index[table["Estimate"].isna()].tolist()
    assert nan_rows == [("C", "c3"), ("D", "d2"), ("C:D", "c3:d2")]
    diffs = results("empty_cell_ml").difflsmeans("C")
    assert diffs["Estimate"].notna().tolist() == [True, False, False]


def test_sum_coding_gives_the_same_means() -> None:
    sums = results("cake_sum").ls_means()
    treatment = results("cake_interaction").ls_means()
    np.testing.assert_allclose(sums.to_numpy(), treatment.to_numpy(), rtol=1e-6)


def test_contrast_rows_average_the_grid() -> None:
    (block,) = ls_means_contrasts(results("penicillin"), "sample")
    res = results("penicillin")
    assert block.labels == list("ABCDEF")
    np.testing.assert_allclose(
        block.matrix.to_numpy() @ res.params.to_numpy(), res.ls_means()["Estimate"].to_numpy()
    )
    # the intercept column is 1 in every row: each mean is an average of grid rows
    np.testing.assert_allclose(block.matrix["Intercept"], 1.0)


def test_no_intercept_gives_the_same_means() -> None:
    case = fixture()["models"]["penicillin"]
    data = load_data("Penicillin")
    model = sml.Lmer.from_formula("diameter ~ 0 + sample + (1 | plate)", data)
    res = model.results_at(case["theta"], reml=True)
    # not the p-values: ~1e-53, they move by 5e-8 relative with the df's last digits
    np.testing.assert_allclose(
        res.ls_means().to_numpy()[:, :6],
        results("penicillin").ls_means().to_numpy()[:, :6],
        rtol=1e-7,
    )
    table = pickle.loads(pickle.dumps(res.difflsmeans()))
    assert table.index[0] == ("sample", "A - B")


def test_which_accepts_either_order_and_level() -> None:
    res = results("cake_interaction")
    one = res.ls_means("temperature:recipe", level=0.9)
    assert one.index.get_level_values("term").unique().tolist() == ["recipe:temperature"]
    row = one.iloc[0]
    half = stats.t.ppf(0.95, row["df"]) * row["Std. Error"]
    assert row["upper"] - row["Estimate"] == pytest.approx(half, rel=1e-12)
    assert "Confidence level: 90%" in str(one)


def test_printed_like_lmertest() -> None:
    text = str(results("penicillin").ls_means())
    assert text.splitlines()[0] == "Least Squares Means table:"
    assert "Degrees of freedom method: Satterthwaite" in text
    assert "< 2e-16" in text


def test_bad_input() -> None:
    res = results("carrots_covariate")
    with pytest.raises(KeyError, match="not a factor term"):
        res.ls_means("sens2:Homesize")
    with pytest.raises(KeyError, match="Homesize, Age"):
        res.ls_means("Gender")
    with pytest.raises(ValueError, match="level"):
        res.ls_means(level=95)
    with pytest.raises(ValueError, match="ddf"):
        res.ls_means(ddf="wald")


def test_transformed_covariate_at_the_transform_of_its_mean() -> None:
    data = load_data("ls_means_unbalanced")
    res = sml.lmer("y ~ A + np.log(x) + (1 | g)", data)
    (block,) = ls_means_contrasts(res, "A")
    np.testing.assert_allclose(block.matrix["np.log(x)"], np.log(data["x"].mean()))


def test_a_column_both_factor_and_covariate_is_refused() -> None:
    data = load_data("sleepstudy")
    with pytest.warns(ValueWarning, match="rank deficient"):
        res = sml.lmer("Reaction ~ Days + C(Days) + (1 | Subject)", data)
    with pytest.raises(ValueError, match="'Days'"):
        res.ls_means()


def test_no_factor_terms_gives_an_empty_table() -> None:
    data = sml.datasets.load("sleepstudy")
    res = sml.lmer("Reaction ~ Days + (1 | Subject)", data)
    table = res.ls_means()
    assert table.shape == (0, len(LS_MEANS_COLUMNS))


def test_result_pickles_and_data_untouched() -> None:
    data = load_data("ls_means_unbalanced")
    before = data.copy()
    res = sml.lmer("y ~ A * B + x * A + (1 | g)", data, weights="w")
    first = res.ls_means("A")
    again = pickle.loads(pickle.dumps(res)).ls_means("A")
    np.testing.assert_allclose(again.to_numpy(), first.to_numpy(), rtol=1e-10)
    pd.testing.assert_frame_equal(data, before)
