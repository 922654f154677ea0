"""Intervals for a fit: likelihood profiles, the parametric bootstrap and ``confint``.

* :mod:`.profile`: lme4's ``profile`` (a :class:`ProfileResult`);
* :mod:`.bootstrap`: lme4's ``bootMer`` (a :class:`BootstrapResult`);
* :mod:`.confint`: lme4's ``confint`` with profile, Wald and bootstrap methods;
* :mod:`.parameters`: names, bounds and selection of the parameters.
"""

from .bootstrap import BootstrapResult, bootstrap, confint_bootstrap
from .confint import confint
from .parameters import parameter_names, variance_parameters
from .profile import ProfileResult, confint_profile, profile, profile_limits

__all__ = [
    "BootstrapResult",
    "ProfileResult",
    "bootstrap",
    "confint",
    "confint_bootstrap",
    "confint_profile",
    "parameter_names",
    "profile",
    "profile_limits",
    "variance_parameters",
]
