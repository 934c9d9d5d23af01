"""The exact log marginal likelihood of a gaussian random-intercept model with normal priors on
the intercept and coefficients and exponential priors on sigma and the group SD: the model of
the generated program for ``lmer("y ~ x... + (1 | g)", prior=prior_normal() | prior_weak())``.

Given (sigma, tau), the centred-intercept ``Intercept_c ~ N(mu0, s0^2)``, the coefficients
``beta ~ N(b_mu, diag(b_sd^2))`` (of the *centred* design ``Xc``, as the program uses) and the
group effects ``r_g ~ N(0, tau^2)`` integrate out in closed form:

    y | sigma, tau ~ MVN(mu0 + Xc b_mu, sigma^2 I + tau^2 Z Z' + U D U'),
    U = [1, Xc], D = diag(s0^2, b_sd^2),

evaluated with the Woodbury identity on the block-diagonal ``sigma^2 I + tau^2 Z Z'``. The
remaining two-dimensional integral over (log sigma, log tau), priors and Jacobian included, is
done by adaptive quadrature (scipy ``dblquad``) around the mode on the log scale.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize


def log_lik_sigma_tau(sigma: float, tau: float, y: np.ndarray, Xc: np.ndarray, group: np.ndarray,
                      mu0: float, s0: float, b_mu: np.ndarray, b_sd: np.ndarray) -> float:
    """log p(y | sigma, tau) with the intercept, coefficients and group effects integrated out.

    Parameters
    ----------
    sigma, tau : float
        Residual SD and SD of the group intercepts.
    y : numpy.ndarray
        Response (N,).
    Xc : numpy.ndarray
        Centred design matrix (N, K), intercept excluded.
    group : numpy.ndarray
        Group index of each observation, 0-based (N,).
    mu0, s0 : float
        Mean and SD of the normal prior of the centred intercept.
    b_mu, b_sd : numpy.ndarray
        Means and SDs of the normal priors of the coefficients (K,).

    Returns
    -------
    float
    """
    N = y.size
    s2, t2 = sigma * sigma, tau * tau
    n_g = np.bincount(group)
    c_g = t2 / (s2 + n_g * t2)  # A_g^{-1} = (I - c_g 11') / s2 on group g

    def a_inv(v: np.ndarray) -> np.ndarray:  # A^{-1} v, v (N,) or (N, m)
        sums = np.zeros((n_g.size,) + v.shape[1:])
        np.add.at(sums, group, v)
        return (v - (c_g[:, None] * sums if v.ndim > 1 else c_g * sums)[group]) / s2

    logdet_a = float(np.sum(n_g * math.log(s2) + np.log1p(n_g * t2 / s2)))
    U = np.column_stack([np.ones(N), Xc])
    dvar = np.concatenate([[s0 * s0], np.asarray(b_sd, float) ** 2])
    r = y - mu0 - Xc @ np.asarray(b_mu, float)
    ainv_r, ainv_u = a_inv(r), a_inv(U)
    M = np.diag(1.0 / dvar) + U.T @ ainv_u
    Lm = np.linalg.cholesky(M)
    w = np.linalg.solve(Lm, U.T @ ainv_r)
    logdet = logdet_a + float(np.sum(np.log(dvar))) + 2.0 * float(np.sum(np.log(np.diag(Lm))))
    quad = float(r @ ainv_r - w @ w)
    return -0.5 * (N * math.log(2 * math.pi) + logdet + quad)


def log_ml_random_intercept(y: np.ndarray, X: np.ndarray, group: np.ndarray, mu0: float,
                            s0: float, b_mu: np.ndarray, b_sd: np.ndarray, sigma_rate: float,
                            tau_rate: float, *, width: float = 20.0,
                            epsrel: float = 1e-10) -> float:
    """log p(y) of the random-intercept model with sigma ~ Exp(sigma_rate), tau ~ Exp(tau_rate).

    ``X`` is the uncentred design (N, K); it is centred here as the generated program does.
    The integral over (log sigma, log tau) covers ``width`` posterior standard deviations (from
    the curvature at the mode) on each side of the mode. (Debate data, normal prior: -409.96461
    with width 20, -409.96463 with width 14 -- the tail towards tau = 0 decays only like tau --
    and -409.96461 by the trapezoidal rule on a 241 x 241 grid.)
    """
    y = np.asarray(y, float)
    X = np.asarray(X, float).reshape(y.size, -1)
    Xc = X - X.mean(axis=0)
    group = np.asarray(group)

    def logpost(a: float, b: float) -> float:  # log sigma, log tau; priors and Jacobian
        s, t = math.exp(a), math.exp(b)
        return (log_lik_sigma_tau(s, t, y, Xc, group, mu0, s0, b_mu, b_sd)
                + math.log(sigma_rate) - sigma_rate * s + a
                + math.log(tau_rate) - tau_rate * t + b)

    opt = optimize.minimize(lambda p: -logpost(*p), x0=[math.log(np.std(y)) - 0.3, -1.0],
                            method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12,
                                                           "maxiter": 4000})
    a0, b0 = opt.x
    fmax = logpost(a0, b0)
    h = 1e-4
    saa = -(logpost(a0 + h, b0) - 2 * fmax + logpost(a0 - h, b0)) / h**2
    sbb = -(logpost(a0, b0 + h) - 2 * fmax + logpost(a0, b0 - h)) / h**2
    sa, sb = width / math.sqrt(saa), width / math.sqrt(sbb)
    val, _ = integrate.dblquad(lambda b, a: math.exp(logpost(a, b) - fmax), a0 - sa, a0 + sa,
                               b0 - sb, b0 + sb, epsabs=0.0, epsrel=epsrel)
    return fmax + math.log(val)


def debate_log_ml(debate, prior: str, predictors: tuple[str, ...] = ("talk", "perf")) -> float:
    """The exact log ML of ``lmer("sat ~ talk + perf + (1 | group)", debate, prior)`` for
    ``prior`` "normal" (``prior_normal()``) or "weak" (``prior_weak()``, y_range (1, 5)), with
    the prior constants of features.md section 5. ``predictors=("perf",)`` gives the model with
    ``b[talk]`` held at 0 (its prior term dropped; the other priors and the centring of perf are
    unchanged), the restricted model of ``bayes_factor(fixed={"b[talk]": 0})``."""
    y = debate["sat"].to_numpy(float)
    X = debate[list(predictors)].to_numpy(float)
    K = X.shape[1]
    _, group = np.unique(debate["group"].to_numpy(), return_inverse=True)
    if prior == "normal":
        return log_ml_random_intercept(y, X, group, 0.0, 10.0, np.zeros(K), np.full(K, 10.0),
                                       0.2, 0.2)
    if prior == "weak":  # y_range (1, 5): half 2, base 1, mid 3; b_sd = base / sd(X_j)
        b_sd = 1.0 / X.std(axis=0, ddof=1)
        return log_ml_random_intercept(y, X, group, 3.0, 2.0, np.zeros(K), b_sd, 1.0, 1.0)
    raise ValueError(f"prior must be 'normal' or 'weak', got {prior!r}")
