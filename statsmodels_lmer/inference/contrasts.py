"""Contrast matrices for the terms of the fixed part: types I and III, marginal.

The definitions are lmerTest's (3.1): type I from the Doolittle factor of
``X'X``; type III from the generalized inverse of ``X`` applied to the full
(rank-deficient) dummy design of each term, orthogonalized for terms that are
contained in other terms (SAS containment: same covariates, more factors),
higher-order terms first. Coefficients must use treatment coding, patsy's
default.

Terms come in R's order (``terms.formula``: main effects, then two-way
interactions and so on, each group as written in the formula), not patsy's,
which puts terms without numeric variables first. Type I tests are
sequential, so the order decides them: for ``0 + sens2 + Homesize`` sens2 is
tested first, unadjusted for Homesize, as lmerTest does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import patsy

from ..formula import parse_formula, quote_formula

__all__ = [
    "FixedTerm",
    "fixed_terms",
    "marginal_contrasts",
    "marginal_terms",
    "r_term_order",
    "type1_contrasts",
    "type3_contrasts",
]


@dataclass(frozen=True)
class FixedTerm:
    """One term of the fixed-effects formula.

    Attributes
    ----------
    name : str
        patsy's name (``"recipe:temperature"``).
    variables : frozenset of str
        The factors (variables) in the term.
    numeric : frozenset of str
        The numeric variables among them.
    columns : tuple of int
        Indices of the term's columns in the model's ``exog``.
    """

    name: str
    variables: frozenset[str]
    numeric: frozenset[str]
    columns: tuple[int, ...]

    def contained_in(self, other: FixedTerm) -> bool:
        """SAS containment: other has all our variables, more, and the same covariates."""
        return (
            self.variables <= other.variables
            and len(other.variables - self.variables) > 0
            and self.numeric == other.numeric
        )


def fixed_terms(model) -> tuple[list[FixedTerm], bool]:
    """The non-intercept terms of the fixed part (R's order) and whether there is an intercept."""
    info = model.data.model_spec
    names = list(model.exog_names)
    kinds = {f.name(): i.type for f, i in info.factor_infos.items()}
    terms, has_intercept = [], False
    for term in info.terms:
        if not term.factors:
            has_intercept = True
            continue
        columns = info.column_names[info.term_name_slices[term.name()]]
        indices = tuple(names.index(c) for c in columns if c in names)
        variables = frozenset(f.name() for f in term.factors)
        numeric = frozenset(v for v in variables if kinds[v] == "numerical")
        terms.append(FixedTerm(term.name(), variables, numeric, indices))
    return r_term_order(model, terms), has_intercept


def r_term_order(model, terms: list[FixedTerm]) -> list[FixedTerm]:
    """``terms`` in R's order: by the number of variables, then as in the formula.

    Terms the formula text does not name (or a model without the text) keep
    patsy's order after those it names.
    """
    position = _formula_positions(model)
    return sorted(terms, key=lambda t: (len(t.variables), position.get(t.name, len(position))))


def _formula_positions(model) -> dict[str, int]:
    """Position of each fixed term in the formula as written (patsy's term names)."""
    text = getattr(model, "lmer_formula", None)
    if not isinstance(text, str):
        return {}
    frame = getattr(getattr(model, "data", None), "frame", None)
    try:
        parsed = parse_formula(text, require_random=False)
        if frame is not None:
            parsed = quote_formula(parsed, frame.columns)
        description = patsy.ModelDesc.from_formula(parsed.fixed)
    except (ValueError, patsy.PatsyError):  # FormulaError is a ValueError
        return {}
    return {term.name(): i for i, term in enumerate(description.rhs_termlist)}


def zapsmall(values: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall``: round relative to the largest absolute value."""
    largest = np.max(np.abs(values)) if values.size else 0.0
    if largest <= 0:
        return values
    return np.round(values, max(0, digits - int(np.ceil(np.log10(largest)))))


def type1_contrasts(model) -> dict[str, np.ndarray]:
    """Sequential (type I) contrasts: rows of the unit upper Doolittle factor of X'X.

    The columns are ordered as R orders them (intercept, then the terms in
    R's order) before the factorization, so each term is adjusted for the
    terms before it in the formula.
    """
    terms, _ = fixed_terms(model)
    p = len(model.exog_names)
    if p == 0:
        return {}
    in_terms = [c for t in terms for c in t.columns]
    order = [c for c in range(p) if c not in set(in_terms)] + in_terms
    gram = _gram(model)[np.ix_(order, order)]
    chol = np.linalg.cholesky(gram)
    upper = np.empty((p, p))
    upper[:, order] = (chol / np.diag(chol)).T  # rows: R's order; columns: the model's
    upper[np.abs(upper) < 1e-6] = 0.0
    row_of = {column: row for row, column in enumerate(order)}
    return {t.name: upper[[row_of[c] for c in t.columns]] for t in terms}


def marginal_contrasts(model) -> dict[str, np.ndarray]:
    """Identity rows for each term's coefficients."""
    terms, _ = fixed_terms(model)
    identity = np.eye(len(model.exog_names))
    return {t.name: identity[list(t.columns)] for t in terms}


def marginal_terms(model) -> list[str]:
    """Terms not contained (by variables) in another term, as R's ``drop.scope``."""
    terms, _ = fixed_terms(model)
    return [
        t.name
        for t in terms
        if not any(t.variables <= o.variables and o.name != t.name for o in terms)
    ]


def type3_contrasts(model) -> dict[str, np.ndarray]:
    """lmerTest's type III contrasts (treatment-coded coefficients)."""
    terms, has_intercept = fixed_terms(model)
    if len(model.exog_names) <= 1 or len(terms) <= 1:
        return type1_contrasts(model)
    if getattr(model, "partitions", None) is not None:  # rows on a Dask cluster: from X'X and X'F
        coefficients, full_names = _partitioned_full_coefficients(model, has_intercept)
    else:
        full, full_names = _full_dummy_design(model, terms, has_intercept)
        coefficients = np.linalg.pinv(np.asarray(model.exog, dtype=float)) @ full
    L = zapsmall(coefficients.T)  # (full params) x p
    by_order = sorted(terms, key=lambda t: len(t.variables), reverse=True)
    for term in by_order:
        containing = [o for o in terms if term.contained_in(o)]
        if not containing:
            continue
        basis = L[:, [c for o in containing for c in o.columns]]
        target = L[:, list(term.columns)]
        coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
        L[:, list(term.columns)] = zapsmall(target - basis @ coef)
    rows = [_row_of(name, full_names) for name in model.exog_names]
    L = L[rows]
    out = {}
    for term in terms:
        block = L[:, list(term.columns)].T
        out[term.name] = block[np.abs(block).sum(axis=1) > 1e-8]
    return out


def _gram(model) -> np.ndarray:
    """``X'X`` (unweighted)."""
    if getattr(model, "partitions", None) is not None:
        return model.partitions.fixed_gram
    X = np.asarray(model.exog, dtype=float)
    return X.T @ X


def _partitioned_full_coefficients(model, has_intercept: bool) -> tuple[np.ndarray, list[str]]:
    """``pinv(X) F = (X'X)^-1 X'F`` from the sums of a model on a Dask cluster."""
    rows = model.partitions
    x_full, names = rows.x_full, rows.full_design_names()
    if has_intercept:
        x_full = np.column_stack([rows.x_ones, x_full])
    coefficients = np.linalg.lstsq(rows.fixed_gram, x_full, rcond=None)[0]
    return coefficients, (["Intercept"] if has_intercept else []) + names


def _full_dummy_design(
    model, terms: list[FixedTerm], has_intercept: bool
) -> tuple[np.ndarray, list[str]]:
    frame = model.data.frame
    blocks, names = [], []
    if has_intercept:
        blocks.append(np.ones((len(frame), 1)))
        names.append("Intercept")
    env = patsy.EvalEnvironment([{"np": np, "numpy": np}])
    for term in terms:
        design = patsy.dmatrix(f"0 + {term.name}", frame, eval_env=env, return_type="dataframe")
        blocks.append(design.to_numpy(dtype=float))
        names.extend(design.columns)
    return np.column_stack(blocks), names


def _row_of(coef_name: str, full_names: list[str]) -> int:
    """Row of the full dummy design matching a treatment-coded coefficient."""
    plain = coef_name.replace("[T.", "[")
    if plain in full_names:
        return full_names.index(plain)
    raise ValueError(f"type III contrasts need treatment-coded factors; cannot match {coef_name!r}")
