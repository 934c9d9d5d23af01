"""The low_rank="auto" rule of sample(sampler="nutpie") (bayesglmm/inference/nutpie_rule.py).

Fast: the rule's decision on model structures (built from data, nothing sampled) and the
checks of ``low_rank``. Slow: a sampled fit for which "auto" picks the low-rank mass matrix
(sleepstudy with uncorrelated, centred intercepts and slopes) agrees with
CmdStan's NUTS within Monte Carlo error (4 combined MCSEs per quantity, as tests/test_nutpie.py),
records the mass matrix and prints it, also after saving and loading.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import SEED
from mcmc_agree import means_agree

import bayesglmm
from bayesglmm.inference.nutpie_rule import (
    LOW_RANK_MAX_DIM,
    LOW_RANK_MIN_INFORMATION,
    LOW_RANK_WEAK_DELTA,
    MassMatrixChoice,
    check_low_rank,
    fixed_condition,
    group_condition,
    low_rank_choice,
    mass_matrix_features,
    resolve_low_rank,
    run_delta,
)

UNCORR = "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"


def _choice(model, dim: int = 40) -> MassMatrixChoice:
    return low_rank_choice(mass_matrix_features(model.spec, dim))


def _lm_data(rho: float, n: int = 200, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cov = np.full((3, 3), rho) + (1 - rho) * np.eye(3)
    x = rng.multivariate_normal(np.zeros(3), cov, size=n)
    return pd.DataFrame({"y": x.sum(axis=1) + rng.normal(size=n), "x1": x[:, 0],
                         "x2": x[:, 1], "x3": x[:, 2]})


@pytest.fixture(scope="module")
def sleep_df():
    return bayesglmm.load_sleepstudy()


def test_correlated_centred_intercept_and_slope_pick_low_rank(sleep_df):
    # two terms of one factor: two centred coefficients per group, each term well informed;
    # Days 0-9 in every group: Z_j'Z_j = [[10, 45], [45, 285]], correlation 0.843
    m = bayesglmm.lmer(UNCORR, sleep_df)
    assert all(g.centered for g in m.spec.groups)
    f = mass_matrix_features(m.spec, 41)
    assert f["centred_coefficients"] == 2
    assert f["centred_information"] > LOW_RANK_MIN_INFORMATION
    r = 45 / np.sqrt(10 * 285)
    assert group_condition(m.spec) == pytest.approx((1 + r) / (1 - r), rel=1e-9)
    assert low_rank_choice(f) == (True, "correlated coefficients within groups (condition "
                                        "number 11.7), 41 parameters", None)


def test_uncorrelated_centred_intercept_and_slope_keep_diagonal():
    # a centred predictor: each group's intercept and slope hardly correlated
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(30), 25)
    x = rng.normal(size=g.size)
    b = rng.normal(size=(30, 2)) * [1.0, 0.5]
    df = pd.DataFrame({"y": 1 + 0.3 * x + b[g, 0] + b[g, 1] * x + rng.normal(size=g.size),
                       "x": x, "g": g.astype(str)})
    m = bayesglmm.lmer("y ~ x + (x | g)", df)
    f = mass_matrix_features(m.spec, 66)
    assert m.spec.groups[0].centered and f["centred_information"] > LOW_RANK_MIN_INFORMATION
    assert f["group_condition"] < 2
    assert low_rank_choice(f) == (False, "no strongly correlated coefficients", None)


def test_weakly_informed_centred_term_picks_low_rank_at_a_higher_delta(sleep_df):
    # (Days | Subject): centred by param="auto" at a data / prior precision ratio of 1.7;
    # Days 0-9 in every group correlate each subject's intercept and slope (condition 11.7)
    m = bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", sleep_df)
    assert m.spec.groups[0].centered
    f = mass_matrix_features(m.spec, 42)
    assert f["centred_information"] == pytest.approx(1.7, abs=0.05)
    choice = low_rank_choice(f)
    assert choice.low_rank and choice.min_delta == LOW_RANK_WEAK_DELTA == 0.9
    assert choice.reason == (
        "correlated coefficients within groups (condition number 11.7), 42 parameters; a "
        "weakly informed centred term (data / prior precision 1.7 < 3): target acceptance "
        "rate at least 0.9")


def test_weakly_informed_term_without_correlation_keeps_diagonal(sleep_df):
    # the same weak information, but a single centred coefficient per group: nothing for a
    # low-rank correction to follow, so no reason to raise delta either
    m = bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", sleep_df)
    f = {**mass_matrix_features(m.spec, 42), "group_condition": 1.0}
    assert low_rank_choice(f) == (False, "no strongly correlated coefficients", None)


def test_run_delta_keeps_a_given_delta_and_raises_the_default():
    weak = MassMatrixChoice(True, "weak", 0.9)
    assert run_delta(None, 0.8, weak) == 0.9
    assert run_delta(None, 0.99, weak) == 0.99  # a higher default (horseshoe) stays
    assert run_delta(0.8, 0.8, weak) == 0.8  # the user's delta is never overridden
    assert run_delta(None, 0.8, MassMatrixChoice(True, "strong")) == 0.8
    assert run_delta(0.95, 0.8, MassMatrixChoice(False, "diagonal")) == 0.95


def test_noncentred_term_keeps_diagonal(sleep_df):
    m = bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", sleep_df, param="noncentered")
    assert _choice(m, 42) == (False, "non-centred grouping term (Days | Subject)", None)
    # one term of two non-centred is enough
    mixed = bayesglmm.lmer("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep_df,
                           param={"(1 | Subject)": "centered",
                                  "(0 + Days | Subject)": "noncentered"})
    assert not _choice(mixed, 41)[0]


def test_too_many_parameters_keep_diagonal(sleep_df):
    m = bayesglmm.lmer(UNCORR, sleep_df)
    assert _choice(m, LOW_RANK_MAX_DIM)[0]
    use, why, _ = _choice(m, LOW_RANK_MAX_DIM + 1)
    assert not use and f"> {LOW_RANK_MAX_DIM}" in why
    # the features that cost a pass over the data are skipped when the rule does not need them
    f = mass_matrix_features(m.spec, LOW_RANK_MAX_DIM + 1)
    assert f["fixed_condition"] is None and f["centred_information"] is None
    full = mass_matrix_features(m.spec, LOW_RANK_MAX_DIM + 1, full=True)
    assert full["fixed_condition"] == 1.0 and full["centred_information"] > 10


def test_single_centred_coefficient_keeps_diagonal(sleep_df):
    m = bayesglmm.lmer("Reaction ~ Days + (1 | Subject)", sleep_df)
    assert m.spec.groups[0].centered
    assert _choice(m, 21) == (False, "no strongly correlated coefficients", None)


def test_correlated_predictors_pick_low_rank():
    corr = bayesglmm.lm("y ~ x1 + x2 + x3", _lm_data(0.95))
    indep = bayesglmm.lm("y ~ x1 + x2 + x3", _lm_data(0.0))
    # three predictors with pairwise correlation rho: condition number (1 + 2 rho) / (1 - rho)
    assert fixed_condition(corr.spec) == pytest.approx(58, rel=0.5)
    assert fixed_condition(indep.spec) < 1.5
    use, why, _ = _choice(corr, 5)
    assert use and "correlated predictors" in why
    assert not _choice(indep, 5)[0]


def test_fixed_condition_of_one_column_and_of_a_collinear_design(sleep_df):
    m = bayesglmm.lmer("Reaction ~ Days + (1 | Subject)", sleep_df)
    assert fixed_condition(m.spec) == 1.0
    df = _lm_data(0.0)
    df["x3"] = 2 * df["x1"]  # a column with a multiple of another: singular cross-product
    assert fixed_condition(bayesglmm.lm("y ~ x1 + x2 + x3", df).spec) > 1e8


def test_from_stan_keeps_diagonal():
    assert low_rank_choice(mass_matrix_features(None, 3)) == (
        False, "a from_stan program (no model structure to judge from)", None)


def test_explicit_low_rank_overrides_the_rule(sleep_df):
    m = bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", sleep_df, param="noncentered")
    assert resolve_low_rank(True, m.spec, 42) == (True, "low_rank=True", None)
    assert resolve_low_rank(False, m.spec, 42) == (False, "low_rank=False", None)
    assert resolve_low_rank("auto", m.spec, 42).low_rank is False


def test_low_rank_argument_is_checked(debate_model):
    for ok in ("auto", True, False):
        assert check_low_rank(ok) is ok
    for bad in ("yes", 1, None, "Auto"):
        with pytest.raises(ValueError, match="low_rank must be 'auto', True or False"):
            check_low_rank(bad)
    with pytest.raises(ValueError, match="low_rank must be 'auto', True or False, got 'yes'"):
        debate_model.sample(sampler="nutpie", low_rank="yes")
    with pytest.raises(ValueError, match="low_rank=True is an option of sampler='nutpie'"):
        debate_model.sample(low_rank=True)


# ----------------------------------------------------------------------------- slow


@pytest.fixture(scope="module")
def uncorr_model(sleepstudy, toolchain):
    """sleepstudy with uncorrelated intercepts and slopes, both centred and well informed (a
    generic program: nothing to compile); the priors of tests/conftest.py's sleep_model."""
    y = sleepstudy["Reaction"]
    return bayesglmm.lmer(UNCORR, data=sleepstudy, prior=bayesglmm.prior_weak(),
                          y_range=(float(y.min()), float(y.max())))


@pytest.mark.slow
def test_auto_low_rank_fit_agrees_with_stan(uncorr_model, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = uncorr_model.sample(sampler="nutpie", seed=SEED, verbose=False)
        ref = uncorr_model.sample(seed=SEED, verbose=False)
    assert fit.mass_matrix == "low-rank" and "within groups" in fit.mass_matrix_reason
    assert "MCMC sampling via nutpie (NUTS, low-rank mass matrix)" in fit.format()
    assert ref.mass_matrix == "diagonal" and "Stan (NUTS)" in ref.format()
    means_agree(fit, ref, 4.0, True)
    again = bayesglmm.load(fit.save(tmp_path / "lr"))
    assert again.mass_matrix == "low-rank" and again.mass_matrix_reason == fit.mass_matrix_reason
    assert "low-rank mass matrix" in again.format()
    # forced off: the diagonal one, recorded as asked
    diag = uncorr_model.sample(sampler="nutpie", seed=SEED, low_rank=False, verbose=False,
                               chains=2, warmup=200, sampling=200)
    assert (diag.mass_matrix, diag.mass_matrix_reason) == ("diagonal", "low_rank=False")
