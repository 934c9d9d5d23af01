"""prior_rhs / prior_ssp / prior_jzs on formula models (features.md section 5): rows of the
data-driven prior table, constants, errors, and horseshoe recovery on simulated sparse data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import SEED

import bayesglmm
from bayesglmm.priors import default_adapt_delta
from bayesglmm.spec import hold_coefficients

F = "sat ~ talk + perf + (1 | group)"


def test_rhs_constants_and_program(debate):
    m = bayesglmm.lmer(F, data=debate, prior=bayesglmm.prior_rhs(), y_range=(1, 5))
    d = m.stan_data
    # K = 2: p0 = max(1, min(3, K - 1)) = 1; tau0 = p0 / (K - p0) * base / sqrt(N), base = 1
    assert d["hs_tau0"] == pytest.approx(1 / 1 * 1.0 / math.sqrt(300))
    assert (d["hs_slab_df"], d["hs_slab_scale"]) == (4.0, 2.0)
    code = m.stan_code
    assert "vector[K] beta = z .* lambda_tilde * tau_hs;" in code
    assert "target += inv_gamma_lpdf(c2 | 0.5 * hs_slab_df, 0.5 * hs_slab_df * square(hs_slab_scale));" in code
    # reference rule: no prior on Intercept_c, sigma, SDs unless given -- and a note says so
    assert "Intercept_sd" not in d and "sigma_rate" not in d and "sd_1_rate" not in d
    assert "note: no prior on Intercept_c, sigma, sd_1" in str(m.spec)
    m2 = bayesglmm.lmer(F, data=debate, y_range=(1, 5),
                        prior=bayesglmm.prior_rhs(Intercept_sd=5, sigma_rate=1, sd_rate=1))
    assert (m2.stan_data["Intercept_sd"], m2.stan_data["sigma_rate"]) == (5.0, 1.0)
    assert "note:" not in str(m2.spec)
    # same structure, other numbers: same program
    m3 = bayesglmm.lmer(F, data=debate, prior=bayesglmm.prior_rhs(expected_vars=1, slab_scale=1),
                        y_range=(1, 3))
    assert m3.stan_code == m.stan_code


def test_rhs_guard_when_K_equals_p0(debate):
    """K = 1: p0 = 1 = K, the reference divides by zero; we use tau0 = base / sqrt(N)."""
    m = bayesglmm.lm("sat ~ talk", data=debate, prior=bayesglmm.prior_rhs(), y_range=(1, 5))
    assert m.stan_data["hs_tau0"] == pytest.approx(1.0 / math.sqrt(300))


def test_ssp_constants(debate):
    m = bayesglmm.lm("sat ~ talk + perf", data=debate, prior=bayesglmm.prior_ssp(), y_range=(1, 5))
    d = m.stan_data
    assert d["ssp_logit_mu"] == pytest.approx(math.log(0.25 / 0.75))
    sds = debate[["talk", "perf"]].std(ddof=1).to_numpy()
    np.testing.assert_allclose(d["ssp_tau_rate"], sds / 1.0)  # base = 1 for y_range (1, 5)
    assert (d["ssp_lo"], d["ssp_hi"], d["ssp_raw_scale"]) == (0.001, 0.999, 0.5)
    assert "vector[K] beta = beta_raw .* ssp_r .* ssp_tau;" in m.stan_code


def test_jzs_program(debate):
    m = bayesglmm.lm("sat ~ talk + perf", data=debate, prior=bayesglmm.prior_jzs(r=0.5))
    assert m.stan_data["jzs_r"] == 0.5
    code = m.stan_code
    assert "jzs_L = cholesky_decompose(inverse_spd(crossprod(Xc) / N));" in code
    assert "target += -log(sigma);" in code
    assert "sigma_rate" not in m.stan_data  # Jeffreys prior instead of the exponential


@pytest.mark.parametrize("call, match", [
    (lambda df: bayesglmm.glm("cond ~ talk", data=df, family="bernoulli",
                              prior=bayesglmm.prior_jzs()), "continuous family"),
    (lambda df: bayesglmm.lm("sat ~ talk", data=df, prior=bayesglmm.prior_rhs()), "y_range"),
    (lambda df: bayesglmm.lm("sat ~ 1", data=df, prior=bayesglmm.prior_rhs(), y_range=(1, 5)),
     "has none"),
    (lambda df: bayesglmm.prior_ssp(ssp_ratio=1.5), "ssp_ratio"),
    (lambda df: bayesglmm.prior_jzs(r=-1), "positive"),
])
def test_shrinkage_errors(debate, call, match):
    with pytest.raises(ValueError, match=match):
        call(debate)


def test_fixing_a_coefficient_under_a_joint_prior_is_an_error(debate):
    m = bayesglmm.lm("sat ~ talk + perf", data=debate, prior=bayesglmm.prior_jzs())
    with pytest.raises(ValueError, match="Drop the predictor from the formula"):
        hold_coefficients(m.spec, {"b[talk]": 0})


@pytest.mark.slow
def test_horseshoe_recovers_sparse_signal(rhs_mcmc, sparse_data):
    """3 of 20 coefficients non-zero, default settings (delta 0.99 from the prior table): no
    divergent transition; the 3 are recovered (95 % intervals exclude 0 and contain the truth);
    the other 17 shrink: intervals contain 0 and posterior means within 0.1 of 0 (the
    least-squares SE is about 0.1). R-hat below 1.01 everywhere. (bench/bench_shrinkage.py:
    0 divergences in 8 of 8 seeds at delta 0.99; 0-26 per seed, 3 of 8 seeds without, at Stan's
    default 0.8.)"""
    assert rhs_mcmc.delta == 0.99
    assert rhs_mcmc.num_divergent == 0
    _recovery(rhs_mcmc, sparse_data[1], tol_zero=0.1)


@pytest.mark.slow
def test_spike_and_slab_recovers_sparse_signal(ssp_mcmc, sparse_data):
    """The same check for prior_ssp(), default settings (delta 0.99): no divergent transition,
    recovery and shrinkage as for the horseshoe (bench/bench_shrinkage.py: 0 divergences in 8
    of 8 seeds at delta 0.99, 49-152 per seed at 0.8)."""
    assert ssp_mcmc.delta == 0.99
    assert ssp_mcmc.num_divergent == 0
    _recovery(ssp_mcmc, sparse_data[1], tol_zero=0.1)


@pytest.mark.slow
def test_horseshoe_auxiliaries_keep_the_marginal_likelihood(rhs_mcmc, debate, tmp_path):
    """The auxiliary parameters of the half-Cauchy scale mixtures are integrated out by
    sampling the joint, with every normalising constant kept: the bridge-sampling log ML of the
    program equals that of the same model written with the half-Cauchy densities directly
    (lm(sat ~ talk + perf) on debate: the program of rhs_mcmc with other data; the intercept
    and sigma keep their flat prior, which is the same constant in both programs), within 4
    combined bridge-sampling SEs (``se``, the calibrated one)."""
    m = bayesglmm.lm("sat ~ talk + perf", data=debate, y_range=(1, 5), prior=bayesglmm.prior_rhs())
    assert m.stan_code == rhs_mcmc.model.stan_code
    code = m.stan_code
    for old, new in (
        ("  vector<lower=0>[K] lambda_raw;", "  vector<lower=0>[K] lambda;"),
        ("  vector<lower=0>[K] w_lambda;", ""),
        ("  real<lower=0> tau_raw;", "  real<lower=0> tau_hs;"),
        ("  real<lower=0> w_tau;", ""),
        ("  vector[K] lambda = lambda_raw ./ sqrt(w_lambda);", ""),
        ("  real tau_hs = hs_tau0 * tau_raw / sqrt(w_tau);", ""),
        ("  target += normal_lpdf(lambda_raw | 0, 1) + K * log2();",
         "  target += cauchy_lpdf(lambda | 0, 1) + K * log2();"),
        ("  target += gamma_lpdf(w_lambda | 0.5, 0.5);", ""),
        ("  target += normal_lpdf(tau_raw | 0, 1) + log2();",
         "  target += cauchy_lpdf(tau_hs | 0, hs_tau0) + log2();"),
        ("  target += gamma_lpdf(w_tau | 0.5, 0.5);", ""),
    ):
        lines = [ln for ln in code.splitlines() if ln.split("//")[0].rstrip() == old]
        assert len(lines) == 1, old
        code = code.replace(lines[0] + "\n", new + ("\n" if new else ""))
    (tmp_path / "cauchy.stan").write_text(code)
    direct = bayesglmm.from_stan(tmp_path / "cauchy.stan", m.stan_data)
    b_mix = m.sample(seed=SEED, verbose=False).bridgesampling(verbose=False)
    b_dir = direct.sample(seed=SEED, delta=0.99, verbose=False).bridgesampling(verbose=False)
    # the tolerance scales with the bridge SEs: they must be small themselves, else the
    # comparison proves nothing (both are about 0.05 with 4 x 1000 draws)
    assert b_mix.se < 0.15 and b_dir.se < 0.15, (b_mix, b_dir)
    tol = 4 * math.hypot(b_mix.se, b_dir.se)
    assert abs(b_mix.logml - b_dir.logml) < tol, (b_mix, b_dir, b_mix.se, b_dir.se)


@pytest.mark.slow
def test_jzs_on_lm_matches_the_t_test_and_the_exact_posterior(jzs_lm_mcmc, ttest_jzs_mcmc, debate):
    """lm(sat ~ cond) with prior_jzs(r = 0.707 sqrt(p (1 - p))): the standardised effect
    d = b / sigma has the prior Cauchy(0, 0.707) of the t-test's delta (= -d: group 1 minus
    group 2). Its posterior mean and SD equal (a) those of the exact posterior, by quadrature
    over (d, 1 / sigma) with the intercept integrated out analytically, and (b) those of the
    JZS t-test fit, within 4 Monte Carlo SEs (SE of the mean sd / sqrt(ESS of d), SE of the
    SD sd / sqrt(2 ESS of (d - mean)^2): NUTS draws are antithetic for means, not for
    variances)."""
    import arviz as az

    dr = jzs_lm_mcmc.draws(pars=["b[cond]", "sigma"])
    d = (dr["b[cond]"] / dr["sigma"]).to_numpy().reshape(jzs_lm_mcmc.chains, -1)
    mean, sd = float(d.mean()), float(d.std())
    ess, ess_sq = float(az.ess(d)), float(az.ess((d - mean) ** 2))
    # exact posterior: p(d, phi | y) ~ phi^(N-2) exp(-(Syy phi^2 - 2 d Sxy phi + d^2 Sxx) / 2)
    #                                 * Cauchy(d | 0, r / sd_pop(x)),   phi = 1 / sigma
    x = debate.cond.to_numpy(float)
    y = debate.sat.to_numpy(float)
    N = len(y)
    xc, yc = x - x.mean(), y - y.mean()
    Sxx, Sxy, Syy = xc @ xc, xc @ yc, yc @ yc
    scale = jzs_lm_mcmc.model.stan_data["jzs_r"] / math.sqrt(Sxx / N)
    grid_d = np.linspace(mean - 10 * sd, mean + 10 * sd, 2001)
    s_hat = math.sqrt(Syy / N)
    phi = np.linspace(0.5 / s_hat, 2.0 / s_hat, 3001)
    G, P = np.meshgrid(grid_d, phi, indexing="ij")
    lp = (N - 2) * np.log(P) - 0.5 * (Syy * P**2 - 2 * G * Sxy * P + G**2 * Sxx) \
        - np.log1p((G / scale) ** 2)
    w = np.exp(lp - lp.max()).sum(axis=1)
    w /= w.sum()
    ex_mean = float(grid_d @ w)
    ex_sd = float(np.sqrt(((grid_d - ex_mean) ** 2) @ w))
    assert abs(mean - ex_mean) < 4 * ex_sd / math.sqrt(ess), (mean, ex_mean, ess)
    assert abs(sd - ex_sd) < 4 * ex_sd / math.sqrt(2 * ess_sq), (sd, ex_sd, ess_sq)
    # the t-test's delta (another program, the same posterior)
    dt = ttest_jzs_mcmc.draws(pars=["delta"])["delta"].to_numpy().reshape(ttest_jzs_mcmc.chains, -1)
    mean_t, sd_t = float(dt.mean()), float(dt.std())
    ess_t, ess_sq_t = float(az.ess(dt)), float(az.ess((dt - mean_t) ** 2))
    assert abs(mean + mean_t) < 4 * ex_sd * math.sqrt(1 / ess + 1 / ess_t)
    assert abs(sd - sd_t) < 4 * ex_sd * math.sqrt(1 / (2 * ess_sq) + 1 / (2 * ess_sq_t))
    assert jzs_lm_mcmc.num_divergent == 0


# ---- the scale mixtures of the prior table imply the documented priors (analytic identities,
#      checked by quadrature with the constants of the Stan statements)


def test_horseshoe_scale_mixture_is_half_cauchy():
    """lambda = lambda_raw / sqrt(w), lambda_raw ~ half-N(0, 1), w ~ Gamma(1/2, rate 1/2):
    p(lambda) = int 2 phi(lambda sqrt(w)) sqrt(w) Gamma(w) dw = half-Cauchy(0, 1) density
    (tau_hs = hs_tau0 * the same construction, so half-Cauchy(0, hs_tau0))."""
    from scipy import integrate, stats

    for lam in (0.05, 0.7, 3.0, 40.0):
        dens, _ = integrate.quad(lambda w, lam=lam: 2 * stats.norm.pdf(lam * math.sqrt(w))
                                 * math.sqrt(w) * stats.gamma.pdf(w, 0.5, scale=2.0),
                                 0, np.inf, epsabs=0, epsrel=1e-10, limit=200)
        assert dens == pytest.approx(2 * stats.cauchy.pdf(lam), rel=1e-7), lam
    m = bayesglmm.lm("sat ~ talk + perf", data=bayesglmm.load_debate(),
                     prior=bayesglmm.prior_rhs(), y_range=(1, 5))
    for stmt in ("target += normal_lpdf(lambda_raw | 0, 1) + K * log2();",
                 "target += gamma_lpdf(w_lambda | 0.5, 0.5);",
                 "vector[K] lambda = lambda_raw ./ sqrt(w_lambda);",
                 "real tau_hs = hs_tau0 * tau_raw / sqrt(w_tau);"):
        assert stmt in m.stan_code


def test_default_delta_per_prior(debate):
    """sample()'s default target acceptance rate comes from the prior table."""
    assert default_adapt_delta(()) == 0.8
    assert default_adapt_delta(("Intercept_c", "b_rhs", "sigma")) == 0.99
    kw = dict(data=debate, y_range=(1, 5))
    assert bayesglmm.lm("sat ~ talk", prior=bayesglmm.prior_rhs(), **kw).default_delta == 0.99
    assert bayesglmm.lm("sat ~ talk", prior=bayesglmm.prior_ssp(), **kw).default_delta == 0.99
    assert bayesglmm.lm("sat ~ talk", prior=bayesglmm.prior_weak(), **kw).default_delta == 0.8
    assert bayesglmm.lm("sat ~ talk", data=debate, prior=bayesglmm.prior_jzs()).default_delta == 0.8
    assert bayesglmm.lm("sat ~ talk", data=debate).default_delta == 0.8


def _recovery(fit, beta_true, tol_zero):
    """The non-zero coefficients: 95 % intervals exclude 0 and contain the truth; the others:
    intervals contain 0 and posterior means within tol_zero of 0."""
    s = fit.summary()
    for j, b in enumerate(beta_true):
        row = s.loc[f"b[x{j + 1}]"]
        if b != 0:
            assert row["q2.5"] > 0 or row["q97.5"] < 0, (j, row)
            assert row["q2.5"] < b < row["q97.5"], (j, row)
        else:
            assert abs(row["mean"]) < tol_zero, (j, row)
            assert row["q2.5"] < 0 < row["q97.5"], (j, row)
    assert s["rhat"].max() < 1.01
    return s
