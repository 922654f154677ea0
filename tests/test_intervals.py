"""Profiles, parametric bootstrap and confidence intervals against lme4 1.1-31.

Reference values: ``tests/fixtures/lme4_tools.json`` (``confint_profile``; written by
make_tools_fixtures.R) and, where noted, numbers printed by R 4.2.2 / lme4 1.1-31 with the
R code quoted next to them.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES, patsy_name
from scipy import stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import statsmodels_lmer as sml
from statsmodels_lmer import intervals as iv
from statsmodels_lmer.intervals.bootstrap import norm_inter
from statsmodels_lmer.intervals.confint import ENDS_SEARCH_NOBS
from statsmodels_lmer.intervals.parameters import percent_labels

MODELS = {
    "sleepstudy_reml": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", True),
    "dyestuff_reml": ("Yield ~ 1 + (1 | Batch)", "Dyestuff", True),
    "dyestuff_ml": ("Yield ~ 1 + (1 | Batch)", "Dyestuff", False),
}


@cache
def tools() -> dict:
    return json.loads((FIXTURES / "lme4_tools.json").read_text())["confint_profile"]


@cache
def fitted(name: str):
    formula, dataset, reml = MODELS[name]
    return sml.lmer(formula, sml.datasets.load(dataset), REML=reml)


@cache
def profiled(name: str) -> iv.ProfileResult:
    return iv.profile(fitted(name))


def reference(records: list[dict], data: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(records)
    frame.index = [patsy_name(t, data) if not t.startswith(".") else t for t in frame["term"]]
    return frame[["lower", "upper"]].astype(float)


# -- profile intervals -----------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_profile_intervals_match_lme4(name):
    case = tools()[name]
    ref = reference(case["profile"], sml.datasets.load(case["dataset"]))
    ci = iv.confint_profile(profiled(name))
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    assert list(ci.index) == list(ref.index)
    # The tolerance is 1e-3; the agreement is about 4e-6 (sleepstudy .sig01 lower)
    # and 1e-8 or better elsewhere.
    np.testing.assert_allclose(ci.to_numpy(), ref.to_numpy(), rtol=1e-5)


def test_confint_profile_method_and_parm():
    res = fitted("dyestuff_reml")
    full = iv.confint(res)
    np.testing.assert_allclose(full, iv.confint_profile(profiled("dyestuff_reml")), rtol=1e-12)
    one = iv.confint(res, parm=".sigma")
    assert list(one.index) == [".sigma"]
    np.testing.assert_allclose(one.loc[".sigma"], full.loc[".sigma"], rtol=1e-10)


def test_reml_and_ml_profiles_agree():
    # lme4 profiles REML fits on the ML deviance (devfun2 calls refitML).
    reml = iv.confint_profile(profiled("dyestuff_reml"))
    ml = iv.confint_profile(profiled("dyestuff_ml"))
    np.testing.assert_allclose(reml, ml, rtol=1e-6)
    assert profiled("dyestuff_reml").refit_ml
    assert not profiled("dyestuff_ml").refit_ml


# lme4 1.1-31, confint(m, method = "profile", level = ...), R 4.2.2:
R_INTERVALS = {
    # lmer(Reaction ~ Days + (Days | Subject), sleepstudy); level = 0.99
    "sleepstudy_99": (
        "Reaction ~ Days + (Days | Subject)",
        "sleepstudy",
        0.99,
        [
            [11.6980281448, 43.9249123405],
            [-0.6111829424, 0.8620228396],
            [3.3131614618, 10.1306219082],
            [22.1490642218, 30.0282534734],
            [232.6195386549, 270.1906662563],
            [6.2122813308, 14.7222899073],
        ],
    ),
    # lmer(Yield ~ 1 + (1 | Batch), Dyestuff2): singular, the lower limit of .sig01 is 0
    "dyestuff2": (
        "Yield ~ 1 + (1 | Batch)",
        "Dyestuff2",
        0.95,
        [[0.0, 2.084043489], [2.892831020, 4.815832552], [4.312100217, 7.019092347]],
    ),
    # lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)
    "penicillin": (
        "diameter ~ 1 + (1 | plate) + (1 | sample)",
        "Penicillin",
        0.95,
        [
            [0.6335659670, 1.1821039760],
            [1.0957893024, 3.5562909526],
            [0.4858454002, 0.6294534785],
            [21.2666273836, 24.6778176162],
        ],
    ),
}


@pytest.mark.parametrize("ends", ["grid", "search"])
@pytest.mark.parametrize("name", list(R_INTERVALS))
def test_profile_intervals_more_models(name, ends):
    formula, dataset, level, expected = R_INTERVALS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sml.SingularFitWarning)
        res = sml.lmer(formula, sml.datasets.load(dataset))
    ci = iv.confint(res, level=level, ends=ends)
    # "search" gives the exact profile's limits, lme4 its spline's: they differ by the
    # spline's error, at most 1.8e-4 relative here (see test_profile_limits_match_lme4)
    rtol = 1e-5 if ends == "grid" else 2e-4
    np.testing.assert_allclose(ci.to_numpy(), np.array(expected), rtol=rtol, atol=1e-12)
    if name == "dyestuff2":
        assert ci.iloc[0, 0] == 0.0  # the profile stops at sd = 0 before reaching zeta


def test_percent_labels_as_r():
    assert percent_labels([0.025, 0.975]) == ["2.5 %", "97.5 %"]
    assert percent_labels([0.05, 0.95]) == ["5 %", "95 %"]
    assert percent_labels([0.005, 0.995]) == ["0.5 %", "99.5 %"]
    assert percent_labels([0.0005, 0.9995]) == ["0.05 %", "99.95 %"]


# -- the profile table -----------------------------------------------------------
def lme4_profile_rows() -> pd.DataFrame:
    rows = pd.DataFrame(tools()["profile_dyestuff_reml"]["rows"])
    rows = rows.rename(columns={"(Intercept)": "Intercept"})
    rows[".par"] = rows[".par"].replace({"(Intercept)": "Intercept"})
    return rows


def test_profile_zeta_at_lme4_points():
    rows = lme4_profile_rows()
    names = [".sig01", ".sigma", "Intercept"]
    at = {name: rows.loc[rows[".par"] == name, name].to_numpy() for name in names}
    ours = iv.profile(fitted("dyestuff_reml"), at=at)
    for name in names:
        theirs = rows[(rows[".par"] == name) & (rows[".zeta"] != 0)].set_index(name)
        mine = ours.frame[ours.frame[".par"] == name].set_index(name).reindex(theirs.index)
        # agreement about 5e-11; lme4's own optimizer tolerances allow more
        np.testing.assert_allclose(mine[".zeta"], theirs[".zeta"], atol=1e-6, rtol=0)
        others = [other for other in names if other != name]
        np.testing.assert_allclose(mine[others], theirs[others], rtol=1e-5)


def test_profile_grid_is_lme4s():
    rows = lme4_profile_rows()
    ours = profiled("dyestuff_reml")
    assert list(ours.frame.columns) == [".zeta", ".sig01", ".sigma", "Intercept", ".par"]
    assert list(ours.frame[".par"]) == list(rows[".par"])  # same number of points, same order
    cols = [".zeta", ".sig01", ".sigma", "Intercept"]
    np.testing.assert_allclose(ours.frame[cols], rows[cols], rtol=1e-4, atol=1e-5)
    assert ours.cutoff == pytest.approx(math.sqrt(11.344866730144373))  # chi2(.99, 3)


def test_profile_frame_properties():
    prof = profiled("sleepstudy_reml")
    names = iv.parameter_names(fitted("sleepstudy_reml"))
    assert names == [".sig01", ".sig02", ".sig03", ".sigma", "Intercept", "Days"]
    assert list(prof.frame.columns) == [".zeta", *names, ".par"]
    assert list(dict.fromkeys(prof.frame[".par"])) == names
    est = prof.estimates
    ml = fitted("sleepstudy_reml").refit_ml()
    # refit_ml stops 1.4e-7 above the minimum (ftol_abs); the profile polishes it
    assert est[".sigma"] == pytest.approx(ml.sigma, rel=1e-5)
    assert prof.deviance == pytest.approx(ml.deviance, abs=1e-6)
    for name in names:
        part = prof.frame[prof.frame[".par"] == name].dropna()
        assert np.all(np.diff(part[name]) > 0)
        assert np.all(np.diff(part[".zeta"]) > 0)
        assert part.loc[part[name] == est[name], ".zeta"].tolist() == [0.0]
        assert part[".zeta"].abs().max() > prof.cutoff or part[name].iloc[-1] == 1.0
    assert prof.lower[".sig02"] == -1.0 and prof.upper[".sig02"] == 1.0


def test_profile_which_and_descriptive_names():
    res = fitted("sleepstudy_reml")
    prof = iv.profile(res, which="beta_", signames=False)
    assert list(dict.fromkeys(prof.frame[".par"])) == ["Intercept", "Days"]
    assert list(prof.frame.columns[1:5]) == [
        "sd_Intercept|Subject",
        "cor_Days.Intercept|Subject",
        "sd_Days|Subject",
        "sigma",
    ]
    with pytest.raises(KeyError, match="unknown parameter"):
        iv.profile(res, which="nope")


def test_fixed_effect_profile_is_an_offset_refit():
    # Weighted fit with an offset: holding Days at b is the ML fit of the model without
    # Days and with offset + b * Days. (lme4 1.1-31's fixed-effect profiles of weighted
    # fits are wrong: it warns "non-monotonic profile" and gives Days (10.49, 10.60).)
    data = sml.datasets.load("sleepstudy")
    data = data.assign(w=1 + (data["Days"] % 3) / 2, off=data["Days"] / 10)
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", data, weights="w", offset="off")
    b = 12.0
    prof = iv.profile(res, which="Days", at={"Days": [b]})
    row = prof.frame[prof.frame["Days"] == b].iloc[0]
    model = res.model
    reduced = sml.Lmer(
        np.asarray(model.endog),
        np.asarray(model.exog)[:, :1],
        model.random_terms,
        weights=model.weights,
        offset=model.offset + b * data["Days"].to_numpy(),
    ).fit(reml=False, start_theta=res.theta)
    base = prof.deviance
    assert row[".zeta"] == pytest.approx(math.sqrt(reduced.deviance - base), rel=1e-6)
    assert row["Intercept"] == pytest.approx(reduced.params[0], rel=1e-6)
    assert row[".sigma"] == pytest.approx(reduced.sigma, rel=1e-5)
    ci = iv.confint(res, parm=["Days"])  # sensible, unlike lme4's: close to Wald
    wald = iv.confint(res, method="wald", parm=["Days"])
    np.testing.assert_allclose(ci, wald, rtol=0.02)


# -- profile limits found directly (confint ends="search") -----------------------------
@cache
def limits(name: str) -> pd.DataFrame:
    return iv.profile_limits(fitted(name))


@pytest.mark.parametrize("name", list(MODELS))
def test_profile_limits_match_lme4(name):
    case = tools()[name]
    ref = reference(case["profile"], sml.datasets.load(case["dataset"]))
    ci = limits(name)
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    assert list(ci.index) == list(ref.index)
    # lme4 interpolates its grid with a spline; the search finds the exact profile's
    # limits (next test). They differ by the spline's error: 1.7e-4 relative at
    # Dyestuff's .sig01 lower limit, 5e-5 or less elsewhere.
    np.testing.assert_allclose(ci.to_numpy(), ref.to_numpy(), rtol=2e-4)
    assert iv.confint(fitted(name), ends="search").equals(ci)


@pytest.mark.parametrize("name", ["dyestuff_reml", "sleepstudy_reml"])
def test_profile_limits_are_where_zeta_reaches_the_quantile(name):
    res = fitted(name)
    case = tools()[name]
    ref = reference(case["profile"], sml.datasets.load(case["dataset"]))
    ci = limits(name)
    target = stats.norm.ppf(0.975)
    for par in ci.index:
        ours, lme4s = ci.loc[par].to_numpy(), ref.loc[par].to_numpy()
        prof = iv.profile(res, which=par, at={par: [*ours, *lme4s]}).frame.set_index(par)
        np.testing.assert_allclose(prof.loc[ours, ".zeta"], [-target, target], atol=1e-6)
        # lme4's spline limits are up to 1.2e-4 off in zeta (Dyestuff .sig01 lower)
        np.testing.assert_allclose(prof.loc[lme4s, ".zeta"], [-target, target], atol=2e-4)


def test_confint_ends_auto_is_the_grid_on_small_data():
    res = fitted("dyestuff_reml")
    assert res.model.nobs <= ENDS_SEARCH_NOBS
    assert iv.confint(res).equals(iv.confint(res, ends="grid"))
    with pytest.raises(ValueError, match="ends must be"):
        iv.confint(res, ends="spline")


def test_profile_and_limits_same_in_workers():
    res = fitted("sleepstudy_reml")
    pd.testing.assert_frame_equal(
        iv.profile(res, n_jobs=2).frame, profiled("sleepstudy_reml").frame
    )
    pd.testing.assert_frame_equal(iv.profile_limits(res, n_jobs=2), limits("sleepstudy_reml"))
    with pytest.raises(TypeError, match="n_jobs"):
        iv.profile_limits(res, n_jobs=1.5)


# -- Wald ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_wald_intervals_match_lme4(name):
    case = tools()[name]
    data = sml.datasets.load(case["dataset"])
    ref = reference(case["wald"], data)
    # at lme4's own estimates, to compare the formula rather than the optimizers
    res = fitted(name).model.results_at(case["theta"], reml=case["REML"])
    ci = iv.confint(res, method="Wald")
    assert list(ci.index) == list(ref.index)
    n_var = len(ci) - len(res.params)
    assert ci.iloc[:n_var].isna().all().all()
    np.testing.assert_allclose(ci.iloc[n_var:], ref.iloc[n_var:], rtol=1e-8)


# -- bootstrap -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def boot300():
    return iv.bootstrap(fitted("sleepstudy_reml"), 300, seed=2024, progress=False)


def test_bootstrap_frame(boot300):
    res = fitted("sleepstudy_reml")
    assert boot300.frame.shape == (300, 6)
    assert list(boot300.frame.columns) == iv.parameter_names(res)
    assert boot300.failures == 0
    assert boot300.t0[".sigma"] == pytest.approx(res.sigma)
    assert boot300.t0["Days"] == pytest.approx(res.params["Days"])
    assert boot300.frame.notna().all().all()


def test_bootstrap_reproducible_also_in_parallel():
    res = fitted("dyestuff_reml")
    a = iv.bootstrap(res, 24, seed=5, progress=False)
    b = iv.bootstrap(res, 24, seed=5, progress=False)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    c = iv.bootstrap(res, 24, seed=5, progress=False, n_jobs=2)
    pd.testing.assert_frame_equal(a.frame, c.frame)
    d = iv.bootstrap(res, 24, seed=6, progress=False)
    assert not np.allclose(a.frame.to_numpy(), d.frame.to_numpy())


def test_bootstrap_records_what_replays_a_generator_seed():
    """A Generator seed was kept only as its printed form, which cannot replay the run."""
    res = fitted("sleepstudy_reml")
    generator = np.random.default_rng(17)
    boot = iv.bootstrap(res, 6, seed=generator, progress=False)
    replay = np.random.default_rng()
    replay.bit_generator.state = boot.seed["bit_generator_state"]
    again = iv.bootstrap(res, 6, seed=replay, progress=False)
    pd.testing.assert_frame_equal(boot.frame, again.frame)
    sequence = np.random.SeedSequence(99)
    record = iv.bootstrap(res, 2, seed=sequence, progress=False).seed
    assert record == {"entropy": 99, "spawn_key": ()}
    assert iv.bootstrap(res, 2, seed=np.int64(5), progress=False).seed == 5


def fails_above_mean(fit):
    """A statistic that raises for part of the replicates (module level: it pickles)."""
    if fit.params["Intercept"] > 1530.0:
        raise np.linalg.LinAlgError("made to fail")
    return pd.Series({"mu": fit.params["Intercept"], "sigma": fit.sigma})


def test_bootstrap_failures_are_nan_rows():
    res = fitted("dyestuff_reml")
    with pytest.warns(ConvergenceWarning, match="bootstrap refits failed"):
        boot = iv.bootstrap(res, 30, seed=3, func=fails_above_mean, progress=False)
    frame = boot.frame
    failed = frame["mu"].isna()
    assert 0 < failed.sum() < 30
    assert boot.failures == failed.sum()
    assert frame.loc[failed, "sigma"].isna().all()
    assert sum(boot.errors.values()) == failed.sum()
    assert (frame.loc[~failed, "mu"] <= 1530.0).all()


# lme4 1.1-31 (R 4.2.2): set.seed(101)
#   confint(lmer(Reaction ~ Days + (Days | Subject), sleepstudy), method = "boot", nsim = 5000)
LME4_BOOT = {
    ".sig01": (12.49402001, 35.53689851),
    ".sig02": (-0.49570163, 0.90696461),
    ".sig03": (3.34874529, 8.28534698),
    ".sigma": (22.68375479, 28.46756854),
    "Intercept": (238.51872020, 264.92182771),
    "Days": (7.36239154, 13.45682928),
}


def test_bootstrap_percentiles_agree_with_lme4_bootmer(boot300):
    # Monte-Carlo tolerance without assumptions on the distribution: lme4's 2.5% / 97.5%
    # point (from 5000 replicates, itself a quantile estimate with small error) must fall
    # within 3.5 binomial standard deviations of the rank n p among our n = 300 replicates.
    n = len(boot300.frame)
    for name, limits in LME4_BOOT.items():
        sample = np.sort(boot300.frame[name].to_numpy())
        for p, limit in zip((0.025, 0.975), limits):
            rank = np.searchsorted(sample, limit)
            z = (rank - n * p) / math.sqrt(n * p * (1 - p))
            assert abs(z) < 3.5, (name, p, z)


def test_bootstrap_intervals_near_profile_intervals(boot300):
    # Different methods (percentiles of REML refits vs the ML profile), so they agree
    # only up to a method difference plus Monte-Carlo error. In units of the parameter's
    # standard error (profile half-width / 1.96): the MC error of a 2.5% quantile from
    # 300 replicates is about 0.15 SE; lme4's own 5000-replicate intervals differ from
    # its profile ones by up to 0.45 SE, and by 0.75 SE for the correlation .sig02, whose
    # bootstrap distribution piles up against 1. Allowed: 0.75 SE, 1.25 SE for .sig02.
    boot = iv.confint_bootstrap(boot300)
    prof = iv.confint_profile(profiled("sleepstudy_reml"))
    assert list(boot.index) == list(prof.index)
    se = (prof.iloc[:, 1] - prof.iloc[:, 0]) / (2 * 1.959964)
    gap = (boot - prof).abs().div(se, axis=0).max(axis=1)
    allowed = pd.Series(0.75, index=gap.index)
    allowed[".sig02"] = 1.25
    assert (gap < allowed).all(), gap


def test_confint_boot_has_the_profile_rows():
    res = fitted("sleepstudy_reml")
    ci = iv.confint(res, method="boot", nsim=20, seed=1)
    prof = iv.confint_profile(profiled("sleepstudy_reml"))
    assert list(ci.index) == list(prof.index)
    assert list(ci.columns) == list(prof.columns)
    assert (ci.iloc[:, 0] < ci.iloc[:, 1]).all()
    named = iv.confint(res, method="boot", nsim=5, seed=1, signames=False, level=0.9)
    assert list(named.columns) == ["5 %", "95 %"]
    assert named.index[0] == "sd_Intercept|Subject"


def test_confint_boot_types(boot300):
    perc = iv.confint_bootstrap(boot300)
    basic = iv.confint_bootstrap(boot300, boot_type="basic")
    t0 = pd.Series(boot300.t0)
    np.testing.assert_allclose(basic.iloc[:, 0], 2 * t0 - perc.iloc[:, 1])
    norm = iv.confint_bootstrap(boot300, boot_type="norm")
    assert (norm.iloc[:, 0] < t0).all() and (norm.iloc[:, 1] > t0).all()
    with pytest.raises(ValueError, match="boot_type"):
        iv.confint_bootstrap(boot300, boot_type="bca")


def test_norm_inter_is_boot_packages():
    # boot:::norm.inter(1:99 + 0, c(0.025, 0.975)): (R + 1) alpha = 2.5, 97.5
    t = np.arange(1.0, 100.0)
    out = norm_inter(t, np.array([0.025, 0.975]))
    from scipy import stats

    lo = 2 + (stats.norm.ppf(0.025) - stats.norm.ppf(0.02)) / (
        stats.norm.ppf(0.03) - stats.norm.ppf(0.02)
    )
    assert out[0] == pytest.approx(lo)
    assert out[1] == pytest.approx(100 - lo)


def test_confint_rejects_unknown_method():
    with pytest.raises(ValueError, match="method must be"):
        iv.confint(fitted("dyestuff_reml"), method="bayes")


# -- plot ----------------------------------------------------------------------------
def test_plot_profile_png(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from statsmodels_lmer.graphics import plot_profile

    prof = profiled("sleepstudy_reml")
    fig = plot_profile(prof)
    path = tmp_path / "profile.png"
    fig.savefig(path)
    assert path.stat().st_size > 1000
    assert len([a for a in fig.axes if a.get_visible()]) == 6
    fig2, axes = plt.subplots(1, 2)
    assert plot_profile(prof, ax=axes, which=[".sig02", "Days"], absval=True) is fig2
    with pytest.raises(ValueError, match="Axes given"):
        plot_profile(prof, ax=axes[0])
    plt.close("all")


def test_plot_profile_without_matplotlib(monkeypatch):
    from statsmodels_lmer.graphics import plot_profile

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"statsmodels_lmer\[plot\]"):
        plot_profile(profiled("dyestuff_reml"))


def test_bootstrap_of_unwrapped_results_passes_pandas_results_to_func():
    # results.py's delegating methods pass the unwrapped LmerResults
    res = fitted("dyestuff_reml")._results
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # some replicates fail on purpose
        boot = res.bootstrap(4, seed=1, func=fails_above_mean, progress=False)
    assert boot.t0["mu"] == pytest.approx(1527.5)


def test_profile_limits_of_a_weighted_fit_are_the_roots_of_zeta():
    """With these weights one profile point's inner BOBYQA stopped on ftol 1e-8 short of its
    optimum (zeta 1.983772 instead of 1.983536): the upper Days limit was 13.544879 where
    zeta is 1.959730; the root is 13.545272. Each limit is checked by an ML fit with the
    coefficient held there through an offset."""
    data = sml.datasets.load("sleepstudy")
    data["w"] = pd.read_csv(FIXTURES / "data" / "sleepstudy_weights.csv")["w"].to_numpy()
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", data, weights="w")
    limits = res.confint(method="profile").loc["Days"].to_numpy()
    deviance = res.refit_ml().deviance
    target = stats.norm.ppf(0.975)
    for limit, sign in zip(limits, (-1, 1)):
        held = sml.lmer(
            "Reaction ~ 1 + (Days | Subject)",
            data.assign(held=data["Days"] * limit),
            weights="w",
            offset="held",
            REML=False,
        )
        zeta = math.sqrt(held.deviance - deviance)
        assert zeta == pytest.approx(target, abs=2e-6), (sign, limit)


def test_limit_guess_parabola_without_numpys_rank_warning():
    from statsmodels_lmer.intervals.profile import quadratic_through

    x, y = np.array([-1.2, 0.3, 2.0]), np.array([0.5, -0.7, 3.1])
    expected = np.polyval(np.polyfit(x, y, 2), 1.96)
    assert quadratic_through(x, y, 1.96) == pytest.approx(expected, rel=1e-12)
    near = np.array([1.0, 1.0 + 2e-16, 1.0 + 4e-16])  # three zetas equal but for round-off
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # np.polyfit warned RankWarning here (56 times a confint)
        guess = quadratic_through(near, np.array([0.1, 0.2, 0.3]), 1.96)
    assert not np.isfinite(guess) or abs(guess) > 1e10
