"""sample(sampler="nutpie") (bayesglmm/inference/nutpie.py, issue 17): nutpie's NUTS on the
compiled program's BridgeStan library gives the same kind of MCMCFit as CmdStan's NUTS.

Agreement is checked within Monte Carlo error: for every reported quantity (random effects
included) the two posterior means differ by less than 4 combined MCSEs (each sampler's
``mcse_mean``), on the debate, sleepstudy and cbpp programs of tests/conftest.py. nutpie is in
the test extra, so these tests fail (never skip) when it is missing.
"""

from __future__ import annotations

import builtins
import math
import sys
import warnings

import numpy as np
import pytest
from conftest import SEED, load_reference
from mcmc_agree import means_agree

from bayesglmm.inference.diagnostics import SamplingWarning
from bayesglmm.inference.nutpie import NUTPIE_STATS, SUPPORTED, import_nutpie

# ----------------------------------------------------------------------------- fast


def _hide_nutpie(monkeypatch):
    """Make ``import nutpie`` fail as it does when the package is not installed."""
    real_import = builtins.__import__

    def fake_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and (name == "nutpie" or name.startswith("nutpie.")):
            raise ModuleNotFoundError("No module named 'nutpie'", name="nutpie")
        return real_import(name, globals, locals, fromlist, level)

    for mod in [m for m in list(sys.modules) if m == "nutpie" or m.startswith("nutpie.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_missing_nutpie_says_how_to_install(monkeypatch, debate_model):
    _hide_nutpie(monkeypatch)
    with pytest.raises(ImportError, match=r"pip install 'bayesglmm\[nutpie\]'"):
        import_nutpie()
    # raised by sample() before anything is compiled
    with pytest.raises(ImportError, match=r"sampler='nutpie'.*pip install 'bayesglmm\[nutpie\]'"):
        debate_model.sample(sampler="nutpie", verbose=False)


def test_unsupported_nutpie_version(monkeypatch):
    nutpie = import_nutpie()
    monkeypatch.setattr(nutpie, "__version__", "0.17.0")
    with pytest.raises(ImportError, match="supports nutpie 0.16.x.*0.17.0 is installed"):
        import_nutpie()


def test_installed_nutpie_is_supported():
    """The test extra installs nutpie in the supported range (CI must not skip nutpie)."""
    import nutpie

    from bayesglmm.inference.nutpie import _version

    assert SUPPORTED[0] <= _version(nutpie.__version__) < SUPPORTED[1]


def test_sampler_arguments_are_checked(debate_model):
    with pytest.raises(ValueError, match="sampler must be 'stan' or 'nutpie', got 'pymc'"):
        debate_model.sample(sampler="pymc")
    with pytest.raises(ValueError, match="low_rank=True is an option of sampler='nutpie'"):
        debate_model.sample(low_rank=True)
    with pytest.raises(ValueError, match="low_rank must be 'auto', True or False"):
        debate_model.sample(sampler="nutpie", low_rank="yes")
    with pytest.raises(ValueError, match="warmup=0 is not available with sampler='nutpie'"):
        debate_model.sample(sampler="nutpie", warmup=0)
    with pytest.raises(ValueError, match="init radius must be a non-negative number"):
        debate_model.sample(sampler="nutpie", init=-1.0)


def test_uses_rng():
    from bayesglmm.inference.nutpie_init import uses_rng

    assert uses_rng("generated quantities { vector[n] y = to_vector(normal_rng(mu, 1)); }")
    assert uses_rng("generated quantities { int k = poisson_log_rng (eta); }")
    assert not uses_rng("model { y ~ normal(mu, sigma); } // strange_name(1)")


# ----------------------------------------------------------------------------- slow


def _agree(fit_a, fit_b, nsd: float = 4.0, inc_random: bool = True):
    """Posterior means agree within ``nsd`` combined MCSEs for every quantity (lp included:
    both samplers report Stan's lp__ up to the same dropped constants)."""
    means_agree(fit_a, fit_b, nsd, inc_random)


@pytest.fixture(scope="module")
def debate_nutpie(debate_model, debate_compiled):
    return debate_model.sample(sampler="nutpie", seed=SEED, verbose=False)


@pytest.mark.slow
def test_debate_agrees_with_stan(debate_nutpie, debate_mcmc):
    _agree(debate_nutpie, debate_mcmc)
    assert debate_nutpie.sampler == "nutpie" and debate_mcmc.sampler == "stan"
    assert debate_nutpie._draws.shape == debate_mcmc._draws.shape == (4, 1000, 106)


@pytest.mark.slow
def test_same_tables_and_idata(debate_nutpie, debate_mcmc):
    a, b = debate_nutpie, debate_mcmc
    for kw in ({}, {"inc_random": True}, {"mcse": True}):
        assert list(a.summary(**kw).columns) == list(b.summary(**kw).columns)
        assert list(a.summary(**kw).index) == list(b.summary(**kw).index)
    assert list(a.draws().columns) == list(b.draws().columns)
    assert a.random_effects().shape == b.random_effects().shape
    assert a.idata.groups() == b.idata.groups()
    assert set(a.idata.sample_stats.data_vars) == set(NUTPIE_STATS.values())
    assert set(a.idata.sample_stats.data_vars) <= set(b.idata.sample_stats.data_vars)
    for name in ("diverging", "tree_depth", "step_size", "energy", "n_steps", "lp"):
        assert a.idata.sample_stats[name].dtype.kind == b.idata.sample_stats[name].dtype.kind
    assert a.idata.log_likelihood["y"].shape == b.idata.log_likelihood["y"].shape == (4, 1000, 300)
    np.testing.assert_array_equal(a.idata.observed_data["y"], b.idata.observed_data["y"])
    # the header names the sampler (and nutpie's mass matrix: debate's term is non-centred,
    # so low_rank="auto" keeps the diagonal one), the rest of the layout is the same
    text_a, text_b = a.format().splitlines(), b.format().splitlines()
    assert "MCMC sampling via nutpie (NUTS, diagonal mass matrix)" in text_a
    assert "MCMC sampling via Stan (NUTS)" in text_b
    assert len(text_a) == len(text_b)


@pytest.mark.slow
def test_lp_and_generated_quantities_from_the_draws(debate_nutpie, debate_model):
    """lp is BridgeStan's log density (Jacobian, constants dropped, as Stan's lp__) at the
    unconstrained draw; Intercept (a generated quantity) is computed from the draw."""
    bs = debate_model.bridgestan_model(verbose=False)
    u = debate_nutpie.unconstrained
    assert u.shape == (4, 1000, bs.param_unc_num())
    for c, s in ((0, 0), (2, 517), (3, 999)):
        lp = bs.log_density(np.ascontiguousarray(u[c, s]), propto=True, jacobian=True)
        assert debate_nutpie.lp[c, s] == pytest.approx(lp, rel=1e-12)
    d = debate_nutpie.draws()
    # Intercept = Intercept_c - mean(x)' b (the program's generated quantity)
    X = np.asarray(debate_model.stan_data["X"], dtype=float)
    m_talk, m_perf = X.mean(axis=0)
    np.testing.assert_allclose(d["Intercept"], d["Intercept_c"] - m_talk * d["b[talk]"]
                               - m_perf * d["b[perf]"], rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_seed_reproducible(debate_model, debate_nutpie):
    again = debate_model.sample(sampler="nutpie", seed=SEED, verbose=False)
    np.testing.assert_array_equal(again._draws, debate_nutpie._draws)
    np.testing.assert_array_equal(again.lp, debate_nutpie.lp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # short run: low ESS expected
        other = debate_model.sample(sampler="nutpie", seed=SEED + 1, chains=2, sampling=200,
                                    warmup=200, verbose=False)
    assert not np.array_equal(other._draws[:, :200], debate_nutpie._draws[:2, :200])


@pytest.mark.slow
def test_bridge_sampling_exact_debate(debate_nutpie):
    """The log ML from nutpie's draws against the exact -409.9646 (tests/lmm_marginal.py,
    reference/bayes_factors.json): within 4 delta-method SEs and 0.5, as for Stan's draws in
    tests/test_bridge.py."""
    exact = load_reference("bayes_factors.json")["exact"]["model_a_normal_logml"]
    res = debate_nutpie.bridgesampling(verbose=False)
    assert res.converged and 0.01 < res.se < 0.15
    assert abs(res.logml - exact) < min(0.5, 4 * res.se), (res, exact)


@pytest.mark.slow
def test_bayes_factor_refits_with_nutpie(debate_nutpie):
    """bayes_factor(fixed=...) samples the restricted model with the same sampler; the log BF
    agrees with the exact 6.2869 (reference/bayes_factors.json) within 4 combined SEs."""
    exact = load_reference("bayes_factors.json")["exact"]["log_bf12_talk_normal"]
    bf = debate_nutpie.bayes_factor(fixed={"b[talk]": 0}, verbose=False)
    assert bf.fit2.sampler == "nutpie"
    assert abs(bf.log_bf - exact) < 4 * bf.se, (bf.log_bf, bf.se)


@pytest.mark.slow
def test_loo_waic_effects(debate_nutpie, debate_mcmc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        la, lb = debate_nutpie.loo(), debate_mcmc.loo()
        wa = debate_nutpie.waic()
    # elpd_loo agrees within its standard error's Monte Carlo noise (a few tenths)
    assert abs(la.elpd_loo - lb.elpd_loo) < 2.0, (la.elpd_loo, lb.elpd_loo)
    assert math.isfinite(wa.elpd_waic)
    from bayesglmm.post.effects import conditional_effects

    ea = conditional_effects(debate_nutpie, "talk")
    eb = conditional_effects(debate_mcmc, "talk")
    ta, tb = ea.data, eb.data
    assert list(ta.columns) == list(tb.columns) and len(ta) == len(tb)
    # the effect curves agree to within a few hundredths (MC error of a posterior mean ~ 0.005)
    num = [c for c in ta.columns if ta[c].dtype.kind == "f"]
    assert np.max(np.abs(ta[num].to_numpy() - tb[num].to_numpy())) < 0.05


@pytest.mark.slow
def test_sleepstudy_agrees_with_stan(sleep_model, sleep_mcmc, tmp_path):
    path = tmp_path / "sleep_nutpie"
    fit = sleep_model.sample(sampler="nutpie", seed=SEED, verbose=False, file=path)
    # low_rank="auto": correlated intercepts and slopes of a weakly informed centred term, so
    # the low-rank mass matrix with the default delta raised to 0.9
    assert fit.mass_matrix == "low-rank" and "weakly informed" in fit.mass_matrix_reason
    assert fit.delta == 0.9 and sleep_mcmc.delta == 0.8
    _agree(fit, sleep_mcmc)
    assert "corr[Int,Days]" in fit.summary().index
    # file=: the same call loads the saved fit; a delta given differs from the default asked
    # for before (even where it equals the default), so it samples again, at that delta
    again = sleep_model.sample(sampler="nutpie", seed=SEED, verbose=False, file=path)
    assert again.delta == 0.9 and np.array_equal(again.lp, fit.lp)
    given = sleep_model.sample(sampler="nutpie", seed=SEED, verbose=False, file=path,
                               delta=0.8, chains=2, warmup=300, sampling=300)
    assert given.delta == 0.8 and given.mass_matrix == "low-rank" and given.lp.shape == (2, 300)


@pytest.mark.slow
def test_sleepstudy_low_rank_and_thin(sleep_model, sleep_mcmc):
    fit = sleep_model.sample(sampler="nutpie", seed=SEED, low_rank=True, thin=2,
                             sampling=2000, verbose=False)
    assert fit.lp.shape == (4, 1000) and fit.thin == 2
    _agree(fit, sleep_mcmc)


@pytest.mark.slow
def test_cbpp_agrees_with_stan(cbpp_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        a = cbpp_model.sample(sampler="nutpie", seed=SEED, verbose=False)
        b = cbpp_model.sample(seed=SEED, verbose=False)
    _agree(a, b)


@pytest.mark.slow
def test_from_stan_program_matches_the_analytic_posterior(conjugate_model, conjugate_compiled):
    """A from_stan program (Stan names are the user's names), conjugate normal model with the
    analytic posterior of reference/conjugate_normal.json (s = 10)."""
    post = load_reference("conjugate_normal.json")["analytic"]["s_10"]
    fit = conjugate_model.sample(sampler="nutpie", seed=3, verbose=False)
    tab = fit.summary(mcse=True)
    assert abs(tab.loc["mu", "mean"] - post["posterior_mean"]) < 4 * tab.loc["mu", "mcse_mean"]
    assert tab.loc["mu", "sd"] == pytest.approx(post["posterior_sd"], rel=0.05)


@pytest.mark.slow
def test_diagnostics_warn_on_funnel(funnel_model):
    """The sampling warnings read nutpie's statistics as they read Stan's."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fit = funnel_model.sample(sampler="nutpie", chains=2, warmup=30, sampling=300, seed=2,
                                  verbose=False)
    msgs = [str(w.message) for w in rec if issubclass(w.category, SamplingWarning)]
    assert msgs, "no sampling warning on the funnel"
    if fit.num_divergent:
        assert any("divergent" in m for m in msgs), msgs


@pytest.mark.slow
def test_nutpie_outputs_equal_param_constrain(sleep_model):
    """nutpie's own output arrays (C order), flattened to CmdStan's names, equal BridgeStan's
    param_constrain of the unconstrained draws (matrices z_1 and L included), and the names
    are the program's output names."""
    from bayesglmm.inference.nutpie import constrain_draws, run_nutpie

    compiled = sleep_model.compile(verbose=False)
    bs = sleep_model._bridgestan(verbose=False)
    unc, stats, (values, names) = run_nutpie(
        compiled, sleep_model.run_program.data, chains=2, warmup=200, sampling=50, thin=1, seed=4,
        delta=0.8, max_treedepth=10, verbose=False)
    ref, ref_names = constrain_draws(bs, unc, 4)
    assert sorted(names) == sorted(ref_names)
    assert any(n.startswith("z_1[2,") for n in names)  # a matrix
    pos = {n: i for i, n in enumerate(ref_names)}
    order = [pos[n] for n in names]
    np.testing.assert_allclose(values, ref[:, :, order], rtol=1e-12, atol=1e-12)
    assert stats["lp"].shape == (2, 50)


# ----------------------------------------------------------------------------- init=


def _stay_at_start(model, init, seed=3, chains=2):
    """Run nutpie with trajectories of depth 0 (every transition returns its starting point),
    so each chain's draws are exactly its initial point: (unconstrained draws, outputs)."""
    from bayesglmm.inference.nutpie import run_nutpie

    unc, stats, (values, names) = run_nutpie(
        model.compile(verbose=False), model.run_program.data, chains=chains, warmup=5,
        sampling=2, thin=1, seed=seed, delta=0.8, max_treedepth=0, verbose=False, init=init,
        bs=model.bridgestan_model(verbose=False))
    assert (stats["n_steps"] == 0).all()
    np.testing.assert_array_equal(unc[:, 0], unc[:, 1])
    return unc[:, 0], dict(zip(names, np.moveaxis(values[:, 0], -1, 0)))


@pytest.mark.slow
def test_init_dict_starts_every_chain_there(debate_model, debate_compiled):
    """Given values start every chain exactly there (as CmdStan's init file); the parameters
    left out start uniformly in (-2, 2) on the unconstrained scale, differently per chain."""
    unc, out = _stay_at_start(debate_model, {"sigma": 2.5, "Intercept_c": 1.0,
                                             "beta_free": [0.25, -0.5]})
    np.testing.assert_array_equal(out["sigma"], 2.5)
    np.testing.assert_array_equal(out["Intercept_c"], 1.0)
    np.testing.assert_allclose(out["beta_free[1]"], 0.25, rtol=1e-15)
    np.testing.assert_allclose(out["beta_free[2]"], -0.5, rtol=1e-15)
    bs = debate_model.bridgestan_model(verbose=False)
    free = [i for i, n in enumerate(bs.param_unc_names())
            if not n.startswith(("Intercept_c", "beta_free", "sigma"))]
    rest = unc[:, free]
    assert np.all(np.abs(rest) < 2) and rest.std() > 0.5  # uniform(-2, 2): sd 1.15
    assert not np.array_equal(rest[0], rest[1])
    # generated quantities are computed from the start: Intercept = Intercept_c - mean(x)'b
    X = np.asarray(debate_model.stan_data["X"], dtype=float)
    np.testing.assert_allclose(out["Intercept"], 1.0 - X.mean(axis=0) @ [0.25, -0.5],
                               rtol=1e-12)


@pytest.mark.slow
def test_init_radius(debate_model, debate_compiled):
    """init=0: every unconstrained coordinate at 0 (sigma = 1); init=r: uniform in (-r, r);
    the same seed gives the same starts."""
    unc0, out0 = _stay_at_start(debate_model, 0)
    assert not unc0.any() and np.all(out0["sigma"] == 1.0)
    unc, _ = _stay_at_start(debate_model, 0.3, seed=5)
    assert np.all(np.abs(unc) < 0.3) and unc.std() > 0.1
    again, _ = _stay_at_start(debate_model, 0.3, seed=5)
    np.testing.assert_array_equal(unc, again)


@pytest.mark.slow
def test_bad_init_names_the_problem(debate_model, debate_compiled):
    with pytest.raises(ValueError, match=r"init names \['tau'\] that are not parameters"):
        debate_model.sample(sampler="nutpie", init={"tau": 1.0}, verbose=False)
    with pytest.raises(ValueError, match=r"invalid init for sampler='nutpie' \(the value of "
                       r"'sigma'\).*Lower bounded variable is -1"):
        debate_model.sample(sampler="nutpie", init={"sigma": -1.0}, verbose=False)


@pytest.mark.slow
def test_init_run_agrees_with_stan(debate_model, debate_mcmc, debate_nutpie):
    """A full run from given starting values samples the same posterior (within MCSE of
    Stan's run), reports the same rows and is reproducible with its seed."""
    init = {"sigma": 1.0, "sd_1": [0.5]}
    fit = debate_model.sample(sampler="nutpie", init=init, seed=SEED, verbose=False)
    _agree(fit, debate_mcmc)
    assert list(fit.summary(inc_random=True).index) == list(debate_nutpie.summary(
        inc_random=True).index)
    assert fit.idata.groups() == debate_nutpie.idata.groups()
    again = debate_model.sample(sampler="nutpie", init=init, seed=SEED, verbose=False)
    np.testing.assert_array_equal(again._draws, fit._draws)


RNG_PROGRAM = """
data { int<lower=1> n; vector[n] y; real<lower=0> s; }
parameters { real mu; }
model {
  target += normal_lpdf(mu | 0, s);
  target += normal_lpdf(y | mu, 1);
}
generated quantities { real y_new = normal_rng(mu, 1); }
"""


@pytest.mark.slow
def test_init_with_random_generated_quantities(toolchain, tmp_path):
    """A program whose generated quantities draw random numbers: y_new ~ N(mu, 1) per draw,
    reproducible with the seed (the draws come from one seeded generator after sampling)."""
    import bayesglmm

    y = load_reference("bridge_conjugate.json")["y"]
    (tmp_path / "rng.stan").write_text(RNG_PROGRAM)
    m = bayesglmm.from_stan(tmp_path / "rng.stan", {"n": len(y), "y": y, "s": 10.0})
    fit = m.sample(sampler="nutpie", init={"mu": 0.0}, seed=11, verbose=False)
    d = fit.draws()
    resid = d["y_new"] - d["mu"]  # N(0, 1) given mu, independent across draws
    assert abs(resid.mean()) < 4 / math.sqrt(len(resid))
    assert resid.std() == pytest.approx(1.0, abs=0.05)
    again = m.sample(sampler="nutpie", init={"mu": 0.0}, seed=11, verbose=False)
    np.testing.assert_array_equal(again.draws()["y_new"], d["y_new"])


# ----------------------------------------------------------------------------- log_lik


@pytest.mark.slow
def test_log_lik_on_demand_equals_the_programs(debate_model, tmp_path):
    """nutpie runs the program without log_lik (compute_log_lik = 0); the fit computes it from
    the unconstrained draws when asked: exactly the values the program writes while sampling
    (a run with compute_log_lik = 1, same seed), also after saving and loading the fit."""
    import bayesglmm
    from bayesglmm.inference.nutpie import defers_log_lik, run_nutpie

    data = debate_model.run_program.data
    assert defers_log_lik(data) and not defers_log_lik({**data, "compute_log_lik": 0})
    assert not defers_log_lik({"N": 3})  # from_stan programs: no flag, run as they are
    kw = dict(chains=2, warmup=150, sampling=60, thin=2, seed=5, delta=0.8, max_treedepth=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # a short run: low ESS expected
        fit = debate_model.sample(sampler="nutpie", verbose=False, **kw)
    assert fit.log_lik_deferred and fit._log_lik_written is None and fit.log_lik_on_demand
    unc, _, (values, names) = run_nutpie(debate_model.compile(verbose=False), data,
                                         verbose=False, **kw)
    np.testing.assert_array_equal(unc, fit.unconstrained)  # the same run
    ll_cols = [i for i, n in enumerate(names) if n.startswith("log_lik[")]
    assert len(ll_cols) == 300
    np.testing.assert_array_equal(fit.log_lik(), values[:, :, ll_cols])
    assert fit.idata.log_likelihood["y"].shape == (2, 30, 300)
    back = bayesglmm.load(fit.save(tmp_path / "fit"))
    assert back.log_lik_deferred
    np.testing.assert_array_equal(back.log_lik(), values[:, :, ll_cols])
