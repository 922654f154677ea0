"""statsmodels_lmer: lme4-style linear mixed models inside statsmodels.

>>> import statsmodels_lmer as sml
>>> res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
"""

from __future__ import annotations

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

__version__ = "0.1.0"

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
    "progress_settings",
    "set_progress",
    "variance_explained",
]
