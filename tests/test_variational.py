"""ADVI and Pathfinder (issue 6) on the conjugate normal model of refs 09_bridge_conjugate, whose
posterior is known exactly: mu | y ~ N(1.14871, 0.31607^2) for the prior N(0, 10^2)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import load_reference

from bayesglmm.inference.variational import VariationalFit, VariationalWarning, pareto_k

EXACT = load_reference("conjugate_normal.json")["analytic"]["s_10"]
MEAN, SD = EXACT["posterior_mean"], EXACT["posterior_sd"]


def test_pareto_k_of_exact_proposal_is_small():
    rng = np.random.default_rng(1)
    lw, k = pareto_k(np.zeros(1000) + rng.normal(0, 1e-3, 1000))
    assert k < 0.5 and np.isclose(np.exp(lw).sum(), 1.0)


def test_pareto_k_of_heavy_tailed_ratios_is_large():
    rng = np.random.default_rng(1)
    # ratios of a Cauchy target to a normal proposal: infinite variance, k well above 0.7
    x = rng.normal(size=4000)
    lr = -np.log1p(x**2) + 0.5 * x**2
    assert pareto_k(lr)[1] > 0.7


@pytest.mark.slow
@pytest.mark.parametrize("method", ["meanfield", "fullrank"])
def test_advi_mean_matches_analytic_posterior(conjugate_model, conjugate_compiled, method):
    with pytest.warns(VariationalWarning, match="underestimated"):
        fit = conjugate_model.variational(method=method, seed=1, draws=1000, verbose=False)
    assert isinstance(fit, VariationalFit) and fit.algorithm == method
    mu = fit.draws()["mu"].to_numpy()
    assert mu.size == 1000
    # ADVI stops its stochastic optimisation when the relative ELBO change < 0.005, which locates
    # the mean only to a fraction of a posterior SD (repeated seeds spread by ~0.05): 1/3 SD.
    assert abs(mu.mean() - MEAN) < SD / 3
    assert 0.6 * SD < mu.std() < 1.5 * SD
    assert np.isfinite(fit.pareto_k)
    text = fit.format()
    assert f"ADVI, {method}" in text and "Pareto k (PSIS)" in text and "underestimated" in text
    assert "mu" in fit.summary().index and fit.idata.posterior["mu"].shape == (1, 1000)


@pytest.mark.slow
def test_advi_runs_are_chains(conjugate_model, conjugate_compiled):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VariationalWarning)
        fit = conjugate_model.variational(seed=3, draws=200, num_estimate=2, verbose=False)
    assert fit.chains == 2 and fit.draws_array()[0].shape == (200, 2, 1)


@pytest.mark.slow
def test_pathfinder_matches_analytic_posterior(conjugate_model, conjugate_compiled):
    with pytest.warns(VariationalWarning, match="Pareto k"):
        fit = conjugate_model.pathfinder(seed=1, draws=1000, verbose=False)
    mu = fit.draws()["mu"].to_numpy()
    # 1000 PSIS-resampled draws: Monte Carlo SE of the mean about SD / sqrt(1000) ~ 0.01
    # (resampling duplicates raise it somewhat): 5 SEs.
    assert abs(mu.mean() - MEAN) < 0.05
    assert abs(mu.std() - SD) < 0.15 * SD
    assert fit.pareto_k < 0.7  # a normal posterior is approximated almost exactly
    assert "Pathfinder" in fit.format()


def test_variational_argument_errors(conjugate_model):
    with pytest.raises(ValueError, match="method"):
        conjugate_model.variational(method="mean-field")
    with pytest.raises(ValueError, match="draws"):
        conjugate_model.pathfinder(draws=0)
