"""The pointwise log-likelihood on demand (bayesglmm/inference/loglik.py, issue 15 item 3).

Above ``codegen.LOG_LIK_IN_PROGRAM_MAX_ROWS`` rows the program runs with ``compute_log_lik = 0``
and the fits compute ``log_lik`` from their draws when loo/waic/compare/kfold/idata need it.
The tests lower the threshold to 0 so that the debate program (program 1 of conftest.py, both
backends) takes that path, and compare with the values the program writes itself.

Tolerances: the values are computed by the same C++ code from the same parameter values, so
they agree to double rounding (1e-10 relative) when the parameters are the same doubles: with
CmdStan's output at 18 significant digits, nutpie's unconstrained draws, and a saved and
loaded fit. CmdStan's default CSV keeps 6 significant digits of every parameter draw: the
on-demand values then differ from the written ones by that rounding carried through the
linear predictor (observed up to 2e-5 relative), so those comparisons use 1e-4 relative.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bayesglmm
import bayesglmm.codegen as codegen
from bayesglmm.inference.loglik import computes_on_demand, pointwise_log_lik
from tests.conftest import SEED, require_module

FORMULA = "sat ~ talk + perf + (1 | group)"
EXACT = 1e-10  # same doubles in, same C++ code: only floating-point summation order
ROUNDED = 1e-4  # CmdStan's 6 significant digits on each parameter draw (see the module notes)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # short runs: R-hat/ESS notes
SHORT = dict(chains=2, warmup=200, sampling=150, seed=SEED, verbose=False)


def _model(debate, on_demand: bool, backend: str = "auto"):
    old = codegen.LOG_LIK_IN_PROGRAM_MAX_ROWS
    codegen.LOG_LIK_IN_PROGRAM_MAX_ROWS = 0 if on_demand else old
    try:
        m = bayesglmm.lmer(FORMULA, data=debate, prior=bayesglmm.prior_normal(),
                           backend=backend)
        m.run_program.data  # noqa: B018 - the program's data are made (lazily) here
        return m
    finally:
        codegen.LOG_LIK_IN_PROGRAM_MAX_ROWS = old


def test_flag_follows_the_number_of_rows(debate, monkeypatch):
    assert _model(debate, False).run_program.data["compute_log_lik"] == 1
    monkeypatch.setattr(codegen, "LOG_LIK_IN_PROGRAM_MAX_ROWS", len(debate) - 1)
    m = bayesglmm.lmer(FORMULA, data=debate, prior=bayesglmm.prior_normal())
    assert m.run_program.data["compute_log_lik"] == 0 and computes_on_demand(m.run_program.data)
    assert m.stan_data["compute_log_lik"] == 0
    monkeypatch.setattr(codegen, "LOG_LIK_IN_PROGRAM_MAX_ROWS", len(debate))
    m = bayesglmm.lmer(FORMULA, data=debate, prior=bayesglmm.prior_normal())
    assert m.run_program.data["compute_log_lik"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["generic", "specific"])
def test_equals_the_program_at_full_precision(debate, toolchain, backend):
    """CmdStan writes log_lik and the draws at 18 significant digits; the on-demand values from
    those draws (through the compute_log_lik = 0 model's log-likelihood instance) equal the
    written ones."""
    m1, m0 = _model(debate, False, backend), _model(debate, True, backend)
    assert m1.run_program.backend == m0.run_program.backend == backend
    cm = m1.compile(verbose=False).cmdstan_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = cm.sample(data=m1.run_program.data, chains=1, iter_warmup=100, iter_sampling=50,
                        seed=SEED, sig_figs=18, show_progress=False)
    cols = list(run.column_names)
    ll_cols = [i for i, c in enumerate(cols) if c.startswith("log_lik[")]
    written = np.transpose(np.asarray(run.draws(concat_chains=False))[:, :, ll_cols], (1, 0, 2))
    assert written.shape == (1, 50, len(debate))
    computed = pointwise_log_lik(m0, stan_output=run)
    np.testing.assert_allclose(computed, written, rtol=EXACT, atol=0)


@pytest.fixture(scope="module")
def stan_pair(debate, toolchain):
    """The same NUTS run (same seed) with log_lik written and with it on demand."""
    m1, m0 = _model(debate, False), _model(debate, True)
    return m1.sample(**SHORT), m0.sample(**SHORT)


@pytest.mark.slow
def test_stan_on_demand(stan_pair):
    f1, f0 = stan_pair
    assert not f1.log_lik_on_demand and f0.log_lik_on_demand
    assert not [c for c in f0.stan_fit.column_names if c.startswith("log_lik")]
    np.testing.assert_array_equal(f0._draws, f1._draws)  # the flag does not change the draws
    assert "_log_lik_computed" not in f0.__dict__
    assert "log_likelihood" not in f0.posterior_idata.groups()  # plots: not computed for them
    assert "_log_lik_computed" not in f0.__dict__
    np.testing.assert_allclose(f0.log_lik(), f1.log_lik(), rtol=ROUNDED, atol=0)
    l0, l1 = f0.loo(), f1.loo()
    assert l0.elpd_loo == pytest.approx(l1.elpd_loo, rel=ROUNDED)
    assert f0.waic().elpd_waic == pytest.approx(f1.waic().elpd_waic, rel=ROUNDED)
    assert f0.idata.log_likelihood["y"].shape == f1.idata.log_likelihood["y"].shape
    table = bayesglmm.compare(on_demand=f0, written=f1)
    assert set(table.index) == {"on_demand", "written"}


@pytest.mark.slow
def test_stan_on_demand_after_save_and_load(stan_pair, tmp_path, monkeypatch):
    _, f0 = stan_pair
    monkeypatch.setattr(codegen, "LOG_LIK_IN_PROGRAM_MAX_ROWS", 0)  # as when it was fitted
    path = f0.save(tmp_path / "fit")
    g = bayesglmm.load(path)
    assert g.log_lik_on_demand and g._log_lik_written is None
    np.testing.assert_allclose(g.log_lik(), f0.log_lik(), rtol=EXACT, atol=0)
    assert g.loo().elpd_loo == pytest.approx(f0.loo().elpd_loo, rel=EXACT)


@pytest.mark.slow
def test_nutpie_on_demand(debate, toolchain, tmp_path, monkeypatch):
    require_module("nutpie")
    m1, m0 = _model(debate, False), _model(debate, True)
    f1 = m1.sample(sampler="nutpie", **SHORT)
    f0 = m0.sample(sampler="nutpie", **SHORT)
    monkeypatch.setattr(codegen, "LOG_LIK_IN_PROGRAM_MAX_ROWS", 0)  # for save and load
    assert f0.log_lik_on_demand and f0._log_lik_written is None
    np.testing.assert_array_equal(f0.unconstrained, f1.unconstrained)
    np.testing.assert_allclose(f0.log_lik(), f1.log_lik(), rtol=EXACT, atol=0)
    g = bayesglmm.load(f0.save(tmp_path / "nutpie"))
    np.testing.assert_allclose(g.log_lik(), f1.log_lik(), rtol=EXACT, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["advi", "pathfinder"])
def test_variational_on_demand(debate, toolchain, tmp_path, monkeypatch, how):
    m1, m0 = _model(debate, False), _model(debate, True)

    def fit(m):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if how == "advi":
                return m.variational(draws=300, seed=SEED, verbose=False)
            return m.pathfinder(draws=300, seed=SEED, verbose=False)

    f1, f0 = fit(m1), fit(m0)
    assert f0.log_lik_on_demand and f0.unconstrained is not None and f1.unconstrained is None
    np.testing.assert_array_equal(f0._draws, f1._draws)
    np.testing.assert_allclose(f0.log_lik(), f1.log_lik(), rtol=ROUNDED, atol=0)
    monkeypatch.setattr(codegen, "LOG_LIK_IN_PROGRAM_MAX_ROWS", 0)  # for save and load
    g = bayesglmm.load(f0.save(tmp_path / how))
    np.testing.assert_allclose(g.log_lik(), f0.log_lik(), rtol=EXACT, atol=0)
    assert g.loo().elpd_loo == pytest.approx(f0.loo().elpd_loo, rel=EXACT)


@pytest.mark.slow
def test_kfold_on_demand(debate, toolchain):
    """kfold scores the held-out rows through the log-likelihood instance: the same numbers
    with the program's log_lik switched off (optimize: deterministic)."""
    res = [bayesglmm.kfold(_model(debate, od), K=2, seed=SEED, method="optimize",
                           progress=False) for od in (False, True)]
    np.testing.assert_allclose(res[1].pointwise, res[0].pointwise, rtol=EXACT, atol=0)
