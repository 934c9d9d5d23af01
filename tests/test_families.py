"""The family table: all families, response checks, links, rngs, no family-name comparisons
outside the table and its snippets (nor prior-name comparisons outside the prior table), and
(slow) the log density BridgeStan computes from each generated program against a direct scipy
computation."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_reference
from scipy import stats
from scipy.special import betaln, expit, log_expit

from bayesglmm.codegen import generate
from bayesglmm.families import FAMILIES, FAMILY_NAMES, get_family
from bayesglmm.priors import PRIOR_NAMES, PRIOR_TABLE, prior_flat, prior_normal
from bayesglmm.spec import build_spec


@pytest.fixture(scope="module")
def debate(debate_plus: pd.DataFrame) -> pd.DataFrame:
    """debate_plus with a proportion in (0, 1) (prop) for the beta family."""
    return debate_plus.assign(prop=(debate_plus.sat - 0.5) / 5.0)


# ---------------------------------------------------------------------------- the table


def test_family_table():
    assert FAMILY_NAMES == ("gaussian", "lognormal", "student_t", "gamma", "bernoulli",
                            "binomial", "poisson", "neg_binomial", "ordered", "sequential",
                            "beta", "zero_inflated_poisson", "zero_inflated_neg_binomial")
    links = {n: f.link for n, f in FAMILIES.items()}
    assert links["gaussian"] == "identity" and links["poisson"] == "log"
    assert links["bernoulli"] == "logit" and links["gamma"] == "log"
    assert {n: f.extra_names for n, f in FAMILIES.items() if f.extra_names} == {
        "gaussian": ("sigma",), "lognormal": ("sigma",), "student_t": ("sigma", "nu"),
        "gamma": ("shape",), "neg_binomial": ("phi",), "beta": ("phi",),
        "zero_inflated_neg_binomial": ("phi",),
    }
    assert FAMILIES["student_t"].extra[1].lower == 2.0
    assert not FAMILIES["ordered"].has_intercept and not FAMILIES["sequential"].has_intercept
    assert FAMILIES["sequential"].category_specific


def test_get_family():
    assert get_family("Gaussian").name == "gaussian"
    with pytest.raises(ValueError, match="Unknown family 'weibull'.*sequential"):
        get_family("weibull")


ROOT = Path(__file__).resolve().parents[1]
_NAMES = "|".join(FAMILY_NAMES)
# comparisons with a family name: == "x", "x" !=, in ("x", ...), dicts keyed by name, and
# comparisons or lookups of a family's name
_COMPARISONS = (
    re.compile(rf"""(==|!=)\s*["']({_NAMES})["']"""),
    re.compile(rf"""["']({_NAMES})["']\s*(==|!=)"""),
    re.compile(rf"""\bin\s*[(\[{{][^)\]}}]*["']({_NAMES})["']"""),
    re.compile(rf"""["']({_NAMES})["']\s*:\s*["']"""),
    re.compile(r"""\b(fam|family)\.name\s*(==|!=|\bin\b)"""),
    # a lookup keyed by the family's name: TABLE[spec.family.name], TABLE.get(fam.name)
    re.compile(r"""\[\s*[\w.]*\b(fam|family)\.name\s*\]"""),
    re.compile(r"""\.get\(\s*[\w.]*\b(fam|family)\.name\b"""),
)
# the same for priors: comparisons with a prior name ("normal" is also a distribution, a
# bridge-sampling method and a family alias, so it is found through the forms that follow),
# and comparisons or lookups of a prior's name (prior.name, spec.prior.name, prior_name, pname)
_PNAMES = "|".join(n for n in PRIOR_NAMES if n != "normal")
# a prior or its name: prior, the_prior, spec.prior, fit.model.prior (+ .name), prior_name, pname
_PRIOR = r"""(?<![\w.])(?:\w+\.)*(?:the_|r)?prior"""
_PRIOR_NAME = rf"""(?:{_PRIOR}(?:\.name|_name)|(?<![\w.])pname)"""
# the terms of the coefficient priors other than "b" (b_rhs, b_ssp, b_jzs) belong to the table
_PTERMS = "|".join(r.key for r in PRIOR_TABLE if r.on_b and r.key != "b")
_PRIOR_COMPARISONS = (
    re.compile(rf"""["']({_PTERMS})["']"""),
    re.compile(rf"""(==|!=)\s*["']({_PNAMES})["']"""),
    re.compile(rf"""["']({_PNAMES})["']\s*(==|!=)"""),
    re.compile(rf"""\bin\s*[(\[{{][^)\]}}]*["']({_PNAMES})["']"""),
    re.compile(rf"""["']({_PNAMES})["']\s*:"""),
    re.compile(rf"""(?:{_PRIOR_NAME}|{_PRIOR})\s*(==|!=)"""),
    re.compile(rf"""(==|!=)\s*(?:{_PRIOR_NAME}|{_PRIOR})\b"""),
    re.compile(rf"""{_PRIOR_NAME}\s+(not\s+)?in\b"""),
    re.compile(rf"""\[\s*{_PRIOR_NAME}\s*\]"""),
    re.compile(rf"""\.get\(\s*{_PRIOR_NAME}\b"""),
)


def _name_comparisons(root: Path, patterns, exempt) -> list[str]:
    """Lines of the package and the templates that match one of ``patterns`` (file:line:
    text), outside the files for which ``exempt(path relative to root)`` is true; Python
    comments are ignored."""
    files = sorted((root / "bayesglmm").rglob("*.py")) + sorted((root / "templates").rglob("*.j2"))
    hits = []
    for f in files:
        rel = f.relative_to(root)
        if exempt(rel):
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#")[0] if f.suffix == ".py" else line
            if any(p.search(code) for p in patterns):
                hits.append(f"{rel}:{i}: {line.strip()}")
    return hits


def family_name_comparisons(root: Path) -> list[str]:
    """Lines of the package and the templates that compare family names (file:line: text),
    outside the family table (bayesglmm/families.py) and the family snippets."""
    return _name_comparisons(root, _COMPARISONS, lambda rel: rel.name == "families.py"
                             and rel.parts[0] == "bayesglmm")


def prior_name_comparisons(root: Path) -> list[str]:
    """Lines of the package and the templates that compare prior names, look things up by
    a prior's name or name the terms of the shrinkage priors (file:line: text), outside the
    prior table (bayesglmm/priors/)."""
    return _name_comparisons(root, _PRIOR_COMPARISONS, lambda rel: rel.parts[:2] == ("bayesglmm", "priors"))


def test_no_family_name_comparisons():
    """Families are a table: other modules and templates read its fields, never its names."""
    assert family_name_comparisons(ROOT) == []


def test_family_name_comparisons_are_found(tmp_path):
    """The check above finds the forms it looks for (a planted module and template)."""
    (tmp_path / "bayesglmm").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "bayesglmm" / "m.py").write_text(
        'a = fam == "gaussian"\nb = "poisson" != f\nif f in ("bernoulli", "x"):\n'
        '    pass\nmsg = "family \'binomial\' only"  # fine: prints the name\n'
        'c = fam.name in KNOWN\nd = TABLE[spec.family.name]\ne = TABLE.get(fam.name, 0)\n'
        'g = f"{spec.family.name}"  # fine: prints the name\n')
    (tmp_path / "templates" / "t.stan.j2").write_text(
        '{% if family.name == "ordered" %}\n{% set D = {"beta": "beta_lpdf"} %}\n'
        '// {{ family.name }} family\n')
    hits = family_name_comparisons(tmp_path)
    assert [h.split(":")[:2] for h in hits] == [
        ["bayesglmm/m.py", "1"], ["bayesglmm/m.py", "2"], ["bayesglmm/m.py", "3"],
        ["bayesglmm/m.py", "6"], ["bayesglmm/m.py", "7"], ["bayesglmm/m.py", "8"],
        ["templates/t.stan.j2", "1"], ["templates/t.stan.j2", "2"]]


def test_no_prior_name_comparisons():
    """Priors are a table too (bayesglmm/priors/table.py, PRIOR_KINDS): other modules and
    templates read a prior's row (``prior.kind.proper``, ``.joint_b``, ``.ttest``), never
    its name."""
    assert prior_name_comparisons(ROOT) == []


def test_prior_name_comparisons_are_found(tmp_path):
    """The prior check finds the forms it looks for (a planted module, template and a file of
    the prior table, which may compare names)."""
    (tmp_path / "bayesglmm" / "priors").mkdir(parents=True)
    (tmp_path / "templates").mkdir()
    (tmp_path / "bayesglmm" / "m.py").write_text(
        'a = spec.prior.name != "flat"\nb = "jzs" == name\nif p in ("rhs", "ssp"):\n'
        '    pass\nJOINT = {"jzs": "one Cauchy"}\nc = prior.name == "normal"\n'
        'if prior_name == "weak":\n    pass\nd = pname != "normal"\n'
        'e = spec.prior.name in JOINT\nf = JOINT[spec.prior.name]\ng = JOINT.get(prior_name)\n'
        'h = "normal" == the_prior.name\n'
        'msg = f"prior_{spec.prior.name}() only"  # fine: prints the name\n'
        'ok = spec.prior.kind.proper and method == "normal"  # fine: the table; not a prior\n'
        'x = prior_name  # fine: "flat" == prior_name in a comment\n'
        'has_b = "b_jzs" in terms\nDRAW = {"b_rhs": f}\n')
    (tmp_path / "bayesglmm" / "priors" / "table.py").write_text('a = prior.name == "flat"\n')
    (tmp_path / "templates" / "t.stan.j2").write_text(
        '{% if prior == "normal" %}\n{% elif prior == "jzs" %}\n// {{ prior }} prior\n'
        '{% if effect_prior == "cauchy" %}\n')
    hits = prior_name_comparisons(tmp_path)
    assert [h.split(":")[:2] for h in hits] == (
        [["bayesglmm/m.py", str(i)] for i in (1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 13, 17, 18)]
        + [["templates/t.stan.j2", "1"], ["templates/t.stan.j2", "2"]])


def test_every_family_has_its_snippet():
    """Each table entry has its Stan snippet with the required macros (families.py docstring)."""
    from bayesglmm.codegen import jinja_env

    env = jinja_env()
    for f in FAMILIES.values():
        mod = env.get_template(f.snippet).module
        for macro in ("data", "vec", "point"):
            assert callable(getattr(mod, macro, None)), (f.name, macro)
        assert "y" in mod.data()


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_link_roundtrip(name):
    f = FAMILIES[name]
    eta = np.array([-1.0, 0.0, 0.7])
    np.testing.assert_allclose(f.linkfun(f.linkinv(eta)), eta)


def test_rng_shapes_and_means():
    rng = np.random.default_rng(1)
    eta = np.full(20000, 0.3)
    assert abs(FAMILIES["gaussian"].rng(eta, {"sigma": 1.0}, rng).mean() - 0.3) < 0.05
    assert abs(FAMILIES["poisson"].rng(eta, {}, rng).mean() - np.exp(0.3)) < 0.05
    assert abs(FAMILIES["gamma"].rng(eta, {"shape": 2.0}, rng).mean() - np.exp(0.3)) < 0.05
    nb = FAMILIES["neg_binomial"].rng(eta, {"phi": 2.0}, rng)
    mu = np.exp(0.3)
    assert abs(nb.var() - (mu + mu**2 / 2)) < 0.15
    assert abs(FAMILIES["bernoulli"].rng(eta, {}, rng).mean() - expit(0.3)) < 0.02
    y = FAMILIES["ordered"].rng(eta, {"cutpoints": np.array([-1.0, 0.0, 1.0])}, rng)
    assert set(np.unique(y)) == {1, 2, 3, 4}
    assert abs((y == 1).mean() - expit(-1.3)) < 0.02
    ys = FAMILIES["sequential"].rng(np.full((20000, 3), 0.3),
                                    {"cutpoints": np.array([0.0, 0.0, 0.0])}, rng)
    assert abs((ys == 1).mean() - (1 - expit(0.3))) < 0.02


# ---------------------------------------------------------------------------- response checks


def test_bernoulli_checks(debate):
    with pytest.raises(ValueError, match="'sat'.*0/1"):
        build_spec("sat ~ talk", debate, family="bernoulli")
    s = build_spec("hi ~ talk", debate.assign(hi=debate.hi.astype(bool)), family="bernoulli")
    np.testing.assert_array_equal(s.response.y, debate.hi)
    lab = pd.Categorical(np.where(debate.hi == 1, "yes", "no"))
    s = build_spec("lab ~ talk", debate.assign(lab=lab), family="bernoulli")
    np.testing.assert_array_equal(s.response.y, debate.hi)
    assert any("'yes' = 1" in n for n in s.notes)
    with pytest.raises(ValueError, match="'lab'.*text"):
        build_spec("lab ~ talk", debate.assign(lab=np.asarray(lab)), family="bernoulli")
    s = build_spec("lab ~ talk", debate.assign(lab=np.asarray(lab)), family="bernoulli",
                   levels=["no", "yes"])
    np.testing.assert_array_equal(s.response.y, debate.hi)


def test_count_checks(debate):
    with pytest.raises(ValueError, match="'x'.*non-negative integer"):
        build_spec("x ~ talk", debate.assign(x=debate.talk - 3), family="poisson")
    with pytest.raises(ValueError, match="'x'.*non-negative integer.*3.5"):
        build_spec("x ~ talk", debate.assign(x=debate.talk + 0.5), family="neg_binomial")


def test_binomial_checks(debate):
    s = build_spec("cbind(talk, fail) ~ perf", debate, family="binomial")
    np.testing.assert_array_equal(s.response.trials, 5)
    np.testing.assert_array_equal(s.response.y, debate.talk)
    s = build_spec("talk ~ perf", debate.assign(n=5), family="binomial", trials="n")
    np.testing.assert_array_equal(s.response.trials, 5)
    with pytest.raises(ValueError, match="'talk' exceed trials in 'n'"):
        build_spec("talk ~ perf", debate.assign(n=3), family="binomial", trials="n")
    with pytest.raises(ValueError, match="trials="):
        build_spec("talk ~ perf", debate, family="binomial")
    s = build_spec("hi ~ perf", debate, family="binomial")
    np.testing.assert_array_equal(s.response.trials, 1)
    with pytest.raises(ValueError, match="'fail'.*non-negative"):
        build_spec("cbind(talk, fail) ~ perf", debate.assign(fail=-debate.fail),
                   family="binomial")
    with pytest.raises(ValueError, match="cbind"):
        build_spec("cbind(talk, fail) ~ perf", debate, family="poisson")


def test_positive_checks(debate):
    for fam in ("lognormal", "gamma"):
        with pytest.raises(ValueError, match=f"'x'.*positive.*'{fam}'"):
            build_spec("x ~ talk", debate.assign(x=debate.sat - 3), family=fam)


def test_beta_checks(debate):
    s = build_spec("prop ~ talk + (1 | group)", debate, family="beta")
    assert s.response.y.dtype == float and s.family.extra_names == ("phi",)
    for bad, shown in ((0.0, "0"), (1.0, "1"), (1.5, "1.5")):
        x = debate.prop.to_numpy().copy()
        x[3] = bad
        with pytest.raises(ValueError, match=rf"'x' must lie strictly between 0 and 1 for "
                                             rf"family 'beta': 1 value.*e\.g\. {shown}"):
            build_spec("x ~ talk", debate.assign(x=x), family="beta")
    with pytest.raises(ValueError, match="'x' is text, but family 'beta' needs a numeric"):
        build_spec("x ~ talk", debate.assign(x="a"), family="beta")


def test_beta_rng():
    rng = np.random.default_rng(3)
    eta = np.full(40000, 0.4)
    y = FAMILIES["beta"].rng(eta, {"phi": 5.0}, rng)
    mu = expit(0.4)
    assert np.all((y > 0) & (y < 1))
    # mean mu and variance mu (1 - mu) / (1 + phi); 40,000 draws: SEs 0.0010 and 0.0003
    assert abs(y.mean() - mu) < 0.004 and abs(y.var() - mu * (1 - mu) / 6.0) < 0.0015


def test_ordinal_checks(debate):
    s = build_spec("sat ~ talk", debate, family="ordered")
    assert s.response.n_categories == 5 and s.response.levels == ("1", "2", "3", "4", "5")
    with pytest.raises(ValueError, match="'x'.*unobserved categories \\[2\\]"):
        build_spec("x ~ talk", debate.assign(x=np.where(debate.sat == 2, 1, debate.sat)),
                   family="ordered")
    with pytest.raises(ValueError, match="'x'.*only one observed category"):
        build_spec("x ~ talk", debate.assign(x=3), family="sequential")
    with pytest.raises(ValueError, match="'x'.*category codes"):
        build_spec("x ~ talk", debate.assign(x=debate.sat - 1), family="ordered")
    lab = np.array(["lo", "mid", "hi"])[np.clip(debate.sat.to_numpy() - 2, 0, 2)]
    with pytest.raises(ValueError, match="levels="):
        build_spec("x ~ talk", debate.assign(x=lab), family="ordered")
    s = build_spec("x ~ talk", debate.assign(x=lab), family="ordered", levels=["lo", "mid", "hi"])
    assert s.response.levels == ("lo", "mid", "hi")
    assert any("lo < mid < hi" in n for n in s.notes)
    cat = pd.Categorical(lab, categories=["lo", "mid", "hi"], ordered=True)
    s2 = build_spec("x ~ talk", debate.assign(x=cat), family="ordered")
    np.testing.assert_array_equal(s2.response.y, s.response.y)


def test_category_probabilities():
    """The table's category probabilities (marginal means and effects of ordinal families)
    against the per-category likelihood of _reference_logp below (which the slow test checks
    against Stan's log density) and against the family's rng (200,000 draws per row: binomial
    SE <= 0.0011, asserted within 5 SE)."""
    rng = np.random.default_rng(7)
    eta = rng.normal(0, 1.5, size=(3, 4))  # 3 draws x 4 rows
    c = np.sort(rng.normal(0, 2, size=(3, 4)), axis=1)  # C = 5
    common = FAMILIES["sequential"].with_category_specific(False)
    assert FAMILIES["sequential"].category_probs is None  # category-specific: no single eta
    for fam in (FAMILIES["ordered"], common):
        p = fam.category_probs(eta, c)
        assert p.shape == (3, 4, 5) and np.all(p >= 0)
        np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
        for s in range(3):
            for n in range(4):
                mu, cs = eta[s, n], c[s]
                for j in range(1, 6):
                    if fam.common_variant:  # continuation ratio
                        lp = log_expit(mu - cs[: j - 1]).sum()
                        lp += log_expit(-(mu - cs[j - 1])) if j <= 4 else 0.0
                        want = np.exp(lp)
                    else:
                        cc = np.concatenate([[-np.inf], cs, [np.inf]])
                        want = expit(cc[j] - mu) - expit(cc[j - 1] - mu)
                    assert p[s, n, j - 1] == pytest.approx(want, rel=1e-10, abs=1e-15)
        # the rng draws categories with these probabilities (larger eta: higher categories)
        y = fam.rng(np.repeat(eta[0], 200_000), {"cutpoints": c[0]}, rng).reshape(4, -1)
        freq = np.stack([(y == k).mean(axis=1) for k in range(1, 6)], axis=-1)
        se = np.sqrt(p[0] * (1 - p[0]) / 200_000)
        assert np.all(np.abs(freq - p[0]) <= 5 * se + 1e-12), (fam.name, freq, p[0])


# ---------------------------------------------------------------------------- log density (slow)

# One structure per family (random effects, proper priors where the family has extras).
LOGP_CASES = {
    "gaussian": ("sat ~ talk + perf + (1 | group)", {}),
    "gaussian_corr": ("sat ~ talk + (talk | group)", {"prior": "flat"}),
    "gaussian_lkj": ("sat ~ talk + (talk | group)", {"prior_kw": {"lkj_eta": 2.0}}),
    "gaussian_k0": ("sat ~ 1 + (1 | group)", {}),  # centred by param="auto"
    "gaussian_lkj_centred": ("sat ~ talk + (talk | group)",
                             {"prior_kw": {"lkj_eta": 2.0}, "param": "centered"}),
    "lognormal": ("pos ~ talk + perf + (1 | group)", {}),
    "student_t": ("sat ~ talk + perf + (1 | group)", {"prior_kw": {"nu_rate": 0.1}}),
    "gamma": ("pos ~ talk + perf + (1 | group)", {"prior_kw": {"shape_rate": 0.5}}),
    "bernoulli": ("hi ~ talk + perf + (1 | group)", {}),
    "binomial": ("cbind(talk, fail) ~ perf + (1 | group)", {}),
    "poisson": ("talk ~ perf + offset(log(expo)) + (1 | group)", {}),
    "neg_binomial": ("talk ~ perf + (1 | group)", {"prior_kw": {"phi_rate": 0.3}}),
    "ordered": ("sat ~ talk + perf + (1 | group)", {"prior_kw": {"cutpoint_sd": 5}}),
    "sequential": ("sat ~ talk + (1 | group)", {"prior_kw": {"cutpoint_sd": 5}}),
    "sequential_common": ("sat ~ talk + perf + (1 | group)",
                          {"prior_kw": {"cutpoint_sd": 5}, "category_specific": False}),
    "beta": ("prop ~ talk + perf + (1 | group)", {"prior_kw": {"phi_rate": 0.3}}),
    "zero_inflated_poisson": ("talk ~ perf + (1 | group)", {"zi": "~ sat"}),
    "zero_inflated_neg_binomial": ("talk ~ perf + (1 | group)",
                                   {"prior_kw": {"phi_rate": 0.3}, "zi": "~ 1"}),
}


def _values(program, rng) -> dict[str, np.ndarray]:
    """Random valid constrained values of every parameter of the generated program."""
    spec = program.spec
    d = program.data
    v: dict[str, np.ndarray] = {}
    if spec.has_intercept:
        v["Intercept_c" if spec.centred else "Intercept"] = np.array(rng.normal(0.3, 0.3))
    K = d["K"]
    if spec.family.category_specific:
        v["beta"] = rng.normal(0, 0.3, size=(K, d["C"] - 1))
    else:
        v["beta"] = rng.normal(0, 0.3, size=K)
    if spec.family.ordinal:
        c = np.sort(rng.normal(0, 1.5, size=d["C"] - 1))
        v["cutpoints"] = c
    for p in spec.family.extra:
        v[p.name] = np.array(p.lower + rng.uniform(0.5, 3.0))
    if spec.zi is not None:
        v["beta_zi"] = rng.normal(0, 0.5, size=d["K_zi"])
    for g in spec.groups:
        v[f"sd_{g.k}"] = rng.uniform(0.2, 1.0, size=g.q)
        if g.has_corr:
            a = rng.normal(size=(g.q, g.q))
            S = a @ a.T + g.q * np.eye(g.q)
            R = S / np.sqrt(np.outer(np.diag(S), np.diag(S)))
            v[f"L_{g.k}"] = np.linalg.cholesky(R)
        v[f"z_{g.k}"] = rng.normal(size=(g.q, g.n_groups))
    return v


def _reference_logp(program, v) -> float:
    """Log density (all constants, no Jacobian) of the model, computed with numpy/scipy."""
    spec, d = program.spec, program.data
    X = d["X"]
    if spec.centred:
        X = X - X.mean(axis=0)
    eta = np.zeros(d["N"])
    if spec.has_intercept:
        eta += v["Intercept_c" if spec.centred else "Intercept"]
    if "offsets" in d:
        eta += d["offsets"]
    lp = 0.0
    for g in spec.groups:
        k = g.k
        L = v.get(f"L_{k}", np.eye(g.q))
        DL = np.diag(v[f"sd_{k}"]) @ L
        if g.centered:  # z_k holds the groups' coefficients, spread around population ones
            mu = np.array([0.0 if i == 0 else v["Intercept_c" if spec.centred else "Intercept"]
                           if i == 1 else v["beta"][i - 2] for i in g.means] or [0.0] * g.q)
            r = (v[f"z_{k}"] - mu[:, None]).T  # groups x q
            lp += stats.multivariate_normal.logpdf(r, np.zeros(g.q), DL @ DL.T).sum()
        else:
            r = (DL @ v[f"z_{k}"]).T
            lp += stats.norm.logpdf(v[f"z_{k}"]).sum()
        Z = d.get(f"Z_{k}", np.ones((d["N"], 1)))
        eta += np.sum(Z * r[d[f"J_{k}"] - 1], axis=1)
    lp_re = lp
    y = d["y"]
    f = spec.family.name
    if spec.family.category_specific:
        mu = X @ v["beta"] + eta[:, None]  # N x (C-1)
        c = v["cutpoints"]
        ll = 0.0
        for n in range(d["N"]):
            j = y[n]
            ll += log_expit(mu[n, : j - 1] - c[: j - 1]).sum()
            if j <= d["C"] - 1:
                ll += log_expit(-(mu[n, j - 1] - c[j - 1]))
        lp += ll
    else:
        mu = X @ v["beta"] + eta
        if f == "gaussian":
            lp += stats.norm.logpdf(y, mu, v["sigma"]).sum()
        elif f == "lognormal":
            lp += stats.lognorm.logpdf(y, s=v["sigma"], scale=np.exp(mu)).sum()
        elif f == "student_t":
            lp += stats.t.logpdf(y, v["nu"], mu, v["sigma"]).sum()
        elif f == "gamma":
            lp += stats.gamma.logpdf(y, a=v["shape"], scale=np.exp(mu) / v["shape"]).sum()
        elif f == "bernoulli":
            lp += stats.bernoulli.logpmf(y, expit(mu)).sum()
        elif f == "binomial":
            lp += stats.binom.logpmf(y, d["trials"], expit(mu)).sum()
        elif f == "poisson":
            lp += stats.poisson.logpmf(y, np.exp(mu)).sum()
        elif f == "neg_binomial":
            phi = v["phi"]
            lp += stats.nbinom.logpmf(y, phi, phi / (phi + np.exp(mu))).sum()
        elif spec.family.zero_inflated:  # P(0) = zi + (1 - zi) P_count(0)
            zi = expit(d["X_zi"] @ v["beta_zi"])
            if "phi" in v:
                phi = v["phi"]
                count = stats.nbinom.logpmf(y, phi, phi / (phi + np.exp(mu)))
            else:
                count = stats.poisson.logpmf(y, np.exp(mu))
            lp += np.where(y == 0, np.log(zi + (1 - zi) * np.exp(count)),
                           np.log1p(-zi) + count).sum()
        elif f == "beta":
            m, phi = expit(mu), v["phi"]
            lp += stats.beta.logpdf(y, m * phi, (1 - m) * phi).sum()
        elif f == "sequential":  # one predictor, common to all transitions
            c = v["cutpoints"]
            for n in range(d["N"]):
                j = y[n]
                lp += log_expit(mu[n] - c[: j - 1]).sum()
                if j <= d["C"] - 1:
                    lp += log_expit(-(mu[n] - c[j - 1]))
        elif f == "ordered":
            c = np.concatenate([[-np.inf], v["cutpoints"], [np.inf]])
            p = expit(c[y] - mu) - expit(c[y - 1] - mu)
            lp += np.log(p).sum()
        else:  # pragma: no cover
            raise AssertionError(f)
    loglik = lp - lp_re
    # priors
    pd_ = d
    if "Intercept_mu" in pd_:
        lp += stats.norm.logpdf(v["Intercept_c"], pd_["Intercept_mu"], pd_["Intercept_sd"])
    if "b_sd" in pd_:
        b = v["beta"] if v["beta"].ndim == 2 else v["beta"][:, None]
        lp += stats.norm.logpdf(b, np.asarray(pd_["b_mu"])[:, None],
                                np.asarray(pd_["b_sd"])[:, None]).sum()
    if "b_zi_sd" in pd_:
        lp += stats.norm.logpdf(v["beta_zi"], pd_["b_zi_mu"], pd_["b_zi_sd"]).sum()
    for p in ("sigma", "nu", "shape", "phi"):
        if p + "_rate" in pd_:
            lp += stats.expon.logpdf(v[p], scale=1 / pd_[p + "_rate"])
    if "cutpoint_sd" in pd_:
        lp += stats.norm.logpdf(v["cutpoints"], 0, pd_["cutpoint_sd"]).sum()
    for g in spec.groups:
        if f"sd_{g.k}_rate" in pd_:
            lp += stats.expon.logpdf(v[f"sd_{g.k}"], scale=1 / pd_[f"sd_{g.k}_rate"]).sum()
        if f"lkj_eta_{g.k}" in pd_:  # LKJ(eta) for q = 2: density of rho, L[2,1] = rho
            assert g.q == 2
            e, rho = pd_[f"lkj_eta_{g.k}"], v[f"L_{g.k}"][1, 0]
            lp += (e - 1) * np.log1p(-rho**2) - (2 * e - 1) * np.log(2) - betaln(e, e)
    return float(lp), float(loglik)


def _flatten(bs_model, v) -> np.ndarray:
    """Constrained parameter vector in BridgeStan's order ('beta.2', 'z_1.1.3', ...)."""
    out = []
    for name in bs_model.param_names():
        base, *idx = name.split(".")
        val = np.asarray(v[base])
        out.append(float(val[tuple(int(i) - 1 for i in idx)] if idx else val))
    return np.array(out)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("case", list(LOGP_CASES))
def test_log_density_matches_scipy(case, debate, toolchain):
    from bayesglmm.toolchain import compile_model

    formula, opts = LOGP_CASES[case]
    fam = case.split("_corr")[0].split("_lkj")[0].split("_k0")[0].split("_common")[0]
    fam = fam.split("_centred")[0]
    prior = prior_flat() if opts.get("prior") == "flat" else prior_normal(**opts.get("prior_kw", {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        family = get_family(fam).with_category_specific(opts.get("category_specific"))
        spec = build_spec(formula, debate, family=family, prior=prior, zi=opts.get("zi"),
                          param=opts.get("param", "auto"))
    program = generate(spec)
    cm = compile_model(program.code, name=f"fam_{case}", verbose=False)
    bs = cm.bridgestan_model(program.data)
    rng = np.random.default_rng(42)
    for _ in range(3):
        v = _values(program, rng)
        theta = bs.param_unconstrain(_flatten(bs, v))
        got = bs.log_density(theta, propto=False, jacobian=False)
        want, loglik = _reference_logp(program, v)
        assert got == pytest.approx(want, rel=1e-8, abs=1e-8), case
    # log_lik in generated quantities sums to the likelihood part
    names = bs.param_names(include_tp=True, include_gq=True)
    gq = bs.param_constrain(theta, include_tp=True, include_gq=True, rng=bs.new_rng(seed=1))
    ll = np.array([gq[i] for i, n in enumerate(names) if n.startswith("log_lik.")])
    assert ll.shape == (program.data["N"],)
    assert ll.sum() == pytest.approx(loglik, rel=1e-8, abs=1e-8)


def _maximise(bs) -> np.ndarray:
    """Maximum of log_density (no Jacobian: the mode in the constrained parameters)."""
    from scipy.optimize import minimize

    def f(u):
        lp, g = bs.log_density_gradient(u, propto=False, jacobian=False)
        return -lp, -g

    res = minimize(f, np.zeros(bs.param_unc_num()), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": 1e-9, "ftol": 1e-14})
    return bs.param_constrain(res.x), -res.fun


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_flat_ml_bernoulli_matches_reference(debate, toolchain):
    # features.md section 12 (tests/reference/families_glmm.json features_12.bernoulli)
    from bayesglmm.toolchain import compile_model

    ref = load_reference("families_glmm.json")["features_12"]["bernoulli"]

    program = generate(build_spec("cond ~ talk + sat", debate, family="bernoulli"))
    bs = compile_model(program.code, name="fam_bernoulli_glm", verbose=False).bridgestan_model(
        program.data)
    est, loglik = _maximise(bs)
    names = bs.param_names()
    got = dict(zip(names, est))
    np.testing.assert_allclose([got["Intercept"], got["beta.1"], got["beta.2"]],
                               [ref["Intercept"], ref["b[talk]"], ref["b[sat]"]], atol=2e-5)
    assert loglik == pytest.approx(ref["logLik"], abs=1e-3)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_flat_ml_gaussian_is_least_squares(debate, toolchain):
    from bayesglmm.toolchain import compile_model

    spec = build_spec("sat ~ talk + perf", debate)
    program = generate(spec)
    bs = compile_model(program.code, name="fam_gaussian_lm", verbose=False).bridgestan_model(
        program.data)
    est, _ = _maximise(bs)
    got = dict(zip(bs.param_names(), est))
    X = np.column_stack([np.ones(spec.n_obs), spec.fixed.X])
    coef, rss, *_ = np.linalg.lstsq(X, spec.response.y, rcond=None)
    np.testing.assert_allclose([got["Intercept"], got["beta.1"], got["beta.2"]], coef, atol=1e-5)
    assert got["sigma"] == pytest.approx(np.sqrt(rss[0] / spec.n_obs), rel=1e-5)
