"""The Model API: wrappers, code access, export / from_stan, argument checking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SEED

import bayesglmm

DEBATE_A = "sat ~ talk + perf + (1 | group)"


# --------------------------------------------------------------------------- public API


def test_public_api():
    for name in ("glmer", "lmer", "glm", "lm", "prior_flat", "prior_normal", "prior_weak",
                 "load_debate", "load_sleepstudy", "from_stan"):
        assert callable(getattr(bayesglmm, name)), name
        assert name in bayesglmm.__all__


def test_datasets():
    d = bayesglmm.load_debate()
    assert d.shape == (300, 6)
    assert list(d.columns) == ["group", "sat", "talk", "perf", "skill", "cond"]
    assert d["sat"].mean() == pytest.approx(3.4333, abs=1e-4)  # checksum of the shipped debate.csv
    s = bayesglmm.load_sleepstudy()
    assert s.shape == (180, 3)
    assert list(s["Subject"].cat.categories[:3]) == ["308", "309", "310"]
    assert s["Reaction"].iloc[0] == pytest.approx(249.56)
    w = bayesglmm.load_wine()  # the same rows as tests/reference/data/wine.csv (ordinal::wine)
    ref = pd.read_csv(Path(__file__).parent / "reference" / "data" / "wine.csv")
    assert w.shape == (72, 6) and list(w["temp"].cat.categories) == ["cold", "warm"]
    np.testing.assert_array_equal(w["rating"], ref["rating"])
    np.testing.assert_array_equal(w["judge"].astype(int), ref["judge"])
    assert (w["contact"].astype(str) == ref["contact"]).all()


# --------------------------------------------------------------------------- the model object


def test_model_code_data_and_names(debate_model, debate, capsys):
    m = debate_model
    assert isinstance(m, bayesglmm.Model)
    code = m.stan_code
    assert isinstance(code, str) and "model {" in code and "parameters {" in code
    m.print_code()
    assert capsys.readouterr().out.strip() == code.strip()
    data = m.stan_data
    assert isinstance(data, dict) and data
    data.clear()  # a copy: the model keeps its data
    assert m.stan_data
    names = m.parameter_names
    assert names[:5] == ["Intercept", "b[talk]", "b[perf]", "sigma", "sd[group:Int]"]
    assert "Intercept_c" in names
    assert sum(n.startswith("r_re[") for n in names) == 100
    np.testing.assert_array_equal(m.observed_response(), debate["sat"].to_numpy())
    assert "lmer(" in repr(m) and "300 observations" in repr(m)


def test_same_structure_same_code(debate):
    a = bayesglmm.lmer(DEBATE_A, data=debate, prior=bayesglmm.prior_normal())
    b = bayesglmm.lmer(DEBATE_A, data=debate.iloc[::-1].reset_index(drop=True),
                       prior=bayesglmm.prior_normal(b_sd=3))
    assert a.stan_code == b.stan_code  # data and prior scales are data: same program


def test_export_files(debate_model, tmp_path):
    d = debate_model.export(tmp_path / "exp")
    assert (d / "model.stan").read_text() == debate_model.stan_code
    data = json.loads((d / "data.json").read_text())
    assert set(data) == set(debate_model.stan_data)
    for k, v in debate_model.stan_data.items():
        np.testing.assert_allclose(np.asarray(data[k], dtype=float), np.asarray(v, dtype=float))
    names = json.loads((d / "names.json").read_text())
    assert "b[talk]" in names.values() and all(k != v for k, v in names.items() if k.startswith("beta"))
    readme = (d / "README.md").read_text()
    assert "cmdstanpy" in readme and "from_stan" in readme
    with pytest.raises(ValueError, match="directory"):
        debate_model.export(d / "model.stan")


# --------------------------------------------------------------------------- bad input


def test_lm_rejects_random_effects(debate):
    with pytest.raises(ValueError, match="lmer"):
        bayesglmm.lm(DEBATE_A, data=debate)
    with pytest.raises(ValueError, match="glmer"):
        bayesglmm.glm(DEBATE_A, data=debate, family="gaussian")


def test_bad_formula_and_data(debate):
    with pytest.raises(ValueError, match="nosuchcolumn"):
        bayesglmm.lmer("sat ~ nosuchcolumn + (1 | group)", data=debate)
    with pytest.raises(ValueError):
        bayesglmm.lmer("", data=debate)
    with pytest.raises(ValueError, match="gaussian"):
        bayesglmm.glmer(DEBATE_A, data=debate, family="gausian")
    with pytest.raises(ValueError, match="contrasts"):
        bayesglmm.glmer(DEBATE_A, data=debate, contrasts="helmert")
    with pytest.raises((ValueError, TypeError)):
        bayesglmm.lmer(DEBATE_A, data=debate, prior="nosuchprior")
    with pytest.raises(ValueError):
        bayesglmm.lmer(DEBATE_A, data=debate.iloc[:0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"chains": 0}, "chains"),
        ({"chains": 2.5}, "chains"),
        ({"warmup": -1}, "warmup"),
        ({"sampling": 0}, "sampling"),
        ({"thin": 0}, "thin"),
        ({"delta": 1.0}, "delta"),
        ({"delta": 0}, "delta"),
        ({"max_treedepth": 0}, "max_treedepth"),
        ({"seed": -3}, "seed"),
        ({"seed": "a"}, "seed"),
        ({"init": "random"}, "init"),
        ({"init": -1.0}, "init"),
    ],
)
def test_sample_bad_arguments(debate_model, kwargs, match):
    # checked before anything is compiled or run
    with pytest.raises(ValueError, match=match):
        debate_model.sample(**kwargs)


def test_optimize_bad_arguments(debate_model):
    with pytest.raises(ValueError, match="seed"):
        debate_model.optimize(seed=1.5)
    with pytest.raises(ValueError, match="init"):
        debate_model.optimize(init=[1, 2])
    with pytest.raises(TypeError, match="laplace"):
        debate_model.optimize(laplace="yes")
    with pytest.raises(ValueError, match="num_estimate"):
        debate_model.optimize(num_estimate=0)
    with pytest.raises(ValueError, match="se_method"):
        debate_model.optimize(se_method="bootstrap")


def test_from_stan_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        bayesglmm.from_stan(tmp_path / "missing.stan", {})
    p = tmp_path / "model.txt"
    p.write_text("parameters { real x; } model { x ~ normal(0, 1); }")
    with pytest.raises(ValueError, match=".stan"):
        bayesglmm.from_stan(p, {})
    q = tmp_path / "m.stan"
    q.write_text("parameters { real x; } model { x ~ normal(0, 1); }")
    with pytest.raises(FileNotFoundError):
        bayesglmm.from_stan(q, tmp_path / "nodata.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        bayesglmm.from_stan(q, tmp_path / "bad.json")


# --------------------------------------------------------------------------- export round trip


@pytest.mark.slow
def test_export_from_stan_round_trip(debate_model, debate_compiled, tmp_path):
    kw = {"chains": 2, "warmup": 200, "sampling": 200, "seed": SEED + 1, "verbose": False}
    fit = debate_model.sample(**kw)
    d = debate_model.export(tmp_path / "exported")
    ext = bayesglmm.from_stan(d / "model.stan", d / "data.json")
    assert ext.stan_code == debate_model.stan_code  # same program: same compiled binary
    fit2 = ext.sample(**kw)
    names = json.loads((d / "names.json").read_text())
    a = fit.draws()
    b = fit2.draws()
    # from_stan reports Stan names; map them back to the user names
    b = b.rename(columns={k: v for k, v in names.items()})
    for col in ["lp", "Intercept", "b[talk]", "b[perf]", "sigma", "sd[group:Int]", "r_re[7]"]:
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)
    # a directory works too, with its data.json
    ext2 = bayesglmm.from_stan(d)
    assert ext2.stan_data.keys() == ext.stan_data.keys()


@pytest.mark.slow
def test_from_stan_edited_program(debate_model, tmp_path, toolchain):
    """An edited program (a tight prior pins sigma near 0.5) runs with the same fit classes;
    results use the Stan names."""
    d = debate_model.export(tmp_path / "edit")
    code = (d / "model.stan").read_text()
    line = "target += exponential_lpdf(sigma | sigma_rate);"
    assert line in code
    (d / "model.stan").write_text(code.replace(line, "target += normal_lpdf(sigma | 0.5, 0.001);"))
    m = bayesglmm.from_stan(d / "model.stan", d / "data.json")
    assert m.stan_code != debate_model.stan_code
    fit = m.optimize(verbose=False)
    tab = fit.summary()
    assert "sigma" in tab.index and "beta[1]" in tab.index
    assert "b[talk]" not in tab.index  # Stan names only
    assert tab.loc["sigma", "estimate"] == pytest.approx(0.5, abs=0.01)
    mc = m.sample(chains=2, warmup=200, sampling=100, seed=SEED, verbose=False)
    s = mc.summary()
    assert s.index[0] == "lp" and "sigma" in s.index and "z_1[1,1]" in s.index
    assert not any(str(i).startswith("log_lik") for i in s.index)
    assert s.loc["sigma", "mean"] == pytest.approx(0.5, abs=0.01)
    assert mc.idata.log_likelihood["y"].shape == (2, 100, 300)
    # Laplace over the named blocks also works for external programs
    lap = bayesglmm.from_stan(d / "model.stan", d / "data.json", re_blocks=("z_1",))
    lfit = lap.optimize(verbose=False)
    assert lfit.laplace and lfit.summary().loc["sigma", "estimate"] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(TypeError, match="re_blocks"):
        bayesglmm.from_stan(d / "model.stan", d / "data.json", re_blocks="z_1")


def test_glm_and_lm_wrappers(debate):
    m = bayesglmm.lm("sat ~ talk + perf", data=debate)
    assert m.parameter_names == ["Intercept", "b[talk]", "b[perf]", "sigma"]
    g = bayesglmm.glm("cond ~ talk + sat", data=debate, family="bernoulli")
    assert g.parameter_names == ["Intercept", "b[talk]", "b[sat]"]
    assert "family = bernoulli" in g.call()
