"""Compiled-model cache of bayesglmm.toolchain.

The unit tests drive the real cache code (keys, MANIFEST validation, locks, temporary
directories, renames) with a small build function instead of the C++ compiler.  Tests
marked ``slow`` compile real Stan programs with the installed toolchain.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require

from bayesglmm.toolchain import StanCompileError
from bayesglmm.toolchain import cache as cache_mod
from bayesglmm.toolchain._common import ModelBuildError
from bayesglmm.toolchain.builders import run_stanc_check
from bayesglmm.toolchain.cache import (
    MANIFEST,
    CompiledModel,
    ModelCache,
    cache_key,
    encode_data,
    validate_entry,
)

REPO = Path(__file__).resolve().parents[2]

CODE = "parameters { real y; } model { y ~ normal(0, 1); }\n"


def fake_builder(log: Path, sleep: float = 0.0, fail: bool = False):
    def build(workdir: Path, stan_file: Path, name: str) -> dict:
        with open(log, "a") as f:
            f.write(f"build {os.getpid()} {time.time()}\n")
        time.sleep(sleep)
        if fail:
            raise ModelBuildError("C++ failed: error: something")
        code = stan_file.read_text()
        exe = workdir / name
        exe.write_text("#!/bin/sh\necho fake\n")
        exe.chmod(0o755)
        (workdir / f"{name}_model.so").write_bytes(b"\x7fELF" + code.encode() * 10)
        (workdir / f"{name}.hpp").write_text("// " + code)
        (workdir / f"{name}.o").write_bytes(b"obj")
        return {"exe_seconds": 0.1}

    return build


def builds(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture
def cache(tmp_path):
    return ModelCache(tmp_path / "models")


# --------------------------------------------------------------------------- keys


def test_cache_key_depends_on_every_input():
    base = cache_key(CODE, "model", "tc1", {"O": 1})
    assert base == cache_key(CODE, "model", "tc1", {"O": 1})
    others = {
        cache_key(CODE + " ", "model", "tc1", {"O": 1}),
        cache_key(CODE, "other", "tc1", {"O": 1}),
        cache_key(CODE, "model", "tc2", {"O": 1}),
        cache_key(CODE, "model", "tc1", {"O": 3}),
        cache_key(CODE, "model", "tc1", {"O": 1, "CXXFLAGS": "-g"}),
    }
    assert base not in others and len(others) == 5
    # no ambiguity from concatenation
    assert cache_key("ab", "c", "t", {}) != cache_key("a", "bc", "t", {})


# --------------------------------------------------------------------------- build & reuse


def test_build_then_reuse(cache, tmp_path):
    log = tmp_path / "log"
    key = cache_key(CODE, "model", "t", {})
    cm = cache.get_or_build(key, CODE, "model", fake_builder(log), verbose=False)
    assert isinstance(cm, CompiledModel)
    entry = cache.entry(key)
    assert cm.stan_file == entry / "model.stan" and cm.stan_file.read_text() == CODE
    assert cm.exe_file == entry / "model" and os.access(cm.exe_file, os.X_OK)
    assert cm.so_file == entry / "model_model.so"
    assert (entry / "model.hpp").exists()
    assert not (entry / "model.o").exists()  # intermediates are dropped
    m = json.loads((entry / MANIFEST).read_text())
    assert m["hash"] == key and set(m["files"]) == {"stan", "exe", "so", "hpp"}
    assert m["files"]["so"]["size"] == cm.so_file.stat().st_size
    assert m["timings"]["exe_seconds"] == 0.1 and "total_seconds" in m["timings"]
    assert not list(cache.root.glob(".tmp-*"))
    again = cache.get_or_build(key, CODE, "model", fake_builder(log), verbose=False)
    assert again == cm and builds(log) == 1


def test_cache_directory_is_created_private(tmp_path):
    cache = ModelCache(tmp_path / "home" / "models")
    key = cache_key(CODE, "model", "tc", {})
    cache.get_or_build(key, CODE, "model", fake_builder(tmp_path / "log"), verbose=False)
    for p in (tmp_path / "home", cache.root):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p


def test_custom_name(cache, tmp_path):
    log = tmp_path / "log"
    key = cache_key(CODE, "glmm", "t", {})
    cm = cache.get_or_build(key, CODE, "glmm", fake_builder(log), verbose=False)
    assert cm.exe_file.name == "glmm" and cm.so_file.name == "glmm_model.so"
    assert cm.stan_file.name == "glmm.stan"


@pytest.mark.parametrize("damage", [
    "no_manifest", "bad_manifest_json", "truncated_so", "flipped_exe_byte", "missing_exe",
    "manifest_of_other_entry", "exe_not_executable",
])
def test_corrupt_entry_is_detected_and_rebuilt(cache, tmp_path, damage, capsys):
    log = tmp_path / "log"
    key = cache_key(CODE, "model", "t", {})
    cm = cache.get_or_build(key, CODE, "model", fake_builder(log), verbose=False)
    entry = cache.entry(key)
    if damage == "no_manifest":
        (entry / MANIFEST).unlink()
    elif damage == "bad_manifest_json":
        (entry / MANIFEST).write_text("{not json")
    elif damage == "truncated_so":
        cm.so_file.write_bytes(cm.so_file.read_bytes()[:5])
    elif damage == "flipped_exe_byte":
        b = bytearray(cm.exe_file.read_bytes())
        b[-2] ^= 1
        cm.exe_file.write_bytes(bytes(b))
    elif damage == "missing_exe":
        cm.exe_file.unlink()
    elif damage == "manifest_of_other_entry":
        m = json.loads((entry / MANIFEST).read_text())
        m["hash"] = "0" * 32
        (entry / MANIFEST).write_text(json.dumps(m))
    elif damage == "exe_not_executable":
        cm.exe_file.chmod(0o644)
    ok, reason, _ = validate_entry(entry, key)
    assert not ok, (damage, reason)
    again = cache.get_or_build(key, CODE, "model", fake_builder(log), verbose=True)
    assert builds(log) == 2
    assert "corrupt" in capsys.readouterr().err
    assert validate_entry(entry, key)[0]
    assert again.so_file.read_bytes() == cm.so_file.read_bytes() or damage != "truncated_so"
    assert not list(cache.root.glob(".t*"))


def test_failed_build_leaves_nothing(cache, tmp_path):
    log = tmp_path / "log"
    key = cache_key(CODE, "model", "t", {})
    with pytest.raises(ModelBuildError, match="something"):
        cache.get_or_build(key, CODE, "model", fake_builder(log, fail=True), verbose=False)
    assert not cache.entry(key).exists()
    assert not list(cache.root.glob(".tmp-*"))
    cache.get_or_build(key, CODE, "model", fake_builder(log), verbose=False)
    assert validate_entry(cache.entry(key), key)[0]


def test_build_missing_output_is_an_error(cache, tmp_path):
    def bad(workdir, stan_file, name):
        (workdir / name).write_text("")  # no .so
        return {}

    key = cache_key(CODE, "model", "t", {})
    with pytest.raises(ModelBuildError, match="model_model.so"):
        cache.get_or_build(key, CODE, "model", bad, verbose=False)
    assert not cache.entry(key).exists()


def test_stale_tmp_dirs_of_dead_processes_are_removed(cache, tmp_path):
    key = cache_key(CODE, "model", "t", {})
    cache.root.mkdir(parents=True)
    p = subprocess.Popen(["true"])
    p.wait()
    stale = cache.root / f".tmp-{key}-{p.pid}"
    stale.mkdir()
    (stale / "model").write_text("half written")
    cache.get_or_build(key, CODE, "model", fake_builder(tmp_path / "log"), verbose=False)
    assert not stale.exists()


def test_interrupted_build_leaves_no_entry(cache, tmp_path):
    def interrupted(workdir, stan_file, name):
        (workdir / name).write_text("partial")
        raise KeyboardInterrupt

    key = cache_key(CODE, "model", "t", {})
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build(key, CODE, "model", interrupted, verbose=False)
    assert not cache.entry(key).exists() and not list(cache.root.glob(".tmp-*"))


def test_progress_message(cache, tmp_path, capsys):
    key = cache_key(CODE, "model", "t", {})
    cache.get_or_build(key, CODE, "model", fake_builder(tmp_path / "log"), verbose=True)
    err = capsys.readouterr().err
    assert "Compiling Stan program (new model structure)" in err and "done in" in err
    key2 = cache_key(CODE, "model2", "t", {})
    cache.get_or_build(key2, CODE, "model2", fake_builder(tmp_path / "log"), verbose=False)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- two processes


def _cache_worker(root: str, key: str, log: str, out: str) -> None:
    c = ModelCache(Path(root))
    cm = c.get_or_build(key, CODE, "model", fake_builder(Path(log), sleep=1.5), verbose=True)
    with open(out, "a") as f:
        f.write(json.dumps({"exe": str(cm.exe_file), "sha": cm.manifest["files"]["exe"]["sha256"]})
                + "\n")


def test_second_process_waits_and_reuses(cache, tmp_path):
    key = cache_key(CODE, "model", "t", {})
    log, out = tmp_path / "log", tmp_path / "out"
    ctx = mp.get_context("fork")
    ps = [ctx.Process(target=_cache_worker, args=(str(cache.root), key, str(log), str(out)))
          for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert builds(log) == 1
    results = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert len(results) == 3 and len({json.dumps(r) for r in results}) == 1
    assert (cache.root / f"{key}.lock").exists()


# --------------------------------------------------------------------------- data


def test_encode_data_numpy():
    d = {"N": np.int64(3), "y": np.array([1.0, 2.5, -1.0]), "X": np.arange(6.0).reshape(3, 2),
         "flag": True, "g": np.array([1, 2, 2])}
    back = json.loads(encode_data(d))
    assert back["N"] == 3 and back["y"] == [1.0, 2.5, -1.0]
    assert back["X"] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    assert back["flag"] == 1 and back["g"] == [1, 2, 2]


# --------------------------------------------------------------------------- stanc


def _find_stanc() -> Path | None:
    homes = [os.environ.get("BAYESGLMM_HOME"), "~/.cache/bayesglmm"]
    for h in homes:
        if h:
            p = Path(h).expanduser() / "toolchain" / "stan" / "stanc"
            if p.is_file() and os.access(p, os.X_OK):
                return p
    return None


@pytest.fixture
def stanc():
    p = _find_stanc()
    require(p is not None, "no unpacked stanc (run python -m bayesglmm.toolchain install)")
    return p


def test_stanc_syntax_error(stanc, tmp_path):
    code = "parameters {\n  real y\n}\nmodel { y ~ normal(0, 1); }\n"
    with pytest.raises(StanCompileError) as ei:
        run_stanc_check(stanc, code, "model", tmp_path)
    e = ei.value
    assert isinstance(e, ValueError)
    assert e.line == 3 and e.column is not None
    assert "Syntax error" in e.message and "model.stan" in e.message
    assert not list(tmp_path.iterdir())  # scratch files removed


def test_stanc_type_error(stanc, tmp_path):
    code = "parameters { real mu; }\nmodel {\n  vector[3] v;\n  v = mu;\n}\n"
    with pytest.raises(StanCompileError) as ei:
        run_stanc_check(stanc, code, "glmm", tmp_path)
    assert ei.value.line == 4
    assert "Semantic error" in str(ei.value) and "glmm.stan" in str(ei.value)


def test_stanc_ok_returns_warnings_list(stanc, tmp_path):
    assert run_stanc_check(stanc, CODE, "model", tmp_path) == []


def test_stanc_error_is_raised_before_any_build(stanc, tmp_path):
    cache = ModelCache(tmp_path / "models")
    log = tmp_path / "log"
    code = "parameters { real y; } model { y ~ normal(0, 1) }"
    key = cache_key(code, "model", "t", {})
    with pytest.raises(StanCompileError):
        cache.get_or_build(key, code, "model", fake_builder(log), verbose=False,
                           checker=lambda c, n: run_stanc_check(stanc, c, n, cache.root))
    assert builds(log) == 0 and not cache.entry(key).exists()


def test_model_names_are_sanitised():
    assert cache_mod.sanitize_name("glmm_1") == "glmm_1"
    assert cache_mod.sanitize_name("my-model v2") == "my_model_v2"
    assert cache_mod.sanitize_name("2nd") == "m_2nd"
    assert cache_mod.sanitize_name("--") == "model"


# --------------------------------------------------------------------------- real compiles

BERNOULLI = """
data { int<lower=0> N; array[N] int<lower=0, upper=1> y; }
parameters { real<lower=0, upper=1> theta; }
model { theta ~ beta(1, 1); y ~ bernoulli(theta); }
"""
BERN_DATA = {"N": 10, "y": np.array([0, 1, 0, 0, 0, 0, 0, 0, 0, 1])}


@pytest.mark.slow
def test_compile_sample_and_gradient():
    from bayesglmm.toolchain import compile_model

    t0 = time.monotonic()
    cm = compile_model(BERNOULLI, name="bernoulli", verbose=True)
    first = time.monotonic() - t0
    assert validate_entry(cm.directory, cm.hash)[0]
    t0 = time.monotonic()
    assert compile_model(BERNOULLI, name="bernoulli") is cm  # in-process memo
    assert time.monotonic() - t0 < 0.5, first  # memo hit: no validation, no build

    fit = cm.cmdstan_model().sample(data=BERN_DATA, chains=2, iter_warmup=300,
                                    iter_sampling=300, seed=1, show_progress=False)
    theta = fit.stan_variable("theta")
    assert theta.shape == (600,)
    assert abs(theta.mean() - 3 / 12) < 0.05  # posterior Beta(3, 9)

    bs = cm.bridgestan_model(BERN_DATA)
    bs2 = cm.bridgestan_model(json.dumps({"N": 10, "y": [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]}))
    x = np.array([0.3])  # unconstrained: logit(theta)
    lp, grad = bs.log_density_gradient(x, propto=False, jacobian=True)
    th = 1 / (1 + math.exp(-0.3))
    # log p = 2 log th + 8 log(1 - th) + log jacobian (th (1 - th))
    exact = 2 * math.log(th) + 8 * math.log(1 - th) + math.log(th * (1 - th))
    assert lp == pytest.approx(exact, rel=1e-10)
    assert grad[0] == pytest.approx(3 - 12 * th, rel=1e-10)
    assert bs2.log_density(x, propto=False) == pytest.approx(exact, rel=1e-10)


@pytest.mark.slow
def test_cached_model_reused_by_new_process():
    from bayesglmm.toolchain import compile_model

    cm = compile_model(BERNOULLI, name="bernoulli", verbose=False)
    script = (
        "import time, sys; t=time.monotonic();"
        "from bayesglmm.toolchain import compile_model;"
        f"cm = compile_model({BERNOULLI!r}, name='bernoulli', verbose=True);"
        "print(cm.hash, time.monotonic()-t)"
    )
    r = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    h, secs = r.stdout.split()
    assert h == cm.hash and float(secs) < 5
    assert "Compiling" not in r.stderr


@pytest.mark.slow
def test_compile_model_stan_error_has_position():
    from bayesglmm.toolchain import compile_model

    bad = "parameters {\n  real y;\n}\nmodel {\n  y ~ normal(0, 1)\n}\n"
    with pytest.raises(StanCompileError) as ei:
        compile_model(bad, verbose=False)
    assert ei.value.line == 6 and "model.stan" in ei.value.message


@pytest.mark.slow
@pytest.mark.timeout(1200)  # two processes, one compile each waits for (600 s budget)
def test_two_processes_compile_once(tmp_path):
    """Two processes fit the same new program at once: one compiles, the other waits for it,
    and both sample from it."""
    code = BERNOULLI + f"\n// unique {time.time()}\n"
    script = (
        "import sys; from bayesglmm.toolchain import compile_model;"
        f"cm = compile_model({code!r}, name='twice', verbose=True);"
        "fit = cm.cmdstan_model().sample(data={'N': 10, 'y': [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]},"
        " chains=1, iter_sampling=200, seed=1, show_progress=False);"
        "assert fit.stan_variable('theta').shape == (200,);"
        "print(cm.manifest['created'], cm.hash)"
    )
    ps = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=REPO) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in ps]
    assert all(p.returncode == 0 for p in ps), outs
    assert outs[0][0] == outs[1][0]  # same entry, same MANIFEST
    compiled = sum("Compiling Stan program" in err for _, err in outs)
    assert compiled == 1


@pytest.mark.slow
def test_cxx_failure_reports_compiler_output(monkeypatch):
    """A C++ failure (here: a bad flag) raises ModelBuildError with the compiler's words."""
    from bayesglmm.toolchain import compile_model, ensure_toolchain, models_dir

    tc = ensure_toolchain(verbose=False)
    monkeypatch.setenv("CXXFLAGS", "-fno-such-option-for-test")
    with pytest.raises(ModelBuildError) as ei:
        compile_model(BERNOULLI, name="broken", verbose=False)
    msg = str(ei.value)
    assert "C++ compilation" in msg and "no-such-option-for-test" in msg
    # this process's build directory is gone (the shared cache may hold others' builds)
    assert not list(models_dir(tc.home).glob(f".tmp-*-{os.getpid()}"))


@pytest.mark.slow
def test_runtime_error_names_the_program_file():
    """Stan's run-time messages reach the user and name <name>.stan, not a build dir."""
    from bayesglmm.toolchain import compile_model

    code = ("parameters { real y; }\nmodel {\n  if (y > 100) reject(\"y too large: \", y);\n"
            "  y ~ normal(0, 1);\n}\n")
    cm = compile_model(code, name="rejecting", verbose=False)
    bs = cm.bridgestan_model()
    assert bs.log_density(np.array([0.5]), propto=False) == pytest.approx(
        -0.5 * 0.25 - 0.5 * math.log(2 * math.pi))
    with pytest.raises(RuntimeError) as ei:
        bs.log_density(np.array([200.0]))
    assert "y too large: 200" in str(ei.value)
    assert "'rejecting.stan', line 3" in str(ei.value) and ".tmp-" not in str(ei.value)


@pytest.mark.slow
def test_external_toolchain_path():
    """The external route (cmdstanpy.CmdStanModel + bridgestan.compile_model) fills the same
    cache layout.  Driven here against the bundled homes, which are CmdStan/BridgeStan
    compatible, presented as an external toolchain."""
    from bayesglmm.toolchain import Toolchain, compile_model, ensure_toolchain

    b = ensure_toolchain(verbose=False)
    ext = Toolchain(cmdstan_dir=b.cmdstan_dir, bridgestan_dir=b.bridgestan_dir,
                    stan_dir=b.stan_dir, kind="external", home=b.home,
                    id="external-test " + b.id, cmdstan_version="2.35.0",
                    bridgestan_version="2.9.0")
    code = BERNOULLI + f"\n// external route {time.time()}\n"
    cm = compile_model(code, name="ext", verbose=False, toolchain=ext)
    assert validate_entry(cm.directory, cm.hash)[0]
    assert set(cm.manifest["files"]) == {"stan", "exe", "so", "hpp"}
    assert cm.manifest["flags"]["cpp_options"] == {"STAN_THREADS": True}
    bs = cm.bridgestan_model(BERN_DATA)
    assert bs.param_names() == ["theta"]
    fit = cm.cmdstan_model().sample(data=BERN_DATA, chains=1, iter_warmup=200,
                                    iter_sampling=200, seed=2, show_progress=False)
    assert fit.stan_variable("theta").shape == (200,)


def test_disk_full_during_compile(cache, tmp_path):
    import errno

    from bayesglmm.toolchain import ToolchainError

    def full(workdir, stan_file, name):
        (workdir / name).write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    key = cache_key(CODE, "model", "t", {})
    with pytest.raises(ToolchainError, match="disk is full"):
        cache.get_or_build(key, CODE, "model", full, verbose=False)
    assert not cache.entry(key).exists() and not list(cache.root.glob(".tmp-*"))


@pytest.mark.slow
def test_compile_killed_halfway_leaves_nothing_finished(tmp_path):
    """The compiling process SIGKILLed while make runs: no cache entry appears (the build
    directory is renamed into place only when complete), the next compile of the same program
    clears the dead process's build directory, compiles and the program runs."""
    from bayesglmm.toolchain import compile_model

    code = BERNOULLI + f"\n// killed compile {time.time()} {os.getpid()}\n"
    script = ("from bayesglmm.toolchain import compile_model;"
              f"compile_model({code!r}, name='killed', verbose=False)")
    p = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    make, t0 = None, time.monotonic()
    while make is None and time.monotonic() - t0 < 300 and p.poll() is None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == p.pid and \
                        "make" in Path(f"/proc/{pid}/cmdline").read_text():
                    make = int(pid)
            except (OSError, ValueError, IndexError):
                continue
        time.sleep(0.05)
    assert make is not None, p.communicate()
    tmp_dir = Path(Path(f"/proc/{make}/cmdline").read_text().split("\0")[-2]).parent
    time.sleep(2.0)  # half-way: the compiler is running
    p.kill()
    p.wait()
    key = tmp_dir.name.split("-")[1]
    entry = tmp_dir.parent / key
    try:
        assert not entry.exists()  # nothing a later fit could take for finished
        cm = compile_model(code, name="killed", verbose=False)
        assert cm.directory == entry and validate_entry(entry, key)[0]
        assert not tmp_dir.exists()  # the dead process's build directory is gone
        bs = cm.bridgestan_model(BERN_DATA)
        th = 1 / (1 + math.exp(-0.3))
        exact = 2 * math.log(th) + 8 * math.log(1 - th) + math.log(th * (1 - th))
        assert bs.log_density(np.array([0.3]), propto=False) == pytest.approx(exact, rel=1e-10)
    finally:
        # the killed process's make runs on as an orphan in its own session: stop it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make, signal.SIGKILL)
