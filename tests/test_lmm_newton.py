"""Derivatives and Newton polishing of the exact LMM path (bayesglmm/inference/lmm_newton.py).

Slow (no new Stan program: the gaussian generic program): the closed-form fixed-effect
gradient and Hessian of the ML objective equal finite differences of the objective, and an
ML fit with a 40-level factor as a fixed effect evaluates the objective about as often as the
REML fit (whose fixed effects are integrated), not (p + k)^2 times.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_lmm_design import _factor_data

import bayesglmm
from bayesglmm.inference import lmm
from bayesglmm.inference.lmm_newton import Derivatives, fd_grad4
from bayesglmm.inference.lmm_select import exact_lmm
from bayesglmm.inference.optimize import fd_hess


@pytest.fixture(scope="module")
def factor_lmm(toolchain):
    e = exact_lmm(bayesglmm.lmer("y ~ x + f + (1 | g)", _factor_data()))
    assert e is not None and e.fixed.size == 41
    return e


@pytest.mark.slow
def test_beta_gradient_is_the_objectives(factor_lmm):
    """F is quadratic in beta: central differences of step 1e-3 are exact up to F's rounding
    (~1e-12 absolute over 2e-3: ~1e-9), second differences to ~1e-12 / 1e-6."""
    e = factor_lmm
    u = e.fit(reml=False).theta_unc.copy()
    u[e.fixed] += np.random.default_rng(3).normal(0, 0.05, e.fixed.size)
    g, H = e.beta_gradient(u)

    def F(b: np.ndarray) -> float:
        v = u.copy()
        v[e.fixed] = b
        return e.value(v, False)

    np.testing.assert_allclose(g, fd_grad4(F, u[e.fixed]), rtol=1e-6, atol=1e-7)
    sub = e.fixed[:4]
    Hfd = fd_hess(lambda b: F(np.concatenate([b, u[e.fixed[4:]]])), u[sub])
    np.testing.assert_allclose(H[:4, :4], Hfd, rtol=1e-4, atol=1e-4)
    # the mixed block against full second differences
    t_idx = e.outer_index(False)

    def Ft(th: np.ndarray) -> float:
        v = u.copy()
        v[t_idx] = th
        return e.value(v, False)

    Hd = Derivatives(e, Ft, u, t_idx, False).hessian(u[t_idx])
    Hfull = fd_hess(Ft, u[t_idx])
    np.testing.assert_allclose(Hd, Hfull, rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_ml_fit_cost_does_not_grow_with_the_fixed_effects(factor_lmm, monkeypatch):
    """Objective evaluations (penalised least-squares solves) of an ML fit with 41 fixed
    effects: second differences over every outer coordinate took ~7,600 here; the closed-form
    fixed-effect blocks leave about as many as the REML fit (~70-320)."""
    count = {"n": 0}
    pls = lmm.ExactLMM._pls

    def counted(self, *a, **k):
        count["n"] += 1
        return pls(self, *a, **k)

    monkeypatch.setattr(lmm.ExactLMM, "_pls", counted)
    factor_lmm.fit(reml=True)
    n_reml, count["n"] = count["n"], 0
    factor_lmm.fit(reml=False)
    assert count["n"] <= 2 * n_reml, (count["n"], n_reml)
    assert count["n"] < factor_lmm.fixed.size ** 2
