"""Predictions from a fit: ``fit.predict(newdata, re=...)`` (the expected response) and
``fit.posterior_predict(newdata, re=...)`` (draws of new observations).

The fixed-effect coefficients of any fit (draws, or estimates with their covariance) come from
:mod:`bayesglmm.post.fit_coefficients`, the design of new data from :mod:`bayesglmm.design`;
both are re-exported here (``Coefficients``, ``coefficients``, ``point_coefficients``,
``fixed_design``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..design import check_newdata, fixed_design
from ..zero_inflation import zi_design, zi_names, zi_probability
from ._zi import zi_point_mean
from .fit_coefficients import (
    Coefficients,
    coef_names,
    coefficients,
    dlinkinv,
    model_spec,
    point_coefficients,
    pooled_draws,
    summarise_draws,
)

__all__ = ["Coefficients", "coefficients", "fixed_design", "point_coefficients",
           "posterior_predict", "predict"]

_CORR_RX = re.compile(r"^corr_(\d+)\[(\d+),(\d+)\]$")


# --------------------------------------------------------------------------- predictions


def _check_re(re_: str) -> str:
    if re_ not in ("include", "exclude"):
        raise ValueError(f"re must be 'include' or 'exclude', not {re_!r}")
    return re_


def _group_labels(spec: Any, g: Any, nd: pd.DataFrame, allow_new_levels: bool,
                  what: str) -> np.ndarray:
    """The group label of every row of ``nd`` for term ``g``; levels the model was not fitted
    to are an error unless ``allow_new_levels``."""
    cols = g.factor.split(":")
    missing = [c for c in cols if c not in nd.columns]
    if missing:
        raise ValueError(
            f"newdata lacks the grouping column(s) {', '.join(missing)} of {g.text}; "
            "add them or use re='exclude'"
        )
    if nd[cols].isna().to_numpy().any():
        raise ValueError(f"{what}: newdata has missing values in the grouping column(s) "
                         f"{', '.join(cols)} of {g.text}")
    labels = nd[cols[0]].astype(str)
    for c in cols[1:]:
        labels = labels + ":" + nd[c].astype(str)
    labels = labels.to_numpy()
    if not allow_new_levels:
        known = set(g.levels)
        new = list(dict.fromkeys(lab for lab in labels if lab not in known))
        if new:
            shown = ", ".join(map(repr, new[:5])) + (", ..." if len(new) > 5 else "")
            raise ValueError(
                f"{what}: newdata has {len(new)} level(s) of '{g.factor}' ({g.text}) that the "
                f"model was not fitted to: {shown}. Pass allow_new_levels=True to predict them "
                "from the population distribution of the group effects (draw-based fits draw "
                "new effects, MAP and classic fits use the population mean 0), or "
                "re='exclude' for population-level predictions of every row.")
    return labels


def _re_draws(fit: Any, draws: np.ndarray, g: Any, labels: np.ndarray,
              rng: np.random.Generator | None):
    """Natural-scale random effects (S, n, q) of term ``g`` for rows with group ``labels``;
    levels not in the fit are drawn from the population N(0, diag(sd) Omega diag(sd)) (with
    ``rng=None``: set to 0, the population mean)."""
    S = draws.shape[0]
    pos = {p.stan: i for i, p in enumerate(fit._params)}
    sd = np.column_stack([draws[:, pos[f"sd_{g.k}[{c + 1}]"]] for c in range(g.q)])
    known = {lev: j for j, lev in enumerate(g.levels)}
    new_levels = sorted({lab for lab in labels if lab not in known})
    out = np.zeros((S, len(labels), g.q))
    for j_lab in {lab for lab in labels if lab in known}:
        rows = labels == j_lab
        j = known[j_lab] + 1
        for c in range(g.q):
            out[:, rows, c] = (draws[:, pos[f"r_re_{g.k}[{j},{c + 1}]"]] * sd[:, c])[:, None]
    if new_levels and rng is not None:
        L = np.broadcast_to(np.eye(g.q), (S, g.q, g.q)).copy()
        if g.has_corr:
            omega = np.broadcast_to(np.eye(g.q), (S, g.q, g.q)).copy()
            for p in fit._params:
                m = _CORR_RX.match(p.stan)
                if m and int(m.group(1)) == g.k:
                    r, c = int(m.group(2)) - 1, int(m.group(3)) - 1
                    omega[:, r, c] = omega[:, c, r] = draws[:, pos[p.stan]]
            L = np.linalg.cholesky(omega + 1e-12 * np.eye(g.q))
        for lab in new_levels:
            z = rng.standard_normal((S, g.q))
            out[:, labels == lab, :] = (np.einsum("sij,sj->si", L, z) * sd)[:, None, :]
    return out


def _values(fit: Any, what: str, point_ok: bool) -> tuple[np.ndarray, bool]:
    """(parameter values (S, P) in the fit's order, draw-based?): the draws, or for estimate
    fits (MAP, classic) their estimates as one row."""
    draws = pooled_draws(fit)
    if draws is not None:
        return draws, True
    est = getattr(fit, "estimates", None)
    if not point_ok or est is None:
        raise ValueError(f"{what} needs draws: use sample(), variational() or pathfinder()")
    return np.array([[est[p.user] for p in fit._params]], dtype=float), False


def linear_predictor(fit: Any, newdata: pd.DataFrame | None, re_: str, rng: np.random.Generator,
                     what: str, point_ok: bool = False, allow_new_levels: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(values (S, n) of the linear predictor for ``newdata`` (None: the fitted data), the
    fixed-effect design rows [1, X] (n, 1 + K)). Estimate fits (``point_ok``) give one row:
    random effects at their conditional modes, new grouping levels (``allow_new_levels``) at
    0 (the population)."""
    spec = model_spec(fit, what)
    values, draw_based = _values(fit, what, point_ok)
    nd = spec.data if newdata is None else newdata
    X, offset = fixed_design(spec, nd)
    A = np.column_stack([np.ones(len(X)), X])
    pos = {p.user: i for i, p in enumerate(fit._params)}
    coef = np.column_stack([values[:, pos[n]] if n in pos else np.zeros(len(values))
                            for n in coef_names(spec)])
    eta = coef @ A.T + offset[None, :]
    if _check_re(re_) == "include" and spec.groups:
        nd_c = check_newdata(spec, nd, [])
        fixed_cols = {n: i for i, n in enumerate(spec.fixed.names)}
        for g in spec.groups:
            Z = np.ones((len(nd_c), g.q))
            for c, coef_name in enumerate(g.coefs):
                if coef_name == "Int":
                    continue
                if coef_name not in fixed_cols:
                    raise ValueError(
                        f"{what}: the random slope '{coef_name}' of {g.text} is not a column of "
                        "the fixed part, so it cannot be evaluated on new data; use re='exclude'"
                    )
                Z[:, c] = X[:, fixed_cols[coef_name]]
            labels = _group_labels(spec, g, nd_c, allow_new_levels, what)
            r = _re_draws(fit, values, g, labels, rng if draw_based else None)
            eta = eta + np.einsum("snq,nq->sn", r, Z)
    return eta, A


def _zi_probability(fit: Any, spec: Any, newdata: Any, draws: np.ndarray) -> np.ndarray:
    """P(structural zero) per draw and row (zero-inflated families), from the b_zi draws."""
    pos = {p.user: i for i, p in enumerate(fit._params)}
    cols = [pos[f"b_zi[{n}]"] for n in zi_names(spec)]
    return zi_probability(draws[:, cols], zi_design(spec, newdata))


def _family_params(fit: Any, draws: np.ndarray, spec: Any,
                   newdata: Any = None) -> dict[str, np.ndarray]:
    pos = {p.user: i for i, p in enumerate(fit._params)}
    out = {name: draws[:, pos[name]][:, None] for name in spec.family.extra_names}
    if spec.zi is not None:
        out["zi"] = _zi_probability(fit, spec, newdata, draws)
    if spec.family.ordinal:
        cols = [i for i, p in enumerate(fit._params) if p.kind == "cutpoints"]
        out["cutpoints"] = draws[:, cols]  # (S, C-1): the rng broadcasts over rows
    return out


def predict(fit: Any, newdata: pd.DataFrame | None = None, re: str = "include",
            prob: float = 0.95, summary: bool = True, seed: int | None = None,
            allow_new_levels: bool = False):
    """Expected response (inverse link of the linear predictor) for ``newdata`` (default: the
    fitted data). ``re="include"``: with the random effects of the fitted groups; levels of a
    grouping column the model was not fitted to are an error unless ``allow_new_levels=True``
    (as in brms), which draws their effects from the population (MAP and classic fits: the
    population mean 0); ``"exclude"``: population-level (effects 0) for every row.
    Draw-based fits: ``summary=True`` gives a DataFrame with estimate (posterior mean), se (sd),
    lower, upper (central ``prob`` interval) per row; ``summary=False`` the draws, an array
    (draws, rows). MAP and classic fits: the estimate (random effects at their conditional
    modes, new levels at 0) with a delta-method SE and normal interval that cover the
    fixed-effect uncertainty only. Ordinal families: the linear predictor (latent scale).
    Zero-inflated families: the mean (1 - zi) * exp(eta) including the zero part (MAP and
    classic fits: delta-method SE over the coefficients of both parts).

    Parameters
    ----------
    fit : fit object
        A fit of a formula model (draws, MAP or classic).
    newdata : pandas.DataFrame, optional
        Rows to predict for (None: the fitted data).
    re : {"include", "exclude"}
        With the group effects, or population-level.
    prob : float
        Probability of the intervals.
    summary : bool
        Draw-based fits: a table (True) or the draws (False).
    seed : int, optional
        Seeds the effects drawn for new group levels.
    allow_new_levels : bool
        Allow group levels the model was not fitted to.

    Returns
    -------
    pandas.DataFrame or numpy.ndarray
        Columns estimate, se, lower, upper per row; or the draws (draws, rows).

    Raises
    ------
    ValueError
        New group levels without ``allow_new_levels``, missing columns, or a ``from_stan``
        program (no formula).

    Examples
    --------
    >>> bayesglmm.post.predict(fit, newdata, re="exclude")  # doctest: +SKIP
    """
    spec = model_spec(fit, "predict()")
    eta, A = linear_predictor(fit, newdata, re, np.random.default_rng(seed), "predict()",
                              point_ok=True, allow_new_levels=allow_new_levels)
    link = (lambda x: np.asarray(x, dtype=float)) if spec.family.ordinal else spec.family.linkinv
    mu = link(eta)
    draws = pooled_draws(fit)
    if spec.zi is not None:
        point = draws is None
        if point:
            est = fit.summary()["estimate"]
            draws = np.array([[est.get(p.user, np.nan) for p in fit._params]])
        if point:
            out = zi_point_mean(fit, spec, A, zi_design(spec, newdata), prob, eta=eta[0])
            return out if summary else out["estimate"].to_numpy()[None, :]
        mu = mu * (1 - _zi_probability(fit, spec, newdata, draws))
    if draws is not None:
        return summarise_draws(mu, prob) if summary else mu
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    coef = coefficients(fit, "predict()")
    se = np.abs(dlinkinv(link, eta[0])) * np.sqrt(np.maximum(np.sum((A @ coef.cov) * A, axis=1), 0.0))
    z = stats.norm.ppf(0.5 + prob / 2)
    out = pd.DataFrame({"estimate": mu[0], "se": se, "lower": mu[0] - z * se,
                        "upper": mu[0] + z * se})
    return out if summary else mu


def posterior_predict(fit: Any, newdata: pd.DataFrame | None = None, re: str = "include",
                      seed: int | None = None, allow_new_levels: bool = False) -> np.ndarray:
    """Draws of new observations (draws, rows) from the family's distribution at each
    posterior draw (the family table's rng); levels of a grouping column the model was not
    fitted to are an error unless ``allow_new_levels=True``, which draws their effects from
    the population (as :func:`predict`).

    Parameters
    ----------
    fit : fit object
        A fit with draws of a formula model.
    newdata : pandas.DataFrame, optional
        Rows to simulate for (None: the fitted data).
    re : {"include", "exclude"}
        With the group effects, or population-level.
    seed : int, optional
        Random seed.
    allow_new_levels : bool
        Allow group levels the model was not fitted to.

    Returns
    -------
    numpy.ndarray
        Shape (draws, rows).
    """
    spec = model_spec(fit, "posterior_predict()")
    if spec.family.needs_trials and newdata is not None:
        raise ValueError("posterior_predict(newdata=...) for the binomial family needs the "
                         "number of trials per row, which new data cannot give yet")
    rng = np.random.default_rng(seed)
    eta, _ = linear_predictor(fit, newdata, re, rng, "posterior_predict()",
                              allow_new_levels=allow_new_levels)
    if getattr(spec, "resid", None) is not None:
        return eta + correlated_residuals(fit, spec, newdata, rng)
    params = _family_params(fit, pooled_draws(fit), spec, newdata)
    return spec.family.rng(eta, params, rng, trials=spec.response.trials)


def correlated_residuals(fit: Any, spec: Any, newdata: pd.DataFrame | None,
                         rng: np.random.Generator) -> np.ndarray:
    """Residuals (draws, rows) of a model with ``resid_corr`` ("ar1" or "cs"), drawn jointly
    within each block from the posterior draws of ``sigma`` and ``rho_resid``."""
    from ..residcorr import build_resid
    from ..simulate import RESIDUAL_DRAWS

    resid = spec.resid
    if newdata is not None:
        missing = [c for c in (resid.group, resid.time) if c and c not in newdata.columns]
        if missing:
            raise ValueError(f"posterior_predict(newdata=...) of a resid_corr={resid.kind!r} "
                             f"model needs the column(s) {missing} to correlate the residuals")
        resid = build_resid(resid.kind, newdata, group=resid.group, time=resid.time)
    draws = pooled_draws(fit)
    pos = {p.user: i for i, p in enumerate(fit._params)}
    return RESIDUAL_DRAWS[resid.kind](resid, draws[:, pos["rho_resid"]], draws[:, pos["sigma"]],
                                      rng)
