"""statsmodels' ``ContrastResults`` for t tests whose rows have their own df.

Mixed models give each contrast its own denominator df (Satterthwaite,
Kenward-Roger, clubSandwich's). statsmodels' ``ContrastResults`` assumes one
df for all rows; :class:`LmerContrastResults` keeps its attributes and
methods (``effect``, ``sd``, ``tvalue``, ``pvalue``, ``conf_int``,
``summary``, ``summary_frame``) and applies each row's df.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.iolib.summary2 import Summary
from statsmodels.stats.contrast import ContrastResults

from ..arguments import check_alpha

__all__ = ["LmerContrastResults", "f_pvalue"]


class LmerContrastResults(ContrastResults):
    """t tests of the rows of ``L beta = q``, each with its own df.

    Parameters
    ----------
    effect : ndarray, shape (k,)
        ``L beta``.
    sd : ndarray, shape (k,)
        Standard errors of ``L beta``.
    tvalue : ndarray, shape (k,)
        ``(L beta - q) / sd``.
    df : ndarray, shape (k,)
        Denominator df of each row.
    names : list of str, optional
        Row labels (default ``c0, c1, ...``, as statsmodels).
    method : str
        How the df were computed (shown in the summary).

    Attributes
    ----------
    df_denom : float or ndarray
        A float for one row (as statsmodels), else the per-row df.
    """

    def __init__(
        self,
        effect: np.ndarray,
        sd: np.ndarray,
        tvalue: np.ndarray,
        df: np.ndarray,
        names: list[str] | None = None,
        method: str = "",
    ) -> None:
        df = np.asarray(df, dtype=float).ravel()
        tvalue = np.asarray(tvalue, dtype=float).ravel()
        sd = np.asarray(sd, dtype=float).ravel()
        super().__init__(
            t=tvalue,
            sd=sd,
            effect=np.asarray(effect, dtype=float).ravel(),
            df_denom=float(df[0]) if df.size == 1 else df,
        )
        self.df_rows = df
        self._sd_rows = sd
        pvalue = 2 * stats.t.sf(np.abs(tvalue), df)
        if df.size == 1:  # statsmodels' shapes for one row: (1, 1) arrays, a 0-d p-value
            self.tvalue = self.statistic = tvalue.reshape(1, 1)
            self.sd = sd.reshape(1, 1)
            self.pvalue = pvalue.reshape(())
        else:
            self.tvalue = self.statistic = tvalue
            self.sd = sd
            self.pvalue = pvalue
        self.row_names = list(names) if names is not None else [f"c{i}" for i in range(df.size)]
        self.df_method = method

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """Confidence intervals, each row with its own t quantile."""
        alpha = check_alpha(alpha)
        half = stats.t.ppf(1 - alpha / 2.0, self.df_rows) * self._sd_rows
        return np.column_stack([self.effect - half, self.effect + half])

    def summary_frame(self, xname: Any = None, alpha: float = 0.05) -> pd.DataFrame:
        """statsmodels' columns (coef, std err, t, P>|t|, Conf. Int. Low/Upp.) and ``df``."""
        ci = self.conf_int(alpha)
        index = self.row_names
        if xname is not None:
            if isinstance(xname, str) or len(xname) != len(self.effect):
                raise ValueError(
                    f"xname must be a list of {len(self.effect)} row names, got {xname!r}"
                )
            index = list(xname)
        return pd.DataFrame(
            {
                "coef": self.effect,
                "std err": self._sd_rows,
                "t": np.ravel(self.tvalue),
                "P>|t|": np.ravel(self.pvalue),
                "Conf. Int. Low": ci[:, 0],
                "Conf. Int. Upp.": ci[:, 1],
                "df": self.df_rows,
            },
            index=index,
        )

    def summary(self, xname: Any = None, alpha: float = 0.05, title: str | None = None) -> Any:
        """The table as a statsmodels ``Summary`` (``print`` shows it)."""
        smry = Summary()
        heading = title or "Test for Constraints"
        if self.df_method:
            heading += f" (t tests, df: {self.df_method})"
        smry.add_title(heading)
        smry.add_df(self.summary_frame(xname, alpha), float_format="%.4f")
        return smry

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        return str(self.__class__) + "\n" + self.__str__()


def f_pvalue(fvalue: float, num_df: float, den_df: float) -> float:
    """Upper tail of ``F(num_df, den_df)`` at ``fvalue``; an infinite ``den_df`` is the
    chi-square limit ``P(chi2_num_df > num_df F)`` (scipy's F gives NaN there)."""
    if np.isinf(den_df) and den_df > 0:
        return float(stats.chi2.sf(num_df * fvalue, num_df))
    return float(stats.f.sf(fvalue, num_df, den_df))
