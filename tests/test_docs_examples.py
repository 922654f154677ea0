"""The Python examples of the MixedLM migration guide and the panel and derivatives pages run."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from statsmodels.regression.mixed_linear_model import MixedLM

import statsmodels_lmer as sml

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(name: str) -> list[str]:
    if name == "README.md":  # the sections of this feature
        text = (DOCS.parent / name).read_text()
        text = text[
            text.index("### For statsmodels MixedLM users") : text.index("### Beyond the fit")
        ]
    else:
        text = (DOCS / name).read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize(
    "name", ["migration_mixedlm.md", "panel.md", "derivatives.md", "README.md"]
)
def test_examples_run(name, capsys):
    namespace: dict = {}
    blocks = python_blocks(name)
    assert blocks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:  # later blocks use the names of earlier ones
            exec(compile(block, f"{name} example", "exec"), namespace)
    out = capsys.readouterr().out
    assert name != "panel.md" or "Covariance: cluster-robust CR2 by Subject (18 clusters)" in out


def test_migration_table_lists_every_mixedlm_results_attribute():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = MixedLM.from_formula("strength ~ 1", sml.datasets.load("Pastes"), groups="batch")
        public = {name for name in dir(fitted.fit()) if not name.startswith("_")}
    text = (DOCS / "migration_mixedlm.md").read_text()
    table = text[text.index("## Every attribute of `MixedLMResults`") :]
    listed = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            listed |= set(re.findall(r"`(\w+)`", first_cell))
    assert public <= listed, sorted(public - listed)
