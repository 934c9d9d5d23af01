"""Toolchain benchmark -> bench/results/toolchain.json.

Measures, on this machine and in one run:

* install time of the bundled toolchain into a fresh ``BAYESGLMM_HOME`` (temporary
  directory; the httpstan wheel is reused from ``$BAYESGLMM_WHEEL``,
  ``~/.cache/bayesglmm/wheels`` or downloaded);
* cold compile time of a random-slope GLMM program through ``compile_model`` (stanc + one
  PCH'd model TU at the default -O level + two links);
* a one-shot ``g++ -O3`` compile of the same model with the driver sources, as a single
  command over a single translation unit (what a stock CmdStan build amounts to), with
  the same flags, and the ratio of the two;
* time from a cached model to its first draw (cache lookup + cmdstanpy + executable start,
  data read, initialisation, one iteration), in-process and in a fresh Python process;
* gradient evaluation time through BridgeStan.

Usage: ``python bench/bench_toolchain.py [--home DIR] [--keep] [--reps N]``.
``--home DIR`` reuses an installed toolchain instead of timing a fresh install (the model is
then made "cold" with a unique comment).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "toolchain.json"
sys.path.insert(0, str(REPO))

GLMM = """\
data {
  int<lower=1> N;
  int<lower=1> K;
  matrix[N, K] X;
  int<lower=1> J;
  array[N] int<lower=1, upper=J> g;
  vector[N] Z;
  vector[N] y;
}
transformed data {
  matrix[N, 2] Zr = append_col(rep_vector(1.0, N), Z);
}
parameters {
  vector[K] beta;
  real<lower=0> sigma;
  vector<lower=0>[2] tau;
  cholesky_factor_corr[2] L_Omega;
  matrix[2, J] z;
}
transformed parameters {
  matrix[J, 2] b = (diag_pre_multiply(tau, L_Omega) * z)';
  vector[N] mu_re;
  for (n in 1:N) mu_re[n] = b[g[n], 1] + b[g[n], 2] * Z[n];
}
model {
  beta ~ normal(0, 5);
  sigma ~ student_t(3, 0, 2.5);
  tau ~ student_t(3, 0, 2.5);
  L_Omega ~ lkj_corr_cholesky(2);
  to_vector(z) ~ std_normal();
  y ~ normal_id_glm(X, mu_re, beta, sigma);
}
generated quantities {
  corr_matrix[2] Omega = multiply_lower_tri_self_transpose(L_Omega);
  vector[N] log_lik;
  {
    vector[N] eta = X * beta + mu_re;
    for (n in 1:N) log_lik[n] = normal_lpdf(y[n] | eta[n], sigma);
  }
}
"""

# Flags of common.mk, used when the makefile cannot print them.
FALLBACK_CXXFLAGS = ("-std=c++17 -pthread -fPIC -DSTAN_THREADS -D_REENTRANT -DBOOST_DISABLE_ASSERTS "
                     "-D_GLIBCXX_USE_CXX11_ABI=0 -Wno-sign-compare -Wno-ignored-attributes "
                     "-Wno-deprecated-declarations -Wno-class-memaccess")


def simulate(seed: int = 1, N: int = 2000, K: int = 3, J: int = 50) -> dict:
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(N), rng.normal(size=(N, K - 1))])
    g = rng.integers(1, J + 1, size=N)
    Z = rng.normal(size=N)
    beta = np.array([1.0, -0.5, 0.25])
    tau = np.array([0.7, 0.3])
    rho = 0.4
    L = np.linalg.cholesky(np.array([[1, rho], [rho, 1]]))
    b = (np.diag(tau) @ L @ rng.normal(size=(2, J))).T
    y = X @ beta + b[g - 1, 0] + b[g - 1, 1] * Z + rng.normal(scale=0.8, size=N)
    return {"N": N, "K": K, "X": X, "J": J, "g": g, "Z": Z, "y": y}


def find_wheel() -> str | None:
    from bayesglmm.toolchain.wheel import WHEEL_NAME

    cands = [os.environ.get("BAYESGLMM_WHEEL"),
             str(Path(os.environ.get("BAYESGLMM_HOME", "~/.cache/bayesglmm")).expanduser()
                 / "wheels" / WHEEL_NAME),
             str(Path("~/.cache/bayesglmm/wheels").expanduser() / WHEEL_NAME)]
    for c in cands:
        if c and Path(c).is_file():
            return c
    return None


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def make_vars(root: Path) -> dict:
    """CXX, CXXFLAGS_BASE and LDLIBS_STAN as the toolchain's makefile defines them."""
    out = {}
    try:
        p = subprocess.run(["make", "-s", "-C", str(root / "cmdstan"), "print-info"],
                           check=False, capture_output=True, text=True, timeout=60)
        for line in p.stdout.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    stan = root / "stan"
    out.setdefault("CXX", os.environ.get("CXX", "g++"))
    out.setdefault("CXXFLAGS_BASE", FALLBACK_CXXFLAGS + f" -I{stan / 'include'}")
    out.setdefault("LDLIBS_STAN", f"-L{stan / 'lib'} -Wl,-rpath,{stan / 'lib'} "
                   "-lsundials_kinsol -lsundials_cvodes -lsundials_idas "
                   "-lsundials_nvecserial -ltbb")
    return out


def one_shot_compile(root: Path, hpp: Path, workdir: Path) -> dict:
    """g++ -O3, one command, one translation unit: model .hpp + every driver .cpp."""
    mv = make_vars(root)
    driver = sorted((root / "src" / "driver").glob("*.cpp"))
    tu = workdir / "oneshot.cpp"
    tu.write_text(f'#include "{hpp}"\n' + "".join(f'#include "{c}"\n' for c in driver))
    exe = workdir / "oneshot_exe"
    cmd = (shlex.split(mv["CXX"]) + shlex.split(mv["CXXFLAGS_BASE"])
           + ["-O3", f"-I{root / 'src' / 'driver'}", str(tu), "-o", str(exe)]
           + shlex.split(mv["LDLIBS_STAN"]))
    t0 = time.monotonic()
    p = subprocess.run(cmd, check=False, capture_output=True, text=True)
    secs = time.monotonic() - t0
    res = {"command": " ".join(cmd), "seconds": round(secs, 2), "variant": "single TU",
           "ok": p.returncode == 0 and exe.exists()}
    if not res["ok"]:
        # the driver sources may not combine into one TU (file-local names clash):
        # fall back to one g++ command over the model TU plus the driver sources
        model_cpp = workdir / "model_tu.cpp"
        model_cpp.write_text(f'#include "{hpp}"\n')
        cmd = (shlex.split(mv["CXX"]) + shlex.split(mv["CXXFLAGS_BASE"])
               + ["-O3", f"-I{root / 'src' / 'driver'}", str(model_cpp)]
               + [str(c) for c in driver] + ["-o", str(exe)] + shlex.split(mv["LDLIBS_STAN"]))
        t0 = time.monotonic()
        p2 = subprocess.run(cmd, check=False, capture_output=True, text=True)
        secs = time.monotonic() - t0
        res = {"command": " ".join(cmd), "seconds": round(secs, 2),
               "variant": "one command, model TU + driver sources (single TU failed: "
                          + (p.stderr.strip().splitlines() or ["?"])[-1][:200] + ")",
               "ok": p2.returncode == 0 and exe.exists()}
        if not res["ok"]:
            res["error"] = "\n".join(p2.stderr.strip().splitlines()[-20:])
    return res


def model_tu_o3_compile(root: Path, hpp: Path, workdir: Path) -> dict:
    """The model TU alone, -O3, no precompiled header (a stock CmdStan's per-model compile,
    whose driver main.o is prebuilt): the fairer reference for the per-model cost."""
    mv = make_vars(root)
    cpp = workdir / "model_only.cpp"
    cpp.write_text(f'#include "{hpp}"\n')
    cmd = (shlex.split(mv["CXX"]) + shlex.split(mv["CXXFLAGS_BASE"])
           + ["-O3", "-c", str(cpp), "-o", str(workdir / "model_only.o")])
    t0 = time.monotonic()
    p = subprocess.run(cmd, check=False, capture_output=True, text=True)
    return {"seconds": round(time.monotonic() - t0, 2), "ok": p.returncode == 0,
            "command": " ".join(cmd)}


def time_first_draw(cm, data: dict, reps: int) -> list[float]:
    from bayesglmm.toolchain import cache as cache_mod
    from bayesglmm.toolchain import compile_model

    times = []
    out = Path(tempfile.mkdtemp(prefix="bench-first-draw-"))
    try:
        for i in range(reps):
            cache_mod._memo.clear()  # include the on-disk cache lookup (checksums)
            t0 = time.monotonic()
            m = compile_model(cm.code, name=cm.name, verbose=False, toolchain=cm.toolchain)
            fit = m.cmdstan_model().sample(
                data=data, chains=1, iter_warmup=1, iter_sampling=1, seed=i + 1,
                show_progress=False, output_dir=str(out / str(i)),
            )
            _ = fit.draws()
            times.append(time.monotonic() - t0)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return times


def time_first_draw_fresh_process(cm, home: Path, data_file: Path) -> float:
    script = f"""
import time
t0 = time.monotonic()
from bayesglmm.toolchain import compile_model
from bayesglmm.toolchain.locate import bundled_toolchain
tc = bundled_toolchain()  # as ensure_toolchain() would return it (timed separately)
tc.activate()
cm = compile_model(open({str(cm.stan_file)!r}).read(), name={cm.name!r}, verbose=False,
                   toolchain=tc)
fit = cm.cmdstan_model().sample(data={str(data_file)!r}, chains=1, iter_warmup=1,
                                iter_sampling=1, seed=1, show_progress=False)
fit.draws()
print(time.monotonic() - t0)
"""
    env = dict(os.environ, BAYESGLMM_HOME=str(home))
    p = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    return float(p.stdout.strip().splitlines()[-1])


def time_gradient(cm, data: dict, n: int = 5000) -> dict:
    bs = cm.bridgestan_model(data)
    rng = np.random.default_rng(3)
    x = rng.normal(scale=0.3, size=bs.param_unc_num())
    bs.log_density_gradient(x)  # warm up
    reps, cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            bs.log_density_gradient(x)
        reps.append((time.perf_counter() - t0) / n * 1e6)
        cpu.append((time.process_time() - c0) / n * 1e6)
    lp, _ = bs.log_density_gradient(x, propto=False)
    return {"us_per_gradient": round(min(reps), 2), "us_per_gradient_all": [round(r, 2) for r in reps],
            "cpu_us_per_gradient": round(min(cpu), 2),
            "evaluations": n, "num_unconstrained": int(bs.param_unc_num()),
            "lp_at_point": float(lp), "includes": "Python/ctypes call overhead"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", help="reuse this installed BAYESGLMM_HOME (no install timing)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary BAYESGLMM_HOME")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the first-draw timing")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)

    os.environ["BAYESGLMM_TOOLCHAIN"] = "bundled"
    import logging

    import cmdstanpy

    # 1-iteration runs are noisy (rejections while the step size is still huge)
    cmdstanpy.utils.get_logger().setLevel(logging.ERROR)
    results: dict = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_start": loadavg()},
        "program": "random-intercept-and-slope gaussian GLMM (compile-notes appendix), "
                   "N=2000, K=3, J=50",
    }
    tmp_home = None
    if args.home:
        home = Path(args.home).expanduser().absolute()
        results["install"] = {"skipped": f"reused {home}"}
    else:
        tmp_home = Path(tempfile.mkdtemp(prefix="bayesglmm-bench-home-"))
        home = tmp_home
    os.environ["BAYESGLMM_HOME"] = str(home)
    try:
        if tmp_home is not None:
            env = dict(os.environ)
            wheel = find_wheel()
            if wheel:
                env["BAYESGLMM_WHEEL"] = wheel
            t0 = time.monotonic()
            p = subprocess.run([sys.executable, "-m", "bayesglmm.toolchain", "install"],
                               env=env, cwd=REPO, check=False, capture_output=True, text=True)
            secs = time.monotonic() - t0
            if p.returncode != 0:
                print(p.stderr, file=sys.stderr)
                raise SystemExit("install failed")
            results["install"] = {
                "seconds": round(secs, 1), "jobs": None, "wheel_reused": bool(wheel),
                "log": p.stderr.strip().splitlines()[-60:],
            }
            from bayesglmm.toolchain.buildtools import default_jobs

            results["install"]["jobs"] = default_jobs()
            for line in p.stderr.splitlines():
                if "sha256 verified" in line or "reusing verified wheel" in line:
                    with contextlib.suppress(ValueError, IndexError):
                        results["install"]["wheel_ready_at_seconds"] = float(
                            line.split("]")[0].strip("[ s"))
            print(f"install: {secs:.1f} s", file=sys.stderr)

        from bayesglmm.toolchain import compile_model, ensure_toolchain
        from bayesglmm.toolchain.buildtools import compiler_version
        from bayesglmm.toolchain.install import read_ready

        tc = ensure_toolchain(verbose=True)
        results["toolchain"] = {"root": str(tc.root), "ready": read_ready(tc.root),
                                "compiler": compiler_version()}
        code = GLMM if tmp_home is not None else GLMM + f"// bench {time.time()}\n"
        data = simulate()

        results["loadavg_before_compile"] = loadavg()
        t0 = time.monotonic()
        cm = compile_model(code, name="glmm", verbose=True, toolchain=tc)
        cold = time.monotonic() - t0
        results["cold_compile"] = {
            "seconds": round(cold, 2), "opt_level": cm.manifest["flags"].get("O"),
            "breakdown": cm.manifest.get("timings"),
            "what": "stanc check + stanc + model TU (PCH) + link exe + link .so",
        }
        print(f"cold compile: {cold:.1f} s", file=sys.stderr)

        work = Path(tempfile.mkdtemp(prefix="bench-oneshot-"))
        try:
            results["loadavg_before_oneshot"] = loadavg()
            one = one_shot_compile(tc.root, cm.directory / f"{cm.name}.hpp", work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results["loadavg_before_model_tu_O3"] = loadavg()
        work2 = Path(tempfile.mkdtemp(prefix="bench-modeltu-"))
        try:
            mtu = model_tu_o3_compile(tc.root, cm.directory / f"{cm.name}.hpp", work2)
        finally:
            shutil.rmtree(work2, ignore_errors=True)
        results["one_shot_O3"] = one
        results["model_tu_O3_no_pch"] = mtu
        if one["ok"]:
            results["ratio_cold_to_one_shot"] = round(cold / one["seconds"], 3)
        if mtu["ok"]:
            results["ratio_cold_to_model_tu_O3_no_pch"] = round(cold / mtu["seconds"], 3)
        print(f"model TU alone -O3 no PCH: {mtu['seconds']:.1f} s", file=sys.stderr)
        print(f"one-shot -O3: {one['seconds']:.1f} s ({one['variant']}, ok={one['ok']})",
              file=sys.stderr)

        from bayesglmm.toolchain import locate as locate_mod

        et = []
        for _ in range(3):
            locate_mod._memo.clear()
            t0 = time.monotonic()
            ensure_toolchain(verbose=False)
            et.append(time.monotonic() - t0)
        ft = time_first_draw(cm, data, args.reps)
        data_file = Path(tempfile.mkstemp(suffix=".json")[1])
        try:
            from bayesglmm.toolchain.cache import encode_data

            data_file.write_text(encode_data(data))
            fresh = time_first_draw_fresh_process(cm, home, data_file)
        finally:
            data_file.unlink()
        results["cached_to_first_draw"] = {
            "seconds_median": round(statistics.median(ft), 3),
            "seconds_all": [round(t, 3) for t in ft],
            "fresh_process_seconds": round(fresh, 3),
            "ensure_toolchain_seconds": round(min(et), 4),
            "what": "compile_model cache hit (MANIFEST + checksums) + CmdStanModel + "
                    "sample(chains=1, iter_warmup=1, iter_sampling=1) until draws are read; "
                    "fresh_process also includes Python imports (toolchain passed explicitly; "
                    "ensure_toolchain's READY check is ensure_toolchain_seconds)",
        }
        print(f"cached model to first draw: {statistics.median(ft):.2f} s "
              f"(fresh process {fresh:.2f} s)", file=sys.stderr)

        results["gradient"] = time_gradient(cm, data)
        print(f"gradient: {results['gradient']['us_per_gradient']} us", file=sys.stderr)
        results["loadavg_end"] = loadavg()
        after = read_ready(tc.root) or {}
        if after.get("source_hash") != (results["toolchain"]["ready"] or {}).get("source_hash"):
            results["warning"] = ("the toolchain sources changed during the run (toolchain "
                                  "updated, cached model rebuilt): fresh-process timing invalid")
        results["goals"] = {
            "new_structure_compile_le_0.5x_one_shot": (
                results.get("ratio_cold_to_one_shot") is not None
                and results["ratio_cold_to_one_shot"] <= 0.5),
            "cached_model_first_draw_lt_1s": statistics.median(ft) < 1.0,
        }
    finally:
        if tmp_home is not None and not args.keep:
            shutil.rmtree(tmp_home, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
