"""Tests of the toolchain's own ``bin/stansummary`` and ``bin/diagnose``.

The two programs (bayesglmm/toolchain/files/src/tools/{stansummary,diagnose}.cpp) are
compiled into a temporary directory with the toolchain's flags and run on Stan sampler
CSV files written here from known random draws (layout of cmdstan-contract.md D.2/D.3).
cmdstanpy is exercised twice: against a minimal CmdStan home made of a makefile and the
two freshly built tools (no driver needed), and -- only when the toolchain's CmdStan home
is installed and builds -- end to end on a real model.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require, require_module

pytestmark = pytest.mark.slow  # every test needs the two tools compiled

REPO = Path(__file__).resolve().parents[2]
TOOLS_SRC = REPO / "bayesglmm" / "toolchain" / "files" / "src" / "tools"
TC_ROOT = Path(os.environ.get("BAYESGLMM_HOME", Path.home() / ".cache" / "bayesglmm")) / "toolchain"
STAN = TC_ROOT / "stan"

CXXFLAGS = [
    "-std=c++17", "-pthread", "-fPIC", "-DSTAN_THREADS", "-D_REENTRANT",
    "-DBOOST_DISABLE_ASSERTS", "-D_GLIBCXX_USE_CXX11_ABI=0", "-Wno-sign-compare",
    "-Wno-ignored-attributes", "-Wno-deprecated-declarations", "-Wno-class-memaccess",
]

SAMPLER_COLS = ["lp__", "accept_stat__", "stepsize__", "treedepth__", "n_leapfrog__",
                "divergent__", "energy__"]


# ---------------------------------------------------------------------------
# building the tools
# ---------------------------------------------------------------------------

def _compile(name: str, outdir: Path) -> Path:
    exe = outdir / name
    cmd = ["g++", *CXXFLAGS, f"-I{STAN / 'include'}", "-O2", str(TOOLS_SRC / f"{name}.cpp"),
           "-o", str(exe), f"-L{STAN / 'lib'}", f"-Wl,-rpath,{STAN / 'lib'}", "-ltbb"]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert res.returncode == 0, f"compiling {name} failed:\n{res.stderr[-5000:]}"
    return exe


@pytest.fixture(scope="session")
def tools(tmp_path_factory) -> dict[str, Path]:
    require((STAN / "include" / "stan" / "analyze").is_dir(),
            f"Stan headers not installed under {STAN}")
    outdir = tmp_path_factory.mktemp("tools_bin")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futs = {n: pool.submit(_compile, n, outdir) for n in ("stansummary", "diagnose")}
        return {n: f.result() for n, f in futs.items()}


# ---------------------------------------------------------------------------
# Stan CSV fixtures
# ---------------------------------------------------------------------------

def _fmt(x: float) -> str:
    """Number formatting close to the C++ ostream default, with 9 significant digits."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.9g}"


def _round(a: np.ndarray) -> np.ndarray:
    """The values exactly as they will be read back from the CSV file."""
    return np.array([float(_fmt(v)) for v in np.ravel(a)]).reshape(np.shape(a))


def write_stan_csv(path: Path, draws: dict[str, np.ndarray], *, chain_id: int = 1,
                   fixed_param: bool = False, warmup: dict[str, np.ndarray] | None = None,
                   num_warmup: int = 1000, thin: int = 1, max_depth: int = 10,
                   seed: int = 1234, sampler: dict[str, np.ndarray] | None = None,
                   sampling_time: float = 0.5, adaptation_block: bool = True) -> Path:
    """Write a sampler CSV in the CmdStan 2.35 layout (contract D.2/D.3).

    ``draws`` maps CSV column names (``theta``, ``mu.1``, ``M.1.2`` ...) to post-warmup
    draws; sampler columns are synthesised unless given in ``sampler``.  ``warmup`` adds
    saved warmup rows (save_warmup = true).
    """
    names = list(draws)
    n = len(next(iter(draws.values())))
    rng = np.random.default_rng(seed)

    def sampler_block(m: int, given: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        if fixed_param:
            cols = {"lp__": np.zeros(m), "accept_stat__": np.zeros(m)}
        else:
            cols = {
                "lp__": -rng.exponential(1.0, m),
                "accept_stat__": rng.uniform(0.6, 1.0, m),
                "stepsize__": np.full(m, 0.8),
                "treedepth__": rng.integers(1, 4, m).astype(float),
                "n_leapfrog__": rng.integers(1, 8, m).astype(float),
                "divergent__": np.zeros(m),
                "energy__": rng.normal(5.0, 2.0, m),
            }
        cols.update(given or {})
        return cols

    smp = sampler_block(n, sampler)
    header = list(smp) + names
    save_warmup = warmup is not None
    lines = [
        "# stan_version_major = 2",
        "# stan_version_minor = 35",
        "# stan_version_patch = 0",
        "# model = fixture_model",
        "# start_datetime = 2026-11-25 14:29:52 UTC",
        "# method = sample (Default)",
        "#   sample",
        f"#     num_samples = {n * thin}",
        f"#     num_warmup = {num_warmup}",
        f"#     save_warmup = {'true' if save_warmup else 'false'}",
        f"#     thin = {thin}",
        "#     adapt",
        "#       engaged = true (Default)",
        "#       gamma = 0.05 (Default)",
        "#       delta = 0.8 (Default)",
        "#       kappa = 0.75 (Default)",
        "#       t0 = 10 (Default)",
        "#       init_buffer = 75 (Default)",
        "#       term_buffer = 50 (Default)",
        "#       window = 25 (Default)",
        "#       save_metric = false (Default)",
    ]
    if fixed_param:
        lines += ["#     algorithm = fixed_param", "#       fixed_param"]
    else:
        lines += [
            "#     algorithm = hmc (Default)",
            "#       hmc",
            "#         engine = nuts (Default)",
            "#           nuts",
            f"#             max_depth = {max_depth}",
            "#         metric = diag_e (Default)",
            "#         metric_file =  (Default)",
            "#         stepsize = 1 (Default)",
            "#         stepsize_jitter = 0 (Default)",
        ]
    lines += [
        "#     num_chains = 1 (Default)",
        f"# id = {chain_id}",
        "# data",
        "#   file =  (Default)",
        "# init = 2 (Default)",
        "# random",
        f"#   seed = {seed}",
        "# output",
        f"#   file = {path}",
        "#   diagnostic_file =  (Default)",
        "#   refresh = 100 (Default)",
        "#   sig_figs = -1 (Default)",
        "#   profile_file = profile.csv (Default)",
        "#   save_cmdstan_config = false (Default)",
        "# num_threads = 1 (Default)",
        "# stanc_version = stanc3 v2.35.0",
        "# stancflags = ",
        ",".join(header),
    ]

    def rows(cols: dict[str, np.ndarray], m: int) -> list[str]:
        return [",".join(_fmt(float(cols[h][i])) for h in header) for i in range(m)]

    if save_warmup:
        nw = len(next(iter(warmup.values())))
        wcols = sampler_block(nw, None)
        wcols.update(warmup)
        lines += rows(wcols, nw)
    if not fixed_param and adaptation_block:
        lines += ["# Adaptation terminated", "# Step size = 0.8",
                  "# Diagonal elements of inverse mass matrix:",
                  "# " + ", ".join("1" for _ in names)]
    lines += rows({**smp, **draws}, n)
    lines += ["# ", "#  Elapsed Time: 0.25 seconds (Warm-up)",
              f"#                {sampling_time} seconds (Sampling)",
              f"#                {0.25 + sampling_time} seconds (Total)", "# "]
    path.write_text("\n".join(lines) + "\n")
    return path


def iid_chains(tmp: Path, n_chains: int = 4, n: int = 1000, seed: int = 1,
               shift: float = 0.0, **kw) -> tuple[list[Path], dict[str, np.ndarray]]:
    """Chains of iid draws; chain 1 (index 0) is shifted by ``shift``.

    Returns the files and, per column, the (n_chains, n) array of values as written.
    """
    rng = np.random.default_rng(seed)
    cols = ["theta", "mu.1", "mu.2", "M.1.1", "M.2.1", "M.1.2", "M.2.2"]
    allv = {c: np.empty((n_chains, n)) for c in cols}
    files = []
    for k in range(n_chains):
        d = {
            "theta": rng.normal(1.5, 2.0, n) + (shift if k == 0 else 0.0),
            "mu.1": rng.normal(-3.0, 0.5, n),
            "mu.2": rng.gamma(2.0, 1.0, n),
            "M.1.1": rng.normal(0, 1, n),
            "M.2.1": rng.normal(10, 1e-3, n),
            "M.1.2": rng.uniform(0, 1, n),
            "M.2.2": rng.standard_t(5, n) * 1e4,
        }
        d = {c: _round(v) for c, v in d.items()}
        for c in cols:
            allv[c][k] = d[c]
        files.append(write_stan_csv(tmp / f"fixture_{k + 1}.csv", d, chain_id=k + 1,
                                    seed=seed + k, **kw))
    return files, allv


def run_summary(tools, files, *args, csv: Path | None = None, check: bool = True):
    cmd = [str(tools["stansummary"]), *args]
    if csv is not None:
        cmd.append(f"--csv_filename={csv}")
    res = subprocess.run(cmd + [str(f) for f in files], check=False, capture_output=True,
                         text=True)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def read_summary(path: Path) -> pd.DataFrame:
    # exactly as cmdstanpy 1.3.2 CmdStanMCMC.summary() reads it
    with open(path, "rb") as fd, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 deprecates float_precision
        return pd.read_csv(fd, delimiter=",", header=0, index_col=0, comment="#",
                           float_precision="high")


PRETTY = {"theta": "theta", "mu.1": "mu[1]", "mu.2": "mu[2]", "M.1.1": "M[1,1]",
          "M.2.1": "M[2,1]", "M.1.2": "M[1,2]", "M.2.2": "M[2,2]"}


# ---------------------------------------------------------------------------
# stansummary
# ---------------------------------------------------------------------------

def test_summary_matches_numpy(tools, tmp_path):
    files, vals = iid_chains(tmp_path)
    out = tmp_path / "summary.csv"
    run_summary(tools, files, "--percentiles= 5,50,95", "--sig_figs=15", csv=out)
    raw = out.read_text().splitlines()
    assert raw[0] == "name,Mean,MCSE,StdDev,5%,50%,95%,N_Eff,N_Eff/s,R_hat"
    assert raw[1].startswith('"lp__",')
    assert any(line.startswith('"M[1,2]",') for line in raw)
    df = read_summary(out)
    assert list(df.columns) == ["Mean", "MCSE", "StdDev", "5%", "50%", "95%", "N_Eff",
                                "N_Eff/s", "R_hat"]
    assert list(df.index) == SAMPLER_COLS + list(PRETTY.values())
    total_time = 4 * 0.5
    for col, label in PRETTY.items():
        x = vals[col].ravel()
        row = df.loc[label]
        np.testing.assert_allclose(row["Mean"], x.mean(), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(row["StdDev"], x.std(ddof=1), rtol=1e-6)
        np.testing.assert_allclose(row[["5%", "50%", "95%"]].to_numpy(float),
                                   np.percentile(x, [5, 50, 95]), rtol=1e-6)
        assert 0.99 < row["R_hat"] < 1.01, (label, row["R_hat"])
        assert 0.8 * x.size < row["N_Eff"] < 1.25 * x.size, (label, row["N_Eff"])
        np.testing.assert_allclose(row["MCSE"], row["StdDev"] / math.sqrt(row["N_Eff"]),
                                   rtol=1e-9)
        np.testing.assert_allclose(row["N_Eff/s"], row["N_Eff"] / total_time, rtol=1e-9)
    # constant sampler column: mean exact, ESS and R-hat undefined
    assert df.loc["stepsize__", "Mean"] == pytest.approx(0.8)
    assert df.loc["stepsize__", "StdDev"] == 0
    assert np.isnan(df.loc["stepsize__", "N_Eff"]) and np.isnan(df.loc["stepsize__", "R_hat"])


def test_summary_cmdstanpy_invocation_sig_figs_6(tools, tmp_path):
    files, vals = iid_chains(tmp_path, n_chains=2, n=500, seed=7)
    out = tmp_path / "s6.csv"
    # exactly the argv cmdstanpy builds: one token with a space after '='
    run_summary(tools, files, "--percentiles= 5,50,95", "--sig_figs=6", csv=out)
    df = read_summary(out)
    x = vals["mu.1"].ravel()
    np.testing.assert_allclose(df.loc["mu[1]", "Mean"], x.mean(), rtol=5e-6)
    np.testing.assert_allclose(df.loc["mu[1]", "50%"], np.median(x), rtol=5e-6)
    # 6 significant digits in the file
    line = next(ln for ln in out.read_text().splitlines() if ln.startswith('"mu[1]"'))
    mean_txt = line.split(",")[1]
    assert len(mean_txt.lstrip("-").replace(".", "").lstrip("0")) <= 6


def test_summary_shifted_chain_rhat(tools, tmp_path):
    files, _ = iid_chains(tmp_path, shift=3.0, seed=3)
    out = tmp_path / "shift.csv"
    run_summary(tools, files, csv=out)
    df = read_summary(out)
    assert df.loc["theta", "R_hat"] > 1.1
    assert df.loc["mu[1]", "R_hat"] < 1.05


def test_summary_skips_saved_warmup(tools, tmp_path):
    rng = np.random.default_rng(11)
    files, allv = [], []
    for k in range(2):
        d = {"theta": _round(rng.normal(0, 1, 300))}
        w = {"theta": np.full(150, 1000.0)}  # absurd warmup values must be ignored
        files.append(write_stan_csv(tmp_path / f"w{k}.csv", d, warmup=w, num_warmup=150,
                                    chain_id=k + 1))
        allv.append(d["theta"])
    # thinned warmup without an adaptation block (counted from the config header)
    d = {"theta": _round(rng.normal(0, 1, 300))}
    files.append(write_stan_csv(tmp_path / "w2.csv", d, warmup={"theta": np.full(75, 1e3)},
                                num_warmup=150, thin=2, chain_id=3, adaptation_block=False))
    allv.append(d["theta"])
    out = tmp_path / "w.csv"
    res = run_summary(tools, files, csv=out)
    df = read_summary(out)
    x = np.concatenate(allv)
    np.testing.assert_allclose(df.loc["theta", "Mean"], x.mean(), rtol=1e-5)
    np.testing.assert_allclose(df.loc["theta", "StdDev"], x.std(ddof=1), rtol=1e-5)
    assert df.loc["theta", "95%"] < 10
    assert "theta" in res.stdout


def test_summary_fixed_param(tools, tmp_path):
    rng = np.random.default_rng(5)
    files, allv = [], []
    for k in range(2):
        d = {"y_rep.1": _round(rng.poisson(3.0, 200).astype(float)),
             "y_rep.2": _round(rng.normal(0, 1, 200))}
        files.append(write_stan_csv(tmp_path / f"fp{k}.csv", d, fixed_param=True,
                                    chain_id=k + 1))
        allv.append(d)
    assert files[0].read_text().count("lp__,accept_stat__,y_rep.1,y_rep.2") == 1
    out = tmp_path / "fp.csv"
    run_summary(tools, files, "--percentiles= 5,50,95", "--sig_figs=6", csv=out)
    df = read_summary(out)
    assert list(df.index) == ["lp__", "accept_stat__", "y_rep[1]", "y_rep[2]"]
    assert df.loc["lp__", "Mean"] == 0 and np.isnan(df.loc["lp__", "R_hat"])
    x = np.concatenate([a["y_rep.2"] for a in allv])
    np.testing.assert_allclose(df.loc["y_rep[2]", "Mean"], x.mean(), rtol=1e-5, atol=1e-9)


def test_summary_fixed_param_saved_warmup(tools, tmp_path):
    rng = np.random.default_rng(6)
    y = _round(rng.normal(0, 1, 200))
    # warmup rows present (row count = warmup + sampling): they are skipped
    f1 = write_stan_csv(tmp_path / "fpw1.csv", {"y.1": y}, fixed_param=True,
                        warmup={"y.1": np.full(100, 1e3)}, num_warmup=100)
    # save_warmup = true but no warmup rows written (the services run no warmup)
    f2 = write_stan_csv(tmp_path / "fpw2.csv", {"y.1": y}, fixed_param=True,
                        warmup={"y.1": np.array([])}, num_warmup=100, chain_id=2)
    for f in (f1, f2):
        out = tmp_path / f"{f.stem}_summary.csv"
        run_summary(tools, [f], "--sig_figs=10", csv=out)
        df = read_summary(out)
        np.testing.assert_allclose(df.loc["y[1]", "Mean"], y.mean(), rtol=1e-8, atol=1e-12)


def test_summary_percentile_forms_and_defaults(tools, tmp_path):
    files, vals = iid_chains(tmp_path, n_chains=2, n=400, seed=21)
    x = vals["theta"].ravel()
    for args, pcts in [
        (["--percentiles=10,90"], [10, 90]),
        (["--percentiles", "25,75"], [25, 75]),
        (["--percentiles=", "1,50,99"], [1, 50, 99]),
        (["--percentiles= 2.5,97.5"], [2.5, 97.5]),
        ([], [5, 50, 95]),
    ]:
        out = tmp_path / "p.csv"
        if out.exists():
            out.unlink()
        run_summary(tools, files, *args, "--sig_figs=12", csv=out)
        df = read_summary(out)
        labels = [f"{p:g}%" for p in pcts]
        assert list(df.columns) == ["Mean", "MCSE", "StdDev", *labels, "N_Eff", "N_Eff/s",
                                    "R_hat"], args
        np.testing.assert_allclose(df.loc["theta", labels].to_numpy(float),
                                   np.percentile(x, pcts), rtol=1e-6)
    # console only (default sig_figs 2)
    res = run_summary(tools, files)
    assert "theta" in res.stdout and "M[1,2]" in res.stdout and "R_hat" in res.stdout


def test_summary_nonfinite_values(tools, tmp_path):
    rng = np.random.default_rng(8)
    files = []
    for k in range(2):
        d = {"a": _round(rng.normal(0, 1, 100)), "b": np.full(100, np.inf),
             "c": np.full(100, np.nan)}
        files.append(write_stan_csv(tmp_path / f"nf{k}.csv", d, chain_id=k + 1))
    out = tmp_path / "nf.csv"
    run_summary(tools, files, "--percentiles= 5,50,95", "--sig_figs=6", csv=out)
    text = out.read_text()
    assert "-nan" not in text
    df = read_summary(out)
    assert df.loc["b", "Mean"] == np.inf
    assert np.isnan(df.loc["c", "Mean"]) and np.isnan(df.loc["c", "50%"])
    assert np.isfinite(df.loc["a", "Mean"])


@pytest.mark.parametrize("case", ["missing", "bad_value", "ragged", "mismatch", "bad_pct",
                                  "bad_sig", "unknown_opt", "no_files", "no_header"])
def test_summary_bad_input(tools, tmp_path, case):
    files, _ = iid_chains(tmp_path, n_chains=2, n=50)
    args: list[str] = []
    if case == "missing":
        files = [files[0], tmp_path / "does_not_exist.csv"]
    elif case == "bad_value":
        txt = files[1].read_text().splitlines()
        i = next(j for j, ln in enumerate(txt) if ln and ln[0] not in "#l")
        txt[i] = txt[i].replace(",", ",abc", 1)
        files[1].write_text("\n".join(txt) + "\n")
    elif case == "ragged":
        txt = files[1].read_text().splitlines()
        i = next(j for j, ln in enumerate(txt) if ln and ln[0] not in "#l")
        txt[i] += ",1"
        files[1].write_text("\n".join(txt) + "\n")
    elif case == "mismatch":
        d = {"other": np.zeros(50)}
        files.append(write_stan_csv(tmp_path / "other.csv", d))
    elif case == "bad_pct":
        args = ["--percentiles= 50,5"]
    elif case == "bad_sig":
        args = ["--sig_figs=0"]
    elif case == "unknown_opt":
        args = ["--frobnicate=1"]
    elif case == "no_files":
        files = []
    elif case == "no_header":
        files[0].write_text("# just a comment\n")
    out = tmp_path / "bad.csv"
    res = run_summary(tools, files, *args, csv=out, check=False)
    assert res.returncode != 0
    assert res.stderr.strip()


# ---------------------------------------------------------------------------
# diagnose
# ---------------------------------------------------------------------------

def run_diagnose(tools, files) -> subprocess.CompletedProcess:
    res = subprocess.run([str(tools["diagnose"]), *map(str, files)], check=False,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res


def test_diagnose_clean(tools, tmp_path):
    files, _ = iid_chains(tmp_path, seed=31)
    out = run_diagnose(tools, files).stdout
    assert "No divergent transitions found" in out
    assert "no problems detected" in out


def test_diagnose_reports_problems(tools, tmp_path):
    rng = np.random.default_rng(41)
    n = 500
    files = []
    for k in range(4):
        d = {"theta": _round(rng.normal(3.0 if k == 0 else 0.0, 1.0, n)),
             "sigma": _round(rng.gamma(2.0, 1.0, n))}
        div = np.zeros(n)
        if k == 1:
            div[[3, 17, 200]] = 1
        td = np.full(n, 2.0)
        if k == 2:
            td[:10] = 8
        energy = rng.normal(5, 2, n)
        if k == 3:
            energy = np.cumsum(rng.normal(0, 0.05, n))  # random walk -> tiny E-BFMI
        sampler = {"divergent__": div, "treedepth__": td, "energy__": _round(energy)}
        files.append(write_stan_csv(tmp_path / f"d{k}.csv", d, chain_id=k + 1,
                                    max_depth=8, sampler=sampler))
    out = run_diagnose(tools, files).stdout
    assert "3 of 2000" in out and "divergen" in out
    assert "10 of 2000" in out and "maximum tree depth" in out
    assert "E-BFMI" in out and "chain 4" in out
    assert "theta" in out and "R_hat" in out  # shifted chain -> split R-hat flag
    assert "sigma: R_hat" not in out
    assert "no problems detected" not in out


def test_diagnose_fixed_param_and_bad_input(tools, tmp_path):
    d = {"y.1": np.arange(100.0)}
    f = write_stan_csv(tmp_path / "fp.csv", d, fixed_param=True)
    out = run_diagnose(tools, [f]).stdout
    assert "fixed_param" in out
    res = subprocess.run([str(tools["diagnose"]), str(tmp_path / "nope.csv")],
                         check=False, capture_output=True, text=True)
    assert res.returncode != 0 and res.stderr.strip()


def test_diagnose_static_hmc_columns(tools, tmp_path):
    """Static HMC output has no treedepth__/n_leapfrog__/divergent__ columns."""
    rng = np.random.default_rng(71)
    files = []
    for k in range(2):
        f = write_stan_csv(tmp_path / f"st{k}.csv", {"theta": _round(rng.normal(0, 1, 300))},
                           chain_id=k + 1)
        drop = {3, 4, 5}
        lines = []
        for ln in f.read_text().splitlines():
            if ln.startswith("#"):
                lines.append(ln.replace("engine = nuts (Default)", "engine = static"))
            else:
                lines.append(",".join(v for i, v in enumerate(ln.split(",")) if i not in drop))
        f.write_text("\n".join(lines) + "\n")
        files.append(f)
    out = run_diagnose(tools, files).stdout
    assert "fixed_param" not in out
    assert "tree depth not checked" in out and "E-BFMI satisfactory" in out
    res = run_summary(tools, files, csv=tmp_path / "st.csv")
    df = read_summary(tmp_path / "st.csv")
    assert list(df.index) == ["lp__", "accept_stat__", "stepsize__", "energy__", "theta"]
    assert "theta" in res.stdout


# ---------------------------------------------------------------------------
# cmdstanpy
# ---------------------------------------------------------------------------

@pytest.fixture()
def mini_cmdstan(tools, tmp_path):
    """A CmdStan home holding only what CmdStanMCMC.summary()/diagnose() need."""
    cmdstanpy = require_module("cmdstanpy")
    home = tmp_path / "cmdstan-2.35.0"
    (home / "bin").mkdir(parents=True)
    (home / "makefile").write_text("CMDSTAN_VERSION := 2.35.0\n")
    for name, exe in tools.items():
        shutil.copy2(exe, home / "bin" / name)
    old = os.environ.get("CMDSTAN")
    cmdstanpy.set_cmdstan_path(str(home))
    yield cmdstanpy
    if old is None:
        os.environ.pop("CMDSTAN", None)
    else:
        os.environ["CMDSTAN"] = old


def test_cmdstanpy_summary_and_diagnose(mini_cmdstan, tmp_path):
    cmdstanpy = mini_cmdstan
    data_dir = tmp_path / "fit"
    data_dir.mkdir()
    _files, vals = iid_chains(data_dir, n=400, seed=51)
    fit = cmdstanpy.from_csv(str(data_dir))
    assert isinstance(fit, cmdstanpy.CmdStanMCMC)
    summ = fit.summary()
    assert list(summ.index) == ["lp__"] + list(PRETTY.values())
    assert list(summ.columns) == ["Mean", "MCSE", "StdDev", "5%", "50%", "95%", "N_Eff",
                                  "N_Eff/s", "R_hat"]
    x = vals["mu.2"].ravel()
    np.testing.assert_allclose(summ.loc["mu[2]", "Mean"], x.mean(), rtol=5e-6)
    np.testing.assert_allclose(summ.loc["mu[2]", "StdDev"], x.std(ddof=1), rtol=5e-6)
    # summary agrees with cmdstanpy's own draws
    draws = fit.draws_pd()
    np.testing.assert_allclose(summ.loc["M[1,2]", "Mean"], draws["M[1,2]"].mean(), rtol=5e-6)
    s2 = fit.summary(percentiles=(10, 90), sig_figs=8)
    assert list(s2.columns)[3:5] == ["10%", "90%"]
    text = fit.diagnose()
    assert isinstance(text, str) and "divergent" in text


def test_cmdstanpy_fixed_param_summary(mini_cmdstan, tmp_path):
    cmdstanpy = mini_cmdstan
    data_dir = tmp_path / "fitfp"
    data_dir.mkdir()
    rng = np.random.default_rng(61)
    for k in range(2):
        write_stan_csv(data_dir / f"fp_{k + 1}.csv", {"y.1": _round(rng.normal(0, 1, 100))},
                       fixed_param=True, chain_id=k + 1)
    fit = cmdstanpy.from_csv(str(data_dir))
    summ = fit.summary()
    # from_csv() does not flag fixed_param fits (cmdstanpy 1.3.2), so lp__ is kept
    assert list(summ.index)[-1] == "y[1]"
    assert set(summ.index) <= {"lp__", "y[1]"}
    assert summ.loc["y[1]", "R_hat"] < 1.2


# ---------------------------------------------------------------------------
# end to end through the real toolchain (only when the CmdStan home is installed)
# ---------------------------------------------------------------------------

BERNOULLI = """
data { int<lower=0> N; array[N] int<lower=0, upper=1> y; }
parameters { real<lower=0, upper=1> theta; }
model { theta ~ beta(1, 1); y ~ bernoulli(theta); }
"""


@pytest.mark.timeout(2400)  # `make build` of the CmdStan home alone may take up to 1800 s
def test_end_to_end_cmdstanpy(tmp_path):
    cmdstanpy = require_module("cmdstanpy")
    home = TC_ROOT / "cmdstan"
    require((home / "makefile").is_file(), f"toolchain CmdStan home not installed at {home}")
    build = subprocess.run(["make", "-C", str(home), "build"], check=False, capture_output=True,
                           text=True, timeout=1800)
    require(build.returncode == 0,
            f"`make build` in {home} failed:\n{build.stdout[-2000:]}{build.stderr[-2000:]}")
    old = os.environ.get("CMDSTAN")
    try:
        cmdstanpy.set_cmdstan_path(str(home))
        stan = tmp_path / "bernoulli.stan"
        stan.write_text(BERNOULLI)
        model = cmdstanpy.CmdStanModel(stan_file=str(stan))
        data = {"N": 10, "y": [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]}
        fit = model.sample(data=data, chains=2, iter_warmup=300, iter_sampling=300, seed=3,
                           show_progress=False, save_warmup=True)
        summ = fit.summary()
        assert list(summ.index) == ["lp__", "theta"]
        theta = fit.stan_variable("theta")
        np.testing.assert_allclose(summ.loc["theta", "Mean"], theta.mean(), rtol=1e-4)
        assert 0.9 < summ.loc["theta", "R_hat"] < 1.1
        text = fit.diagnose()
        assert "divergen" in text
    finally:
        if old is None:
            os.environ.pop("CMDSTAN", None)
        else:
            os.environ["CMDSTAN"] = old
