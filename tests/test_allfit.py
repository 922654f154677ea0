"""allfit: refits with every optimizer, as lme4's allFit, and their agreement."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import statsmodels_lmer as sml
from statsmodels_lmer.fitting import optimizers
from statsmodels_lmer.fitting.convergence import SINGULAR_MESSAGE
from statsmodels_lmer.tools.allfit import AllFitResult, AllFitSummary, allfit

ALL = sml.available_optimizers()


def simulated_slopes(seed: int = 1) -> pd.DataFrame:
    """Random intercepts and slopes (correlated), 30 groups of 12."""
    rng = np.random.default_rng(seed)
    groups, per = 30, 12
    g = np.repeat(np.arange(groups), per)
    x = np.tile(np.linspace(-1.0, 1.0, per), groups)
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=groups)
    y = 1.0 + 2.0 * x + b[g, 0] + b[g, 1] * x + rng.normal(scale=0.7, size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g.astype(str))})


@pytest.fixture(scope="module")
def sleep_allfit() -> AllFitResult:
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    return allfit(res, progress=False)


MODELS = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", lambda: sml.datasets.load("sleepstudy")),
    "penicillin": (
        "diameter ~ 1 + (1 | plate) + (1 | sample)",
        lambda: sml.datasets.load("Penicillin"),
    ),
    "simulated_slopes": ("y ~ x + (x | g)", simulated_slopes),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_optimizers_agree_on_well_posed_models(name):
    formula, data = MODELS[name]
    res = sml.lmer(formula, data())
    af = allfit(res, progress=False)
    summary = af.summary()
    assert len(summary.agreeing) >= 4
    assert summary.all_agree, summary.as_text()
    llf = af.table["llf"]
    assert llf.max() - llf.min() < 1e-6
    assert f"all {len(ALL)} optimizers agree" in str(summary)
    assert "log-likelihood within 1e-06 of the best" in summary.as_text()
    # the original fit is among the best
    assert res.llf >= llf.max() - 1e-6
    assert af.table["converged"].all()
    assert (af.table["warnings"] == "").all()


def test_table_layout(sleep_allfit):
    table = sleep_allfit.table
    assert list(table.index) == ALL
    assert table.index.name == "optimizer"
    expected = ["ok", "converged", "warnings", "llf", "seconds", "feval", "sigma"]
    expected += ["theta.0", "theta.1", "theta.2", "Intercept", "Days"]
    assert list(table.columns) == expected
    assert table["ok"].all()
    assert (table["seconds"] > 0).all()
    assert (table["feval"] > 0).all()
    original = sleep_allfit.original
    np.testing.assert_allclose(table["Intercept"], original.params["Intercept"], rtol=1e-6)
    np.testing.assert_allclose(
        table[["theta.0", "theta.1", "theta.2"]].to_numpy(),
        np.tile(original.theta, (len(ALL), 1)),
        rtol=1e-3,
        atol=1e-5,
    )
    assert sleep_allfit.theta_names == list(original.model.theta_names)
    assert "differences in negative log-likelihoods" in repr(sleep_allfit)


def test_summary_mirrors_lme4(sleep_allfit):
    summary = sleep_allfit.summary()
    assert isinstance(summary, AllFitSummary)
    assert summary.which_ok.all()
    assert list(summary.fixef.columns) == ["Intercept", "Days"]
    assert list(summary.theta.columns) == list(sleep_allfit.original.model.theta_names)
    assert list(summary.sdcor.columns) == [
        "Subject.Intercept",
        "Subject.Days",
        "Subject.Intercept.Days",
        "sigma",
    ]
    assert summary.sdcor.loc[summary.best, "sigma"] == pytest.approx(25.5918, rel=1e-5)
    assert summary.llik.idxmax() == summary.best
    assert set(summary.times.index) == set(ALL)
    assert (summary.feval > 0).all()
    assert summary.msgs == {name: [] for name in ALL}
    frame = summary.to_frame()
    assert list(frame.columns) == [
        "agree",
        "llf",
        "llf_diff",
        "fixef_rel_diff",
        "converged",
        "n_warnings",
        "seconds",
        "feval",
    ]
    assert frame["agree"].all()
    assert (frame["llf_diff"] <= 1e-6).all()


def test_stricter_tolerance_can_split_the_optimizers(sleep_allfit):
    strict = sleep_allfit.summary(llf_tol=0.0, fixef_rtol=0.0)
    assert strict.best in strict.agreeing
    assert strict.llf_diff[strict.best] == 0.0
    if not strict.all_agree:
        assert "not agreeing:" in strict.as_text()


def test_hard_model_shows_disagreement_and_every_outlier_warns():
    """cake ``angle ~ temp + (temp | replicate)``: temp in 175..225 makes the
    slope's theta tiny and the optimum singular, and some optimizers stop short
    of it. allfit shows which ones agree, and every one that does not was
    flagged by the convergence checks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("angle ~ temp + (temp | replicate)", sml.datasets.load("cake"))
    af = allfit(res, progress=False)  # warnings are recorded, not raised
    summary = af.summary()
    assert len(summary.agreeing) >= 4, summary.as_text()
    for name in summary.agreeing:
        assert af.fits[name].is_singular()
        assert SINGULAR_MESSAGE in af.warnings[name]
    for name in summary.disagreeing:
        assert summary.llf_diff[name] > 1e-6
        flagged = [text for text in af.warnings[name] if "boundary (singular)" not in text]
        assert flagged or not af.table.at[name, "converged"], name
    text = summary.as_text()
    if summary.disagreeing:  # BOBYQA, Powell and trust-constr here (nlopt 2.11, scipy 1.17)
        assert f"{len(summary.agreeing)} of {len(ALL)} optimizers agree" in text
        assert "not agreeing: " + ", ".join(summary.disagreeing) in text


def test_refits_reuse_start_and_criterion():
    data = sml.datasets.load("sleepstudy")
    model = sml.Lmer.from_formula("Reaction ~ Days + (Days | Subject)", data)
    res = model.fit(reml=False, start_theta=[0.9, 0.0, 0.2])
    af = allfit(res, optimizers=["lbfgsb", "powell"], progress=False)
    assert list(af.table.index) == ["lbfgsb", "powell"]
    for fit in af.fits.values():
        assert not fit.reml
        np.testing.assert_array_equal(fit.optinfo["start"], [0.9, 0.0, 0.2])
    assert af.table["llf"].to_numpy() == pytest.approx(res.llf, abs=1e-6)


def test_unknown_optimizer_is_refused(sleep_allfit):
    with pytest.raises(ValueError, match="unknown or unavailable optimizers"):
        allfit(sleep_allfit.original, optimizers=["newton"], progress=False)


@pytest.fixture
def broken_optimizer():
    def broken(fun, start, lower, upper, maxiter, xtol, ftol):
        raise RuntimeError("exploded")

    optimizers.register_optimizer("broken", broken)
    yield "broken"
    optimizers.unregister_optimizer("broken")


def test_failing_optimizer_is_a_row(broken_optimizer, sleep_allfit):
    af = allfit(sleep_allfit.original, optimizers=["lbfgsb", broken_optimizer], progress=False)
    assert af.table.at["broken", "ok"] == False  # noqa: E712 (numpy bool)
    assert "RuntimeError: exploded" in af.table.at["broken", "warnings"]
    assert isinstance(af.errors["broken"], RuntimeError)
    summary = af.summary()
    assert summary.disagreeing == ["broken"]
    assert "1 optimizer(s) failed: broken" in repr(af)
    assert "2 optimizers, 1 ran without error" in summary.as_text()


def test_parallel_refits_match_serial(sleep_allfit):
    names = ["lbfgsb", "nelder-mead"]
    af = allfit(sleep_allfit.original, optimizers=names, progress=False, n_jobs=2)
    assert list(af.table.index) == names
    for name in names:
        assert af.table.at[name, "llf"] == pytest.approx(
            sleep_allfit.table.at[name, "llf"], abs=1e-9
        )


def test_progress_without_tqdm_prints_one_line_per_optimizer(monkeypatch, capsys, sleep_allfit):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    allfit(sleep_allfit.original, optimizers=["lbfgsb"], progress=True)
    assert "lbfgsb : [OK]" in capsys.readouterr().err
