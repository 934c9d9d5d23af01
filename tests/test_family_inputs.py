"""Family inputs through the public wrappers (glmer/glm): cbind() with expressions, trials=,
levels=, factors=, offsets, and the clear bad-input errors of issue 4 (naming the column and the
offending values). No compilation: these tests only build the model (spec, code and data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesglmm
from bayesglmm.spec import FormulaError

DATA = Path(__file__).parent / "reference" / "data"


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return pd.read_csv(DATA / "cbpp.csv")


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    return pd.read_csv(DATA / "wine.csv")


@pytest.fixture(scope="module")
def counts() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(10), 6)
    expo = rng.uniform(0.5, 3.0, size=g.size)
    return pd.DataFrame({"g": g, "x": rng.normal(size=g.size), "expo": expo,
                         "y": rng.poisson(expo), "pos": rng.gamma(2.0, 1.0, size=g.size)})


# --------------------------------------------------------------------------- binomial


def test_cbind_with_expression(cbpp):
    m = bayesglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                        family="binomial", factors=["period"])
    d = m.stan_data
    np.testing.assert_array_equal(d["y"], cbpp.incidence)
    np.testing.assert_array_equal(d["trials"], cbpp["size"])
    assert m.parameter_names[:4] == ["Intercept", "b[period2]", "b[period3]", "b[period4]"]
    assert "binomial_logit_glm_lpmf(y | trials" in m.stan_code


def test_cbind_columns_and_trials_agree(cbpp):
    a = bayesglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                        family="binomial", factors="period")
    b = bayesglmm.glmer("cbind(incidence, fail) ~ period + (1 | herd)",
                        cbpp.assign(fail=cbpp["size"] - cbpp.incidence), family="binomial",
                        factors=["period"])
    c = bayesglmm.glmer("incidence ~ period + (1 | herd)", cbpp, family="binomial",
                        trials="size", factors=["period"])
    assert a.stan_code == b.stan_code == c.stan_code
    for key in ("y", "trials", "X", "J_1"):
        np.testing.assert_array_equal(a.stan_data[key], b.stan_data[key])
        np.testing.assert_array_equal(a.stan_data[key], c.stan_data[key])


def test_binomial_bad_input(cbpp):
    with pytest.raises(ValueError, match=r"'incidence - size'.*non-negative integer.*-12"):
        bayesglmm.glmer("cbind(incidence, incidence - size) ~ period + (1 | herd)", cbpp,
                        family="binomial")
    with pytest.raises(FormulaError, match="Unknown column 'sz'"):
        bayesglmm.glmer("cbind(incidence, sz - incidence) ~ period + (1 | herd)", cbpp,
                        family="binomial")
    with pytest.raises(ValueError, match=r"successes in 'size' exceed trials in 'incidence'"):
        bayesglmm.glmer("size ~ period + (1 | herd)", cbpp, family="binomial",
                        trials="incidence")
    with pytest.raises(ValueError, match="trials= is only used by family 'binomial'"):
        bayesglmm.glm("incidence ~ period", cbpp, family="poisson", trials="size")
    with pytest.raises(TypeError, match="trials= must be the name of a column"):
        bayesglmm.glm("incidence ~ period", cbpp, family="binomial", trials=3)
    with pytest.raises(ValueError, match=r"'incidence' has counts other than 0/1.*trials="):
        bayesglmm.glm("incidence ~ period", cbpp, family="binomial")


def test_factors_argument(cbpp):
    m = bayesglmm.glm("incidence ~ period", cbpp, family="poisson", factors=["period"])
    assert m.parameter_names == ["Intercept", "b[period2]", "b[period3]", "b[period4]"]
    m = bayesglmm.glm("incidence ~ period", cbpp, family="poisson")
    assert m.parameter_names == ["Intercept", "b[period]"]
    with pytest.raises(ValueError, match="factors=: unknown column 'perod'"):
        bayesglmm.glm("incidence ~ period", cbpp, family="poisson", factors=["perod"])


# --------------------------------------------------------------------------- counts, offsets


@pytest.mark.parametrize("family", ["poisson", "neg_binomial"])
def test_offset_through_wrappers(counts, family):
    m = bayesglmm.glmer("y ~ x + offset(log(expo)) + (1 | g)", counts, family=family)
    np.testing.assert_allclose(m.stan_data["offsets"], np.log(counts.expo))
    assert "eta += offsets;" in m.stan_code
    m = bayesglmm.glm("y ~ x + offset(log(expo))", counts, family=family)
    np.testing.assert_allclose(m.stan_data["offsets"], np.log(counts.expo))


def test_count_bad_input(counts):
    with pytest.raises(ValueError, match=r"'z'.*non-negative integer counts.*'poisson'.*-1"):
        bayesglmm.glmer("z ~ x + (1 | g)", counts.assign(z=counts.y - 1), family="poisson")
    with pytest.raises(ValueError, match=r"'z'.*non-negative integer counts.*0\.5"):
        bayesglmm.glm("z ~ x", counts.assign(z=counts.y + 0.5), family="neg_binomial")


def test_positive_bad_input(counts):
    for fam in ("lognormal", "gamma"):
        with pytest.raises(ValueError, match=rf"'z' must be strictly positive.*'{fam}'.*0"):
            bayesglmm.glmer("z ~ x + (1 | g)", counts.assign(z=counts.pos - 1.0), family=fam)


def test_bernoulli_bad_input(counts):
    with pytest.raises(ValueError, match=r"'y' must be 0/1.*'bernoulli'.*e\.g\. [2-9]"):
        bayesglmm.glmer("y ~ x + (1 | g)", counts.assign(y=counts.y + 2), family="bernoulli")
    lab = np.where(counts.y > 1, "yes", "no")
    m = bayesglmm.glm("z ~ x", counts.assign(z=lab), family="bernoulli", levels=["no", "yes"])
    np.testing.assert_array_equal(m.stan_data["y"], (counts.y > 1).astype(int))
    assert any("'yes' = 1" in n for n in m.spec.notes)


def test_extra_parameter_family_does_not_have(counts):
    with pytest.raises(ValueError, match="nu"):
        bayesglmm.glmer("y ~ x + (1 | g)", counts, family="poisson",
                        prior=bayesglmm.prior_normal(nu_rate=0.1))


# --------------------------------------------------------------------------- ordinal


def test_ordinal_levels_through_wrapper(wine):
    labels = np.array(["awful", "poor", "ok", "good", "great"])[wine.rating - 1]
    order = ["awful", "poor", "ok", "good", "great"]
    m = bayesglmm.glmer("r ~ temp + contact + (1 | judge)", wine.assign(r=labels),
                        family="ordered", levels=order)
    np.testing.assert_array_equal(m.stan_data["y"], wine.rating)
    assert m.stan_data["C"] == 5
    assert any("levels= order" in n and "awful < poor < ok < good < great" in n
               for n in m.spec.notes)
    cat = pd.Categorical(labels, categories=order, ordered=True)
    m2 = bayesglmm.glmer("r ~ temp + contact + (1 | judge)", wine.assign(r=cat),
                         family="sequential")
    np.testing.assert_array_equal(m2.stan_data["y"], wine.rating)
    assert any("category order" in n for n in m2.spec.notes)
    with pytest.raises(ValueError, match=r"'r' is text.*levels=.*awful"):
        bayesglmm.glmer("r ~ temp + (1 | judge)", wine.assign(r=labels), family="ordered")
    with pytest.raises(ValueError, match=r"'r' has values \['great'\] that are not in levels"):
        bayesglmm.glmer("r ~ temp + (1 | judge)", wine.assign(r=labels), family="ordered",
                        levels=order[:4])


def test_ordinal_bad_categories(wine):
    r = np.where(wine.rating == 3, 2, wine.rating)
    with pytest.raises(ValueError, match=r"'r' has unobserved categories \[3\] between 1 and 5"):
        bayesglmm.glmer("r ~ temp + (1 | judge)", wine.assign(r=r), family="ordered")
    with pytest.raises(ValueError, match=r"'r' has only one observed category"):
        bayesglmm.glmer("r ~ temp + (1 | judge)", wine.assign(r=2), family="sequential")
    with pytest.raises(ValueError, match=r"'r' must hold category codes 1\.\.C.*0"):
        bayesglmm.glmer("r ~ temp + (1 | judge)", wine.assign(r=wine.rating - 1),
                        family="ordered")
