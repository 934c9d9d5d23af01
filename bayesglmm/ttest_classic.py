"""The closed-form side of :func:`bayesglmm.ttest`: the two samples (:class:`TTestData`), the
Student / Welch / paired t-test (:class:`TTestClassic`, what ``TTestModel.classic()`` returns)
and :func:`jzs_bf10`, the JZS Bayes factor as the one-dimensional integral of Rouder et al.
(2009, eq. 1). :mod:`bayesglmm.ttest` re-exports these names."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import integrate, stats

from .core.display import html_repr, note_table
from .persist import Archive, decode, encode, register_fit, save_fit

__all__ = ["TTestClassic", "TTestData", "jzs_bf10"]


@dataclass(frozen=True)
class TTestData:
    """The two samples (or the paired differences) and the design."""

    y1: np.ndarray  # group 1 (paired: the differences group 1 - group 2)
    y2: np.ndarray | None  # group 2 (None when paired)
    labels: tuple[str, str]  # group labels (group 1 first)
    paired: bool
    var_equal: bool
    response: str = "y"


# ----------------------------------------------------------------------------- classic


@dataclass
class TTestClassic:
    """Closed-form Student / Welch / paired t-test."""

    table: pd.DataFrame
    kind: str
    loglik: float
    n_par: int
    n_obs: int

    def save(self, path: Any) -> Any:
        """Save the test to one file; load it with :func:`bayesglmm.load`.

        Parameters
        ----------
        path : str or path
            The file (``.bglmm`` is added when it has no suffix).

        Returns
        -------
        pathlib.Path
            The file written.
        """
        return save_fit(self, path)

    @property
    def t(self) -> float:
        """The t statistic of the difference."""
        return float(self.table.loc["diff", "t value"])

    @property
    def df(self) -> float:
        """The degrees of freedom of the t test."""
        return float(self.table.loc["diff", "df"])

    @property
    def p(self) -> float:
        """The two-sided p value."""
        return float(self.table.loc["diff", "Pr"])

    @classmethod
    def from_data(cls, td: TTestData) -> TTestClassic:
        """The test of two samples or of paired differences.

        Parameters
        ----------
        td : TTestData
            The samples and the design (paired, equal variances).

        Returns
        -------
        TTestClassic
            Student's test (equal variances), Welch's, or the paired test.

        Examples
        --------
        >>> import numpy as np
        >>> td = TTestData(np.array([5.1, 4.9, 6.2, 5.8]), np.array([4.0, 4.4, 3.9, 4.7]),
        ...                ("a", "b"), paired=False, var_equal=True)
        >>> res = TTestClassic.from_data(td)
        >>> res.kind, res.df
        ('Student t-test', 6.0)
        """
        rows: dict[str, dict[str, float]] = {}
        if td.paired:
            d = td.y1
            n = d.size
            diff, sd = float(d.mean()), float(d.std(ddof=1))
            se, df = sd / math.sqrt(n), n - 1.0
            delta = diff / sd
            kind, npar, nobs = "paired t-test", 2, n
            sig = math.sqrt(np.mean((d - diff) ** 2))
            loglik = float(stats.norm.logpdf(d, diff, sig).sum())
            extra = {"sd_diff": (sd, math.nan)}
        else:
            a, b = td.y1, td.y2
            n1, n2 = a.size, b.size
            m1, m2 = float(a.mean()), float(b.mean())
            v1, v2 = float(a.var(ddof=1)), float(b.var(ddof=1))
            diff = m1 - m2
            if td.var_equal:
                sp = math.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2))
                se, df = sp * math.sqrt(1 / n1 + 1 / n2), n1 + n2 - 2.0
                delta = diff / sp
                kind, npar = "Student t-test", 3
                sig = math.sqrt((((a - m1) ** 2).sum() + ((b - m2) ** 2).sum()) / (n1 + n2))
                loglik = float(stats.norm.logpdf(a, m1, sig).sum()
                               + stats.norm.logpdf(b, m2, sig).sum())
                extra = {"sd": (sp, math.nan)}
            else:
                se = math.sqrt(v1 / n1 + v2 / n2)
                df = se ** 4 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
                delta = diff / math.sqrt((v1 + v2) / 2)
                kind, npar = "Welch t-test", 4
                loglik = float(stats.norm.logpdf(a, m1, math.sqrt(np.mean((a - m1) ** 2))).sum()
                               + stats.norm.logpdf(b, m2, math.sqrt(np.mean((b - m2) ** 2))).sum())
                extra = {"sd[1]": (math.sqrt(v1), math.nan), "sd[2]": (math.sqrt(v2), math.nan)}
            extra = {"total_mean": ((m1 + m2) / 2, math.sqrt(v1 / n1 + v2 / n2) / 2), **extra,
                     "mean0": (m1, math.sqrt(v1 / n1)), "mean1": (m2, math.sqrt(v2 / n2))}
            nobs = n1 + n2
        q = stats.t.ppf(0.975, df)
        t = diff / se
        rows["diff"] = {"Estimate": diff, "Std. Error": se, "Lower 95%": diff - q * se,
                        "Upper 95%": diff + q * se, "df": df, "t value": t,
                        "Pr": 2 * stats.t.sf(abs(t), df)}
        rows["delta"] = {"Estimate": delta}
        for name, (est, s) in extra.items():
            rows[name] = {"Estimate": est, "Std. Error": s}
        cols = ["Estimate", "Std. Error", "Lower 95%", "Upper 95%", "df", "t value", "Pr"]
        table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=cols)
        return cls(table, kind, loglik, npar, nobs)

    @property
    def aic(self) -> float:
        """Akaike's information criterion of the maximum-likelihood fit."""
        return -2 * self.loglik + 2 * self.n_par

    @property
    def bic(self) -> float:
        """The Bayesian information criterion of the maximum-likelihood fit."""
        return -2 * self.loglik + math.log(self.n_obs) * self.n_par

    def format(self) -> str:
        """The printed form: the kind of test, logLik / AIC / BIC and the table.

        Returns
        -------
        str
            What ``print()`` shows.
        """
        def num(v: float, fmt: str) -> str:
            return "" if not np.isfinite(v) else format(v, fmt)

        def pfmt(p: float) -> str:
            if not np.isfinite(p):
                return ""
            return "<.0001" if p < 1e-4 else f"{p:.4f}".lstrip("0")

        def stars(p: float) -> str:
            if not np.isfinite(p):
                return ""
            return next((s for lim, s in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, "."))
                         if p < lim), "")

        head = ["variable", "Estimate", "Std. Error", "Lower 95%", "Upper 95%", "df", "t value",
                "Pr", ""]
        body = []
        for name, r in self.table.iterrows():
            body.append([name, num(r["Estimate"], ".5f"), num(r["Std. Error"], ".5f"),
                         num(r["Lower 95%"], ".5f"), num(r["Upper 95%"], ".5f"),
                         num(r["df"], ".1f"), num(r["t value"], ".3f"), pfmt(r["Pr"]),
                         stars(r["Pr"])])
        widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
        lines = [f"Classical estimation via ttest ({self.kind})",
                 f"Log-Likelihood: {self.loglik:.3f}, AIC: {self.aic:.3f}, BIC: {self.bic:.3f}", ""]
        table = "\n".join(" ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                          for row in [head] + body)
        lines.append(note_table(table, head, body))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """Notebooks: the printed form, the table as HTML."""
        return html_repr(self)

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame.

        Returns
        -------
        pandas.DataFrame
            A copy of ``table``.
        """
        return self.table.copy()

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return self.format()


# ----------------------------------------------------------------------------- Rouder integral


def jzs_bf10(t: float, n1: int, n2: int | None = None, r: float = 0.707) -> float:
    """JZS Bayes factor BF10 of a t statistic (Rouder et al. 2009, eq. 1, with prior scale r).

    One sample / paired: ``n2=None``, effective N = n1, df = n1 - 1; two samples: effective
    N = n1 n2 / (n1 + n2), df = n1 + n2 - 2. With g ~ Inv-Gamma(1/2, r^2/2) (delta ~ Cauchy(0, r)):
    BF10 = int (1 + N g)^(-1/2) ((1 + t^2 / ((1 + N g) df)) / (1 + t^2/df))^(-(df+1)/2) p(g) dg,
    integrated by ``scipy.integrate.quad`` on a log scale of g.
    """
    if n2 is None:
        N, df = float(n1), float(n1 - 1)
    else:
        N, df = n1 * n2 / (n1 + n2), float(n1 + n2 - 2)
    log_null = -(df + 1) / 2 * math.log1p(t * t / df)

    def integrand(logg: float) -> float:
        g = math.exp(logg)
        a = 1 + N * g
        log_alt = (-0.5 * math.log(a) - (df + 1) / 2 * math.log1p(t * t / (a * df)))
        log_prior = stats.invgamma.logpdf(g, 0.5, scale=r * r / 2)
        return math.exp(log_alt - log_null + log_prior + logg)

    val, _ = integrate.quad(integrand, -30, 30, limit=200, epsabs=0, epsrel=1e-10)
    return float(val)


# ----------------------------------------------------------------------------- saving


def _save_classic(res: TTestClassic, ar: Archive) -> dict[str, Any]:
    return {"table": encode(res.table, ar, "fit.table"), "kind": res.kind,
            "loglik": encode(res.loglik, ar, "fit.loglik"), "n_par": res.n_par,
            "n_obs": res.n_obs}


def _load_classic(model: Any, s: dict[str, Any], arrays: dict[str, np.ndarray]) -> TTestClassic:
    return TTestClassic(decode(s["table"], arrays), s["kind"], decode(s["loglik"], arrays),
                        s["n_par"], s["n_obs"])


register_fit("ttest_classic", TTestClassic, _save_classic, _load_classic)
