"""prior_rhs / prior_ssp / prior_jzs on formula models (features.md section 5): rows of the
data-driven prior table, constants, errors, and horseshoe recovery on simulated sparse data."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bayesglmm
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
    """3 of 20 coefficients non-zero: their 95 % intervals exclude 0 and contain the truth; the
    other 17 shrink: posterior means within 0.1 of 0 (the least-squares SE is about 0.1) and
    intervals that contain 0. R-hat below 1.01 everywhere."""
    _, beta = sparse_data
    s = rhs_mcmc.summary()
    for j in range(20):
        row = s.loc[f"b[x{j + 1}]"]
        if beta[j] != 0:
            assert row["q2.5"] > 0 or row["q97.5"] < 0, (j, row)
            assert row["q2.5"] < beta[j] < row["q97.5"], (j, row)
        else:
            assert abs(row["mean"]) < 0.1, (j, row)
            assert row["q2.5"] < 0 < row["q97.5"], (j, row)
    assert s["rhat"].max() < 1.01
