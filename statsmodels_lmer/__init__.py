"""statsmodels_lmer: lme4-style linear mixed models inside statsmodels.

>>> import statsmodels_lmer as sml
>>> res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
"""

from __future__ import annotations

from . import datasets, graphics
from .compare import anova
from .exceptions import (
    DataError,
    FormulaError,
    LmerConvergenceWarning,
    ResponseTypeError,
    SingularFitWarning,
    UnknownColumnError,
)
from .model import Lmer, lmer
from .multilevel import center, variance_explained
from .optimizers import available_optimizers
from .results import LmerResults, LmerResultsWrapper

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
    "__version__",
    "anova",
    "available_optimizers",
    "center",
    "datasets",
    "graphics",
    "lmer",
    "variance_explained",
]
