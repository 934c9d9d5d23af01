"""Batch benchmark (fit_many) -> bench/results/batch.json, and the recovery study of
docs/many-fits.md -> bench/results/batch_recovery.json.

Throughput: ``--n`` (200) sleepstudy-sized datasets simulated from
``lmer(Reaction ~ Days + (Days | Subject))`` (flat prior; lme4's REML estimates as the true
values), fitted with ``optimize()`` on a Dask LocalCluster of 1 worker and of 2 workers (both
clusters started before timing, and warmed up by a small batch so that each worker has built
the model), alternated A/B/A/B; fits per second and the ratio 2 workers / 1 worker per round.

Overhead: the same datasets through ``fit_many(workers=None)`` (in this process) and through a
plain loop ``[model.update(data=d).optimize() for d in datasets]``, alternated A/B/B/A; the
per-fit overhead is the difference of the two wall times divided by the number of fits, and
the same for this process's CPU time (less affected by other jobs on the machine).

Recovery (``--recovery``): 200 datasets from the debate model
``lmer(sat ~ talk + perf + (1 | group), prior_normal())`` at its MAP estimates, fitted with
``optimize()`` and with ``sample()`` (``--sample-n`` datasets, 2 chains of 500 + 500 to keep
the run short); bias, RMSE and 95% coverage per parameter, the SD of the estimates against
the mean reported se, and the misses on each side. Then the same on a second, independent set
(``--check-n`` datasets with optimize(), ``--check-sample-n`` of them with sample(); another
seed), to tell a property of the intervals from the luck of one set of 200.

The machine is shared by other jobs: the load average is recorded at the start and end.
Usage: ``python bench/bench_batch.py [--n 200] [--rounds 3] [--recovery] [--sample-n 200]
[--check-n 1000] [--check-sample-n 500]``.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bayesglmm  # noqa: E402
from bayesglmm.batch.dask_exec import local_client  # noqa: E402

# lme4 1.1-31, lmer(Reaction ~ Days + (Days | Subject), sleepstudy) REML estimates (the
# sleepstudy_lme4_reml.json reference of the test suite)
SLEEP_TRUE = {"Intercept": 251.405, "b[Days]": 10.467, "sigma": 25.592,
              "sd[Subject:Int]": 24.741, "sd[Subject:Days]": 5.922, "corr[Int,Days]": 0.066}


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "load_average_at_start": list(os.getloadavg())}


def throughput(n: int, rounds: int) -> dict:
    m = bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", data=bayesglmm.load_sleepstudy())
    m.compile(verbose=False)
    sim = m.simulate(n, SLEEP_TRUE, seed=1)
    data = list(sim)
    out: dict = {"n_datasets": n, "model": m.call(), "method": "optimize", "rounds": []}
    clients = {}
    for w in (1, 2):
        t0 = time.perf_counter()
        clients[w] = local_client(w)
        bayesglmm.fit_many(m, data[: 2 * w], client=clients[w][0], progress=False)  # warm-up
        out[f"startup_and_warmup_s_{w}_workers"] = time.perf_counter() - t0
    try:
        for r in range(rounds):
            row = {"load_average": list(os.getloadavg())}
            for w in ((1, 2) if r % 2 == 0 else (2, 1)):  # ABBA: cancels a drift of the load
                t0 = time.perf_counter()
                res = bayesglmm.fit_many(m, data, client=clients[w][0], progress=False)
                dt = time.perf_counter() - t0
                assert res.n_failed == 0, res.errors
                fit_s = [x.elapsed for x in res.results]
                row[f"seconds_{w}_workers"] = dt
                row[f"fits_per_s_{w}_workers"] = n / dt
                # seconds of one fit measured on the worker (slower when the cores are busy)
                row[f"median_fit_s_{w}_workers"] = statistics.median(fit_s)
                # share of the wall time the workers spent fitting (idle workers: < 1)
                row[f"busy_fraction_{w}_workers"] = sum(fit_s) / (w * dt)
            row["speedup_2_vs_1"] = row["seconds_1_workers"] / row["seconds_2_workers"]
            out["rounds"].append(row)
            print(row, flush=True)
    finally:
        for c, cl in clients.values():
            c.close()
            cl.close()
    out["speedup_2_vs_1_median"] = statistics.median(r["speedup_2_vs_1"] for r in out["rounds"])
    # overhead of the batch machinery vs a plain loop, in this process
    # (wall time, and this process's CPU time: the fits run in this process, one BLAS thread,
    # so the CPU time is little affected by other jobs on the machine)
    def plain_loop():
        for d in data:
            m.update(data=d).optimize(verbose=False)

    def batch():
        bayesglmm.fit_many(m, data, progress=False)

    rows = []
    for r in range(rounds):
        row = {"load_average": list(os.getloadavg())}
        for name, fn in ((("loop", plain_loop), ("fit_many", batch)) if r % 2 == 0 else
                         (("fit_many", batch), ("loop", plain_loop))):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            row[f"{name}_s"] = time.perf_counter() - t0
            row[f"{name}_cpu_s"] = time.process_time() - c0
        row["overhead_ms_per_fit"] = 1000 * (row["fit_many_s"] - row["loop_s"]) / n
        row["overhead_cpu_ms_per_fit"] = 1000 * (row["fit_many_cpu_s"] - row["loop_cpu_s"]) / n
        rows.append(row)
        print(rows[-1], flush=True)
    out["overhead"] = rows
    for k in ("overhead_ms_per_fit", "overhead_cpu_ms_per_fit"):
        out[f"{k}_median"] = statistics.median(r[k] for r in rows)
    return out


def _spread(res, truth: dict) -> list[dict]:
    """Per parameter: the SD of the estimates over the datasets against the mean reported se
    (equal when the interval widths are right), and the misses below / above the truth."""
    df = res.to_frame()
    df = df[df["error"].isna()]
    out = []
    for name, t in truth.items():
        g = df[df["parameter"] == name]
        out.append({"parameter": name, "sd_of_estimates": float(g["estimate"].std()),
                    "mean_se": float(g["se"].mean()),
                    "upper_below_truth": float((g["upper"] < t).mean()),
                    "lower_above_truth": float((g["lower"] > t).mean())})
    return out


def _study(m, sim, truth: dict, method: str, **args) -> dict:
    t0 = time.perf_counter()
    res = bayesglmm.fit_many(m, sim, method=method, workers=2, progress=False, **args)
    out = {"seconds": time.perf_counter() - t0, "failed": res.n_failed, "n_datasets": len(sim),
           "recovery": res.recovery().reset_index().to_dict(orient="records"),
           "spread": _spread(res, truth)}
    if method == "sample":
        out["settings"] = "2 chains, 500 warmup + 500 sampling"
        frame = res.to_frame()
        out["datasets_with_divergences"] = int(frame.groupby("dataset").divergences.max()
                                               .gt(0).sum())
    print(method, len(sim), res.recovery(), flush=True)
    return out


def recovery(n: int, sample_n: int, check_n: int, check_sample_n: int) -> dict:
    d = bayesglmm.load_debate()
    m = bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=d, prior=bayesglmm.prior_normal())
    m.compile(verbose=False)
    est = m.optimize(verbose=False).estimates
    truth = {k: round(est[k], 3) for k in ("Intercept", "b[talk]", "b[perf]", "sigma",
                                            "sd[group:Int]")}
    smp = {"chains": 2, "warmup": 500, "sampling": 500, "seed": 1}
    sim = m.simulate(n, truth, seed=2026)
    out = {"model": m.call(), "truth": truth, "n_datasets": n,
           "intervals": {"optimize": "Wald on the unconstrained scale (log for SDs), "
                                     "transformed back", "sample": "2.5% and 97.5% quantiles"}}
    out["optimize"] = _study(m, sim, truth, "optimize")
    out["sample"] = _study(m, sim[:sample_n], truth, "sample", **smp)
    if check_n:  # a second, independent set of datasets (another seed)
        check = m.simulate(check_n, truth, seed=7)
        out["check"] = {"seed": 7, "optimize": _study(m, check, truth, "optimize")}
        if check_sample_n:
            out["check"]["sample"] = _study(m, check[:check_sample_n], truth, "sample", **smp)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--recovery", action="store_true")
    ap.add_argument("--sample-n", type=int, default=200)
    ap.add_argument("--check-n", type=int, default=1000)
    ap.add_argument("--check-sample-n", type=int, default=500)
    a = ap.parse_args()
    res_dir = REPO / "bench" / "results"
    if a.recovery:
        res = {"machine": machine(), "note": "shared 2-core machine: see the load averages; the seconds depend on the load, bias and coverage do not",
               **recovery(a.n, a.sample_n, a.check_n, a.check_sample_n)}
        res["machine"]["load_average_at_end"] = list(os.getloadavg())
        (res_dir / "batch_recovery.json").write_text(json.dumps(res, indent=1) + "\n")
        return
    res = {"machine": machine(),
           "note": "shared 2-core machine with other jobs running: see the load averages",
           **throughput(a.n, a.rounds)}
    res["machine"]["load_average_at_end"] = list(os.getloadavg())
    (res_dir / "batch.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
