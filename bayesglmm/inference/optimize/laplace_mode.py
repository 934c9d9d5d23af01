"""The Laplace mode: L-BFGS on the Laplace objective from the warm start, Newton polishing, the
factored covariance."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import optimize as sopt

from .laplace import LaplaceObjective, fd_grad, fd_hess
from .laplace_cov import LaplaceCov
from .objective import JointMode, Objective, hessian_inverse
from .sparsity import re_pattern
from .warm_start import glm_warm_start

__all__ = ['find_laplace_mode']


def find_laplace_mode(objective: Objective, z_idx: np.ndarray, u0: np.ndarray, *,
                      gtol: float = 1e-6, maxiter: int = 500, program: Any = None,
                      warm_start: bool = False) -> JointMode:
    """Maximise the Laplace-approximate marginal posterior of the outer parameters.

    Returns a :class:`JointMode` whose ``theta_unc`` is the full unconstrained vector
    (theta^, z^(theta^)) and whose ``cov_unc`` is the covariance used for the delta method, a
    :class:`LaplaceCov` (TMB's construction, kept factored). ``program`` (the StanProgram): the
    sparsity of H_zz comes from its structure (:func:`re_pattern`) instead of a dense Hessian,
    and its family says whether f is quadratic in z (one H_zz per inner solve).
    ``warm_start``: start from :func:`glm_warm_start` instead of ``u0``'s outer parameters.

    Outer algorithm: L-BFGS-B on F(theta) with central finite-difference gradients, then
    Newton steps with a finite-difference Hessian until the gradient is below ``gtol`` or the
    predicted decrease of F is below its rounding noise.
    """
    n = u0.size
    pattern = None if program is None else re_pattern(program, objective.bs_model, z_idx)
    family = getattr(getattr(program, "spec", None), "family", None)
    lap = LaplaceObjective(objective, z_idx, n, np.asarray(u0, dtype=float), pattern,
                           quadratic=bool(getattr(family, "quadratic", False)))
    lap.zhat = np.asarray(u0)[lap.z].copy()
    theta = np.asarray(u0)[lap.t].copy()
    if warm_start and program is not None:
        theta = glm_warm_start(objective, lap, u0, program)
    if not np.isfinite(lap.value(theta)):
        raise ValueError("the log density is not finite at the initial values; give other init=")

    def fg(x):
        f = lap.value(x)
        if not np.isfinite(f):
            return np.inf, np.zeros(x.size)
        g = lap.grad(x)
        return f, (fd_grad(lap.value, x) if g is None else g)

    res = sopt.minimize(fg, theta, jac=True, method="L-BFGS-B",
                        options={"maxiter": maxiter, "gtol": 1e-4, "ftol": 1e-12})
    theta = res.x
    iters = int(res.nit)
    # Newton polishing on F with a finite-difference Hessian; stop when the gradient vanishes
    # or when the predicted decrease g' H^-1 g is below the rounding noise of F (large models:
    # F ~ 1e5, its finite-difference gradient never gets below ~1e-6)
    F = lap.value(theta)
    g = fd_grad(lap.value, theta)
    for _ in range(20):
        if np.max(np.abs(g)) < gtol:
            break
        Ht = fd_hess(lap.value, theta)
        try:
            step = np.linalg.solve(Ht, g)
            np.linalg.cholesky(Ht)
        except np.linalg.LinAlgError:
            break
        if float(g @ step) < 100 * np.finfo(float).eps * max(1.0, abs(F)):
            break
        t = 1.0
        while t > 1e-6:
            F_new = lap.value(theta - t * step)
            if np.isfinite(F_new) and F_new <= F + 1e-12 * abs(F):
                break
            t *= 0.5
        else:
            break
        theta, F = theta - t * step, F_new
        g = fd_grad(lap.value, theta)
        iters += 1
    gnorm = float(np.max(np.abs(g))) if g.size else 0.0
    Ht = fd_hess(lap.value, theta)
    Ht = 0.5 * (Ht + Ht.T)
    z, _f, fac = lap.inner(theta)
    u = lap.full(theta, z)
    # cross derivatives d2f / dz dtheta by central gradient differences along theta
    Hzt = np.empty((lap.z.size, lap.t.size))
    for k, i in enumerate(lap.t):
        e = np.zeros(n)
        e[i] = 1e-5 * max(1.0, abs(u[i]))
        Hzt[:, k] = ((objective.value_grad(u + e)[1] - objective.value_grad(u - e)[1])
                     / (2 * e[i]))[lap.z]
    logjac = objective.log_jacobian(u)  # only theta is constrained-transformed in the outer problem
    log_ml = math.nan
    cov_t, logdet_t, bad_t = hessian_inverse(Ht)
    if logdet_t is not None:
        # log|J| of the outer parameters: the z are unconstrained, their Jacobian terms are 0
        log_ml = -F + logjac + 0.5 * lap.t.size * math.log(2 * math.pi) + 0.5 * logdet_t
    A = -fac.solve_many(Hzt)  # dz^/dtheta = -H_zz^-1 H_ztheta (solves: no dense q x q product)
    cov = LaplaceCov(n, lap.t, lap.z, cov_t, A, fac)
    bad = np.zeros(n, dtype=bool)
    bad[lap.t[bad_t]] = True
    converged = bool(np.isfinite(F) and gnorm < 1e-3)
    msg = "" if converged else f"gradient norm {gnorm:.2g} after {iters} iterations; {res.message}"
    return JointMode(u, float(F), converged, msg, iters, Ht, cov, float(logjac), float(log_ml),
                     gnorm, extra={"theta_index": lap.t, "z_index": lap.z, "degenerate": bad})
