"""Backward elimination of random and fixed terms, as lmerTest's ``step``.

The random part first: while a term of :func:`~.compare.ranova` has a
likelihood-ratio p-value above ``alpha_random``, the one with the largest is
eliminated (a term with slopes loses one column term at a time) and the model
refitted. Then the fixed part: while a marginal term of
:func:`~.compare.drop1`'s F tests has a p-value above ``alpha_fixed`` (and is
not in ``keep``), the one with the largest is removed and the model refitted.
Refits keep the rows, weights, offset and REML or ML of the model.

One deliberate difference: lmerTest goes on with a linear model (``lm``) when
the last random-effects term is eliminated; here that term is kept and
:attr:`StepResult.note` says so (fit it with statsmodels' OLS or WLS instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ValueWarning

from ..arguments import check_bool, check_names, check_number
from ..exceptions import warn
from ..formula import update_formula
from ..inference.contrasts import fixed_terms
from ..inference.hypotheses import check_ddf
from ..tables import LmerTable
from .compare import drop1, random_reductions, ranova, refit_formula

__all__ = ["StepResult", "step"]

_DDF_NAMES = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger"}


@dataclass
class StepResult:
    """What :func:`step` found.

    Attributes
    ----------
    random : LmerTable
        The eliminated random terms in order (``Eliminated`` 1, 2, ...) after
        the ``<none>`` row of the model given, then the final model's
        ``ranova`` rows (``Eliminated`` 0); columns as :func:`~.compare.ranova`.
    fixed : LmerTable
        The eliminated fixed terms in order, then the final model's
        ``drop1`` rows (``Eliminated`` 0); columns as :func:`~.compare.drop1`.
    model : LmerResults
        The final model (lmerTest's ``get_model(step(m))``).
    note : str
        Why the random reduction stopped early, or empty.
    """

    random: LmerTable
    fixed: LmerTable
    model: Any
    note: str = ""

    def get_model(self) -> Any:
        """The final model (lmerTest's ``get_model``)."""
        return self.model

    def __str__(self) -> str:
        parts = [self.random.to_text(), "", self.fixed.to_text(), "", "Model found:"]
        parts.append(str(self.model.model.lmer_formula))
        if self.note:
            parts.extend(["", self.note])
        return "\n".join(parts)

    def __repr__(self) -> str:
        return str(self)


def step(
    res: Any,
    ddf: str = "satterthwaite",
    alpha_random: float = 0.1,
    alpha_fixed: float = 0.05,
    reduce_fixed: bool = True,
    reduce_random: bool = True,
    keep: list[str] | None = None,
) -> StepResult:
    """Backward elimination of random, then fixed terms (lmerTest's ``step``).

    Parameters
    ----------
    res : LmerResults
        The full model.
    ddf : {"satterthwaite", "kenward-roger"}
        Denominator df of the fixed-effects F tests.
    alpha_random, alpha_fixed : float
        A term is eliminated while its p-value is above these (lmerTest's
        0.1 and 0.05); strictly between 0 and 1 (``reduce_random=False`` or
        ``reduce_fixed=False`` keeps a part as it is).
    reduce_fixed, reduce_random : bool
        False keeps that part as it is (its final table is still shown).
    keep : list of str, optional
        Fixed-effect terms never removed (names as in ``res.anova()``).

    Returns
    -------
    StepResult
    """
    method = check_ddf(ddf)
    if method not in _DDF_NAMES:
        raise ValueError(f"ddf must be 'satterthwaite' or 'kenward-roger'; got {ddf!r}")
    alpha_random = _threshold("alpha_random", alpha_random)
    alpha_fixed = _threshold("alpha_fixed", alpha_fixed)
    reduce_fixed = check_bool("reduce_fixed", reduce_fixed)
    reduce_random = check_bool("reduce_random", reduce_random)
    keep = _checked_keep(res, keep)
    random, model, note = _reduce_random(res, alpha_random if reduce_random else 1.0)
    fixed, model = _reduce_fixed(model, method, alpha_fixed if reduce_fixed else 1.0, keep)
    return StepResult(random, fixed, model, note)


def _checked_keep(res: Any, keep: list[str] | None) -> list[str]:
    """``keep`` as a list; names that are no term warn, as lmerTest warns."""
    if keep is None:
        return []
    keep = check_names("keep", keep, "term names")
    wrong = [name for name in keep if not isinstance(name, str)]
    if wrong:
        raise TypeError(f"keep must be a list of term names (strings), got {wrong[0]!r}")
    terms = [term.name for term in fixed_terms(res.model)[0]]  # no anova needed for names
    unknown = [name for name in keep if name not in terms]
    if unknown:
        warn(
            f"keep: {', '.join(unknown)} ignored, not a fixed-effect term; the terms are "
            f"{', '.join(terms)}",
            ValueWarning,
        )
    return keep


def _reduce_random(res: Any, alpha: float) -> tuple[LmerTable, Any, str]:
    """Eliminate random terms; the table, the model left and a note."""
    model, table = res, ranova(res)
    rows = [table.iloc[[0]].assign(Eliminated=np.nan)]
    note = ""
    while True:
        label = _largest_above(table["pvalue"].iloc[1:], alpha)
        if label is None:
            break
        formula = random_reductions(model)[label]
        if formula is None:
            note = (
                f"Eliminating {label} (p = {table.loc[label, 'pvalue']:.4g}) would leave no "
                "random effects; it is kept. Fit that model with statsmodels' OLS (or WLS)."
            )
            break
        rows.append(table.loc[[label]].assign(Eliminated=float(len(rows))))
        model = refit_formula(model, formula)
        table = ranova(model)
    rows.append(table.iloc[1:].assign(Eliminated=0.0))
    heading = ["Backward reduced random-effect table:"]
    return _table(rows, heading, "pvalue"), model, note


def _reduce_fixed(model: Any, ddf: str, alpha: float, keep: list[str]) -> tuple[LmerTable, Any]:
    """Remove fixed terms; the table and the model left."""
    table = drop1(model, test="F", ddf=ddf)
    rows = []
    while True:
        considered = table["pvalue"].drop(index=[t for t in keep if t in table.index])
        term = _largest_above(considered, alpha)
        if term is None:
            break
        rows.append(table.loc[[term]].assign(Eliminated=float(len(rows) + 1)))
        model = refit_formula(model, update_formula(model.model.lmer_formula, f". ~ . - {term}"))
        table = drop1(model, test="F", ddf=ddf)
    rows.append(table.assign(Eliminated=0.0))
    heading = [
        "Backward reduced fixed-effect table:",
        f"Degrees of freedom method: {_DDF_NAMES[ddf]}",
    ]
    return _table(rows, heading, "pvalue"), model


def _largest_above(pvalues: pd.Series, alpha: float) -> str | None:
    """The label of the largest p-value above ``alpha`` (missing ones ignored)."""
    above = pvalues[pvalues.notna() & (pvalues > alpha)]
    return None if above.empty else str(above.idxmax())


def _table(rows: list[pd.DataFrame], heading: list[str], pvalue: str) -> LmerTable:
    frame = pd.concat(rows)
    frame = frame[["Eliminated", *[c for c in frame.columns if c != "Eliminated"]]]
    return LmerTable.from_frame(frame, heading, [pvalue])


def _threshold(name: str, value: Any) -> float:
    """A p-value threshold in [0, 1] (lmerTest accepts 0 and 1: eliminate none or all)."""
    number = check_number(name, value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must lie between 0 and 1 (a p-value threshold), got {value!r}")
    return number
