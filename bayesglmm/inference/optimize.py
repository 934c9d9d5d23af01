"""Posterior modes through BridgeStan (in-process log density, gradient and Hessian).

``find_joint_mode`` maximises log p(y, theta) over *all* parameters in the natural (constrained)
parameterisation, i.e. without Jacobian terms (features §8.1), working on Stan's unconstrained
scale u: L-BFGS first, then Newton steps with the Hessian until the gradient vanishes.
``wald_table`` turns the mode and the inverse Hessian on the u scale into estimates, delta-method
SEs and Wald intervals for any list of constrained quantities (parameters, transformed
parameters, generated quantities).

The objective is a small object (``Objective``) so that the Laplace-over-random-effects optimiser
(later issue) can supply its own (outer parameters only, random-effect blocks integrated out) and
reuse ``find_joint_mode``'s driver and ``wald_table``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize as sopt

__all__ = ["Z95", "JointMode", "Objective", "find_joint_mode", "initial_point", "wald_table"]

Z95 = 1.959963984540054


@dataclass
class Objective:
    """Negative log posterior f(u) on the unconstrained scale (all constants, no Jacobian)."""

    bs_model: Any

    def value(self, u: np.ndarray) -> float:
        return -self.bs_model.log_density(u, propto=False, jacobian=False)

    def value_grad(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        lp, g = self.bs_model.log_density_gradient(u, propto=False, jacobian=False)
        return -lp, -np.asarray(g)

    def hessian(self, u: np.ndarray) -> np.ndarray:
        _, _, h = self.bs_model.log_density_hessian(u, propto=False, jacobian=False)
        h = -np.asarray(h)
        return 0.5 * (h + h.T)

    def log_jacobian(self, u: np.ndarray) -> float:
        """Sum of log-Jacobians of the unconstraining transforms at u."""
        return self.bs_model.log_density(u, propto=False, jacobian=True) - self.bs_model.log_density(
            u, propto=False, jacobian=False
        )


@dataclass
class JointMode:
    theta_unc: np.ndarray
    objective: float
    converged: bool
    message: str
    iterations: int
    hessian: np.ndarray  # of the objective (negative log posterior) w.r.t. u
    cov_unc: np.ndarray | None  # inverse Hessian, None if not positive definite
    log_jacobian: float
    log_ml: float  # Laplace approximation of log p(y); NaN if the Hessian is not PD
    grad_norm: float = math.nan
    extra: dict = field(default_factory=dict)


def initial_point(bs_model: Any, init: Any = None, seed: int | None = None) -> np.ndarray:
    """Unconstrained starting point.

    ``init=None``: u = 0 (sigma = 1, sd = 1, b = 0, ...); a number r: uniform(-r, r) on the
    unconstrained scale (Stan's convention, seeded); a dict of Stan-named values (constrained
    scale, possibly partial: unnamed parameters start at u = 0); an array: the unconstrained
    vector itself.
    """
    n = bs_model.param_unc_num()
    if init is None:
        return np.zeros(n)
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        if init < 0:
            raise ValueError(f"init must be a non-negative radius, not {init}")
        rng = np.random.default_rng(seed)
        return rng.uniform(-init, init, size=n)
    if isinstance(init, Mapping):
        rng = bs_model.new_rng(seed if seed is not None else 1)
        try:
            return bs_model.param_initialize(rng, dict(init), init_radius=0.0, jacobian=False)
        except RuntimeError as e:
            raise ValueError(f"invalid init values: {e}") from None
    arr = np.asarray(init, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"an array init must be the unconstrained vector of length {n}")
    return arr


def find_joint_mode(
    objective: Objective,
    u0: np.ndarray,
    *,
    gtol: float = 1e-8,
    maxiter: int = 20000,
    newton_steps: int = 50,
) -> JointMode:
    """Minimise ``objective`` from ``u0``: L-BFGS-B, then damped Newton polishing."""
    u = np.asarray(u0, dtype=float).copy()
    n = u.size

    def fg(x):
        try:
            f, g = objective.value_grad(x)
        except RuntimeError:
            return np.inf, np.zeros(n)
        if not np.isfinite(f):
            return np.inf, np.zeros(n)
        return f, g

    f0, _ = fg(u)
    if not np.isfinite(f0):
        raise ValueError(
            "the log density is not finite at the initial values; give other init= values"
        )
    iters = 0
    message = ""
    if n > 0:
        res = sopt.minimize(
            fg, u, jac=True, method="L-BFGS-B",
            options={"maxiter": maxiter, "maxfun": 2 * maxiter, "gtol": gtol, "ftol": 1e-15,
                     "maxcor": 20},
        )
        u = res.x
        iters = int(res.nit)
        message = str(res.message)

    # Newton polishing: quadratic convergence to the mode, gradient from autodiff.
    f, g = fg(u)
    H = None
    for _ in range(newton_steps if n else 0):
        if np.max(np.abs(g)) < gtol:
            break
        try:
            H = objective.hessian(u)
            L = np.linalg.cholesky(H)
        except (np.linalg.LinAlgError, RuntimeError):
            break
        step = np.linalg.solve(L.T, np.linalg.solve(L, g))
        t = 1.0
        while t > 1e-6:
            f_new, g_new = fg(u - t * step)
            if np.isfinite(f_new) and f_new <= f + 1e-12 * abs(f):
                break
            t *= 0.5
        else:
            break
        u, f, g = u - t * step, f_new, g_new
        iters += 1
    gnorm = float(np.max(np.abs(g))) if n else 0.0
    H = objective.hessian(u) if n else np.zeros((0, 0))
    converged = bool(np.isfinite(f) and gnorm < 1e-3)  # max |d log p / du|
    cov = None
    log_ml = math.nan
    logjac = objective.log_jacobian(u)
    try:
        L = np.linalg.cholesky(H)
        Linv = np.linalg.inv(L)
        cov = Linv.T @ Linv
        logdet_cov = -2.0 * float(np.sum(np.log(np.diag(L))))
        log_ml = -f + logjac + 0.5 * n * math.log(2 * math.pi) + 0.5 * logdet_cov
    except np.linalg.LinAlgError:
        warnings.warn(
            "the Hessian at the mode is not positive definite: standard errors are not available",
            RuntimeWarning, stacklevel=3,
        )
    if not converged:
        message = f"gradient norm {gnorm:.2g} after {iters} iterations; {message}"
    return JointMode(u, float(f), converged, message, iters, H, cov, float(logjac), float(log_ml), gnorm)


def _constrain_fn(bs_model: Any, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    def c(u):
        rng = bs_model.new_rng(seed)  # same stream every call: differences are smooth
        return bs_model.param_constrain(u, include_tp=True, include_gq=True, rng=rng)

    return c


def wald_table(
    bs_model: Any,
    u: np.ndarray,
    cov: np.ndarray | None,
    index: Sequence[int],
    kinds: Sequence[str],
    *,
    seed: int = 1,
    z: float = Z95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Estimates, SEs, lower and upper 95% limits of the constrained quantities ``index``
    (positions in ``param_constrain(include_tp=True, include_gq=True)``).

    SE: delta method, J cov J' with J from central differences of the constraining map.
    Intervals (features §8.1): a quantity that is a function of one unconstrained coordinate
    (sigma, sd, b, Intercept_c, ...) gets the back-transform of u_i ± z se(u_i), so scale
    parameters have log-symmetric intervals; correlations get Fisher-z intervals; other
    transformed quantities (e.g. Intercept) est ± z SE.
    """
    constrain = _constrain_fn(bs_model, seed)
    index = np.asarray(index, dtype=int)
    full = constrain(u)
    est = full[index].astype(float)
    n = u.size
    if cov is None or n == 0:
        nan = np.full(index.size, np.nan)
        return est, nan, nan.copy(), nan.copy()
    J = np.zeros((index.size, n))
    for i in range(n):
        h = 1e-6 * max(1.0, abs(u[i]))
        up = u.copy()
        dn = u.copy()
        up[i] += h
        dn[i] -= h
        J[:, i] = (constrain(up)[index] - constrain(dn)[index]) / (2 * h)
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", J, cov, J), 0.0))
    lower = est - z * se
    upper = est + z * se
    absJ = np.abs(J)
    for r in range(index.size):
        nz = np.flatnonzero(absJ[r] > 1e-9 * max(1.0, absJ[r].max()))
        if kinds[r] == "corr" and abs(est[r]) < 1 and se[r] > 0:
            zr = math.atanh(est[r])
            sz = se[r] / (1 - est[r] ** 2)
            lower[r], upper[r] = math.tanh(zr - z * sz), math.tanh(zr + z * sz)
        elif nz.size == 1:
            i = nz[0]
            su = math.sqrt(max(cov[i, i], 0.0))
            a = u.copy()
            b = u.copy()
            a[i] -= z * su
            b[i] += z * su
            va, vb = constrain(a)[index[r]], constrain(b)[index[r]]
            lower[r], upper[r] = min(va, vb), max(va, vb)
    return est, se, lower, upper
