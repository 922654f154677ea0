"""Arguments of the results' methods: each bad one gets an error naming it (post-fit probe).

Before, these gave numpy/pandas tracebacks from inside (IndexError, AttributeError, broadcast
errors), or were accepted with a meaningless answer (alpha=1.5 giving reversed intervals,
"no" read as True, a position wrapping around).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tools.sm_exceptions import ValueWarning

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import DataError

SLEEP = sml.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def res():
    return sml.lmer("Reaction ~ Days + (Days | Subject)", SLEEP)


@pytest.fixture(scope="module")
def factor_fit():
    data = SLEEP.assign(f=(SLEEP["Days"] % 3).astype(str))
    return sml.lmer("Reaction ~ Days + f + (1 | Subject)", data)


def stripped(res):
    """A copy of the results without their rows, through a pickle (as save() writes it)."""
    copy = pickle.loads(pickle.dumps(res))
    copy.remove_data()
    return pickle.loads(pickle.dumps(copy))


def test_results_without_rows_keep_summary_and_tests(res):
    """remove_data() then pickle: summary(), pvalues, conf_int() and t_test raised
    AttributeError ('NoneType' object has no attribute 'shape')."""
    bare = stripped(res)
    assert "Days" in bare.summary().as_text()
    np.testing.assert_allclose(bare.pvalues, res.pvalues, rtol=1e-12)
    np.testing.assert_allclose(bare.conf_int(), res.conf_int(), rtol=1e-12)
    assert float(bare.t_test("Days = 10").pvalue) == pytest.approx(
        float(res.t_test("Days = 10").pvalue), rel=1e-12
    )
    with pytest.raises(DataError, match="remove_data\\(\\) dropped"):
        bare.coef_table("kenward-roger")


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.simulate(1),
        lambda r: r.bootstrap(2, seed=1),
        lambda r: r.icc(),
        lambda r: r.refit(SLEEP["Reaction"]),
        lambda r: r.ranova(),
        lambda r: r.step(),
        lambda r: r.pbmodcomp(". ~ . - Days", nsim=2),
        lambda r: r.get_robustcov_results("cluster", groups="Subject"),
    ],
)
def test_methods_that_need_the_rows_say_so(res, call):
    bare = pickle.loads(pickle.dumps(res))
    bare.remove_data()
    with pytest.raises(DataError, match="remove_data\\(\\) dropped"):
        call(bare)


def test_anova_of_several_models_without_rows_says_so(res):
    small = sml.lmer("Reaction ~ 1 + (Days | Subject)", SLEEP)
    bare = pickle.loads(pickle.dumps(small))
    bare.remove_data()
    with pytest.raises(DataError, match="remove_data\\(\\) dropped"):
        sml.anova(bare, res)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_alpha_outside_0_1_is_refused_everywhere(res, alpha):
    for call in (
        lambda: res.summary(alpha=alpha),
        lambda: res.summary2(alpha=alpha),
        lambda: res.t_test("Days = 10").conf_int(alpha=alpha),
        lambda: res.t_test("Days = 10").summary_frame(alpha=alpha),
        lambda: res.get_prediction(SLEEP.head(3)).conf_int(alpha=alpha),
    ):
        with pytest.raises(ValueError, match="alpha must"):
            call()


def test_non_numeric_levels_are_type_errors(res, factor_fit):
    with pytest.raises(TypeError, match="alpha must be a number"):
        res.summary(alpha="0.05")
    with pytest.raises(TypeError, match="level must be a number"):
        factor_fit.ls_means(level="0.95")


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.predict(SLEEP.head(2), allow_new_levels="no"),
        lambda r: r.get_prediction(SLEEP.head(2), conditional="yes"),
        lambda r: r.simulate(1, use_u="yes"),
        lambda r: r.predict_interval(SLEEP.head(2), include_residual="no"),
        lambda r: r.residuals(scaled="yes"),
        lambda r: r.t_test("Days = 10", use_t="no"),
        lambda r: r.wald_test("Days = 10", use_f="no"),
        lambda r: r.get_prediction(SLEEP.head(2)).conf_int(obs="yes"),
        lambda r: sml.anova(r, r, refit="no"),
    ],
)
def test_flags_must_be_booleans(res, call):
    """A string such as "no" is truthy: allow_new_levels="no" predicted new levels."""
    with pytest.raises(TypeError, match="must be True or False"):
        call(res)


def test_positions_do_not_wrap_and_terms_are_named(res):
    with pytest.raises(KeyError, match="out of range: there are 2"):
        res.conf_int(cols=[5])
    with pytest.raises(KeyError, match="out of range: there are 1"):
        res.term_covariance(1)
    np.testing.assert_allclose(res.term_covariance("Subject"), res.term_covariance(0))
    with pytest.raises(KeyError, match="no random-effects term 'nope'"):
        res.term_covariance("nope")
    with pytest.raises(TypeError, match="cols must be coefficient names or positions"):
        res.conf_int(cols=slice(0, 1))


def test_hypotheses_with_bad_shapes_or_values(res):
    with pytest.raises(TypeError, match="hypothesis \\(r_matrix\\) is required"):
        res.t_test(None)
    with pytest.raises(ValueError, match="q must have 2 value"):
        res.t_test((np.eye(2), [0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="finite"):
        res.t_test([[np.nan, 1.0]])
    with pytest.raises(ValueError, match="no rows"):
        res.t_test(np.zeros((0, 2)))
    with pytest.raises(TypeError, match="df_constraints is for the chi-square form"):
        res.wald_test("Days = 0", df_constraints=1)
    with pytest.raises(TypeError, match="cov_p and invcov overrides are not supported"):
        res.f_test("Days = 0", invcov=np.eye(2))
    with pytest.raises(ValueError, match="xname must be a list of 1 row names"):
        res.t_test("Days = 10").summary_frame(xname="ab")


def test_other_options_are_checked(res, factor_fit):
    with pytest.raises(ValueError, match="tol must be at least 0"):
        res.is_singular(tol=-1)
    with pytest.raises(TypeError, match="test must be 'F' or 'Chisq'"):
        res.drop1(test=None)
    with pytest.raises(KeyError, match="combine_terms \\['nope'\\] match no"):
        factor_fit.wald_test_terms(combine_terms=["nope"])
    with pytest.raises(TypeError, match="combine_terms must be a list of strings"):
        factor_fit.wald_test_terms(combine_terms=5)
    with pytest.raises(ValueError, match="alpha must"):
        factor_fit.t_test_pairwise("f", alpha=1.5)
    with pytest.raises(ValueError, match="scale must be positive"):
        res.cov_params(scale=-1)
    with pytest.raises(ValueError, match="r_matrix must have 2 columns"):
        res.cov_params(r_matrix=[1.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="seed must be None, a non-negative integer"):
        res.simulate(1, seed="x")


def test_new_data_given_twice_and_contradicting_keywords(res):
    with pytest.raises(TypeError, match="got new data twice"):
        res.predict(SLEEP.head(2), newdata=SLEEP.head(3))
    with pytest.raises(TypeError, match="both REML= and reml="):
        res.update(REML=False, reml=True)
    with pytest.warns(ValueWarning, match="leaves the formula .* unchanged"):
        same = res.update(". ~ . - Nope")
    assert same.llf == pytest.approx(res.llf, rel=1e-10)
    with pytest.raises(ValueError, match="leaves the model unchanged"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ValueWarning)
        res.pbmodcomp(". ~ . - Nope", nsim=2)
    with pytest.raises(TypeError, match="pbmodcomp\\(\\) compares fitted Lmer results"):
        res.pbmodcomp(None)


def test_anova_of_several_models_refuses_table_options_and_bad_names(res):
    small = sml.lmer("Reaction ~ 1 + (Days | Subject)", SLEEP)
    with pytest.raises(TypeError, match="apply to one model's ANOVA table"):
        sml.anova(small, res, ddf="foo")
    with pytest.raises(ValueError, match="names must be a list of distinct strings"):
        sml.anova(small, res, names="ab")
    with pytest.raises(ValueError, match="names must be a list of distinct strings"):
        sml.anova(small, res, names=["a", "a"])
    assert sml.anova(res).loc["Days", "NumDF"] == 1  # one model: its type III table


def test_predict_interval_arguments(res):
    with pytest.raises(TypeError, match="newdata must be a pandas DataFrame"):
        res.predict_interval([[1, 2]])
    with pytest.raises(DataError, match="weights must be positive"):
        res.predict_interval(SLEEP.head(3), weights=[-1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="n_sims must be at least 2"):
        res.predict_interval(SLEEP.head(3), n_sims=1)


def test_devfun_takes_a_scalar_for_one_theta_and_names_a_wrong_length():
    """A scalar theta (as R's JSON writes a length-1 vector) failed with 'zero-dimensional
    arrays cannot be concatenated'."""
    one = sml.lmer("Reaction ~ Days + (1 | Subject)", SLEEP)
    devfun = one.model.devfun(True)
    assert devfun(float(one.theta[0])) == pytest.approx(-2 * one.llf, rel=1e-12)
    with pytest.raises(ValueError, match="theta must have 1 value\\(s\\), got 2"):
        devfun([1.0, 2.0])


def test_progress_must_be_a_boolean(res):
    """progress="yes" drew a bar and "no" did too (truthy strings)."""
    with pytest.raises(TypeError, match="progress must be True or False"):
        res.bootstrap(2, seed=1, progress="no")
    with pytest.raises(TypeError, match="progress must be True or False"):
        res.profile(".sig01", progress="x")


def test_model_predict_names_its_params(res):
    for params in (None, [1.0]):
        with pytest.raises(ValueError, match="params must have 2 fixed-effect values"):
            res.model.predict(params)
    np.testing.assert_allclose(res.model.predict(res.params), res.predict(re_formula="0"))


def test_legitimate_forms_stay_accepted(res, factor_fit):
    """Found by comparing 471 calls with the version before the checks: these worked and
    must keep working."""
    p = res.f_test("Days = 0").pvalue
    assert isinstance(p, float)  # was a 0-d array: object columns, json.dumps failed
    table = factor_fit.wald_test_terms().table
    assert table["pvalue"].dtype == float
    np.testing.assert_allclose(res.conf_int(cols=range(2)), res.conf_int())
    np.testing.assert_allclose(res.conf_int(cols=pd.Index(["Days"])), res.conf_int(cols=[1]))
    assert res.predict(SLEEP.head(2), allow_new_levels=1).shape == (2,)  # 0/1 are flags
    data = SLEEP.assign(w=1.0)
    by_series = sml.center(data, pd.Series(["Days", "w"]), by="Subject")
    pd.testing.assert_frame_equal(by_series, sml.center(data, ["Days", "w"], by="Subject"))
    fit = sml.lmer("Reaction ~ Days + (1 | Subject)", SLEEP, progress=0)
    assert fit.profile(".sig01", maxpts=50.0, n_jobs=0).frame.shape[0] > 3
    kept = fit.step(keep=pd.Index(["Days"]), alpha_fixed=1)
    assert "Days" in kept.model.model.exog_names
