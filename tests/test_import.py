"""The package's public names load on first use (the import itself stays cheap)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import statsmodels_lmer as sml

HEAVY = {"statsmodels", "scipy", "pandas", "matplotlib", "patsy"}


def loaded_after(code: str) -> set[str]:
    """Names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_import_loads_neither_statsmodels_nor_scipy_nor_matplotlib():
    assert not top_level(loaded_after("import statsmodels_lmer")) & HEAVY


def test_first_use_loads_the_model_but_not_matplotlib():
    loaded = loaded_after("import statsmodels_lmer as sml\nsml.lmer")
    assert "statsmodels_lmer.model" in loaded
    assert "matplotlib" not in top_level(loaded)  # plots import it when drawing


def test_all_lists_exactly_the_lazy_names():
    lazy = {name for name in sml.__all__ if name != "__version__"}
    for name in lazy:
        assert getattr(sml, name) is not None
        assert name in dir(sml)
    assert "Lmer" in lazy and "graphics" in lazy


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'lmerr'"):
        sml.lmerr  # noqa: B018


def test_from_import_and_submodule_import_work():
    code = "from statsmodels_lmer import DataError, lmer\nimport statsmodels_lmer.datasets"
    loaded = loaded_after(code)
    assert {"statsmodels_lmer.exceptions", "statsmodels_lmer.datasets"} <= loaded


FILTER_SCRIPT = """
import warnings
import statsmodels_lmer as sml
warnings.{call}
res = sml.lmer("Yield ~ 1 + (1|Batch)", sml.datasets.load("Dyestuff2"))  # singular
print(res.is_singular())
"""


@pytest.mark.parametrize(
    ("call", "shown"),
    [
        ('simplefilter("ignore")', False),
        ('filterwarnings("ignore", message="boundary")', False),
        ('simplefilter("default")', True),
    ],
)
def test_filters_set_before_first_use_still_apply(call, shown):
    """statsmodels puts "always" filters for its warnings in front when first imported;
    loaded lazily after the caller's ``simplefilter("ignore")`` it overrode it and the
    singular-fit warning was printed. The caller's filters stay in front."""
    script = FILTER_SCRIPT.format(call=call)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert ("SingularFitWarning" in out.stderr) == shown


def test_numpy_is_in_every_formula_namespace():
    """A script without ``import numpy as np`` got "name 'np' is not defined" for np.log."""
    script = (
        "import statsmodels_lmer as sml\n"
        "res = sml.lmer('Reaction ~ np.log(Days + 1) + (1 | Subject)', "
        "sml.datasets.load('sleepstudy'))\n"
        "print(round(float(res.params.iloc[1]), 4), res.predict(res.model.data.frame[:2]).shape)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "40.0238"


def test_statsmodels_mixedlm_with_the_import_swapped():
    """statsmodels' example with the import swapped (sml.MixedLM) met a bare AttributeError,
    and ``from statsmodels_lmer import MixedLM`` a bare ImportError."""
    import statsmodels_lmer as sml
    from statsmodels_lmer import MixedLM

    data = sml.datasets.load("sleepstudy")
    model = MixedLM.from_formula("Reaction ~ Days", data, re_formula="~Days", groups="Subject")
    same = sml.mixedlm("Reaction ~ Days", data, re_formula="~Days", groups="Subject")
    assert model.fit().llf == same.fit().llf
    with pytest.raises(TypeError, match=r"put the arrays in a DataFrame and use sml\.mixedlm"):
        MixedLM(data["Reaction"], data[["Days"]], groups=data["Subject"])
    with pytest.raises(AttributeError, match=r"sml\.LmerResults"):
        sml.MixedLMResults  # noqa: B018
    with pytest.raises(AttributeError, match=r"has no attribute 'nothing_here'$"):
        sml.nothing_here  # noqa: B018


def test_dir_lists_no_helper_imports():
    names = dir(sml)
    assert {"Any", "TYPE_CHECKING", "annotations", "importlib", "re", "sys", "warnings"}.isdisjoint(
        names
    )
    assert {"lmer", "Lmer", "datasets", "__version__"} <= set(names)
