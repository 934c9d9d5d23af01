"""Fits of models whose program reads the fixed-effect design in CSR form (bayesglmm/design_csr.py).

Slow. ``y ~ x + f + (1 | g)`` with an 80-level factor ``f`` (800 rows, 80 design columns, 97.5% zeros;
the rule's size floor is lowered so that these small data use the CSR form). The dense
counterpart of each model is the same model with the rule switched off: ``backend="auto"`` then
runs the family's precompiled generic program, which reads the dense design (and agrees with
the dense specific programs to 1e-10, tests/test_generic.py). So:

- the log density and gradient of the CSR program equal the dense program's at 20 random
  points, with and without the Jacobian (1e-10 relative: only the order of the additions
  differs), for the flat-prior gaussian model (uncentred design) and a bernoulli model with
  proper priors (centred design: the centring applied to the product);
- the threaded variant of the CSR program (each slice cuts the rows of the CSR arrays) gives
  the plain program's log density (1e-10);
- ``classic()`` (REML and ML) and ``optimize()`` give the same estimates, SEs and
  log-likelihoods (1e-6) with either form;
- ``sample()`` works end to end (summary, loo with the pointwise log-likelihood computed on
  demand), and that log-likelihood equals the dense program's on the same draws (1e-10);
  ``update()`` keeps the form; save/load round-trips the fit.

Stan programs compiled here: the two CSR programs and the threaded variant of the bernoulli one
(the dense counterparts are the precompiled generic programs).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_design_csr import many_levels

import bayesglmm
from bayesglmm import codegen, design_csr
from bayesglmm.inference.loglik import param_columns, pointwise_log_lik

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

FORMULA = "y ~ x + f + (1 | g)"


@pytest.fixture(scope="module")
def pair(toolchain):
    """(CSR model, dense model) pairs: 'lmer' (flat prior) and 'glmer' (bernoulli, normal
    prior, centred design)."""
    mp = pytest.MonkeyPatch()
    d = many_levels()

    def build(kind):
        if kind == "lmer":
            return bayesglmm.lmer(FORMULA, data=d)
        return bayesglmm.glmer("hi ~ x + f + (1 | g)", data=d, family="bernoulli",
                               prior="normal")

    out = {}
    for kind in ("lmer", "glmer"):
        mp.setattr(design_csr, "MIN_CELLS", 1000)
        # the pointwise log-likelihood on demand (as for large data)
        mp.setattr(codegen, "LOG_LIK_IN_PROGRAM_MAX_ROWS", 100)
        sparse = build(kind)
        mp.setattr(design_csr, "FIXED_COLUMNS", 10**9)
        dense = build(kind)
        mp.undo()
        assert sparse.spec.sparse_X and not dense.spec.sparse_X
        assert sparse.backend == "specific" and dense.backend == "generic"
        out[kind] = (sparse, dense)
    return out


def _points(bs, n, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 1.0, size=bs.param_unc_num()) for _ in range(n)]


@pytest.mark.parametrize("kind", ["lmer", "glmer"])
def test_csr_program_has_the_dense_log_density(pair, kind):
    sparse, dense = pair[kind]
    bs, bd = sparse.bridgestan_model(verbose=False), dense.bridgestan_model(verbose=False)
    assert list(bs.param_unc_names()) == list(bd.param_unc_names())
    for x in _points(bs, 20, 7):
        for jac in (True, False):
            want = bd.log_density(x, propto=False, jacobian=jac)
            assert bs.log_density(x, propto=False, jacobian=jac) == pytest.approx(
                want, rel=1e-10, abs=0)
        _, g_s = bs.log_density_gradient(x, propto=False, jacobian=True)
        _, g_d = bd.log_density_gradient(x, propto=False, jacobian=True)
        np.testing.assert_allclose(g_s, g_d, rtol=1e-9, atol=1e-9 * np.abs(g_d).max())


def test_threaded_csr_program_has_the_plain_log_density(pair):
    from bayesglmm.inference.within_chain import threaded_program

    sparse, _ = pair["glmer"]
    compiled, data = threaded_program(sparse, 2, 1, verbose=False)
    bt = compiled.bridgestan_model({**data, "grainsize": 97})  # slices of uneven sizes
    bp = sparse.bridgestan_model(verbose=False)
    for x in _points(bp, 20, 11):
        assert bt.log_density(x, propto=False) == pytest.approx(
            bp.log_density(x, propto=False), rel=1e-10, abs=0)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_classic_is_the_same_with_either_form(pair, method):
    sparse, dense = pair["lmer"]
    a, b = sparse.classic(method=method, verbose=False), dense.classic(method=method,
                                                                      verbose=False)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-6, abs=1e-6)
    sa, sb = a.summary(), b.summary()
    for col in ("estimate", "se"):
        np.testing.assert_allclose(sa[col].to_numpy(float), sb[col].to_numpy(float), rtol=1e-6,
                                   atol=1e-6)


@pytest.mark.parametrize("kind,laplace", [("lmer", True), ("glmer", False), ("glmer", True)])
def test_optimize_is_the_same_with_either_form(pair, kind, laplace):
    """Estimates and SEs to 1e-6 where the optimiser works on exact gradients (the exact LMM
    path; the joint mode, ``laplace=False``, L-BFGS to gtol 1e-8). The Laplace mode of the
    bernoulli model is found on central finite-difference gradients of the Laplace objective
    and stops at gtol 1e-6 or at the objective's rounding noise, which the two programs round
    differently: there the maximised objective (``log_ml``, flat at the optimum) agrees to 1e-6,
    the estimates to the stopping rule's resolution, 1e-6 times the largest posterior variance
    of the fit (the step a gradient of 1e-6 moves the optimum by), and the SEs, from a
    finite-difference Hessian of that objective (second differences of an objective with inner
    solves to 1e-10), to 1e-3 relative (measured: 1.4e-4)."""
    sparse, dense = pair[kind]
    a = sparse.optimize(verbose=False, laplace=laplace, seed=3)
    b = dense.optimize(verbose=False, laplace=laplace, seed=3)  # the same start
    sa, sb = a.summary(), b.summary()
    assert list(sa.index) == list(sb.index)
    tol, se_rtol = 1e-6, 1e-6
    if kind == "glmer" and laplace:
        assert a.log_ml == pytest.approx(b.log_ml, rel=1e-6)
        tol, se_rtol = 1e-6 * max(1.0, float(np.max(sb["se"].to_numpy(float)) ** 2)), 1e-3
    np.testing.assert_allclose(sa["estimate"].to_numpy(float), sb["estimate"].to_numpy(float),
                               rtol=1e-6, atol=tol)
    np.testing.assert_allclose(sa["se"].to_numpy(float), sb["se"].to_numpy(float),
                               rtol=se_rtol, atol=1e-6)


def test_sampled_csr_fit_end_to_end(pair, tmp_path, monkeypatch):
    sparse, dense = pair["lmer"]
    monkeypatch.setattr(design_csr, "MIN_CELLS", 1000)
    monkeypatch.setattr(codegen, "LOG_LIK_IN_PROGRAM_MAX_ROWS", 100)
    fit = sparse.sample(chains=2, warmup=300, sampling=300, seed=5, verbose=False)
    s = fit.summary()
    assert {"Intercept", "b[x]", "sigma", "sd[g:Int]"} <= set(s.index)
    assert s.loc["b[x]", "mean"] == pytest.approx(0.5, abs=0.25)  # simulated 0.5, se ~0.04
    assert fit.log_lik_on_demand
    assert np.isfinite(fit.loo().elpd_loo)
    # the pointwise log-likelihood of the CSR program is the dense program's on the same draws
    ll = fit.log_lik()
    bs = sparse.bridgestan_model(verbose=False)
    cols = param_columns(list(fit.stan_fit.column_names), bs)
    arr = np.transpose(np.asarray(fit.stan_fit.draws(concat_chains=False))[:, :, cols], (1, 0, 2))
    unc = np.array([[bs.param_unconstrain(np.ascontiguousarray(t)) for t in c] for c in arr])
    np.testing.assert_allclose(ll, pointwise_log_lik(dense, unconstrained=unc), rtol=1e-10,
                               atol=1e-10)
    # update() on a subset keeps the form (the same program); save/load round-trips the fit
    sub = sparse.update(data=many_levels().iloc[:700])
    assert sub.spec.sparse_X and sub.stan_code == sparse.stan_code
    fit.save(tmp_path / "fit")
    back = bayesglmm.load(tmp_path / "fit")
    np.testing.assert_allclose(back.summary()["mean"].to_numpy(float),
                               s["mean"].to_numpy(float))
