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

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import patsy

from ..formula import parse_formula, quote_formula
from ..frame import aliased_columns, kept_columns
from ..linalg import r_factor
from ..transform_rows import design_matrix

__all__ = [
    "FixedTerm",
    "contrast_coded",
    "fixed_terms",
    "marginal_contrasts",
    "marginal_terms",
    "r_term_order",
    "type1_contrasts",
    "type2_contrasts",
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
    coded : frozenset of str
        The variables R codes by contrasts in this term (entry 1 of the
        ``factors`` attribute of R's ``terms``; see :func:`contrast_coded`).
    """

    name: str
    variables: frozenset[str]
    numeric: frozenset[str]
    columns: tuple[int, ...]
    coded: frozenset[str] = frozenset()

    def contained_in(self, other: FixedTerm) -> bool:
        """lmerTest's containment: other has all our variables, more, and the same covariates.

        As lmerTest's ``term_contain``, only the variables coded by contrasts
        count: in ``x + f:x`` the term ``x`` is not contained in ``f:x``,
        whose ``x`` R codes by dummy variables (entry 2), as ``f`` is absent.
        """
        mine, theirs = self.coded, other.coded
        return (
            mine <= theirs
            and len(theirs - mine) > 0
            and mine & self.numeric == theirs & other.numeric
        )


def fixed_terms(model) -> tuple[list[FixedTerm], bool]:
    """The non-intercept terms of the fixed part (R's order) and whether there is an intercept."""
    return _terms_of(model.data.model_spec, list(model.exog_names), _formula_positions(model))


def _terms_of(info, names: list[str], position: dict[str, int]) -> tuple[list[FixedTerm], bool]:
    """The terms of a patsy design whose kept columns are ``names``, in R's order."""
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
    ordered = _sorted_as_r(terms, position)
    return [
        replace(term, coded=contrast_coded(term.variables, [t.variables for t in ordered[:i]]))
        for i, term in enumerate(ordered)
    ], has_intercept


def contrast_coded(variables: frozenset[str], earlier: list[frozenset[str]]) -> frozenset[str]:
    """The variables of a term that R codes by contrasts (R's ``TermCode``).

    A variable is coded by contrasts when the term without it is empty or is
    contained in an earlier term (R's order); otherwise by dummy variables
    for all its levels (entry 2 of the ``factors`` attribute).
    """
    return frozenset(
        v
        for v in variables
        if len(variables) == 1 or any(variables - {v} <= other for other in earlier)
    )


def r_term_order(model, terms: list[FixedTerm]) -> list[FixedTerm]:
    """``terms`` in R's order: by the number of variables, then as in the formula.

    Terms the formula text does not name (or a model without the text) keep
    patsy's order after those it names.
    """
    return _sorted_as_r(terms, _formula_positions(model))


def _sorted_as_r(terms: list[FixedTerm], position: dict[str, int]) -> list[FixedTerm]:
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
    factor = _fixed_factor(model)
    return {t.name: _doolittle_rows(factor, order, t.columns) for t in terms}


def _doolittle_rows(factor: np.ndarray, order: list[int], columns: tuple[int, ...]) -> np.ndarray:
    """Rows ``columns`` of the unit upper Doolittle factor of ``X'X`` with its columns
    in ``order`` (each adjusted for those before it), in the model's column order.

    ``factor``: any ``R`` with ``R'R = X'X``. The R factor of ``R`` with its
    columns in ``order`` is that of ``X``'s, with rows scaled by its diagonal
    (lmerTest factors ``X'X``, whose squares lose the digits of a column far
    from zero: ``x = 1e6 + N(0, 1)`` moved a type I sum of squares by 2e-5).
    """
    r_ordered = np.linalg.qr(factor[:, order], mode="r")
    upper = np.empty((len(order), len(order)))
    upper[:, order] = r_ordered / np.diag(r_ordered)[:, None]  # rows: ``order``
    upper[np.abs(upper) < 1e-6] = 0.0
    row_of = {column: row for row, column in enumerate(order)}
    return upper[[row_of[c] for c in columns]]


def type2_contrasts(model) -> dict[str, np.ndarray]:
    """lmerTest's type II contrasts (``anova(m, type = 2)``).

    A term contained in no other term (lmerTest's containment,
    :meth:`FixedTerm.contained_in`) is tested by its own coefficients. Any
    other term is adjusted for every term that does not contain it: the
    other columns first, then the term's and those of the terms containing
    it, and the term's rows of the unit upper Doolittle factor of ``X'X`` in
    that order.
    """
    terms, _ = fixed_terms(model)
    p = len(model.exog_names)
    if p <= 1 or len(terms) <= 1:
        return type1_contrasts(model)
    factor = _fixed_factor(model)
    identity = np.eye(p)
    contrasts = {}
    for term in terms:
        containing = [o for o in terms if term.contained_in(o)]
        if not containing:
            contrasts[term.name] = identity[list(term.columns)]
            continue
        last = list(term.columns) + [c for o in containing for c in o.columns]
        order = [c for c in range(p) if c not in set(last)] + last
        contrasts[term.name] = _doolittle_rows(factor, order, term.columns)
    return contrasts


def marginal_contrasts(model) -> dict[str, np.ndarray]:
    """Each term's test of dropping it: identity rows for its coefficients.

    When aliased columns were dropped, lmerTest's ``drop1`` contrasts instead:
    the directions of the model's columns that the design without the term
    does not span (no rows when dropping the term leaves the model the same,
    e.g. ``x`` next to an aliased ``x2 = 2 x - 1``).
    """
    terms, _ = fixed_terms(model)
    identity = np.eye(len(model.exog_names))
    if not model.dropped_columns or getattr(model, "partitions", None) is not None:
        return {t.name: identity[list(t.columns)] for t in terms}
    model.require_data("drop1 of a rank-deficient model")
    info = model.data.model_spec
    full = np.asarray(patsy.dmatrix(info, model.data.frame), dtype=float)
    exog = np.asarray(model.exog, dtype=float)
    out = {}
    for term in terms:
        others = np.ones(full.shape[1], dtype=bool)
        others[info.term_name_slices[term.name]] = False
        out[term.name] = _difference_contrasts(full[:, others], exog)
    return out


def _difference_contrasts(reduced: np.ndarray, exog: np.ndarray) -> np.ndarray:
    """Orthonormal rows spanning ``X' R``, ``R`` the residuals of ``X`` on the
    reduced design (lmerTest's ``get_Ldiffmat2``)."""
    fitted = reduced @ np.linalg.lstsq(reduced, exog, rcond=None)[0]
    resid = exog - fitted
    resid = resid[:, np.abs(resid).sum(axis=0) > 1e-8]
    if resid.shape[1] == 0:
        return np.zeros((0, exog.shape[1]))
    left, values, _ = np.linalg.svd(exog.T @ resid, full_matrices=False)
    rank = int(np.sum(values > values[0] * 1e-10))
    return zapsmall(left[:, :rank].T)


def marginal_terms(model) -> list[str]:
    """Terms not contained (by variables) in another term, as R's ``drop.scope``."""
    terms, _ = fixed_terms(model)
    return [
        t.name
        for t in terms
        if not any(t.variables <= o.variables and o.name != t.name for o in terms)
    ]


def type3_contrasts(model) -> dict[str, np.ndarray]:
    """lmerTest's type III contrasts.

    With treatment-coded factors (patsy's default) they are computed on the
    model's own columns. With other codings (``C(f, Sum)``, Helmert, ...)
    they are computed, as lmerTest does, on the design re-coded with
    treatment contrasts and mapped to the model's columns by
    ``pinv(X_treatment) X``: the F statistics do not depend on the coding,
    but the Satterthwaite and Kenward-Roger df of a multi-row test depend on
    the rows, and these are lmerTest's.
    """
    terms, has_intercept = fixed_terms(model)
    if len(model.exog_names) <= 1 or len(terms) <= 1:
        return type1_contrasts(model)
    if getattr(model, "partitions", None) is not None:  # rows on a Dask cluster: from X'X and X'F
        recoded = _partitioned_recoded(model, has_intercept)
        if recoded is None:
            coefficients, full_names = _partitioned_full_coefficients(model, has_intercept)
            return _type3(coefficients, full_names, list(model.exog_names), terms)
        coefficients_t, full_names, names_t, terms_t, to_model = recoded
    else:
        model.require_data("ANOVA tables")
        exog = np.asarray(model.exog, dtype=float)
        frame, env = model.data.frame, model.formula_env()
        source = getattr(model.data, "transform_data", None)
        recoded = _treatment_recoded(model, exog)
        exog_t, names_t, terms_t = recoded or (exog, list(model.exog_names), terms)
        designs = _indicator_designs(frame, terms_t, env, source)
        full, full_names = _full_dummy_design(designs, has_intercept, len(frame))
        if not all(name.replace("[T.", "[") in full_names for name in names_t):
            # patsy's columns are not R's (f1:f2 without its margins: patsy codes
            # f2[T.q], f1[T.b]:f2[p], ...; R every cell, one aliased)
            exog_t, names_t, terms_t = _r_design(designs, terms_t, has_intercept, len(frame))
        elif recoded is None:
            coefficients = _least_squares(exog, full)
            return _type3(coefficients, full_names, list(model.exog_names), terms)
        fits = _least_squares(exog_t, np.column_stack([full, exog]))
        coefficients_t, to_model = fits[:, : full.shape[1]], zapsmall(fits[:, full.shape[1] :])
    contrasts_t = _type3(coefficients_t, full_names, names_t, terms_t)
    out = {}
    for term, term_t in zip(terms, terms_t):
        block = contrasts_t[term_t.name] @ to_model
        out[term.name] = block[np.abs(block).sum(axis=1) > 1e-8]
    return out


def _least_squares(basis: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``pinv(basis) targets``, the least-squares fits of the columns of ``targets`` on
    those of ``basis``, from the R factor of ``[basis targets]`` (``R_11 B = R_12``).

    As accurate as ``pinv``'s SVD of ``basis`` and lighter: on 1e5 x 430 dummy
    columns ``pinv`` took 5 s and an n x p copy; the R factor comes by blocks of
    rows (:func:`~statsmodels_lmer.linalg.r_factor`).
    """
    p = basis.shape[1]
    factor = r_factor(np.column_stack([basis, targets]))
    return np.linalg.lstsq(factor[:, :p], factor[:, p:], rcond=None)[0]


def _treatment_suffixes(suffixes: list[str], levels: tuple | list) -> bool:
    """Whether patsy's column suffixes are treatment coding of ``levels``: every
    level (``[a]``), or ``[T.level]`` of all levels but one reference."""
    if suffixes == [f"[{level}]" for level in levels]:
        return True
    coded = [f"[T.{level}]" for level in levels]
    if len(suffixes) != len(coded) - 1:
        return False
    dropped = next((i for i, (a, b) in enumerate(zip(suffixes, coded)) if a != b), len(suffixes))
    return suffixes == coded[:dropped] + coded[dropped + 1 :]


def _other_coded(info) -> set:
    """The factors of a patsy design coded otherwise than by treatment contrasts.

    Treatment contrasts with any reference level count as treatment coding:
    ``C(f, Treatment(reference="b"))`` is R's ``relevel(f, "b")``, which
    lmerTest's remade design keeps.
    """
    other = set()
    for subterms in info.term_codings.values():
        for subterm in subterms:
            for factor, matrix in subterm.contrast_matrices.items():
                levels = info.factor_infos[factor].categories
                if not _treatment_suffixes(list(matrix.column_suffixes), levels):
                    other.add(factor)
    return other


def _type3(
    coefficients: np.ndarray, full_names: list[str], names: list[str], terms: list[FixedTerm]
) -> dict[str, np.ndarray]:
    """Type III contrasts from ``pinv(X) F`` (F: the full dummy design) for treatment coding."""
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
    L = L[[_row_of(name, full_names) for name in names]]
    out = {}
    for term in terms:
        block = L[:, list(term.columns)].T
        out[term.name] = block[np.abs(block).sum(axis=1) > 1e-8]
    return out


def _treatment_recoded(model, exog: np.ndarray) -> tuple[np.ndarray, list[str], list] | None:
    """The fixed part with every factor re-coded by treatment contrasts (lmerTest's remade X).

    None when that is the model's own design (treatment coding already).
    Returns the design without aliased columns, their names and the terms in
    the order of :func:`fixed_terms`.
    """
    terms = _treatment_terms(model.data.model_spec)
    if terms is None:
        return None
    env = model.formula_env()
    source = getattr(model.data, "transform_data", None)
    design = design_matrix(patsy.ModelDesc([], terms), model.data.frame, env, source)
    matrix = np.asarray(design, dtype=float)
    if matrix.shape == exog.shape and np.allclose(matrix, exog, rtol=0, atol=1e-12):
        return None
    kept = kept_columns(matrix.shape[1], aliased_columns(matrix))
    names = [design.design_info.column_names[j] for j in kept]
    return matrix[:, kept], names, _recoded_terms(model, terms, design.design_info, names)


def _treatment_terms(info) -> list | None:
    """The terms of a patsy design with every factor re-coded by treatment contrasts.

    None when every factor is treatment-coded already.
    """
    other = _other_coded(info)
    if not other:
        return None
    recode = {f: patsy.EvalFactor(f"C({f.code}, Treatment)") for f in other}
    return [patsy.Term([recode.get(f, f) for f in term.factors]) for term in info.terms]


def _recoded_terms(model, terms: list, info_t, names: list[str]) -> list[FixedTerm]:
    """The :class:`FixedTerm` of the re-coded design (kept columns ``names``), in the
    order of :func:`fixed_terms`."""
    old_names = {new.name(): old.name() for new, old in zip(terms, model.data.model_spec.terms)}
    position = {new: _formula_positions(model).get(old, -1) for new, old in old_names.items()}
    position = {k: v for k, v in position.items() if v >= 0}
    terms_t, _ = _terms_of(info_t, names, position)
    order = {t.name: i for i, t in enumerate(fixed_terms(model)[0])}
    terms_t.sort(key=lambda t: order[old_names[t.name]])
    return terms_t


def _partitioned_recoded(model, has_intercept: bool) -> tuple | None:
    """:func:`_treatment_recoded`'s products for a model on a Dask cluster.

    The re-coded design ``X_t`` and lmerTest's full dummy design ``F`` of its
    terms are learned and multiplied in passes over the rows
    (``model.partitions.design_products``). Returns ``pinv(X_t) F``, the
    names of ``F``'s columns, the kept columns of ``X_t`` and their terms,
    and ``pinv(X_t) X``; None when every factor is treatment-coded.
    """
    terms = _treatment_terms(model.data.model_spec)
    if terms is None:
        return None
    with_factors = [t for t in terms if t.factors]
    formulas = [patsy.ModelDesc([], terms).describe().lstrip("~ ")]
    formulas += [f"0 + {t.name()}" for t in with_factors]
    designs, r_factor = model.partitions.design_products(formulas)
    p_t = len(designs[0].column_names)  # the columns of r_factor: X_t F_1 ... F_k 1 X
    diagonal = np.abs(np.diagonal(r_factor))[:p_t]
    kept = kept_columns(p_t, aliased_columns(r_factor[:p_t, :p_t], diagonal=diagonal))
    names = [designs[0].column_names[j] for j in kept]
    terms_t = _recoded_terms(model, terms, designs[0], names)
    starts = np.cumsum([0] + [len(d.column_names) for d in designs])
    block = {t.name(): range(starts[i + 1], starts[i + 2]) for i, t in enumerate(with_factors)}
    ones = int(starts[-1])
    full = ([ones] if has_intercept else []) + [c for t in terms_t for c in block[t.name]]
    order = {t.name(): i for i, t in enumerate(with_factors)}
    full_names = (["Intercept"] if has_intercept else []) + [
        name for t in terms_t for name in designs[order[t.name] + 1].column_names
    ]
    x_columns = list(range(ones + 1, r_factor.shape[1]))
    basis = r_factor[:, kept]  # fits on X_t from the R factor, not from squares
    coefficients = np.linalg.lstsq(basis, r_factor[:, full], rcond=None)[0]
    to_model = zapsmall(np.linalg.lstsq(basis, r_factor[:, x_columns], rcond=None)[0])
    return coefficients, full_names, names, terms_t, to_model


def _fixed_factor(model) -> np.ndarray:
    """A factor ``R`` of ``X'X`` (unweighted), ``R'R = X'X``: the R factor of ``X``."""
    if getattr(model, "partitions", None) is not None:
        return model.partitions.fixed_r
    model.require_data("ANOVA tables")
    return r_factor(np.asarray(model.exog, dtype=float))


def _partitioned_full_coefficients(model, has_intercept: bool) -> tuple[np.ndarray, list[str]]:
    """``pinv(X) F = (X'X)^-1 X'F`` from the sums of a model on a Dask cluster."""
    rows = model.partitions
    coefficients, names = rows.full_coefficients, rows.full_design_names()
    if has_intercept:
        coefficients = np.column_stack([rows.ones_coefficients, coefficients])
    return coefficients, (["Intercept"] if has_intercept else []) + names


def _indicator_designs(
    frame: pd.DataFrame,
    terms: list[FixedTerm],
    env: patsy.EvalEnvironment,
    source: pd.DataFrame | None = None,
) -> list[pd.DataFrame]:
    """Each term's columns with every factor coded by indicators (``0 + term``), evaluated
    in ``env`` (the model's formula namespace: ``np``, R's transforms and the caller's
    functions), stateful transforms learned on ``source`` as in fitting."""
    return [
        design_matrix(f"0 + {term.name}", frame, env, source, return_type="dataframe")
        for term in terms
    ]


def _full_dummy_design(
    designs: list[pd.DataFrame], has_intercept: bool, n_rows: int
) -> tuple[np.ndarray, list[str]]:
    """The terms' indicator columns (:func:`_indicator_designs`) side by side."""
    blocks, names = [], []
    if has_intercept:
        blocks.append(np.ones((n_rows, 1)))
        names.append("Intercept")
    for design in designs:
        blocks.append(design.to_numpy(dtype=float))
        names.extend(design.columns)
    return np.column_stack(blocks), names


def _r_design(
    designs: list[pd.DataFrame], terms: list[FixedTerm], has_intercept: bool, n_rows: int
) -> tuple[np.ndarray, list[str], list[FixedTerm]]:
    """R's treatment-coded model matrix (lmerTest's X) from the terms' indicator columns.

    A factor R codes by contrasts in a term (:attr:`FixedTerm.coded`) loses its
    first level, the others keep every level; aliased columns are then dropped
    as lme4 drops them. Returns the matrix, its column names (those of
    :func:`_full_dummy_design`) and the terms with their columns in it.
    ``designs`` are the terms' indicator columns (:func:`_indicator_designs`).
    """
    blocks, names, owner = [], [], []
    if has_intercept:
        blocks.append(np.ones((n_rows, 1)))
        names.append("Intercept")
        owner.append(-1)
    for index, (term, design) in enumerate(zip(terms, designs)):
        first = {
            f"{factor.name()}[{info.categories[0]}]"
            for factor, info in design.design_info.factor_infos.items()
            if info.type == "categorical" and factor.name() in term.coded
        }
        keep = [j for j, c in enumerate(design.columns) if not first & set(str(c).split(":"))]
        blocks.append(design.to_numpy(dtype=float)[:, keep])
        names.extend(str(design.columns[j]) for j in keep)
        owner.extend([index] * len(keep))
    matrix = np.column_stack(blocks)
    kept = kept_columns(matrix.shape[1], aliased_columns(matrix))
    terms_r = [
        replace(term, columns=tuple(i for i, j in enumerate(kept) if owner[j] == index))
        for index, term in enumerate(terms)
    ]
    return matrix[:, kept], [names[j] for j in kept], terms_r


def _row_of(coef_name: str, full_names: list[str]) -> int:
    """Row of the full dummy design matching a treatment-coded coefficient."""
    plain = coef_name.replace("[T.", "[")
    if plain in full_names:
        return full_names.index(plain)
    raise ValueError(f"type III contrasts need treatment-coded factors; cannot match {coef_name!r}")
