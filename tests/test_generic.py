"""The generic programs (bayesglmm/generic.py): coverage rules, data, names, and equivalence with
the specific programs.

Equivalence (slow): for every case below, the family's generic program and the model's own
(specific) program, both loaded in BridgeStan, give the same log density at 20 random
unconstrained points (with and without the Jacobian, 1e-10 relative), the same gradient, the same
unconstrained parameter names (after :func:`generic.specific_names`) and the same constrained
values (parameters, transformed parameters, generated quantities including ``log_lik``).

Stan programs compiled here: one generic program per family (cache name ``generic_<family>``,
shared with the fits that use them). The specific programs are, where possible, programs the
suite compiles anyway (same structure and cache name, so no extra compile in a full run):
``fam_<case>`` of tests/test_families.py, program 6 of tests/conftest.py (a held coefficient)
and the ar1/cs programs of tests/test_repeated_fits.py. Two are added by this module: a gaussian
model filling all six slots (correlated slopes, an uncorrelated ``||`` term, nested and crossed
intercepts, a slope without intercept, an offset) and an ordered model without grouping terms.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest

from bayesglmm import generic
from bayesglmm.codegen import generate
from bayesglmm.families import FAMILY_NAMES, get_family, program_families
from bayesglmm.priors import make_prior, prior_flat, prior_normal, prior_weak
from bayesglmm.spec import build_spec, hold_coefficients
from bayesglmm.toolchain.programs import generic_programs, program_name, resolve_families

# ------------------------------------------------------------------------------- the cases

COMMON = get_family("sequential").with_category_specific(False)

SIX = ("sat ~ talk + perf + offset(0.1 * perf) + (1 + talk | group) + (1 | skill/cond)"
       " + (perf || cond) + (0 + talk | skill) + (1 | perf)")

#: case -> (family, formula, prior, build_spec options, coefficients held, specific cache name)
CASES: dict[str, tuple] = {
    # tests/test_families.py LOGP_CASES (cache names fam_<case>)
    "gaussian": ("gaussian", "sat ~ talk + perf + (1 | group)", prior_normal(), {}, None,
                 "fam_gaussian"),
    "gaussian_corr": ("gaussian", "sat ~ talk + (talk | group)", prior_flat(), {}, None,
                      "fam_gaussian_corr"),
    "gaussian_lkj": ("gaussian", "sat ~ talk + (talk | group)", prior_normal(lkj_eta=2.0), {},
                     None, "fam_gaussian_lkj"),
    "gaussian_k0": ("gaussian", "sat ~ 1 + (1 | group)", prior_normal(), {}, None,
                    "fam_gaussian_k0"),
    "lognormal": ("lognormal", "pos ~ talk + perf + (1 | group)", prior_normal(), {}, None,
                  "fam_lognormal"),
    "student_t": ("student_t", "sat ~ talk + perf + (1 | group)", prior_normal(nu_rate=0.1), {},
                  None, "fam_student_t"),
    "gamma": ("gamma", "pos ~ talk + perf + (1 | group)", prior_normal(shape_rate=0.5), {}, None,
              "fam_gamma"),
    "bernoulli": ("bernoulli", "hi ~ talk + perf + (1 | group)", prior_normal(), {}, None,
                  "fam_bernoulli"),
    "binomial": ("binomial", "cbind(talk, fail) ~ perf + (1 | group)", prior_normal(), {}, None,
                 "fam_binomial"),
    "poisson": ("poisson", "talk ~ perf + offset(log(expo)) + (1 | group)", prior_normal(), {},
                None, "fam_poisson"),
    "neg_binomial": ("neg_binomial", "talk ~ perf + (1 | group)", prior_normal(phi_rate=0.3), {},
                     None, "fam_neg_binomial"),
    "ordered": ("ordered", "sat ~ talk + perf + (1 | group)", prior_normal(cutpoint_sd=5), {},
                None, "fam_ordered"),
    "sequential": ("sequential", "sat ~ talk + (1 | group)", prior_normal(cutpoint_sd=5), {},
                   None, "fam_sequential"),
    "beta": ("beta", "prop ~ talk + perf + (1 | group)", prior_normal(phi_rate=0.3), {}, None,
             "fam_beta"),
    "sequential_common": (COMMON, "sat ~ talk + perf + (1 | group)",
                          prior_normal(cutpoint_sd=5), {}, None, "fam_sequential_common"),
    "zero_inflated_poisson": ("zero_inflated_poisson", "talk ~ perf + (1 | group)",
                              prior_normal(), {"zi": "~ sat"}, None,
                              "fam_zero_inflated_poisson"),
    "zero_inflated_neg_binomial": ("zero_inflated_neg_binomial", "talk ~ perf + (1 | group)",
                                   prior_normal(phi_rate=0.3), {"zi": "~ 1"}, None,
                                   "fam_zero_inflated_neg_binomial"),
    # tests/test_families.py maximum-likelihood programs: no grouping term (scalar intercept)
    "gaussian_lm": ("gaussian", "sat ~ talk + perf", prior_flat(), {}, None, "fam_gaussian_lm"),
    "bernoulli_glm": ("bernoulli", "cond ~ talk + sat", prior_flat(), {}, None,
                      "fam_bernoulli_glm"),
    # tests/conftest.py program 6: a coefficient held fixed (bayes_factor's restricted model)
    "gaussian_held": ("gaussian", "sat ~ talk + perf + (1 | group)", prior_normal(), {},
                      {"b[talk]": 0.25}, "model"),
    # tests/test_repeated_fits.py: residual correlation
    "gaussian_ar1": ("gaussian", "sat ~ talk", prior_flat(),
                     {"resid_corr": "ar1", "resid_group": "group"}, None, "model"),
    "gaussian_ar1_re": ("gaussian", "sat ~ talk + (1 | skill)", prior_flat(),
                        {"resid_corr": "ar1", "resid_group": "group"}, None, "model"),
    "gaussian_cs": ("gaussian", "sat ~ talk", prior_flat(),
                    {"resid_corr": "cs", "resid_group": "group"}, None, "model"),
    # added by this module
    "gaussian_six": ("gaussian", SIX,
                     prior_normal(overrides={"b[talk]": (0.5, 2.0), "sd_1": 0.5, "corr": 2.0,
                                             "sd_2[skill:Int]": 3.0, "sigma": 0.7}),
                     {}, None, "generic_eq_six"),
    "gaussian_six_weak": ("gaussian", SIX,
                          prior_weak(y_range=(1, 5), overrides={"Intercept_c": (3, 2),
                                                                "b": 4.0, "sd": 0.3}),
                          {}, None, "generic_eq_six"),
    "ordered_glm": ("ordered", "sat ~ talk + perf", prior_flat(), {}, None,
                    "generic_eq_ordered_glm"),
    # no grouping term (scalar intercept), the weak prior of the zero part with an override
    "zip_glm_weak": ("zero_inflated_poisson", "talk ~ perf", prior_weak(
        overrides={"b_zi[sat]": (0.5, 2.0)}), {"zi": "~ sat"}, None, "generic_eq_zip_glm"),
    # centred terms (param=, bayesglmm/reparam.py): correlated (1 + talk | group), uncorrelated
    # (perf || cond) and an intercept term (1 | perf), next to non-centred ones
    "gaussian_six_centred": ("gaussian", SIX,
                             prior_normal(overrides={"b[talk]": (0.5, 2.0), "sd_1": 0.5,
                                                     "corr": 2.0, "sigma": 0.7}),
                             {"param": {"group": "centered", "cond": "centered",
                                        "perf": "centred"}},
                             None, "generic_eq_six_centred"),
    "bernoulli_centred": ("bernoulli", "hi ~ talk + perf + (1 + talk | group)", prior_normal(),
                          {"param": "centered"}, None, "generic_eq_bernoulli_centred"),
}


@pytest.fixture(scope="module")
def data(debate_plus):
    """debate_plus with the proportion (0, 1) of tests/test_families.py for the beta family."""
    return debate_plus.assign(prop=(debate_plus.sat - 0.5) / 5.0)


def case_spec(case: str, data):
    family, formula, prior, opts, held, _ = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        spec = build_spec(formula, data, family=family, prior=prior, **opts)
    return hold_coefficients(spec, held) if held else spec


# ------------------------------------------------------------------------------- coverage


def test_covers_the_cases(data):
    for case in CASES:
        assert generic.covers(case_spec(case, data)) is None, case


def test_covers_refuses_shrinkage_priors(data):
    from bayesglmm.priors import prior_jzs, prior_rhs, prior_ssp

    for prior, text in ((prior_rhs(y_range=(1, 5)), "prior_rhs (shrinkage priors change the "
                         "parameter set)"),
                        (prior_ssp(y_range=(1, 5)), "prior_ssp (shrinkage priors change the "
                         "parameter set)"),
                        (prior_jzs(), "prior_jzs (prior term b_jzs is not in the generic "
                         "program)")):
        spec = build_spec("sat ~ talk + perf", data, prior=prior)
        assert generic.covers(spec) == text
        with pytest.raises(ValueError, match="The generic gaussian program cannot fit this "
                                             "model: prior_"):
            generic.generic_data(spec)


def test_covers_refuses_too_many_terms(data):
    f = ("sat ~ talk + (1 | group) + (1 | skill) + (1 | cond) + (1 | perf) + (1 | talk)"
         " + (1 | skill:cond) + (1 | group:cond)")
    spec = build_spec(f, data)
    assert len(spec.groups) == 7
    assert generic.covers(spec) == "7 grouping terms (the generic program has 6 slots)"
    six = build_spec(f.rsplit(" + ", 1)[0], data)
    assert generic.covers(six) is None


def test_covers_refuses_a_missing_intercept(data):
    spec = build_spec("sat ~ 0 + talk + (1 | group)", data)
    assert generic.covers(spec) == "no intercept (the generic program always samples one)"
    # ordinal families never have one: covered
    assert generic.covers(build_spec("sat ~ 0 + talk + (1 | group)", data,
                                     family="ordered")) is None


def test_covers_refuses_from_stan(conjugate_model):
    assert conjugate_model.wrapper == "from_stan"
    reason = "a user-supplied Stan program (from_stan) has no generic counterpart"
    assert generic.covers(getattr(conjugate_model.program, "spec", None)) == reason
    assert generic.covers(None) == reason


# ------------------------------------------------------------------------------- code and data


def test_generic_code_is_deterministic_for_every_family():
    assert list(program_families()) == [*FAMILY_NAMES[:10], "sequential_common",
                                        *FAMILY_NAMES[10:]]
    # the toolchain builds and lists the same programs (install --programs, status)
    assert list(generic_programs()) == list(program_families())
    assert resolve_families("sequential_common,zero_inflated_poisson",
                            generic_programs()) == ["sequential_common", "zero_inflated_poisson"]
    for fam, family in program_families().items():
        code = generic.generic_code(fam)
        assert code == generic.generic_code(family)
        assert code.count("cholesky_factor_corr[has_corr_") == generic.GENERIC_SLOTS
        # parameters in the specific program's order
        decl = code[code.index("parameters {"):code.index("}", code.index("parameters {"))]
        heads = [ln.split("//")[0].split()[-1].rstrip(";") for ln in decl.splitlines()[1:]
                 if ln.split("//")[0].strip()]
        slots = [f"{p}_{k}" for k in range(1, 7) for p in ("sd", "L", "z")]
        assert heads[-18:] == slots, fam


def test_generic_data_slots_and_flags(data):
    spec = case_spec("gaussian_six", data)
    d = generic.generic_data(spec)
    kinds = [d[f"re_kind_{k}"] for k in range(1, 7)]
    assert [g.text for g in spec.groups] == ["(1 + talk | group)", "(1 | skill)",
                                             "(1 | skill:cond)", "(perf || cond)",
                                             "(0 + talk | skill)", "(1 | perf)"]
    assert kinds == [2, 1, 1, 2, 2, 1]
    assert [d[f"has_corr_{k}"] for k in range(1, 7)] == [1, 0, 0, 0, 0, 0]
    assert [d[f"M_{k}"] for k in range(1, 7)] == [2, 1, 1, 2, 1, 1]
    assert d["Z_2"].shape == (0, 0) and d["Z_4"].shape == (spec.n_obs, 2)
    assert d["centre"] == 1 and d["has_offset"] == 1
    assert d["prior_Intercept_c"] == d["prior_b"] == d["prior_sigma"] == 1
    assert d["prior_corr_1"] == 1 and d["lkj_eta_1"] == 2.0
    assert d["prior_corr_2"] == 0  # intercept-only term: no correlation
    assert d["sd_1_rate"].tolist() == [0.5, 0.5] and d["sd_2_rate"].tolist() == [3.0]  # rates
    assert d["b_mu"][0] == 0.5 and d["b_sd"][0] == 2.0
    assert d["K_fixed"] == 0 and d["free_idx"].tolist() == [1, 2]
    flat = generic.generic_data(case_spec("gaussian_lm", data))
    assert flat["centre"] == 0 and flat["has_offset"] == 0 and flat["resid_kind"] == 0
    assert all(flat[f"re_kind_{k}"] == 0 and flat[f"M_{k}"] == 0 for k in range(1, 7))
    assert not any(v for k, v in flat.items() if k.startswith("prior_"))
    ar1 = generic.generic_data(case_spec("gaussian_ar1", data))
    assert ar1["resid_kind"] == 1 and ar1["resid_ord"].shape == (spec.n_obs,)
    cs = generic.generic_data(case_spec("gaussian_cs", data))
    assert cs["resid_kind"] == 2 and cs["resid_T"] == generate(case_spec("gaussian_cs",
                                                                         data)).data["resid_T"]
    held = generic.generic_data(case_spec("gaussian_held", data))
    assert held["K_fixed"] == 1 and held["fixed_val"].tolist() == [0.25]
    assert held["free_idx"].tolist() == [2]


def test_prior_overrides_reach_the_generic_data(data):
    p = make_prior({"name": "weak", "sd_ratio": 1, "b[perf]": 2.5, "sigma": 1.0},
                   y_range=(1, 5))
    spec = build_spec("sat ~ talk + perf + (1 | group)", data, prior=p)
    d, s = generic.generic_data(spec), generate(spec).data
    for key in ("Intercept_mu", "Intercept_sd", "b_mu", "b_sd", "sigma_rate", "sd_1_rate"):
        np.testing.assert_array_equal(d[key], s[key])


def test_specific_names(data):
    flat = case_spec("gaussian_ar1", data)
    names = ["Intercept_c", "beta_free.1", "sigma", "rho_resid_v.1", "sd_1.1"]
    assert generic.specific_names(flat, names, unconstrained=True) == [
        "Intercept", "beta.1", "sigma", "rho_resid", "sd_1.1"]
    assert generic.specific_names(flat, ["Intercept_c", "beta_free[1]", "beta[1]",
                                         "rho_resid_v[1]", "rho_resid", "Intercept"]) == [
        None, None, "beta[1]", None, "rho_resid", "Intercept"]
    no_resid = case_spec("gaussian_lm", data)  # the generated rho_resid (0) is not a quantity
    assert generic.specific_names(no_resid, ["rho_resid", "sigma"]) == [None, "sigma"]
    held = case_spec("gaussian_held", data)  # centred and held: the names coincide
    assert generic.specific_names(held, ["Intercept_c", "beta_free.1"], unconstrained=True) == [
        "Intercept_c", "beta_free.1"]


# ------------------------------------------------------------------------------- equivalence


@cache
def _compiled(code: str, name: str):
    from bayesglmm.toolchain import compile_model

    return compile_model(code, name=name, verbose=False)


def _constrained(bs, x) -> dict[str, float]:
    names = bs.param_names(include_tp=True, include_gq=True)
    vals = bs.param_constrain(x, include_tp=True, include_gq=True, rng=bs.new_rng(seed=1))
    return dict(zip(names, vals))


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("case", list(CASES))
def test_generic_equals_specific(case, data, toolchain):
    spec = case_spec(case, data)
    program = generate(spec)
    bs = _compiled(program.code, CASES[case][-1]).bridgestan_model(program.data)
    fam = spec.family.program
    bg = _compiled(generic.generic_code(spec.family), program_name(fam)).bridgestan_model(
        generic.generic_data(spec))
    assert generic.specific_names(spec, bg.param_unc_names(), unconstrained=True) == list(
        bs.param_unc_names())
    rng = np.random.default_rng(sum(map(ord, case)))
    for _ in range(20):
        x = rng.normal(0.0, 1.0, size=bs.param_unc_num())
        try:
            bs.log_density(x, propto=False, jacobian=True)
        except RuntimeError:  # outside the specific program's support (e.g. inv_logit(mu) = 1)
            with pytest.raises(RuntimeError):
                bg.log_density(x, propto=False, jacobian=True)
            continue
        for jac in (True, False):
            want = bs.log_density(x, propto=False, jacobian=jac)
            got = bg.log_density(x, propto=False, jacobian=jac)
            assert got == pytest.approx(want, rel=1e-10, abs=0), (case, jac)
        lp_s, g_s = bs.log_density_gradient(x, propto=False, jacobian=True)
        lp_g, g_g = bg.log_density_gradient(x, propto=False, jacobian=True)
        np.testing.assert_allclose(g_g, g_s, rtol=1e-9, atol=1e-9 * np.abs(g_s).max())
        spec_vals = _constrained(bs, x)
        gen = _constrained(bg, x)
        mapped = dict(zip(generic.specific_names(spec, list(gen)), gen.values()))
        mapped.pop(None, None)
        assert set(mapped) == set(spec_vals), set(mapped) ^ set(spec_vals)
        for name, v in spec_vals.items():
            assert mapped[name] == pytest.approx(v, rel=1e-10, abs=1e-12), (case, name)
