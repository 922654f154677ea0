"""Bundled data sets."""

from __future__ import annotations

import pandas as pd
import pytest

import statsmodels_lmer as sml

SIZES = {
    "sleepstudy": (180, 3),
    "Dyestuff": (30, 2),
    "Dyestuff2": (30, 2),
    "Penicillin": (144, 3),
    "Pastes": (60, 4),
    "cake": (270, 5),
    "InstEval": (73421, 7),
    "hsb": (7185, 11),
    "Oxboys": (234, 4),
    "carrots": (1236, 14),
    "kb07": (1789, 7),
}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_load_shapes_and_descriptions(name):
    frame = sml.datasets.load(name)
    assert frame.shape == SIZES[name]
    info = sml.datasets.describe(name)
    assert set(info["columns"]) == set(frame.columns)
    assert info["title"] and info["description"]


def test_names_and_case_insensitive_lookup():
    assert sorted(sml.datasets.names()) == sorted(SIZES)
    assert sml.datasets.load("SLEEPSTUDY").shape == (180, 3)
    with pytest.raises(KeyError, match="available"):
        sml.datasets.load("iris")


def test_factors_keep_r_level_order():
    subject = sml.datasets.load("sleepstudy")["Subject"]
    assert isinstance(subject.dtype, pd.CategoricalDtype)
    assert list(subject.cat.categories[:3]) == ["308", "309", "310"]
    temperature = sml.datasets.load("cake")["temperature"]
    assert temperature.cat.ordered
    assert list(temperature.cat.categories) == ["175", "185", "195", "205", "215", "225"]
