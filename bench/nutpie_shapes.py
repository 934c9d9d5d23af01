"""Models of different shape for ``bench_nutpie.py --settings ... --models ...`` (the
``low_rank="auto"`` rule, bench/results/nutpie_lowrank.json): the benchmark models, variants
of them and simulated ones (fixed seeds), every one on a precompiled generic program (nothing
to compile)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench_core import PARAMS, our_model  # noqa: E402

import bayesglmm  # noqa: E402

__all__ = ["SHAPES"]


def _sim_slope(n_groups: int, rows: int, family: str, seed: int) -> pd.DataFrame:
    """Simulated ``y ~ x + (x | g)``: intercept and slope SDs (0.5, 0.3) (Poisson) or (1, 0.5)
    (Gaussian, residual SD 1), correlation 0.5, x ~ normal(0, 1)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), rows)
    x = rng.normal(size=g.size)
    sd = np.array([0.5, 0.3]) if family == "poisson" else np.array([1.0, 0.5])
    cov = np.outer(sd, sd) * np.array([[1, 0.5], [0.5, 1]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=n_groups)
    eta = 1.0 + 0.3 * x + b[g, 0] + b[g, 1] * x
    y = rng.poisson(np.exp(eta)) if family == "poisson" else eta + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{j}" for j in g]})


def _sim_crossed(seed: int = 7) -> pd.DataFrame:
    """Simulated ``y ~ x + (1 | g1) + (1 | g2)``: 30 x 20 crossed groups, 2 rows per cell, SDs
    1 (g1, well informed) and 0.1 (g2, weakly informed), residual SD 1."""
    rng = np.random.default_rng(seed)
    g1, g2 = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    g1, g2 = np.repeat(g1.ravel(), 2), np.repeat(g2.ravel(), 2)
    x = rng.normal(size=g1.size)
    y = 1 + 0.5 * x + rng.normal(0, 1, 30)[g1] + rng.normal(0, 0.1, 20)[g2] \
        + rng.normal(size=g1.size)
    return pd.DataFrame({"y": y, "x": x, "g1": [f"a{j}" for j in g1],
                         "g2": [f"b{j}" for j in g2]})


def _sim_lm_corr(seed: int = 11, rho: float = 0.95) -> pd.DataFrame:
    """Simulated ``y ~ x1 + x2 + x3``, 200 rows, predictors with pairwise correlation
    ``rho``."""
    rng = np.random.default_rng(seed)
    cov = np.full((3, 3), rho) + (1 - rho) * np.eye(3)
    x = rng.multivariate_normal(np.zeros(3), cov, size=200)
    y = 1 + x @ np.array([0.5, -0.3, 0.2]) + rng.normal(size=200)
    return pd.DataFrame({"y": y, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2]})


def _sim_heldout(kind: str, seed: int = 13) -> pd.DataFrame:
    """Models added after the rule was set, to check it on shapes it was not derived from:
    ``"binomial_slope"``: ``cbind(k, n - k) ~ x + (x | g)``, 40 groups x 15 rows of 30 trials,
    SDs (0.5, 0.3); ``"glm_corr"``: logistic ``y ~ x1 + x2 + x3``, 600 rows, predictors
    correlated 0.9; ``"lmer_corr"``: ``y ~ x1 + x2 + x3 + (1 | g)``, 20 groups x 30 rows,
    predictors correlated 0.95, group SD 1, residual SD 1."""
    rng = np.random.default_rng(seed)
    if kind == "binomial_slope":
        g = np.repeat(np.arange(40), 15)
        x = rng.normal(size=g.size)
        b = rng.normal(size=(40, 2)) * np.array([0.5, 0.3])
        p = 1 / (1 + np.exp(-(-0.5 + 0.4 * x + b[g, 0] + b[g, 1] * x)))
        k = rng.binomial(30, p)
        return pd.DataFrame({"k": k, "f": 30 - k, "x": x, "g": [f"g{j}" for j in g]})
    rho, n = (0.9, 600) if kind == "glm_corr" else (0.95, 600)
    cov = np.full((3, 3), rho) + (1 - rho) * np.eye(3)
    x = rng.multivariate_normal(np.zeros(3), cov, size=n)
    eta = x @ np.array([0.5, -0.3, 0.2])
    df = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2]})
    if kind == "glm_corr":
        df["y"] = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    else:
        g = np.repeat(np.arange(20), 30)
        df["y"] = 1 + eta + rng.normal(size=20)[g] + rng.normal(size=n)
        df["g"] = [f"g{j}" for j in g]
    return df


def _sim_days(n_groups: int, days: int, family: str, seed: int, sd_resid: float = 30.0
              ) -> pd.DataFrame:
    """Simulated sleepstudy-like ``y ~ x + (x | g)``: x = 0, ..., ``days`` - 1 in every group
    (not centred, so each group's intercept and slope correlate through its rows), intercept
    and slope SDs (25, 6) and residual SD ``sd_resid`` (Gaussian, mean 250 + 10 x) or SDs
    (0.4, 0.08) (Poisson, log mean 2 + 0.05 x); correlation 0.2."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), days)
    x = np.tile(np.arange(days, dtype=float), n_groups)
    sd = np.array([0.4, 0.08]) if family == "poisson" else np.array([25.0, 6.0])
    cov = np.outer(sd, sd) * np.array([[1, 0.2], [0.2, 1]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=n_groups)
    if family == "poisson":
        y = rng.poisson(np.exp(2.0 + 0.05 * x + b[g, 0] + b[g, 1] * x))
    else:
        y = 250 + 10 * x + b[g, 0] + b[g, 1] * x + rng.normal(0, sd_resid, g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{j}" for j in g]})


def _sim_weak_corr(seed: int, rho: float = 0.9, n_groups: int = 15, rows: int = 4,
                   sd_group: float = 0.5) -> pd.DataFrame:
    """Simulated ``y ~ x1 + x2 + (1 | g)``: predictors correlated ``rho``, ``n_groups`` groups
    of ``rows`` rows, a small group SD ``sd_group`` against residual SD 1 (a weakly informed
    intercept term)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), rows)
    x = rng.multivariate_normal(np.zeros(2), [[1, rho], [rho, 1]], size=g.size)
    y = 1 + x @ np.array([0.5, -0.3]) + rng.normal(0, sd_group, n_groups)[g] \
        + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x1": x[:, 0], "x2": x[:, 1], "g": [f"g{j}" for j in g]})


def _sleep(formula: str, **kw) -> bayesglmm.Model:
    """sleepstudy with the brms-like priors of ``our_model()`` and another formula/param."""
    from bench_core import BRMS_LOCATION, BRMS_SCALE

    prior = bayesglmm.prior_normal(b_sd=None, sigma_rate=1 / BRMS_SCALE,
                                   tau_rate=1 / BRMS_SCALE,
                                   overrides={"Intercept_c": (BRMS_LOCATION, BRMS_SCALE)})
    return bayesglmm.lmer(formula, bayesglmm.load_sleepstudy(), prior=prior, **kw)


# models of different shape for --settings (the low-rank rule, bench/results/nutpie_lowrank.json):
# name -> () -> (model, compared Stan names or None = every reported parameter but r_re); every
# one runs on a precompiled generic program (no compile)
SHAPES = {
    "sleepstudy": lambda: (our_model(), list(PARAMS)),
    "sleepstudy_nc": lambda: (_sleep("Reaction ~ Days + (Days | Subject)",
                                     param="noncentered"), None),
    "sleepstudy_uncorr": lambda: (_sleep("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"),
                                  None),
    "cbpp": lambda: models_cbpp(),
    "debate": lambda: (bayesglmm.lmer("sat ~ talk + perf + (1 | group)", bayesglmm.load_debate(),
                                      prior=bayesglmm.prior_normal()), None),
    "debate_slope": lambda: (bayesglmm.lmer("sat ~ talk + perf + (1 + talk | group)",
                                            bayesglmm.load_debate(),
                                            prior=bayesglmm.prior_normal()), None),
    "sim_slope_40": lambda: (bayesglmm.lmer("y ~ x + (x | g)", _sim_slope(40, 25, "gaussian", 3),
                                            prior=bayesglmm.prior_normal()), None),
    "sim_slope_70": lambda: (bayesglmm.lmer("y ~ x + (x | g)", _sim_slope(70, 25, "gaussian", 6),
                                            prior=bayesglmm.prior_normal()), None),
    "sim_slope_150": lambda: (bayesglmm.lmer("y ~ x + (x | g)", _sim_slope(150, 20, "gaussian", 5),
                                             prior=bayesglmm.prior_normal()), None),
    "sim_poisson_slope": lambda: (bayesglmm.glmer("y ~ x + (x | g)",
                                                  _sim_slope(30, 30, "poisson", 4),
                                                  family="poisson",
                                                  prior=bayesglmm.prior_normal()), None),
    "sim_crossed": lambda: (bayesglmm.lmer("y ~ x + (1 | g1) + (1 | g2)", _sim_crossed(),
                                           prior=bayesglmm.prior_normal()), None),
    "lm_corr": lambda: (bayesglmm.lm("y ~ x1 + x2 + x3", _sim_lm_corr(),
                                     prior=bayesglmm.prior_normal()), None),
    "lm_uncorr": lambda: (bayesglmm.lm("y ~ x1 + x2 + x3", _sim_lm_corr(rho=0.0),
                                       prior=bayesglmm.prior_normal()), None),
    # added after the rule's thresholds were set, to check it: the binomial model showed its
    # first version (any two centred coefficients) picking a loss, which led to
    # nutpie_rule.group_condition
    "heldout_binomial_slope": lambda: (bayesglmm.glmer(
        "cbind(k, f) ~ x + (x | g)", _sim_heldout("binomial_slope"), family="binomial",
        prior=bayesglmm.prior_normal()), None),
    "heldout_glm_corr": lambda: (bayesglmm.glm("y ~ x1 + x2 + x3", _sim_heldout("glm_corr"),
                                               family="bernoulli",
                                               prior=bayesglmm.prior_normal()), None),
    "heldout_lmer_corr": lambda: (bayesglmm.lmer("y ~ x1 + x2 + x3 + (1 | g)",
                                                 _sim_heldout("lmer_corr"),
                                                 prior=bayesglmm.prior_normal()), None),
    "heldout_lmer_int": lambda: (bayesglmm.lmer("y ~ x1 + (1 | g)", _sim_heldout("lmer_corr"),
                                                prior=bayesglmm.prior_normal()), None),
    # added after the rule picked the low-rank mass matrix at delta 0.9 for weakly informed
    # centred terms (data / prior precision 1.5-3) with correlated coefficients, to check it:
    # sleepstudy-like days (intercept and slope correlated through the rows; precision 1.78,
    # 2.06, Poisson 1.79) and correlated predictors beside a weak (1 | g) (2.76, 1.64)
    "heldout_weak_days_25": lambda: (bayesglmm.lmer(
        "y ~ x + (x | g)", _sim_days(25, 10, "gaussian", 41, 20.0),
        prior=bayesglmm.prior_normal()), None),
    "heldout_weak_days_12": lambda: (bayesglmm.lmer(
        "y ~ x + (x | g)", _sim_days(12, 10, "gaussian", 21, 60.0),
        prior=bayesglmm.prior_normal()), None),
    "heldout_weak_days_poisson": lambda: (bayesglmm.glmer(
        "y ~ x + (x | g)", _sim_days(20, 10, "poisson", 45), family="poisson",
        prior=bayesglmm.prior_normal()), None),
    "heldout_weak_lmer_corr": lambda: (bayesglmm.lmer(
        "y ~ x1 + x2 + (1 | g)", _sim_weak_corr(23, 0.95, 20, 5, 0.5),
        prior=bayesglmm.prior_normal()), None),
    "heldout_weak_lmer_corr2": lambda: (bayesglmm.lmer(
        "y ~ x1 + x2 + (1 | g)", _sim_weak_corr(23, 0.95, 10, 6, 0.6),
        prior=bayesglmm.prior_normal()), None),
}


def models_cbpp() -> tuple[bayesglmm.Model, None]:
    cbpp = pd.read_csv(REPO / "tests" / "reference" / "cbpp.csv",
                       dtype={"herd": str, "period": str})
    cbpp["failures"] = cbpp["size"] - cbpp["incidence"]
    return bayesglmm.glmer("cbind(incidence, failures) ~ period + (1 | herd)", cbpp,
                           family="binomial"), None
