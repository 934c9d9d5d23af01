"""Batch benchmark (fit_many) -> bench/results/batch.json, and the recovery study of
docs/many-fits.md -> bench/results/batch_recovery.json.

Throughput: ``--n`` (200) sleepstudy-sized datasets simulated from
``lmer(Reaction ~ Days + (Days | Subject))`` (flat prior; lme4's REML estimates as the true
values), fitted with ``optimize()`` on a Dask LocalCluster of 1 worker and of 2 workers (both
clusters started before timing, and warmed up by a small batch so that each worker has built
the model), alternated A/B/A/B; fits per second and the ratio 2 workers / 1 worker per round.

Overhead: the same datasets through ``fit_many(workers=None)`` (in this process) and through a
plain loop ``[model.update(data=d).optimize() for d in datasets]``, alternated; the per-fit
overhead is the difference of the two wall times divided by the number of fits.

Recovery (``--recovery``): 200 datasets from the debate model
``lmer(sat ~ talk + perf + (1 | group), prior_normal())`` at its MAP estimates, fitted with
``optimize()`` and with ``sample()`` (``--sample-n`` datasets, 2 chains of 500 + 500 to keep
the run short); bias, RMSE and 95% coverage per parameter.

The machine is shared by other jobs: the load average is recorded at the start and end.
Usage: ``python bench/bench_batch.py [--n 200] [--rounds 2] [--recovery] [--sample-n 200]``.
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
    rows = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for d in data:
            m.update(data=d).optimize(verbose=False)
        loop = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = bayesglmm.fit_many(m, data, progress=False)
        batch = time.perf_counter() - t0
        rows.append({"loop_s": loop, "fit_many_s": batch,
                     "overhead_ms_per_fit": 1000 * (batch - loop) / n,
                     "load_average": list(os.getloadavg())})
        print(rows[-1], flush=True)
    out["overhead"] = rows
    out["overhead_ms_per_fit_median"] = statistics.median(r["overhead_ms_per_fit"] for r in rows)
    return out


def recovery(n: int, sample_n: int) -> dict:
    d = bayesglmm.load_debate()
    m = bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=d, prior=bayesglmm.prior_normal())
    m.compile(verbose=False)
    est = m.optimize(verbose=False).estimates
    truth = {k: round(est[k], 3) for k in ("Intercept", "b[talk]", "b[perf]", "sigma",
                                            "sd[group:Int]")}
    sim = m.simulate(n, truth, seed=2026)
    out = {"model": m.call(), "truth": truth, "n_datasets": n}
    t0 = time.perf_counter()
    opt = bayesglmm.fit_many(m, sim, workers=2, progress=False)
    out["optimize"] = {"seconds": time.perf_counter() - t0, "failed": opt.n_failed,
                       "recovery": opt.recovery().reset_index().to_dict(orient="records")}
    print(opt.recovery(), flush=True)
    sim_sub = sim[:sample_n]
    t0 = time.perf_counter()
    smp = bayesglmm.fit_many(m, sim_sub, method="sample", workers=2, progress=False,
                             chains=2, warmup=500, sampling=500, seed=1)
    frame = smp.to_frame()
    out["sample"] = {"seconds": time.perf_counter() - t0, "failed": smp.n_failed,
                     "n_datasets": sample_n, "settings": "2 chains, 500 warmup + 500 sampling",
                     "datasets_with_divergences": int(frame.groupby("dataset").divergences.max()
                                                      .gt(0).sum()),
                     "recovery": smp.recovery().reset_index().to_dict(orient="records")}
    print(smp.recovery(), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--recovery", action="store_true")
    ap.add_argument("--sample-n", type=int, default=200)
    a = ap.parse_args()
    res_dir = REPO / "bench" / "results"
    if a.recovery:
        res = {"machine": machine(), **recovery(a.n, a.sample_n)}
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
