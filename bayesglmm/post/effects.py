"""Conditional effects and simple effects.

``conditional_effects(fit, "talk:perf")``: the predicted mean (response scale, random effects
at 0) over the focal predictor, at the moderator's mean - SD, mean, mean + SD (or at each of its
levels), all other predictors at their means / most frequent level. ``simple_effects(fit,
"talk:perf")``: the slope of the focal predictor (or the pairwise differences of its levels) at
each moderator value.

Draw-based fits (sample, variational, pathfinder): mean, sd and central quantile interval over
the draws. MAP fits and any fit providing ``fixed_effects_cov()`` (see
:mod:`bayesglmm.post.fit_coefficients`): delta-method SE and normal (or t(df)) interval.

Ordinal families (ordered; sequential with ``category_specific=False``): the mean class, or
with ``categorical=True`` the probability of each category (:mod:`bayesglmm.post.ordinal`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..design import fixed_design, predictor_names
from ._zi import zi_mean_estimates, zi_weighted_estimates
from .effects_result import ConditionalEffects, SimpleEffects
from .fit_coefficients import Coefficients, coef_names, coefficients, dlinkinv, model_spec
from .ordinal import ordinal_estimates, ordinal_response

__all__ = ["ConditionalEffects", "SimpleEffects", "conditional_effects", "simple_effects"]

STEP = 1e-4  # forward-difference step of simple slopes


# --------------------------------------------------------------------------- the grid


def _parse_effect(effect: Any, spec: Any, max_vars: int, fn: str) -> list[str]:
    if not isinstance(effect, str) or not effect.strip():
        raise ValueError(f"{fn}: effect must be a string like 'talk' or 'talk:perf', got {effect!r}")
    names = [v.strip() for v in effect.split(":")]
    if len(names) > max_vars:
        raise ValueError(f"{fn}: effect '{effect}' names {len(names)} variables; at most two "
                         "(focal:moderator) are supported")
    if fn == "simple_effects()" and len(names) != 2:
        raise ValueError(f"simple_effects(): effect must name two variables 'focal:moderator', "
                         f"got '{effect}'")
    preds = predictor_names(spec)
    for v in names:
        if v not in preds:
            raise ValueError(f"{fn}: '{v}' is not a predictor of the fixed part; predictors: "
                             + ", ".join(preds))
    if len(set(names)) != len(names):
        raise ValueError(f"{fn}: effect '{effect}' repeats a variable")
    return names


def _levels(spec: Any) -> dict[str, tuple[str, ...]]:
    return dict(spec.factors)


def _typical(spec: Any) -> dict[str, Any]:
    """Every predictor at its mean (numeric) or most frequent level (categorical)."""
    levels = _levels(spec)
    out = {}
    for v in predictor_names(spec):
        col = spec.data[v]
        if v in levels:
            out[v] = col.astype(str).value_counts().reindex(levels[v]).idxmax()
        else:
            out[v] = float(np.mean(col.to_numpy(dtype=float)))
    return out


def _moderator_values(spec: Any, m: str, sd_multiplier: float, sd_slice: bool | None):
    """(values, description) of the moderator."""
    levels = _levels(spec)
    if m in levels:
        return list(levels[m]), "levels"
    x = spec.data[m].to_numpy(dtype=float)
    distinct = np.unique(x)
    if sd_slice or (sd_slice is None and distinct.size >= 6):
        mu, sd = x.mean(), x.std(ddof=1)
        k = sd_multiplier
        return [round(mu - k * sd, 2), round(mu, 2), round(mu + k * sd, 2)], \
            f"mean - {k:g} SD, mean, mean + {k:g} SD"
    return [float(v) for v in distinct], "observed values"


def _grid(spec: Any, settings: dict[str, list[Any]]) -> pd.DataFrame:
    """Cartesian grid of ``settings`` (in order), other predictors at typical values."""
    typical = _typical(spec)
    idx = pd.MultiIndex.from_product(list(settings.values()), names=list(settings))
    grid = idx.to_frame(index=False)
    for v, val in typical.items():
        if v not in grid:
            grid[v] = val
    return grid


# --------------------------------------------------------------------------- estimation


def _rows(spec: Any, coef: Coefficients, grid: pd.DataFrame):
    """Linear-predictor rows (n, 1 + K) of the grid."""
    X, offset = fixed_design(spec, grid)
    return np.column_stack([np.ones(len(grid)), X]), offset


def _estimate(spec: Any, coef: Coefficients, contrasts: list[tuple[np.ndarray, np.ndarray,
              np.ndarray]], prob: float) -> pd.DataFrame:
    """Estimates of sum_i w_i * linkinv(A_i beta + o_i) for each (A, o, w) in ``contrasts``
    (A: rows x (1+K) design, o: offsets, w: row weights), summarised as estimate/se/lower/upper."""
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    a = (1 - prob) / 2
    f = spec.family.linkinv
    recs = []
    for A, o, w in contrasts:
        if coef.draw_based:
            x = f(coef.draws @ A.T + o[None, :]) @ w
            q = np.percentile(x, [100 * a, 100 * (1 - a)])
            recs.append((x.mean(), x.std(ddof=1), q[0], q[1]))
        else:
            eta = A @ coef.estimate + o
            est = float(f(eta) @ w)
            grad = (w * dlinkinv(f, eta)) @ A
            se = float(np.sqrt(max(grad @ coef.cov @ grad, 0.0)))
            df = coef.df_fn(grad) if coef.df_fn is not None else coef.df
            z = stats.norm.ppf(1 - a) if df is None or not np.isfinite(df) else stats.t.ppf(1 - a, df)
            recs.append((est, se, est - z * se, est + z * se, df))
    out = pd.DataFrame(recs, columns=["estimate", "se", "lower", "upper", "df"][:len(recs[0])])
    if "df" in out and out["df"].isna().all():
        out = out.drop(columns="df")
    return out


def _stacked_contrasts(fit: Any, spec: Any, contrasts: list[tuple[np.ndarray, np.ndarray,
                       np.ndarray]], grids: list[pd.DataFrame], prob: float) -> pd.DataFrame:
    """The estimates of :func:`_estimate` for a zero-inflated family (sum_i w_i m_i with
    m_i = (1 - zi_i) exp(A_i b + o_i), the zero part evaluated on each contrast's grid rows) or
    an ordinal family (m_i the mean class at grid row i)."""
    sizes = [len(w) for _, _, w in contrasts]
    W = np.zeros((len(contrasts), sum(sizes)))
    start = 0
    for r, (_, _, w) in enumerate(contrasts):
        W[r, start:start + len(w)] = w
        start += len(w)
    A = np.vstack([A for A, _, _ in contrasts])
    o = np.concatenate([o for _, o, _ in contrasts])
    if ordinal_response(spec):
        return ordinal_estimates(fit, spec, A, coef_names(spec), o, W, prob)
    return zi_weighted_estimates(fit, spec, pd.concat(grids, ignore_index=True), A, o, W, prob)


# --------------------------------------------------------------------------- entry points


def _method(coef: Coefficients) -> str:
    return "posterior draws" if coef.draw_based else "delta method"


def conditional_effects(fit: Any, effect: str, prob: float = 0.95, sd_multiplier: float = 1,
                        sd_slice: bool | None = None, resolution: int = 100,
                        categorical: bool = False) -> ConditionalEffects:
    """Predicted mean over the focal predictor of ``effect`` ("x" or "x:m").

    Numeric focal: ``resolution`` points from its minimum to its maximum; categorical: each
    level. Moderator m: numeric with >= 6 distinct values (or ``sd_slice=True``): mean - k SD,
    mean, mean + k SD (k = ``sd_multiplier``, rounded to 2 decimals); otherwise every observed
    value (categorical: every level). Response scale, random effects at 0, the other predictors
    at their mean / most frequent level.

    Ordinal families (ordered, and sequential with ``category_specific=False``): the mean class
    sum_k k P(y = k), or with ``categorical=True`` the probability of each response category,
    one row per grid point and category (column ``category``), as brms'
    ``conditional_effects(categorical = TRUE)``.

    Parameters
    ----------
    fit : fit object
        A fit of a formula model (draws, MAP or classic).
    effect : str
        ``"x"`` or ``"x:m"``: the focal predictor and an optional moderator.
    prob : float
        Probability of the intervals.
    sd_multiplier : float
        k of the moderator values mean - k SD, mean, mean + k SD.
    sd_slice : bool, optional
        Force (True) or refuse (False) the SD slices for a numeric moderator; None: with six or
        more distinct values.
    resolution : int
        Number of points of a numeric focal predictor (>= 2).
    categorical : bool
        Ordinal families: the probability of each response category (column ``category``)
        instead of the mean class.

    Returns
    -------
    ConditionalEffects
        The table in ``.data``, printed form and ``.plot()``.

    Raises
    ------
    ValueError
        An unknown predictor, a model without a formula (``from_stan``) or a bad argument.

    Examples
    --------
    >>> ce = bayesglmm.conditional_effects(fit, "talk:perf")  # doctest: +SKIP
    >>> fig = ce.plot()  # doctest: +SKIP
    """
    fn = "conditional_effects()"
    spec = model_spec(fit, fn)
    names = _parse_effect(effect, spec, 2, fn)
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    ordinal = ordinal_response(spec)
    if not isinstance(categorical, bool):
        raise TypeError(f"categorical must be True or False, got {categorical!r}")
    if categorical and not ordinal:
        raise ValueError(f"categorical=True (probabilities of the response categories) needs an "
                         f"ordinal family, not '{spec.family.name}'")
    coef = coefficients(fit, fn)
    focal = names[0]
    levels = _levels(spec)
    if focal in levels:
        fvals = list(levels[focal])
    else:
        x = spec.data[focal].to_numpy(dtype=float)
        fvals = list(np.linspace(x.min(), x.max(), int(resolution)))
    settings: dict[str, list[Any]] = {}
    mvals, rule = [], ""
    moderator = names[1] if len(names) == 2 else None
    if moderator is not None:
        mvals, rule = _moderator_values(spec, moderator, sd_multiplier, sd_slice)
        settings[moderator] = mvals
    settings[focal] = fvals
    grid = _grid(spec, settings)
    A, o = _rows(spec, coef, grid)
    cols = [focal] + ([moderator] if moderator else [])
    keys = grid[cols].reset_index(drop=True)
    quantity = "Predicted value"
    if spec.zi is not None:  # the mean includes the zero part
        est = zi_mean_estimates(fit, spec, grid, A, o, prob)
    elif ordinal:
        est = ordinal_estimates(fit, spec, A, coef_names(spec), o, np.eye(len(grid)), prob,
                                categories=categorical)
        quantity = "Mean class" if not categorical else "Probability"
        if categorical:  # rows: grid point r, category k
            cats = list(spec.response.levels)
            keys = keys.loc[keys.index.repeat(len(cats))].reset_index(drop=True)
            keys["category"] = pd.Categorical(cats * len(grid), categories=cats, ordered=True)
    else:
        est = _estimate(spec, coef, [(A[i:i + 1], o[i:i + 1], np.ones(1))
                                     for i in range(len(grid))], prob)
    data = pd.concat([keys, est[["estimate", "se", "lower", "upper"]]], axis=1)
    if moderator is not None and moderator not in levels:
        data[moderator] = data[moderator].astype(float)
    observed = spec.data.copy()
    resp = spec.response.name
    observed[resp] = np.asarray(spec.response.y, dtype=float)
    return ConditionalEffects(data, focal, moderator, mvals, rule, prob, _method(coef),
                              focal in levels, observed, resp, quantity, categorical)


def simple_effects(fit: Any, effect: str, prob: float = 0.95, sd_multiplier: float = 1,
                   sd_slice: bool | None = None) -> SimpleEffects:
    """Effect of the focal predictor at each moderator value.

    Numeric focal: the slope of the predicted mean at x = mean(x) (forward difference, step
    1e-4, response scale; for an identity link b_x + b_x:m * m), term "Slope of <x>".
    Categorical focal: all pairwise differences of predicted means (later level minus earlier
    level), term "<B> - <A>". Zero-inflated families: the mean includes the zero part,
    (1 - zi) exp(eta), as in :func:`conditional_effects`. Ordinal families: differences and
    slopes of the mean class sum_k k P(y = k).

    Parameters
    ----------
    fit, effect, prob, sd_multiplier, sd_slice
        As in :func:`conditional_effects`; ``effect`` is ``"x:m"`` (a moderator is needed).

    Returns
    -------
    SimpleEffects
        One row per moderator value and term (estimate, se, interval) in ``.data``.

    Raises
    ------
    ValueError
        An unknown predictor, no moderator, or a model without a formula.

    Examples
    --------
    >>> bayesglmm.simple_effects(fit, "talk:perf")  # doctest: +SKIP
    """
    fn = "simple_effects()"
    spec = model_spec(fit, fn)
    focal, moderator = _parse_effect(effect, spec, 2, fn)
    coef = coefficients(fit, fn)
    mvals, _ = _moderator_values(spec, moderator, sd_multiplier, sd_slice)
    levels = _levels(spec)
    contrasts, terms, mcol, grids = [], [], [], []
    for mv in mvals:
        if focal in levels:
            labs = list(levels[focal])
            grid = _grid(spec, {moderator: [mv], focal: labs})
            A, o = _rows(spec, coef, grid)
            for i in range(len(labs)):
                for j in range(i + 1, len(labs)):
                    contrasts.append((A[[i, j]], o[[i, j]], np.array([-1.0, 1.0])))
                    grids.append(grid.iloc[[i, j]])
                    terms.append(f"{labs[j]} - {labs[i]}")
                    mcol.append(mv)
        else:
            x0 = float(np.mean(spec.data[focal].to_numpy(dtype=float)))
            grid = _grid(spec, {moderator: [mv], focal: [x0, x0 + STEP]})
            A, o = _rows(spec, coef, grid)
            contrasts.append((A, o, np.array([-1.0, 1.0]) / STEP))
            grids.append(grid)
            terms.append(f"Slope of {focal}")
            mcol.append(mv)
    if spec.zi is not None or ordinal_response(spec):  # the mean with the zero part / mean class
        est = _stacked_contrasts(fit, spec, contrasts, grids, prob)
    else:
        est = _estimate(spec, coef, contrasts, prob)
    if "df" in est:  # classic fits: df, t value, Pr
        est["t value"] = est["estimate"] / est["se"]
        df = est["df"].to_numpy(dtype=float)
        est["Pr"] = np.where(np.isfinite(df), 2 * stats.t.sf(np.abs(est["t value"]), df),
                             2 * stats.norm.sf(np.abs(est["t value"])))
    data = pd.concat([pd.DataFrame({"moderator": moderator, moderator: mcol, "term": terms}),
                      est], axis=1)
    return SimpleEffects(data, focal, moderator, prob, _method(coef))
