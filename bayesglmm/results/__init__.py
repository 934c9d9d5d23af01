"""Fit objects: what ``Model.sample()``, ``Model.optimize()`` and the variational methods return.

Every fit shares one base (:class:`Fit`): the model it came from, the list of user-facing
parameters (:class:`~bayesglmm.core.naming.ParamName`) and the random-effect layout. All tables
use the user's names (``Intercept``, ``b[talk]``, ``sd[group:Int]``, ``r_re[3]``); Stan's
internal names (``beta[2]``, ``z_1[1,3]``) never appear, except for programs loaded with
:func:`bayesglmm.from_stan`, where the Stan names *are* the user's names.

Modules: ``base`` (:class:`Fit`), ``mcmc`` (:class:`MCMCFit`), ``map`` (:class:`MAPFit`),
``summary`` (posterior summaries, KDE mode, table formatting), ``layout`` (random-effect layout).
"""

from ..core.arviz_adapter import SAMPLER_STATS
from ..core.naming import ParamName, bracket_name, log_lik_names, resolve_params
from .base import Fit
from .layout import ReTerm, re_index, re_layout
from .map import MAPFit
from .mcmc import MCMCFit
from .summary import (
    MAP_COLUMNS,
    SUMMARY_COLUMNS,
    backend_lines,
    call_line,
    fmt_table,
    kde_mode,
    mcmc_summary_table,
    observed_response,
)

Param = ParamName  # the parameter-name record lives in bayesglmm.core.naming

__all__ = [
    "MAP_COLUMNS",
    "SAMPLER_STATS",
    "SUMMARY_COLUMNS",
    "Fit",
    "MAPFit",
    "MCMCFit",
    "Param",
    "ParamName",
    "ReTerm",
    "bracket_name",
    "backend_lines",
    "call_line",
    "fmt_table",
    "kde_mode",
    "log_lik_names",
    "mcmc_summary_table",
    "observed_response",
    "re_index",
    "re_layout",
    "resolve_params",
]
