"""Sampling diagnostics after sample() (issue 6): warnings fire on Neal's funnel with a short
warmup and stay silent on a well-behaved posterior."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bayesglmm.inference.diagnostics import SamplingWarning, ebfmi


def test_ebfmi_of_white_noise_and_random_walk():
    rng = np.random.default_rng(1)
    white = rng.normal(size=(1, 2000))
    walk = np.cumsum(rng.normal(size=(1, 2000)), axis=1)
    assert ebfmi(white)[0] > 1.5  # E[diff^2] = 2 Var for independent draws
    assert ebfmi(walk)[0] < 0.3


@pytest.mark.slow
def test_warnings_fire_on_funnel(funnel_model):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        funnel_model.sample(chains=2, warmup=30, sampling=300, seed=2, verbose=False)
    msgs = [str(w.message) for w in rec if issubclass(w.category, SamplingWarning)]
    assert any(m.startswith("R-hat above 1.01 for v") for m in msgs), msgs
    assert any("low effective sample size" in m and "v" in m for m in msgs), msgs
    assert any("E-BFMI" in m or "divergent" in m for m in msgs), msgs
    assert len(msgs) == len(set(m.split(" ")[0] for m in msgs))  # one warning per kind


@pytest.mark.slow
def test_silent_on_good_model(conjugate_model, conjugate_compiled):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        conjugate_model.sample(chains=4, warmup=1000, sampling=1000, seed=3, verbose=False)
    assert not [w for w in rec if issubclass(w.category, SamplingWarning)]


def _fit(draws, stats, max_treedepth=10):
    """An MCMCFit over given draws/sampler statistics (the diagnostics read nothing else)."""
    from bayesglmm.results import MCMCFit, Param

    C, D, P = draws.shape
    params = [Param(f"theta[{i + 1}]", f"theta[{i + 1}]", "stan") for i in range(P)]
    stats = {"lp": np.zeros((C, D)), **stats}
    return MCMCFit(None, params, draws, stats, chains=C, warmup=D, sampling=D,
                   max_treedepth=max_treedepth)


def test_each_problem_gives_one_message_naming_parameters():
    from bayesglmm.inference.diagnostics import sampling_problems

    rng = np.random.default_rng(1)
    C, D = 4, 500
    good = rng.normal(size=(C, D, 2))
    energy = rng.normal(size=(C, D))
    ok = {"diverging": np.zeros((C, D)), "tree_depth": np.full((C, D), 3), "energy": energy}
    assert sampling_problems(_fit(good, ok)) == []

    div = dict(ok, diverging=(rng.uniform(size=(C, D)) < 0.01).astype(float))
    (msg,) = sampling_problems(_fit(good, div))
    assert msg.startswith(f"{int(div['diverging'].sum())} of 2000 transitions after warmup were divergent")
    assert "increase delta (e.g. sample(delta=0.95))" in msg  # the fit used delta 0.8
    for used, advice in ((0.95, "sample(delta=0.99)"), (0.99, "sample(delta=0.999)"),
                         (0.999, "reparameterise the model or use a prior with lighter tails")):
        fit = _fit(good, div)
        fit.delta = used
        (msg,) = sampling_problems(fit)
        assert advice in msg, (used, msg)

    deep = dict(ok, tree_depth=np.full((C, D), 10))
    (msg,) = sampling_problems(_fit(good, deep))
    assert "2000 of 2000 transitions hit the maximum tree depth (10)" in msg

    bad = good.copy()
    bad[0, :, 1] += 3.0  # chain 1 stuck elsewhere for theta[2]
    msgs = sampling_problems(_fit(bad, ok))
    assert any(m.startswith("R-hat above 1.01 for theta[2]:") for m in msgs)

    walk = good.copy()
    walk[:, :, 0] = np.cumsum(rng.normal(size=(C, D)), axis=1) * 0.05 + rng.normal(size=(C, 1))
    msgs = sampling_problems(_fit(walk, ok))
    assert any(m.startswith("low effective sample size") and "theta[1]" in m
               and "theta[2]" not in m for m in msgs)

    sticky = dict(ok, energy=np.cumsum(rng.normal(size=(C, D)), axis=1))
    (msg,) = sampling_problems(_fit(good, sticky))
    assert msg.startswith("E-BFMI below 0.3 in chain(s) 1 (")
