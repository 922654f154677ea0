"""The lean fixed part (numeric and categorical columns) agrees with patsy's ``dmatrices``."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import patsy
import pytest

import statsmodels_lmer as sml
from statsmodels_lmer.lean_design import lean_design


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 30
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "k": rng.integers(0, 9, n),
            "u": rng.integers(0, 9, n).astype(np.uint8),
            "f32": rng.normal(size=n).astype(np.float32),
            "x.1": rng.normal(size=n),
            "g": rng.integers(0, 3, n).astype(str),
            "flag": rng.integers(0, 2, n).astype(bool),
            "nullable": pd.array(rng.integers(0, 5, n), dtype="Int64"),
            "cat": pd.Categorical(rng.choice(["v", "u", "w"], n), categories=["v", "u", "w"]),
            "temp": pd.Categorical(rng.choice([185, 195, 205, 215], n)),
            "unused": pd.Categorical(rng.choice(["p", "q"], n), categories=["p", "q", "r"]),
            "h": rng.choice(["lo", "hi"], n).astype(object),
            "one": ["same"] * n,
            "mixed": [1, "a", 2.0] * (n // 3),
            "ordered": pd.Categorical(
                rng.choice(["lo", "mid", "hi"], n), categories=["lo", "mid", "hi"], ordered=True
            ),
            "backwards": pd.Categorical(rng.choice([3, 1, 2], n), categories=[3, 1, 2]),
            "pystr": pd.array(rng.choice(["b", "a", "c"], n), dtype="string[python]"),
            "odd name": rng.choice(["p", "q"], n).astype(object),
        },
        index=np.arange(100, 100 + n),
    )


ENV = patsy.EvalEnvironment.capture(0)
NUMERIC = [
    "y ~ x",
    "y ~ 1",
    "y ~ 0 + x",
    "y ~ x - 1",
    "y ~ k + x + u",
    "y ~ x + k + x",
    "k ~ f32 + x",
    'y ~ Q("x.1") + x',
    "y ~ 0 + k + f32",
    # categorical columns: strings, pandas categoricals (their category order, unused ones kept)
    "y ~ g",
    "y ~ cat",
    "y ~ temp",
    "y ~ unused",
    "y ~ x + g",
    "y ~ g + x + h",
    "y ~ g * cat",
    "y ~ cat:g + g + cat",
    "y ~ g * cat * h",
    "y ~ x + temp * h + k",
    "y ~ g + cat + g:cat + x",
    # ordered and oddly ordered categories, pandas' python strings, a quoted name
    "y ~ ordered + backwards",
    "y ~ pystr * ordered",
    'y ~ Q("odd name") + x',
]


@pytest.mark.parametrize("formula", NUMERIC)
def test_same_matrices_and_design_as_patsy(frame, formula):
    lean = lean_design(formula, frame, ENV)
    assert lean is not None
    endog, exog, info = lean
    y, X = patsy.dmatrices(formula, frame, eval_env=ENV, return_type="dataframe")
    assert endog.name == y.columns[0]
    np.testing.assert_array_equal(endog.to_numpy(), y.iloc[:, 0].to_numpy())
    assert list(exog.columns) == list(X.columns) == info.column_names
    np.testing.assert_array_equal(exog.to_numpy(), X.to_numpy())
    assert exog.index.equals(frame.index) and endog.index.equals(frame.index)
    theirs = X.design_info
    assert info.term_names == theirs.term_names
    assert sorted(f.name() for f in info.factor_infos) == sorted(
        f.name() for f in theirs.factor_infos
    )
    for factor, mine in info.factor_infos.items():
        other = theirs.factor_infos[factor]
        assert (mine.type, mine.num_columns, mine.categories) == (
            other.type,
            other.num_columns,
            other.categories,
        )
    assert [info.slice(t) for t in info.term_names] == [theirs.slice(t) for t in info.term_names]
    # new data goes through patsy the same way
    newdata = frame.iloc[::3].assign(x=lambda d: d["x"] * 2 + 1)
    (ours,) = patsy.build_design_matrices([info], newdata, return_type="dataframe")
    (expected,) = patsy.build_design_matrices([theirs], newdata, return_type="dataframe")
    pd.testing.assert_frame_equal(ours, expected)


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ flag",
        "y ~ nullable",
        "y ~ x:k",
        "y ~ x:g",  # numeric by categorical
        "y ~ g:cat",  # not hierarchical
        "y ~ g + g:cat",
        "y ~ 0 + g",  # no intercept: full-rank coding
        "y ~ one",  # one level
        "y ~ mixed",  # not all strings
        "y ~ np.log(k + 1)",
        "y ~ center(x)",
        "y ~ C(k)",
        "g ~ x",
        "y + x ~ k",
        "y ~ missing_column",
    ],
)
def test_anything_else_goes_through_patsy(frame, formula):
    assert lean_design(formula, frame, ENV) is None


def test_models_built_either_way_predict_alike(frame):
    data = frame.assign(grp=np.repeat(list("abcdef"), 5))
    data["y"] += np.repeat([-2.0, -1.0, 0.0, 0.5, 1.5, 2.5], 5)
    lean = sml.Lmer.from_formula("y ~ x + k + (1|grp)", data).fit()
    # I(k) keeps the same column values but needs patsy's evaluation
    via_patsy = sml.Lmer.from_formula("y ~ x + I(k) + (1|grp)", data).fit()
    np.testing.assert_allclose(lean.params.to_numpy(), via_patsy.params.to_numpy(), rtol=1e-10)
    newdata = data.iloc[:7].assign(x=np.linspace(-2, 2, 7))
    np.testing.assert_allclose(lean.predict(newdata), via_patsy.predict(newdata), rtol=1e-10)
    assert lean.model.exog_names == ["Intercept", "x", "k"]
    # a categorical term: C(g) needs patsy, g alone does not
    lean_g = sml.Lmer.from_formula("y ~ x + g + (1|grp)", data).fit()
    patsy_g = sml.Lmer.from_formula("y ~ x + C(g) + (1|grp)", data).fit()
    np.testing.assert_allclose(lean_g.params.to_numpy(), patsy_g.params.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(lean_g.predict(newdata), patsy_g.predict(newdata), rtol=1e-10)
    assert lean_g.model.exog_names == ["Intercept", "g[T.1]", "g[T.2]", "x"]
    again = pickle.loads(pickle.dumps(lean))
    np.testing.assert_allclose(again.predict(newdata), lean.predict(newdata), rtol=1e-12)
    assert [row for row in lean.anova().index] == ["x", "k"]
