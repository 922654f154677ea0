"""Numerical derivatives with Richardson extrapolation (numDeriv's method).

Central differences at steps ``h, h/2, h/4, h/8`` with ``h = d |x| + eps``
(``eps = 1e-4`` where ``x`` is near 0), extrapolated to remove the ``h^2``,
``h^4`` and ``h^6`` error terms, as R's numDeriv (``method = "Richardson"``)
used by lmerTest: ``d = 1e-4`` for first derivatives (``grad``, ``jacobian``)
and ``d = 0.1`` for the Hessian (``genD``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["hessian", "hessian_evaluations", "jacobian", "jacobian_evaluations"]

_D_FIRST = 1e-4
_D_SECOND = 0.1
_EPS = 1e-4
_ZERO_TOL = np.sqrt(np.finfo(float).eps / 7e-7)
_ROUNDS = 4
_RATIO = 2.0


def jacobian_evaluations(k: int) -> int:
    """Calls of the function :func:`jacobian` makes for ``k`` arguments."""
    return 1 + 2 * _ROUNDS * k


def hessian_evaluations(k: int) -> int:
    """Calls of the function :func:`hessian` makes for ``k`` arguments."""
    return 1 + 2 * _ROUNDS * k + _ROUNDS * k * (k - 1)


def _steps(x: np.ndarray, d: float) -> np.ndarray:
    return np.abs(d * x) + _EPS * (np.abs(x) < _ZERO_TOL)


def _extrapolate(estimates: list[np.ndarray]) -> np.ndarray:
    """Richardson extrapolation of estimates at steps h, h/2, ... (error in h^2)."""
    table = [np.asarray(e, dtype=float) for e in estimates]
    for m in range(1, len(table)):
        factor = 4.0**m
        table = [(factor * table[i + 1] - table[i]) / (factor - 1) for i in range(len(table) - 1)]
    return table[0]


def jacobian(func: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Jacobian of a vector function, shape ``(len(func(x)), len(x))``."""
    x = np.asarray(x, dtype=float)
    base = np.atleast_1d(np.asarray(func(x), dtype=float))
    out = np.empty((base.size, x.size))
    for i in range(x.size):
        h = _steps(x, _D_FIRST)[i]
        estimates = []
        for _ in range(_ROUNDS):
            step = np.zeros_like(x)
            step[i] = h
            upper = np.atleast_1d(func(x + step))
            lower = np.atleast_1d(func(x - step))
            estimates.append((upper - lower) / (2 * h))
            h /= _RATIO
        out[:, i] = _extrapolate(estimates)
    return out


def hessian(func: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """Hessian of a scalar function, by extrapolated central second differences."""
    x = np.asarray(x, dtype=float)
    k = x.size
    f0 = float(func(x))
    h0 = _steps(x, _D_SECOND)
    hess = np.empty((k, k))
    for i in range(k):
        h = h0.copy()
        estimates = []
        for _ in range(_ROUNDS):
            step = np.zeros(k)
            step[i] = h[i]
            estimates.append((func(x + step) - 2 * f0 + func(x - step)) / h[i] ** 2)
            h /= _RATIO
        hess[i, i] = _extrapolate(estimates)
    for i in range(k):
        for j in range(i):
            h = h0.copy()
            estimates = []
            for _ in range(_ROUNDS):
                step = np.zeros(k)
                step[i], step[j] = h[i], h[j]
                second = func(x + step) - 2 * f0 + func(x - step)
                diag_part = hess[i, i] * h[i] ** 2 + hess[j, j] * h[j] ** 2
                estimates.append((second - diag_part) / (2 * h[i] * h[j]))
                h /= _RATIO
            hess[i, j] = hess[j, i] = _extrapolate(estimates)
    return hess
