"""nutpie against CmdStan's NUTS -> bench/results/nutpie.json.

For each program, in one run, the two samplers of ``Model.sample(sampler=...)`` on the same
compiled program (nutpie on its BridgeStan library, CmdStan on its executable), 4 chains x
(1000 warmup + 1000 draws), max_treedepth 10, for seeds 1-5, each sampler as ``sample()`` runs
it by default (``--delta`` sets one target acceptance rate for both: CmdStan's default is 0.8;
nutpie's too, raised where ``low_rank="auto"`` picks the low-rank mass matrix for a weakly
informed centred term, as for sleepstudy; each run records its rate and mass matrix); within
each seed the order of the two samplers alternates (Stan first on odd seeds, nutpie first on
even seeds) so that changes of the machine load hit both alike.

Programs:

* ``sleepstudy``: ``lmer(Reaction ~ Days + (Days | Subject))`` with the brms-like priors of
  bench/bench_core.py (``our_model()``);
* ``brms_sleepstudy``: brms's own program for the same model (bench/brms_sleepstudy.stan with
  its data, through ``from_stan``), sampled with each sampler, for the ratio ours / brms;
* ``cbpp``: ``glmer(cbind(incidence, failures) ~ period + (1 | herd), binomial)``, flat priors
  (tests/reference/cbpp.csv);
* ``debate``: ``lmer(sat ~ talk + perf + (1 | group), prior_normal())``.

Per run: min ESS_bulk (arviz, rank-normalised) over the model's reported parameters (fixed
effects, sigma, SDs, correlations; not lp or the standardised random effects) per second of
the whole ``Model.sample()`` call (what the user waits for: sampling, reading the draws,
generated quantities and the sampling diagnostics, whose posterior summary of every quantity
is the same code for both samplers), per second of the time to the draws (``fit.elapsed``:
``sample()`` until the fit holds the draws, before the diagnostics), per 1000 leapfrog steps of
the sampling phase, and per 1000 leapfrog steps of warm-up and sampling together (gradient
evaluations: robust to the machine load; the warm-up steps come from an untimed rerun of the
same seed with the warm-up kept, checked to take the same sampling-phase steps). The machine
load average is recorded before each run.

``--profile N`` instead profiles N calls of ``sample()`` per sampler and program with
pyinstrument (after one unprofiled call) and writes bench/results/nutpie_profile.json: the share
of the wall time spent in the sampler itself (nutpie: its Rust sampler, ``PySampler.wait``,
which computes the generated quantities of each draw too; CmdStan: waiting for the CmdStan
processes) and the rest, the fixed overhead of the call (setting up, reading the draws,
building the fit, the sampling diagnostics), with its largest parts. Shares of one process's
wall time are far less sensitive to the machine load than seconds.

``--profile`` also measures the CPU seconds per call outside the sampler (cProfile with the
process's CPU clock; nutpie's chain threads count under ``PySampler.wait``, CmdStan's processes
not at all), which hardly depend on the machine load.

``--profile`` also times paired, alternating nutpie calls with the pointwise log-likelihood
computed in the run (as before) and on demand (now), and counts the instructions of one raw
nutpie run per log-likelihood setting with callgrind (``--callgrind debate ...``; see
bench/nutpie_cost.py): gradient, per-draw generated quantities and nutpie's own share.

``--settings default adam ...`` instead runs nutpie alone with each of the named sampler
settings (``NUTPIE_SETTINGS`` of bench/nutpie_settings.py) and writes
bench/results/nutpie_settings.json: min ESS_bulk per 1000 leapfrog steps of warm-up and
sampling (what a run of fixed length costs, free of the machine load) and per CPU second,
medians over the seeds, and their ratios to nutpie's defaults.

``--models`` runs ``--settings`` on models of different shape instead (:data:`SHAPES`: the
benchmark models and simulated ones, all on the precompiled generic programs) and records
each model's structure and the ``low_rank="auto"`` rule's decision
(bayesglmm/inference/nutpie_rule.py); the setting ``auto`` runs the rule's choice.
``--merge A.json B.json --out C.json`` combines such runs (bench/results/nutpie_lowrank.json).

Usage: ``python bench/bench_nutpie.py [--seeds 1 2 3 4 5] [--programs sleepstudy cbpp ...]
[--profile N [--pairs 5] [--callgrind debate] | --settings default adam ...
[--models sleepstudy lm_corr ...]]``.
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
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "nutpie.json"
PROFILE_RESULTS = HERE / "results" / "nutpie_profile.json"
SETTINGS_RESULTS = HERE / "results" / "nutpie_settings.json"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import arviz as az
import numpy as np
import pandas as pd
from bench_core import PARAMS, brms_data, our_model
from nutpie_settings import NUTPIE_SETTINGS, merge_settings, rule_check, settings_runs
from nutpie_shapes import SHAPES

import bayesglmm
from bayesglmm.inference.nutpie import run_nutpie
from bayesglmm.inference.sampling import run_nuts

SAMPLERS = ("stan", "nutpie")


def models() -> dict[str, tuple[bayesglmm.Model, list[str] | None]]:
    """{name: (model, Stan names of the compared parameters or None = every reported
    non-random-effect parameter)}."""
    sleep = our_model()
    brms = bayesglmm.from_stan(HERE / "brms_sleepstudy.stan", brms_data(sleep))
    cbpp = pd.read_csv(REPO / "tests" / "reference" / "cbpp.csv",
                       dtype={"herd": str, "period": str})
    cbpp["failures"] = cbpp["size"] - cbpp["incidence"]
    return {
        "sleepstudy": (sleep, list(PARAMS)),
        "brms_sleepstudy": (brms, list(PARAMS.values())),
        "cbpp": (bayesglmm.glmer("cbind(incidence, failures) ~ period + (1 | herd)", cbpp,
                                 family="binomial"), None),
        "debate": (bayesglmm.lmer("sat ~ talk + perf + (1 | group)", bayesglmm.load_debate(),
                                  prior=bayesglmm.prior_normal()), None),
    }


def min_ess(fit, stan_names: list[str] | None) -> tuple[float, str]:
    """(min ESS_bulk, its name) over ``stan_names`` or over every reported parameter that is
    not a standardised random effect."""
    idx = [i for i, p in enumerate(fit._params)
           if (p.stan in stan_names if stan_names else not p.user.startswith("r_re"))]
    ess = {fit._params[i].user: float(az.ess(fit._draws[:, :, i], method="bulk")) for i in idx}
    worst = min(ess, key=ess.get)
    return ess[worst], worst


def warmup_steps(model, fit, seed: int, args) -> tuple[int, int]:
    """(leapfrog steps of the warm-up, of the sampling phase) of the run ``run()`` timed
    (``fit``): the same sampler, program, data, seed and settings (the target acceptance rate
    and, with nutpie, the mass matrix the fit ran with), rerun untimed with the warm-up kept
    (both samplers are deterministic given the seed; ``run()`` checks that the sampling-phase
    count is the timed run's)."""
    from bayesglmm.inference.nutpie import defers_log_lik

    settings = dict(chains=args.chains, warmup=args.warmup, sampling=args.sampling, thin=1,
                    seed=seed, delta=fit.delta, max_treedepth=10)
    compiled = model.compile(verbose=False)
    data = model.run_program.data
    if fit.sampler == "nutpie":
        if defers_log_lik(data):  # as sample() runs it
            data = {**data, "compute_log_lik": 0}
        _, stats, _ = run_nutpie(compiled, data, save_warmup=True, verbose=False,
                                 low_rank=fit.mass_matrix == "low-rank", **settings)
        return int(stats["warmup"]["n_steps"].sum()), int(stats["n_steps"].sum())
    fit = run_nuts(compiled.cmdstan_model(), model.run_program.data, save_warmup=True,
                   verbose=False, **settings)
    col = list(fit.column_names).index("n_leapfrog__")
    steps = np.asarray(fit.draws(inc_warmup=True, concat_chains=False))[:, :, col]
    return int(steps[: args.warmup].sum()), int(steps[args.warmup:].sum())


def nutpie_run(model, delta: float) -> SimpleNamespace:
    """What :func:`warmup_steps` reads of a fit: ``sample(sampler="nutpie", delta=delta)``'s
    sampler, target acceptance rate and mass matrix (``low_rank="auto"``)."""
    from bayesglmm.inference.nutpie_rule import resolve_low_rank

    choice = resolve_low_rank("auto", model.spec, model.bridgestan_model(False).param_unc_num())
    return SimpleNamespace(sampler="nutpie", delta=delta,
                           mass_matrix="low-rank" if choice.low_rank else "diagonal")


def run(model, names, sampler: str, seed: int, args) -> dict:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.sample(chains=args.chains, warmup=args.warmup, sampling=args.sampling,
                           seed=seed, delta=args.delta, sampler=sampler, verbose=False)
    wall = time.perf_counter() - t0
    ess, worst = min_ess(fit, names)
    steps = int(fit._stats["n_steps"].sum())
    warm, again = warmup_steps(model, fit, seed, args)
    if again != steps:
        raise RuntimeError(f"{sampler} seed {seed}: the rerun with the warm-up kept took "
                           f"{again} sampling steps, the timed run {steps}")
    return {"seed": seed, "sampler": sampler, "delta": fit.delta,
            "mass_matrix": fit.mass_matrix, "min_ess_bulk": round(ess, 1),
            "min_ess_variable": worst, "draws_s": round(fit.elapsed, 3),
            "wall_s": round(wall, 3), "leapfrog_steps": steps,
            "leapfrog_steps_warmup": warm,
            "divergent": fit.num_divergent, "ess_per_s": round(ess / wall, 2),
            "ess_per_draws_s": round(ess / fit.elapsed, 2),
            "ess_per_1000_steps": round(1000 * ess / steps, 3),
            "ess_per_1000_steps_with_warmup": round(1000 * ess / (steps + warm), 3),
            "loadavg_1min": round(load, 2)}


def ratios(a: list[dict], b: list[dict]) -> dict:
    """Per-seed and summary ratios a / b of ESS/s (whole call; time to the draws) and ESS per
    leapfrog step."""
    per_s = [x["ess_per_s"] / y["ess_per_s"] for x, y in zip(a, b)]
    per_draws = [x["ess_per_draws_s"] / y["ess_per_draws_s"] for x, y in zip(a, b)]
    per_step = [x["ess_per_1000_steps"] / y["ess_per_1000_steps"] for x, y in zip(a, b)]
    per_step_all = [x["ess_per_1000_steps_with_warmup"] / y["ess_per_1000_steps_with_warmup"]
                    for x, y in zip(a, b)]
    return {"ess_per_s": {"per_seed": [round(r, 3) for r in per_s],
                          "median": round(statistics.median(per_s), 3)},
            "ess_per_draws_s": {"per_seed": [round(r, 3) for r in per_draws],
                                "median": round(statistics.median(per_draws), 3)},
            "ess_per_step": {"per_seed": [round(r, 3) for r in per_step],
                             "median": round(statistics.median(per_step), 3)},
            "ess_per_step_with_warmup": {"per_seed": [round(r, 3) for r in per_step_all],
                                         "median": round(statistics.median(per_step_all), 3)},
            "warmup_steps_median": [statistics.median(x["leapfrog_steps_warmup"] for x in a),
                                    statistics.median(y["leapfrog_steps_warmup"] for y in b)],
            "draws_s_median": [round(statistics.median(x["draws_s"] for x in a), 3),
                               round(statistics.median(y["draws_s"] for y in b), 3)],
            "wall_s_median": [round(statistics.median(x["wall_s"] for x in a), 3),
                              round(statistics.median(y["wall_s"] for y in b), 3)]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--programs", nargs="+", default=None)
    ap.add_argument("--models", nargs="+", default=None, choices=list(SHAPES),
                    help="with --settings: these models of different shape (SHAPES) instead "
                         "of the benchmark programs")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--sampling", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--delta", type=float, default=None,
                    help="target acceptance rate of both samplers (default: each sampler's "
                         "default as sample() runs it; nutpie's may be raised by "
                         "low_rank='auto')")
    ap.add_argument("--profile", type=int, default=0,
                    help="profile N sample() calls per sampler and program instead")
    ap.add_argument("--pairs", type=int, default=5,
                    help="with --profile: pairs of nutpie calls, log_lik in the run or not")
    ap.add_argument("--callgrind", nargs="*", default=["debate"],
                    help="with --profile: programs whose raw nutpie run callgrind counts")
    ap.add_argument("--tls", nargs="*", default=["debate"],
                    help="with --profile: programs also built with TLS descriptors and timed")
    ap.add_argument("--settings", nargs="+", default=None, choices=list(NUTPIE_SETTINGS),
                    help="compare nutpie's sampler settings (ESS per leapfrog step) instead; "
                         "put 'default' first")
    ap.add_argument("--merge", nargs="+", type=Path, default=None,
                    help="merge these --settings JSON files into --out instead of running")
    ap.add_argument("--restructure", action="store_true",
                    help="with --merge: recompute each model's structure and the rule's "
                         "decision with the current rule")
    args = ap.parse_args(argv)
    if args.merge:
        result = merge_settings(args.merge, args.restructure)
        result["generated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        out = args.out or SETTINGS_RESULTS
        out.write_text(json.dumps(result, indent=1) + "\n")
        return result

    import nutpie

    if args.models:
        progs = {k: SHAPES[k]() for k in args.models}
    else:
        progs = models()
    if args.programs:
        progs = {k: v for k, v in progs.items() if k in args.programs}
    compile_s = {}
    for key, (m, _) in progs.items():
        t0 = time.perf_counter()
        m.compile(verbose=False)
        compile_s[key] = round(time.perf_counter() - t0, 2)
    load_start = list(os.getloadavg())
    if args.settings:
        result = {"benchmark": "nutpie's sampler settings: min ESS_bulk per 1000 leapfrog steps "
                               "of warm-up and sampling",
                  "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "machine": {"nproc": os.cpu_count(), "nutpie": nutpie.__version__,
                              "loadavg_1_5_15_start": load_start},
                  "settings": {"chains": args.chains, "warmup": args.warmup,
                               "sampling": args.sampling, "seeds": args.seeds,
                               "delta": "0.8 unless the setting gives one"},
                  "metric": "min ESS_bulk over the compared parameters per 1000 leapfrog steps "
                            "(gradient evaluations) of warm-up and sampling, median over seeds; "
                            "over_default: its ratio to nutpie's defaults (as sample() runs it); "
                            "ess_per_cpu_s: per CPU second of the process (nutpie's chain "
                            "threads included; a step of the low-rank mass matrix costs more), "
                            "cpu_over_default its ratio",
                  "programs": settings_runs(progs, args)}
        result["rule_check"] = rule_check(result["programs"])
        result["machine"]["loadavg_1_5_15_end"] = list(os.getloadavg())
        out = args.out or SETTINGS_RESULTS
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        return result
    if args.profile:
        from nutpie_cost import callgrind_counts, log_lik_ab, profile, tls_dialect_ab

        shares = profile(progs, args)
        for key, (m, _) in progs.items():  # nutpie: log_lik in the run or on demand
            if key in shares and "compute_log_lik" in m.run_program.data:
                shares[key]["nutpie"]["log_lik_ab"] = log_lik_ab(
                    m, lambda seed, m=m: sum(warmup_steps(m, nutpie_run(m, 0.8), seed, args)),
                    args.pairs, args.chains, args.warmup, args.sampling)
                print(key, "log_lik_ab", json.dumps(
                    {k: v for k, v in shares[key]["nutpie"]["log_lik_ab"].items()
                     if k != "runs"}), flush=True)
        counts = {key: [callgrind_counts(key, ll, args.chains, args.warmup, args.sampling)
                        for ll in (1, 0)] for key in args.callgrind}
        tls = {key: tls_dialect_ab(progs[key][0], args.pairs, args.chains, args.warmup,
                                   args.sampling) for key in args.tls if key in progs}
        result = {"benchmark": "where the wall time of sample() goes, nutpie and CmdStan",
                  "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "machine": {"nproc": os.cpu_count(), "nutpie": nutpie.__version__,
                              "loadavg_1_5_15_start": load_start,
                              "loadavg_1_5_15_end": list(os.getloadavg())},
                  "settings": {"chains": args.chains, "warmup": args.warmup,
                               "sampling": args.sampling, "delta": 0.8},
                  "metric": "shares of the profiled wall time (pyinstrument) of N sample() "
                            "calls: sampler_share in the sampler itself (nutpie: "
                            "PySampler.wait; CmdStan: waiting for its processes), "
                            "fixed_overhead_share the rest; overhead_parts_share: named "
                            "parts of the rest; cpu_s_per_call: CPU seconds of the process "
                            "(cProfile, process clock); log_lik_ab (nutpie): paired alternating "
                            "calls with log_lik computed in the run (before) or on demand (now), "
                            "CPU and wall seconds per call and CPU us per leapfrog step of "
                            "warm-up and sampling; callgrind: instructions of one raw nutpie run "
                            "(seed 1) with compute_log_lik 1 and 0; tls_dialect: paired raw "
                            "nutpie runs on the cached library and on the same program built "
                            "with -mtls-dialect=gnu2 (bench only), CPU us per leapfrog step",
                  "profiles": shares, "callgrind": counts, "tls_dialect": tls}
        out = args.out or PROFILE_RESULTS
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        return result
    runs: dict[str, dict[str, list[dict]]] = {k: {s: [] for s in SAMPLERS} for k in progs}
    for seed in args.seeds:
        order = SAMPLERS if seed % 2 else SAMPLERS[::-1]
        for key, (m, names) in progs.items():
            for sampler in order:
                r = run(m, names, sampler, seed, args)
                runs[key][sampler].append(r)
                print(f"seed {seed} {key:16s} {sampler:6s} min ESS_bulk {r['min_ess_bulk']:7.1f} "
                      f"({r['min_ess_variable']}) sample() {r['wall_s']:6.2f} s -> "
                      f"{r['ess_per_s']:7.1f} ESS/s, {r['ess_per_1000_steps']:6.2f} per 1000 "
                      f"steps ({r['ess_per_1000_steps_with_warmup']:6.2f} with warm-up), "
                      f"load {r['loadavg_1min']}", flush=True)
    nutpie_vs_stan = {k: ratios(v["nutpie"], v["stan"]) for k, v in runs.items()}
    main_programs = [k for k in ("sleepstudy", "cbpp", "debate") if k in runs]
    result = {
        "benchmark": "nutpie vs CmdStan NUTS (sample(sampler=...)) on the same compiled programs",
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0], "nutpie": nutpie.__version__,
                    "loadavg_1_5_15_start": load_start,
                    "loadavg_1_5_15_end": list(os.getloadavg()),
                    "note": "2 cores shared with other agents' compiles and tests: wall-time "
                            "ratios are noisy; ESS per leapfrog step is not affected by load"},
        "settings": {"chains": args.chains, "warmup": args.warmup, "sampling": args.sampling,
                     "seeds": args.seeds, "max_treedepth": 10,
                     "delta": args.delta if args.delta is not None else (
                         "each sampler's default as sample() runs it (CmdStan 0.8; nutpie 0.8, "
                         "raised by low_rank='auto' where its choice needs more: the rate of "
                         "each run is recorded with it)"),
                     "order": "per seed and program: stan then nutpie on odd seeds, nutpie "
                              "then stan on even seeds"},
        "compile_s": compile_s,
        "metric": "min ESS_bulk (arviz) over the compared parameters per second of the whole "
                  "Model.sample() call (ess_per_s: wall_s, what the user waits for: sampling, "
                  "reading the draws, generated quantities, and the sampling diagnostics' "
                  "posterior summary of every quantity, the same code for both samplers), "
                  "per second of the time to the draws (ess_per_draws_s: fit.elapsed = "
                  "Model.sample() until the fit holds its draws under the users' names, "
                  "before the diagnostics), per 1000 leapfrog "
                  "steps of the sampling phase (ess_per_1000_steps), and per 1000 leapfrog "
                  "steps of warm-up and sampling together (ess_per_1000_steps_with_warmup; "
                  "the warm-up steps counted by an untimed rerun with the same seed and the "
                  "warm-up kept, whose sampling-phase steps equal the timed run's). A "
                  "leapfrog step is one gradient evaluation",
        "compared_parameters": {
            "sleepstudy": list(PARAMS), "brms_sleepstudy": list(PARAMS.values()),
            "cbpp": "every reported parameter except r_re", "debate": "every reported "
            "parameter except r_re"},
        "runs": runs,
        "ratio_nutpie_over_stan": nutpie_vs_stan,
        "median_ratio_ess_per_s_over_programs": (
            round(statistics.median(nutpie_vs_stan[k]["ess_per_s"]["median"]
                                    for k in main_programs), 3) if main_programs else None),
        "goal": "nutpie / stan ESS per second of the whole sample() call >= 1.8 (median over "
                "seeds) on sleepstudy, cbpp and debate",
    }
    if "sleepstudy" in runs and "brms_sleepstudy" in runs:
        ours, brms = runs["sleepstudy"], runs["brms_sleepstudy"]
        result["ratio_ours_over_brms"] = {
            "stan": ratios(ours["stan"], brms["stan"]),
            "nutpie": ratios(ours["nutpie"], brms["nutpie"]),
            "ours_nutpie_over_brms_stan": ratios(ours["nutpie"], brms["stan"]),
        }
    out = args.out or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k.startswith(("ratio", "median"))},
                     indent=1))
    return result


if __name__ == "__main__":
    main()
