"""Fits with residual correlation, wide data and centring within cluster (issue 8).

References:
* a direct multivariate-normal likelihood (dense covariance per block, scipy.stats) maximised with
  scipy.optimize: ML and REML estimates of AR(1) / compound-symmetry models on simulated data
  (40 ids x 6 times, rows missing at random so that some lags are 2 or more);
* features.md section 12 (training.csv): lmer classic fixed effects of the wide model and the
  MAP of the AR(1) model (tests/reference/training_features12.json);
* the demeaned (fixed-effects) regression slope for centring within cluster;
* the classical split-plot (repeated-measures) ANOVA from sums of squares, and the Wald
  chi-square / marginal means computed directly from the classic fit's estimates and covariance.

Distinct Stan programs added here (each compiled once, cached by code hash):
  A. lm(y ~ x, resid_corr="ar1")                 flat prior, no random effects
  B. lmer(y ~ x + (1 | id), resid_corr="ar1")    flat prior, random intercept
  C. lmer(y ~ a * time, resid_corr="ar1")        normal prior (training data)
  D. lm(y ~ x, resid_corr="cs")                  flat prior
The gaussian random-intercept models without residual correlation (wide training data, cwc,
the 2 x 3 mixed ANOVA) have the code of conftest program 8 (structure only: the number of
columns is data).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SEED, load_reference
from scipy import optimize, stats

import bayesglmm as bg

pytestmark = pytest.mark.slow

RHO, SIGMA, TAU = 0.6, 1.5, 1.0
B0, B1 = 2.0, 0.7


def _simulate(seed: int = 8, tau: float = 0.0) -> pd.DataFrame:
    """40 ids x 6 times, AR(1) residuals (rho 0.6, sigma 1.5), then 10 % of rows dropped."""
    rng = np.random.default_rng(seed)
    n_id, n_t = 40, 6
    R = RHO ** np.abs(np.subtract.outer(np.arange(n_t), np.arange(n_t)))
    e = rng.multivariate_normal(np.zeros(n_t), SIGMA**2 * R, size=n_id)
    x = rng.normal(size=(n_id, n_t))
    u = tau * rng.normal(size=(n_id, 1))
    y = B0 + B1 * x + u + e
    df = pd.DataFrame({"id": np.repeat(np.arange(1, n_id + 1), n_t),
                       "time": np.tile(np.arange(1, n_t + 1), n_id),
                       "x": x.ravel(), "y": y.ravel()})
    keep = rng.uniform(size=len(df)) > 0.1
    return df.loc[keep].reset_index(drop=True)


# ----------------------------------------------------------------- the direct MVN reference


def _blocks(df: pd.DataFrame):
    out = []
    for _, b in df.groupby("id"):
        X = np.column_stack([np.ones(len(b)), b["x"].to_numpy()])
        out.append((b["y"].to_numpy(), X, b["time"].to_numpy()))
    return out


def _corr(kind: str, t: np.ndarray, rho: float) -> np.ndarray:
    if kind == "ar1":
        return rho ** np.abs(np.subtract.outer(t, t))
    return np.where(np.equal.outer(t, t), 1.0, rho)


def _profile(theta: np.ndarray, blocks, kind: str, reml: bool, with_tau: bool):
    """-log likelihood (ML or REML) with beta profiled out (GLS); returns (value, beta)."""
    sigma, rho = np.exp(theta[0]), np.tanh(theta[1])
    tau2 = np.exp(2 * theta[2]) if with_tau else 0.0
    Vs = [sigma**2 * _corr(kind, t, rho) + tau2 for _, _, t in blocks]
    XtVX = sum(X.T @ np.linalg.solve(V, X) for (_, X, _), V in zip(blocks, Vs))
    XtVy = sum(X.T @ np.linalg.solve(V, y) for (y, X, _), V in zip(blocks, Vs))
    beta = np.linalg.solve(XtVX, XtVy)
    ll = sum(stats.multivariate_normal(X @ beta, V).logpdf(y) for (y, X, _), V in zip(blocks, Vs))
    if reml:  # restricted likelihood (lme4/nlme convention)
        p = len(beta)
        ll += 0.5 * p * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(XtVX)[1]
    return -ll, beta


def _direct_fit(df: pd.DataFrame, kind: str = "ar1", reml: bool = False, with_tau: bool = False):
    blocks = _blocks(df)
    x0 = np.array([np.log(df["y"].std()), 0.3] + ([0.0] if with_tau else []))
    res = optimize.minimize(lambda th: _profile(th, blocks, kind, reml, with_tau)[0], x0,
                            method="Nelder-Mead",
                            options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 20000})
    value, beta = _profile(res.x, blocks, kind, reml, with_tau)
    out = {"Intercept": beta[0], "b[x]": beta[1], "sigma": np.exp(res.x[0]),
           "rho_resid": np.tanh(res.x[1]), "nll": value}
    if with_tau:
        out["sd[id:Int]"] = np.exp(res.x[2])
    return out


def _check(est: dict, ref: dict, names, tol: float = 1e-4) -> None:
    # optimiser precision: both optimisers converge to ~1e-6 (measured agreement: 6 decimals)
    for n in names:
        assert est[n] == pytest.approx(ref[n], rel=tol, abs=tol), n


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return _simulate()


@pytest.fixture(scope="module")
def sim_ri() -> pd.DataFrame:
    return _simulate(seed=9, tau=TAU)


@pytest.fixture(scope="module")
def ar1_model(sim, toolchain):
    m = bg.lm("y ~ x", sim, resid_corr="ar1", resid_time="time", resid_group="id")
    m.compile(verbose=False)
    return m


# ------------------------------------------------------------------------------------ tests


def test_simulated_data_has_gaps(sim, ar1_model):
    lags = ar1_model.stan_data["resid_lag"]
    assert len(sim) < 240 and lags.max() >= 2  # missing time points: lags of 2 or more


def test_ar1_ml_matches_direct_mvn(sim, ar1_model):
    ref = _direct_fit(sim, "ar1")
    fit = ar1_model.optimize(verbose=False)
    _check(fit.estimates, ref, ["Intercept", "b[x]", "sigma", "rho_resid"])
    assert fit.objective == pytest.approx(ref["nll"], abs=1e-4)  # flat prior: NLP = -logLik


def test_ar1_reml_matches_direct_mvn(sim, ar1_model):
    ref = _direct_fit(sim, "ar1", reml=True)
    fit = ar1_model.classic(verbose=False)
    s = fit.summary()
    _check(s["estimate"].to_dict(), ref, ["Intercept", "b[x]", "sigma", "rho_resid"])


@pytest.fixture(scope="module")
def ar1_fit(ar1_model):
    return ar1_model.sample(chains=4, warmup=1000, sampling=1000, seed=SEED, verbose=False)


def _pair_corr(e: np.ndarray, df: pd.DataFrame, same) -> float:
    """Correlation over draws and row pairs (i, j) of one id with ``same(ti, tj)`` of the
    residual draws ``e`` (draws, rows)."""
    i, j = [], []
    for _, b in df.groupby("id"):
        idx, t = b.index.to_numpy(), b["time"].to_numpy()
        for a in range(len(idx)):
            for c in range(len(idx)):
                if a != c and same(t[a], t[c]):
                    i.append(idx[a])
                    j.append(idx[c])
    return float(np.corrcoef(e[:, i].ravel(), e[:, j].ravel())[0, 1])


def test_ar1_posterior_predict_draws_correlated_residuals(ar1_fit, sim):
    """posterior_predict draws the residuals of an ar1 model jointly: the lag-1 (and lag-2)
    autocorrelation of the predictive residuals y_rep - E[y | draw] pooled over draws is the
    posterior mean of rho (rho^2). MC error of the pooled correlation: 4000 draws x ~150
    pairs, SD < 0.005; the spread of rho over draws (SD ~0.05) moves the pooled value by
    about var(rho)/2 ~ 0.002."""
    yrep = ar1_fit.posterior_predict(seed=3)
    mu = ar1_fit.predict(summary=False)
    e = yrep - mu
    rho = ar1_fit.draws("rho_resid")["rho_resid"].to_numpy()
    assert _pair_corr(e, sim, lambda a, b: b - a == 1) == pytest.approx(rho.mean(), abs=0.02)
    assert _pair_corr(e, sim, lambda a, b: b - a == 2) == pytest.approx(np.mean(rho**2),
                                                                        abs=0.02)
    sig = ar1_fit.draws("sigma")["sigma"].to_numpy()
    assert e.std() == pytest.approx(np.sqrt(np.mean(sig**2)), rel=0.02)


def test_ar1_posterior_recovers_rho(ar1_fit):
    fit = ar1_fit
    rho = fit.draws("rho_resid")["rho_resid"].to_numpy()
    # the true value within 3 posterior SDs (the posterior SD, ~0.05, dominates MC error ~0.002)
    assert abs(rho.mean() - RHO) < 3 * rho.std()
    sig = fit.draws("sigma")["sigma"].to_numpy()
    assert abs(sig.mean() - SIGMA) < 3 * sig.std()


def test_ar1_with_random_intercept_laplace_ml(sim_ri, toolchain):
    m = bg.lmer("y ~ x + (1 | id)", sim_ri, resid_corr="ar1", resid_time="time")
    assert any("residual correlation within 'id'" in n for n in m.spec.notes)
    fit = m.optimize(verbose=False)  # Laplace over the random intercepts: exact for gaussian
    ref = _direct_fit(sim_ri, "ar1", with_tau=True)
    _check(fit.estimates, ref, ["Intercept", "b[x]", "sigma", "rho_resid", "sd[id:Int]"],
           tol=1e-4)
    assert fit.objective == pytest.approx(ref["nll"], abs=1e-3)  # Laplace NLP = -logLik


def test_cs_matches_direct_mvn_and_random_intercept(sim_ri, toolchain):
    m = bg.lm("y ~ x", sim_ri, resid_corr="cs", resid_group="id")
    post = m.sample(seed=SEED, verbose=False)
    # posterior_predict: every pair of rows of one id has residual correlation rho
    e = post.posterior_predict(seed=4) - post.predict(summary=False)
    rho = post.draws("rho_resid")["rho_resid"].to_numpy()
    assert _pair_corr(e, sim_ri, lambda a, b: True) == pytest.approx(rho.mean(), abs=0.02)
    fit = m.optimize(verbose=False)
    ref = _direct_fit(sim_ri, "cs")
    _check(fit.estimates, ref, ["Intercept", "b[x]", "sigma", "rho_resid"])
    # compound symmetry with rho > 0 is the random-intercept model: sd^2 = rho sigma^2
    ri = bg.lmer("y ~ x + (1 | id)", sim_ri).optimize(verbose=False)
    e = fit.estimates
    assert ri.estimates["sd[id:Int]"] ** 2 == pytest.approx(e["rho_resid"] * e["sigma"] ** 2,
                                                              rel=2e-3)
    assert ri.estimates["sigma"] ** 2 == pytest.approx((1 - e["rho_resid"]) * e["sigma"] ** 2,
                                                         rel=2e-3)


# ------------------------------------------------------------- training.csv (features 12)


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    return bg.load_training()


def test_wide_training_classic_matches_features(training, toolchain):
    ref = load_reference("training_features12.json")["wide_lmer_classic"]
    m = bg.lmer("cbind(time1, time2, time3, time4) ~ a * time + (1 | ID)", training,
                within={"time": 4})
    s = m.classic(verbose=False).summary()["estimate"]
    for name in ("b[a]", "b[a:time1]", "sigma", "sd[ID:Int]"):
        assert s[name] == pytest.approx(ref[name], rel=1e-3), name
    # sum coding: the intercept plus the time effects are the time means averaged over a
    # (balanced design: cell means), i.e. (mean(a=0) + mean(a=1)) / 2 per occasion
    wide = training[["time1", "time2", "time3", "time4"]]
    cell = (wide[training["a"] == 0].mean() + wide[training["a"] == 1].mean()) / 2
    t = [s["b[time1]"], s["b[time2]"], s["b[time3]"]]
    mean_a = training["a"].mean()
    fitted = s["Intercept"] + mean_a * s["b[a]"] + np.array(t + [-sum(t)]) + mean_a * np.array(
        [s["b[a:time1]"], s["b[a:time2]"], s["b[a:time3]"],
         -(s["b[a:time1]"] + s["b[a:time2]"] + s["b[a:time3]"])])
    np.testing.assert_allclose(fitted, cell.to_numpy(), atol=1e-5)
    np.testing.assert_allclose(wide.mean().to_numpy(), ref["time_means"], atol=5e-6)


def test_training_ar1_map_matches_features(training, toolchain):
    ref = load_reference("training_features12.json")["ar1_map"]
    m = bg.lmer("cbind(time1:time4) ~ a * time", training, within={"time": 4},
                resid_corr="ar1", resid_time="time", resid_group="ID",
                prior=bg.prior_normal())
    e = m.optimize(verbose=False).estimates
    s2, rho = e["sigma"] ** 2, e["rho_resid"]
    # The reference adds 0.001 to every diagonal element (its V = sigma^2 R + 0.001 I); we do not
    # (nlme::gls does not). The fitted block covariance is the same: our residual variance
    # sigma^2 matches the reference's sigma^2 + 0.001 and our lag-1 covariance sigma^2 rho its
    # sigma^2 rho, to optimiser precision (measured: 7e-6 and 1.6e-4 relative).
    assert s2 == pytest.approx(ref["sigma"] ** 2 + ref["diagonal_jitter"], rel=5e-4)
    assert s2 * rho == pytest.approx(ref["sigma"] ** 2 * ref["rho_resid"], rel=5e-4)
    # hence sigma and rho_resid themselves differ slightly (measured 2.5e-4 and 6.5e-4 relative)
    assert e["sigma"] == pytest.approx(ref["sigma"], rel=1e-3)
    assert e["rho_resid"] == pytest.approx(ref["rho_resid"], rel=1.5e-3)


# --------------------------------------------------------------------- centring within cluster


def test_cwc_slope_equals_demeaned_regression(toolchain):
    rng = np.random.default_rng(11)
    G, n = 30, 5  # balanced
    g = np.repeat(np.arange(G), n)
    xm = rng.normal(size=G)[g] * 2
    x = xm + rng.normal(size=G * n)
    y = 1 + 0.4 * (x - xm) + 1.2 * xm + rng.normal(size=G)[g] * 0.7 + rng.normal(size=G * n)
    df = pd.DataFrame({"g": g, "x": x, "y": y})
    xd = x - df.groupby("g")["x"].transform("mean").to_numpy()
    yd = y - df.groupby("g")["y"].transform("mean").to_numpy()
    within_slope = float(xd @ yd / (xd @ xd))
    both = bg.lmer("y ~ x_cwc + x_cm + (1 | g)", df, cwc={"cluster": "g", "pars": ["x"]})
    e = both.optimize(verbose=False).estimates
    assert e["b[x_cwc]"] == pytest.approx(within_slope, rel=1e-6, abs=1e-6)
    assert abs(e["b[x_cm]"] - within_slope) > 0.3  # the between slope differs (1.2 vs 0.4)
    only = bg.lmer("y ~ x + (1 | g)", df, cwc={"cluster": "g", "pars": ["x"]})
    assert only.optimize(verbose=False).estimates["b[x]"] == pytest.approx(within_slope,
                                                                           rel=1e-6, abs=1e-6)


# -------------------------------------------------- 2 (between) x 3 (within) mixed ANOVA


@pytest.fixture(scope="module")
def split_plot() -> pd.DataFrame:
    """Balanced wide data: 2 groups x 12 subjects, 3 occasions (columns t1, t2, t3)."""
    rng = np.random.default_rng(23)
    m = 12
    group = np.repeat(["ctl", "trt"], m)
    subj = rng.normal(0, 1.0, size=2 * m)[:, None]
    eff = np.array([[0.0, 0.3, 0.6], [0.2, 0.9, 1.5]])[(group == "trt").astype(int)]
    y = 3 + subj + eff + rng.normal(0, 0.6, size=(2 * m, 3))
    return pd.DataFrame({"id": np.arange(1, 2 * m + 1), "group": group,
                         "t1": y[:, 0], "t2": y[:, 1], "t3": y[:, 2]})


def _split_plot_anova(wide: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """Classical split-plot ANOVA from sums of squares: term -> (F, df1, df2)."""
    Y = wide[["t1", "t2", "t3"]].to_numpy()
    g = wide["group"].to_numpy()
    n_t = Y.shape[1]
    gm = Y.mean()
    subj = Y.mean(axis=1)
    levels = np.unique(g)
    cell = np.array([Y[g == lv].mean(axis=0) for lv in levels])  # group x time means
    n_g = np.array([(g == lv).sum() for lv in levels])
    ss_group = n_t * sum(n * (c.mean() - gm) ** 2 for n, c in zip(n_g, cell))
    ss_subj = n_t * sum(((subj[g == lv] - cell[i].mean()) ** 2).sum() for i, lv in enumerate(levels))
    ss_time = len(Y) * ((Y.mean(axis=0) - gm) ** 2).sum()
    ss_cells = sum(n * ((c - gm) ** 2).sum() for n, c in zip(n_g, cell))
    ss_gt = ss_cells - ss_group - ss_time
    ss_total = ((Y - gm) ** 2).sum()
    ss_err = ss_total - ss_group - ss_subj - ss_time - ss_gt
    df_subj = len(Y) - len(levels)
    df_err = df_subj * (n_t - 1)
    return {"group": (ss_group / (len(levels) - 1) / (ss_subj / df_subj), len(levels) - 1, df_subj),
            "time": (ss_time / (n_t - 1) / (ss_err / df_err), n_t - 1, df_err),
            "group:time": (ss_gt / ((len(levels) - 1) * (n_t - 1)) / (ss_err / df_err),
                           (len(levels) - 1) * (n_t - 1), df_err)}


def test_mixed_anova_2x3_from_wide_data(split_plot, toolchain):
    m = bg.lmer("cbind(t1, t2, t3) ~ group * time + (1 | id)", split_plot, within={"time": 3})
    fit = m.classic(verbose=False)
    names = list(fit.fixed_names)
    beta, V = np.asarray(fit.beta), fit.vcov.to_numpy()
    # Wald chi-square per term = b' V^-1 b over the term's (sum-coded) columns
    chi = bg.anova(fit, test="Chisq")
    F = bg.anova(fit)
    ref = _split_plot_anova(split_plot)
    for term, cols in {"group": ["b[group1]"], "time": ["b[time1]", "b[time2]"],
                       "group:time": ["b[group1:time1]", "b[group1:time2]"]}.items():
        idx = [names.index(c) for c in cols]
        w = float(beta[idx] @ np.linalg.solve(V[np.ix_(idx, idx)], beta[idx]))
        assert chi.loc[term, "Chisq"] == pytest.approx(w, rel=1e-8), term
        assert chi.loc[term, "df"] == len(cols)
        # balanced split-plot design: REML + Satterthwaite = the classical repeated-measures
        # ANOVA (F and its df), to optimiser precision of the variance parameters
        f_ref, df1, df2 = ref[term]
        assert F.loc[term, "F value"] == pytest.approx(f_ref, rel=1e-4), term
        assert F.loc[term, "num_df"] == df1
        assert F.loc[term, "den_df"] == pytest.approx(df2, rel=1e-3), term
    # lsmeans of time (equal weights over group): l' beta and sqrt(l' V l) from the fit
    ls = bg.lsmeans(fit, "time")
    i0, t1, t2 = names.index("Intercept"), names.index("b[time1]"), names.index("b[time2]")
    for k, row in enumerate([{t1: 1.0}, {t2: 1.0}, {t1: -1.0, t2: -1.0}]):
        ell = np.zeros(len(names))
        ell[i0] = 1.0
        for j, v in row.items():
            ell[j] = v
        est, se = ls.iloc[k]["estimate"], ls.iloc[k]["se"]
        assert est == pytest.approx(ell @ beta, rel=1e-10)
        assert se == pytest.approx(np.sqrt(ell @ V @ ell), rel=1e-8)
        # balanced data: the marginal mean is the mean of the two group means of occasion k
        cell = split_plot.groupby("group")[f"t{k + 1}"].mean().mean()
        assert est == pytest.approx(cell, abs=1e-6)
