"""pbkrtest's PBmodcomp: tests/fixtures/pbmodcomp.json (make_pbmodcomp_fixtures.R).

The summaries (LRT, bootstrap, Gamma, Bartlett and F tests) are checked on
pbkrtest's own simulated statistics, so they must agree to rounding; the
observed statistic against pbkrtest's; our simulated statistics against fresh
fits of each simulated response and, in distribution, against pbkrtest's.
"""

from __future__ import annotations

import json
import warnings
from functools import cache

import numpy as np
import pytest
from conftest import FIXTURES
from scipy import stats

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import DataError
from statsmodels_lmer.tools.pbmodcomp import summarize_reference

CASES = {case["name"]: case for case in json.loads((FIXTURES / "pbmodcomp.json").read_text())}
DATA = {"sleepstudy_days": "sleepstudy", "sleepstudy_slope": "sleepstudy"}
DATA["penicillin_sample"] = "Penicillin"
COLUMNS = {"stat": "stat", "df": "df", "ddf": "ddf", "p.value": "pvalue"}


@cache
def fits(name: str) -> tuple:
    case = CASES[name]
    data = sml.datasets.load(DATA[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sml.lmer(case["large"], data), sml.lmer(case["small"], data), data


@pytest.mark.parametrize("name", sorted(CASES))
def test_summary_of_pbkrtests_simulations(name):
    case = CASES[name]
    result = summarize_reference(case["stat"], case["df"], np.array(case["ref"]))
    assert (result.n_extreme, result.npos) == (case["n_extreme"], case["npos"])
    for row in case["test"]:
        ours = result.test.loc[row["row"]]
        for r_name, name_here in COLUMNS.items():
            if row.get(r_name) is None:  # NA in R (the F test with negative ddf too)
                assert np.isnan(ours[name_here]), (row["row"], r_name)
            else:  # R's 1 - pchisq() is 0 where the upper tail is below 1e-16
                assert ours[name_here] == pytest.approx(row[r_name], rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("name", sorted(CASES))
def test_observed_statistic_as_pbkrtest(name):
    large, small, _ = fits(name)
    result = large.pbmodcomp(small, nsim=20, seed=1, progress=False)
    case = CASES[name]
    assert result.test.loc["LRT", "stat"] == pytest.approx(case["stat"], rel=1e-7)
    assert result.test.loc["LRT", "df"] == case["df"]
    assert result.nsim == 20 and result.failures == 0
    assert result.formula_small == small.model.lmer_formula


def test_simulated_statistics_are_fresh_fits_of_simulated_responses():
    large, small, data = fits("sleepstudy_days")
    result = sml.pbmodcomp(large, ". ~ . - Days", nsim=5, seed=11, progress=False)
    small_ml = small.refit_ml()
    responses = small_ml.simulate(5, seed=np.random.default_rng(11)).to_numpy()
    expected = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for y in responses.T:
            rows = data.assign(Reaction=y)
            llf = [
                sml.lmer(CASES["sleepstudy_days"][m], rows, REML=False).llf
                for m in ("large", "small")
            ]
            expected.append(2 * (llf[0] - llf[1]))
    # refits from the fitted theta against fresh fits: both at the optimum (1e-8)
    np.testing.assert_allclose(result.reference, expected, rtol=1e-6, atol=1e-6)


def test_reference_distribution_as_pbkrtests():
    # 300 of ours against pbkrtest's 500 (other random numbers): the means of
    # the positive statistics within 4 standard errors, and a two-sample KS test
    large, small, _ = fits("sleepstudy_days")
    ours = large.pbmodcomp(small, nsim=300, seed=5, progress=False)
    theirs = np.array(CASES["sleepstudy_days"]["ref"])
    a, b = ours.reference[ours.reference > 0], theirs[theirs > 0]
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se
    assert stats.ks_2samp(a, b).pvalue > 1e-3
    assert ours.pvalue == (1 + ours.n_extreme) / (1 + ours.npos)
    assert "Bootstrap test; samples: 300" in str(ours)


def test_refusals():
    large, small, data = fits("sleepstudy_days")
    with pytest.raises(ValueError, match="pass the nested \\(smaller\\) model second"):
        sml.pbmodcomp(small, large, nsim=5)
    shuffled = data.sample(frac=1.0, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other_order = sml.lmer(CASES["sleepstudy_days"]["small"], shuffled)
    with pytest.raises(DataError, match="in another order"):
        sml.pbmodcomp(large, other_order, nsim=5)
    with pytest.raises(DataError, match=r"not .*fitted to the same data"):
        sml.pbmodcomp(large, sml.lmer("Reaction ~ 1 + (1 | Subject)", data.iloc[:170]), nsim=5)
    with pytest.raises(ValueError, match="nsim must be at least 1"):
        large.pbmodcomp(small, nsim=0)
