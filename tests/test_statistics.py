"""Statistical tests against reference figures (copied into tests/reference/ with their source).

- debate Model A, normal prior, NUTS 4 x 1000: posterior means vs the reference MCMC run
  (features.md §12) within Monte Carlo error;
- sleepstudy, correlated random slopes, weak prior: fixed effects vs lme4 REML;
- lm with flat priors: the MAP equals the closed-form least-squares / ML answer;
- optimize() of Model A (Laplace over the random effects, the default) vs the reference MAP row
  (features.md §12); the joint MAP (laplace=False) only for internal consistency, since the
  reference MAP figures integrate the random effects out;
- the Laplace objective on a normal-normal model without Stan: exact marginal likelihood and
  closed-form ML estimates;
- the Laplace log marginal likelihood where it is exact (issue 5): the conjugate model of refs
  09 (analytic value), the generated lmer program at fixed outer parameters (closed-form
  multivariate normal) and a known-variance random-intercept model (from_stan, closed form).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import load_reference
from scipy import stats

import bayesglmm
from bayesglmm.inference.optimize import (
    LaplaceObjective,
    Objective,
    block_indices,
    find_laplace_mode,
    hessian_inverse,
    re_pattern,
)

REFERENCE_STAN = Path(__file__).parent / "reference" / "stan"
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
    assert m.run_program.code == debate_compiled.code  # no new compilation
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
def test_sampling_table_draws_move_smoothly_with_the_covariance(debate_model, debate_compiled):
    # se_method="sampling" draws u + root @ z: a Cholesky root follows a covariance that moves
    # by 1e-9 (relative) smoothly, where an eigen root may rotate within equal eigenvalues (here 1, 1, 1)
    from bayesglmm.inference.optimize.wald import sampling_table

    bs = debate_model.bridgestan_model(verbose=False)
    n = bs.param_unc_num()
    u = np.zeros(n)
    cov = np.diag(np.r_[np.ones(3), np.linspace(0.5, 2.0, n - 3)]) * 0.01
    e = np.random.default_rng(0).normal(size=(n, n))
    index = list(range(6))
    a = sampling_table(bs, u, cov, index, seed=3, n_draws=200)
    b = sampling_table(bs, u, cov + 1e-11 * (e @ e.T), index, seed=3, n_draws=200)
    for x, y in zip(a[1:], b[1:]):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-8)


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
    # log marginal likelihood: the inner (z) step is exact here, so log_ml is the Laplace
    # approximation over the outer (mu, log tau) of the EXACT marginal: -F(theta^) + log tau^
    # (Jacobian of the flat prior on tau) + log(2 pi) - 1/2 log det of F's Hessian, the
    # Hessian by central differences of the closed form
    th = mode.theta_unc[:2]

    def F(t):
        return _exact_neg_log_marginal(y, t[0], math.exp(t[1]))

    h = 1e-3
    H = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h, np.eye(2)[j] * h
            H[i, j] = (F(th + ei + ej) - F(th + ei - ej) - F(th - ei + ej) + F(th - ei - ej)) / (4 * h * h)
    expected = -F(th) + th[1] + math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(H)[1]
    assert mode.log_ml == pytest.approx(expected, abs=1e-4)


def test_hessian_inverse_at_a_boundary():
    H = np.diag([4.0, 1.0, 0.0])
    H[0, 1] = H[1, 0] = 1.0
    cov, logdet, bad = hessian_inverse(H)
    assert logdet is None and list(bad) == [False, False, True]
    np.testing.assert_allclose(cov[:2, :2], np.linalg.inv(H[:2, :2]))
    cov2, logdet2, bad2 = hessian_inverse(np.diag([2.0, 8.0]))
    np.testing.assert_allclose(cov2, np.diag([0.5, 0.125]))
    assert logdet2 == pytest.approx(-math.log(16.0)) and not bad2.any()


# --------------------------------------------------------------------------- Laplace log ML, exact


@pytest.mark.slow
@pytest.mark.parametrize("case", ["s_1", "s_10"])
def test_laplace_log_ml_conjugate_matches_analytic(conjugate_compiled, case):
    """optimize() on the conjugate normal model of refs 09 (y_i ~ N(mu, 1), mu ~ N(0, s^2)):
    the posterior of mu is exactly normal, so the Laplace log marginal likelihood is the
    analytic one (issue 5 asks for 0.05; the only error left is the optimiser's and the
    autodiff Hessian's, ~1e-11 measured, asserted 1e-8), and the mode and SE are the
    posterior mean and SD."""
    ref = load_reference("bridge_conjugate.json")
    post = load_reference("conjugate_normal.json")["analytic"][case]
    m = bayesglmm.from_stan(REFERENCE_STAN / "conjugate.stan",
                            {"n": len(ref["y"]), "y": ref["y"], "s": float(ref[case]["s"])})
    assert m.run_program.code == conjugate_compiled.code  # the same compiled program
    fit = m.optimize(verbose=False)
    assert fit.converged
    assert abs(fit.log_ml - ref[case]["logml"]) < 1e-8, (fit.log_ml, ref[case]["logml"])
    s = fit.summary()
    assert s.loc["mu", "estimate"] == pytest.approx(post["posterior_mean"], abs=1e-8)
    assert s.loc["mu", "se"] == pytest.approx(post["posterior_sd"], rel=1e-6)
    assert f"Approx. Log Marginal Likelihood (Laplace): {ref[case]['logml']:.2f}" in str(fit)


def _lmer_exact_nll(data: dict, theta: np.ndarray) -> float:
    """-log p(y | theta) of the flat-prior gaussian lmer program with one random intercept,
    theta = (Intercept, beta..., log sigma, log sd) (its unconstrained outer parameters): the
    random intercepts integrated exactly, y ~ MVN(Intercept + X beta, sigma^2 I + sd^2 Z Z')."""
    X = np.asarray(data["X"], dtype=float)
    K = X.shape[1]
    icpt, beta = theta[0], theta[1:1 + K]
    sigma, sd = math.exp(theta[1 + K]), math.exp(theta[2 + K])
    J = np.asarray(data["J_1"])
    Z = (J[:, None] == np.arange(1, data["N_1"] + 1)).astype(float)
    V = sigma**2 * np.eye(X.shape[0]) + sd**2 * Z @ Z.T
    return -stats.multivariate_normal.logpdf(np.asarray(data["y"], dtype=float), icpt + X @ beta, V)


@pytest.mark.slow
def test_laplace_objective_exact_on_generated_lmer(debate_flat_model):
    """LaplaceObjective.value(theta) on the generated (flat-prior) program of
    ``lmer(sat ~ talk + perf + (1 | group))`` equals -log p(y | theta) in closed form at fixed
    outer parameters theta, near and far from the mode: the model is gaussian in the random
    effects, so the Laplace step is exact (measured agreement ~1e-11 on a value of ~400;
    asserted 1e-7: inner Newton stops at a gradient of 1e-10, and the Hessian over the random
    effects comes from gradient differences, exact for a quadratic up to rounding). Both ways of
    getting the sparsity of H_zz (from the model structure, or probed) give the same value."""
    m = debate_flat_model
    bs = m._bridgestan(False)
    n = bs.param_unc_num()
    z_idx = block_indices(bs, m.program.re_blocks)
    lap = LaplaceObjective(Objective(bs), z_idx, n, np.zeros(n))
    lap_s = LaplaceObjective(Objective(bs), z_idx, n, np.zeros(n),
                             re_pattern(m.program, bs, z_idx))
    names = [bs.param_unc_names()[i] for i in lap.t]
    assert names == ["Intercept", "beta.1", "beta.2", "sigma", "sd_1.1"]
    for theta in ([1.9, 0.26, 0.16, math.log(0.78), math.log(0.46)],
                  [0.0, 0.0, 0.0, 0.0, 0.0],
                  [3.0, -0.5, 0.4, math.log(1.7), math.log(0.05)]):
        theta = np.array(theta)
        exact = _lmer_exact_nll(m.program.data, theta)
        assert lap.value(theta) == pytest.approx(exact, abs=1e-7)
        assert lap_s.value(theta) == pytest.approx(exact, abs=1e-7)


@pytest.mark.slow
def test_laplace_log_ml_exact_with_known_variances(known_variance_model):
    """optimize() on a model whose outer posterior is exactly gaussian (sigma and tau known,
    normal priors on mu and b; tests/reference/stan/known_variance.stan): the random effects
    z are integrated out by the inner Laplace step, (mu, b) by the outer one, and both are
    exact, so fit.log_ml = log N(y | 0, sigma^2 I + tau^2 Z Z' + s^2 (1 1' + x x')).

    Tolerance: the outer Hessian is a finite-difference Hessian of the Laplace objective F with
    step 1e-4; F carries ~1e-11 of rounding and inner-solve error, which puts ~1e-4 relative
    error on that Hessian and ~1e-5 on log ML (measured 6.2e-6); asserted 5e-5. The formula
    itself is checked to 1e-9 with the exact Hessian, and F(theta^) and the mode to 1e-8."""
    m, d = known_variance_model
    fit = m.optimize(verbose=False)
    assert fit.converged and fit.laplace
    N, G = d["N"], d["G"]
    x, y = np.asarray(d["x"]), np.asarray(d["y"])
    Z = (np.asarray(d["g"])[:, None] == np.arange(1, G + 1)).astype(float)
    V0 = d["sigma"] ** 2 * np.eye(N) + d["tau"] ** 2 * Z @ Z.T
    X = np.column_stack([np.ones(N), x])
    V = V0 + d["s"] ** 2 * X @ X.T
    exact = stats.multivariate_normal.logpdf(y, np.zeros(N), V)
    assert abs(fit.log_ml - exact) < 5e-5, (fit.log_ml, exact)
    # posterior of (mu, b): N(m, H^-1), H = X' V0^-1 X + I / s^2
    H = X.T @ np.linalg.solve(V0, X) + np.eye(2) / d["s"] ** 2
    mean = np.linalg.solve(H, X.T @ np.linalg.solve(V0, y))
    s = fit.summary()
    np.testing.assert_allclose(s.loc[["mu", "b"], "estimate"], mean, atol=1e-8)
    np.testing.assert_allclose(s.loc[["mu", "b"], "se"], np.sqrt(np.diag(np.linalg.inv(H))),
                               rtol=1e-4)
    # F(theta^) = -log p(y, theta^) exactly; with the exact Hessian the Laplace formula
    # reproduces the closed form to rounding
    F = fit.objective
    nl = -(stats.multivariate_normal.logpdf(y, X @ mean, V0)
           + stats.norm.logpdf(mean, 0, d["s"]).sum())
    assert F == pytest.approx(nl, abs=1e-8)
    assert -F + math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(H)[1] == pytest.approx(exact, abs=1e-9)


@pytest.mark.slow
def test_wald_table_survives_an_overflowing_interval(debate_flat_model):
    """A huge SE on log sd (what a noise-level curvature at a boundary gives) makes
    u + 1.96 se overflow: the program rejects sd = inf in its generated quantities. The
    back-transformed limits are then NaN instead of an exception, and the other rows keep
    theirs."""
    from bayesglmm.inference.optimize import wald_table
    from bayesglmm.results import bracket_name, resolve_params

    m = debate_flat_model
    bs = m._bridgestan(False)
    n = bs.param_unc_num()
    u = np.zeros(n)
    cov = np.eye(n) * 0.01
    i_sd = bs.param_unc_names().index("sd_1.1")
    cov[i_sd, i_sd] = 1e6
    names = [bracket_name(x) for x in bs.param_names(include_tp=True, include_gq=True)]
    params = [p for p in resolve_params(m.program, names) if p.kind != "re"]
    index = [names.index(p.stan) for p in params]
    est, se, lo, hi = wald_table(bs, u, cov, index, [p.kind for p in params])
    k = [p.user for p in params].index("sd[group:Int]")
    assert est[k] == pytest.approx(1.0) and se[k] == pytest.approx(1e3)
    assert np.isnan(lo[k]) and np.isnan(hi[k])
    other = [j for j in range(len(params)) if j != k]
    assert np.isfinite(lo[other]).all() and np.isfinite(hi[other]).all()
