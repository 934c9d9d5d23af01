"""Satterthwaite denominator degrees of freedom for Wald tests of fixed effects (lmerTest).

The fixed-effect covariance C(theta) depends on the variance parameters theta. For a contrast
vector l, var = l'C l and (Satterthwaite) df = 2 var^2 / (g' A g) with g_k = l' dC/dtheta_k l and
A the asymptotic covariance of theta (inverse Hessian of the negative (restricted)
log-likelihood). The df are invariant to the parameterisation of theta, so Stan's unconstrained
scale (log sigma, log sd, ...) gives lmerTest's numbers. Multi-df F tests follow
``lmerTest::contestMD``: eigen-decomposition of L C L', one Satterthwaite df per eigen-direction,
combined by ``get_Fstat_ddf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Satterthwaite", "fstat_ddf"]


@dataclass
class Satterthwaite:
    """C (p x p covariance of the fixed effects), dC (m x p x p derivatives w.r.t. the m
    variance parameters), A (m x m covariance of the variance parameters)."""

    C: np.ndarray
    dC: np.ndarray
    A: np.ndarray

    def df(self, l: np.ndarray) -> float:
        """Satterthwaite df of the single contrast ``l`` (length p)."""
        l = np.asarray(l, dtype=float)
        var = float(l @ self.C @ l)
        g = np.einsum("i,kij,j->k", l, self.dC, l)
        denom = float(g @ self.A @ g)
        if not np.isfinite(denom) or denom <= 0:
            return np.inf
        return 2.0 * var * var / denom

    def ftest(self, L: np.ndarray, beta: np.ndarray, tol: float = 1e-8) -> tuple[float, int, float, float]:
        """(F, num df, den df, p) of H0: L beta = 0 (rows of L = the contrasts), lmerTest's
        ``contestMD``."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        VL = L @ self.C @ L.T
        d, P = np.linalg.eigh(0.5 * (VL + VL.T))
        order = np.argsort(-d)
        d, P = d[order], P[:, order]
        q = int(np.sum(d > tol * max(d[0], 0.0))) if d.size else 0
        if q == 0:
            return np.nan, 0, np.nan, np.nan
        PtL = P[:, :q].T @ L
        t2 = (PtL @ beta) ** 2 / d[:q]
        F = float(np.sum(t2) / q)
        nu = np.array([self.df(PtL[m]) for m in range(q)])
        ddf = fstat_ddf(nu)
        p = float(stats.f.sf(F, q, ddf)) if np.isfinite(ddf) else float(stats.chi2.sf(F * q, q))
        return F, q, float(ddf), p


def fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """Combine per-direction dfs into the F denominator df (lmerTest ``get_Fstat_ddf``)."""
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2)))
    return 2.0 * E / (E - nu.size)
