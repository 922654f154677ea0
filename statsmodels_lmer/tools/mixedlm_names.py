"""statsmodels MixedLM's result names for a fitted model.

MixedLM describes a model by one grouping factor ``G``: random coefficients
with a full covariance ``cov_re`` per group, and variance components
``vcomp`` (independent effects within a group sharing one variance). A model
built with ``groups=``/``re_formula=``/``vc_formula=`` keeps that description
(:class:`~statsmodels_lmer.mixedlm_formula.MixedLMSpec`). For a model written
in lme4's syntax it is read off the terms when one grouping factor ``G`` is
part of every term's grouping factor: the terms on ``G`` alone give
``cov_re`` (several, as from ``||``, side by side with zero covariances), the
others, such as ``(1 | G:f)``, are variance components named ``f``. Crossed
factors have no such description and get an error naming the lme4 names to
use instead.

Values are MixedLM's: ``cov_re`` and ``vcomp`` on the scale of the data
(MixedLM's ``cov_re`` and ``vcomp``, not the ``_unscaled`` ones), random
effects named as MixedLM names them (the intercept takes the group's name,
components are ``"name[C(f)[level]]"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..distributed.dask_fit import refuse_on_cluster
from ..inference.derivatives import jacobian
from ..mixedlm_formula import VarianceComponent
from ..parametrization import factor_from_theta
from ..random_effects import scaled_z
from ..terms import grouping_codes

__all__ = [
    "MixedLMView",
    "bse_re",
    "cov_re",
    "mixedlm_view",
    "random_effects",
    "random_effects_cov",
    "variance_parameter_names",
    "vcomp",
]


@dataclass(frozen=True)
class MixedLMView:
    """Which model terms play MixedLM's roles.

    Attributes
    ----------
    groups : str
        The grouping column ``G``.
    re_terms : tuple of int
        Model terms (indices into ``model.random_terms``) on ``G`` alone, in
        ``cov_re`` order.
    vc_terms : tuple of int
        Model terms of the variance components, in ``vcomp`` order.
    vc_names : tuple of str
        The components' names.
    components : tuple of VarianceComponent or None
        The MixedLM specification of each component (None for models written
        in lme4's syntax).
    """

    groups: str
    re_terms: tuple[int, ...]
    vc_terms: tuple[int, ...]
    vc_names: tuple[str, ...]
    components: tuple[VarianceComponent | None, ...]


def mixedlm_view(model: Any) -> MixedLMView:
    """MixedLM's description of a model, or a ValueError when it has none."""
    spec = getattr(model, "mixedlm_spec", None)
    if spec is not None:
        return _view_from_spec(model, spec)
    return _view_from_terms(model)


def _view_from_spec(model: Any, spec: Any) -> MixedLMView:
    terms = model.random_terms
    unused = list(range(len(terms)))

    def take(group: str, lhs: str) -> int:
        index = next(i for i in unused if terms[i].group == group and terms[i].lhs == lhs)
        unused.remove(index)
        return index

    re_terms = () if spec.re_lhs is None else (take(spec.groups, spec.re_lhs),)
    vc_terms = tuple(take(c.group, c.lhs) for c in spec.vc)
    return MixedLMView(
        spec.groups, re_terms, vc_terms, tuple(c.name for c in spec.vc), tuple(spec.vc)
    )


def _view_from_terms(model: Any) -> MixedLMView:
    terms = model.random_terms
    common = set.intersection(*(set(t.factors) for t in terms))
    alone = [t.factors[0] for t in terms if len(t.factors) == 1 and t.factors[0] in common]
    if not common:
        groups = ", ".join(dict.fromkeys(t.group for t in terms))
        raise ValueError(
            "MixedLM's names (cov_re, vcomp, random_effects) describe random effects "
            "within one grouping factor; this model's grouping factors "
            f"({groups}) have none in common: use res.varcorr, res.ranef and "
            "res.ranef_table() instead"
        )
    groups = alone[0] if alone else next(f for f in terms[0].factors if f in common)
    re_terms = tuple(i for i, t in enumerate(terms) if t.factors == (groups,))
    vc_terms = tuple(i for i, t in enumerate(terms) if t.factors != (groups,))
    for index in vc_terms:
        if terms[index].n_cols != 1:
            raise ValueError(
                f"term ({terms[index].lhs} | {terms[index].group}) has several correlated "
                "columns within a subgroup, which MixedLM's variance components cannot "
                "describe: use res.varcorr and res.ranef instead"
            )
    names = tuple(":".join(f for f in terms[i].factors if f != groups) for i in vc_terms)
    return MixedLMView(groups, re_terms, vc_terms, names, (None,) * len(vc_terms))


def _re_names(model: Any, view: MixedLMView) -> list[str]:
    names = []
    for index in view.re_terms:
        for column in model.random_terms[index].column_names:
            names.append(view.groups if column == "Intercept" else column)
    return names


def cov_re(res: Any) -> pd.DataFrame:
    """Covariance of the random coefficients of one group (MixedLM's ``cov_re``)."""
    model = res.model
    view = mixedlm_view(model)
    names = _re_names(model, view)
    blocks = [res.term_covariance(i) for i in view.re_terms]
    matrix = _block_diagonal(blocks)
    return pd.DataFrame(matrix, index=names, columns=names)


def _block_diagonal(blocks: list[np.ndarray]) -> np.ndarray:
    size = sum(b.shape[0] for b in blocks)
    out = np.zeros((size, size))
    start = 0
    for block in blocks:
        stop = start + block.shape[0]
        out[start:stop, start:stop] = block
        start = stop
    return out


def vcomp(res: Any) -> np.ndarray:
    """Variances of the variance components (MixedLM's ``vcomp``)."""
    view = mixedlm_view(res.model)
    return np.array([res.term_covariance(i)[0, 0] for i in view.vc_terms], dtype=float)


def variance_parameter_names(model: Any) -> list[str]:
    """MixedLM's names of the variance parameters: ``"G Var"``, ``"G x Time Cov"``, ..."""
    view = mixedlm_view(model)
    names = _re_names(model, view)
    rows, cols = np.tril_indices(len(names))  # MixedLM's order: row by row
    out = [
        f"{names[c]} Var" if r == c else f"{names[c]} x {names[r]} Cov" for r, c in zip(rows, cols)
    ]
    return out + [f"{name} Var" for name in view.vc_names]


def _variance_parameters(model: Any, view: MixedLMView, varpar: np.ndarray) -> np.ndarray:
    """cov_re's lower triangle (row by row, as MixedLM) and vcomp at ``(theta, sigma)``."""
    theta, sigma = varpar[:-1], varpar[-1]
    blocks = []
    for index in view.re_terms:
        T = factor_from_theta(theta[model.theta_slices[index]], model.random_terms[index].n_cols)
        blocks.append(sigma**2 * (T @ T.T))
    matrix = _block_diagonal(blocks)
    rows, cols = np.tril_indices(matrix.shape[0])
    components = [sigma**2 * theta[model.theta_slices[i]][0] ** 2 for i in view.vc_terms]
    return np.concatenate([matrix[rows, cols], np.asarray(components, dtype=float)])


def bse_re(res: Any) -> pd.Series:
    """Standard errors of the variance parameters (delta method from ``(theta, sigma)``).

    The parameters are ``cov_re``'s lower triangle and ``vcomp``, on the
    data's scale, named as MixedLM's ``params``; their covariance comes from
    the Hessian of the deviance in ``(theta, sigma)`` (the one lmerTest's
    Satterthwaite df use).
    """
    model = res.model
    view = mixedlm_view(model)
    satterthwaite = res.satterthwaite
    varpar = satterthwaite.varpar
    jac = np.atleast_2d(jacobian(lambda vp: _variance_parameters(model, view, vp), varpar))
    cov = jac @ satterthwaite.vcov_varpar @ jac.T
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return pd.Series(se, index=variance_parameter_names(model), name="bse_re")


@dataclass(frozen=True)
class _Effect:
    """One random effect of a group: its term, level, column and MixedLM name."""

    term: int
    level: int
    column: int
    label: str


def _group_effects(
    res: Any, view: MixedLMView
) -> tuple[list[Any], list[list[_Effect]], np.ndarray]:
    """Group keys, each group's effects in MixedLM's order, and each row's group."""
    model = res.model
    refuse_on_cluster(model, "random_effects (MixedLM's names by group)")
    frame = model.data.frame
    group_codes, _ = grouping_codes(frame, (view.groups,))
    keys = _first_values(frame[view.groups], group_codes)
    effects: list[list[_Effect]] = [[] for _ in keys]
    re_names = iter(_re_names(model, view))
    labels = {
        index: [next(re_names) for _ in range(model.random_terms[index].n_cols)]
        for index in view.re_terms
    }
    for index in view.re_terms:
        term = model.random_terms[index]
        owner = _level_owner(term.codes, group_codes, term.n_levels)
        for level, group in enumerate(owner):
            effects[group].extend(
                _Effect(index, level, c, labels[index][c]) for c in range(term.n_cols)
            )
    for name, index, component in zip(view.vc_names, view.vc_terms, view.components):
        term = model.random_terms[index]
        owner = _level_owner(term.codes, group_codes, term.n_levels)
        first_rows = _first_rows(term.codes, term.n_levels)
        for level in np.lexsort((*_patsy_order(component, frame, first_rows), owner)):
            label = _component_label(name, component, term, frame, first_rows[level], view.groups)
            effects[owner[level]].append(_Effect(index, int(level), 0, label))
    return keys, effects, group_codes


def random_effects(res: Any) -> dict[Any, pd.Series]:
    """Conditional modes by level of the grouping factor (MixedLM's ``random_effects``).

    Keys are the group values as they are in the data; each Series holds the
    group's random coefficients (named as in ``cov_re``) then its
    variance-component effects (``"name[C(f)[level]]"``).
    """
    view = mixedlm_view(res.model)
    keys, effects, _ = _group_effects(res, view)
    modes = res.conditional_modes
    return {
        key: pd.Series(
            [float(modes[e.term][e.level, e.column]) for e in group],
            index=[e.label for e in group],
            dtype=float,
        )
        for key, group in zip(keys, effects)
    }


def random_effects_cov(res: Any) -> dict[Any, pd.DataFrame]:
    """Conditional covariance of each group's random effects (MixedLM's ``random_effects_cov``).

    ``sigma^2 Lambda_g (Lambda_g' Z_g' W Z_g Lambda_g + I)^-1 Lambda_g'`` for
    the effects of group ``g`` (given the fixed effects, as lme4's
    ``condVar`` and MixedLM), including the covariances between its random
    coefficients and its variance-component effects.
    """
    model = res.model
    view = mixedlm_view(model)
    keys, effects, group_codes = _group_effects(res, view)
    zl = scaled_z(model.random_terms, np.asarray(res.theta, dtype=float), model.theta_slices)
    zl = zl.tocsc()
    weights = np.ones(zl.shape[0]) if model.weights is None else model.weights
    offsets = np.cumsum([0] + [t.n_random for t in model.random_terms])
    factors = [t.factor(res.theta[sl]) for t, sl in zip(model.random_terms, model.theta_slices)]
    out = {}
    for group, (key, group_effects) in enumerate(zip(keys, effects)):
        rows = np.flatnonzero(group_codes == group)
        columns = [
            offsets[e.term] + e.level * model.random_terms[e.term].n_cols + e.column
            for e in group_effects
        ]
        block = zl[rows][:, columns].toarray()
        inner = np.linalg.inv(block.T @ (weights[rows, None] * block) + np.eye(len(columns)))
        scale = _lambda_block(group_effects, factors)
        cov = res.scale * scale @ inner @ scale.T
        labels = [e.label for e in group_effects]
        out[key] = pd.DataFrame(cov, index=labels, columns=labels)
    return out


def _lambda_block(effects: list[_Effect], factors: list[np.ndarray]) -> np.ndarray:
    """``Lambda`` restricted to one group's effects (T of each term level, block by block)."""
    size = len(effects)
    out = np.zeros((size, size))
    position = {(e.term, e.level, e.column): i for i, e in enumerate(effects)}
    for i, e in enumerate(effects):
        T = factors[e.term]
        for c in range(T.shape[1]):
            j = position.get((e.term, e.level, c))
            if j is not None:
                out[i, j] = T[e.column, c]
    return out


def _first_rows(codes: np.ndarray, n_levels: int) -> np.ndarray:
    rows = np.full(n_levels, -1, dtype=np.int64)
    order = np.arange(len(codes))[::-1]
    rows[codes[order]] = order
    return rows


def _first_values(values: pd.Series, codes: np.ndarray) -> list[Any]:
    rows = _first_rows(codes, int(codes.max()) + 1)
    picked = values.to_numpy()[rows]
    return [v.item() if isinstance(v, np.generic) else v for v in picked]


def _level_owner(term_codes: np.ndarray, group_codes: np.ndarray, n_levels: int) -> np.ndarray:
    """The group of each level of a term nested in the groups."""
    return group_codes[_first_rows(term_codes, n_levels)]


def _patsy_order(
    component: VarianceComponent | None, frame: pd.DataFrame, first_rows: np.ndarray
) -> list[np.ndarray]:
    """Sort keys of a component's levels in patsy's column order, fastest first.

    For ``C(f):C(h)`` patsy's columns vary ``f`` fastest (MixedLM's order of
    the group's effects); one factor, or none: the levels' own order.
    """
    if component is None or len(component.factors) < 2:
        return [np.arange(len(first_rows))]
    keys = []
    for factor in component.factors:
        values = frame[factor]
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = values.cat.codes.to_numpy()
        else:
            codes, _ = pd.factorize(values, sort=True)
        keys.append(codes[first_rows])
    return keys


def _component_label(
    name: str,
    component: VarianceComponent | None,
    term: Any,
    frame: pd.DataFrame,
    row: int,
    groups: str,
) -> str:
    """MixedLM's name of one variance-component effect (``"Pig[C(Pig)[4601]]"``)."""
    if component is None:
        level = ":".join(str(frame[f].iloc[row]) for f in term.factors if f != groups)
        return f"{name}[{level}]"
    levels = [str(frame[f].iloc[row]) for f in component.factors]
    return f"{name}[{component.column_label.format(*levels)}]"
