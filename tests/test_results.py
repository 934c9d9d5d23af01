"""Fit classes: summary columns and definitions, names, printed forms, idata, random effects."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayesglmm.results import (
    MAPFit,
    MCMCFit,
    Param,
    bracket_name,
    kde_mode,
    mcmc_summary_table,
    re_layout,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

STAN_LEAKS = re.compile(r"(^|[^a-z_])(beta|z_\d|L_\d|r_\d|Intercept_raw|lp__|log_lik)\b")
MCMC_COLUMNS = ["mean", "sd", "map", "q2.5", "q97.5", "ess_bulk", "ess_tail", "rhat"]


# --------------------------------------------------------------------------- pure functions


def test_bracket_name():
    assert bracket_name("beta.2") == "beta[2]"
    assert bracket_name("L_1.2.1") == "L_1[2,1]"
    assert bracket_name("sigma") == "sigma"


def test_kde_mode_matches_a_direct_kde():
    rng = np.random.default_rng(3)
    for x in (rng.normal(2, 1, 4000), rng.gamma(2.0, 1.0, 4000), rng.lognormal(0, 0.6, 4000)):
        n = x.size
        bw = 0.9 * min(x.std(ddof=1), stats.iqr(x) / 1.34) * n ** -0.2  # Silverman, R bw.nrd0
        grid = np.linspace(x.min(), x.max(), 4001)
        kde = stats.gaussian_kde(x, bw_method=bw / x.std(ddof=1))
        exact = grid[np.argmax(kde(grid))]
        step = (np.ptp(x) + 6 * bw) / 511  # our 512-point grid
        assert abs(kde_mode(x) - exact) < step
    assert kde_mode(np.full(10, 1.5)) == 1.5


def test_summary_table_definitions():
    rng = np.random.default_rng(5)
    # autocorrelated chains: AR(1) so that ESS differs from the number of draws
    C, D = 4, 1000
    x = np.zeros((C, D))
    for t in range(1, D):
        x[:, t] = 0.7 * x[:, t - 1] + rng.normal(size=C)
    arr = np.stack([x, np.exp(x / 3)], axis=2)
    tab = mcmc_summary_table(arr, ["a", "b"])
    assert list(tab.columns[:8]) == MCMC_COLUMNS
    for j, name in enumerate(["a", "b"]):
        y = arr[:, :, j]
        pooled = y.reshape(-1)
        assert tab.loc[name, "mean"] == pytest.approx(pooled.mean())
        assert tab.loc[name, "sd"] == pytest.approx(pooled.std(ddof=1))
        assert tab.loc[name, "q2.5"] == pytest.approx(np.quantile(pooled, 0.025))
        assert tab.loc[name, "q97.5"] == pytest.approx(np.quantile(pooled, 0.975))
        assert tab.loc[name, "ess_bulk"] == pytest.approx(az.ess(y, method="bulk"))
        assert tab.loc[name, "rhat"] == pytest.approx(az.rhat(y, method="rank"))
        # ess_tail = min ESS of the indicators 1{x <= q2.5}, 1{x <= q97.5} (features §8.2)
        lo, hi = np.quantile(pooled, [0.025, 0.975])
        ind = [az.ess((y <= q).astype(float), method="mean") for q in (lo, hi)]
        assert tab.loc[name, "ess_tail"] == pytest.approx(min(ind), rel=1e-6)
        assert tab.loc[name, "mcse_mean"] == pytest.approx(az.mcse(y, method="mean"))
        assert tab.loc[name, "ess_bulk"] < 0.5 * C * D  # the autocorrelation is seen


# --------------------------------------------------------------------------- fake fits


class _FakeModel:
    program = None

    def call(self):
        return "lmer(y ~ x + (1 | g), prior = normal)"

    def observed_response(self):
        return np.arange(6.0)


def _fake_params(G=3):
    ps = [Param("Intercept", "Intercept", "Intercept"), Param("beta[1]", "b[x]", "b"),
          Param("sigma", "sigma", "family"), Param("sd_1[1]", "sd[g:Int]", "sd"),
          Param("Intercept_c", "Intercept_c", "Intercept_c")]
    ps += [Param(f"r_re_1[{j},1]", f"r_re[{j}]", "re") for j in range(1, G + 1)]
    return ps


def _fake_mcmc():
    rng = np.random.default_rng(1)
    ps = _fake_params()
    draws = rng.normal(size=(2, 300, len(ps)))
    draws[:, :, 2:4] = np.abs(draws[:, :, 2:4]) + 0.1
    st = {"lp": rng.normal(size=(2, 300)), "diverging": np.zeros((2, 300))}
    return MCMCFit(_FakeModel(), ps, draws, st, rng.normal(size=(2, 300, 6)), chains=2,
                   warmup=100, sampling=300, seed=1)


def test_mcmc_fit_tables_from_fake_draws():
    fit = _fake_mcmc()
    s = fit.summary()
    assert list(s.columns) == MCMC_COLUMNS
    assert list(s.index) == ["lp", "Intercept", "b[x]", "sigma", "sd[g:Int]", "Intercept_c"]
    assert list(fit.summary(inc_random=True).index[-3:]) == ["r_re[1]", "r_re[2]", "r_re[3]"]
    assert list(fit.summary(pars="b").index) == ["lp", "b[x]"]
    with pytest.raises(KeyError, match="nosuch"):
        fit.summary(pars=["nosuch"])
    d = fit.draws()
    assert list(d.columns[:4]) == ["chain", "draw", "lp", "Intercept"] and len(d) == 600
    arr, names = fit.draws_array()
    assert arr.shape == (300, 2, 8) and names[1] == "b[x]"
    re_ = fit.random_effects()
    assert list(re_["level"]) == ["1", "2", "3"] and set(re_["group"]) == {"g"}
    nat = fit.random_effects(scale="natural")
    x = fit._draws
    assert nat["mean"].iloc[0] == pytest.approx(np.mean(x[:, :, 5] * x[:, :, 3]))
    with pytest.raises(ValueError, match="scale"):
        fit.random_effects(scale="log")
    text = str(fit)
    assert "MCMC sampling via Stan (NUTS)" in text and "ess_tail" in text
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("variable"))
    assert [ln.split()[0] for ln in lines[head + 1:head + 1 + len(s)]] == list(s.index)


def _eager_table(fit, inc_random=True):
    """The summary as it was computed before the modes and MCSE became lazy: one table of
    lp and every selected parameter."""
    sel = fit._select(None, inc_random)
    arr = np.concatenate([fit.lp[:, :, None], fit._draws[:, :, sel]], axis=2)
    return mcmc_summary_table(arr, ["lp"] + [fit._params[i].user for i in sel])


@pytest.mark.parametrize("order", ["diagnostics first", "summary first", "mcse first"])
def test_lazy_summary_equals_the_eager_table(order):
    """The KDE modes and MCSEs computed per row on demand equal the table computed at once
    (ties and a constant column included). After ``sample()`` the diagnostics compute ESS and
    R-hat of every quantity first, as the whole table was computed before: then every column
    is equal bit for bit. Rows first computed in other batches differ in the last bits (the
    memory layout of a batch orders the sums), as they did before."""
    fit = _fake_mcmc()
    fit._draws[:, :, 1] = np.round(fit._draws[:, :, 1], 1)  # ties
    fit._draws[:, :, 5] = 0.25  # a constant random effect
    eager = _eager_table(fit)
    exact = order == "diagnostics first"
    if exact:
        conv = fit._convergence_rows()
        assert list(conv.columns) == ["ess_bulk", "ess_tail", "rhat"]
        pd.testing.assert_frame_equal(conv, eager[["ess_bulk", "ess_tail", "rhat"]],
                                      check_exact=True)
        assert all("map" not in row and "mcse_mean" not in row
                   for row in fit._summary_cache.values())  # nothing else was computed
    elif order == "mcse first":
        fit.summary(pars="b", mcse=True)
    else:
        fit.summary()
    tol = dict(check_exact=True) if exact else dict(check_exact=False, rtol=1e-12, atol=0)
    full = fit.summary(inc_random=True, mcse=True)
    pd.testing.assert_frame_equal(full, eager, **tol)
    pd.testing.assert_frame_equal(fit.summary(), eager.iloc[:6][MCMC_COLUMNS], **tol)
    assert list(fit.summary(pars=["b", "b[x]"]).index) == ["lp", "b[x]", "b[x]"]


def test_map_fit_format():
    ps = _fake_params(G=2)
    n = len(ps)
    est = np.linspace(0.5, 1.5, n)
    fit = MAPFit(_FakeModel(), ps, est, est / 10, est - 0.1, est + 0.1, objective=399.6412,
                 log_ml=-410.0234, laplace=True)
    s = fit.summary()
    assert list(s.columns) == ["estimate", "se", "lower", "upper"]
    assert list(s.index) == ["Intercept", "b[x]", "sigma", "sd[g:Int]", "Intercept_c"]
    lines = str(fit).splitlines()
    assert lines[0] == "Call:"
    assert "MAP Estimation via Stan" in lines
    assert "Negative Log-Posterior: 399.64" in lines
    assert "Approx. Log Marginal Likelihood (Laplace): -410.02" in lines
    assert any(l.startswith("Note: Random effects are stored in") for l in lines)
    i = lines.index("Point Estimates and 95% Wald CI:")
    assert lines[i + 1].split() == ["variable", "Estimate", "Std.", "Error", "Lower", "95%",
                                    "Upper", "95%"]
    assert lines[i + 2].split()[:2] == ["Intercept", f"{est[0]:.5f}"]
    r = fit.random_effects()
    assert list(r.columns) == ["group", "level", "term", "parameter", "estimate", "se", "lower",
                               "upper"]
    assert len(r) == 2
    nan_fit = MAPFit(_FakeModel(), ps, est, est, est, est, objective=1.0)
    text = str(nan_fit)
    assert "Approx. Log Marginal Likelihood (Laplace): NA" in text
    assert "MAP Estimation via Stan (joint mode)" in text


def test_re_layout_uses_spec_labels():
    class Term:
        factor = "Subject"
        coefs = ("Int", "Days")
        levels = ("308", "309")

    class Spec:
        groups = (Term(),)

    ps = [Param("sd_1[1]", "sd[Subject:Int]", "sd"), Param("sd_1[2]", "sd[Subject:Days]", "sd")]
    ps += [Param(f"r_re_1[{j},{c}]", f"r_re[{j},{c}]", "re") for c in (1, 2) for j in (1, 2)]
    (t,) = re_layout(ps, Spec())
    assert t.group == "Subject" and t.coefs == ("Int", "Days") and t.levels == ("308", "309")
    (t0,) = re_layout(ps, None)  # without a spec: from the names, numeric levels
    assert t0.group == "Subject" and t0.coefs == ("Int", "Days") and t0.levels == ("1", "2")


# --------------------------------------------------------------------------- real fits


def _assert_no_stan_names(names):
    for n in names:
        assert not STAN_LEAKS.search(str(n)), f"internal Stan name leaked: {n}"


@pytest.mark.slow
def test_mcmc_fit_debate(debate_mcmc, debate):
    fit = debate_mcmc
    s = fit.summary()
    assert list(s.columns) == MCMC_COLUMNS
    assert list(s.index) == ["lp", "Intercept", "b[talk]", "b[perf]", "sigma", "sd[group:Int]",
                             "Intercept_c"]
    _assert_no_stan_names(s.index)
    full = fit.summary(inc_random=True)
    assert len(full) == 7 + 100 and full.index[-1] == "r_re[100]"
    _assert_no_stan_names(full.index)
    d = fit.draws()
    assert d.shape == (4000, 3 + 6 + 100)
    _assert_no_stan_names(d.columns)
    assert fit.num_divergent == 0
    assert s["rhat"].max() < 1.01
    # lp = Stan's lp__ (incl. Jacobians and the 100 standardised effects); features §12: ~ -509
    assert -530 < s.loc["lp", "mean"] < -490
    idata = fit.idata
    for g in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        assert hasattr(idata, g), g
    _assert_no_stan_names(idata.posterior.data_vars)
    assert "b[talk]" in idata.posterior.data_vars
    assert idata.posterior["b[talk]"].shape == (4, 1000)
    assert idata.log_likelihood["y"].shape == (4, 1000, 300)
    np.testing.assert_array_equal(idata.observed_data["y"].values, debate["sat"].to_numpy())
    assert idata.sample_stats["diverging"].dtype == bool
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(idata)
    # elpd_loo = lppd - p_loo, lppd = sum_i log mean_s p(y_i | theta_s) from the same log_lik
    ll = idata.log_likelihood["y"].values.reshape(-1, 300)
    lppd = float(np.sum(np.log(np.mean(np.exp(ll), axis=0))))
    assert loo.elpd_loo + loo.p_loo == pytest.approx(lppd, rel=1e-6)
    assert 0 < loo.p_loo < 110  # effective parameters: at most 4 + 100 group effects (+ noise)
    re_ = fit.random_effects()
    assert len(re_) == 100 and list(re_["level"][:3]) == ["1", "2", "3"]
    assert set(re_["term"]) == {"Int"} and set(re_["group"]) == {"group"}
    assert isinstance(re_, pd.DataFrame)
    text = str(fit)
    assert "sd[group:Int]" in text and "beta" not in text


@pytest.mark.slow
def test_map_fit_debate(debate_map):
    fit = debate_map
    assert fit.converged
    s = fit.summary()
    assert list(s.index) == ["Intercept", "b[talk]", "b[perf]", "sigma", "sd[group:Int]",
                             "Intercept_c"]
    assert (s["se"] > 0).all()
    assert (s["lower"] < s["estimate"]).all() and (s["estimate"] < s["upper"]).all()
    text = str(fit)
    assert "MAP Estimation via Stan" in text and "Point Estimates and 95% Wald CI:" in text
    _assert_no_stan_names(s.index)
    r = fit.random_effects()
    assert len(r) == 100 and set(r["term"]) == {"Int"}
    _assert_no_stan_names(r["parameter"])


@pytest.mark.slow
def test_sleepstudy_random_effect_labels(sleep_mcmc):
    s = sleep_mcmc.summary()
    assert list(s.index[:7]) == ["lp", "Intercept", "b[Days]", "sigma", "sd[Subject:Int]",
                                 "sd[Subject:Days]", "corr[Int,Days]"]
    _assert_no_stan_names(s.index)
    r = sleep_mcmc.random_effects(scale="natural")
    assert len(r) == 36
    assert list(r["level"][:2]) == ["308", "308"] and list(r["term"][:2]) == ["Int", "Days"]
