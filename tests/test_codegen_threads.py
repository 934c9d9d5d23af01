"""The threaded variant of the model program (bayesglmm/codegen_threads.py, templates/threads.stan.j2)
and ``sample(threads_per_chain=k)`` (bayesglmm/inference/within_chain.py).

Fast: the threaded code of every structure of tests/test_generic.py (all families, offsets,
slopes, several terms, held coefficients, category-specific predictors) and of the zero-inflated
families passes stanc; residual correlation is refused with a clear error; ``threads_per_chain``
is checked.

Slow (two threaded programs compiled): the threaded and plain programs give the same log
density and gradient in BridgeStan at 20 random points (1e-10 relative: only the order of the
additions differs); a short threaded NUTS run gives the posterior of the plain program within
MCSE.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_generic import CASES, case_spec

import bayesglmm
from bayesglmm.codegen import generate, render_code
from bayesglmm.codegen_threads import default_grainsize
from bayesglmm.inference.within_chain import check_threads_per_chain
from bayesglmm.spec import build_spec


@pytest.fixture(scope="module")
def data(debate_plus):
    return debate_plus.assign(prop=(debate_plus.sat - 0.5) / 5.0)


def _stanc(code: str, toolchain, tmp_path) -> None:
    from bayesglmm.toolchain.cache import run_stanc_check

    assert run_stanc_check(toolchain.stanc, code, "threaded", tmp_path) == []


@pytest.mark.parametrize("case", [c for c, v in CASES.items() if "resid_corr" not in v[3]])
def test_threaded_code_passes_stanc(case, data, toolchain, tmp_path):
    spec = case_spec(case, data)
    code = render_code(spec, threads=True)
    assert "reduce_sum(partial_log_lik, obs_seq, grainsize" in code
    assert "int<lower=1> grainsize;" in code
    plain = render_code(spec)
    assert "reduce_sum" not in plain and code != plain
    _stanc(code, toolchain, tmp_path)


@pytest.mark.parametrize("family", ["zero_inflated_poisson", "zero_inflated_neg_binomial"])
def test_threaded_code_of_zero_inflated_families(family, data, toolchain, tmp_path):
    prior = bayesglmm.prior_normal(**({"phi_rate": 0.3} if "neg" in family else {}))
    spec = build_spec("talk ~ perf + (1 | group)", data, family=family, prior=prior, zi="~ perf")
    code = render_code(spec, threads=True)
    # the zero-inflation design is per observation: sliced like the response
    assert "X_zi[start:end] * beta_zi" in code and "y[start:end]" in code
    _stanc(code, toolchain, tmp_path)


def test_glm_densities_are_kept_and_whole_data_terms_are_not_sliced(data):
    gauss = render_code(case_spec("gaussian", data), threads=True)
    assert "normal_id_glm_lpdf(y[start:end] | Xc[start:end], eta, beta, sigma)" in gauss
    # lognormal's *_glm form subtracts sum(log y) over all rows: its slices use lognormal_lpdf
    logn = render_code(case_spec("lognormal", data), threads=True)
    assert "lognormal_lpdf(y[start:end] | mu, sigma)" in logn and "sum_log_y" not in \
        logn.split("data {")[0]


def test_residual_correlation_is_refused(data):
    with pytest.raises(ValueError, match=r"threads_per_chain > 1 .*resid_corr="):
        render_code(case_spec("gaussian_ar1", data), threads=True)


def test_threads_per_chain_is_checked():
    assert check_threads_per_chain(None, "stan") == 1
    assert check_threads_per_chain(3, "stan") == 3
    assert check_threads_per_chain(1, "nutpie") == 1
    for bad in (0, -2, 1.5, "2", True):
        with pytest.raises(ValueError, match="threads_per_chain"):
            check_threads_per_chain(bad, "stan")
    with pytest.raises(ValueError, match=r"threads_per_chain=2 needs sampler='stan'"):
        check_threads_per_chain(2, "nutpie")


def test_sample_checks_threads_per_chain_before_compiling(debate):
    m = bayesglmm.lmer("sat ~ talk + (1 | group)", debate)
    with pytest.raises(ValueError, match="threads_per_chain"):
        m.sample(threads_per_chain=0, verbose=False)
    with pytest.raises(ValueError, match="needs sampler='stan'"):
        m.sample(threads_per_chain=2, sampler="nutpie", verbose=False)
    ar1 = bayesglmm.lmer("sat ~ talk", debate, resid_corr="ar1", resid_group="group")
    with pytest.raises(ValueError, match="resid_corr="):
        ar1.sample(threads_per_chain=2, verbose=False)


def test_default_grainsize():
    assert default_grainsize(100_000, 2) == 12_500
    assert default_grainsize(3, 8) == 1


# --------------------------------------------------------------------------- compiled


def _same_density(plain, threaded, seed: int) -> None:
    assert list(plain.param_unc_names()) == list(threaded.param_unc_names())
    rng = np.random.default_rng(seed)
    for _ in range(20):
        x = rng.normal(0.0, 1.0, size=plain.param_unc_num())
        for jac in (True, False):
            want = plain.log_density(x, propto=False, jacobian=jac)
            got = threaded.log_density(x, propto=False, jacobian=jac)
            assert got == pytest.approx(want, rel=1e-10, abs=0), jac
        _, g_p = plain.log_density_gradient(x, propto=False, jacobian=True)
        _, g_t = threaded.log_density_gradient(x, propto=False, jacobian=True)
        np.testing.assert_allclose(g_t, g_p, rtol=1e-9, atol=1e-9 * np.abs(g_p).max())


@pytest.mark.slow
def test_threaded_density_equals_plain_sleepstudy(sleep_model, toolchain):
    """Gaussian *_glm slices, a correlated random slope (the CSR form of Z cut to the slice), weak prior."""
    from bayesglmm.inference.within_chain import threaded_program

    cm, tdata = threaded_program(sleep_model, 2, 1, verbose=False)
    assert tdata["grainsize"] == default_grainsize(180, 2)
    plain = generate(sleep_model.spec)
    from bayesglmm.toolchain import compile_model

    bp = compile_model(plain.code, name=sleep_model.name, verbose=False).bridgestan_model(
        plain.data)
    _same_density(bp, cm.bridgestan_model(tdata), 3)


@pytest.mark.slow
def test_threaded_density_equals_plain_sequential(data, toolchain):
    """Category-specific predictors (a matrix mu) through the family's vectorised density,
    with a grainsize of 7 (many slices)."""
    from bayesglmm.toolchain import compile_model

    spec = case_spec("sequential", data)
    plain = generate(spec)
    bp = compile_model(plain.code, name=CASES["sequential"][-1], verbose=False) \
        .bridgestan_model(plain.data)
    bt = compile_model(render_code(spec, threads=True), name="fam_sequential_threads",
                       verbose=False).bridgestan_model({**plain.data, "grainsize": 7})
    _same_density(bp, bt, 5)


@pytest.mark.slow
def test_threaded_nuts_matches_the_plain_posterior(sleep_model, sleep_mcmc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short run: ESS warnings are expected
        fit = sleep_model.sample(chains=2, warmup=500, sampling=500, seed=7, verbose=False,
                                 threads_per_chain=2)
    assert fit.threads_per_chain == 2 and fit.backend == "specific"
    assert "Stan program: specific, threaded (2 threads per chain" in str(fit)
    a, b = fit.summary(mcse=True), sleep_mcmc.summary(mcse=True)
    for name in ("Intercept", "b[Days]", "sigma", "sd[Subject:Int]", "sd[Subject:Days]"):
        se = np.hypot(a.loc[name, "mcse_mean"], b.loc[name, "mcse_mean"])
        assert abs(a.loc[name, "mean"] - b.loc[name, "mean"]) < 4 * se, name
    # the pointwise log-likelihood comes out as before: the plain program's log_lik at the same
    # draws (rtol 1e-4: draws and log_lik pass through CmdStan's CSV at 6 significant digits).
    # The elpd_loo of the two runs is not compared: on sleepstudy (Pareto k > 1) it spans
    # about 2 over seeds of one program (tests/test_backend.py).
    from bayesglmm.inference.loglik import pointwise_log_lik

    plain = sleep_model.update(backend="specific")  # the plain program the variant threads
    np.testing.assert_allclose(fit.log_lik(), pointwise_log_lik(plain, stan_output=fit.stan_fit),
                               rtol=1e-4)
    assert np.isfinite(fit.loo().elpd_loo)
