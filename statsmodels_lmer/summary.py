"""A statsmodels ``Summary`` laid out like lme4's print of a fitted model."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.iolib.summary2 import Summary, _df_to_simpletable

from .fitting.convergence import SINGULAR_MESSAGE
from .inference.hypotheses import check_ddf
from .tables import format_pvalue

__all__ = [
    "fixed_effects_table",
    "lmer_print",
    "lmer_repr",
    "lmer_summary",
    "lmer_summary2",
    "random_effects_table",
]


class LmerSummary(Summary):
    """statsmodels' ``Summary`` (summary2) with sections kept in lme4's order.

    Each section is a title, an optional table and optional text lines;
    ``as_text``, ``as_html`` and ``as_latex`` render them in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[tuple[str, pd.DataFrame | None, bool, list[str]]] = []

    def add_section(
        self,
        title: str,
        table: pd.DataFrame | None = None,
        index: bool = True,
        text: list[str] | None = None,
    ) -> None:
        """Append a section: a title, a table of strings, lines of text."""
        if table is not None:
            self.add_df(table, index=index)
        self.sections.append((title, table, index, list(text or [])))

    def as_text(self) -> str:
        """The summary as plain text."""
        lines = [self.title or "", "=" * len(self.title or "")]
        for title, table, index, text in self.sections:
            if title:
                lines.append(title)
            if table is not None:
                lines.append(table.to_string(index=index, header=True))
            lines.extend(text)
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def as_html(self) -> str:
        """The summary as HTML."""
        parts = [f"<h4>{html.escape(self.title or '')}</h4>"]
        for title, table, index, text in self.sections:
            if title:
                parts.append(f"<p><b>{html.escape(title)}</b></p>")
            if table is not None:
                parts.append(table.to_html(index=index, border=0))
            parts.extend(f"<p>{html.escape(line)}</p>" for line in text)
        return "\n".join(parts)

    def as_latex(self, label: str = "") -> str:
        """The summary as LaTeX tabulars, one per section."""
        parts = [f"\\textbf{{{_latex_escape(self.title or '')}}}"]
        for title, table, index, text in self.sections:
            if title:
                parts.append(f"\\textit{{{_latex_escape(title)}}}")
            if table is not None:
                simple = _df_to_simpletable(_latex_table(table), index=index)
                parts.append(simple.as_latex_tabular())
            parts.extend(_latex_escape(line) + "\\\\" for line in text)
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return str(type(self)) + '\n"""\n' + self.as_text() + '"""'

    def _repr_html_(self) -> str:
        return self.as_html()


_LATEX_SPECIAL = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "<": r"\textless{}",
        ">": r"\textgreater{}",
        "|": r"\textbar{}",
    }
)


def _latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters written as text, in one pass."""
    return str(text).translate(_LATEX_SPECIAL)


def _latex_table(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its labels and text cells escaped for LaTeX (numbers as they are)."""
    escaped = table.map(lambda v: _latex_escape(v) if isinstance(v, str) else v)
    escaped.index = [_latex_escape(label) for label in table.index]
    escaped.columns = [_latex_escape(label) for label in table.columns]
    return escaped


def lmer_summary(res: Any, alpha: float = 0.05, ddf: str = "satterthwaite") -> LmerSummary:
    """Build the summary of a fitted :class:`~statsmodels_lmer.LmerResults`.

    Sections in lme4's order: header, fit criteria, scaled residuals,
    random effects, group counts, fixed effects (with ``ddf``'s df and
    p-values, as lmerTest's ``summary(m, ddf=)``), correlation of fixed
    effects (up to 12 coefficients), messages.
    """
    smry = LmerSummary()
    smry.add_title(_title(res))
    smry.add_section("", text=_header(res))
    if res.reml:
        smry.add_section("", text=[_reml_line(res)])
    else:
        smry.add_section("", _criteria(res), index=False)
    if res.model.data_removed:
        smry.add_section(
            "Scaled residuals:", text=["(not available: remove_data() dropped the rows)"]
        )
    else:
        smry.add_section("Scaled residuals:", _residual_quantiles(res), index=False)
    smry.add_section(
        "Random effects:", random_effects_table(res), index=False, text=[_group_counts(res)]
    )
    fixed = fixed_effects_table(res, alpha, ddf)
    pvalues = fixed.pop("Pr(>|t|)")
    fixed = fixed.map(_number)
    fixed.insert(4, "Pr(>|t|)", [format_pvalue(p) for p in pvalues])
    smry.add_section("Fixed effects:", fixed)
    if 1 < res.k_fixed <= 12:
        corr = _fixed_correlation(res).map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
        smry.add_section("Correlation of fixed effects:", corr)
    elif res.k_fixed > 12:
        smry.add_section(
            "",
            text=[
                f"Correlation matrix not shown by default, as p = {res.k_fixed} > 12 "
                "(as lme4); res.cov_params() has it."
            ],
        )
    smry.add_section("", text=_messages(res, ddf))
    return smry


def _number(value: float) -> str:
    """Four decimals, and four significant digits below 0.1 (lmerTest's SE 0.002158, not
    0.0022); scientific notation below 1e-4 and from 1e6."""
    if not np.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-4 or abs(value) >= 1e6):
        return f"{value:.3e}"
    if value != 0 and abs(value) < 0.1:
        return f"{value:.{3 - int(np.floor(np.log10(abs(value))))}f}"
    return f"{value:.4f}"


class _SummaryNumber:
    """A ``float_format`` for statsmodels' summary2 tables that formats as :func:`_number`
    (``"%.4f"`` printed a coefficient of 1.05e-05, its SE and p-value as 0.0000)."""

    def __mod__(self, value: Any) -> str:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise TypeError("not a number")  # statsmodels then prints str(value)
        return _number(float(value))


SUMMARY_NUMBER = _SummaryNumber()


def _title(res: Any) -> str:
    method = "REML" if res.reml else "maximum likelihood"
    return f"Linear mixed model fit by {method} (statsmodels_lmer)"


def _reml_line(res: Any) -> str:
    return f"REML criterion at convergence: {res.reml_criterion:.1f}"


def _data_line(res: Any) -> str:
    name = getattr(res.model, "data_name", None)
    count = f"{res.nobs} observations"
    return f"   Data: {name} ({count})" if name else f"   Data: {count}"


def _header(res: Any) -> str:
    formula = getattr(res.model, "lmer_formula", None) or "(arrays)"
    lines = [f"Formula: {formula}", _data_line(res)]
    if res.model.n_dropped:
        dropped = res.model.n_dropped
        lines[-1] += f" ({dropped} row{'' if dropped == 1 else 's'} with missing values dropped)"
    if res.model.weights is not None:
        lines.append("Prior weights: given")
    lines.append(f"Optimizer: {res.optinfo['optimizer']} ({res.optinfo['feval']} evaluations)")
    robust = getattr(res, "robust", None)
    if robust is not None:
        lines.append(f"Covariance: {robust.description}")
    return lines


def _criteria(res: Any) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "AIC": [f"{res.aic:.4f}"],
            "BIC": [f"{res.bic:.4f}"],
            "logLik": [f"{res.llf:.4f}"],
            "deviance": [f"{res.deviance:.4f}"],
            "df.resid": [f"{res.df_resid:.0f}"],
        }
    )


def _residual_quantiles(res: Any) -> pd.DataFrame:
    probs = [0.0, 0.25, 0.5, 0.75, 1.0]
    if (
        getattr(res.model, "partitions", None) is not None
    ):  # rows on a Dask cluster: exact, in passes
        values = res.model.partitions.residual_quantiles(res, probs)
    else:
        values = np.quantile(res.residuals(type="pearson", scaled=True), probs)
    names = ["Min", "1Q", "Median", "3Q", "Max"]
    return pd.DataFrame({n: [f"{v:.4f}"] for n, v in zip(names, values)})


def random_effects_table(res: Any) -> pd.DataFrame:
    """Groups, Name, Variance, Std.Dev. and correlations as lme4 prints them."""
    rows = []
    vc = res.varcorr
    # consecutive rows of one term; the residual row (no var1) always apart, also
    # from a grouping factor named "Residual"
    term_keys = vc["grp"].where(vc["var1"].notna(), "")
    runs = (term_keys != term_keys.shift()).cumsum()
    for _, block in vc.groupby(runs.to_numpy(), sort=False):
        label = block["grp"].iloc[0]
        variances = block[block["var2"].isna()]
        covs = block[block["var2"].notna()]
        for position, (_, row) in enumerate(variances.iterrows()):
            corr = [
                f"{c:6.3f}" if np.isfinite(c) else f"{'NaN':>6}"
                for c in covs[covs["var2"] == row["var1"]]["sdcor"]
            ]
            rows.append(
                {
                    "Groups": label if position == 0 else "",
                    "Name": row["var1"] if isinstance(row["var1"], str) else "",
                    "Variance": _number(row["vcov"]),
                    "Std.Dev.": _number(row["sdcor"]),
                    "Corr": " ".join(corr),
                }
            )
    table = pd.DataFrame(rows)
    if len(table) and table["Corr"].str.len().max() > 0:
        # one column per correlation, as lme4: each row's values start at the left
        width = max(int(table["Corr"].str.len().max()), len("Corr"))
        table["Corr"] = table["Corr"].str.ljust(width)
        table = table.rename(columns={"Corr": "Corr".ljust(width)})
    return table


def _group_counts(res: Any) -> str:
    counts = "; ".join(f"{name}, {count}" for name, count in res.ngroups.items())
    return f"Number of obs: {res.nobs}, groups: {counts}"


def fixed_effects_table(res: Any, alpha: float = 0.05, ddf: str = "satterthwaite") -> pd.DataFrame:
    """Estimate, Std. Error, df, t value, Pr(>|t|) and the confidence interval.

    ``ddf`` as in :meth:`~statsmodels_lmer.LmerResults.coef_table`; Kenward-Roger
    also adjusts the standard errors, and the interval uses them with its df.
    """
    if check_ddf(ddf) == "satterthwaite":  # the results' own (robust ones included)
        table = pd.DataFrame(
            {"coef": res.params, "std_err": res.bse, "df": res.ddf, "t": res.tvalues}
        ).assign(pvalue=np.asarray(res.pvalues))
    else:
        table = res.coef_table(ddf)
    df = table["df"].to_numpy(dtype=float)
    half = stats.t.ppf(1 - alpha / 2, df) * table["std_err"].to_numpy(dtype=float)
    lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
    return pd.DataFrame(
        {
            "Estimate": table["coef"].to_numpy(dtype=float),
            "Std. Error": table["std_err"].to_numpy(dtype=float),
            "df": df,
            "t value": table["t"].to_numpy(dtype=float),
            "Pr(>|t|)": table["pvalue"].to_numpy(dtype=float),
            lo: table["coef"].to_numpy(dtype=float) - half,
            hi: table["coef"].to_numpy(dtype=float) + half,
        },
        index=res.model.exog_names,
    )


def _fixed_correlation(res: Any) -> pd.DataFrame:
    cov = np.asarray(res.cov_params())
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    names = list(res.model.exog_names)
    table = pd.DataFrame(corr, index=names, columns=names)
    return table.iloc[1:, :-1].where(np.tril(np.ones((len(names) - 1,) * 2, bool)), np.nan)


_DDF_LINES = {
    "kenward-roger": "df, standard errors, t tests and confidence intervals use Kenward-Roger's "
    "method (as pbkrtest and lmerTest's ddf='Kenward-Roger').",
    "residual": "df, t tests and confidence intervals use the residual df n - p.",
}


def _messages(res: Any, ddf: str = "satterthwaite") -> list[str]:
    method = check_ddf(ddf)
    if method in _DDF_LINES:
        first = _DDF_LINES[method]
    elif getattr(res, "robust", None) is not None:
        first = (
            f"Std. errors, t tests and intervals use the {res.robust.description} "
            "covariance with clubSandwich's Satterthwaite df; F tests use its HTZ test."
        )
    else:
        first = (
            "df, t tests and confidence intervals use Satterthwaite's method "
            "(as lmerTest); coef_table(ddf='kenward-roger') gives Kenward-Roger's."
        )
    messages = [first]
    if res.model.dropped_columns:
        messages.append(
            "fixed-effect model matrix is rank deficient; dropped: "
            + ", ".join(res.model.dropped_columns)
        )
    warned = list(res.optinfo.get("warnings") or [])
    if res.is_singular() and not any("singular" in w for w in warned):
        warned.append(SINGULAR_MESSAGE)
    if not res.converged and not warned:
        warned.append(f"optimizer did not report convergence: {res.optinfo['message']}")
    messages.extend(warned)
    return messages


def lmer_repr(res: Any) -> str:
    """One line: the class, fit method, formula, size and log-likelihood."""
    formula = getattr(res.model, "lmer_formula", None) or "(arrays)"
    groups = ", ".join(f"{name}: {count}" for name, count in res.ngroups.items())
    state = "converged" if res.converged else "NOT converged"
    return (
        f"<{type(res).__name__} ({'REML' if res.reml else 'ML'}) {formula}; "
        f"{res.nobs} obs, groups {groups}; llf {res.llf:.4f}; {state}>"
    )


def lmer_print(res: Any) -> str:
    """The short print of a fit, as lme4's ``print(m)``: criterion, SDs, fixed effects."""
    method = "REML" if res.reml else "maximum likelihood"
    lines = [
        f"Linear mixed model fit by {method}",
        f"Formula: {getattr(res.model, 'lmer_formula', None) or '(arrays)'}",
        _data_line(res),
    ]
    if res.reml:
        lines.append(_reml_line(res))
    else:
        lines.append(
            f"      AIC {res.aic:.4f}  BIC {res.bic:.4f}  logLik {res.llf:.4f}  "
            f"deviance {res.deviance:.4f}  df.resid {res.df_resid:.0f}"
        )
    sds = random_effects_table(res).drop(columns=["Variance"])
    lines += ["Random effects:", sds.to_string(index=False), _group_counts(res), "Fixed Effects:"]
    fixef = pd.DataFrame([np.asarray(res.params)], columns=list(res.model.exog_names))
    lines.append(fixef.map(lambda v: f"{v:.4g}").to_string(index=False))
    lines.extend(_messages(res)[1:])
    return "\n".join(lines)


def _variance_frame(res: Any) -> pd.DataFrame:
    """``varcorr`` with one readable label per row: ``Subject Days Var``, ``... Cov``."""
    labels = []
    for grp, var1, var2 in res.varcorr[["grp", "var1", "var2"]].itertuples(index=False):
        if grp == "Residual" and not isinstance(var1, str):
            labels.append("Residual Var")
        elif isinstance(var2, str):
            labels.append(f"{grp} {var1} x {var2} Cov")
        else:
            labels.append(f"{grp} {var1} Var")
    values = res.varcorr[["vcov", "sdcor"]].to_numpy()
    return pd.DataFrame(values, index=labels, columns=["Var/Cov", "SD/Corr"])


def lmer_summary2(res: Any, alpha: float = 0.05, ddf: str = "satterthwaite") -> Summary:
    """statsmodels' ``summary2`` layout: an information block and numeric tables.

    The tables (``.tables``) are DataFrames of numbers: model information,
    fixed effects (estimate, SE, df, t, p, interval) and the variance
    components (lme4's ``as.data.frame(VarCorr(m))``).
    """
    smry = Summary()
    smry.add_title(_title(res))
    info = {
        "Model:": "Lmer",
        "Formula:": getattr(res.model, "lmer_formula", None) or "(arrays)",
        "Dependent Variable:": res.model.endog_names,
        "Method:": "REML" if res.reml else "ML",
        "No. Observations:": str(res.nobs),
        "No. Groups:": "; ".join(f"{k}: {v}" for k, v in res.ngroups.items()),
        "Log-Likelihood:": f"{res.llf:.4f}",
        "AIC:": f"{res.aic:.4f}",
        "BIC:": f"{res.bic:.4f}",
        "Scale:": f"{res.scale:.4f}",
        "Converged:": "Yes" if res.converged else "No",
        "Covariance:": getattr(res, "cov_kwds", {}).get("description", "model-based"),
    }
    smry.add_dict(info)
    smry.add_df(fixed_effects_table(res, alpha, ddf))
    smry.add_df(_variance_frame(res))
    for line in _messages(res, ddf):
        smry.add_text(line)
    for settings in smry.settings:  # as_text formats every table by the first's setting
        settings["float_format"] = SUMMARY_NUMBER
    return smry
