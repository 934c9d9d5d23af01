"""Bridge sampling (bayesglmm/post/bridge.py): the log marginal likelihood against the analytic
value of a conjugate model and the reference figures of features.md section 12, plus the pieces
of the estimator checked against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import SEED, load_reference

import bayesglmm
from bayesglmm.post.bridge import iterative_scheme, relative_mse, spectrum0_ar

CONJUGATE_STAN = """\
// y_i ~ N(mu, 1), mu ~ N(0, s^2): the marginal likelihood is known in closed form
data { int<lower=1> n; vector[n] y; real<lower=0> s; }
parameters { real mu; }
model {
  target += normal_lpdf(mu | 0, s);
  target += normal_lpdf(y | mu, 1);
}
"""


# ----------------------------------------------------------------------------- fast


def test_spectrum0_ar_white_noise_and_ar1():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(20000)
    # white noise: spectral density at 0 (coda's normalisation) = variance = 1; AIC may pick a
    # small AR order by chance, whose 1/(1 - sum(ar))^2 factor varies by a few per cent
    assert spectrum0_ar(x) == pytest.approx(1.0, abs=0.1)
    # AR(1) with phi = 0.5, unit innovations: 1 / (1 - 0.5)^2 = 4
    e = rng.standard_normal(20000)
    y = np.empty_like(e)
    y[0] = e[0]
    for t in range(1, e.size):
        y[t] = 0.5 * y[t - 1] + e[t]
    assert spectrum0_ar(y) == pytest.approx(4.0, rel=0.1)
    assert spectrum0_ar(np.ones(100)) == 0.0


def test_iterative_scheme_exact_for_a_perfect_proposal():
    """When the proposal is the normalised posterior times Z, l = log Z at every draw and the
    scheme returns log Z (with a zero relative MSE)."""
    l1 = np.full(500, -12.5)
    l2 = np.full(400, -12.5)
    logml, niter, _ = iterative_scheme(l1, l2, neff=300.0)
    assert logml == pytest.approx(-12.5, abs=1e-9)
    assert niter >= 1
    assert relative_mse(l1, l2, logml) == pytest.approx(0.0, abs=1e-12)


def test_iterative_scheme_known_ratio():
    """Posterior N(0, 1) (unnormalised by Z = e^3), proposal N(0.3, 1.2^2): the estimate is
    within a few Monte Carlo errors of log Z."""
    rng = np.random.default_rng(2)
    from scipy import stats

    post = rng.standard_normal(4000)
    prop = rng.normal(0.3, 1.2, 4000)
    lp = lambda x: stats.norm.logpdf(x) + 3.0  # noqa: E731
    lq = lambda x: stats.norm.logpdf(x, 0.3, 1.2)  # noqa: E731
    l1, l2 = lp(post) - lq(post), lp(prop) - lq(prop)
    logml, _, _ = iterative_scheme(l1, l2, neff=4000.0)
    err = math.sqrt(relative_mse(l1, l2, logml))
    assert abs(logml - 3.0) < 4 * err + 1e-3
    assert 0 < err < 0.05


# ----------------------------------------------------------------------------- slow


@pytest.fixture(scope="session")
def conjugate_model(tmp_path_factory, toolchain):
    """Test-only program (distinct program 5 of the suite): the conjugate normal model."""
    d = tmp_path_factory.mktemp("conjugate")
    (d / "conjugate.stan").write_text(CONJUGATE_STAN)
    ref = load_reference("bridge_conjugate.json")
    return lambda s: bayesglmm.from_stan(d / "conjugate.stan",
                                         {"n": len(ref["y"]), "y": ref["y"], "s": float(s)})


@pytest.mark.slow
@pytest.mark.parametrize("case", ["s_1", "s_10"])
def test_bridge_conjugate_normal_matches_analytic(conjugate_model, case):
    """Within 0.05 of the analytic log ML (features issue 7), and the reported error (the
    approximate relative SE of the ML, i.e. the SE of logml) covers the true error: |error|
    below 4 reported standard errors."""
    ref = load_reference("bridge_conjugate.json")[case]
    fit = conjugate_model(ref["s"]).sample(chains=4, warmup=1000, sampling=5000, seed=SEED,
                                           verbose=False)
    for method in ("normal", "warp3"):
        res = fit.bridgesampling(method=method, verbose=False)
        assert res.converged and res.niter >= 1
        assert abs(res.logml - ref["logml"]) < 0.05, (method, res.logml, ref["logml"])
        assert 0 < res.error < 0.05
        assert abs(res.logml - ref["logml"]) < 4 * res.error, (method, res)
        assert 1000 < res.ess <= 10000


@pytest.mark.slow
def test_bridge_debate_reference_and_print(debate_mcmc, capsys):
    """Model A, normal prior: logML about -410.93 (reference error 0.04). Tolerance: 4 combined
    standard errors of the two Monte Carlo estimates plus the reference's 2-decimal rounding."""
    ref = load_reference("bayes_factors.json")["model_a_normal"]
    res = debate_mcmc.bridgesampling()
    out = capsys.readouterr().out.strip()
    assert out.startswith("Bridge Sampling Converged: LogML = ")
    assert out == (f"Bridge Sampling Converged: LogML = {res.logml:.3f} "
                   f"(Error = {res.error:.4f}, ESS = {res.ess:.1f})")
    tol = 4 * math.hypot(res.error, ref["bridge_error"]) + 0.005
    assert abs(res.logml - ref["bridge_logml"]) < tol, (res, ref["bridge_logml"], tol)
    assert debate_mcmc.bridgesampling(verbose=False) is res  # cached
    assert {"logml", "error", "ess", "niter"} <= set(vars(res))
    from bayesglmm.post.bridge import bridge_sampler

    with pytest.warns(RuntimeWarning, match="biased low"):  # 2000 draws for 105 parameters
        again = bridge_sampler(debate_mcmc, verbose=False)
    assert again.logml == pytest.approx(res.logml, abs=1e-9)  # same draws, same seed


@pytest.mark.slow
def test_bridge_agrees_with_laplace_on_debate_weak_prior(debate, debate_compiled):
    """Weak priors (the same Stan program as prior_normal(), other data): Laplace (optimize())
    and bridge-sampling log ML agree within 0.5 (issue 7); the Laplace value is the reference's
    -401.08. 4 x 4000 draws: in this 105-dimensional posterior (100 standardised random effects)
    the bridge estimate from 4 x 1000 draws is biased low by about 0.8 (the reported error, 0.03,
    does not include this; it is the reference's -410.93 vs Laplace -410.02 for the normal prior),
    and the bias shrinks with the number of draws (normal prior, seed 11: 4 x 1000 -411.20,
    4 x 2500 -410.40, 4 x 10000 -410.07). bridgesampling warns about it below 50 draws per
    parameter."""
    ref = load_reference("bayes_factors.json")["model_a_weak"]
    m = bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=debate,
                       prior=bayesglmm.prior_weak(), y_range=(1, 5))
    lap = m.optimize(verbose=False).log_ml
    assert lap == pytest.approx(ref["laplace_logml"], abs=0.01)
    res = m.sample(seed=SEED, sampling=4000, verbose=False).bridgesampling(verbose=False)
    assert abs(res.logml - lap) < 0.5


def test_bridge_rejects_bad_arguments(debate_model):
    from bayesglmm.post.bridge import bridge_sampler

    class Dummy:
        model = debate_model
        stan_fit = None

    with pytest.raises(ValueError, match="method must be one of"):
        bridge_sampler(Dummy(), method="laplace")
    with pytest.raises(ValueError, match="repetitions"):
        bridge_sampler(Dummy(), repetitions=0)
    with pytest.raises(ValueError, match="needs the draws of sample"):
        bridge_sampler(Dummy())
