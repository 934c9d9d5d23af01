"""nutpie's sampler settings compared by ``bench_nutpie.py --settings ...`` and the
``low_rank="auto"`` rule checked against them (``--models``, ``--merge``):
bench/results/nutpie_settings.json, nutpie_lowrank*.json."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import arviz as az
from nutpie_shapes import SHAPES

__all__ = ["LOW_RANK_RUNS", "NUTPIE_SETTINGS", "merge_settings", "rule_check", "settings_runs",
           "structure"]


# nutpie sampler settings compared by --settings (nutpie.sample keyword arguments)
NUTPIE_SETTINGS = {
    "default": {},
    "adam": {"step_size_adapt_method": "adam"},
    "switch40": {"mass_matrix_switch_freq": 40},
    "switch160": {"mass_matrix_switch_freq": 160},
    "no_grad_mass": {"use_grad_based_mass_matrix": False},
    "jitter0": {"step_size_jitter": 0.0},
    "low_rank": {"low_rank": True},  # nutpie's low-rank mass matrix with its defaults
    # the low-rank mass matrix at higher target acceptance rates (smaller steps)
    "low_rank_delta85": {"low_rank": True, "delta": 0.85},
    "low_rank_delta90": {"low_rank": True, "delta": 0.9},
    # sample(low_rank="auto"): the rule's choice at the rule's target acceptance rate
    # (inference/nutpie_rule.py)
    "auto": {"low_rank": "auto"},
    # nutpie's low-rank knobs: eigenvalues kept outside [1/c, c] (default c = 2) and the
    # regularisation of the draw and gradient covariances (default 1e-5)
    "low_rank_cut4": {"low_rank": True, "mass_matrix_eigval_cutoff": 4.0},
    "low_rank_cut10": {"low_rank": True, "mass_matrix_eigval_cutoff": 10.0},
    "low_rank_gamma1e-3": {"low_rank": True, "mass_matrix_gamma": 1e-3},
    "low_rank_gamma1e-2": {"low_rank": True, "mass_matrix_gamma": 1e-2},
    "low_rank_gamma1e-1": {"low_rank": True, "mass_matrix_gamma": 1e-1},
    "low_rank_gamma1": {"low_rank": True, "mass_matrix_gamma": 1.0},
    "low_rank_switch40": {"low_rank": True, "mass_matrix_switch_freq": 40},
}


def settings_runs(progs: dict, args) -> dict:
    """min ESS_bulk per 1000 leapfrog steps (warm-up + sampling: what a run of fixed length
    costs, free of the machine load) of nutpie with each of ``args.settings``, per seed."""
    from bayesglmm.inference.nutpie import sample_nutpie
    out: dict[str, dict] = {}
    for key, (m, names) in progs.items():
        compiled, bs = m.compile(verbose=False), m.bridgestan_model(False)
        out[key] = {"structure": structure(m)}
        use = out[key]["structure"]["rule_low_rank"]
        print(key, out[key]["structure"], flush=True)
        for label in args.settings:
            rows = []
            extra = dict(NUTPIE_SETTINGS[label])
            low_rank = extra.pop("low_rank", False)
            delta = extra.pop("delta", 0.8)
            if low_rank == "auto":
                low_rank = use
                delta = out[key]["structure"]["rule_min_delta"] or 0.8
            for seed in args.seeds:
                c0 = time.process_time()
                params, draws, stats, _, _ = sample_nutpie(
                    compiled, bs, m.program, data=m.run_program.data, chains=args.chains,
                    warmup=args.warmup, sampling=args.sampling, thin=1, seed=seed, delta=delta,
                    max_treedepth=10, verbose=False, save_warmup=True, low_rank=low_rank,
                    nutpie_settings=extra)
                cpu = time.process_time() - c0
                ess, worst = min((float(az.ess(draws[:, :, i], method="bulk")), p.user)
                                 for i, p in enumerate(params)
                                 if (p.stan in names if names else not p.user.startswith("r_re")))
                steps, warm = int(stats["n_steps"].sum()), int(stats["warmup"]["n_steps"].sum())
                rows.append({"seed": seed, "min_ess_bulk": round(ess, 1),
                             "min_ess_variable": worst, "leapfrog_steps": steps,
                             "leapfrog_steps_warmup": warm,
                             "ess_per_1000_steps_with_warmup": round(1000 * ess / (steps + warm), 3),
                             "divergent": int(stats["diverging"].sum()),
                             "cpu_s": round(cpu, 3),
                             "cpu_us_per_step": round(1e6 * cpu / (steps + warm), 2),
                             "ess_per_cpu_s": round(ess / cpu, 1),
                             "loadavg_1min": round(os.getloadavg()[0], 2)})
            per = [r["ess_per_1000_steps_with_warmup"] for r in rows]
            out[key][label] = {"settings": NUTPIE_SETTINGS[label], "runs": rows,
                               "median_ess_per_1000_steps_with_warmup": statistics.median(per),
                               "median_min_ess_bulk": statistics.median(r["min_ess_bulk"]
                                                                        for r in rows),
                               "median_steps_warmup": statistics.median(r["leapfrog_steps_warmup"]
                                                                        for r in rows),
                               "median_steps": statistics.median(r["leapfrog_steps"]
                                                                 for r in rows),
                               "median_ess_per_cpu_s": statistics.median(r["ess_per_cpu_s"]
                                                                         for r in rows),
                               "median_cpu_us_per_step": statistics.median(
                                   r["cpu_us_per_step"] for r in rows),
                               "divergent_per_seed": [r["divergent"] for r in rows]}
            base = out[key].get("default")
            if base:
                out[key][label]["over_default"] = round(
                    statistics.median(per) / base["median_ess_per_1000_steps_with_warmup"], 3)
                out[key][label]["cpu_over_default"] = round(
                    out[key][label]["median_ess_per_cpu_s"] / base["median_ess_per_cpu_s"], 3)
            print(key, label, {k: v for k, v in out[key][label].items() if k != "runs"},
                  flush=True)
    return out


LOW_RANK_RUNS = ("low_rank", "low_rank_delta85", "low_rank_delta90")


def rule_check(programs: dict) -> dict:
    """Per model run with ``default`` and at least one low-rank setting
    (:data:`LOW_RANK_RUNS`): the ``low_rank="auto"`` rule's choice against the measurements.
    Per low-rank setting its ratios to the diagonal mass matrix (per leapfrog step and per CPU
    second, medians over the seeds) and the divergences summed over the seeds; ``better`` is
    the setting with the most min ESS_bulk per CPU second among those with no more
    divergences than the diagonal one (``default`` among them); ``agrees``: the rule's mass
    matrix (``rule_setting``: the low-rank setting at the rule's target acceptance rate, or
    ``default``) is ``better``'s."""
    out = {}
    for name, prog in programs.items():
        runs = [k for k in LOW_RANK_RUNS if k in prog]
        if "default" not in prog or not runs:
            continue
        d = prog["default"]
        div_d = sum(d["divergent_per_seed"])
        per = {}
        for k in runs:
            lr = prog[k]
            per[k] = {"per_step": round(lr["median_ess_per_1000_steps_with_warmup"]
                                        / d["median_ess_per_1000_steps_with_warmup"], 3),
                      "per_cpu_s": round(lr["median_ess_per_cpu_s"] / d["median_ess_per_cpu_s"],
                                         3),
                      "divergent": sum(lr["divergent_per_seed"])}
        safe = {k: v["per_cpu_s"] for k, v in per.items() if v["divergent"] <= div_d}
        better = max(safe, key=safe.get) if safe and max(safe.values()) > 1 else "default"
        st = prog["structure"]
        pick = "default"
        if st["rule_low_rank"]:  # the low-rank setting at the rule's delta (0.8 without one)
            delta = st.get("rule_min_delta") or 0.8
            pick = next(k for k in LOW_RANK_RUNS
                        if NUTPIE_SETTINGS[k].get("delta", 0.8) == delta)
        out[name] = {"rule": "low-rank" if st["rule_low_rank"] else "diagonal",
                     "rule_setting": pick, "reason": st["rule_reason"],
                     "divergent_diagonal": div_d, "low_rank": per, "better": better,
                     "agrees": (pick == "default") == (better == "default")}
    return out


def structure(model) -> dict:
    """A model's structure (every feature) and the ``low_rank="auto"`` rule's decision."""
    from bayesglmm.inference.nutpie_rule import low_rank_choice, mass_matrix_features

    features = mass_matrix_features(model.spec, model.bridgestan_model(False).param_unc_num(),
                                     full=True)
    choice = low_rank_choice(features)
    return {**features, "rule_low_rank": choice.low_rank, "rule_reason": choice.reason,
            "rule_min_delta": choice.min_delta}


def merge_settings(paths: list[Path], restructure: bool = False) -> dict:
    """One --settings result from several runs' JSON files (``--merge``): each model's
    settings from every file (a later file's run of the same model and setting replaces an
    earlier one), the ratios to nutpie's defaults recomputed, every file's load kept.
    ``restructure``: each model's structure and the rule's decision recomputed with the
    current rule (the models rebuilt from :data:`SHAPES`; nothing sampled)."""
    out: dict = {"programs": {}, "runs_merged": []}
    for path in paths:
        part = json.loads(Path(path).read_text())
        if "runs_merged" in part:  # an earlier merge: its runs, as it recorded them
            out["runs_merged"].extend(part["runs_merged"])
        else:
            out["runs_merged"].append({"file": Path(path).name, "generated": part["generated"],
                                       "machine": part["machine"], "settings": part["settings"]})
        for key in ("benchmark", "metric"):
            out[key] = part[key]
        for name, prog in part["programs"].items():
            out["programs"].setdefault(name, {}).update(prog)
    if restructure:
        for name, prog in out["programs"].items():
            prog["structure"] = structure(SHAPES[name]()[0])
    for prog in out["programs"].values():
        base = prog.get("default")
        for label, res in prog.items():
            if label == "structure" or not base:
                continue
            res["over_default"] = round(res["median_ess_per_1000_steps_with_warmup"]
                                        / base["median_ess_per_1000_steps_with_warmup"], 3)
            res["cpu_over_default"] = round(res["median_ess_per_cpu_s"]
                                            / base["median_ess_per_cpu_s"], 3)
    out["rule_check"] = rule_check(out["programs"])
    return out
