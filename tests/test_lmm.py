"""The exact (closed-form) linear mixed model path of classic() and optimize() against the
generic Laplace path (BridgeStan Hessians) on the same programs.

Tolerances: both paths maximise the same objective; the log-likelihoods agree to rounding
(1e-9 relative) and the fixed effects to 1e-6. The objective (~900 for sleepstudy, rounding
~1e-10) is flat along the variance parameters near the optimum: a move of 1e-6 in a
correlation changes it by ~1e-12, below what either optimiser (finite-difference gradients)
resolves, so variance parameters, random effects and standard errors agree to ~1e-6 absolute
/ 1e-5 relative (the lme4 comparisons in test_classic.py use 1e-4).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesglmm
from bayesglmm.inference.classic import fit_classic
from bayesglmm.inference.lmm_coords import cholesky_corr
from bayesglmm.inference.lmm_select import exact_lmm


def assert_same_fit(a, b) -> None:
    """Two ClassicEstimates of the same model (exact path ``a``, generic ``b``)."""
    assert a.converged and b.converged
    assert abs(a.loglik - b.loglik) <= 1e-9 * abs(b.loglik)
    if np.isfinite(b.reml_loglik):
        assert abs(a.reml_loglik - b.reml_loglik) <= 1e-9 * abs(b.reml_loglik)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a.fixed_se, b.fixed_se, rtol=1e-5)
    np.testing.assert_allclose(a.vcov, b.vcov, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(a.df, b.df, rtol=1e-5)
    for p, ea, eb, sa, sb in zip(a.params, a.estimate, b.estimate, a.se, b.se):
        if p.kind in ("sd", "family"):  # positive scale parameters: relative
            assert abs(ea - eb) <= 1e-5 * abs(eb), (p.user, ea, eb)
        else:  # correlations, random effects, intercepts
            assert abs(ea - eb) <= 2e-6 * max(1.0, abs(eb)), (p.user, ea, eb)
        assert abs(sa - sb) <= 2e-5 * abs(sb) + 1e-9, (p.user, sa, sb)
    assert a.n_par == b.n_par and a.method == b.method


@pytest.mark.slow
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_sleepstudy_exact_equals_generic(sleep_flat_model, method):
    """Random intercept and slope, one grouping factor (closed-form per-group blocks)."""
    assert exact_lmm(sleep_flat_model) is not None
    a = fit_classic(sleep_flat_model, method, exact=True)
    b = fit_classic(sleep_flat_model, method, exact=False)
    assert_same_fit(a, b)


@pytest.fixture(scope="module")
def crossed_model(debate, toolchain):
    m = bayesglmm.lmer("sat ~ talk + perf + (1 | group) + (1 | skill)", data=debate)
    m.compile(verbose=False)
    return m


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["schur", "dense", "sparse"])
def test_crossed_exact_equals_generic(crossed_model, mode):
    """Two crossed grouping terms (group x skill): A = T'Z'ZT + I is not block diagonal;
    factorised by eliminating the group effects (Schur complement of the skills), densely
    (q = 103) and, with the limits lowered, by the sparse LU."""
    from bayesglmm.inference import lmm_factor

    limits = {"schur": {}, "dense": {"SCHUR_MAX": 0}, "sparse": {"SCHUR_MAX": 0, "DENSE_MAX": 10}}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in limits[mode].items():
            mp.setattr(lmm_factor, k, v)
        a = fit_classic(crossed_model, "REML", exact=True)
        lm = exact_lmm(crossed_model)
        assert lm is not None and lm.layout.mode == mode
    b = fit_classic(crossed_model, "REML", exact=False)
    assert_same_fit(a, b)


@pytest.mark.slow
def test_nested_slope_exact_equals_generic(debate, toolchain):
    """Nested terms (group within skill), one with a random slope, by ML."""
    d = debate.assign(sg=debate.skill.astype(str) + ":" + debate.group.astype(str))
    m = bayesglmm.lmer("sat ~ talk + (1 | skill) + (talk | sg)", data=d)
    m.compile(verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # possibly a boundary fit: both paths
        a = fit_classic(m, "ML", exact=True)
        b = fit_classic(m, "ML", exact=False)
    assert_same_fit(a, b)


@pytest.mark.slow
def test_optimize_exact_equals_generic(sleep_flat_model):
    """optimize() with the flat prior: the Laplace step is exact (ML; marginal="auto": REML)."""
    for marginal in ("none", "auto"):
        a = sleep_flat_model.optimize(marginal=marginal, verbose=False)
        b = sleep_flat_model.optimize(marginal=marginal, verbose=False, exact=False)
        assert abs(a.objective - b.objective) <= 1e-9 * abs(b.objective)
        assert abs(a.log_ml - b.log_ml) <= 1e-6 * abs(b.log_ml)
        sa, sb = a.summary(), b.summary()
        for name in sb.index:
            ea, eb = sa.loc[name, "estimate"], sb.loc[name, "estimate"]
            assert abs(ea - eb) <= 1e-5 * max(1.0, abs(eb)), (marginal, name, ea, eb)
            assert abs(sa.loc[name, "se"] - sb.loc[name, "se"]) <= 2e-5 * sb.loc[name, "se"], name
        if marginal == "auto":
            np.testing.assert_allclose(sa["df"].dropna(), sb["df"].dropna(), rtol=1e-5)


@pytest.mark.slow
def test_exact_path_needs_the_flat_prior(debate_model, debate_compiled):
    """A proper prior adds terms the closed form does not have: the check against the
    program's log density fails and the generic path is kept."""
    assert exact_lmm(debate_model) is None


@pytest.mark.slow
def test_exact_path_on_simulated_groups(toolchain):
    """Many groups (400) and rows (8,000), y ~ x + (x | g): the two paths agree."""
    rng = np.random.default_rng(7)
    n, G = 8000, 400
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 1, G)[g] + rng.normal(0, 0.4, G)[g] * x + rng.normal(size=n)
    m = bayesglmm.lmer("y ~ x + (x | g)", data=pd.DataFrame({"y": y, "x": x, "g": g}))
    m.compile(verbose=False)
    assert_same_fit(fit_classic(m, "REML", exact=True), fit_classic(m, "REML", exact=False))


def test_cholesky_corr_is_a_correlation_factor():
    rng = np.random.default_rng(1)
    for M in (1, 2, 3, 5):
        L = cholesky_corr(rng.normal(size=M * (M - 1) // 2), M)
        R = L @ L.T
        np.testing.assert_allclose(np.diag(R), 1.0)
        assert np.allclose(L, np.tril(L)) and np.all(np.diag(L) > 0)
    # M = 2: the single unconstrained value is atanh of the correlation (Stan's transform)
    np.testing.assert_allclose((cholesky_corr(np.array([0.3]), 2) @ cholesky_corr(
        np.array([0.3]), 2).T)[1, 0], np.tanh(0.3))
