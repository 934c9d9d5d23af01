"""Bad inputs get a clear error (or warning) naming the culprit before anything is compiled:
the checks of column values (bayesglmm/frame.py ``check_column_values``), of the response
(bayesglmm/prepare.py) and of the arguments (formula, prior, family, data), and the rules for
new data in ``predict()`` / ``posterior_predict()``."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesglmm as bg
from bayesglmm.formula import FormulaError

FORMULA = "sat ~ talk + perf + (1 | group)"


@pytest.fixture
def d(debate) -> pd.DataFrame:
    out = debate.copy()
    out["perf"] = out["perf"].astype(float)
    out["sat"] = out["sat"].astype(float)
    return out


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("col,value,what", [("perf", np.inf, "Column"),
                                            ("sat", -np.inf, "Response column")])
def test_infinite_values_name_the_column_and_rows(d, col, value, what):
    d.loc[[3, 7], col] = value
    msg = f"{what} '{col}' has infinite values in 2 rows (rows 3, 7: {value:g})"
    with pytest.raises(ValueError, match=re.escape(msg)):
        bg.lmer(FORMULA, data=d)


def test_infinite_values_in_an_unused_column_do_not_matter(d):
    d["unused"] = np.inf
    assert bg.lmer(FORMULA, data=d).spec.n_obs == len(d)


def test_stray_text_in_a_numeric_column_warns_with_the_value(d):
    d["perf"] = d["perf"].astype(object)
    d.loc[5, "perf"] = "n/a"
    with pytest.warns(UserWarning, match=re.escape(
            "Column 'perf' looks numeric but holds the text 'n/a' (row 5; 299 of 300 values "
            "are numbers), so it is used as a categorical predictor")) as rec:
        bg.lmer(FORMULA, data=d)
    assert "factors=['perf']" in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # declared categorical: no warning
        m = bg.lmer(FORMULA, data=d, factors=["perf"])
    assert len(dict(m.spec.factors)["perf"]) == len(set(d["perf"].astype(str)))


def test_numbers_read_as_text_with_a_stray_value(d):
    """As read_csv gives it: every value text, one of them not a number."""
    d["perf"] = d["perf"].map(lambda v: f"{v:g}")
    d.loc[[10, 20], "perf"] = "?"
    with pytest.warns(UserWarning, match=r"holds the text '\?' \(rows 10, 20; 298 of 300"):
        bg.lmer(FORMULA, data=d)


def test_text_factors_and_grouping_codes_do_not_warn(d):
    d["cond"] = np.where(d["talk"] > 2, "high", "low")
    d["group"] = d["group"].map(lambda g: f"{g}" if g % 7 else f"G{g}")  # mostly numbers
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bg.lmer("sat ~ cond + perf + (1 | group)", data=d)


def test_stray_text_in_the_response_is_an_error(d):
    d["sat"] = d["sat"].astype(object)
    d.loc[4, "sat"] = "missing"
    with pytest.raises(ValueError, match=r"Response column 'sat' looks numeric but holds the "
                                         r"text 'missing' \(row 4; 299 of 300"):
        bg.lmer(FORMULA, data=d)


@pytest.mark.parametrize("family,value", [("gaussian", 3.0), ("lognormal", 2.0),
                                          ("gamma", 2.0), ("student_t", 1.0), ("beta", 0.5)])
def test_constant_response_of_a_real_family(d, family, value):
    d["sat"] = value
    scale = {"gaussian": "sigma", "lognormal": "sigma", "gamma": "shape",
             "student_t": "sigma, nu", "beta": "phi"}[family]
    with pytest.raises(ValueError, match=re.escape(
            f"Response 'sat' is constant (all 300 values are {value:g}): with family "
            f"'{family}' its {scale} has no positive estimate")):
        bg.glmer(FORMULA, data=d, family=family)


def test_constant_count_response_is_allowed(d):
    """All zeros is data for a count or 0/1 family (a prior makes the rate estimable)."""
    d["sat"] = 0
    assert bg.glmer(FORMULA, data=d, family="poisson").spec.n_obs == 300
    assert bg.glmer(FORMULA, data=d, family="bernoulli").spec.n_obs == 300


def test_binomial_successes_above_trials(d):
    d["n"] = 5
    d["s"] = d["talk"]
    d.loc[2, "s"] = 7
    with pytest.raises(ValueError, match=re.escape(
            "binomial: in cbind(s, n - s) the failures 'n - s' must be non-negative integer "
            "counts, but there are more successes than trials in 1 row (first: row 2, "
            "7 successes, -2 failures)")):
        bg.glmer("cbind(s, n - s) ~ perf + (1 | group)", data=d, family="binomial")
    with pytest.raises(ValueError, match=r"successes in 's' exceed trials in 'n' in 1 rows "
                                         r"\(first: row 2, 7 > 5\)"):
        bg.glmer("s ~ perf + (1 | group)", data=d, family="binomial", trials="n")


@pytest.mark.parametrize("dropna", [False, True])
def test_grouping_column_all_missing(d, dropna):
    d["group"] = np.nan
    with pytest.raises(ValueError, match="Grouping column 'group' has no values: it is missing "
                                         "in all 300 rows"):
        bg.lmer(FORMULA, data=d, dropna=dropna)


def test_predictor_all_missing(d):
    d["perf"] = np.nan
    with pytest.raises(ValueError, match="Column 'perf' has no values"):
        bg.lmer(FORMULA, data=d, dropna=True)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("data", [{"sat": [1.0, 2.0]}, np.zeros((3, 2)), [1, 2]])
def test_data_that_is_not_a_data_frame(data):
    with pytest.raises(TypeError, match=f"data must be a pandas DataFrame, got "
                                        f"{type(data).__name__}"):
        bg.lmer(FORMULA, data=data)


@pytest.mark.parametrize("formula", [["sat ~ talk"], 3, None])
def test_formula_of_the_wrong_type(debate, formula):
    with pytest.raises((FormulaError, ValueError, TypeError), match="formula must be a"):
        bg.lmer(formula, data=debate)


@pytest.mark.parametrize("prior", [3, ["normal"], bg.prior_normal])
def test_prior_of_the_wrong_type(debate, prior):
    with pytest.raises(TypeError, match=f"prior must be a prior object .* got "
                                        f"{type(prior).__name__}"):
        bg.lmer(FORMULA, data=debate, prior=prior)


def test_unknown_prior_name(debate):
    with pytest.raises(ValueError, match="Unknown prior 'normall'"):
        bg.lmer(FORMULA, data=debate, prior="normall")


def test_family_of_the_wrong_type(debate):
    with pytest.raises(TypeError, match=r"family must be a string, one of: gaussian.* \(got 3\)"):
        bg.glmer(FORMULA, data=debate, family=3)


# --------------------------------------------------------------------------- new data


@pytest.mark.slow
def test_new_data_rules_of_a_map_fit(debate_map, debate):
    """A missing column and an unseen level of a grouping column are errors naming them;
    allow_new_levels=True predicts an unseen group at the population level, which for a MAP
    fit is exactly re="exclude"."""
    nd = debate.head(2).copy()
    with pytest.raises(ValueError, match="newdata lacks the column\\(s\\) perf used by the model"):
        debate_map.predict(nd.drop(columns="perf"))
    with pytest.raises(ValueError, match="newdata lacks the grouping column\\(s\\) group"):
        debate_map.predict(nd.drop(columns="group"))
    nd["group"] = [debate["group"].iloc[0], 999]
    with pytest.raises(ValueError, match=r"newdata has 1 level\(s\) of 'group' \(\(1 \| group\)\) "
                                         r"that the model was not fitted to: '999'"):
        debate_map.predict(nd)
    new = debate_map.predict(nd, allow_new_levels=True)
    pop = debate_map.predict(nd, re="exclude")
    assert new["estimate"].iloc[1] == pop["estimate"].iloc[1]
    assert new["estimate"].iloc[0] != pop["estimate"].iloc[0]  # a known group keeps its effect
