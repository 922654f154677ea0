"""Model building from formulas and data as users pass them (fuzzing of the inputs).

Each test is a minimal case of a wrong answer or an unhelpful error that the
input fuzzing found; the expected values are those of the same model on
cleaned data (an independent fit), so no R is needed.
"""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pandas as pd
import pytest

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import DataError, FormulaError, ResponseTypeError

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
BOOLEAN_DTYPES = ["boolean"] + (["bool[pyarrow]"] if HAS_PYARROW else [])


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 60
    g = rng.integers(0, 6, n)
    x = rng.normal(size=n)
    b = rng.random(n) < 0.5
    y = 5 + 0.5 * x + 0.4 * b + rng.normal(size=6)[g] + rng.normal(size=n)
    return pd.DataFrame(
        {"y": y, "x": x, "z": rng.uniform(1, 3, n), "b": b, "g": [f"g{i}" for i in g]}
    )


def reml(formula: str, frame: pd.DataFrame, **kwargs) -> float:
    return sml.lmer(formula, frame, **kwargs).reml_criterion


@pytest.mark.parametrize("dtype", BOOLEAN_DTYPES)
@pytest.mark.parametrize(
    "formula", ["y ~ x + b + (1 | g)", "y ~ x + C(b) + (1 | g)", "y ~ x + (0 + b | g)"]
)
def test_nullable_boolean_columns_fit_as_numpy_booleans(data, dtype, formula):
    # patsy failed inside numpy: "Cannot interpret 'BooleanDtype' as a data type"
    nullable = data.assign(b=data.b.astype(dtype))
    before = nullable.copy(deep=True)
    res = sml.lmer(formula, nullable)
    expected = sml.lmer(formula, data)
    assert res.reml_criterion == pytest.approx(expected.reml_criterion, rel=1e-10)
    assert list(res.params.index) == list(expected.params.index)
    pd.testing.assert_frame_equal(nullable, before)
    np.testing.assert_allclose(res.predict(nullable.iloc[:5]), expected.predict(data.iloc[:5]))
    pickle.loads(pickle.dumps(res))


@pytest.mark.parametrize("dtype", BOOLEAN_DTYPES)
def test_nullable_boolean_with_missing_values_drops_the_rows(data, dtype):
    values = data.b.astype(dtype)
    values.iloc[3] = pd.NA
    res = sml.lmer("y ~ x + b + (1 | g)", data.assign(b=values))
    assert res.nobs == len(data) - 1
    assert res.reml_criterion == pytest.approx(
        reml("y ~ x + b + (1 | g)", data.drop(index=3)), rel=1e-10
    )


@pytest.mark.parametrize("dtype", BOOLEAN_DTYPES)
def test_nullable_boolean_response_is_a_response_type_error(data, dtype):
    with pytest.raises(ResponseTypeError, match="response 'b' is not numeric"):
        sml.lmer("b ~ x + (1 | g)", data.assign(b=data.b.astype(dtype)))


@pytest.mark.parametrize("column", ["x", "g", "y"])
def test_a_duplicated_column_the_model_uses_is_refused_by_name(data, column):
    # was AttributeError: 'DataFrame' object has no attribute 'dtype'
    doubled = pd.concat([data, data[[column]]], axis=1)
    with pytest.raises(DataError, match=f"column '{column}' appears 2 times"):
        sml.lmer("y ~ x + (1 | g)", doubled)


def test_a_duplicated_column_the_model_does_not_use_is_fine(data):
    doubled = pd.concat([data, data[["z"]]], axis=1)
    assert reml("y ~ x + (1 | g)", doubled) == reml("y ~ x + (1 | g)", data)


@pytest.mark.parametrize(
    ("formula", "column", "error"),
    [
        ("y ~ x + (1 | g)", "x", DataError),
        ("y ~ z + (x | g)", "x", DataError),
        ("y ~ x + (1 | g)", "y", ResponseTypeError),
    ],
)
def test_complex_numbers_are_refused_by_name(data, formula, column, error):
    # was numpy's UFuncTypeError from inside patsy
    frame = data.assign(**{column: data[column].astype(complex)})
    with pytest.raises(error, match=f"'{column}' holds complex numbers"):
        sml.lmer(formula, frame)


@pytest.mark.parametrize(
    "values", [pd.to_timedelta(np.arange(60), unit="s"), pd.date_range("2020", periods=60)]
)
def test_a_time_response_is_a_response_type_error(data, values):
    with pytest.raises(ResponseTypeError, match="response 'y' holds dates or times"):
        sml.lmer("y ~ x + (1 | g)", data.assign(y=values))


def test_nan_from_a_transform_in_a_random_term_is_a_data_error(data):
    # the fixed part says DataError; the random part said FormulaError with patsy's text
    with pytest.raises(DataError, match=r"random-effects term \(np.log\(z - 2\) \| g\)"):
        sml.lmer("y ~ x + (np.log(z - 2) | g)", data)


def test_offset_inside_a_term_says_it_must_be_a_term_of_its_own(data):
    # was UnknownColumnError: name 'offset' is not defined (offset(z) as a term is lme4's offset)
    with pytest.raises(FormulaError, match="must be a term of its own"):
        sml.lmer("y ~ x + x:offset(z) + (1 | g)", data)


@pytest.mark.parametrize("what", ["weights", "offset"])
@pytest.mark.parametrize("kind", ["array", "series"])
def test_full_length_weights_and_offset_follow_subset(data, what, kind):
    # as in R (and as mixedlm's groups=): values for every row of data, subset applied
    values = pd.Series(np.linspace(0.5, 2.0, len(data)), index=data.index)
    given = values.to_numpy() if kind == "array" else values
    mask = data.x > 0
    res = sml.lmer("y ~ x + (1 | g)", data, subset=mask, **{what: given})
    expected = sml.lmer("y ~ x + (1 | g)", data[mask], **{what: values[mask].to_numpy()})
    assert res.reml_criterion == pytest.approx(expected.reml_criterion, rel=1e-10)
    # values for the selected rows only keep working
    again = sml.lmer("y ~ x + (1 | g)", data, subset=mask, **{what: values[mask].to_numpy()})
    assert again.reml_criterion == pytest.approx(expected.reml_criterion, rel=1e-10)
    with pytest.raises(DataError, match=f"{what} must have one value per row of the data"):
        sml.lmer("y ~ x + (1 | g)", data, subset=mask, **{what: values.to_numpy()[:7]})


def test_grouping_column_with_a_space_can_be_quoted(data):
    renamed = data.rename(columns={"g": "my g"})
    res = sml.lmer("y ~ x + (1 | Q('my g'))", renamed)
    assert res.reml_criterion == pytest.approx(reml("y ~ x + (1 | g)", data), rel=1e-10)


def test_grouping_levels_match_by_value_across_types_when_fitting(data):
    # before: 3 and "3" in one object column were two levels (predict() matched
    # them as one, and R's character vector holds one "3")
    codes = data.g.str[1:].astype(int).astype(object)
    mixed = codes.copy()
    mixed.iloc[::2] = mixed.iloc[::2].map(str)
    res = sml.lmer("y ~ x + (1 | g)", data.assign(g=mixed))
    assert res.model.random_terms[0].n_levels == 6
    plain = sml.lmer("y ~ x + (1 | g)", data.assign(g=codes.astype(int)))
    assert res.reml_criterion == pytest.approx(plain.reml_criterion, rel=1e-12)
    np.testing.assert_allclose(res.predict(), plain.predict(), rtol=1e-10)


def test_update_with_subset_keeps_the_weights_array(data):
    # update() passes the fitted rows and their weights: subset used to refuse them
    weights = np.linspace(0.5, 2.0, len(data))
    res = sml.lmer("y ~ x + (1 | g)", data, weights=weights)
    mask = data.x > 0
    updated = res.update(subset=mask.to_numpy())
    expected = reml("y ~ x + (1 | g)", data[mask], weights=weights[mask.to_numpy()])
    assert updated.reml_criterion == pytest.approx(expected, rel=1e-10)


def test_nullable_boolean_column_from_dask(data):
    dd = pytest.importorskip("dask.dataframe")
    nullable = data.assign(b=data.b.astype("boolean"))
    res = sml.lmer("y ~ x + b + (1 | g)", dd.from_pandas(nullable, npartitions=2))
    expected = sml.lmer("y ~ x + b + (1 | g)", data)
    assert res.reml_criterion == pytest.approx(expected.reml_criterion, rel=1e-10)
    predicted = res.predict(dd.from_pandas(nullable.iloc[:5], npartitions=1)).compute()
    # the two fits' estimates agree to about 1e-8 (optimizer tolerance), not to rounding
    np.testing.assert_allclose(predicted, expected.predict(data.iloc[:5]), rtol=1e-6)
