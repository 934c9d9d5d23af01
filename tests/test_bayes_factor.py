"""Bayes factors (bayesglmm/post/bayes_factor.py) and coefficients held fixed through data
(spec.hold_coefficients): Jeffreys labels, the restricted program, and the debate figures of
features.md section 12."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import load_reference

import bayesglmm
from bayesglmm.codegen import generate
from bayesglmm.post.bayes_factor import jeffreys_label
from bayesglmm.spec import hold_coefficients


@pytest.mark.parametrize("bf, label", [
    (580.0, "Decisive evidence for Model 1"), (100.5, "Decisive evidence for Model 1"),
    (100.0, "Strong evidence for Model 1"), (21.85, "Strong evidence for Model 1"),
    (5.0, "Substantial evidence for Model 1"), (2.0, "Anecdotal evidence for Model 1"),
    (1.0, "No evidence"), (0.5, "Anecdotal evidence for Model 2"),
    (0.2, "Substantial evidence for Model 2"), (0.05, "Strong evidence for Model 2"),
    (0.001, "Decisive evidence for Model 2"), (math.inf, "Decisive evidence for Model 1"),
])
def test_jeffreys_labels(bf, label):
    assert jeffreys_label(bf) == label


def test_held_coefficient_program_structure(debate_model):
    """The restricted program samples beta_free only; which coefficient is held, and its value,
    are data; its prior term is dropped (the others are unchanged)."""
    spec = hold_coefficients(debate_model.spec, {"b[talk]": 0})
    assert spec.held == ((0, 0.0),)
    prog = generate(spec)
    assert "vector[K - K_fixed] beta_free;" in prog.code
    assert "beta[fixed_idx] = fixed_val;" in prog.code
    assert "target += normal_lpdf(beta_free | b_mu[free_idx], b_sd[free_idx]);" in prog.code
    assert "target += normal_lpdf(Intercept_c | Intercept_mu, Intercept_sd);" in prog.code
    assert prog.data["K_fixed"] == 1
    np.testing.assert_array_equal(prog.data["fixed_idx"], [1])
    np.testing.assert_array_equal(prog.data["free_idx"], [2])
    np.testing.assert_array_equal(prog.data["fixed_val"], [0.0])
    # another value or another coefficient: the same program, other data
    other = generate(hold_coefficients(debate_model.spec, {"b[perf]": 0.5}))
    assert other.code == prog.code
    np.testing.assert_array_equal(other.data["fixed_idx"], [2])
    np.testing.assert_array_equal(other.data["fixed_val"], [0.5])
    # the unrestricted program is unchanged
    assert "beta_free" not in debate_model.stan_code
    assert [p.user for p in prog.params] == debate_model.parameter_names
    assert "held fixed: b[talk] = 0" in str(spec)


@pytest.mark.parametrize("fixed, match", [
    ({"b[shoe]": 0}, r"unknown coefficient 'b\[shoe\]'.*b\[talk\], b\[perf\]"),
    ({"sigma": 1}, "only population-level coefficients"),
    ({"b[talk]": "a"}, "must be a number"),
    ({"b[talk]": math.nan}, "must be finite"),
])
def test_hold_coefficients_errors(debate_model, fixed, match):
    with pytest.raises(ValueError, match=match):
        hold_coefficients(debate_model.spec, fixed)


def test_bayes_factor_argument_errors(debate_model):
    from bayesglmm.post.bayes_factor import bayes_factor

    class Fake:
        method = "sample"
        model = debate_model

    with pytest.raises(ValueError, match="exactly one of"):
        bayes_factor(Fake())
    with pytest.raises(ValueError, match="exactly one of"):
        bayes_factor(Fake(), Fake(), fixed={"b[talk]": 0})

    class MapLike:
        method = "optimize"
        model = debate_model

    with pytest.raises(ValueError, match="not a sample"):
        bayes_factor(MapLike(), Fake())


@pytest.mark.slow
def test_restricted_laplace_matches_reference(debate_bf):
    """The restricted program's Laplace MAP reproduces the reference row 'normal prior, b[talk]
    fixed at 0' of features 12 (tests/reference/debate_model_a.json: NLP 408.11, logML -416.30,
    printed to 2 decimals: half a unit of the last digit plus optimiser precision)."""
    ref = load_reference("debate_model_a.json")["laplace_map_normal_prior_talk0"]
    mp = debate_bf.fit2.model.optimize(verbose=False)
    assert mp.objective == pytest.approx(ref["nlp"], abs=0.006)
    assert mp.log_ml == pytest.approx(ref["log_ml"], abs=0.006)
    est = mp.estimates
    assert est["b[talk]"] == 0.0
    assert set(ref["estimate"]) <= set(est)
    for name, val in ref["estimate"].items():
        if name != "b[talk]":
            assert est[name] == pytest.approx(val, rel=1e-3), name


@pytest.mark.slow
def test_debate_bayes_factor_talk(debate_mcmc, debate_bf, capsys):
    """log BF12 for b[talk] = 0 is 6.37 (features 12; exact 6.2869); tolerance 4 combined
    bridge errors plus the reference's rounding. The restricted model's log ML is within 4
    errors of the exact -416.2515 (the reference's bridge figure -417.30 carries the 1-unit
    bias of its alternate-draws split, which cancels in the Bayes factor; see test_bridge.py).
    The restricted fit used the same sampling settings."""
    refs = load_reference("bayes_factors.json")
    ref, exact = refs["model_a_normal"], refs["exact"]
    bf = debate_bf
    # the tolerances scale with the bridge SE: it must itself be small (30 seeds: SD 0.06 per
    # log ML, bench/results/bridge_bias.json), else the comparisons below prove nothing
    assert 0 < bf.bridge1.se < 0.15 and 0 < bf.bridge2.se < 0.15, bf
    assert abs(bf.log_bf - ref["log_bf12_talk"]) < 4 * bf.se + 0.005, bf
    assert abs(bf.log_bf - exact["log_bf12_talk_normal"]) < 4 * bf.se, bf
    assert bf.bf == pytest.approx(math.exp(bf.log_bf))
    assert bf.log_bf == pytest.approx(bf.logml1 - bf.logml2)
    assert bf.label == ref["bf12_label"]
    assert abs(bf.logml2 - exact["restricted_talk0_normal_logml"]) < 4 * bf.bridge2.se
    fit2 = bf.fit2
    assert (fit2.chains, fit2.warmup, fit2.sampling, fit2.seed) == (
        debate_mcmc.chains, debate_mcmc.warmup, debate_mcmc.sampling, debate_mcmc.seed)
    assert np.all(fit2.draws(pars="b[talk]")["b[talk]"] == 0.0)
    # bayes_factor(fit1, fit2) on the two fits: the same numbers, printed
    again = bayesglmm.bayes_factor(debate_mcmc, fit2)
    out = capsys.readouterr().out
    assert again.log_bf == pytest.approx(bf.log_bf)
    assert "--- Bayes Factor Analysis (Bridge Sampling) ---" in out
    assert f"Bayes Factor (BF12) : {bf.bf:.3f}" in out
    assert f"Log Bayes Factor    : {bf.log_bf:.3f}" in out
    assert "Evidence            : Decisive evidence for Model 1" in out
    back = bayesglmm.bayes_factor(fit2, debate_mcmc, verbose=False)
    assert back.log_bf == pytest.approx(-bf.log_bf)
    assert back.label == "Decisive evidence for Model 2"


def test_wrapper_fixed_argument(debate, debate_model):
    """glmer/lmer/glm/lm(fixed=...) give the restricted program of bayes_factor (features §1)."""
    m = bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=debate,
                       prior=bayesglmm.prior_normal(), fixed={"b[talk]": 0})
    assert m.spec.held == ((0, 0.0),)
    assert m.stan_code == generate(hold_coefficients(debate_model.spec, {"b[talk]": 0})).code
    with pytest.raises(ValueError, match="unknown coefficient"):
        bayesglmm.lm("sat ~ talk", data=debate, fixed={"b[perf]": 0})
