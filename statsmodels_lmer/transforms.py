"""Formula transforms that keep R's meaning where patsy's differ.

patsy's ``scale(x)`` divides by the standard deviation with ``ddof=0``; R's
``scale(x)`` divides by ``sd(x)`` (``n - 1``). An lme4 formula with
``scale(x)`` would silently give coefficients ``sqrt(n / (n - 1))`` times
R's (and a different REML criterion), so formulas here see R's version.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["FORMULA_TRANSFORMS", "RScale", "scale"]


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
        n = x.shape[0]
        mean = x.mean(axis=0)
        squares = ((x - mean) ** 2).sum(axis=0)
        raw = (x**2).sum(axis=0)
        if self.mean is None:
            self.count, self.mean, self.sum_squares, self.raw_squares = n, mean, squares, raw
            return
        total = self.count + n
        delta = mean - self.mean
        self.sum_squares = self.sum_squares + squares + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.raw_squares = self.raw_squares + raw
        self.count = total

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
    transform = RScale()
    transform.memorize_chunk(x, center=center, scale=scale, **options)
    transform.memorize_finish()
    return transform.transform(x, center=center, scale=scale, **options)


scale.__patsy_stateful_transform__ = RScale  # type: ignore[attr-defined]

FORMULA_TRANSFORMS = {"scale": scale}
"""Names every formula sees ahead of patsy's built-ins (a name of the caller's wins)."""
