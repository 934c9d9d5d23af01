"""Reading nutpie's raw Arrow trace (bayesglmm/inference/nutpie_trace.py).

The reference is nutpie's own conversion of a run to ``arviz.InferenceData`` (what
``nutpie.sample`` returns by default) for the same program, data, settings and seed: nutpie
runs are reproducible given the seed, so the two runs hold the same draws and every number
read from the raw trace must equal nutpie's bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from bayesglmm.inference.nutpie import NUTPIE_STATS, nutpie_model, run_nutpie
from bayesglmm.inference.nutpie_trace import arrow_batches, read_trace

SETTINGS = dict(draws=40, tune=30, chains=2, cores=1, seed=11, progress_bar=False,
                store_unconstrained=True)


def _elements(posterior, var) -> np.ndarray:
    """(chain, draw, elements) of one arviz variable, flattened in C order."""
    x = np.asarray(posterior[var].values, dtype=float)
    return x.reshape(x.shape[0], x.shape[1], -1)


@pytest.fixture(scope="module")
def both_traces(sleep_model):
    """(nutpie's InferenceData, the raw trace's batches) of two runs with one seed."""
    import nutpie

    compiled = sleep_model.compile(verbose=False)
    data = sleep_model.run_program.data
    idata = nutpie.sample(nutpie_model(compiled, data, 11), save_warmup=True, **SETTINGS)
    raw = nutpie.sample(nutpie_model(compiled, data, 11), return_raw_trace=True, **SETTINGS)
    return idata, arrow_batches(raw)


@pytest.mark.slow
def test_draws_equal_nutpies_own_conversion(both_traces):
    idata, raw = both_traces
    trace = read_trace(raw, NUTPIE_STATS, thin=1, warmup_stats=True)
    k = 0
    for var in idata.posterior.data_vars:  # same variables, in the same order, C order within
        x = _elements(idata.posterior, var)
        if x.shape[2] == 0:
            continue
        np.testing.assert_array_equal(trace.values[:, :, k:k + x.shape[2]], x)
        k += x.shape[2]
    assert k == trace.values.shape[2] == len(trace.names)
    assert "z_1[2,1]" in trace.names and "L_1[1,2]" in trace.names  # matrices, 1-based
    np.testing.assert_array_equal(trace.unconstrained,
                                  idata.sample_stats["unconstrained_draw"].values)
    assert set(trace.stats) == set(NUTPIE_STATS.values())
    for src, name in NUTPIE_STATS.items():
        np.testing.assert_array_equal(trace.stats[name], idata.sample_stats[src].values)
        np.testing.assert_array_equal(trace.warmup_stats[name],
                                      idata.warmup_sample_stats[src].values)
    assert trace.values.shape[:2] == (2, 40) and trace.warmup_stats["lp"].shape == (2, 30)


@pytest.mark.slow
def test_thinning_keeps_every_thin_th_draw(both_traces):
    idata, raw = both_traces
    thinned = read_trace(raw, NUTPIE_STATS, thin=3)
    full = read_trace(raw, NUTPIE_STATS, thin=1)
    assert thinned.values.shape[1] == 14  # draws 1, 4, ..., 40
    np.testing.assert_array_equal(thinned.values, full.values[:, ::3])
    np.testing.assert_array_equal(thinned.unconstrained, full.unconstrained[:, ::3])
    np.testing.assert_array_equal(thinned.stats["energy"], full.stats["energy"][:, ::3])
    assert thinned.warmup_stats == {}


@pytest.mark.slow
def test_run_nutpie_types_and_seed_reproducibility(sleep_model):
    """run_nutpie's statistics have the types the fits use, and one seed gives one run."""
    settings = dict(chains=2, warmup=30, sampling=20, thin=2, seed=5, delta=0.8,
                    max_treedepth=10, verbose=False)
    compiled = sleep_model.compile(verbose=False)
    a = run_nutpie(compiled, sleep_model.run_program.data, **settings)
    b = run_nutpie(compiled, sleep_model.run_program.data, **settings)
    unc, stats, (values, names) = a
    assert unc.shape[:2] == values.shape[:2] == (2, 10)
    assert stats["tree_depth"].dtype == stats["n_steps"].dtype == np.int64
    assert stats["diverging"].dtype == float
    np.testing.assert_array_equal(values, b[2][0])
    np.testing.assert_array_equal(unc, b[0])
    assert names == b[2][1]


def test_take_picks_columns_as_values_indexing_does():
    """NutpieTrace.take: the elements asked for, equal to ``values[:, :, idx]`` and laid out
    as that fancy indexing lays them out (so sums over them round alike); a whole block asked
    for in order is the block itself (no copy); renamed elements (the init path) are found."""
    from bayesglmm.inference.nutpie_trace import NutpieTrace

    rng = np.random.default_rng(3)
    blocks = {"b": rng.normal(size=(2, 5, 3)), "sigma": rng.normal(size=(2, 5, 1)),
              "log_lik": rng.normal(size=(2, 5, 4))}
    names = ["b[1]", "b[2]", "b[3]", "sigma"] + [f"log_lik[{i}]" for i in range(1, 5)]
    trace = NutpieTrace(blocks=blocks, names=names, unconstrained=np.zeros((2, 5, 4)),
                        stats={}, warmup_stats={})
    values = trace.values
    assert values.shape == (2, 5, 8)
    want = ["sigma", "b[3]", "b[1]", "log_lik[2]"]
    idx = [names.index(n) for n in want]
    got, ref = trace.take(want), values[:, :, idx]
    np.testing.assert_array_equal(got, ref)
    assert got.strides == ref.strides
    ll = [n for n in names if n.startswith("log_lik")]
    assert trace.take(ll) is blocks["log_lik"]
    assert trace.take(ll[::-1]) is not blocks["log_lik"]
    np.testing.assert_array_equal(trace.take(ll[::-1]), values[:, :, [7, 6, 5, 4]])
    assert trace.take([]).shape == (2, 5, 0)
    trace.names = [f"theta[{i}]" for i in range(1, 9)]
    np.testing.assert_array_equal(trace.take(["theta[4]"]), values[:, :, [3]])
