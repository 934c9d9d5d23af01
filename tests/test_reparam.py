"""Centred and non-centred group-level effects (param=, bayesglmm/reparam.py).

Fast tests: the "auto" rule, the forms of ``param=`` and their errors, the generated code.
Slow tests: the two parameterisations are the same model -- the Laplace log ML and classic()
agree to 1e-6 (relative, as the backends do in tests/test_backend.py), the exact LMM path takes
a centred program, and NUTS gives the same posterior within MCSE on a data-rich and a data-poor
example; bridge sampling on a centred fit matches the exact log ML of the debate model.
The sampling tests run the generic gaussian program (the parameterisation is a data flag there:
no extra compile); tests/test_generic.py checks that it equals the specific centred programs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from mcmc_agree import means_agree

import bayesglmm
from bayesglmm import generic
from bayesglmm.codegen import render_code
from bayesglmm.reparam import AUTO_MIN_INFORMATION, auto_centered, resolve_param, term_information
from bayesglmm.spec import build_spec

SEED = 20261205
# lp__ is the log density in each program's own coordinates (the centred one lacks the
# Jacobian of b = diag(sd) L z): not a quantity the two parameterisations share
NOT_SHARED = ("lp",)


def simulate_rich(groups: int = 30, per_group: int = 40, seed: int = 15) -> pd.DataFrame:
    """y = 1 + 0.5 x + b0[g] + b1[g] x + e: sd(b0) = 1, sd(b1) = 0.5, corr 0.3, sd(e) = 1
    (bench/bench_large.py's model, fewer groups): many observations per group."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    L = np.linalg.cholesky(np.array([[1.0, 0.15], [0.15, 0.25]]))
    b = rng.normal(size=(groups, 2)) @ L.T
    y = 1 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{j:02d}" for j in g]})


@pytest.fixture(scope="module")
def rich():
    return simulate_rich()


# ----------------------------------------------------------------------------- the rule


def _one_way(groups: int, per_group: int, tau: float, sigma: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    return pd.DataFrame({"y": 2 + tau * rng.normal(size=groups)[g] + sigma * rng.normal(size=g.size),
                         "g": g})


def _information(formula: str, data, **kw) -> float:
    s = build_spec(formula, data, **kw)
    g = s.groups[0]
    return term_information(s.response.y, s.response.trials, s.fixed.X, g.index, g.Z, g.n_groups)


def test_term_information_estimates_the_precision_ratio():
    """One grouping term, n rows per group: the ratio is n tau^2 / sigma^2. 2,000 groups of
    10 rows, tau = 0.5, sigma = 1 (ratio 2.5): the moment estimate of tau^2 has a standard error
    of sqrt(2 / 2000) (tau^2 + sigma^2 / n) = 0.011, 4.4% of 0.25, so 15% (3.4 SE) bounds it."""
    assert _information("y ~ 1 + (1 | g)", _one_way(2000, 10, 0.5, 1.0, 1)) == pytest.approx(
        2.5, rel=0.15)
    # no spread between groups: the clipped estimate is ~0; one row per group: nothing to
    # estimate from (0)
    assert _information("y ~ 1 + (1 | g)", _one_way(2000, 10, 0.0, 1.0, 2)) < 0.1
    assert _information("y ~ 1 + (1 | g)", _one_way(50, 1, 1.0, 1.0, 3)) == 0.0


def test_term_information_sleepstudy_is_the_reml_ratio(sleepstudy):
    """sleepstudy is balanced: the moment estimates are lme4's REML ones (SDs 24.7407 and
    5.9221, correlation 0.0656, sigma 25.5918; lme4 1.1, Bates et al. 2015, JSS 67(1)), so the
    ratio is the smallest eigenvalue of Sigma^1/2 Z'Z Sigma^1/2 / sigma^2 at those values
    (every subject has Days 0..9), to the 4-5 digits given."""
    sd, rho, sigma = np.array([24.7407, 5.9221]), 0.0656, 25.5918
    Sigma = np.outer(sd, sd) * np.array([[1, rho], [rho, 1]])
    Z = np.column_stack([np.ones(10), np.arange(10.0)])
    ev, U = np.linalg.eigh(Sigma)
    half = (U * np.sqrt(ev)) @ U.T
    want = np.linalg.eigvalsh(half @ Z.T @ Z @ half)[0] / sigma**2
    got = _information("Reaction ~ Days + (Days | Subject)", sleepstudy)
    assert got == pytest.approx(want, rel=2e-3)


def test_auto_rule(debate, sleepstudy, rich, cbpp):
    """Centred when the median data / prior precision ratio is >= 1.5 (bench/results/
    centre_rule.json measures both forms on these models)."""
    assert AUTO_MIN_INFORMATION == 1.5
    assert auto_centered(1.5) and not auto_centered(1.49)
    assert bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy).re_param == {
        "(Days | Subject)": "centered"}  # ratio 1.70
    assert bayesglmm.lmer("y ~ x + (x | g)", rich).re_param == {"(x | g)": "centered"}
    # debate: 3 rows per group; (1 | group) is a tie (1.06), the slope of (1 + talk | group)
    # is barely informed (0.31)
    assert bayesglmm.lmer("sat ~ talk + perf + (1 | group)", debate).re_param == {
        "(1 | group)": "noncentered"}
    assert bayesglmm.lmer("sat ~ talk + perf + (1 + talk | group)", debate).re_param == {
        "(1 + talk | group)": "noncentered"}
    # binomial: proportions weighted by the trials (cbpp: 1.94)
    assert bayesglmm.glmer("cbind(incidence, failures) ~ period + (1 | herd)", cbpp,
                           family="binomial").re_param == {"(1 | herd)": "centered"}
    # few rows and a small spread: non-centred; per term: (1 | x) has one row per group
    poor = _one_way(100, 4, 0.3, 1.0, 4)
    assert bayesglmm.lmer("y ~ 1 + (1 | g)", poor).re_param == {"(1 | g)": "noncentered"}
    m = bayesglmm.lmer("y ~ x + (1 | g) + (1 | x)", rich)
    assert m.re_param == {"(1 | g)": "centered", "(1 | x)": "noncentered"}
    # a slope that does not vary within groups is not informed by them: non-centred
    d = rich.assign(w=rich.groupby("g")["x"].transform("mean"))
    with pytest.warns(UserWarning, match="does not vary within any level"):
        s = build_spec("y ~ w + (1 + w | g)", d)
    g = s.groups[0]
    assert term_information(s.response.y, None, s.fixed.X, g.index, g.Z, g.n_groups) == 0.0


def test_auto_rule_is_cheap():
    """< 50 ms of CPU time on 100,000 rows x 1,000 groups with a random intercept and slope
    (~9 ms measured here on a quiet machine; CPU time, not wall time, so that other processes
    on a shared machine do not count)."""
    import time

    rng = np.random.default_rng(5)
    n, G = 100_000, 1000
    idx = rng.integers(1, G + 1, n)
    Z = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n)
    term_information(y, None, Z[:, 1:], idx, Z, G)  # warm caches
    t0 = time.process_time()
    term_information(y, None, Z[:, 1:], idx, Z, G)
    assert time.process_time() - t0 < 0.05


def test_param_forms(rich, sleepstudy):
    spec = build_spec("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleepstudy)
    groups, y, X = spec.groups, spec.response.y, spec.fixed.X
    assert resolve_param("centered", groups) == (True, True)
    assert resolve_param("non-centred", groups) == (False, False)
    assert resolve_param("CENTRED", groups) == (True, True)
    assert resolve_param({"Subject": "centered"}, groups) == (True, True)  # every term of it
    assert resolve_param({"(0 + Days | Subject)": "centered", "(1 | Subject)": "ncp"},
                         groups) == (False, True)
    assert resolve_param({"0+Days|Subject": "cp"}, groups, y, None, X) == (
        resolve_param("auto", groups, y, None, X)[0], True)
    with pytest.raises(TypeError, match='"auto" rule needs the response'):
        resolve_param({"0+Days|Subject": "cp"}, groups)
    # a dict names some terms: the others follow "auto" (rich: centred)
    d = rich.assign(h=rich.g.str[:2])
    m = bayesglmm.lmer("y ~ x + (x | g) + (1 | h)", d, param={"h": "noncentered"})
    assert m.re_param == {"(x | g)": "centered", "(1 | h)": "noncentered"}
    assert bayesglmm.lmer("y ~ x", rich).re_param == {}


def test_param_errors_name_the_term(sleepstudy):
    f = "Reaction ~ Days + (Days | Subject)"
    with pytest.raises(ValueError, match=r"param must be one of 'auto', 'centered', "
                                         r"'noncentered', got 'centrd'"):
        bayesglmm.lmer(f, sleepstudy, param="centrd")
    with pytest.raises(ValueError, match=r"no grouping term 'Subjekt'; its grouping terms are: "
                                         r"'Subject' \(Days \| Subject\)"):
        bayesglmm.lmer(f, sleepstudy, param={"Subjekt": "centered"})
    with pytest.raises(ValueError, match=r"param\['Subject'\] must be one of"):
        bayesglmm.lmer(f, sleepstudy, param={"Subject": "yes"})
    with pytest.raises(TypeError, match="param must be 'auto', 'centered', 'noncentered' or a "
                                        "dict"):
        bayesglmm.lmer(f, sleepstudy, param=True)
    with pytest.raises(TypeError, match="param keys must be grouping factors"):
        bayesglmm.lmer(f, sleepstudy, param={1: "centered"})


# ----------------------------------------------------------------------------- the code


def test_centred_code(sleepstudy):
    f = "Reaction ~ Days + (Days | Subject) + (1 | Days)"
    base = render_code(build_spec(f, sleepstudy, param="noncentered"))
    assert "(centred" not in base and "is centred" not in base  # unchanged when none is
    code = render_code(build_spec(f, sleepstudy, param={"Subject": "centered"}))
    assert "  matrix[M_1, N_1] z_1;  // group-level effects, one column per group (centred " \
           "parameterisation)\n" in code
    assert "  matrix[M_2, N_2] z_2;  // standardised group-level effects (non-centred)\n" in code
    # hierarchical centring: the groups' intercepts and slopes scatter around Intercept, b[Days]
    assert ("  vector[M_1] mu_1 = [Intercept, beta[1]]';  // term 1: the coefficients its "
            "groups' coefficients scatter around\n  matrix[N_1, M_1] r_1 = (z_1 - rep_matrix("
            "mu_1, N_1))';  // term 1 is centred: z_1 holds the groups' coefficients\n") in code
    assert ("  // term 1 (centred): each group's coefficients ~ multi_normal_cholesky(mu_1, "
            "diag(sd_1) * L_1)\n  target += std_normal_lpdf(to_vector(mdivide_left_tri_low("
            "diag_pre_multiply(sd_1, L_1), z_1 - rep_matrix(mu_1, N_1))))\n    - N_1 * "
            "(sum(log(sd_1)) + sum(log(diagonal(L_1))));\n") in code
    assert "  target += std_normal_lpdf(to_vector(z_2));  // term 2 (non-centred)\n" in code
    # r_re is the same quantity either way: the effects divided by their SDs
    assert "r_re_1 = (diag_pre_multiply(inv(sd_1), z_1 - rep_matrix(mu_1, N_1)))';" in code
    unc = render_code(build_spec("Reaction ~ Days + (0 + Days || Subject) + (1 | Days)",
                                 sleepstudy, param="centered"))
    assert "vector[M_1] mu_1 = [beta[1]]';" in unc
    assert ("  // term 2 (centred): each group's coefficients ~ normal(mu_2, sd_2)\n  target += "
            "normal_lpdf(to_vector(z_2) | to_vector(rep_matrix(mu_2, N_2)), "
            "to_vector(rep_matrix(sd_2, N_2)));\n") in unc
    # a coefficient without a population-level counterpart scatters around 0
    d = sleepstudy.assign(w=sleepstudy.Days % 3)
    own = render_code(build_spec("Reaction ~ Days + (0 + w | Subject)", d, param="centered"))
    assert "mu_1" not in own and "matrix[N_1, M_1] r_1 = z_1';  // term 1 is centred: z_1 " \
        "holds the effects" in own
    assert ("normal_lpdf(to_vector(z_1) | 0, to_vector(rep_matrix(sd_1, N_1)))") in own
    spec = build_spec(f, sleepstudy, param={"Subject": "centered"})
    assert "(size 10-10), coefficients Int, Days; centred" in str(spec)


def test_generic_data_flag(sleepstudy):
    spec = build_spec("Reaction ~ Days + (Days | Subject) + (1 | Days)", sleepstudy,
                      param={"(1 | Days)": "centered", "Subject": "noncentered"})
    d = generic.generic_data(spec)
    assert [d[f"centered_{k}"] for k in range(1, generic.GENERIC_SLOTS + 1)] == [0, 1, 0, 0, 0, 0]
    assert d["mu_idx_1"].tolist() == [0, 0] and d["mu_idx_2"].tolist() == [1]
    assert d["mu_idx_3"].tolist() == []
    both = generic.generic_data(build_spec("Reaction ~ Days + (Days | Subject)", sleepstudy,
                                           param="centered"))
    assert both["mu_idx_1"].tolist() == [1, 2]  # the intercept and beta[1] (Days)


def test_fit_many_keeps_the_base_programs_choice(rich):
    from bayesglmm.batch.tasks import recipe_args

    m = bayesglmm.lmer("y ~ x + (x | g)", rich)
    assert m._build_args["param"] == "auto"
    assert recipe_args(m)["param"] == {"(x | g)": "centered"}
    # a dataset with few rows per group runs the same (centred) program
    few = rich.groupby("g").head(5)
    assert bayesglmm.lmer("y ~ x + (x | g)", few).re_param == {"(x | g)": "noncentered"}
    assert m.update(data=few, param=recipe_args(m)["param"]).re_param == {"(x | g)": "centered"}
    # update() keeps the resolved choice (the same program) unless param= is given
    assert m.update(data=few).re_param == {"(x | g)": "centered"}
    assert m.update(data=few).stan_code == m.stan_code
    assert m.update(data=few, param="auto").re_param == {"(x | g)": "noncentered"}


def test_kfold_refuses_mixed_parameterisations(rich):
    """kfold carries a fold's draws over to the model of all rows in its coordinates: a training
    model parameterised differently is refused (update(), which kfold uses, keeps param=)."""
    from bayesglmm.kfold import _carry_over

    full = bayesglmm.lmer("y ~ x + (x | g)", rich, param="centered")
    train = bayesglmm.lmer("y ~ x + (x | g)", rich.iloc[:600], param="noncentered")
    with pytest.raises(ValueError, match="centred/non-centred differently"):
        _carry_over(np.zeros((1, 1)), ["x"], train, full, None, np.random.default_rng(0), False)


# ----------------------------------------------------------------------------- slow: same model


def _pair(formula: str, data, *, backend: str, **kw):
    out = []
    for p in ("noncentered", "centered"):
        m = bayesglmm.glmer(formula, data, param=p, backend=backend, **kw)
        m.compile(verbose=False)
        out.append(m)
    return out


@pytest.fixture(scope="module")
def sleep_specific_pair(sleepstudy, toolchain):
    """sleepstudy (Days | Subject), flat priors, the specific programs (the centred one is
    the program of every centred gaussian (x | g) model with flat priors)."""
    return _pair("Reaction ~ Days + (Days | Subject)", sleepstudy, backend="specific")


@pytest.mark.slow
def test_laplace_and_classic_do_not_depend_on_the_parameterisation(sleep_specific_pair):
    """The same model: the Laplace log ML (exact here), classic() REML and ML estimates, SEs and
    log-likelihood, and the random effects agree to 1e-6 (relative; the optimiser's precision
    is ~1e-8) on the exact LMM path, and the Laplace log ML also on the generic Laplace path
    (finite differences: both within 1e-5 absolute of the exact value)."""
    nc, c = sleep_specific_pair
    assert c.re_param == {"(Days | Subject)": "centered"}
    a, b = nc.optimize(verbose=False), c.optimize(verbose=False)
    assert a.log_ml == pytest.approx(b.log_ml, rel=1e-6)
    np.testing.assert_allclose(a.summary()["estimate"], b.summary()["estimate"], rtol=1e-6)
    ra, rb = a.random_effects(), b.random_effects()
    assert list(ra["parameter"]) == list(rb["parameter"])
    np.testing.assert_allclose(ra["estimate"], rb["estimate"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ra["se"], rb["se"], rtol=1e-5)
    ga, gb = nc.optimize(exact=False, verbose=False), c.optimize(exact=False, verbose=False)
    assert ga.log_ml == pytest.approx(gb.log_ml, rel=1e-6)
    assert abs(gb.log_ml - b.log_ml) < 1e-4
    for method in ("REML", "ML"):
        ca, cb = nc.classic(method=method, verbose=False), c.classic(method=method, verbose=False)
        assert ca.loglik == pytest.approx(cb.loglik, rel=1e-6)
        np.testing.assert_allclose(ca.summary()["estimate"], cb.summary()["estimate"], rtol=1e-6)
        np.testing.assert_allclose(ca.summary()["se"], cb.summary()["se"], rtol=1e-6)


@pytest.mark.slow
def test_exact_path_takes_centred_programs(sleep_specific_pair):
    """The exact LMM path reproduces the centred program's log density (it is checked at
    construction) and reports the effects in the program's coordinates at the mode."""
    from bayesglmm.inference.lmm_select import exact_lmm

    nc, c = sleep_specific_pair
    la, lb = exact_lmm(nc), exact_lmm(c)
    assert la is not None and lb is not None
    ma, mb = la.fit(reml=True), lb.fit(reml=True)
    assert ma.log_ml == pytest.approx(mb.log_ml, rel=1e-9)
    # z of the centred program = diag(sd) L z of the non-centred one, per group
    ba, bb = nc.bridgestan_model(), c.bridgestan_model()
    cons_a = ba.param_constrain(ma.theta_unc, include_gq=True, rng=ba.new_rng(seed=1))
    cons_b = bb.param_constrain(mb.theta_unc, include_gq=True, rng=bb.new_rng(seed=1))
    names = ba.param_names(include_gq=True)
    rre = [i for i, nm in enumerate(names) if nm.startswith("r_re_1.")]
    np.testing.assert_allclose(cons_a[rre], cons_b[rre], rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_binomial_laplace_and_classic(cbpp, toolchain):
    """A non-normal family (cbpp, binomial (1 | herd)) on the generic program (the
    parameterisation is a data flag): Laplace log ML and classic() agree to 1e-6."""
    nc, c = _pair("cbind(incidence, failures) ~ period + (1 | herd)", cbpp, backend="generic",
                  family="binomial")
    a, b = nc.optimize(verbose=False), c.optimize(verbose=False)
    assert a.log_ml == pytest.approx(b.log_ml, rel=1e-6)
    np.testing.assert_allclose(a.summary()["estimate"], b.summary()["estimate"], rtol=1e-6)
    ca, cb = nc.classic(verbose=False), c.classic(verbose=False)
    assert ca.loglik == pytest.approx(cb.loglik, rel=1e-6)
    np.testing.assert_allclose(ca.summary()["estimate"], cb.summary()["estimate"], rtol=1e-6)
    np.testing.assert_allclose(ca.summary()["se"], cb.summary()["se"], rtol=1e-5)


# ----------------------------------------------------------------------------- slow: NUTS


@pytest.fixture(scope="module")
def rich_fits(rich, toolchain):
    nc, c = _pair("y ~ x + (x | g)", rich, backend="generic", prior=bayesglmm.prior_normal())
    kw = dict(chains=4, warmup=1000, sampling=1000, seed=SEED, verbose=False)
    return nc.sample(**kw), c.sample(**kw)


@pytest.mark.slow
def test_same_posterior_data_rich(rich_fits):
    """30 groups x 40 rows: both parameterisations give the same posterior; the centred one
    samples the SDs more efficiently (more effective draws per gradient evaluation)."""
    nc, c = rich_fits
    a, b = means_agree(nc, c, exclude=NOT_SHARED)
    assert nc.num_divergent == 0 and c.num_divergent == 0
    for name in ("sd[g:Int]", "sd[g:x]", "sigma"):
        ess_grad = [s.loc[name, "ess_bulk"] / f._stats["n_steps"].sum() for s, f in ((a, nc), (b, c))]
        assert ess_grad[1] > ess_grad[0], (name, ess_grad)


@pytest.mark.slow
def test_same_posterior_data_poor(debate, toolchain):
    """debate (3 rows per group, the "auto" choice is non-centred): the centred program gives
    the same posterior within MCSE (adapt_delta raised for its funnel)."""
    nc, c = _pair("sat ~ talk + perf + (1 | group)", debate, backend="generic",
                  prior=bayesglmm.prior_normal())
    kw = dict(chains=4, warmup=1000, sampling=1000, seed=SEED, verbose=False, delta=0.95)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # divergences of the centred funnel
        means_agree(nc.sample(**kw), c.sample(**kw), exclude=NOT_SHARED)


@pytest.mark.slow
def test_bridge_sampling_on_a_centred_fit(rich_fits):
    """Bridge sampling works in the centred coordinates: the same log ML as the non-centred
    fit within 4 combined standard errors."""
    nc, c = rich_fits
    a, b = nc.bridgesampling(verbose=False), c.bridgesampling(verbose=False)
    assert a.converged and b.converged
    assert abs(a.logml - b.logml) < 4 * np.hypot(a.se, b.se), (a, b)


@pytest.mark.slow
def test_leave_group_out_on_a_centred_term(rich, toolchain):
    """kfold with grouped folds on a centred (x | g) term: the held-out groups have no
    training rows, so their coefficients are new draws mu + diag(sd) L e around the population
    coefficients. For this gaussian model the new effect integrates out exactly: row i's
    held-out density is log mean over draws of Normal(y_i | Intercept + b x_i, sigma^2 +
    z_i' Sigma z_i), z_i = (1, x_i). kfold's estimate (one new effect per draw) must equal it up
    to its Monte Carlo error: 5 x the delta-method SE sd_s(f) / (sqrt(S) mean_s(f)) of the
    likelihoods f at independent new effects (given the draws the new effects are independent
    across draws). The density with the new effect at 0 (a plug-in) is far outside that."""
    from scipy import stats
    from scipy.special import logsumexp

    from bayesglmm.kfold import heldout_elpd

    kw = dict(prior=bayesglmm.prior_normal(), param="centered", backend="generic")
    held = rich.g.isin(sorted(rich.g.unique())[:5]).to_numpy()
    full = bayesglmm.lmer("y ~ x + (x | g)", rich, **kw)
    train = bayesglmm.lmer("y ~ x + (x | g)", rich[~held].reset_index(drop=True), **kw)
    assert train.re_param == {"(x | g)": "centered"}
    fit = train.sample(chains=4, warmup=300, sampling=500, seed=SEED, verbose=False)
    rows = np.flatnonzero(held)
    got = heldout_elpd(fit, train, full, rows, seed=3)

    d = fit.draws(inc_random=False)
    cor = [c for c in d.columns if c.startswith("cor")]
    assert len(cor) == 1, list(d.columns)
    a, b, sigma = (d[c].to_numpy()[:, None] for c in ("Intercept", "b[x]", "sigma"))
    s0, s1, r = (d[c].to_numpy()[:, None] for c in ("sd[g:Int]", "sd[g:x]", cor[0]))
    x, y = rich.x.to_numpy()[rows][None, :], rich.y.to_numpy()[rows][None, :]
    mu = a + b * x
    var_b = s0**2 + 2 * r * s0 * s1 * x + s1**2 * x**2  # z' Sigma z
    exact = logsumexp(stats.norm.logpdf(y, mu, np.sqrt(sigma**2 + var_b)), axis=0) \
        - np.log(mu.shape[0])
    rng = np.random.default_rng(7)
    e0, e1 = rng.standard_normal((2, mu.shape[0], 1))
    new = s0 * e0 + s1 * x * (r * e0 + np.sqrt(1 - r**2) * e1)  # diag(sd) L e, z_i' of it
    f = stats.norm.pdf(y, mu + new, sigma)
    se = f.std(axis=0) / (np.sqrt(f.shape[0]) * f.mean(axis=0))
    assert np.all(np.abs(got - exact) <= 5 * se), np.max(np.abs(got - exact) / se)
    plugin = logsumexp(stats.norm.logpdf(y, mu, sigma), axis=0) - np.log(mu.shape[0])
    assert np.mean(np.abs(plugin - exact)) > 10 * np.mean(se)
