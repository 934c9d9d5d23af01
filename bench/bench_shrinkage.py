"""Shrinkage-prior benchmark -> bench/results/shrinkage.json.

Simulated sparse regression (as tests/conftest.py ``sparse_data``: N = 100, 20 standard-normal
predictors, coefficients 1.5, -1.0, 0.8 and 17 zeros, residual SD 1), ``lm(y ~ x1 + ... + x20)``
with ``prior_rhs()`` and with ``prior_ssp()``, y_range = range of y. For several seeds and each
configuration, 4 chains x (1000 warmup + 1000 sampling):

* the number of divergent transitions after warmup;
* min ESS_bulk over the 20 coefficients, ESS_bulk of lp__, per second of chain time (Stan's
  per-chain warmup + sampling time, summed over chains) and per 1000 leapfrog steps (the latter
  is insensitive to load from other processes on the machine);
* whether the recovery criteria of tests/test_shrinkage.py hold (the 3 non-zero coefficients:
  95 % intervals exclude 0 and contain the truth; the 17 others: intervals contain 0, |mean| <
  0.1).

Configurations (run interleaved seed by seed, so load affects all alike), each program at
Stan's default target acceptance rate 0.8 and at 0.99 (the prior table's default for both
priors since this benchmark):

* ``rhs``: the horseshoe program (non-centred, half-Cauchys as half-normal / sqrt(Gamma(1/2,
  1/2)) scale mixtures);
* ``rhs_cauchy``: the same model with the half-Cauchy densities sampled directly (alternative);
* ``ssp``: the spike-and-slab program (non-centred, ``beta_raw ~ double_exponential(0, 0.5)``);
* ``ssp_mixture``: the same model with the Laplace density written as a normal scale mixture,
  ``beta_raw = ssp_w * sqrt(ssp_v)``, ``ssp_w ~ N(0, 1)``, ``ssp_v ~ Exponential(rate 2)``, which
  has no kink at 0 (alternative).

The alternatives are derived from the generated programs by replacing lines.

Usage: ``python bench/bench_shrinkage.py [--seeds 1 2 3 4 5]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "shrinkage.json"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import arviz as az
from conftest import simulate_sparse, sparse_formula

import bayesglmm
from bayesglmm.inference.sampling import run_nuts
from bayesglmm.toolchain import compile_model

# line replacements (old line without comment -> new line, None: drop the line)
HALF_CAUCHY_DIRECT = (
    ("  vector<lower=0>[K] lambda_raw;", "  vector<lower=0>[K] lambda;"),
    ("  vector<lower=0>[K] w_lambda;", None),
    ("  real<lower=0> tau_raw;", "  real<lower=0> tau_hs;"),
    ("  real<lower=0> w_tau;", None),
    ("  vector[K] lambda = lambda_raw ./ sqrt(w_lambda);", None),
    ("  real tau_hs = hs_tau0 * tau_raw / sqrt(w_tau);", None),
    ("  target += normal_lpdf(lambda_raw | 0, 1) + K * log2();",
     "  target += cauchy_lpdf(lambda | 0, 1) + K * log2();"),
    ("  target += gamma_lpdf(w_lambda | 0.5, 0.5);", None),
    ("  target += normal_lpdf(tau_raw | 0, 1) + log2();",
     "  target += cauchy_lpdf(tau_hs | 0, hs_tau0) + log2();"),
    ("  target += gamma_lpdf(w_tau | 0.5, 0.5);", None),
)
LAPLACE_MIXTURE = (
    ("  vector[K] beta_raw;", "  vector[K] ssp_w;\n  vector<lower=0>[K] ssp_v;"),
    ("  vector[K] beta = beta_raw .* ssp_r .* ssp_tau;",
     "  vector[K] beta_raw = ssp_w .* sqrt(ssp_v);\n"
     "  vector[K] beta = beta_raw .* ssp_r .* ssp_tau;"),
    ("  target += double_exponential_lpdf(beta_raw | 0, ssp_raw_scale);",
     "  target += std_normal_lpdf(ssp_w);\n"
     "  target += exponential_lpdf(ssp_v | 0.5 / square(ssp_raw_scale));"),
)


def replace_lines(code: str, table) -> str:
    """``code`` with every line of ``table`` (compared without its comment) replaced."""
    todo = dict(table)
    out = []
    for ln in code.splitlines():
        key = ln.split("//")[0].rstrip()
        if key in todo:
            new = todo.pop(key)
            if new is not None:
                out.append(new)
        else:
            out.append(ln)
    if todo:
        raise RuntimeError(f"program lines not found: {sorted(todo)}")
    return "\n".join(out) + "\n"


def chain_seconds(fit) -> float:
    total = 0.0
    for f in fit.runset.csv_files:
        with open(f) as fh:
            for line in fh:
                if "seconds (Total)" in line:
                    total += float(line.split("seconds")[0].split()[-1])
    return total


def run_one(cm, data, seed: int, delta: float, beta_true: np.ndarray) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = run_nuts(cm, data, chains=4, warmup=1000, sampling=1000, thin=1, seed=seed,
                       delta=delta, max_treedepth=10, verbose=False)
    draws = np.asarray(fit.draws(concat_chains=False))  # draw, chain, column
    cols = list(fit.column_names)
    idx = [cols.index(f"beta[{j + 1}]") for j in range(len(beta_true))]
    ess_b = [float(az.ess(np.ascontiguousarray(draws[:, :, i].T), method="bulk")) for i in idx]
    ess_lp = float(az.ess(np.ascontiguousarray(draws[:, :, cols.index("lp__")].T), method="bulk"))
    sv = fit.method_variables()
    steps = int(sv["n_leapfrog__"].sum())
    secs = chain_seconds(fit)
    b = draws[:, :, idx].reshape(-1, len(idx))
    lo, hi = np.quantile(b, [0.025, 0.975], axis=0)
    mean = b.mean(axis=0)
    nz = beta_true != 0
    recovered = bool(np.all(((lo > 0) | (hi < 0))[nz]) and np.all(((lo < beta_true) &
                                                                  (beta_true < hi))[nz])
                     and np.all(((lo < 0) & (0 < hi) & (np.abs(mean) < 0.1))[~nz]))
    return {"seed": seed, "divergent": int(sv["divergent__"].sum()),
            "min_ess_bulk_b": min(ess_b), "ess_bulk_lp": ess_lp, "chain_seconds": secs,
            "leapfrog_steps": steps, "min_ess_b_per_s": min(ess_b) / secs,
            "min_ess_b_per_1000_steps": 1000 * min(ess_b) / steps, "recovered": recovered}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    args = ap.parse_args()
    df, beta = simulate_sparse()
    yr = (float(df.y.min()), float(df.y.max()))
    rhs = bayesglmm.lm(sparse_formula(), data=df, prior=bayesglmm.prior_rhs(), y_range=yr)
    ssp = bayesglmm.lm(sparse_formula(), data=df, prior=bayesglmm.prior_ssp(), y_range=yr)
    programs = {"rhs": (rhs.stan_code, rhs.stan_data),
                "rhs_cauchy": (replace_lines(rhs.stan_code, HALF_CAUCHY_DIRECT), rhs.stan_data),
                "ssp": (ssp.stan_code, ssp.stan_data),
                "ssp_mixture": (replace_lines(ssp.stan_code, LAPLACE_MIXTURE), ssp.stan_data)}
    models = {k: compile_model(code, name=k, verbose=False).cmdstan_model()
              for k, (code, _) in programs.items()}
    configs = [(k, d) for k in programs for d in (0.8, 0.99)]
    runs: dict[str, list[dict]] = {f"{k}@{d}": [] for k, d in configs}
    for seed in args.seeds:
        for k, d in configs:
            r = run_one(models[k], programs[k][1], seed, d, beta)
            runs[f"{k}@{d}"].append(r)
            print(f"{k}@{d} seed {seed}: {r['divergent']} divergent, min ESS_b/s "
                  f"{r['min_ess_b_per_s']:.0f}, per 1000 steps {r['min_ess_b_per_1000_steps']:.2f}",
                  flush=True)
    summary = {
        name: {"divergent_per_seed": [r["divergent"] for r in rs],
               "seeds_without_divergences": sum(r["divergent"] == 0 for r in rs),
               "median_min_ess_b_per_s": statistics.median(r["min_ess_b_per_s"] for r in rs),
               "median_min_ess_b_per_1000_steps":
                   statistics.median(r["min_ess_b_per_1000_steps"] for r in rs),
               "seeds_recovered": sum(r["recovered"] for r in rs)}
        for name, rs in runs.items()}
    out = {"machine": platform.platform(), "seeds": args.seeds, "summary": summary, "runs": runs}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    for name, s in summary.items():
        print(name, s)


if __name__ == "__main__":
    main()
