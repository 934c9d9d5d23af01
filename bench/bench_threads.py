"""Within-chain parallelism benchmark -> bench/results/threads.json.

Gradient time of ``y ~ x + (x | g)`` (normal errors, flat prior; bench_large.simulate: 100,000
rows, 1,000 groups) through BridgeStan, for

* ``plain``: the model's own program (one thread);
* ``threaded_1``: its threaded variant (``sample(threads_per_chain=k)``: the likelihood by
  ``reduce_sum``) with the process pinned to one core, so TBB runs one thread: the overhead of
  slicing;
* ``threaded_2``: the threaded variant on both cores (TBB's default: one thread per core the
  process may use).

Each measurement runs in a fresh subprocess (its CPU affinity set before Stan loads) at the
same random unconstrained point: 5 warm-up gradients, then 7 batches of 20; the median time per
gradient of the batches is reported, with the process's thread count (``/proc/self/task``)
after the gradients and the load average before and after. The three cases are alternated
(plain, 1 thread, 2 threads) for ``--rounds`` rounds; the summary takes, per case, the
median over rounds and the ratios of those medians. The machine is shared by several agents:
a speed-up from a second thread needs a second core that is idle, so the load average is part
of the result.

Usage: ``python bench/bench_threads.py [--rounds R] [--rows N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
RESULTS = REPO / "bench" / "results" / "threads.json"
FORMULA = "y ~ x + (x | g)"
CASES = {"plain": None, "threaded_1": {0}, "threaded_2": None}


def _models(rows: int):
    from bench_large import simulate

    import bayesglmm

    return bayesglmm.lmer(FORMULA, data=simulate(rows), backend="specific")


def child(case: str, rows: int) -> dict:
    cpus = CASES[case]
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    import numpy as np

    from bayesglmm.inference.within_chain import threaded_program

    m = _models(rows)
    if case == "plain":
        bs = m.bridgestan_model(verbose=False)
    else:
        cm, data = threaded_program(m, 2, 1, verbose=False)
        bs = cm.bridgestan_model(data)
    x = np.random.default_rng(1).normal(0.0, 0.3, size=bs.param_unc_num())
    for _ in range(5):
        lp, _g = bs.log_density_gradient(x)
    per = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(20):
            bs.log_density_gradient(x)
        per.append((time.perf_counter() - t0) / 20)
    return {"case": case, "rows": rows, "gradient_ms": 1e3 * statistics.median(per),
            "batches_ms": [round(1e3 * v, 3) for v in per], "log_density": float(lp),
            "affinity": sorted(os.sched_getaffinity(0)),
            "os_threads": len(os.listdir("/proc/self/task"))}


def run(case: str, rows: int) -> dict:
    load0 = os.getloadavg()
    p = subprocess.run([sys.executable, __file__, "--child", case, str(rows)],
                       capture_output=True, text=True, cwd=str(REPO))
    if p.returncode != 0:
        raise SystemExit(f"{case} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["load_before"] = [round(v, 2) for v in load0]
    res["load_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps({k: res[k] for k in ("case", "gradient_ms", "os_threads", "load_before")}),
          flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=100_000)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]))))
        return
    from bayesglmm.inference.within_chain import threaded_program

    small = _models(1000)  # compile both programs once (the data do not enter the program)
    small.compile(verbose=True)
    threaded_program(small, 2, 1, verbose=True)
    runs = [run(case, a.rows) for _ in range(a.rounds) for case in CASES]
    med = {c: statistics.median(r["gradient_ms"] for r in runs if r["case"] == c) for c in CASES}
    lps = {round(r["log_density"], 6) for r in runs}
    summary = {
        "gradient_ms_median": med,
        "speedup_2_threads_vs_plain": med["plain"] / med["threaded_2"],
        "speedup_2_threads_vs_1_thread": med["threaded_1"] / med["threaded_2"],
        "overhead_1_thread_vs_plain": med["threaded_1"] / med["plain"],
        "same_log_density_in_every_run": len(lps) == 1,
    }
    out = {
        "what": f"{FORMULA}, normal errors, flat prior, {a.rows} rows, 1,000 groups "
                "(bench_large.simulate): BridgeStan gradient time of the model's own program and "
                "of its threaded variant (reduce_sum over slices of observations, grainsize "
                "N/8) on 1 and 2 cores",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "note": "shared machine (2 cores, several agents working): a second thread "
                            "helps only when a second core is idle; see the load averages"},
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "summary": summary,
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
