"""Satterthwaite denominator degrees of freedom, as lmerTest computes them.

The variance parameters are ``varpar = (theta, sigma)``. Their asymptotic
covariance is ``A = 2 H^-1`` with ``H`` the Hessian of the (unprofiled)
deviance in varpar (REML or ML as the fit); the pseudo-inverse over positive
eigenvalues is used, as lmerTest. ``J_i = d vcov(beta) / d varpar_i``. For a
contrast ``l``: ``df = 2 (l' C l)^2 / (g' A g)`` with ``g_i = l' J_i l``
(lmerTest's ``contest1D``). For several rows ``L`` the contrast covariance is
eigen-decomposed and the per-direction df are combined into the F statistic's
denominator df (lmerTest's ``contestMD``).

Derivatives (``method="analytic"``, the default): the deviance is
``dev(theta, sigma) = ld(theta) + r2(theta) / sigma^2 + n' log(2 pi sigma^2)``
(``ld = log|L_Z|^2``, plus ``log|R_X|^2`` for REML; ``n' = n`` or ``n - p``),
so with the analytic gradients of ``ld`` and ``r2``
(:meth:`~statsmodels_lmer.engine.gradient.ProfiledGradient.gradient_pieces`)

* ``H_theta,theta`` is a central difference of ``grad ld + grad r2 / sigma^2``
  (``2 k`` gradients, steps ``1e-4`` of each element's scale,
  :meth:`~statsmodels_lmer.engine.gradient.ProfiledGradient.difference_steps`);
* ``H_theta,sigma = -2 grad r2 / sigma^3`` and
  ``H_sigma,sigma = 6 r2 / sigma^4 - 2 n' / sigma^2`` exactly;
* ``d vcov(beta) / d theta = sigma^2 d C_u / d theta`` exactly
  (:meth:`~statsmodels_lmer.engine.gradient.ProfiledGradient.vcov_jacobian`),
  ``d vcov(beta) / d sigma = 2 sigma C_u``.

``method="numderiv"`` is lmerTest's own scheme: numDeriv's Richardson
differences of the deviance (about ``4 k^2 + 12 k`` evaluations, ``k =
len(theta) + 1``). Both are evaluated the same way at a singular fit (theta
elements at 0 are differenced across 0, as lmerTest does) and go through the
same pseudo-inverse. A progress bar (``progress=None``: the package setting,
:func:`set_progress`) appears when they take more than a couple of seconds.

Units: the df do not depend on the units of the response (``y`` times ``c``
gives the same theta, ``sigma`` and ``C`` times ``c`` and ``c^2``), and the
derivatives are taken in ``(theta, s)`` with ``s = sigma / sigma_hat``, where
``s = 1`` at the estimates: with ``y`` about 1e76 ``sigma^4`` overflows, and
about 1e-80 it underflows. The df of a linear reparametrization are the same;
the public ``hessian``, ``jacobians`` and ``vcov_varpar`` are mapped back to
``(theta, sigma)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from .._parallel import Progress
from ..engine.gradient import (
    STEP_FLOOR,
    ProfiledGradient,
    analytic_derivatives_pay,
    jacobian_of_gradient,
)
from ..exceptions import warn
from ..linalg import unit_diagonal_eigenvalues
from .contrast_results import f_pvalue
from .derivatives import hessian, hessian_evaluations, jacobian, jacobian_evaluations

__all__ = [
    "METHODS",
    "ContrastTest",
    "Satterthwaite",
    "analytic_steps",
    "fstat_ddf",
]

METHODS = ("analytic", "numderiv")
"""How the derivatives are computed (see the module docstring)."""


def analytic_steps(k: int) -> int:
    """Engine calls of the analytic derivatives for ``k`` variance parameters (theta, sigma)."""
    return 2 * (k - 1) + 1


_EIGEN_TOL = 1e-8


@dataclass
class ContrastTest:
    """One test of ``L beta = rhs``.

    Attributes
    ----------
    estimate : ndarray
        ``L beta`` (before subtracting rhs).
    cov : ndarray
        Covariance of ``L beta``.
    statistic : float
        t value for one row, F value for several.
    num_df : int
        Numerator df (rank of the contrast).
    den_df : float
        Denominator df.
    pvalue : float
        Two-sided p-value (t) or upper-tail p-value (F).
    mean_sq : float
        ``F * sigma^2`` (lmerTest's Mean Sq; Sum Sq = Mean Sq * NumDF).
    is_t : bool
        Whether ``statistic`` is a t value (one-row contrast).
    """

    estimate: np.ndarray
    cov: np.ndarray
    statistic: float
    num_df: int
    den_df: float
    pvalue: float
    mean_sq: float
    is_t: bool = False

    @property
    def fvalue(self) -> float:
        """The F statistic (``t**2`` for a one-row contrast)."""
        return self.statistic**2 if self.is_t else self.statistic


class Satterthwaite:
    """lmerTest's Satterthwaite machinery for one fitted model.

    Parameters
    ----------
    res : LmerResults
        A fitted model.
    progress : bool or None
        Progress bar over the engine evaluations (None: the package setting,
        shown when the derivatives take more than a couple of seconds).
    method : {"analytic", "numderiv"}
        Analytic derivatives (default) or lmerTest's numDeriv differences
        (see the module docstring). Where the analytic derivatives are not
        supported or do not pay
        (:func:`~statsmodels_lmer.engine.gradient.analytic_derivatives_pay`:
        the sparse path, a Schur complement above about order 8000, or a
        nested layout above order 1000) the numDeriv differences are used and
        ``method`` says so.
    """

    def __init__(self, res, progress: bool | None = None, method: str = "analytic") -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        res = getattr(res, "_results", res)
        self.reml = res.reml
        self.method = method
        self.beta = np.asarray(res.params, dtype=float)
        self.sigma = float(res.sigma)
        scale = np.float64(res.scale)  # sigma^2; numpy's float: no OverflowError
        unscaled = np.asarray(res.normalized_cov_params, dtype=float)
        self.vcov = unscaled * scale
        # The deviance function holds the cross-products: it is used here and
        # not kept, so that the results stay small when pickled.
        devfun = res.model.devfun(res.reml)
        self.varpar = np.append(np.asarray(res.theta, dtype=float), self.sigma)
        # The contrasts' variances and their derivatives are computed for the
        # engine's columns X T (T = I but for columns near the span of earlier ones,
        # engine/centering.py), where they are well conditioned: l' C l = (l T) C~ (l T)'.
        # The df come from C / sigma^2 and the derivatives in (theta, s) (module docstring).
        self._centering = devfun.cross.centering
        if self._centering is not None:
            unscaled = devfun.engine_vcov_unscaled(self.varpar[:-1])
        self._unit_vcov_engine = unscaled
        self._scale = float(scale)
        if method == "analytic" and not analytic_derivatives_pay(devfun):
            self.method = "numderiv"  # the sparse path, dense arrays too large, or nested
        if self.method == "analytic":
            unit_hessian, self._unit_jacobians = self._analytic(devfun, progress)
        else:
            unit_hessian, self._unit_jacobians = self._numderiv(devfun, progress)
        outer = np.outer(self._units, self._units)
        with np.errstate(over="ignore", under="ignore"):
            self.hessian = unit_hessian / outer
        self._unit_vcov_varpar = self._pseudo_inverse_times_two(unit_hessian, outer)

    def __setstate__(self, state: dict) -> None:
        """Load a pickle, also one written before the derivatives were kept in
        ``(theta, s)`` (its arrays in ``(theta, sigma)``, mapped here)."""
        if "_unit_jacobians" not in state and "_engine_jacobians" in state:
            state = dict(state)
            sigma = np.float64(state["sigma"])
            jacobians = state.pop("_engine_jacobians")
            state["_unit_jacobians"] = [j / sigma**2 for j in jacobians[:-1]]
            state["_unit_jacobians"].append(jacobians[-1] / sigma)
            units = _units_of(len(state["varpar"]), sigma)
            state["_unit_vcov_varpar"] = state.pop("vcov_varpar") / np.outer(units, units)
            state["_unit_vcov_engine"] = state.pop("_vcov_engine") / sigma**2
            state["_scale"] = float(sigma**2)
            state.pop("jacobians", None)
        self.__dict__.update(state)

    @property
    def _units(self) -> np.ndarray:
        """``d varpar / d (theta, s)``: 1 for theta, ``sigma_hat`` for sigma."""
        return _units_of(len(self.varpar), self.sigma)

    @property
    def vcov_varpar(self) -> np.ndarray:
        """``A = 2 H^-1``, the asymptotic covariance of ``(theta, sigma)``."""
        with np.errstate(over="ignore", under="ignore"):
            return self._unit_vcov_varpar * np.outer(self._units, self._units)

    @property
    def _vcov_engine(self) -> np.ndarray:
        """``C`` of the engine's columns, in the response's units."""
        return np.float64(self._scale) * self._unit_vcov_engine

    @property
    def _engine_jacobians(self) -> list[np.ndarray]:
        """``d C / d varpar_i`` of the engine's columns, in ``(theta, sigma)``."""
        with np.errstate(over="ignore", under="ignore"):
            by_theta = [np.float64(self._scale) * j for j in self._unit_jacobians[:-1]]
            return [*by_theta, np.float64(self.sigma) * self._unit_jacobians[-1]]

    @property
    def jacobians(self) -> list[np.ndarray]:
        """``J_i = d vcov(beta) / d varpar_i`` in ``(theta, sigma)``, of the model's columns."""
        if self._centering is None:
            return self._engine_jacobians
        return [self._centering.covariance(j) for j in self._engine_jacobians]

    def _engine_contrast(self, L: np.ndarray) -> np.ndarray:
        """``L T``: the contrast of the engine's coefficients (``L`` itself without centring)."""
        return L if self._centering is None else self._centering.contrast(L)

    def _contrast_variance(self, L: np.ndarray, unit: bool = False) -> np.ndarray:
        """``L C L'`` (one row: a scalar in a 1 x 1 array); over ``sigma^2`` when ``unit``."""
        engine = np.atleast_2d(self._engine_contrast(L))
        return engine @ (self._unit_vcov_engine if unit else self._vcov_engine) @ engine.T

    def _numderiv(self, devfun, progress: bool | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """lmerTest's numDeriv Hessian of the deviance and Jacobian of ``vcov(beta) /
        sigma_hat^2``, in ``(theta, s = sigma / sigma_hat)``."""
        k, p = len(self.varpar), len(self.beta)
        total = hessian_evaluations(k) + jacobian_evaluations(k)
        sigma = self.sigma
        with Progress(total, "Satterthwaite df", "evaluation", progress) as bar:

            def deviance(varpar: np.ndarray) -> float:
                bar.update()
                return devfun.deviance(varpar[:-1], varpar[-1] * sigma)

            def vcov_beta(varpar: np.ndarray) -> np.ndarray:
                bar.update()
                return varpar[-1] ** 2 * devfun.engine_vcov_unscaled(varpar[:-1]).ravel()

            bar.note("Hessian of the deviance in (theta, sigma)")
            at = np.append(self.varpar[:-1], 1.0)
            hess = hessian(deviance, at)
            bar.note("Jacobian of vcov(beta)")
            jac = jacobian(vcov_beta, at)
        return hess, [jac[:, i].reshape(p, p) for i in range(jac.shape[1])]

    def _analytic(self, devfun, progress: bool | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """The Hessian and Jacobian from the analytic gradients (module docstring)."""
        grad = ProfiledGradient(devfun)
        theta, sigma = self.varpar[:-1], self.sigma
        k = len(self.varpar)
        with (
            devfun.blas_threads(),
            Progress(analytic_steps(k), "Satterthwaite df", "gradient", progress) as bar,
        ):
            point, _, grad_r2 = grad.gradient_pieces(theta)
            bar.update()

            def theta_gradient(at: np.ndarray) -> np.ndarray:
                _, grad_ld, grad_r2_at = grad.gradient_pieces(at)
                bar.update()
                return grad_ld + (grad_r2_at / sigma) / sigma

            bar.note("Hessian of the deviance in (theta, sigma)")
            hess = np.empty((k, k))
            steps = self._hessian_steps(grad, theta)
            hess[:-1, :-1] = jacobian_of_gradient(theta_gradient, theta, steps)
            # in s = sigma / sigma_hat, at s = 1 (module docstring)
            hess[:-1, -1] = hess[-1, :-1] = -2.0 * (grad_r2 / sigma) / sigma
            n_eff = grad.effective_n
            hess[-1, -1] = 6.0 * (point.pwrss / sigma) / sigma - 2.0 * n_eff
            vcov_unscaled, d_vcov = grad.vcov_jacobian(point, engine_columns=True)
        return hess, [*d_vcov, 2.0 * vcov_unscaled]

    @staticmethod
    def _hessian_steps(grad: ProfiledGradient, theta: np.ndarray) -> np.ndarray:
        """Central-difference steps of the theta block of the Hessian.

        The engine's steps are 1e-4 of each element's row of ``T``, in the units
        of that random-effect column (so rescaling a covariate or the prior
        weights rescales them alike). An element in a row of zeros (a singular
        fit's zero intercept sd next to a slope) gets the engine's floor squared,
        1e-12, where round-off swamps the difference (H off by 7e-4): it gets
        1e-6 instead, or 1e-6 of the largest theta when that is below 1. (A fixed
        1e-6 for every element moved Days' df by 4e-5 with the prior weights
        times 1e6, where theta is 1e-3 as large, and by 4e-3 with Days times 1e4.)
        """
        steps = grad.difference_steps(theta)
        largest = float(np.max(np.abs(theta), initial=0.0))
        floor = STEP_FLOOR * (min(1.0, largest) if largest > 0 else 1.0)
        return np.where(steps > STEP_FLOOR**2, steps, np.maximum(steps, floor))

    @staticmethod
    def _pseudo_inverse_times_two(h: np.ndarray, outer: np.ndarray) -> np.ndarray:
        """``2 H^-1``; lmerTest's pseudo-inverse where ``H`` is not clearly positive definite.

        ``h`` is in ``(theta, s)``; ``outer`` (``u u'`` of :attr:`_units`) maps it
        to ``(theta, sigma)`` (``H_sigma = h / (u u')``), where lmerTest's own
        procedure runs.

        lmerTest inverts over the eigenvalues of ``H`` above 1e-8 (absolute), with
        warnings for negative and near-zero ones. That threshold depends on the
        units of ``y`` and of the covariates: sleepstudy's Reaction times 1e4 put
        sigma's eigenvalue below it, and Days' df became 5.8e22 instead of 161.
        So ``H`` is first judged on ``D H D`` with a unit diagonal
        (:func:`~statsmodels_lmer.linalg.unit_diagonal_eigenvalues`), whose eigenvalues do not
        depend on units: when all are above 1e-8, ``H`` is positive definite and
        ``2 H^-1`` is exact in any units. Otherwise (a boundary or unconverged
        fit) lmerTest's own procedure runs on ``H``, warnings included.
        """
        if np.all(unit_diagonal_eigenvalues(h) > _EIGEN_TOL):
            inverse = np.linalg.inv(h)
            return inverse + inverse.T
        with np.errstate(over="ignore", under="ignore"):
            in_sigma = h / outer
        if not np.all(np.isfinite(in_sigma)):  # sigma beyond squaring: judged in s
            in_sigma, outer = h, np.ones_like(h)
        values, vectors = np.linalg.eigh(in_sigma)
        negative = values < -_EIGEN_TOL
        near_zero = np.abs(values) <= _EIGEN_TOL
        if negative.any():
            warn(
                "Model failed to converge with "
                f"{int(negative.sum())} negative eigenvalue(s) of the Hessian in "
                f"(theta, sigma): {', '.join(f'{v:.1e}' for v in values[negative])}",
                ConvergenceWarning,
            )
        if near_zero.any():
            warn(
                f"Model may not have converged with {int(near_zero.sum())} eigenvalue(s) "
                f"close to zero: {', '.join(f'{v:.1e}' for v in values[near_zero])}",
                ConvergenceWarning,
            )
        positive = values > _EIGEN_TOL
        q = vectors[:, positive]
        with np.errstate(over="ignore", under="ignore"):
            return 2.0 * ((q / values[positive]) @ q.T) / outer

    # -- tests ---------------------------------------------------------
    def df_1d(self, contrast: np.ndarray) -> float:
        """Satterthwaite df of one contrast vector (lmerTest ``contest1D``)."""
        contrast = np.asarray(contrast, dtype=float)
        var = float(self._contrast_variance(contrast, unit=True)[0, 0])
        if not var > 0:  # a zero contrast: lmerTest's 0 / 0
            return np.nan
        denom = self._gag(contrast)
        return 2.0 * var**2 / denom if denom > 0 else np.inf

    def coefficient_df(self) -> np.ndarray:
        """Satterthwaite df of each fixed-effect coefficient."""
        return np.array([self.df_1d(row) for row in np.eye(len(self.beta))])

    def test(self, L: np.ndarray, rhs: np.ndarray | float = 0.0) -> ContrastTest:
        """t test (one row) or F test (several rows) of ``L beta = rhs``."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        rhs = np.broadcast_to(np.asarray(rhs, dtype=float), (L.shape[0],)).copy()
        if L.shape[0] == 1:
            return self._test_1d(L[0], rhs[0])
        return self._test_md(L, rhs)

    def _test_1d(self, contrast: np.ndarray, rhs: float) -> ContrastTest:
        estimate = float(contrast @ self.beta)
        var = float(self._contrast_variance(contrast)[0, 0])
        t = (estimate - rhs) / np.sqrt(var) if var > 0 else np.nan  # a zero contrast: NaN
        df = self.df_1d(contrast)
        pvalue = float(2 * stats.t.sf(abs(t), df))
        return ContrastTest(
            np.array([estimate]), np.array([[var]]), t, 1, df, pvalue, t**2 * self.sigma**2, True
        )

    def _test_md(self, L: np.ndarray, rhs: np.ndarray) -> ContrastTest:
        beta = self.beta
        if np.any(rhs != 0):
            beta = beta - np.linalg.pinv(L) @ rhs
        unit_cov = self._contrast_variance(L, unit=True)
        cov = np.float64(self._scale) * unit_cov
        values, vectors = np.linalg.eigh(unit_cov)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
        tol = max(np.sqrt(np.finfo(float).eps) * values[0], 0.0)
        rank = int(np.sum(values > tol))
        rotated = (vectors.T @ L)[:rank]
        if rank == 1:
            single = self._test_1d(rotated[0], float(rotated[0] @ (self.beta - beta)))
            return ContrastTest(
                L @ self.beta,
                cov,
                single.statistic**2,
                1,
                single.den_df,
                f_pvalue(single.statistic**2, 1, single.den_df),
                single.mean_sq,
            )
        t2 = ((rotated @ beta) / self.sigma) ** 2 / values[:rank]
        fvalue = float(t2.sum() / rank)
        nu = np.array([2 * values[m] ** 2 / self._gag(rotated[m]) for m in range(rank)])
        ddf = fstat_ddf(nu)
        pvalue = f_pvalue(fvalue, rank, ddf)
        return ContrastTest(L @ self.beta, cov, fvalue, rank, ddf, pvalue, fvalue * self.sigma**2)

    def _gag(self, contrast: np.ndarray) -> float:
        """``g' A g`` with ``g_i = l' J_i l``: the variance of ``l' C l``, over ``sigma^4``."""
        engine = self._engine_contrast(contrast)
        grad = np.array([engine @ J @ engine for J in self._unit_jacobians])
        return float(grad @ self._unit_vcov_varpar @ grad)


def _units_of(k: int, sigma: float) -> np.ndarray:
    """``d varpar / d (theta, s)`` for ``k`` variance parameters (the last sigma's)."""
    return np.append(np.ones(k - 1), np.float64(sigma))


def fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """Denominator df of an F built from t statistics with df ``nu`` (lmerTest)."""
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    expectation = float(np.sum(nu / (nu - 2)))
    return 2 * expectation / (expectation - nu.size)
