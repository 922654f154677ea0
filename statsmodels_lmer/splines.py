"""R's splines: the interpolating and back splines of lme4's profile intervals, and
the bases of ``splines::ns`` and ``splines::bs`` for formulas."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import interpolate

__all__ = ["b_spline_basis", "back_spline", "natural_spline_basis"]


def back_spline(par: np.ndarray, zeta: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """par as a function of zeta, as R's ``backSpline(interpSpline(zeta ~ par))``.

    The forward spline is the natural cubic interpolating spline of zeta on par. The
    backward one interpolates par at the knots' zeta values with slopes 1 / zeta'(par):
    cubic Hermite pieces inside, quadratic end pieces (linear when a quadratic would
    turn back). Outside the range of zeta it is NaN.
    """
    order = np.argsort(par)
    x, y = par[order], zeta[order]
    if x.size < 2 or np.any(np.diff(x) <= 0):
        raise ValueError("knot positions must be strictly increasing")
    if x.size == 2:
        slope = np.full(2, (y[1] - y[0]) / (x[1] - x[0]))
    else:
        slope = interpolate.CubicSpline(x, y, bc_type="natural")(x, 1)
    dy, dx = np.diff(y), np.diff(x)
    if not np.all(dy > 0):
        raise ValueError("spline must be monotone")
    k = x.size - 1
    coef = np.zeros((k, 4))
    coef[:, 0] = x[:-1]
    inv = 1.0 / slope
    coef[:, 1] = inv[:-1]
    for i in range(k):
        a = np.array([[dy[i] ** 2, dy[i] ** 3], [2 * dy[i], 3 * dy[i] ** 2]])
        b = np.array([dx[i] - dy[i] * inv[i], inv[i + 1] - inv[i]])
        coef[i, 2:] = np.linalg.solve(a, b)
    if k > 1:
        coef[0, 3] = coef[-1, 3] = 0.0
        a = np.array([[dy[0], dy[0] ** 2], [1.0, 2 * dy[0]]])
        coef[0, 1:3] = np.linalg.solve(a, np.array([dx[0], inv[1]]))
        coef[-1, 2] = (dx[-1] - dy[-1] * coef[-1, 1]) / dy[-1] ** 2
    if coef[0, 2] > 0:
        coef[0, 2], coef[0, 1] = 0.0, dx[0] / dy[0]
    if coef[-1, 2] < 0:
        coef[-1, 2], coef[-1, 1] = 0.0, dx[-1] / dy[-1]
    knots = y

    def predict(z: np.ndarray) -> np.ndarray:
        z = np.atleast_1d(np.asarray(z, dtype=float))
        i = np.searchsorted(knots, z, side="left") - 1  # knots[i] < z <= knots[i + 1]
        i[z == knots[0]] = 0
        ok = (i >= 0) & (i < k)
        out = np.full(z.shape, np.nan)
        d = z[ok] - knots[i[ok]]
        c = coef[i[ok]]
        out[ok] = c[:, 0] + d * (c[:, 1] + d * (c[:, 2] + d * c[:, 3]))
        return out

    return predict


def natural_spline_basis(
    x: np.ndarray, knots: np.ndarray, boundary: tuple[float, float], intercept: bool = False
) -> np.ndarray:
    """The basis of R's ``splines::ns(x, knots =, Boundary.knots =, intercept =)``.

    Cubic B-splines on the boundary knots (each four times) and the interior
    ``knots``, projected on the null space of their second derivatives at the
    two boundary knots (the orthogonal complement of ``Q``'s first two columns
    in the QR decomposition of those derivatives, as R's ``qr.qty``); outside the
    boundary knots each basis function continues linearly. Without
    ``intercept`` the first B-spline is dropped first, as R does.

    Returns
    -------
    ndarray, shape (len(x), len(knots) + 1 + intercept)
    """
    x = np.asarray(x, dtype=float)
    low, high = boundary
    all_knots = np.sort(np.concatenate([[low] * 4, np.asarray(knots, dtype=float), [high] * 4]))
    n_basis = len(all_knots) - 4
    splines = interpolate.BSpline(all_knots, np.eye(n_basis), 3, extrapolate=False)
    basis = np.zeros((x.size, n_basis))
    inside = (x >= low) & (x <= high)
    basis[inside] = splines(x[inside])
    for pivot, rows in ((low, x < low), (high, x > high)):
        if rows.any():  # linear beyond the boundary knots
            basis[rows] = _taylor(splines, pivot, 1, x[rows])
    curvature = splines.derivative(2)(np.array([low, high]))
    if not intercept:
        basis, curvature = basis[:, 1:], curvature[:, 1:]
    q, _ = np.linalg.qr(curvature.T, mode="complete")
    out = basis @ q[:, 2:]
    out[np.isnan(x)] = np.nan
    return out


TAYLOR_PIVOT_SHARE = 0.25
"""R's ``bs``: outside the boundary knots, the Taylor expansion about a point this far
from the boundary knot towards the next knot (R >= 3.2.3's ``e <- 1/4``)."""


def b_spline_basis(
    x: np.ndarray,
    knots: np.ndarray,
    boundary: tuple[float, float],
    degree: int = 3,
    intercept: bool = False,
) -> np.ndarray:
    """The basis of R's ``splines::bs(x, knots =, Boundary.knots =, degree =, intercept =)``.

    B-splines of order ``degree + 1`` on the boundary knots (each ``degree + 1``
    times) and the interior ``knots``. Outside the boundary knots each basis
    function continues as its Taylor polynomial of degree ``degree`` about a
    pivot a quarter of the way to the nearest knot inside (R's extrapolation,
    where patsy's ``bs`` refuses). Without ``intercept`` the first B-spline is
    dropped, as R does; missing ``x`` gives missing rows.

    Returns
    -------
    ndarray, shape (len(x), len(knots) + degree + intercept)
    """
    x = np.asarray(x, dtype=float).ravel()
    order = degree + 1
    low, high = boundary
    inner = np.sort(np.asarray(knots, dtype=float).ravel())
    all_knots = np.concatenate([[low] * order, inner, [high] * order])
    n_basis = len(all_knots) - order
    splines = interpolate.BSpline(all_knots, np.eye(n_basis), degree, extrapolate=False)
    basis = np.full((x.size, n_basis), np.nan)
    inside = (x >= low) & (x <= high)
    basis[inside] = splines(x[inside])
    share = TAYLOR_PIVOT_SHARE
    pivots = (
        ((1 - share) * low + share * all_knots[order], x < low),
        ((1 - share) * high + share * all_knots[-order - 1], x > high),
    )
    for pivot, rows in pivots:
        if rows.any():
            basis[rows] = _taylor(splines, pivot, degree, x[rows])
    return basis if intercept else basis[:, 1:]


def _taylor(splines: interpolate.BSpline, pivot: float, degree: int, x: np.ndarray) -> np.ndarray:
    """Each basis function's Taylor polynomial of degree ``degree`` about ``pivot`` at ``x``."""
    at = np.array([pivot])
    out = np.tile(splines(at)[0], (x.size, 1))
    for power in range(1, degree + 1):
        derivative = splines.derivative(power)(at)[0] / math.factorial(power)
        out += np.outer((x - pivot) ** power, derivative)
    return out
