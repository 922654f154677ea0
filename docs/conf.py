"""Sphinx configuration of the statsmodels_lmer documentation site.

Build (from the repository root)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

The tutorials (``docs/tutorials/*.md``, MyST notebooks) and the plots page are executed
during the build.
"""

from __future__ import annotations

import os

import statsmodels_lmer

project = "statsmodels_lmer"
author = "statsmodels_lmer developers"
copyright = "statsmodels_lmer developers"
version = release = statsmodels_lmer.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
]

exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
root_doc = "index"

# --- MyST and notebook execution --------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
# "force": run every notebook on every build (what CI does). Set
# STATSMODELS_LMER_DOCS_EXECUTE=cache to reuse unchanged notebooks' outputs locally.
nb_execution_mode = os.environ.get("STATSMODELS_LMER_DOCS_EXECUTE", "force")
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# --- API reference: autodoc + numpydoc --------------------------------------------------
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

# --- HTML -------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "statsmodels_lmer"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []
