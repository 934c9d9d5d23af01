"""Mean response of the zero-inflated families for conditional effects: (1 - zi) exp(eta) with
zi = logistic(X_zi b_zi), from the draws of (b, b_zi) or, for MAP and classic fits, with a
delta-method SE from their joint covariance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from ..zero_inflation import zi_columns, zi_design, zi_names
from .predict import pooled_draws, zi_point_mean

__all__ = ["zi_mean_estimates"]


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


def zi_mean_estimates(fit: Any, spec: Any, grid: pd.DataFrame, A: np.ndarray, o: np.ndarray,
                      prob: float) -> pd.DataFrame:
    """estimate, se, lower, upper of the mean (1 - zi) exp(A b + o) at each grid row."""
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    Z = zi_design(spec, _with_zi_columns(spec, grid))
    names = (["Intercept"] + [f"b[{n}]" for n in spec.fixed.names]
             + [f"b_zi[{n}]" for n in zi_names(spec)])
    K1 = A.shape[1]
    pos = {p.user: i for i, p in enumerate(fit._params)}
    draws = pooled_draws(fit)
    a = (1 - prob) / 2
    if draws is not None:
        theta = np.column_stack([draws[:, pos[n]] if n in pos else np.zeros(len(draws))
                                 for n in names])
        m = (1 - expit(theta[:, K1:] @ Z.T)) * np.exp(theta[:, :K1] @ A.T + o[None, :])
        q = np.percentile(m, [100 * a, 100 * (1 - a)], axis=0)
        return pd.DataFrame({"estimate": m.mean(axis=0), "se": m.std(axis=0, ddof=1),
                             "lower": q[0], "upper": q[1]})
    return zi_point_mean(fit, spec, A, Z, prob, offset=o)
