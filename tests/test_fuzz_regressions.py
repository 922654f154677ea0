"""Cases found by differential fuzzing against lme4, with lme4's reference numbers.

Data: ``tests/fixtures/data/fuzz_*.csv.gz``; references:
``tests/fixtures/fuzz_regressions.json`` from ``make_fuzz_fixtures.R``. Each
case has lme4's default fit (``"lme4"``) and the lowest optimum known
(``"best"``, lme4 fitted from a start near it), which our fits must reach.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

import statsmodels_lmer as sml
from statsmodels_lmer.engine.sparse import BACKEND_VARIABLE
from statsmodels_lmer.exceptions import LmerConvergenceWarning

HAS_NLOPT = importlib.util.find_spec("nlopt") is not None


@cache
def reference(key: str) -> dict:
    return json.loads((FIXTURES / "fuzz_regressions.json").read_text())[key]


@cache
def fitted(key: str, method: str | None = None):
    """Our fit of a case (cached), and the warnings it emitted."""
    case = reference(key)
    data = pd.read_csv(FIXTURES / "data" / f"{case['data']}.csv.gz")
    if "x_scale" in case:
        data = data.assign(x=data["x"] * case["x_scale"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = sml.Lmer.from_formula(case["formula"], data)
        res = model.fit(reml=case["REML"], method=method)
    return res, [w for w in caught if issubclass(w.category, LmerConvergenceWarning)]


def objective(res) -> float:
    return float(-2 * res.llf)


def assert_at_best(res, best: dict) -> None:
    """At the best optimum: objective to 1e-7 relative (ours may be lower: lme4's
    BOBYQA stops on ftol_abs 1e-8), fixed effects and SEs to 1e-3 of an SE (the
    references are BOBYQA's stops on surfaces flat in theta, a few 1e-4 of an SE
    apart from the optimum)."""
    assert objective(res) <= best["objective"] * (1 + 1e-7)
    assert objective(res) >= best["objective"] - 1e-5
    se = np.asarray(best["se"])
    np.testing.assert_allclose(
        np.asarray(res.params), list(best["beta"].values()), atol=1e-3 * se.min()
    )
    np.testing.assert_allclose(np.asarray(res.bse), se, rtol=1e-3)


MIRROR_METHODS = [
    None,
    pytest.param("bobyqa", marks=pytest.mark.skipif(not HAS_NLOPT, reason="nlopt")),
]


@pytest.mark.parametrize("method", MIRROR_METHODS)
@pytest.mark.parametrize("key", ["mirror_ml", "mirror_reml"])
def test_edge_restart_looks_across_the_mirror_plane(key, method):
    # lme4 (and our BOBYQA before the fix) stop at theta_1 = 0, theta_2 != 0:
    # 0.97 (ML) and 0.27 (REML) above the optimum of the same model.
    case = reference(key)
    res, _ = fitted(key, method)
    assert case["lme4"]["objective"] - case["best"]["objective"] > 0.2
    assert res.optinfo["restarted"] or res.optinfo["optimizer"] == "lbfgsb"
    assert_at_best(res, case["best"])
    if key == "mirror_ml":  # interior; the REML optimum has theta_3 at (or 1e-4 from) 0
        assert not res.is_singular()


MIRROR_AND_SADDLE_METHODS = MIRROR_METHODS + ["lbfgsb"]


@pytest.mark.parametrize("method", MIRROR_AND_SADDLE_METHODS)
def test_collapsed_term_is_released_along_a_correlated_direction(method):
    # BOBYQA (the default on the nested layout, as lme4's) stopped where the whole
    # (x | h) term is 0: a stationary point in its theta, 6.7e-3 above the optimum,
    # and the verifying restart (gain < 1e-6) called it verified. The one-sided
    # differences look along e_i e_i' of the term's covariance only; the criterion
    # falls along a correlated v v' (probed with T's first column at 1e-3).
    res, _ = fitted("saddle_ml", method)
    best = reference("saddle_ml")["best"]
    assert objective(res) <= best["objective"] * (1 + 1e-9)
    assert reference("saddle_ml")["lme4"]["objective"] - best["objective"] > 6e-3
    np.testing.assert_allclose(res.theta, best["theta"], atol=5e-4)
    assert res.optinfo["restarted"] or res.optinfo["optimizer"] == "lbfgsb"


@pytest.mark.skipif(not HAS_NLOPT, reason="nlopt")
def test_collapsed_term_is_released_after_an_edge_restart():
    # From this start, with the response changed at round-off level (as the engine's
    # sums change when they are formed otherwise), BOBYQA's edge restart (a theta
    # element on its bound with a falling slope) ended on the collapsed (x | h) term,
    # 6.7e-3 above the optimum: the release along correlated directions was tried only
    # after a mirror restart. It is now tried after any restart.
    case = reference("saddle_ml")
    data = pd.read_csv(FIXTURES / "data" / f"{case['data']}.csv.gz")
    model = sml.Lmer.from_formula(case["formula"], data)
    nudged = model.with_response(np.asarray(model.endog) * (1 + 1e-12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = nudged.fit(
            reml=case["REML"], method="bobyqa", start_theta=[0.39, 0.73, 1.36, 1.27, 0.41, 0.5]
        )
    best = case["best"]["objective"]
    assert res.objective <= best * (1 + 1e-9)
    np.testing.assert_allclose(res.theta, case["best"]["theta"], atol=5e-4)


@pytest.mark.parametrize("factor", [1e-6, 1e-3, 1e3, 1e6])
@pytest.mark.parametrize("method", MIRROR_METHODS)
def test_extreme_column_scales_reach_the_optimum(factor, method):
    # x on the scale 1e-6: L-BFGS-B stopped after 6 calls at the start's theta_x = 1
    # (every gradient element below its tolerance), 68 deviance units above the optimum,
    # and reported converged (lme4: 28 units above, with a convergence warning). The
    # optimizer now works on theta times the columns' root mean squares; the ML deviance
    # does not depend on the scale of x, so the best optimum is the unscaled data's.
    case = reference("scale_ml")
    data = pd.read_csv(FIXTURES / "data" / f"{case['data']}.csv.gz")
    data = data.assign(x=data["x"] * factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.Lmer.from_formula(case["formula"], data).fit(reml=False, method=method)
    best = case["best"]
    assert objective(res) <= best["objective"] * (1 + 1e-9)
    # the reference theta is a BOBYQA stop in R (objective 3e-10 above ours): 1e-4 relative
    np.testing.assert_allclose(res.theta * [1, factor, factor], best["theta"], rtol=1e-4)
    scale = res.optinfo["theta_scale"]
    np.testing.assert_allclose(scale[1:], np.sqrt(np.mean(data["x"] ** 2)), rtol=1e-12)
    assert scale[0] == 1.0


def test_ordinary_scales_keep_lme4s_parametrization():
    res, _ = fitted("mirror_ml")
    assert res.optinfo["theta_scale"] is None


# lmerTest's ranova refit of y ~ x * z + (1 | g) (weights w, offset o; 13 rows of
# the fuzz-winfer exploration batch, case 23): a variance with a local minimum
# inside (theta 1.82, REML criterion 44.5565, where both our optimizers
# stopped) and a lower one at 0, lme4's (-2 logLik of lmerTest's ranova row)
BOUNDARY_MINIMUM_REML = 44.3566188019142


def test_interior_fit_is_probed_against_the_boundary():
    data = pd.read_csv(FIXTURES / "data" / "boundary_probe.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit is singular, as lme4's
        res = sml.lmer("y ~ x * z + (1 | g)", data, weights="w", offset="o")
    assert res.objective == pytest.approx(BOUNDARY_MINIMUM_REML, rel=1e-9)
    assert res.optinfo["boundary_probe"] == {
        "probed": 1,
        "lowest": pytest.approx(BOUNDARY_MINIMUM_REML, rel=1e-9),
        "adopted": True,
    }
    assert res.converged


# fuzz-engine seed 160: y ~ x + (z | h) + (0 + f | g) + (1 | g:h) + (1 | site) on
# 65 rows, REML, z of scale 0.002 (11 theta). lme4's default fit (interior, with
# "Hessian is numerically singular"): REML criterion -227.15163 (tests/fixtures/
# fuzz_engine.json). L-BFGS-B and BOBYQA in the columns' units stopped at singular
# points -225.5594 and -224.7338 and the fit was reported converged. BOBYQA in theta
# (lme4's fit) stops at -227.1518; L-BFGS-B from there at a verified singular point,
# -227.2169 (NLopt's Nelder-Mead from lme4's start stops at -227.2169 as well).
LOWEST_SEED_160 = -227.2168947


@pytest.mark.skipif(not HAS_NLOPT, reason="lme4's own fit is BOBYQA (nlopt)")
def test_singular_fit_in_column_units_is_checked_by_lme4s_own_fit():
    from fuzz_engine_designs import random_design

    design = random_design(160)
    lme4 = next(
        case
        for case in json.loads((FIXTURES / "fuzz_engine.json").read_text())
        if case["seed"] == 160
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular, as the lowest point is
        res = sml.Lmer.from_formula(design.formula, design.frame).fit(reml=True)
    assert res.objective < lme4["objective"] - 0.06
    assert res.objective == pytest.approx(LOWEST_SEED_160, abs=1e-6)
    second = res.optinfo["second_start"]
    assert second["objective"] > lme4["objective"] + 1.0  # BOBYQA in column units
    assert second["unscaled"]["adopted"] and not second["adopted"]
    unscaled = second["unscaled"]["objective"]
    assert unscaled == pytest.approx(lme4["objective"], abs=1e-3)  # lme4's own fit
    assert res.converged and res.is_singular()


# tests/fixtures/medium_designs.py, design 34: y ~ x + (1 | h) + (0 + f | g) + (1 | site)
# + (1 | g:h), 16,756 rows, ML, on the sparse path (no gradient: BOBYQA). lme4 1.1-31's
# deviance: 27117.3196054952 (a singular point, where our first run stops too). Our
# restart from the edge falls to 27115.2890; with NLopt's own first step it took 4,326
# evaluations (35 s) to get there, with a tenth of each element 257.
LME4_MEDIUM_34 = 27117.3196054952


def _fit_medium_34(monkeypatch, backend: str):
    """Fit medium design 34 with the sparse backend ``backend`` (skips if absent)."""
    pytest.importorskip("sksparse.cholmod" if backend == "cholmod" else "qdldl")
    monkeypatch.setenv(BACKEND_VARIABLE, backend)
    sys.path.insert(0, str(FIXTURES))
    from medium_designs import medium_design

    design = medium_design(34)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular
        model = sml.Lmer.from_formula(design.formula, design.frame, **design.model_keywords())
        return model.fit(reml=design.reml)


@pytest.mark.skipif(not HAS_NLOPT, reason="BOBYQA (nlopt) on the sparse path")
def test_restart_from_the_edge_takes_steps_of_the_estimates_size(monkeypatch):
    # qdldl: the first run stops at lme4's singular point and the restart goes on
    res = _fit_medium_34(monkeypatch, "qdldl")
    assert res.objective == pytest.approx(27115.289044, abs=1e-5)
    assert res.objective < LME4_MEDIUM_34 - 2.0
    assert res.optinfo["restarted"] and res.converged
    assert res.optinfo["feval"] < 1500  # 4,822 with NLopt's first step


@pytest.mark.skipif(not HAS_NLOPT, reason="BOBYQA (nlopt) on the sparse path")
def test_medium_design_34_reaches_the_same_optimum_with_cholmod(monkeypatch):
    # CHOLMOD's rounding differs: its first run already passes lme4's singular point
    res = _fit_medium_34(monkeypatch, "cholmod")
    assert res.objective == pytest.approx(27115.289044, abs=1e-5)
    assert res.converged
