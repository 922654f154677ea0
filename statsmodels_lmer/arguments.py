"""Checks of the arguments of public functions: each names the argument it refuses.

The package's rule: bad input gets an error that names the problem, a ``TypeError``
for a value of the wrong kind and a ``ValueError`` (or ``KeyError`` for an unknown
name) for one out of range, never a numpy traceback from inside and never a
meaningless answer (``alpha=1.5`` giving reversed intervals, ``"no"`` read as True).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "check_alpha",
    "check_bool",
    "check_column_names",
    "check_count",
    "check_frame",
    "check_level",
    "check_names",
    "check_nonnegative",
    "check_number",
    "check_positions",
    "check_positive",
    "check_unit_interval",
    "random_generator",
]


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool (also the integers 0 and 1); a string such as ``"no"``
    (truthy in Python) or any other number is refused."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def check_number(name: str, value: Any) -> float:
    """``value`` as a finite float (ints and numpy numbers; not bools or strings)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def check_unit_interval(name: str, value: Any, meaning: str = "") -> float:
    """A number strictly between 0 and 1."""
    number = check_number(name, value)
    if not 0.0 < number < 1.0:
        extra = f" ({meaning})" if meaning else ""
        raise ValueError(f"{name} must lie strictly between 0 and 1{extra}, got {value!r}")
    return number


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """A significance level: strictly between 0 and 1 (1 - the coverage)."""
    return check_unit_interval(name, alpha, "1 - coverage")


def check_level(level: Any, name: str = "level") -> float:
    """A confidence level: strictly between 0 and 1 (0.95, not 95)."""
    return check_unit_interval(name, level, "the coverage, e.g. 0.95")


def check_positive(name: str, value: Any) -> float:
    """A finite number above 0."""
    number = check_number(name, value)
    if not number > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return number


def check_nonnegative(name: str, value: Any) -> float:
    """A finite number at least 0."""
    number = check_number(name, value)
    if number < 0:
        raise ValueError(f"{name} must be at least 0, got {value!r}")
    return number


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """A whole number, at least ``minimum`` (a number of simulations, replicates, points)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_positions(name: str, values: Sequence[Any], size: int) -> list[int]:
    """Positions ``0 .. size - 1`` (negative ones count from the end, as Python's).

    Bools and non-integers are refused (``True`` is not position 1), and so are
    positions out of range (they must not wrap around).
    """
    out = []
    for value in values:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} positions must be whole numbers, got {value!r}")
        if not -size <= int(value) < size:
            raise KeyError(
                f"{name} position {int(value)} is out of range: there are {size} (0 to {size - 1})"
            )
        out.append(int(value) % size)
    return out


def random_generator(seed: Any) -> np.random.Generator:
    """``numpy.random.default_rng(seed)``, with an error that names ``seed``."""
    if isinstance(seed, bool | np.bool_):
        raise TypeError(f"seed must be None, a non-negative integer or a Generator, got {seed!r}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as err:
        kind = TypeError if isinstance(err, TypeError) else ValueError
        raise kind(
            "seed must be None, a non-negative integer, a SeedSequence or a "
            f"numpy.random.Generator, got {seed!r}"
        ) from None


def check_frame(data: Any, name: str = "data") -> pd.DataFrame:
    """``data`` must be a pandas DataFrame (TypeError naming it)."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(data).__name__}")
    return data


def check_column_names(columns: Any, name: str = "columns") -> list[Any]:
    """A column name or several (any iterable but a mapping), as a list without repeats;
    empty is refused."""
    names = check_names(name, columns)
    if not names:
        raise ValueError(f"{name} is empty: name at least one column")
    return names


def check_names(name: str, values: Any, kind: str = "names") -> list[Any]:
    """A name or an iterable of names (list, tuple, set, pandas Index or Series, numpy
    array, dict keys) as a list without repeats; a mapping or a number is refused."""
    if isinstance(values, str):
        return [values]
    if isinstance(values, dict | pd.DataFrame) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a name or a list of {kind}, got {values!r}")
    return list(dict.fromkeys(values.tolist() if hasattr(values, "tolist") else values))
