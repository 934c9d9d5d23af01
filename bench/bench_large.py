"""Large-data benchmark -> bench/results/large.json.

Simulated ``y ~ x + (x | g)`` (normal errors; 1,000 groups; seed fixed), the program compiled
beforehand (one program for every size: only the data change). Each measurement runs in a
fresh subprocess, so that its peak memory (``resource.getrusage`` of the process plus its
children, max RSS) belongs to it alone:

* ``classic()`` (REML) at 100,000 rows: the exact path (closed-form profiled REML,
  :mod:`bayesglmm.inference.lmm`) and the generic Laplace path (``exact=False``), alternated
  (new, old, new), plus statsmodels ``MixedLM`` (REML, random intercept and slope) on the same
  data;
* ``classic()`` (REML, exact path) at 10,000, 100,000 and 1,000,000 rows: time per row and the
  log-log slope of time against rows;
* ``optimize()`` (flat prior, Laplace = exact ML) at 100,000 rows, exact and generic;
* ``sample()`` (4 chains) at 100,000 rows: peak memory of Python and of CmdStan (max RSS),
  with the pointwise log-likelihood on demand (the default for this size) and, for
  comparison, written by CmdStan; then the time to compute it on demand
  (``--sample-iters W,S`` reduces the iterations, ``--no-sample`` skips these runs).

The wall time of ``classic()``/``optimize()`` is measured on a fresh model object (the
program is compiled and cached; ``lmer()`` itself, the formula and design step, is timed
separately as ``model_s``), so it includes whatever the path loads into Stan: the generic path
loads the full data into BridgeStan (~15 us per row), the exact path a 64-row instance.
The machine is shared (2 cores, several agents): the load average is recorded before and after
each measurement; times vary with it, ratios measured in one run are more robust.

Usage: ``python bench/bench_large.py [--quick] [--sample-iters 1000,1000] [--no-sample]``
(``--quick``: no 1M rows, no generic path).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "large.json"
GROUPS = 1000


def simulate(n: int, groups: int = GROUPS, seed: int = 15) -> pd.DataFrame:
    """y = 1 + 0.5 x + b0[g] + b1[g] x + e, sd(b0) = 1, sd(b1) = 0.5, corr 0.3, sd(e) = 1."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    L = np.linalg.cholesky(np.array([[1.0, 0.15], [0.15, 0.25]]))
    b = rng.normal(size=(groups, 2)) @ L.T
    y = 1 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def _peak_mb() -> dict:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_mb": round(self_kb / 1024, 1), "peak_rss_children_mb": round(child_kb / 1024, 1)}


def child(case: str, n: int) -> dict:
    """One measurement (run in a subprocess)."""
    d = simulate(n)
    out: dict = {"case": case, "rows": n, "groups": GROUPS}
    if case == "statsmodels":
        import statsmodels.formula.api as smf

        t0 = time.perf_counter()
        r = smf.mixedlm("y ~ x", d, groups=d["g"], re_formula="~x").fit(reml=True)
        out["fit_s"] = time.perf_counter() - t0
        out["estimates"] = {"Intercept": float(r.fe_params.iloc[0]), "b[x]": float(r.fe_params.iloc[1]),
                            "sigma": float(math.sqrt(r.scale))}
        out["reml_loglik"] = float(r.llf)
        out.update(_peak_mb())
        return out
    import bayesglmm

    if case.startswith("sample"):
        return sample_child(case, d, out)
    t0 = time.perf_counter()
    m = bayesglmm.lmer("y ~ x + (x | g)", data=d)
    out["model_s"] = time.perf_counter() - t0
    m.compile(verbose=False)
    exact = not case.endswith("_generic")
    t0 = time.perf_counter()
    if case.startswith("classic"):
        from bayesglmm.inference.classic import fit_classic

        est = fit_classic(m, "REML", exact=exact)
        out["fit_s"] = time.perf_counter() - t0
        s = dict(zip([p.user for p in est.params], est.estimate))
        out["estimates"] = {k: float(s[k]) for k in ("Intercept", "b[x]", "sigma", "sd[g:Int]",
                                                      "sd[g:x]", "corr[Int,x]")}
        out["reml_loglik"] = float(est.reml_loglik)
        out["converged"] = bool(est.converged)
    else:
        fit = m.optimize(verbose=False, exact=exact)
        out["fit_s"] = time.perf_counter() - t0
        out["objective"] = float(fit.objective)
        out["estimates"] = {k: float(fit.summary().loc[k, "estimate"])
                            for k in ("Intercept", "b[x]", "sigma", "sd[g:Int]")}
    out.update(_peak_mb())
    return out


def sample_child(case: str, d: pd.DataFrame, out: dict) -> dict:
    """sample() (4 chains) and its peak memory: ``sample`` with the pointwise log-likelihood
    on demand (the default above codegen.LOG_LIK_IN_PROGRAM_MAX_ROWS rows), ``sample_written``
    with it written by CmdStan (the threshold raised), as before. Then the log-likelihood is
    computed (``log_lik_s``) and the peak after that reported separately."""
    import warnings

    import bayesglmm
    import bayesglmm.codegen as codegen

    if case == "sample_written":
        codegen.LOG_LIK_IN_PROGRAM_MAX_ROWS = len(d)
    warmup, sampling = (int(v) for v in os.environ.get("BENCH_SAMPLE_ITERS", "1000,1000").split(","))
    m = bayesglmm.lmer("y ~ x + (x | g)", data=d)
    out["compute_log_lik"] = int(m.run_program.data["compute_log_lik"])
    m.compile(verbose=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.sample(chains=4, warmup=warmup, sampling=sampling, seed=15, verbose=False)
    out["fit_s"] = time.perf_counter() - t0
    out.update(chains=4, warmup=warmup, sampling=sampling)
    s = fit.summary()
    out["max_rhat"] = float(s["rhat"].max())
    out["min_ess_bulk"] = float(s["ess_bulk"].min())
    out.update(_peak_mb())
    out["peak_rss_sum_mb"] = out["peak_rss_mb"] + out["peak_rss_children_mb"]
    t0 = time.perf_counter()
    ll = fit.log_lik()
    out["log_lik_s"] = time.perf_counter() - t0
    out["log_lik_shape"] = list(ll.shape)
    out["peak_rss_after_log_lik_mb"] = _peak_mb()["peak_rss_mb"]
    return out


def run(case: str, n: int) -> dict:
    load0 = os.getloadavg()
    p = subprocess.run([sys.executable, __file__, "--child", case, str(n)], capture_output=True,
                       text=True, cwd=str(REPO))
    if p.returncode != 0:
        raise SystemExit(f"{case} {n} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["load_before"] = [round(v, 2) for v in load0]
    res["load_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps({k: res[k] for k in ("case", "rows", "fit_s", "peak_rss_mb")}), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sample-iters", default="1000,1000",
                    help="warmup,sampling per chain of the 100k sample() memory run")
    ap.add_argument("--no-sample", action="store_true", help="skip the 100k sample() runs")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]))))
        return
    import bayesglmm

    bayesglmm.lmer("y ~ x + (x | g)", data=simulate(1000)).compile(verbose=False)  # once
    runs = []
    # 100k x 1,000: new / old / statsmodels / new, alternated
    runs.append(run("classic", 100_000))
    if not a.quick:
        runs.append(run("classic_generic", 100_000))
    runs.append(run("statsmodels", 100_000))
    runs.append(run("classic", 100_000))
    runs.append(run("optimize", 100_000))
    if not a.quick:
        runs.append(run("optimize_generic", 100_000))
    # sample() at 100k: peak memory with log_lik on demand (default) and written (as before)
    samples = []
    if not a.no_sample:
        os.environ["BENCH_SAMPLE_ITERS"] = a.sample_iters
        samples = [run("sample", 100_000), run("sample_written", 100_000)]
        runs.extend(samples)
    # scaling (exact path)
    sizes = [10_000, 100_000] + ([] if a.quick else [1_000_000])
    scaling = {n: run("classic", n) for n in sizes if n != 100_000}
    new100 = [r for r in runs if r["case"] == "classic" and r["rows"] == 100_000]
    scaling[100_000] = min(new100, key=lambda r: r["fit_s"])
    rows = np.array(sorted(scaling))
    secs = np.array([scaling[n]["fit_s"] for n in rows])
    slope = float(np.polyfit(np.log(rows), np.log(secs), 1)[0]) if rows.size > 1 else math.nan

    def best(case: str) -> float:
        v = [r["fit_s"] for r in runs if r["case"] == case and r["rows"] == 100_000]
        return min(v) if v else math.nan

    summary = {
        "classic_REML_100k_exact_s": best("classic"),
        "classic_REML_100k_generic_s": best("classic_generic"),
        "statsmodels_MixedLM_REML_100k_s": best("statsmodels"),
        "optimize_100k_exact_s": best("optimize"),
        "optimize_100k_generic_s": best("optimize_generic"),
        "classic_REML_time_per_row_us": {int(n): 1e6 * scaling[n]["fit_s"] / n for n in rows},
        "classic_REML_loglog_slope": slope,
        "classic_REML_1M_s": scaling.get(1_000_000, {}).get("fit_s", math.nan),
        "classic_REML_1M_peak_rss_mb": scaling.get(1_000_000, {}).get("peak_rss_mb", math.nan),
    }
    for r in samples:
        key = "sample_100k_log_lik_on_demand" if r["case"] == "sample" else "sample_100k_log_lik_written"
        summary[key] = {k: r[k] for k in ("warmup", "sampling", "fit_s", "peak_rss_mb",
                                          "peak_rss_children_mb", "peak_rss_sum_mb", "log_lik_s",
                                          "peak_rss_after_log_lik_mb", "max_rhat", "min_ess_bulk")}
    summary["speedup_classic_vs_generic"] = (summary["classic_REML_100k_generic_s"]
                                             / summary["classic_REML_100k_exact_s"])
    summary["speedup_classic_vs_statsmodels"] = (summary["statsmodels_MixedLM_REML_100k_s"]
                                                 / summary["classic_REML_100k_exact_s"])
    out = {
        "what": "y ~ x + (x | g), normal errors, 1,000 groups, simulated (bench_large.simulate); "
                "times in seconds of classic()/optimize() on a fresh model (program compiled)",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "note": "shared machine (2 cores, several agents working): loaded and noisy; "
                            "see load_before/load_after of each run"},
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "targets": {"classic_REML_100k_s": 1.0, "classic_REML_1M_s": 10.0, "optimize_100k_s": 2.0,
                    "loglog_slope": 1.05, "classic_1M_peak_mb": 2000,
                    "sample_100k_peak_mb (Python + CmdStan, 4 x (1000 + 1000))": 600},
        "summary": summary,
        "sample": "peak memory of sample() at 100k rows (4 chains, iterations as given in "
                  "each run): peak_rss_sum_mb = Python's peak + CmdStan's peak (an upper bound "
                  "of the process tree's peak); log_lik on demand vs written by CmdStan",
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
