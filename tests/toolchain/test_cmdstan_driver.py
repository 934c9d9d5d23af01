"""Conformance tests of the toolchain's CmdStan home (cmdstan-contract.md G items 1-17).

Everything goes through unmodified ``cmdstanpy`` 1.3.2 against the home's makefile and our
own driver.  Three Stan programs are compiled, once per module (about 15-20 s each once
the driver objects and the precompiled header exist):

* ``bernoulli``: the home's example program (one constrained parameter);
* ``conj``: conjugate normal model with a positive parameter and a generated quantity;
* ``noparams``: no parameters, only generated quantities (automatic fixed_param).

The syntax-error test runs stanc only.  Our executables are always built with threads,
so "non-threaded" (one process per chain) runs are forced with
``force_one_process_per_chain=True``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require, require_module

cmdstanpy = require_module("cmdstanpy")

pytestmark = pytest.mark.slow  # every test needs compiled Stan programs

TC_ROOT = Path(os.environ.get("BAYESGLMM_HOME", Path.home() / ".cache" / "bayesglmm")) / "toolchain"
HOME = Path(os.environ.get("CMDSTAN") or TC_ROOT / "cmdstan")

BERN_DATA = {"N": 10, "y": [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]}

CONJ = """
data { int<lower=0> N; vector[N] y; real<lower=0> s0; }
parameters { real mu; real<lower=0> tau; }
model { mu ~ normal(0, s0); tau ~ gamma(2, 1); y ~ normal(mu, 1); }
generated quantities { real mu2 = mu * 2; }
"""
_rng = np.random.default_rng(11)
CONJ_Y = _rng.normal(1.3, 1.0, size=30)
CONJ_DATA = {"N": len(CONJ_Y), "y": CONJ_Y.tolist(), "s0": 3.0}

NOPARAMS = """
data { real m; }
generated quantities { real y = normal_rng(m, 1); int k = 3; }
"""


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def home():
    require((HOME / "makefile").is_file() and (HOME / "bin" / "stanc").exists(),
            f"CmdStan home not built: {HOME} (run `make build` there)")
    cmdstanpy.set_cmdstan_path(str(HOME))
    return HOME


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cmdstan_driver")


@pytest.fixture(scope="module")
def bern_file(home, workdir):
    d = workdir / "bern"
    d.mkdir()
    src = home / "examples" / "bernoulli" / "bernoulli.stan"
    dst = d / "bernoulli.stan"
    shutil.copy(src, dst)
    return dst


@pytest.fixture(scope="module")
def bern(bern_file):
    return cmdstanpy.CmdStanModel(stan_file=str(bern_file))


@pytest.fixture(scope="module")
def conj(home, workdir):
    d = workdir / "conj"
    d.mkdir()
    f = d / "conj.stan"
    f.write_text(CONJ)
    return cmdstanpy.CmdStanModel(stan_file=str(f))


@pytest.fixture(scope="module")
def noparams(home, workdir):
    d = workdir / "noparams"
    d.mkdir()
    f = d / "noparams.stan"
    f.write_text(NOPARAMS)
    return cmdstanpy.CmdStanModel(stan_file=str(f))


@pytest.fixture(scope="module")
def conj_fit(conj, workdir):
    return conj.sample(data=CONJ_DATA, chains=2, iter_warmup=200, iter_sampling=100,
                       seed=3, save_warmup=True, output_dir=str(workdir / "conj_mcmc"),
                       show_progress=False)


# ------------------------------------------------------------------------- G1-G4


def test_g1_path_and_version(home):
    assert cmdstanpy.cmdstan_path() == str(home)
    assert cmdstanpy.cmdstan_version() == (2, 35)
    assert (home / "makefile").read_text().splitlines()[0] == "CMDSTAN_VERSION := 2.35.0"


def test_g2_compile_reuse_force(bern, bern_file):
    exe = Path(bern.exe_file)
    assert exe == bern_file.with_suffix("") and exe.is_file()
    assert bern.src_info()["parameters"]["theta"]["type"] == "real"
    m1 = exe.stat().st_mtime_ns
    time.sleep(1.1)
    again = cmdstanpy.CmdStanModel(stan_file=str(bern_file))
    assert Path(again.exe_file).stat().st_mtime_ns == m1  # not rebuilt
    forced = cmdstanpy.CmdStanModel(stan_file=str(bern_file), force_compile=True,
                                    cpp_options={"STAN_THREADS": True})
    assert Path(forced.exe_file).stat().st_mtime_ns > m1
    assert bern_file.with_suffix(".hpp").is_file()


def test_g3_syntax_error(home, workdir):
    bad = workdir / "bad.stan"
    bad.write_text("parameters { real mu } model { mu ~ normal(0,1); }")
    with pytest.raises(ValueError) as e:
        cmdstanpy.CmdStanModel(stan_file=str(bad))
    assert "Syntax error" in str(e.value) and "line 1" in str(e.value)
    # make itself must fail (non-zero) with stanc's message when asked directly
    p = subprocess.run(["make", str(workdir / "bad")], cwd=home, capture_output=True, text=True)
    assert p.returncode != 0 and "Syntax error" in p.stdout + p.stderr


def test_g4_exe_info(bern):
    info = bern.exe_info()
    assert info["stan_version_major"] == "2" and info["stan_version_minor"] == "35"
    assert info["STAN_THREADS"] == "true"  # threads are always compiled in
    out = subprocess.run([bern.exe_file, "info"], capture_output=True, text=True)
    assert out.returncode == 0 and "STAN_THREADS=true" in out.stdout


# ------------------------------------------------------------------------- G5-G9 sampling


@pytest.mark.parametrize("one_process_per_chain", [False, True])
def test_g5_four_chains(bern, workdir, one_process_per_chain):
    out = workdir / f"g5_{int(one_process_per_chain)}"
    fit = bern.sample(data=BERN_DATA, chains=4, seed=5, output_dir=str(out),
                      show_progress=False, force_one_process_per_chain=one_process_per_chain)
    assert fit.draws().shape == (1000, 4, 8)
    assert np.all(np.isfinite(fit.step_size)) and fit.step_size.shape == (4,)
    assert fit.metric.shape == (4, 1)
    for cid in (1, 2, 3, 4):
        assert len(glob.glob(str(out / f"*_{cid}.csv"))) == 1
    assert abs(fit.stan_variable("theta").mean() - 0.25) < 0.03


def test_g5_process_modes_agree(bern):
    # chain i's RNG stream depends only on (seed, id): both modes give identical draws
    a = bern.sample(data=BERN_DATA, chains=3, seed=42, show_progress=False)
    b = bern.sample(data=BERN_DATA, chains=3, seed=42, show_progress=False,
                    force_one_process_per_chain=True)
    assert np.array_equal(a.draws(), b.draws())


def test_g6_warmup_thin_dense_chain_ids(conj, workdir):
    out = workdir / "g6"
    fit = conj.sample(data=CONJ_DATA, save_warmup=True, thin=3, iter_warmup=50,
                      iter_sampling=30, metric="dense", chains=2, chain_ids=[5, 6], seed=6,
                      output_dir=str(out), show_progress=False)
    assert fit.draws(inc_warmup=True).shape[0] == 27  # ceil(50/3) + ceil(30/3)
    assert fit.draws().shape[0] == 10
    assert fit.metric.shape == (2, 2, 2)
    names = sorted(os.path.basename(f) for f in glob.glob(str(out / "*.csv")))
    assert [n.rsplit("_", 1)[1] for n in names] == ["5.csv", "6.csv"]


@pytest.mark.parametrize("one_process_per_chain", [False, True])
def test_g7_inits_metric_stepsize(conj, workdir, one_process_per_chain):
    fit = conj.sample(
        data=CONJ_DATA, chains=2, seed=7, iter_warmup=200, iter_sampling=100,
        inits=[{"mu": 1.0, "tau": 1.0}, {"mu": -1.0, "tau": 2.0}],
        inv_metric=[{"inv_metric": [0.05, 0.5]}, {"inv_metric": [0.04, 0.6]}],
        step_size=0.3, adapt_delta=0.9, max_treedepth=8, show_progress=False,
        force_one_process_per_chain=one_process_per_chain)
    assert fit.draws().shape == (100, 2, 10)
    assert fit.metadata.cmdstan_config["max_depth"] == 8
    assert fit.metadata.cmdstan_config["delta"] == 0.9
    # one dict for all chains: single file, fallback resolution in the driver
    fit2 = conj.sample(data=CONJ_DATA, chains=2, seed=8, iter_warmup=100, iter_sampling=50,
                       inits={"mu": 0.5, "tau": 1.5}, inv_metric={"inv_metric": [0.05, 0.5]},
                       show_progress=False, force_one_process_per_chain=one_process_per_chain)
    assert fit2.draws().shape == (50, 2, 10)


def test_g7_inits_used(conj, workdir):
    # inits are honoured: with no warmup and no adaptation the first draw starts there
    fit = conj.sample(data=CONJ_DATA, chains=1, seed=9, iter_warmup=0, iter_sampling=1,
                      adapt_engaged=False, inits={"mu": 40.0, "tau": 5.0}, step_size=1e-6,
                      show_progress=False)
    assert abs(fit.stan_variable("mu")[0] - 40.0) < 1e-3


def test_g8_zero_parameters(noparams, workdir):
    fit = noparams.sample(data={"m": 2.0}, chains=2, iter_sampling=200, seed=8,
                          show_progress=False)
    assert fit.step_size is None
    assert list(fit.column_names)[:2] == ["lp__", "accept_stat__"]
    assert fit.stan_variable("y").shape == (400,)
    assert abs(fit.stan_variable("y").mean() - 2.0) < 0.3


def test_g9_summary_and_diagnose(bern, workdir):
    require((HOME / "bin" / "stansummary").exists(), f"{HOME}/bin/stansummary not built")
    fit = bern.sample(data=BERN_DATA, chains=2, seed=9, show_progress=False)
    s = fit.summary()
    assert {"lp__", "theta"} <= set(s.index)
    for c in ("Mean", "5%", "50%", "95%", "R_hat"):
        assert c in s.columns
    assert abs(s.loc["theta", "Mean"] - fit.stan_variable("theta").mean()) < 1e-4
    txt = fit.diagnose()
    assert isinstance(txt, str) and txt.strip()


# ------------------------------------------------------------------------- G10-G14


def test_g10_from_csv(bern, workdir):
    d = workdir / "g10"
    fits = {
        "sample": bern.sample(data=BERN_DATA, chains=2, seed=10, output_dir=str(d / "s"),
                              show_progress=False),
        "optimize": bern.optimize(data=BERN_DATA, seed=10, output_dir=str(d / "o")),
        "variational": bern.variational(data=BERN_DATA, seed=10, output_dir=str(d / "v"),
                                        require_converged=False),
        "pathfinder": bern.pathfinder(data=BERN_DATA, seed=10, output_dir=str(d / "p")),
    }
    fits["laplace"] = bern.laplace_sample(data=BERN_DATA, mode=fits["optimize"], seed=10,
                                          jacobian=False,
                                          output_dir=str(d / "l"), draws=50)
    kinds = {"sample": cmdstanpy.CmdStanMCMC, "optimize": cmdstanpy.CmdStanMLE,
             "variational": cmdstanpy.CmdStanVB, "pathfinder": cmdstanpy.CmdStanPathfinder,
             "laplace": cmdstanpy.CmdStanLaplace}
    for name, sub in (("sample", "s"), ("optimize", "o"), ("variational", "v"),
                      ("pathfinder", "p"), ("laplace", "l")):
        again = cmdstanpy.from_csv(str(d / sub))
        assert isinstance(again, kinds[name]), name
        a = np.asarray(again.stan_variable("theta"))
        b = np.asarray(fits[name].stan_variable("theta"))
        # from_csv lists a directory's chain files in file-system order, which need not be
        # chain-id order: compare the draws as a multiset
        assert a.shape == b.shape and np.allclose(np.sort(a, axis=None), np.sort(b, axis=None)), name


def test_g11_optimize(bern):
    for algo in ("lbfgs", "bfgs"):
        mle = bern.optimize(data=BERN_DATA, algorithm=algo, seed=11)
        assert abs(mle.optimized_params_dict["theta"] - 0.2) < 1e-3, algo
    mj = bern.optimize(data=BERN_DATA, jacobian=True, seed=11)
    assert abs(mj.optimized_params_dict["theta"] - 0.25) < 1e-3
    it = bern.optimize(data=BERN_DATA, save_iterations=True, seed=11)
    assert it.optimized_iterations_np.shape[0] > 1
    nt = bern.optimize(data=BERN_DATA, algorithm="newton", seed=11)
    assert "theta" in nt.optimized_params_dict


def test_g12_variational(bern):
    vb = bern.variational(data=BERN_DATA, draws=20, seed=12, require_converged=False)
    assert vb.variational_sample.shape == (20, 4)
    assert isinstance(vb.eta, float) and np.isfinite(vb.eta)
    assert vb.column_names[:3] == ("lp__", "log_p__", "log_g__")


def test_g13_pathfinder(bern):
    pf = bern.pathfinder(data=BERN_DATA, draws=30, seed=13)
    assert list(pf.column_names) == ["lp_approx__", "lp__", "theta"]
    assert pf.draws().shape == (30, 3)
    single = bern.pathfinder(data=BERN_DATA, num_paths=1, draws=25, seed=13)
    assert list(single.column_names) == ["lp_approx__", "lp__", "theta"]
    assert single.draws().shape == (25, 3)
    assert abs(pf.stan_variable("theta").mean() - 0.25) < 0.1


def test_g14_laplace(bern):
    lap = bern.laplace_sample(data=BERN_DATA, draws=40, seed=14)
    assert list(lap.column_names) == ["log_p__", "log_q__", "theta"]
    assert lap.draws().shape[0] == 40


# ------------------------------------------------------------------------- G15-G17


def test_g15_generate_quantities(conj, conj_fit):
    gq = conj.generate_quantities(data=CONJ_DATA, previous_fit=conj_fit, seed=15)
    mu = conj_fit.stan_variable("mu")
    assert np.allclose(gq.stan_variable("mu2"), 2 * mu)
    assert gq.draws(inc_warmup=True).shape[:2] == (300, 2)  # 200 warmup + 100 draws
    no_warm = conj.sample(data=CONJ_DATA, chains=2, iter_warmup=100, iter_sampling=50,
                          seed=16, show_progress=False)
    gq2 = conj.generate_quantities(data=CONJ_DATA, previous_fit=no_warm, seed=15)
    assert gq2.draws().shape[:2] == (50, 2)
    mle = conj.optimize(data=CONJ_DATA, seed=15)
    gq3 = conj.generate_quantities(data=CONJ_DATA, previous_fit=mle, seed=15)
    assert np.allclose(gq3.stan_variable("mu2"), 2 * mle.optimized_params_dict["mu"])
    vb = conj.variational(data=CONJ_DATA, draws=7, seed=15, require_converged=False)
    gq4 = conj.generate_quantities(data=CONJ_DATA, previous_fit=vb, seed=15)
    assert np.asarray(gq4.stan_variable("mu2")).shape[0] in (7, 8)


def test_g16_log_prob_and_diagnose(bern):
    lp = bern.log_prob({"theta": 0.3}, BERN_DATA, sig_figs=18)
    assert list(lp.columns) == ["lp__", "g_theta"]
    # propto=True (beta(1,1) constant dropped), Jacobian of the logit transform included
    th = 0.3
    exact = 2 * np.log(th) + 8 * np.log(1 - th) + np.log(th * (1 - th))
    gexact = 2 * (1 - th) - 8 * th + (1 - 2 * th)
    assert np.allclose(lp.iloc[0].to_numpy(float), [exact, gexact], rtol=1e-10)
    lpn = bern.log_prob({"theta": 0.3}, BERN_DATA, jacobian=False, sig_figs=18)
    assert np.isclose(lpn.iloc[0, 0], 2 * np.log(th) + 8 * np.log(1 - th))
    diag = bern.diagnose(data=BERN_DATA)
    assert list(diag.columns) == ["param_idx", "value", "model", "finite_diff", "error"]
    assert diag.shape[0] == 1


def test_g17_bad_data(bern):
    with pytest.raises(RuntimeError) as e:
        bern.sample(data={"N": 10}, chains=1, show_progress=False)
    assert "Exception:" in str(e.value)
    with pytest.raises(RuntimeError) as e:
        bern.sample(data={"N": 2, "y": [0.5, 1.0]}, chains=1, show_progress=False)
    assert "Exception:" in str(e.value)
    with pytest.raises(RuntimeError) as e:
        bern.optimize(data={"N": 10})
    assert "Exception:" in str(e.value)


# ------------------------------------------------------------------------- extras


def test_make_build_idempotent(home):
    p = subprocess.run(["make", "build"], cwd=home, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "g++" not in p.stdout  # nothing rebuilt
    assert (home / "bin" / "stanc").exists()
    p = subprocess.run(["make"], cwd=home, capture_output=True, text=True)
    assert p.returncode == 0 and "make build" in p.stdout  # default goal: help


def test_progress_bars(bern):
    # cmdstanpy's progress parser follows "Chain [<id>] Iteration:" lines
    fit = bern.sample(data=BERN_DATA, chains=2, chain_ids=[3, 4], seed=2, show_progress=True,
                      refresh=200)
    assert fit.draws().shape == (1000, 2, 8)


def test_command_line_errors(bern):
    exe = bern.exe_file
    p = subprocess.run([exe, "sample", "bogus=1"], capture_output=True, text=True)
    assert p.returncode != 0 and "bogus=1 is either mistyped or misplaced." in p.stderr
    p = subprocess.run([exe, "sample", "num_samples=-3"], capture_output=True, text=True)
    assert p.returncode != 0 and '-3 is not a valid value for "num_samples"' in p.stderr
    p = subprocess.run([exe, "random", "seed=3"], capture_output=True, text=True)
    assert p.returncode != 0  # no method


def test_config_header_and_grammar(bern, workdir):
    out = workdir / "grammar.csv"
    data = workdir / "bern.json"
    data.write_text(json.dumps(BERN_DATA))
    p = subprocess.run(
        [bern.exe_file, "method=variational", "iter=500", "adapt", "engaged=1", "iter=40",
         "tol_rel_obj=0.02", "data", f"file={data}", "random", "seed=4", "output",
         f"file={out}", "refresh=0"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "# stan_version_major = 2"
    assert "#     iter = 500" in lines
    assert "#       iter = 40" in lines
    assert "#     tol_rel_obj = 0.02" in lines
    assert "#     grad_samples = 1 (Default)" in lines
    assert "#   diagnostic_file =  (Default)" in lines


def test_sigterm_terminates(conj, workdir):
    data = workdir / "conj.json"
    data.write_text(json.dumps(CONJ_DATA))
    p = subprocess.Popen([conj.exe_file, "sample", "num_samples=100000000", "num_warmup=10",
                          "data", f"file={data}", "output", f"file={workdir / 'term.csv'}",
                          "refresh=0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) != 0
