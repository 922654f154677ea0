"""Regression tests from differential fuzzing of odd-but-legal inputs and environments.

The fuzz driver fitted seeded random models (random intercepts and slopes,
crossed, nested; weights, offsets; REML and ML) to data that arrive in other
dtypes, layouts and row orders and in other environments (BLAS threads,
thread pools, a busy CPU, pickles read by a new process, pandas 2 with and
without copy-on-write), and compared every number with the float64/NumPy fit.
Each test here is a difference it found; the baseline is the same model fitted
on plain float64/str columns, so the numbers must agree to round-off (rtol
1e-10), and the caller's data must be unchanged afterwards.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import warnings
from decimal import Decimal
from fractions import Fraction
from functools import cache

import numpy as np
import pandas as pd
import pytest

import statsmodels_lmer as sml

pa = pytest.importorskip("pyarrow")

FORMULA = "y ~ x + f + (x | g)"


@cache
def data() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n, n_groups = 48, 6
    g = np.arange(n) % n_groups
    x = rng.integers(0, 10, n).astype(float)
    f = rng.choice(["a", "b", "c"], n)
    slope = rng.normal(0, 0.5, n_groups)
    y = 20 + (1 + slope[g]) * x + 2.0 * (f == "b") + rng.normal(0, 4, n_groups)[g]
    return pd.DataFrame({"y": y + rng.normal(0, 1, n), "x": x, "f": f, "g": g})


def quiet_fit(frame: pd.DataFrame, formula: str = FORMULA):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sml.lmer(formula, frame)


@cache
def baseline():
    return quiet_fit(data())


def assert_same_fit(res, frame: pd.DataFrame) -> None:
    """``res`` (fitted to ``frame``) is the baseline fit, and predicts ``frame`` as it."""
    base = baseline()
    np.testing.assert_allclose(res.llf, base.llf, rtol=1e-10)
    np.testing.assert_allclose(res.params, base.params, rtol=1e-10)
    np.testing.assert_allclose(res.bse, base.bse, rtol=1e-8)
    np.testing.assert_allclose(res.theta, base.theta, rtol=1e-8)
    predicted = res.predict(frame)
    assert predicted.index.equals(frame.index)
    np.testing.assert_allclose(predicted, base.predict(data()), rtol=1e-10)


def fit_unchanged(frame: pd.DataFrame):
    before = frame.copy(deep=True)
    res = quiet_fit(frame)
    assert_same_fit(res, frame)
    pd.testing.assert_frame_equal(frame, before)
    return res


def arrow_text(values: pd.Series, arrow_type) -> pd.Series:
    return values.astype(str).astype(pd.ArrowDtype(arrow_type))


def dictionary(values: pd.Series) -> pd.Series:
    encoded = pa.array(values.astype(str).tolist()).dictionary_encode()
    return pd.Series(pd.arrays.ArrowExtensionArray(encoded), index=values.index)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d.assign(f=arrow_text(d.f, pa.string())), id="f-arrow-string"),
        pytest.param(lambda d: d.assign(f=arrow_text(d.f, pa.large_string())), id="f-large"),
        pytest.param(lambda d: d.assign(f=dictionary(d.f)), id="f-dictionary"),
        pytest.param(lambda d: d.assign(g=dictionary(d.g)), id="g-dictionary"),
        pytest.param(lambda d: d.convert_dtypes(dtype_backend="pyarrow"), id="all-pyarrow"),
        pytest.param(
            lambda d: d.assign(x=d.x.astype(pd.ArrowDtype(pa.decimal128(6, 1)))),
            id="x-arrow-decimal",
        ),
    ],
)
def test_arrow_columns_fit_and_predict_as_numpy_columns(change) -> None:
    """Arrow text failed in patsy: ``TypeError: Cannot interpret 'string[pyarrow]' as a
    data type`` (fit, and predict for large strings); Arrow decimals became a
    factor with a level per value."""
    fit_unchanged(change(data()))


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(Decimal, id="Decimal"),  # was a 10-level factor: 12 coefficients
        pytest.param(Fraction, id="Fraction"),  # TypeError: Invalid object type at position 0
        pytest.param(np.float32, id="numpy-scalars"),  # fitted, but predict() refused it
        pytest.param(float, id="python-floats"),  # fitted, but predict() refused it
    ],
)
def test_numbers_stored_as_objects_fit_and_predict_as_floats(number) -> None:
    frame = data().assign(x=pd.Series([number(int(v)) for v in data().x], dtype=object))
    res = fit_unchanged(frame)
    mean = res.get_prediction(frame).summary_frame()["mean"]
    np.testing.assert_allclose(mean, baseline().get_prediction(data()).summary_frame()["mean"])


def test_big_endian_columns_fit_and_predict() -> None:
    """pandas cannot hash big-endian integers: ``ValueError: Big-endian buffer not
    supported on little-endian compiler`` from the grouping factor."""
    frame = data().assign(
        g=data().g.to_numpy().astype(">i8"),
        x=data().x.to_numpy().astype(">f4"),
        y=data().y.to_numpy().astype(">f8"),
    )
    fit_unchanged(frame)
    mixed = sml.mixedlm("y ~ x + f", frame, groups="g", re_formula="~x").fit()
    np.testing.assert_allclose(mixed.llf, baseline().llf, rtol=1e-10)
    for tool in (sml.center, sml.mundlak):
        pd.testing.assert_frame_equal(
            tool(frame, "x", "g").drop(columns=["g", "x", "y"]),
            tool(data(), "x", "g").drop(columns=["g", "x", "y"]),
        )


@pytest.mark.parametrize(
    "categories", [["c", "b", "a"], ["a", "b", "c", "d"]], ids=["reordered", "extra"]
)
def test_categorical_newdata_for_a_text_column_predicts_by_value(categories) -> None:
    """patsy refused it: ``mismatching levels: expected ('a', 'b', 'c'), got ('c', 'b', 'a')``."""
    newdata = data().assign(f=pd.Categorical(data().f, categories=categories))
    before = newdata.copy(deep=True)
    np.testing.assert_allclose(baseline().predict(newdata), baseline().predict(data()))
    pd.testing.assert_frame_equal(newdata, before)


def test_shuffled_rows_give_the_same_fit_and_aligned_predictions() -> None:
    order = np.random.default_rng(0).permutation(len(data()))
    shuffled = data().iloc[order]
    res = quiet_fit(shuffled)
    np.testing.assert_allclose(res.llf, baseline().llf, rtol=1e-10)
    # another summation order moves the optimizer's stopping point by ~1e-7 of theta
    np.testing.assert_allclose(res.params, baseline().params, rtol=1e-6)
    predicted = res.predict(shuffled)
    assert predicted.index.equals(shuffled.index)
    np.testing.assert_allclose(predicted.sort_index(), baseline().predict(data()), rtol=1e-6)


UNPICKLE_AND_USE = """
import pickle, sys, warnings
import numpy as np
warnings.simplefilter("ignore")
res, frame = pickle.loads(sys.stdin.buffer.read())
str(res.summary())
test = res.t_test("x = 1")
out = [res.predict(frame).to_numpy(), res.conf_int().to_numpy().ravel(),
       np.ravel(test.tvalue), np.ravel(test.df_denom), res.coef_table("kenward-roger")["df"]]
sys.stdout.buffer.write(pickle.dumps([np.asarray(v, dtype=float) for v in out]))
"""


def test_results_unpickled_in_a_new_process_and_deep_copied_give_the_same_numbers() -> None:
    res = baseline()

    def used(results) -> list[np.ndarray]:
        test = results.t_test("x = 1")
        return [
            results.predict(data()).to_numpy(),
            np.asarray(results.conf_int()).ravel(),
            np.ravel(test.tvalue),
            np.ravel(test.df_denom),
            results.coef_table("kenward-roger")["df"].to_numpy(),
        ]

    expected = used(res)
    done = subprocess.run(
        [sys.executable, "-c", UNPICKLE_AND_USE],
        input=pickle.dumps((res, data())),
        capture_output=True,
        check=True,
    )
    for ours, theirs in zip(expected, pickle.loads(done.stdout)):
        np.testing.assert_allclose(theirs, ours, rtol=1e-10)
    for ours, theirs in zip(expected, used(copy.deepcopy(res))):
        np.testing.assert_allclose(theirs, ours, rtol=1e-12)


def test_nested_levels_whose_labels_collide_are_refused_by_name() -> None:
    """Levels ``("1", "a:2")`` and ``("1:a", "2")`` are both labelled ``"1:a:2"``: the
    fit kept two groups, but ``ranef`` had the label twice and ``predict`` gave both
    the first group's effect (3.55 from the fitted values)."""
    outer = np.where(data().g % 2 == 0, "2", "a:2")
    inner = np.where(outer == "2", "1:a", "1")
    inner = np.where(np.arange(len(data())) % 3 == 0, "0", inner)
    frame = data().assign(o=outer, i=inner)
    with pytest.raises(sml.DataError, match=r"'i:o' has two combinations .* labelled '1:a:2'"):
        quiet_fit(frame, "y ~ x + (1 | o/i)")
