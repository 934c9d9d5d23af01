"""Stan's unconstrained coordinates of a linear mixed model's covariance parameters and the
relative covariance factors of :mod:`bayesglmm.inference.lmm` (one stage of the exact LMM
path): the ``cholesky_factor_corr`` transform and its inverse, the per-term layout of the
unconstrained vector, the bounds a fit stops at, and a bounded finite-difference gradient."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["CORR_BOUND", "SD_FLOOR", "Term", "cholesky_corr", "corr_unconstrain",
           "fd_grad_bounded"]

#: Largest |unconstrained correlation coordinate| of a fit (tanh(10) = 1 - 4e-9): a singular fit
#: whose correlation tends to +-1 stops there, where the correlation matrix is still positive
#: definite in double precision (at tanh(y) = 1 exactly Stan rejects it) and the objective is flat
#: to ~1e-8.
CORR_BOUND = 10.0
#: log of the smallest relative standard deviation (sd / sigma) of a fit: a variance estimated
#: at 0 (lme4's "boundary (singular) fit") is reported at this value.
SD_FLOOR = math.log(1e-7)


def cholesky_corr(y: np.ndarray, M: int) -> np.ndarray:
    """Stan's ``cholesky_factor_corr`` constraining transform: canonical partial correlations
    tanh(y), filled row by row below the diagonal."""
    z = np.tanh(np.asarray(y, dtype=float))
    L = np.zeros((M, M))
    L[0, 0] = 1.0
    k = 0
    for i in range(1, M):
        ss = 0.0
        for j in range(i):
            L[i, j] = z[k] * math.sqrt(max(1.0 - ss, 0.0))
            ss += L[i, j] ** 2
            k += 1
        L[i, i] = math.sqrt(max(1.0 - ss, 0.0))
    return L


def corr_unconstrain(T: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Stan's unconstrained coordinates of the correlation Cholesky factor of T T' (inverse of
    :func:`cholesky_corr`), clipped to +-CORR_BOUND; rows of T that are 0 give correlations 0."""
    M = T.shape[0]
    out = []
    for i in range(1, M):
        row = T[i] / s[i] if s[i] > 0 else np.eye(M)[i]
        rem = 1.0
        for j in range(i):
            z = row[j] / math.sqrt(rem) if rem > 0 else 0.0
            z = min(max(z, -1.0), 1.0)
            out.append(float(np.clip(np.arctanh(z) if abs(z) < 1 else math.copysign(np.inf, z),
                                     -CORR_BOUND, CORR_BOUND)))
            rem -= row[j] ** 2
    return np.array(out)


def fd_grad_bounded(F: Any, x: np.ndarray, lower: np.ndarray, h: float) -> np.ndarray:
    """Central differences, one-sided (forward) where the backward point leaves the bounds."""
    g = np.empty(x.size)
    f0 = None
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h * max(1.0, abs(x[i]))
        if x[i] - e[i] >= lower[i]:
            g[i] = (F(x + e) - F(x - e)) / (2 * e[i])
        else:
            f0 = F(x) if f0 is None else f0
            g[i] = (F(x + e) - f0) / e[i]
    return g


class Term:
    """One grouping term: M coefficients, G groups, unconstrained positions of sd, L, z."""

    def __init__(self, M: int, G: int, sd: np.ndarray, L: np.ndarray, z: np.ndarray, off: int,
                 centered: bool = False):
        self.M, self.G, self.sd, self.L, self.z, self.off = M, G, sd, L, z, off
        self.centered = centered  # the program's z holds the effects b = diag(sd) L z

    def factor(self, u_sd: np.ndarray, u_L: np.ndarray, scale: float) -> np.ndarray:
        """diag(exp(u_sd) / scale) L (M x M)."""
        Lc = cholesky_corr(u_L, self.M) if self.L.size else np.eye(self.M)
        return (np.exp(u_sd) / scale)[:, None] * Lc
