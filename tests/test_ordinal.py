"""Marginal means and effects of ordinal families (bayesglmm/post/ordinal.py, with lsmeans and
conditional/simple effects): the cumulative logit family and the common-effect sequential model.

References:

* tests/reference/wine_clmm.json: ordinal::clmm(rating ~ temp + contact + (1 | judge), wine),
  estimates and full covariance (cutpoints and coefficients). emmeans' latent scale for clm/clmm
  (``mode = "latent"``, its default) is x'b minus the mean of the cutpoints, with SE
  sqrt(l' V l) over that covariance (emmeans' emm_basis.clm: the cutpoint columns of its
  linear function are -1/(C-1)); its ``mode = "mean.class"`` averages the mean class
  sum_k k P(y = k) = C - sum_k P(y <= k) over the reference grid, with a delta-method SE. Both
  are computed here from the clmm figures (no emmeans output is stored), the gradient of the
  mean class analytically: d/dc_k = -F'(c_k - eta), d/deta = sum_k F'(c_k - eta).
* The classic() fit agrees with clmm to ~2e-5 in the estimates and ~4e-5 relative in the
  covariance (measured; tests/test_classic.py asserts 1e-3), so the figures derived from them
  are asserted within 1e-3 (estimates, absolute) and 1e-3 (SEs, relative); measured
  differences: 2e-5 and 3e-5.
* Draw-based fits: the same quantities computed here draw by draw from the draws of (b, c), by
  formulas written independently of the package (mean class as C - sum of the cumulative
  probabilities, or 1 + sum of the continuation products for the sequential model).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from conftest import load_reference
from scipy.special import expit

import bayesglmm

REF = load_reference("wine_clmm.json")
THETA = np.array([r["estimate"] for r in REF["cutpoints_theta"]])
BETA = {r["term"]: r["estimate"] for r in REF["coefficients_beta"]}
V6 = np.array(REF["vcov_all"]["matrix"])[:6, :6]  # 1|2 .. 4|5, tempwarm, contactyes
CUTS = [f"cutpoints[C{k}]" for k in range(1, 5)]


def _cell(temp: str, contact: str) -> np.ndarray:
    """The wine design row (tempwarm, contactyes) of a cell."""
    return np.array([temp == "warm", contact == "yes"], dtype=float)


def _latent_L(temp: str | None, contact: str | None) -> np.ndarray:
    """emmeans' latent linear function over (c_1..c_4, tempwarm, contactyes): an unspecified
    factor is averaged over its two levels."""
    tw = 0.5 if temp is None else float(temp == "warm")
    cy = 0.5 if contact is None else float(contact == "yes")
    return np.array([-0.25] * 4 + [tw, cy])


def _mean_class_and_grad(theta: np.ndarray, x: np.ndarray):
    """Mean class of the cumulative logit model at design row x and its gradient over
    (c_1..c_4, b): C - sum_k F(c_k - eta)."""
    eta = x @ theta[4:]
    F = expit(theta[:4] - eta)
    f = F * (1 - F)
    return 5 - F.sum(), np.concatenate([-f, f.sum() * x])


# ----------------------------------------------------------------------------- classic = clmm


@pytest.mark.slow
def test_wine_latent_lsmeans_and_contrasts_equal_clmm(wine_flat_model):
    fit = wine_flat_model.classic(verbose=False)
    theta = np.concatenate([THETA, [BETA["tempwarm"], BETA["contactyes"]]])
    means = bayesglmm.lsmeans(fit, "temp", pairwise=True)
    assert "latent scale" in str(means)
    for temp in ("cold", "warm"):
        L = _latent_L(temp, None)
        row = means.loc[f"temp={temp}"]
        assert abs(row["estimate"] - L @ theta) < 1e-3, (temp, row["estimate"], L @ theta)
        assert row["se"] == pytest.approx(np.sqrt(L @ V6 @ L), rel=1e-3)
    # the contrast of the two levels is minus the coefficient, with clmm's SE, z and p
    ct = means.contrasts.loc["(temp=cold) - (temp=warm)"]
    ref = REF["coefficients_beta"][0]
    assert abs(ct["estimate"] + ref["estimate"]) < 1e-3
    assert ct["se"] == pytest.approx(ref["se"], rel=1e-3)
    assert ct["z"] == pytest.approx(-ref["z"], rel=1e-3)
    assert ct["p"] == pytest.approx(ref["p"], rel=1e-2)
    # exactly the fit's own estimates: means are x'b - mean(c)
    est = fit.summary()["estimate"]
    own = np.concatenate([[est[c] for c in CUTS], [est["b[tempwarm]"], est["b[contactyes]"]]])
    np.testing.assert_allclose(means["estimate"], [_latent_L(t, None) @ own
                                                   for t in ("cold", "warm")], rtol=1e-12)
    # cells (by=), and the simple-effect test of contact within each temp: a Wald chi-square
    # equal to the squared z of contactyes (the model has no interaction)
    cells = bayesglmm.lsmeans(fit, "contact", simple="temp")
    for temp in ("cold", "warm"):
        for contact in ("no", "yes"):
            L = _latent_L(temp, contact)
            row = cells.loc[f"temp={temp}:contact={contact}"]
            assert abs(row["estimate"] - L @ theta) < 1e-3
            assert row["se"] == pytest.approx(np.sqrt(L @ V6 @ L), rel=1e-3)
        assert cells.simple_tests.loc[f"temp={temp}", "Chisq"] == pytest.approx(
            REF["coefficients_beta"][1]["z"] ** 2, rel=2e-3)


@pytest.mark.slow
def test_wine_mean_class_and_probabilities_equal_clmm(wine_flat_model):
    fit = wine_flat_model.classic(verbose=False)
    theta = np.concatenate([THETA, [BETA["tempwarm"], BETA["contactyes"]]])
    resp = bayesglmm.lsmeans(fit, "temp", type="response")
    assert "mean class" in str(resp)
    for temp in ("cold", "warm"):
        parts = [_mean_class_and_grad(theta, _cell(temp, c)) for c in ("no", "yes")]
        want = np.mean([p[0] for p in parts])
        g = np.mean([p[1] for p in parts], axis=0)
        row = resp.loc[f"temp={temp}"]
        assert abs(row["estimate"] - want) < 1e-3, (row["estimate"], want)
        assert row["se"] == pytest.approx(np.sqrt(g @ V6 @ g), rel=1e-3)
        assert row["lower"] < row["estimate"] < row["upper"]
    # category probabilities: one row per mean and category; they sum to 1 and their mean
    # class is the response-scale mean; at clmm's estimates within 1e-3
    prob = bayesglmm.lsmeans(fit, "temp", type="prob")
    assert len(prob) == 10 and prob.by == ["rating"]
    for temp in ("cold", "warm"):
        p = np.array([prob.loc[f"temp={temp}:rating={k}", "estimate"] for k in range(1, 6)])
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        assert p @ np.arange(1, 6) == pytest.approx(resp.loc[f"temp={temp}", "estimate"],
                                                    rel=1e-12)
        F = np.mean([expit(THETA - _cell(temp, c) @ theta[4:]) for c in ("no", "yes")], axis=0)
        np.testing.assert_allclose(p, np.diff(np.concatenate([[0], F, [1]])), atol=1e-3)
    assert np.all(prob["se"] > 0)
    ax = prob.plot().axes[0]  # bars per temp, one colour per category
    assert ax.get_ylabel() == "Probability" and len(ax.containers) >= 5


# ----------------------------------------------------------------------------- MAP: effects


@pytest.mark.slow
def test_wine_effects_map(wine_flat_model, tmp_path):
    """conditional_effects (mean class; categories) and simple_effects of a MAP fit (flat
    prior: the Laplace ML of clmm, tests/test_family_fits.py) agree with lsmeans of one cell;
    a saved fit gives the same figures."""
    fit = wine_flat_model.optimize(verbose=False)
    cells = bayesglmm.lsmeans(fit, "temp", by="contact", type="response")
    again = bayesglmm.lsmeans(bayesglmm.load(fit.save(tmp_path / "wine")), "temp", by="contact",
                              type="response")
    pd.testing.assert_frame_equal(again.to_frame(), cells.to_frame())
    ce = bayesglmm.conditional_effects(fit, "temp:contact")
    assert "Mean class" in ce.format()
    for _, r in ce.data.iterrows():
        want = cells.loc[f"contact={r['contact']}:temp={r['temp']}"]
        assert r["estimate"] == pytest.approx(want["estimate"], rel=1e-10)
        assert r["se"] == pytest.approx(want["se"], rel=1e-6)
    cat = bayesglmm.conditional_effects(fit, "temp:contact", categorical=True)
    d = cat.data
    assert list(d.columns) == ["temp", "contact", "category", "estimate", "se", "lower", "upper"]
    assert len(d) == 4 * 5 and list(d["category"].cat.categories) == ["1", "2", "3", "4", "5"]
    sums = d.groupby(["temp", "contact"], observed=True)["estimate"].sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-12)
    mc = d.assign(k=d["category"].astype(int) * d["estimate"]).groupby(
        ["temp", "contact"], observed=True)["k"].sum()
    for _, r in ce.data.iterrows():
        assert mc[(r["temp"], r["contact"])] == pytest.approx(r["estimate"], rel=1e-10)
    se = bayesglmm.simple_effects(fit, "temp:contact").data
    for contact in ("no", "yes"):
        row = se[(se["contact"] == contact) & (se["term"] == "warm - cold")].iloc[0]
        m = ce.data.set_index(["temp", "contact"])["estimate"]
        assert row["estimate"] == pytest.approx(m[("warm", contact)] - m[("cold", contact)],
                                                rel=1e-10)
        assert 0 < row["se"] < 0.5 and row["lower"] < row["estimate"] < row["upper"]
    # the plot: one panel per moderator level, one series per category
    fig = cat.plot()
    assert len(fig.axes) == 2 and all(len(ax.containers) == 5 for ax in fig.axes)


# ----------------------------------------------------------------------------- draws


@pytest.mark.slow
def test_wine_lsmeans_and_effects_from_draws(wine_flat_model):
    """Sampled fits: posterior mean and SD over the draws of the same quantities."""
    m = bayesglmm.glmer("rating ~ temp + contact + (1 | judge)",
                        wine_flat_model._build_args["data"], family="ordered",
                        prior=bayesglmm.prior_normal())
    fit = m.sample(chains=2, warmup=300, sampling=300, seed=2, verbose=False)
    dr = fit.draws(CUTS + ["b[tempwarm]", "b[contactyes]"], inc_random=False)
    c = dr[CUTS].to_numpy()
    b = dr[["b[tempwarm]", "b[contactyes]"]].to_numpy()
    latent = bayesglmm.lsmeans(fit, "temp", pairwise=True)
    for temp in ("cold", "warm"):
        x = (_cell(temp, "no") + _cell(temp, "yes")) / 2
        want = b @ x - c.mean(axis=1)
        assert latent.loc[f"temp={temp}", "estimate"] == pytest.approx(want.mean(), rel=1e-10)
        assert latent.loc[f"temp={temp}", "se"] == pytest.approx(want.std(ddof=1), rel=1e-8)
    diff = latent.contrasts.loc["(temp=cold) - (temp=warm)"]
    assert diff["estimate"] == pytest.approx(-b[:, 0].mean(), rel=1e-10)

    def mean_class(temp, contact):
        return 5 - expit(c - (b @ _cell(temp, contact))[:, None]).sum(axis=1)

    resp = bayesglmm.lsmeans(fit, "contact", type="response")
    for contact in ("no", "yes"):
        want = (mean_class("cold", contact) + mean_class("warm", contact)) / 2
        assert resp.loc[f"contact={contact}", "estimate"] == pytest.approx(want.mean(), rel=1e-10)
        assert resp.loc[f"contact={contact}", "se"] == pytest.approx(want.std(ddof=1), rel=1e-8)
    se = bayesglmm.simple_effects(fit, "contact:temp").data
    row = se[(se["temp"] == "warm") & (se["term"] == "yes - no")].iloc[0]
    want = mean_class("warm", "yes") - mean_class("warm", "no")
    assert row["estimate"] == pytest.approx(want.mean(), rel=1e-10)
    assert row["se"] == pytest.approx(want.std(ddof=1), rel=1e-8)
    cat = bayesglmm.conditional_effects(fit, "temp", categorical=True).data
    # 'contact' at its most frequent level (a tie: the first, 'no')
    p1 = expit(c[:, 0] - b @ _cell("warm", "no"))
    row = cat[(cat["temp"] == "warm") & (cat["category"] == "1")].iloc[0]
    assert row["estimate"] == pytest.approx(p1.mean(), rel=1e-10)
    assert row["lower"] == pytest.approx(np.percentile(p1, 2.5), rel=1e-10)


# ----------------------------------------------------------------------------- sequential


def _continuation_mean(c: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Mean class of the continuation-ratio model: 1 + sum_k prod_{j <= k} P(y > j | y >= j)."""
    go = expit(eta[..., None] - c)
    return 1 + np.cumprod(go, axis=-1).sum(axis=-1)


@pytest.fixture(scope="module")
def sequential_common(debate, toolchain):
    """debate, common-effect sequential model with a factor (its generic program: no compile)."""
    return bayesglmm.glmer("sat ~ talk + cond + (1 | group)", debate, family="sequential",
                           category_specific=False, factors=["cond"])


@pytest.mark.slow
def test_sequential_common_classic(sequential_common, debate):
    fit = sequential_common.classic(verbose=False)
    s = fit.summary()
    means = bayesglmm.lsmeans(fit, "cond", pairwise=True)
    ct = means.contrasts.loc["(cond=0) - (cond=1)"]
    # the contrast is minus the coefficient, with its SE (both the delta method over the
    # same covariance)
    assert ct["estimate"] == pytest.approx(-s.loc["b[cond1]", "estimate"], rel=1e-10)
    assert ct["se"] == pytest.approx(s.loc["b[cond1]", "se"], rel=1e-6)
    c = s.loc[CUTS, "estimate"].to_numpy()
    talk = debate["talk"].mean()
    for k, lev in enumerate(("0", "1")):
        eta = s.loc["b[talk]", "estimate"] * talk + k * s.loc["b[cond1]", "estimate"]
        assert means.loc[f"cond={lev}", "estimate"] == pytest.approx(eta - c.mean(), rel=1e-10)
    resp = bayesglmm.lsmeans(fit, "cond", type="response")
    for k, lev in enumerate(("0", "1")):
        eta = s.loc["b[talk]", "estimate"] * talk + k * s.loc["b[cond1]", "estimate"]
        assert resp.loc[f"cond={lev}", "estimate"] == pytest.approx(
            _continuation_mean(c, np.array(eta)), rel=1e-10)
        assert 0 < resp.loc[f"cond={lev}", "se"] < 0.5
    slope = bayesglmm.simple_effects(fit, "talk:cond").data
    for k, lev in enumerate(("0", "1")):
        eta0 = s.loc["b[talk]", "estimate"] * talk + k * s.loc["b[cond1]", "estimate"]
        h = 1e-4  # forward difference of simple_effects: error ~ curvature * h / 2 ~ 1e-5
        want = (_continuation_mean(c, np.array(eta0 + h * s.loc["b[talk]", "estimate"]))
                - _continuation_mean(c, np.array(eta0))) / h
        got = slope.loc[slope["cond"] == lev, "estimate"].iloc[0]
        assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.slow
def test_sequential_common_variational(sequential_common, debate):
    fit = sequential_common.variational(seed=3, verbose=False)
    dr = fit.draws(CUTS + ["b[talk]", "b[cond1]"], inc_random=False)
    c = dr[CUTS].to_numpy()
    resp = bayesglmm.lsmeans(fit, "cond", type="response")
    for k, lev in enumerate(("0", "1")):
        eta = dr["b[talk]"].to_numpy() * debate["talk"].mean() + k * dr["b[cond1]"].to_numpy()
        want = _continuation_mean(c, eta)
        assert resp.loc[f"cond={lev}", "estimate"] == pytest.approx(want.mean(), rel=1e-10)
        assert resp.loc[f"cond={lev}", "se"] == pytest.approx(want.std(ddof=1), rel=1e-8)
    ce = bayesglmm.conditional_effects(fit, "talk:cond", categorical=True, resolution=4)
    assert len(ce.data) == 2 * 4 * 5 and ce.method == "posterior draws"
    fig = ce.plot()
    assert len(fig.axes) == 2 and all(len(ax.lines) == 5 for ax in fig.axes)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.slow
def test_category_specific_and_non_ordinal_refusals(debate, toolchain):
    cs = bayesglmm.glmer("sat ~ talk + cond + (1 | group)", debate, family="sequential",
                         factors=["cond"]).optimize(verbose=False)
    for call in (lambda: bayesglmm.lsmeans(cs, "cond"),
                 lambda: bayesglmm.conditional_effects(cs, "talk"),
                 lambda: bayesglmm.simple_effects(cs, "talk:cond")):
        with pytest.raises(ValueError, match="category-specific coefficients.*"
                                             "category_specific=False"):
            call()
    gauss = bayesglmm.lm("sat ~ cond", debate, factors=["cond"]).classic(verbose=False)
    with pytest.raises(ValueError, match="type='prob'.*ordinal family, not 'gaussian'"):
        bayesglmm.lsmeans(gauss, "cond", type="prob")
    with pytest.raises(ValueError, match="categorical=True.*ordinal family, not 'gaussian'"):
        bayesglmm.conditional_effects(gauss, "cond", categorical=True)
    with pytest.raises(ValueError, match="type must be 'link', 'response' or 'prob'"):
        bayesglmm.lsmeans(gauss, "cond", type="latent")
