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
from bayesglmm.reparam import AUTO_MIN_ROWS, auto_centered, resolve_param
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


def test_auto_rule_counts_observations_per_group(debate, sleepstudy, rich):
    assert AUTO_MIN_ROWS == 20
    assert auto_centered(np.full(10, 20)) and not auto_centered(np.full(10, 19))
    # the median, not the mean: a few large groups do not centre a term of small ones
    assert not auto_centered(np.array([1, 2, 3, 4, 500]))
    assert not auto_centered(np.zeros(0))
    # debate: 3 rows per group; sleepstudy: 10 per subject; the simulated data: 40 per group
    assert bayesglmm.lmer("sat ~ talk + (1 | group)", debate).re_param == {
        "(1 | group)": "noncentered"}
    assert bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy).re_param == {
        "(Days | Subject)": "noncentered"}
    assert bayesglmm.lmer("y ~ x + (x | g)", rich).re_param == {"(x | g)": "centered"}
    # per term: the groups of g have 40 rows, those of g:x2 (every row its own group) 1
    d = rich.assign(x2=np.arange(len(rich)) % 2)
    m = bayesglmm.lmer("y ~ x + (1 | g) + (1 | g:x2)", d)
    assert m.re_param == {"(1 | g)": "centered", "(1 | g:x2)": "centered"}  # 20 rows each
    m = bayesglmm.lmer("y ~ x + (1 | g) + (1 | x)", d)
    assert m.re_param == {"(1 | g)": "centered", "(1 | x)": "noncentered"}


def test_param_forms(rich, sleepstudy):
    groups = build_spec("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
                        sleepstudy).groups
    assert resolve_param("centered", groups) == (True, True)
    assert resolve_param("non-centred", groups) == (False, False)
    assert resolve_param("CENTRED", groups) == (True, True)
    assert resolve_param({"Subject": "centered"}, groups) == (True, True)  # every term of it
    assert resolve_param({"(0 + Days | Subject)": "centered"}, groups) == (False, True)
    assert resolve_param({"0+Days|Subject": "cp"}, groups) == (False, True)
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
    base = render_code(build_spec(f, sleepstudy))
    assert base == render_code(build_spec(f, sleepstudy, param="noncentered"))
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
                      param={"(1 | Days)": "centered"})
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
