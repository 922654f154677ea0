"""The blocked engine against a direct dense computation of lme4's formulas."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import crossed_frame

import statsmodels_lmer as sml
from statsmodels_lmer.engine.blocks import build_cross_products


def dense_reference(model: sml.Lmer, theta: np.ndarray, reml: bool) -> float:
    """lme4's criterion from one dense Cholesky of the full augmented system."""
    Z = sp.hstack([t.z_matrix() for t in model.random_terms]).toarray()
    lam = sp.block_diag(
        [t.lambda_block(theta[s]) for t, s in zip(model.random_terms, model.theta_slices)]
    ).toarray()
    X = np.asarray(model.exog, dtype=float)
    y = np.asarray(model.endog, dtype=float)
    if model.offset is not None:
        y = y - model.offset
    w = np.ones(len(y)) if model.weights is None else model.weights
    M = np.column_stack([Z @ lam, X, y]) * np.sqrt(w)[:, None]
    A = M.T @ M
    q, p = Z.shape[1], X.shape[1]
    A[:q, :q] += np.eye(q)
    L = np.linalg.cholesky(A)
    d = np.diag(L)
    ld_l2 = 2 * np.sum(np.log(d[:q]))
    ld_rx2 = 2 * np.sum(np.log(d[q : q + p]))
    r2 = d[-1] ** 2
    n = len(y)
    dof = n - p if reml else n
    crit = ld_l2 - np.sum(np.log(w)) + dof * (1 + np.log(2 * np.pi * r2 / dof))
    return crit + (ld_rx2 if reml else 0.0)


def synthetic(seed: int = 1, n: int = 400) -> pd.DataFrame:
    return crossed_frame(seed, n)


FORMULAS = [
    "y ~ x + (1 | a) + (1 | b) + (1 | c)",
    "y ~ x + (x | a) + (1 | b)",
    "y ~ x + (1 | a) + (x + z | b)",
    "y ~ x * z + (x || a) + (0 + z | b) + (1 | b:c)",
    "y ~ x + (1 | b/c)",
]


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
def test_blocked_engine_equals_dense_computation(formula, reml):
    model = sml.Lmer.from_formula(formula, synthetic(), weights="w")
    rng = np.random.default_rng(3)
    devfun = model.devfun(reml)
    for _ in range(3):
        theta = model.theta_start + rng.uniform(-0.4, 0.8, model.theta_start.size)
        theta = np.maximum(theta, model.theta_lower)
        assert devfun(theta) == pytest.approx(dense_reference(model, theta, reml), rel=1e-11)


@pytest.mark.parametrize("formula", FORMULAS)
def test_pair_and_dense_strategies_agree(formula):
    model = sml.Lmer.from_formula(formula, synthetic(seed=2), weights="w")
    values = []
    for strategy in ("pairs", "classes", "dense"):
        objective = model.devfun(reml=True, strategy=strategy)
        assert objective.cross.strategy == strategy
        theta = model.theta_start * 0.7 + 0.1 * (model.theta_lower == 0)
        values.append(objective(theta))
    assert values[0] == pytest.approx(values[1], rel=1e-12)
    assert values[0] == pytest.approx(values[2], rel=1e-12)


def test_unknown_strategy_is_refused():
    model = sml.Lmer.from_formula(FORMULAS[0], synthetic())
    with pytest.raises(ValueError, match="strategy"):
        build_cross_products(
            model.random_terms, np.asarray(model.exog), np.asarray(model.endog), strategy="x"
        )


def test_evaluation_does_not_depend_on_n():
    """Nothing of length n is touched: the cross-products fix the evaluation."""
    small = synthetic(n=400)
    doubled = pd.concat([small, small], ignore_index=True)
    a = sml.Lmer.from_formula(FORMULAS[0], small).cross_products
    b = sml.Lmer.from_formula(FORMULAS[0], doubled).cross_products
    assert a.a_rr.shape == b.a_rr.shape
    np.testing.assert_allclose(b.a_rr.toarray(), 2 * a.a_rr.toarray())


def test_solution_matches_dense_normal_equations():
    model = sml.Lmer.from_formula("y ~ x + (x | a) + (1 | b)", synthetic())
    theta = np.array([0.8, 0.1, 0.5, 0.6])
    res = model.results_at(theta, reml=True)
    Z = sp.hstack([t.z_matrix() for t in model.random_terms]).toarray()
    lam = res.Lambda.toarray()
    X = np.asarray(model.exog, dtype=float)
    y = np.asarray(model.endog, dtype=float)
    ZL = Z @ lam
    q = ZL.shape[1]
    system = np.block([[ZL.T @ ZL + np.eye(q), ZL.T @ X], [X.T @ ZL, X.T @ X]])
    solution = np.linalg.solve(system, np.concatenate([ZL.T @ y, X.T @ y]))
    np.testing.assert_allclose(res.params, solution[q:], rtol=1e-10)
    b = lam @ solution[:q]
    np.testing.assert_allclose(res.fittedvalues, X @ solution[q:] + Z @ b, rtol=1e-10)
    # conditional covariance of b: sigma^2 Lambda (Lambda'Z'Z Lambda + I)^-1 Lambda'
    cond = res.scale * lam @ np.linalg.inv(ZL.T @ ZL + np.eye(q)) @ lam.T
    table = res.ranef_table()
    first = model.random_terms[0]
    sds = table[table["grpvar"] == first.group]
    expected = np.sqrt(np.diag(cond)[: first.n_random]).reshape(first.n_levels, -1)
    np.testing.assert_allclose(sds["condsd"].to_numpy(), expected.T.ravel(), rtol=1e-9)


def nested_data(seed: int = 4, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    school = rng.integers(0, 30, n)
    frame = pd.DataFrame({"school": school.astype(str), "cls": rng.integers(0, 4, n).astype(str)})
    frame["x"] = rng.normal(size=n)
    frame["y"] = frame["x"] + rng.normal(size=n) + 0.1 * school
    return frame


@pytest.mark.parametrize(
    "formula", ["y ~ x + (1 | school/cls)", "y ~ x + (1 | cls:school) + (x | school)"]
)
@pytest.mark.parametrize("reml", [True, False])
def test_nested_block_diagonal_path_equals_dense_computation(formula, reml):
    model = sml.Lmer.from_formula(formula, nested_data())
    objective = model.devfun(reml, strategy="pairs")
    assert objective.cross.nested is not None  # classes (first term) sit inside schools
    rng = np.random.default_rng(5)
    for _ in range(3):
        theta = model.theta_start + rng.uniform(-0.4, 0.8, model.theta_start.size)
        theta = np.maximum(theta, model.theta_lower)
        assert objective(theta) == pytest.approx(dense_reference(model, theta, reml), rel=1e-11)


def test_crossed_rest_term_is_not_taken_for_nested():
    data = synthetic()
    model = sml.Lmer.from_formula("y ~ x + (1 | a) + (1 | b)", data)
    assert model.devfun(True, strategy="pairs").cross.nested is None


@pytest.mark.parametrize(
    ("formula", "weighted"),
    [
        ("y ~ x + (1 | school/cls)", False),
        ("y ~ x + (x | cls:school) + (x + z | school)", False),
        ("y ~ x + (x | cls:school) + (1 | school)", True),
    ],
)
@pytest.mark.parametrize("reml", [True, False])
def test_nested_solution_equals_the_dense_one(formula, weighted, reml):
    """The solution at theta (beta, u, b, sigma, vcov, conditional variances) from the
    compact nested layout, without the m x m array the dense path allocates (2e4
    schools: 6.3 GB and 76 s; lme4 430 MB)."""
    data = nested_data()
    rng = np.random.default_rng(2)
    data = data.assign(w=rng.uniform(0.5, 2, len(data)), z=rng.normal(size=len(data)))
    model = sml.Lmer.from_formula(formula, data, **({"weights": "w"} if weighted else {}))
    nested = model.devfun(reml, strategy="pairs")
    assert nested.cross.nested is not None
    dense = copy.copy(nested)
    dense.cross = copy.copy(nested.cross)
    dense.cross.nested = None
    theta = model.theta_start + np.random.default_rng(5).uniform(-0.4, 0.8, model.theta_start.size)
    theta = np.maximum(theta, model.theta_lower)
    a, b = nested.solve(theta), dense.solve(theta)
    assert a.objective_value == pytest.approx(b.objective_value, rel=1e-13)
    assert a.sigma == pytest.approx(b.sigma, rel=1e-13)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-12)
    np.testing.assert_allclose(a.vcov_unscaled, b.vcov_unscaled, rtol=1e-11, atol=1e-16)
    for ours, reference in [
        (a.u, b.u),
        (a.b, b.b),
        (a.conditional_variances, b.conditional_variances),
    ]:
        for x, y in zip(ours, reference):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-13)


def test_large_nested_models_take_satterthwaite_df_from_their_cheap_evaluations(monkeypatch):
    """Above order 1000 the nested layout's Satterthwaite derivatives are lmerTest's
    finite differences of O(levels) evaluations, not analytic ones of the dense
    factor; the df agree."""
    from statsmodels_lmer.engine import gradient
    from statsmodels_lmer.inference.satterthwaite import Satterthwaite

    rng = np.random.default_rng(11)
    schools = np.repeat(np.arange(1200), 6)
    classes = np.repeat(np.arange(3600), 2)
    data = pd.DataFrame({"s": schools.astype(str), "c": classes.astype(str)})
    data["x"] = rng.normal(size=len(data))
    effects = rng.normal(size=1200)[schools] + 0.6 * rng.normal(size=3600)[classes]
    data["y"] = 1 + data["x"] + effects + rng.normal(size=len(data))
    res = sml.lmer("y ~ x + (1 | s/c)", data)
    assert res.model.devfun(True).cross.nested is not None
    finite = Satterthwaite(res)
    assert finite.method == "numderiv"
    monkeypatch.setattr(gradient, "NESTED_ANALYTIC_MAX", 10_000)
    analytic = Satterthwaite(res)
    assert analytic.method == "analytic"
    L = np.eye(2)
    for row in L:
        assert finite.test(row).den_df == pytest.approx(analytic.test(row).den_df, rel=1e-5)
