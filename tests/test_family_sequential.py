"""The sequential family with one coefficient per predictor, common to all transitions
(``glmer(..., family="sequential", category_specific=False)``, brms' ``sratio``).

Reference: a continuation-ratio model is a binary logit model on the data expanded by
transition (Tutz; brms' documentation of sratio): observation y contributes one row per
transition k = 1..min(y, C - 1) with response 1 if y > k, predictor columns x and an indicator
of k, whose coefficient is -c_k. With the same random intercepts the two joint likelihoods are
the same function of (b, c, z), so their Laplace maximum likelihood fits by classic() must
agree (the bernoulli program uses ``bernoulli_logit_glm``, the sequential one its own Stan
function: two independent code paths).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesglmm
from bayesglmm.families import FAMILIES, get_family

REL = 1e-4  # as tests/test_classic.py


def test_common_variant_of_the_table_entry():
    seq = get_family("sequential")
    common = seq.with_category_specific(False)
    assert seq.category_specific and not common.category_specific and common.common_variant
    assert seq.with_category_specific(None) is seq and seq.with_category_specific(True) is seq
    assert FAMILIES["ordered"].with_category_specific(False) is FAMILIES["ordered"]
    with pytest.raises(ValueError, match="category_specific=True is not available for family "
                                         "'ordered'"):
        FAMILIES["ordered"].with_category_specific(True)
    with pytest.raises(TypeError, match="category_specific must be True, False or None"):
        seq.with_category_specific("no")


def test_common_names_and_code(debate):
    m = bayesglmm.glmer("sat ~ talk + perf + (1 | group)", debate, family="sequential",
                        category_specific=False)
    assert m.parameter_names[:6] == ["b[talk]", "b[perf]", "cutpoints[C1]", "cutpoints[C2]",
                                     "cutpoints[C3]", "cutpoints[C4]"]
    assert "category_specific = FALSE" in m.call()
    assert "vector[K] beta;" in m.stan_code and "vector[N] mu = X * beta + eta;" in m.stan_code
    default = bayesglmm.glmer("sat ~ talk + (1 | group)", debate, family="sequential")
    assert default.parameter_names[:2] == ["b[talk,1->2]", "b[talk,2->3]"]
    assert "category_specific" not in default.call()


def test_the_common_variant_has_its_own_generic_program(debate):
    """category_specific=False runs the precompiled sequential_common program (equivalence with
    the specific program: tests/test_generic.py); the default runs the sequential one."""
    from bayesglmm import generic

    m = bayesglmm.glmer("sat ~ talk + (1 | group)", debate, family="sequential",
                        category_specific=False)
    assert generic.covers(m.spec) is None and m.spec.family.program == "sequential_common"
    assert m.backend == "generic" and m.run_program.name == "generic_sequential_common"
    assert "vector[K - K_fixed] beta_free;" in m.run_program.code
    default = bayesglmm.glmer("sat ~ talk + (1 | group)", debate, family="sequential")
    assert generic.covers(default.spec) is None
    assert default.run_program.name == "generic_sequential"
    assert "matrix[K, C - 1] beta;" in default.run_program.code
    from bayesglmm.results import backend_lines

    assert backend_lines(m) == ["Stan program: generic (the precompiled sequential_common "
                                "program)"]
    assert backend_lines(default) == ["Stan program: generic (the precompiled sequential "
                                      "program)"]


def test_rng_common():
    """Transition probabilities of the simulated categories: P(y > k | y >= k) =
    logistic(eta - c_k) (200,000 draws: SE below 0.0015 per transition)."""
    rng = np.random.default_rng(5)
    common = get_family("sequential").with_category_specific(False)
    c = np.array([-1.0, 0.0, 1.0])
    y = common.rng(np.full(200_000, 0.3), {"cutpoints": c}, rng)
    for k in (1, 2, 3):
        at_risk = y >= k
        got = np.mean(y[at_risk] > k)
        assert abs(got - 1 / (1 + np.exp(-(0.3 - c[k - 1])))) < 0.006, k
    # (S, n) predictors with (S, C - 1) cutpoints, as posterior_predict passes them
    y2 = common.rng(np.zeros((4, 7)), {"cutpoints": np.tile(c, (4, 1))}, rng)
    assert y2.shape == (4, 7) and set(np.unique(y2)) <= {1, 2, 3, 4}


def test_simulate_common_accepts_unordered_cutpoints(debate):
    """Sequential cutpoints need not increase (they are a plain vector, unlike ordered)."""
    from bayesglmm.simulate import simulate

    m = bayesglmm.glmer("sat ~ talk + (1 | group)", debate, family="sequential",
                        category_specific=False)
    truth = {"b[talk]": 0.5, "cutpoints[C1]": 0.5, "cutpoints[C2]": -0.5,
             "cutpoints[C3]": 1.0, "cutpoints[C4]": 2.0, "sd[group:Int]": 0.5}
    y = np.asarray(simulate(m, 2, params=truth, seed=1).y)
    assert y.shape[-1] == len(debate) and set(np.unique(y)) <= {1, 2, 3, 4, 5}


def expand(df: pd.DataFrame, C: int) -> pd.DataFrame:
    """One row per transition at risk: cont = 1 if y > k (the continuation-ratio expansion)."""
    rows = []
    for _, r in df.iterrows():
        for k in range(1, min(int(r["sat"]), C - 1) + 1):
            rows.append({"group": r["group"], "talk": r["talk"], "perf": r["perf"],
                         "step": f"s{k}", "cont": int(r["sat"] > k)})
    return pd.DataFrame(rows)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_classic_equals_expanded_bernoulli(debate, toolchain, tmp_path):
    m = bayesglmm.glmer("sat ~ talk + perf + (1 | group)", debate, family="sequential",
                        category_specific=False)
    m.compile(verbose=False)
    fit = m.classic(verbose=False)
    long = expand(debate, 5)
    ref = bayesglmm.glmer("cont ~ 0 + step + talk + perf + (1 | group)", long,
                          family="bernoulli")
    ref.compile(verbose=False)
    rfit = ref.classic(verbose=False)
    s, r = fit.summary(), rfit.summary()
    pairs = [("b[talk]", "b[talk]", 1), ("b[perf]", "b[perf]", 1),
             ("sd[group:Int]", "sd[group:Int]", 1)]
    pairs += [(f"cutpoints[C{k}]", f"b[steps{k}]", -1) for k in (1, 2, 3, 4)]
    for ours, theirs, sign in pairs:
        want = sign * r.loc[theirs, "estimate"]
        assert abs(s.loc[ours, "estimate"] - want) <= REL * abs(want) + 1e-6, (ours, want)
        assert abs(s.loc[ours, "se"] - r.loc[theirs, "se"]) <= 1e-3 * r.loc[theirs, "se"], ours
    assert abs(fit.loglik - rfit.loglik) <= 1e-6 * abs(rfit.loglik)
    # Wald test of a common coefficient, as for other families
    a = bayesglmm.anova(fit)
    assert abs(a.loc["talk", "Chisq"] - (s.loc["b[talk]", "estimate"]
                                         / s.loc["b[talk]", "se"]) ** 2) < 1e-6 * a.loc["talk", "Chisq"]

    # a saved fit reloads with the common coefficients (the file records category_specific)
    path = fit.save(tmp_path / "common")
    again = bayesglmm.load(path)
    assert again.backend == "generic" and "category_specific = FALSE" in again.model.call()
    pd.testing.assert_frame_equal(again.summary(), s)

    # variational and posterior predictions run on the same program
    vi = m.variational(seed=3, verbose=False)
    v = vi.summary()
    assert {"b[talk]", "b[perf]", "cutpoints[C4]"} <= set(v.index)
    assert abs(v.loc["b[talk]", "mean"] - s.loc["b[talk]", "estimate"]) < 4 * s.loc["b[talk]", "se"]
    yrep = vi.posterior_predict(seed=1)
    assert yrep.shape == (1000, len(debate)) and set(np.unique(yrep)) <= {1, 2, 3, 4, 5}
    # predictive category shares close to the observed ones (a well-fitting model)
    obs = np.bincount(debate["sat"], minlength=6)[1:] / len(debate)
    rep = np.bincount(yrep.ravel(), minlength=6)[1:] / yrep.size
    assert np.max(np.abs(obs - rep)) < 0.05, (obs, rep)
