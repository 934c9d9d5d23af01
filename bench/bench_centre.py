"""Centred vs non-centred group-level effects under NUTS -> bench/results/centre.json.

Issue 15's sampling target: ``lmer("y ~ x + (x | g)")`` on 100,000 simulated rows and 1,000
groups (bench_large.simulate: 100 rows per group; flat priors), 4 chains x (1000 + 1000): R-hat
< 1.01 and min ESS_bulk > 400 for every parameter (random effects included) with the program
``param="auto"`` chooses (centred here), and min ESS_bulk per second at least 10x that of the
non-centred program on the same data. Both run the family's generic program (the
parameterisation is a data flag there), so the cost per gradient is the same program's.

The non-centred run crawls (tree depth near the maximum): by default it gets 4 chains x
(300 + 300) (``--nc-iter``), and the ratio compares ESS per second and, robust to the machine's
load, ESS per gradient evaluation (leapfrog steps of the sampling phase).

Sleepstudy (``Reaction ~ Days + (Days | Subject)``, 10 rows per subject) and debate
(``sat ~ talk + perf + (1 | group)``, 3 rows per group, normal priors): "auto" keeps them
non-centred, so their programs and draws are those of before; both parameterisations are run
(4 x (1000 + 1000)) to record the ESS per gradient the rule keeps.

The pointwise log-likelihood is switched off for the 100k runs (``compute_log_lik = 0`` in the
program's data): 100,000 values per draw would otherwise be written and read as CSV text.
Runs alternate (centred, non-centred) and record the load average before and after.

Usage: ``python bench/bench_centre.py [--quick] [--nc-iter W S] [--big-iter W S]``
(``--quick``: 20,000 rows x 200 groups and 4 x (300 + 300) for the big case).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
RESULTS = REPO / "bench" / "results" / "centre.json"
SEED = 15


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run_one(model, label: str, warmup: int, sampling: int, log_lik: bool = True) -> dict:
    """Sample ``model`` (4 chains); ESS, R-hat, leapfrog steps, time."""
    if not log_lik:
        model.run_program.data["compute_log_lik"] = 0
    model.compile(verbose=False)
    load0 = _load()
    t0 = time.perf_counter()
    fit = model.sample(chains=4, warmup=warmup, sampling=sampling, seed=SEED, verbose=False)
    wall = time.perf_counter() - t0
    s = fit.summary(inc_random=True)
    steps = int(np.sum(fit._stats["n_steps"]))
    min_ess = float(s["ess_bulk"].min())
    out = {
        "case": label, "param": model.re_param, "backend": fit.backend,
        "chains": 4, "warmup": warmup, "sampling": sampling,
        "wall_s": round(wall, 2), "leapfrog_steps_sampling": steps,
        "min_ess_bulk": round(min_ess, 1), "min_ess_bulk_parameter": str(s["ess_bulk"].idxmin()),
        "max_rhat": round(float(s["rhat"].max()), 4),
        "min_ess_bulk_per_s": round(min_ess / wall, 3),
        "min_ess_bulk_per_1000_gradients": round(1000 * min_ess / steps, 4),
        "mean_tree_depth": round(float(np.mean(fit._stats["tree_depth"])), 2)
        if "tree_depth" in fit._stats else None,
        "divergent": fit.num_divergent,
        "load_before": load0, "load_after": _load(),
    }
    print(json.dumps({k: out[k] for k in ("case", "wall_s", "min_ess_bulk", "max_rhat",
                                          "min_ess_bulk_per_1000_gradients")}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--nc-iter", nargs=2, type=int, default=None, metavar=("WARMUP", "SAMPLING"))
    ap.add_argument("--big-iter", nargs=2, type=int, default=None, metavar=("WARMUP", "SAMPLING"))
    ap.add_argument("--skip-small", action="store_true", help="only the 100k case")
    a = ap.parse_args()
    from bench_large import simulate

    import bayesglmm

    rows, groups = (20_000, 200) if a.quick else (100_000, 1000)
    big_iter = a.big_iter or ((300, 300) if a.quick else (1000, 1000))
    nc_iter = a.nc_iter or ((300, 300) if a.quick else (300, 300))
    d = simulate(rows, groups=groups)
    runs = []
    auto = bayesglmm.lmer("y ~ x + (x | g)", d)
    runs.append(run_one(auto, f"{rows}x{groups} auto", *big_iter, log_lik=False))
    nc = bayesglmm.lmer("y ~ x + (x | g)", d, param="noncentered")
    runs.append(run_one(nc, f"{rows}x{groups} noncentered", *nc_iter, log_lik=False))
    small = []
    if not a.skip_small:
        sleep = bayesglmm.load_sleepstudy()
        debate = bayesglmm.load_debate()
        for name, build in (
            ("sleepstudy", lambda p: bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", sleep,
                                                    param=p)),
            ("debate", lambda p: bayesglmm.lmer("sat ~ talk + perf + (1 | group)", debate,
                                                prior=bayesglmm.prior_normal(), param=p)),
        ):
            chosen = build("auto").re_param
            for p in ("noncentered", "centered"):
                r = run_one(build(p), f"{name} {p}", 1000, 1000)
                r["auto_choice"] = chosen
                small.append(r)
    big_c, big_nc = runs
    summary = {
        "rows": rows, "groups": groups,
        "auto_choice": big_c["param"],
        "centred_max_rhat": big_c["max_rhat"],
        "centred_min_ess_bulk": big_c["min_ess_bulk"],
        "centred_min_ess_bulk_per_s": big_c["min_ess_bulk_per_s"],
        "noncentred_min_ess_bulk_per_s": big_nc["min_ess_bulk_per_s"],
        "ratio_min_ess_bulk_per_s": round(big_c["min_ess_bulk_per_s"]
                                          / big_nc["min_ess_bulk_per_s"], 1),
        "ratio_min_ess_bulk_per_gradient": round(big_c["min_ess_bulk_per_1000_gradients"]
                                                 / big_nc["min_ess_bulk_per_1000_gradients"], 1),
    }
    for r in small:
        summary[f"{r['case']} min_ess_bulk_per_1000_gradients"] = \
            r["min_ess_bulk_per_1000_gradients"]
        summary[f"{r['case'].split()[0]} auto_choice"] = r["auto_choice"]
    out = {
        "what": "NUTS, centred vs non-centred group-level effects (param=): y ~ x + (x | g) on "
                "simulated data (bench_large.simulate), sleepstudy and debate; min ESS_bulk over "
                "every reported quantity (random effects included)",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "note": "shared machine (2 cores, several agents working): loaded and noisy; "
                            "ESS per gradient is robust to the load, ESS per second is not; see "
                            "load_before/load_after of each run"},
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "targets": {"max_rhat": 1.01, "min_ess_bulk": 400, "ratio_min_ess_bulk_per_s": 10},
        "quick": a.quick,
        "summary": summary,
        "runs": runs + small,
    }
    path = RESULTS.with_name("centre_quick.json") if a.quick else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
