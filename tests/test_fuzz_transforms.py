"""Differential fuzzing of stateful transforms against lme4.

36 seeded data sets (tests/fixtures/transform_fuzz/) with missing values in the
response, the transform's input and other columns, some fitted with ``subset=``:
``scale``, ``center``, ``ns``, ``bs`` and ``poly`` in the fixed part and in random
terms. lme4 learns the transforms on all rows of the data; so do we. At lme4's
theta the REML criterion agrees to 1e-9 (relative) and the predictions for new
rows, some beyond the data's range (splines and polynomials extrapolate), to 1e-7.
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

CASES_DIR = FIXTURES / "transform_fuzz"
THETA_DIGITS_RTOL = 1e-7  # lme4's theta written with 15 significant digits


@cache
def cases() -> list[dict]:
    return json.loads((CASES_DIR / "cases.json").read_text())


@cache
def lme4() -> dict[int, dict]:
    return {case["seed"]: case for case in json.loads((CASES_DIR / "lme4.json").read_text())}


def case_data(seed: int) -> pd.DataFrame:
    data = pd.read_csv(CASES_DIR / f"d{seed}.csv")
    return data.assign(g=data["g"].astype(str))


def new_rows(data: pd.DataFrame) -> pd.DataFrame:
    scale = np.array([1, 1, 1.5, 2, 1, 1, -1, 1])  # rows 3, 4 and 7 beyond the data
    return data.iloc[:8].assign(x=data["x"].iloc[:8] * scale)


@pytest.mark.parametrize("case", cases(), ids=lambda c: f"{c['seed']}-{c['py']}")
def test_transforms_as_lme4(case):
    expected = lme4()[case["seed"]]
    data = case_data(case["seed"])
    kwargs = {}
    if case["subset"]:
        kwargs["subset"] = ((data["z"] > -1) | data["z"].isna()).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits warn, as lme4's
        model = sml.Lmer.from_formula(case["py"], data, **kwargs)
        at_lme4 = model.results_at(np.atleast_1d(expected["theta"]))
    assert at_lme4.nobs == expected["nobs"]
    assert at_lme4.objective == pytest.approx(expected["obj"], rel=1e-9)
    if not expected["pred"]:  # lme4's predict fails on a missing factor level
        return
    got = np.asarray(at_lme4.predict(new_rows(data), allow_new_levels=True), dtype=float)
    want = np.array([np.nan if v is None else v for v in expected["pred"]], dtype=float)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=THETA_DIGITS_RTOL, atol=1e-9)
