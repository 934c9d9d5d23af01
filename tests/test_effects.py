"""Conditional and simple effects (features §9.1, §9.2; issue 6) on the debate interaction model
``sat ~ talk * perf + (1 | group)`` (Model B), and predictions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from conftest import load_reference

import bayesglmm
from bayesglmm import conditional_effects, simple_effects

REF = load_reference("debate_model_b.json")
PERF = REF["simple_effects_talk_by_perf"]["perf"]


class OLSFit:
    """A fit through the plug-in interface of classical fits (estimates + covariance of the
    fixed effects): ordinary least squares computed here with numpy."""

    def __init__(self, model):
        self.model = model
        self._params = []
        X = np.column_stack([np.ones(model.spec.n_obs), model.spec.fixed.X])
        self.beta, self.cov, self.df = self.estimate(X, np.asarray(model.spec.response.y, float))

    @staticmethod
    def estimate(X, y):
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ beta
        df = len(y) - X.shape[1]
        return beta, resid @ resid / df * np.linalg.inv(X.T @ X), df

    def fixed_effects_cov(self):
        names = ["Intercept"] + [f"b[{n}]" for n in self.model.spec.fixed.names]
        return names, self.beta, self.cov


@pytest.fixture(scope="module")
def ols_interaction(debate):
    return OLSFit(bayesglmm.lm("sat ~ talk * perf", data=debate))


@pytest.fixture(scope="module")
def ols_factor(debate):
    d = debate.copy()
    d["skill"] = d["skill"].astype(str)
    return OLSFit(bayesglmm.lm("sat ~ skill * perf", data=d))


# ---- closed forms through the estimates + covariance interface (no Stan) ---------------------


def test_simple_slopes_closed_form_ols(ols_interaction):
    se = simple_effects(ols_interaction, "talk:perf")
    b, V = ols_interaction.beta, ols_interaction.cov  # Intercept, talk, perf, talk:perf
    assert list(se.data.columns) == ["moderator", "perf", "term", "estimate", "se", "lower",
                                     "upper", "df", "t value", "Pr"]
    assert (se.data["df"] == 296).all()
    assert se.data["perf"].tolist() == PERF
    assert (se.data["term"] == "Slope of talk").all()
    for m, row in zip(PERF, se.data.itertuples()):
        g = np.array([0, 1, 0, m])
        assert row.estimate == pytest.approx(g @ b, abs=1e-8)
        assert row.se == pytest.approx(np.sqrt(g @ V @ g), rel=1e-6)
        from scipy import stats

        q = stats.t.ppf(0.975, ols_interaction.df)  # classic fits with df use t quantiles
        assert row.upper == pytest.approx(g @ b + q * np.sqrt(g @ V @ g), rel=1e-6)
    text = se.format()
    assert text.startswith("--- Simple Effects Analysis ---") and "Slope of talk" in text


def test_categorical_focal_pairwise_contrasts(ols_factor):
    se = simple_effects(ols_factor, "skill:perf")
    assert len(se.data) == 3 * 3 and set(se.data["term"]) == {"2 - 1", "3 - 1", "3 - 2"}
    names = ["Intercept"] + [f"b[{n}]" for n in ols_factor.model.spec.fixed.names]
    b = dict(zip(names, ols_factor.beta))
    row = se.data[(se.data["term"] == "3 - 1") & (se.data["perf"] == PERF[0])].iloc[0]
    assert row.estimate == pytest.approx(b["b[skill3]"] + b["b[skill3:perf]"] * PERF[0], abs=1e-8)


def test_conditional_effects_categorical_and_errors(ols_factor):
    ce = conditional_effects(ols_factor, "skill:perf")
    assert ce.categorical_focal and len(ce.data) == 9
    assert ce._repr_png_()[:4] == b"\x89PNG"
    fig = ce.plot(observed=True)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Predicted value" and ax.get_title() == "Conditional effect of skill by perf"
    assert ax.get_legend().get_title().get_text() == "perf"
    with pytest.raises(ValueError, match="at most two"):
        conditional_effects(ols_factor, "skill:perf:talk")
    with pytest.raises(ValueError, match="'talk' is not a predictor"):
        conditional_effects(ols_factor, "talk")
    with pytest.raises(ValueError, match="two variables"):
        simple_effects(ols_factor, "skill")


# ---- Model B: MAP (delta method) and MCMC (draws) ---------------------------------------------


@pytest.mark.slow
def test_simple_effects_map_match_reference(interaction_map):
    ref = REF["simple_effects_talk_by_perf"]
    se = simple_effects(interaction_map, "talk:perf")
    # the reference is printed to 3 decimals: half a unit of the last digit + optimiser noise
    assert se.data["estimate"].to_numpy() == pytest.approx(ref["estimate"], abs=6e-4)
    assert se.data["se"].to_numpy() == pytest.approx(ref["se"], abs=6e-4)
    est = interaction_map.estimates
    for m, e in zip(PERF, se.data["estimate"]):  # identity link: b_talk + b_talk:perf * m
        assert e == pytest.approx(est["b[talk]"] + est["b[talk:perf]"] * m, abs=1e-7)
    assert se.method == "delta method"


@pytest.mark.slow
def test_effects_mcmc_match_draws(interaction_mcmc):
    d = interaction_mcmc.draws()
    se = simple_effects(interaction_mcmc, "talk:perf")
    for m, row in zip(PERF, se.data.itertuples()):
        s = d["b[talk]"] + d["b[talk:perf]"] * m
        assert row.estimate == pytest.approx(s.mean(), abs=1e-8)
        assert row.se == pytest.approx(s.std(ddof=1), rel=1e-6)
        assert row.lower == pytest.approx(np.percentile(s, 2.5), abs=1e-7)
    # features §12: MCMC gives the MAP figures to +/- 0.002 (posterior mean vs mode)
    assert se.data["estimate"].to_numpy() == pytest.approx(
        REF["simple_effects_talk_by_perf"]["estimate"], abs=0.004)
    ce = conditional_effects(interaction_mcmc, "talk:perf", resolution=5)
    assert list(ce.data.columns) == ["talk", "perf", "estimate", "se", "lower", "upper"]
    assert len(ce.data) == 15 and ce.moderator_values == PERF
    row = ce.data.iloc[7]
    mu = (d["Intercept"] + d["b[talk]"] * row.talk + d["b[perf]"] * row.perf
          + d["b[talk:perf]"] * row.talk * row.perf)
    assert row.estimate == pytest.approx(mu.mean(), abs=1e-8)
    assert row.upper == pytest.approx(np.percentile(mu, 97.5), abs=1e-7)
    text = repr(ce)
    assert "Conditional effect of talk by perf" in text and "2.93, 4.69, 6.45" in text
    fig = ce.plot(observed=True)
    assert fig.axes[0].get_xlabel() == "talk" and len(fig.axes[0].lines) == 3


@pytest.mark.slow
def test_conditional_effects_single_focal_map(interaction_map):
    ce = conditional_effects(interaction_map, "perf", resolution=3)
    est = interaction_map.estimates
    talk_mean = interaction_map.model.spec.data["talk"].mean()
    x = ce.data["perf"].iloc[0]
    expected = (est["Intercept"] + est["b[talk]"] * talk_mean + est["b[perf]"] * x
                + est["b[talk:perf]"] * talk_mean * x)
    assert ce.data["estimate"].iloc[0] == pytest.approx(expected, abs=1e-7)
    assert ce.moderator is None and ce.plot().axes[0].get_title() == "Conditional effect of perf"


@pytest.mark.slow
def test_predict_new_levels(interaction_mcmc, debate):
    nd = debate.head(3).copy()
    nd["group"] = [debate["group"].iloc[0], 10_001, 10_002]
    with pytest.raises(ValueError, match=r"newdata has 2 level\(s\) of 'group' .* not fitted "
                                         r"to: '10001', '10002'\. Pass allow_new_levels=True"):
        interaction_mcmc.predict(nd)
    with pytest.raises(ValueError, match="allow_new_levels=True"):
        interaction_mcmc.posterior_predict(nd)
    inc = interaction_mcmc.predict(nd, seed=1, allow_new_levels=True)
    exc = interaction_mcmc.predict(nd, re="exclude")
    assert interaction_mcmc.posterior_predict(nd, seed=1, allow_new_levels=True).shape == (4000, 3)
    assert list(inc.columns) == ["estimate", "se", "lower", "upper"] and len(inc) == 3
    # a new level adds the population SD to the uncertainty: sd^2 + var(fixed part)
    sd = interaction_mcmc.draws()["sd[group:Int]"]
    assert inc["se"].iloc[1] == pytest.approx(np.sqrt(exc["se"].iloc[1] ** 2 + (sd**2).mean()), rel=0.1)
    yrep = interaction_mcmc.posterior_predict(seed=1)
    assert yrep.shape == (4000, 300)
    y = interaction_mcmc.model.spec.response.y
    assert abs(yrep.mean() - y.mean()) < 0.05  # the predictive mean reproduces the data mean
    with pytest.raises(ValueError, match="re must be"):
        interaction_mcmc.predict(nd, re="yes")
    with pytest.raises(ValueError, match="lacks the column"):
        interaction_mcmc.predict(pd.DataFrame({"talk": [1]}))


@pytest.mark.slow
def test_simple_effects_classic_fit(cond_skill_classic):
    """Classic fits plug in through fixed_names/beta/vcov/fixed_df: each contrast's estimate,
    SE and Satterthwaite df equal L'beta, sqrt(L'VL), fixed_df(L) with L from the design."""
    f = cond_skill_classic
    se = simple_effects(f, "cond:skill")
    assert list(se.data["term"]) == ["1 - 0"] * 3 and list(se.data["skill"]) == ["1", "2", "3"]
    assert {"df", "t value", "Pr"} <= set(se.data.columns)
    spec = f.model.spec
    from bayesglmm.post.predict import fixed_design

    grid = pd.DataFrame({"cond": ["0", "1"], "skill": ["2", "2"]})
    X, _ = fixed_design(spec, grid)
    L = np.r_[0.0, X[1] - X[0]]
    b, V = f.beta, f.vcov.to_numpy()
    row = se.data.iloc[1]
    assert row.estimate == pytest.approx(L @ b, abs=1e-8)
    assert row.se == pytest.approx(np.sqrt(L @ V @ L), rel=1e-8)
    assert row.df == pytest.approx(f.fixed_df(L), rel=1e-8)


@pytest.mark.slow
def test_predict_map_point_and_delta_se(interaction_map, debate):
    nd = debate.head(2).copy()
    nd["group"] = [debate["group"].iloc[0], 10_001]
    est = interaction_map.estimates
    p_exc = interaction_map.predict(nd, re="exclude")
    row = nd.iloc[0]
    fixed = (est["Intercept"] + est["b[talk]"] * row.talk + est["b[perf]"] * row.perf
             + est["b[talk:perf]"] * row.talk * row.perf)
    assert p_exc["estimate"].iloc[0] == pytest.approx(fixed, abs=1e-7)
    p_inc = interaction_map.predict(nd, allow_new_levels=True)  # group 10001 is new
    re = interaction_map.random_effects(scale="natural").set_index("level")["estimate"]
    level = str(debate["group"].iloc[0])
    assert p_inc["estimate"].iloc[0] == pytest.approx(fixed + re[level], abs=1e-7)
    assert p_inc["estimate"].iloc[1] == pytest.approx(p_exc["estimate"].iloc[1], abs=1e-12)
    assert 0 < p_exc["se"].iloc[0] < 0.5
    with pytest.raises(ValueError, match="needs draws"):
        interaction_map.posterior_predict()


class PoissonMLFit(OLSFit):
    """Poisson GLM by iteratively reweighted least squares (numpy), through the estimates +
    covariance interface: tests the response scale (exp) and the delta method."""

    @staticmethod
    def estimate(X, y):
        beta = np.zeros(X.shape[1])
        beta[0] = np.log(y.mean())
        for _ in range(50):
            mu = np.exp(X @ beta)
            step = np.linalg.solve(X.T @ (mu[:, None] * X), X.T @ (y - mu))
            beta = beta + step
            if np.max(np.abs(step)) < 1e-12:
                break
        return beta, np.linalg.inv(X.T @ (np.exp(X @ beta)[:, None] * X)), None


def test_conditional_effects_response_scale_delta_method(debate):
    fit = PoissonMLFit(bayesglmm.glm("talk ~ perf + sat", data=debate, family="poisson"))
    ce = conditional_effects(fit, "perf:sat", resolution=4)
    assert ce.moderator_values == [1.0, 2.0, 3.0, 4.0, 5.0]  # sat has 5 values: each one
    b, V = fit.beta, fit.cov
    for row in ce.data.itertuples():
        x = np.array([1.0, row.perf, row.sat])
        mu = np.exp(x @ b)
        assert row.estimate == pytest.approx(mu, rel=1e-9)
        assert row.se == pytest.approx(mu * np.sqrt(x @ V @ x), rel=1e-5)
        assert row.lower == pytest.approx(mu - 1.959964 * row.se, rel=1e-5)
    se = simple_effects(fit, "perf:sat")
    x0 = debate["perf"].mean()
    for m, row in zip([1, 2, 3, 4, 5], se.data.itertuples()):
        eta = b[0] + b[1] * x0 + b[2] * m
        assert row.estimate == pytest.approx(b[1] * np.exp(eta), rel=1e-3)  # d mu / d perf
