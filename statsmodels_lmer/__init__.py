"""statsmodels_lmer: lme4-style linear mixed models inside statsmodels.

>>> import statsmodels_lmer as sml
>>> res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))

The public names load on first use (PEP 562), so ``import statsmodels_lmer``
is cheap; the first use of a model loads statsmodels itself (about 0.8 s,
most of it ``scipy.stats``), and the plotting modules load only when
``sml.graphics`` is used.
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it (relative to this package)
_HOMES: dict[str, str] = {
    "DataError": ".exceptions",
    "FormulaError": ".exceptions",
    "LmerConvergenceWarning": ".exceptions",
    "OutOfMemoryError": ".exceptions",
    "ResponseTypeError": ".exceptions",
    "SingularFitWarning": ".exceptions",
    "UnknownColumnError": ".exceptions",
    "UnsafeFormulaError": ".exceptions",
    "progress_settings": "._parallel",
    "set_progress": "._parallel",
    "available_optimizers": ".fitting.optimizers",
    "Lmer": ".model",
    "lmer": ".model",
    "mixedlm": ".model",
    "MixedLM": ".model",
    "LmerResults": ".results",
    "LmerResultsWrapper": ".results",
    "anova": ".tools.compare",
    "krmodcomp": ".tools.compare",
    "satmodcomp": ".tools.compare",
    "center": ".tools.multilevel",
    "variance_explained": ".tools.multilevel",
    "mundlak": ".tools.panel",
    "pbmodcomp": ".tools.pbmodcomp",
}
_SUBPACKAGES = ("datasets", "graphics")

__all__ = [
    "DataError",
    "FormulaError",
    "Lmer",
    "LmerConvergenceWarning",
    "LmerResults",
    "LmerResultsWrapper",
    "MixedLM",
    "OutOfMemoryError",
    "ResponseTypeError",
    "SingularFitWarning",
    "UnknownColumnError",
    "UnsafeFormulaError",
    "__version__",
    "anova",
    "available_optimizers",
    "center",
    "datasets",
    "graphics",
    "krmodcomp",
    "lmer",
    "mixedlm",
    "mundlak",
    "pbmodcomp",
    "progress_settings",
    "satmodcomp",
    "set_progress",
    "variance_explained",
]


def _load_statsmodels_warnings() -> None:
    """Import statsmodels' warning classes with the caller's warning filters kept in front.

    statsmodels, when first imported, puts ``"always"`` filters for its warnings
    (ours derive from them) in front of the filters already set. Loaded here
    on first use, after ``import statsmodels_lmer; warnings.simplefilter("ignore")``,
    it would have overridden the caller's filter, which an eager import would
    not have done; the filters set before are moved back in front, in their order.
    """
    if "statsmodels.tools.sm_exceptions" in sys.modules:
        return
    before = list(warnings.filters)
    importlib.import_module("statsmodels.tools.sm_exceptions")
    for action, message, category, module, lineno in reversed(before):
        if message is None and module is None:
            warnings.simplefilter(action, category, lineno)
            continue
        text = "" if message is None else message.pattern
        if isinstance(module, str):  # Python's default filters name a module exactly
            module = re.escape(module) + r"\Z"
        where = "" if module is None else getattr(module, "pattern", module)
        warnings.filterwarnings(action, text, category, where, lineno)


_NAMES_ELSEWHERE = {
    "MixedLMResults": "the results of sml.lmer and sml.mixedlm fits are sml.LmerResults",
    "glmer": "generalized linear mixed models are not available (linear ones: sml.lmer)",
}
"""Names a statsmodels or lme4 user may look for here, and where their equivalents are."""


def __getattr__(name: str) -> Any:
    """Load a public name (or the ``datasets``/``graphics`` subpackage) on first use."""
    if name in _SUBPACKAGES or name in _HOMES:
        _load_statsmodels_warnings()
    if name in _SUBPACKAGES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    home = _HOMES.get(name)
    if home is None:
        hint = _NAMES_ELSEWHERE.get(name)
        raise AttributeError(
            f"module {__name__!r} has no attribute {name!r}" + (f": {hint}" if hint else "")
        )
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Public names, loaded subpackages and dunders (not the helper imports)."""
    subpackages = {
        name
        for name, value in globals().items()
        if isinstance(value, ModuleType) and value.__name__.startswith(f"{__name__}.")
    }
    dunders = {name for name in globals() if name.startswith("__") and name.endswith("__")}
    return sorted({*__all__, *subpackages, *dunders})


if TYPE_CHECKING:  # static checkers and IDEs see the eager imports
    from . import datasets, graphics
    from ._parallel import progress_settings, set_progress
    from .exceptions import (
        DataError,
        FormulaError,
        LmerConvergenceWarning,
        OutOfMemoryError,
        ResponseTypeError,
        SingularFitWarning,
        UnknownColumnError,
        UnsafeFormulaError,
    )
    from .fitting.optimizers import available_optimizers
    from .model import Lmer, MixedLM, lmer, mixedlm
    from .results import LmerResults, LmerResultsWrapper
    from .tools.compare import anova, krmodcomp, satmodcomp
    from .tools.multilevel import center, variance_explained
    from .tools.panel import mundlak
