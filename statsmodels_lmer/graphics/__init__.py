"""Plots of fitted models (matplotlib, the ``plot`` extra; imported only when drawing).

Every function returns a matplotlib Figure; those drawing several panels take
a sequence of Axes as ``ax=``, those drawing one panel a single Axes.
"""

from .allfit import plot_allfit
from .bootstrap import plot_bootstrap
from .influence import plot_influence
from .profile import plot_profile
from .ranef import plot_ranef, plot_ranef_qq, plot_resim
from .residuals import (
    plot_diagnostics,
    plot_group_fits,
    plot_qq,
    plot_residuals,
    plot_scale_location,
)

__all__ = [
    "plot_allfit",
    "plot_bootstrap",
    "plot_diagnostics",
    "plot_group_fits",
    "plot_influence",
    "plot_profile",
    "plot_qq",
    "plot_ranef",
    "plot_ranef_qq",
    "plot_residuals",
    "plot_resim",
    "plot_scale_location",
]
