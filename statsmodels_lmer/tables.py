"""Tables that print the way R prints them: a heading and lme4's p-values.

:class:`LmerTable` is a pandas DataFrame (all of pandas works on it, and
derived frames are plain DataFrames) whose printed form starts with heading
lines, such as lme4's "refitting model(s) with ML (instead of REML)" or
lmerTest's "Type III Analysis of Variance Table with Satterthwaite's
method", and shows p-values as R's ``format.pval`` does (``< 2e-16``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PVALUE_FLOOR", "LmerTable", "format_pvalue", "model_heading"]

PVALUE_FLOOR = float(np.finfo(float).eps)
"""p-values below R's ``.Machine$double.eps`` print as ``< 2e-16``."""


def format_pvalue(value: float) -> str:
    """A p-value as R prints it: ``< 2e-16``, ``3.26e-06``, ``0.0123``, ``0.766``."""
    if value is None or not np.isfinite(value):
        return ""
    if value < PVALUE_FLOOR:
        return "< 2e-16"
    if value < 1e-4:
        return f"{value:.2e}"
    return f"{value:.3g}"


def model_heading(title: str, formula: str | None) -> list[str]:
    """Heading lines of a single-model table, as lme4 and lmerTest print them.

    ``title``, a blank line, ``Model:`` and the model's formula (lme4's
    ``drop1`` and lmerTest's ``drop1`` and ``ranova``).
    """
    return [title, "", "Model:", formula or "(arrays)"]


class LmerTable(pd.DataFrame):
    """A DataFrame with heading lines and R-style p-values when printed.

    Attributes
    ----------
    heading : list of str
        Lines printed above the table.
    pvalue_columns : list of str
        Columns shown with :func:`format_pvalue`.
    hidden_columns : list of str
        Columns left out of the printed table (still in the frame).
    """

    _metadata = ["heading", "pvalue_columns", "hidden_columns"]

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        heading: list[str] | None = None,
        pvalue_columns: list[str] | None = None,
        hidden_columns: list[str] | None = None,
    ) -> LmerTable:
        """Wrap a DataFrame (its attrs are kept)."""
        table = cls(frame)
        table.attrs.update(frame.attrs)
        table.heading = list(heading or [])
        table.pvalue_columns = list(pvalue_columns or ["pvalue"])
        table.hidden_columns = list(hidden_columns or [])
        return table

    def display_frame(self) -> pd.DataFrame:
        """The frame as printed: p-values formatted, hidden columns left out."""
        hidden = [c for c in getattr(self, "hidden_columns", []) if c in self.columns]
        shown = pd.DataFrame(self).drop(columns=hidden)
        for column in getattr(self, "pvalue_columns", []):
            if column in shown.columns:
                shown[column] = [format_pvalue(v) for v in shown[column].to_numpy(dtype=float)]
        return shown

    def to_text(self) -> str:
        """Heading lines and the table as text."""
        lines = list(getattr(self, "heading", []))
        lines.append(self.display_frame().to_string(na_rep=""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.to_text()

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> Any:
        heading = "".join(f"<p>{line}</p>" for line in getattr(self, "heading", []))
        return heading + self.display_frame().to_html(na_rep="")
