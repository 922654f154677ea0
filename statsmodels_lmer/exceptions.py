"""Exception and warning classes raised by statsmodels_lmer.

Every error subclasses one of Python's ``ValueError``, ``KeyError`` or
``TypeError`` so that callers can catch them generically; warnings subclass
statsmodels' own warning classes.
"""

from __future__ import annotations

import inspect
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

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
    "ignored_warnings",
    "recorded_warnings",
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
    """Emit a warning attributed to the caller's line (see :func:`caller_stacklevel`).

    Inside :func:`ignored_warnings` or :func:`recorded_warnings` of this
    thread, a matching warning is dropped or recorded instead.
    """
    if _diverted(message, category):
        return
    # caller_stacklevel counts from its own frame; this function adds one.
    warnings.warn(message, category, stacklevel=caller_stacklevel())


@dataclass(frozen=True)
class _Layer:
    """One :func:`ignored_warnings` (``texts`` None) or :func:`recorded_warnings` block."""

    category: type[Warning]
    pattern: re.Pattern[str] | None
    texts: list[str] | None


_LAYERS: ContextVar[tuple[_Layer, ...]] = ContextVar("statsmodels_lmer_warnings", default=())
"""The blocks this thread (context) is in, innermost last."""


def _diverted(message: str, category: type[Warning]) -> bool:
    """Drop or record the warning in the innermost block that takes it."""
    for layer in reversed(_LAYERS.get()):
        if not issubclass(category, layer.category):
            continue
        if layer.pattern is not None and not layer.pattern.match(message):
            continue
        if layer.texts is not None:
            layer.texts.append(message)
        return True
    return False


def _only_thread() -> bool:
    """Whether no other thread runs (tqdm's monitor aside): ``warnings.catch_warnings``
    is then safe. Before Python 3.14 it swaps process-wide state, and two blocks
    overlapping in two threads restore each other's: fits in two threads left every
    warning of the process switched off, and a bootstrap recorded another
    thread's warnings as its own."""
    current = threading.current_thread()
    return all(
        thread is current or type(thread).__name__ == "TMonitor" for thread in threading.enumerate()
    )


@contextmanager
def ignored_warnings(category: type[Warning] = Warning, message: str = "") -> Iterator[None]:
    """Drop the warnings of ``category`` whose text starts with ``message`` (a regular
    expression) raised in this block.

    The package's own warnings are dropped in this thread only (a context
    variable); other libraries' only when no other thread runs, since the
    ``warnings`` module keeps its filters for the whole process.
    """
    layer = _Layer(category, re.compile(message) if message else None, None)
    token = _LAYERS.set((*_LAYERS.get(), layer))
    try:
        if _only_thread():
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message, category)
                yield
        else:
            yield
    finally:
        _LAYERS.reset(token)


@contextmanager
def recorded_warnings() -> Iterator[list[str]]:
    """The texts of the warnings raised in this block, recorded instead of shown.

    As :func:`ignored_warnings`: the package's own in this thread only, other
    libraries' when no other thread runs (otherwise they are shown as usual).
    """
    texts: list[str] = []
    token = _LAYERS.set((*_LAYERS.get(), _Layer(Warning, None, texts)))
    try:
        if _only_thread():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield texts
            texts.extend(str(w.message) for w in caught)
        else:
            yield texts
    finally:
        _LAYERS.reset(token)
