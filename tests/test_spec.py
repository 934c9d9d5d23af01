"""Formula -> ModelSpec: every formula form of the core issue, column names, groups, bad input."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesglmm.spec import FormulaError, build_spec, parse_formula

DATA = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="module")
def debate() -> pd.DataFrame:
    try:
        import bayesglmm

        return bayesglmm.load_debate()
    except Exception:  # noqa: BLE001  # pragma: no cover - loader not available - loader not available yet
        return pd.read_csv(DATA / "data" / "debate.csv")


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    try:
        import bayesglmm

        return bayesglmm.load_sleepstudy()
    except Exception:  # noqa: BLE001  # pragma: no cover - loader not available
        return pd.read_csv(DATA / "refs" / "data" / "sleepstudy.csv")


@pytest.fixture(scope="module")
def crossed() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    subj = np.repeat([f"s{i}" for i in range(6)], 4)
    item = np.tile(["i1", "i2", "i3", "i4"], 6)
    return pd.DataFrame({
        "rt": rng.normal(500, 50, 24), "x": rng.normal(size=24), "subject": subj, "item": item,
        "cond": pd.Categorical(np.tile(["a", "b", "c"], 8)),
    })


# ---------------------------------------------------------------------------- parsing


def test_parse_bars_and_fixed():
    p = parse_formula("y ~ a * b + (x || g) + (1 | h/k) + (0 + x | g)")
    assert p.response == "y"
    assert p.fixed == "a * b"
    assert [(b.lhs, b.factor, b.correlated) for b in p.bars] == [
        ("x", ("g",), False), ("1", ("h",), True), ("1", ("h", "k"), True), ("0 + x", ("g",), True),
    ]
    assert p.grouping_columns == ("g", "h", "k")
    assert parse_formula("y ~ (1 | g)").fixed == "1"
    assert parse_formula("cbind(s, f) ~ x").cbind == ("s", "f")


@pytest.mark.parametrize("bad", ["~ x", "x", "", " ~ x + (1|g)"])
def test_no_response(bad):
    with pytest.raises(FormulaError, match="response|non-empty"):
        parse_formula(bad)


def test_bar_without_parentheses():
    with pytest.raises(FormulaError, match="parentheses"):
        parse_formula("y ~ x + 1 | g")


# ---------------------------------------------------------------------------- fixed effects


def test_numeric_and_interaction(debate):
    s = build_spec("sat ~ talk * perf + (1 | group)", debate)
    assert s.fixed.names == ("talk", "perf", "talk:perf")
    assert s.fixed.intercept and s.has_intercept
    np.testing.assert_allclose(s.fixed.X[:, 2], debate.talk * debate.perf)
    assert dict(s.fixed.term_columns) == {"talk": (0,), "perf": (1,), "talk:perf": (2,)}
    assert s.n_obs == 300
    np.testing.assert_allclose(s.response.y, debate.sat)


def test_colon_interaction_only(debate):
    s = build_spec("sat ~ talk + talk:perf", debate)
    assert s.fixed.names == ("talk", "talk:perf")


def test_no_intercept(debate):
    s = build_spec("sat ~ 0 + talk", debate)
    assert not s.has_intercept and s.fixed.names == ("talk",)
    s = build_spec("sat ~ talk - 1", debate)
    assert not s.has_intercept


def test_intercept_only(debate):
    s = build_spec("sat ~ 1 + (1 | group)", debate)
    assert s.fixed.K == 0 and s.fixed.X.shape == (300, 0) and s.has_intercept


def test_treatment_contrasts(debate):
    s = build_spec("sat ~ cond * skill", debate, factors=["cond", "skill"])
    assert s.fixed.names == ("cond1", "skill2", "skill3", "cond1:skill2", "cond1:skill3")
    np.testing.assert_array_equal(s.fixed.X[:, 0], (debate.cond == 1).astype(float))
    np.testing.assert_array_equal(s.fixed.X[:, 2], (debate.skill == 3).astype(float))
    assert dict(s.factors) == {"cond": ("0", "1"), "skill": ("1", "2", "3")}


def test_sum_contrasts(debate):
    s = build_spec("sat ~ cond * skill + (1 | group)", debate, factors=["cond", "skill"],
                   contrasts="sum")
    assert s.fixed.names == ("cond1", "skill1", "skill2", "cond1:skill1", "cond1:skill2")
    X = s.fixed.X
    # R's contr.sum: level j -> e_j, last level -> -1 everywhere
    np.testing.assert_array_equal(X[:, 0], np.where(debate.cond == 0, 1.0, -1.0))
    np.testing.assert_array_equal(X[:, 1], np.select([debate.skill == 1, debate.skill == 3],
                                                     [1.0, -1.0], 0.0))
    np.testing.assert_array_equal(X[:, 2], np.select([debate.skill == 2, debate.skill == 3],
                                                     [1.0, -1.0], 0.0))
    np.testing.assert_array_equal(X[:, 3], X[:, 0] * X[:, 1])
    assert dict(s.fixed.term_columns) == {"cond": (0,), "skill": (1, 2), "cond:skill": (3, 4)}


def test_string_factor_is_categorical(crossed):
    s = build_spec("rt ~ cond + x", crossed)
    assert s.fixed.names == ("condb", "condc", "x")


def test_offset(debate):
    s = build_spec("talk ~ perf + offset(log(perf + 1)) + (1 | group)", debate, family="poisson")
    assert s.fixed.names == ("perf",)
    np.testing.assert_allclose(s.fixed.offset, np.log(debate.perf + 1))


# ---------------------------------------------------------------------------- random effects


def test_random_intercept(debate):
    s = build_spec("sat ~ talk + perf + (1 | group)", debate)
    (g,) = s.groups
    assert (g.k, g.factor, g.coefs, g.q, g.n_groups) == (1, "group", ("Int",), 1, 100)
    assert g.intercept_only and not g.has_corr
    # groups indexed by sorted level: numeric order, not string order
    assert g.levels[:3] == ("1", "2", "3") and g.levels[-1] == "100"
    np.testing.assert_array_equal(g.index, debate.group.to_numpy())
    assert (g.group_sizes == 3).all()


def test_random_slope_correlated(sleep):
    s = build_spec("Reaction ~ Days + (Days | Subject)", sleep)
    (g,) = s.groups
    assert g.coefs == ("Int", "Days") and g.has_corr and g.n_groups == 18
    np.testing.assert_array_equal(g.Z[:, 0], 1.0)
    np.testing.assert_array_equal(g.Z[:, 1], sleep.Days)
    levels = sorted(sleep.Subject.astype(str).unique(), key=int)
    assert g.levels == tuple(levels)
    np.testing.assert_array_equal(np.asarray(g.levels)[g.index - 1], sleep.Subject.astype(str))
    assert (g.group_sizes == 10).all()


def test_slope_only(sleep):
    s = build_spec("Reaction ~ Days + (0 + Days | Subject)", sleep)
    assert s.groups[0].coefs == ("Days",) and not s.groups[0].intercept_only


def test_uncorrelated_double_bar(sleep):
    s = build_spec("Reaction ~ Days + (Days || Subject)", sleep)
    (g,) = s.groups
    assert g.coefs == ("Int", "Days") and not g.correlated and not g.has_corr
    assert g.text == "(Days || Subject)"  # the term as written


def test_nested(debate):
    s = build_spec("sat ~ talk + (1 | cond/group)", debate)
    g1, g2 = s.groups
    assert (g1.factor, g1.n_groups) == ("cond", 2)
    assert g2.factor == "cond:group" and g2.n_groups == 100
    # levels sorted by (cond, group)
    assert g2.levels[0].startswith("0:")
    lab = np.asarray(g2.levels)[g2.index - 1]
    np.testing.assert_array_equal(lab, [f"{c}:{g}" for c, g in zip(debate.cond, debate.group)])


def test_crossed_and_several_terms_per_factor(crossed):
    s = build_spec("rt ~ x + (1 | subject) + (1 | item) + (0 + x | subject)", crossed)
    assert [(g.k, g.factor, g.coefs, g.n_groups) for g in s.groups] == [
        (1, "subject", ("Int",), 6), (2, "item", ("Int",), 4), (3, "subject", ("x",), 6),
    ]
    assert s.groups[0].levels == ("s0", "s1", "s2", "s3", "s4", "s5")
    np.testing.assert_array_equal(s.groups[1].index, np.tile([1, 2, 3, 4], 6))


def test_factor_random_slope(crossed):
    s = build_spec("rt ~ cond + (cond | subject)", crossed)
    assert s.groups[0].coefs == ("Int", "condb", "condc")
    s = build_spec("rt ~ cond + (cond | subject)", crossed, contrasts="sum")
    assert s.groups[0].coefs == ("Int", "cond1", "cond2")


def test_spec_is_printable_and_frozen(debate):
    s = build_spec("sat ~ talk + perf + (1 | group)", debate, prior="normal")
    text = str(s)
    assert "b[talk]" in text and "(1 | group)" in text and "100 groups" in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.n_obs = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------- bad input


def test_unknown_column(debate):
    with pytest.raises(FormulaError, match="'nope'"):
        build_spec("sat ~ talk + nope + (1 | group)", debate)
    with pytest.raises(FormulaError, match="'grp'"):
        build_spec("sat ~ talk + (1 | grp)", debate)
    with pytest.raises(FormulaError, match="'zzz'"):
        build_spec("zzz ~ talk", debate)


def test_missing_values(debate):
    d = debate.copy()
    d.loc[[3, 7, 9], "perf"] = np.nan
    d.loc[[7], "talk"] = np.nan
    with pytest.raises(ValueError, match=r"3 of 300 rows.*'perf' \(3 rows\).*dropna=True"):
        build_spec("sat ~ talk + perf + (1 | group)", d)
    s = build_spec("sat ~ talk + perf + (1 | group)", d, dropna=True)
    assert s.n_obs == 297 and s.n_dropped == 3
    # unused columns with NA do not matter
    d2 = debate.copy()
    d2.loc[0, "skill"] = np.nan
    assert build_spec("sat ~ talk", d2).n_obs == 300


def test_one_level_group(debate):
    d = debate.assign(one="x")
    with pytest.raises(FormulaError, match="'one'.*one level"):
        build_spec("sat ~ talk + (1 | one)", d)


def test_slope_constant_within_groups_warns(debate):
    with pytest.warns(UserWarning, match="'cond'.*does not vary within"):
        build_spec("sat ~ talk + (cond | group)", debate)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_spec("sat ~ talk + (talk | group)", debate)


def test_non_numeric_response_gaussian(debate):
    d = debate.assign(lab=np.where(debate.sat > 3, "hi", "lo"))
    with pytest.raises(ValueError, match="'lab'.*numeric"):
        build_spec("lab ~ talk", d)
    d = debate.assign(lab=pd.Categorical(d.lab))
    with pytest.raises(ValueError, match="'lab'.*numeric"):
        build_spec("lab ~ talk", d)


def test_unknown_family_and_prior(debate):
    with pytest.raises(ValueError, match="Unknown family 'gausian'.*gaussian, lognormal"):
        build_spec("sat ~ talk", debate, family="gausian")
    with pytest.raises(ValueError, match="Unknown prior 'strong'.*flat, normal, weak"):
        build_spec("sat ~ talk", debate, prior="strong")


def test_empty_data(debate):
    with pytest.raises(ValueError, match="empty"):
        build_spec("sat ~ talk", debate.iloc[:0])


def test_no_random_allowed(debate):
    with pytest.raises(FormulaError, match="lmer"):
        build_spec("sat ~ talk + (1 | group)", debate, allow_random=False)


def test_bad_contrasts(debate):
    with pytest.raises(ValueError, match="contrasts"):
        build_spec("sat ~ talk", debate, contrasts="helmert")


def test_minus_one_with_bars(debate):
    for f in ("sat ~ talk + (1 | group) - 1", "sat ~ -1 + talk + (1 | group)"):
        s = build_spec(f, debate)
        assert not s.has_intercept and s.fixed.names == ("talk",) and len(s.groups) == 1
    s = build_spec("sat ~ talk * perf - talk:perf", debate)
    assert s.fixed.names == ("talk", "perf")


def test_response_expression(debate):
    s = build_spec("log(sat) ~ talk", debate)
    np.testing.assert_allclose(s.response.y, np.log(debate.sat))


def test_factor_grouping_levels_in_category_order():
    d = pd.DataFrame({"y": np.arange(6.0), "g": pd.Categorical(list("bbaacc"),
                                                               categories=["c", "b", "a"])})
    s = build_spec("y ~ (1 | g)", d)
    assert s.groups[0].levels == ("c", "b", "a")
    np.testing.assert_array_equal(s.groups[0].index, [2, 2, 3, 3, 1, 1])
    d["g"] = list("bbaacc")
    s = build_spec("y ~ (1 | g)", d)
    assert s.groups[0].levels == ("a", "b", "c")


def test_ordered_factor_polynomial_contrasts(debate):
    from bayesglmm.spec import contr_poly

    # R: contr.poly(3)
    np.testing.assert_allclose(contr_poly(3), [[-1 / np.sqrt(2), 1 / np.sqrt(6)],
                                               [0, -2 / np.sqrt(6)],
                                               [1 / np.sqrt(2), 1 / np.sqrt(6)]], atol=1e-12)
    d = debate.assign(sk=pd.Categorical(debate.skill, categories=[1, 2, 3], ordered=True))
    for contrasts in ("treatment", "sum"):
        s = build_spec("sat ~ sk * talk + (1 | group)", d, contrasts=contrasts)
        assert s.fixed.names == ("sk.L", "sk.Q", "talk", "sk.L:talk", "sk.Q:talk")
        assert dict(s.fixed.term_columns) == {"sk": (0, 1), "talk": (2,), "sk:talk": (3, 4)}
        np.testing.assert_allclose(s.fixed.X[:, :2], contr_poly(3)[debate.skill - 1])
    assert build_spec("sat ~ 0 + sk", d).fixed.names == ("sk1", "sk2", "sk3")
