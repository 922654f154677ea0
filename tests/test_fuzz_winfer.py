"""Differential fuzzing of inference on weighted, offset, incomplete, ML,
singular, rank-deficient, factor-by-covariate, unused-level, sum/Helmert and
margin-less interaction designs against lmerTest 3.1-3, pbkrtest 0.5.2 and lme4 1.1-31.

Reference numbers: tests/fixtures/fuzz_winfer.json, from
make_fuzz_winfer_fixtures.R, on the seeded random data sets in
tests/fixtures/data/fuzz_winfer.csv (column ``case``). Every table is
computed at lme4's theta (``results_at``) so that it measures the method, not
the optimizer; our own fit is checked separately to reach lme4's optimum.

Tolerances: estimates, standard errors, t and F 1e-6 relative; Kenward-Roger
df 1e-6 relative (closed form on both sides); Satterthwaite df 1e-4 relative
(lmerTest differentiates by numDeriv's Richardson extrapolation, we
analytically).
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES

import statsmodels_lmer as sml

REL = 1e-6
REL_SATTERTHWAITE = 1e-4
CONTRASTS = {"contr.sum": "Sum", "contr.helmert": "Helmert", "contr.treatment": "Treatment"}
NUMERIC = {"x", "z", "x2"}


@cache
def cases() -> dict[int, dict]:
    return {case["id"]: case for case in json.loads((FIXTURES / "fuzz_winfer.json").read_text())}


@cache
def all_data() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "data" / "fuzz_winfer.csv")


def case_data(case: dict) -> pd.DataFrame:
    frame = all_data()
    frame = frame[frame["case"] == case["id"]].drop(columns="case").reset_index(drop=True)
    if case["area"] == "unused":
        frame["f1"] = pd.Categorical(frame["f1"], categories=case["f1_levels"])
    return frame


def python_formula(case: dict, drop: str | None = None) -> str:
    """R's formula with patsy's contrast calls and without ``offset()``;
    ``drop``: a fixed term removed (``- term``)."""
    formula = case["formula"].replace(" + offset(o)", "")
    response, rhs = formula.split(" ~ ")
    fixed, _, random = rhs.partition(" + (")
    if drop is not None:
        fixed = f"{fixed} - {drop}"
    for factor, contrast in (case["contrasts"] or {}).items():
        coding = CONTRASTS[contrast]
        if coding != "Treatment":
            fixed = re.sub(rf"\b{factor}\b", f"C({factor}, {coding})", fixed)
    return f"{response} ~ {fixed} + ({random}"


def model_for(case: dict, drop: str | None = None) -> sml.Lmer:
    """The case's model; ``drop``: without that fixed term, on the rows the full
    model uses (as R's formula ``. - term`` keeps the term's variables)."""
    data = case_data(case)
    if drop is not None:
        used = set(re.findall(r"\b[a-z]\w*\b", case["formula"])) & set(data.columns)
        data = data.dropna(subset=sorted(used | ({"w"} if case["weighted"] else set())))
    kwargs = {}
    if case["weighted"]:
        kwargs["weights"] = "w"
    if "offset(o)" in case["formula"]:
        kwargs["offset"] = "o"
    return sml.Lmer.from_formula(python_formula(case, drop), data, **kwargs)


@cache
def results(case_id: int):
    case = cases()[case_id]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model_for(case).results_at(case["theta"], reml=case["REML"])


@cache
def fitted(case_id: int):
    case = cases()[case_id]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model_for(case).fit(reml=case["REML"])


# --- names -------------------------------------------------------------------


def _used_levels(case: dict, factor: str) -> list[str]:
    values = case_data(case)[factor].dropna()
    if case["area"] == "unused" and factor == "f1":
        return [level for level in case["f1_levels"] if level in set(values)]
    return sorted(set(values))


def r_coef_key(case: dict, name: str) -> frozenset:
    """An R coefficient name as a set of (variable, level) parts."""
    parts = []
    for part in name.split(":"):
        if part in NUMERIC or part == "(Intercept)":
            parts.append((part, None))
            continue
        factor, label = part[:2], part[2:]
        contrast = (case["contrasts"] or {}).get(factor, "contr.treatment")
        levels = _used_levels(case, factor)
        if contrast == "contr.sum" and label.isdigit():
            label = levels[int(label) - 1]
        elif contrast == "contr.helmert" and label.isdigit():
            label = levels[int(label)]
        parts.append((factor, label))
    return frozenset(parts)


_OUR_FACTOR = re.compile(r"^(?:C\((\w+)[^)]*\)|(\w+))\[(?:[TSH]\.)?(.+)\]$")


def our_coef_key(name: str) -> frozenset:
    parts = []
    for part in name.split(":"):
        if part == "Intercept":
            parts.append(("(Intercept)", None))
            continue
        match = _OUR_FACTOR.match(part)
        if match is None:
            parts.append((part, None))
        else:
            parts.append((match.group(1) or match.group(2), match.group(3)))
    return frozenset(parts)


def coef_order(case: dict, res) -> list[int]:
    """Our parameter position of each of lme4's coefficients."""
    ours = {our_coef_key(name): i for i, name in enumerate(res.model.exog_names)}
    return [ours[r_coef_key(case, name)] for name in case["fixef_names"]]


def term_key(term: str) -> str:
    term = re.sub(r"C\((\w+)[^)]*\)", r"\1", term)
    return ":".join(sorted(term.split(":")))


# --- comparisons ---------------------------------------------------------------


def _close(ours: float, theirs: float | None, rtol: float) -> bool:
    if theirs is None:
        return bool(np.isnan(ours))
    return bool(abs(ours - theirs) <= rtol * max(abs(theirs), 1e-12) + 1e-12)


def _check(out: list, tool: str, key: str, ours: float, theirs: float | None, rtol: float) -> None:
    if not _close(float(ours), theirs, rtol):
        out.append((tool, key, float(ours), theirs))


def compare_optimum(case: dict) -> list:
    """Our own fit reaches lme4's optimum (or a lower one)."""
    res = fitted(case["id"])
    ours = res.reml_criterion if case["REML"] else res.deviance
    if ours > case["criterion"] + 1e-6 * abs(case["criterion"]):
        return [("optimum", "criterion", ours, case["criterion"])]
    return []


def compare_coefs(case: dict, table: str, ddf: str) -> list:
    res = results(case["id"])
    ours = res.coef_table(ddf=ddf)
    order = coef_order(case, res)
    out: list = []
    for record, position in zip(case[table], order, strict=True):
        row = ours.iloc[position]
        for r_name, name, rtol in (
            ("Estimate", "coef", REL),
            ("Std. Error", "std_err", REL),
            ("t value", "t", REL),
            ("df", "df", REL_SATTERTHWAITE if ddf == "satterthwaite" else REL),
        ):
            _check(out, table, f"{record['term']}.{r_name}", row[name], record[r_name], rtol)
    return out


def compare_anova(case: dict, table: list, type_: int, ddf: str, tool: str) -> list:
    ours = results(case["id"]).anova(type=type_, ddf=ddf)
    ours.index = [term_key(term) for term in ours.index]
    # a term with no column left has no row here, an NA row in lmerTest
    # (docs/name_map_lme4.md, "Rank-deficient fixed effects")
    table = [record for record in table if record["NumDF"] is not None]
    out: list = []
    if sorted(ours.index) != sorted(term_key(r["term"]) for r in table):
        return [(tool, "terms", list(ours.index), [r["term"] for r in table])]
    for record in table:
        row = ours.loc[term_key(record["term"])]
        df_tol = REL_SATTERTHWAITE if ddf == "satterthwaite" else REL
        for r_name, name, rtol in (
            ("NumDF", "NumDF", 0),
            ("F value", "F", REL),
            ("DenDF", "DenDF", df_tol),
        ):
            _check(out, tool, f"{record['term']}.{r_name}", row[name], record[r_name], rtol)
    return out


def _l_matrix(case: dict, res, rows: list) -> np.ndarray:
    L = np.zeros((len(rows), len(res.params)))
    L[:, coef_order(case, res)] = np.asarray(rows)
    return L


def compare_contests(case: dict, ddf: str, suffix: str) -> list:
    res = results(case["id"])
    out: list = []
    df_tol = REL_SATTERTHWAITE if ddf == "satterthwaite" else REL
    one = res.t_test(_l_matrix(case, res, [case["L1"]]), ddf=ddf)
    record = case["contest1D" + suffix]
    tool = "contest1D" + suffix
    _check(out, tool, "Estimate", np.ravel(one.effect)[0], record["Estimate"], REL)
    _check(out, tool, "Std. Error", np.ravel(one.sd)[0], record["Std. Error"], REL)
    _check(out, tool, "df", one.df_denom, record["df"], df_tol)
    joint = res.f_test(_l_matrix(case, res, case["L2"]), ddf=ddf)
    record = case["contestMD" + suffix]
    tool = "contestMD" + suffix
    _check(out, tool, "F", np.ravel(joint.fvalue)[0], record["F value"], REL)
    _check(out, tool, "NumDF", joint.df_num, record["NumDF"], 0)
    _check(out, tool, "DenDF", joint.df_denom, record["DenDF"], df_tol)
    return out


def _cell_key(variables: list[str], levels: list[str]) -> frozenset:
    return frozenset(zip(variables, levels, strict=True))


def our_means(table: pd.DataFrame) -> dict:
    """Our least-squares means by cell: {(variable, level), ...} -> row; for
    differences (cell, cell) -> row."""
    out = {}
    for (term, level), row in table.iterrows():
        variables = re.sub(r"C\((\w+)[^)]*\)", r"\1", term).split(":")
        cells = tuple(_cell_key(variables, side.split(":")) for side in level.split(" - "))
        out[cells] = row
    return out


def r_means_key(label: str) -> tuple:
    """lmerTest's row label (``f2p:f1a``, ``f1a - f1b``) as cells."""
    return tuple(
        frozenset((part[:2], part[2:]) for part in side.split(":")) for side in label.split(" - ")
    )


def compare_ls_means(case: dict, table: list, ddf: str, pairwise: bool, tool: str) -> list:
    """Rows matched by cell: lmerTest labels ``f2 + f1:f2``'s term ``f2:f1`` (R's
    order of first appearance) and varies f2 fastest, patsy ``f1:f2``."""
    if isinstance(table, dict):  # lmerTest raised
        return []
    ours = our_means(results(case["id"]).ls_means(ddf=ddf, pairwise=pairwise))
    out: list = []
    df_tol = REL_SATTERTHWAITE if ddf == "satterthwaite" else REL
    for record in table:
        key = r_means_key(record["term"])
        sign = 1.0
        if key not in ours:  # a difference taken the other way round
            key, sign = key[::-1], -1.0
        row = ours[key]
        _check(
            out, tool, f"{record['term']}.Estimate", sign * row["Estimate"], record["Estimate"], REL
        )
        for r_name, rtol in (("Std. Error", REL), ("df", df_tol)):
            _check(out, tool, f"{record['term']}.{r_name}", row[r_name], record[r_name], rtol)
    return out


def compare_ranova(case: dict) -> list:
    table = case["ranova"]
    if isinstance(table, dict):
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fitted(case["id"]).ranova()
    out: list = []
    if len(ours) != len(table):
        return [("ranova", "rows", list(ours.index), [r["term"] for r in table])]
    for record, (_, row) in zip(table, ours.iterrows(), strict=True):
        _check(out, "ranova", f"{record['term']}.npar", row["npar"], record["npar"], 0)
        # the fits' optima: lme4's optimizer stops within about 1e-7 of the
        # criterion (a larger gap is reported by compare_optimum)
        if row["llf"] < record["logLik"] - 1e-7 * abs(record["logLik"]):
            out.append(("ranova", f"{record['term']}.logLik", row["llf"], record["logLik"]))
    return out


def compare_weighted_kr(case: dict) -> list:
    """pbkrtest's formulas with the residual covariance sigma^2 W^-1."""
    res = results(case["id"])
    order = coef_order(case, res)
    ours = np.asarray(res.kenward_roger.vcov_adjusted)[np.ix_(order, order)]
    theirs = np.asarray(case["kr_weighted"]["vcov_adj"])
    out: list = []
    if not np.allclose(ours, theirs, rtol=REL, atol=REL * np.abs(theirs).max()):
        out.append(("kr_weighted", "vcov_adj", float(np.abs(ours - theirs).max()), 0.0))
    df = res.t_test(_l_matrix(case, res, [case["L1"]]), ddf="kenward-roger").df_denom
    _check(out, "kr_weighted", "ddf_L1", df, case["kr_weighted"]["ddf_L1"], REL)
    return out


@cache
def lrt_table(case_id: int) -> pd.DataFrame:
    case = cases()[case_id]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = model_for(case, case["lrt"]["dropped"]).fit(reml=case["REML"])
        return sml.anova(small, fitted(case_id))


def compare_lrt(case: dict) -> list:
    """lme4's anova(m0, m1): both refitted by ML, then the likelihood ratio."""
    lrt = case["lrt"]
    out: list = []
    if not ill_conditioned(lrt["small_theta_ml"] + lrt["big_theta_ml"]):
        out += _lrt_at_lme4_theta(case)
    # our own ML refits (sml.anova)
    ours = lrt_table(case["id"])
    for record, (_, row) in zip(lrt["table"], ours.iterrows(), strict=True):
        _check(out, "lrt", f"{record['term']}.npar", row["npar"], record["npar"], 0)
        # our fits may reach a higher likelihood than lme4's (compare_optimum)
        if row["llf"] < record["logLik"] - 1e-7 * abs(record["logLik"]):
            out.append(("lrt", f"{record['term']}.logLik", row["llf"], record["logLik"]))
        if record["Chisq"] is not None:
            _check(out, "lrt", "Df", row["df"], record["Df"], 0)
    return out


def _lrt_at_lme4_theta(case: dict) -> list:
    """Each log-likelihood at lme4's ML theta and the statistic."""
    lrt = case["lrt"]
    out: list = []
    small = model_for(case, lrt["dropped"]).results_at(lrt["small_theta_ml"], reml=False).llf
    big = model_for(case).results_at(lrt["big_theta_ml"], reml=False).llf
    small_r, big_r = (record["logLik"] for record in lrt["table"])
    _check(out, "lrt", "small logLik at lme4's theta", small, small_r, 1e-9)
    _check(out, "lrt", "big logLik at lme4's theta", big, big_r, 1e-9)
    # lme4 reports max(0, 2 (big - small)) (its big fit can stop below the small one)
    statistic = max(0.0, 2 * (big - small))
    _check(out, "lrt", "Chisq at lme4's theta", statistic, lrt["table"][1]["Chisq"], 1e-7)
    return out


def _bar_key(text: str) -> str:
    return "".join(text.split())


@cache
def stepped(case_id: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fitted(case_id).step()


def compare_step(case: dict) -> list:
    """lmerTest's step: the order of elimination and the model found."""
    if "error" in case["step"]:
        return []
    found = stepped(case["id"])
    out: list = []
    theirs_random = [_bar_key(r["term"]) for r in case["step"]["random"] if r.get("Eliminated")]
    ours_random = [_bar_key(term) for term, row in found.random.iterrows() if row["Eliminated"] > 0]
    if "|" not in case["step"]["final"]:
        # lmerTest dropped the last random term and went on with lm(); we keep
        # it (a documented difference, README "Backward elimination"), so the
        # fixed eliminations are not comparable
        theirs_random = theirs_random[:-1]
        return (
            [] if ours_random == theirs_random else [("step", "random", ours_random, theirs_random)]
        )
    if ours_random != theirs_random:
        out.append(("step", "random eliminated", ours_random, theirs_random))
    theirs_fixed = [term_key(r["term"]) for r in case["step"]["fixed"] if r["Eliminated"] > 0]
    ours_fixed = [term_key(term) for term, row in found.fixed.iterrows() if row["Eliminated"] > 0]
    if ours_fixed != theirs_fixed:
        out.append(("step", "fixed eliminated", ours_fixed, theirs_fixed))
    return out


def same_coefficients(case: dict) -> bool:
    """Whether our coefficients are lme4's (same columns, up to order).

    Not so for ``C(f, Sum)`` or ``C(f, Helmert)`` in ``f + f:x``: R codes the
    slopes of ``f:x`` by indicators, patsy by the contrast's full-rank version
    (``[mean]:x, [S.a]:x, ...``); the column space, and so every anova table
    and least-squares mean, is the same, the coefficients are not.
    """
    try:
        coef_order(case, results(case["id"]))
    except KeyError:
        return False
    return True


def ill_conditioned(theta: list[float]) -> bool:
    """theta above 100: sigma has collapsed next to the random effects (a
    nearly saturated design), and the Kenward-Roger information for sigma^2
    and the log-likelihood cancel about seven digits on both sides."""
    return max(theta) > 100


def compare_coding_invariant(case: dict) -> list:
    """What does not depend on the coding of X (see :func:`same_coefficients`):
    type III tables (lmerTest re-codes by treatment contrasts) and
    least-squares means. The REML criterion differs by a constant, the type I
    and II multi-row df follow the coding."""
    out = compare_anova(case, case["anova"]["type3"], 3, "satterthwaite", "anova3")
    out += compare_ls_means(case, case["ls_means"], "satterthwaite", False, "ls_means")
    if case["REML"] and not case["weighted"]:
        table = case["anova_kr"]["type3"]
        out += compare_anova(case, table, 3, "kenward-roger", "anova3_kr")
    return out


def compare_case(case: dict) -> list:
    if not same_coefficients(case):
        return compare_coding_invariant(case)
    out = compare_optimum(case)
    out += compare_coefs(case, "coef_satterthwaite", "satterthwaite")
    out += compare_contests(case, "satterthwaite", "")
    for type_ in (1, 2, 3):
        out += compare_anova(
            case, case["anova"][f"type{type_}"], type_, "satterthwaite", f"anova{type_}"
        )
    out += compare_ls_means(case, case["ls_means"], "satterthwaite", False, "ls_means")
    out += compare_ls_means(case, case["difflsmeans"], "satterthwaite", True, "difflsmeans")
    if case["REML"] and not case["weighted"]:
        out += compare_coefs(case, "coef_kenward_roger", "kenward-roger")
        out += compare_contests(case, "kenward-roger", "_kr")
        for type_ in (1, 3):
            table = case["anova_kr"][f"type{type_}"]
            out += compare_anova(case, table, type_, "kenward-roger", f"anova{type_}_kr")
        out += compare_ls_means(case, case["ls_means_kr"], "kenward-roger", False, "ls_means_kr")
    if case["weighted"] and case["REML"] and not ill_conditioned(case["theta"]):
        out += compare_weighted_kr(case)
    out += compare_ranova(case)
    if "lrt" in case:
        out += compare_lrt(case)
    if "step" in case:
        out += compare_step(case)
    return out


# --- tests -------------------------------------------------------------------

ALL_CASES = os.environ.get("STATSMODELS_LMER_FUZZ_ALL") == "1"
"""Every case (about a minute and a half, 3 minutes with step); by default two per area."""


def sampled_ids() -> list[int]:
    by_area: dict[str, list[int]] = {}
    for case_id, case in cases().items():
        by_area.setdefault(case["area"], []).append(case_id)
    if ALL_CASES:
        return sorted(cases())
    return sorted(ids[i] for ids in by_area.values() for i in (0, len(ids) // 2))


@pytest.mark.parametrize("case_id", sampled_ids())
def test_case_matches_r(case_id: int) -> None:
    """Every table of the case agrees with lmerTest, pbkrtest and lme4 (see
    :func:`compare_case`); all 300 cases with STATSMODELS_LMER_FUZZ_ALL=1."""
    case = cases()[case_id]
    if not ALL_CASES:
        case = {key: value for key, value in case.items() if key != "step"}
    assert compare_case(case) == []


def test_fixture_covers_every_area() -> None:
    areas = {case["area"] for case in cases().values()}
    assert areas == {
        "weights", "offset", "missing", "ml", "singular", "rankdef",
        "factor_covariate", "unused", "contrasts", "no_margins",
    }  # fmt: skip
    assert len(cases()) >= 250


def test_weighted_kenward_roger_uses_the_fitted_residual_covariance() -> None:
    """A documented difference (docs/name_map_lme4.md, pbkrtest): pbkrtest
    0.5.2 takes the marginal covariance ``Z D Z' + sigma^2 I`` whatever the
    weights, so ``(X' Sigma^-1 X)^-1`` is not lme4's ``vcov(m)`` (1.3 % to 64 %
    apart on the 59 designs); with ``sigma^2 W^-1`` it is (3e-14). We use
    ``W^-1``: equal to pbkrtest's formulas given ``W^-1`` (1e-6), not to
    pbkrtest's own numbers."""
    weighted = [
        case
        for case in cases().values()
        if "kr_weighted" in case and not ill_conditioned(case["theta"])
    ]
    assert len(weighted) > 50
    assert min(case["kr_weighted"]["phi_gap_identity"] for case in weighted) > 1e-2
    assert max(case["kr_weighted"]["phi_gap_weights"] for case in weighted) < 1e-12
    case = weighted[0]
    assert compare_weighted_kr(case) == []
    res = results(case["id"])
    order = coef_order(case, res)
    ours = np.sqrt(np.diag(res.kenward_roger.vcov_adjusted))[order]
    pbkrtest = np.sqrt(np.diag(np.asarray(case["kr_weighted"]["vcov_adj_pbkrtest"])))
    assert np.max(np.abs(ours / pbkrtest - 1)) > 1e-3


# --- regressions: the bugs this fuzzing found --------------------------------


def test_ranova_of_uncorrelated_slope_merges_the_repeated_intercept() -> None:
    """``y ~ x + (x || g)``: without ``x``, ``(0 + x | g)`` becomes ``(1 | g)``
    next to ``(1 | g)``, one term in R's formula. Before: npar 5, LRT df 0 and
    p NaN (two intercept terms fitted); lmerTest: npar 4, df 1, p 0.1114."""
    case = cases()[8]
    row = fitted(8).ranova().loc["x in (0 + x | g)"]
    expected = case["ranova"][2]
    assert (row["npar"], row["df"]) == (expected["npar"], expected["Df"])
    # LRT: a difference of two fitted log-likelihoods (1e-7 relative each)
    np.testing.assert_allclose(row["LRT"], expected["LRT"], atol=1e-5)
    np.testing.assert_allclose(row["pvalue"], expected["Pr(>Chisq)"], atol=1e-6)


@pytest.mark.parametrize("case_id", [162, 171])
def test_drop1_and_step_with_an_aliased_column(case_id: int) -> None:
    """``x2 = 2 x - 1`` is dropped as aliased; dropping ``x`` (or ``x2``) from
    the formula leaves the model the same, so lmerTest's drop1 gives NA rows
    and step never removes them. Before: IndexError in drop1 and step."""
    case = cases()[case_id]
    found = stepped(case_id)
    assert compare_step(case) == []
    fixed = found.fixed
    for record in case["step"]["fixed"]:
        row = fixed.loc[record["term"]]
        if record["F value"] is None:
            assert row[["SumSq", "NumDF", "DenDF", "F"]].isna().all()
            continue
        # our own refits (the same optimum to about 1e-8): 1e-4 as tests/test_step.py
        np.testing.assert_allclose(row["F"], record["F value"], rtol=1e-4)
        np.testing.assert_allclose(row["DenDF"], record["DenDF"], rtol=1e-4)
    assert _bar_key(found.model.model.lmer_formula) == _bar_key(case["step"]["final"])


def test_satterthwaite_df_at_a_zero_intercept_next_to_a_slope() -> None:
    """A singular ``(x | g)`` fit with theta = (0, -0.20, 0.043): the row of T
    holding the zero is all zeros and the Hessian's difference step was 1e-12,
    where round-off moved H[0, 0] from 57.264 to 57.303. Before: df of ``x``
    9.17474 against lmerTest's 9.16655 (9e-4); now 3e-7."""
    case = cases()[75]
    ours = results(75).coef_table()["df"].to_numpy()[coef_order(case, results(75))]
    expected = [record["df"] for record in case["coef_satterthwaite"]]
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


@pytest.mark.parametrize("case_id", [271, 275])
def test_type3_of_an_interaction_without_its_margins(case_id: int) -> None:
    """``y ~ f1:f2 + x`` (271 treatment, 275 Helmert and sum coding): patsy's
    columns ``f2[T.q], f1[T.b]:f2[p], ...`` are not R's cells. Before: ValueError
    "type III contrasts need treatment-coded factors; cannot match 'f2[T.q]'"."""
    case = cases()[case_id]
    for ddf, table in (("satterthwaite", "anova"), ("kenward-roger", "anova_kr")):
        assert compare_anova(case, case[table]["type3"], 3, ddf, table) == []


def test_step_breaks_ties_of_zero_variance_terms_as_lmertest() -> None:
    """Both ``(1 | g)`` and ``(1 | h)`` have no variance: their reductions change
    nothing and lmerTest's LRT are exactly 0, so step removes the first. Before:
    round-off LRT (6e-13 and 2e-13) made ``(1 | h)`` the larger p-value."""
    case = cases()[147]
    table = fitted(147).ranova()
    assert (table["LRT"].iloc[1:] == 0).all()
    assert compare_step(case) == []


def main() -> None:
    """Exploration: ``python tests/test_fuzz_winfer.py [fixtures_dir]`` lists
    every discrepancy."""
    from collections import Counter

    global FIXTURES
    if len(sys.argv) > 1:
        FIXTURES = Path(sys.argv[1])
        cases.cache_clear()  # read when the tests were collected

    tools: Counter = Counter()
    for case in cases().values():
        try:
            found = compare_case(case)
        except Exception as error:  # exploration: report and go on
            found = [("error", type(error).__name__, str(error)[:200], None)]
        for item in found:
            tools[(case["area"], item[0])] += 1
        if found:
            print(case["id"], case["area"], case["formula"], case["singular"])
            for item in found[:6]:
                print("   ", item)
    print(sorted(tools.items()))


if __name__ == "__main__":
    main()
