"""The objective on Stan's unconstrained scale (BridgeStan log density, gradient, Hessian), the
starting point, the joint posterior mode (L-BFGS, then Newton) and a robust Hessian inverse."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import linalg as sla
from scipy import optimize as sopt

from ..ffi import gradient_function

__all__ = ['JointMode', 'Objective', 'find_joint_mode', 'hessian_inverse', 'initial_point']


@dataclass
class Objective:
    """Negative log posterior f(u) on the unconstrained scale (all constants, no Jacobian)."""

    bs_model: Any

    def __post_init__(self) -> None:
        self._grad = gradient_function(self.bs_model)

    def value(self, u: np.ndarray) -> float:
        return -self.bs_model.log_density(u, propto=False, jacobian=False)

    def value_grad(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        lp, g = self._grad(u)
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
    cov_unc: Any  # inverse Hessian (ndarray; LaplaceCov for Laplace fits), None if not PD
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
        step = sla.cho_solve((L, True), g, check_finite=False)
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
    log_ml = math.nan
    logjac = objective.log_jacobian(u)
    cov, logdet_cov, bad = hessian_inverse(H)
    if logdet_cov is not None:
        log_ml = -f + logjac + 0.5 * n * math.log(2 * math.pi) + 0.5 * logdet_cov
    if not converged:
        message = f"gradient norm {gnorm:.2g} after {iters} iterations; {message}"
    return JointMode(u, float(f), converged, message, iters, H, cov, float(logjac), float(log_ml),
                     gnorm, extra={"degenerate": bad})


def hessian_inverse(H: np.ndarray, rtol: float = 1e-9) -> tuple[np.ndarray, float | None, np.ndarray]:
    """(covariance, log det of it or None, mask of degenerate coordinates) from a Hessian.

    Well-conditioned and positive definite: the inverse. Otherwise (a parameter on a boundary,
    e.g. a random-effect SD going to 0, makes the objective flat in its direction; curvature
    below ``rtol`` times the largest one counts as flat): the pseudo-inverse on the
    eigen-directions with positive curvature; coordinates that load on the dropped directions
    are flagged so that their standard errors are reported as unavailable.
    """
    n = H.shape[0]
    H = 0.5 * (H + H.T)
    if n > 500:  # large joint problems: Cholesky only (an eigen-decomposition is too costly)
        try:
            L = np.linalg.cholesky(H)
            Linv = sla.solve_triangular(L, np.eye(n), lower=True, check_finite=False)
            return Linv.T @ Linv, -2.0 * float(np.sum(np.log(np.diag(L)))), np.zeros(n, dtype=bool)
        except np.linalg.LinAlgError:
            pass
    w, V = np.linalg.eigh(H)
    top = float(w.max()) if n else 0.0
    keep = w > rtol * top if top > 0 else np.zeros(n, dtype=bool)
    cov = (V[:, keep] / w[keep]) @ V[:, keep].T
    if keep.all():
        return cov, -float(np.sum(np.log(w))), np.zeros(n, dtype=bool)
    bad = np.sum(V[:, ~keep] ** 2, axis=1) > 1e-2
    return cov, None, bad
