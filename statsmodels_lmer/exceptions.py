"""Exception and warning classes raised by statsmodels_lmer.

Every error subclasses one of Python's ``ValueError``, ``KeyError`` or
``TypeError`` so that callers can catch them generically; warnings subclass
statsmodels' own warning classes.
"""

from __future__ import annotations

from statsmodels.tools.sm_exceptions import ConvergenceWarning, ModelWarning

__all__ = [
    "DataError",
    "FormulaError",
    "LmerConvergenceWarning",
    "ResponseTypeError",
    "SingularFitWarning",
    "UnknownColumnError",
]


class FormulaError(ValueError):
    """A model formula that cannot be parsed, with what is wrong and where."""


class DataError(ValueError):
    """Data that cannot be used for the model as given."""


class UnknownColumnError(KeyError):
    """A formula names a column that the data frame does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ResponseTypeError(TypeError):
    """The response (or a weight/offset) is not numeric."""


class SingularFitWarning(ModelWarning):
    """The fit is on the boundary of the parameter space (singular)."""


class LmerConvergenceWarning(ConvergenceWarning):
    """The optimizer did not converge, or the convergence checks failed."""
