"""Optimizing theta in the units of the random-effects columns, for extreme scales.

theta is the relative Cholesky factor ``T`` of each term's covariance, so its
row for a column ``x`` scales as ``1 / x``: a slope on ``x * 1e-6`` has an
optimum 1e6 times larger than a slope on ``x``, while lme4 starts both at 1
and optimizers stop on absolute tolerances. On such data L-BFGS-B stopped at
its start (every gradient element below its tolerance, 68 deviance units above
the optimum) and BOBYQA crawled.

When some column's root mean square is outside ``[1 / SCALE_LIMIT,
SCALE_LIMIT]``, the optimizer therefore works on ``phi = theta * s``, ``s``
the root mean square of the row's column (:func:`theta_scales`); the
objective is the same function of theta, its gradient is divided by ``s``,
and the result is mapped back. Everything after the optimizer (lme4's
convergence checks, the singular-fit test, the results) is in theta. Models
whose columns are on ordinary scales keep lme4's parametrization.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..parametrization import tril_colmajor
from .optimizers import Objective, OptimizerResult, has_gradient
from .start import column_rms

__all__ = [
    "SCALE_LIMIT",
    "Rescaled",
    "optimizer_scale",
    "theta_in_units",
    "theta_scales",
    "theta_scales_of_rms",
]

SCALE_LIMIT = 100.0
"""Columns with a root mean square beyond this factor of 1 switch the optimizer to ``phi``."""


def theta_scales(columns: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """Each theta element's column scale: the root mean square of its row's column.

    ``columns``: each term's model columns ``(n, p)`` in lme4's order of the
    terms; None when a term's columns are not in memory (then None).
    """
    if any(Z is None for Z in columns):
        return None
    return theta_scales_of_rms([column_rms(Z) for Z in columns])


def theta_scales_of_rms(rms_by_term: Sequence[np.ndarray]) -> np.ndarray:
    """:func:`theta_scales` from each term's column root mean squares (a Dask
    model's, from its partitions' moments); 1 for a zero or non-finite one."""
    scales = []
    for rms in rms_by_term:
        rms = np.array(rms, dtype=float)
        rms[~(np.isfinite(rms) & (rms > 0))] = 1.0
        rows, _ = tril_colmajor(rms.size)
        scales.append(rms[rows])
    return np.concatenate(scales) if scales else np.ones(0)


def optimizer_scale(scales: np.ndarray | None) -> np.ndarray | None:
    """``s`` when some column is on an extreme scale (see the module docstring), else None."""
    if scales is None or not scales.size:
        return None
    if np.all((scales <= SCALE_LIMIT) & (scales >= 1.0 / SCALE_LIMIT)):
        return None
    return scales


class Rescaled:
    """The objective as a function of ``phi = theta * scale``.

    Parameters
    ----------
    objective : callable
        The criterion of theta, with ``value_and_gradient`` and
        ``difference_steps`` when it has the analytic gradient.
    scale : ndarray
        ``s`` per theta element.
    """

    def __init__(self, objective: Objective, scale: np.ndarray) -> None:
        self.objective = objective
        self.scale = np.asarray(scale, dtype=float)
        if has_gradient(objective):
            self.value_and_gradient = self._value_and_gradient
            self.difference_steps = self._difference_steps

    def __call__(self, phi: np.ndarray) -> float:
        return self.objective(np.asarray(phi, dtype=float) / self.scale)

    def _value_and_gradient(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = self.objective.value_and_gradient(np.asarray(phi) / self.scale)
        return value, np.asarray(gradient, dtype=float) / self.scale

    def _difference_steps(self, phi: np.ndarray) -> np.ndarray:
        return self.objective.difference_steps(np.asarray(phi) / self.scale) * self.scale


def theta_in_units(result: OptimizerResult, scale: np.ndarray) -> OptimizerResult:
    """An optimizer result in ``phi`` mapped back to theta: the estimate and the gradients.

    lme4's derivatives are not mapped: they are differences in theta, taken
    after the run (the result's ``derivs`` is dropped).
    """
    gradients = tuple((point / scale, gradient * scale) for point, gradient in result.gradients)
    return dataclasses.replace(result, theta=result.theta / scale, derivs=None, gradients=gradients)
