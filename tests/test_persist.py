"""Saving and loading fits (bayesglmm/persist.py, persist_fits.py, models/saved.py, ttest.py):
every fit type round-trips, a saved MCMC fit reloads in a fresh process with the same summary,
bridge-sampling log ML (same seed) and lsmeans; ``sample(file=...)``; bad, crafted and
incompatible files give clear errors and never run code."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SEED

import bayesglmm
from bayesglmm.persist import Archive, FitFileError, decode, encode, read

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- fast


def test_values_and_frames_round_trip():
    df = pd.DataFrame({
        "y": [1.5, np.nan, 3.0], "n": np.array([1, 2, 3], dtype=np.int64),
        "g": ["a", None, "c"], "f": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"],
                                                   ordered=True),
        "b": [True, False, True], "t": pd.to_datetime(["2020-01-01", "2020-01-02", "NaT"]),
        "k": pd.array([1, None, 3], dtype="Int64"), "s": pd.array(["x", "y", None], dtype="string"),
    }, index=[10, 11, 12])
    value = {"data": df, "prior": bayesglmm.prior_normal(b_sd=5), "y_range": (1, 5),
             "within": {"time": [1, 2, 3]}, "fixed": {"b[talk]": 0.0}, "x": float("inf"),
             "arr": np.arange(3.0), "none": None}
    ar = Archive()
    enc = encode(value, ar, "v")
    json.dumps(enc, allow_nan=False)  # pure JSON
    back = decode(json.loads(json.dumps(enc)), ar.arrays)
    pd.testing.assert_frame_equal(back["data"], df)
    assert back["prior"] == value["prior"] and back["y_range"] == (1, 5)
    assert back["within"] == {"time": [1, 2, 3]} and back["x"] == float("inf")
    np.testing.assert_array_equal(back["arr"], value["arr"])
    with pytest.raises(FitFileError, match="column 'm' of the data: it mixes int, str"):
        encode(pd.DataFrame({"m": [1, "a"]}), Archive(), "d")
    with pytest.raises(FitFileError, match="cannot save the argument 'f'"):
        encode(object(), Archive(), "f")


def _write_zip(path: Path, manifest: dict, arrays: bytes | None = None, code: str = "") -> Path:
    if arrays is None:
        buf = io.BytesIO()
        np.savez(buf, x=np.zeros(2))
        arrays = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest))
        z.writestr("arrays.npz", arrays)
        z.writestr("model.stan", code)
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp") / f"bayesglmm-pwned-{os.getpid()}"


def test_crafted_files_fail_to_load_and_never_run_code(tmp_path):
    """A pickle posing as a fit, and a fit whose arrays hold a pickled object whose unpickling
    would run a shell command: both are refused (no pickle is ever loaded)."""
    MARKER.unlink(missing_ok=True)
    p = tmp_path / "evil.bglmm"
    p.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(FitFileError, match="not a readable bayesglmm fit file"):
        bayesglmm.load(p)
    buf = io.BytesIO()
    np.save(buf, np.array([_Evil()], dtype=object), allow_pickle=True)
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("x.npy", buf.getvalue())
    manifest = {"format": "bayesglmm-fit", "format_version": 1, "kind": "mcmc", "model": None,
                "fit": {}}
    with pytest.raises(FitFileError, match="allow_pickle=False"):
        bayesglmm.load(_write_zip(tmp_path / "evil2.bglmm", manifest, npz.getvalue()))
    assert not MARKER.exists(), "loading a crafted file ran code"


def _crafted_model_file(path: Path, inputs: dict, wrapper: str = "lm") -> Path:
    """A fit file whose model is rebuilt by ``wrapper(**inputs)`` on loading."""
    ar = Archive()
    meta = {"format": "bayesglmm-fit", "format_version": 1, "kind": "map", "fit": {},
            "model": {"wrapper": wrapper, "name": "m", "inputs": encode(inputs, ar, "in"),
                      "stan_data": encode({}, ar, "sd")}}
    buf = io.BytesIO()
    np.savez(buf, **ar.arrays)
    return _write_zip(path, meta, buf.getvalue())


@pytest.mark.parametrize("call", ["pd.read_pickle({p!r})", "np.load({p!r}, allow_pickle=True)",
                                  "np.log.__class__.__init__({p!r})"])
def test_a_formula_in_a_crafted_file_cannot_run_code(tmp_path, call):
    """The model's formula is rebuilt on loading. A formula is data: it can call log, exp, ...,
    never pandas' or numpy's readers (here they would unpickle an object whose unpickling runs
    a shell command)."""
    MARKER.unlink(missing_ok=True)
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Evil()))
    df = pd.DataFrame({"y": np.arange(5.0), "x": np.arange(5.0)})
    p = _crafted_model_file(tmp_path / "f.bglmm", {"formula": f"y ~ {call.format(p=str(evil))}",
                                                  "data": df})
    with pytest.raises(FitFileError, match=r"the model saved in .*f\.bglmm cannot be rebuilt.*"
                                           r"(Unknown column or function 'pd'|has no attribute "
                                           r"'load'|attributes starting with '_')"):
        bayesglmm.load(p)
    assert not MARKER.exists(), "loading a crafted file ran code"


def test_crafted_arguments_are_a_clear_error(tmp_path):
    """Arguments the wrapper does not take, or a prior with made-up fields."""
    df = pd.DataFrame({"y": np.arange(5.0), "x": np.arange(5.0)})
    p = _crafted_model_file(tmp_path / "a.bglmm", {"formula": "y ~ x", "data": df,
                                                  "no_such_argument": 1})
    with pytest.raises(FitFileError, match="cannot be rebuilt.*no_such_argument"):
        bayesglmm.load(p)
    bad_prior = {"formula": "y ~ x", "data": df, "prior": bayesglmm.prior_normal()}
    ar = Archive()
    enc = encode(bad_prior, ar, "in")
    enc["__dict__"][2][1]["__prior__"]["shell"] = "rm -rf /"
    meta = {"format": "bayesglmm-fit", "format_version": 1, "kind": "map", "fit": {},
            "model": {"wrapper": "lm", "name": "m", "inputs": enc, "stan_data": {"__dict__": []}}}
    buf = io.BytesIO()
    np.savez(buf, **ar.arrays)
    with pytest.raises(FitFileError, match="cannot be rebuilt.*shell"):
        bayesglmm.load(_write_zip(tmp_path / "b.bglmm", meta, buf.getvalue()))


def test_not_a_fit_and_newer_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved fit"):
        bayesglmm.load(tmp_path / "missing.bglmm")
    (tmp_path / "text.bglmm").write_text("hello")
    with pytest.raises(FitFileError, match="not a readable bayesglmm fit file"):
        bayesglmm.load(tmp_path / "text.bglmm")
    with pytest.raises(FitFileError, match="is not a bayesglmm fit file"):
        read(_write_zip(tmp_path / "other.bglmm", {"format": "something"}))
    newer = {"format": "bayesglmm-fit", "format_version": 99, "versions": {"bayesglmm": "9.0"}}
    with pytest.raises(FitFileError, match=r"written by bayesglmm 9\.0 in file format 99.*"
                                           r"upgrade bayesglmm"):
        bayesglmm.load(_write_zip(tmp_path / "newer.bglmm", newer))
    bad_kind = {"format": "bayesglmm-fit", "format_version": 1, "kind": "nosuch"}
    with pytest.raises(FitFileError, match="unknown kind of fit 'nosuch'"):
        bayesglmm.load(_write_zip(tmp_path / "kind.bglmm", bad_kind))


def test_ttest_classic_round_trip(debate, tmp_path):
    res = bayesglmm.ttest("sat ~ cond", data=debate).classic(verbose=False)
    p = res.save(tmp_path / "tt")
    assert p.name == "tt.bglmm"
    back = bayesglmm.load(tmp_path / "tt")  # the suffix is found
    pd.testing.assert_frame_equal(back.table, res.table)
    assert back.format() == res.format() and back.p == res.p
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]  # atomic write left nothing


# ----------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_mcmc_fit_reloads_in_a_fresh_process(debate_mcmc, cond_skill_model, tmp_path):
    """The issue's acceptance test: same summary, bridge-sampling log ML (same seed) and
    lsmeans after loading in another Python process (lsmeans on a sampled fit of the factor
    model cond * skill, whose program the suite compiles anyway)."""
    path = debate_mcmc.save(tmp_path / "debate_fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cs = cond_skill_model.sample(chains=2, warmup=300, sampling=300, seed=SEED,
                                     verbose=False)
    cs_path = cs.save(tmp_path / "cond_skill")
    script = f"""
import sys, warnings; warnings.simplefilter("ignore")
sys.path.insert(0, {str(REPO)!r})
import bayesglmm
fit = bayesglmm.load({str(path)!r})
print(fit.summary().to_json(double_precision=15))
print(repr(fit.bridgesampling(seed=7, verbose=False).logml))
cs = bayesglmm.load({str(cs_path)!r})
print(bayesglmm.lsmeans(cs, "cond").to_frame().to_json(double_precision=15))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    summary, logml, lsm = r.stdout.strip().splitlines()[-3:]
    pd.testing.assert_frame_equal(pd.read_json(io.StringIO(summary)), debate_mcmc.summary(),
                                  check_exact=False, rtol=1e-12, check_names=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert float(logml) == debate_mcmc.bridgesampling(seed=7, verbose=False).logml
        mine = bayesglmm.lsmeans(cs, "cond").to_frame()
    pd.testing.assert_frame_equal(pd.read_json(io.StringIO(lsm)), mine, check_exact=False,
                                  rtol=1e-12, check_names=False, check_index_type=False)


@pytest.mark.slow
def test_every_method_after_loading(debate_mcmc, debate, tmp_path):
    fit = bayesglmm.load(debate_mcmc.save(tmp_path / "f"))
    assert fit.model.stan_code == debate_mcmc.model.stan_code
    np.testing.assert_array_equal(fit.draws_array()[0], debate_mcmc.draws_array()[0])
    assert str(fit) == str(debate_mcmc)
    new = debate.iloc[:5]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.testing.assert_frame_equal(fit.predict(new), debate_mcmc.predict(new))
        assert fit.loo().elpd_loo == pytest.approx(debate_mcmc.loo().elpd_loo, rel=1e-12)
    assert fit.plot_trace(pars="b[talk]") is not None
    assert bayesglmm.conditional_effects(fit, "talk") is not None


@pytest.mark.slow
def test_map_classic_variational_round_trip(debate_map, debate_classic, debate_model, tmp_path):
    for i, f in enumerate((debate_map, debate_classic)):
        back = bayesglmm.load(f.save(tmp_path / f"m{i}"))
        pd.testing.assert_frame_equal(back.summary(), f.summary())
        assert type(back) is type(f) and back.format() == f.format()
    a1, a2 = bayesglmm.anova(debate_classic), bayesglmm.anova(bayesglmm.load(tmp_path / "m1"))
    pd.testing.assert_frame_equal(a1.to_frame(), a2.to_frame())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vb = debate_model.variational(seed=SEED, verbose=False)
    back = bayesglmm.load(vb.save(tmp_path / "vb"))
    assert back.algorithm == vb.algorithm and back.pareto_k == vb.pareto_k
    pd.testing.assert_frame_equal(back.summary(), vb.summary())
    # bridge sampling needs posterior draws: refused for the variational fit, saved or not
    for f in (vb, back):
        with pytest.raises(ValueError, match="bridge sampling needs draws from the posterior: "
                                             "the draws of variational"):
            f.bridgesampling(verbose=False)


@pytest.mark.slow
def test_saved_fit_restores_its_backend(debate_map, tmp_path):
    """The file records the Stan program the fit ran (generic or specific); loading runs the
    model on that program even when backend="auto" would now choose the other one (here: a
    file edited to say the fit ran the specific program)."""
    assert debate_map.model.backend_requested == "auto" and debate_map.backend == "generic"
    p = debate_map.save(tmp_path / "m")
    back = bayesglmm.load(p)
    assert back.backend == back.model.backend == "generic"
    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(members["manifest.json"])
    assert meta["model"]["backend"] == "generic"
    meta["model"]["backend"] = "specific"
    members["manifest.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(p, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    back = bayesglmm.load(p)  # re-optimises on the specific program: same estimates to 1e-6
    assert back.backend == back.model.backend == "specific"
    assert back.model.backend_requested == "auto"
    pd.testing.assert_frame_equal(back.summary(), debate_map.summary(), rtol=1e-5)


@pytest.mark.slow
def test_sample_file_argument(conjugate_model, conjugate_compiled, tmp_path):
    """brms's file=: the second call loads (same draws, no sampling); a changed setting
    samples again and overwrites; file_refit="never" loads whatever is there."""
    f = tmp_path / "cached"
    a = conjugate_model.sample(chains=1, sampling=200, seed=1, verbose=False, file=f)
    assert (tmp_path / "cached.bglmm").exists()
    b = conjugate_model.sample(chains=1, sampling=200, seed=1, verbose=False, file=f)
    np.testing.assert_array_equal(a.draws_array()[0], b.draws_array()[0])
    assert b.stan_fit.__class__.__name__ == "SavedStanOutput"  # loaded, not sampled
    # with CmdStan low_rank="auto" (the default) is False: the same run, so it loads
    b2 = conjugate_model.sample(chains=1, sampling=200, seed=1, verbose=False, file=f,
                                low_rank=False)
    assert b2.stan_fit.__class__.__name__ == "SavedStanOutput"
    assert a.saved_settings["low_rank"] is False
    c = conjugate_model.sample(chains=1, sampling=300, seed=1, verbose=False, file=f)
    assert c.sampling == 300 and c.stan_fit.__class__.__name__ != "SavedStanOutput"
    d = conjugate_model.sample(chains=1, sampling=200, seed=2, verbose=False, file=f,
                               file_refit="never")
    assert d.sampling == 300
    e = conjugate_model.sample(chains=1, sampling=300, seed=1, verbose=False, file=f,
                               file_refit="always")
    assert e.stan_fit.__class__.__name__ != "SavedStanOutput"
    with pytest.raises(ValueError, match="file_refit must be"):
        conjugate_model.sample(chains=1, file=f, file_refit="sometimes", verbose=False)


@pytest.mark.slow
def test_incompatible_model_is_a_clear_error(debate_map, tmp_path):
    """A file whose saved program differs from what this version builds from the inputs."""
    p = debate_map.save(tmp_path / "m")
    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["model.stan"] = members["model.stan"] + b"\n// written by another version\n"
    meta = json.loads(members["manifest.json"])
    meta["versions"]["bayesglmm"] = "0.0.1"
    members["manifest.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(p, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(FitFileError, match=r"saved by bayesglmm 0\.0\.1; rebuilt by version .* "
                                           r"has another Stan program"):
        bayesglmm.load(p)
