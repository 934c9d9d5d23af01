"""ModelSpec -> StanProgram: stanc accepts every program, determinism, structure-only code,
Stan data and parameter names."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require, require_module

from bayesglmm.codegen import generate
from bayesglmm.priors import prior_flat, prior_normal, prior_weak
from bayesglmm.spec import build_spec


def _stanc() -> Path | None:
    """stanc of the toolchain bayesglmm would use: an external CmdStan's bin/stanc, else the
    bundled one under $BAYESGLMM_HOME (default ~/.cache/bayesglmm)."""
    from bayesglmm.toolchain.locate import select

    sel = select()
    if sel["kind"] == "external":
        p = Path(sel["cmdstan"][0]) / "bin" / "stanc"
    else:
        p = Path(sel["home"]) / "toolchain" / "stan" / "stanc"
    return p if p.exists() else None


STANC = _stanc()


@pytest.fixture
def needs_stanc_fixture():
    require(STANC is not None, "stanc not found (external CmdStan's bin/stanc or $BAYESGLMM_HOME/"
                               "toolchain/stan/stanc); install the toolchain")


needs_stanc = pytest.mark.usefixtures("needs_stanc_fixture")


def stanc_check(code: str, tmp_path: Path) -> None:
    f = tmp_path / "model.stan"
    f.write_text(code)
    r = subprocess.run([str(STANC), "--o=/dev/null", str(f)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, f"stanc rejected the program:\n{r.stderr}\n{code}"
    assert "Warning" not in r.stderr, r.stderr


@pytest.fixture(scope="module")
def debate(debate_plus: pd.DataFrame) -> pd.DataFrame:
    return debate_plus


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    import bayesglmm

    return bayesglmm.load_sleepstudy()


# (formula, family, extra kwargs): every formula form and every family
CASES = [
    ("sat ~ talk + perf + (1 | group)", "gaussian", {}),
    ("sat ~ talk * perf + (1 | group)", "gaussian", {}),
    ("sat ~ talk + perf", "gaussian", {}),
    ("sat ~ 1 + (1 | group)", "gaussian", {}),
    ("sat ~ 0 + talk + (talk | group)", "gaussian", {}),
    ("sat ~ talk + (talk || group)", "gaussian", {}),
    ("sat ~ talk + (0 + talk | group)", "gaussian", {}),
    ("sat ~ talk + (1 | cond/group)", "gaussian", {}),
    ("sat ~ talk + (1 | group) + (1 | skill)", "gaussian", {}),
    ("sat ~ talk + (1 | group) + (0 + perf | group)", "gaussian", {}),
    ("sat ~ cond * skill + (1 | group)", "gaussian", {"factors": ["cond", "skill"],
                                                     "contrasts": "sum"}),
    ("sat ~ talk + perf + (1 | group)", "lognormal", {}),
    ("sat ~ talk + perf + (1 | group)", "student_t", {}),
    ("sat ~ talk + perf + (1 | group)", "gamma", {}),
    ("hi ~ talk + perf + (1 | group)", "bernoulli", {}),
    ("hi ~ talk + perf", "bernoulli", {}),
    ("cbind(talk, fail) ~ perf + (1 | group)", "binomial", {}),
    ("talk ~ perf + offset(log(expo)) + (1 | group)", "poisson", {}),
    ("talk ~ perf", "poisson", {}),
    ("talk ~ perf + (1 | group)", "neg_binomial", {}),
    ("sat ~ talk + perf + (1 | group)", "ordered", {}),
    ("sat ~ talk + perf", "ordered", {}),
    ("sat ~ talk + (1 | group)", "sequential", {}),
    ("sat ~ talk + (talk | group)", "sequential", {}),
]
PRIORS = {"flat": prior_flat, "normal": prior_normal, "weak": prior_weak}


def _spec(debate, formula, family, kw, prior):
    kw = dict(kw)
    if prior == "weak" and family in ("gaussian", "lognormal", "student_t"):
        kw["y_range"] = (1, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build_spec(formula, debate, family=family, prior=PRIORS[prior](), **kw)


@needs_stanc
@pytest.mark.parametrize("prior", ["flat", "normal"])
@pytest.mark.parametrize("formula,family,kw", CASES, ids=[f"{c[1]}:{c[0]}" for c in CASES])
def test_stanc_accepts(debate, tmp_path, formula, family, kw, prior):
    stanc_check(generate(_spec(debate, formula, family, kw, prior)).code, tmp_path)


@needs_stanc
def test_stanc_sleepstudy(sleep, tmp_path):
    for prior in (prior_flat(), prior_normal(lkj_eta=2)):
        p = generate(build_spec("Reaction ~ Days + (Days | Subject)", sleep, prior=prior))
        stanc_check(p.code, tmp_path)


@pytest.mark.parametrize("formula,family,kw", CASES, ids=[f"{c[1]}:{c[0]}" for c in CASES])
def test_normal_and_weak_same_code(debate, formula, family, kw):
    a = generate(_spec(debate, formula, family, kw, "normal"))
    b = generate(_spec(debate, formula, family, kw, "weak"))
    assert a.code == b.code
    assert a.data.keys() == b.data.keys()
    differs = [k for k in a.data if not np.array_equal(np.asarray(a.data[k]),
                                                       np.asarray(b.data[k]))]
    assert differs, "normal and weak priors should differ in their data"
    assert "compute_log_lik" not in differs and a.data["compute_log_lik"] == 1
    assert all(k in ("Intercept_mu", "Intercept_sd", "b_mu", "b_sd", "sigma_rate")
               or k.endswith("_rate") for k in differs)


def test_deterministic(debate):
    s = _spec(debate, "sat ~ talk * perf + (talk | group) + (1 | skill)", "gaussian", {},
              "normal")
    s2 = _spec(debate, "sat ~ talk * perf + (talk | group) + (1 | skill)", "gaussian", {},
               "normal")
    assert generate(s).code == generate(s).code == generate(s2).code


def test_new_dataset_same_code(debate, sleep):
    a = generate(build_spec("sat ~ talk + (1 | group)", debate, prior=prior_normal()))
    sub = debate.iloc[:150]
    b = generate(build_spec("sat ~ talk + (1 | group)", sub, prior=prior_normal(b_sd=3)))
    assert a.code == b.code and b.data["N"] == 150 and b.data["N_1"] == 50
    # same structure, other data set and names: same program
    # (the same parameterisation: "auto" centres sleepstudy's term, not debate's)
    c = generate(build_spec("Reaction ~ Days + (1 | Subject)", sleep, prior=prior_normal(),
                            param="noncentered"))
    assert c.code == a.code


def test_flat_has_no_priors_no_centring(debate):
    code = generate(_spec(debate, "sat ~ talk + perf + (talk | group)", "gaussian", {},
                          "flat")).code
    assert "Xc" not in code and "Intercept_c" not in code and "lkj" not in code
    assert "exponential" not in code and "normal_lpdf(beta" not in code
    assert "real Intercept;" in code
    assert " ~ " not in code.replace("// ", "#")  # no sampling statements outside comments


def test_program_shape_normal(debate):
    p = generate(_spec(debate, "sat ~ talk + perf + (1 | group)", "gaussian", {}, "normal"))
    code = p.code
    for piece in ("transformed data", "matrix[N, K] Xc", "real Intercept_c;",
                  "normal_id_glm_lpdf(y | Xc, eta, beta, sigma)",
                  "real Intercept = Intercept_c - dot_product(means_X, beta);",
                  "target += std_normal_lpdf(to_vector(z_1));",
                  "target += normal_lpdf(Intercept_c | Intercept_mu, Intercept_sd);",
                  "target += exponential_lpdf(sd_1 | sd_1_rate);",
                  "vector[compute_log_lik ? N : 0] log_lik;"):
        assert piece in code, piece
    assert "~" not in "\n".join(ln.split("//")[0] for ln in code.splitlines())
    for line in code.splitlines():
        assert len(line) <= 120
    # structure only: no column or group names in the code
    for name in ("talk", "perf", "| group"):
        assert name not in code
    d = p.data
    assert d["N"] == 300 and d["K"] == 2 and d["X"].shape == (300, 2)
    assert d["N_1"] == 100 and d["M_1"] == 1 and d["J_1"].dtype.kind == "i"
    assert d["J_1"].min() == 1 and d["J_1"].max() == 100 and "Z_1" not in d
    assert p.re_blocks == ("z_1",)


def test_glm_functions_used(debate):
    expect = {
        ("hi ~ talk + perf + (1 | group)", "bernoulli"): "bernoulli_logit_glm_lpmf",
        ("cbind(talk, fail) ~ perf + (1 | group)", "binomial"): "binomial_logit_glm_lpmf",
        ("talk ~ perf + (1 | group)", "poisson"): "poisson_log_glm_lpmf",
        ("talk ~ perf + (1 | group)", "neg_binomial"): "neg_binomial_2_log_glm_lpmf",
        ("sat ~ talk + perf", "ordered"): "ordered_logistic_glm_lpmf",
        ("sat ~ talk + perf + (1 | group)", "lognormal"): "normal_id_glm_lpdf(log_y",
        ("sat ~ talk + (1 | group)", "sequential"): "sequential_logit_lpmf(y | mu, cutpoints)",
    }
    for (f, fam), fn in expect.items():
        assert fn in generate(_spec(debate, f, fam, {}, "normal")).code, fam


def test_param_names_one_term(debate):
    p = generate(_spec(debate, "sat ~ talk + perf + (1 | group)", "gaussian", {}, "normal"))
    head = [(n.stan, n.user, n.kind) for n in p.params[:7]]
    assert head == [
        ("Intercept", "Intercept", "Intercept"), ("beta[1]", "b[talk]", "b"),
        ("beta[2]", "b[perf]", "b"), ("sigma", "sigma", "family"),
        ("sd_1[1]", "sd[group:Int]", "sd"), ("Intercept_c", "Intercept_c", "Intercept_c"),
        ("r_re_1[1,1]", "r_re[1]", "re"),
    ]
    assert len(p.params) == 6 + 100 and p.params[-1].user == "r_re[100]"
    flat = generate(_spec(debate, "sat ~ talk + perf + (1 | group)", "gaussian", {}, "flat"))
    assert "Intercept_c" not in [n.user for n in flat.params]


def test_param_names_several_terms(sleep, debate):
    p = generate(build_spec("Reaction ~ Days + (Days | Subject)", sleep))
    users = [n.user for n in p.params if n.kind != "re"]
    assert users == ["Intercept", "b[Days]", "sigma", "sd[Subject:Int]", "sd[Subject:Days]",
                     "corr[Int,Days]"]
    assert [n.stan for n in p.params if n.kind == "corr"] == ["corr_1[1,2]"]
    re = [n for n in p.params if n.kind == "re"]
    assert re[0].stan == "r_re_1[1,1]" and re[0].user == "r_re[1,1]" and len(re) == 36
    p = generate(_spec(debate, "sat ~ talk + (1 | group) + (1 | skill)", "gaussian", {}, "flat"))
    users = [n.user for n in p.params if n.kind in ("sd", "re")]
    assert users[:2] == ["sd_1[group:Int]", "sd_2[skill:Int]"]
    assert "r_re_1[1]" in users and "r_re_2[3]" in users


def test_param_names_ordinal(debate):
    p = generate(_spec(debate, "sat ~ talk + (1 | group)", "sequential", {}, "flat"))
    users = [n.user for n in p.params if n.kind != "re"]
    assert users == ["b[talk,1->2]", "b[talk,2->3]", "b[talk,3->4]", "b[talk,4->5]",
                     "cutpoints[C1]", "cutpoints[C2]", "cutpoints[C3]", "cutpoints[C4]",
                     "sd[group:Int]"]
    assert p.params[0].stan == "beta[1,1]" and p.params[1].stan == "beta[1,2]"
    assert p.data["C"] == 5
    p = generate(_spec(debate, "sat ~ talk + perf", "ordered", {}, "normal"))
    assert [n.user for n in p.params][:3] == ["b[talk]", "b[perf]", "cutpoints[C1]"]
    params_block = p.code.split("\nparameters {")[1].split("\nmodel {")[0]
    assert "Intercept" not in params_block and "cutpoints" in params_block


def test_data_json_encodable(debate):
    stanio = require_module("stanio")
    p = generate(_spec(debate, "cbind(talk, fail) ~ perf + (1 | group)", "binomial", {},
                       "normal"))
    text = stanio.dump_stan_json(p.data)
    assert '"trials"' in text and '"y"' in text


def test_resource_paths(tmp_path, monkeypatch):
    from bayesglmm import _paths

    assert (_paths.templates_dir() / "model.stan.j2").is_file()
    assert (_paths.snippets_dir() / "sequential.stan").is_file()
    _paths.find_resource_dir.cache_clear()
    monkeypatch.setenv("BAYESGLMM_TEMPLATES", str(tmp_path))
    try:
        assert _paths.templates_dir() == tmp_path
    finally:
        _paths.find_resource_dir.cache_clear()
