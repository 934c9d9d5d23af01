"""The one place that talks to arviz: loading it quietly and building ``InferenceData`` from
draws held as numpy arrays."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["SAMPLER_STATS", "inference_data", "load_arviz"]

# sampler diagnostics: CmdStan column -> arviz sample_stats name
SAMPLER_STATS = {
    "lp__": "lp",
    "accept_stat__": "acceptance_rate",
    "stepsize__": "step_size",
    "treedepth__": "tree_depth",
    "n_leapfrog__": "n_steps",
    "divergent__": "diverging",
    "energy__": "energy",
}


def load_arviz() -> Any:
    """Import arviz with its ``FutureWarning`` on import silenced, and return the module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def inference_data(
    posterior: Mapping[str, np.ndarray],
    sample_stats: Mapping[str, np.ndarray],
    log_lik: np.ndarray | None = None,
    observed: np.ndarray | None = None,
) -> Any:
    """arviz ``InferenceData`` from arrays of shape (chain, draw[, ...]).

    Parameters
    ----------
    posterior : mapping of str to ndarray
        One (chain, draw) array per user-facing quantity, keyed by its user name.
    sample_stats : mapping of str to ndarray
        Sampler diagnostics under arviz's names (see :data:`SAMPLER_STATS`); ``diverging`` is
        converted to booleans.
    log_lik : ndarray, optional
        Pointwise log-likelihood, shape (chain, draw, obs), stored as ``log_likelihood["y"]``.
    observed : ndarray, optional
        The observed response, stored as ``observed_data["y"]``.

    Examples
    --------
    >>> import numpy as np
    >>> idata = inference_data({"b[x]": np.zeros((2, 10))}, {})
    >>> idata.posterior["b[x]"].shape
    (2, 10)
    """
    az = load_arviz()
    stats = dict(sample_stats)
    if "diverging" in stats:
        stats["diverging"] = np.asarray(stats["diverging"]).astype(bool)
    kw: dict[str, Any] = {}
    dims = {}
    if log_lik is not None:
        kw["log_likelihood"] = {"y": log_lik}
        dims["y"] = ["obs"]
    if observed is not None:
        kw["observed_data"] = {"y": np.asarray(observed)}
        dims["y"] = ["obs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.from_dict(posterior=dict(posterior), sample_stats=stats, dims=dims or None, **kw)
