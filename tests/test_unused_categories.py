"""Unused categories of pandas Categoricals are dropped before coding, as R's model frame does.

lme4 codes only the factor levels present in the fitted rows (``drop.unused.levels``);
patsy codes every category. Each test compares a fit on a Categorical with unused
categories against the same rows with those categories removed by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import statsmodels_lmer as sml


def categorical_frame(seed: int = 3, n: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(
        {
            "g": rng.integers(0, 12, n).astype(str),
            "x": rng.normal(size=n),
            # "A" (the first category) and "E" are never used
            "f": pd.Categorical(rng.choice(list("BCD"), n), categories=list("ABCDE")),
        }
    )
    out["y"] = out["x"] + (out["f"] == "C") + rng.normal(size=n) + out["g"].astype(int) * 0.2
    return out


def by_hand(data: pd.DataFrame) -> pd.DataFrame:
    return data.assign(f=data["f"].cat.remove_unused_categories())


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ f + x + (1 | g)",  # the lean design path
        "y ~ C(f, Sum) + x + (1 | g)",  # patsy
        "y ~ f * x + (1 | g)",
        "y ~ x + (1 | g) + (1 | f)",  # a grouping factor
    ],
)
def test_fit_codes_only_the_used_categories(formula):
    data = categorical_frame()
    before = data.copy()
    res = sml.lmer(formula, data)
    expected = sml.lmer(formula, by_hand(data))
    assert list(res.params.index) == list(expected.params.index)
    np.testing.assert_allclose(res.params, expected.params, rtol=1e-10)
    np.testing.assert_allclose(res.reml_criterion, expected.reml_criterion, rtol=1e-12)
    assert not any("[T.A]" in name or "[S.A]" in name for name in res.params.index)
    pd.testing.assert_frame_equal(data, before)  # the caller's categories are kept


def test_treatment_reference_is_the_first_used_category():
    res = sml.lmer("y ~ f + x + (1 | g)", categorical_frame())
    assert [n for n in res.params.index if n.startswith("f")] == ["f[T.C]", "f[T.D]"]


def test_rows_dropped_for_missing_values_take_their_categories_along():
    data = categorical_frame()
    data.loc[data["f"] == "D", "x"] = np.nan  # "D" is left only in rows that are dropped
    res = sml.lmer("y ~ f + x + (1 | g)", data)
    assert [n for n in res.params.index if n.startswith("f")] == ["f[T.C]"]
    expected = sml.lmer("y ~ f + x + (1 | g)", by_hand(data.dropna()))
    np.testing.assert_allclose(res.params, expected.params, rtol=1e-10)


def test_predict_accepts_new_rows_with_the_original_categories():
    data = categorical_frame()
    res = sml.lmer("y ~ f + x + (1 | g)", data)
    rows = data.iloc[:20]
    expected = res.predict(by_hand(data).iloc[:20])
    np.testing.assert_allclose(res.predict(rows), expected, rtol=1e-12)
    fixed_only = res.model.exog[:20] @ res.params.to_numpy()
    np.testing.assert_allclose(res.predict(rows, re_formula="0"), fixed_only, rtol=1e-12)
    frame = res.get_prediction(rows).summary_frame()
    np.testing.assert_allclose(frame["mean"], res.predict(rows, re_formula="0"), rtol=1e-12)
    unseen = rows.assign(f=pd.Categorical(["A"] * 20, categories=list("ABCDE")))
    with pytest.raises(sml.DataError, match="mismatching levels"):
        res.predict(unseen)
