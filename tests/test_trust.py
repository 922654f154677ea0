"""Regression tests for silent wrong answers (issue 9): each failed before its fix.

Offsets and weights in prediction, level matching across dtypes, unknown
keywords, anova on different data, models used from several threads, results
owning their data, extreme scales, warnings at the caller's line, pickled
formulas with user functions and the restricted formula mode.
"""

from __future__ import annotations

import pickle
import threading
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from statsmodels.tools.sm_exceptions import ValueWarning

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import DataError, FormulaError, UnsafeFormulaError

FORMULA = "Reaction ~ Days + (Days | Subject)"


def doubled(values):
    """A module-level function used in formulas (pickles by reference)."""
    return 2.0 * np.asarray(values)


@cache
def _sleep_offset():
    data = sml.datasets.load("sleepstudy").assign(
        off=lambda d: d.Days / 10, w=lambda d: 1 + (d.Days % 3) / 2
    )
    return data, sml.lmer(FORMULA, data, offset="off", weights="w")


@pytest.fixture
def sleep_offset():
    data, res = _sleep_offset()
    return data.copy(), res


# -- 1. predict and predict_interval use the offset and the weights ----------------


def test_predict_fitted_rows_include_offset(sleep_offset):
    _, res = sleep_offset
    np.testing.assert_allclose(res.predict(), res.fittedvalues, rtol=0, atol=1e-9)


def test_predict_newdata_takes_offset_from_its_column(sleep_offset):
    data, res = sleep_offset
    new = data.iloc[[0, 11, 22]].assign(off=[1.0, -2.0, 0.5])
    plain = res.predict(new.assign(off=0.0))
    np.testing.assert_allclose(res.predict(new) - plain, [1.0, -2.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(res.predict(new, offset=np.zeros(3)), plain, atol=1e-12)


def test_predict_refuses_newdata_when_offset_was_an_array():
    data = sml.datasets.load("sleepstudy")
    res = sml.lmer(FORMULA, data, offset=data.Days.to_numpy() / 10)
    np.testing.assert_allclose(res.predict(), res.fittedvalues, atol=1e-9)
    with pytest.raises(DataError, match="offset given as an array"):
        res.predict(data.head())
    np.testing.assert_allclose(
        res.predict(data.head(), offset=data.Days.head() / 10), res.fittedvalues[:5], atol=1e-9
    )


def test_predict_interval_uses_offset_and_weights(sleep_offset):
    data, res = sleep_offset
    new = data.iloc[[0, 0]].assign(off=[0.0, 100.0], w=[1.0, 100.0])
    interval = res.predict_interval(new, n_sims=4000, seed=1)
    center = np.asarray(res.predict(new))
    np.testing.assert_allclose(center[1] - center[0], 100.0, atol=1e-9)
    # the median follows the offset (Monte Carlo error well below 100)
    assert abs(interval["fit"].iloc[1] - interval["fit"].iloc[0] - 100.0) < 5.0
    width = (interval["upper"] - interval["lower"]).to_numpy()
    # residual sd sigma/sqrt(w): the heavily weighted row's interval is much narrower
    assert width[1] < 0.6 * width[0]
    fitted = res.predict_interval(n_sims=500, seed=2)
    assert np.median(np.abs(fitted["fit"] - res.fittedvalues)) < 0.1 * res.sigma


def test_get_prediction_observation_interval_uses_weights(sleep_offset):
    data, res = sleep_offset
    new = data.iloc[[0, 0]].assign(w=[1.0, 100.0])
    frame = res.get_prediction(new).summary_frame()
    width = (frame["obs_ci_upper"] - frame["obs_ci_lower"]).to_numpy()
    mean_width = (frame["mean_ci_upper"] - frame["mean_ci_lower"]).to_numpy()
    np.testing.assert_allclose(mean_width[0], mean_width[1])
    assert width[1] < 0.9 * width[0]  # residual variance sigma^2 / w


# -- 2. levels match by value across dtypes; ranef keeps the user's level type -----


@cache
def _int_groups():
    data = sml.datasets.load("sleepstudy")
    data = data.assign(S=data.Subject.astype(str).astype(int))
    return data, sml.lmer("Reaction ~ Days + (1 | S)", data)


@pytest.mark.parametrize(
    "convert",
    [
        lambda s: s.astype(float),
        lambda s: s.astype(str),
        lambda s: s.astype("Int64"),
        lambda s: s.astype("category"),
        lambda s: s.astype(float).where(s != 999, np.nan),
        lambda s: s.astype(np.int32),
        lambda s: s.astype(object),
    ],
    ids=["float", "str", "Int64", "category", "float-with-nan", "int32", "object"],
)
def test_known_levels_match_across_dtypes(convert):
    data, res = _int_groups()
    new = data.iloc[[0, 10, 20]].copy()
    new["S"] = convert(new["S"])
    predicted = res.predict(new, allow_new_levels=True)
    np.testing.assert_allclose(predicted, res.fittedvalues.iloc[[0, 10, 20]], atol=1e-9)


def test_float_grouping_with_nan_keeps_known_levels():
    data, res = _int_groups()
    new = data.iloc[[0, 10]].copy()
    new["S"] = [308.0, np.nan]  # a NaN makes the column float
    predicted = np.asarray(res.predict(new, allow_new_levels=True))
    assert predicted[0] == pytest.approx(res.fittedvalues.iloc[0], abs=1e-9)
    population = np.asarray(res.predict(new, re_formula="0"))[1]
    assert predicted[1] == pytest.approx(population, rel=1e-14)  # a new level, as in lme4
    assert np.isnan(np.asarray(res.predict(new))[1])


def test_ranef_index_keeps_integer_levels():
    _, res = _int_groups()
    index = res.ranef["S"].index
    assert pd.api.types.is_integer_dtype(index.dtype)
    assert list(index[:3]) == [308, 309, 310]


def test_string_levels_match_integers():
    data = sml.datasets.load("sleepstudy")
    res = sml.lmer("Reaction ~ Days + (1 | Subject)", data)
    new = data.iloc[[0, 10]].assign(Subject=[308, 309])
    np.testing.assert_allclose(res.predict(new), res.fittedvalues.iloc[[0, 10]], atol=1e-9)


def test_nested_levels_keep_lme4_labels():
    data = sml.datasets.load("Pastes")
    res = sml.lmer("strength ~ 1 + (1 | batch/cask)", data)
    assert "cask:batch" in res.ranef
    assert res.ranef["cask:batch"].index[0] == "a:A"


# -- 3. unknown keywords are refused with a suggestion -----------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda d: sml.lmer(FORMULA, d, reml=False), "'reml'.*'REML'"),
        (lambda d: sml.lmer(FORMULA, d, weight="Days"), "'weight'.*'weights'"),
        (lambda d: sml.Lmer.from_formula(FORMULA, d).fit(Reml=False), "'Reml'.*'reml'"),
        (lambda d: sml.Lmer.from_formula(FORMULA, d, ofset="Days"), "'ofset'.*'offset'"),
        (lambda d: sml.lmer(FORMULA, d, REML="FALSE"), "REML must be True or False"),
        (lambda d: sml.Lmer.from_formula(FORMULA, d).fit(reml="no"), "reml must be"),
    ],
    ids=["reml", "weight", "Reml", "ofset", "REML-string", "reml-string"],
)
def test_unknown_or_mistyped_keywords_raise_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call(sml.datasets.load("sleepstudy"))


@pytest.mark.parametrize("maxiter", [0, -5])
def test_maxiter_below_one_is_value_error(maxiter):
    with pytest.raises(ValueError, match="maxiter must be at least 1"):
        sml.lmer(FORMULA, sml.datasets.load("sleepstudy"), maxiter=maxiter)


# -- 4. anova compares the data actually used ---------------------------------------


@cache
def _anova_fits():
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"g": np.repeat(np.arange(12), 8), "x": rng.normal(size=96)}).assign(
        y=lambda d: d.x + rng.normal(size=12)[d.g] + rng.normal(size=96)
    )
    m0 = sml.lmer("y ~ 1 + (1 | g)", data, REML=False)
    m1 = sml.lmer("y ~ x + (1 | g)", data, REML=False)
    return data, m0, m1


@pytest.mark.filterwarnings("ignore::statsmodels_lmer.SingularFitWarning")
def test_anova_refuses_shuffled_grouping_column():
    data, m0, _ = _anova_fits()
    shuffled = data.assign(g=np.random.default_rng(0).permutation(data.g.to_numpy()))
    other = sml.lmer("y ~ x + (1 | g)", shuffled, REML=False)
    with pytest.raises(DataError, match="grouping factor 'g' differs"):
        sml.anova(m0, other)


@pytest.mark.filterwarnings("ignore::statsmodels_lmer.SingularFitWarning")
def test_anova_refuses_changed_weights_and_columns():
    data, m0, m1 = _anova_fits()
    weighted = sml.lmer("y ~ x + (1 | g)", data.assign(w=1 + data.x**2), weights="w", REML=False)
    with pytest.raises(DataError, match="the weights differ"):
        sml.anova(m0, weighted)
    shifted = sml.lmer(
        "y ~ 1 + (1 | g)",
        data.assign(y=data.y.sample(frac=1, random_state=1).to_numpy()),
        REML=False,
    )
    with pytest.raises(DataError, match="not fitted to the same data"):
        sml.anova(shifted, m1)


def test_anova_accepts_reordered_rows():
    data, m0, m1 = _anova_fits()
    reordered = data.sample(frac=1, random_state=2)
    m1_reordered = sml.lmer("y ~ x + (1 | g)", reordered, REML=False)
    table = sml.anova(m0, m1_reordered)
    assert table["chisq"].iloc[1] == pytest.approx(sml.anova(m0, m1)["chisq"].iloc[1], rel=1e-6)


# -- 5. one model, several threads ---------------------------------------------------


@cache
def _crossed_model():
    rng = np.random.default_rng(5)
    n = 6000
    data = pd.DataFrame({"a": rng.integers(0, 600, n), "b": rng.integers(0, 200, n)})
    data["x"] = rng.normal(size=n)
    data["y"] = (
        data.x + rng.normal(size=600)[data.a] + 0.5 * rng.normal(size=200)[data.b]
    ) + rng.normal(size=n)
    return sml.Lmer.from_formula("y ~ x + (1 | a) + (1 | b)", data)


def _in_threads(function, items, n_threads=4):
    results = [None] * len(items)
    errors = []

    def work(start):
        try:
            for i in range(start, len(items), n_threads):
                results[i] = function(items[i])
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


@pytest.mark.parametrize("strategy", ["pairs", "classes", "dense"])
def test_devfun_from_four_threads_matches_serial(strategy):
    model = _crossed_model()
    devfun = model.devfun(reml=False, strategy=strategy)
    thetas = [np.array([a, b]) for a in np.linspace(0.2, 1.6, 6) for b in np.linspace(0.1, 1.0, 4)]
    serial = [devfun(theta) for theta in thetas]
    threaded = _in_threads(devfun, thetas * 3)
    np.testing.assert_allclose(threaded, serial * 3, rtol=1e-13, atol=0)


def test_solutions_and_predictions_from_threads_match_serial():
    model = _crossed_model()
    res = model.fit(reml=False)
    devfun = model.devfun(reml=False)
    thetas = [res.theta * s for s in (0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0, 4.0)]
    serial = [devfun.solve(t).beta for t in thetas]
    threaded = _in_threads(lambda t: devfun.solve(t).beta, thetas * 2)
    np.testing.assert_allclose(threaded, serial * 2, rtol=1e-12)
    frame = model.data.frame
    chunks = [frame.iloc[i : i + 500] for i in range(0, 4000, 500)]
    serial_pred = [res.predict(c) for c in chunks]
    threaded_pred = _in_threads(res.predict, chunks)
    for a, b in zip(threaded_pred, serial_pred):
        np.testing.assert_array_equal(a, b)


def test_blas_thread_limit_is_restored():
    from threadpoolctl import threadpool_info

    before = [info["num_threads"] for info in threadpool_info()]
    model = _crossed_model()
    _in_threads(lambda _: model.fit(reml=False, threads=1).llf, list(range(4)), n_threads=2)
    assert [info["num_threads"] for info in threadpool_info()] == before


# -- 6. results own their data -------------------------------------------------------


def test_changing_the_callers_frame_after_the_fit_changes_nothing():
    data = sml.datasets.load("sleepstudy").assign(x=lambda d: d.Days.astype(float))
    res = sml.lmer("Reaction ~ x + (1 | Subject)", data)
    predicted, llf = res.predict().copy(), res.llf
    data.loc[0, "x"] = 100.0
    data.iloc[1, 0] = -1000.0
    data["Reaction"] *= 2
    np.testing.assert_array_equal(res.predict(), predicted)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(res)).predict(), predicted)
    assert res.update().llf == pytest.approx(llf, rel=1e-10)


def test_weights_and_offset_arrays_are_copied():
    data = sml.datasets.load("sleepstudy")
    weights, offset = np.ones(len(data)), np.zeros(len(data))
    res = sml.lmer(FORMULA, data, weights=weights, offset=offset)
    fitted = res.fittedvalues.copy()
    weights[:] = 5.0
    offset[:] = 7.0
    np.testing.assert_array_equal(res.model.weights, 1.0)
    np.testing.assert_array_equal(res.predict(), fitted)


# -- 7. extreme scales: a clear refusal, never a NaN fit ------------------------------


def test_huge_predictor_is_refused_not_dropped():
    data = sml.datasets.load("sleepstudy").assign(x=lambda d: d.Days * 1e155)
    with pytest.raises(DataError, match=r"fixed-effects column 'x'.*1e15[56].*divide by"):
        sml.lmer("Reaction ~ x + (1 | Subject)", data)


def test_huge_response_is_refused_not_nan():
    data = sml.datasets.load("sleepstudy").assign(y=lambda d: d.Reaction * 1e155)
    with pytest.raises(DataError, match=r"response 'y'.*1e157"):
        sml.lmer("y ~ Days + (1 | Subject)", data)


def test_large_but_representable_scales_fit_and_scale_back():
    data = sml.datasets.load("sleepstudy")
    base = sml.lmer("Reaction ~ Days + (1 | Subject)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ValueWarning)  # lme4's check.scaleX warns, rightly
        big = sml.lmer(
            "y ~ x + (1 | Subject)", data.assign(y=data.Reaction * 1e100, x=data.Days * 1e-50)
        )
    assert np.isfinite(big.sigma)
    assert big.sigma / 1e100 == pytest.approx(base.sigma, rel=1e-6)
    assert big.params["x"] * 1e-150 == pytest.approx(base.params["Days"], rel=1e-6)


# -- warnings point at the caller's line ---------------------------------------------


def test_warnings_point_at_the_callers_line():
    data = sml.datasets.load("sleepstudy").assign(
        D2=lambda d: d.Days * 2, big=lambda d: d.Days * 1e5
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sml.lmer("Reaction ~ Days + D2 + big + (1 | Subject)", data)
    assert {w.category for w in caught} >= {ValueWarning}
    for warning in caught:
        assert warning.filename == __file__, (warning.filename, str(warning.message))


def test_warnings_of_cached_results_point_at_the_callers_line():
    """Satterthwaite's Hessian warning, computed in a cached_property on first use,
    pointed at functools.py."""
    data = sml.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("Reaction ~ Days + (Days|Subject)", data, method="nelder-mead", maxiter=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res.summary()
    assert any("Hessian in (theta, sigma)" in str(w.message) for w in caught)
    for warning in caught:
        assert warning.filename == __file__, (warning.filename, str(warning.message))


def test_singular_fit_warning_gives_python_advice():
    data = sml.datasets.load("Dyestuff2")
    with pytest.warns(sml.SingularFitWarning) as record:
        sml.lmer("Yield ~ 1 + (1 | Batch)", data)
    text = str(record[0].message)
    assert "is_singular()" in text and "help(" not in text
    assert record[0].filename == __file__


# -- pickles keep the functions their formula uses -------------------------------------


def test_pickled_fit_with_user_function_predicts():
    data = sml.datasets.load("sleepstudy")
    res = sml.lmer("Reaction ~ doubled(Days) + (1 | Subject)", data)
    loaded = pickle.loads(pickle.dumps(res))
    np.testing.assert_allclose(loaded.predict(data.head()), res.predict(data.head()), atol=1e-9)


def test_pickled_fit_with_lambda_says_what_was_lost():
    data = sml.datasets.load("sleepstudy")
    twice = lambda v: 2 * v  # noqa: E731, F841 - used by the formula; a lambda does not pickle
    res = sml.lmer("Reaction ~ twice(Days) + (1 | Subject)", data)
    loaded = pickle.loads(pickle.dumps(res))
    assert loaded.llf == res.llf
    with pytest.raises(FormulaError, match=r"'twice'.*could not be pickled"):
        loaded.predict(data.head())


# -- restricted formulas ---------------------------------------------------------------

SAFE_DATA = sml.datasets.load("sleepstudy").assign(x=lambda d: d.Days + 1.0)


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ I(__import__('os').getcwd()) + (1 | Subject)",
        "Reaction ~ x.__class__ + (1 | Subject)",
        "Reaction ~ doubled(x) + (1 | Subject)",
        "Reaction ~ np.load('f') + (1 | Subject)",
        "Reaction ~ I(x ** 10 ** 10) + (1 | Subject)",
        "Reaction ~ I([x][0]) + (1 | Subject)",
        "Reaction ~ I(lambda: 1) + (1 | Subject)",
        "Reaction ~ x + (doubled(x) | Subject)",
        "open('x') ~ x + (1 | Subject)",
        "Reaction ~ I(eval('1')) + (1 | Subject)",
    ],
)
def test_restricted_mode_refuses_code(formula):
    with pytest.raises(UnsafeFormulaError, match="restricted formula"):
        sml.lmer(formula, SAFE_DATA, restricted=True)


def test_restricted_mode_fits_whitelisted_formulas_as_the_normal_mode():
    formula = "Reaction ~ np.log(x) + I(x ** 2) + center(Days) + (1 + x | Subject)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ValueWarning)
        safe = sml.lmer(formula, SAFE_DATA, restricted=True)
        normal = sml.lmer(formula, SAFE_DATA)
    np.testing.assert_allclose(safe.params, normal.params, rtol=1e-10)
    np.testing.assert_allclose(safe.predict(SAFE_DATA.head()), normal.predict(SAFE_DATA.head()))
    with pytest.raises(UnsafeFormulaError):
        safe.predict(SAFE_DATA.head(), re_formula="~ (doubled(x) | Subject)")
    with pytest.raises(UnsafeFormulaError):
        safe.update("Reaction ~ doubled(x) + (1 | Subject)")


def test_restricted_mode_refuses_caller_names_and_eval_env():
    Days2 = 3  # noqa: F841 - a caller's variable a restricted formula must not see
    with pytest.raises(UnsafeFormulaError, match="'Days2' is not a column"):
        sml.lmer("Reaction ~ I(Days * Days2) + (1 | Subject)", SAFE_DATA, restricted=True)
    with pytest.raises(TypeError, match="eval_env"):
        sml.lmer(FORMULA, SAFE_DATA, restricted=True, eval_env=0)
