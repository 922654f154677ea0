"""The documentation site covers the package: every public name is in the API reference,
and every name the lme4 name map promises exists."""

from __future__ import annotations

import importlib
import pkgutil
import re
import warnings
from pathlib import Path

import pytest

import statsmodels_lmer as sml
from statsmodels_lmer import graphics

DOCS = Path(__file__).resolve().parents[1] / "docs"


def api_directives() -> dict[str, set[str]]:
    """Per directive kind (automodule, autofunction, ...), the names it documents."""
    found: dict[str, set[str]] = {}
    current = ""
    for page in (DOCS / "api").glob("*.rst"):
        for line in page.read_text().splitlines():
            match = re.match(r"\.\. (module|currentmodule|auto\w+):: (\S+)", line)
            if match is None:
                continue
            kind, name = match.groups()
            if kind in ("module", "currentmodule"):
                current = name
                continue
            if kind != "automodule":
                name = f"{current}.{name}"
            found.setdefault(kind, set()).add(name)
    return found


def excluded_members(module: str) -> set[str]:
    for page in (DOCS / "api").glob("*.rst"):
        text = page.read_text()
        block = re.search(rf"\.\. automodule:: {re.escape(module)}\n((?:   .*\n)*)", text)
        if block:
            excluded = re.search(r":exclude-members: (.*)", block.group(1))
            return {n.strip() for n in excluded.group(1).split(",")} if excluded else set()
    return set()


def public_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(sml.__path__, "statsmodels_lmer."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", public_modules())
def test_every_public_name_is_in_the_api_reference(module_name):
    directives = api_directives()
    automodules = directives.get("automodule", set())
    single = set().union(*(v for k, v in directives.items() if k != "automodule"))
    module = importlib.import_module(module_name)
    missing = []
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        documented_here = module_name in automodules and name not in excluded_members(module_name)
        in_parent = any(
            parent in automodules and getattr(importlib.import_module(parent), name, None) is obj
            for parent in (module_name.rsplit(".", 1)[0],)
        )
        at_top = name in sml.__all__ and f"statsmodels_lmer.{name}" in single
        one_by_one = f"{module_name}.{name}" in single
        if not (documented_here or in_parent or at_top or one_by_one):
            missing.append(name)
    assert not missing, f"{module_name}: not in docs/api: {missing}"


def test_every_top_level_name_is_in_the_api_reference():
    single = set().union(*(v for k, v in api_directives().items() if k != "automodule"))
    modules = {"datasets", "graphics", "__version__"}  # pages of their own / not an object
    missing = [n for n in sml.__all__ if n not in modules and f"statsmodels_lmer.{n}" not in single]
    assert not missing


def test_the_lme4_name_map_names_exist():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    namespaces = {"res": res, "model": res.model, "sml": sml, "graphics": graphics}
    text = (DOCS / "name_map_lme4.md").read_text()
    rows = [re.split(r"(?<!\\)\|", row) for row in text.splitlines() if row.startswith("| `")]
    python_cells = [row[2] for row in rows]
    checked = 0
    for cell in python_cells:
        for prefix, name in re.findall(r"\b(res|model|sml|graphics)\.(\w+)", cell):
            assert hasattr(namespaces[prefix], name), f"{prefix}.{name}"
            checked += 1
    assert checked > 60
