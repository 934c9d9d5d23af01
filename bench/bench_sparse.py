"""Many fixed-effect columns benchmark -> bench/results/sparse.json.

``y ~ x + f + (1 | g)`` with normal errors, flat prior: 100,000 rows, ``f`` a factor with 300
levels as a fixed effect (300 design columns, ~99.6% zeros), 1,000 groups; simulated, seed
fixed. ``classic()`` (REML; the exact path of :mod:`bayesglmm.inference.lmm`, default backend)
with the fixed-effect cross-products formed from the sparse design (the default for such a
design) and from the dense design (``lmm_design.SPARSE_ZERO_SHARE`` set to 1.0 in that
process), alternated; with ``--before DIR`` also the package of another checkout (e.g. a git
worktree of the commit before this work) in the same rounds. Each run is a fresh subprocess:
its peak memory (max RSS) and the wall time of ``lmer()`` (formula and design) and of
``classic()`` on the new model are its own, with the number of penalised least-squares solves
(objective evaluations; load-independent) where the code counts them.

The dense design matrix (N x 300 doubles, 240 MB) is still built by the formula step and kept
in the program's data. The load average is recorded before and after each run (shared
machine).

Usage: ``python bench/bench_sparse.py [--rows N] [--levels L] [--rounds R] [--before DIR]``.
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
sys.path.insert(0, os.environ.get("BENCH_SPARSE_PKG", str(REPO)))  # --before: another tree
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


STAN_DENSE = """data {
  int<lower=1> N;
  int<lower=1> K;
  matrix[N, K] X;
  vector[N] y;
}
parameters {
  real alpha;
  vector[K] beta;
  real<lower=0> sigma;
}
model {
  target += normal_id_glm_lupdf(y | X, alpha, beta, sigma);
}
"""

STAN_CSR = """data {
  int<lower=1> N;
  int<lower=1> K;
  int<lower=0> nnz;
  vector[nnz] X_w;
  array[nnz] int<lower=1> X_v;
  array[N + 1] int<lower=1> X_u;
  vector[N] y;
}
parameters {
  real alpha;
  vector[K] beta;
  real<lower=0> sigma;
}
model {
  target += normal_lupdf(y | alpha + csr_matrix_times_vector(N, K, X_w, X_v, X_u, beta), sigma);
}
"""


def stan_gradients(rows: int, levels: int, rounds: int, evals: int) -> dict:
    """Gradient time of the likelihood with the dense design (``normal_id_glm``, what the
    generated programs use) and with the design in CSR form (``csr_matrix_times_vector``),
    alternated in one process; both through BridgeStan on the same data."""
    from scipy import sparse

    from bayesglmm.toolchain import compile_model

    d = simulate(rows, levels)
    X = np.zeros((rows, levels))
    codes = d["f"].str[1:].astype(int).to_numpy()
    X[np.arange(rows), codes] = 1.0
    X[:, 0] = d["x"].to_numpy()
    y = d["y"].to_numpy()
    S = sparse.csr_matrix(X)
    dense = compile_model(STAN_DENSE, name="bench_sparse_dense", verbose=True).bridgestan_model(
        {"N": rows, "K": levels, "X": X, "y": y})
    csr = compile_model(STAN_CSR, name="bench_sparse_csr", verbose=True).bridgestan_model(
        {"N": rows, "K": levels, "nnz": int(S.nnz), "X_w": S.data, "X_v": S.indices + 1,
         "X_u": S.indptr + 1, "y": y})
    rng = np.random.default_rng(3)
    u = rng.normal(0, 0.3, levels + 2)
    ld = {"dense": dense.log_density_gradient(u), "csr": csr.log_density_gradient(u)}
    times = {"dense": [], "csr": []}
    for _ in range(rounds):
        for name, m in (("dense", dense), ("csr", csr)):
            t0 = time.perf_counter()
            for _ in range(evals):
                m.log_density_gradient(u)
            times[name].append((time.perf_counter() - t0) / evals)
    best = {k: min(v) for k, v in times.items()}
    return {"rows": rows, "design_columns": levels, "nnz": int(S.nnz),
            "gradient_s_best": best, "gradient_s_all": times,
            "csr_over_dense": best["csr"] / best["dense"],
            "log_density_difference": float(abs(ld["dense"][0] - ld["csr"][0])),
            "gradient_max_difference": float(np.max(np.abs(ld["dense"][1] - ld["csr"][1]))),
            "load": [round(v, 2) for v in os.getloadavg()]}


def child(case: str, rows: int, levels: int) -> dict:
    import bayesglmm
    from bayesglmm.inference import lmm

    solves = {"n": 0}
    pls = lmm.ExactLMM._pls

    def counted(self, *a, **k):
        solves["n"] += 1
        return pls(self, *a, **k)

    lmm.ExactLMM._pls = counted
    if case != "before":
        from bayesglmm.inference import lmm_design

        if case == "dense":
            lmm_design.SPARSE_ZERO_SHARE = 1.0
    d = simulate(rows, levels)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    m = bayesglmm.lmer(FORMULA, data=d)
    model_s = time.perf_counter() - t0
    X = np.asarray(m.program.data["X"])
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    fit = m.classic(method="REML", verbose=False)
    fit_s = time.perf_counter() - t0
    est = fit.summary()["estimate"]
    return {"case": case, "rows": rows, "levels": levels, "design_columns": int(X.shape[1]),
            "zero_share": float(1 - np.count_nonzero(X) / X.size),
            "sparse_used": case == "sparse", "pls_solves": solves["n"],
            "backend": getattr(m, "backend", None),
            "model_s": model_s, "classic_s": fit_s, "loglik": float(fit.loglik),
            "estimates": {k: float(est[k]) for k in ("Intercept", "b[x]", "sigma", "sd[g:Int]")},
            "peak_rss_after_data_mb": round(rss0, 1), "peak_rss_after_model_mb": round(rss1, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run(case: str, rows: int, levels: int, before: str | None) -> dict:
    load0 = os.getloadavg()
    env = dict(os.environ, BENCH_SPARSE_PKG=before if case == "before" else str(REPO))
    p = subprocess.run([sys.executable, __file__, "--child", case, str(rows), str(levels)],
                       capture_output=True, text=True, cwd=str(REPO), env=env)
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
    ap.add_argument("--levels", type=int, default=300)
    ap.add_argument("--before", default=None,
                    help="a checkout whose package is timed as case 'before' in the same rounds")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--results", default=str(RESULTS), help="the JSON file written")
    ap.add_argument("--stan", action="store_true",
                    help="only the Stan gradient comparison (dense glm vs CSR), added to the JSON")
    ap.add_argument("--stan-rows", type=int, default=20_000)
    a = ap.parse_args()
    results = Path(a.results)
    if a.stan:
        res = stan_gradients(a.stan_rows, a.levels, a.rounds, 50)
        out = json.loads(results.read_text()) if results.exists() else {}
        out["stan_gradient"] = res
        out["stan_gradient_command"] = "python bench/bench_sparse.py " + " ".join(sys.argv[1:])
        results.write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps({k: res[k] for k in ("gradient_s_best", "csr_over_dense")}))
        return
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), int(a.child[2]))))
        return
    cases = ("sparse", "dense") + (("before",) if a.before else ())
    runs = [run(case, a.rows, a.levels, a.before) for _ in range(a.rounds) for case in cases]

    def best(case: str, key: str) -> float:
        return min(r[key] for r in runs if r["case"] == case)

    summary = {
        "classic_s_best": {c: best(c, "classic_s") for c in cases},
        "model_s_best": {c: best(c, "model_s") for c in cases},
        "pls_solves": {c: best(c, "pls_solves") for c in cases},
        "peak_rss_mb": {c: best(c, "peak_rss_mb") for c in cases},
        "max_abs_loglik_difference": float(np.ptp([r["loglik"] for r in runs])),
        "max_abs_estimate_difference": {
            k: float(np.ptp([r["estimates"][k] for r in runs])) for k in runs[0]["estimates"]},
    }
    for c in cases[1:]:
        summary[f"classic_s_{c}_over_sparse"] = (summary["classic_s_best"][c]
                                                 / summary["classic_s_best"]["sparse"])
    out = {
        "what": f"{FORMULA}, normal errors, flat prior, {a.rows} rows, f with {a.levels} levels "
                "as a fixed effect, 1,000 groups (simulated): classic(REML) exact path with the "
                "fixed-effect cross-products from the sparse and from the dense design"
                + (f"; 'before': the package of {a.before}" if a.before else ""),
        "command": "python bench/bench_sparse.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "note": "shared machine (2 cores, several agents working): loaded and noisy; "
                            "see load_before/load_after of each run"},
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "summary": summary,
        "runs": runs,
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
