"""Analytic derivatives of the profiled criterion in the blocked engine.

With ``Lbar = blockdiag(Lambda, I_{p+1})`` and ``Omega = Lbar' A Lbar +
diag(I_q, 0)`` (``A = [Z X y]' W [Z X y]``), the criterion is a weighted sum of
log-determinants of leading blocks of ``Omega``, ``f = sum_t c_t log|Omega_t|``
with ``sum_t c_t = 1``. ``Lbar`` is linear in theta, so

    df / dtheta_k = 2 tr(K Lbar' A E_k),    K = sum_t c_t pad(Omega_t^-1),

with ``E_k = d Lbar / d theta_k``. For ``theta_k = T_i[r, c]`` this is twice
element ``[c, r]`` of the sum over the levels of term ``i`` of the diagonal
``p_i x p_i`` blocks of ``K Lbar' A``. ``Lambda^-1`` appears nowhere, so the
formula holds on the boundary (singular fits) and for negative theta. In the
engine's blocks (first term eliminated, dense Schur complement ``S`` of the
rest) only the rest-rest block ``V`` of ``K`` is formed:

    V = pad(S_t0^-1) + (n' / r2) z z',   z = [u_R; beta; -1],

with ``t0 = r, n' = n`` (ML) or ``t0 = r + p, n' = n - p`` (REML). The rest
terms need the diagonal blocks of ``V Lambda_R' Atilde`` (``Atilde`` the
unscaled Schur complement); the first term needs the *adjoint* of the
engine's Schur product contracted with ``Q = Lambda_R V Lambda_R'``
(:meth:`~statsmodels_lmer.engine.blocks.CrossProducts.schur_adjoint`). A
value with its gradient costs one factorization, one ``dpotri`` of the
leading block of the factor, a few passes over ``m x m`` arrays and one
adjoint product. The same pieces give ``d vcov(beta) / d theta`` and
``d beta / d theta`` exactly (Satterthwaite, profiles).

The gradient needs the dense Schur complement: it is available when the
engine evaluates the criterion that way (:func:`gradient_available`; not with
the compact nested layout, whose evaluations are far cheaper than a dense
factorization, nor on the sparse path or when the dense arrays would exceed
:data:`GRADIENT_MAX_BYTES`). Elsewhere the package falls back to finite
differences.
See docs/derivatives.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..parametrization import tril_colmajor
from .cost import (
    ALWAYS_AVAILABLE,
    EVALUATION_OVERHEAD,
    GRADIENT_MAX_BYTES,
    GRADIENT_OVERHEAD,
    POLISHED_MAX_THETA,
    available_memory,
    bobyqa_fit_calls,
    dense_call_seconds,
    dense_gradient_bytes,
    gradient_fit_calls,
)
from .objective import Factorization, ProfiledDeviance, fill_upper

__all__ = [
    "EVALUATION_OVERHEAD",
    "GRADIENT_MAX_BYTES",
    "GRADIENT_OVERHEAD",
    "NESTED_ANALYTIC_MAX",
    "POLISHED_MAX_THETA",
    "GradientPoint",
    "ProfiledGradient",
    "analytic_derivatives_pay",
    "bobyqa_fit_calls",
    "gradient_available",
    "gradient_bytes",
    "gradient_fit_calls",
    "gradient_supported",
    "jacobian_of_gradient",
    "predicted_seconds",
    "relative_steps",
]

STEP = 1e-4
"""Relative step of central differences of the gradient."""

STEP_FLOOR = 1e-6
"""Smallest step (for theta elements near 0)."""


def gradient_bytes(devfun: ProfiledDeviance) -> float:
    """Estimated bytes of the arrays one gradient holds (beyond the cross-products)."""
    cross = devfun.cross
    strategy = cross.product.name if cross.product is not None else None
    return dense_gradient_bytes(cross.sizes, strategy)


def gradient_supported(devfun: ProfiledDeviance) -> bool:
    """Whether the analytic derivatives can be formed for this objective.

    They need the dense Schur complement: not on the sparse path, and not
    when its arrays would exceed :data:`GRADIENT_MAX_BYTES` (order above about
    8000) or the memory available (they come on top of the fit's estimate:
    a 7,000 x 7,000 crossing under a 1 GiB limit peaked at 1.2 GiB); finite
    differences (and BOBYQA for the fit) serve there.
    """
    if devfun.cross.product is None:
        return False
    needed = gradient_bytes(devfun)
    if needed > GRADIENT_MAX_BYTES:
        return False
    limit = available_memory() if needed > ALWAYS_AVAILABLE else None
    return limit is None or needed <= limit  # its arrays come on top of the fit's estimate


NESTED_ANALYTIC_MAX = 1000
"""Above this order of the Schur complement, a nested layout's derivatives are finite
differences of its evaluations (linear in the levels) rather than analytic ones, which
need the dense ``m x m`` factor: Satterthwaite's df of ``(1 | s/c)`` with 5,000 schools
took 81 s analytically (lmerTest: 0.2 s)."""


def analytic_derivatives_pay(devfun: ProfiledDeviance) -> bool:
    """Whether post-fit derivatives (Satterthwaite's) should be analytic for this objective.

    When they are supported (:func:`gradient_supported`), except for a compact
    nested layout of order above :data:`NESTED_ANALYTIC_MAX`.
    """
    if not gradient_supported(devfun):
        return False
    return devfun.cross.nested is None or devfun.cross.size_rest <= NESTED_ANALYTIC_MAX


def gradient_available(devfun: ProfiledDeviance, close_start: bool = False) -> bool:
    """Whether the analytic gradient is used for this objective's fit.

    True when the derivatives are supported (:func:`gradient_supported`) and
    the engine evaluates the criterion through the dense Schur complement.
    With the compact nested layout an evaluation is linear in the number of
    levels while a gradient needs the dense factor, and on the tiny path
    (:attr:`ProfiledDeviance.whole_system`) an evaluation costs a tenth of a
    gradient, so finite differences of the cheap evaluations are used there.
    Otherwise the gradient is used when the predicted time of an L-BFGS-B fit
    (:func:`gradient_fit_calls` gradients of :func:`predicted_seconds`) is
    below that of a BOBYQA fit (:func:`bobyqa_fit_calls` evaluations, fewer
    with ``close_start``, a start estimated from the data or a fitted theta):
    few parameters and a large dense block favour BOBYQA (crossed
    ``(1|a) + (1|b)``, 20,000 x 5,000 levels: 18 s against 42 s; InstEval's
    three intercepts 1.5 s against 1.8 s), many parameters or an expensive
    product the gradient (kb07's 72 theta: 2 s against 95 s; crossed
    ``(1|a) + (1|b)`` at 1e6 rows, 7.8 s against 12.3 s).
    """
    if devfun.whole_system:  # microsecond evaluations: BOBYQA is cheaper than gradients
        return False
    if not gradient_supported(devfun) or devfun.cross.nested is not None:
        return False
    n_theta = sum(part.stop - part.start for part in devfun.theta_slices)
    evaluation, gradient = predicted_seconds(devfun)
    bobyqa = bobyqa_fit_calls(n_theta, close_start) * evaluation
    return gradient_fit_calls(n_theta) * gradient < bobyqa


def predicted_seconds(devfun: ProfiledDeviance) -> tuple[float, float]:
    """Predicted seconds of one evaluation and of one gradient, from the design's sizes.

    See :func:`~statsmodels_lmer.engine.cost.dense_call_seconds`.
    """
    cross = devfun.cross
    return dense_call_seconds(cross.sizes, cross.product.name)


def relative_steps(x: np.ndarray, step: float = STEP, floor: float = STEP_FLOOR) -> np.ndarray:
    """Central-difference steps ``step |x|``, at least ``floor``."""
    return np.maximum(step * np.abs(np.asarray(x, dtype=float)), floor)


def jacobian_of_gradient(
    gradient: Callable[[np.ndarray], np.ndarray], x: np.ndarray, steps: np.ndarray | None = None
) -> np.ndarray:
    """Symmetrized central differences of a gradient: a Hessian from ``2 k`` gradients.

    Parameters
    ----------
    gradient : callable
        Maps ``x`` to the gradient (length ``k``).
    x : ndarray
        Where to differentiate.
    steps : ndarray, optional
        Per-coordinate steps; default :func:`relative_steps`.
    """
    x = np.asarray(x, dtype=float)
    steps = relative_steps(x) if steps is None else np.asarray(steps, dtype=float)
    k = x.size
    out = np.empty((k, k))
    for j in range(k):
        shift = np.zeros(k)
        shift[j] = steps[j]
        forward = np.asarray(gradient(x + shift), dtype=float)
        backward = np.asarray(gradient(x - shift), dtype=float)
        out[:, j] = (forward - backward) / (2.0 * steps[j])
    return 0.5 * (out + out.T)


@dataclass(eq=False)
class GradientPoint:
    """The factor at one theta with the pieces the derivatives share.

    Attributes
    ----------
    theta : ndarray
        Theta in lme4's order.
    value : float
        The criterion (REML or ML as the objective).
    log_det : float
        ``log|L_Z|^2`` (ML) or ``log|L_Z|^2 + log|R_X|^2`` (REML).
    pwrss : float
        Penalized weighted residual sum of squares ``r2``.
    factors : list of ndarray
        Each term's ``T`` in the engine's order.
    factorization : Factorization
        The engine's factor at theta.
    schur : ndarray
        The unscaled Schur complement ``Atilde``, both triangles filled.
    weights : ndarray
        ``Wt_c = T1 M_c^-1 T1'`` per weight class.
    z : ndarray
        ``[u_R; beta; -1]``: the solution in the rest's coordinates.
    """

    theta: np.ndarray
    value: float
    log_det: float
    pwrss: float
    factors: list[np.ndarray]
    factorization: Factorization
    schur: np.ndarray
    weights: np.ndarray
    z: np.ndarray


class ProfiledGradient:
    """The criterion of a :class:`ProfiledDeviance` with its analytic derivatives.

    Calling the object gives the criterion (as the deviance function);
    :meth:`value_and_gradient` gives it with its gradient from the same
    factorization. theta is in lme4's order throughout.

    Parameters
    ----------
    devfun : ProfiledDeviance
        The objective (REML or ML).
    """

    def __init__(self, devfun: ProfiledDeviance) -> None:
        self.devfun = devfun
        self.reml = devfun.reml
        cross = devfun.cross
        self.n_cols = [term.n_cols for term in devfun.terms]
        self.slices = list(devfun.theta_slices)
        self.tril = [tril_colmajor(p) for p in self.n_cols]
        self.n_theta = sum(s.stop - s.start for s in self.slices)
        self.rest_blocks = []
        start = 0
        for levels, cols in cross.rest_sizes:
            self.rest_blocks.append((start, levels, cols))
            start += levels * cols
        self.scalar_rest = all(cols == 1 for _, _, cols in self.rest_blocks)
        self.n_gradients = 0

    def __call__(self, theta: np.ndarray) -> float:
        """The criterion at theta (``inf`` where the factor fails)."""
        return self.devfun(theta)

    @property
    def n_evaluations(self) -> int:
        """Evaluations of the criterion alone."""
        return self.devfun.n_evaluations

    @property
    def effective_n(self) -> float:
        """``n`` (ML) or ``n - p`` (REML)."""
        cross = self.devfun.cross
        return cross.nobs - (cross.n_fixed if self.reml else 0)

    # -- theta <-> T ---------------------------------------------------
    def _factors(self, theta: np.ndarray) -> list[np.ndarray]:
        out = []
        for p, part, tri in zip(self.n_cols, self.slices, self.tril):
            T = np.zeros((p, p))
            T[tri] = theta[part]
            out.append(T)
        return out

    def difference_steps(self, theta: np.ndarray) -> np.ndarray:
        """Steps for central differences of the gradient, one per theta element.

        ``1e-4`` times the larger of ``|theta_k|`` and the length of the row
        of ``T`` holding it (the standard deviation of that random-effect
        column over sigma): an off-diagonal element near 0 then gets a step
        on the scale of its row, not of 1. At least :data:`STEP_FLOOR`
        squared (a row of zeros).
        """
        theta = np.asarray(theta, dtype=float)
        scale = np.abs(theta)
        for T, part, (rows, _) in zip(self._factors(theta), self.slices, self.tril):
            lengths = np.sqrt(np.sum(T * T, axis=1))
            scale[part] = np.maximum(scale[part], lengths[rows])
        return np.maximum(STEP * scale, STEP_FLOOR**2)

    def flip_columns(self, theta: np.ndarray) -> np.ndarray:
        """theta with every column of each ``T`` whose diagonal is negative negated.

        ``T T'`` and the criterion are unchanged; the result is within lme4's
        bounds (diagonals at least 0).
        """
        theta = np.array(theta, dtype=float)
        for p, part, (rows, cols) in zip(self.n_cols, self.slices, self.tril):
            values = theta[part]
            for column in range(p):
                if values[(rows == column) & (cols == column)][0] < 0:
                    values[cols == column] *= -1.0
            theta[part] = values
        return theta

    def _rest_rows(
        self,
        factors: list[np.ndarray],
        y: np.ndarray,
        transpose: bool,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """``Lambda_R y`` (or ``Lambda_R' y``) on the rows of ``y`` (m rows; identity below r).

        ``out``: where to write it (not ``y`` itself); default a new array.
        """
        out = np.empty_like(y) if out is None else out
        end = 0
        for (start, levels, cols), T in zip(self.rest_blocks, factors[1:]):
            out[end:start] = y[end:start]
            end = start + levels * cols
            M = T.T if transpose else T
            if cols == 1:
                np.multiply(y[start:end], M[0, 0], out=out[start:end])
            else:  # straight into the rows of the result, no temporary
                shape = (levels, cols, y.shape[1])
                np.matmul(M, y[start:end].reshape(shape), out=out[start:end].reshape(shape))
        out[end:] = y[end:]
        return out

    def _rest_columns(self, factors: list[np.ndarray], y: np.ndarray) -> np.ndarray:
        """``y Lambda_R'`` on the columns of a C-ordered ``y`` (identity beyond column r).

        Row-major throughout, so that the rows of the result (read by
        :meth:`_rest_terms` and the adjoint) are contiguous.
        """
        out = np.empty_like(y, order="C")
        end = 0
        for (start, levels, cols), T in zip(self.rest_blocks, factors[1:]):
            out[:, end:start] = y[:, end:start]
            end = start + levels * cols
            if cols == 1:
                np.multiply(y[:, start:end], T[0, 0], out=out[:, start:end])
            else:
                shape = (y.shape[0], levels, cols)
                np.matmul(y[:, start:end].reshape(shape), T.T, out=out[:, start:end].reshape(shape))
        out[:, end:] = y[:, end:]
        return out

    def _rest_diagonal(self, factors: list[np.ndarray]) -> np.ndarray:
        """Diagonal of ``Lambda_R`` (m entries) when every rest term is scalar."""
        parts = [
            np.full(levels, T[0, 0]) for (_, levels, _), T in zip(self.rest_blocks, factors[1:])
        ]
        return np.concatenate(parts + [np.ones(self.devfun.cross.n_fixed + 1)])

    # -- one point -------------------------------------------------------
    def point(self, theta: np.ndarray) -> GradientPoint | None:
        """Factor at theta (None where the penalized system is not positive definite)."""
        theta = np.asarray(theta, dtype=float)
        factorization = self.devfun.factorization(theta)
        if factorization is None:
            return None
        fz = factorization
        coefs = _leading_solve(fz.chol)
        T1 = fz.T1
        weights = T1 @ fz.m_inv @ T1.T
        value = self.devfun.criterion(fz.log_det_l2, fz.log_det_rx2, fz.pwrss, self.reml)
        log_det = fz.log_det_l2 + (fz.log_det_rx2 if self.reml else 0.0)
        return GradientPoint(
            theta,
            float(value),
            float(log_det),
            fz.pwrss,
            self._factors(theta),
            fz,
            fz.schur,
            weights,
            np.append(coefs, -1.0),
        )

    def _leading_inverse(self, point: GradientPoint, in_place: bool = False) -> np.ndarray:
        """``pad(S_t0^-1)`` as an ``m x m`` array (``t0 = r``, or ``r + p`` for REML).

        The factor's trailing rows are replaced by the identity, so the inverse
        of the whole array holds ``S_t0^-1`` in its leading block. ``in_place``
        overwrites the factor (``point.factorization.chol``), where nothing
        needs it any more; otherwise a copy of it is used.
        """
        cross = self.devfun.cross
        r, p = cross.n_random_rest, cross.n_fixed
        m = point.factorization.chol.shape[0]
        t0 = r + p if self.reml else r
        out = point.factorization.chol if in_place else point.factorization.chol.copy()
        out[t0:, :] = 0.0
        out.reshape(-1)[t0 * (m + 1) :: m + 1] = 1.0  # L = blockdiag(L_t0, I)
        if t0:
            # the C-ordered lower factor's transpose is a Fortran-ordered upper one
            _, info = sla.lapack.dpotri(out.T, lower=0, overwrite_c=1)
            if info != 0:
                raise np.linalg.LinAlgError("the inverse of the factor failed")
        out[t0:, :] = 0.0
        fill_upper(out)
        if in_place:
            point.factorization.chol = None  # consumed
        return out

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The criterion and its gradient at theta (``inf`` and NaN where the factor fails)."""
        with np.errstate(over="ignore", invalid="ignore"):  # extreme scales: a NaN gradient
            point = self.point(theta)
            if point is None:
                return np.inf, np.full(self.n_theta, np.nan)
            scale = self.effective_n / point.pwrss
            inner = self._leading_inverse(point, in_place=True)
            z = point.z
            inner = sla.blas.dger(scale, z, z, a=inner.T, overwrite_a=1).T  # += s z z', in place
            gradient = self.contract(point, [inner], [1.0])[0]
            point.factorization.chol = inner  # the work array, given back for the next call
            self.devfun.give_back(point.factorization)
            return point.value, gradient

    def gradient_pieces(self, theta: np.ndarray) -> tuple[GradientPoint, np.ndarray, np.ndarray]:
        """The point, ``d log_det / d theta`` and ``d pwrss / d theta``.

        The deviance at ``(theta, sigma)`` is ``log_det + pwrss / sigma^2 + ...``,
        so these two give its gradient in theta for any sigma.

        Raises
        ------
        numpy.linalg.LinAlgError
            When the penalized system is not positive definite.
        """
        point = self.point(theta)
        if point is None:
            raise np.linalg.LinAlgError("the penalized system is not positive definite")
        inner = [self._leading_inverse(point), np.outer(point.z, point.z)]
        grads = self.contract(point, inner, [1.0, 0.0])
        return point, grads[0], grads[1]

    # -- the contraction -------------------------------------------------
    def contract(
        self, point: GradientPoint, inners: list[np.ndarray], first_scales: list[float]
    ) -> np.ndarray:
        """``2 sum_j [K Lbar' A]_(ij c, ij r)`` for each rest block ``V`` of ``K``.

        ``first_scales`` holds ``sum_t c_t`` of each ``K`` (the multiple of
        ``M11^-1`` in its first block). Returns ``(len(inners), n_theta)``.
        The ``inners`` are overwritten (with scalar rest terms, the products
        are formed in place: three ``m x m`` arrays live with the factor).
        """
        out = np.zeros((len(inners), self.n_theta))
        factors = point.factors
        cross = self.devfun.cross
        diagonal = self._rest_diagonal(factors) if self.scalar_rest else None
        products = []
        for row, inner in zip(out, inners):
            if diagonal is not None:
                scaled = np.multiply(inner, diagonal[None, :], out=inner)  # V Lambda_R'
                self._rest_terms(row, scaled, point.schur)
                q = np.multiply(scaled, diagonal[:, None], out=scaled)
            else:
                scaled = self._rest_columns(factors, inner)  # V Lambda_R', C-ordered
                self._rest_terms(row, scaled, point.schur)
                q = self._rest_rows(factors, scaled, transpose=False, out=inner)
            products.append(q)
        adjoints = [cross.schur_adjoint(q) for q in products]
        fz = point.factorization
        T1, a11 = fz.T1, cross.a11_classes
        base = fz.m_inv @ T1.T @ a11  # M^-1 T1' A11 per class
        counted = np.einsum("c,cab->ab", cross.class_counts, base)
        residual = np.eye(T1.shape[0]) - point.weights @ a11  # I - Wt A11
        for row, adjoint, scale in zip(out, adjoints, first_scales):
            block = scale * counted - np.sum(fz.m_inv @ T1.T @ adjoint @ residual, axis=0)
            self._scatter(row, 0, block)
        self.n_gradients += 1
        return out

    def _rest_terms(self, row: np.ndarray, scaled: np.ndarray, schur: np.ndarray) -> None:
        """The rest terms' entries: diagonal blocks of ``(V Lambda_R') Atilde``."""
        for term, (start, levels, cols) in enumerate(self.rest_blocks, start=1):
            rows = slice(start, start + levels * cols)
            left = scaled[rows].reshape(levels, cols, -1)
            right = schur[rows].reshape(levels, cols, -1)
            block = np.einsum("las,lbs->ab", left, right)
            self._scatter(row, term, block)

    def _scatter(self, row: np.ndarray, term: int, block: np.ndarray) -> None:
        rows, cols = self.tril[term]
        row[self.slices[term]] = 2.0 * block[cols, rows]

    # -- vcov(beta) and beta ----------------------------------------------
    def _solution_blocks(self, point: GradientPoint) -> tuple[np.ndarray, list[tuple]]:
        """``C_u = (R_X' R_X)^-1`` and per-term blocks of ``x = P^-1 [0; I_p]``,
        ``F = A_P Lbar x``, ``u`` and ``rho = Z' W (y - X beta - Z Lambda u)``.
        """
        cross = self.devfun.cross
        r, p, m = cross.n_random_rest, cross.n_fixed, cross.size_rest
        fz, factors = point.factorization, point.factors
        T1 = fz.T1
        l1, p1 = cross.first_levels, cross.first_cols
        a11 = cross.a11_classes[cross.class_of_level]
        m_inv = fz.m_inv[cross.class_of_level]
        unit = np.zeros((r + p, p))
        unit[r:] = np.eye(p)
        x_rest = sla.cho_solve((fz.chol[: r + p, : r + p], True), unit)
        vcov_unscaled = x_rest[r:].copy()
        lam_x = np.zeros((m, p))
        lam_x[: r + p] = x_rest
        lam_x = self._rest_rows(factors, lam_x, transpose=False)
        coupling = np.asarray(cross.a_r1.T @ lam_x).reshape(l1, p1, p)
        x_first = -(m_inv @ (T1.T @ coupling))
        lam_x_first = T1 @ x_first
        f_first = a11 @ lam_x_first + coupling
        f_rest = np.asarray(cross.a_r1 @ lam_x_first.reshape(l1 * p1, p)) + cross.a_rr @ lam_x
        v = self._rest_rows(factors, point.z[:, None], transpose=False)[:, 0]
        tv = np.asarray(cross.a_r1.T @ v).reshape(l1, p1)
        u_first = -(m_inv @ (T1.T @ tv[:, :, None]))[:, :, 0]
        lam_u_first = (T1 @ u_first[:, :, None])[:, :, 0]
        rho_first = -((a11 @ lam_u_first[:, :, None])[:, :, 0] + tv)
        rho_rest = -(np.asarray(cross.a_r1 @ lam_u_first.reshape(-1)) + cross.a_rr @ v)
        blocks = [(x_first, f_first, u_first, rho_first)]
        for start, levels, cols in self.rest_blocks:
            rows = slice(start, start + levels * cols)
            blocks.append(
                (
                    x_rest[rows].reshape(levels, cols, p),
                    f_rest[rows].reshape(levels, cols, p),
                    point.z[rows].reshape(levels, cols),
                    rho_rest[rows].reshape(levels, cols),
                )
            )
        return vcov_unscaled, blocks

    def vcov_jacobian(
        self, point: GradientPoint, engine_columns: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``C_u = (R_X' R_X)^-1`` and ``d C_u / d theta``, shape ``(n_theta, p, p)``.

        ``d C_u / d theta_k = -(N_k + N_k')`` with ``N_k = (E_k x)' F``. With
        ``engine_columns``, of the engine's columns ``X T`` where ``cross.centering``
        centres columns near the span of earlier ones (:mod:`~.centering`).
        """
        vcov_unscaled, blocks = self._solution_blocks(point)
        d_vcov = self._by_theta(blocks)[1]
        centering = self.devfun.cross.centering
        if centering is None or engine_columns:
            return vcov_unscaled, d_vcov
        return centering.covariance(vcov_unscaled), centering.covariance(d_vcov)

    def beta_jacobian(self, point: GradientPoint) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """beta, ``d beta / d theta`` ``(p, n_theta)`` and ``d C_u / d theta``.

        ``d beta / d theta_k = sum_j x_(j c) rho_(j r) - F_(j r) u_(j c)``.
        """
        _, blocks = self._solution_blocks(point)
        cross = self.devfun.cross
        r, p = cross.n_random_rest, cross.n_fixed
        d_beta, d_vcov = self._by_theta(blocks)
        beta = cross.model_beta(point.z[r : r + p].copy())
        if cross.centering is None:
            return beta, d_beta, d_vcov
        centering = cross.centering  # the sums are of X T
        return beta, centering.beta(d_beta), centering.covariance(d_vcov)

    def _by_theta(self, blocks: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
        """``d beta / d theta`` (p, k) and ``d C_u / d theta`` (k, p, p) from the blocks."""
        p = self.devfun.cross.n_fixed
        d_beta = np.empty((p, self.n_theta))
        d_vcov = np.empty((self.n_theta, p, p))
        for term, (x, f, u, rho) in enumerate(blocks):
            x_rho = np.einsum("lcp,lr->crp", x, rho)
            f_u = np.einsum("lrp,lc->crp", f, u)
            crossed = np.einsum("lcp,lrq->crpq", x, f)
            positions = range(self.slices[term].start, self.slices[term].stop)
            for position, r, c in zip(positions, *self.tril[term]):
                d_beta[:, position] = x_rho[c, r] - f_u[c, r]
                n_k = crossed[c, r]
                d_vcov[position] = -(n_k + n_k.T)
        return d_beta, d_vcov


def _leading_solve(chol: np.ndarray) -> np.ndarray:
    """``c`` with ``L_11' c = l`` for the C-ordered lower factor ``[[L_11, 0], [l', d]]``.

    Solved on the whole factor (its transpose is a Fortran-ordered upper
    triangle: no copy), with ``[l, 0]`` on the right: the last unknown is 0
    and the others are ``c``. Slicing ``L_11`` out made scipy copy the
    ``m x m`` array first (0.08 s at order 5003, 1 s where fresh memory is
    slow to fault in, against 0.007 s).
    """
    m = chol.shape[0]
    rhs = np.append(chol[m - 1, : m - 1], 0.0)
    solution, info = sla.lapack.dtrtrs(chol.T, rhs, lower=0, trans=0)
    if info == m:  # only d is 0 (no residual), which c does not involve
        return sla.solve_triangular(chol[: m - 1, : m - 1], rhs[: m - 1], lower=True, trans="T")
    if info != 0:
        raise np.linalg.LinAlgError(f"singular matrix: resolution failed at diagonal {info - 1}")
    return solution[: m - 1]
