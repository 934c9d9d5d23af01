"""Laplace / classic benchmark -> bench/results/laplace.json.

Wall time (median of ``--reps`` runs, programs already compiled) of

* ``classic()`` (REML and ML) and ``optimize()`` (Laplace) on sleepstudy
  ``Reaction ~ Days + (Days | Subject)``, and ``classic()`` / ``optimize()`` on cbpp
  ``cbind(incidence, size - incidence) ~ period + (1 | herd)`` (binomial),

against the lme4 / glmmTMB wall times recorded in ../shared/refs/12_brms_timing.json (median of
20 on the same kind of machine: 2 cores, AMD EPYC), copied below with their source;

* a scaling run of ``optimize()`` (Laplace over the random intercepts) on a simulated Poisson
  GLMM ``y ~ x + (1 | g)`` with 5 observations per group and 100, 1,000 and 10,000 groups
  (one program for every size: only the data change), one run per size, reported as seconds
  and milliseconds per group (about constant when the time grows linearly).

Usage: ``python bench/bench_laplace.py [--reps N] [--groups 100 1000 10000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bayesglmm  # noqa: E402

# /work/shared/refs/12_brms_timing.json, classical_timing.*.median_s (R 4.2.2, lme4 1.1.31,
# glmmTMB 1.1.5; wall time, median of 20 sequential fits after a warm-up fit)
REFERENCE_S = {
    "sleepstudy_lmer_REML": 0.0214999999999996,
    "sleepstudy_lmer_ML": 0.0110000000000241,
    "sleepstudy_glmmTMB_ML": 0.210000000000036,
    "sleepstudy_glmmTMB_REML": 0.226499999999987,
    "cbpp_glmer_laplace": 0.0449999999999591,
    "cbpp_glmmTMB_laplace": 0.199500000000057,
}


def timed(fn, reps: int) -> tuple[float, list[float]]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out), out


def cbpp_data() -> pd.DataFrame:
    d = pd.read_csv(REPO / "tests" / "reference" / "cbpp.csv", dtype={"herd": str, "period": str})
    d["failures"] = d["size"] - d["incidence"]
    return d


def simulate(G: int, n_per: int = 5, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n_per)
    x = rng.normal(size=G * n_per)
    u = rng.normal(0, 0.5, size=G)
    y = rng.poisson(np.exp(0.5 + 0.3 * x + u[g]))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:05d}" for i in g]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--groups", type=int, nargs="*", default=[100, 1000, 10000])
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "laplace.json"))
    a = ap.parse_args()

    res: dict = {"machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                             "python": sys.version.split()[0],
                             "load_average_at_start": list(os.getloadavg())},
                 "reference_s": REFERENCE_S,
                 "reference_source": "/work/shared/refs/12_brms_timing.json classical_timing "
                                     "(median of 20, 2-core AMD EPYC)",
                 "reps": a.reps, "timings": {}, "scaling": []}
    sleep = bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", data=bayesglmm.load_sleepstudy())
    sleep.compile(verbose=False)
    sleep._bridgestan(False)
    cbpp = bayesglmm.glmer("cbind(incidence, failures) ~ period + (1 | herd)", data=cbpp_data(),
                           family="binomial")
    cbpp.compile(verbose=False)
    cbpp._bridgestan(False)
    cases = {
        "sleepstudy_classic_REML": (lambda: sleep.classic(verbose=False), "sleepstudy_glmmTMB_REML",
                                    "sleepstudy_lmer_REML"),
        "sleepstudy_classic_ML": (lambda: sleep.classic(method="ML", verbose=False),
                                  "sleepstudy_glmmTMB_ML", "sleepstudy_lmer_ML"),
        "sleepstudy_optimize_laplace": (lambda: sleep.optimize(verbose=False),
                                        "sleepstudy_glmmTMB_ML", "sleepstudy_lmer_ML"),
        "cbpp_classic": (lambda: cbpp.classic(verbose=False), "cbpp_glmmTMB_laplace",
                         "cbpp_glmer_laplace"),
        "cbpp_optimize_laplace": (lambda: cbpp.optimize(verbose=False), "cbpp_glmmTMB_laplace",
                                  "cbpp_glmer_laplace"),
    }
    for name, (fn, tmb, lme4) in cases.items():
        fn()  # warm-up (as the R timings)
        med, all_s = timed(fn, a.reps)
        res["timings"][name] = {
            "median_s": med, "all_s": all_s,
            "glmmTMB_s": REFERENCE_S[tmb], "ratio_to_glmmTMB": med / REFERENCE_S[tmb],
            "lme4_s": REFERENCE_S[lme4], "ratio_to_lme4": med / REFERENCE_S[lme4],
        }
        print(f"{name:30s} {med:8.3f} s  x{med / REFERENCE_S[tmb]:.2f} glmmTMB  "
              f"x{med / REFERENCE_S[lme4]:.2f} lme4", flush=True)
    for G in a.groups:
        m = bayesglmm.glmer("y ~ x + (1 | g)", data=simulate(G), family="poisson")
        m.compile(verbose=False)
        t0 = time.perf_counter()
        m._bridgestan(False)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit = m.optimize(verbose=False)
        t = time.perf_counter() - t0
        s = fit.summary()
        row = {"groups": G, "observations": 5 * G, "optimize_s": t,
               "optimize_ms_per_group": 1e3 * t / G, "bridgestan_load_s": t_load,
               "converged": fit.converged, "b[x]": float(s.loc["b[x]", "estimate"]),
               "sd[g:Int]": float(s.loc["sd[g:Int]", "estimate"])}
        res["scaling"].append(row)
        print(f"groups {G:6d}: optimize {t:8.2f} s = {1e3 * t / G:.3f} ms per group "
              f"(b[x] {row['b[x]']:.4f}, sd {row['sd[g:Int]']:.4f})", flush=True)
    sc = res["scaling"]
    if len(sc) >= 2:
        lg = np.log([r["groups"] for r in sc])
        lt = np.log([r["optimize_s"] for r in sc])
        res["scaling_log_log_slope"] = float(np.polyfit(lg, lt, 1)[0])
        print(f"log-log slope of time vs groups: {res['scaling_log_log_slope']:.2f}")
    res["machine"]["load_average_at_end"] = list(os.getloadavg())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
