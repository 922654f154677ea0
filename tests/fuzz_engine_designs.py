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

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["LME4_SEEDS", "Design", "random_design"]

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


def _groups(rng: np.random.Generator, n: int, structure: str) -> tuple[np.ndarray, ...]:
    """Codes of ``g``, ``h`` and ``site`` for ``n`` rows."""
    n_g = int(rng.integers(3, 30))
    g = rng.integers(0, n_g, n)
    if structure == "nested":
        per = int(rng.integers(2, 5))
        h = g * per + rng.integers(0, per, n)
        site = g // 2
    elif structure == "crossed":
        h = rng.integers(0, int(rng.integers(2, 25)), n)
        site = rng.integers(0, 3, n)
    elif structure == "partial":  # h mostly follows g, some rows cross
        n_h = int(rng.integers(3, 25))
        h = g % n_h
        leak = rng.random(n) < rng.uniform(0.05, 0.4)
        h[leak] = rng.integers(0, n_h, leak.sum())
        site = rng.integers(0, 3, n)
    else:  # sites: g and h each belong to a site, rows cross only within sites
        n_sites = int(rng.integers(2, 6))
        site = rng.integers(0, n_sites, n)
        g = site * 6 + rng.integers(0, 6, n)
        h = site * 4 + rng.integers(0, 4, n)
        leak = rng.random(n) < rng.uniform(0.0, 0.05)
        h[leak] = rng.integers(0, n_sites * 4, leak.sum())
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


def random_design(seed: int) -> Design:
    """The design of ``seed`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    structure = STRUCTURES[seed % len(STRUCTURES)]
    n = int(rng.integers(40, 400))
    g, h, site = _groups(rng, n, structure)
    scale = 10.0 ** rng.choice([0, 0, 0, -3, 3, 5])
    x = rng.normal(size=n)
    z = rng.normal(2.0, 1.0, n) * scale
    f = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    y = 1.0 + 0.5 * x + rng.normal(size=g.max() + 1)[g] * rng.uniform(0, 1.5)
    y = y + rng.normal(size=h.max() + 1)[h] * rng.uniform(0, 1.0)
    y = y + x * rng.normal(size=g.max() + 1)[g] * rng.uniform(0, 0.8)
    y = y + rng.normal(size=n) * rng.uniform(0.3, 2.0)
    frame = pd.DataFrame(
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
    singles = rng.integers(0, 4)  # levels of g with a single row
    for k in range(singles):
        frame.loc[len(frame)] = frame.iloc[int(rng.integers(0, n))].to_dict() | {
            "g": f"single{k}",
            "y": float(rng.normal()),
        }
    return Design(
        seed=seed,
        formula=_formula(rng),
        frame=frame,
        weights="w" if rng.random() < 0.3 else None,
        offset="off" if rng.random() < 0.25 else None,
        reml=bool(rng.random() < 0.6),
        structure=structure,
    )


LME4_SEEDS = tuple(range(840))
"""The seeds fitted with lme4 (``tests/fixtures/fuzz_engine.json``)."""
