"""Faults survived: Ctrl-C during sample(), optimize() and a compile; CmdStan killed; a full
disk or a read-only model cache; CmdStan output truncated on a full disk.

Each fault happens for real in a child Python process (a signal sent to it or to its CmdStan
child; a read-only bind mount or a small tmpfs in a private mount namespace made with
``unshare``), and the test reads what the child printed and which processes are left.
The programs are the suite's cached ones (the conjugate normal model of tests/reference/stan,
debate Model A) or tiny new ones.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REFERENCE, require

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

PRELUDE = f"""
import json, os, sys, time
sys.path.insert(0, {str(REPO)!r})
import bayesglmm
from bayesglmm.toolchain._common import child_processes
ref = json.load(open({str(REFERENCE / "bridge_conjugate.json")!r}))
conj = bayesglmm.from_stan({str(REFERENCE / "stan" / "conjugate.stan")!r},
                           {{"n": len(ref["y"]), "y": ref["y"], "s": 10.0}})
"""


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the direct children of ``pid``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                with open(f"/proc/{name}/cmdline") as f:
                    out.append((int(name), f.read().replace("\0", " ")))
        except (OSError, ValueError, IndexError):
            continue
    return out


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start(script: str, tmp_path: Path, env: dict | None = None) -> subprocess.Popen:
    f = tmp_path / "child.py"
    f.write_text(PRELUDE + textwrap.dedent(script))
    return subprocess.Popen([sys.executable, str(f)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, **(env or {})})


def wait_for_child(p: subprocess.Popen, marker: str, timeout: float = 300) -> tuple[int, str]:
    """The first child of ``p`` whose command line contains ``marker``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        hits = [c for c in children(p.pid) if marker in c[1]]
        if hits:
            return hits[0]
        if p.poll() is not None:
            raise AssertionError(f"child exited early: {p.communicate()}")
        time.sleep(0.05)
    p.kill()
    raise AssertionError(f"no child process with {marker!r} after {timeout} s")


def interrupt(p: subprocess.Popen) -> tuple[float, str, str]:
    """SIGINT to the Python process only (as a notebook's interrupt button does): seconds until
    it exited, stdout, stderr."""
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    return time.monotonic() - t0, out, err


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_sample(conjugate_compiled, tmp_path):
    """KeyboardInterrupt within seconds; the CmdStan process is stopped (cmdstanpy alone lets it
    run on in a worker thread) and its output directory and data file are removed."""
    p = start("""
        import cmdstanpy
        conj.compile(verbose=False)
        try:
            conj.sample(chains=2, warmup=1000, sampling=10**8, seed=1, verbose=False)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
            print("children", child_processes(), flush=True)
            print("tmp", os.listdir(cmdstanpy._TMPDIR), flush=True)
            sys.exit(3)
    """, tmp_path)
    stan_pid, _ = wait_for_child(p, "method=sample")
    time.sleep(1.0)  # sampling for a while, output files written
    secs, out, err = interrupt(p)
    assert p.returncode == 3, (out, err)
    assert "KeyboardInterrupt" in out and "children []" in out and "tmp []" in out, (out, err)
    assert secs < 15, secs
    assert not alive(stan_pid), "CmdStan kept running after the interrupt"


def test_ctrl_c_during_optimize(debate_compiled, tmp_path):
    """optimize() runs in-process (BridgeStan): KeyboardInterrupt promptly, no child left."""
    p = start("""
        m = bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=bayesglmm.load_debate(),
                           prior=bayesglmm.prior_normal())
        m.compile(verbose=False)
        print("ready", flush=True)
        try:
            m.optimize(num_estimate=10**6, seed=1, verbose=False)  # hours of multistart
        except KeyboardInterrupt:
            print("KeyboardInterrupt", child_processes(), flush=True)
            sys.exit(3)
    """, tmp_path)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(2.0)
    secs, out, err = interrupt(p)
    assert p.returncode == 3 and "KeyboardInterrupt []" in out, (out, err)
    assert secs < 15, secs


def test_ctrl_c_during_compile(toolchain, tmp_path):
    """The make/compiler process group is stopped, the temporary build directory removed and
    nothing enters the cache; the next compile of the same program succeeds."""
    code = ("parameters { real y; } model { y ~ normal(0, 1); }\n"
            f"// interrupted compile {time.time()} {os.getpid()}\n")
    (tmp_path / "p.stan").write_text(code)
    p = start(f"""
        from bayesglmm.toolchain import compile_model
        try:
            compile_model(open({str(tmp_path / "p.stan")!r}).read(), name="interrupted",
                          verbose=False)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", child_processes(), flush=True)
            sys.exit(3)
    """, tmp_path)
    make_pid, cmd = wait_for_child(p, "make")
    tmp_dir = Path(cmd.split()[-1]).parent  # make's target: <models>/.tmp-<key>-<pid>/<name>
    time.sleep(2.0)
    secs, out, err = interrupt(p)
    assert p.returncode == 3 and "KeyboardInterrupt []" in out, (out, err)
    assert secs < 15, secs
    time.sleep(0.5)
    assert group_members(make_pid) == [], "compiler processes left running"
    assert not tmp_dir.exists()
    key = tmp_dir.name.split("-")[1]
    assert not (tmp_dir.parent / key).exists()


# ----------------------------------------------------------------------------- CmdStan killed


def test_cmdstan_killed_mid_run(conjugate_compiled, tmp_path):
    """CmdStan SIGKILLed (e.g. by the out-of-memory killer): a clear error, no summary."""
    p = start("""
        conj.compile(verbose=False)
        try:
            fit = conj.sample(chains=2, warmup=1000, sampling=10**8, seed=1, verbose=False)
            print("SUMMARY", fit.summary())
        except RuntimeError as e:
            print("ERROR", e, flush=True)
    """, tmp_path)
    stan_pid, _ = wait_for_child(p, "method=sample")
    time.sleep(1.0)
    os.kill(stan_pid, signal.SIGKILL)
    out, err = p.communicate(timeout=120)
    assert "SUMMARY" not in out, out
    assert "ERROR CmdStan was killed by signal SIGKILL before it finished" in out, (out, err)


# ----------------------------------------------------------------------------- disks


def _mount_ns(mounts: str, argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` after the shell commands ``mounts`` in a private mount namespace (root: a
    mount namespace; otherwise also a user namespace mapping the user to root)."""
    require(shutil.which("unshare") is not None, "util-linux `unshare` is needed for the disk tests")
    ns = ["unshare", "-m"] + (["-r"] if os.geteuid() != 0 else [])
    probe = subprocess.run([*ns, "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True,
                           text=True, check=False)
    require(probe.returncode == 0, f"cannot mount in a private namespace: {probe.stderr.strip()}")
    return subprocess.run([*ns, "sh", "-c", mounts + ' && exec "$@"', "sh", *argv],
                          capture_output=True, text=True, check=False, timeout=600,
                          env={**os.environ, **(env or {})})


NEW_PROGRAM = """
from pathlib import Path
from bayesglmm.toolchain import ToolchainError
f = Path(sys.argv[1]) / "new.stan"
f.write_text("data {{ int N; vector[N] y; }} parameters {{ real mu; }} "
             "model {{ y ~ normal(mu, 1); }}\\n// {tag}\\n")
try:
    bayesglmm.from_stan(f, {{"N": 3, "y": [1.0, 2.0, 3.0]}}).compile(verbose=False)
    print("COMPILED")
except ToolchainError as e:
    print("ERROR", e)
"""


def _script(tmp_path: Path, body: str) -> list[str]:
    f = tmp_path / "child.py"
    f.write_text(PRELUDE + textwrap.dedent(body))
    return [sys.executable, str(f), str(tmp_path)]


def test_read_only_model_cache(conjugate_compiled, toolchain, tmp_path):
    """A read-only cache: cached programs still run; a new one fails naming the directory."""
    models = toolchain.home / "models"
    argv = _script(tmp_path, textwrap.dedent("""
        fit = conj.sample(chains=1, sampling=200, seed=1, verbose=False)
        print("SAMPLED", fit.summary().shape[0] > 0)
    """) + NEW_PROGRAM.format(tag=f"read-only {time.time()}"))
    r = _mount_ns(f"mount --bind -o ro {models} {models}", argv)
    assert "SAMPLED True" in r.stdout, (r.stdout, r.stderr)
    assert f"ERROR Cannot write to the compiled-model cache {models}: Read-only file system" \
        in r.stdout, (r.stdout, r.stderr)
    assert "set BAYESGLMM_HOME to a writable directory" in r.stdout


def test_full_disk_during_compile(toolchain, tmp_path):
    models = toolchain.home / "models"
    argv = _script(tmp_path, NEW_PROGRAM.format(tag=f"full disk {time.time()}"))
    r = _mount_ns(f"mount -t tmpfs -o size=300k tmpfs {models}", argv)
    assert "ERROR The disk is full: the compiler could not write into " + str(models) \
        in r.stdout, (r.stdout, r.stderr)
    assert "No space left on device" in r.stdout


def test_full_disk_truncates_cmdstan_output(conjugate_compiled, tmp_path):
    """CmdStan's CSV cut short on a full disk (TMPDIR on a 100 kB tmpfs; CmdStan itself exits
    0): a clear error naming the directory, never a summary of the partial draws."""
    small = tmp_path / "small"
    small.mkdir()
    argv = _script(tmp_path, """
        conj.compile(verbose=False)
        try:
            fit = conj.sample(chains=2, sampling=5000, seed=1, verbose=False)
            print("SUMMARY", fit.summary())
        except RuntimeError as e:
            print("ERROR", e)
    """)
    r = _mount_ns(f"mount -t tmpfs -o size=100k tmpfs {small}", argv, env={"TMPDIR": str(small)})
    assert "SUMMARY" not in r.stdout, r.stdout
    assert f"ERROR CmdStan's output in {small}" in r.stdout, (r.stdout, r.stderr)
    assert "is truncated or corrupt" in r.stdout and f"The disk holding {small}" in r.stdout
