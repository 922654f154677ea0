"""Data handling: missing values, subsets, weights, and errors a person can act on."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tools.sm_exceptions import ValueWarning

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import DataError, ResponseTypeError, UnknownColumnError
from statsmodels_lmer.frame import aliased_columns, missing_rows

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture
def sleep() -> pd.DataFrame:
    return sml.datasets.load("sleepstudy")


def test_missing_rows_are_dropped_and_counted(sleep):
    data = sleep.copy()
    data.loc[[3, 10], "Reaction"] = np.nan
    data.loc[20, "Days"] = np.nan
    before = data.copy()
    res = sml.lmer(FORMULA, data)
    assert res.nobs == 177
    assert res.model.n_dropped == 3
    assert "3 rows with missing values dropped" in res.summary().as_text()
    pd.testing.assert_frame_equal(data, before)  # caller's data untouched
    complete = sml.lmer(FORMULA, data.dropna())
    assert res.objective == pytest.approx(complete.objective, rel=1e-12)


def test_missing_raise_refuses_with_count(sleep):
    data = sleep.copy()
    data.loc[[1, 2], "Subject"] = np.nan
    with pytest.raises(DataError, match="2 of 180 rows"):
        sml.Lmer.from_formula(FORMULA, data, missing="raise")


def test_subset_selects_rows(sleep):
    res = sml.lmer(FORMULA, sleep, subset=sleep["Days"] < 8)
    assert res.nobs == 144


def test_weights_and_offset_as_arrays_or_columns(sleep):
    data = sleep.assign(w=1 + (sleep["Days"] % 3) / 2, off=sleep["Days"] / 10)
    by_name = sml.lmer(FORMULA, data, weights="w", offset="off")
    by_array = sml.lmer(FORMULA, data, weights=data["w"].to_numpy(), offset=data["off"])
    assert by_name.objective == pytest.approx(by_array.objective, rel=1e-14)


@pytest.mark.parametrize(
    ("formula", "error", "message"),
    [
        ("Reaction ~ Days + (Days | Subjekt)", UnknownColumnError, "did you mean 'Subject'"),
        ("Reactoin ~ Days + (1 | Subject)", UnknownColumnError, "response 'Reactoin'"),
        ("Reaction ~ Dayz + (1 | Subject)", UnknownColumnError, "Dayz"),
        ("Subject ~ Days + (1 | Days)", ResponseTypeError, "not numeric"),
    ],
)
def test_unknown_columns_and_bad_response(sleep, formula, error, message):
    with pytest.raises(error, match=message):
        sml.Lmer.from_formula(formula, sleep)


def test_errors_subclass_builtin_types():
    assert issubclass(UnknownColumnError, KeyError)
    assert issubclass(DataError, ValueError)
    assert issubclass(ResponseTypeError, TypeError)


def test_grouping_factor_with_one_level(sleep):
    data = sleep.assign(one="x")
    with pytest.raises(DataError, match="only one level"):
        sml.Lmer.from_formula("Reaction ~ Days + (1 | one)", data)


def test_grouping_factor_with_a_level_per_row(sleep):
    data = sleep.assign(row=np.arange(len(sleep)))
    with pytest.raises(DataError, match="as many levels as observations"):
        sml.Lmer.from_formula("Reaction ~ Days + (1 | row)", data)


def test_more_random_effects_than_observations(sleep):
    data = sleep.assign(half=np.arange(len(sleep)) // 2)
    with pytest.raises(DataError, match="unidentifiable"):
        sml.Lmer.from_formula("Reaction ~ Days + (Days | half)", data)


def test_non_finite_values(sleep):
    data = sleep.assign(Reaction=sleep["Reaction"].where(sleep.index != 5, np.inf))
    with pytest.raises(DataError, match="non-finite"):
        sml.Lmer.from_formula(FORMULA, data)


@pytest.mark.parametrize(("value", "message"), [(-1.0, "must not be negative"), (0.0, "zero")])
def test_invalid_weights(sleep, value, message):
    weights = np.ones(len(sleep))
    weights[4] = value
    with pytest.raises(DataError, match=message):
        sml.Lmer.from_formula(FORMULA, sleep, weights=weights)


def test_weights_of_wrong_length(sleep):
    with pytest.raises(DataError, match="one value per row"):
        sml.Lmer.from_formula(FORMULA, sleep, weights=np.ones(3))


def test_empty_data_and_wrong_type(sleep):
    with pytest.raises(DataError, match="no rows"):
        sml.Lmer.from_formula(FORMULA, sleep.iloc[:0])
    with pytest.raises(TypeError, match="DataFrame"):
        sml.Lmer.from_formula(FORMULA, [1, 2, 3])


def test_all_missing_response(sleep):
    data = sleep.assign(Reaction=np.nan)
    with pytest.raises(DataError, match="every row has a missing value"):
        sml.Lmer.from_formula(FORMULA, data)


def test_grouping_dtype_does_not_change_the_fit(sleep):
    as_category = sml.lmer(FORMULA, sleep)
    as_int = sml.lmer(FORMULA, sleep.assign(Subject=sleep["Subject"].astype(int)))
    as_str = sml.lmer(FORMULA, sleep.assign(Subject=sleep["Subject"].astype(str)))
    assert as_int.objective == as_category.objective == as_str.objective
    np.testing.assert_array_equal(as_int.params, as_str.params)


def test_same_input_gives_bit_identical_results(sleep):
    first = sml.lmer(FORMULA, sleep)
    second = sml.lmer(FORMULA, sleep)
    np.testing.assert_array_equal(first.theta, second.theta)
    np.testing.assert_array_equal(first.params, second.params)


def test_aliased_columns_are_dropped_with_a_warning(sleep):
    data = sleep.assign(Days2=2 * sleep["Days"])
    message = "rank deficient so dropping 1 column / coefficient: Days2"
    with pytest.warns(ValueWarning, match=message):
        res = sml.lmer("Reaction ~ Days + Days2 + (Days | Subject)", data)
    assert list(res.params.index) == ["Intercept", "Days"]
    assert res.model.dropped_columns == ["Days2"]


def test_aliased_columns_detects_later_dependent_columns():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 50))
    X = np.column_stack([np.ones(50), a, b, a + b, np.zeros(50)])
    assert aliased_columns(X) == [3, 4]


def test_python_names_in_formula_are_evaluated(sleep):
    res = sml.lmer("np.log(Reaction) ~ Days + I(Days**2) + (1 | Subject)", sleep)
    assert list(res.params.index) == ["Intercept", "Days", "I(Days ** 2)"]


def test_missing_rows_agrees_with_pandas_on_every_kind_of_column():
    frame = pd.DataFrame(
        {
            "f": [1.0, np.nan, 3.0, 4.0, 5.0],
            "i": [1, 2, 3, 4, 5],
            "b": [True, False, True, False, True],
            "nullable": pd.array([1, 2, None, 4, 5], dtype="Int64"),
            "cat": pd.Categorical(["a", "b", "a", None, "b"]),
            "text": pd.array(["u", "v", "w", "x", None], dtype="string"),
            "obj": pd.Series(["p", None, "q", "r", "s"], dtype=object),
            "when": pd.to_datetime(["2020-01-01", None, "2020-01-03", "2020-01-04", "2020-01-05"]),
            "f32": np.array([1, 2, 3, np.nan, 5], dtype=np.float32),
        }
    )
    for name in frame.columns:
        expected = frame[[name]].isna().any(axis=1).to_numpy()
        np.testing.assert_array_equal(missing_rows(frame, [name]), expected, err_msg=name)
    everything = list(frame.columns)
    np.testing.assert_array_equal(
        missing_rows(frame, everything), frame.isna().any(axis=1).to_numpy()
    )
    assert not missing_rows(frame, []).any() and missing_rows(frame, []).shape == (5,)
    # a duplicated column name selects both columns
    twice = pd.concat([frame[["i"]], frame[["f"]].rename(columns={"f": "i"})], axis=1)
    np.testing.assert_array_equal(missing_rows(twice, ["i"]), [False, True, False, False, False])


@pytest.mark.parametrize(
    ("column", "cell"),
    [
        ("Days", [1, 2]),
        ("Reaction", {"a": 1.0}),
        ("Subject", (308, 309)),
        ("Subject", np.arange(3)),
        ("Subject", {308}),
    ],
)
def test_container_in_a_cell_is_refused_by_column_and_row(sleep, column, cell):
    # patsy failed with "unhashable type: 'list'", and a grouping factor made a
    # level of a tuple or array; R refuses list columns in a model frame
    data = sleep.astype({column: object})
    data.at[data.index[3], column] = cell
    before = data.copy()
    with pytest.raises(DataError, match=rf"column '{column}' holds a .* in row 3;"):
        sml.Lmer.from_formula("Reaction ~ Days + (Days | Subject)", data)
    pd.testing.assert_frame_equal(data, before)


def test_mixed_scalars_in_an_object_column_still_fit(sleep):
    # a scan for containers must not refuse mixed scalars: numbers and strings as
    # grouping levels are one factor, as in R
    data = sleep.astype({"Subject": object})
    data["Subject"] = [int(s) if i % 2 else str(s) for i, s in enumerate(sleep["Subject"])]
    res = sml.Lmer.from_formula("Reaction ~ Days + (1 | Subject)", data).fit()
    assert res.ngroups == {"Subject": 18}


# -- narrow number types: read as R reads numbers (doubles), not in their own type ----------

NARROW = "y ~ age + I(age**2) + np.exp(age / 40) + (I(age / 10) | g) + offset(I(age * age) / 1e4)"


def _narrow_data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(12), 10)
    age = rng.integers(0, 100, g.size)
    y = 1 + 0.01 * age + 0.001 * age**2 + rng.normal(size=12)[g] + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "age": age, "g": g})


@pytest.mark.filterwarnings("ignore::statsmodels_lmer.exceptions.SingularFitWarning")
@pytest.mark.parametrize(
    "dtype", ["int8", "uint8", "int16", "int32", "Int8", "UInt16", "int8[pyarrow]", "float32"]
)
def test_narrow_numbers_are_read_as_wide_ones(dtype):
    """int8 ages wrapped around inside ``I(age**2)`` (90**2 = 8100 -> -100) and the offset,
    with no warning; float32 squares lost half their digits. The fit and its predictions
    equal those of the same values stored as int64, to rounding."""
    if "pyarrow" in dtype:
        pytest.importorskip("pyarrow")
    wide = _narrow_data()
    narrow = wide.astype({"age": dtype, "g": dtype if "int" in dtype.lower() else "int64"})
    with pytest.warns(ValueWarning):  # the predictors' scales differ (I(age**2))
        reference = sml.lmer(NARROW, wide)
    with pytest.warns(ValueWarning):
        res = sml.lmer(NARROW, narrow)
    np.testing.assert_allclose(res.params, reference.params, rtol=1e-9)
    np.testing.assert_allclose(res.theta, reference.theta, rtol=1e-7, atol=1e-9)
    assert res.llf == pytest.approx(reference.llf, rel=1e-12)
    new = pd.DataFrame({"age": [20, 90, 99], "g": [0, 1, 2]})
    np.testing.assert_allclose(
        reference.predict(new.astype({"age": dtype})), reference.predict(new), rtol=1e-12
    )
    assert list(res.ranef["g"].index) == list(reference.ranef["g"].index)
    assert narrow["age"].dtype == dtype  # the caller's data keep their types


def test_float16_values_are_read_exactly():
    """float16 holds 0.1 as 0.0999755859375; the fit reads that value, in double precision."""
    wide = _narrow_data()
    wide["x"] = (wide["age"] / 37).astype("float16")
    exact = wide.assign(x=wide["x"].astype("float64"))
    formula = "y ~ x + I(x**3) + (1 | g)"
    res, reference = sml.lmer(formula, wide), sml.lmer(formula, exact)
    np.testing.assert_allclose(res.params, reference.params, rtol=1e-10)


# -- weights and offsets given as Series: matched to rows by index label -------------------


def _weighted(sleep: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return sleep.assign(w=rng.uniform(0.5, 2, len(sleep)), off=rng.normal(size=len(sleep)))


def test_series_weights_and_offset_are_matched_by_label(sleep):
    """``weights=d["w"].sort_values()`` was taken by position: another fit (249.26 against
    251.67 for the intercept) without a word. As subset= does, the index decides."""
    data = _weighted(sleep)
    formula = "Reaction ~ Days + (1 | Subject)"
    reference = sml.lmer(formula, data, weights="w", offset="off")
    shuffled = sml.lmer(
        formula, data, weights=data["w"].sort_values(), offset=data["off"].sample(frac=1.0)
    )
    np.testing.assert_allclose(shuffled.params, reference.params, rtol=1e-10)
    assert shuffled.llf == pytest.approx(reference.llf, rel=1e-12)
    positional = sml.lmer(formula, data, weights=data["w"].sort_values().to_numpy())
    assert abs(positional.params.iloc[0] - reference.params.iloc[0]) > 1.0  # what it was


def test_series_weights_with_subset_are_matched_by_label(sleep):
    data = _weighted(sleep)
    formula = "Reaction ~ Days + (1 | Subject)"
    keep = data["Days"] < 8
    reference = sml.lmer(formula, data[keep], weights="w")
    full = sml.lmer(formula, data, subset=keep, weights=data["w"].sample(frac=1.0, random_state=2))
    selected = data.loc[keep, "w"].sample(frac=1.0, random_state=3)
    part = sml.lmer(formula, data, subset=keep, weights=selected)
    for res in (full, part):
        np.testing.assert_allclose(res.params, reference.params, rtol=1e-10)


def test_series_with_other_labels_is_refused(sleep):
    data = _weighted(sleep)
    foreign = pd.Series(data["w"].to_numpy(), index=np.arange(len(data)) + 1000)
    with pytest.raises(DataError, match=r"index does not match the rows.*weights.to_numpy\(\)"):
        sml.lmer("Reaction ~ Days + (1 | Subject)", data, weights=foreign)


def test_predict_offset_series_is_matched_by_label(sleep):
    data = _weighted(sleep)
    res = sml.lmer("Reaction ~ Days + (1 | Subject)", data, offset="off")
    new = data.iloc[:5]
    expected = res.predict(new, offset=new["off"].to_numpy())
    np.testing.assert_allclose(res.predict(new, offset=new["off"].iloc[::-1]), expected)


# -- a transform that gives NaN: the row is dropped as missing, as R's model frame does -----


@pytest.mark.filterwarnings("ignore:(invalid value|divide by zero):RuntimeWarning")
@pytest.mark.parametrize(
    ("formula", "nobs", "criterion", "fixef"),
    [  # lme4 1.1-31 (R warns "NaNs produced" and drops the rows)
        (
            "Reaction ~ np.log(x2) + (1 | Subject)",
            162,
            1627.9404270453,
            [266.4863808645, 29.6888206517],
        ),
        (
            "np.log(Reaction - 250) ~ Days + (1 | Subject)",
            144,
            396.5934762094,
            [2.6941727976, 0.2042921235],
        ),
    ],
)
def test_rows_where_a_transform_gives_nan_are_dropped(sleep, formula, nobs, criterion, fixef):
    """Was a DataError ("non-finite values"), while the same NaN in offset() was dropped."""
    data = sleep.assign(x2=sleep["Days"] - 0.5)
    before = data.copy()
    with pytest.warns(ValueWarning, match=f"gives NaN on {180 - nobs} rows"):
        res = sml.lmer(formula, data)
    assert res.nobs == nobs and res.model.n_dropped == 180 - nobs
    assert res.reml_criterion == pytest.approx(criterion, rel=1e-9)
    np.testing.assert_allclose(res.params, fixef, rtol=1e-7)
    pd.testing.assert_frame_equal(data, before)
    with pytest.raises(DataError, match="missing values"):
        sml.lmer(formula, data, missing="raise")


@pytest.mark.filterwarnings("ignore:(invalid value|divide by zero):RuntimeWarning")
def test_transform_nan_with_subset_and_weights(sleep):
    data = sleep.assign(x2=sleep["Days"] - 0.5, w=np.linspace(0.5, 2, len(sleep)))
    keep = data["Subject"].astype(str) != "308"
    formula = "Reaction ~ np.log(x2) + (1 | Subject)"
    with pytest.warns(ValueWarning, match="gives NaN on 17 rows"):
        res = sml.lmer(formula, data, subset=keep, weights="w")
    direct = sml.lmer(formula, data[keep & (data["x2"] > 0)], weights="w")
    assert res.nobs == 153
    np.testing.assert_allclose(res.params, direct.params, rtol=1e-10)


@pytest.mark.filterwarnings("ignore:(invalid value|divide by zero):RuntimeWarning")
def test_transform_giving_inf_is_refused_with_a_hint(sleep):
    data = sleep.assign(x1=sleep["Days"].astype(float))
    with pytest.raises(DataError, match=r"non-finite values on 18 rows.*leave those rows out"):
        sml.lmer("Reaction ~ np.log(x1) + (1 | Subject)", data)


def test_index_level_named_as_a_column_gets_a_pointer(sleep):
    """A panel indexed by (entity, time), as linearmodels' users have it."""
    panel = sleep.set_index(["Subject", "Days"])
    with pytest.raises(UnknownColumnError, match=r"level of the index: pass data.reset_index"):
        sml.lmer("Reaction ~ 1 + (1 | Subject)", panel)
    res = sml.lmer("Reaction ~ Days + (1 | Subject)", panel.reset_index())
    assert res.nobs == 180


def test_missing_raise_names_the_weights_column(sleep):
    data = sleep.assign(w=1.0)
    data.loc[3, "w"] = np.nan
    with pytest.raises(DataError, match=r"\(Reaction, Days, Subject, w\)"):
        sml.lmer("Reaction ~ Days + (1 | Subject)", data, weights="w", missing="raise")


@pytest.mark.parametrize("term", ["C(f)", "f", "f:Days"])
def test_a_fixed_factor_with_one_level_is_refused(term):
    """patsy codes it by no column: the term vanished from the fit silently (R stops)."""
    data = sml.datasets.load("sleepstudy").assign(f="only")
    with pytest.raises(DataError, match=r"only one level \('only'\)"):
        sml.lmer(f"Reaction ~ Days + {term} + (1 | Subject)", data)
    dd = pytest.importorskip("dask.dataframe")
    with pytest.raises(DataError, match=r"only one level \('only'\)"):
        sml.lmer(f"Reaction ~ Days + {term} + (1 | Subject)", dd.from_pandas(data, npartitions=2))


def test_too_few_groups_after_dropping_missing_rows_says_so():
    data = sml.datasets.load("sleepstudy").assign(junk=np.nan)
    data.loc[0:9, "junk"] = 1.0  # 170 rows missing: one subject left
    message = r"one level \(left after dropping 170 of 180 rows .*: junk 170\)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match=message):
            sml.lmer("Reaction ~ Days + junk + (1 | Subject)", data)
