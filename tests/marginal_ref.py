"""Reference computations of the family fit tests (tests/test_family_beta.py,
tests/test_family_zero_inflated.py), numpy/scipy only: adaptive Gauss-Hermite quadrature over
one normal random intercept (with one node: the Laplace approximation), the maximisation of the
resulting likelihood, and a recovery check."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def group_log_integral(eta0: np.ndarray, derivs: Callable, sd: float, nodes: int) -> float:
    """log of int prod_i p(y_i | eta0_i + u) Normal(u | 0, sd) du for one group.

    ``derivs(eta)`` returns the log densities of the group's observations at ``eta`` and their
    first and second derivatives in eta (arrays). The quadrature is centred at the mode of the
    integrand (Newton) and scaled by its curvature."""
    t, w = np.polynomial.hermite.hermgauss(nodes)
    u = 0.0
    for _ in range(100):
        _, d1, d2 = derivs(eta0 + u)
        step = (d1.sum() - u / sd**2) / (d2.sum() - 1 / sd**2)
        u -= step
        if abs(step) < 1e-13:
            break
    h = -(derivs(eta0 + u)[2].sum() - 1 / sd**2)
    s = np.sqrt(2.0 / h)
    us = u + s * t
    logf = np.array([derivs(eta0 + v)[0].sum() for v in us])
    logf += -0.5 * (us / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
    return float(np.log(s) + np.log(np.sum(w * np.exp(t**2 + logf - logf.max()))) + logf.max())


def maximise(f: Callable, start: np.ndarray) -> tuple[np.ndarray, float]:
    """Maximum of ``f`` (a log likelihood of an unconstrained vector): BFGS, then a Nelder-Mead
    polish to a 1e-10 step. Returns (argmax, max)."""
    from scipy import optimize

    res = optimize.minimize(lambda th: -f(th), start, method="BFGS", options={"gtol": 1e-8})
    res = optimize.minimize(lambda th: -f(th), res.x, method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    return res.x, -res.fun


def assert_recovers(summary, truth: dict[str, float], mean: str = "estimate",
                    sd: str = "se") -> None:
    """Every true value within 3.5 standard errors of its estimate (probability < 5e-4 per
    parameter of failing by chance)."""
    for p, true in truth.items():
        est, se = summary.loc[p, mean], summary.loc[p, sd]
        assert abs(est - true) < 3.5 * se, (p, est, se, true)
