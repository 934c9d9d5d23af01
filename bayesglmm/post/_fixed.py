"""What post-estimation needs from any fit: the fixed effects (names, estimates, FULL
covariance, degrees of freedom of a contrast, draws for sampled fits) and the design of the
fixed part evaluated on new rows (reference grids), in the fit's own coding or in sum-to-zero
coding.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.naming import bracket_name
from ..design import fixed_effects
from ..formula import IDENT, inject_contrasts
from ..inference.optimize import constrain_fn
from ..results import MAPFit, MCMCFit
from ..results_classic import ClassicFit

__all__ = ["FixedInfo", "fixed_info", "Design", "design_of"]


@dataclass
class FixedInfo:
    """names: ['Intercept', 'b[x]', ...]; beta, V (full covariance); df(L) -> float;
    draws: (n_draws, p) for sampled fits (None otherwise); gaussian: F/t layout; kind of fit."""

    names: list[str]
    beta: np.ndarray
    V: np.ndarray
    df: Callable[[np.ndarray], float]
    draws: np.ndarray | None
    gaussian: bool
    kind: str


def _inf(_L: np.ndarray) -> float:
    return math.inf


def fixed_info(fit, cutpoints: bool = False) -> FixedInfo:
    """Fixed effects of a ClassicFit, MAPFit or MCMCFit (kinds Intercept and b; with
    ``cutpoints``, the cutpoints of an ordinal family after them, with their joint covariance)."""
    params = [p for p in fit._params if p.kind in ("Intercept", "b")]
    names = [p.user for p in params]
    if not names:
        raise ValueError("the model has no fixed effects to test")
    spec = fit.spec
    if spec is None:
        raise ValueError("anova() and lsmeans() need a model built from a formula (not from_stan)")
    if cutpoints:
        params += [p for p in fit._params if p.kind == "cutpoints"]
        names = [p.user for p in params]
    gaussian = spec.family.reml  # t/F layout with denominator df
    if isinstance(fit, ClassicFit) and not cutpoints:  # else the delta method of MAP fits
        return FixedInfo(list(fit.fixed_names), fit.beta.copy(), fit.vcov.to_numpy(), fit.fixed_df,
                         None, fit.gaussian, "classic")
    if isinstance(fit, MCMCFit):
        d = fit.draws(names, inc_random=False)[names].to_numpy()
        return FixedInfo(names, d.mean(axis=0), np.cov(d, rowvar=False).reshape(len(names), -1),
                         _inf, d, gaussian, "mcmc")
    if isinstance(fit, MAPFit):
        if fit.cov_unc is None:
            raise ValueError("this MAP fit has no covariance (se_method='none' or a singular Hessian)")
        bs = fit.model.bridgestan_model(False)
        all_names = [bracket_name(n) for n in bs.param_names(include_tp=True, include_gq=True)]
        pos = {n: i for i, n in enumerate(all_names)}
        idx = np.array([pos[p.stan] for p in params])
        c = constrain_fn(bs, 1)
        u = np.asarray(fit.theta_unc, dtype=float)
        J = np.empty((idx.size, u.size))
        for i in range(u.size):
            h = 1e-6 * max(1.0, abs(u[i]))
            e = np.zeros(u.size)
            e[i] = h
            J[:, i] = (c(u + e)[idx] - c(u - e)[idx]) / (2 * h)
        beta = fit.summary().loc[names, "estimate"].to_numpy()
        kind = "classic" if isinstance(fit, ClassicFit) else "map"
        return FixedInfo(names, beta, J @ fit.cov_unc @ J.T, _inf, None, gaussian, kind)
    raise TypeError(f"expected a fit from classic(), optimize() or sample(), not {type(fit).__name__}")


# --------------------------------------------------------------------------- designs


@dataclass
class Design:
    """Fixed-part design on new rows: X (with the intercept column first when the model has
    one), column names as in the fit (Intercept, b[...]), term -> column positions."""

    X: np.ndarray
    names: list[str]
    terms: list[tuple[str, tuple[int, ...]]]


def predictors(spec) -> tuple[dict[str, list], list[str]]:
    """(categorical predictors -> categories in coding order, numeric predictors) of the fixed
    part."""
    data = spec.data
    used = list(dict.fromkeys(re.findall(IDENT, spec.parsed.fixed)))
    factors: dict[str, list] = {}
    numeric: list[str] = []
    for v in used:
        if v not in data.columns:
            continue
        s = data[v]
        if isinstance(s.dtype, pd.CategoricalDtype):
            factors[v] = list(s.cat.categories)
        elif pd.api.types.is_numeric_dtype(s) and v not in getattr(spec.response, "name", ""):
            numeric.append(v)
    return factors, numeric


def grid(spec, numeric_values: dict[str, list[float]]) -> pd.DataFrame:
    """Full factorial grid of the categorical predictors (first varies slowest) crossed with
    the given values of the numeric predictors."""
    factors, numeric = predictors(spec)
    keys = list(factors) + numeric
    values = [factors[k] for k in factors] + [numeric_values[k] for k in numeric]
    rows = list(itertools.product(*values)) if keys else [()]
    g = pd.DataFrame(rows, columns=keys)
    for k, levs in factors.items():
        g[k] = pd.Categorical(g[k], categories=levs, ordered=spec.data[k].cat.ordered)
    return g


def design_of(spec, new: pd.DataFrame, coding: str = "fit") -> Design:
    """The fixed-part design on ``new`` rows, in the fit's coding or in sum-to-zero coding
    (``coding="sum"``; ordered factors keep their polynomial contrasts)."""
    if coding == "fit":
        rhs = spec.fixed.rhs
    else:
        factors, _ = predictors(spec)
        wrap = {k: "Poly" if spec.data[k].cat.ordered else "Sum" for k in factors}
        rhs = inject_contrasts(spec.parsed.fixed, wrap)
    lev = {c: [str(v) for v in ls] for c, ls in predictors(spec)[0].items()}
    fe = fixed_effects(rhs, new, lev)
    X = np.asarray(fe.X, dtype=float)
    names = [f"b[{n}]" for n in fe.names]
    terms = list(fe.term_columns)
    if fe.intercept and spec.family.has_intercept:
        X = np.column_stack([np.ones(len(new)), X])
        names = ["Intercept"] + names
        terms = [(t, tuple(i + 1 for i in cols)) for t, cols in terms]
    return Design(X, names, terms)
