"""Kenward-Roger (statsmodels_lmer.inference.kenward_roger) against pbkrtest 0.5.2.

Reference numbers: tests/fixtures/lmertest_inference.json (lmerTest 3.1.3,
pbkrtest 0.5.2). Every model is evaluated at lme4's theta (``results_at``), so
optimizer noise does not enter. Tolerances: adjusted covariance 1e-6 relative
to ``sqrt(V_ii V_jj)``; df 1e-4 relative; t and F 1e-6 relative. Measured
agreement is about 1e-10 or better.

A dense n x n implementation of pbkrtest's formulas (below) checks the
structured algebra on designs the fixtures lack: prior weights, a three-column
term, crossed and uncorrelated terms.
"""

from __future__ import annotations

import json
import time
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES, patsy_name

import statsmodels_lmer as sml
from statsmodels_lmer.inference.kenward_roger import (
    KenwardRoger,
    KRTest,
    kr_ddf_and_scaling,
    kr_pieces,
)


@cache
def inference_models() -> dict:
    return json.loads((FIXTURES / "lmertest_inference.json").read_text())["models"]


MODELS = sorted(inference_models())


def fixture_data(case: dict) -> pd.DataFrame:
    data = sml.datasets.load(case["dataset"])
    if "grp" in case.get("derived_columns", {}):
        # rule in the fixture: 'even' if int(Subject) is even else 'odd'
        even = data["Subject"].astype(str).astype(int) % 2 == 0
        data = data.assign(
            grp=pd.Categorical(np.where(even, "even", "odd"), categories=["even", "odd"])
        )
    return data


@cache
def kr_at_lme4_theta(name: str) -> tuple[dict, KenwardRoger, np.ndarray]:
    """The fixture case, our KR object at lme4's theta, and R's column positions."""
    case = inference_models()[name]
    data = fixture_data(case)
    model = sml.Lmer.from_formula(case["formula"], data)
    res = model.results_at(case["theta"], reml=True)
    ours = list(res.params.index)
    idx = np.array([ours.index(patsy_name(n, data)) for n in case["fixef_names"]])
    kr = KenwardRoger(res)
    kr.res = res  # for the checks through the results' own API
    return case, kr, idx


def contrast_matrix(L_rows: list, idx: np.ndarray) -> np.ndarray:
    """R's contrast rows with columns permuted to our coefficient order."""
    R = np.atleast_2d(np.asarray(L_rows, dtype=float))
    L = np.zeros_like(R)
    L[:, idx] = R
    return L


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("name", MODELS)
def test_vcov_adjusted_matches_pbkrtest(name):
    case, kr, idx = kr_at_lme4_theta(name)
    ref = np.array(case["vcov_kr"])
    ours = kr.vcov_adjusted[np.ix_(idx, idx)]
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    assert np.max(np.abs(ours - ref) / scale) < 1e-6
    # the unadjusted covariance is lme4's vcov
    vref = np.array(case["vcov"])
    assert np.max(np.abs(kr.vcov[np.ix_(idx, idx)] - vref) / scale) < 1e-6


@pytest.mark.parametrize("name", MODELS)
def test_coef_table_matches_lmertest(name):
    case, kr, idx = kr_at_lme4_theta(name)
    table = kr.res.coef_table(ddf="kenward-roger").iloc[idx]
    for (_, row), ref in zip(table.iterrows(), case["kenward_roger"]):
        assert rel(row["coef"], ref["estimate"]) < 1e-6
        assert rel(row["std_err"], ref["se"]) < 1e-6
        assert rel(row["df"], ref["df"]) < 1e-4
        assert rel(row["t"], ref["t"]) < 1e-6
        assert row["pvalue"] == pytest.approx(ref["p"], rel=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_contrasts_match_lmertest(name):
    case, kr, idx = kr_at_lme4_theta(name)
    for con in case["contrasts"]:
        L = contrast_matrix(con["L"], idx)
        result = kr.test(L)
        md = con["contestMD_kr"]
        assert result.num_df == md["NumDF"], con["name"]
        assert rel(result.den_df, md["DenDF"]) < 1e-4, con["name"]
        assert rel(result.fvalue, md["F"]) < 1e-6, con["name"]
        assert rel(result.mean_sq, md["MeanSq"]) < 1e-6, con["name"]
        assert result.pvalue == pytest.approx(md["p"], rel=1e-4), con["name"]
        if con["nrow"] == 1:
            one = con["contest1D_kr"]
            assert result.scaling == 1.0
            assert rel(result.estimate[0], one["estimate"]) < 1e-6
            assert rel(np.sqrt(result.cov[0, 0]), one["se"]) < 1e-6
            assert rel(result.statistic, one["t"]) < 1e-6, con["name"]
            assert rel(result.den_df, one["df"]) < 1e-4, con["name"]
            assert result.pvalue == pytest.approx(one["p"], rel=1e-4)
        else:
            assert result.scaling > 0


# -- a dense implementation of pbkrtest's vcovAdj, for small n ---------------
def dense_pbkrtest(res):
    """pbkrtest's n x n algebra (with W^-1 as the residual G)."""
    res = getattr(res, "_results", res)
    model = res.model
    X = np.asarray(model.exog, dtype=float)
    n = X.shape[0]
    w = np.ones(n) if model.weights is None else np.asarray(model.weights, dtype=float)
    s2 = res.scale
    G, phi = [], []
    for term, sl in zip(model.random_terms, model.theta_slices):
        Z = term.z_matrix().toarray()
        T = term.factor(res.theta[sl])
        psi = s2 * T @ T.T
        k = term.n_cols
        for b in range(k):
            for a in range(b, k):
                E = np.zeros((k, k))
                E[a, b] = E[b, a] = 1.0
                G.append(Z @ np.kron(np.eye(term.n_levels), E) @ Z.T)
                phi.append(psi[a, b])
    G.append(np.diag(1.0 / w))
    phi.append(s2)
    sigma_inv = np.linalg.inv(sum(f * g for f, g in zip(phi, G)))
    Phi = np.linalg.inv(X.T @ sigma_inv @ X)
    m = len(G)
    H = [g @ sigma_inv for g in G]
    HX = [h @ X for h in H]
    P = [-(o.T @ sigma_inv @ X) for o in HX]
    Q = [[HX[i].T @ sigma_inv @ HX[j] for j in range(m)] for i in range(m)]
    info = np.array(
        [
            [
                np.sum(H[i].T * H[j])
                - 2 * np.sum(Phi * Q[i][j])
                + np.sum((Phi @ P[i]) * (P[j] @ Phi))
                for j in range(m)
            ]
            for i in range(m)
        ]
    )
    W = 2 * np.linalg.inv(info)
    U = sum(W[i, j] * (Q[i][j] - P[i] @ Phi @ P[j]) for i in range(m) for j in range(m))
    return Phi, Phi + 2 * Phi @ U @ Phi, P, W, info


def dense_ddf(Phi, P, W, L):
    q = np.linalg.matrix_rank(L)
    theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    u = [theta @ Phi @ Pi @ Phi for Pi in P]
    a1 = sum(
        W[i, j] * np.trace(u[i]) * np.trace(u[j]) for i in range(len(P)) for j in range(len(P))
    )
    a2 = sum(W[i, j] * np.trace(u[i] @ u[j]) for i in range(len(P)) for j in range(len(P)))
    return kr_ddf_and_scaling(a1, a2, q)


def sleepstudy_extended() -> pd.DataFrame:
    data = sml.datasets.load("sleepstudy")
    rng = np.random.default_rng(7)
    return data.assign(
        x=rng.normal(size=len(data)),
        g=pd.Categorical((np.arange(len(data)) % 7).astype(str)),
        w=1.0 + (data["Days"] % 3) / 2.0,
    )


@pytest.mark.parametrize(
    ("formula", "theta"),
    [
        (
            "Reaction ~ Days + x + (Days + x | Subject) + (1 | g)",
            [0.9, 0.1, -0.2, 0.25, 0.05, 0.3, 0.4],
        ),
        ("Reaction ~ Days + (Days || Subject) + (1 | g)", [0.8, 0.3, 0.5]),
        ("Reaction ~ Days + (Days | Subject)", [0.9, 0.0, 0.0]),  # singular
    ],
)
def test_structured_algebra_matches_dense_pbkrtest(formula, theta):
    data = sleepstudy_extended()
    model = sml.Lmer.from_formula(formula, data, weights="w")
    res = model.results_at(theta, reml=True)
    kr = KenwardRoger(res)
    Phi, adjusted, P, W, info = dense_pbkrtest(res)
    scale = np.sqrt(np.outer(np.diag(adjusted), np.diag(adjusted)))
    assert np.max(np.abs(kr.vcov - Phi) / scale) < 1e-9
    assert np.max(np.abs(kr.vcov_adjusted - adjusted) / scale) < 1e-9
    np.testing.assert_allclose(kr.information, info, rtol=1e-8, atol=1e-12 * np.abs(info).max())
    np.testing.assert_allclose(kr.varpar_cov, W, rtol=1e-7, atol=1e-10 * np.abs(W).max())
    p = len(kr.beta)
    for L in (np.eye(p)[1:2], np.eye(p)[:2], np.ones((1, p))):
        ddf, scaling = dense_ddf(Phi, P, W, L)
        result = kr.test(L)
        assert result.den_df == pytest.approx(ddf, rel=1e-8)
        if L.shape[0] > 1:
            assert result.scaling == pytest.approx(scaling, rel=1e-8)
    assert len(kr.varpar_names) == len(P)


@pytest.mark.parametrize("theta", [[0.9, 0.1, 0.25], [0.9, 0.0, 0.0]])
def test_single_term_block_algebra_matches_dense_q_algebra(theta):
    data = sleepstudy_extended()
    model = sml.Lmer.from_formula("Reaction ~ Days + x + (Days | Subject)", data, weights="w")
    res = model.results_at(theta, reml=True)._results
    for block, dense in zip(kr_pieces(res), kr_pieces(res, structure="dense")):
        if isinstance(block, list):
            assert block == dense
        else:
            np.testing.assert_allclose(block, dense, rtol=1e-9, atol=1e-12 * np.abs(dense).max())


def test_rhs_and_rank_deficient_contrasts():
    _, kr, idx = kr_at_lme4_theta("sleepstudy_factor")
    p = len(kr.beta)
    l1 = np.zeros(p)
    l1[idx[1]] = 1.0  # Days
    one = kr.test(l1, rhs=10.0)
    se = np.sqrt(kr.vcov_adjusted[idx[1], idx[1]])
    assert one.statistic == pytest.approx((kr.beta[idx[1]] - 10.0) / se, rel=1e-12)
    assert one.den_df == pytest.approx(kr.test(l1).den_df, rel=1e-12)
    assert one.fvalue == pytest.approx(one.statistic**2)

    L = np.zeros((2, p))
    L[0, idx[1]] = L[1, idx[2]] = 1.0
    rhs = np.array([10.0, 5.0])
    two = kr.test(L, rhs=rhs)
    diff = L @ kr.beta - rhs
    wald = diff @ np.linalg.solve(L @ kr.vcov_adjusted @ L.T, diff) / 2
    assert two.f_unscaled == pytest.approx(wald, rel=1e-12)
    assert two.statistic == pytest.approx(two.scaling * wald, rel=1e-12)

    # a repeated row does not change the test; q is the rank
    repeated = kr.test(np.vstack([L, L[0] + L[1]]))
    base = kr.test(L)
    assert repeated.num_df == 2
    assert repeated.statistic == pytest.approx(base.statistic, rel=1e-10)
    assert repeated.den_df == pytest.approx(base.den_df, rel=1e-10)
    # two rows of rank one: F with q = 1, scaling 1 and the one-row df
    rank_one = kr.test(np.vstack([l1, 2 * l1]))
    assert rank_one.num_df == 1
    assert rank_one.scaling == pytest.approx(1.0, rel=1e-10)
    assert rank_one.statistic == pytest.approx(kr.test(l1).statistic ** 2, rel=1e-10)
    assert rank_one.den_df == pytest.approx(kr.test(l1).den_df, rel=1e-10)

    with pytest.raises(ValueError, match="columns"):
        kr.test(np.ones(p + 1))
    with pytest.raises(ValueError, match="zero"):
        kr.test(np.zeros((2, p)))


def test_one_row_scaling_is_one_and_df_is_two_over_a2():
    for a2 in (1e-3, 0.05, 0.4):
        ddf, scaling = kr_ddf_and_scaling(a2, a2, 1)  # A1 = A2 for one row
        assert ddf == pytest.approx(2.0 / a2, rel=1e-10)
        assert scaling == pytest.approx(1.0, rel=1e-10)
    assert kr_ddf_and_scaling(0.0, 0.0, 2) == (np.inf, 1.0)


def test_accepts_wrapper_and_refuses_ml():
    data = sml.datasets.load("sleepstudy")
    model = sml.Lmer.from_formula("Reaction ~ Days + (Days | Subject)", data)
    case = inference_models()["sleepstudy_reml"]
    wrapped = model.results_at(case["theta"], reml=True)
    assert isinstance(KenwardRoger(wrapped).test([0, 1]), KRTest)
    with pytest.raises(ValueError, match="REML"):
        KenwardRoger(model.results_at(case["theta"], reml=False))


def test_large_model_is_fast_and_adjustment_is_psd(capsys):
    rng = np.random.default_rng(2024)
    n, groups = 4000, 200
    g = np.repeat(np.arange(groups), n // groups)
    x = rng.uniform(0, 10, n)
    z = rng.normal(size=n)
    b = rng.multivariate_normal([0, 0], [[4.0, 0.3], [0.3, 0.25]], size=groups)
    y = 1 + 0.5 * x + 0.3 * z + b[g, 0] + b[g, 1] * x + rng.normal(size=n)
    data = pd.DataFrame({"y": y, "x": x, "z": z, "g": [f"s{i}" for i in g]})
    res = sml.lmer("y ~ x + z + (x | g)", data)
    start = time.perf_counter()
    kr = KenwardRoger(res)
    table = res.coef_table(ddf="kenward-roger")
    elapsed = time.perf_counter() - start
    assert elapsed < 20.0  # about 0.05 s on a 2-core machine
    diff = kr.vcov_adjusted - np.asarray(res.cov_params())
    eig = np.linalg.eigvalsh(0.5 * (diff + diff.T))
    assert eig.min() >= -1e-10 * np.abs(kr.vcov).max()
    assert np.all(np.isfinite(table["df"])) and np.all(table["df"] > 0)
    # between-group coefficients get about groups - 1 df; the within one many more
    assert table.loc["x", "df"] == pytest.approx(groups - 1, rel=0.05)
    assert table.loc["z", "df"] > 1000
    joint = kr.test(np.eye(3)[1:])
    assert joint.num_df == 2 and joint.den_df > 0 and joint.scaling == pytest.approx(1.0, abs=0.05)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_dense_q_matrices_are_checked_against_the_memory_limit(monkeypatch):
    """(1 | s/c) with 2,000 schools (q = 12,000) took 169 s and peaked at 11 GiB in
    Kenward-Roger's q x q algebra, with no check; now it is refused first when that
    does not fit, and pointed to Satterthwaite."""
    from statsmodels_lmer.engine.cost import MEMORY_VARIABLE
    from statsmodels_lmer.exceptions import DataError

    res = sml.lmer("strength ~ 1 + (1 | batch/cask)", sml.datasets.load("Pastes"))
    q = sum(term.n_random for term in res.model.random_terms)
    monkeypatch.setenv(MEMORY_VARIABLE, "64KiB")
    message = rf"Kenward-Roger's df for this model need about .* {q} x {q} .*Satterthwaite"
    with pytest.raises(DataError, match=message):
        res.coef_table("kenward-roger")
    monkeypatch.setenv(MEMORY_VARIABLE, "off")
    assert res.coef_table("kenward-roger")["df"].iloc[0] > 0
