"""The layering of the package (docs/architecture.md), checked on the source.

Every import of a package module points down the layers below; there are no
cycles, no imports of package modules inside functions (which would hide a
cycle), and no module (tests included) uses another module's private names.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "statsmodels_lmer"

LAYERS = [
    ["arguments"],
    [
        "exceptions",
        "parametrization",
        "splines",
        "_parallel",
        "datasets",
        "datasets.*",
        "tables",
        "columns",
        "cached",
    ],
    ["linalg"],
    ["transforms"],
    ["transform_rows"],
    ["formula"],
    ["mixedlm_formula"],
    ["restricted"],
    ["terms"],
    ["data_checks"],
    ["lean_design"],
    ["offsets"],
    ["frame"],
    ["formula_env"],
    ["distributed.design"],
    ["engine.cost", "engine.centering"],
    ["engine.sparse"],
    ["engine.blocks"],
    ["engine.tiny"],
    ["engine.objective"],
    ["engine.gradient"],
    ["engine"],
    ["fitting.lbfgsb", "fitting.start"],
    ["fitting.convergence", "fitting.optimizers"],
    ["fitting.options", "fitting.rescale"],
    ["fitting.run"],
    ["fitting.fit"],
    ["fitting"],
    ["random_effects"],
    ["distributed.partition"],
    ["distributed.dask_fit"],
    ["distributed"],
    ["graphics._mpl"],
    ["graphics.*"],
    ["graphics"],
    ["inference.contrasts", "inference.derivatives", "inference.contrast_results"],
    ["inference.satterthwaite", "inference.kenward_roger"],
    ["inference.robust"],
    ["inference.hypotheses"],
    ["inference.ls_means"],
    ["inference.exact_lrt"],
    ["inference"],
    ["intervals.parameters"],
    ["intervals.profile", "intervals.bootstrap"],
    ["intervals.confint"],
    ["intervals"],
    ["tools.predict", "tools.multilevel", "tools.mixedlm_names", "tools.panel"],
    [
        "tools.simulate",
        "tools.diagnostics",
        "tools.compare",
        "tools.allfit",
        "tools.prediction",
    ],
    ["tools.step", "tools.pbmodcomp", "tools.influence"],
    ["tools"],
    ["summary"],
    ["results"],
    ["model"],
    ["", "__main__"],
]
"""Layers from the bottom up; a module may import only from layers below its own."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def rank(name: str) -> int:
    for position, patterns in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            return position
    raise AssertionError(f"module {name!r} is in no layer of LAYERS; add it")


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    """The package-relative name a ``from ... import`` refers to (None: not ours)."""
    if node.level == 0:
        module = node.module or ""
        if module != "statsmodels_lmer" and not module.startswith("statsmodels_lmer."):
            return None
        return module.removeprefix("statsmodels_lmer").lstrip(".")
    base = current.split(".") if current else []
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path) -> list[tuple[str, ast.ImportFrom, bool]]:
    """(target module, node, at top level) for each import of a package module."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # "if TYPE_CHECKING:" imports are module level too
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            top_level.update(id(child) for child in node.body)
    out = []
    known = modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("statsmodels_lmer") for a in node.names), (
                f"{name}: use relative imports of package modules"
            )
        if not isinstance(node, ast.ImportFrom):
            continue
        target = resolve(name, path.name == "__init__.py", node)
        if target is None:
            continue
        for alias in node.names:  # "from . import tools" imports the submodule
            sub = f"{target}.{alias.name}" if target else alias.name
            out.append((sub if sub in known else target, node, id(node) in top_level))
    return out


def import_graph() -> dict[str, set[str]]:
    return {
        name: {target for target, _, _ in imports_of(name, path)}
        for name, path in modules().items()
    }


def test_every_module_is_in_a_layer():
    for name in modules():
        rank(name)


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_point_down(name):
    path = modules()[name]
    for target, node, top in imports_of(name, path):
        assert top, f"{name}:{node.lineno} imports {target or 'the package'} inside a function"
        if target == name or (target and name.startswith(target + ".")):
            continue  # a module importing its own package's name space
        assert rank(target) < rank(name), (
            f"{name} (layer {rank(name)}) imports {target} (layer {rank(target)})"
        )


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt == node or nxt not in graph:
                continue
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*stack, node, nxt])
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def private_uses(path: Path, package_modules: set[str]) -> list[str]:
    """Private names taken from our modules: ``from m import _x`` or ``m._x``."""
    tree = ast.parse(path.read_text())
    is_test = path.is_relative_to(ROOT / "tests")
    own = None if is_test else module_name(path)
    aliases: set[str] = {"sml", "statsmodels_lmer"} if is_test else set()
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.ImportFrom) and node.module is not None) or (
            isinstance(node, ast.ImportFrom) and node.level
        ):
            target = (
                resolve(own, path.name == "__init__.py", node)
                if own is not None
                else (resolve("", True, node) if node.level == 0 else None)
            )
            if target is None:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                if sub in package_modules:
                    aliases.add(alias.asname or alias.name)
                elif alias.name.startswith("_") and target != own:
                    found.append(f"{path.name}:{node.lineno} imports {alias.name} from {target}")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_private_names_across_modules():
    package_modules = set(modules())
    files = sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "tests").glob("*.py"))
    found = [use for path in files for use in private_uses(path, package_modules)]
    assert not found, "\n".join(found)
