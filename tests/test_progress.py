"""Progress bars of long jobs: the package switch, the delay, and what each job reports."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import fitted_case

import statsmodels_lmer as sml
from statsmodels_lmer._parallel import (
    PROGRESS_VARIABLE,
    EvaluationProgress,
    Progress,
    progress_from_environment,
)
from statsmodels_lmer.fitting.fit import fit_theta
from statsmodels_lmer.fitting.options import FitOptions
from statsmodels_lmer.inference.derivatives import (
    hessian,
    hessian_evaluations,
    jacobian,
    jacobian_evaluations,
)
from statsmodels_lmer.inference.kenward_roger import KenwardRoger
from statsmodels_lmer.inference.satterthwaite import Satterthwaite, analytic_steps


def test_switch_restores_and_checks_its_arguments():
    before = sml.progress_settings()
    with sml.set_progress(False):
        assert sml.progress_settings()["enabled"] is False
        assert not Progress(3, "x").enabled  # None follows the setting
        assert Progress(3, "x", enabled=True).enabled  # an explicit keyword wins
    assert sml.progress_settings() == before
    with sml.set_progress(True, delay=0.5):
        bar = Progress(3, "x")
        assert bar.enabled and bar.delay == 0.5
        bar.close()
    assert Progress(3, "x", enabled=True).delay == 0.0
    with pytest.raises(TypeError, match="True or False"):
        sml.set_progress("no")
    with pytest.raises(ValueError, match="non-negative"):
        sml.set_progress(True, delay=-1)


def test_blocks_that_overlap_in_threads_withdraw_only_their_own_setting():
    """Two threads' `with set_progress(False)` blocks, the first ending first: each
    restored the settings it had seen, so the bars stayed off for the session."""
    before = sml.progress_settings()
    first = sml.set_progress(False)
    second = sml.set_progress(False, delay=5)
    first.__exit__(None, None, None)
    assert sml.progress_settings() == {"enabled": False, "delay": 5.0}  # the second's
    second.__exit__(None, None, None)
    assert sml.progress_settings() == before
    with sml.set_progress(True, delay=0.25):
        inner = sml.set_progress(False)
        inner.__exit__(None, None, None)
        assert sml.progress_settings() == {"enabled": True, "delay": 0.25}
    assert sml.progress_settings() == before


def test_environment_variable_values():
    assert progress_from_environment(None)
    assert progress_from_environment("1") and progress_from_environment("yes")
    for off in ("0", "false", " OFF ", "no"):
        assert not progress_from_environment(off)
    assert PROGRESS_VARIABLE == "STATSMODELS_LMER_PROGRESS"


def test_evaluation_counts_are_those_of_the_derivatives():
    calls = []

    def scalar(x):
        calls.append(1)
        return float(np.sum(x**3))

    for k in (1, 3):
        calls.clear()
        hessian(scalar, np.ones(k))
        assert len(calls) == hessian_evaluations(k)
        calls.clear()
        jacobian(lambda x: np.atleast_1d(scalar(x)), np.ones(k))
        assert len(calls) == jacobian_evaluations(k)


def fresh_fit(name):
    case = fitted_case(name)[0]
    model = fitted_case(name)[2].model
    return model.fit(reml=case["REML"])


def test_satterthwaite_shows_a_bar_for_long_runs_only(capsys):
    res = fresh_fit("sleepstudy_reml")
    Satterthwaite(res)  # default: the package setting, 2 s delay: silent here
    assert "Satterthwaite" not in capsys.readouterr().err
    with sml.set_progress(True, delay=0):  # as if it were slow
        Satterthwaite(res, method="numderiv")
    err = capsys.readouterr().err
    k = len(res.theta) + 1
    total = hessian_evaluations(k) + jacobian_evaluations(k)
    assert "Satterthwaite df" in err and f"{total}/{total}" in err
    with sml.set_progress(True, delay=0):  # the default: analytic gradients
        Satterthwaite(res)
    err = capsys.readouterr().err
    total = analytic_steps(k)
    assert total == 2 * len(res.theta) + 1
    assert "Satterthwaite df" in err and f"{total}/{total} " in err and "gradient" in err
    with sml.set_progress(False):
        ddf = res.ddf  # computed through the package setting
    assert capsys.readouterr().err == ""
    assert np.all(np.asarray(ddf) > 0)


def test_kenward_roger_and_profile_report_what_they_do(capsys):
    res = fitted_case("penicillin_reml")[2]
    KenwardRoger(res, progress=True)
    err = capsys.readouterr().err
    assert "Kenward-Roger" in err and "6/6" in err  # 2 variance parameters: 2 * 2 + 2 steps
    dye = fitted_case("dyestuff_reml")[2]
    dye.profile(which=".sigma", progress=True)
    err = capsys.readouterr().err
    assert "profile" in err and "1/1" in err and ".sigma" in err
    dye.profile(which=".sigma", progress=False)
    assert capsys.readouterr().err == ""


def test_bootstrap_allfit_and_exact_test_follow_the_switch(capsys):
    dye = fitted_case("dyestuff_reml")[2]
    with sml.set_progress(True, delay=0):
        dye.bootstrap(3, seed=1)
        dye.allfit(optimizers=["lbfgsb"])
        dye.exact_rlrt(nsim=100, seed=1)
    err = capsys.readouterr().err
    assert "bootstrap" in err and "allfit" in err and "lbfgsb : [OK]" in err
    assert "exact RLRT: simulating the null distribution" in err
    with sml.set_progress(False):
        dye.bootstrap(3, seed=1)
        dye.confint(method="boot", nsim=3, seed=1)
    assert capsys.readouterr().err == ""


# --- a fit's own bar (fit(progress=...), EvaluationProgress)


def test_evaluation_progress_counts_and_keeps_the_lowest_value(capsys):
    quiet = EvaluationProgress("fit", enabled=False)
    for value in (3.0, 1.5, np.inf, 2.0):
        quiet(value)
    quiet.close()
    assert quiet.count == 4 and quiet.lowest == 1.5
    assert capsys.readouterr().err == ""
    shown = EvaluationProgress("fit (ML)", enabled=True)
    shown.set_stage("convergence derivatives")
    for value in (10.0, 7.25, 8.0):
        shown(value)
    shown.close()
    err = capsys.readouterr().err
    assert "fit (ML)" in err and "3 evaluations" in err
    assert "convergence derivatives, lowest 7.25" in err
    with sml.set_progress(True, delay=60):  # the default waits for the delay
        late = EvaluationProgress("fit")
        late(1.0)
        late.close()
    assert late.enabled and late.count == 1 and capsys.readouterr().err == ""


def lowest_shown(err: str) -> float:
    return float(err.rsplit("lowest ", 1)[1].split("]")[0])


@pytest.mark.parametrize("name", ["sleepstudy_reml", "penicillin_reml"])
def test_fit_bar_counts_the_evaluations_and_shows_the_optimum(capsys, name):
    res = fitted_case(name)[2]
    model = res.model
    refit = model.fit(reml=res.reml, progress=True)
    err = capsys.readouterr().err
    assert f"fit ({'REML' if res.reml else 'ML'})" in err
    count = int(err.rsplit(" evaluations [", 1)[0].rsplit(" ", 1)[1])
    assert count >= refit.optinfo["feval"]  # the checks' evaluations as well
    # the lowest value seen is the optimum (to the 10 digits shown)
    assert lowest_shown(err) == pytest.approx(refit.objective, rel=1e-9)
    assert refit.optinfo["control"]["progress"] is True
    devfun = model.devfun(res.reml)
    options = FitOptions(progress=True)
    fit_theta(devfun, model.theta_start, model.theta_lower, options, model.nobs)
    assert devfun.n_evaluations > 0 and devfun.monitor is None  # reset after the fit
    assert "fit (" in capsys.readouterr().err
    model.fit(reml=res.reml, progress=False)
    assert capsys.readouterr().err == ""


def test_fit_bar_on_the_gradient_path_counts_gradients(capsys):
    data = sml.datasets.load("sleepstudy")
    model = sml.Lmer.from_formula("Reaction ~ Days + (Days | Subject)", data)
    res = model.fit(method="lbfgsb", progress=True)
    err = capsys.readouterr().err
    assert "fit (REML)" in err and res.optinfo["optimizer"] == "lbfgsb"
    assert lowest_shown(err) == pytest.approx(res.objective, rel=1e-9)


def test_fit_bar_follows_the_switch_and_is_quiet_inside_a_job(capsys):
    res = fitted_case("dyestuff_reml")[2]
    res.model.fit()  # default: drawn only after two seconds
    assert capsys.readouterr().err == ""
    with sml.set_progress(True, delay=0):
        res.model.fit()
        assert "fit (REML)" in capsys.readouterr().err
        with Progress(1, "job"):
            res.model.fit()  # a job's fits draw no bar of their own
            assert not EvaluationProgress("fit").enabled
            assert EvaluationProgress("fit", enabled=True).enabled  # unless asked
        err = capsys.readouterr().err
        assert "job" in err and "fit (REML)" not in err
        assert EvaluationProgress("fit").enabled  # the job is over
    with sml.set_progress(False):
        res.model.fit()
    assert capsys.readouterr().err == ""


def test_fit_progress_keyword_is_checked_and_lmer_passes_it_on(capsys):
    data = sml.datasets.load("Dyestuff")
    with pytest.raises(TypeError, match="progress"):
        sml.lmer("Yield ~ 1 + (1 | Batch)", data, progress="yes")
    res = sml.lmer("Yield ~ 1 + (1 | Batch)", data, progress=True)
    assert "fit (REML)" in capsys.readouterr().err
    assert pickle.loads(pickle.dumps(res.model.devfun(True))).monitor is None


def test_a_bar_drawn_late_counts_its_clock_and_rate_from_the_start():
    # a fit's bar appears after the delay: its first update carried every
    # evaluation so far over a few microseconds ("80060 evaluations/s")
    pytest.importorskip("tqdm")
    bar = Progress(None, "fit", " evaluations", enabled=True, elapsed=4.0)
    bar.update(20)
    meter = bar._bar.format_dict  # tqdm's own state
    bar.close()
    assert meter["elapsed"] >= 4.0
    assert meter["rate"] is None or meter["rate"] <= 20 / 4.0 + 1e-9
