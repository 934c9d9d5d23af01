"""Zero-inflated poisson on simulated counts with excess zeros (``zi="~ w"``): the zi= formula and
its errors, classic() against a direct maximisation of the same (Laplace) marginal likelihood,
recovery by optimize() and sample(), predictions including the zero part, posterior
predictions and LOO, variational() against NUTS, lsmeans() and simple_effects(). The models
run the family's generic program (``y ~ x + (1 | g)`` and ``y ~ x + f + h + (1 | g)``, flat
priors): no compile of their own.

The reference marginal likelihood is computed here with numpy/scipy, independently of Stan: per
group, adaptive Gauss-Hermite quadrature over the random intercept u ~ Normal(0, sd) of
prod_i ZIP(y_i | exp(a + b x_i + u), zi_i), zi_i = logistic(c + d w_i), centred at the mode of
the integrand and scaled by its curvature; with one node it is the Laplace approximation that
classic() maximises (lme4's and glmmTMB's default), so both must agree to 1e-4.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from marginal_ref import assert_recovers, group_log_integral, maximise
from scipy.special import expit, gammaln
from scipy.stats import norm

import bayesglmm
from bayesglmm.families import FAMILIES
from bayesglmm.formula import FormulaError

SEED = 20261206
TRUTH = {"Intercept": 0.8, "b[x]": 0.4, "b_zi[Intercept]": -0.5, "b_zi[w]": 0.8,
         "sd[g:Int]": 0.5}
G, N_PER = 40, 10
REL = 1e-4  # as tests/test_classic.py


def simulate(rng: np.random.Generator) -> pd.DataFrame:
    """Counts from the model with the TRUTH values (the family table's rng)."""
    g = np.repeat(np.arange(1, G + 1), N_PER)
    x, w = rng.normal(size=G * N_PER), rng.normal(size=G * N_PER)
    u = rng.normal(0.0, TRUTH["sd[g:Int]"], size=G)[g - 1]
    eta = TRUTH["Intercept"] + TRUTH["b[x]"] * x + u
    zi = expit(TRUTH["b_zi[Intercept]"] + TRUTH["b_zi[w]"] * w)
    y = FAMILIES["zero_inflated_poisson"].rng(eta, {"zi": zi}, rng)
    return pd.DataFrame({"g": g, "x": x, "w": w, "y": y})


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate(np.random.default_rng(SEED))


def test_zi_formula_and_errors(data):
    m = bayesglmm.glmer("y ~ x + (1 | g)", data, family="zero_inflated_poisson", zi="~ w")
    assert m.parameter_names[:5] == ["Intercept", "b[x]", "b_zi[Intercept]", "b_zi[w]",
                                     "sd[g:Int]"]
    assert "zi = ~w" in m.call()
    assert m.stan_data["K_zi"] == 2 and np.allclose(m.stan_data["X_zi"][:, 1], data["w"])
    d = bayesglmm.glmer("y ~ x + (1 | g)", data, family="zero_inflated_neg_binomial")
    assert d.parameter_names[2:4] == ["b_zi[Intercept]", "phi"] and d.stan_data["K_zi"] == 1
    with pytest.raises(ValueError, match="zi= is only used by the zero-inflated families, "
                                         "not 'poisson'"):
        bayesglmm.glmer("y ~ x", data, family="poisson", zi="~ w")
    with pytest.raises(FormulaError, match="zi= must be a one-sided formula"):
        bayesglmm.glmer("y ~ x", data, family="zero_inflated_poisson", zi="y ~ w")
    with pytest.raises(FormulaError, match=r"zi= takes fixed effects only"):
        bayesglmm.glmer("y ~ x", data, family="zero_inflated_poisson", zi="~ w + (1 | g)")
    with pytest.raises(ValueError, match="Unknown column.*'nope'|nope"):
        bayesglmm.glmer("y ~ x", data, family="zero_inflated_poisson", zi="~ nope")
    with pytest.raises(ValueError, match="'y'.*non-negative integer counts"):
        bayesglmm.glmer("y ~ x", data.assign(y=data.y - 0.5), family="zero_inflated_poisson")


def test_simulate_and_update_keep_the_zero_part(data):
    """simulate() draws structural zeros from b_zi; update() keeps zi=."""
    from bayesglmm.simulate import simulate

    m = bayesglmm.glmer("y ~ x + (1 | g)", data, family="zero_inflated_poisson", zi="~ w")
    truth = {"Intercept": 2.0, "b[x]": 0.0, "b_zi[Intercept]": 0.0, "b_zi[w]": 0.0,
             "sd[g:Int]": 0.0}
    sim = simulate(m, 20, params=truth, seed=1)
    y = np.asarray(sim.y)
    # P(0) = 0.5 + 0.5 exp(-e^2) = 0.5335 (8,000 draws: SE 0.0056)
    assert abs(np.mean(y == 0) - (0.5 + 0.5 * np.exp(-np.exp(2.0)))) < 0.025
    assert "zi = ~w" in m.update(data=data.iloc[:200]).call()


def test_generic_program_covers_zero_inflation(data):
    """The zero part is data of the family's generic program (equivalence with the specific
    program: tests/test_generic.py); backend="auto" runs it."""
    from bayesglmm import generic

    m = bayesglmm.glmer("y ~ x + (1 | g)", data, family="zero_inflated_poisson", zi="~ w")
    assert generic.covers(m.spec) is None
    assert m.backend == "generic" and m.run_program.name == "generic_zero_inflated_poisson"
    d = generic.generic_data(m.spec)
    assert d["K_zi"] == 2 and d["prior_b_zi"] == 0
    np.testing.assert_array_equal(d["X_zi"], m.stan_data["X_zi"])
    n = bayesglmm.glmer("y ~ x + (1 | g)", data, family="zero_inflated_neg_binomial",
                        prior=bayesglmm.prior_normal(b_zi_sd=2.5))
    dn = generic.generic_data(n.spec)
    assert n.run_program.name == "generic_zero_inflated_neg_binomial"
    assert dn["prior_b_zi"] == 1 and dn["b_zi_sd"].tolist() == [2.5]


def test_rng_zero_share():
    rng = np.random.default_rng(2)
    y = FAMILIES["zero_inflated_poisson"].rng(np.full(100_000, 0.5), {"zi": 0.3}, rng)
    # P(0) = 0.3 + 0.7 exp(-e^0.5); mean 0.7 e^0.5 (100,000 draws: SEs 0.0015 and 0.005)
    assert abs(np.mean(y == 0) - (0.3 + 0.7 * np.exp(-np.exp(0.5)))) < 0.006
    assert abs(y.mean() - 0.7 * np.exp(0.5)) < 0.02


# ----------------------------------------------------------------------------- the reference


def _zip_derivs(eta, zeta, y):
    """log ZIP(y | exp(eta), logistic(zeta)) and its first two derivatives in eta."""
    mu, p = np.exp(eta), expit(zeta)
    q = (1 - p) * np.exp(-mu)  # (1 - p) P_pois(0)
    L = p + q
    zero = y == 0
    ll = np.where(zero, np.log(L), np.log1p(-p) + y * eta - mu - gammaln(y + 1))
    d1 = np.where(zero, -mu * q / L, y - mu)
    d2 = np.where(zero, -mu * q * ((1 - mu) * L + mu * q) / L**2, -mu)
    return ll, d1, d2


def marginal_loglik(theta: np.ndarray, df: pd.DataFrame, nodes: int) -> float:
    """Adaptive Gauss-Hermite log marginal likelihood; theta = (Intercept, b[x],
    b_zi[Intercept], b_zi[w], log sd)."""
    a, b, c, d, sd = theta[0], theta[1], theta[2], theta[3], np.exp(theta[4])
    total = 0.0
    for _, grp in df.groupby("g"):
        y, zeta = grp["y"].to_numpy(), c + d * grp["w"].to_numpy()
        total += group_log_integral(a + b * grp["x"].to_numpy(),
                                    lambda eta, y=y, zeta=zeta: _zip_derivs(eta, zeta, y), sd,
                                    nodes)
    return float(total)


def direct_ml(df: pd.DataFrame, start: np.ndarray) -> tuple[np.ndarray, float]:
    """Maximum of the one-node (Laplace) marginal likelihood."""
    return maximise(lambda th: marginal_loglik(th, df, 1), start)


# ----------------------------------------------------------------------------- fits (slow)


@pytest.fixture(scope="module")
def model(data, toolchain):
    m = bayesglmm.glmer("y ~ x + (1 | g)", data, family="zero_inflated_poisson", zi="~ w")
    m.name = "fam_flat_zip"
    m.compile(verbose=False)
    return m


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_classic_matches_direct_laplace_ml(model, data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no boundary warning expected
        fit = model.classic(verbose=False)
    s = fit.summary()
    names = ["Intercept", "b[x]", "b_zi[Intercept]", "b_zi[w]", "sd[g:Int]"]
    ours = np.array([s.loc[n, "estimate"] for n in names])
    ours[4] = np.log(ours[4])
    ref, ref_ll = direct_ml(data, ours + 0.05)
    ref[4] = np.exp(ref[4])
    for n, want in zip(names, ref):
        got = s.loc[n, "estimate"]
        assert abs(got - want) <= REL * abs(want), (n, got, want)
    assert abs(fit.loglik - ref_ll) <= 1e-6 * abs(ref_ll), (fit.loglik, ref_ll)
    # Wald z tests of the zero part as of the fixed effects (logit scale)
    for n in ("b_zi[Intercept]", "b_zi[w]"):
        z = s.loc[n, "estimate"] / s.loc[n, "se"]
        assert s.loc[n, "z"] == pytest.approx(z, rel=1e-12)
        assert s.loc[n, "p"] == pytest.approx(2 * norm.sf(abs(z)), rel=1e-12)
    assert np.isnan(s.loc["sd[g:Int]", "z"])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_optimize_recovers_truth_and_predicts(model, data):
    fit = model.optimize(verbose=False)
    assert fit.converged, fit.message
    s = fit.summary()
    assert_recovers(s, TRUTH)
    # the mean includes the zero part: (1 - zi) * exp(eta), population level at new data
    new = pd.DataFrame({"x": [0.0, 1.0], "w": [0.0, 2.0], "g": [1, 1]})
    pred = fit.predict(new, re="exclude")
    a, b = s.loc["Intercept", "estimate"], s.loc["b[x]", "estimate"]
    c, d = s.loc["b_zi[Intercept]", "estimate"], s.loc["b_zi[w]", "estimate"]
    want = (1 - expit(c + d * new["w"])) * np.exp(a + b * new["x"])
    np.testing.assert_allclose(pred["estimate"].to_numpy(), want.to_numpy(), rtol=1e-10)
    # delta-method SE over (b, b_zi)
    assert np.all(np.isfinite(pred["se"]) & (pred["se"] > 0))
    assert np.all((pred["lower"] < pred["estimate"]) & (pred["estimate"] < pred["upper"]))
    # conditional effects on the response scale: the same mean, w at its mean, delta-method SE
    ce = bayesglmm.conditional_effects(fit, "x", resolution=3).data
    want = (1 - expit(c + d * data["w"].mean())) * np.exp(a + b * ce["x"])
    np.testing.assert_allclose(ce["estimate"].to_numpy(), want.to_numpy(), rtol=1e-10)
    assert np.all(ce["se"] > 0) and np.all(ce["lower"] < ce["estimate"])
    # predict() on the same rows (random effects excluded) gives the same mean and SE
    same = fit.predict(pd.DataFrame({"x": ce["x"], "w": data["w"].mean(), "g": 1}), re="exclude")
    np.testing.assert_allclose(same[["estimate", "se"]].to_numpy(),
                               ce[["estimate", "se"]].to_numpy(), rtol=1e-8)


@pytest.fixture(scope="module")
def nuts(model):
    return model.sample(chains=2, warmup=500, sampling=500, seed=4, verbose=False)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sample_posterior_predict_and_loo(model, nuts, data):
    fit = nuts
    s = fit.summary()
    for p, true in TRUTH.items():
        assert abs(s.loc[p, "mean"] - true) < 3.5 * s.loc[p, "sd"], (p, s.loc[p, "mean"])
    yrep = fit.posterior_predict(seed=1)
    assert yrep.shape == (1000, len(data))
    # the share of zeros is reproduced (observed 0/1 per row: SE of the share about 0.025)
    assert abs(np.mean(yrep == 0) - np.mean(data["y"] == 0)) < 0.05
    mu = fit.predict(summary=False)
    assert abs(yrep.mean() - mu.mean()) < 0.05 * mu.mean()
    ce = bayesglmm.conditional_effects(fit, "x", resolution=3).data
    draws = fit.draws(["Intercept", "b[x]", "b_zi[Intercept]", "b_zi[w]"], inc_random=False)
    m = ((1 - expit(draws["b_zi[Intercept]"].to_numpy()[:, None]
                    + draws["b_zi[w]"].to_numpy()[:, None] * data["w"].mean()))
         * np.exp(draws["Intercept"].to_numpy()[:, None]
                  + np.outer(draws["b[x]"].to_numpy(), ce["x"].to_numpy())))
    np.testing.assert_allclose(ce["estimate"].to_numpy(), m.mean(axis=0), rtol=1e-10)
    res = fit.loo()
    assert np.isfinite(res.elpd_loo) and res.loo_i.shape == (len(data),)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_variational_against_nuts(model, nuts, data):
    """Mean-field ADVI (the default) against the NUTS posterior of the same model.

    Tolerances: ADVI stops when the relative ELBO change is < 0.005, which leaves its means
    noisy by a fraction of a posterior SD (tests/test_variational.py: < SD / 3 on a conjugate
    model), and the mean-field family ignores the posterior correlation of the intercept, the
    group SD and the group effects, which shifts their means and shrinks their SDs. Measured on
    this model (3 seeds each with flat and weak priors, against 4 x 1000 NUTS draws): means
    within 0.96 posterior SD, SD ratios 0.40-0.99; so means within 1.25 SD and SD ratios in
    [0.3, 1.25]. Full-rank ADVI diverged on this model in the same trials (Pareto k 1.2-142):
    the fit says so (Pareto k > 0.7: unreliable).
    """
    from bayesglmm.inference.variational import VariationalWarning

    ref = nuts.summary()
    with pytest.warns(VariationalWarning):
        vi = model.variational(seed=1, verbose=False)
    s = vi.summary()
    for p in TRUTH:
        sd = ref.loc[p, "sd"]
        assert abs(s.loc[p, "mean"] - ref.loc[p, "mean"]) < 1.25 * sd, (p, s.loc[p, "mean"])
        assert 0.3 < s.loc[p, "sd"] / sd < 1.25, (p, s.loc[p, "sd"], sd)
    # the predictions run on the approximation's draws, zero part included
    yrep = vi.posterior_predict(seed=2)  # the share of zeros as for NUTS (SE about 0.025)
    assert abs(np.mean(yrep == 0) - np.mean(data["y"] == 0)) < 0.05
    with pytest.warns(VariationalWarning, match="unreliable; use sample"):
        full = model.variational(method="fullrank", seed=1, verbose=False)
    assert full.pareto_k > 0.7


# ----------------------------------------------------------------------------- lsmeans, simple effects

F_LEVELS, H_LEVELS = ("a", "b", "c"), ("hi", "lo")


@pytest.fixture(scope="module")
def factor_model(data, toolchain):
    """y ~ x + f + h + (1 | g), zi = ~ w (f and h: factors without effect, treatment coded with
    the first level as reference); the family's generic program (no compile of its own)."""
    i = np.arange(len(data))
    d = data.assign(f=np.array(F_LEVELS)[i % 3], h=np.array(H_LEVELS)[(i // 3) % 2])
    return bayesglmm.glmer("y ~ x + f + h + (1 | g)", d, family="zero_inflated_poisson",
                           zi="~ w")


def _cell_means(theta: dict[str, np.ndarray], d: pd.DataFrame, x: float, f: str, h: str):
    """(1 - zi) exp(eta) at x, levels f and h, w at its mean (random effects 0)."""
    eta = theta["Intercept"] + theta["b[x]"] * x
    eta = eta + (theta[f"b[f{f}]"] if f != "a" else 0) + (theta["b[hlo]"] if h == "lo" else 0)
    zeta = theta["b_zi[Intercept]"] + theta["b_zi[w]"] * d["w"].mean()
    return (1 - expit(zeta)) * np.exp(eta)


NAMES = ["Intercept", "b[x]", "b[fb]", "b[fc]", "b[hlo]", "b_zi[Intercept]", "b_zi[w]"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_lsmeans_and_simple_effects_classic(factor_model):
    """Means on the response scale include the zero part (equal weights over the cells);
    link scale: the count part. Single-cell means equal predict() (its delta-method SE)."""
    d = factor_model.spec.data
    fit = factor_model.classic(verbose=False)
    est = fit.summary()["estimate"]
    th = {n: est[n] for n in NAMES}
    xbar = d["x"].mean()
    resp = bayesglmm.lsmeans(fit, "f", type="response")
    assert "response scale: mean including the zero part" in str(resp)
    want = [np.mean([_cell_means(th, d, xbar, f, h) for h in H_LEVELS]) for f in F_LEVELS]
    np.testing.assert_allclose(resp["estimate"].to_numpy(), want, rtol=1e-10)
    link = bayesglmm.lsmeans(fit, "f", pairwise=True)
    assert "link scale of the count part" in str(link)
    base = th["Intercept"] + th["b[x]"] * xbar + th["b[hlo]"] / 2
    np.testing.assert_allclose(link["estimate"].to_numpy(),
                               [base, base + th["b[fb]"], base + th["b[fc]"]], rtol=1e-10)
    assert link.contrasts.loc["(f=a) - (f=b)", "estimate"] == pytest.approx(-th["b[fb]"])
    # one cell per mean: the mean and its SE are predict()'s at that row
    cells = bayesglmm.lsmeans(fit, "f", by="h", type="response")
    rows = pd.DataFrame([(f, h) for h in H_LEVELS for f in F_LEVELS], columns=["f", "h"])
    rows = rows.assign(x=xbar, w=d["w"].mean(), g=1)
    pred = fit.predict(rows, re="exclude")
    np.testing.assert_allclose(cells[["estimate", "se"]].to_numpy(),
                               pred[["estimate", "se"]].to_numpy(), rtol=1e-8)
    # simple effects: differences and slopes of the same mean (f at its most frequent
    # level 'a' when it is not the focal predictor)
    se = bayesglmm.simple_effects(fit, "f:h").data
    row = se[(se["h"] == "lo") & (se["term"] == "c - a")].iloc[0]
    assert row["estimate"] == pytest.approx(
        _cell_means(th, d, xbar, "c", "lo") - _cell_means(th, d, xbar, "a", "lo"), rel=1e-10)
    assert row["se"] > 0 and row["lower"] < row["estimate"] < row["upper"]
    slope = bayesglmm.simple_effects(fit, "x:h").data
    for h in H_LEVELS:  # forward difference with step 1e-4: relative error ~ b[x] * 1e-4 / 2
        got = slope.loc[slope["h"] == h, "estimate"].iloc[0]
        assert got == pytest.approx(th["b[x]"] * _cell_means(th, d, xbar, "a", h), rel=1e-4)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_lsmeans_and_simple_effects_from_draws(factor_model):
    """Sampled fits: the posterior mean and SD of the same quantities, draw by draw."""
    d = factor_model.spec.data
    fit = factor_model.sample(chains=2, warmup=500, sampling=300, seed=5, verbose=False)
    dr = fit.draws(NAMES, inc_random=False)
    th = {n: dr[n].to_numpy() for n in NAMES}
    xbar = d["x"].mean()
    resp = bayesglmm.lsmeans(fit, "f", type="response")
    for f in F_LEVELS:
        m = np.mean([_cell_means(th, d, xbar, f, h) for h in H_LEVELS], axis=0)
        assert resp.loc[f"f={f}", "estimate"] == pytest.approx(m.mean(), rel=1e-10)
        assert resp.loc[f"f={f}", "se"] == pytest.approx(m.std(ddof=1), rel=1e-8)
    se = bayesglmm.simple_effects(fit, "f:h").data
    diff = _cell_means(th, d, xbar, "b", "hi") - _cell_means(th, d, xbar, "a", "hi")
    row = se[(se["h"] == "hi") & (se["term"] == "b - a")].iloc[0]
    assert row["estimate"] == pytest.approx(diff.mean(), rel=1e-10)
    assert row["se"] == pytest.approx(diff.std(ddof=1), rel=1e-8)
