"""Model-construction benchmark -> bench/results/construct.json: how long ``lmer()``/``glmer()``
takes to build a model (formula + data -> ModelSpec -> Model, no fit), the part of the time to
a first result that comes before any program runs, and how many times ``formulae`` builds a
design matrix for it.

The formulas are those of ``bench_first_fit.py`` (sleepstudy, cbpp, debate) plus debate models
with interactions and several grouping terms. Each child process loads the data, builds one
other formula first (imports, caches) and then, per formula:

* ``cold_ms``: the first build of the formula in the process (its parse not cached: what a
  user trying a new formula waits);
* ``warm_ms``: the median of ``--reps`` further builds of the same formula;
* ``cold_cpu_ms``, ``warm_cpu_ms``: the same in CPU time of the process (less sensitive to a
  loaded machine than wall time);
* ``design_runs``: calls of ``formulae.design_matrices`` in one build (counted in an extra,
  untimed build).

With ``--before REV`` the package as of git revision REV (unpacked with ``git archive``) is
timed in the same way, in child processes alternating with the current tree for ``--rounds``
rounds, so both see the same load; per formula the JSON
(``results/construct_before_after.json``) gives the median over rounds of each and the ratio. The machine load (os.getloadavg) is recorded around every child.

Usage: ``python bench/bench_construct.py [--before REV] [--rounds 5] [--reps 15]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "results" / "construct.json"
OUT_COMPARED = BENCH / "results" / "construct_before_after.json"  # with --before
sys.path.insert(0, str(BENCH))

from bench_first_fit import FORMULAS, WARMUP_FORMULA, build, load  # noqa: E402

EXTRA = {  # debate models with interactions and several terms
    "debate": [
        ("lmer", "sat ~ talk * cond + perf + skill + (1 + talk | group) + (1 | skill)",
         "gaussian"),
        ("lmer", "sat ~ talk * perf * cond + (1 + talk | group) + (1 | skill)", "gaussian"),
    ],
}


def cases() -> dict[str, list[tuple[str, str, str]]]:
    return {ds: list(f) + EXTRA.get(ds, []) for ds, f in FORMULAS.items()}


def run_child(reps: int) -> dict:
    """Child process: time the construction of every formula (package from PYTHONPATH)."""
    import warnings

    import formulae  # noqa: F401 - imported before timing

    import bayesglmm
    import bayesglmm.design as design

    warnings.simplefilter("ignore")  # e.g. slopes that do not vary within groups
    out = {"package": str(Path(bayesglmm.__file__).parent), "datasets": {}}
    for ds, specs in cases().items():
        d = load(ds)
        build(d, *WARMUP_FORMULA[ds], "auto")
        rows = []
        for spec in specs:
            t0, c0 = time.perf_counter(), time.process_time()
            build(d, *spec, "auto")
            cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
            warm, warm_cpu = [], []
            for _ in range(reps):
                t0, c0 = time.perf_counter(), time.process_time()
                build(d, *spec, "auto")
                warm.append(time.perf_counter() - t0)
                warm_cpu.append(time.process_time() - c0)
            calls = [0]
            orig = design.design_matrices

            def counted(*a, _orig=orig, _calls=calls, **k):
                _calls[0] += 1
                return _orig(*a, **k)

            design.design_matrices = counted
            try:
                build(d, *spec, "auto")
            finally:
                design.design_matrices = orig
            rows.append({"formula": spec[1], "family": spec[2],
                         "cold_ms": round(1e3 * cold, 3),
                         "warm_ms": round(1e3 * statistics.median(warm), 3),
                         "cold_cpu_ms": round(1e3 * cold_cpu, 3),
                         "warm_cpu_ms": round(1e3 * statistics.median(warm_cpu), 3),
                         "design_runs": calls[0]})
        out["datasets"][ds] = rows
    return out


def child(tree: Path, reps: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OPENBLAS_NUM_THREADS="1")
    load0 = [round(x, 2) for x in os.getloadavg()]
    p = subprocess.run([sys.executable, __file__, "--child", "--reps", str(reps)], env=env,
                       capture_output=True, text=True, check=True, cwd=str(tree))
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["load"] = [load0, [round(x, 2) for x in os.getloadavg()]]
    return res


def unpack(rev: str, dest: Path) -> Path:
    """The package as of ``rev`` in ``dest`` (git archive of bayesglmm/)."""
    tar = dest / "pkg.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(tar), rev, "bayesglmm"],
                   check=True)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    return dest


def summarise(runs: list[dict]) -> dict:
    out = {}
    for ds in runs[0]["datasets"]:
        rows = []
        for i, r in enumerate(runs[0]["datasets"][ds]):
            per = [x["datasets"][ds][i] for x in runs]
            rows.append({"formula": r["formula"], "family": r["family"],
                         **{k: round(statistics.median(p[k] for p in per), 3)
                            for k in ("cold_ms", "warm_ms", "cold_cpu_ms", "warm_cpu_ms")},
                         "design_runs": r["design_runs"]})
        out[ds] = rows
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default=None, help="git revision to compare with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(run_child(a.reps)))
        return 0
    t_start = time.time()
    result: dict = {"note": ("2-core machine shared with other agents; construction only (no "
                             "fit); medians over rounds, before/after alternating"),
                    "rounds": a.rounds, "reps": a.reps, "load_before": [round(x, 2) for x in
                                                                        os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="bench-construct-") as tmp:
        trees = {"after": REPO}
        if a.before:
            trees["before"] = unpack(a.before, Path(tmp))
            result["before_rev"] = subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", a.before],
                capture_output=True, text=True, check=True).stdout.strip()
        result["after_rev"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True).stdout.strip()
        runs: dict[str, list[dict]] = {k: [] for k in trees}
        for _ in range(a.rounds):
            for k, tree in trees.items():
                runs[k].append(child(tree, a.reps))
    result["loads"] = {k: [r["load"] for r in v] for k, v in runs.items()}
    result["datasets"] = {k: summarise(v) for k, v in runs.items()}
    if a.before:
        ratio = {}
        for ds, rows in result["datasets"]["after"].items():
            ratio[ds] = [{"formula": r["formula"],
                          "cold_after_over_before": round(r["cold_ms"] / b["cold_ms"], 3),
                          "warm_after_over_before": round(r["warm_ms"] / b["warm_ms"], 3),
                          "warm_cpu_after_over_before": round(r["warm_cpu_ms"] / b["warm_cpu_ms"],
                                                              3),
                          "design_runs": [b["design_runs"], r["design_runs"]]}
                         for r, b in zip(rows, result["datasets"]["before"][ds])]
        result["ratios"] = ratio
        allr = [x for v in ratio.values() for x in v]
        result["median_ratio"] = {
            "cold": round(statistics.median(x["cold_after_over_before"] for x in allr), 3),
            "warm": round(statistics.median(x["warm_after_over_before"] for x in allr), 3),
            "warm_cpu": round(statistics.median(x["warm_cpu_after_over_before"] for x in allr),
                              3)}
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_s"] = round(time.time() - t_start, 1)
    (OUT_COMPARED if a.before else OUT).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in result if k not in ("datasets", "loads")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
