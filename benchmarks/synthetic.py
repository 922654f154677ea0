"""Synthetic data for the benchmarks: crossed, nested and random-slope designs.

``make_data(design, n, n_levels, seed)`` returns a pandas DataFrame with a
response ``y``, a covariate ``x`` and categorical grouping columns:

- ``"crossed"``: ``g1`` and ``g2``, two crossed factors with ``n_levels = (L1, L2)``
  levels; model ``y ~ x + (1|g1) + (1|g2)``.
- ``"crossed-slopes"``: ``g1`` and ``g2`` as in ``"crossed"``, each with a
  correlated random intercept and slope in ``x``; model ``y ~ x + (x|g1) + (x|g2)``.
- ``"nested"``: ``school`` with ``n_levels[0]`` levels, and ``classroom`` with
  ``n_levels[1] // n_levels[0]`` classes in each school, labelled within the school;
  model ``y ~ x + (1|school/classroom)``.
- ``"slope"``: ``g`` with ``n_levels[0]`` levels and a correlated random intercept
  and slope in ``x``; model ``y ~ x + (x|g)``.
- ``"partial"``: ``g`` with ``n_levels[0]`` levels mostly inside ``h`` (``n_levels[1]``
  levels: 80 % of rows in ``h = g mod L2``, the rest anywhere), 8 ``site`` levels
  crossed with both, and a three-level factor ``f`` whose effect varies over ``g``;
  model ``y ~ x + (1|h) + (0 + f|g) + (1|site) + (1|g:h)``, the medium random designs of
  docs/engine.md, where lme4 is less than 3 times slower.

Group sizes are unbalanced (level probabilities drawn from a gamma distribution
with shape 2), as in real data, and every level occurs at least once, so the
number of levels is exactly as asked. Grouping columns are categoricals with
integer categories; the same seed gives the same data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

DESIGNS = ("crossed", "crossed-slopes", "nested", "slope", "partial")

SLOPE_COV = np.array([[1.0, 0.3], [0.3, 0.25]])
"""Covariance of (intercept, slope) of ``g`` (``"slope"``) and ``g1`` (``"crossed-slopes"``)."""


def default_levels(design: str, n: int) -> tuple[int, ...]:
    """Levels used by the benchmark when none are given (each below ``n``).

    Crossed: 1e4 and 1e3 levels when ``n >= 1e5``, else ``n/10`` and ``n/100``.
    Crossed slopes: ``n/20`` and ``n/50``. Nested: ``n/100`` schools, 10 classes
    each. Slope: ``n/100`` groups (at most 1e3).
    """
    if design == "crossed":
        return (min(10_000, n // 10), min(1_000, n // 100))
    if design == "crossed-slopes":
        return (max(n // 20, 2), max(n // 50, 2))
    if design == "nested":
        schools = max(n // 100, 2)
        return (schools, schools * 10)
    if design == "slope":
        return (min(1_000, max(n // 100, 2)),)
    raise ValueError(f"unknown design {design!r}; use one of {DESIGNS}")


def make_data(
    design: str,
    n: int,
    n_levels: tuple[int, ...] | int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate ``n`` rows of a mixed-model design.

    Parameters
    ----------
    design : {"crossed", "crossed-slopes", "nested", "slope"}
        See the module docstring.
    n : int
        Number of rows.
    n_levels : int or tuple of int, optional
        Levels of the grouping factors (see the module docstring); default
        :func:`default_levels`. Each must be below ``n``.
    seed : int
        Seed of the numpy generator.

    Returns
    -------
    pandas.DataFrame
    """
    if design not in GENERATORS:
        raise ValueError(f"unknown design {design!r}; use one of {DESIGNS}")
    n = int(n)
    if n_levels is None:
        n_levels = default_levels(design, n)
    elif isinstance(n_levels, int):
        n_levels = (n_levels,)
    n_levels = tuple(int(v) for v in n_levels)
    if any(v < 1 or v >= n for v in n_levels):
        raise ValueError(f"levels {n_levels} must be between 1 and n - 1 = {n - 1}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    columns = GENERATORS[design](rng, x, n_levels)
    return pd.DataFrame({"y": columns.pop("y"), "x": x, **columns})


def _two_factors(
    rng: np.random.Generator, n: int, n_levels: tuple[int, ...], design: str
) -> tuple[np.ndarray, np.ndarray]:
    """Level codes of two crossed factors."""
    if len(n_levels) != 2:
        raise ValueError(f"{design} needs two numbers of levels")
    return _assign(rng, n, n_levels[0]), _assign(rng, n, n_levels[1])


def _crossed(rng: np.random.Generator, x: np.ndarray, n_levels: tuple[int, ...]) -> dict:
    n = x.size
    g1, g2 = _two_factors(rng, n, n_levels, "crossed")
    u1 = rng.standard_normal(n_levels[0])
    u2 = 0.5 * rng.standard_normal(n_levels[1])
    y = 1.0 + 0.5 * x + u1[g1] + u2[g2] + rng.standard_normal(n)
    return {"y": y, "g1": _categorical(g1, n_levels[0]), "g2": _categorical(g2, n_levels[1])}


def _crossed_slopes(rng: np.random.Generator, x: np.ndarray, n_levels: tuple[int, ...]) -> dict:
    n = x.size
    g1, g2 = _two_factors(rng, n, n_levels, "crossed-slopes")
    b1 = rng.multivariate_normal([0.0, 0.0], SLOPE_COV, size=n_levels[0])
    b2 = rng.multivariate_normal([0.0, 0.0], 0.25 * SLOPE_COV, size=n_levels[1])
    y = (
        1.0
        + 0.5 * x
        + b1[g1, 0]
        + b1[g1, 1] * x
        + b2[g2, 0]
        + b2[g2, 1] * x
        + rng.standard_normal(n)
    )
    return {"y": y, "g1": _categorical(g1, n_levels[0]), "g2": _categorical(g2, n_levels[1])}


def _nested(rng: np.random.Generator, x: np.ndarray, n_levels: tuple[int, ...]) -> dict:
    if len(n_levels) != 2 or n_levels[1] % n_levels[0]:
        raise ValueError("nested needs (schools, classes) with classes a multiple of schools")
    n = x.size
    schools, classes = n_levels
    per_school = classes // schools
    cls = _assign(rng, n, classes)  # global class index; school = cls // per_school
    school = cls // per_school
    u_school = rng.standard_normal(schools)
    u_class = 0.5 * rng.standard_normal(classes)
    y = 1.0 + 0.5 * x + u_school[school] + u_class[cls] + rng.standard_normal(n)
    return {
        "y": y,
        "school": _categorical(school, schools),
        "classroom": _categorical(cls % per_school, per_school),
    }


def _slope(rng: np.random.Generator, x: np.ndarray, n_levels: tuple[int, ...]) -> dict:
    if len(n_levels) != 1:
        raise ValueError("slope needs one number of levels")
    g = _assign(rng, x.size, n_levels[0])
    b = rng.multivariate_normal([0.0, 0.0], SLOPE_COV, size=n_levels[0])
    y = 1.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.standard_normal(x.size)
    return {"y": y, "g": _categorical(g, n_levels[0])}


def _partial(rng: np.random.Generator, x: np.ndarray, n_levels: tuple[int, ...]) -> dict:
    if len(n_levels) != 2:
        raise ValueError("partial needs (levels of g, levels of h)")
    n, (g_levels, h_levels) = x.size, n_levels
    g = _assign(rng, n, g_levels).astype(np.int64)
    h = g % h_levels
    crossing = rng.random(n) < 0.2
    h[crossing] = rng.integers(0, h_levels, crossing.sum())
    site = rng.integers(0, 8, n)
    f = rng.integers(0, 3, n)
    b_f = rng.standard_normal((g_levels, 3)) * np.array([1.0, 0.8, 0.6])
    gh = rng.standard_normal((g_levels, h_levels)) * 0.4  # drawn where met only
    y = 1.0 + 0.5 * x + b_f[g, f] + 0.5 * rng.standard_normal(h_levels)[h]
    y = y + 0.3 * rng.standard_normal(8)[site] + gh[g, h] + rng.standard_normal(n)
    return {
        "y": y,
        "f": pd.Categorical.from_codes(f, ["a", "b", "c"]),
        "g": _categorical(g, g_levels),
        "h": _categorical(h, h_levels),
        "site": _categorical(site, 8),
    }


GENERATORS: dict[str, Callable[[np.random.Generator, np.ndarray, tuple[int, ...]], dict]] = {
    "crossed": _crossed,
    "crossed-slopes": _crossed_slopes,
    "nested": _nested,
    "slope": _slope,
    "partial": _partial,
}
"""The grouping columns and response of each design, from the generator and ``x``."""


def _assign(rng: np.random.Generator, n: int, levels: int) -> np.ndarray:
    """Level of each row: every level once, the rest with gamma(2) probabilities."""
    p = rng.gamma(2.0, size=levels)
    p /= p.sum()
    rest = rng.choice(levels, size=n - levels, p=p)
    codes = np.concatenate([np.arange(levels), rest])
    rng.shuffle(codes)
    return codes.astype(np.int32 if levels > 32_000 else np.int16)


def _categorical(codes: np.ndarray, levels: int) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.RangeIndex(levels))
