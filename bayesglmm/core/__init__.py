"""The bottom layer of bayesglmm: parameter names, argument checks and the arviz adapter.

Every other module may import from here; nothing here imports any other part of the package.
"""

from .arviz_adapter import SAMPLER_STATS, inference_data, load_arviz
from .naming import (
    ParamName,
    bracket_name,
    bridgestan_names,
    is_hidden_stan_name,
    log_lik_names,
    resolve_params,
    sd_name,
)
from .validate import check_delta, check_init, check_int, check_seed

__all__ = [
    "SAMPLER_STATS",
    "ParamName",
    "bracket_name",
    "bridgestan_names",
    "check_delta",
    "check_init",
    "check_int",
    "check_seed",
    "inference_data",
    "is_hidden_stan_name",
    "load_arviz",
    "log_lik_names",
    "resolve_params",
    "sd_name",
]
