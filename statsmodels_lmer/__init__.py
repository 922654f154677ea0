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
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it (relative to this package)
_HOMES: dict[str, str] = {
    "DataError": ".exceptions",
    "FormulaError": ".exceptions",
    "LmerConvergenceWarning": ".exceptions",
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
    "LmerResults": ".results",
    "LmerResultsWrapper": ".results",
    "anova": ".tools.compare",
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
    "lmer",
    "mixedlm",
    "mundlak",
    "pbmodcomp",
    "progress_settings",
    "set_progress",
    "variance_explained",
]


def __getattr__(name: str) -> Any:
    """Load a public name (or the ``datasets``/``graphics`` subpackage) on first use."""
    if name in _SUBPACKAGES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # static checkers and IDEs see the eager imports
    from . import datasets, graphics
    from ._parallel import progress_settings, set_progress
    from .exceptions import (
        DataError,
        FormulaError,
        LmerConvergenceWarning,
        ResponseTypeError,
        SingularFitWarning,
        UnknownColumnError,
        UnsafeFormulaError,
    )
    from .fitting.optimizers import available_optimizers
    from .model import Lmer, lmer, mixedlm
    from .results import LmerResults, LmerResultsWrapper
    from .tools.compare import anova
    from .tools.multilevel import center, variance_explained
    from .tools.panel import mundlak
