"""Repeated-measures data options (issue 8): wide outcomes, factors/contrasts, gmc/cwc centring
and residual-correlation structures: everything that does not need a compiled program."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesglmm as bg
from bayesglmm.spec import FormulaError


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    return bg.load_training()


def _long(training: pd.DataFrame) -> pd.DataFrame:
    """training.csv in long form, built by hand with pandas (subject-major rows)."""
    long = training.melt(id_vars=["ID", "a", "b", "age"], value_vars=["time1", "time2", "time3",
                                                                         "time4"],
                         var_name="time", value_name="y")
    long["time"] = long["time"].str.removeprefix("time").astype(int)
    long["_row"] = long["ID"].map({v: i for i, v in enumerate(training["ID"])})
    long = long.sort_values(["_row", "time"]).drop(columns="_row").reset_index(drop=True)
    return long


def _same_program(m1: bg.Model, m2: bg.Model) -> None:
    assert str(m1.spec) == str(m2.spec)
    assert m1.stan_code == m2.stan_code
    d1, d2 = m1.stan_data, m2.stan_data
    assert d1.keys() == d2.keys()
    for k in d1:
        np.testing.assert_array_equal(np.asarray(d1[k]), np.asarray(d2[k]), err_msg=k)
    assert m1.parameter_names == m2.parameter_names


# ------------------------------------------------------------------------------- wide outcomes


def test_training_dataset(training):
    assert training.shape == (12, 8)
    assert list(training.columns) == ["ID", "time1", "time2", "time3", "time4", "a", "b", "age"]
    np.testing.assert_allclose(training[["time1", "time2", "time3", "time4"]].mean(),
                               [3.79583, 4.48000, 5.05833, 5.87167], atol=5e-6)  # checksum of training.csv


@pytest.mark.parametrize("within", [{"time": 4}, {"time": [1, 2, 3, 4]}, None])
def test_wide_equals_long(training, within):
    long = _long(training)
    wide = bg.lmer("cbind(time1, time2, time3, time4) ~ a * time + (1 | ID)", training,
                   within=within)
    ref = bg.lmer("y ~ a * time + (1 | ID)", long, factors=["time"])
    _same_program(wide, ref)
    assert wide.spec.n_obs == 48
    assert "b[a:time1]" in wide.parameter_names  # lmer: sum coding, as in features 12
    assert "stacked" in wide.data_notes[0]
    # the same with the column range and with AR(1) residuals
    rng = bg.lmer("cbind(time1:time4) ~ a * time", training, within=within, resid_corr="ar1",
                  resid_time="time", resid_group="ID", prior=bg.prior_normal())
    ref = bg.lmer("y ~ a * time", long, factors=["time"], resid_corr="ar1", resid_time="time",
                  resid_group="ID", prior=bg.prior_normal())
    _same_program(rng, ref)


def test_new_data_design_of_within_factors(training):
    """The fixed-effect design of new data (predictions) codes the numeric within levels 1..4
    and factors= columns as in the fitted data."""
    from bayesglmm.post.predict import fixed_design

    m = bg.lmer("cbind(time1:time4) ~ a * time + (1 | ID)", training, within={"time": 4})
    X, _ = fixed_design(m.spec, m.spec.data)
    np.testing.assert_array_equal(X, m.stan_data["X"])
    f = bg.lmer("time1 ~ a + (1 | b)", training, factors=["a"])
    X, _ = fixed_design(f.spec, training.head(3))
    np.testing.assert_array_equal(X, f.stan_data["X"][:3])


def test_wide_labels_and_two_within_factors():
    df = pd.DataFrame({"id": [1, 2, 3], "g": ["a", "b", "a"],
                       "y11": [1.0, 2, 3], "y12": [4.0, 5, 6], "y13": [7.0, 8, 9],
                       "y21": [10.0, 11, 12], "y22": [13.0, 14, 15], "y23": [16.0, 17, 18]})
    m = bg.glmer("cbind(y11:y23) ~ g + task * time + (1 | id)", df,
                 within={"task": ["read", "write"], "time": ["t1", "t2", "t3"]})
    d = m.spec.data
    # subject-major rows; the last within factor varies fastest across the columns
    assert d["y"].tolist()[:6] == [1, 4, 7, 10, 13, 16]
    assert d["task"].tolist()[:6] == ["read"] * 3 + ["write"] * 3
    assert d["time"].tolist()[:6] == ["t1", "t2", "t3"] * 2
    assert list(d["time"].cat.categories) == ["t1", "t2", "t3"]
    assert d["id"].tolist()[:7] == [1] * 6 + [2]
    assert "b[taskwrite:timet3]" in m.parameter_names


def test_wide_missing_responses_dropped(training):
    tr = training.copy()
    tr.loc[0, "time2"] = np.nan
    m = bg.lmer("cbind(time1:time4) ~ a * time + (1 | ID)", tr, within={"time": 4})
    assert m.spec.n_obs == 47
    assert "dropped 1 missing" in m.data_notes[0]


def test_wide_bad_input(training):
    f = "cbind(time1, time2, time3, time4) ~ a * time + (1 | ID)"
    with pytest.raises(ValueError, match=r"time \(3\) = 3 combinations, but .* has 4 columns"):
        bg.lmer(f, training, within={"time": 3})
    with pytest.raises(ValueError, match="3 combinations"):
        bg.lmer(f, training, within={"time": ["t1", "t2", "t3"]})
    with pytest.raises(ValueError, match="duplicate level labels"):
        bg.lmer(f, training, within={"time": ["t1", "t1", "t2", "t3"]})
    with pytest.raises(FormulaError, match="unknown column 'time9'"):
        bg.lmer("cbind(time1:time9) ~ a * time", training)
    with pytest.raises(FormulaError, match="exactly one right-hand-side variable"):
        bg.lmer("cbind(time1:time4) ~ a + (1 | ID)", training)  # no within factor named
    with pytest.raises(FormulaError, match=r"found task, time"):
        bg.lmer("cbind(time1:time4) ~ a * time + task + (1 | ID)", training)
    with pytest.raises(ValueError, match="already a column"):
        bg.lmer("cbind(time1:time4) ~ a * b", training, within={"b": 4})
    with pytest.raises(FormulaError, match="within= is only used with a wide outcome"):
        bg.lmer("time1 ~ a + (1 | ID)", training, within={"time": 4})
    clash = training.assign(y=1.0)
    with pytest.raises(ValueError, match="already has a column 'y'"):
        bg.lmer(f, clash, within={"time": 4})


def test_binomial_cbind_keeps_its_meaning():
    df = pd.DataFrame({"s": [1, 2, 3, 0, 2, 4], "f": [3, 2, 1, 4, 2, 0], "x": [0, 1, 2, 3, 4, 5]})
    m = bg.glm("cbind(s, f) ~ x", df, family="binomial")
    assert m.spec.n_obs == 6
    np.testing.assert_array_equal(m.stan_data["trials"], [4] * 6)
    assert m.data_notes == ()
    with pytest.raises(FormulaError, match="cbind\\(successes, failures\\) is the binomial"):
        bg.glm("cbind(s, f) ~ x + time", df, family="binomial", within={"time": 2})


# ------------------------------------------------------------------------ factors / contrasts


def test_factors_and_contrasts_are_stated(training):
    m = bg.glmer("time1 ~ a + (1 | b)", training, factors=["a"])
    assert m.parameter_names[:2] == ["Intercept", "b[a1]"]
    assert any("a: treatment contrasts" in n for n in m.spec.notes)
    s = bg.glmer("time1 ~ b + (1 | a)", training, contrasts="sum")
    assert "b[b1]" in s.parameter_names and "b[b2]" in s.parameter_names
    assert any("b: sum-to-zero contrasts" in n for n in s.spec.notes)
    with pytest.raises(ValueError, match="factors=: unknown column 'zz'"):
        bg.glmer("time1 ~ a + (1 | b)", training, factors=["zz"])
    with pytest.raises(TypeError, match="factors must be a list"):
        bg.glmer("time1 ~ a + (1 | b)", training, factors=[1])
    one = bg.glmer("time1 ~ a + (1 | b)", training, factors="a")  # a single column name
    assert one.parameter_names == m.parameter_names


# ------------------------------------------------------------------------------- centring


@pytest.fixture(scope="module")
def clustered() -> pd.DataFrame:
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(10), 5)
    x = rng.normal(size=50) + g
    return pd.DataFrame({"g": g, "x": x, "y": 0.5 * x + rng.normal(size=50)})


def test_cwc_columns_and_replacement(clustered):
    cm = clustered.groupby("g")["x"].transform("mean")
    both = bg.lmer("y ~ x + x_cwc + x_cm + (1 | g)", clustered,
                   cwc={"cluster": "g", "pars": ["x"]})
    X = both.stan_data["X"]
    np.testing.assert_allclose(X[:, 0], clustered["x"])  # x kept: the formula uses x_cwc
    np.testing.assert_allclose(X[:, 1], clustered["x"] - cm)
    np.testing.assert_allclose(X[:, 2], cm - clustered["x"].mean())
    only = bg.lmer("y ~ x + (1 | g)", clustered, cwc=("g", "x"))
    np.testing.assert_allclose(only.stan_data["X"][:, 0], clustered["x"] - cm)
    assert any("replaced by the within-cluster deviation" in n for n in only.data_notes)
    alls = bg.lmer("y ~ x + (1 | g)", clustered, cwc={"cluster": "g", "pars": "all"})
    np.testing.assert_allclose(alls.stan_data["X"], only.stan_data["X"])
    assert clustered["x"].iloc[0] != only.stan_data["X"][0, 0]  # the user's frame is untouched


def test_gmc_and_centering_alias(clustered):
    m = bg.lmer("y ~ x + (1 | g)", clustered, gmc=["x"])
    np.testing.assert_allclose(m.stan_data["X"][:, 0], clustered["x"] - clustered["x"].mean())
    a = bg.lmer("y ~ x + (1 | g)", clustered, centering="all")
    np.testing.assert_allclose(a.stan_data["X"], m.stan_data["X"])
    with pytest.raises(ValueError, match="aliases"):
        bg.lmer("y ~ x + (1 | g)", clustered, gmc="x", centering="all")
    with pytest.raises(ValueError, match="gmc=: unknown column 'z'"):
        bg.lmer("y ~ x + (1 | g)", clustered, gmc=["z"])
    # gmc then cwc: the within deviations do not change, the cluster means are centred anyway
    both = bg.lmer("y ~ x_cwc + x_cm + (1 | g)", clustered, gmc="x", cwc=("g", ["x"]))
    ref = bg.lmer("y ~ x_cwc + x_cm + (1 | g)", clustered, cwc=("g", ["x"]))
    np.testing.assert_allclose(both.stan_data["X"], ref.stan_data["X"], atol=1e-12)


def test_cwc_bad_input(clustered):
    with pytest.raises(ValueError, match="cwc=: unknown column 'z'"):
        bg.lmer("y ~ x + (1 | g)", clustered, cwc={"cluster": "g", "pars": ["z"]})
    with pytest.raises(ValueError, match="unknown cluster column 'grp'"):
        bg.lmer("y ~ x + (1 | g)", clustered, cwc={"cluster": "grp", "pars": ["x"]})
    with pytest.raises(ValueError, match="cwc= must be"):
        bg.lmer("y ~ x + (1 | g)", clustered, cwc={"pars": ["x"]})
    one = pd.concat([clustered, pd.DataFrame({"g": [99], "x": [1.0], "y": [0.0]})],
                    ignore_index=True)
    with pytest.warns(UserWarning, match="1 cluster\\(s\\) of 'g' have a single row \\(99\\)"):
        bg.lmer("y ~ x + (1 | g)", one, cwc={"cluster": "g", "pars": ["x"]})


# ------------------------------------------------------------------- residual correlation


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [(i, t) for i in range(5) for t in (1, 2, 4, 7) if not (i == 0 and t == 2)]
    df = pd.DataFrame(rows, columns=["id", "time"]).sample(frac=1.0, random_state=2)
    df["y"] = rng.normal(size=len(df))
    df["x"] = rng.normal(size=len(df))
    return df.reset_index(drop=True)


def test_ar1_lags_are_time_differences(panel):
    m = bg.lmer("y ~ x + (1 | id)", panel, resid_corr="ar1", resid_time="time")
    d = m.stan_data
    ordered = panel.iloc[d["resid_ord"] - 1]
    assert ordered["id"].is_monotonic_increasing
    lag = d["resid_lag"]
    assert lag[:3].tolist() == [0, 3, 3]  # id 0: times 1, 4, 7 (time 2 missing)
    assert lag[3:7].tolist() == [0, 1, 2, 3]
    assert any("resid_group not given: residual correlation within 'id'" in n
               for n in m.spec.notes)
    assert "rho_resid" in m.parameter_names
    assert "matrix[N, N]" not in m.stan_code and "cov_matrix" not in m.stan_code
    assert "lags = differences of the integer values of 'time'" in str(m.spec)
    # non-integer times: ranks of the distinct values
    frac = panel.assign(time=panel["time"] / 2)
    r = bg.lmer("y ~ x + (1 | id)", frac, resid_corr="ar1", resid_time="time")
    assert r.stan_data["resid_lag"][:7].tolist() == [0, 2, 1, 0, 1, 1, 1]
    assert "ranks" in str(r.spec)
    # no resid_time: row order within the block
    n = bg.lm("y ~ x", panel, resid_corr="ar1", resid_group="id")
    assert set(n.stan_data["resid_lag"].tolist()) == {0, 1}


def test_cs_data(panel):
    m = bg.lm("y ~ x", panel, resid_corr="cs", resid_group="id", resid_time="time")
    assert m.stan_data["resid_T"] == 4
    assert "cs_resid_pointwise(y - mu" in m.stan_code
    assert "ar1_resid_pointwise" not in m.stan_code  # only the function the model uses
    assert "-1.0 / (resid_T - 1)" in m.stan_code


def test_random_intercept_on_the_same_blocks(panel):
    with pytest.warns(UserWarning, match="not identified"):
        bg.lmer("y ~ x + (1 | id)", panel, resid_corr="cs", resid_time="time")
    m = bg.lmer("y ~ x + (1 | id)", panel, resid_corr="ar1", resid_time="time")
    assert any("weakly identified" in n for n in m.spec.notes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bg.lmer("y ~ x + (0 + x | id)", panel, resid_corr="cs", resid_time="time")


def test_resid_bad_input(panel):
    with pytest.raises(ValueError, match="family 'poisson'.*supported for family 'gaussian' only"):
        bg.glmer("time ~ x + (1 | id)", panel, family="poisson", resid_corr="ar1")
    with pytest.raises(ValueError, match="give resid_group="):
        bg.lm("y ~ x", panel, resid_corr="ar1", resid_time="time")
    dup = pd.concat([panel, panel.iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate times within a block of resid_group='id'"):
        bg.lm("y ~ x", dup, resid_corr="ar1", resid_time="time", resid_group="id")
    with pytest.raises(ValueError, match="resid_corr must be one of 'ar1', 'cs'"):
        bg.lm("y ~ x", panel, resid_corr="un", resid_group="id")
    with pytest.raises(ValueError, match="resid_time=: unknown column 'when'"):
        bg.lm("y ~ x", panel, resid_corr="ar1", resid_time="when", resid_group="id")
    with pytest.raises(ValueError, match="resid_group= is only used with resid_corr="):
        bg.lm("y ~ x", panel, resid_group="id")
    single = panel.assign(id=np.arange(len(panel)))
    with pytest.raises(ValueError, match="single row"):
        bg.lm("y ~ x", single, resid_corr="ar1", resid_group="id")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bg.lm("y ~ x", panel, resid_corr="ar1", resid_group="id", resid_time="time")


def test_within_labels_keep_their_order_in_the_design():
    """Level labels given to within= are the factor's level order (first = reference for
    treatment coding, numbered columns 1..L-1 for sum coding), not formulae's sorted order."""
    wide = bg.load_training()
    formula = "cbind(time1, time2, time3, time4) ~ a * time + (1 | ID)"
    within = {"time": ["pre", "mid", "post", "fu"]}
    treat = bg.glmer(formula, data=wide, within=within)
    assert [p.user for p in treat.program.params if p.kind == "b"] == [
        "b[a]", "b[timemid]", "b[timepost]", "b[timefu]",
        "b[a:timemid]", "b[a:timepost]", "b[a:timefu]"]
    summed = bg.lmer(formula, data=wide, within=within)
    assert [p.user for p in summed.program.params if p.kind == "b"] == [
        "b[a]", "b[time1]", "b[time2]", "b[time3]", "b[a:time1]", "b[a:time2]", "b[a:time3]"]
    # rows are subject-major with time varying fastest (pre, mid, post, fu): in sum coding the
    # time columns are the identity for pre/mid/post and -1 for the last level, fu
    X = summed.stan_data["X"]
    np.testing.assert_array_equal(X[:4, 1:4], [[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]])
