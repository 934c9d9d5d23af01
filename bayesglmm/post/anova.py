"""``anova(fit)``: Type III (or II) Wald tests per model term; ``anova(fit1, fit2, ...)``:
likelihood-ratio table.

Type III: the fixed effects are first re-expressed in sum-to-zero coding whatever contrasts
the fit used. Both codings span the same column space, so on a full factorial grid of the
factor levels crossed with two values (0 and 1) of every numeric predictor the sum-coded
coefficients are gamma = T beta with T = pinv(X_sum) X_fit, exactly what a sum-coded fit gives;
Cov(gamma) = T V T' (the FULL covariance). A term's test uses its sum-coded coefficients:
W = (L gamma)'(L Cov L')^-1 (L gamma). Type II follows car::Anova: the term is tested after
its marginal terms and before the terms that contain it (hypothesis matrix = the term's
coefficients made orthogonal, in the metric of Cov, to those of its relatives).

Layout: gaussian fits (unless ``test="Chisq"``): F = W / df1 with lmerTest's multi-df
Satterthwaite denominator df (residual df without random effects); the other families:
``Df, Chisq, Pr(>Chisq)``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import linalg as sla
from scipy import stats

from ..results_classic import format_p
from ._fixed import FixedInfo, design_of, fixed_info, grid, predictors
from ._table import PrintedTable

__all__ = ["anova", "sum_coded"]


def sum_coded(fit, info: FixedInfo) -> tuple[np.ndarray, list[str], list[tuple[str, tuple[int, ...]]]]:
    """(T, sum-coded names, sum-coded term columns): gamma = T beta.

    Parameters
    ----------
    fit : fit object
        A fit of a formula model.
    info : FixedInfo
        Its fixed-effect names, estimates and covariance.

    Returns
    -------
    T : numpy.ndarray
        The map from the fit's coefficients to the sum-coded ones.
    names : list of str
        Sum-coded coefficient names.
    terms : list of (str, tuple of int)
        Each term with its sum-coded columns.

    Raises
    ------
    ValueError
        The sum-to-zero design cannot be rebuilt.
    """
    spec = fit.spec
    _, numeric = predictors(spec)
    g = grid(spec, {k: [0.0, 1.0] for k in numeric})
    d_fit = design_of(spec, g, "fit")
    d_sum = design_of(spec, g, "sum")
    pos = {n: i for i, n in enumerate(d_fit.names)}
    missing = [n for n in info.names if n not in pos]
    if missing:
        raise ValueError(f"cannot rebuild the design of the coefficients {missing}")
    Xf = d_fit.X[:, [pos[n] for n in info.names]]
    Xs = d_sum.X
    if np.linalg.matrix_rank(Xs) < Xs.shape[1]:
        raise ValueError("the sum-to-zero design is rank deficient on the factorial grid "
                         "(empty cells?): Type III tests are not available")
    T = np.linalg.pinv(Xs) @ Xf
    return T, d_sum.names, d_sum.terms


def _relatives(term: str, terms: list[str]) -> list[str]:
    parts = set(term.split(":"))
    return [t for t in terms if t != term and parts < set(t.split(":"))]


def _conj_comp(X: np.ndarray, Z: np.ndarray, ip: np.ndarray) -> np.ndarray:
    """car's ConjComp: the part of span(Z) orthogonal to span(X) in the metric ``ip``."""
    M = Z.T @ ip @ X
    Q, R = sla.qr(M, mode="full")
    rank = int(np.sum(np.abs(np.diag(R)) > 1e-10 * max(1.0, np.abs(R).max()))) if R.size else 0
    if rank == 0:
        return Z
    return Z @ Q[:, rank:]


def wald_statistic(L: np.ndarray, b: np.ndarray, V: np.ndarray) -> tuple[float, int]:
    VL = L @ V @ L.T
    w, P = np.linalg.eigh(0.5 * (VL + VL.T))
    keep = w > 1e-10 * max(w.max(), 0.0) if w.size else w > 0
    Lb = P[:, keep].T @ (L @ b)
    return float(np.sum(Lb**2 / w[keep])), int(keep.sum())


def _type3_table(fit, type: int, test: str | None) -> PrintedTable:
    info = fixed_info(fit)
    T, snames, sterms = sum_coded(fit, info)
    Vg = T @ info.V @ T.T
    f_layout = info.gaussian and test != "Chisq" and info.kind == "classic"
    term_names = [t for t, _ in sterms]
    rows = []
    for term, cols in sterms:
        cols = list(cols)
        if type == 3:
            Lg = np.eye(len(snames))[cols]
        else:
            rel = [c for t in _relatives(term, term_names) for c in dict(sterms)[t]]
            I = np.eye(len(snames))
            if rel:
                Lg = _conj_comp(I[rel].T, I[rel + cols].T, Vg).T
            else:
                Lg = I[cols]
        L = Lg @ T  # on the fit's coefficients
        W, df1 = wald_statistic(L, info.beta, info.V)  # sampled fits: posterior mean and covariance
        if f_layout:
            sat = getattr(fit, "satterthwaite", None)
            if sat is not None:
                F, num, den, p = sat.ftest(L, info.beta)
            else:
                num, F = df1, W / df1
                den = info.df(L[0])
                p = float(stats.f.sf(F, num, den))
            rows.append((term, num, den, F, p))
        else:
            rows.append((term, df1, W, float(stats.chi2.sf(W, df1))))
    if f_layout:
        df = pd.DataFrame(rows, columns=["term", "num_df", "den_df", "F value", "Pr(>F)"])
        heading = "ANOVA Table (Wald F-tests)"
    else:
        df = pd.DataFrame(rows, columns=["term", "df", "Chisq", "Pr(>Chisq)"])
        heading = "ANOVA Table (Wald Chisq tests)"
    heading += f", Type {'III' if type == 3 else 'II'}"
    return PrintedTable(df.set_index("term"), heading=heading, notes=_lm_notes(fit, info),
                        formats={"num_df": "{:.0f}", "df": "{:.0f}", "den_df": "{:.2f}",
                                 "F value": "{:.4f}", "Chisq": "{:.4f}"})


def lm_fit_stats(fit, info: FixedInfo) -> dict[str, float] | None:
    """R^2, adjusted R^2 and the overall F test of a gaussian classic fit without random
    effects (None otherwise); RSS = sigma^2 (N - p) with the REML (= unbiased) sigma."""
    if info.kind != "classic" or not info.gaussian or fit.model_type != "lm":
        return None
    y = np.asarray(fit.model.observed_response(), dtype=float)
    n, p = y.size, len(info.names)
    sigma = float(fit.summary().loc["sigma", "estimate"])
    rss = sigma**2 * (n - p) if fit.estimation == "REML" else sigma**2 * n
    tss = float(np.sum((y - y.mean()) ** 2))
    has_int = "Intercept" in info.names
    k = p - 1 if has_int else p
    r2 = 1 - rss / tss if has_int else 1 - rss / float(np.sum(y**2))
    adj = 1 - (1 - r2) * (n - int(has_int)) / (n - p)
    F = ((tss - rss) / k) / (rss / (n - p)) if k > 0 else math.nan
    return {"r2": r2, "adj_r2": adj, "F": F, "num_df": k, "den_df": n - p,
            "p": float(stats.f.sf(F, k, n - p)) if k > 0 else math.nan}


def _lm_notes(fit, info: FixedInfo) -> list[str]:
    st = lm_fit_stats(fit, info)
    if st is None:
        return []
    return [f"R-squared: {st['r2']:.4f}, adjusted R-squared: {st['adj_r2']:.4f}; "
            f"F({st['num_df']}, {st['den_df']}) = {st['F']:.3f}, p = {format_p(st['p'])}"]


def _lr_table(fits) -> PrintedTable:
    rows = []
    for i, f in enumerate(fits, start=1):
        ll = getattr(f, "loglik", None)
        if ll is None or not np.isfinite(ll):
            raise ValueError(f"model {i} has no log-likelihood: compare fits from classic()")
        rows.append({"Model": f"Model {i}", "Df": f.df_model, "logLik": ll, "AIC": f.aic,
                     "BIC": f.bic, "_n": f.nobs})
    if len({r["_n"] for r in rows}) > 1:
        raise ValueError("the fits use different numbers of observations: not nested")
    df = pd.DataFrame(rows).sort_values("Df", kind="stable").drop(columns="_n")
    chisq, cdf, p = [math.nan], [math.nan], [math.nan]
    for a, b in zip(df.itertuples(), list(df.itertuples())[1:]):
        c = 2 * (b.logLik - a.logLik)
        k = b.Df - a.Df
        chisq.append(max(c, 0.0))
        cdf.append(k)
        p.append(float(stats.chi2.sf(max(c, 0.0), k)) if k > 0 else math.nan)
    df["Chisq"], df["Chi Df"], df["Pr(>Chisq)"] = chisq, cdf, p
    return PrintedTable(df.set_index("Model"), heading="Likelihood-ratio tests",
                        formats={"logLik": "{:.3f}", "AIC": "{:.3f}", "BIC": "{:.3f}",
                                 "Chisq": "{:.4f}", "Chi Df": "{:.0f}", "Df": "{:.0f}"})


def anova(fit, *others, type: int = 3, test: str | None = None) -> PrintedTable:
    """Wald tests per fixed-effect term (one fit) or a likelihood-ratio table (several fits).

    Parameters
    ----------
    fit, *others
        A fit from ``classic()``, ``optimize()`` or ``sample()`` (Wald tests; with MAP and
        sampled fits always chi-square, from the posterior mode/mean and covariance), or several
        ``classic()`` fits of nested models on the same data (likelihood-ratio table sorted by
        number of parameters).
    type
        3 (default: sum-to-zero re-expression, as lmerTest / car::Anova type 3 with sum
        contrasts) or 2 (car::Anova type 2).
    test
        None: F tests with Satterthwaite df for gaussian classic fits, chi-square otherwise;
        "Chisq": chi-square for every family; "F": F layout (gaussian classic fits only).

    Returns
    -------
    PrintedTable
        A DataFrame indexed by term (printing shows the heading).
    """
    if others:
        return _lr_table([fit, *others])
    if type not in (2, 3):
        raise ValueError(f"type must be 2 or 3, not {type!r}")
    if test not in (None, "Chisq", "F"):
        raise ValueError(f"test must be None, 'Chisq' or 'F', not {test!r}")
    if test == "F" and not (getattr(fit, "gaussian", False)):
        raise ValueError("test='F' needs a gaussian fit from classic(); use test='Chisq'")
    return _type3_table(fit, type, test)
