"""Exception and warning classes raised by statsmodels_lmer.

Every error subclasses one of Python's ``ValueError``, ``KeyError`` or
``TypeError`` so that callers can catch them generically; warnings subclass
statsmodels' own warning classes.
"""

from __future__ import annotations

import inspect
import warnings

from statsmodels.tools.sm_exceptions import ConvergenceWarning, ModelWarning

__all__ = [
    "DataError",
    "FormulaError",
    "LmerConvergenceWarning",
    "OutOfMemoryError",
    "ResponseTypeError",
    "SingularFitWarning",
    "UnknownColumnError",
    "UnsafeFormulaError",
    "caller_stacklevel",
    "warn",
]


class FormulaError(ValueError):
    """A model formula that cannot be parsed, with what is wrong and where."""


class UnsafeFormulaError(FormulaError):
    """A formula refused in restricted mode: it would run code beyond the whitelist."""


class DataError(ValueError):
    """Data that cannot be used for the model as given."""


class OutOfMemoryError(DataError, MemoryError):
    """The fit ran out of memory although the estimate made before it was within the limit.

    A ``MemoryError`` too, so that code catching numpy's still catches it.
    """


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


_PACKAGE = __name__.rsplit(".", 1)[0]
_PASSED_THROUGH = frozenset({"functools", "contextlib"})
"""Standard-library helpers the package's code runs through (``cached_property``)."""


def caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside this package.

    A warning emitted with it points at the caller's line (in a script or a
    notebook) rather than at the package's own code, or at ``functools``
    (a ``cached_property`` such as ``res.satterthwaite`` computed on first use).
    """
    frame = inspect.currentframe()
    level = 0
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        inside = name == _PACKAGE or name.startswith(_PACKAGE + ".") or name in _PASSED_THROUGH
        if level > 0 and not inside:
            return level
        frame = frame.f_back
        level += 1
    return 2


def warn(message: str, category: type[Warning]) -> None:
    """Emit a warning attributed to the caller's line (see :func:`caller_stacklevel`)."""
    # caller_stacklevel counts from its own frame; this function adds one.
    warnings.warn(message, category, stacklevel=caller_stacklevel())
