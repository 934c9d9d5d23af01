"""kfold(): fold splits, and the held-out log predictive density against an independent
computation (scipy densities at the training fits' estimates or draws, numpy least squares) on
gaussian, binomial and ordinal models; grouped folds; on Dask."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit, logsumexp

import bayesglmm
from bayesglmm.kfold import make_folds

QUICK = {"chains": 2, "warmup": 200, "sampling": 200}


def test_make_folds_balanced_and_grouped():
    f = make_folds(103, 10, seed=1)
    counts = np.bincount(f)[1:]
    assert counts.size == 10 and counts.max() - counts.min() <= 1
    g = np.repeat(np.arange(25), 4)
    fg = make_folds(100, 5, group=g, seed=2)
    assert all(len(set(fg[g == j])) == 1 for j in range(25))  # a group stays together
    assert np.bincount(fg)[1:].tolist() == [20] * 5
    with pytest.raises(ValueError, match="only 25 groups"):
        make_folds(100, 30, group=g)
    assert np.array_equal(make_folds(50, 5, seed=3), make_folds(50, 5, seed=3))


def test_argument_errors(lm_model):
    with pytest.raises(ValueError, match="method must be 'sample' or 'optimize'"):
        bayesglmm.kfold(lm_model, method="classic")
    with pytest.raises(ValueError, match="K must be an integer >= 2"):
        bayesglmm.kfold(lm_model, K=1)
    with pytest.raises(ValueError, match="unknown column 'team'"):
        bayesglmm.kfold(lm_model, group="team")
    with pytest.raises(ValueError, match="one label per row"):
        bayesglmm.kfold(lm_model, folds=[1, 2, 1])


def _design(d):
    return np.column_stack([np.ones(len(d)), d.talk, d.perf]), d.sat.to_numpy()


@pytest.mark.slow
def test_plugin_equals_least_squares(lm_model, debate, toolchain):
    """lm with flat priors: the mode is least squares with sigma^2 = RSS / n (no Jacobian), so
    the plug-in density of a held-out row is Normal(y | x b_ols, sigma_ml) of its fold."""
    kf = bayesglmm.kfold(lm_model, K=5, seed=1, method="optimize", progress=False)
    X, y = _design(debate)
    want = np.empty(len(y))
    for k in range(1, 6):
        tr, te = kf.folds != k, kf.folds == k
        b = np.linalg.lstsq(X[tr], y[tr], rcond=None)[0]
        s = np.sqrt(np.mean((y[tr] - X[tr] @ b) ** 2))
        want[te] = stats.norm.logpdf(y[te], X[te] @ b, s)
    np.testing.assert_allclose(kf.pointwise, want, rtol=1e-7)
    assert kf.elpd_kfold == pytest.approx(want.sum())
    assert kf.se == pytest.approx(np.sqrt(len(y) * np.var(want, ddof=1)))
    assert kf.K == 5 and not kf.errors


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*(R-hat|effective sample size).*")
def test_sample_is_log_mean_likelihood_over_draws(lm_model, debate, toolchain):
    """method="sample": elpd_i = log mean_s Normal(y_i | x_i b_s, sigma_s) over the draws of
    the fold's training fit (the same fit redone here with the same seed)."""
    kf = bayesglmm.kfold(lm_model, K=3, seed=5, progress=False, **QUICK)
    X, y = _design(debate)
    want = np.empty(len(y))
    for k in range(1, 4):
        tr, te = kf.folds != k, kf.folds == k
        fit = lm_model.update(data=debate[tr].reset_index(drop=True)).sample(
            seed=5 + k - 1, verbose=False, **QUICK)
        dr = fit.draws()[["Intercept", "b[talk]", "b[perf]", "sigma"]].to_numpy()
        ll = stats.norm.logpdf(y[te][None, :], dr[:, :3] @ X[te].T, dr[:, 3:4])
        want[te] = logsumexp(ll, axis=0) - np.log(len(dr))
    np.testing.assert_allclose(kf.pointwise, want, rtol=1e-6)


def _map_eta(fit, spec_rows, X, group_labels, term_levels):
    """Linear predictor at a MAP fit: X b + sd * r_re[group] (0 for groups not in the fit)."""
    est = fit.estimates
    b = np.array([est.get("Intercept", 0.0)] + [est[f"b[{n}]"] for n in spec_rows])
    eta = X @ b
    sd = [v for k, v in est.items() if k.startswith("sd[")][0]
    where = {lab: j for j, lab in enumerate(term_levels)}
    r = np.array([sd * est[f"r_re[{where[g] + 1}]"] if g in where else 0.0
                  for g in group_labels])
    return eta + r


def _plugin_by_hand(model, data, kf, cols, X, groups, density):
    """Pointwise plug-in densities redone fold by fold: the training mode, its linear
    predictor on the held-out rows, then ``density(fit, eta, held-out mask)``."""
    want = np.empty(len(data))
    for k in range(1, kf.K + 1):
        tr, te = kf.folds != k, kf.folds == k
        m = model.update(data=data[tr].reset_index(drop=True))
        fit = m.optimize(verbose=False)
        eta = _map_eta(fit, cols, X[te], groups[te], m.spec.groups[0].levels)
        want[te] = density(fit, eta, te)
    return want


@pytest.mark.slow
def test_grouped_folds_gaussian_plugin(debate_model, debate_compiled, debate):
    """Leave-groups-out with optimize(): rows of held-out groups are scored at the population
    mean (effect 0): Normal(y | Intercept + X b, sigma) of the fold's training mode."""
    kf = bayesglmm.kfold(debate_model, K=4, group="group", seed=2, method="optimize",
                         progress=False)
    for k in range(1, 5):
        assert len(set(debate.group[kf.folds == k]) & set(debate.group[kf.folds != k])) == 0
    X, y = _design(debate)
    want = _plugin_by_hand(debate_model, debate, kf, ["talk", "perf"], X,
                           debate.group.astype(str),
                           lambda fit, eta, te: stats.norm.logpdf(y[te], eta,
                                                                  fit.estimates["sigma"]))
    np.testing.assert_allclose(kf.pointwise, want, rtol=1e-6)


@pytest.mark.slow
def test_binomial_plugin(cbpp_model, cbpp):
    """cbpp, random folds: Binomial(incidence | size, logistic(eta)) at the training mode, the
    herd effects at their conditional modes."""
    kf = bayesglmm.kfold(cbpp_model, K=4, seed=3, method="optimize", progress=False)
    X = np.column_stack([np.ones(len(cbpp))] + [(cbpp.period == p).to_numpy(float)
                                                 for p in "234"])
    want = _plugin_by_hand(
        cbpp_model, cbpp, kf, ["period2", "period3", "period4"], X, cbpp.herd,
        lambda fit, eta, te: stats.binom.logpmf(cbpp.incidence[te], cbpp["size"][te],
                                                expit(eta)))
    np.testing.assert_allclose(kf.pointwise, want, rtol=1e-6)


@pytest.mark.slow
def test_ordinal_plugin(wine_flat_model):
    """wine, cumulative logit: P(y = k) = logistic(c_k - eta) - logistic(c_{k-1} - eta) at the
    training mode."""
    wine = wine_flat_model._build_args["data"]
    kf = bayesglmm.kfold(wine_flat_model, K=3, seed=4, method="optimize", progress=False)
    X = np.column_stack([np.zeros(len(wine)), (wine.temp == "warm").to_numpy(float),
                         (wine.contact == "yes").to_numpy(float)])
    y = wine.rating.to_numpy()

    def density(fit, eta, te):
        c = np.r_[-np.inf, [fit.estimates[f"cutpoints[C{j}]"] for j in range(1, 5)], np.inf]
        return np.log(expit(c[y[te]] - eta) - expit(c[y[te] - 1] - eta))

    want = _plugin_by_hand(wine_flat_model, wine, kf, ["tempwarm", "contactyes"], X,
                           wine.judge.astype(str), density)
    np.testing.assert_allclose(kf.pointwise, want, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*(R-hat|effective sample size).*")
def test_on_dask_equals_in_process(lm_model, toolchain):
    a = bayesglmm.kfold(lm_model, K=3, seed=9, progress=False, **QUICK)
    b = bayesglmm.kfold(lm_model, K=3, seed=9, workers=2, progress=False, **QUICK)
    np.testing.assert_array_equal(a.folds, b.folds)
    np.testing.assert_allclose(a.pointwise, b.pointwise, rtol=1e-12)
    assert isinstance(a.to_frame(), pd.DataFrame) and "elpd_kfold" in repr(a)
