"""One column of a DataFrame as an array, without building a Series.

``frame[name]`` builds a pandas Series (10-20 us, several times that in a
fit's cold code path); the model frame, the fixed part and the random terms
read a dozen columns per fit.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import pandas as pd

__all__ = ["column_array", "suggest_column", "undefined_name"]

_UNDEFINED = re.compile(r"name '([^']+)' is not defined")


def column_array(frame: pd.DataFrame, name: Any) -> Any:
    """One column's values (a numpy or pandas extension array), or None for a duplicated name.

    Without building a Series where pandas allows (0.4 us against 10-20 us for
    ``frame[name]``, which the model frame's checks did a dozen times per fit).
    """
    loc = frame.columns.get_loc(name)
    if not isinstance(loc, int):
        return None
    getter = getattr(frame, "_get_column_array", None)  # pandas' own, no Series
    if getter is None:
        return frame.iloc[:, loc].array
    return getter(loc)


def suggest_column(name: str, columns: Any) -> str:
    """`` (did you mean 'x'?)`` with the columns closest to ``name``, else the columns."""
    names = list(map(str, columns))
    close = difflib.get_close_matches(name, names, n=3)
    if close:
        return f" (did you mean {', '.join(map(repr, close))}?)"
    return f" (columns: {', '.join(names[:20])})"


def undefined_name(message: str) -> str | None:
    """The name in a ``NameError`` message (``name 'x' is not defined``), or None."""
    found = _UNDEFINED.search(message)
    return found.group(1) if found else None
