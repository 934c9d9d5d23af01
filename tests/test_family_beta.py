"""The beta family end to end on simulated proportions: classic() against a direct maximisation
of the same (Laplace) marginal likelihood, parameter recovery by sample() and optimize(),
conditional effects, predictions, posterior predictions and LOO. One compiled program
(``y ~ x + (1 | g)``, flat priors).

The reference marginal likelihood is computed here with numpy/scipy, independently of Stan:
per group, adaptive Gauss-Hermite quadrature over the random intercept u ~ Normal(0, sd) of
prod_i Beta(y_i | mu_i phi, (1 - mu_i) phi), mu_i = logistic(a + b x_i + u), centred at the mode
of the integrand and scaled by its curvature. With one node it is the Laplace approximation
that classic() maximises (lme4's nAGQ = 1), so both must agree to the optimisers' precision.
(On these data the Laplace log-likelihood at the estimate, 244.962, is 0.145 below the one of
20-node quadrature, 245.107: the Laplace approximation error, not a discrepancy.)
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from marginal_ref import assert_recovers, group_log_integral, maximise
from scipy.special import digamma, expit, gammaln, polygamma

import bayesglmm
from bayesglmm.families import FAMILIES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

SEED = 20261205
TRUTH = {"Intercept": -0.3, "b[x]": 0.8, "phi": 12.0, "sd[g:Int]": 0.5}
G, N_PER = 40, 10
REL = 1e-4  # as tests/test_classic.py: estimates agree to 1e-4 relative


def simulate(rng: np.random.Generator) -> pd.DataFrame:
    """Proportions from the model with the TRUTH values (the family table's rng)."""
    g = np.repeat(np.arange(1, G + 1), N_PER)
    x = rng.normal(size=G * N_PER)
    u = rng.normal(0.0, TRUTH["sd[g:Int]"], size=G)[g - 1]
    eta = TRUTH["Intercept"] + TRUTH["b[x]"] * x + u
    y = FAMILIES["beta"].rng(eta, {"phi": TRUTH["phi"]}, rng)
    return pd.DataFrame({"g": g, "x": x, "y": y})


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate(np.random.default_rng(SEED))


@pytest.fixture(scope="module")
def model(data, toolchain):
    m = bayesglmm.glmer("y ~ x + (1 | g)", data, family="beta")
    m.name = "fam_flat_beta"
    m.compile(verbose=False)
    return m


@pytest.fixture(scope="module")
def mcmc(model):
    return model.sample(chains=2, warmup=500, sampling=500, seed=11, verbose=False)


# ----------------------------------------------------------------------------- the reference


def _beta_loglik_derivs(eta, y, phi):
    """log Beta(y | mu phi, (1 - mu) phi) with mu = logistic(eta), and its first two
    derivatives in eta (elementwise)."""
    mu = expit(eta)
    a, b = mu * phi, (1 - mu) * phi
    ll = gammaln(phi) - gammaln(a) - gammaln(b) + (a - 1) * np.log(y) + (b - 1) * np.log1p(-y)
    d_mu = phi * (np.log(y) - np.log1p(-y) - digamma(a) + digamma(b))
    d2_mu = -phi**2 * (polygamma(1, a) + polygamma(1, b))
    m1 = mu * (1 - mu)
    return ll, d_mu * m1, d2_mu * m1**2 + d_mu * m1 * (1 - 2 * mu)


def marginal_loglik(theta: np.ndarray, df: pd.DataFrame, nodes: int) -> float:
    """log of prod_g int prod_i Beta(y_i | ...) Normal(u | 0, sd) du by adaptive Gauss-Hermite
    quadrature with ``nodes`` nodes; theta = (Intercept, b[x], log phi, log sd)."""
    a, b, phi, sd = theta[0], theta[1], np.exp(theta[2]), np.exp(theta[3])
    total = 0.0
    for _, grp in df.groupby("g"):
        y = grp["y"].to_numpy()
        total += group_log_integral(a + b * grp["x"].to_numpy(),
                                    lambda eta, y=y: _beta_loglik_derivs(eta, y, phi), sd, nodes)
    return float(total)


def direct_ml(df: pd.DataFrame, nodes: int, start: np.ndarray) -> tuple[np.ndarray, float]:
    return maximise(lambda th: marginal_loglik(th, df, nodes), start)


# ----------------------------------------------------------------------------- tests


def test_classic_matches_direct_laplace_ml(model, data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no boundary warning expected
        fit = model.classic(verbose=False)
    s = fit.summary()
    ours = np.array([s.loc["Intercept", "estimate"], s.loc["b[x]", "estimate"],
                     np.log(s.loc["phi", "estimate"]), np.log(s.loc["sd[g:Int]", "estimate"])])
    ref, ref_ll = direct_ml(data, 1, ours + 0.05)
    for i, name in enumerate(["Intercept", "b[x]", "phi", "sd[g:Int]"]):
        want = ref[i] if i < 2 else np.exp(ref[i])
        got = s.loc[name, "estimate"]
        assert abs(got - want) <= REL * abs(want), (name, got, want)
    assert abs(fit.loglik - ref_ll) <= 1e-6 * abs(ref_ll), (fit.loglik, ref_ll)
    assert "z" in s.columns and "df" not in s.columns


def test_optimize_recovers_truth(model):
    fit = model.optimize(verbose=False)
    assert fit.converged, fit.message
    s = fit.summary()
    assert_recovers(s, TRUTH)


def test_sample_recovers_truth(mcmc):
    s = mcmc.summary()
    for p, true in TRUTH.items():
        mean, sd = s.loc[p, "mean"], s.loc[p, "sd"]
        assert abs(mean - true) < 3.5 * sd, (p, mean, sd, true)
        assert s.loc[p, "rhat"] < 1.02, (p, s.loc[p, "rhat"])
    assert mcmc.num_divergent == 0


def test_conditional_effects_on_the_response_scale(mcmc, model):
    ce = bayesglmm.conditional_effects(mcmc, "x", resolution=5)
    d = ce.data
    draws = mcmc.draws(["Intercept", "b[x]"], inc_random=False)
    want = expit(draws["Intercept"].to_numpy()[:, None]
                 + np.outer(draws["b[x]"].to_numpy(), d["x"].to_numpy())).mean(axis=0)
    np.testing.assert_allclose(d["estimate"].to_numpy(), want, rtol=1e-10)
    assert np.all((d["lower"] > 0) & (d["upper"] < 1)) and np.all(np.diff(d["estimate"]) > 0)
    ce_map = bayesglmm.conditional_effects(model.optimize(verbose=False), "x", resolution=5)
    assert np.all((ce_map.data["estimate"] > 0) & (ce_map.data["estimate"] < 1))


def test_predict_and_posterior_predict(mcmc, data):
    mu = mcmc.predict(summary=False)
    assert mu.shape == (1000, len(data)) and np.all((mu > 0) & (mu < 1))
    yrep = mcmc.posterior_predict(seed=3)
    assert yrep.shape == mu.shape and np.all((yrep > 0) & (yrep < 1))
    # predictive means: the mean of Beta(mu phi, (1 - mu) phi) is mu (1000 draws per row)
    assert abs(yrep.mean() - mu.mean()) < 0.005
    # predictive variance per row: mu (1 - mu) / (1 + phi) averaged over draws, plus Var(mu)
    phi = mcmc.draws(["phi"])["phi"].to_numpy()[:, None]
    want_var = (mu * (1 - mu) / (1 + phi)).mean(axis=0) + mu.var(axis=0)
    assert abs(yrep.var(axis=0).mean() / want_var.mean() - 1) < 0.05


def test_loo(mcmc, data):
    res = mcmc.loo()
    assert np.isfinite(res.elpd_loo) and res.loo_i.shape == (len(data),)
    assert float(np.max(res.pareto_k)) < 0.7
