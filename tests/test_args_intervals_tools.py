"""Argument checks of the intervals, the exact (R)LRT and the tools (post-fit probe).

Each test is a finding of the post-fit argument probe (its number in the
comment): a call that used to be accepted silently, wrapped a position, or
failed with a raw error from inside, and now raises an error naming the
argument (or warns with a statsmodels warning class).
"""

from __future__ import annotations

import os
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.tools.sm_exceptions import (
    ConvergenceWarning,
    HypothesisTestWarning,
)

import statsmodels_lmer as sml
from statsmodels_lmer._parallel import effective_jobs
from statsmodels_lmer.inference.exact_lrt import LambdaGrid, exact_lrt, exact_rlrt
from statsmodels_lmer.intervals.parameters import select_parameters
from statsmodels_lmer.intervals.profile import ProfileResult
from statsmodels_lmer.tools.allfit import allfit
from statsmodels_lmer.tools.panel import hausman
from statsmodels_lmer.tools.step import step


@cache
def sleep() -> pd.DataFrame:
    return sml.datasets.load("sleepstudy")


@cache
def intercept_fit():
    """``Reaction ~ Days + (1 | Subject)``, REML: parameters .sig01, .sigma, Intercept, Days."""
    return sml.lmer("Reaction ~ Days + (1 | Subject)", sleep())


@cache
def dyestuff_ml():
    return sml.lmer("Yield ~ 1 + (1 | Batch)", sml.datasets.load("Dyestuff"), REML=False)


@cache
def dyestuff_profile():
    return dyestuff_ml().profile(progress=False)


@cache
def small_bootstrap():
    return dyestuff_ml().bootstrap(5, seed=1, progress=False)


# --- #8, #59: parameter selections ------------------------------------------------


@pytest.mark.parametrize("parm", [99, -99, 4])
def test_confint_positions_out_of_range_do_not_wrap(parm):
    with pytest.raises(KeyError, match="out of range"):
        intercept_fit().confint("wald", parm=parm)


@pytest.mark.parametrize("parm", [True, [1.5], [np.True_]])
def test_confint_positions_refuse_bools_and_fractions(parm):
    with pytest.raises(TypeError, match="parm"):
        intercept_fit().confint("wald", parm=parm)


def test_confint_negative_position_counts_from_the_end():
    out = intercept_fit().confint("wald", parm=-1)
    assert list(out.index) == ["Days"]


@pytest.mark.parametrize("which", [99, -5, True, [1.5]])
def test_profile_positions_checked(which):
    with pytest.raises((KeyError, TypeError), match="which"):
        dyestuff_ml().profile(which=which, progress=False)


def test_empty_selections_refused_and_duplicates_dropped():
    with pytest.raises(ValueError, match="selects no parameters"):
        intercept_fit().confint("wald", parm=[])
    with pytest.raises(ValueError, match="selects no parameters"):
        dyestuff_ml().profile(which=[], progress=False)
    out = intercept_fit().confint("wald", parm=["Days", "Days", 3])
    assert list(out.index) == ["Days"]
    with pytest.raises(TypeError, match="which"):
        select_parameters({"Days": 1}, ["a", "Days"], 1)


# --- #23: confint("wald") keywords -------------------------------------------------


def test_confint_refuses_keywords_of_no_method_and_ignores_the_other_methods():
    """An unknown keyword was dropped silently by confint("wald"); the keywords of the other
    methods are ignored, so that one loop can pass the same keywords to every method."""
    with pytest.raises(TypeError, match="unknown keyword\\(s\\) \\['bogus'\\]"):
        intercept_fit().confint("wald", bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        dyestuff_ml().confint("profile", bogus=1)
    shared = {"nsim": 5, "seed": 1, "n_jobs": 1, "progress": False}
    wald = intercept_fit().confint("wald", **shared)
    pd.testing.assert_frame_equal(wald, intercept_fit().confint("wald"))
    profile_ci = dyestuff_ml().confint("profile", **shared)
    pd.testing.assert_frame_equal(profile_ci, dyestuff_ml().confint("profile", progress=False))


def test_confint_boot_defaults_unchanged():
    out = dyestuff_ml().confint("boot", nsim=3, seed=1, progress=False)
    assert list(out.columns) == ["2.5 %", "97.5 %"]


# --- #24-#26: profile grid controls ------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"alpha_max": 0}, ValueError, "alpha_max"),
        ({"alpha_max": 1.5}, ValueError, "alpha_max"),
        ({"alpha_max": float("nan")}, ValueError, "alpha_max"),
        ({"maxpts": 0}, ValueError, "maxpts"),
        ({"maxpts": 2}, ValueError, "maxpts"),
        ({"maxpts": 2.5}, TypeError, "maxpts"),
        ({"maxpts": "10"}, TypeError, "maxpts"),
        ({"delta": 0}, ValueError, "delta"),
        ({"delta": -1}, ValueError, "delta"),
        ({"delta_cutoff": -1}, ValueError, "delta_cutoff"),
        ({"maxmult": 0}, ValueError, "maxmult"),
        ({"maxmult": 0.5}, ValueError, "maxmult"),
        ({"signames": "no"}, TypeError, "signames"),
    ],
)
def test_profile_grid_controls_checked(kwargs, error, name):
    with pytest.raises(error, match=name):
        dyestuff_ml().profile(which=".sig01", progress=False, **kwargs)


def test_profile_at_checked():
    res = dyestuff_ml()
    with pytest.raises(KeyError, match="unknown parameter 'nope'"):
        res.profile(at={"nope": [1.0]}, progress=False)
    with pytest.raises(TypeError, match="at must be a dict"):
        res.profile(at=[1, 2], progress=False)
    with pytest.raises(TypeError, match=r"at\['.sig01'\] must be numbers"):
        res.profile(which=".sig01", at={".sig01": "x"}, progress=False)
    with pytest.raises(ValueError, match="no finite value"):
        res.profile(which=".sig01", at={".sig01": []}, progress=False)
    with pytest.raises(ValueError, match="no finite value"):
        res.profile(which=".sig01", at={".sig01": [-5, np.nan]}, progress=False)
    with pytest.raises(ValueError, match="not among the parameters profiled"):
        res.profile(which=".sigma", at={".sig01": [30.0]}, progress=False)
    prof = res.profile(which=".sig01", at={".sig01": [-5, 30.0, np.nan]}, progress=False)
    assert len(prof.frame) == 2  # the estimate and 30


# --- #6, #7, #27: ProfileResult.confint ---------------------------------------------


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, float("nan"), 95])
def test_profile_confint_level_range(level):
    with pytest.raises(ValueError, match="level"):
        dyestuff_profile().confint(level=level)


@pytest.mark.parametrize("level", ["0.95", None])
def test_profile_confint_level_type(level):
    with pytest.raises(TypeError, match="level"):
        dyestuff_profile().confint(level=level)


def test_profile_confint_parm():
    prof = dyestuff_profile()
    with pytest.raises(KeyError, match=r"not profiled.*'\.sig01'"):
        prof.confint(parm="nope")
    with pytest.raises(KeyError, match="not profiled"):
        prof.confint(parm=["nope"])
    partial = dyestuff_ml().profile(which=".sig01", progress=False)
    with pytest.raises(KeyError, match=r"'\.sigma' was not profiled"):
        partial.confint(parm=".sigma")
    by_position = prof.confint(parm=0)
    assert list(by_position.index) == [prof.parameters[0]]
    with pytest.raises(KeyError, match="out of range"):
        prof.confint(parm=5)
    with pytest.raises(ValueError, match="selects no parameters"):
        prof.confint(parm=[])


# --- #28-#31: bootstrap ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fit_kwargs", "error", "match"),
    [
        ({"bogus": 1}, TypeError, "bogus"),
        ({"reml": "no"}, TypeError, "reml"),
        ({"method": "nope"}, ValueError, "unknown optimizer"),
        ({"xtol": -1}, ValueError, "xtol"),
        ([1], TypeError, "fit_kwargs must be a dict"),
    ],
)
def test_bootstrap_fit_kwargs_checked_up_front(fit_kwargs, error, match):
    with pytest.raises(error, match=match):
        dyestuff_ml().bootstrap(3, fit_kwargs=fit_kwargs, progress=False)


def test_bootstrap_fit_kwargs_valid_ones_work():
    boot = dyestuff_ml().bootstrap(2, seed=1, fit_kwargs={"method": "bobyqa"}, progress=False)
    assert boot.failures == 0


def fails_always(fit):
    raise np.linalg.LinAlgError("made to fail")


def fails_on_refits(fit):
    """Works on the fit itself (its response is the data's), fails on every refit."""
    if abs(fit.params["Intercept"] - 1527.5) < 1e-6:
        return pd.Series({"mu": fit.params["Intercept"]})
    raise np.linalg.LinAlgError("made to fail")


def test_bootstrap_raises_when_every_replicate_fails():
    with pytest.raises(ValueError, match=r"all 3 bootstrap refits failed.*made to fail"):
        dyestuff_ml().bootstrap(3, seed=1, func=fails_on_refits, progress=False)


def fails_above_estimate(fit):
    """Fails for the replicates whose intercept is above the fit's (module level)."""
    if fit.params["Intercept"] > 1527.5 + 1e-6:
        raise np.linalg.LinAlgError("made to fail")
    return pd.Series({"mu": fit.params["Intercept"]})


def test_bootstrap_partial_failures_warn_with_convergence_warning():
    with pytest.warns(ConvergenceWarning, match=r"of 12 bootstrap refits failed.*made to fail"):
        boot = dyestuff_ml().bootstrap(12, seed=3, func=fails_above_estimate, progress=False)
    assert 0 < boot.failures < 12


def test_bootstrap_func_must_return_numbers():
    with pytest.raises(TypeError, match="func must return numbers"):
        dyestuff_ml().bootstrap(2, func=lambda m: "abc", progress=False)
    with pytest.raises(TypeError, match="func must be a function"):
        dyestuff_ml().bootstrap(2, func=5, progress=False)


@pytest.mark.parametrize(("seed", "error"), [("x", TypeError), (-1, ValueError), (1.5, TypeError)])
def test_bootstrap_seed_named(seed, error):
    with pytest.raises(error, match="seed"):
        dyestuff_ml().bootstrap(2, seed=seed, progress=False)


def test_bootstrap_use_u_must_be_bool():
    with pytest.raises(TypeError, match="use_u"):
        dyestuff_ml().bootstrap(2, use_u="yes", progress=False)


def test_bootstrap_confint_t0_lacking_statistics():
    boot = small_bootstrap()
    with pytest.raises(KeyError, match=r"t0 lacks the statistics"):
        boot.confint(boot_type="basic", t0={"x": 1})
    with pytest.raises(TypeError, match="t0"):
        boot.confint(boot_type="norm", t0={name: "a" for name in boot.frame.columns})
    boot.confint(boot_type="perc", t0={"x": 1})  # the percentile interval needs no t0


# --- #38-#40: exact (R)LRT ---------------------------------------------------------


def test_exact_rlrt_argument_types():
    res = dyestuff_ml()
    with pytest.raises(TypeError, match="m_alt"):
        exact_rlrt(res, m_alt="x", m0="y", nsim=10)
    with pytest.raises(TypeError, match="grid"):
        exact_rlrt(res, nsim=10, grid="x")
    with pytest.raises(TypeError, match="res must be"):
        exact_rlrt("x", nsim=10)
    with pytest.raises(TypeError, match="m0"):
        exact_lrt(res, m0="x", nsim=10)
    with pytest.raises(TypeError, match="seed"):
        exact_lrt(res, nsim=10, seed="x")


def test_exact_lrt_refuses_a_mixed_model_as_m0():
    res = intercept_fit()
    with pytest.raises(TypeError, match="without random effects"):
        res.exact_lrt(m0=res, nsim=10, progress=False)
    ols = smf.ols("Reaction ~ Days", sleep()).fit()
    assert res.exact_lrt(m0=ols, nsim=50, seed=1, progress=False).statistic > 0


def test_exact_lrt_quantile_checked():
    result = intercept_fit().exact_rlrt(nsim=50, seed=1, progress=False)
    for bad in (1.5, float("nan"), -0.1, [0.5, 2]):
        with pytest.raises(ValueError, match="probs"):
            result.quantile(bad)
    for bad in ("x", None, True):
        with pytest.raises(TypeError, match="probs"):
            result.quantile(bad)
    assert result.quantile([0.0, 1.0]).shape == (2,)


def test_exact_rlrt_mass_at_zero_is_a_hypothesis_test_warning():
    res = sml.lmer("Yield ~ 1 + (1 | Batch)", sml.datasets.load("Dyestuff2"), check_conv=False)
    with pytest.warns(HypothesisTestWarning, match="mass .* at zero"):
        exact_rlrt(res, nsim=50, seed=1, grid=LambdaGrid(10, 11, 3), progress=False)


# --- #41: step ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"alpha_random": 1.5}, ValueError, "alpha_random"),
        ({"alpha_random": -1}, ValueError, "alpha_random"),
        ({"alpha_fixed": float("nan")}, ValueError, "alpha_fixed"),
        ({"alpha_fixed": 1.5}, ValueError, "alpha_fixed"),
        ({"alpha_fixed": "0.05"}, TypeError, "alpha_fixed"),
        ({"keep": 5}, TypeError, "keep"),
        ({"keep": [5]}, TypeError, "keep"),
        ({"reduce_fixed": "no"}, TypeError, "reduce_fixed"),
    ],
)
def test_step_arguments_checked(kwargs, error, name):
    with pytest.raises(error, match=name):
        step(intercept_fit(), **kwargs)


# --- #42, #43: allfit ---------------------------------------------------------------


@cache
def allfit_result():
    return allfit(dyestuff_ml(), optimizers=["bobyqa", "lbfgsb"], progress=False)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"llf_tol": -1}, ValueError),
        ({"llf_tol": float("nan")}, ValueError),
        ({"fixef_rtol": -1}, ValueError),
        ({"llf_tol": "x"}, TypeError),
    ],
)
def test_allfit_summary_tolerances_checked(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        allfit_result().summary(**kwargs)


def test_allfit_optimizers_argument():
    res = dyestuff_ml()
    single = allfit(res, optimizers="bobyqa", progress=False)
    assert single.optimizers == ["bobyqa"]
    twice = allfit(res, optimizers=["bobyqa", "bobyqa"], progress=False)
    assert twice.optimizers == ["bobyqa"] and len(twice.table) == 1
    with pytest.raises(TypeError, match="optimizers"):
        allfit(res, optimizers=5, progress=False)


# --- #44, #45: result objects' cutoffs and plots -----------------------------------


def test_influence_cutoffs_unknown_measure_lists_measures():
    infl = intercept_fit().influence()
    for bad in ("nope", 5, None):
        with pytest.raises(KeyError, match=r"the measures are .*cooks_distance"):
            infl.cutoffs(bad)


def test_plot_arguments_checked():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    infl = intercept_fit().influence()
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        infl.plot(ax="x")
    prof = dyestuff_profile()
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        prof.plot(ax="x")
    for conf in ([1.5], [0.0], [float("nan")]):
        with pytest.raises(ValueError, match="conf"):
            prof.plot(conf=conf)
    with pytest.raises(TypeError, match="conf"):
        prof.plot(conf="x")
    with pytest.raises(ValueError, match="ncols"):
        prof.plot(ncols=0)
    boot = small_bootstrap()
    with pytest.raises(ValueError, match="bins"):
        boot.plot(bins=0)
    with pytest.raises(ValueError, match="ncols"):
        boot.plot(ncols=-1)
    fig = prof.plot(conf=0.95)  # a single level is fine
    plt.close(fig)
    plt.close(boot.plot(bins="auto"))


# --- #46, #47: hausman -------------------------------------------------------------


def test_hausman_classic_refuses_cov_type():
    res = intercept_fit()
    for cov_type in ("nope", "CR0", "CR1S", "CR2"):
        with pytest.raises(ValueError, match="applies to method='mundlak'"):
            hausman(res, method="classic", cov_type=cov_type)
    with pytest.raises(ValueError, match="applies to method='mundlak'"):
        res.hausman(method="classic", cov_type="CR2")  # was ignored: the default passed on
    with pytest.raises(TypeError, match="cov_type"):
        hausman(res, method="classic", cov_type=1)
    assert hausman(res, method="classic", cov_type="nonrobust").cov_type == "nonrobust"


def test_hausman_entity_without_time_varying_regressor():
    res = intercept_fit()
    with pytest.raises(ValueError, match=r"no regressor of the model varies within .*'Days'"):
        res.hausman(entity="Days")
    with pytest.raises(ValueError, match="no regressor of the model varies"):
        res.hausman(method="classic", entity="Days")


# --- #54-#56, #59: multilevel helpers and datasets ----------------------------------


def test_multilevel_helpers_argument_types():
    res = intercept_fit()
    with pytest.raises(TypeError, match="res_reduced"):
        sml.variance_explained("x", res)
    with pytest.raises(TypeError, match="res_full"):
        sml.variance_explained(res, None)
    with pytest.raises(TypeError, match="data must be a pandas DataFrame"):
        sml.center([[1]], "Days")
    with pytest.raises(TypeError, match="data must be a pandas DataFrame"):
        sml.mundlak([[1]], "Days", "Subject")
    with pytest.raises(TypeError, match="name must be the name of a data set"):
        sml.datasets.load(None)
    with pytest.raises(TypeError, match="name must be"):
        sml.datasets.describe(5)


def test_mundlak_prefix_may_not_overwrite():
    data = sleep()
    with pytest.raises(ValueError, match="overwrite the columns \\['Days'\\]"):
        sml.mundlak(data, "Days", "Subject", prefix="")
    once = sml.mundlak(data, "Days", "Subject")
    twice = sml.mundlak(once, "Days", "Subject")  # a notebook cell run again: same means
    pd.testing.assert_frame_equal(twice, once)
    with pytest.raises(TypeError, match="prefix"):
        sml.mundlak(data, "Days", "Subject", prefix=None)
    assert (data["Days"] != 4.5).any()


def test_center_and_mundlak_selections():
    data = sleep()
    with pytest.raises(KeyError, match="'nope' \\(by=\\) is not in the data"):
        sml.center(data, "Days", by="nope")
    with pytest.raises(ValueError, match="columns is empty"):
        sml.center(data, [])
    with pytest.raises(ValueError, match="columns is empty"):
        sml.mundlak(data, [], "Subject")
    twice = sml.center(data, ["Days", "Days"], by="Subject")
    assert list(twice.columns).count("Days_within") == 1


# --- #57: no builtin RuntimeWarning -------------------------------------------------


def test_profile_warnings_are_statsmodels_classes():
    frame = pd.DataFrame(
        {".zeta": [-1.0, 1.0, -2.0, 2.0], "p": [0.0, 1.0, 2.0, 3.0], ".par": ["p"] * 4}
    )
    prof = ProfileResult(frame, {"p": 1.5}, {"p": -np.inf}, {"p": np.inf}, 0.0, 3.0, False)
    with pytest.warns(ConvergenceWarning, match="non-monotonic profile for p"):
        prof.confint(level=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        prof.confint(level=0.5)


# --- #60: n_jobs --------------------------------------------------------------------


def test_n_jobs_zero_runs_in_this_process_as_documented():
    """Joblib refuses 0; the package documented it as "in this process" and keeps that."""
    assert effective_jobs(0) == effective_jobs(None) == effective_jobs(1) == 1
    assert effective_jobs(-(os.cpu_count() or 1) - 50) == 1  # joblib clips to 1
    with pytest.raises(TypeError, match="n_jobs"):
        effective_jobs(1.5)
