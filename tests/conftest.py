"""Shared helpers: lme4 reference fixtures and R-to-patsy name mapping."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import statsmodels_lmer as sml

FIXTURES = Path(__file__).parent / "fixtures"


@cache
def core_cases() -> dict:
    """Cases of tests/fixtures/lme4_core.json (from make_core_fixtures.R)."""
    return json.loads((FIXTURES / "lme4_core.json").read_text())["cases"]


def case_data(case: dict) -> tuple[pd.DataFrame, dict]:
    """The data of a fixture case and the model keywords it needs."""
    data = sml.datasets.load(case["dataset"])
    if case["name"] == "sleepstudy_weights_offset_reml":
        # w = 1 + (Days %% 3)/2 and off = Days/10, as in the R script
        data = data.assign(w=1 + (data["Days"] % 3) / 2, off=data["Days"] / 10)
        return data, {"weights": "w", "offset": "off"}
    return data, {}


def r_name(name: str) -> str:
    """lme4's name for a random-effect column name of ours."""
    return "(Intercept)" if name == "Intercept" else name


def patsy_name(r_coef: str, data: pd.DataFrame) -> str:
    """statsmodels/patsy name of an lme4 fixed-effect name (treatment contrasts)."""
    parts = []
    for part in r_coef.split(":"):
        if part == "(Intercept)":
            parts.append("Intercept")
            continue
        for column in data.columns:
            if (
                isinstance(data[column].dtype, pd.CategoricalDtype)
                and part.startswith(column)
                and part[len(column) :] in list(map(str, data[column].cat.categories))
            ):
                parts.append(f"{column}[T.{part[len(column) :]}]")
                break
        else:
            parts.append(part)
    return ":".join(parts)


@cache
def fitted_case(name: str) -> tuple[dict, pd.DataFrame, object]:
    """(case, data, fit) of one core case, fitted once, when first asked for."""
    case = core_cases()[name]
    data, kwargs = case_data(case)
    model = sml.Lmer.from_formula(case["formula"], data, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sml.SingularFitWarning)  # cake's fit is singular
        return case, data, model.fit(reml=case["REML"])


class _LazyFits(Mapping):
    """Core cases by name, each fitted on first access (shared by the whole session)."""

    def __getitem__(self, name: str) -> tuple[dict, pd.DataFrame, object]:
        return fitted_case(name)

    def __iter__(self):
        return iter(core_cases())

    def __len__(self) -> int:
        return len(core_cases())


@pytest.fixture(scope="session")
def fitted_cases() -> Mapping:
    """Every core case, fitted lazily with the default optimizer."""
    return _LazyFits()


def crossed_frame(
    seed: int = 1, n: int = 400, levels: tuple[int, int, int] = (40, 12, 5), slope: float = 0.05
) -> pd.DataFrame:
    """Random data with three crossed factors ``a``, ``b``, ``c``, covariates, weights ``w``."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.integers(0, levels[0], n).astype(str),
            "b": rng.integers(0, levels[1], n).astype(str),
            "c": rng.integers(0, levels[2], n).astype(str),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
        }
    )
    frame["y"] = frame["x"] + rng.normal(size=n) + frame["a"].astype(int) * slope
    frame["w"] = rng.uniform(0.5, 2.0, n)
    return frame


SLOPES_COVARIANCES = (
    np.array([[1.0, 0.3], [0.3, 0.5]]),
    np.array([[0.6, -0.2], [-0.2, 0.4]]),
)
"""True covariances of :func:`crossed_slopes_frame`'s ``(x | g1)`` and ``(x | g2)`` (sigma = 1)."""


def crossed_slopes_frame(
    seed: int = 0,
    n: int = 3000,
    levels: tuple[int, int] = (100, 60),
    covariances: tuple[np.ndarray, np.ndarray] = SLOPES_COVARIANCES,
) -> pd.DataFrame:
    """Data of ``y ~ x + (x | g1) + (x | g2)``: two crossed factors with random slopes.

    ``y = 1 + x / 2 + b1[g1] . (1, x) + b2[g2] . (1, x) + e`` with ``b_t ~ N(0, covariances[t])``
    and ``e ~ N(0, 1)``; also weights ``w`` and an offset ``off`` that varies between levels.
    """
    rng = np.random.default_rng(seed)
    g1, g2 = rng.integers(0, levels[0], n), rng.integers(0, levels[1], n)
    x = rng.normal(size=n)
    b1 = rng.multivariate_normal(np.zeros(2), covariances[0], levels[0])
    b2 = rng.multivariate_normal(np.zeros(2), covariances[1], levels[1])
    noise = rng.normal(size=n)
    y = 1 + 0.5 * x + b1[g1, 0] + b1[g1, 1] * x + b2[g2, 0] + b2[g2, 1] * x + noise
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "g1": g1.astype(str),
            "g2": g2.astype(str),
            "w": rng.uniform(0.5, 2.0, n),
            "off": 0.3 * (g1 % 7) + 0.1 * x,
        }
    )
