"""Vectorised convergence diagnostics (bayesglmm/results/convergence.py) against arviz.

The reference is arviz (``arviz.ess`` bulk and quantile, ``arviz.rhat(method="rank")``,
``arviz.mcse(method="mean")``), evaluated one variable at a time on the same draws. Both follow
Vehtari et al. (2021); the only differences are the order of floating-point sums (the FFT over
all variables at once, the sum of Geyer's pair sums), so the results agree to rounding: the
tolerance is 1e-10 relative, far above double rounding (~1e-15) and far below any difference
a change of definition (a lag more or less in Geyer's sequence, other ranks) would make.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest

from bayesglmm.results.convergence import (
    ess_bulk,
    ess_mean,
    ess_quantile,
    mcse_mean,
    rhat_rank,
    summary_diagnostics,
)

RTOL = 1e-10


def _ar1(rng, chains, draws, phi, shift=0.0):
    x = np.empty((chains, draws))
    x[:, 0] = rng.normal(size=chains)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=chains)
    return x + shift * np.arange(chains)[:, None]


def _draws(chains, draws, seed=0):
    """(chain, draw, P): AR(1) chains from anti-correlated to a near random walk, a
    chain-shifted one (poor mixing), a discrete one (ties), a constant one, an indicator."""
    rng = np.random.default_rng(seed)
    cols = [_ar1(rng, chains, draws, phi) for phi in (-0.9, -0.3, 0.0, 0.5, 0.9, 0.995)]
    cols.append(_ar1(rng, chains, draws, 0.7, shift=1.5))
    cols.append(np.round(_ar1(rng, chains, draws, 0.6)))  # many ties
    cols.append(np.full((chains, draws), 3.25))
    cols.append((_ar1(rng, chains, draws, 0.8) > 1.0).astype(float))
    cols.append(rng.lognormal(size=(chains, draws)) * 1e6)
    return np.stack(cols, axis=2)


def _arviz(fn, x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([float(fn(x[:, :, i], **kw)) for i in range(x.shape[2])])


@pytest.mark.parametrize("chains,draws", [(4, 1000), (4, 1001), (2, 7), (3, 4), (1, 200),
                                          (8, 33)])
def test_equal_to_arviz(chains, draws):
    x = _draws(chains, draws, seed=chains * 1000 + draws)
    np.testing.assert_allclose(ess_bulk(x), _arviz(az.ess, x, method="bulk"), rtol=RTOL)
    for prob in (0.025, 0.975, 0.5):
        np.testing.assert_allclose(ess_quantile(x, prob),
                                   _arviz(az.ess, x, method="quantile", prob=prob), rtol=RTOL)
    np.testing.assert_allclose(ess_mean(x), _arviz(az.ess, x, method="mean"), rtol=RTOL)
    np.testing.assert_allclose(mcse_mean(x), _arviz(az.mcse, x, method="mean"), rtol=RTOL)
    if chains > 1:
        np.testing.assert_allclose(rhat_rank(x), _arviz(az.rhat, x, method="rank"), rtol=RTOL)
    else:
        assert np.isnan(rhat_rank(x)).all()


@pytest.mark.parametrize("chains,draws", [(4, 500), (1, 50), (3, 3)])
def test_summary_diagnostics_equal_the_single_ones(chains, draws):
    x = _draws(chains, draws, seed=draws)
    x[0, 1, 4] = np.nan
    d = summary_diagnostics(x)
    np.testing.assert_array_equal(d["ess_bulk"], ess_bulk(x))
    np.testing.assert_array_equal(d["ess_tail"], np.minimum(ess_quantile(x, 0.025),
                                                            ess_quantile(x, 0.975)))
    np.testing.assert_array_equal(d["rhat"], rhat_rank(x))
    np.testing.assert_array_equal(d["mcse_mean"], mcse_mean(x))
    # the quantiles a summary table already has give the same tail ESS; without the MCSE
    # the rest is unchanged
    q = np.percentile(x.reshape(-1, x.shape[2]), [2.5, 97.5], axis=0)
    e = summary_diagnostics(x, mcse=False, quantiles=q)
    assert set(e) == {"ess_bulk", "ess_tail", "rhat"}
    for k in e:
        np.testing.assert_array_equal(e[k], d[k])


def test_continuous_draws_without_ties_equal_arviz():
    """Only continuous variables (the rank path without ties)."""
    x = _draws(4, 300, seed=7)[:, :, [0, 3, 5, 6, 10]]
    np.testing.assert_allclose(ess_bulk(x), _arviz(az.ess, x, method="bulk"), rtol=RTOL)
    np.testing.assert_allclose(rhat_rank(x), _arviz(az.rhat, x, method="rank"), rtol=RTOL)


def test_missing_draws_and_short_chains_give_nan():
    x = _draws(4, 100)
    x[2, 50, 3] = np.nan
    for fn in (ess_bulk, ess_mean, rhat_rank, lambda a: ess_quantile(a, 0.1)):
        out = fn(x)
        assert np.isnan(out[3]) and np.isfinite(np.delete(out, [3, 8])).all()
    # a constant variable: ESS is the number of draws, R-hat undefined (as arviz)
    assert ess_bulk(x)[8] == 400 and np.isnan(rhat_rank(x)[8])
    short = _draws(4, 3)
    assert np.isnan(ess_bulk(short)).all() and np.isnan(rhat_rank(short)).all()


@pytest.mark.slow
def test_real_posterior_draws_equal_arviz(debate_mcmc):
    """On the draws of a real fit (every reported quantity, random effects included)."""
    x = np.concatenate([debate_mcmc.lp[:, :, None], debate_mcmc._draws], axis=2)
    np.testing.assert_allclose(ess_bulk(x), _arviz(az.ess, x, method="bulk"), rtol=RTOL)
    np.testing.assert_allclose(rhat_rank(x), _arviz(az.rhat, x, method="rank"), rtol=RTOL)
    np.testing.assert_allclose(ess_quantile(x, 0.025),
                               _arviz(az.ess, x, method="quantile", prob=0.025), rtol=RTOL)


def test_parallel_parts_equal_the_serial_ones(monkeypatch):
    """summary_diagnostics computes its independent parts in two threads on large arrays: the
    numbers are those of one thread, bit for bit (ties, a NaN and a constant included)."""
    from bayesglmm.results import convergence

    x = _draws(4, 500, seed=11)
    x[:, :, 2] = np.round(x[:, :, 2], 1)
    x[1, 7, 4] = np.nan
    x[:, :, 8] = 3.0
    monkeypatch.setattr(convergence, "PARALLEL_MIN_DRAWS", 0)
    par = summary_diagnostics(x)
    monkeypatch.setattr(convergence, "PARALLEL_MIN_DRAWS", 10**12)
    ser = summary_diagnostics(x)
    for k in ser:
        np.testing.assert_array_equal(par[k], ser[k])
    np.testing.assert_array_equal(par["ess_bulk"], ess_bulk(x))


def test_rank_normalisation_with_ties_is_exact():
    """Tied draws (repeated MCMC draws, rounded values, a constant) take the normal score of
    their average rank, exactly as computed one variable at a time from scipy's ranks."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    from bayesglmm.results.convergence import _z_scale

    rng = np.random.default_rng(5)
    x = _draws(4, 250, seed=3)
    repeat = rng.random(x.shape) < 0.1  # a rejected transition repeats the previous draw
    for t in range(1, x.shape[1]):
        x[:, t] = np.where(repeat[:, t], x[:, t - 1], x[:, t])
    x[:, :, 1] = np.round(x[:, :, 1], 1)
    n = x.shape[0] * x.shape[1]
    ref = np.stack([ndtri((rankdata(x[:, :, i].ravel()) - 0.375) / (n + 0.25))
                    .reshape(x.shape[:2]) for i in range(x.shape[2])], axis=2)
    np.testing.assert_array_equal(_z_scale(x), ref)
    np.testing.assert_array_equal(_z_scale(x[:, :, [0]]), ref[:, :, [0]])  # one variable


@pytest.mark.parametrize("draws", [500, 501])
def test_summary_diagnostics_equal_the_separate_functions(draws):
    """summary_diagnostics sorts the split chains once (bulk ranks, the folded R-hat's median):
    its numbers are those of the separate functions, bit for bit (ties and a constant
    included; an odd number of draws drops the middle one from the split chains)."""
    x = _draws(4, draws, seed=13)
    x[:, :, 2] = np.round(x[:, :, 2], 1)
    d = summary_diagnostics(x)
    np.testing.assert_array_equal(d["ess_bulk"], ess_bulk(x))
    np.testing.assert_array_equal(d["rhat"], rhat_rank(x))
    np.testing.assert_array_equal(d["mcse_mean"], mcse_mean(x))
    tail = np.minimum(ess_quantile(x, 0.025), ess_quantile(x, 0.975))
    np.testing.assert_array_equal(d["ess_tail"], tail)
