"""Regressions from differential fuzzing of the MixedLM and panel interfaces.

Seeded unbalanced data sets (single-row groups, nested factors, random
slopes) from ``fixtures/make_fuzz_mixedlm_fixtures.py``: MixedLM 0.15's names
and llf and linearmodels 7.1's within estimates in ``fuzz_mixedlm.json``,
lme4's best optimum of the same models in ``fuzz_mixedlm_lme4.json``
(``make_fuzz_mixedlm_lme4.R``).
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import DataError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REF = json.loads((FIXTURES / "fuzz_mixedlm.json").read_text())
LME4 = json.loads((FIXTURES / "fuzz_mixedlm_lme4.json").read_text())["cases"]
MIXED = REF["mixed_cases"]


@cache
def fitted(name: str, weighted: bool = False):
    case = MIXED[name]
    data = pd.DataFrame(case["data"])
    weights = 1 + (np.arange(len(data)) % 3) / 2 if weighted else None
    model = sml.mixedlm(
        case["formula"],
        data,
        groups="g",
        re_formula=case["re_formula"],
        vc_formula=case["vc_formula"],
        weights=weights,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits are expected here
        return model.fit(reml=case["reml"])


def assert_at_lme4_optimum(res, ref: dict) -> None:
    assert res.objective == pytest.approx(ref["objective"], rel=1e-7)
    beta = np.array([ref["fixef"][name] for name in res.model.exog_names])
    np.testing.assert_array_less(np.abs(np.asarray(res.params) - beta) / ref["se"], 1e-4)


@pytest.mark.parametrize("name", list(MIXED))
def test_mixedlm_arguments_reach_lme4_optimum(name):
    case, res = MIXED[name], fitted(name)
    assert res.model.lmer_formula == case["lme4_formula"]
    assert_at_lme4_optimum(res, LME4[name])
    # MixedLM's default fit stops short on all three (up to 4.4 llf units)
    assert res.llf > case["mixedlm"]["llf"] + 0.05


def test_weighted_fit_reaches_lme4_optimum():
    assert_at_lme4_optimum(fitted("three_random_coefficients", weighted=True), LME4["weighted"])


@pytest.mark.parametrize("name", list(MIXED))
def test_names_are_mixedlm_names(name):
    expected, res = MIXED[name]["mixedlm"], fitted(name)
    assert list(res.cov_re.index) == expected["exog_re_names"]
    # variance parameters row by row of cov_re's lower triangle, as MixedLM
    assert list(res.bse_re.index) == expected["variance_parameter_names"]
    effects = res.random_effects
    assert sorted(effects) == sorted(expected["random_effects_names"])
    for key, names in expected["random_effects_names"].items():
        # a slope per level of f is "fx[C(f)[0]:x]", as patsy names the column
        assert list(effects[key].index) == names
        assert list(res.random_effects_cov[key].index) == names


FIXED_PARTS = {
    "constant": "1 + x1 + x2 + w",
    "no_constant": "0 + x1 + x2 + w",
    # the dummies of a time-varying factor imply the constant
    "dummies": "0 + C(c) + x1 + x2 + w",
}


@pytest.mark.parametrize("constant", list(FIXED_PARTS))
def test_within_estimator_is_panelols_on_unbalanced_panel(constant):
    panel = pd.DataFrame(REF["panel"]["data"])
    ref = REF["panel"]["within"][constant]
    fixed = FIXED_PARTS[constant]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer(f"y ~ {fixed} + (1 | firm)", panel)
    within = res.within_estimator()
    names = list(ref["params"])
    assert list(within.params.index) == names
    assert within.dropped == ["w"]
    np.testing.assert_allclose(within.params, [ref["params"][n] for n in names], rtol=1e-10)
    np.testing.assert_allclose(within.cov, ref["cov"], rtol=1e-10)
    np.testing.assert_allclose(within.cov_clustered, ref["cov_clustered"], rtol=1e-10)
    assert within.s2 == pytest.approx(ref["s2"], rel=1e-10)
    assert within.df_resid == ref["df_resid"]
    expected = [ref["rsquared"][k] for k in ("within", "between", "overall")]
    np.testing.assert_allclose(within.rsquared, expected, rtol=1e-10)


def test_mixedlm_array_call_names_the_formula_way():
    data = pd.DataFrame(MIXED["three_random_coefficients"]["data"])
    X = np.column_stack([np.ones(len(data)), data["x"]])
    with pytest.raises(TypeError, match=r"sml\.mixedlm"):
        sml.Lmer(data["y"].to_numpy(), X, data["g"].to_numpy(), X)


def test_unfactorable_theta_is_a_data_error():
    """The ML fit of this model ran theta to 3e6 and crashed with numpy's LinAlgError."""
    data = pd.DataFrame(REF["unbounded"]["data"])
    model = sml.mixedlm(
        "y ~ x", data, groups="g", re_formula="~C(c)", vc_formula={"fz": "0 + C(f):z"}
    )
    assert model.lmer_formula == "y ~ x + (C(c) | g) + (0 + z | g:f)"
    # Whether the factor fails at such theta is a matter of rounding (at 1e12 it
    # stopped failing once the dense product went through Cholesky roots): over
    # several scales each fit is a result or a DataError, never numpy's LinAlgError.
    refused = 0
    for scale in (1e9, 1e12, 1e14, 1e16, 1e20):
        theta = scale * np.array([1.6, 3.1, -2.55, -3.42, 0.0, 0.13, 0.0])
        try:
            model.results_at(theta, reml=False)
        except DataError as err:
            assert "simplify the random-effects terms" in str(err)
            refused += 1
    assert refused
