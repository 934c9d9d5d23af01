"""Mean response of the zero-inflated families for predictions, conditional effects, simple
effects and marginal means: (1 - zi) exp(eta) with zi = logistic(X_zi b_zi), from the draws of
(b, b_zi) or, for MAP and classic fits, with a delta-method SE from their joint covariance; and
weighted sums of these means over grid rows (differences, slopes, averages)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from ..zero_inflation import zi_columns, zi_design, zi_names, zi_probability
from .fit_coefficients import coef_names, map_coefficients, pooled_draws

__all__ = ["zi_mean_estimates", "zi_point_mean", "zi_point_parts", "zi_weighted_estimates"]


def _with_zi_columns(spec: Any, grid: pd.DataFrame) -> pd.DataFrame:
    """The grid plus the zero-inflation predictors it lacks, at their mean (numeric) or most
    frequent level (categorical)."""
    out = grid.copy()
    for c in zi_columns(spec.zi.rhs):
        if c not in out.columns and c in spec.data.columns:
            col = spec.data[c]
            numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
            out[c] = float(col.mean()) if numeric else col.value_counts().idxmax()
    return out


def zi_weighted_estimates(fit: Any, spec: Any, grid: pd.DataFrame, A: np.ndarray,
                          o: np.ndarray, W: np.ndarray, prob: float) -> pd.DataFrame:
    """estimate, se, lower, upper of each row of ``W @ m``, where m_i = (1 - zi_i) exp(A_i b +
    o_i) is the mean at grid row i (random effects at 0; zero-part predictors missing from the
    grid at their mean or most frequent level).

    Draw-based fits: posterior mean, SD and central ``prob`` interval of the draws of W m.
    MAP and classic fits: the estimate at the fitted coefficients, the delta-method SE over the
    joint covariance of (b, b_zi) and a normal interval.
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    Z = zi_design(spec, _with_zi_columns(spec, grid))
    W = np.atleast_2d(np.asarray(W, dtype=float))
    a = (1 - prob) / 2
    draws = pooled_draws(fit)
    if draws is not None:
        names = coef_names(spec) + [f"b_zi[{n}]" for n in zi_names(spec)]
        pos = {p.user: i for i, p in enumerate(fit._params)}
        theta = np.column_stack([draws[:, pos[n]] if n in pos else np.zeros(len(draws))
                                 for n in names])
        K1 = A.shape[1]
        m = (1 - expit(theta[:, K1:] @ Z.T)) * np.exp(theta[:, :K1] @ A.T + o[None, :])
        x = m @ W.T
        q = np.percentile(x, [100 * a, 100 * (1 - a)], axis=0)
        return pd.DataFrame({"estimate": x.mean(axis=0), "se": x.std(axis=0, ddof=1),
                             "lower": q[0], "upper": q[1]})
    est, grad, cov = zi_point_parts(fit, spec, A, Z, offset=o)
    e, G = W @ est, W @ grad
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", G, cov, G), 0.0))
    z = stats.norm.ppf(1 - a)
    return pd.DataFrame({"estimate": e, "se": se, "lower": e - z * se, "upper": e + z * se})


def zi_mean_estimates(fit: Any, spec: Any, grid: pd.DataFrame, A: np.ndarray, o: np.ndarray,
                      prob: float) -> pd.DataFrame:
    """estimate, se, lower, upper of the mean (1 - zi) exp(A b + o) at each grid row."""
    return zi_weighted_estimates(fit, spec, grid, A, o, np.eye(len(grid)), prob)


def zi_point_mean(fit: Any, spec: Any, A: np.ndarray, Z: np.ndarray, prob: float,
                  eta: np.ndarray | None = None, offset: np.ndarray | None = None
                  ) -> pd.DataFrame:
    """Zero-inflated mean (1 - zi) exp(eta) of a MAP or classic fit with a delta-method SE over
    the joint covariance of the coefficients b (rows ``A``) and b_zi (rows ``Z``); ``eta``
    defaults to A b + ``offset`` (random effects at 0)."""
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    est, grad, cov = zi_point_parts(fit, spec, A, Z, eta=eta, offset=offset)
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", grad, cov, grad), 0.0))
    z = stats.norm.ppf(0.5 + prob / 2)
    return pd.DataFrame({"estimate": est, "se": se, "lower": est - z * se, "upper": est + z * se})


def zi_point_parts(fit: Any, spec: Any, A: np.ndarray, Z: np.ndarray,
                   eta: np.ndarray | None = None, offset: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (1 - zi) exp(eta) per row, its gradient over (b, b_zi) per row, the joint
    covariance of (b, b_zi)) of a MAP or classic fit of a zero-inflated model."""
    names = coef_names(spec) + [f"b_zi[{n}]" for n in zi_names(spec)]
    coef = map_coefficients(fit, names, {p.user: i for i, p in enumerate(fit._params)})
    if eta is None:
        eta = A @ coef.estimate[:A.shape[1]] + offset
    mu, p = np.exp(eta), zi_probability(coef.estimate[A.shape[1]:], Z)
    est = (1 - p) * mu
    grad = np.hstack([est[:, None] * A, (-mu * p * (1 - p))[:, None] * Z])
    return est, grad, coef.cov
