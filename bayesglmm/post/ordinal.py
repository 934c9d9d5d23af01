"""Ordinal families in marginal means and effects: the cumulative logit family (``ordered``)
and the continuation-ratio model with one coefficient per predictor
(``glmer(..., family="sequential", category_specific=False)``).

Latent scale (``lsmeans(type="link")``, emmeans' default ``mode = "latent"`` for clm/clmm):
the linear predictor minus the mean of the cutpoints, x'b - mean(c). Differences of two means
are differences of x'b, so the contrast of a factor's two levels is its coefficient. Both
families use P(y <= k) = logistic(c_k - eta) (ordered) or P(y = k | y >= k) =
logistic(c_k - eta) (sequential): a larger eta moves mass to higher categories.

Response scale: the probabilities of the categories 1..C at each grid row (random effects at
0) from the family table's ``category_probs``, and the mean class sum_k k P(y = k) (emmeans'
``mode = "mean.class"``, brms' ordinal mean), with weighted sums of either over grid rows
(equal-weight marginal means, differences, slopes). Draw-based fits (sample, variational,
pathfinder) are summarised draw by draw; MAP and classic fits are evaluated at the estimates
with a delta-method SE over the joint covariance of (b, cutpoints) (Jacobian by central
differences) and a normal interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .fit_coefficients import point_coefficients, pooled_draws, summarise_draws

__all__ = ["cutpoint_names", "ordinal_estimates", "ordinal_response", "plot_categories"]


def ordinal_response(spec: Any) -> bool:
    """True for a family whose response is given by category probabilities (ordinal families
    with one linear predictor per observation; category-specific ones are refused earlier, by
    :func:`~bayesglmm.post.fit_coefficients.model_spec`)."""
    return spec.family.category_probs is not None


def cutpoint_names(fit: Any) -> list[str]:
    """The user names of the cutpoints of an ordinal fit, in order."""
    return [p.user for p in fit._params if p.kind == "cutpoints"]


def _jacobian(f, x: np.ndarray) -> np.ndarray:
    """Central-difference Jacobian (m, p) of f: (p,) -> (m,) at x."""
    cols = []
    for i in range(x.size):
        h = 1e-5 * max(1.0, abs(x[i]))
        e = np.zeros(x.size)
        e[i] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return np.column_stack(cols)


def ordinal_estimates(fit: Any, spec: Any, A: np.ndarray, names: list[str], o: np.ndarray,
                      W: np.ndarray, prob: float, categories: bool = False) -> pd.DataFrame:
    """estimate, se, lower, upper of the rows of ``W @ m``, m the mean class at each grid row
    (``categories=False``), or of ``W @ P`` with P the category probabilities (rows r * C + k
    for row r of W and category k + 1).

    ``A`` holds the design rows of the linear predictor (columns ``names``; coefficients the
    fit lacks, such as the intercept of an ordinal family, are 0), ``o`` the offsets.
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    fam = spec.family
    pos = {p.user: i for i, p in enumerate(fit._params)}
    keep = [j for j, n in enumerate(names) if n in pos]
    A = np.asarray(A, dtype=float)[:, keep]
    pnames = [names[j] for j in keep] + cutpoint_names(fit)
    K, W = len(keep), np.atleast_2d(np.asarray(W, dtype=float))
    C = len(pnames) - K + 1
    classes = np.arange(1, C + 1, dtype=float)

    def value(theta: np.ndarray) -> np.ndarray:  # (S, P) -> (S, rows)
        p = fam.category_probs(theta[:, :K] @ A.T + o[None, :], theta[:, K:])
        if categories:
            return np.einsum("rn,snc->src", W, p).reshape(len(theta), -1)
        return (p @ classes) @ W.T

    draws = pooled_draws(fit)
    if draws is not None:
        return summarise_draws(value(draws[:, [pos[n] for n in pnames]]), prob)
    coef = point_coefficients(fit, pnames)
    est = value(coef.estimate[None, :])[0]
    J = _jacobian(lambda t: value(t[None, :])[0], coef.estimate)
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", J, coef.cov, J), 0.0))
    z = stats.norm.ppf(0.5 + prob / 2)
    return pd.DataFrame({"estimate": est, "se": se, "lower": est - z * se, "upper": est + z * se})


def plot_categories(data: pd.DataFrame, focal: str, moderator: str | None,
                    moderator_values: list[Any], categorical_focal: bool, ax: Any = None,
                    response: str = "category"):
    """Category probabilities over the focal predictor: one line and band (numeric focal) or
    one set of points with error bars (categorical focal) per category of ``response``, one
    panel per moderator value. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    panels = [None] if moderator is None else list(moderator_values)
    if ax is None:
        fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 1.5, 4),
                                 sharey=True, squeeze=False)
        axes = list(axes[0])
    elif len(panels) > 1:
        raise ValueError("plot(ax=...) draws one panel; with a moderator, call plot() without ax")
    else:
        fig, axes = ax.figure, [ax]
    cats = list(dict.fromkeys(data["category"]))
    for a, val in zip(axes, panels):
        d = data if val is None else data[data[moderator] == val]
        for i, cat in enumerate(cats):
            dc = d[d["category"] == cat]
            if categorical_focal:
                x = np.arange(len(dc)) + (i - (len(cats) - 1) / 2) * 0.1
                a.errorbar(x, dc["estimate"], yerr=[dc["estimate"] - dc["lower"],
                           dc["upper"] - dc["estimate"]], fmt="o", capsize=3, label=str(cat))
                a.set_xticks(np.arange(len(dc)), [str(v) for v in dc[focal]])
            else:
                line, = a.plot(dc[focal], dc["estimate"], label=str(cat))
                a.fill_between(dc[focal], dc["lower"], dc["upper"], alpha=0.2,
                               color=line.get_color())
        a.set_xlabel(focal)
        if val is not None:
            a.set_title(f"{moderator} = {val}")
    axes[0].set_ylabel("Probability")
    axes[-1].legend(title=response, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                    borderaxespad=0.0)
    fig.suptitle(f"Conditional effect of {focal} on the category probabilities")
    fig.tight_layout()
    return fig
