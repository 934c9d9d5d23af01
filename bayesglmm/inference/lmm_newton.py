"""Derivatives of the exact LMM objective in Stan's coordinates and the Newton polishing that
ends a fit of :class:`bayesglmm.inference.lmm.ExactLMM` (one stage of the exact LMM path).

The objective F (minus the log marginal likelihood, the random effects integrated, and for REML
the fixed effects too) is a function of the outer coordinates: the scale, the standard
deviations and correlation factors, and for ML the fixed effects. Its gradient and Hessian are
taken by finite differences in the variance coordinates. The fixed effects of an ML fit enter
F through the penalised residual sum of squares only, a quadratic in beta:

    dF/dbeta = S (beta - beta^) / sigma^2,    d2F/dbeta2 = S / sigma^2,

with S the Schur complement of the penalised least-squares system and beta^ its solution
(:meth:`~bayesglmm.inference.lmm.ExactLMM.beta_gradient`). These blocks are exact, and the
mixed block is the central difference of this gradient in each variance coordinate. The cost
of the derivatives is then a number of objective evaluations that grows with the number of
variance parameters only; second differences over every fixed effect would cost (p + k)^2
evaluations for p fixed effects, each evaluation itself O(p^2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .lmm_coords import CORR_BOUND, SD_FLOOR
from .optimize import fd_hess

__all__ = ["Derivatives", "newton_polish"]

#: relative step of the central differences of the analytic fixed-effect gradient
BETA_CROSS_STEP = 1e-5
#: relative step of the fourth-order differences of the gradient in the variance coordinates
GRAD_STEP = 1e-3


def fd_grad4(F: Callable[[np.ndarray], float], x: np.ndarray, h: float = GRAD_STEP
             ) -> np.ndarray:
    """Fourth-order central differences (truncation error O(h^4)). F carries rounding noise
    (~1e-15 relative); the wider step divides it by h: with h = 1e-3 the gradient is good to
    ~1e-12 |F| / 1e-3, which puts the Newton optimum within ~1e-10 of the exact one where the
    second-order differences of step 1e-5 left ~1e-8."""
    g = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h * max(1.0, abs(x[i]))
        g[i] = (8 * (F(x + e) - F(x - e)) - (F(x + 2 * e) - F(x - 2 * e))) / (12 * e[i])
    return g


class Derivatives:
    """Gradient and Hessian of F at the outer coordinates ``t_idx`` of the full unconstrained
    vector (the other coordinates held at ``base``). ``F`` maps the outer coordinates to the
    objective; ``lmm`` is the :class:`~bayesglmm.inference.lmm.ExactLMM`."""

    def __init__(self, lmm: Any, F: Callable[[np.ndarray], float], base: np.ndarray,
                 t_idx: np.ndarray, reml: bool):
        self.lmm, self.F, self.base, self.t_idx = lmm, F, base, t_idx
        inb = np.isin(t_idx, lmm.fixed) if not reml else np.zeros(t_idx.size, dtype=bool)
        self.bpos = np.flatnonzero(inb)  # positions of the fixed effects among t_idx (ML)
        self.tpos = np.flatnonzero(~inb)  # the variance coordinates

    def _full(self, theta: np.ndarray) -> np.ndarray:
        v = self.base.copy()
        v[self.t_idx] = theta
        return v

    def _on_variance(self, theta: np.ndarray) -> Callable[[np.ndarray], float]:
        """F as a function of the variance coordinates, the fixed effects held at ``theta``'s."""
        def Fv(x: np.ndarray) -> float:
            th = theta.copy()
            th[self.tpos] = x
            return self.F(th)
        return Fv

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        if not self.bpos.size:
            return fd_grad4(self.F, theta)
        g = np.empty(theta.size)
        g[self.tpos] = fd_grad4(self._on_variance(theta), theta[self.tpos])
        g[self.bpos] = self.lmm.beta_gradient(self._full(theta))[0]
        return g

    def hessian(self, theta: np.ndarray, free: np.ndarray | None = None) -> np.ndarray:
        """The Hessian over the coordinates ``free`` (a mask; all by default)."""
        free = np.ones(theta.size, dtype=bool) if free is None else free
        if not self.bpos.size:
            sub = np.flatnonzero(free)

            def Ff(x: np.ndarray) -> float:
                th = theta.copy()
                th[sub] = x
                return self.F(th)

            return fd_hess(Ff, theta[sub])
        n = theta.size
        H = np.zeros((n, n))
        tfree = self.tpos[free[self.tpos]]
        if tfree.size:
            def Ft(x: np.ndarray) -> float:
                th = theta.copy()
                th[tfree] = x
                return self.F(th)

            H[np.ix_(tfree, tfree)] = fd_hess(Ft, theta[tfree])
        H[np.ix_(self.bpos, self.bpos)] = self.lmm.beta_gradient(self._full(theta))[1]
        for j in tfree:
            h = BETA_CROSS_STEP * max(1.0, abs(theta[j]))
            up, dn = theta.copy(), theta.copy()
            up[j] += h
            dn[j] -= h
            col = (self.lmm.beta_gradient(self._full(up))[0]
                   - self.lmm.beta_gradient(self._full(dn))[0]) / (2 * h)
            H[self.bpos, j] = H[j, self.bpos] = col
        return H[np.ix_(free, free)]


def newton_polish(lmm: Any, u: np.ndarray, t_idx: np.ndarray, reml: bool, gtol: float,
                  F: Callable[[np.ndarray], float]) -> tuple[np.ndarray, int, np.ndarray]:
    """Newton steps on F from the outer coordinates ``u[t_idx]`` (F is exact, so two steps
    after the profiled optimum suffice): a correlation at +-CORR_BOUND and a standard deviation
    at the floor stay at their bounds. Returns (theta, iterations, gradient with the bound
    coordinates zeroed)."""
    L_idx = np.flatnonzero(np.isin(t_idx, np.concatenate([t.L for t in lmm.terms])))
    sd_idx = np.flatnonzero(np.isin(t_idx, np.concatenate([t.sd for t in lmm.terms])))
    theta = u[t_idx]
    d = Derivatives(lmm, F, u, t_idx, reml)
    Fv = F(theta)
    g = d.gradient(theta)
    free = np.ones(theta.size, dtype=bool)
    free[L_idx] = np.abs(theta[L_idx]) < CORR_BOUND
    floor = theta[sd_idx] <= u[lmm.sigma[0]] + SD_FLOOR + 1e-9
    free[sd_idx[floor]] = False  # a variance at 0 stays there
    iters = 0
    for it in range(20):
        if np.max(np.abs(g[free]), initial=0.0) < gtol and it >= 2:
            break
        Ht = d.hessian(theta, free)
        try:
            np.linalg.cholesky(Ht)
            step = np.zeros(theta.size)
            step[free] = np.linalg.solve(Ht, g[free])
        except np.linalg.LinAlgError:
            break
        last = float(g @ step) < 100 * np.finfo(float).eps * max(1.0, abs(Fv))
        step[L_idx] = theta[L_idx] - np.clip(theta[L_idx] - step[L_idx], -CORR_BOUND,
                                              CORR_BOUND)
        if last:  # the decrease is below F's rounding: one full step, if F does not rise
            F_new = F(theta - step)
            if np.isfinite(F_new) and F_new <= Fv + 1e-12 * abs(Fv):
                theta, Fv = theta - step, F_new
                g = d.gradient(theta)
                iters += 1
            break
        s = 1.0
        while s > 1e-6:
            F_new = F(theta - s * step)
            if np.isfinite(F_new) and F_new <= Fv + 1e-12 * abs(Fv):
                break
            s *= 0.5
        else:
            break
        theta, Fv = theta - s * step, F_new
        free[L_idx] = np.abs(theta[L_idx]) < CORR_BOUND
        g = d.gradient(theta)
        iters += 1
    return theta, iters, np.where(free, g, 0.0)
