"""Bias and spread of the bridge-sampling log ML over MCMC seeds -> bench/results/bridge_bias.json.

Debate Model A, ``lmer(sat ~ talk + perf + (1 | group))`` (105 unconstrained parameters), with
``prior_normal()`` and with ``prior_weak()`` (``y_range=(1, 5)``); for each seed 4 chains x
(1000 warmup + 1000 sampling), then ``bridgesampling()`` with five schemes:

* alternate draws, sample covariance (``split="alternate", shrink=False``: the reference
  implementation's scheme), with ``method="normal"`` and ``"warp3"``;
* halves, sample covariance (``split="halves", shrink=False``);
* halves, shrunk covariance (the default), with ``method="normal"`` and ``"warp3"``.

Each estimate minus the exact log ML (tests/reference/bayes_factors.json ``exact``: closed-form
p(y | sigma, sd) integrated by quadrature, tests/lmm_marginal.py) is the bias of that seed. The
JSON holds every seed's bias, delta-method ``se`` and bridgesampling's ``error``, and per scheme
the mean and SD of the bias over seeds and the mean ``se`` / ``error``: the SD over seeds is
what ``se`` should match. The runs are written after every seed, so an interrupted run keeps
what it has (``n_seeds`` says how many).

Usage: ``python bench/bench_bridge_bias.py [--seeds 30]``.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "bridge_bias.json"
sys.path.insert(0, str(REPO))

import bayesglmm  # noqa: E402

SCHEMES = {
    "alternate draws, sample cov": dict(split="alternate", shrink=False, method="normal"),
    "alternate draws, sample cov, warp3": dict(split="alternate", shrink=False, method="warp3"),
    "halves, sample cov": dict(split="halves", shrink=False, method="normal"),
    "halves, shrunk cov (the default)": dict(split="halves", shrink=True, method="normal"),
    "halves, shrunk cov, warp3": dict(split="halves", shrink=True, method="warp3"),
}


def models() -> dict:
    d = bayesglmm.load_debate()
    f = "sat ~ talk + perf + (1 | group)"
    return {
        "normal": bayesglmm.lmer(f, data=d, prior=bayesglmm.prior_normal()),
        "weak": bayesglmm.lmer(f, data=d, prior=bayesglmm.prior_weak(), y_range=(1, 5)),
    }


def summarise(runs: list[dict]) -> dict:
    out = {}
    for prior in ("normal", "weak"):
        out[prior] = {}
        for scheme in SCHEMES:
            rows = [r["schemes"][scheme] for r in runs if r["prior"] == prior]
            if not rows:
                continue
            bias = [r["bias"] for r in rows]
            out[prior][scheme] = {
                "n_seeds": len(rows),
                "bias_mean": statistics.fmean(bias),
                "bias_sd_over_seeds": statistics.stdev(bias) if len(bias) > 1 else None,
                "mean_se": statistics.fmean(r["se"] for r in rows),
                "mean_error": statistics.fmean(r["error"] for r in rows),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=30, help="number of MCMC seeds (1..N)")
    args = ap.parse_args(argv)
    exact_all = json.loads((REPO / "tests" / "reference" / "bayes_factors.json").read_text())["exact"]
    exact = {"normal": exact_all["model_a_normal_logml"], "weak": exact_all["model_a_weak_logml"]}
    ms = models()
    for m in ms.values():
        m.compile(verbose=False)
    runs: list[dict] = []
    loads: list[list[float]] = []
    t_start = time.time()
    for seed in range(1, args.seeds + 1):
        for prior, m in ms.items():  # interleaved: load affects both priors alike
            loads.append(list(os.getloadavg()))
            fit = m.sample(chains=4, warmup=1000, sampling=1000, seed=seed, verbose=False)
            row = {"seed": seed, "prior": prior, "schemes": {}}
            for scheme, kw in SCHEMES.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = fit.bridgesampling(verbose=False, **kw)
                row["schemes"][scheme] = {"logml": res.logml, "bias": res.logml - exact[prior],
                                          "se": res.se, "error": res.error,
                                          "converged": bool(res.converged)}
            runs.append(row)
        result = {
            "what": __doc__.split("\n\n")[0],
            "model": "debate lmer(sat ~ talk + perf + (1 | group)), 4 chains x (1000 + 1000)",
            "exact_logml": exact,
            "seeds_requested": args.seeds,
            "n_seeds": seed,
            "summary": summarise(runs),
            "runs": runs,
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpus": os.cpu_count(), "loadavg_at_each_fit": loads,
                        "note": "shared 2-core machine under load from other processes; biases "
                                "do not depend on load, only the wall time does"},
            "wall_seconds": time.time() - t_start,
        }
        RESULTS.parent.mkdir(exist_ok=True)
        tmp = RESULTS.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(RESULTS)
        print(f"seed {seed}: {time.time() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
