"""The functions of the family table (:mod:`bayesglmm.families`): response checks, link
functions and random-number generators, referenced by name from each table entry.

Response checks take the response values, the column name and the family name and raise a
:class:`ValueError` naming the column and the offending values. Random-number generators take
the linear predictor ``eta`` (any shape; for ordinal families without the cutpoints), a dict of
parameter values broadcastable against ``eta``, a numpy Generator and optional ``trials``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit

__all__ = [
    "check_binary",
    "check_categories",
    "check_counts",
    "check_positive",
    "check_real",
    "check_unit_interval",
    "exp",
    "identity",
    "log",
    "logit",
    "probs_ordered",
    "probs_sequential_common",
    "rng_bernoulli",
    "rng_beta",
    "rng_binomial",
    "rng_gamma",
    "rng_gaussian",
    "rng_lognormal",
    "rng_neg_binomial",
    "rng_ordered",
    "rng_poisson",
    "rng_sequential",
    "rng_sequential_common",
    "rng_student_t",
    "rng_zero_inflated_neg_binomial",
    "rng_zero_inflated_poisson",
]


# ----------------------------------------------------------------------------- response checks


def _values_preview(values: Any, limit: int = 5) -> str:
    vals = [int(v) if isinstance(v, float) and v.is_integer() else v
            for v in dict.fromkeys(np.asarray(values).ravel().tolist())]
    text = ", ".join(repr(v) for v in vals[:limit])
    return text + (", ..." if len(vals) > limit else "")


def _require_numeric(y: np.ndarray, column: str, family: str) -> np.ndarray:
    try:
        arr = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"Response column '{column}' must be numeric for family '{family}' "
            f"(found values such as {_values_preview(y)})."
        ) from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Response column '{column}' contains non-finite values (inf).")
    return arr


def check_real(y: np.ndarray, column: str, family: str) -> None:
    _require_numeric(y, column, family)


def check_positive(y: np.ndarray, column: str, family: str) -> None:
    arr = _require_numeric(y, column, family)
    bad = arr[arr <= 0]
    if bad.size:
        raise ValueError(
            f"Response column '{column}' must be strictly positive for family '{family}': "
            f"{bad.size} value(s) <= 0 (e.g. {_values_preview(bad)})."
        )


def check_counts(y: np.ndarray, column: str, family: str) -> None:
    arr = _require_numeric(y, column, family)
    bad = arr[(arr < 0) | (arr != np.round(arr))]
    if bad.size:
        raise ValueError(
            f"Column '{column}' must hold non-negative integer counts for family '{family}': "
            f"{bad.size} invalid value(s) (e.g. {_values_preview(bad)})."
        )


def check_binary(y: np.ndarray, column: str, family: str) -> None:
    arr = _require_numeric(y, column, family)
    bad = arr[(arr != 0) & (arr != 1)]
    if bad.size:
        raise ValueError(
            f"Response column '{column}' must be 0/1 for family '{family}': {bad.size} value(s) "
            f"other than 0 and 1 (e.g. {_values_preview(bad)}). A two-level categorical or a "
            "boolean column also works."
        )


def check_unit_interval(y: np.ndarray, column: str, family: str) -> None:
    arr = _require_numeric(y, column, family)
    bad = arr[(arr <= 0) | (arr >= 1)]
    if bad.size:
        raise ValueError(
            f"Response column '{column}' must lie strictly between 0 and 1 for family "
            f"'{family}': {bad.size} value(s) outside (0, 1) (e.g. {_values_preview(bad)}). "
            "Proportions of exactly 0 or 1 need another model (e.g. binomial counts)."
        )


def check_categories(y: np.ndarray, column: str, family: str) -> None:
    arr = _require_numeric(y, column, family)
    bad = arr[(arr < 1) | (arr != np.round(arr))]
    if bad.size:
        raise ValueError(
            f"Response column '{column}' must hold category codes 1..C for family '{family}' "
            f"(or be an ordered categorical): {bad.size} invalid value(s) "
            f"(e.g. {_values_preview(bad)})."
        )
    codes = arr.astype(int)
    C = int(codes.max())
    observed = set(codes.tolist())
    if len(observed) < 2:
        raise ValueError(
            f"Family '{family}': response column '{column}' has only one observed category "
            f"({C}); an ordinal model needs at least two."
        )
    missing = [k for k in range(1, C + 1) if k not in observed]
    if missing:
        raise ValueError(
            f"Family '{family}': response column '{column}' has unobserved categories "
            f"{missing} between 1 and {C}; the cutpoints around them are not identified. "
            "Recode the categories (e.g. merge them) or pass levels= with the observed levels."
        )


# ----------------------------------------------------------------------------- inverse links


def identity(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=float)


def exp(x: np.ndarray) -> np.ndarray:
    return np.exp(x)


def log(x: np.ndarray) -> np.ndarray:
    return np.log(x)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.log(p) - np.log1p(-p)


# ----------------------------------------------------------------------------- rngs
# Each takes the linear predictor eta (any shape; for ordinal families eta excludes cutpoints),
# a dict of parameter values broadcastable against eta, a numpy Generator, and optional trials.


def rng_gaussian(eta, p, rng, trials=None):
    """Raise ValueError unless ``y`` is numeric and finite (names ``column``)."""
    return rng.normal(eta, p["sigma"])


def rng_lognormal(eta, p, rng, trials=None):
    """exp(Normal(eta, sigma)) draws."""
    return np.exp(rng.normal(eta, p["sigma"]))


def rng_student_t(eta, p, rng, trials=None):
    """eta + sigma * t(nu) draws."""
    return eta + p["sigma"] * rng.standard_t(p["nu"], size=np.shape(eta))


def rng_gamma(eta, p, rng, trials=None):
    """Gamma draws with mean exp(eta) and shape ``shape``."""
    shape = p["shape"]
    return rng.gamma(shape, np.exp(eta) / shape)


def rng_bernoulli(eta, p, rng, trials=None):
    """Bernoulli(logistic(eta)) draws."""
    return rng.binomial(1, expit(eta))


def rng_binomial(eta, p, rng, trials=None):
    """Binomial(trials, logistic(eta)) draws."""
    return rng.binomial(np.asarray(trials, dtype=int), expit(eta))


def rng_poisson(eta, p, rng, trials=None):
    """Poisson(exp(eta)) draws."""
    return rng.poisson(np.exp(eta))


def rng_neg_binomial(eta, p, rng, trials=None):
    """NB2 draws with mean exp(eta) and precision phi (gamma-Poisson mixture)."""
    mu = np.exp(eta)
    phi = p["phi"]
    return rng.poisson(rng.gamma(phi, mu / phi))


def rng_zero_inflated_poisson(eta, p, rng, trials=None):
    """Poisson(exp(eta)) draws, zero with probability ``p["zi"]``."""
    # p["zi"]: probability of a structural zero, broadcastable against eta
    count = rng.poisson(np.exp(eta))
    return np.where(rng.uniform(size=np.shape(count)) < p["zi"], 0, count)


def rng_zero_inflated_neg_binomial(eta, p, rng, trials=None):
    """NB2 draws, zero with probability ``p["zi"]``."""
    count = rng_neg_binomial(eta, p, rng)
    return np.where(rng.uniform(size=np.shape(count)) < p["zi"], 0, count)


def rng_beta(eta, p, rng, trials=None):
    """Beta(mu phi, (1 - mu) phi) draws, mu = logistic(eta)."""
    mu = expit(eta)
    phi = p["phi"]
    return rng.beta(mu * phi, (1 - mu) * phi)


def rng_ordered(eta, p, rng, trials=None):
    """Category draws 1..C of the cumulative logit model with ``p["cutpoints"]``."""
    c = np.asarray(p["cutpoints"], dtype=float)  # (..., C-1)
    eta = np.asarray(eta, dtype=float)
    cdf = expit(c[..., None, :] - eta[..., :, None]) if c.ndim > 1 else expit(c - eta[..., None])
    u = rng.uniform(size=eta.shape)[..., None]
    return 1 + np.sum(u > cdf, axis=-1)


def rng_sequential_common(eta, p, rng, trials=None):
    """Category draws of the continuation-ratio model with one predictor per row."""
    # eta: (...) one predictor per observation; cutpoints (C-1,) or (S, C-1) against eta (S, n)
    c = np.asarray(p["cutpoints"], dtype=float)
    eta = np.asarray(eta, dtype=float)
    c = c[..., None, :] if c.ndim > 1 else c
    cont = rng.uniform(size=eta.shape + (c.shape[-1],)) < expit(eta[..., None] - c)
    return 1 + np.cumprod(cont, axis=-1).sum(axis=-1)


def rng_sequential(eta, p, rng, trials=None):
    """Category draws of the continuation-ratio model with one predictor per transition."""
    # eta: (..., C-1) transition-specific predictors; cutpoints (C-1,)
    c = np.asarray(p["cutpoints"], dtype=float)
    cont = rng.uniform(size=np.shape(eta)) < expit(np.asarray(eta) - c)
    # category = 1 + number of leading successful transitions
    stop = np.cumprod(cont, axis=-1)
    return 1 + stop.sum(axis=-1)


# ----------------------------------------------------------------------------- category probabilities
# Ordinal families: P(y = k), k = 1..C, given the linear predictor ``eta`` (S, n) (without the
# cutpoints, one value per observation) and the cutpoints (S, C - 1); returns (S, n, C).


def probs_ordered(eta, cutpoints):
    """Category probabilities of the cumulative logit model, P(y <= k) = logistic(c_k - eta)."""
    eta, c = np.asarray(eta, dtype=float), np.asarray(cutpoints, dtype=float)
    cdf = expit(c[:, None, :] - eta[:, :, None])
    S, n = eta.shape
    full = np.concatenate([np.zeros((S, n, 1)), cdf, np.ones((S, n, 1))], axis=-1)
    return np.diff(full, axis=-1)


def probs_sequential_common(eta, cutpoints):
    """Category probabilities of the continuation-ratio model with one predictor for every
    step: P(y = k | y >= k) = logistic(c_k - eta), k < C."""
    eta, c = np.asarray(eta, dtype=float), np.asarray(cutpoints, dtype=float)
    stop = expit(c[:, None, :] - eta[:, :, None])  # (S, n, C-1)
    S, n = eta.shape
    reach = np.cumprod(np.concatenate([np.ones((S, n, 1)), 1 - stop], axis=-1), axis=-1)
    return reach * np.concatenate([stop, np.ones((S, n, 1))], axis=-1)
