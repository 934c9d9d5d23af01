"""Statistical tests against reference figures (copied into tests/reference/ with their source).

- debate Model A, normal prior, NUTS 4 x 1000: posterior means vs the reference MCMC run
  (features.md §12) within Monte Carlo error;
- sleepstudy, correlated random slopes, weak prior: fixed effects vs lme4 REML;
- lm with flat priors: the MAP equals the closed-form least-squares / ML answer;
- optimize() of Model A (Laplace over the random effects, the default) vs the reference MAP row
  (features.md §12); the joint MAP (laplace=False) only for internal consistency, since the
  reference MAP figures integrate the random effects out;
- the Laplace objective on a normal-normal model without Stan: exact marginal likelihood and
  closed-form ML estimates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import load_reference

from bayesglmm.inference.optimize import (
    LaplaceObjective,
    Objective,
    find_laplace_mode,
    hessian_inverse,
)

PARAMS_A = ["Intercept", "b[talk]", "b[perf]", "sigma", "sd[group:Int]"]


@pytest.mark.slow
def test_debate_mcmc_means_match_reference(debate_mcmc):
    ref = load_reference("debate_model_a.json")["mcmc"]
    s = debate_mcmc.summary(mcse=True)
    for name in PARAMS_A:
        mean, mcse = s.loc[name, "mean"], s.loc[name, "mcse_mean"]
        # Our mean and the reference mean are two independent runs of the same size, so their
        # difference has MC SD ~ sqrt(2) * mcse; allow 4 of those plus the reference's rounding.
        tol = 4 * math.sqrt(2) * mcse + ref["rounding"]
        assert abs(mean - ref["mean"][name]) < tol, (name, mean, ref["mean"][name], tol)
        # posterior SDs: reference rounded to 2 dp; relative MC error of an SD is ~1/sqrt(2 ESS)
        assert abs(s.loc[name, "sd"] - ref["sd"][name]) < 0.005 + 0.15 * ref["sd"][name], name
        assert s.loc[name, "ess_bulk"] > 400 and s.loc[name, "rhat"] < 1.01


@pytest.mark.slow
def test_sleepstudy_fixed_effects_match_lme4_reml(sleep_mcmc):
    ref = load_reference("sleepstudy_lme4_reml.json")
    s = sleep_mcmc.summary(mcse=True)
    for name, r in ref["fixef"].items():
        mean, sd, mcse = s.loc[name, "mean"], s.loc[name, "sd"], s.loc[name, "mcse_mean"]
        # The posterior mean of a fixed effect differs from the REML (GLS) estimate only through
        # the weak prior (prior SD / posterior SD > 10 here) and the averaging over the variance
        # parameters, both small against the posterior SD: allow 0.25 posterior SD + 4 MCSE.
        assert abs(mean - r["estimate"]) < 0.25 * sd + 4 * mcse, (name, mean, r["estimate"])
        # the posterior SD is close to the REML standard error (a bit larger: variance
        # parameters are uncertain)
        assert 0.85 * r["se"] < sd < 1.35 * r["se"], (name, sd, r["se"])
    # variance parameters: same ballpark as REML (posterior means of SDs are right-skewed)
    assert abs(s.loc["sigma", "mean"] - ref["sigma"]) < 0.5 * s.loc["sigma", "sd"] + 1.0
    for name, v in ref["sd"].items():
        assert abs(s.loc[name, "mean"] - v) < 1.0 * s.loc[name, "sd"], name


@pytest.mark.slow
def test_lm_flat_map_equals_least_squares(lm_map, debate):
    X = np.column_stack([np.ones(len(debate)), debate["talk"], debate["perf"]]).astype(float)
    y = debate["sat"].to_numpy(float)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    n = len(y)
    rss = float(np.sum((y - X @ beta) ** 2))
    sigma_ml = math.sqrt(rss / n)  # mode in sigma with a flat prior and no Jacobian
    s = lm_map.summary()
    est = s["estimate"]
    np.testing.assert_allclose(est[["Intercept", "b[talk]", "b[perf]"]].to_numpy(), beta,
                               rtol=0, atol=1e-5)
    assert est["sigma"] == pytest.approx(sigma_ml, abs=1e-5)
    # negative log posterior = negative Gaussian log likelihood at the ML estimates
    nll = 0.5 * n * math.log(2 * math.pi * sigma_ml**2) + 0.5 * n
    assert lm_map.objective == pytest.approx(nll, abs=1e-5)
    # SEs: inverse observed information at the mode -> sigma_ml^2 (X'X)^-1 for beta,
    # sigma_ml / sqrt(2n) for sigma
    se_beta = np.sqrt(np.diag(sigma_ml**2 * np.linalg.inv(X.T @ X)))
    np.testing.assert_allclose(s["se"][["Intercept", "b[talk]", "b[perf]"]].to_numpy(), se_beta,
                               rtol=1e-4)
    assert s.loc["sigma", "se"] == pytest.approx(sigma_ml / math.sqrt(2 * n), rel=1e-4)
    # Wald CI for sigma: log-symmetric (back-transform of log sigma +- 1.96 se)
    se_log = s.loc["sigma", "se"] / sigma_ml
    assert s.loc["sigma", "lower"] == pytest.approx(sigma_ml * math.exp(-1.959964 * se_log), rel=1e-5)
    assert s.loc["sigma", "upper"] == pytest.approx(sigma_ml * math.exp(1.959964 * se_log), rel=1e-5)
    b = s.loc["b[talk]"]
    assert b["lower"] == pytest.approx(b["estimate"] - 1.959964 * b["se"], abs=1e-6)


@pytest.mark.slow
def test_debate_laplace_map_matches_reference(debate_map):
    """optimize() (Laplace over the random effects) against the reference MAP (features §12,
    normal-prior row): estimates 1e-3 relative, SEs 1 %, objective and log ML to the printed
    2 decimals, CIs to the printed 5 decimals (+ the estimate tolerance)."""
    ref = load_reference("debate_model_a.json")["laplace_map_normal_prior"]
    fit = debate_map
    assert fit.converged and fit.laplace
    s = fit.summary()
    assert list(s.index) == list(ref["estimate"])
    for name, v in ref["estimate"].items():
        assert s.loc[name, "estimate"] == pytest.approx(v, rel=1e-3), name
    for name, v in ref["se"].items():
        assert s.loc[name, "se"] == pytest.approx(v, rel=0.01), name
    for name, (lo, hi) in ref["ci"].items():
        assert s.loc[name, "lower"] == pytest.approx(lo, rel=1e-3), name
        assert s.loc[name, "upper"] == pytest.approx(hi, rel=1e-3), name
    assert fit.objective == pytest.approx(ref["nlp"], abs=0.006)
    assert fit.log_ml == pytest.approx(ref["log_ml"], abs=0.006)
    lines = str(fit).splitlines()
    assert f"Negative Log-Posterior: {ref['nlp']:.2f}" in lines
    assert f"Approx. Log Marginal Likelihood (Laplace): {ref['log_ml']:.2f}" in lines
    # random effects at their conditional modes, with SEs
    r = fit.random_effects()
    assert len(r) == 100 and (r["se"] > 0).all() and abs(r["estimate"].mean()) < 0.2


@pytest.mark.parametrize("case", ["laplace_map_weak_prior", "model_b_laplace_map_normal_prior"])
@pytest.mark.slow
def test_debate_laplace_map_other_rows(case, debate, debate_compiled):
    """More rows of features §12 that reuse the same Stan program (the prior scales and the
    number of design columns are data): the weak prior and Model B (talk * perf)."""
    import bayesglmm

    ref = load_reference("debate_model_a.json")[case]
    if case == "laplace_map_weak_prior":
        m = bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=debate,
                           prior=bayesglmm.prior_weak(), y_range=(1, 5))
    else:
        m = bayesglmm.lmer(ref["formula"], data=debate, prior=bayesglmm.prior_normal())
    assert m.stan_code == debate_compiled.code  # no new compilation
    fit = m.optimize(verbose=False)
    est = fit.summary()["estimate"]
    for name, v in ref["estimate"].items():
        assert est[name] == pytest.approx(v, rel=1e-3), name
    assert fit.objective == pytest.approx(ref["nlp"], abs=0.006)
    assert fit.log_ml == pytest.approx(ref["log_ml"], abs=0.006)


@pytest.mark.slow
def test_debate_se_methods(debate_model, debate_map):
    wald = debate_map.summary()
    smp = debate_model.optimize(se_method="sampling", seed=3, verbose=False).summary()
    np.testing.assert_allclose(smp["estimate"], wald["estimate"], rtol=1e-6)
    # 1000 normal draws: the SD of the draws has ~2.2 % relative MC error
    np.testing.assert_allclose(smp["se"], wald["se"], rtol=0.1)
    assert (smp["lower"] < smp["estimate"]).all() and (smp["estimate"] < smp["upper"]).all()
    none = debate_model.optimize(se_method="none", verbose=False).summary()
    assert none["se"].isna().all() and none["estimate"].notna().all()


@pytest.mark.slow
def test_debate_laplace_multistart(debate_model, debate_map):
    fit = debate_model.optimize(num_estimate=3, seed=5, verbose=False)
    assert fit.objective == pytest.approx(debate_map.objective, abs=1e-6)
    np.testing.assert_allclose(fit.summary()["estimate"], debate_map.summary()["estimate"],
                               rtol=1e-5)


@pytest.mark.slow
def test_debate_joint_map_is_a_mode(debate_joint_map, debate_model):
    fit = debate_joint_map
    assert not fit.laplace
    assert fit.converged
    bs = debate_model._bridgestan()
    _, g = bs.log_density_gradient(fit.theta_unc, propto=False, jacobian=False)
    assert np.max(np.abs(g)) < 1e-3
    f0 = fit.objective
    rng = np.random.default_rng(0)
    for _ in range(5):  # no nearby point is better
        u = fit.theta_unc + 1e-3 * rng.normal(size=fit.theta_unc.size)
        assert -bs.log_density(u, propto=False, jacobian=False) > f0 - 1e-9
    s = fit.summary()
    # scale parameters: log-symmetric Wald intervals
    for name in ("sigma", "sd[group:Int]"):
        e, lo, hi = s.loc[name, ["estimate", "lower", "upper"]]
        assert lo * hi == pytest.approx(e * e, rel=1e-6), name
    # derived Intercept: symmetric est +- 1.96 SE
    e, se, lo, hi = s.loc["Intercept"]
    assert (lo + hi) / 2 == pytest.approx(e, abs=1e-8) and hi - e == pytest.approx(1.959964 * se, rel=1e-5)
    # Intercept = Intercept_c - sum_j mean(X_j) b_j (reported on the user's scale)
    d = debate_model.spec.data
    recon = s.loc["Intercept_c", "estimate"] - (d["talk"].mean() * s.loc["b[talk]", "estimate"]
                                                + d["perf"].mean() * s.loc["b[perf]", "estimate"])
    assert s.loc["Intercept", "estimate"] == pytest.approx(recon, abs=1e-8)
    # No comparison with the reference MAP: that one integrates the random effects out. The
    # joint mode over (theta, z) in the non-centred parameterisation has no log(sd) penalty, so
    # sd[group:Int] is pulled up to where its Exp(0.2) prior stops it (about 6 here) and the
    # fixed effects are not the Laplace MAP ones.


# --------------------------------------------------------------------------- Laplace, no Stan


class _NormalNormal:
    """A BridgeStan look-alike for y[g, i] ~ N(mu + tau * z[g], 1), z[g] ~ N(0, 1), flat priors;
    unconstrained u = (mu, log tau, z[1..G]). Gaussian in z, so the Laplace approximation of
    the marginal likelihood is exact."""

    def __init__(self, y):
        self.y = np.asarray(y, dtype=float)  # (G, m)

    def param_unc_num(self):
        return 2 + self.y.shape[0]

    def param_unc_names(self):
        return ["mu", "tau"] + [f"z.{g + 1}" for g in range(self.y.shape[0])]

    def _split(self, u):
        return u[0], math.exp(u[1]), np.asarray(u[2:])

    def log_density(self, u, propto=False, jacobian=False):
        mu, tau, z = self._split(u)
        r = self.y - mu - tau * z[:, None]
        lp = -0.5 * np.sum(r**2) - 0.5 * np.sum(z**2) - 0.5 * (r.size + z.size) * math.log(2 * math.pi)
        return lp + (u[1] if jacobian else 0.0)

    def log_density_gradient(self, u, propto=False, jacobian=False):
        mu, tau, z = self._split(u)
        r = self.y - mu - tau * z[:, None]
        g = np.empty(u.size)
        g[0] = r.sum()
        g[1] = tau * np.sum(r * z[:, None]) + (1.0 if jacobian else 0.0)
        g[2:] = tau * r.sum(axis=1) - z
        return self.log_density(u, jacobian=jacobian), g

    def log_density_hessian(self, u, propto=False, jacobian=False):
        n = u.size
        H = np.empty((n, n))
        for i in range(n):
            e = np.zeros(n)
            e[i] = 1e-5
            H[:, i] = (self.log_density_gradient(u + e, jacobian=jacobian)[1]
                       - self.log_density_gradient(u - e, jacobian=jacobian)[1]) / 2e-5
        lp, g = self.log_density_gradient(u, jacobian=jacobian)
        return lp, g, 0.5 * (H + H.T)


def _exact_neg_log_marginal(y, mu, tau):
    G, m = y.shape
    V = np.eye(m) + tau**2 * np.ones((m, m))
    _, logdet = np.linalg.slogdet(V)
    Vi = np.linalg.inv(V)
    r = y - mu
    return 0.5 * G * (m * math.log(2 * math.pi) + logdet) + 0.5 * np.einsum("gi,ij,gj->", r, Vi, r)


def test_laplace_objective_is_exact_for_a_gaussian_model():
    rng = np.random.default_rng(7)
    G, m = 12, 4
    y = 1.5 + 0.8 * rng.normal(size=(G, 1)) + rng.normal(size=(G, m))
    bs = _NormalNormal(y)
    n = bs.param_unc_num()
    lap = LaplaceObjective(Objective(bs), np.arange(2, n), n, np.zeros(n))
    assert lap.n_colours == 1  # independent groups: one gradient difference gives H_zz
    for mu, tau in [(0.0, 1.0), (1.3, 0.6), (2.0, 1.7)]:
        F = lap.value(np.array([mu, math.log(tau)]))
        assert F == pytest.approx(_exact_neg_log_marginal(y, mu, tau), abs=1e-6)
    mode = find_laplace_mode(Objective(bs), np.arange(2, n), np.zeros(n))
    assert mode.converged
    # closed form ML: mu = grand mean; tau^2 = max(0, var of group means (1/G) - 1/m)
    means = y.mean(axis=1)
    assert mode.theta_unc[0] == pytest.approx(means.mean(), abs=1e-5)
    tau2 = np.mean((means - means.mean()) ** 2) - 1.0 / m
    assert math.exp(mode.theta_unc[1]) == pytest.approx(math.sqrt(tau2), rel=1e-4)
    # SE of mu: sqrt((tau^2 + 1/m) / G); the delta-method covariance carries it
    assert math.sqrt(mode.cov_unc[0, 0]) == pytest.approx(math.sqrt((tau2 + 1.0 / m) / G), rel=1e-3)
    # log marginal likelihood: exact here up to the Laplace step over the outer parameters
    assert np.isfinite(mode.log_ml)


def test_hessian_inverse_at_a_boundary():
    H = np.diag([4.0, 1.0, 0.0])
    H[0, 1] = H[1, 0] = 1.0
    cov, logdet, bad = hessian_inverse(H)
    assert logdet is None and list(bad) == [False, False, True]
    np.testing.assert_allclose(cov[:2, :2], np.linalg.inv(H[:2, :2]))
    cov2, logdet2, bad2 = hessian_inverse(np.diag([2.0, 8.0]))
    np.testing.assert_allclose(cov2, np.diag([0.5, 0.125]))
    assert logdet2 == pytest.approx(-math.log(16.0)) and not bad2.any()
