"""Convergence checks after the optimizer, as lme4 1.1-31's ``checkConv``.

lme4 computes finite-difference derivatives of the objective at the optimum
(``deriv12``: central differences with step ``1e-4`` in theta, no bounds) and
then checks, in this order:

1. **singular fit**: a theta element with lower bound 0 below ``1e-4``. This
   is reported (:data:`SINGULAR_MESSAGE`, lme4's "boundary (singular) fit") and the
   remaining checks are skipped, since derivatives at a boundary say nothing
   about convergence.
2. **gradient**: the scaled gradient ``solve(chol(H), g)`` (R's ``chol`` is the
   upper factor ``R`` with ``H = R'R``); the largest elementwise minimum of the
   absolute scaled and absolute unscaled gradient is compared with
   ``grad_tol = 2e-3``.
3. **Hessian** eigenvalues, ``hess_tol = 1e-6``: negative ones (the optimum is
   not a minimum), near-zero ones or a failing Cholesky (not identifiable),
   a very large one (``max * tol > 1``) or a large ratio (``min / max < tol``).

Codes are lme4's: negative codes are failures (``-1`` gradient, ``-3``
negative eigenvalues, ``-4`` singular Hessian, ``-5`` NA gradient, ``-6``
Hessian problem); ``2`` and ``3`` flag a nearly unidentifiable model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..linalg import solve_triangular

__all__ = [
    "DERIV12_STEP",
    "SINGULAR_MESSAGE",
    "ConvergenceCheck",
    "central_differences",
    "check_conv",
    "check_hessian",
    "deriv12",
    "scaled_gradient",
]

SINGULAR_MESSAGE = (
    "boundary (singular) fit: a variance is estimated as 0 or a correlation as +-1; "
    "see res.is_singular(), res.varcorr and docs/checks.md"
)
"""The message for a fit on the boundary of the parameter space (lme4's isSingular)."""

GRAD_TOL = 2e-3
"""lme4's ``check.conv.grad`` tolerance."""

HESS_TOL = 1e-6
"""lme4's ``check.conv.hess`` tolerance."""

SINGULAR_TOL = 1e-4
"""lme4's ``check.conv.singular`` tolerance (that of ``isSingular``)."""

DERIV12_STEP = 1e-4
"""lme4's ``deriv12`` step."""


def central_differences(
    fun: Callable[[np.ndarray], float], x: np.ndarray, fx: float, delta: float = DERIV12_STEP
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``f(x + delta e_j)``, the gradient and the Hessian's diagonal by central differences.

    ``g_j = (f(x + d e_j) - f(x - d e_j)) / (2 d)`` and
    ``H_jj = (f(x + d e_j) - 2 f(x) + f(x - d e_j)) / d^2`` (``2 n``
    evaluations), as :func:`deriv12` computes them.

    Returns
    -------
    plus, gradient, diagonal : ndarray, shape (n,)
    """
    n = x.size
    steps = delta * np.eye(n)  # x + steps[j] moves element j only
    plus, gradient, diagonal = np.empty(n), np.empty(n), np.empty(n)
    for j in range(n):
        plus[j] = float(fun(x + steps[j]))
        minus = float(fun(x - steps[j]))
        gradient[j] = (plus[j] - minus) / (2.0 * delta)
        diagonal[j] = (plus[j] - 2.0 * fx + minus) / delta**2
    return plus, gradient, diagonal


def deriv12(
    fun: Callable[[np.ndarray], float],
    x: Any,
    delta: float = DERIV12_STEP,
    fx: float | None = None,
) -> dict[str, np.ndarray]:
    """Gradient and Hessian by central finite differences, as lme4's ``deriv12``.

    ``g_j = (f(x + d e_j) - f(x - d e_j)) / (2 d)``,
    ``H_jj = (f(x + d e_j) - 2 f(x) + f(x - d e_j)) / d^2`` and, for ``i != j``,
    ``H_ij = (f(++) - f(+-) - f(-+) + f(--)) / (2 d)^2``. No bounds are
    applied, as lme4 calls it from ``optwrap``: near a zero diagonal element
    of theta the objective is evaluated at a small negative value, which is
    valid (``Lambda`` with a negated column gives the same covariance).

    Parameters
    ----------
    fun : callable
        Scalar function of a vector.
    x : array_like
        Where to differentiate.
    delta : float
        Step (lme4: ``1e-4``).
    fx : float, optional
        ``fun(x)`` when already known.

    Returns
    -------
    dict
        ``{"gradient": (n,), "Hessian": (n, n)}``; ``2 n^2 + 1`` evaluations
        (``2 n^2`` when ``fx`` is given).
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    f0 = float(fun(x)) if fx is None else float(fx)
    _, gradient, diagonal = central_differences(fun, x, f0, delta)
    hessian = np.diag(diagonal)
    steps = delta * np.eye(n)
    for j in range(n):
        up, down = x + steps[j], x - steps[j]
        for i in range(j):
            value = (
                float(fun(up + steps[i]))
                - float(fun(down + steps[i]))
                - float(fun(up - steps[i]))
                + float(fun(down - steps[i]))
            ) / (2.0 * delta) ** 2
            hessian[i, j] = hessian[j, i] = value
    return {"gradient": gradient, "Hessian": hessian}


def scaled_gradient(gradient: np.ndarray, hessian: np.ndarray) -> np.ndarray | None:
    """lme4's ``solve(chol(Hessian), gradient)``; None when the Cholesky fails.

    R's ``chol`` returns the upper factor ``R`` of ``H = R'R``; this solves
    ``R s = g``.
    """
    hessian = np.asarray(hessian, dtype=float)
    gradient = np.asarray(gradient, dtype=float)
    if not (np.all(np.isfinite(hessian)) and np.all(np.isfinite(gradient))):
        return None
    try:
        lower = np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        return None
    result = solve_triangular(lower.T, gradient, lower=False)
    return None if np.any(np.isnan(result)) else result


@dataclass
class ConvergenceCheck:
    """What the checks found (``res.optinfo["conv"]``).

    Attributes
    ----------
    code : list of int
        lme4's codes (empty when every check passed). As in lme4, a Hessian
        problem replaces the gradient's code ``-1``; :attr:`failed` keeps it.
    messages : list of str
        One message per problem (lme4's ``optinfo$conv$lme4$messages``).
    warnings : list of str
        Texts of the warnings to emit, as lme4 raises them: the gradient
        message, then the Hessian messages joined by ``";"``.
    singular : bool
        Whether the fit is on the boundary (the other checks are skipped).
    failed : bool
        True when a check failed: the gradient check or a Hessian check with
        a negative code. Codes 2 and 3 (nearly unidentifiable) warn but do not
        count as a failure.
    max_grad : float or None
        ``max(min(|scaled gradient|, |gradient|))``.
    component : int or None
        1-based index of that maximum.
    scaled_gradient : ndarray or None
    hessian_eigenvalues : ndarray or None
        Decreasing, as R's ``eigen``.
    """

    code: list[int] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    singular: bool = False
    failed: bool = False
    max_grad: float | None = None
    component: int | None = None
    scaled_gradient: np.ndarray | None = None
    hessian_eigenvalues: np.ndarray | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dictionary for ``res.optinfo["conv"]``."""
        return {
            "code": list(self.code),
            "messages": list(self.messages),
            "singular": self.singular,
            "max_grad": self.max_grad,
            "component": self.component,
            "scaled_gradient": self.scaled_gradient,
            "hessian_eigenvalues": self.hessian_eigenvalues,
            "failed": self.failed,
        }


def check_hessian(
    hessian: np.ndarray, tol: float = HESS_TOL, kind: str = ""
) -> tuple[list[int], list[str], np.ndarray | None]:
    """lme4's ``checkHess``: codes, messages and the eigenvalues.

    Parameters
    ----------
    hessian : ndarray
        Symmetric Hessian of the objective.
    tol : float
        lme4's ``check.conv.hess`` tolerance.
    kind : str
        Inserted in the messages (lme4 uses ``"fixed-effect"`` for GLMMs).
    """
    hessian = np.asarray(hessian, dtype=float)
    if not np.all(np.isfinite(hessian)):
        return [-6], ["Problem with Hessian check (infinite or missing values?)"], None
    eigenvalues = np.linalg.eigvalsh(hessian)[::-1]
    negative = int(np.sum(eigenvalues < -tol))
    if negative:
        return (
            [-3],
            [
                f"Model failed to converge: degenerate {kind} Hessian with "
                f"{negative} negative eigenvalues"
            ],
            eigenvalues,
        )
    zero = int(np.sum(np.abs(eigenvalues) < tol))
    if zero or not _is_positive_definite(hessian):
        return (
            [-4],
            [
                f"{kind} Hessian is numerically singular: "
                "parameters are not uniquely determined".strip()
            ],
            eigenvalues,
        )
    codes: list[int] = []
    messages: list[str] = []
    largest, smallest = eigenvalues[0], eigenvalues[-1]
    if largest * tol > 1:
        codes.append(2)
        messages.append(
            "Model is nearly unidentifiable: very large eigenvalue\n - Rescale variables?"
        )
    if smallest / largest < tol:
        codes.append(3)
        messages.append(
            "Model is nearly unidentifiable: large eigenvalue ratio\n - Rescale variables?"
        )
    return codes, messages, eigenvalues


def _is_positive_definite(matrix: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return False
    return True


def check_conv(
    derivs: dict[str, np.ndarray] | None,
    theta: np.ndarray,
    lower: np.ndarray,
    grad_tol: float = GRAD_TOL,
    hess_tol: float = HESS_TOL,
    singular_tol: float = SINGULAR_TOL,
) -> ConvergenceCheck:
    """lme4 1.1-31's ``checkConv`` for an ``lmer`` fit.

    Parameters
    ----------
    derivs : dict or None
        ``{"gradient", "Hessian"}`` from :func:`deriv12`; None skips the
        derivative checks (lme4's ``calc.derivs = FALSE``).
    theta : ndarray
        The estimate.
    lower : ndarray
        Lower bounds of theta (0 on diagonals).
    grad_tol, hess_tol, singular_tol : float
        lme4's ``check.conv.grad``, ``check.conv.hess`` and
        ``check.conv.singular`` tolerances.

    Returns
    -------
    ConvergenceCheck
    """
    result = ConvergenceCheck()
    theta = np.asarray(theta, dtype=float)
    lower = np.asarray(lower, dtype=float)
    bounded = lower == 0
    if np.any(theta[bounded] < singular_tol):
        result.singular = True
        result.messages.append(SINGULAR_MESSAGE)
        return result
    if derivs is None:
        return result
    gradient = np.asarray(derivs["gradient"], dtype=float)
    hessian = np.asarray(derivs["Hessian"], dtype=float)
    if np.any(np.isnan(gradient)):
        result.code = [-5]
        result.failed = True
        result.messages = ["Gradient contains NAs"]
        result.warnings = list(result.messages)
        return result

    scaled = scaled_gradient(gradient, hessian)
    result.scaled_gradient = scaled
    if scaled is None:
        result.code = [-1]
        result.failed = True
        message = "unable to evaluate scaled gradient"
        result.messages.append(message)
        result.warnings.append(message)
    else:
        mingrad = np.minimum(np.abs(scaled), np.abs(gradient))
        result.component = int(np.argmax(mingrad)) + 1
        result.max_grad = float(mingrad.max()) if mingrad.size else 0.0
        if result.max_grad > grad_tol:
            result.code = [-1]
            result.failed = True
            message = (
                f"Model failed to converge with max|grad| = {result.max_grad:g} "
                f"(tol = {grad_tol:g}, component {result.component})"
            )
            result.messages.append(message)
            result.warnings.append(message)

    codes, messages, eigenvalues = check_hessian(hessian, hess_tol)
    result.hessian_eigenvalues = eigenvalues
    if codes:
        # lme4 replaces the gradient's code by the Hessian's (keeping the messages).
        result.code = codes
        result.failed = result.failed or any(c < 0 for c in codes)
        result.messages.extend(messages)
        result.warnings.append(";".join(messages))
    return result
