"""Sparse fixed-effect design benchmark -> bench/results/sparse.json.

``y ~ x + f + (1 | g)`` with normal errors, flat prior: 100,000 rows, ``f`` a factor with 500
levels as a fixed effect (500 design columns, 99.6% zeros), 1,000 groups; simulated, seed
fixed. ``classic()`` (REML, the exact path of :mod:`bayesglmm.inference.lmm`) with the
fixed-effect cross-products formed from the sparse design (the default for such a design) and
from the dense design (``lmm_design.SPARSE_ZERO_SHARE`` set to 1.0 in that process),
alternated. Each run is a fresh subprocess: its peak memory (max RSS) and the wall time of
``lmer()`` (formula and design) and of ``classic()`` on the new model are its own. The
model's own program (``backend="specific"``, compiled beforehand) is used, so that the exact
path checks itself on a 64-row instance and the full data never go into Stan (the generic
program would load them).

The dense design matrix (N x 500 doubles, 400 MB) is still built by the formula step and kept in
the program's data; the sparse path avoids the centred copy, the intercept-augmented copy and
the N K^2 products. The load average is recorded before and after each run (shared machine).

Usage: ``python bench/bench_sparse.py [--rows N] [--levels L] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
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
RESULTS = REPO / "bench" / "results" / "sparse.json"
FORMULA = "y ~ x + f + (1 | g)"


def simulate(n: int, levels: int, groups: int = 1000, seed: int = 21) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = rng.integers(0, levels, n)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 0.3, levels)[f] + rng.normal(0, 1, groups)[g] \
        + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "f": [f"L{i:03d}" for i in f], "g": g})


def child(case: str, rows: int, levels: int) -> dict:
    import bayesglmm
    from bayesglmm.inference import lmm_design

    if case == "dense":
        lmm_design.SPARSE_ZERO_SHARE = 1.0
    d = simulate(rows, levels)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    m = bayesglmm.lmer(FORMULA, data=d, backend="specific")
    model_s = time.perf_counter() - t0
    X = np.asarray(m.program.data["X"])
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    fit = m.classic(method="REML", verbose=False)
    fit_s = time.perf_counter() - t0
    est = fit.summary()["estimate"]
    return {"case": case, "rows": rows, "levels": levels, "design_columns": int(X.shape[1]),
            "zero_share": float(1 - np.count_nonzero(X) / X.size),
            "sparse_used": bool(lmm_design.is_sparse(X)),
            "model_s": model_s, "classic_s": fit_s, "loglik": float(fit.loglik),
            "estimates": {k: float(est[k]) for k in ("Intercept", "b[x]", "sigma", "sd[g:Int]")},
            "peak_rss_after_data_mb": round(rss0, 1), "peak_rss_after_model_mb": round(rss1, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run(case: str, rows: int, levels: int) -> dict:
    load0 = os.getloadavg()
    p = subprocess.run([sys.executable, __file__, "--child", case, str(rows), str(levels)],
                       capture_output=True, text=True, cwd=str(REPO))
    if p.returncode != 0:
        raise SystemExit(f"{case} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["load_before"] = [round(v, 2) for v in load0]
    res["load_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps({k: res[k] for k in ("case", "classic_s", "peak_rss_mb", "loglik")}),
          flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=3)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--levels", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), int(a.child[2]))))
        return
    import bayesglmm

    bayesglmm.lmer(FORMULA, data=simulate(2000, a.levels),
                   backend="specific").compile(verbose=True)  # the program, once
    runs = [run(case, a.rows, a.levels) for _ in range(a.rounds) for case in ("sparse", "dense")]

    def best(case: str, key: str) -> float:
        return min(r[key] for r in runs if r["case"] == case)

    summary = {
        "classic_s": {c: best(c, "classic_s") for c in ("sparse", "dense")},
        "peak_rss_mb": {c: best(c, "peak_rss_mb") for c in ("sparse", "dense")},
        "max_abs_loglik_difference": float(np.ptp([r["loglik"] for r in runs])),
    }
    summary["speedup_classic_sparse_vs_dense"] = (summary["classic_s"]["dense"]
                                                  / summary["classic_s"]["sparse"])
    out = {
        "what": f"{FORMULA}, normal errors, flat prior, {a.rows} rows, f with {a.levels} levels "
                "as a fixed effect, 1,000 groups (simulated): classic(REML) exact path with the "
                "fixed-effect cross-products from the sparse and from the dense design",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "note": "shared machine (2 cores, several agents working): loaded and noisy; "
                            "see load_before/load_after of each run"},
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "summary": summary,
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
