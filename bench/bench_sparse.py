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

``--stan``: the Stan gradient of the likelihood, dense ``normal_id_glm`` vs CSR, 20,000 rows x 300
columns. ``--crossover``: the same over 5-300 columns and shares of zeros 0.59-0.99, gaussian
and bernoulli (the rule of :mod:`bayesglmm.design_csr`). ``--sample``: ``sample()`` of the
generated programs, design in CSR form vs dense (own and generic program), 20,000 rows with a
100- and a 300-level factor. Each adds its key to the JSON.

Usage: ``python bench/bench_sparse.py [--rows N] [--levels L] [--rounds R] [--before DIR]``
``[--stan | --crossover | --sample [--sample-levels 100,300] [--chains 2] [--iters 300]]``.
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


def alternate(models: dict, u: np.ndarray, rounds: int, evals: int) -> dict[str, list[float]]:
    """Seconds per ``log_density_gradient(u)`` of each BridgeStan model, ``evals`` calls per
    round, the models alternated in each of ``rounds`` rounds."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, m in models.items():
            t0 = time.perf_counter()
            for _ in range(evals):
                m.log_density_gradient(u)
            times[name].append((time.perf_counter() - t0) / evals)
    return times


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
    times = alternate({"dense": dense, "csr": csr}, u, rounds, evals)
    best = {k: min(v) for k, v in times.items()}
    return {"rows": rows, "design_columns": levels, "nnz": int(S.nnz),
            "gradient_s_best": best, "gradient_s_all": times,
            "csr_over_dense": best["csr"] / best["dense"],
            "log_density_difference": float(abs(ld["dense"][0] - ld["csr"][0])),
            "gradient_max_difference": float(np.max(np.abs(ld["dense"][1] - ld["csr"][1]))),
            "load": [round(v, 2) for v in os.getloadavg()]}


STAN_BERN_DENSE = STAN_DENSE.replace("vector[N] y;", "array[N] int<lower=0, upper=1> y;").replace(
    "  real<lower=0> sigma;\n", "").replace(
    "normal_id_glm_lupdf(y | X, alpha, beta, sigma)", "bernoulli_logit_glm_lupmf(y | X, alpha, beta)")
STAN_BERN_CSR = STAN_CSR.replace("vector[N] y;", "array[N] int<lower=0, upper=1> y;").replace(
    "  real<lower=0> sigma;\n", "").replace(
    "normal_lupdf(y | alpha + csr_matrix_times_vector(N, K, X_w, X_v, X_u, beta), sigma)",
    "bernoulli_logit_lupmf(y | alpha + csr_matrix_times_vector(N, K, X_w, X_v, X_u, beta))")


def crossover(rows: int, rounds: int, evals: int) -> dict:
    """Gradient time, dense ``*_glm`` vs CSR, over designs of K columns made of ``d`` dense
    (normal) columns and the dummy columns of one factor with K - d + 1 levels (one non-zero
    per row): the share of zeros is about 1 - (d + 1) / K. Gaussian (normal_id_glm) and
    bernoulli (bernoulli_logit_glm), the same points alternated in one process."""
    from scipy import sparse

    from bayesglmm.toolchain import compile_model

    progs = {}
    for fam, (sd, sc) in {"gaussian": (STAN_DENSE, STAN_CSR),
                          "bernoulli": (STAN_BERN_DENSE, STAN_BERN_CSR)}.items():
        progs[fam] = (compile_model(sd, name=f"bench_sparse_{fam}_dense", verbose=True),
                      compile_model(sc, name=f"bench_sparse_{fam}_csr", verbose=True))
    grid = [(K, 1) for K in (5, 10, 20, 50, 100, 200, 300)] + [(100, d) for d in (5, 10, 20, 40)]
    rng = np.random.default_rng(5)
    points = []
    for K, d in grid:
        X = np.zeros((rows, K))
        X[:, :d] = rng.normal(size=(rows, d))
        if K > d:
            f = rng.integers(0, K - d + 1, rows)
            hit = f > 0
            X[np.flatnonzero(hit), d + f[hit] - 1] = 1.0
        S = sparse.csr_matrix(X)
        eta = X @ rng.normal(0, 0.3, K)
        ys = {"gaussian": eta + rng.normal(size=rows),
              "bernoulli": (rng.random(rows) < 1 / (1 + np.exp(-eta))).astype(int)}
        for fam, (cd, cc) in progs.items():
            base = {"N": rows, "K": K, "y": ys[fam]}
            md = cd.bridgestan_model({**base, "X": X})
            mc = cc.bridgestan_model({**base, "nnz": int(S.nnz), "X_w": S.data,
                                      "X_v": S.indices + 1, "X_u": S.indptr + 1})
            u = rng.normal(0, 0.3, K + (2 if fam == "gaussian" else 1))
            ld_d, ld_c = md.log_density_gradient(u)[0], mc.log_density_gradient(u)[0]
            t = alternate({"dense": md, "csr": mc}, u, rounds, evals)
            best = {k: min(v) for k, v in t.items()}
            points.append({"family": fam, "columns": K, "dense_columns": d,
                           "zero_share": round(1 - S.nnz / X.size, 4),
                           "gradient_s_best": best, "csr_over_dense": best["csr"] / best["dense"],
                           "log_density_rel_difference": abs(ld_d - ld_c) / abs(ld_d),
                           "load": [round(v, 2) for v in os.getloadavg()]})
            print(json.dumps({k: points[-1][k] for k in ("family", "columns", "zero_share",
                                                           "csr_over_dense")}), flush=True)
    return {"rows": rows, "rounds": rounds, "evals_per_round": evals, "points": points}


def sample_runs(rows: int, levels_list: list[int], chains: int, iters: int, seed: int,
                partial=None) -> dict:
    """``sample()`` of ``FORMULA`` (flat prior) with the design in CSR form (the rule's choice,
    the model's own program), dense in the model's own program (the rule switched off,
    ``backend="specific"``), and dense in the generic program (what ``backend="auto"`` ran
    before the CSR form): wall time of ``sample()`` (program compiled beforehand, untimed),
    leapfrog steps, min ESS_bulk, max R-hat; the same seed for all three."""

    sys.path.insert(0, str(REPO / "bench"))
    from bench_centre import _ess_stats

    runs = []
    for levels in levels_list:
        d = simulate(rows, levels)
        for case in CASES:
            m = case_model(case, d)
            m.compile(verbose=True)
            load0 = [round(v, 2) for v in os.getloadavg()]
            t0 = time.perf_counter()
            fit = m.sample(chains=chains, warmup=iters, sampling=iters, seed=seed, verbose=False)
            wall = time.perf_counter() - t0
            out = {"case": case, "levels": levels, "rows": rows, "design_columns": m.spec.fixed.K,
                   "backend": fit.backend, "chains": chains, "warmup": iters, "sampling": iters,
                   "seed": seed, "wall_s": round(wall, 2)}
            out.update(_ess_stats(fit, iters))
            try:  # CmdStan's own timing of the sampling phase, per chain
                t = fit.stan_fit.time
                sampling_s = float(sum(v["sampling"] for v in t.values()))
            except Exception:  # noqa: BLE001 - not every output has it
                sampling_s = None
            out["sampling_phase_s_all_chains"] = sampling_s
            # the cost of a gradient (plus the tree bookkeeping) in the sampling phase
            out["sampling_ms_per_leapfrog_step"] = (
                None if sampling_s is None
                else round(1000 * sampling_s / out["leapfrog_steps_sampling"], 4))
            out["min_ess_bulk_per_s"] = round(out["min_ess_bulk"] / wall, 3)
            out["b_x_mean"] = float(fit.summary().loc["b[x]", "mean"])
            out.update(load_before=load0, load_after=[round(v, 2) for v in os.getloadavg()])
            print(json.dumps({k: out[k] for k in ("case", "levels", "wall_s", "min_ess_bulk",
                                                  "max_rhat", "leapfrog_steps_sampling")}),
                  flush=True)
            runs.append(out)
            if partial is not None:  # keep what is done if the run is stopped
                partial(runs)
    summary = {}
    for levels in levels_list:
        w = {r["case"]: r["wall_s"] for r in runs if r["levels"] == levels}
        g = {r["case"]: r["sampling_ms_per_leapfrog_step"] for r in runs if r["levels"] == levels}
        summary[f"levels_{levels}"] = {
            "wall_s": w, "sampling_ms_per_leapfrog_step": g,
            "wall_dense_specific_over_csr": round(w["dense_specific"] / w["csr"], 2),
            "wall_dense_generic_over_csr": round(w["dense_generic"] / w["csr"], 2)}
        if all(g.values()):
            summary[f"levels_{levels}"].update(
                step_dense_specific_over_csr=round(g["dense_specific"] / g["csr"], 2),
                step_dense_generic_over_csr=round(g["dense_generic"] / g["csr"], 2))
    return {"what": f"sample() of {FORMULA}, flat prior, {rows} rows, 1,000 groups, f with "
                    f"{levels_list} levels: design in CSR form vs dense (own program, generic)",
            "summary": summary, "runs": runs}


CASES = ("csr", "dense_specific", "dense_generic")


def case_model(case: str, d: pd.DataFrame):
    """``FORMULA`` on ``d``: its own program with the design in CSR form ("csr", the rule's
    choice), its own program with the dense design (the rule switched off), or the generic
    program (dense: what ``backend="auto"`` ran before the CSR form)."""
    import bayesglmm
    from bayesglmm import design_csr

    keep = design_csr.FIXED_COLUMNS
    if case != "csr":
        design_csr.FIXED_COLUMNS = 10**9
    try:
        m = bayesglmm.lmer(FORMULA, data=d,
                           backend="generic" if case == "dense_generic" else "specific")
    finally:
        design_csr.FIXED_COLUMNS = keep
    assert m.spec.sparse_X == (case == "csr"), case
    return m


def program_gradients(rows: int, levels_list: list[int], rounds: int, evals: int) -> dict:
    """Gradient time of the generated programs themselves (BridgeStan, the model's data) for
    ``FORMULA``: its own program with the design in CSR form, its own program with the dense
    design and the generic program (dense), alternated in one process, at the same random
    unconstrained point; and their log densities there."""

    out = []
    for levels in levels_list:
        d = simulate(rows, levels)
        models = {}
        for case in CASES:
            models[case] = case_model(case, d).bridgestan_model(verbose=True)
        u = np.random.default_rng(4).normal(0, 0.3, models["csr"].param_unc_num())
        lp = {c: float(b.log_density(u, propto=False)) for c, b in models.items()}
        times = alternate(models, u, rounds, evals)
        best = {c: min(v) for c, v in times.items()}
        out.append({"levels": levels, "rows": rows, "gradient_ms_best": {
            c: round(1000 * v, 4) for c, v in best.items()},
            "dense_specific_over_csr": round(best["dense_specific"] / best["csr"], 3),
            "dense_generic_over_csr": round(best["dense_generic"] / best["csr"], 3),
            "log_density": lp,
            "max_rel_log_density_difference": max(abs(v - lp["csr"]) / abs(lp["csr"])
                                                  for v in lp.values()),
            "load": [round(v, 2) for v in os.getloadavg()]})
        print(json.dumps(out[-1]), flush=True)
    return {"what": f"{FORMULA}, flat prior, gradient of the generated programs (BridgeStan), "
                    f"best of {rounds} x {evals}", "points": out}


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
    X = np.asarray(m.spec.fixed.X)  # the formula's design (the program may hold it as CSR)
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


def add_key(results: Path, key: str, res: dict) -> None:
    """Write ``res`` (and the command line) under ``key`` of the JSON, keeping its other keys."""
    out = json.loads(results.read_text()) if results.exists() else {}
    out[key] = res
    out[f"{key}_command"] = "python bench/bench_sparse.py " + " ".join(sys.argv[1:])
    results.write_text(json.dumps(out, indent=1) + "\n")


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
    ap.add_argument("--crossover", action="store_true",
                    help="only the dense-vs-CSR gradient crossover over columns and share of "
                         "zeros (key 'crossover' of the JSON)")
    ap.add_argument("--sample", action="store_true",
                    help="only sample() with the design in CSR form vs dense (key 'sample')")
    ap.add_argument("--sample-levels", default="100,300")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--iters", type=int, default=300, help="warmup = sampling iterations")
    ap.add_argument("--program-gradient", action="store_true",
                    help="only the gradient of the generated programs, CSR vs dense (key "
                         "'program_gradient')")
    a = ap.parse_args()
    results = Path(a.results)
    if a.program_gradient:
        add_key(results, "program_gradient", program_gradients(
            a.stan_rows, [int(v) for v in a.sample_levels.split(",")], a.rounds, 30))
        return
    if a.sample:
        res = sample_runs(a.stan_rows, [int(v) for v in a.sample_levels.split(",")], a.chains,
                          a.iters, 8, lambda runs: add_key(results, "sample", {"runs": runs,
                                                                             "partial": True}))
        add_key(results, "sample", res)
        print(json.dumps(res["summary"], indent=1))
        return
    if a.crossover:
        res = crossover(a.stan_rows, a.rounds, 30)
        add_key(results, "crossover", res)
        return
    if a.stan:
        res = stan_gradients(a.stan_rows, a.levels, a.rounds, 50)
        add_key(results, "stan_gradient", res)
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
