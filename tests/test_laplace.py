"""Internals of the Laplace optimiser (bayesglmm/inference/optimize.py) that make it fast:
the factored covariance (LaplaceCov), one H_zz per inner solve for quadratic families, the GLM
warm start of the outer parameters. The fitted numbers themselves are checked against
lme4/glmmTMB in test_classic.py; here each shortcut is checked against the slow way.

Programs: sleepstudy ``(Days | Subject)`` (2 x 2 blocks of H_zz) and cbpp ``(1 | herd)``
(1 x 1 blocks), both from conftest (no new program).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import bayesglmm
from bayesglmm.inference.classic import fixed_unc_index
from bayesglmm.inference.optimize import (
    LaplaceCov,
    LaplaceObjective,
    Objective,
    block_indices,
    find_laplace_mode,
    re_pattern,
    wald_table,
)
from bayesglmm.results import bracket_name, resolve_params


class CountingObjective(Objective):
    """Objective that counts BridgeStan gradient calls."""

    calls = 0

    def value_grad(self, u):
        self.calls += 1
        return super().value_grad(u)


def _setup(model, fixed_too: bool = False):
    bs = model._bridgestan(False)
    z_idx = block_indices(bs, model.program.re_blocks)
    if fixed_too:  # REML: the fixed effects integrated out too (H_zz not block diagonal)
        names = [bracket_name(n) for n in bs.param_names(include_tp=True, include_gq=True)]
        z_idx = np.union1d(z_idx, fixed_unc_index(bs, resolve_params(model.program, names))[1])
    return bs, z_idx


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sleep_ml", "sleep_reml", "cbpp"])
def test_factored_covariance_matches_dense(case, sleep_flat_model, cbpp_model):
    """Every product of LaplaceCov equals the same product with the dense matrix (TMB's
    construction, formed explicitly), to rounding."""
    model = cbpp_model if case == "cbpp" else sleep_flat_model
    bs, z_idx = _setup(model, fixed_too=case == "sleep_reml")
    mode = find_laplace_mode(Objective(bs), z_idx, np.zeros(bs.param_unc_num()),
                             program=model.program, warm_start=True)
    cov = mode.cov_unc
    assert isinstance(cov, LaplaceCov)
    dense = np.asarray(cov)
    n = dense.shape[0]
    assert dense.shape == (n, n) == cov.shape
    assert np.allclose(dense, dense.T, rtol=0, atol=1e-12 * np.abs(dense).max())
    assert np.all(np.linalg.eigvalsh(dense) > 0)
    scale = np.abs(dense).max()
    rng = np.random.default_rng(3)
    J = rng.normal(size=(7, n))
    Jsp = sparse.random(40, n, density=0.1, random_state=4, format="csr")
    assert np.allclose(cov.diagonal(), np.diag(dense), rtol=1e-10, atol=1e-14 * scale)
    assert np.allclose(J @ cov, J @ dense, rtol=1e-10, atol=1e-12 * scale)
    assert np.allclose(cov @ J.T, dense @ J.T, rtol=1e-10, atol=1e-12 * scale)
    assert np.allclose(cov.quad_diag(J), np.einsum("ij,jk,ik->i", J, dense, J), rtol=1e-10)
    want = np.einsum("ij,jk,ik->i", Jsp.toarray(), dense, Jsp.toarray())
    assert np.allclose(cov.quad_diag(Jsp), want, rtol=1e-10, atol=1e-14 * scale)
    t = mode.extra["theta_index"]
    zi = mode.extra["z_index"]
    for i, j in ((t[0], t[-1]), (t[1], t[1]), (zi[1], zi[1]), (t[0], zi[2]), (zi[0], zi[-1])):
        assert cov[i, j] == pytest.approx(dense[i, j], rel=1e-10, abs=1e-14 * scale)
    mixed = np.array([t[0], zi[1], t[-1]])
    for idx in (t, mixed):
        assert np.allclose(cov.block(idx), dense[np.ix_(idx, idx)], rtol=1e-10,
                           atol=1e-14 * scale)
    # the delta-method table: the same numbers from the factored and the dense covariance
    names = [bracket_name(nm) for nm in bs.param_names(include_tp=True, include_gq=True)]
    params = resolve_params(model.program, names)
    index = [names.index(p.stan) for p in params]
    kinds = [p.kind for p in params]
    a = wald_table(bs, mode.theta_unc, cov, index, kinds)
    b = wald_table(bs, mode.theta_unc, dense, index, kinds)
    for x, y in zip(a, b):
        assert np.allclose(x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_quadratic_inner_solve_matches_newton(sleep_flat_model):
    """Gaussian family (Family.quadratic): the inner solve that keeps one H_zz gives the same
    z^, f and log det H_zz as Newton with H_zz recomputed at every step, with fewer gradient
    calls."""
    bs, z_idx = _setup(sleep_flat_model)
    u0 = np.zeros(bs.param_unc_num())
    pattern = re_pattern(sleep_flat_model.program, bs, z_idx)
    out = {}
    for quadratic in (False, True):
        obj = CountingObjective(bs)
        lap = LaplaceObjective(obj, z_idx, u0.size, u0, pattern, quadratic=quadratic)
        theta = np.array([250.0, 10.0, 3.2, 3.1, 1.7, 0.1])  # near the ML estimate
        assert lap.t.size == theta.size
        obj.calls = 0
        z, f, fac = lap.inner(theta, np.zeros(z_idx.size))
        out[quadratic] = (z, f, fac.half_logdet(), obj.calls)
    (z0, f0, ld0, c0), (z1, f1, ld1, c1) = out[False], out[True]
    assert np.allclose(z1, z0, rtol=1e-8, atol=1e-9)
    assert f1 == pytest.approx(f0, rel=1e-12)
    assert ld1 == pytest.approx(ld0, rel=1e-9)
    assert c1 < c0


@pytest.fixture(scope="module")
def sleep_noncentred(sleepstudy, toolchain):
    """sleep_flat_model's formula with the non-centred form ("auto" centres it)."""
    m = bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", data=sleepstudy,
                       param="noncentered")
    m.compile(verbose=False)
    return m


@pytest.fixture(scope="module")
def cbpp_noncentred(cbpp, toolchain):
    """cbpp_model's formula with the non-centred form ("auto" centres it)."""
    m = bayesglmm.glmer("cbind(incidence, failures) ~ period + (1 | herd)", data=cbpp,
                        family="binomial", param="noncentered")
    m.compile(verbose=False)
    return m


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sleep", "cbpp", "sleep_nc", "cbpp_nc"])
def test_warm_start_same_optimum_fewer_iterations(case, sleep_flat_model, cbpp_model,
                                                  sleep_noncentred, cbpp_noncentred):
    """The GLM warm start reaches the optimum from u = 0 (same objective and estimates to the
    optimiser's precision) in fewer outer iterations, in centred coordinates (the fixtures:
    "auto" centres both terms; the warm start ties each group's coefficients to the population
    ones) and non-centred ones."""
    model = {"sleep": sleep_flat_model, "cbpp": cbpp_model, "sleep_nc": sleep_noncentred,
             "cbpp_nc": cbpp_noncentred}[case]
    assert set(model.re_param.values()) == {"noncentered" if case.endswith("_nc") else "centered"}
    bs, z_idx = _setup(model)
    u0 = np.zeros(bs.param_unc_num())
    cold = find_laplace_mode(Objective(bs), z_idx, u0, program=model.program)
    warm = find_laplace_mode(Objective(bs), z_idx, u0, program=model.program, warm_start=True)
    assert cold.converged and warm.converged
    assert warm.objective == pytest.approx(cold.objective, rel=1e-11)
    t = warm.extra["theta_index"]
    # estimates agree to a small fraction of their standard errors
    se = np.sqrt(np.diag(warm.cov_unc.cov_t))
    assert np.all(np.abs(warm.theta_unc[t] - cold.theta_unc[t]) < 1e-3 * se)
    assert warm.iterations < cold.iterations


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sleep", "sleep_reml", "cbpp"])
def test_envelope_gradient_matches_differences_of_F(case, sleep_flat_model, cbpp_model):
    """LaplaceObjective.grad (envelope theorem: no inner re-solves) = central differences of
    F, at a point away from the optimum (gradient of order 1-100)."""
    model = cbpp_model if case == "cbpp" else sleep_flat_model
    bs, z_idx = _setup(model, fixed_too=case == "sleep_reml")
    u0 = np.zeros(bs.param_unc_num())
    quadratic = model.spec.family.quadratic
    assert quadratic == (case != "cbpp")
    lap = LaplaceObjective(Objective(bs), z_idx, u0.size, u0,
                           re_pattern(model.program, bs, z_idx), quadratic=quadratic)
    theta = {"sleep": [250.0, 10.0, 3.2, 3.1, 1.7, 0.1], "sleep_reml": [3.2, 3.1, 1.7, 0.1],
             "cbpp": [-1.2, -1.0, -1.1, -1.5, -0.3]}[case]
    theta = np.asarray(theta)
    assert lap.t.size == theta.size
    from bayesglmm.inference.optimize import fd_grad

    env = lap.grad(theta)
    fd = fd_grad(lap.value, theta)
    assert env is not None
    assert np.max(np.abs(fd)) > 0.1
    # both carry ~1e-6 of differencing error (F's rounding noise / 1e-5 steps)
    assert np.allclose(env, fd, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_optimize_never_forms_the_dense_covariance(sleep_flat_model):
    """optimize() (estimates, delta-method table, boundary check) works on the factored
    covariance: the dense (n x n) matrix, O(groups^2) memory, is never built."""
    fit = sleep_flat_model.optimize(verbose=False)
    assert isinstance(fit.cov_unc, LaplaceCov)
    assert fit.cov_unc._dense is None
    assert np.all(np.isfinite(fit.summary()["se"]))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sleep", "cbpp"])
def test_centred_and_noncentred_laplace_agree(case, sleep_flat_model, cbpp_model,
                                              sleep_noncentred, cbpp_noncentred):
    """optimize(exact=False) finds the same optimum in centred and non-centred coordinates.
    For fixed outer parameters the centred coefficients are an affine map of the standardised
    effects, and the Laplace approximation is invariant under it, so F(theta) is the same
    function (measured: objectives 1e-11 (gaussian) and 1.2e-9 (binomial: H_zz by 1e-4 steps
    in different coordinates) apart). The centred sleepstudy program stopped at 896.88 before
    (optimum 875.97). The log ML carries the finite-difference outer Hessian's error: F's
    rounding noise (~1e-11) over the squared step (1e-6), ~1e-6 relative on its entries (the
    non-centred cbpp value itself moves by 7.6e-7 when the H_zz step goes from 1e-4 to 1e-3;
    centred vs non-centred measured 9.4e-7 (cbpp), 1.7e-8 (sleepstudy)): 2e-6."""
    cen, non = ((sleep_flat_model, sleep_noncentred) if case == "sleep"
                else (cbpp_model, cbpp_noncentred))
    assert set(cen.re_param.values()) == {"centered"}
    assert set(non.re_param.values()) == {"noncentered"}
    a = cen.optimize(exact=False, verbose=False)
    b = non.optimize(exact=False, verbose=False)
    assert a.converged and b.converged, (a.message, b.message)
    assert abs(a.objective - b.objective) <= 1e-6
    assert abs(a.log_ml - b.log_ml) <= 2e-6
    sa, sb = a.summary(), b.summary()
    assert list(sa.index) == list(sb.index)
    for name in sb.index:
        ea, eb = sa.loc[name, "estimate"], sb.loc[name, "estimate"]
        assert abs(ea - eb) <= 1e-6 * max(1.0, abs(eb)), (name, ea, eb)
        assert abs(sa.loc[name, "se"] - sb.loc[name, "se"]) <= 1e-5 * sb.loc[name, "se"], name
    ra, rb = a.random_effects(), b.random_effects()
    np.testing.assert_allclose(np.asarray(ra["estimate"], dtype=float),
                               np.asarray(rb["estimate"], dtype=float), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ra["se"], dtype=float),
                               np.asarray(rb["se"], dtype=float), rtol=1e-5)
    if case == "sleep":  # the exact profiled path (lme4's PLS) on the centred program
        e = cen.optimize(verbose=False)
        assert abs(e.objective - a.objective) <= 1e-9 * abs(e.objective)
        assert abs(e.log_ml - a.log_ml) <= 2e-6
        se = e.summary()
        for name in se.index:
            assert abs(se.loc[name, "estimate"] - sa.loc[name, "estimate"]) <= 1e-6 * max(
                1.0, abs(se.loc[name, "estimate"])), name
