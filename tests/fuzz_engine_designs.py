"""Seeded random designs for the differential fuzzing of the engine (tests/test_fuzz_engine.py).

:func:`random_design` draws one small or moderate design from a seed: one to
four random terms on grouping factors that are nested, crossed, partially
crossed or crossed only within sites; intercepts, correlated and uncorrelated
slopes, factor slopes and terms on interactions; unbalanced data with missing
cells and single-row levels; weights, offsets, REML or ML; columns on odd
scales. The same seed gives the same design on every machine (numpy's
``default_rng``), so the R script ``tests/fixtures/make_fuzz_engine_fixtures.R``
reads the data written by ``tests/fixtures/make_fuzz_engine_data.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "LME4_SEEDS",
    "Design",
    "GroupSizes",
    "design_frame",
    "design_of",
    "groups",
    "random_design",
]

STRUCTURES = ("crossed", "nested", "partial", "sites")
"""How the second grouping factor ``h`` relates to the first, ``g``."""


@dataclass(frozen=True)
class Design:
    """One random design: the formula, its rows and the fit's keywords."""

    seed: int
    formula: str
    frame: pd.DataFrame
    weights: str | None
    offset: str | None
    reml: bool
    structure: str

    def model_keywords(self) -> dict:
        """``weights=`` and ``offset=`` for ``Lmer.from_formula``."""
        out = {}
        if self.weights:
            out["weights"] = self.weights
        if self.offset:
            out["offset"] = self.offset
        return out


@dataclass(frozen=True)
class GroupSizes:
    """The ranges the numbers of levels are drawn from (``integers``' half-open ranges)."""

    g: tuple[int, int] = (3, 30)
    h: tuple[int, int] = (2, 25)  # crossed
    partial_h: tuple[int, int] = (3, 25)
    row_sites: int = 3  # sites of rows in crossed and partial designs
    g_per_site: int = 2  # nested: levels of g in a site
    sites: tuple[int, int] = (2, 6)  # sites design
    g_in_site: int = 6
    h_in_site: int = 4


def groups(
    rng: np.random.Generator, n: int, structure: str, sizes: GroupSizes = GroupSizes()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of ``g``, ``h`` and ``site`` for ``n`` rows."""
    n_g = int(rng.integers(*sizes.g))
    g = rng.integers(0, n_g, n)
    if structure == "nested":
        per = int(rng.integers(2, 5))
        h = g * per + rng.integers(0, per, n)
        site = g // sizes.g_per_site
    elif structure == "crossed":
        h = rng.integers(0, int(rng.integers(*sizes.h)), n)
        site = rng.integers(0, sizes.row_sites, n)
    elif structure == "partial":  # h mostly follows g, some rows cross
        n_h = int(rng.integers(*sizes.partial_h))
        h = g % n_h
        leak = rng.random(n) < rng.uniform(0.05, 0.4)
        h[leak] = rng.integers(0, n_h, leak.sum())
        site = rng.integers(0, sizes.row_sites, n)
    else:  # sites: g and h each belong to a site, rows cross only within sites
        n_sites = int(rng.integers(*sizes.sites))
        site = rng.integers(0, n_sites, n)
        g = site * sizes.g_in_site + rng.integers(0, sizes.g_in_site, n)
        h = site * sizes.h_in_site + rng.integers(0, sizes.h_in_site, n)
        leak = rng.random(n) < rng.uniform(0.0, 0.05)
        h[leak] = rng.integers(0, n_sites * sizes.h_in_site, leak.sum())
    return g, h, site


TERMS = (
    "(1 | g)",
    "(x | g)",
    "(x || g)",
    "(0 + f | g)",
    "(1 | h)",
    "(z | h)",
    "(1 | g:h)",
    "(1 | site)",
    "(0 + x | h)",
    "(1 | h) + (0 + z | h)",
)


def _group_of(term: str) -> str:
    return term.rsplit("|", 1)[1].strip(" )")


def _formula(rng: np.random.Generator) -> str:
    """One to four terms, at most one on each grouping factor (identifiable), one on ``g``."""
    count = int(rng.integers(1, 5))
    chosen: dict[str, str] = {}
    for i in rng.permutation(len(TERMS)):
        chosen.setdefault(_group_of(TERMS[i]), TERMS[i])
        if len(chosen) == count:
            break
    if "g" not in chosen:
        chosen.pop(next(iter(chosen)))
        chosen["g"] = TERMS[int(rng.choice([0, 1, 2, 3]))]
    fixed = rng.choice(["x", "x + z", "x * f", "f + z", "1", "x + I(z ** 2)"])
    return f"y ~ {fixed} + {' + '.join(chosen.values())}"


def design_frame(
    rng: np.random.Generator,
    groups: tuple[np.ndarray, np.ndarray, np.ndarray],
    scales: Sequence[int] = (0, 0, 0, -3, 3, 5),
    site_effect: bool = False,
) -> pd.DataFrame:
    """The rows of a design on the codes ``(g, h, site)``: covariates on odd scales, a
    response with effects of ``g``, ``h`` (and ``site``), weights and an offset."""
    g, h, site = groups
    n = g.size
    scale = 10.0 ** rng.choice(scales)
    x = rng.normal(size=n)
    z = rng.normal(2.0, 1.0, n) * scale
    f = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    y = 1.0 + 0.5 * x + rng.normal(size=g.max() + 1)[g] * rng.uniform(0, 1.5)
    y = y + rng.normal(size=h.max() + 1)[h] * rng.uniform(0, 1.0)
    y = y + x * rng.normal(size=g.max() + 1)[g] * rng.uniform(0, 0.8)
    if site_effect:
        y = y + rng.normal(size=site.max() + 1)[site] * rng.uniform(0, 1.0)
    y = y + rng.normal(size=n) * rng.uniform(0.3, 2.0)
    return pd.DataFrame(
        {
            "y": y * 10.0 ** rng.choice([0, 0, 2, -2]),
            "x": x,
            "z": z,
            "f": f,
            "g": [f"g{i}" for i in g],
            "h": [f"h{i}" for i in h],
            "site": [f"s{i}" for i in site],
            "w": rng.uniform(0.2, 3.0, n),
            "off": rng.normal(0.0, 0.5, n),
        }
    )


def design_of(seed: int, rng: np.random.Generator, structure: str, frame: pd.DataFrame) -> Design:
    """The design of ``frame``, with a formula and keywords drawn from ``rng``."""
    return Design(
        seed=seed,
        formula=_formula(rng),
        frame=frame,
        weights="w" if rng.random() < 0.3 else None,
        offset="off" if rng.random() < 0.25 else None,
        reml=bool(rng.random() < 0.6),
        structure=structure,
    )


def random_design(seed: int) -> Design:
    """The design of ``seed`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    structure = STRUCTURES[seed % len(STRUCTURES)]
    n = int(rng.integers(40, 400))
    frame = design_frame(rng, groups(rng, n, structure))
    singles = rng.integers(0, 4)  # levels of g with a single row
    for k in range(singles):
        frame.loc[len(frame)] = frame.iloc[int(rng.integers(0, n))].to_dict() | {
            "g": f"single{k}",
            "y": float(rng.normal()),
        }
    return design_of(seed, rng, structure, frame)


LME4_SEEDS = tuple(range(840))
"""The seeds fitted with lme4 (``tests/fixtures/fuzz_engine.json``)."""
