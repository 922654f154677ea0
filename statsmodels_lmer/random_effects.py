"""The random effects of a fit: ``Z b``, draws and tables, one implementation each.

A term's random effects are an array ``(n_levels, n_cols)`` (``b`` reshaped
by level); its conditional covariances an array ``(n_levels, n_cols,
n_cols)``. Rows of data map to levels through integer codes, ``-1`` for a
level not seen in fitting (whose effects are taken as 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "conditional_draws",
    "new_level_draws",
    "ranef_frames",
    "ranef_long_table",
    "scaled_z",
    "term_contribution",
    "term_for_group",
    "varcorr_labels",
]


def term_for_group(terms: Sequence[Any], group: str | None) -> Any:
    """The first random term on grouping factor ``group`` (None: the first term).

    Raises
    ------
    KeyError
        When no term has that grouping factor; the message lists them.
    """
    if group is None:
        return terms[0]
    for term in terms:
        if term.group == group:
            return term
    known = list(dict.fromkeys(term.group for term in terms))
    raise KeyError(f"no grouping factor {group!r}; the model's grouping factors are {known}")


def varcorr_labels(
    varcorr: pd.DataFrame, terms: Sequence[Any], variances: bool = False
) -> list[str]:
    """Descriptive names of the rows of ``varcorr`` (``LmerResults.varcorr``).

    ``sd_Intercept|Subject``, ``cor_Days.Intercept|Subject`` and ``sigma`` (as
    ``profile(signames=False)``), or with ``variances`` ``var_...``, ``cov_...``
    and ``sigma2``. Terms are named by their grouping factor.
    """
    group_of = {term.label: term.group for term in terms}
    one, two, residual = ("var", "cov", "sigma2") if variances else ("sd", "cor", "sigma")
    labels = []
    for grp, var1, var2 in zip(varcorr["grp"], varcorr["var1"], varcorr["var2"]):
        group = group_of.get(grp, grp)
        if grp == "Residual":
            labels.append(residual)
        elif var2 is None or (isinstance(var2, float) and np.isnan(var2)):
            labels.append(f"{one}_{var1}|{group}")
        else:
            labels.append(f"{two}_{var2}.{var1}|{group}")
    return labels


def term_contribution(Z: np.ndarray, codes: np.ndarray, effects: np.ndarray) -> np.ndarray:
    """``Z_i b_i`` row by row: ``sum_p Z[n, p] effects[codes[n], p]``.

    Parameters
    ----------
    Z : ndarray, shape (n, p)
        The term's model columns for the rows.
    codes : ndarray of int, shape (n,)
        Each row's level; ``-1`` contributes 0 (a new level).
    effects : ndarray, shape (levels, p) or (draws, levels, p)
        The term's random effects (or several draws of them).

    Returns
    -------
    ndarray, shape (n,) or (draws, n)
    """
    known = codes >= 0
    picked = effects[..., np.maximum(codes, 0), :]
    if not known.all():
        picked = picked.copy()
        picked[..., ~known, :] = 0.0
    return np.einsum("np,...np->...n", Z, picked)


def _square_roots(covariances: np.ndarray) -> np.ndarray:
    """Factors ``R`` with ``R R' = C`` of a stack of covariance matrices.

    Cholesky factors; where one is only semi-definite (a singular fit, e.g. a
    correlation of +-1 gives a conditional covariance of rank one), the
    symmetric eigen-factor ``V sqrt(max(l, 0))`` of every matrix instead.
    """
    cols = covariances.shape[-1]
    try:
        return np.linalg.cholesky(covariances + 1e-300 * np.eye(cols)[None])
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(covariances)
        return vectors * np.sqrt(np.clip(values, 0.0, None))[..., None, :]


def conditional_draws(
    modes: np.ndarray, covariances: np.ndarray, n_draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Draws from each level's conditional distribution ``N(mode, covariance)``.

    Returns
    -------
    ndarray, shape (n_draws, levels, p)
    """
    levels, cols = modes.shape
    root = _square_roots(covariances) if cols else covariances
    normal = rng.standard_normal((n_draws, levels, cols))
    return modes[None] + np.einsum("kab,skb->ska", root, normal)


def new_level_draws(
    T: np.ndarray, sigma: float, n_levels: int, rng: np.random.Generator, n_draws: int | None = None
) -> np.ndarray:
    """Random effects of levels drawn from ``N(0, sigma^2 T T')`` (lme4's ``b = Lambda u``).

    Returns
    -------
    ndarray, shape (n_levels, p), or (n_draws, n_levels, p) when ``n_draws`` is given
    """
    shape = (n_levels, T.shape[0]) if n_draws is None else (n_draws, n_levels, T.shape[0])
    return (rng.standard_normal(shape) * sigma) @ T.T


def ranef_frames(terms: Sequence[Any], modes: Sequence[np.ndarray]) -> dict[str, pd.DataFrame]:
    """Conditional modes per grouping factor, as lme4's ``ranef`` (levels x columns).

    Terms on the same factor (as from ``||``) are combined side by side.
    """
    out: dict[str, pd.DataFrame] = {}
    for term, values in zip(terms, modes):
        frame = pd.DataFrame(values, index=term.levels, columns=list(term.column_names))
        if term.group in out:
            frame = pd.concat([out[term.group], frame], axis=1)
        out[term.group] = frame
    return out


def ranef_long_table(
    terms: Sequence[Any], modes: Sequence[np.ndarray], covariances: Sequence[np.ndarray]
) -> pd.DataFrame:
    """Long table ``grpvar, term, grp, condval, condsd``.

    As lme4's ``as.data.frame(ranef(m, condVar = TRUE))``.
    """
    pieces: dict[str, list[pd.DataFrame]] = {}
    for term, values, cond in zip(terms, modes, covariances):
        sds = np.sqrt(np.diagonal(cond, axis1=1, axis2=2))
        for j, name in enumerate(term.column_names):
            piece = pd.DataFrame(
                {
                    "grpvar": term.group,
                    "term": name,
                    "grp": np.asarray(term.levels, dtype=object),
                    "condval": values[:, j],
                    "condsd": sds[:, j],
                }
            )
            pieces.setdefault(term.group, []).append(piece)
    frames = [frame for group in pieces.values() for frame in group]
    return pd.concat(frames, ignore_index=True)


def scaled_z(
    terms: Sequence[Any], theta: np.ndarray, theta_slices: Sequence[slice]
) -> sp.csr_matrix:
    """``Z Lambda`` (n x q, sparse): the random-effects design on the spherical scale.

    Columns in the model's term order, each term's level by level, as lme4's
    ``getME(m, "Z") %*% getME(m, "Lambda")``.
    """
    parts = [
        term.z_matrix() @ term.lambda_block(theta[part]) for term, part in zip(terms, theta_slices)
    ]
    return sp.hstack(parts, format="csr")
