"""Model.update(): the same model on new data or prior (no compile), a new program when the
structure changes (as lme4's update())."""

from __future__ import annotations

import numpy as np
import pytest

import bayesglmm


def test_new_data_same_program(debate_model, debate):
    sub = debate[debate.group <= 10]
    m = debate_model.update(data=sub)
    assert m is not debate_model
    assert m.stan_code == debate_model.stan_code
    assert m.stan_data["N"] == len(sub)
    assert np.array_equal(m.observed_response(), sub.sat.to_numpy())
    assert m.formula == debate_model.formula and m.call() == debate_model.call()


@pytest.mark.slow
def test_shares_the_compiled_program(debate_model, debate_compiled, debate):
    m = debate_model.update(data=debate.iloc[::-1].reset_index(drop=True))
    assert m._compiled is debate_compiled  # no compile, no cache look-up
    # same data in another row order: the same posterior mode
    a, b = debate_model.optimize(verbose=False), m.optimize(verbose=False)
    pars = ["Intercept", "b[talk]", "b[perf]", "sigma", "sd[group:Int]"]
    np.testing.assert_allclose(a.summary().loc[pars, "estimate"],
                               b.summary().loc[pars, "estimate"], rtol=1e-5)


def test_new_prior_hyperparameters_keep_the_program(debate_model):
    m = debate_model.update(prior=bayesglmm.prior_normal(b_sd=1))
    assert m.stan_code == debate_model.stan_code
    assert np.allclose(m.stan_data["b_sd"], 1.0)
    assert np.allclose(debate_model.stan_data["b_sd"], 10.0)


def test_structure_change_gives_a_new_program(debate_model):
    # another formula: design sizes are data, so here the program is the same one
    m = debate_model.update(formula="sat ~ talk + (1 | group)")
    assert m.stan_data["K"] == 1 and m.parameter_names[:3] == ["Intercept", "b[talk]", "sigma"]
    # another prior type: another specific program, compiled on first use ...
    specific = debate_model.update(backend="specific")
    flat = specific.update(prior=bayesglmm.prior_flat())
    assert flat.stan_code != debate_model.stan_code
    assert flat.backend == "specific" and flat._compiled is None
    # ... while the family's generic program takes the prior kind as data: the same program
    generic = debate_model.update(prior=bayesglmm.prior_flat())
    assert generic.backend == debate_model.backend == "generic"
    assert generic.run_program.code == debate_model.run_program.code


def test_options_are_checked(debate_model, cbpp):
    with pytest.raises(TypeError, match=r"unknown option\(s\) family for lmer\(\)"):
        debate_model.update(family="poisson")
    m = bayesglmm.glmer("cbind(incidence, failures) ~ period + (1 | herd)", data=cbpp,
                        family="binomial")
    assert m.update(data=cbpp.iloc[:40]).stan_data["N"] == 40


def test_from_stan_data(conjugate_model):
    m = conjugate_model.update(data={"n": 2, "y": [0.1, 0.2], "s": 1.0})
    assert m.stan_code == conjugate_model.stan_code and m.stan_data["n"] == 2
    with pytest.raises(ValueError, match="can only replace its data"):
        conjugate_model.update(prior=bayesglmm.prior_normal())
