"""Centred vs non-centred group-level effects under NUTS -> bench/results/centre*.json.

Two modes.

**Targets** (default, -> ``centre.json``): issue 15's sampling targets for
``lmer("y ~ x + (x | g)")`` on 100,000 simulated rows and 1,000 groups (bench_large.simulate:
100 rows per group; flat priors), 4 chains x (1000 + 1000) with the program ``param="auto"``
chooses (centred here): R-hat < 1.01 and min ESS_bulk > 400 for every parameter (random effects
included), min ESS_bulk per second at least 10x that of the non-centred program on the same
data, and peak memory of the whole run (Python + the CmdStan processes) < 600 MB. Each run is a
fresh subprocess (its peak memory is its own); a thread samples the resident memory of the
process tree (Python + the CmdStan process that runs the chains) every 0.2 s; ``getrusage`` gives
Python's own peak and the largest child's. Both runs use the family's generic program (the
parameterisation is a data flag there), so the cost per gradient is the same program's; the
pointwise log-likelihood is left at its default for this size (computed on demand, not written).

The non-centred program crawls; by default it gets 4 chains x (300 + 300) (``--nc-iter``).
Why a shorter run does not favour the centred program: its warm-up and sampling keep the same
1:1 proportion, so the time per draw is comparable, and the ESS of a slowly mixing chain is
overestimated by a short run (the autocorrelations at long lags are not seen): ESS per draw
from the first half of each of its chains is reported beside the full one
(``ess_per_draw_first_half`` vs ``ess_per_draw``) to check that direction on the run itself.

**Rule** (``--rule``, -> ``centre_rule.json``): the ``"auto"`` rule of :mod:`bayesglmm.reparam`
against the measured efficiency of both parameterisations on small models: sleepstudy
``(Days | Subject)``, debate ``(1 | group)`` and ``(1 + talk | group)`` (normal priors), cbpp
``(1 | herd)`` (binomial, flat priors), a data-poor simulation (100 groups x 4 rows, group SD 0.3
against residual SD 1) and bench_large.simulate at 20,000 rows x 200 groups. Each model runs
both ways with several seeds (4 x (1000 + 1000)); the 20k model's figures are read from
``centre_quick.json`` (``--quick`` targets run: one seed, 4 x (300 + 300), min ESS there
includes ``lp``), its rule statistic is computed here. The measure is min ESS_bulk per 1000 gradient evaluations (leapfrog steps of the sampling phase),
which does not depend on the machine's load. ``lp`` is left out of the minimum: it is each
program's log density in its own coordinates, not a quantity the two share. The old rule
(median rows per group >= 20) is recorded beside the new one.

Usage: ``python bench/bench_centre.py [--rule] [--quick] [--nc-iter W S] [--big-iter W S]
[--seeds 1 2 3]`` (``--quick``: 20,000 rows x 200 groups for the targets, 4 x (300 + 300)).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
RESULTS = REPO / "bench" / "results"
SEED = 15
NEAR_TIE = 0.8  # the rule's choice within 20% of the better one's ESS per gradient: a near tie
MACHINE_NOTE = ("shared machine (2 cores, other agents working): times are noisy; ESS per "
                "gradient is robust to the load, ESS per second is not; see load_before/"
                "load_after of each run")


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _ess_stats(fit, sampling: int) -> dict:
    """min ESS_bulk and max R-hat over every reported quantity but ``lp``."""
    s = fit.summary(inc_random=True)
    lp = float(s.loc["lp", "ess_bulk"]) if "lp" in s.index else None
    s = s.drop(index="lp", errors="ignore")
    steps = int(np.sum(fit._stats["n_steps"]))
    min_ess = float(s["ess_bulk"].min())
    return {
        "min_ess_bulk": round(min_ess, 1), "min_ess_bulk_parameter": str(s["ess_bulk"].idxmin()),
        "lp_ess_bulk": None if lp is None else round(lp, 1),
        "max_rhat": round(float(s["rhat"].max()), 4),
        "max_rhat_parameter": str(s["rhat"].idxmax()),
        "leapfrog_steps_sampling": steps,
        "min_ess_bulk_per_1000_gradients": round(1000 * min_ess / steps, 4),
        "mean_tree_depth": round(float(np.mean(fit._stats["tree_depth"])), 2),
        "divergent": int(fit.num_divergent),
    }


def run_one(model, label: str, warmup: int, sampling: int, seed: int = SEED) -> dict:
    """Sample ``model`` (4 chains) in this process: ESS, R-hat, leapfrog steps, time."""
    model.compile(verbose=False)
    load0 = _load()
    t0 = time.perf_counter()
    fit = model.sample(chains=4, warmup=warmup, sampling=sampling, seed=seed, verbose=False)
    wall = time.perf_counter() - t0
    out = {"case": label, "param": model.re_param, "backend": fit.backend, "seed": seed,
           "chains": 4, "warmup": warmup, "sampling": sampling, "wall_s": round(wall, 2)}
    out.update(_ess_stats(fit, sampling))
    out["min_ess_bulk_per_s"] = round(out["min_ess_bulk"] / wall, 3)
    out.update(load_before=load0, load_after=_load())
    print(json.dumps({k: out[k] for k in ("case", "seed", "wall_s", "min_ess_bulk", "max_rhat",
                                          "min_ess_bulk_per_1000_gradients")}), flush=True)
    return out


# ----------------------------------------------------------------------------- targets (100k)


class TreeMemory:
    """Peak of the summed resident memory of this process and all its descendants, sampled
    every ``every`` seconds in a thread."""

    def __init__(self, every: float = 0.2) -> None:
        import psutil

        self._me = psutil.Process()
        self._every = every
        self.peak_mb = 0.0
        self.peak_children_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = children = 0
            try:
                total = self._me.memory_info().rss
                for c in self._me.children(recursive=True):
                    try:
                        children += c.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self.peak_mb = max(self.peak_mb, (total + children) / 2**20)
            self.peak_children_mb = max(self.peak_children_mb, children / 2**20)
            self._stop.wait(self._every)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def big_child(param: str, rows: int, groups: int, warmup: int, sampling: int,
              every: float = 0.2) -> dict:
    """One 100k sample() run (in a subprocess), with its memory (sampled every ``every`` s)."""
    import warnings

    from bench_large import simulate

    import bayesglmm

    with TreeMemory(every) as mem:
        d = simulate(rows, groups=groups)
        m = bayesglmm.lmer("y ~ x + (x | g)", d, param=param)
        m.compile(verbose=False)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = m.sample(chains=4, warmup=warmup, sampling=sampling, seed=SEED, verbose=False)
        wall = time.perf_counter() - t0
        stats = _ess_stats(fit, sampling)
    out = {"case": f"{rows}x{groups} param={param}", "param": m.re_param, "backend": fit.backend,
           "compute_log_lik": int(m.run_program.data["compute_log_lik"]),
           "chains": 4, "warmup": warmup, "sampling": sampling, "wall_s": round(wall, 2)}
    out.update(stats)
    out["min_ess_bulk_per_s"] = round(stats["min_ess_bulk"] / wall, 4)
    # ESS per draw from the first half of every chain, against the whole run's
    out.update(first_half_check(fit, sampling))
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out["memory"] = {
        "peak_tree_rss_mb": round(mem.peak_mb, 1),
        "peak_children_rss_mb": round(mem.peak_children_mb, 1),
        "python_maxrss_mb": round(self_kb / 1024, 1),
        "largest_child_maxrss_mb": round(child_kb / 1024, 1),
        "upper_bound_mb": round((self_kb + child_kb) / 1024, 1),
        "how": f"peak_tree_rss_mb: the largest sum of resident memory of Python and every "
               f"descendant (CmdStan: one process running the 4 chains), sampled every {every} s "
               "over the whole run (data, model, sampling, reading the draws, the summary); "
               "upper_bound_mb: Python's peak + the largest child's peak (getrusage; a child's "
               "peak counts the pages it shares with Python when it is forked, so this "
               "overstates)",
    }
    return out


def first_half_check(fit, sampling: int) -> dict:
    """min ESS_bulk per draw over the parameters of the whole run and of the first half of
    every chain (arviz on the same draws)."""
    import arviz as az

    draws = np.asarray(fit._draws)  # chains x draws x parameters
    keep = [i for i, p in enumerate(fit._params) if p.user != "lp"]
    full = [float(az.ess(draws[:, :, i], method="bulk")) for i in keep]
    half = [float(az.ess(draws[:, : sampling // 2, i], method="bulk")) for i in keep]
    f_min, h_min = float(np.nanmin(full)), float(np.nanmin(half))
    n = draws.shape[0] * draws.shape[1]
    return {"ess_per_draw": round(f_min / n, 5),
            "ess_per_draw_first_half": round(h_min / (n / 2), 5)}


def run_big(param: str, rows: int, groups: int, it: tuple[int, int], poll: float = 0.2) -> dict:
    load0 = _load()
    p = subprocess.run([sys.executable, __file__, "--child", param, str(rows), str(groups),
                        str(it[0]), str(it[1]), "--poll", str(poll)], capture_output=True,
                       text=True, cwd=str(REPO))
    if p.returncode != 0:
        raise SystemExit(f"{param} run failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res.update(load_before=load0, load_after=_load())
    print(json.dumps({k: res[k] for k in ("case", "wall_s", "min_ess_bulk", "max_rhat",
                                          "min_ess_bulk_per_1000_gradients", "memory")}),
          flush=True)
    return res


def memory_check(a: argparse.Namespace) -> None:
    """The start of the 100k sample() run with the memory sampled every 0.01 s ->
    centre_memory.json: CmdStan's short peak while it reads the data (which sampling every
    0.2 s can miss) next to Python's memory at that time. Python's own peak comes at the end,
    when the draws are read, and grows with their number: the full run measures that."""
    out = run_big("auto", 100_000, 1000, tuple(a.memory_check), poll=0.01)
    out = {"what": "memory of a short 100k x 1,000 sample() run (param='auto', 4 chains), "
                   "process tree sampled every 0.01 s", "run": out,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "note": MACHINE_NOTE},
           "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    (RESULTS / "centre_memory.json").write_text(json.dumps(out, indent=1) + "\n")


def targets(a: argparse.Namespace) -> dict:
    from bench_large import simulate

    import bayesglmm

    rows, groups = (20_000, 200) if a.quick else (100_000, 1000)
    big_iter = tuple(a.big_iter or ((300, 300) if a.quick else (1000, 1000)))
    nc_iter = tuple(a.nc_iter or ((300, 300) if a.quick else (300, 300)))
    # compile once outside the measured runs (the generic program: a data flag per term)
    bayesglmm.lmer("y ~ x + (x | g)", simulate(1000)).compile(verbose=False)
    c = run_big("auto", rows, groups, big_iter)
    nc = run_big("noncentered", rows, groups, nc_iter)
    mem = c["memory"]["peak_tree_rss_mb"]
    summary = {
        "rows": rows, "groups": groups, "auto_choice": c["param"],
        "centred_iter": list(big_iter), "noncentred_iter": list(nc_iter),
        "centred_max_rhat": c["max_rhat"], "centred_min_ess_bulk": c["min_ess_bulk"],
        "centred_min_ess_bulk_parameter": c["min_ess_bulk_parameter"],
        "centred_min_ess_bulk_per_s": c["min_ess_bulk_per_s"],
        "noncentred_min_ess_bulk_per_s": nc["min_ess_bulk_per_s"],
        "ratio_min_ess_bulk_per_s": round(c["min_ess_bulk_per_s"] / nc["min_ess_bulk_per_s"], 1),
        "ratio_min_ess_bulk_per_gradient": round(c["min_ess_bulk_per_1000_gradients"]
                                                 / nc["min_ess_bulk_per_1000_gradients"], 1),
        "centred_peak_tree_rss_mb": mem,
        "met": {"max_rhat < 1.01": c["max_rhat"] < 1.01,
                "min_ess_bulk > 400": c["min_ess_bulk"] > 400,
                "ess_per_s ratio >= 10": c["min_ess_bulk_per_s"] >= 10 * nc["min_ess_bulk_per_s"],
                "peak memory < 600 MB": mem < 600},
        "noncentred_short_run_check": {
            "ess_per_draw": nc["ess_per_draw"],
            "ess_per_draw_first_half": nc["ess_per_draw_first_half"],
            "note": "a first-half ESS per draw above the full run's means that a shorter run "
                    "overstates the non-centred program's efficiency (conservative for the "
                    "ratio)"},
    }
    return {"what": "NUTS, centred (param='auto') vs non-centred group-level effects: y ~ x + "
                    "(x | g) on simulated data (bench_large.simulate); min ESS_bulk over every "
                    "reported quantity but lp (random effects included)",
            "targets": {"max_rhat": 1.01, "min_ess_bulk": 400, "ratio_min_ess_bulk_per_s": 10,
                        "peak_memory_mb": 600},
            "quick": a.quick, "summary": summary, "runs": [c, nc]}


# ----------------------------------------------------------------------------- the rule


def _rule_models():
    import pandas as pd
    from bench_large import simulate

    import bayesglmm

    sleep = bayesglmm.load_sleepstudy()
    debate = bayesglmm.load_debate()
    cbpp = pd.read_csv(REPO / "tests" / "reference" / "cbpp.csv",
                       dtype={"herd": str, "period": str})
    cbpp["failures"] = cbpp["size"] - cbpp["incidence"]
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(100), 4)
    x = rng.normal(size=g.size)
    poor = pd.DataFrame({"y": 1 + 0.5 * x + 0.3 * rng.normal(size=100)[g]
                         + rng.normal(size=g.size), "x": x, "g": g})
    pn = bayesglmm.prior_normal()
    return [
        ("sleepstudy (Days | Subject)", lambda p: bayesglmm.lmer(
            "Reaction ~ Days + (Days | Subject)", sleep, param=p), None),
        ("debate (1 | group)", lambda p: bayesglmm.lmer(
            "sat ~ talk + perf + (1 | group)", debate, prior=pn, param=p), None),
        ("debate (1 + talk | group)", lambda p: bayesglmm.lmer(
            "sat ~ talk + perf + (1 + talk | group)", debate, prior=pn, param=p), None),
        ("cbpp (1 | herd)", lambda p: bayesglmm.glmer(
            "cbind(incidence, failures) ~ period + (1 | herd)", cbpp, family="binomial",
            param=p), None),
        ("data-poor simulated (1 | g), 100 x 4 rows", lambda p: bayesglmm.lmer(
            "y ~ x + (1 | g)", poor, param=p), None),
        ("20000x200 (x | g)", lambda p: bayesglmm.lmer(
            "y ~ x + (x | g)", simulate(20_000, groups=200), param=p), "quick"),
    ]


def rule(a: argparse.Namespace) -> dict:
    from bayesglmm.reparam import AUTO_MIN_INFORMATION, term_information

    models, summary, runs = _rule_models(), {}, []
    for name, build, it in models:
        auto = build("auto")
        spec = auto.spec
        g = spec.groups[0]
        t0 = time.perf_counter()
        info = term_information(spec.response.y, spec.response.trials, spec.fixed.X, g.index,
                                g.Z, g.n_groups)
        rule_ms = 1000 * (time.perf_counter() - t0)
        per = {}
        if it == "quick":  # measured by the --quick targets run: centre_quick.json
            quick = json.loads((RESULTS / "centre_quick.json").read_text())
            for r in quick["runs"]:
                p = "centered" if "auto" in r["case"] else "noncentered"
                per[p] = [r["min_ess_bulk_per_1000_gradients"]]
        for seed in ([] if it == "quick" else a.seeds):  # alternate the two programs
            for p in ("noncentered", "centered"):
                r = run_one(build(p), f"{name} {p}", 1000, 1000, seed=seed)
                runs.append(r)
                per.setdefault(p, []).append(r["min_ess_bulk_per_1000_gradients"])
        med = {p: float(np.median(v)) for p, v in per.items()}
        better = max(med, key=med.get)
        chosen = next(iter(auto.re_param.values()))
        old = "centered" if float(np.median(g.group_sizes)) >= 20 else "noncentered"
        summary[name] = {
            "information": round(info, 3), "rule_ms": round(rule_ms, 2),
            "median_rows_per_group": float(np.median(g.group_sizes)),
            "auto_choice": chosen, "old_rule_choice": old,
            "median_min_ess_bulk_per_1000_gradients": {p: round(v, 3) for p, v in med.items()},
            "per_seed": per, "better": better,
            "auto_over_better": round(med[chosen] / med[better], 3),
            "new_over_old_rule": round(med[chosen] / med[old], 3),
            "ok": med[chosen] >= NEAR_TIE * med[better],
        }
        print(name, json.dumps(summary[name]), flush=True)
    return {"what": "the param='auto' rule (centred when the median over groups of the data / "
                    "prior precision ratio of the least informed direction >= "
                    f"{AUTO_MIN_INFORMATION}) against min ESS_bulk per 1000 gradients (lp left "
                    "out) of both parameterisations, median over seeds",
            "near_tie": f"the rule's choice reaches at least {NEAR_TIE} x the better one's "
                        "median ESS per gradient",
            "seeds": a.seeds, "summary": summary, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=5)
    ap.add_argument("--poll", type=float, default=None)
    ap.add_argument("--memory-check", nargs=2, type=int, default=None,
                    metavar=("WARMUP", "SAMPLING"))
    ap.add_argument("--rule", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--nc-iter", nargs=2, type=int, default=None, metavar=("WARMUP", "SAMPLING"))
    ap.add_argument("--big-iter", nargs=2, type=int, default=None, metavar=("WARMUP", "SAMPLING"))
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    a = ap.parse_args()
    if a.child:
        param, rows, groups, w, s = a.child
        print(json.dumps(big_child(param, int(rows), int(groups), int(w), int(s),
                                   a.poll or 0.2)))
        return
    if a.memory_check:
        memory_check(a)
        return
    load0 = _load()
    out = rule(a) if a.rule else targets(a)
    out.update(machine={"platform": platform.platform(), "cpus": os.cpu_count(),
                        "note": MACHINE_NOTE},
               date=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
               load_start=load0, load_end=_load())
    name = "centre_rule.json" if a.rule else "centre_quick.json" if a.quick else "centre.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()
