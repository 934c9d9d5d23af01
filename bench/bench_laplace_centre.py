"""The generic Laplace path (``optimize(exact=False)``) on centred and non-centred programs ->
bench/results/laplace_centre.json.

For sleepstudy ``Reaction ~ Days + (Days | Subject)`` (gaussian) and cbpp
``cbind(incidence, failures) ~ period + (1 | herd)`` (binomial), each with ``param="centered"``
and ``"noncentered"`` (flat priors, generic programs already built): the objective, the Laplace
log ML, the outer iterations and the log-density gradient evaluations (load-independent) of
``find_laplace_mode`` from the GLM warm start (what ``optimize()`` runs) and from u = 0 (what
it runs with ``init=``), and the wall time of ``optimize(exact=False)`` (median of ``--reps``
after a warm-up). ``--code DIR`` imports bayesglmm from DIR (e.g. a checkout of the code
before a change); ``--label`` names the entry written (existing entries are kept).

Usage: ``python bench/bench_laplace_centre.py --label after [--reps 7] [--code DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--code", default=str(REPO))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "laplace_centre.json"))
    a = ap.parse_args()
    sys.path.insert(0, a.code)
    import numpy as np
    import pandas as pd

    import bayesglmm
    from bayesglmm.inference import optimize as opt

    warnings.simplefilter("ignore")
    calls = [0]
    value_grad = opt.Objective.value_grad

    def counted(self, u):
        calls[0] += 1
        return value_grad(self, u)

    opt.Objective.value_grad = counted
    cbpp = pd.read_csv(REPO / "tests" / "reference" / "cbpp.csv",
                       dtype={"herd": str, "period": str})
    cbpp["failures"] = cbpp["size"] - cbpp["incidence"]
    models = {
        "sleepstudy": lambda p: bayesglmm.lmer("Reaction ~ Days + (Days | Subject)",
                                               data=bayesglmm.load_sleepstudy(), param=p),
        "cbpp": lambda p: bayesglmm.glmer("cbind(incidence, failures) ~ period + (1 | herd)",
                                          data=cbpp, family="binomial", param=p),
    }
    entry: dict = {"code": str(Path(a.code).resolve()), "reps": a.reps,
                   "load_average_at_start": list(os.getloadavg()), "cases": {}}
    for name, make in models.items():
        for param in ("noncentered", "centered"):
            m = make(param)
            m.compile(verbose=False)
            bs = m.bridgestan_model(False)
            z_idx = opt.block_indices(bs, m.program.re_blocks)
            u0 = np.zeros(bs.param_unc_num())
            row: dict = {}
            for start, warm in (("warm", True), ("cold", False)):
                calls[0] = 0
                t0 = time.perf_counter()
                mode = opt.find_laplace_mode(opt.Objective(bs), z_idx, u0, program=m.program,
                                             warm_start=warm)
                row[start] = {"objective": mode.objective, "log_ml": mode.log_ml,
                              "converged": mode.converged, "iterations": mode.iterations,
                              "gradient_evaluations": calls[0],
                              "seconds": time.perf_counter() - t0,
                              "theta_unc": [float(v) for v in
                                            mode.theta_unc[mode.extra["theta_index"]]]}
            m.optimize(exact=False, verbose=False)
            times = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                fit = m.optimize(exact=False, verbose=False)
                times.append(time.perf_counter() - t0)
            row["optimize_exact_false"] = {"median_s": statistics.median(times), "all_s": times,
                                           "objective": fit.objective, "log_ml": fit.log_ml,
                                           "converged": fit.converged}
            entry["cases"][f"{name}_{param}"] = row
            w, c = row["warm"], row["cold"]
            print(f"{name:10s} {param:11s} warm F {w['objective']:.10f} logML {w['log_ml']:.8f} "
                  f"it {w['iterations']:3d} grads {w['gradient_evaluations']:5d} | cold F "
                  f"{c['objective']:.10f} it {c['iterations']:3d} grads "
                  f"{c['gradient_evaluations']:5d} | optimize {statistics.median(times):.3f} s",
                  flush=True)
    entry["load_average_at_end"] = list(os.getloadavg())
    out = Path(a.out)
    res = json.loads(out.read_text()) if out.exists() else {
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0]}, "runs": {}}
    res["runs"][a.label] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out} [{a.label}]")


if __name__ == "__main__":
    main()
