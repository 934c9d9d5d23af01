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
