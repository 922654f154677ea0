"""Plots of fitted models (matplotlib, the ``plot`` extra; imported only when drawing)."""

from .bootstrap import plot_bootstrap
from .profile import plot_profile

__all__ = ["plot_bootstrap", "plot_profile"]
