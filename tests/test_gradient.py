"""The analytic gradient of the profiled criterion against a complex-step reference.

The reference forms the full augmented system densely (as tests/test_objective.py)
in complex arithmetic, with transposes but no conjugates, so that
``f(theta + i h e_k).imag / h`` (h = 1e-30) is the exact derivative to rounding.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import crossed_frame

import statsmodels_lmer as sml
from statsmodels_lmer._parallel import active_threads, blas_threads
from statsmodels_lmer.engine import blocks
from statsmodels_lmer.engine import gradient as gradient_module
from statsmodels_lmer.engine.gradient import (
    ProfiledGradient,
    gradient_available,
    gradient_bytes,
    gradient_supported,
    jacobian_of_gradient,
    relative_steps,
)
from statsmodels_lmer.inference.satterthwaite import Satterthwaite
from statsmodels_lmer.parametrization import tril_colmajor

STEP = 1e-30


def complex_cholesky(a: np.ndarray) -> np.ndarray:
    """Lower factor of a complex symmetric matrix (no conjugation, no pivoting)."""
    a = np.array(a, dtype=complex)
    n = a.shape[0]
    out = np.zeros_like(a)
    for j in range(n):
        pivot = np.sqrt(a[j, j] - out[j, :j] @ out[j, :j])
        out[j, j] = pivot
        out[j + 1 :, j] = (a[j + 1 :, j] - out[j + 1 :, :j] @ out[j, :j]) / pivot
    return out


class DenseModel:
    """The criterion and vcov(beta)/sigma^2 of a model from dense (complex) algebra."""

    def __init__(self, model: sml.Lmer, reml: bool) -> None:
        self.model, self.reml = model, reml
        Z = sp.hstack([t.z_matrix() for t in model.random_terms]).toarray()
        X = np.asarray(model.exog, dtype=float)
        y = np.asarray(model.endog, dtype=float)
        w = np.ones(len(y)) if model.weights is None else model.weights
        M = np.column_stack([Z, X, y]) * np.sqrt(w)[:, None]
        self.A = M.T @ M
        self.q, self.p, self.n = Z.shape[1], X.shape[1], len(y)
        self.log_w = float(np.sum(np.log(w)))

    def _system(self, theta: np.ndarray) -> np.ndarray:
        model = self.model
        blocks = []
        for term, part in zip(model.random_terms, model.theta_slices):
            T = np.zeros((term.n_cols, term.n_cols), dtype=complex)
            T[tril_colmajor(term.n_cols)] = theta[part]
            blocks.append(np.kron(np.eye(term.n_levels), T))
        size = self.q + self.p + 1
        lam = np.zeros((size, size), dtype=complex)
        start = 0
        for block in blocks:
            lam[start : start + len(block), start : start + len(block)] = block
            start += len(block)
        lam[self.q :, self.q :] = np.eye(self.p + 1)
        omega = lam.T @ self.A @ lam
        omega[: self.q, : self.q] += np.eye(self.q)
        return omega

    def criterion(self, theta: np.ndarray) -> complex:
        L = complex_cholesky(self._system(theta))
        d = np.diag(L)
        q, p = self.q, self.p
        ld = 2 * np.sum(np.log(d[:q])) + (2 * np.sum(np.log(d[q : q + p])) if self.reml else 0)
        dof = self.n - (p if self.reml else 0)
        return ld - self.log_w + dof * (1 + np.log(2 * np.pi * d[-1] ** 2 / dof))

    def vcov_unscaled(self, theta: np.ndarray) -> np.ndarray:
        omega = self._system(theta)[:-1, :-1]
        unit = np.zeros((self.q + self.p, self.p))
        unit[self.q :] = np.eye(self.p)
        return np.linalg.solve(omega, unit)[self.q :]

    def beta(self, theta: np.ndarray) -> np.ndarray:
        omega = self._system(theta)
        return np.linalg.solve(omega[:-1, :-1], omega[:-1, -1])[self.q :]

    def complex_step(self, func, theta: np.ndarray) -> np.ndarray:
        out = []
        for k in range(theta.size):
            shifted = theta.astype(complex)
            shifted[k] += 1j * STEP
            out.append(np.imag(func(shifted)) / STEP)
        return np.array(out)


def frame(seed: int = 5, n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(
        {
            "a": rng.integers(0, 14, n).astype(str),
            "b": rng.integers(0, 6, n).astype(str),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
        }
    )
    out["y"] = out["x"] + rng.normal(size=n) + out["a"].astype(int) * 0.1
    out["w"] = rng.uniform(0.5, 2.0, n)
    return out


FORMULAS = [
    "y ~ x + (1 | a) + (1 | b)",
    "y ~ x + (x | a) + (1 | b)",
    "y ~ x + (1 | a) + (x + z | b)",
    "y ~ x + (x | a) + (z | b)",
    "y ~ x * z + (x || a) + (0 + z | b)",
]

BIG_FORMULA = "y ~ x + (1 | a) + (x | b) + (x | c)"
"""Seven theta, not on the tiny path: its fits use the gradient."""


def points(model: sml.Lmer) -> list[np.ndarray]:
    """lme4's start, an interior point, negative values and a point on the boundary."""
    rng = np.random.default_rng(11)
    lower = model.theta_lower
    start = model.theta_start
    inside = np.where(
        lower == 0, 0.2 + rng.uniform(0, 1, start.size), rng.normal(0, 0.5, start.size)
    )
    boundary = inside.copy()
    boundary[np.flatnonzero(lower == 0)[-1]] = 0.0
    negative = -inside
    return [start, inside, boundary, negative]


@pytest.mark.parametrize("strategy", ["dense", "classes", "pairs"])
@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_equals_complex_step(formula, strategy, reml):
    model = sml.Lmer.from_formula(formula, frame(), weights="w")
    devfun = model.devfun(reml, strategy=strategy)
    assert devfun.cross.strategy == strategy
    grad = ProfiledGradient(devfun)
    dense = DenseModel(model, reml)
    for theta in points(model):
        value, gradient = grad.value_and_gradient(theta)
        reference = dense.complex_step(dense.criterion, theta)
        assert value == pytest.approx(np.real(dense.criterion(theta)), rel=1e-11)
        np.testing.assert_allclose(
            gradient, reference, rtol=1e-8, atol=1e-8 * np.abs(reference).max()
        )


@pytest.mark.parametrize("formula", [*FORMULAS[1:4], "y ~ 1 + (1 | a)", "y ~ 1 + (x | a)"])
@pytest.mark.parametrize("reml", [True, False])
def test_vcov_and_beta_jacobians_equal_complex_step(formula, reml):
    model = sml.Lmer.from_formula(formula, frame(seed=8), weights="w")
    grad = ProfiledGradient(model.devfun(reml))
    dense = DenseModel(model, reml)
    for theta in points(model)[1:3]:
        # the point after a gradient (whose inverse once overwrote a 1 x 1 factor in place)
        point, _, _ = grad.gradient_pieces(theta)
        vcov, d_vcov = grad.vcov_jacobian(point)
        beta, d_beta, d_vcov_again = grad.beta_jacobian(point)
        np.testing.assert_allclose(vcov, np.real(dense.vcov_unscaled(theta)), rtol=1e-10)
        np.testing.assert_allclose(beta, np.real(dense.beta(theta)), rtol=1e-10)
        reference = dense.complex_step(dense.vcov_unscaled, theta)  # (k, p, p)
        scale = np.abs(reference).max()
        np.testing.assert_allclose(d_vcov, reference, rtol=1e-7, atol=1e-9 * scale)
        np.testing.assert_array_equal(d_vcov, d_vcov_again)
        reference = dense.complex_step(dense.beta, theta).T  # (p, k)
        np.testing.assert_allclose(
            d_beta, reference, rtol=1e-7, atol=1e-9 * np.abs(reference).max()
        )


def test_gradient_pieces_add_up_to_the_gradient():
    model = sml.Lmer.from_formula(FORMULAS[3], frame(seed=2))
    grad = ProfiledGradient(model.devfun(True))
    theta = points(model)[1]
    point, g_log_det, g_pwrss = grad.gradient_pieces(theta)
    _, gradient = grad.value_and_gradient(theta)
    combined = g_log_det + grad.effective_n / point.pwrss * g_pwrss
    np.testing.assert_allclose(combined, gradient, rtol=1e-10, atol=1e-12)


def test_hessian_from_gradient_is_accurate():
    model = sml.Lmer.from_formula(FORMULAS[1], frame(seed=4))
    grad = ProfiledGradient(model.devfun(False))
    dense = DenseModel(model, False)
    theta = points(model)[1]
    hessian = jacobian_of_gradient(lambda t: grad.value_and_gradient(t)[1], theta)

    def exact_gradient(t: np.ndarray) -> np.ndarray:
        return dense.complex_step(dense.criterion, t)

    reference = np.array(
        [
            (exact_gradient(theta + h * e) - exact_gradient(theta - h * e)) / (2 * h)
            for h, e in zip(relative_steps(theta) / 10, np.eye(theta.size))
        ]
    )
    np.testing.assert_allclose(hessian, reference, rtol=1e-6, atol=1e-6 * np.abs(reference).max())


def test_flip_columns_keeps_the_criterion():
    model = sml.Lmer.from_formula(FORMULAS[3], frame())
    grad = ProfiledGradient(model.devfun(True))
    theta = -points(model)[1]
    flipped = grad.flip_columns(theta)
    assert np.all(flipped[model.theta_lower == 0] >= 0)
    assert grad(flipped) == pytest.approx(grad(theta), rel=1e-12)


def test_gradient_is_not_used_with_the_nested_layout():
    data = sml.datasets.load("Pastes")
    nested = sml.Lmer.from_formula("strength ~ 1 + (1 | batch/cask)", data).devfun(strategy="pairs")
    crossed = sml.Lmer.from_formula(BIG_FORMULA, crossed_frame(n=600, levels=(60, 20, 8)))
    assert nested.cross.nested is not None and not gradient_available(nested)
    assert gradient_available(crossed.devfun())
    # the tiny path (microsecond evaluations) and one or two theta: derivative-free fits
    tiny = sml.Lmer.from_formula(FORMULAS[1], frame()).devfun()
    two = sml.Lmer.from_formula(FORMULAS[0], crossed_frame(n=600, levels=(60, 20, 8))).devfun()
    assert tiny.whole_system and gradient_supported(tiny) and not gradient_available(tiny)
    assert not two.whole_system and not gradient_available(two)
    # the dense path still gives the right gradient for a nested model
    grad = ProfiledGradient(nested)
    theta = np.array([0.8, 1.3])
    _, gradient = grad.value_and_gradient(theta)
    steps = relative_steps(theta, 1e-5)
    numeric = [
        (nested(theta + h * e) - nested(theta - h * e)) / (2 * h) for h, e in zip(steps, np.eye(2))
    ]
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6)


def test_gradient_in_the_by_factor_pair_layout_equals_complex_step():
    # a random slope on a continuous covariate with weights: every level of the
    # first term has its own block, so the pair products are kept by factor
    model = sml.Lmer.from_formula("y ~ x + (x | a) + (z | b)", frame(seed=6), weights="w")
    devfun = model.devfun(True, strategy="pairs")
    assert devfun.cross.product.needs_roots  # the by-factor layout
    grad = ProfiledGradient(devfun)
    dense = DenseModel(model, True)
    for theta in points(model):
        _, gradient = grad.value_and_gradient(theta)
        reference = dense.complex_step(dense.criterion, theta)
        np.testing.assert_allclose(
            gradient, reference, rtol=1e-8, atol=1e-8 * np.abs(reference).max()
        )


def test_gradient_is_not_used_on_the_sparse_path_nor_beyond_its_memory(monkeypatch):
    pytest.importorskip("qdldl")
    model = sml.Lmer.from_formula(BIG_FORMULA, crossed_frame(n=600, levels=(60, 20, 8)))
    sparse = model.devfun(True, strategy="sparse")
    assert sparse.cross.sparse is not None
    assert not gradient_supported(sparse) and not gradient_available(sparse)
    with pytest.raises(ValueError, match="dense Schur complement"):
        sparse.factorization(model.theta_start)
    dense = model.devfun(True)
    assert gradient_available(dense)
    assert gradient_bytes(dense) >= 4 * 8 * dense.cross.size_rest**2
    monkeypatch.setattr(gradient_module, "GRADIENT_MAX_BYTES", gradient_bytes(dense) - 1)
    assert not gradient_available(dense)


def test_satterthwaite_falls_back_to_numderiv_without_the_gradient(monkeypatch):
    res = sml.Lmer.from_formula(FORMULAS[0], frame(seed=3)).fit()  # not singular
    analytic = Satterthwaite(res)
    monkeypatch.setattr(gradient_module, "GRADIENT_MAX_BYTES", 0.0)
    fallback = Satterthwaite(res)
    assert (analytic.method, fallback.method) == ("analytic", "numderiv")
    scale = np.abs(analytic.hessian).max()  # numDeriv's differences: ~1e-6 relative
    np.testing.assert_allclose(fallback.hessian, analytic.hessian, rtol=1e-4, atol=1e-5 * scale)


def test_optimizer_choice_weighs_predicted_fit_times():
    model = sml.Lmer.from_formula(BIG_FORMULA, crossed_frame(n=600, levels=(60, 20, 8)))
    devfun = model.devfun()
    evaluation, gradient = gradient_module.predicted_seconds(devfun)
    assert 0 < evaluation < gradient
    k = len(model.theta_start)
    chosen = gradient_module.gradient_fit_calls(k) * gradient < (
        gradient_module.bobyqa_fit_calls(k) * evaluation
    )
    assert gradient_available(devfun) == chosen
    close = gradient_module.gradient_fit_calls(k) * gradient < (
        gradient_module.bobyqa_fit_calls(k, close_start=True) * evaluation
    )
    assert gradient_available(devfun, close_start=True) == close
    # BOBYQA's evaluations grow faster with k than L-BFGS-B's gradients: with one
    # theta BOBYQA wins when a gradient costs more than 6 evaluations, with 72
    # only above 25
    ratios = [
        gradient_module.bobyqa_fit_calls(k) / gradient_module.gradient_fit_calls(k)
        for k in (1, 3, 10, 72)
    ]
    assert ratios == sorted(ratios) and ratios[0] < 8 < ratios[-1]
    # from a close start BOBYQA needs fewer: InstEval's three intercepts, 57 evaluations
    # against 13 predicted gradients (16 measured) of three times the cost
    assert gradient_module.bobyqa_fit_calls(3, close_start=True) == 57
    assert gradient_module.gradient_fit_calls(3) == 13
    assert all(
        gradient_module.bobyqa_fit_calls(k, close_start=True) < gradient_module.bobyqa_fit_calls(k)
        for k in (1, 2, 3, 6)
    )


@pytest.mark.parametrize(
    ("formula", "by_factor"),
    [("y ~ x + (1 | a) + (1 | b)", False), ("y ~ x + (x | a) + (z | b)", True)],
)
def test_pair_chunks_in_threads_give_the_serial_numbers(monkeypatch, formula, by_factor):
    # small chunks, so that the tables have several; then the same model in one
    # thread and in two: the chunks' places are disjoint and the adjoint's parts
    # are summed in chunk order, so the numbers are the same to the last bit
    monkeypatch.setattr(blocks, "PAIR_CHUNK", 64)
    model = sml.Lmer.from_formula(formula, frame(seed=6), weights="w")
    theta = points(model)[1]
    results = []
    for threaded_from in (np.inf, 0):
        monkeypatch.setattr(blocks, "THREADED_PAIRS", threaded_from)
        devfun = model.devfun(True, strategy="pairs")
        product = devfun.cross.product
        assert product.needs_roots == by_factor and len(product.chunks) > 2
        with blas_threads(2):
            assert active_threads() == min(2, os.cpu_count() or 1)
            value, gradient = ProfiledGradient(devfun).value_and_gradient(theta)
        results.append((devfun(theta), value, gradient))
    (serial, serial_value, serial_gradient), (threaded, value, gradient) = results
    assert threaded == serial and value == serial_value
    np.testing.assert_array_equal(gradient, serial_gradient)


@pytest.mark.parametrize(
    "formula",
    ["y ~ x + (1 | a) + (1 | b)", "y ~ x + (x | a) + (z | b)", "y ~ x + (x | a:b) + (x | a)"],
)
def test_pair_tables_indexed_by_int64_give_the_int32_numbers(monkeypatch, formula):
    # tables of more than 2**31 places or pairs index them with int64: force that
    # layout on a small model (by class, by factor, and nested), same bits
    model = sml.Lmer.from_formula(formula, frame(seed=7), weights="w")
    theta = points(model)[1]
    results = []
    for limit in (blocks.INT32_INDICES, 0):
        monkeypatch.setattr(blocks, "INT32_INDICES", limit)
        devfun = model.devfun(True, strategy="pairs")
        product = devfun.cross.product
        assert product.starts.dtype == (np.int32 if limit else np.int64)
        assert product.targets.dtype == product.starts.dtype
        value = devfun(theta)
        gradient = None
        if devfun.cross.nested is None:
            gradient = ProfiledGradient(devfun).value_and_gradient(theta)[1]
        results.append((value, gradient, devfun.cross.nested is None))
    (value32, gradient32, crossed), (value64, gradient64, _) = results
    assert value64 == value32
    np.testing.assert_allclose(value32, model.devfun(True, strategy="dense")(theta), rtol=1e-12)
    if crossed:
        np.testing.assert_array_equal(gradient64, gradient32)
    assert crossed == ("a:b" not in formula)


def test_active_threads_follow_the_blas_limit():
    cpus = os.cpu_count() or 1
    assert active_threads() == cpus
    with blas_threads(1):
        assert active_threads() == 1
        with blas_threads(2):  # nested blocks share the first one's limit
            assert active_threads() == 1
    assert active_threads() == cpus


def test_gradient_arrays_count_against_the_memory_limit(monkeypatch):
    """A 7,000 x 7,000 crossing under STATSMODELS_LMER_MEMORY=1GiB was allowed (one
    work array, 513 MiB) and its gradient's four arrays took the fit to 1.2 GiB."""
    from statsmodels_lmer.engine.cost import MEMORY_VARIABLE

    model = sml.Lmer.from_formula(BIG_FORMULA, crossed_frame(n=600, levels=(60, 20, 8)))
    dense = model.devfun(True)
    monkeypatch.setattr(gradient_module, "ALWAYS_AVAILABLE", 0)
    monkeypatch.setenv(MEMORY_VARIABLE, str(int(gradient_bytes(dense))))
    assert gradient_supported(dense)
    monkeypatch.setenv(MEMORY_VARIABLE, str(int(gradient_bytes(dense)) - 1))
    assert not gradient_supported(dense) and not gradient_available(dense)
