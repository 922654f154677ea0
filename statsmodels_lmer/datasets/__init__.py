"""Example data sets (lme4's and a few others), bundled as compressed CSV with
their descriptions.

>>> import statsmodels_lmer as sml
>>> df = sml.datasets.load("sleepstudy")
>>> sorted(sml.datasets.names())[:3]
['Dyestuff', 'Dyestuff2', 'InstEval']

Factor columns come back as pandas categoricals with R's level order (and
``ordered=True`` where R's factor is ordered).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd

__all__ = ["describe", "load", "names"]

_PACKAGE = "statsmodels_lmer.datasets"


def names() -> list[str]:
    """Names of the bundled data sets."""
    folder = resources.files(_PACKAGE) / "data"
    return sorted(p.name[: -len(".csv.gz")] for p in folder.iterdir() if p.name.endswith(".csv.gz"))


def _resolve(name: str) -> str:
    available = names()
    if not isinstance(name, str):
        raise TypeError(
            f"name must be the name of a data set (a string), got {name!r}; "
            f"available: {', '.join(available)}"
        )
    if name in available:
        return name
    lowered = {n.lower(): n for n in available}
    if name.lower() in lowered:
        return lowered[name.lower()]
    raise KeyError(f"no data set named {name!r}; available: {', '.join(available)}")


@cache
def _metadata(name: str) -> dict[str, Any]:
    path = resources.files(_PACKAGE) / "data" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def describe(name: str) -> dict[str, Any]:
    """Title, description, source and column descriptions of a data set.

    Parameters
    ----------
    name : str
        Data set name (case-insensitive), see :func:`names`.

    Returns
    -------
    dict
        Keys ``title``, ``description``, ``source``, ``columns``.
    """
    meta = _metadata(_resolve(name))
    return {key: meta[key] for key in ("title", "description", "source", "columns")}


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as a new DataFrame.

    Parameters
    ----------
    name : str
        Data set name (case-insensitive): sleepstudy, Dyestuff, Dyestuff2,
        Penicillin, Pastes, cake, InstEval, hsb, Oxboys, carrots, kb07.

    Returns
    -------
    pandas.DataFrame
        Factor columns as categoricals with R's level order;
        ``attrs["name"]`` holds the data set's name (shown by summaries as
        lme4 shows the data's name).
    """
    name = _resolve(name)
    meta = _metadata(name)
    factors = meta.get("factors", {})
    path = resources.files(_PACKAGE) / "data" / f"{name}.csv.gz"
    with resources.as_file(path) as local:
        frame = pd.read_csv(local, dtype={col: str for col in factors})
    ordered = set(meta.get("ordered", []))
    for col, levels in factors.items():
        frame[col] = pd.Categorical(frame[col], categories=levels, ordered=col in ordered)
    frame.attrs["name"] = name
    return frame
