"""Predictive model comparison through arviz from the pointwise ``log_lik`` of the generated
programs: ``fit.loo()`` (PSIS-LOO), ``fit.waic()`` and ``bayesglmm.compare(fit1, fit2, ...)``."""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd

from ..core.arviz_adapter import load_arviz

__all__ = ["compare", "loo", "waic"]


def _idata(fit: Any, what: str):
    if getattr(fit, "_draws", None) is None:
        raise ValueError(f"{what} needs posterior draws: use sample(), variational() or pathfinder()")
    if getattr(fit, "_log_lik", None) is None:
        raise ValueError(f"{what} needs the pointwise log-likelihood: the Stan program has no "
                         "generated quantity 'log_lik'")
    return fit.idata


def loo(fit: Any):
    """PSIS leave-one-out cross-validation (arviz ``ELPDData``: elpd_loo, se, p_loo, Pareto k
    diagnostics; pointwise values in ``loo_i``, ``pareto_k``).

    Parameters
    ----------
    fit : MCMCFit or VariationalFit
        A fit with draws and the pointwise log-likelihood.

    Returns
    -------
    arviz.ELPDData

    Examples
    --------
    >>> fit.loo()  # doctest: +SKIP
    """
    idata = _idata(fit, "loo()")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_arviz().loo(idata, pointwise=True)


def waic(fit: Any):
    """Widely applicable information criterion (arviz ``ELPDData``: elpd_waic, se, p_waic; pointwise ``waic_i``).
    (Always pointwise: arviz 0.23 mislabels the non-pointwise result.)

    Parameters
    ----------
    fit : MCMCFit or VariationalFit
        A fit with draws and the pointwise log-likelihood.

    Returns
    -------
    arviz.ELPDData
    """
    idata = _idata(fit, "waic()")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_arviz().waic(idata, pointwise=True)


def compare(*fits: Any, ic: str = "loo", **named: Any) -> pd.DataFrame:
    """Rank fits by expected log predictive density (arviz ``compare``: elpd, p, elpd_diff,
    weight, se, dse, warning, per model). Fits given positionally are named ``model1``, ...;
    keyword arguments name them (``compare(a=fit1, b=fit2)``).

    Parameters
    ----------
    *fits : fit objects
        Fits with draws of models fitted to the same data.
    ic : {"loo", "waic"}
        The criterion.
    **named : fit objects
        Fits under the given names.

    Returns
    -------
    pandas.DataFrame
        One row per model, best first.

    Raises
    ------
    ValueError
        Fewer than two fits, or fits to different numbers of observations.

    Examples
    --------
    >>> bayesglmm.compare(full=fit1, reduced=fit2)  # doctest: +SKIP
    """
    if ic not in ("loo", "waic"):
        raise ValueError(f"ic must be 'loo' or 'waic', not {ic!r}")
    models = {f"model{i}": f for i, f in enumerate(fits, start=1)}
    models.update(named)
    if len(models) < 2:
        raise ValueError("compare() needs at least two fits")
    data = {name: _idata(f, "compare()") for name, f in models.items()}
    n_obs = {name: d.log_likelihood["y"].shape[-1] for name, d in data.items()}
    if len(set(n_obs.values())) > 1:
        raise ValueError("compare(): the fits have different numbers of observations "
                         + str(n_obs) + "; they must be fitted to the same data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_arviz().compare(data, ic=ic)
