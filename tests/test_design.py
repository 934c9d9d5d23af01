"""Design matrices (bayesglmm/design.py): one formulae run per distinct piece of a formula, and
random-effect columns taken from earlier designs equal to those formulae builds."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesglmm.design as design
from bayesglmm.design import FormulaeRuns
from bayesglmm.formula import rhs_terms
from bayesglmm.spec import build_spec


@pytest.fixture(scope="module")
def deb(debate) -> pd.DataFrame:
    d = debate.copy()
    d["condf"] = d["cond"].astype(str)  # a categorical predictor
    d["flag"] = d["cond"] > 0  # a boolean one
    return d


def _runs(monkeypatch, formula, data, **kw) -> int:
    """formulae design-matrix runs of one build_spec."""
    calls = []
    orig = design.design_matrices

    def counted(rhs, *a, **k):
        calls.append(rhs)
        return orig(rhs, *a, **k)

    monkeypatch.setattr(design, "design_matrices", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_spec(formula, data, **kw)
    monkeypatch.setattr(design, "design_matrices", orig)
    return len(calls)


@pytest.mark.parametrize("formula, runs", [
    ("Reaction ~ Days + (Days | Subject)", 1),  # same text: one design
    ("Reaction ~ Days + (1 | Subject)", 1),  # the intercept needs no run
    ("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", 1),
])
def test_sleepstudy_runs_formulae_once(monkeypatch, sleepstudy, formula, runs):
    assert _runs(monkeypatch, formula, sleepstudy) == runs


@pytest.mark.parametrize("formula, runs", [
    ("sat ~ talk * cond + perf + skill + (1 + talk | group) + (1 | skill)", 1),
    ("sat ~ talk * perf + (1 + talk + talk:perf | group)", 1),
    ("sat ~ talk + (perf | group)", 2),  # perf is not in the fixed part
    ("sat ~ talk * condf + (1 + condf | group)", 2),  # categorical columns are never reused
])
def test_debate_runs(monkeypatch, deb, formula, runs):
    assert _runs(monkeypatch, formula, deb) == runs


def test_zero_inflation_part_shares_the_run(monkeypatch, deb):
    d = deb.assign(count=(deb["sat"] > 4).astype(int) * deb["talk"])
    n = _runs(monkeypatch, "count ~ talk + (1 | group)", d, family="zero_inflated_poisson",
              zi="~ talk")
    assert n == 1


FORMULAS = [
    "sat ~ talk + (1 | group)",
    "sat ~ talk + perf + (perf + talk | group)",
    "sat ~ talk * perf + (talk:perf | group)",
    "sat ~ talk:perf + (talk | group)",
    "sat ~ talk + I(talk**2) + (I(talk**2) | group)",
    "sat ~ scale(talk) + (scale(talk) | group)",
    "sat ~ log(talk + 1) + (log(talk + 1) | group)",
    "sat ~ talk + flag + (1 + flag | group)",
    "sat ~ talk * condf + (talk + condf | group)",
    "sat ~ talk + condf + (0 + condf | group)",
    "sat ~ 0 + talk + (1 + talk | group)",
    "sat ~ talk + offset(perf) + (1 + talk | group)",
    "sat ~ talk + (talk - 1 | group) + (1 | skill)",
    "sat ~ talk + (talk || group) + (1 + talk | skill)",
]


@pytest.mark.parametrize("contrasts", ["treatment", "sum"])
@pytest.mark.parametrize("formula", FORMULAS)
def test_reused_columns_equal_formulae(monkeypatch, deb, formula, contrasts):
    """Every design of a model is the same with and without taking random-effect columns
    from earlier designs (the latter: formulae on each piece)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = build_spec(formula, deb, contrasts=contrasts)
        monkeypatch.setattr(FormulaeRuns, "earlier_columns", lambda self, rhs: None)
        plain = build_spec(formula, deb, contrasts=contrasts)
    assert fast.fixed.names == plain.fixed.names
    np.testing.assert_array_equal(fast.fixed.X, plain.fixed.X)
    assert len(fast.groups) == len(plain.groups)
    for a, b in zip(fast.groups, plain.groups):
        assert (a.text, a.coefs, a.levels, a.correlated) == (b.text, b.coefs, b.levels,
                                                             b.correlated)
        assert a.Z.dtype == b.Z.dtype
        np.testing.assert_array_equal(a.Z, b.Z)
        np.testing.assert_array_equal(a.index, b.index)


def test_formulae_runs_reuse_only_numeric_single_columns():
    d = pd.DataFrame({"x": [1.0, 2.0, 4.0, 3.0], "z": [0.5, 0.1, 0.2, 0.3],
                      "f": pd.Categorical(["a", "b", "a", "b"], ordered=True)})
    runs = FormulaeRuns(d)
    first = runs("x + f", "the fixed part")
    assert runs("x + f", "again") is first
    labels, Z = runs.earlier_columns("1 + x")
    assert labels == [None, "x"]
    np.testing.assert_array_equal(Z, np.column_stack([np.ones(4), d["x"]]))
    assert runs.earlier_columns("1 + f") is None  # categorical: formulae codes it
    assert runs.earlier_columns("1 + z") is None  # not in an earlier design
    assert runs.earlier_columns("0") is None  # no columns: formulae's error
    assert runs.earlier_columns("x +") is None  # unreadable: formulae's error


def test_rhs_terms():
    assert rhs_terms("talk") == (None, "talk")
    assert rhs_terms("talk - 1") == ("talk",)
    assert rhs_terms("offset(x) + z") == (None, "offset(x)", "z")
    assert rhs_terms("y ~ x") is None
