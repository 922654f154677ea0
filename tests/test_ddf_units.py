"""Denominator df do not depend on the units of the response, the covariates or the weights.

lmerTest and pbkrtest compare the eigenvalues of the Hessian (Satterthwaite) and of the
information matrix (Kenward-Roger) with absolute thresholds (1e-8, 1e-10), so a change of
units can move a direction below them: sleepstudy's Reaction times 1e4 gave Days a
Satterthwaite df of 5.8e22 instead of 161 (lmerTest: 2.5e23), and Days in thousands a
Kenward-Roger df of 4244 instead of 17 (pbkrtest: 4244). Each pair below is the same model
in other units at the corresponding theta, so the df must agree to round-off.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import statsmodels_lmer as sml
from statsmodels_lmer.inference.contrast_results import f_pvalue
from statsmodels_lmer.inference.kenward_roger import KenwardRoger

SLEEP = sml.datasets.load("sleepstudy")


def ddf_pair(base, other):
    """(Satterthwaite, Kenward-Roger) df of every coefficient, of two results."""
    return [
        (res.coef_table(ddf).to_numpy()[:, 2] for res in (base, other))
        for ddf in ("satterthwaite", "kenward-roger")
    ]


def at(formula, data, theta, **kwargs):
    return sml.Lmer.from_formula(formula, data, **kwargs).results_at(theta)


@pytest.mark.parametrize("factor", [1e4, 1e6, 1e-4])
def test_df_do_not_depend_on_the_units_of_y(factor):
    formula = "Reaction ~ Days + (1 | Subject)"
    theta = [1.1978815]
    base = at(formula, SLEEP, theta)
    scaled = at(formula, SLEEP.assign(Reaction=SLEEP["Reaction"] * factor + 3.0), theta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # lmerTest's scheme also warned of an eigenvalue near 0
        for ours, theirs in ddf_pair(base, scaled):
            np.testing.assert_allclose(list(theirs), list(ours), rtol=1e-7)
    assert base.coef_table()["df"]["Days"] == pytest.approx(161.0, rel=1e-6)


@pytest.mark.parametrize("exponent", [60, 80, 140, -60, -80, -140])
def test_df_and_tests_in_extreme_units_of_y(exponent):
    # sigma^4 overflows from y about 1e76 and underflows from 1e-80: the df are taken
    # in units of sigma (pbkrtest's KR df was 19 instead of 17 from 1e55)
    formula = "Reaction ~ Days + (Days | Subject)"
    theta = np.array([0.96674, 0.015169, 0.23091])
    base = at(formula, SLEEP, theta)
    factor = 10.0**exponent
    scaled = at(formula, SLEEP.assign(Reaction=SLEEP["Reaction"] * factor), theta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for ours, theirs in ddf_pair(base, scaled):
            np.testing.assert_allclose(list(theirs), list(ours), rtol=1e-9)
        for ddf in ("satterthwaite", "kenward-roger"):
            table, other = base.coef_table(ddf), scaled.coef_table(ddf)
            np.testing.assert_allclose(other["std_err"] / factor, table["std_err"], rtol=1e-9)
            np.testing.assert_allclose(other["t"], table["t"], rtol=1e-9)
            for res in (base, scaled):
                res.anova(ddf=ddf)  # the F tests run too
        f_base, f_scaled = (res.f_test("Intercept = 0, Days = 0") for res in (base, scaled))
        assert f_scaled.fvalue == pytest.approx(f_base.fvalue, rel=1e-9)
        assert f_scaled.df_denom == pytest.approx(f_base.df_denom, rel=1e-9)
    assert base.coef_table("kenward-roger")["df"].tolist() == pytest.approx([17.0, 17.0])
    hessian = scaled.satterthwaite.hessian  # mapped back to (theta, sigma)
    assert hessian[-1, -1] * factor**2 == pytest.approx(base.satterthwaite.hessian[-1, -1])


@pytest.mark.parametrize("factor", [1e-3, 1e-5, 1e3, 1e4])
def test_df_do_not_depend_on_the_units_of_a_random_slope(factor):
    formula = "Reaction ~ Days + (Days | Subject)"
    theta = np.array([0.96674, 0.015169, 0.23091])
    base = at(formula, SLEEP, theta)
    # columns (1, c Days): the slope's row of the relative covariance factor scales by 1/c
    rescaled = theta * [1.0, 1.0 / factor, 1.0 / factor]
    other = at(formula, SLEEP.assign(Days=SLEEP["Days"] * factor), rescaled)
    for ours, theirs in ddf_pair(base, other):
        np.testing.assert_allclose(list(theirs), list(ours), rtol=1e-6)
    assert base.coef_table("kenward-roger")["df"]["Days"] == pytest.approx(17.0, rel=1e-9)


def test_kenward_roger_df_do_not_depend_on_the_scale_of_the_weights():
    rng = np.random.default_rng(3)
    data = SLEEP.assign(w=rng.uniform(0.5, 2.0, len(SLEEP)))
    formula = "Reaction ~ Days + (Days | Subject)"
    theta = [0.9, 0.01, 0.22]
    base = at(formula, data, theta, weights=data["w"])
    # weights times k: sigma times sqrt(k), theta (relative to sigma) over sqrt(k)
    heavy = at(formula, data, np.asarray(theta) * 1e-3, weights=data["w"] * 1e6)
    np.testing.assert_allclose(
        heavy.coef_table("kenward-roger")["df"], base.coef_table("kenward-roger")["df"], rtol=1e-6
    )
    np.testing.assert_allclose(heavy.ddf, base.ddf, rtol=1e-6)


def test_kenward_roger_rho_of_one_over_q_gives_an_infinite_df():
    """pbkrtest's arithmetic gives Inf there; Python's floats raised ZeroDivisionError (a
    singular fit of sleepstudy with Days -> Days / 1000 + 1000)."""
    data = SLEEP.assign(Days=SLEEP["Days"] * 1e-3 + 1e3)
    res = at(
        "Reaction ~ Days + (Days | Subject)",
        data,
        [4.50347474e-05, -9.64755968e-05, 1.19399131e-03],
    )
    # Days far from zero: the fit's Kenward-Roger df are taken in the centred columns
    # (Lmer.centred_twin), where this point is sleepstudy's: 17 (pbkrtest on the
    # original columns: Inf). The original columns' arithmetic is checked below.
    np.testing.assert_allclose(res.coef_table("kenward-roger")["df"], [17.0, 17.0], rtol=1e-6)
    res._results.__dict__["kenward_roger"] = KenwardRoger(res)
    table = res.coef_table("kenward-roger")
    assert np.isinf(table["df"]).all()
    expected = 2 * stats.norm.sf(np.abs(table["t"]))
    np.testing.assert_allclose(table["pvalue"], expected, rtol=1e-10)
    anova = res.anova(ddf="kenward-roger")
    assert np.isinf(anova["DenDF"]).all() and np.isfinite(anova["pvalue"]).all()
    for test in (
        res.f_test("Days = 0", ddf="kenward-roger"),
        res.wald_test("Days = 0", ddf="kenward-roger"),
    ):
        assert np.isinf(test.df_denom)
        assert float(test.pvalue) == pytest.approx(float(anova["pvalue"].iloc[0]), rel=1e-10)


def test_f_pvalue_with_an_infinite_denominator_df_is_the_chi_square_limit():
    assert f_pvalue(2.5, 3, np.inf) == pytest.approx(stats.chi2.sf(7.5, 3), rel=1e-14)
    assert f_pvalue(2.5, 3, 1e12) == pytest.approx(stats.chi2.sf(7.5, 3), rel=1e-6)
    assert f_pvalue(2.5, 3, 20.0) == pytest.approx(stats.f.sf(2.5, 3, 20.0), rel=1e-14)


def test_df_with_a_random_slope_far_from_zero_are_those_of_the_centred_columns():
    """(zf | g) with zf = 1e4 + N(0, 1) is the model of (zf - mean | g), but its theta has
    a correlation within 1e-8 of -1 and an intercept SD of 2600: the derivatives in it
    gave z's Satterthwaite df 17.7 and Kenward-Roger df 4.1e7 (centred: 22.6 and 23.7).
    The df now come from the same point in the centred columns, here checked against a
    model centred by hand with the covariance mapped by hand."""
    rng = np.random.default_rng(5)
    n, groups = 800, rng.integers(0, 25, 800)
    x, z = rng.normal(size=n), rng.normal(size=n)
    intercepts = rng.normal(size=25)[groups]
    slopes = 0.3 * rng.normal(size=25)[groups] * z
    y = 0.5 * x + 0.3 * z + intercepts + slopes + rng.normal(size=n)
    frame = pd.DataFrame({"y": y, "x": x, "z": z, "zf": 1e4 + z, "g": groups.astype(str)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("y ~ x + z + (zf | g)", frame)
        by_hand = sml.Lmer.from_formula(
            "y ~ x + z + (zc | g)", frame.assign(zc=frame.zf - frame.zf.mean())
        )
    T = res.model.random_terms[0].factor(res.theta)
    undo = np.array([[1.0, frame.zf.mean()], [0.0, 1.0]])  # b_c = S^-1 b
    T_c = np.linalg.cholesky(undo @ T @ T.T @ undo.T)
    centred = by_hand.results_at(T_c[np.tril_indices(2)][[0, 1, 2]], reml=True)
    np.testing.assert_allclose(res.ddf, centred.ddf, rtol=1e-6)
    kr, kr_centred = res.coef_table("kenward-roger"), centred.coef_table("kenward-roger")
    np.testing.assert_allclose(kr["df"], kr_centred["df"], rtol=1e-6)
    assert res.ddf["z"] == pytest.approx(22.6, abs=0.1)
    # the same estimates, to the digits zf = 1e4 + z keeps of z (1e-12 of 1e4)
    np.testing.assert_allclose(res.params, centred.params, rtol=1e-7)


def test_pickles_with_the_df_pieces_in_the_responses_units_still_load():
    # Satterthwaite and Kenward-Roger objects pickled before the unit change kept their
    # arrays in (theta, sigma) and the response's units; such a state is mapped on loading
    from statsmodels_lmer.inference.satterthwaite import Satterthwaite

    res = at("Reaction ~ Days + (Days | Subject)", SLEEP, [0.96674, 0.015169, 0.23091])
    sat, kr = res.satterthwaite, res.kenward_roger
    old_sat = {k: v for k, v in sat.__dict__.items() if not k.startswith("_unit")}
    old_sat.pop("_scale")
    old_sat.update(
        hessian=sat.hessian,
        vcov_varpar=sat.vcov_varpar,
        _engine_jacobians=sat._engine_jacobians,
        _vcov_engine=sat._vcov_engine,
        jacobians=sat.jacobians,
    )
    loaded = Satterthwaite.__new__(Satterthwaite)
    loaded.__setstate__(old_sat)
    L = np.array([[0.0, 1.0], [1.0, 0.5]])
    assert loaded.df_1d(L[0]) == pytest.approx(sat.df_1d(L[0]), rel=1e-12)
    assert loaded.test(L).den_df == pytest.approx(sat.test(L).den_df, rel=1e-12)
    np.testing.assert_allclose(loaded.vcov_varpar, sat.vcov_varpar, rtol=1e-12)
    old_kr = {k: v for k, v in kr.__dict__.items() if k not in ("_information", "_varpar_cov")}
    s2 = old_kr.pop("_scale")  # the old pieces were all in the response's units
    old_kr.update(
        information=kr.information,
        varpar_cov=kr.varpar_cov,
        _phi=kr._phi * s2,
        _P=kr._P / s2**2,
    )
    loaded_kr = KenwardRoger.__new__(KenwardRoger)
    loaded_kr.__setstate__(old_kr)
    assert loaded_kr.test(L).den_df == pytest.approx(kr.test(L).den_df, rel=1e-10)
    np.testing.assert_allclose(loaded_kr.varpar_cov, kr.varpar_cov, rtol=1e-12)
