"""Generic vs specific programs: cost per gradient and NUTS efficiency -> bench/results/generic.json.

For each benchmark model the model's own (specific) program and its family's generic program
(bayesglmm/generic.py) are compiled (or taken from the cache) and loaded in BridgeStan with the
model's data. Both give the same log density at the same unconstrained point (tests/test_generic.py),
so the only difference is the cost of a gradient:

* gradient: ``log_density_gradient`` at the same fixed random points, timed in alternating
  blocks (A, B, A, B, ...; ``--rounds`` rounds of ``--evals`` evaluations each); the ratio of
  the medians of the per-block times is reported;
* NUTS (``--nuts``): CmdStan's sampler on both programs with the same seed, one chain after the
  other, alternating, ``--nuts-reps`` times: wall time, leapfrog steps, min ESS_bulk over the
  parameters and min ESS_bulk per second.

The machine is shared (2 cores, other jobs running): the JSON records the load average before
and after; ratios from alternating blocks are robust to slow drifts of the load, not to bursts.

* instructions (``--callgrind N``): valgrind's callgrind counts the instructions executed in
  Stan's gradient of the log density (``stan::math::gradient``) over N gradients
  (bench/gradient_child.py); exact, and
  independent of the machine load.

Usage: ``python bench/bench_generic.py [--rounds 30] [--evals 200] [--nuts [--nuts-only MODEL ...]]
[--callgrind 200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bayesglmm  # noqa: E402
from bayesglmm import generic  # noqa: E402
from bayesglmm.toolchain import compile_model  # noqa: E402
from bayesglmm.toolchain.programs import program_name  # noqa: E402


def models() -> dict[str, bayesglmm.Model]:
    sleep = bayesglmm.load_sleepstudy()
    debate = bayesglmm.load_debate()
    cbpp = pd.read_csv(REPO / "tests" / "reference" / "cbpp.csv",
                       dtype={"herd": str, "period": str})
    y = sleep["Reaction"]
    return {
        "sleepstudy_flat": bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", sleep),
        "sleepstudy_weak": bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", sleep,
                                          prior=bayesglmm.prior_weak(),
                                          y_range=(float(y.min()), float(y.max()))),
        "cbpp_flat": bayesglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                                     cbpp, family="binomial"),
        "debate_slopes": bayesglmm.lmer("sat ~ talk * perf + (1 + talk | group)", debate,
                                        prior=bayesglmm.prior_normal()),
        "debate_lm": bayesglmm.lm("sat ~ talk + perf", debate),
        # the zero-inflated families and the common-effect sequential model (own programs)
        "debate_zip": bayesglmm.glmer("talk ~ perf + (1 | group)", debate,
                                      family="zero_inflated_poisson", zi="~ sat"),
        "debate_zinb_normal": bayesglmm.glmer("talk ~ perf + (1 | group)", debate,
                                              family="zero_inflated_neg_binomial", zi="~ 1",
                                              prior=bayesglmm.prior_normal(phi_rate=0.3)),
        "debate_sequential_common": bayesglmm.glmer(
            "sat ~ talk + perf + (1 | group)", debate, family="sequential",
            category_specific=False, prior=bayesglmm.prior_normal(cutpoint_sd=5)),
    }


def programs(m: bayesglmm.Model):
    spec = m.spec
    fam = spec.family.program  # the family's generic program, or its variant's
    spec_cm = compile_model(m.program.code, name="model", verbose=False)
    gen_cm = compile_model(generic.generic_code(spec.family), name=program_name(fam),
                           verbose=False)
    return (spec_cm, m.program.data), (gen_cm, generic.generic_data(spec))


def time_gradients(bs_a, bs_b, points, rounds: int) -> dict:
    blocks: dict[str, list[float]] = {"specific": [], "generic": []}
    for _ in range(rounds):
        for name, bs in (("specific", bs_a), ("generic", bs_b)):
            t0 = time.perf_counter()
            for x in points:
                bs.log_density_gradient(x, propto=False, jacobian=True)
            blocks[name].append((time.perf_counter() - t0) / len(points))
    med = {k: statistics.median(v) for k, v in blocks.items()}
    return {"us_per_gradient": {k: v * 1e6 for k, v in med.items()},
            "ratio_generic_over_specific": med["generic"] / med["specific"],
            "block_ratios_quartiles": np.quantile(
                np.array(blocks["generic"]) / np.array(blocks["specific"]), [0.25, 0.5, 0.75]
            ).tolist()}


def callgrind_instructions(cm, data, n: int, tmp: Path) -> float:
    """Instructions per gradient inside Stan's gradient of the log density (valgrind's callgrind,
    collection switched on in Stan's gradient of the log density only): exact counts, independent of the load."""
    import re
    import subprocess

    from bayesglmm.toolchain.cache import encode_data

    dfile = tmp / f"{cm.hash}.json"
    dfile.write_text(encode_data(data))
    out = tmp / f"{cm.hash}.callgrind"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--collect-atstart=no",
           "--toggle-collect=*stan::math::gradient<*log_density_fn*", sys.executable,
           str(REPO / "bench" / "gradient_child.py"), str(cm.so_file), str(dfile), str(n)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=3600)
    m = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.M)
    if m is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(m.group(1)) / n


def nuts(cm, data, seed: int) -> dict:
    import cmdstanpy

    cmdstanpy.utils.get_logger().setLevel(40)
    t0 = time.perf_counter()
    fit = cm.cmdstan_model().sample(data=data, chains=1, seed=seed, iter_warmup=1000,
                                    iter_sampling=1000, show_progress=False, show_console=False)
    wall = time.perf_counter() - t0
    s = fit.summary()
    col = "ESS_bulk" if "ESS_bulk" in s.columns else "N_Eff"  # CmdStan 2.35's stansummary
    ess = s[col].drop(labels=[n for n in s.index if n == "lp__"]).dropna()
    steps = int(fit.method_variables()["n_leapfrog__"].sum())
    return {"wall_s": wall, "leapfrog": steps, "min_ess_bulk": float(ess.min()),
            "min_ess_bulk_per_s": float(ess.min() / wall), "lp_mean": float(s.loc["lp__", "Mean"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--evals", type=int, default=200)
    ap.add_argument("--nuts", action="store_true")
    ap.add_argument("--nuts-reps", type=int, default=2)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--nuts-only", nargs="*", metavar="MODEL",
                    help="run the NUTS comparison on these models only (default: all)")
    ap.add_argument("--callgrind", type=int, default=0, metavar="N",
                    help="also count instructions per gradient with valgrind over N gradients")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "generic.json"))
    a = ap.parse_args()
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "loadavg_before": os.getloadavg()},
           "note": "shared 2-core machine with other jobs running: absolute times are noisy; "
                   "the ratios come from alternating blocks in one run",
           "settings": {"rounds": a.rounds, "evals": a.evals, "nuts": a.nuts,
                        "callgrind": a.callgrind, "nuts_only": a.nuts_only}, "models": {}}
    for name, m in models().items():
        if a.only and name not in a.only:
            continue
        (cs, ds), (cg, dg) = programs(m)
        bs_s, bs_g = cs.bridgestan_model(ds), cg.bridgestan_model(dg)
        n = bs_s.param_unc_num()
        assert bs_g.param_unc_num() == n
        rng = np.random.default_rng(1)
        points = [rng.normal(0, 0.5, size=n) for _ in range(a.evals)]
        rec = {"formula": m.spec.formula, "family": m.spec.family.name, "n_obs": m.spec.n_obs,
               "n_unconstrained": n, "gradient": time_gradients(bs_s, bs_g, points, a.rounds)}
        if a.callgrind:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                ins = {k: callgrind_instructions(c, d, a.callgrind, Path(tmp))
                       for k, c, d in (("specific", cs, ds), ("generic", cg, dg))}
            rec["instructions_per_gradient"] = ins
            rec["instructions_ratio_generic_over_specific"] = ins["generic"] / ins["specific"]
            print(name, "instructions", json.dumps(ins), round(ins["generic"] / ins["specific"], 4),
                  flush=True)
        if a.nuts and (not a.nuts_only or name in a.nuts_only):
            load = os.getloadavg()
            runs: dict[str, list[dict]] = {"specific": [], "generic": []}
            for r in range(a.nuts_reps):
                for key, cm, d in (("specific", cs, ds), ("generic", cg, dg)):
                    runs[key].append(nuts(cm, d, seed=100 + r))
            rec["nuts"] = runs
            rec["nuts_loadavg"] = {"before": load, "after": os.getloadavg()}
            pooled = {k: sum(r["min_ess_bulk"] for r in v) / sum(r["wall_s"] for r in v)
                      for k, v in runs.items()}
            rec["nuts_ratio_pooled_min_ess_per_s"] = pooled["generic"] / pooled["specific"]
            rec["nuts_ratio_min_ess_per_s"] = statistics.median(
                g["min_ess_bulk_per_s"] / s["min_ess_bulk_per_s"]
                for g, s in zip(runs["generic"], runs["specific"]))
        out["models"][name] = rec
        print(name, json.dumps(rec["gradient"]), flush=True)
    out["machine"]["loadavg_after"] = os.getloadavg()
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
