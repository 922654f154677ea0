"""The names a formula uses besides its columns, kept so that a model works after pickling.

patsy evaluates ``np.log(x)`` or ``myfun(x)`` in the caller's namespace when the
model is built. Prediction, ``update`` and a model loaded from a pickle need the
same names again, without that namespace: the objects are captured when the
model is built, modules are stored by name, functions by reference (as pickle
does), and a name that cannot be stored is reported when it is needed.
"""

from __future__ import annotations

import importlib
import pickle
import types
from collections.abc import Iterable
from typing import Any

import numpy as np
import patsy

from .exceptions import FormulaError
from .transform_rows import names_in_code
from .transforms import FORMULA_TRANSFORMS

__all__ = ["FormulaNamespace"]

_ALWAYS = {"np": np, "numpy": np, **FORMULA_TRANSFORMS}


class FormulaNamespace:
    """The non-column names of a model's formula and the objects they stood for.

    Parameters
    ----------
    objects : dict of str to object
        The objects, as found when the model was built.
    """

    def __init__(self, objects: dict[str, Any] | None = None) -> None:
        self.objects = dict(objects or {})
        self.lost: list[str] = []

    @classmethod
    def capture(
        cls, codes: Iterable[str], columns: Iterable[Any], eval_env: Any
    ) -> FormulaNamespace:
        """The objects behind the names in ``codes`` that are not columns.

        Parameters
        ----------
        codes : iterable of str
            The Python code of each term (patsy's factor codes).
        columns : iterable
            The data's column names (these are not captured).
        eval_env : patsy.EvalEnvironment
            Where the model looked names up.
        """
        columns = {str(c) for c in columns}
        names: set[str] = set()
        for code in codes:
            names |= names_in_code(code)
        objects = {}
        for name in sorted(names - columns - set(_ALWAYS)):
            try:
                objects[name] = eval_env.namespace[name]
            except KeyError:
                continue
        return cls(objects)

    def env(self) -> patsy.EvalEnvironment:
        """An evaluation environment with numpy and the captured objects."""
        return patsy.EvalEnvironment([{**_ALWAYS, **self.objects}])

    def missing_error(self) -> FormulaError | None:
        """The error to raise when names were lost in pickling (None when none were)."""
        if not self.lost:
            return None
        return FormulaError(
            f"this model was loaded from a pickle, and its formula uses {self.lost}, which "
            "could not be pickled (a lambda, or a function defined inside another "
            "function); define it at the top level of a module and fit the model again"
        )

    def __getstate__(self) -> dict[str, Any]:
        stored: dict[str, tuple[str, Any]] = {}
        lost = list(self.lost)
        for name, value in self.objects.items():
            if isinstance(value, types.ModuleType):
                stored[name] = ("module", value.__name__)
                continue
            try:
                pickle.dumps(value)
            except Exception:  # any object pickle refuses
                lost.append(name)
            else:
                stored[name] = ("object", value)
        return {"stored": stored, "lost": lost}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.objects = {}
        self.lost = list(state["lost"])
        for name, (kind, value) in state["stored"].items():
            if kind == "module":
                try:
                    self.objects[name] = importlib.import_module(value)
                except ImportError:
                    self.lost.append(name)
            else:
                self.objects[name] = value
