"""bayesglmm.ttest (features.md section 10): closed-form classic() against the Student / Welch
figures of features 12 and scipy, the JZS MAP and Bayes factor against BayesFactor::ttestBF, and
the bridge-sampling BF against the Rouder et al. (2009) integral (bayesglmm.ttest.jzs_bf10)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import SEED, load_reference
from scipy import stats

import bayesglmm
from bayesglmm.ttest import jzs_bf10

REF = "bayes_factors.json"


def test_classic_student_and_welch_match_features(debate):
    ref = load_reference(REF)["ttest_sat_cond"]["classic"]
    c = bayesglmm.ttest("sat ~ cond", data=debate).classic(verbose=False)
    tab = c.table
    assert tab.loc["diff", "Estimate"] == pytest.approx(ref["diff"], abs=5e-6)
    assert tab.loc["diff", "Std. Error"] == pytest.approx(ref["se"], abs=5e-6)
    assert c.t == pytest.approx(ref["t"], abs=5e-5)
    assert c.df == ref["df"]
    assert c.p == pytest.approx(ref["p"], abs=5e-6)
    assert tab.loc["delta", "Estimate"] == pytest.approx(ref["delta"], abs=5e-6)
    assert tab.loc["sd", "Estimate"] == pytest.approx(ref["sd"], abs=5e-6)
    w = bayesglmm.ttest("sat ~ cond", data=debate, var_equal=False).classic(verbose=False)
    assert w.df == pytest.approx(ref["welch_df"], abs=0.005)
    sw = stats.ttest_ind(debate.sat[debate.cond == 0], debate.sat[debate.cond == 1],
                         equal_var=False)
    assert w.t == pytest.approx(sw.statistic, rel=1e-12)
    assert w.p == pytest.approx(sw.pvalue, rel=1e-10)
    text = c.format()
    assert text.startswith("Classical estimation via ttest")
    assert "Log-Likelihood:" in text and "AIC:" in text and "BIC:" in text


def test_classic_paired_matches_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, 20)
    b = a + rng.normal(0.4, 0.5, 20)
    df = pd.DataFrame({"y": np.r_[a, b], "g": ["pre"] * 20 + ["post"] * 20,
                       "id": np.r_[np.arange(20), np.arange(20)]})
    # group 1 = first level in sorted order: 'post'
    c = bayesglmm.ttest("y ~ g", data=df, paired=True, id="id").classic(verbose=False)
    ref = stats.ttest_rel(b, a)
    assert c.t == pytest.approx(ref.statistic, rel=1e-12)
    assert c.df == 19
    assert c.p == pytest.approx(ref.pvalue, rel=1e-10)
    c2 = bayesglmm.ttest(b, a, paired=True).classic(verbose=False)
    assert c2.t == pytest.approx(c.t, rel=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(x="sat ~ group"), "exactly two levels"),
    (dict(x="sat ~ shoe"), "unknown column 'shoe'"),
    (dict(x="sat ~ cond + talk"), "one grouping column"),
    (dict(x="sat ~ cond", paired=True), "needs id="),
    (dict(x="sat ~ cond", prior="weak"), "needs y_range"),
])
def test_ttest_input_errors(debate, kwargs, match):
    with pytest.raises(ValueError, match=match):
        bayesglmm.ttest(data=debate, **kwargs)


def test_classic_needs_flat_prior(debate):
    with pytest.raises(ValueError, match="classic\\(\\) needs the flat prior"):
        bayesglmm.ttest("sat ~ cond", data=debate, prior=bayesglmm.prior_jzs()).classic()


def test_rouder_integral_equals_bayesfactor():
    """The Rouder integral reproduces BayesFactor::ttestBF(r = 0.707) = 21.853 on debate
    (t = -3.3048, n = 150 + 150), and the closed form of the r -> 0 limit (BF -> 1)."""
    ref = load_reference(REF)["ttest_sat_cond"]
    assert jzs_bf10(-3.304841377764815, 150, 150) == pytest.approx(ref["jzs_bf12"], abs=5e-4)
    assert jzs_bf10(2.0, 30, 30, r=1e-4) == pytest.approx(1.0, abs=1e-3)


def test_ttest_program_shares_full_and_restricted(debate):
    m = bayesglmm.ttest("sat ~ cond", data=debate, prior=bayesglmm.prior_jzs(r=0.5))
    r = m.with_fixed({"delta": 0})
    assert r.stan_code == m.stan_code
    assert (m.stan_data["effect_fixed"], r.stan_data["effect_fixed"]) == (0, 1)
    assert m.stan_data["jzs_r"] == 0.5
    with pytest.raises(ValueError, match="only the effect"):
        m.with_fixed({"sd": 1})


@pytest.mark.slow
def test_jzs_map_and_laplace(ttest_jzs):
    ref = load_reference(REF)["ttest_sat_cond"]
    mp = ttest_jzs.optimize(verbose=False)
    assert mp.estimates["delta"] == pytest.approx(ref["jzs_map"]["delta"], abs=5e-5)
    assert mp.estimates["diff"] == pytest.approx(ref["jzs_map"]["diff"], abs=5e-5)
    assert mp.log_ml == pytest.approx(ref["jzs_laplace_logml"], abs=0.006)


@pytest.mark.slow
def test_jzs_bayes_factor_debate(ttest_jzs, ttest_jzs_mcmc):
    """BF12 = 21.85 (BayesFactor) within the bridge-sampling error (4 combined SEs of log BF);
    both log MLs as in features 12."""
    ref = load_reference(REF)["ttest_sat_cond"]
    bf = ttest_jzs_mcmc.bayes_factor(fixed={"delta": 0}, verbose=False)
    assert abs(bf.log_bf - math.log(ref["jzs_bf12"])) < 4 * bf.se, bf
    assert abs(bf.logml1 - ref["jzs_bridge_logml"]) < 4 * bf.bridge1.se + 0.005
    assert abs(bf.logml2 - ref["jzs_restricted_delta0_logml"]) < 4 * bf.bridge2.se + 0.005
    assert bf.label == "Strong evidence for Model 1"
    assert np.all(bf.fit2.draws(pars="delta")["delta"] == 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("t_target, n1, n2", [(1.2, 15, 15), (2.5, 40, 25), (-4.0, 60, 60)])
def test_jzs_bridge_bf_equals_rouder_integral(ttest_jzs, t_target, n1, n2):
    """Simulated samples with a given t: the bridge-sampling BF10 equals the Rouder integral
    within 2 % (the bridge SE of log BF is about 0.002 here)."""
    rng = np.random.default_rng(abs(int(t_target * 10)) + n1)
    a, b = rng.standard_normal(n1), rng.standard_normal(n2)
    a = (a - a.mean()) / a.std(ddof=1)
    b = (b - b.mean()) / b.std(ddof=1)
    shift = t_target * math.sqrt(1 / n1 + 1 / n2)  # pooled SD is 1
    a = a + shift
    t = stats.ttest_ind(a, b).statistic
    assert t == pytest.approx(t_target, rel=1e-9)
    m = bayesglmm.ttest(a, b, prior=bayesglmm.prior_jzs())
    fit = m.sample(seed=SEED, verbose=False)
    bf = fit.bayes_factor(fixed={"delta": 0}, verbose=False)
    expected = jzs_bf10(t, n1, n2)
    assert bf.bf == pytest.approx(expected, rel=0.02), (bf, expected)
    assert bf.error < 0.01
