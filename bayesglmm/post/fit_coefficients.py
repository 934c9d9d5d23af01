"""The fixed-effect coefficients of any fit, as predictions, effects and marginal means need
them: draws, or estimates with their covariance; and the summaries of either (mean, SD and
quantile interval of draws; the delta method for estimates).

Fits plug in through a small interface: draw-based fits (MCMC, variational) expose their draws;
classic fits (``ClassicFit``) by their ``fixed_names``, ``beta``, ``vcov`` and ``fixed_df(L)``;
MAP fits by the delta method on Stan's unconstrained scale; any other fit provides
``fixed_effects_cov() -> (names, estimate, cov)`` with names ``"Intercept"``, ``"b[<column>]"``
(optionally an attribute ``df`` for t quantiles).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..core.naming import bracket_name
from ..inference.optimize import constrain_fn, constrained_jacobian

__all__ = ["Coefficients", "coef_names", "coefficients", "dlinkinv", "map_coefficients",
           "model_spec", "point_coefficients", "pooled_draws", "summarise_draws"]


def model_spec(fit: Any, what: str):
    """The ModelSpec behind ``fit``; a clear error for programs without one (from_stan)."""
    spec = getattr(fit.model.program, "spec", None)
    if spec is None:
        raise ValueError(
            f"{what} needs a model built from a formula (glmer, lmer, glm, lm); "
            "programs loaded with from_stan() have no formula to evaluate new data with"
        )
    if spec.family.category_specific:
        raise ValueError(
            f"{what} is not available for family '{spec.family.name}' with category-specific "
            "coefficients: each predictor has one coefficient per transition, so there is no "
            "single linear predictor to average or vary. Fit the model with one coefficient per "
            f"predictor, glmer(..., family='{spec.family.name}', category_specific=False), to "
            "get marginal means and effects.")
    return spec


@dataclass(frozen=True)
class Coefficients:
    """Fixed-effect coefficients ``Intercept, b[...]`` of a fit: either ``draws`` (S, 1 + K)
    or ``estimate`` (1 + K) with covariance ``cov``; ``df`` (or ``df_fn(contrast)``) for t
    quantiles (None: normal)."""

    names: tuple[str, ...]
    draws: np.ndarray | None = None
    estimate: np.ndarray | None = None
    cov: np.ndarray | None = None
    df: float | None = None
    df_fn: Any = None  # contrast L (1 + K) -> df (classic fits: Satterthwaite)

    @property
    def draw_based(self) -> bool:
        """Whether the coefficients are draws (True) or an estimate with a covariance."""
        return self.draws is not None


def coef_names(spec: Any) -> list[str]:
    """The names ``Intercept, b[<column>]...`` of the fixed-effect coefficients of ``spec``, in
    the order of the design rows ``[1, X]``."""
    return ["Intercept"] + [f"b[{n}]" for n in spec.fixed.names]


def pooled_draws(fit: Any) -> np.ndarray | None:
    """All draws (S, P) of a draw-based fit in its parameter order, or None."""
    d = getattr(fit, "_draws", None)
    return None if d is None else d.reshape(-1, d.shape[-1])


def coefficients(fit: Any, what: str = "this") -> Coefficients:
    """The fixed-effect coefficients of ``fit`` (see the module docstring for the interface).

    Parameters
    ----------
    fit : fit object
        A fit of a formula model.
    what : str
        The calling function's name, for error messages.

    Returns
    -------
    Coefficients
        Names, and either draws or an estimate with its covariance.
    """
    spec = model_spec(fit, what)
    names = coef_names(spec)
    pos = {p.user: i for i, p in enumerate(fit._params)}
    draws = pooled_draws(fit)
    if draws is not None:
        cols = [draws[:, pos[n]] if n in pos else np.zeros(len(draws)) for n in names]
        return Coefficients(tuple(names), draws=np.column_stack(cols))
    if getattr(fit, "vcov", None) is not None and getattr(fit, "beta", None) is not None:
        # the classic fit (bayesglmm.results_classic.ClassicFit): GLS/ML estimates, full vcov,
        # Satterthwaite df per contrast
        return _from_estimates(names, list(fit.fixed_names), fit.beta, np.asarray(fit.vcov),
                               df_fn=getattr(fit, "fixed_df", None))
    if callable(getattr(fit, "fixed_effects_cov", None)):
        got, est, cov = fit.fixed_effects_cov()
        return _from_estimates(names, list(got), est, cov, df=getattr(fit, "df", None))
    if getattr(fit, "theta_unc", None) is not None and getattr(fit, "cov_unc", None) is not None:
        return map_coefficients(fit, names, pos)
    raise ValueError(f"{what}: the fit has neither draws nor a covariance of its estimates")


def _from_estimates(names: list[str], got: list[str], est: Any, cov: Any, *,
                    df: float | None = None, df_fn: Any = None) -> Coefficients:
    """Coefficients in ``names`` order from estimates/covariance in ``got`` order (coefficients
    a fit lacks, e.g. the intercept of an ordinal family, are 0 with no variance)."""
    idx = {n: i for i, n in enumerate(got)}
    K = len(names)
    e, c = np.zeros(K), np.zeros((K, K))
    rr = [r for r, n in enumerate(names) if n in idx]
    ii = [idx[names[r]] for r in rr]
    e[rr] = np.asarray(est, dtype=float)[ii]
    c[np.ix_(rr, rr)] = np.asarray(cov, dtype=float)[np.ix_(ii, ii)]
    if df_fn is not None:
        # the fit's df function takes contrasts over its own coefficient order
        def df_of(L: np.ndarray, _fn=df_fn, _rr=rr, _ii=ii, _n=len(got)) -> float:
            full = np.zeros(_n)
            full[_ii] = np.asarray(L, dtype=float)[_rr]
            return float(_fn(full))

        return Coefficients(tuple(names), estimate=e, cov=c, df_fn=df_of)
    return Coefficients(tuple(names), estimate=e, cov=c, df=df)


def point_coefficients(fit: Any, names: list[str]) -> Coefficients:
    """Estimates of some parameters of a MAP or classic fit and their joint covariance.

    The covariance comes by the delta method from the covariance of the estimates on Stan's
    unconstrained scale.

    Parameters
    ----------
    fit : MAPFit or ClassicFit
        A fit of ``optimize()`` or ``classic()``.
    names : list of str
        Reported names of parameters of the fit, e.g. ``["Intercept", "b[talk]"]``.

    Returns
    -------
    Coefficients
        ``estimate`` (in the order of ``names``) and ``cov``.

    Raises
    ------
    ValueError
        The fit has no covariance of its estimates (``se_method="none"`` or a singular
        Hessian).

    Examples
    --------
    >>> c = point_coefficients(mode, ["Intercept", "b[talk]"])  # doctest: +SKIP
    >>> c.estimate, c.cov  # doctest: +SKIP
    """
    if getattr(fit, "theta_unc", None) is None or getattr(fit, "cov_unc", None) is None:
        raise ValueError("the fit has no covariance of its estimates (se_method='none' or a "
                         "singular Hessian)")
    return map_coefficients(fit, names, {p.user: i for i, p in enumerate(fit._params)})


def map_coefficients(fit: Any, names: list[str], pos: dict[str, int]) -> Coefficients:
    """Delta method: J cov_unc J' with J the Jacobian of the constrained coefficients."""
    bs = fit.model.bridgestan_model(False)
    all_names = [bracket_name(n) for n in bs.param_names(include_tp=True, include_gq=True)]
    where = {n: i for i, n in enumerate(all_names)}
    stan = {p.user: p.stan for p in fit._params}
    present = [n for n in names if n in pos]
    index = [where[stan[n]] for n in present]
    constrain = constrain_fn(bs, 1)
    est, J = constrained_jacobian(constrain, np.asarray(fit.theta_unc, dtype=float), index)
    return _from_estimates(names, present, est, np.asarray(J @ fit.cov_unc) @ J.T)


def dlinkinv(link: Any, eta: np.ndarray) -> np.ndarray:
    """Derivative of the inverse link at ``eta`` (central differences)."""
    h = 1e-6 * np.maximum(1.0, np.abs(eta))
    return (link(eta + h) - link(eta - h)) / (2 * h)


def summarise_draws(x: np.ndarray, prob: float) -> pd.DataFrame:
    """Columns estimate (mean), se (sd), lower, upper (central ``prob`` interval) of draws
    ``x`` (S, n)."""
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    a = (1 - prob) / 2
    q = np.percentile(x, [100 * a, 100 * (1 - a)], axis=0)
    return pd.DataFrame({"estimate": x.mean(axis=0), "se": x.std(axis=0, ddof=1),
                         "lower": q[0], "upper": q[1]})
