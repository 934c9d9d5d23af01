"""Where the time of ``sample()`` goes, and nutpie's per leapfrog step and per draw
(``bench_nutpie.py --profile``).

:func:`profile`: shares of the wall time (pyinstrument) and CPU seconds outside the sampler
(cProfile) of ``sample()`` with each sampler. Then load-robust measurements for ``sample(sampler="nutpie")``, added to
bench/results/nutpie_profile.json:

* :func:`log_lik_ab`: paired, alternating ``sample()`` calls of one program with the pointwise
  log-likelihood computed in the run (as before issue 17's profiling: nutpie's per-draw
  ``param_constrain`` wrote ``log_lik``) and left out of the run (now: computed from the
  unconstrained draws only when ``loo()`` etc. ask for it,
  :func:`bayesglmm.inference.nutpie.defers_log_lik`). Same seed within a pair, so both take
  the same leapfrog steps; CPU seconds of the process (nutpie's chain threads included) per
  call and per leapfrog step of warm-up and sampling, and wall seconds, medians over pairs.
* :func:`callgrind_counts`: instructions (valgrind's callgrind, exact and independent of the
  load) of one raw ``nutpie.sample`` run, split into the gradient calls
  (``bs_log_density_gradient``), the per-draw generated quantities (``bs_param_constrain``,
  warm-up draws included) and the rest of nutpie's chain threads (its Rust sampler,
  adaptation and Arrow storage); also the dynamic TLS look-ups (``__tls_get_addr``) the
  gradient makes through the autodiff stack of a dlopen'ed library.
* :func:`tls_dialect_ab`: what those look-ups cost in time, against the same program built
  with TLS descriptors (a bench-only build in a temporary directory; the toolchain is not
  changed).

``python bench/nutpie_cost.py --raw PROGRAM LOG_LIK`` is the child process that callgrind runs.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

SAMPLERS = ("stan", "nutpie")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# symbols whose inclusive instruction counts are read from callgrind_annotate
SYMBOLS = {"threads": "start_thread", "gradient": "bs_log_density_gradient",
           "constrain": "bs_param_constrain", "tls_get_addr": "__tls_get_addr"}


# frames (function name as pyinstrument shows it) whose time is the sampler itself, found
# under the first frame of the pair (the summary runs a thread pool of its own)
SAMPLER_FRAMES = {"nutpie": ("sample_nutpie", "PySampler.wait"),
                  "stan": ("run_nuts", "ThreadPoolExecutor.__exit__")}
# frames whose time is reported as a part of the fixed overhead
OVERHEAD_PARTS = ("_arrow_to_arviz", "read_trace", "split_columns", "check_sampling",
                  "CmdStanMCMC.__init__", "extract_draws", "MCMCFit.__init__",
                  "nutpie_model", "bridgestan_model", "compile")


def _frame_times(frame, names: tuple[str, ...], out: dict[str, float]) -> None:
    """Add the time of the outermost frames called one of ``names`` under ``frame``."""
    name = f"{frame.class_name}.{frame.function}" if frame.class_name else frame.function
    if name in names or frame.function in names:
        out[name] = out.get(name, 0.0) + frame.time
        return
    for child in frame.children:
        _frame_times(child, names, out)


# the sampler's own frames as cProfile names them: (file ending, function name)
SAMPLER_CPU = {"nutpie": ("~", "<method 'wait' of 'builtins.PySampler' objects>"),
               "stan": ("concurrent/futures/_base.py", "__exit__")}  # under cmdstanpy
# parts of the fixed overhead reported in CPU seconds per call (cProfile function names)
CPU_PARTS = ("check_sampling", "read_trace", "nutpie_model", "extract_draws",
             "cmdstan_model")


def cpu_overhead(m, kw: dict, calls: int) -> dict:
    """CPU seconds per ``sample()`` call outside the sampler itself (cProfile with the process's
    CPU clock, which counts every thread of the process: nutpie's chains run in threads under
    ``PySampler.wait``, CmdStan in child processes that it does not count), with named parts.
    CPU time, unlike wall time, hardly depends on the machine load."""
    import cProfile
    import pstats

    prof = cProfile.Profile(time.process_time)
    prof.enable()
    for seed in range(2, 2 + calls):
        m.sample(seed=seed, **kw)
    prof.disable()
    st = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, cumulative, callers)
    total = max(v[3] for (f, _, fn), v in st.items()
                if fn == "sample" and f.endswith("fitting.py"))
    end, name = SAMPLER_CPU[kw["sampler"]]
    inner = sum(ct for (f, _, fn), v in st.items() if fn == name and f.endswith(end)
                for (cf, _, _), (_, _, _, ct) in v[4].items()  # called from the sampler's code
                if "cmdstanpy" in cf or "nutpie" in cf)
    parts = {}
    for part in CPU_PARTS:
        v = sum(x[3] for (_, _, fn), x in st.items() if fn == part)
        if v:
            parts[part] = round(v / calls, 4)
    return {"cpu_s_per_call": round(total / calls, 4),
            "sampler_cpu_s_per_call": round(inner / calls, 4),
            "overhead_cpu_s_per_call": round((total - inner) / calls, 4),
            "overhead_parts_cpu_s_per_call": parts}


def _frames(frame, name: str) -> list:
    """The outermost frames called ``name`` under ``frame``."""
    if frame.function == name:
        return [frame]
    return [f for child in frame.children for f in _frames(child, name)]


def profile(progs: dict, args) -> dict:
    """Wall-time shares of ``sample()`` for each program and sampler (pyinstrument)."""
    from pyinstrument import Profiler

    out: dict[str, dict] = {}
    for key, (m, _) in progs.items():
        out[key] = {}
        for sampler in SAMPLERS:
            kw = dict(chains=args.chains, warmup=args.warmup, sampling=args.sampling,
                      delta=0.8, sampler=sampler, verbose=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m.sample(seed=1, **kw)  # libraries loaded, caches warm: not profiled
                load = os.getloadavg()[0]
                prof = Profiler(interval=0.0005)
                prof.start()
                for seed in range(2, 2 + args.profile):
                    m.sample(seed=seed, **kw)
                prof.stop()
            root = prof.last_session.root_frame()
            total = root.time
            core: dict[str, float] = {}
            outer, inner = SAMPLER_FRAMES[sampler]
            for frame in _frames(root, outer):
                _frame_times(frame, (inner,), core)
            parts: dict[str, float] = {}
            _frame_times(root, OVERHEAD_PARTS, parts)
            sampler_s = sum(core.values())
            out[key][sampler] = {
                "calls": args.profile, "wall_s_per_call": round(total / args.profile, 3),
                "sampler_share": round(sampler_s / total, 3),
                "fixed_overhead_share": round(1 - sampler_s / total, 3),
                "overhead_parts_share": {k: round(v / total, 3) for k, v in
                                         sorted(parts.items(), key=lambda kv: -kv[1])},
                "loadavg_1min": round(load, 2)}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[key][sampler].update(cpu_overhead(m, kw, args.profile))
            print(key, sampler, json.dumps(out[key][sampler]), flush=True)
    return out


def log_lik_ab(model, steps_of, pairs: int, chains: int, warmup: int, sampling: int) -> dict:
    """Paired alternating ``model.sample(sampler="nutpie")`` calls, log_lik in the run or not.

    ``steps_of(seed)`` gives the leapfrog steps of warm-up and sampling of that seed's run
    (the same for both variants: the trajectory does not depend on the generated quantities).
    """
    import bayesglmm.inference.nutpie as nutpie_mod

    deferring = nutpie_mod.defers_log_lik
    variants = {"log_lik_in_run": lambda data: False, "log_lik_on_demand": deferring}
    rows: dict[str, list[dict]] = {k: [] for k in variants}
    kw = dict(chains=chains, warmup=warmup, sampling=sampling, delta=0.8, sampler="nutpie",
              verbose=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.sample(seed=1, **kw)  # libraries loaded, caches warm
            for seed in range(2, 2 + pairs):
                order = list(variants) if seed % 2 else list(variants)[::-1]
                steps = steps_of(seed)
                for name in order:
                    nutpie_mod.defers_log_lik = variants[name]
                    load = os.getloadavg()[0]
                    c0, w0 = time.process_time(), time.perf_counter()
                    model.sample(seed=seed, **kw)
                    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                    rows[name].append({"seed": seed, "cpu_s": round(cpu, 4),
                                       "wall_s": round(wall, 4), "leapfrog_steps": steps,
                                       "cpu_us_per_step": round(1e6 * cpu / steps, 3),
                                       "loadavg_1min": round(load, 2)})
    finally:
        nutpie_mod.defers_log_lik = deferring
    out: dict = {"pairs": pairs, "runs": rows}
    for name, r in rows.items():
        out[name] = {k: round(statistics.median(x[k] for x in r), 4)
                     for k in ("cpu_s", "wall_s", "cpu_us_per_step")}
    a, b = out["log_lik_on_demand"], out["log_lik_in_run"]
    out["on_demand_over_in_run"] = {
        "cpu_s": round(statistics.median(x["cpu_s"] / y["cpu_s"] for x, y in
                                         zip(rows["log_lik_on_demand"], rows["log_lik_in_run"])),
                       3),
        "wall_s": round(statistics.median(x["wall_s"] / y["wall_s"] for x, y in
                                          zip(rows["log_lik_on_demand"],
                                              rows["log_lik_in_run"])), 3),
        "median_cpu_s": round(a["cpu_s"] / b["cpu_s"], 3)}
    return out


def tls_dialect_ab(model, pairs: int, chains: int, warmup: int, sampling: int) -> dict:
    """The model's BridgeStan library as the toolchain builds it (thread-locals of a dlopen'ed
    library found through ``__tls_get_addr``) against the same program compiled once more, into
    a temporary directory, with ``-mtls-dialect=gnu2`` (TLS descriptors; x86-64 GCC/Clang):
    paired alternating raw nutpie runs, same seed within a pair (log_lik left out, as
    ``sample()`` runs them); CPU microseconds of the process per leapfrog step of warm-up and
    sampling. The runs of a pair must take the same steps to the same log densities (the
    dialect changes how thread-local variables are found, not the arithmetic)."""
    import nutpie
    from nutpie import _lib
    from nutpie.compile_stan import CompiledStanModel

    from bayesglmm.inference.nutpie import _plain
    from bayesglmm.inference.nutpie_trace import arrow_batches

    compiled = model.compile(verbose=False)
    flags = compiled.manifest.get("flags", {})
    data = {k: _plain(v) for k, v in {**model.run_program.data, "compute_log_lik": 0}.items()}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{compiled.name}.stan").write_text(compiled.code)
        so = Path(tmp) / f"{compiled.name}_model.so"
        t0 = time.perf_counter()
        subprocess.run([os.environ.get("MAKE") or "make", "-C",
                        str(compiled.toolchain.bridgestan_dir),
                        f"STANCFLAGS+=--filename-in-msg={compiled.name}.stan",
                        f"O={flags.get('O', 1)}", "CXXFLAGS+=-mtls-dialect=gnu2", str(so)],
                       capture_output=True, text=True, check=True)
        build_s = time.perf_counter() - t0
        libs = {"global_dynamic": _lib.StanLibrary(str(compiled.so_file)),
                "tls_descriptors": _lib.StanLibrary(str(so))}
        rows: dict[str, list[dict]] = {k: [] for k in libs}
        for seed in range(1, 1 + pairs):
            ends = {}
            for name in (list(libs) if seed % 2 else list(libs)[::-1]):
                m = CompiledStanModel(code=compiled.code, library=libs[name], dims={},
                                      _coords={}, model_name=compiled.name, model=None,
                                      data=None).with_data(seed=seed, **data)
                load = os.getloadavg()[0]
                c0 = time.process_time()
                raw = nutpie.sample(m, draws=sampling, tune=warmup, chains=chains,
                                    cores=min(chains, os.cpu_count() or 1), seed=seed,
                                    save_warmup=True, progress_bar=False,
                                    store_unconstrained=True, target_accept=0.8, maxdepth=10,
                                    return_raw_trace=True)
                cpu = time.process_time() - c0
                _, stats = arrow_batches(raw)
                steps = sum(int(np.asarray(b.column("n_steps")).sum()) for b in stats)
                ends[name] = (steps, [np.asarray(b.column("logp")).tolist() for b in stats])
                rows[name].append({"seed": seed, "cpu_s": round(cpu, 4), "leapfrog_steps": steps,
                                   "cpu_us_per_step": round(1e6 * cpu / steps, 3),
                                   "loadavg_1min": round(load, 2)})
            if len(set(map(repr, ends.values()))) != 1:
                raise RuntimeError(f"seed {seed}: the two libraries sampled differently")
    gd, td = rows["global_dynamic"], rows["tls_descriptors"]
    return {"build_s": round(build_s, 1), "pairs": pairs, "runs": rows,
            "same_steps_and_log_densities": True,
            "median_cpu_us_per_step": {k: statistics.median(r["cpu_us_per_step"] for r in v)
                                       for k, v in rows.items()},
            "median_ratio_cpu_per_step": round(statistics.median(
                b["cpu_us_per_step"] / a["cpu_us_per_step"] for a, b in zip(gd, td)), 3)}


def _inclusive(annotated: str) -> dict[str, int]:
    """Inclusive instruction counts of :data:`SYMBOLS` from ``callgrind_annotate`` output."""
    out = {}
    for key, sym in SYMBOLS.items():
        for line in annotated.splitlines():
            m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+\S*:" + re.escape(sym) + r"\s", line)
            if m:
                out[key] = int(m.group(1).replace(",", ""))
                break
    return out


def callgrind_counts(program: str, log_lik: int, chains: int, warmup: int,
                     sampling: int) -> dict:
    """Instructions of one raw nutpie run of ``program`` (``compute_log_lik = log_lik``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
               sys.executable, str(Path(__file__)), "--raw", program, str(log_lik),
               str(chains), str(warmup), str(sampling)]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        seconds = time.perf_counter() - t0
        found = re.search(r"raw-run steps (\d+) draws (\d+)", run.stdout)
        steps, draws = int(found.group(1)), int(found.group(2))
        annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                                    str(out_file)], capture_output=True, text=True,
                                   check=True).stdout
    ir = _inclusive(annotated)
    rest = ir["threads"] - ir["gradient"] - ir.get("constrain", 0)
    return {"compute_log_lik": log_lik, "leapfrog_steps": steps, "draws": draws,
            "instructions": ir,
            "per_step": {"gradient": round(ir["gradient"] / steps),
                         "tls_get_addr": round(ir.get("tls_get_addr", 0) / steps),
                         "nutpie_rest": round(rest / steps),
                         "all_threads": round(ir["threads"] / steps)},
            "per_draw_constrain": round(ir.get("constrain", 0) / draws),
            "shares_of_threads": {"gradient": round(ir["gradient"] / ir["threads"], 4),
                                  "constrain": round(ir.get("constrain", 0) / ir["threads"], 4),
                                  "nutpie_rest": round(rest / ir["threads"], 4)},
            "valgrind_wall_s": round(seconds, 1)}


def _raw_run(program: str, log_lik: int, chains: int, warmup: int, sampling: int) -> None:
    """One ``nutpie.sample`` of ``program`` as ``sample()`` runs it (seed 1), the warm-up
    kept to count its steps; prints the leapfrog steps and draws (warm-up included)."""
    sys.path.insert(0, str(HERE))
    import nutpie
    from bench_nutpie import models

    from bayesglmm.inference.nutpie import nutpie_model
    from bayesglmm.inference.nutpie_trace import arrow_batches

    m = models()[program][0]
    data = {**m.run_program.data, "compute_log_lik": log_lik}
    model = nutpie_model(m.compile(verbose=False), data, 1)
    raw = nutpie.sample(model, draws=sampling, tune=warmup, chains=chains,
                        cores=min(chains, os.cpu_count() or 1), seed=1, save_warmup=True,
                        progress_bar=False, store_unconstrained=True, target_accept=0.8,
                        maxdepth=10, return_raw_trace=True)
    _, stats = arrow_batches(raw)
    steps = sum(int(np.asarray(b.column("n_steps")).sum()) for b in stats)
    print(f"raw-run steps {steps} draws {sum(b.num_rows for b in stats)}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--raw":
        _raw_run(sys.argv[2], *(int(a) for a in sys.argv[3:]))
    else:
        sys.exit("usage: python bench/nutpie_cost.py --raw PROGRAM LOG_LIK CHAINS WARMUP "
                 "SAMPLING (run by bench_nutpie.py --profile)")
