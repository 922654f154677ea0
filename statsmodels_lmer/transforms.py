"""Formula transforms that keep R's meaning where patsy's differ or are missing.

patsy's ``scale(x)`` divides by the standard deviation with ``ddof=0``; R's
``scale(x)`` divides by ``sd(x)`` (``n - 1``). An lme4 formula with
``scale(x)`` would silently give coefficients ``sqrt(n / (n - 1))`` times
R's (and a different REML criterion), so formulas here see R's version.
patsy has no natural splines: ``ns(x, df=3)`` is R's ``splines::ns``; ``bs(x, df=4)``
is R's ``splines::bs`` (patsy's inside the boundary knots, R's extrapolation outside).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .splines import b_spline_basis, natural_spline_basis

__all__ = [
    "FORMULA_TRANSFORMS",
    "BSpline",
    "NaturalSpline",
    "OrthogonalPolynomial",
    "RScale",
    "bs",
    "ns",
    "poly",
    "scale",
]


class RScale:
    """R's ``scale(x, center = TRUE, scale = TRUE)`` as a patsy stateful transform.

    The mean and scale are learned on the data the model is fitted to and
    applied unchanged to new data (prediction), as patsy's transforms are.
    With ``center`` the scale is the standard deviation with ``n - ddof`` in
    the denominator; without it, the root mean square ``sqrt(sum(x**2) / (n - ddof))``,
    as R's. ``rescale`` is patsy's name for R's ``scale`` argument.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.sum_squares: np.ndarray | None = None  # about the mean (Chan's update)
        self.raw_squares: np.ndarray | None = None  # about zero

    def memorize_chunk(self, x: Any, center: bool = True, scale: bool = True, **options: Any):
        """Accumulate the count, mean and sums of squares of one chunk of rows."""
        x = _as_columns(x)
        chunk = RScale()
        chunk.count, chunk.mean = x.shape[0], x.mean(axis=0)
        chunk.sum_squares = ((x - chunk.mean) ** 2).sum(axis=0)
        chunk.raw_squares = (x**2).sum(axis=0)
        self.merge(chunk)

    def merge(self, other: RScale) -> None:
        """Add the rows summarized by ``other`` (Chan et al.'s pairwise update)."""
        if other.mean is None:
            return
        if self.mean is None:
            self.count, self.mean = other.count, other.mean
            self.sum_squares, self.raw_squares = other.sum_squares, other.raw_squares
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.sum_squares = (
            self.sum_squares + other.sum_squares + delta**2 * self.count * other.count / total
        )
        self.mean = self.mean + delta * other.count / total
        self.raw_squares = self.raw_squares + other.raw_squares
        self.count = total

    def restore(self, transform: RScale) -> None:
        """Give ``transform`` these statistics (learned from partitions of the rows)."""
        transform.count, transform.mean = self.count, self.mean
        transform.sum_squares, transform.raw_squares = self.sum_squares, self.raw_squares

    def memorize_finish(self) -> None:
        """Nothing to finish: the sums are complete."""

    def transform(
        self,
        x: Any,
        center: bool = True,
        scale: bool = True,
        rescale: bool | None = None,
        ddof: int = 1,
    ) -> np.ndarray:
        """``x`` centred and scaled with the fitted data's mean and scale."""
        if rescale is not None:
            scale = rescale
        values = _as_columns(x)
        if center:
            values = values - self.mean
        if scale:
            squares = self.sum_squares if center else self.raw_squares
            values = values / np.sqrt(squares / (self.count - ddof))
        return values.reshape(np.shape(x)) if np.ndim(x) < 2 else values


def _as_columns(x: Any) -> np.ndarray:
    values = np.asarray(x, dtype=float)
    return values.reshape(-1, 1) if values.ndim < 2 else values


def scale(x: Any, center: bool = True, scale: bool = True, **options: Any) -> np.ndarray:
    """R's ``scale(x)``: ``(x - mean(x)) / sd(x)``, learned on the fitted data.

    In a formula, ``scale(x)``, ``scale(x, scale=False)`` (R's centring only,
    also ``center(x)``) and ``scale(x, center=False)``; patsy's ``rescale=``
    and ``ddof=`` keywords are accepted too (``ddof=0`` for patsy's scaling).
    """
    return _learn_and_apply(RScale(), x, center=center, scale=scale, **options)


scale.__patsy_stateful_transform__ = RScale  # type: ignore[attr-defined]


class _AllValues:
    """A stateful transform that keeps every value of ``x`` it is shown (its statistics,
    learned at the first :meth:`transform`, depend on the transform's arguments)."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def memorize_chunk(self, x: Any, *args: Any, **kwargs: Any) -> None:
        """Keep one chunk of ``x``."""
        self.chunks.append(np.asarray(x, dtype=float).ravel())

    def memorize_finish(self) -> None:
        """Nothing here: what is learned follows from the arguments of ``transform``."""

    def values(self) -> np.ndarray:
        """Every value memorized."""
        return np.concatenate(self.chunks)


class NaturalSpline(_AllValues):
    """R's ``splines::ns`` as a patsy stateful transform (see :func:`ns`).

    The knots are learned on the data the model is fitted to: the interior
    knots at equally spaced quantiles of ``x`` (R's ``quantile``, type 7),
    the boundary knots at its range.
    """

    def __init__(self) -> None:
        super().__init__()
        self.knots: np.ndarray | None = None
        self.boundary: tuple[float, float] | None = None

    def transform(self, x: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        """The basis of ``x`` on the knots of the fitted data (arguments as :func:`ns`'s)."""
        df, knots, intercept, boundary_knots = _ns_arguments(*args, **kwargs)
        if self.knots is None:
            self.knots, self.boundary = _ns_knots(
                self.values(), df, knots, intercept, boundary_knots
            )
        values = np.asarray(x, dtype=float).ravel()
        return natural_spline_basis(values, self.knots, self.boundary, bool(intercept))


def _ns_arguments(
    df: int | None = None, knots: Any = None, intercept: bool = False, boundary_knots: Any = None
) -> tuple[int | None, Any, bool, Any]:
    return df, knots, intercept, boundary_knots


def _ns_knots(
    x: np.ndarray, df: int | None, knots: Any, intercept: bool, boundary_knots: Any
) -> tuple[np.ndarray, tuple[float, float]]:
    """R's ``ns``: boundary knots at the range, ``df - 1 - intercept`` interior quantiles."""
    n_interior = None if df is None else int(df) - 1 - int(bool(intercept))
    return _spline_knots(x, n_interior, knots, boundary_knots)


def _spline_knots(
    x: np.ndarray, n_interior: int | None, knots: Any, boundary_knots: Any
) -> tuple[np.ndarray, tuple[float, float]]:
    """Interior and boundary knots as R's ``ns`` and ``bs``: the boundary at the range
    of ``x`` (or given; a missing end at the range), the interior at equally spaced
    quantiles (R's type 7) of the values between them, unless given."""
    low, high = (None, None) if boundary_knots is None else boundary_knots
    boundary = (
        float(np.min(x)) if low is None else float(low),
        float(np.max(x)) if high is None else float(high),
    )
    boundary = (min(boundary), max(boundary))
    if knots is not None:
        return np.sort(np.asarray(knots, dtype=float).ravel()), boundary
    n_interior = max(n_interior, 0) if n_interior is not None else 0
    inside = x[(x >= boundary[0]) & (x <= boundary[1])]
    probabilities = np.linspace(0.0, 1.0, n_interior + 2)[1:-1]
    return np.quantile(inside, probabilities), boundary


def ns(x: Any, *args: Any, **kwargs: Any) -> np.ndarray:
    """R's natural cubic spline basis ``splines::ns(x, df, knots, intercept, Boundary.knots)``.

    In a formula: ``ns(x, df=3)`` or ``ns(x, 3)``, ``ns(x, knots=[...])``,
    ``intercept=True``, and ``boundary_knots=[low, high]`` for R's
    ``Boundary.knots``. The same basis as R's, so the same coefficients;
    columns ``ns(x, df=3)[0]``.. for R's ``1``..
    """
    return _learn_and_apply(NaturalSpline(), x, *args, **kwargs)


ns.__patsy_stateful_transform__ = NaturalSpline  # type: ignore[attr-defined]


class BSpline(_AllValues):
    """R's ``splines::bs`` as a patsy stateful transform (see :func:`bs`).

    Knots as R's: the boundary knots at the range of ``x`` (or given), the
    interior ones at equally spaced quantiles of the values between them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.knots: np.ndarray | None = None
        self.boundary: tuple[float, float] | None = None

    def transform(self, x: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        """The basis of ``x`` on the knots of the fitted data (arguments as :func:`bs`'s)."""
        df, knots, degree, intercept, boundary_knots = _bs_arguments(*args, **kwargs)
        if self.knots is None:
            n_interior = None if df is None else int(df) - int(degree) - 1 + (not intercept)
            self.knots, self.boundary = _spline_knots(
                self.values(), n_interior, knots, boundary_knots
            )
        return b_spline_basis(x, self.knots, self.boundary, int(degree), intercept)


def _bs_arguments(
    df: int | None = None,
    knots: Any = None,
    degree: int = 3,
    intercept: bool | None = None,
    boundary_knots: Any = None,
    include_intercept: bool = False,
    lower_bound: float | None = None,
    upper_bound: float | None = None,
) -> tuple[int | None, Any, int, bool, Any]:
    """R's arguments, or patsy's names for them (``include_intercept``, ``lower_bound``,
    ``upper_bound``)."""
    if intercept is None:
        intercept = include_intercept
    if boundary_knots is None and (lower_bound is not None or upper_bound is not None):
        boundary_knots = (lower_bound, upper_bound)
    return df, knots, degree, bool(intercept), boundary_knots


def bs(x: Any, *args: Any, **kwargs: Any) -> np.ndarray:
    """R's B-spline basis ``splines::bs(x, df, knots, degree, intercept, Boundary.knots)``.

    In a formula: ``bs(x, df=4)``, ``bs(x, knots=[...], degree=2)``,
    ``intercept=True``, ``boundary_knots=[low, high]``; patsy's
    ``include_intercept``, ``lower_bound`` and ``upper_bound`` work too. The
    same basis as R's (and patsy's, inside the boundary knots); outside them
    each column continues as R's does (a Taylor polynomial), where patsy's
    ``bs`` refuses to predict. Columns ``bs(x, df=4)[0]``.. for R's ``1``..
    """
    return _learn_and_apply(BSpline(), x, *args, **kwargs)


bs.__patsy_stateful_transform__ = BSpline  # type: ignore[attr-defined]


class OrthogonalPolynomial(_AllValues):
    """R's ``poly(x, degree)`` as a patsy stateful transform (see :func:`poly`).

    The coefficients of the three-term recurrence (R's ``coefs``: ``alpha``
    and ``norm2``) are learned on the data the model is fitted to and give the
    same polynomials for new data, as R's ``predict`` of a ``poly`` basis.
    """

    def __init__(self) -> None:
        super().__init__()
        self.alpha: np.ndarray | None = None
        self.norm2: np.ndarray | None = None

    def transform(self, x: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        """The polynomials of ``x`` (arguments as :func:`poly`'s)."""
        degree, raw = _poly_arguments(*args, **kwargs)
        values = np.asarray(x, dtype=float).ravel()
        if raw:
            return np.column_stack([values**power for power in range(1, degree + 1)])
        if self.alpha is None:
            self.alpha, self.norm2 = _recurrence_coefficients(self.values(), degree)
        return _orthogonal_polynomials(values, self.alpha, self.norm2)


def _poly_arguments(*args: Any, degree: int = 1, raw: bool = False) -> tuple[int, bool]:
    if args:
        if (
            len(args) > 1
            or np.ndim(args[0]) > 0  # a second variable: R's multivariate poly(x, z)
            or isinstance(args[0], bool)
            or not float(args[0]).is_integer()
        ):
            raise TypeError(
                "poly() takes one variable and its degree here (poly(x, 2)); for R's "
                "poly(x, z, degree = 2) write the products, e.g. poly(x, 2) + z + x:z"
            )
        degree = int(args[0])
    if int(degree) < 1:
        raise ValueError(f"poly(): degree must be at least 1, got {degree}")
    return int(degree), bool(raw)


def _recurrence_coefficients(x: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """R's ``poly`` coefficients: ``alpha`` (degree) and ``norm2`` (degree + 2, from 1)."""
    if degree >= len(np.unique(x)):
        raise ValueError(
            f"poly(): degree {degree} must be less than the number of distinct values "
            f"({len(np.unique(x))})"
        )
    mean = x.mean()
    centred = x - mean
    q, r = np.linalg.qr(np.vander(centred, degree + 1, increasing=True))
    monic = q * np.diagonal(r)  # x^k minus its projection on the lower powers
    squares = monic**2
    norm2 = squares.sum(axis=0)
    alpha = (centred @ squares / norm2 + mean)[:degree]
    return alpha, np.concatenate([[1.0], norm2])


def _orthogonal_polynomials(x: np.ndarray, alpha: np.ndarray, norm2: np.ndarray) -> np.ndarray:
    """The normalized polynomials of degree 1.. at ``x`` by the three-term recurrence."""
    degree = len(alpha)
    basis = np.ones((x.size, degree + 1))
    basis[:, 1] = x - alpha[0]
    for k in range(1, degree):
        basis[:, k + 1] = (x - alpha[k]) * basis[:, k] - norm2[k + 1] / norm2[k] * basis[:, k - 1]
    return (basis / np.sqrt(norm2[1:]))[:, 1:]


def poly(x: Any, *args: Any, **kwargs: Any) -> np.ndarray:
    """R's orthogonal polynomials ``poly(x, degree)`` (and ``raw=True``: the powers).

    In a formula: ``poly(x, 2)`` or ``poly(x, degree=2)``, ``raw=True`` for R's
    ``raw = TRUE``. The same columns as R's, so the same coefficients; the
    recurrence learned on the fitted data is used for new data, as R's
    ``predict``. Columns ``poly(x, 2)[0]``.. for R's ``1``..
    """
    return _learn_and_apply(OrthogonalPolynomial(), x, *args, **kwargs)


poly.__patsy_stateful_transform__ = OrthogonalPolynomial  # type: ignore[attr-defined]


def _learn_and_apply(transform: Any, x: Any, *args: Any, **kwargs: Any) -> np.ndarray:
    """A stateful transform learned on ``x`` and applied to it (called outside a formula)."""
    transform.memorize_chunk(x, *args, **kwargs)
    transform.memorize_finish()
    return transform.transform(x, *args, **kwargs)


FORMULA_TRANSFORMS = {"scale": scale, "ns": ns, "bs": bs, "poly": poly}
"""Names every formula sees ahead of patsy's built-ins (a name of the caller's wins)."""
