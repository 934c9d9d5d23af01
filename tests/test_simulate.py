"""Model.simulate(): response datasets from given parameter values or from the prior.

The checks are moments of the data-generating process, computed exactly from the model's
definition (features.md section 3: y = Intercept + X b + Z r + e), on many simulated datasets.
No compile is needed: simulation uses the model's data and the family table's generators.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import bayesglmm
from bayesglmm.prior_draws import lkj_corr
from bayesglmm.simulate import SimulatedData, required_parameters

DEBATE_TRUE = {"Intercept": 1.9, "b[talk]": 0.27, "b[perf]": 0.16, "sigma": 0.78,
               "sd[group:Int]": 0.46}


@pytest.fixture(scope="module")
def debate_normal(debate):
    return bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=debate,
                          prior=bayesglmm.prior_normal())


def test_required_parameters_and_errors(debate_normal):
    assert required_parameters(debate_normal) == list(DEBATE_TRUE)
    with pytest.raises(ValueError, match=r"lacks the value\(s\) of b\[perf\], sd\[group:Int\]"):
        debate_normal.simulate(2, {k: v for k, v in DEBATE_TRUE.items()
                                   if k not in ("b[perf]", "sd[group:Int]")})
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) b\[skill\]"):
        debate_normal.simulate(2, {**DEBATE_TRUE, "b[skill]": 1.0})
    with pytest.raises(ValueError, match=r"sd\[group:Int\] is a standard deviation"):
        debate_normal.simulate(2, {**DEBATE_TRUE, "sd[group:Int]": -1.0})
    with pytest.raises(ValueError, match="n must be a positive integer"):
        debate_normal.simulate(0, DEBATE_TRUE)
    with pytest.raises(TypeError, match="params must be a dict"):
        debate_normal.simulate(2, [1, 2])


def test_flat_prior_draws_are_refused(debate):
    m = bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=debate)
    with pytest.raises(ValueError, match=r"b\[talk\], b\[perf\], Intercept, sigma, "
                                         r"sd\[group:Int\] have a flat \(improper\) prior"):
        m.simulate(3)


def test_from_stan_is_refused(conjugate_model):
    with pytest.raises(ValueError, match="needs a model built from a formula"):
        conjugate_model.simulate(2, {"mu": 0})


def test_gaussian_moments(debate_normal, debate):
    """Mean Intercept + talk b_talk + perf b_perf, variance sigma^2 + sd^2 per row, covariance
    sd^2 between rows of one group and 0 between groups (4000 datasets)."""
    t = DEBATE_TRUE
    sim = debate_normal.simulate(4000, t, seed=1)
    assert isinstance(sim, SimulatedData) and len(sim) == 4000
    y = sim.y
    mu = t["Intercept"] + t["b[talk]"] * debate.talk + t["b[perf]"] * debate.perf
    se_mean = np.sqrt(t["sigma"] ** 2 + t["sd[group:Int]"] ** 2) / np.sqrt(4000)
    assert np.max(np.abs(y.mean(axis=0) - mu) / se_mean) < 4.5
    v = y.var(axis=0).mean()  # averaged over 300 rows
    assert v == pytest.approx(t["sigma"] ** 2 + t["sd[group:Int]"] ** 2, rel=0.02)
    g = debate.group.to_numpy()
    same = np.flatnonzero(g == g[0])[:2]
    other = np.flatnonzero(g != g[0])[0]
    c = np.cov(y[:, [same[0], same[1], other]].T)
    assert c[0, 1] == pytest.approx(t["sd[group:Int]"] ** 2, abs=0.03)
    assert abs(c[0, 2]) < 0.03
    # the datasets are the model's data with the response replaced
    d0 = sim[0]
    assert list(d0.columns) == list(debate.columns)
    assert np.array_equal(d0.sat.to_numpy(), y[0])
    assert d0.drop(columns="sat").equals(debate.drop(columns="sat"))
    assert sim.truth.shape == (4000, 5) and (sim.truth["b[talk]"] == 0.27).all()
    # seeded: the same draws again
    assert np.array_equal(debate_normal.simulate(3, t, seed=1).y,
                          debate_normal.simulate(3, t, seed=1).y)


def test_refit_dataset_has_the_same_structure(debate_normal):
    sim = debate_normal.simulate(2, DEBATE_TRUE, seed=3)
    m1 = debate_normal.update(data=sim[1])
    assert m1.stan_code == debate_normal.stan_code
    assert np.array_equal(m1.observed_response(), sim.y[1])


def test_binomial_mean_and_failures(cbpp):
    """cbind(incidence, failures): successes <= size, failures = size - successes, mean
    size * logistic(eta) with sd 0 (no group-level variation)."""
    m = bayesglmm.glmer("cbind(incidence, failures) ~ period + (1 | herd)", data=cbpp,
                        family="binomial")
    names = required_parameters(m)
    assert names == ["Intercept", "b[period2]", "b[period3]", "b[period4]", "sd[herd:Int]"]
    t = {"Intercept": -1.4, "b[period2]": -1.0, "b[period3]": -1.1, "b[period4]": -1.6,
         "sd[herd:Int]": 0.0}
    sim = m.simulate(3000, t, seed=2)
    d = sim[5]
    assert (d.incidence + d.failures == cbpp["size"]).all()
    assert (d.incidence.to_numpy() == sim.y[5]).all()
    eta = t["Intercept"] + np.select(
        [cbpp.period == p for p in "234"], [t[f"b[period{p}]"] for p in "234"], 0.0)
    p = expit(eta)
    mean = cbpp["size"] * p
    se = np.sqrt(cbpp["size"] * p * (1 - p) / 3000)
    assert np.max(np.abs(sim.y.mean(axis=0) - mean) / se) < 4.5


def test_ordinal_category_probabilities(wine_data):
    """Cumulative logit: P(y <= k) = logistic(c_k - eta), eta = temp b + contact b (sd 0)."""
    m = bayesglmm.glmer("rating ~ temp + contact + (1 | judge)", wine_data, family="ordered")
    names = required_parameters(m)
    assert names == ["b[tempwarm]", "b[contactyes]", "cutpoints[C1]", "cutpoints[C2]",
                     "cutpoints[C3]", "cutpoints[C4]", "sd[judge:Int]"]
    cuts = np.array([-1.3, 1.2, 3.5, 5.0])
    t = {"b[tempwarm]": 2.5, "b[contactyes]": 1.5, **{f"cutpoints[C{k + 1}]": c
                                                       for k, c in enumerate(cuts)},
         "sd[judge:Int]": 0.0}
    sim = m.simulate(4000, t, seed=4)
    row = int(np.flatnonzero((wine_data.temp == "warm") & (wine_data.contact == "yes"))[0])
    eta = 2.5 + 1.5
    cdf = np.r_[expit(cuts - eta), 1.0]
    probs = np.diff(np.r_[0.0, cdf])
    freq = np.bincount(sim.y[:, row], minlength=6)[1:] / 4000
    assert np.max(np.abs(freq - probs) / np.sqrt(probs * (1 - probs) / 4000 + 1e-12)) < 4.5
    # written back with the data's own coding
    assert sim[0].rating.dtype == wine_data.rating.dtype
    with pytest.raises(ValueError, match="must be increasing"):
        m.simulate(1, {**t, "cutpoints[C2]": -5.0})


@pytest.fixture(scope="module")
def wine_data():
    from conftest import REFERENCE

    return pd.read_csv(REFERENCE / "data" / "wine.csv")


@pytest.mark.parametrize("kind", ["ar1", "cs"])
def test_correlated_residuals(sleepstudy, kind):
    """Residuals drawn jointly within Subject: correlation rho^lag (ar1) or rho (cs)."""
    if kind == "ar1":
        m = bayesglmm.lmer("Reaction ~ Days + (1 | Subject)", data=sleepstudy, resid_corr=kind,
                           resid_time="Days")
    else:  # compound symmetry and a random intercept are the same covariance: lm()
        m = bayesglmm.lm("Reaction ~ Days", data=sleepstudy, resid_corr=kind,
                         resid_group="Subject")
    assert required_parameters(m)[-1] == "rho_resid"
    t = {"Intercept": 250.0, "b[Days]": 10.0, "sigma": 2.0, "rho_resid": 0.6}
    if kind == "ar1":
        t["sd[Subject:Int]"] = 0.0
    sim = m.simulate(6000, t, seed=5)
    e = sim.y - (250.0 + 10.0 * sleepstudy.Days.to_numpy())
    rows = np.flatnonzero(sleepstudy.Subject == sleepstudy.Subject.iloc[0])
    days = sleepstudy.Days.to_numpy()[rows]
    r = np.corrcoef(e[:, rows].T)
    i0, i1, i3 = (rows.tolist().index(rows[np.flatnonzero(days == d)[0]]) for d in (0, 1, 3))
    assert r[i0, i1] == pytest.approx(0.6, abs=0.04)
    assert r[i0, i3] == pytest.approx(0.6 if kind == "cs" else 0.6**3, abs=0.04)
    assert e.std() == pytest.approx(2.0, rel=0.02)


def test_prior_draws_follow_the_prior(debate_normal):
    """prior_normal(): sigma ~ Exponential(0.2) (mean 5), b ~ Normal(0, 10); the intercept is
    Intercept_c - means' b with Intercept_c ~ Normal(mu, 10)."""
    sim = debate_normal.simulate(4000, seed=6)
    tr = sim.truth
    assert list(tr.columns) == list(DEBATE_TRUE)
    assert tr.sigma.mean() == pytest.approx(5.0, rel=0.06)
    assert tr["b[talk]"].std() == pytest.approx(10.0, rel=0.05)
    d = debate_normal.stan_data
    means = np.asarray(d["X"]).mean(axis=0)
    ic = tr.Intercept + tr[["b[talk]", "b[perf]"]].to_numpy() @ means
    assert ic.mean() == pytest.approx(d["Intercept_mu"], abs=4 * 10 / np.sqrt(4000))
    assert ic.std() == pytest.approx(d["Intercept_sd"], rel=0.05)


def test_lkj_draws():
    """LKJ(1) in 2 dimensions is uniform on (-1, 1) (variance 1/3); in d dimensions the
    marginal of an element is Beta(eta - 1 + d/2, same) on (-1, 1): variance 1 / (2 eta + d - 1)."""
    rng = np.random.default_rng(0)
    r2 = np.array([lkj_corr(2, 1.0, rng)[0, 1] for _ in range(4000)])
    assert r2.var() == pytest.approx(1 / 3, rel=0.06)
    R = np.stack([lkj_corr(4, 2.0, rng) for _ in range(4000)])
    assert np.allclose(R, np.transpose(R, (0, 2, 1)))
    assert np.all(np.linalg.eigvalsh(R) > 0)
    assert R[:, 0, 3].var() == pytest.approx(1 / (2 * 2.0 + 4 - 1), rel=0.08)
    assert R[:, 1, 2].var() == pytest.approx(1 / (2 * 2.0 + 4 - 1), rel=0.08)


FORMULAS = {  # one model per family of the table (as tests/test_families.py), debate_plus
    "gaussian": "sat ~ talk + (talk | group)", "lognormal": "pos ~ talk + (1 | group)",
    "student_t": "sat ~ talk + (1 | group)", "gamma": "pos ~ talk + (1 | group)",
    "bernoulli": "hi ~ talk + (1 | group)", "binomial": "cbind(talk, fail) ~ perf + (1 | group)",
    "poisson": "talk ~ perf + offset(log(expo)) + (1 | group)",
    "neg_binomial": "talk ~ perf + (1 | group)", "ordered": "sat ~ talk + perf + (1 | group)",
    "sequential": "sat ~ talk + (1 | group)", "beta": "prop ~ talk + (1 | group)",
    "zero_inflated_poisson": "talk ~ perf + (1 | group)",
    "zero_inflated_neg_binomial": "talk ~ perf + (1 | group)",
}


@pytest.mark.parametrize("family", list(bayesglmm.families.FAMILIES))
def test_every_family_simulates_valid_refittable_data(family, debate_plus):
    """Each family of the table: simulated responses pass the family's response check and
    the datasets rebuild the same model (the response written back as the data codes it)."""
    fam = bayesglmm.families.FAMILIES[family]
    d = debate_plus.assign(prop=(debate_plus.sat - 0.5) / 5)
    m = bayesglmm.glmer(FORMULAS[family], data=d, family=family)
    values = {}
    for i, name in enumerate(required_parameters(m)):
        if name.startswith("cutpoints"):
            values[name] = -1.5 + i * 0.4
        elif name.startswith(("sd", "corr")):
            values[name] = 0.3
        elif name in fam.extra_names:
            values[name] = [p.lower for p in fam.extra if p.name == name][0] + 1.5
        else:
            values[name] = 0.1
    sim = m.simulate(3, values, seed=8)
    for i in range(3):
        fam.check_response(np.asarray(sim.y[i], dtype=float), "y")
        m2 = m.update(data=sim[i])
        assert m2.stan_code == m.stan_code
        assert np.array_equal(m2.observed_response(), sim.y[i])


def test_slices_keep_the_truth(debate_normal):
    sim = debate_normal.simulate(5, DEBATE_TRUE, seed=9)
    sub = sim[1:3]
    assert isinstance(sub, SimulatedData) and len(sub) == 2
    assert np.array_equal(sub.y, sim.y[1:3]) and len(sub.truth) == 2
    assert sub[0].equals(sim[1])
