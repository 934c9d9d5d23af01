"""``ClassicFit``: what ``Model.classic()`` returns.

Same shape as :class:`~bayesglmm.results.MAPFit` (``summary()`` indexed by user names with
``estimate, se, lower, upper``) plus ``df``, ``t`` (gaussian) or ``z`` and ``p`` for the fixed
effects (and the zero-inflation coefficients ``b_zi`` of the zero-inflated families: Wald z on
the logit scale), and ``loglik``, ``aic``, ``bic``, ``deviance``, ``vcov``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .results import MAPFit, backend_lines, call_line, fmt_table
from .zero_inflation import zi_names

__all__ = ["ClassicFit", "format_p", "stars"]


def format_p(p: float) -> str:
    """p without a leading zero, '<.0001' below 1e-4."""
    if p is None or not np.isfinite(p):
        return ""
    if p < 1e-4:
        return "<.0001"
    s = f"{p:.4f}"
    return s[1:] if s.startswith("0") else s


def stars(p: float) -> str:
    if p is None or not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


def _zero_part_rows(model: Any, index: pd.Index) -> list[str]:
    """The rows of the zero-inflation coefficients ``b_zi[...]`` (zero-inflated families)."""
    spec = getattr(model, "spec", None)
    if getattr(spec, "zi", None) is None:
        return []
    return [r for r in (f"b_zi[{n}]" for n in zi_names(spec)) if r in index]


class ClassicFit(MAPFit):
    """Flat-prior frequentist fit: REML (gaussian) or Laplace ML.

    Attributes: ``method`` ("REML" or "ML"), ``loglik`` (ML log-likelihood), ``reml_loglik``
    (restricted log-likelihood, REML fits), ``aic``, ``bic``, ``deviance`` (-2 loglik),
    ``nobs``, ``df_model`` (fixed effects + variance parameters), ``vcov`` (DataFrame, full
    covariance of the fixed effects), ``satterthwaite`` (None or the helper used for df).
    """

    method = "classic"

    def __init__(self, model: Any, est: Any):
        super().__init__(
            model, est.params, est.estimate, est.se, est.lower, est.upper,
            objective=est.objective, converged=est.converged, message=est.message,
            theta_unc=est.theta_unc, cov_unc=est.cov_unc, laplace=est.has_re,
            elapsed=est.elapsed,
        )
        self.estimation = est.method
        self.gaussian = est.gaussian
        self.loglik = float(est.loglik)
        self.reml_loglik = float(est.reml_loglik)
        self.nobs = est.n_obs
        self.df_model = est.n_par
        self.deviance = -2.0 * self.loglik
        self.aic = self.deviance + 2 * self.df_model
        self.bic = self.deviance + math.log(self.nobs) * self.df_model
        self.satterthwaite = est.satterthwaite
        names = [p.user for p in est.fixed]
        self.fixed_names = names
        self.beta = np.asarray(est.beta, dtype=float)
        self.vcov = pd.DataFrame(est.vcov, index=names, columns=names)
        stat = "t" if self.gaussian else "z"
        self.stat_name = stat
        df = np.asarray(est.df, dtype=float)
        tval = self.beta / est.fixed_se
        if self.gaussian:
            p = 2 * stats.t.sf(np.abs(tval), df)
            q = stats.t.ppf(0.975, df)
        else:
            p = 2 * stats.norm.sf(np.abs(tval))
            q = np.full(df.size, stats.norm.ppf(0.975))
        tab = self._table
        for col in ("df", stat, "p"):
            tab[col] = np.nan
        tab.loc[names, "estimate"] = self.beta
        tab.loc[names, "se"] = est.fixed_se
        tab.loc[names, "lower"] = self.beta - q * est.fixed_se
        tab.loc[names, "upper"] = self.beta + q * est.fixed_se
        tab.loc[names, "df"] = df
        tab.loc[names, stat] = tval
        tab.loc[names, "p"] = p
        zi = _zero_part_rows(model, tab.index)  # logit P(structural zero): Wald z tests too
        if zi:
            zval = tab.loc[zi, "estimate"].to_numpy(float) / tab.loc[zi, "se"].to_numpy(float)
            tab.loc[zi, stat] = zval
            tab.loc[zi, "p"] = 2 * stats.norm.sf(np.abs(zval))
        if not self.gaussian:
            self._table = tab.drop(columns="df")

    @property
    def model_type(self) -> str:
        """lm, lmer, glm or glmer (printed header)."""
        re = any(p.kind == "re" for p in self._params)
        return ("lmer" if re else "lm") if self.gaussian else ("glmer" if re else "glm")

    def fixed_df(self, L: np.ndarray | Sequence[float]) -> float:
        """Denominator degrees of freedom of a contrast of the fixed effects.

        Satterthwaite's for gaussian mixed models, the residual df for gaussian models
        without random effects, infinite (z tests) otherwise.

        Parameters
        ----------
        L : array-like
            The contrast: one weight per fixed effect, in the order of ``fixed_names``.

        Returns
        -------
        float
            The degrees of freedom (``math.inf`` for z tests).

        Examples
        --------
        >>> fit = bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", sleep).classic()  # doctest: +SKIP
        >>> fit.fixed_df([0, 1])  # doctest: +SKIP
        17.0
        """
        if not self.gaussian:
            return math.inf
        if self.satterthwaite is not None:
            return self.satterthwaite.df(np.asarray(L, dtype=float))
        return float(self._table.loc[self.fixed_names[0], "df"]) if self.fixed_names else math.inf

    def format(self, max_rows: int = 20, digits: int = 5, ranef: bool = False) -> str:
        df = self.summary()
        f = f"{{:.{int(digits)}f}}"
        stat = self.stat_name
        show = df[[c for c in ("estimate", "se", "lower", "upper", "df", stat) if c in df]].copy()
        show["Pr"] = [format_p(v) for v in df["p"]]
        show[""] = [stars(v) for v in df["p"]]
        heads = {"estimate": "Estimate", "se": "Std. Error", "lower": "Lower 95%",
                 "upper": "Upper 95%", "df": "df", stat: f"{stat} value"}

        class _S:
            def format(self, v):
                return str(v)

        class _F:
            def __init__(self, spec):
                self.spec = spec

            def format(self, v):
                return "" if not np.isfinite(v) else self.spec.format(v)

        fmts = {c: _F(f) for c in ("estimate", "se", "lower", "upper")}
        fmts["df"] = _F("{:.1f}")
        fmts[stat] = _F("{:.3f}")
        fmts["Pr"] = fmts[""] = _S()
        lines = [
            "Call:",
            call_line(self.model),
            "",
            f"Classical estimation via {self.model_type} ({self.estimation})",
            *backend_lines(self.model),
            f"Log-Likelihood: {self.loglik:.3f}, AIC: {self.aic:.3f}, BIC: {self.bic:.3f}",
        ]
        if self.estimation == "REML":
            lines.append(f"REML log-likelihood: {self.reml_loglik:.3f}")
        if not self.converged:
            lines.append(f"Warning: the optimiser did not converge ({self.message})")
        lines.append(fmt_table(show.iloc[:max_rows], fmts, heads))
        if len(show) > max_rows:
            lines.append(f"... {len(show) - max_rows} more rows: use summary() for the full table")
        lines.append("---\nSignif. codes: 0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
        return "\n".join(lines)
