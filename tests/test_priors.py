"""Prior objects, the y_range rule and the constants of features.md section 5."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayesglmm.priors import (
    PRIOR_KINDS,
    PRIOR_NAMES,
    PRIOR_TABLE,
    make_prior,
    prior_flat,
    prior_jzs,
    prior_normal,
    prior_rhs,
    prior_ssp,
    prior_weak,
)
from bayesglmm.spec import build_spec

F = "sat ~ talk + perf + (1 | group)"


def test_weak_debate_check(debate):
    # features.md section 5: debate, y_range = (1, 5): half 2, base 1 -> Intercept_c ~ N(3, 2),
    # sigma ~ Exp(1), sd ~ Exp(1), b[talk] ~ N(0, 1.0087), b[perf] ~ N(0, 0.5694)
    s = build_spec(F, debate, prior=prior_weak(), y_range=(1, 5))
    d = s.prior.data
    assert s.prior.name == "weak"
    assert (d["Intercept_mu"], d["Intercept_sd"]) == (3.0, 2.0)
    assert d["sigma_rate"] == 1.0
    np.testing.assert_allclose(d["sd_1_rate"], [1.0])
    np.testing.assert_allclose(d["b_mu"], [0, 0])
    np.testing.assert_allclose(d["b_sd"], [1.0087, 0.5694], atol=5e-5)
    np.testing.assert_allclose(d["b_sd"], 1.0 / debate[["talk", "perf"]].std(ddof=1).to_numpy())
    assert s.prior.constants == {"half": 2.0, "base": 1.0, "mid": 3.0, "alpha_sd": 2.0}


def test_y_range_on_prior_and_wrapper(debate):
    a = build_spec(F, debate, prior=prior_weak(y_range=(1, 5)))
    assert a.prior.data["Intercept_mu"] == 3.0
    b = build_spec(F, debate, prior=prior_weak(y_range=(0, 10)), y_range=(1, 5))  # wrapper wins
    assert b.prior.data["Intercept_mu"] == 3.0 and b.prior.data["Intercept_sd"] == 2.0


def test_y_range_turns_flat_into_weak(debate):
    s = build_spec(F, debate, y_range=(1, 5))
    assert s.prior.name == "weak" and s.prior.data["sigma_rate"] == 1.0
    assert make_prior(None).name == "flat"


def test_weak_needs_y_range_for_continuous(debate):
    for fam in ("gaussian", "student_t"):
        with pytest.raises(ValueError, match="y_range"):
            build_spec(F, debate, family=fam, prior="weak")


def test_weak_sd_ratio(debate):
    s = build_spec(F, debate, prior=prior_weak(sd_ratio=1.0, max_beta=2.0), y_range=(1, 5))
    # half 2, base 2: sigma_rate 1/2, tau 1/2, beta_sd = 2 * 2 / sd
    assert s.prior.data["sigma_rate"] == 0.5
    np.testing.assert_allclose(s.prior.data["sd_1_rate"], [0.5])
    np.testing.assert_allclose(s.prior.data["b_sd"],
                               4.0 / debate[["talk", "perf"]].std(ddof=1).to_numpy())
    assert s.prior.data["Intercept_sd"] == 2.0


def test_weak_logit_and_log_families(debate):
    d = debate.assign(hi=(debate.sat > 3).astype(int))
    s = build_spec("hi ~ talk + (1 | group)", d, family="bernoulli", prior="weak")
    base = math.pi / math.sqrt(3)
    assert s.prior.data["Intercept_mu"] == 0.0
    assert s.prior.data["Intercept_sd"] == pytest.approx(base)
    assert s.prior.data["b_sd"][0] == pytest.approx(base / debate.talk.std(ddof=1))
    np.testing.assert_allclose(s.prior.data["sd_1_rate"], [1 / base])
    s = build_spec("talk ~ perf + (1 | group)", debate, family="poisson", prior="weak")
    assert s.prior.data["Intercept_mu"] == pytest.approx(math.log(debate.talk.mean() + 0.5))
    assert s.prior.data["Intercept_sd"] == 0.5
    assert s.prior.data["b_sd"][0] == pytest.approx(1 / debate.perf.std(ddof=1))
    np.testing.assert_allclose(s.prior.data["sd_1_rate"], [1.0])
    s = build_spec("sat ~ talk + (1 | group)", debate, family="ordered", prior="weak")
    assert "Intercept_c" not in s.prior.terms and s.prior.data["b_sd"][0] == pytest.approx(
        base / debate.talk.std(ddof=1))


def test_normal_defaults(debate):
    s = build_spec(F, debate, prior=prior_normal())
    d = s.prior.data
    assert (d["Intercept_mu"], d["Intercept_sd"], d["sigma_rate"]) == (0.0, 10.0, 0.2)
    np.testing.assert_allclose(d["b_sd"], [10, 10])
    np.testing.assert_allclose(d["sd_1_rate"], [0.2])
    assert s.prior.terms == ("Intercept_c", "b", "sigma", "sd_1")
    assert s.centred


def test_normal_arguments_and_none(debate):
    s = build_spec(F, debate, prior=prior_normal(b_sd=5, mu_sd=None, Intercept_sd=3))
    assert s.prior.data["Intercept_sd"] == 3.0  # mu_sd falls back to Intercept_sd
    np.testing.assert_allclose(s.prior.data["b_sd"], [5, 5])
    s = build_spec(F, debate, prior=prior_normal(b_sd=None, sigma_rate=None))
    assert "b" not in s.prior.terms and "sigma" not in s.prior.terms


def test_extras_only_if_given(debate):
    s = build_spec(F, debate, family="student_t", prior=prior_normal())
    assert "nu" not in s.prior.terms
    s = build_spec(F, debate, family="student_t", prior=prior_normal(nu_rate=0.1))
    assert s.prior.data["nu_rate"] == 0.1


def test_extra_for_wrong_family(debate):
    with pytest.raises(ValueError, match="phi_rate.*'gaussian' has no parameter 'phi'"):
        build_spec(F, debate, prior=prior_normal(phi_rate=1))
    with pytest.raises(ValueError, match="cutpoint_sd"):
        build_spec(F, debate, prior=prior_normal(cutpoint_sd=1))


def test_flat(debate):
    s = build_spec(F, debate, prior=prior_flat())
    assert s.prior.terms == () and s.prior.data == {} and not s.centred


def test_overrides(debate):
    p = prior_normal(overrides={"b[talk]": 2.5, "Intercept_c": (3, 2), "sigma": 1.0,
                                "sd[group:Int]": 0.5})
    s = build_spec(F, debate, prior=p)
    d = s.prior.data
    np.testing.assert_allclose(d["b_sd"], [2.5, 10])
    assert (d["Intercept_mu"], d["Intercept_sd"], d["sigma_rate"]) == (3.0, 2.0, 1.0)
    np.testing.assert_allclose(d["sd_1_rate"], [0.5])
    # dict forms
    s2 = build_spec(F, debate, prior={"b[talk]": 2.5})
    np.testing.assert_allclose(s2.prior.data["b_sd"], [2.5, 10])
    s3 = build_spec(F, debate, prior={"name": "weak", "sd_ratio": 1.0}, y_range=(1, 5))
    assert s3.prior.name == "weak" and s3.prior.data["sigma_rate"] == 0.5
    s4 = build_spec(F, debate, prior={"b_sd": 5, "sigma": 2.0})
    np.testing.assert_allclose(s4.prior.data["b_sd"], [5, 5])
    assert s4.prior.data["sigma_rate"] == 2.0
    with pytest.raises(ValueError, match="b\\[nope\\]"):
        build_spec(F, debate, prior={"b[nope]": 1})
    with pytest.raises(ValueError, match="Unknown parameter 'tau'"):
        build_spec(F, debate, prior={"tau": 1})


def test_lkj(debate):
    s = build_spec("sat ~ talk + (talk | group)", debate, prior=prior_normal())
    assert s.prior.data["lkj_eta_1"] == 1.0 and "corr_1" in s.prior.terms
    s = build_spec("sat ~ talk + (talk | group)", debate, prior=prior_normal(lkj_eta=2))
    assert s.prior.data["lkj_eta_1"] == 2.0
    s = build_spec("sat ~ talk + (talk || group)", debate, prior=prior_normal(lkj_eta=2))
    assert "lkj_eta_1" not in s.prior.data


def test_invalid_arguments():
    with pytest.raises(ValueError, match="b_sd"):
        prior_normal(b_sd=-1)
    with pytest.raises(ValueError, match="y_range"):
        prior_weak(y_range=(5, 1))
    with pytest.raises(ValueError, match="Unknown prior 'cauchy'"):
        make_prior("cauchy")
    with pytest.raises(TypeError):
        make_prior(3.0)


def test_repr():
    assert repr(prior_weak(y_range=(1, 5))).startswith("prior_weak(")
    assert "b_sd=5" in repr(prior_normal(b_sd=5))


# features.md section 12, model A (debate): the exact (Gaussian) marginal posterior mode over
# (Intercept, b, sigma, sd) with the random effects integrated out. Reproducing the reference NLP
# and estimates checks every prior constant and the centring convention (Intercept_c).
REFERENCE_MAP = {  # (formula, prior): (NLP, [Intercept, b..., sigma, sd])
    (F, "normal"): (399.64, [1.89503, 0.26515, 0.15723, 0.77791, 0.46110]),
    (F, "weak"): (390.68, [1.89921, 0.26463, 0.15661, 0.77736, 0.45825]),
    (F, "flat"): (386.45, [1.89527, 0.26511, 0.15724, 0.77804, 0.46184]),
    ("sat ~ talk * perf + (1 | group)", "normal"):
        (391.51, [4.11318, -0.44710, -0.31046, 0.14876, 0.73811, 0.47514]),
}


@pytest.mark.parametrize("formula,which", list(REFERENCE_MAP))
def test_prior_constants_reproduce_reference_map(debate, formula, which):
    from scipy import optimize, stats

    from bayesglmm.codegen import generate

    prior = {"normal": prior_normal(), "weak": prior_weak(), "flat": prior_flat()}[which]
    s = build_spec(formula, debate, prior=prior, y_range=(1, 5) if which == "weak" else None)
    d = generate(s).data
    X, y, J = d["X"], d["y"], d["J_1"] - 1
    K = X.shape[1]
    Xu = X - X.mean(axis=0) if s.centred else X
    order = np.argsort(J, kind="stable")
    assert (np.bincount(J) == 3).all()  # every group has 3 members: batch them
    Y, XG = y[order].reshape(-1, 3), Xu[order].reshape(-1, 3, K)

    def nlp(th):
        a, b, ls, lt = th[0], th[1:-2], th[-2], th[-1]
        sig, tau = np.exp(ls), np.exp(lt)
        S = sig**2 * np.eye(3) + tau**2 * np.ones((3, 3))
        R = Y - a - XG @ b
        _, logdet = np.linalg.slogdet(S)
        quad = np.einsum("gi,ij,gj->", R, np.linalg.inv(S), R)
        ll = -0.5 * (quad + len(Y) * (logdet + 3 * np.log(2 * np.pi)))
        lp = 0.0
        if s.prior.name != "flat":
            lp += stats.norm.logpdf(a, d["Intercept_mu"], d["Intercept_sd"])
            lp += stats.norm.logpdf(b, d["b_mu"], d["b_sd"]).sum()
            lp += stats.expon.logpdf(sig, scale=1 / d["sigma_rate"])
            lp += stats.expon.logpdf(tau, scale=1 / d["sd_1_rate"][0])
        return -(ll + lp)

    x0 = np.concatenate([[3.0], np.zeros(K), [0.0, -1.0]])
    r = optimize.minimize(nlp, x0, method="BFGS", options={"gtol": 1e-8})
    r = optimize.minimize(nlp, r.x, method="Nelder-Mead",
                          options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 40000,
                                   "maxfev": 40000})
    a, b, ls, lt = r.x[0], r.x[1:-2], r.x[-2], r.x[-1]
    icpt = a - X.mean(axis=0) @ b if s.centred else a
    want_nlp, want = REFERENCE_MAP[(formula, which)]
    assert r.fun == pytest.approx(want_nlp, abs=6e-3)
    np.testing.assert_allclose([icpt, *b, np.exp(ls), np.exp(lt)], want, rtol=1e-3)


# ----------------------------------------------------------------------------- zero part (b_zi)


def _zi_spec(debate, prior, zi="~ sat + cond"):
    return build_spec("talk ~ perf + (1 | group)", debate, family="zero_inflated_poisson",
                      prior=prior, zi=zi)


def test_zero_part_normal_prior(debate):
    s = _zi_spec(debate, prior_normal())
    assert "b_zi" in s.prior.terms
    np.testing.assert_array_equal(s.prior.data["b_zi_mu"], [0, 0, 0])
    np.testing.assert_array_equal(s.prior.data["b_zi_sd"], [10, 10, 10])
    assert "b_zi[Intercept] ~ Normal(0, 10)" in s.prior.describe()
    assert "  prior: b_zi[sat] ~ Normal(0, 10)" in str(s).splitlines()
    assert not any("flat priors" in n for n in s.notes)
    s2 = _zi_spec(debate, prior_normal(b_zi_sd=2.5))
    np.testing.assert_array_equal(s2.prior.data["b_zi_sd"], [2.5, 2.5, 2.5])
    # dropped with None: the zero part is flat, and the spec says so
    s3 = _zi_spec(debate, prior_normal(b_zi_sd=None))
    assert "b_zi" not in s3.prior.terms
    assert any("b_zi have flat priors" in n for n in s3.notes)
    assert "b_zi" not in _zi_spec(debate, prior_flat()).prior.terms
    # the Stan code has the table's statement; the flat model has none
    from bayesglmm.codegen import generate

    assert "target += normal_lpdf(beta_zi | b_zi_mu, b_zi_sd);" in generate(s).code
    assert "b_zi_sd" not in generate(s3).code
    # families without a zero part ignore the argument (as sigma_rate for poisson)
    p = build_spec("talk ~ perf", debate, family="poisson", prior=prior_normal(b_zi_sd=1.0))
    assert "b_zi" not in p.prior.terms


def test_zero_part_weak_prior(debate):
    """prior_weak: that of a logistic regression on the zi= design (logit constants)."""
    s = _zi_spec(debate, prior_weak(max_beta=2.0))
    base = math.pi / math.sqrt(3)
    assert s.prior.zi_names == ("Intercept", "sat", "cond")
    want = [2.0 * base, 2.0 * base / debate["sat"].std(ddof=1),
            2.0 * base / debate["cond"].std(ddof=1)]
    np.testing.assert_allclose(s.prior.data["b_zi_sd"], want, rtol=1e-12)
    np.testing.assert_array_equal(s.prior.data["b_zi_mu"], [0, 0, 0])
    with pytest.raises(ValueError, match=r"zero-inflation columns are constant: b_zi\[one\]"):
        _zi_spec(debate.assign(one=1.0), prior_weak(), zi="~ one")
    # a zi= formula without intercept: every column scaled by its SD
    s0 = _zi_spec(debate, prior_weak(), zi="~ 0 + sat")
    np.testing.assert_allclose(s0.prior.data["b_zi_sd"],
                               [base / debate["sat"].std(ddof=1)], rtol=1e-12)


def test_zero_part_overrides(debate):
    s = _zi_spec(debate, prior_weak(overrides={"b_zi[sat]": (0.5, 2.0), "b_zi[Intercept]": 3.0}))
    names = s.prior.zi_names
    d = dict(zip(names, zip(s.prior.data["b_zi_mu"], s.prior.data["b_zi_sd"])))
    assert d["sat"] == (0.5, 2.0) and d["Intercept"] == (0.0, 3.0)
    assert "b_zi[sat] ~ Normal(0.5, 2)" in s.prior.describe()
    all_ = _zi_spec(debate, prior_normal(b_zi_sd=None, overrides={"b_zi": 1.5}))
    np.testing.assert_array_equal(all_.prior.data["b_zi_sd"], [1.5, 1.5, 1.5])
    with pytest.raises(ValueError, match="some zero-inflation coefficients a prior but not "
                                         r"others.*b_zi\[Intercept\]"):
        _zi_spec(debate, prior_normal(b_zi_sd=None, overrides={"b_zi[sat]": 1.0}))
    with pytest.raises(ValueError, match=r"no coefficient 'b_zi\[nope\]'"):
        _zi_spec(debate, prior_normal(overrides={"b_zi[nope]": 1.0}))
    with pytest.raises(ValueError, match="family 'poisson' has no zero-inflation coefficients"):
        build_spec("talk ~ perf", debate, family="poisson",
                   prior=prior_normal(overrides={"b_zi": 1.0}))
    with pytest.raises(ValueError, match="b_zi_sd must be a positive number"):
        prior_normal(b_zi_sd=-1)


# ----------------------------------------------------------------------------- the table of priors


def test_prior_kinds_table(debate):
    """One row per prior constructor; a prior object and its resolution read their row."""
    assert PRIOR_NAMES == tuple(PRIOR_KINDS) == ("flat", "normal", "weak", "rhs", "ssp", "jzs")
    for name in PRIOR_NAMES:
        assert make_prior(name).kind is PRIOR_KINDS[name]
    assert [n for n, k in PRIOR_KINDS.items() if not k.proper] == ["flat"]
    assert [n for n, k in PRIOR_KINDS.items() if k.joint_b] == ["rhs", "ssp", "jzs"]
    assert {n: (k.ttest.label, k.ttest.effect, k.ttest.effect_prior)
            for n, k in PRIOR_KINDS.items() if k.ttest} == {
        "flat": ("flat", "diff", "none"), "normal": ("normal", "diff", "normal"),
        "weak": ("normal", "diff", "normal"), "jzs": ("jzs", "delta", "cauchy")}
    s = build_spec(F, debate, prior=prior_weak(y_range=(1, 5)))
    assert s.prior.kind is PRIOR_KINDS["weak"] and s.prior.kind.proper
    assert not build_spec(F, debate).prior.kind.proper


def test_ttest_hyperparameters_from_the_table():
    """The t-test's prior data (prior table): prior_normal's arguments, prior_weak scaled by
    y_range and the group shares, the JZS scale."""
    tt = PRIOR_KINDS["normal"].ttest
    assert tt.data(prior_normal(b_sd=2, sigma_rate=0.5, mu_sd=3), False, 10, 30) == {
        "diff_sd": 2.0, "sd_rate": 0.5, "mean_mu": 0.0, "mean_sd": 3.0}
    assert tt.data(prior_normal(), True, 10, 0) == {"diff_sd": 10.0, "sd_rate": 0.2}
    weak = PRIOR_KINDS["weak"].ttest.data
    d = weak(prior_weak(y_range=(1, 5)), False, 10, 30)  # half 2, base 1, p = 1/4
    assert d["diff_sd"] == pytest.approx(1 / math.sqrt(0.25 * 0.75))
    assert (d["sd_rate"], d["mean_mu"], d["mean_sd"]) == (1.0, 3.0, 2.0)
    assert weak(prior_weak(y_range=(1, 5)), True, 10, 0)["diff_sd"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="prior_weak.*y_range"):
        weak(prior_weak(), True, 10, 0)
    assert PRIOR_KINDS["jzs"].ttest.data(prior_jzs(r=1.0), False, 5, 5) == {"jzs_r": 1.0}


def test_coefficient_prior_rows(debate):
    """Rows on the coefficients (on_b), and the generators of the shrinkage priors' draws,
    whose sample moments match their definitions (50,000 draws)."""
    assert [r.key for r in PRIOR_TABLE if r.on_b] == ["b", "b_rhs", "b_ssp", "b_jzs"]
    assert [r.key for r in PRIOR_TABLE if r.draw_b] == ["b_rhs", "b_ssp"]
    rows = {r.key: r for r in PRIOR_TABLE}
    rng = np.random.default_rng(3)
    n = 50_000
    # spike-and-slab with r fixed near 1/2 (a narrow logit-normal) and tau ~ Exp(rate 2):
    # beta = raw * r * tau, E|beta| = E|raw| E r E tau = 0.5 * 0.5 * 0.5
    d = {"ssp_raw_scale": 0.5, "ssp_logit_mu": 0.0, "ssp_logit_sd": 1e-6, "ssp_lo": 0.001,
         "ssp_hi": 0.999, "ssp_tau_rate": np.array([2.0, 2.0])}
    b = rows["b_ssp"].draw_b(n, 2, d, rng)
    # SD of |beta|: sqrt(E raw^2 E r^2 E tau^2 - 0.125^2) = sqrt(0.5 * 0.25 * 0.5 - 0.0156) ~ 0.22
    assert b.shape == (n, 2)
    assert np.abs(b).mean() == pytest.approx(0.125, abs=4 * 0.22 / math.sqrt(n))
    # horseshoe with a tiny global scale: beta is close to 0 (|beta| <= |z| lambda~ tau)
    d = {"hs_tau0": 1e-8, "hs_slab_df": 4.0, "hs_slab_scale": 2.0}
    b = rows["b_rhs"].draw_b(n, 3, d, rng)
    assert b.shape == (n, 3) and np.median(np.abs(b)) < 1e-6
    # and the shrinkage priors cannot hold single coefficients fixed
    for p in (prior_rhs(y_range=(1, 5)), prior_ssp(y_range=(1, 5))):
        assert build_spec(F, debate, prior=p).prior.kind.joint_b
