"""What the plots draw: numbers of points, their coordinates, interval ends, labels.

Each plot's artists carry labels (``"estimate"``, ``"interval"``, ``"observed"``,
...) so that the tests can find them and compare their data with the numbers
computed by the package.
"""

from __future__ import annotations

import sys
from functools import cache

import numpy as np
import pytest
from conftest import fitted_case
from scipy import stats

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import statsmodels_lmer as sml  # noqa: E402
from statsmodels_lmer import graphics  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def artist(axis, label):
    """The (first) Line2D or collection of ``axis`` with this label."""
    for item in [*axis.lines, *axis.collections]:
        if item.get_label() == label:
            return item
    raise AssertionError(f"no artist labelled {label!r}")


def segments(axis, label="interval"):
    """(lower, upper, y) of the horizontal interval segments."""
    segs = np.array(artist(axis, label).get_segments())
    return segs[:, 0, 0], segs[:, 1, 0], segs[:, 0, 1]


def ticklabels(axis):
    return [t.get_text() for t in axis.get_yticklabels()]


@cache
def sleep():
    return fitted_case("sleepstudy_reml")[2]


# -- random effects ----------------------------------------------------------------
def test_caterpillar_points_and_intervals_are_the_conditional_modes_and_sds():
    res = sleep()
    fig = graphics.plot_ranef(res, level=0.9)
    axes = fig.axes
    assert [a.get_title() for a in axes] == ["Intercept | Subject", "Days | Subject"]
    table = res.ranef_table()
    z = stats.norm.ppf(0.95)
    order = np.argsort(res.conditional_modes[0][:, 0], kind="stable")  # by the intercept
    levels = list(np.asarray(res.model.random_terms[0].levels)[order])
    for axis, column in zip(axes, ["Intercept", "Days"]):
        part = table[table["term"] == column].set_index("grp").loc[levels]
        points = artist(axis, "estimate")
        np.testing.assert_allclose(points.get_xdata(), part["condval"], rtol=1e-12)
        np.testing.assert_array_equal(points.get_ydata(), np.arange(18))
        lower, upper, _ = segments(axis)
        np.testing.assert_allclose(lower, part["condval"] - z * part["condsd"], rtol=1e-12)
        np.testing.assert_allclose(upper, part["condval"] + z * part["condsd"], rtol=1e-12)
        assert ticklabels(axis) == levels
        assert axis.get_xlabel() == "conditional mode, 90% interval"


def test_caterpillar_of_crossed_factors_and_a_chosen_one():
    res = fitted_case("penicillin_reml")[2]
    fig = graphics.plot_ranef(res, max_labels=10)
    assert [a.get_title() for a in fig.axes] == ["Intercept | plate", "Intercept | sample"]
    assert len(artist(fig.axes[0], "estimate").get_xdata()) == 24
    assert ticklabels(fig.axes[0]) == []  # 24 levels > max_labels: no names
    assert len(ticklabels(fig.axes[1])) == 6
    fig = graphics.plot_ranef(res, group="sample", order=False)
    assert len(fig.axes) == 1
    np.testing.assert_allclose(
        artist(fig.axes[0], "estimate").get_xdata(), res.conditional_modes[1][:, 0]
    )
    with pytest.raises(KeyError, match="unknown grouping factors"):
        graphics.plot_ranef(res, group="nope")


def test_resim_plot_draws_stat_plus_minus_z_sd_and_marks_intervals_off_zero():
    frame = sleep().resim(200, seed=1)
    fig = graphics.plot_resim(frame, level=0.95, stat="mean")
    assert [a.get_title() for a in fig.axes] == ["Intercept | Subject", "Days | Subject"]
    z = stats.norm.ppf(0.975)
    for axis, term in zip(fig.axes, ["Intercept", "Days"]):
        part = frame[frame["term"] == term].sort_values("mean", kind="stable")
        np.testing.assert_allclose(artist(axis, "estimate").get_xdata(), part["mean"])
        lower, upper, _ = segments(axis)
        np.testing.assert_allclose(lower, part["mean"] - z * part["sd"])
        np.testing.assert_allclose(upper, part["mean"] + z * part["sd"])
        off_zero = ((lower > 0) | (upper < 0)).tolist()
        colours = artist(axis, "interval").get_colors()
        red = [bool(np.allclose(c[:3], matplotlib.colors.to_rgb("C3"))) for c in colours]
        assert red == off_zero
        assert any(off_zero)
    with pytest.raises(KeyError, match="resim"):
        graphics.plot_resim(frame.drop(columns="sd"))


def test_ranef_qq_plots_sorted_modes_against_normal_scores():
    res = sleep()
    fig = graphics.plot_ranef_qq(res)
    assert len(fig.axes) == 2
    for axis, column in zip(fig.axes, range(2)):
        points = artist(axis, "observed")
        ppoints = (np.arange(1, 19) - 0.5) / 18  # R's ppoints(18)
        np.testing.assert_allclose(points.get_xdata(), stats.norm.ppf(ppoints), rtol=1e-12)
        np.testing.assert_allclose(points.get_ydata(), np.sort(res.conditional_modes[0][:, column]))
        assert axis.get_xlabel() == "standard normal quantiles"


# -- residuals ---------------------------------------------------------------------
def scaled_residuals(res):
    return (np.asarray(res.model.endog) - np.asarray(res.fittedvalues)) / res.sigma


def test_residuals_vs_fitted_and_scale_location():
    res = sleep()
    fig = graphics.plot_residuals(res)
    axis = fig.axes[0]
    points = artist(axis, "observation")
    np.testing.assert_allclose(points.get_xdata(), res.fittedvalues, rtol=1e-12)
    np.testing.assert_allclose(points.get_ydata(), scaled_residuals(res), rtol=1e-10)
    smooth = artist(axis, "lowess")
    assert np.all(np.diff(smooth.get_xdata()) >= 0)
    assert axis.get_ylabel() == "scaled Pearson residual"
    assert axis.get_xlabel() == "fitted value (conditional)"
    fig = graphics.plot_scale_location(res, smooth=False)
    points = artist(fig.axes[0], "observation")
    np.testing.assert_allclose(points.get_ydata(), np.sqrt(np.abs(scaled_residuals(res))))
    with pytest.raises(AssertionError):
        artist(fig.axes[0], "lowess")


def test_residual_qq_and_weights_enter_pearson_residuals():
    res = fitted_case("sleepstudy_weights_offset_reml")[2]
    fig = graphics.plot_qq(res)
    axis = fig.axes[0]
    expected = np.sort(scaled_residuals(res) * np.sqrt(res.model.weights))
    np.testing.assert_allclose(artist(axis, "observed").get_ydata(), expected, rtol=1e-10)
    line = artist(axis, "quartile line")
    q1, q3 = np.quantile(expected, [0.25, 0.75])
    z1, z3 = stats.norm.ppf([0.25, 0.75])
    x, y = line.get_xdata(), line.get_ydata()
    slope = (y[1] - y[0]) / (x[1] - x[0])
    assert slope == pytest.approx((q3 - q1) / (z3 - z1))
    assert y[0] + slope * (z1 - x[0]) == pytest.approx(q1)


def test_diagnostics_grid_and_given_axes():
    res = sleep()
    fig = graphics.plot_diagnostics(res)
    assert [a.get_title() for a in fig.axes] == [
        "Residuals vs fitted",
        "Scale-location",
        "Normal QQ of residuals",
        "Normal QQ of Intercept | Subject",
    ]
    fig2, ax = plt.subplots()
    assert graphics.plot_residuals(res, ax=ax) is fig2


def test_group_fits_draw_each_groups_data_and_fits():
    res = sleep()
    data = fitted_case("sleepstudy_reml")[1]
    fig = graphics.plot_group_fits(res, x="Days")
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 12
    fitted, marginal = np.asarray(res.fittedvalues), np.asarray(res.fittedvalues_marginal)
    for axis, level in zip(axes, res.model.random_terms[0].levels[:12]):
        assert axis.get_title() == f"Subject {level}"
        rows = np.flatnonzero((data["Subject"] == level).to_numpy())
        rows = rows[np.argsort(data["Days"].to_numpy()[rows], kind="stable")]
        observed = artist(axis, "observed")
        np.testing.assert_allclose(observed.get_xdata(), data["Days"].to_numpy()[rows])
        np.testing.assert_allclose(observed.get_ydata(), data["Reaction"].to_numpy()[rows])
        np.testing.assert_allclose(artist(axis, "conditional fit").get_ydata(), fitted[rows])
        np.testing.assert_allclose(artist(axis, "population fit").get_ydata(), marginal[rows])
    fig = graphics.plot_group_fits(res, groups=["309", "337"], ncols=2)
    axes = fig.axes
    assert [a.get_title() for a in axes] == ["Subject 309", "Subject 337"]
    rows = np.flatnonzero((data["Subject"] == "337").to_numpy())
    np.testing.assert_allclose(artist(axes[1], "observed").get_xdata(), fitted[rows])
    assert axes[1].get_xlabel() == "fitted value" and axes[1].get_ylabel() == "Reaction"
    with pytest.raises(KeyError, match="no levels"):
        graphics.plot_group_fits(res, groups=["999"])
    with pytest.raises(KeyError, match="column"):
        graphics.plot_group_fits(res, x="Hours")


# -- profile, bootstrap, allfit, influence ----------------------------------------------
def test_profile_panels_have_the_parameters_real_names_and_interval_ends():
    res = fitted_case("dyestuff_reml")[2]
    prof = res.profile()
    fig = graphics.plot_profile(prof, conf=(0.95,))
    assert [a.get_title() for a in fig.axes] == ["sd_Intercept|Batch", "sigma", "Intercept"]
    limits = prof.confint(level=0.95)
    for axis, name in zip(fig.axes, [".sig01", ".sigma", "Intercept"]):
        # the vertical segments from zeta = 0 to -+1.96 stand at the profile limits
        vertical = [line.get_xdata() for line in axis.lines if len(line.get_xdata()) == 2]
        ends = [x[0] for x in vertical if x[0] == x[1]]
        np.testing.assert_allclose(sorted(ends), limits.loc[name], rtol=1e-10)
    corr = sleep().profile(which=".sig02")
    assert graphics.plot_profile(corr).axes[0].get_title() == "cor_Days.Intercept|Subject"
    assert corr.labels[".sigma"] == "sigma"


def test_bootstrap_histograms_titles_and_lines():
    res = fitted_case("dyestuff_reml")[2]
    boot = res.bootstrap(40, seed=3, progress=False)
    fig = boot.plot(level=0.9, bins=10)
    assert [a.get_title() for a in fig.axes] == ["sd_Intercept|Batch", "sigma", "Intercept"]
    limits = boot.confint(level=0.9)
    for axis, name in zip(fig.axes, [".sig01", ".sigma", "Intercept"]):
        heights = [patch.get_height() for patch in axis.patches]
        assert len(heights) == 10
        assert sum(heights) == np.isfinite(boot.frame[name]).sum()
        xs = [line.get_xdata()[0] for line in axis.lines]
        assert xs[0] == pytest.approx(boot.t0[name])
        np.testing.assert_allclose(xs[1:], limits.loc[name])


def test_allfit_plot_shows_differences_from_the_best_fit():
    res = fitted_case("dyestuff_reml")[2]
    af = res.allfit(optimizers=["lbfgsb", "nelder-mead"], progress=False)
    summary = af.summary()
    fig = af.plot()
    titles = [a.get_title().split("\n")[0] for a in fig.axes]
    assert titles == ["log-likelihood", "Intercept", "sd_Intercept|Batch", "sigma"]
    llf_axis = fig.axes[0]
    points = artist(llf_axis, "estimate")
    label = llf_axis.get_xlabel()  # "estimate - best fit (x 1e-9)"
    assert label.startswith("estimate - best fit")
    unit = 10.0 ** int(label.split("1e")[1].rstrip(")")) if "x 1e" in label else 1.0
    np.testing.assert_allclose(points.get_xdata() * unit, summary.llik - summary.llik.max())
    assert ticklabels(llf_axis) == ["lbfgsb", "nelder-mead"]
    best = summary.fixef.loc[summary.best, "Intercept"]
    assert fig.axes[1].get_title() == f"Intercept\nbest fit: {best:.7g}"
    fig = af.plot(which=["sigma"])
    assert len(fig.axes) == 1
    with pytest.raises(KeyError, match="unknown quantities"):
        af.plot(which="theta")


def test_influence_plot_sorted_measures_cutoff_and_highlight():
    infl = sleep().influence(progress=False)
    fig = infl.plot(which=["cooks_distance", "covratio"])
    assert [a.get_title() for a in fig.axes] == ["Cook's distance", "COVRATIO"]
    for axis, column in zip(fig.axes, ["cooks_distance", "covratio"]):
        values = infl.frame[column].sort_values(kind="stable")
        np.testing.assert_allclose(artist(axis, "estimate").get_xdata(), values)
        assert ticklabels(axis) == [str(v) for v in values.index]
        lower, upper = infl.cutoffs(column)
        lines = [a.get_xdata()[0] for a in axis.lines if a.get_label() == "cutoff"]
        np.testing.assert_allclose(lines, [v for v in (lower, upper) if np.isfinite(v)])
        assert axis.get_xlabel() == "deleting each Subject"


def test_axes_given_and_too_few_axes():
    res = sleep()
    fig, axes = plt.subplots(1, 2)
    assert graphics.plot_ranef(res, ax=axes) is fig
    with pytest.raises(ValueError, match="2 panels"):
        graphics.plot_ranef(res, ax=axes[0])


def test_plots_without_matplotlib_say_how_to_install(monkeypatch):
    res = sleep()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    for plot in (graphics.plot_ranef, graphics.plot_residuals, graphics.plot_group_fits):
        with pytest.raises(ImportError, match=r"statsmodels_lmer\[plot\]"):
            plot(res)
    assert sml.graphics.__all__  # the module itself imports without matplotlib
