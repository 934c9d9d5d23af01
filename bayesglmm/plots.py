"""Diagnostic plots of fits through arviz, with the user-facing parameter names.

Each function takes a fit and ``pars`` (names or patterns: ``"b[talk]"``, ``"sd[*]"``, or a
base name such as ``"b"`` for every ``b[...]``; default every model parameter without the
random effects) and returns the matplotlib Figure. The same functions are methods of the fits
(``fit.plot_trace(...)``).

=============  =================================================================================
plot_trace     per variable: per-chain density (left) and trace (right), one line per chain
plot_dens      per variable one panel, one density curve per chain
plot_acf       autocorrelation of one variable, one panel per chain
plot_forest    point (median) + ``prob`` interval per variable (MAP fits: estimate + Wald CI)
plot_pairs     scatter matrix of the selected variables
plot_ppc       posterior predictive check: density of the data against replicated data sets
=============  =================================================================================
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .core.arviz_adapter import load_arviz

__all__ = ["plot_acf", "plot_dens", "plot_forest", "plot_pairs", "plot_ppc", "plot_trace",
           "select_names"]


def select_names(fit: Any, pars: Sequence[str] | str | None = None) -> list[str]:
    """User names of ``fit`` matching ``pars`` (exact names, ``*`` wildcards, base names), in
    display order; an unknown name or a pattern matching nothing raises ValueError."""
    params = list(fit._params)
    if pars is None:
        return [p.user for p in params if p.kind not in ("re", "Intercept_c")]
    if isinstance(pars, str):
        pars = [pars]
    out: list[str] = []
    for pat in pars:
        if not isinstance(pat, str):
            raise TypeError(f"pars must be parameter names or patterns, got {pat!r}")
        rx = re.compile("^" + re.escape(pat).replace(r"\*", ".*") + "$")
        hits = [p.user for p in params if rx.match(p.user) or p.user.split("[", 1)[0] == pat]
        if not hits:
            raise ValueError(
                f"no parameter matches {pat!r}; available: "
                + ", ".join(p.user for p in params if p.kind != "re")
            )
        out.extend(h for h in hits if h not in out)
    return out


def _figure(axes: Any):
    return np.ravel(np.asarray(axes, dtype=object))[0].figure


def _draws_only(fit: Any, what: str) -> None:
    if getattr(fit, "_draws", None) is None:
        raise ValueError(f"{what} needs posterior draws: use sample(), variational() or pathfinder()")


def _arviz_figure(fn_name: str, *args: Any, **kwargs: Any):
    """Call ``arviz.<fn_name>`` (warnings silenced, not shown) and return its Figure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = getattr(load_arviz(), fn_name)(*args, show=False, **kwargs)
        fig = _figure(axes)
        if fig.get_layout_engine() is None:  # titles must not overlap the tick labels
            fig.set_layout_engine("tight")
    return fig


def plot_trace(fit: Any, pars: Sequence[str] | str | None = None):
    """Per-chain densities and traces, one row per variable. Returns the Figure.

    Parameters
    ----------
    fit : MCMCFit or VariationalFit
        A fit with draws.
    pars : str or list of str, optional
        Parameter names (exact names, base names such as ``"b"``, ``*`` wildcards); None: the
        population-level parameters.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = bayesglmm.plot_trace(fit, ["b", "sigma"])  # doctest: +SKIP
    """
    _draws_only(fit, "plot_trace()")
    names = select_names(fit, pars)
    return _arviz_figure("plot_trace", fit.posterior_idata, var_names=names, compact=False)


def plot_dens(fit: Any, pars: Sequence[str] | str | None = None):
    """One panel per variable with a density curve per chain. Returns the Figure.

    Parameters
    ----------
    fit : MCMCFit or VariationalFit
        A fit with draws.
    pars : str or list of str, optional
        Parameter names (exact names, base names such as ``"b"``, ``*`` wildcards); None: the
        population-level parameters.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _draws_only(fit, "plot_dens()")
    names = select_names(fit, pars)
    post = fit.posterior_idata.posterior
    chains = [post.sel(chain=[c]) for c in post.chain.values]
    return _arviz_figure("plot_density", chains, var_names=names, shade=0.1, hdi_prob=1.0,
                         data_labels=[f"chain {c + 1}" for c in range(len(chains))])


def plot_acf(fit: Any, pars: str | None = None, max_lag: int = 40):
    """Autocorrelation of one variable (default the first parameter), one panel per chain.

    Parameters
    ----------
    fit : MCMCFit or VariationalFit
        A fit with draws.
    pars : str, optional
        The parameter (None: the first population-level parameter).
    max_lag : int
        Largest lag shown.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _draws_only(fit, "plot_acf()")
    names = select_names(fit, pars)[:1]
    fig = _arviz_figure("plot_autocorr", fit.posterior_idata, var_names=names, combined=False,
                        max_lag=max_lag)
    for c, ax in enumerate(a for a in fig.axes if a.get_visible()):
        ax.set_title(f"{names[0]}, chain {c + 1}")
    return fig


def plot_forest(fit: Any, pars: Sequence[str] | str | None = None, prob: float = 0.95):
    """Point estimate and ``prob`` interval per variable (one panel). Draw-based fits: arviz's
    forest plot (median and ``prob`` HDI of the pooled chains); MAP and other estimate-based
    fits: estimate with its ``prob`` Wald interval (:func:`wald_interval`). Returns the
    Figure.

    Parameters
    ----------
    fit : fit object
        Any fit (draws, MAP or classic).
    pars : str or list of str, optional
        Parameter names (exact names, base names such as ``"b"``, ``*`` wildcards); None: the
        population-level parameters.
    prob : float
        Probability of the intervals, in (0, 1).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    names = select_names(fit, pars)
    if getattr(fit, "_draws", None) is not None:
        return _arviz_figure("plot_forest", fit.posterior_idata, var_names=names, combined=True,
                             hdi_prob=prob)
    import matplotlib.pyplot as plt

    tab = fit.summary(pars=names)
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(tab) + 1.2))
    y = np.arange(len(tab))[::-1]
    est = tab.iloc[:, 0].to_numpy()
    lo, hi = wald_interval(tab, prob)
    ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="o", capsize=3)
    ax.set_yticks(y, list(tab.index))
    ax.set_xlabel(f"Estimate with {100 * prob:g}% interval")
    ax.axvline(0, color="0.7", lw=0.8)
    fig.tight_layout()
    return fig


def wald_interval(tab: Any, prob: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``prob`` intervals of an estimate table with 95% limits (columns estimate, lower,
    upper; ``df`` for t intervals): each 95% interval is symmetric around the estimate on the
    identity, log (scale parameters) or Fisher-z (correlations) scale; on that scale its
    half-width is rescaled by the ratio of the normal (or t(df)) quantiles."""
    from scipy import stats

    est = tab.iloc[:, 0].to_numpy(dtype=float)
    lo, hi = tab["lower"].to_numpy(dtype=float), tab["upper"].to_numpy(dtype=float)
    if abs(prob - 0.95) < 1e-12:
        return lo, hi
    df = tab["df"].to_numpy(dtype=float) if "df" in tab.columns else np.full(est.size, np.inf)
    df = np.where(np.isfinite(df) & (df > 0), df, np.inf)
    ratio = stats.t.ppf((1 + prob) / 2, df) / stats.t.ppf(0.975, df)
    scales = [(lambda x: x, lambda x: x, lambda a, b, c: True),
              (np.log, np.exp, lambda a, b, c: a > 0),
              (np.arctanh, np.tanh, lambda a, b, c: -1 < a and c < 1)]
    new_lo, new_hi = lo.copy(), hi.copy()
    for r in range(est.size):
        e, a, b = est[r], lo[r], hi[r]
        if not (np.isfinite(e) and np.isfinite(a) and np.isfinite(b)):
            continue
        best = None
        for g, ginv, ok in scales:
            if not ok(a, e, b):
                continue
            with np.errstate(all="ignore"):
                ga, ge, gb = g(a), g(e), g(b)
            if not np.all(np.isfinite([ga, ge, gb])):
                continue
            asym = abs((gb - ge) - (ge - ga)) / max(gb - ga, 1e-300)
            if best is None or asym < best[0] - 1e-9:
                best = (asym, ge, (gb - ga) / 2, ginv)
        if best is not None:
            _, ge, half, ginv = best
            new_lo[r], new_hi[r] = ginv(ge - ratio[r] * half), ginv(ge + ratio[r] * half)
    return new_lo, new_hi


def plot_pairs(fit: Any, pars: Sequence[str] | str | None = None):
    """Scatter matrix of the selected variables (at least two). Returns the Figure.

    Parameters
    ----------
    fit : MCMCFit or VariationalFit
        A fit with draws.
    pars : str or list of str, optional
        Parameter names (exact names, base names such as ``"b"``, ``*`` wildcards); None: the
        population-level parameters.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _draws_only(fit, "plot_pairs()")
    names = select_names(fit, pars)
    if len(names) < 2:
        raise ValueError("plot_pairs() needs at least two parameters")
    return _arviz_figure("plot_pair", fit.posterior_idata, var_names=names, kind="scatter",
                         scatter_kwargs={"alpha": 0.3})


def plot_ppc(fit: Any, num_draws: int = 100, seed: int | None = None):
    """Posterior predictive check: the density of the observed response against ``num_draws``
    data sets replicated by ``fit.posterior_predict``. Returns the Figure.

    Parameters
    ----------
    fit : MCMCFit or VariationalFit
        A fit with draws.
    num_draws : int
        Number of replicated data sets drawn.
    seed : int, optional
        Random seed.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .post.predict import model_spec, posterior_predict

    _draws_only(fit, "plot_ppc()")
    spec = model_spec(fit, "plot_ppc()")
    yrep = posterior_predict(fit, seed=seed)
    rng = np.random.default_rng(seed)
    keep = rng.choice(yrep.shape[0], size=min(num_draws, yrep.shape[0]), replace=False)
    y = np.asarray(spec.response.y, dtype=float)
    name = spec.response.name
    az = load_arviz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = az.from_dict(posterior_predictive={name: yrep[keep][None].astype(float)},
                             observed_data={name: y})
    return _arviz_figure("plot_ppc", idata, num_pp_samples=len(keep), random_seed=seed)
