"""Zero-inflated poisson on simulated counts with excess zeros (``zi="~ w"``): the zi= formula and
its errors, classic() against a direct maximisation of the same (Laplace) marginal likelihood,
recovery by optimize() and sample(), predictions including the zero part, posterior
predictions and LOO. One compiled program (``y ~ x + (1 | g)``, flat priors).

The reference marginal likelihood is computed here with numpy/scipy, independently of Stan: per
group, adaptive Gauss-Hermite quadrature over the random intercept u ~ Normal(0, sd) of
prod_i ZIP(y_i | exp(a + b x_i + u), zi_i), zi_i = logistic(c + d w_i), centred at the mode of
the integrand and scaled by its curvature; with one node it is the Laplace approximation that
classic() maximises (lme4's and glmmTMB's default), so both must agree to 1e-4.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from marginal_ref import assert_recovers, group_log_integral, maximise
from scipy.special import expit, gammaln

import bayesglmm
from bayesglmm.families import FAMILIES
from bayesglmm.formula import FormulaError

SEED = 20261206
TRUTH = {"Intercept": 0.8, "b[x]": 0.4, "b_zi[Intercept]": -0.5, "b_zi[w]": 0.8,
         "sd[g:Int]": 0.5}
G, N_PER = 40, 10
REL = 1e-4  # as tests/test_classic.py


def simulate(rng: np.random.Generator) -> pd.DataFrame:
    """Counts from the model with the TRUTH values (the family table's rng)."""
    g = np.repeat(np.arange(1, G + 1), N_PER)
    x, w = rng.normal(size=G * N_PER), rng.normal(size=G * N_PER)
    u = rng.normal(0.0, TRUTH["sd[g:Int]"], size=G)[g - 1]
    eta = TRUTH["Intercept"] + TRUTH["b[x]"] * x + u
    zi = expit(TRUTH["b_zi[Intercept]"] + TRUTH["b_zi[w]"] * w)
    y = FAMILIES["zero_inflated_poisson"].rng(eta, {"zi": zi}, rng)
    return pd.DataFrame({"g": g, "x": x, "w": w, "y": y})


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate(np.random.default_rng(SEED))


def test_zi_formula_and_errors(data):
    m = bayesglmm.glmer("y ~ x + (1 | g)", data, family="zero_inflated_poisson", zi="~ w")
    assert m.parameter_names[:5] == ["Intercept", "b[x]", "b_zi[Intercept]", "b_zi[w]",
                                     "sd[g:Int]"]
    assert "zi = ~w" in m.call()
    assert m.stan_data["K_zi"] == 2 and np.allclose(m.stan_data["X_zi"][:, 1], data["w"])
    d = bayesglmm.glmer("y ~ x + (1 | g)", data, family="zero_inflated_neg_binomial")
    assert d.parameter_names[2:4] == ["b_zi[Intercept]", "phi"] and d.stan_data["K_zi"] == 1
    with pytest.raises(ValueError, match="zi= is only used by the zero-inflated families, "
                                         "not 'poisson'"):
        bayesglmm.glmer("y ~ x", data, family="poisson", zi="~ w")
    with pytest.raises(FormulaError, match="zi= must be a one-sided formula"):
        bayesglmm.glmer("y ~ x", data, family="zero_inflated_poisson", zi="y ~ w")
    with pytest.raises(FormulaError, match=r"zi= takes fixed effects only"):
        bayesglmm.glmer("y ~ x", data, family="zero_inflated_poisson", zi="~ w + (1 | g)")
    with pytest.raises(ValueError, match="Unknown column.*'nope'|nope"):
        bayesglmm.glmer("y ~ x", data, family="zero_inflated_poisson", zi="~ nope")
    with pytest.raises(ValueError, match="'y'.*non-negative integer counts"):
        bayesglmm.glmer("y ~ x", data.assign(y=data.y - 0.5), family="zero_inflated_poisson")


def test_simulate_and_update_keep_the_zero_part(data):
    """simulate() draws structural zeros from b_zi; update() keeps zi=."""
    from bayesglmm.simulate import simulate

    m = bayesglmm.glmer("y ~ x + (1 | g)", data, family="zero_inflated_poisson", zi="~ w")
    truth = {"Intercept": 2.0, "b[x]": 0.0, "b_zi[Intercept]": 0.0, "b_zi[w]": 0.0,
             "sd[g:Int]": 0.0}
    sim = simulate(m, 20, params=truth, seed=1)
    y = np.asarray(sim.y)
    # P(0) = 0.5 + 0.5 exp(-e^2) = 0.5335 (8,000 draws: SE 0.0056)
    assert abs(np.mean(y == 0) - (0.5 + 0.5 * np.exp(-np.exp(2.0)))) < 0.025
    assert "zi = ~w" in m.update(data=data.iloc[:200]).call()


def test_generic_program_does_not_claim_zero_inflation(data):
    from bayesglmm import generic

    m = bayesglmm.glmer("y ~ x + (1 | g)", data, family="zero_inflated_poisson")
    assert "zero-inflation" in generic.covers(m.spec)


def test_rng_zero_share():
    rng = np.random.default_rng(2)
    y = FAMILIES["zero_inflated_poisson"].rng(np.full(100_000, 0.5), {"zi": 0.3}, rng)
    # P(0) = 0.3 + 0.7 exp(-e^0.5); mean 0.7 e^0.5 (100,000 draws: SEs 0.0015 and 0.005)
    assert abs(np.mean(y == 0) - (0.3 + 0.7 * np.exp(-np.exp(0.5)))) < 0.006
    assert abs(y.mean() - 0.7 * np.exp(0.5)) < 0.02


# ----------------------------------------------------------------------------- the reference


def _zip_derivs(eta, zeta, y):
    """log ZIP(y | exp(eta), logistic(zeta)) and its first two derivatives in eta."""
    mu, p = np.exp(eta), expit(zeta)
    q = (1 - p) * np.exp(-mu)  # (1 - p) P_pois(0)
    L = p + q
    zero = y == 0
    ll = np.where(zero, np.log(L), np.log1p(-p) + y * eta - mu - gammaln(y + 1))
    d1 = np.where(zero, -mu * q / L, y - mu)
    d2 = np.where(zero, -mu * q * ((1 - mu) * L + mu * q) / L**2, -mu)
    return ll, d1, d2


def marginal_loglik(theta: np.ndarray, df: pd.DataFrame, nodes: int) -> float:
    """Adaptive Gauss-Hermite log marginal likelihood; theta = (Intercept, b[x],
    b_zi[Intercept], b_zi[w], log sd)."""
    a, b, c, d, sd = theta[0], theta[1], theta[2], theta[3], np.exp(theta[4])
    total = 0.0
    for _, grp in df.groupby("g"):
        y, zeta = grp["y"].to_numpy(), c + d * grp["w"].to_numpy()
        total += group_log_integral(a + b * grp["x"].to_numpy(),
                                    lambda eta, y=y, zeta=zeta: _zip_derivs(eta, zeta, y), sd,
                                    nodes)
    return float(total)


def direct_ml(df: pd.DataFrame, start: np.ndarray) -> tuple[np.ndarray, float]:
    """Maximum of the one-node (Laplace) marginal likelihood."""
    return maximise(lambda th: marginal_loglik(th, df, 1), start)


# ----------------------------------------------------------------------------- fits (slow)


@pytest.fixture(scope="module")
def model(data, toolchain):
    m = bayesglmm.glmer("y ~ x + (1 | g)", data, family="zero_inflated_poisson", zi="~ w")
    m.name = "fam_flat_zip"
    m.compile(verbose=False)
    return m


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_classic_matches_direct_laplace_ml(model, data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no boundary warning expected
        fit = model.classic(verbose=False)
    s = fit.summary()
    names = ["Intercept", "b[x]", "b_zi[Intercept]", "b_zi[w]", "sd[g:Int]"]
    ours = np.array([s.loc[n, "estimate"] for n in names])
    ours[4] = np.log(ours[4])
    ref, ref_ll = direct_ml(data, ours + 0.05)
    ref[4] = np.exp(ref[4])
    for n, want in zip(names, ref):
        got = s.loc[n, "estimate"]
        assert abs(got - want) <= REL * abs(want), (n, got, want)
    assert abs(fit.loglik - ref_ll) <= 1e-6 * abs(ref_ll), (fit.loglik, ref_ll)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_optimize_recovers_truth_and_predicts(model, data):
    fit = model.optimize(verbose=False)
    assert fit.converged, fit.message
    s = fit.summary()
    assert_recovers(s, TRUTH)
    # the mean includes the zero part: (1 - zi) * exp(eta), population level at new data
    new = pd.DataFrame({"x": [0.0, 1.0], "w": [0.0, 2.0], "g": [1, 1]})
    pred = fit.predict(new, re="exclude")
    a, b = s.loc["Intercept", "estimate"], s.loc["b[x]", "estimate"]
    c, d = s.loc["b_zi[Intercept]", "estimate"], s.loc["b_zi[w]", "estimate"]
    want = (1 - expit(c + d * new["w"])) * np.exp(a + b * new["x"])
    np.testing.assert_allclose(pred["estimate"].to_numpy(), want.to_numpy(), rtol=1e-10)
    # delta-method SE over (b, b_zi)
    assert np.all(np.isfinite(pred["se"]) & (pred["se"] > 0))
    assert np.all((pred["lower"] < pred["estimate"]) & (pred["estimate"] < pred["upper"]))
    # conditional effects on the response scale: the same mean, w at its mean, delta-method SE
    ce = bayesglmm.conditional_effects(fit, "x", resolution=3).data
    want = (1 - expit(c + d * data["w"].mean())) * np.exp(a + b * ce["x"])
    np.testing.assert_allclose(ce["estimate"].to_numpy(), want.to_numpy(), rtol=1e-10)
    assert np.all(ce["se"] > 0) and np.all(ce["lower"] < ce["estimate"])
    # predict() on the same rows (random effects excluded) gives the same mean and SE
    same = fit.predict(pd.DataFrame({"x": ce["x"], "w": data["w"].mean(), "g": 1}), re="exclude")
    np.testing.assert_allclose(same[["estimate", "se"]].to_numpy(),
                               ce[["estimate", "se"]].to_numpy(), rtol=1e-8)
    with pytest.raises(ValueError, match="not available yet for family 'zero_inflated_poisson'"):
        bayesglmm.simple_effects(fit, "x:w")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sample_posterior_predict_and_loo(model, data):
    fit = model.sample(chains=2, warmup=500, sampling=500, seed=4, verbose=False)
    s = fit.summary()
    for p, true in TRUTH.items():
        assert abs(s.loc[p, "mean"] - true) < 3.5 * s.loc[p, "sd"], (p, s.loc[p, "mean"])
    yrep = fit.posterior_predict(seed=1)
    assert yrep.shape == (1000, len(data))
    # the share of zeros is reproduced (observed 0/1 per row: SE of the share about 0.025)
    assert abs(np.mean(yrep == 0) - np.mean(data["y"] == 0)) < 0.05
    mu = fit.predict(summary=False)
    assert abs(yrep.mean() - mu.mean()) < 0.05 * mu.mean()
    ce = bayesglmm.conditional_effects(fit, "x", resolution=3).data
    draws = fit.draws(["Intercept", "b[x]", "b_zi[Intercept]", "b_zi[w]"], inc_random=False)
    m = ((1 - expit(draws["b_zi[Intercept]"].to_numpy()[:, None]
                    + draws["b_zi[w]"].to_numpy()[:, None] * data["w"].mean()))
         * np.exp(draws["Intercept"].to_numpy()[:, None]
                  + np.outer(draws["b[x]"].to_numpy(), ce["x"].to_numpy())))
    np.testing.assert_allclose(ce["estimate"].to_numpy(), m.mean(axis=0), rtol=1e-10)
    res = fit.loo()
    assert np.isfinite(res.elpd_loo) and res.loo_i.shape == (len(data),)
