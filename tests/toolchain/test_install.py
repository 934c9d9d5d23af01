"""Installer, READY logic, locking, toolchain selection and CLI of bayesglmm.toolchain.

Everything here runs without building Stan: the make step is replaced by a small build
function and the wheel by a tiny zip with the same layout.  All other code paths (wheel
verification and unpacking, source copying, READY, locks, pip, PATH checks) are real.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import multiprocessing as mp
import os
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from bayesglmm.toolchain import _common, buildtools, locate, sources
from bayesglmm.toolchain import wheel as wheel_mod
from bayesglmm.toolchain._common import (
    MissingBuildToolsError,
    ToolchainError,
    WheelDownloadError,
)

REPO = Path(__file__).resolve().parents[2]
# the module, not the re-exported function of the same name
inst = importlib.import_module("bayesglmm.toolchain.install")


# --------------------------------------------------------------------------- fixtures


def make_fake_wheel(path: Path) -> str:
    """A zip with the wheel's layout; returns its sha256."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("httpstan/__init__.py", "")
        z.writestr("httpstan/include/stan/version.hpp",
                   "#define STAN_MAJOR 2\n#define STAN_MINOR 35\n#define STAN_PATCH 0\n")
        z.writestr("httpstan/include/Eigen/Dense", "// eigen\n")
        z.writestr("httpstan/include/pybind11/pybind11.h", "// not wanted\n")
        z.writestr("httpstan/lib/libtbb.so.2", b"\x7fELF fake")
        z.writestr("httpstan/lib/libsundials_cvodes.a", b"!<arch>\n")
        info = zipfile.ZipInfo("httpstan/stanc")
        info.external_attr = 0o644 << 16  # deliberately not executable: installer must chmod
        z.writestr(info, "#!/bin/sh\necho stanc\n")
        z.writestr("httpstan/stan_services.o", b"junk")
        z.writestr("httpstan-4.13.0.dist-info/RECORD", "")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("BAYESGLMM_HOME", str(home))
    monkeypatch.setenv("BAYESGLMM_TOOLCHAIN", "bundled")
    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))
    for var in ("CMDSTAN", "BRIDGESTAN", "BAYESGLMM_WHEEL", "CXX", "MAKE"):
        monkeypatch.setenv(var, "")  # records the original value, restored after the test
        monkeypatch.delenv(var)
    wheel = tmp_path / "fake.whl"
    sha = make_fake_wheel(wheel)
    monkeypatch.setenv("BAYESGLMM_WHEEL", str(wheel))
    locate._memo.clear()
    return {"home": home, "root": home / "toolchain", "wheel": wheel, "sha": sha,
            "log": tmp_path / "build.log"}


def fake_build_factory(log: Path, sleep: float = 0.0, fail: BaseException | None = None):
    def build(root: Path, progress, jobs: int) -> None:
        with open(log, "a") as f:
            f.write(f"start {os.getpid()} {time.time()}\n")
        time.sleep(sleep)
        if fail is not None:
            raise fail
        for rel in buildtools.EXPECTED_OUTPUTS:
            p = root / rel
            if not p.exists():
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text("CMDSTAN_VERSION := 2.35.0\n" if rel == "cmdstan/makefile" else "x\n")
        with open(log, "a") as f:
            f.write(f"end {os.getpid()} {time.time()}\n")

    return build


def build_count(log: Path) -> int:
    if not log.exists():
        return 0
    return sum(1 for ln in log.read_text().splitlines() if ln.startswith("start"))


# --------------------------------------------------------------------------- hashing


def test_source_hash_is_stable_and_content_sensitive(tmp_path):
    files = sources.package_files()
    rels = [r for r, _ in files]
    assert "common.mk" in rels
    assert rels == sorted(rels)
    assert sources.source_hash() == sources.source_hash(files)
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_text("one")
    b.write_text("two")
    h1 = sources.source_hash([("a.txt", a), ("b.txt", b)])
    b.write_text("two!")
    h2 = sources.source_hash([("a.txt", a), ("b.txt", b)])
    h3 = sources.source_hash([("c.txt", a), ("b.txt", b)])  # renamed file
    assert len({h1, h2, h3}) == 3


def test_wheel_member_selection():
    w = wheel_mod._wanted_member
    assert w("httpstan/include/stan/version.hpp") == "include/stan/version.hpp"
    assert w("httpstan/include/pybind11/pybind11.h") is None
    assert w("httpstan/lib/libtbb.so.2") == "lib/libtbb.so.2"
    assert w("httpstan/stanc") == "stanc"
    assert w("httpstan/app.py") is None
    assert w("httpstan/include/") is None


# --------------------------------------------------------------------------- install


def test_install_unpacks_copies_and_writes_ready(env):
    rec = inst.install(env["home"], verbose=False, build=fake_build_factory(env["log"]),
                       expected_sha256=env["sha"])
    root = env["root"]
    ready = json.loads((root / "READY").read_text())
    assert ready == rec
    assert ready["stan_version"] == "2.35.0"
    assert ready["wheel_sha256"] == env["sha"]
    assert ready["source_hash"] == sources.source_hash()
    assert ready["compiler"].startswith(("g++", "c++")) or ":" in ready["compiler"]
    stan = root / "stan"
    assert (stan / "include/stan/version.hpp").is_file()
    assert not (stan / "include/pybind11").exists()
    assert (stan / "lib/libtbb.so.2").is_file()
    assert os.access(stan / "stanc", os.X_OK)
    assert not (stan / "stan_services.o").exists()
    assert not list(root.glob(".stan.tmp-*"))
    for rel, node in sources.package_files():
        assert (root / rel).read_bytes() == node.read_bytes(), rel
    ok, why = inst.ready_status(root, cxx=buildtools.compiler_version())
    assert ok, why
    assert build_count(env["log"]) == 1


def test_install_creates_private_directories(env):
    """A new BAYESGLMM_HOME and its toolchain are private (0700), the lock file 0600."""
    assert not env["home"].exists()
    inst.install(env["home"], verbose=False, build=fake_build_factory(env["log"]),
                 expected_sha256=env["sha"])
    for p in (env["home"], env["root"]):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    assert stat.S_IMODE((env["home"] / "install.lock").stat().st_mode) == 0o600


def test_install_is_idempotent(env, capsys):
    build = fake_build_factory(env["log"])
    inst.install(env["home"], verbose=False, build=build, expected_sha256=env["sha"])
    ready_before = (env["root"] / "READY").read_text()
    rec = inst.install(env["home"], verbose=True, build=build, expected_sha256=env["sha"])
    assert "already installed" in capsys.readouterr().err
    assert build_count(env["log"]) == 1
    assert (env["root"] / "READY").read_text() == ready_before
    assert rec == json.loads(ready_before)


def test_changed_sources_recopy_and_rebuild(env):
    build = fake_build_factory(env["log"])
    inst.install(env["home"], verbose=False, build=build, expected_sha256=env["sha"])
    root = env["root"]
    # simulate an older package version: recorded hash differs, one copied file differs
    ready = json.loads((root / "READY").read_text())
    ready["source_hash"] = "0" * 64
    (root / "READY").write_text(json.dumps(ready))
    (root / "common.mk").write_text("# old version\n")
    other = [r for r, _ in sources.package_files() if r != "common.mk"]
    mtimes = {r: (root / r).stat().st_mtime_ns for r in other}
    ok, why = inst.ready_status(root)
    assert not ok and "sources changed" in why
    # the wheel is not needed again: make it unavailable
    os.environ["BAYESGLMM_WHEEL"] = str(env["wheel"]) + ".missing"
    inst.install(env["home"], verbose=False, build=build, expected_sha256=env["sha"])
    assert build_count(env["log"]) == 2
    assert json.loads((root / "READY").read_text())["source_hash"] == sources.source_hash()
    pkg = dict(sources.package_files())
    assert (root / "common.mk").read_bytes() == pkg["common.mk"].read_bytes()
    # unchanged files were not rewritten (so make rebuilds only what changed)
    assert {r: (root / r).stat().st_mtime_ns for r in other} == mtimes


def test_copy_sources_removes_files_dropped_from_package(env):
    inst.install(env["home"], verbose=False, build=fake_build_factory(env["log"]),
                 expected_sha256=env["sha"])
    root = env["root"]
    listing = json.loads((root / sources.INSTALLED_LIST).read_text())
    (root / "src" / "obsolete.cpp").parent.mkdir(parents=True, exist_ok=True)
    (root / "src" / "obsolete.cpp").write_text("int x;\n")
    (root / sources.INSTALLED_LIST).write_text(json.dumps(listing + ["src/obsolete.cpp"]))
    changed = sources.copy_sources(root, _common.Progress(False))
    assert changed == ["src/obsolete.cpp"]
    assert not (root / "src" / "obsolete.cpp").exists()


def test_copy_sources_never_writes_through_dev_symlinks(tmp_path):
    """The developer layout links <root>/common.mk and <root>/src into the package."""
    root = tmp_path / "root"
    root.mkdir()
    pkg = Path(sources.__file__).parent / "files"
    (root / "common.mk").symlink_to(pkg / "common.mk")
    if (pkg / "src").is_dir():
        (root / "src").symlink_to(pkg / "src")
    before = {r: n.read_bytes() for r, n in sources.package_files()}
    changed = sources.copy_sources(root, _common.Progress(False))
    assert not any(c == "common.mk" or c.startswith("src/") for c in changed)
    assert (root / "common.mk").is_symlink()
    assert {r: n.read_bytes() for r, n in sources.package_files()} == before


@pytest.mark.parametrize("failure", [
    ToolchainError("compile failed"),
    KeyboardInterrupt(),
])
def test_failed_or_interrupted_install_leaves_no_ready(env, failure):
    with pytest.raises(type(failure)):
        inst.install(env["home"], verbose=False, expected_sha256=env["sha"],
                     build=fake_build_factory(env["log"], fail=failure))
    assert not (env["root"] / "READY").exists()
    # a later install succeeds and reuses the unpacked files
    inst.install(env["home"], verbose=False, expected_sha256=env["sha"],
                 build=fake_build_factory(env["log"]))
    assert (env["root"] / "READY").exists()


def test_disk_full_during_install(env):
    build = fake_build_factory(env["log"])
    inst.install(env["home"], verbose=False, build=build, expected_sha256=env["sha"])
    ready = json.loads((env["root"] / "READY").read_text())
    ready["source_hash"] = "stale"
    (env["root"] / "READY").write_text(json.dumps(ready))
    full = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(ToolchainError, match="disk is full") as ei:
        inst.install(env["home"], verbose=False, expected_sha256=env["sha"],
                     build=fake_build_factory(env["log"], fail=full))
    assert "BAYESGLMM_HOME" in str(ei.value)
    assert not (env["root"] / "READY").exists()


def test_disk_full_reported_by_make(tmp_path):
    msg = buildtools._make_failure_message(["make", "build"], 2,
                                     "g++ ...\nfatal error: No space left on device\n")
    assert msg.startswith("The disk is full")


def test_make_step_failure_shows_output_tail(env, tmp_path):
    """The real make step, on a makefile whose build fails."""
    root = tmp_path / "r"
    for sub in ("cmdstan", "bridgestan"):
        (root / sub).mkdir(parents=True)
        (root / sub / ("makefile" if sub == "cmdstan" else "Makefile")).write_text(
            "build:\n\t@echo compiling thing\n\t@echo 'error: something broke' >&2; exit 1\n")
    with pytest.raises(ToolchainError) as ei:
        buildtools.make_build(root, _common.Progress(False), 1)
    assert "error: something broke" in str(ei.value)
    assert "cmdstan" in str(ei.value)


# --------------------------------------------------------------------------- build tools


def _path_with(tmp_path: Path, names: list[str]) -> str:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    for n in names:
        real = subprocess.run(["sh", "-c", f"command -v {n}"], check=False, capture_output=True,
                              text=True).stdout.strip()
        target = real or "/bin/true"
        (d / n).symlink_to(target)
    return str(d)


def test_missing_compiler_and_make(env, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path, []))
    with pytest.raises(MissingBuildToolsError) as ei:
        inst.install(env["home"], verbose=False, expected_sha256=env["sha"],
                     build=fake_build_factory(env["log"]))
    msg = str(ei.value)
    assert "apt-get install g++ make" in msg
    assert "g++" in msg and "'make'" in msg
    assert not (env["root"] / "READY").exists()
    assert build_count(env["log"]) == 0


def test_missing_make_only(tmp_path, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("MAKE", raising=False)
    monkeypatch.setenv("PATH", _path_with(tmp_path, ["g++"]))
    with pytest.raises(MissingBuildToolsError) as ei:
        buildtools.check_build_tools()
    assert "but 'make' could not be found" in str(ei.value)
    assert "apt-get install g++ make" in str(ei.value)


def test_cxx_env_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path, ["make"]))
    monkeypatch.setenv("CXX", "clang++-99")
    with pytest.raises(MissingBuildToolsError, match="clang\\+\\+-99"):
        buildtools.check_build_tools()


# --------------------------------------------------------------------------- wheel


def _bogus_index(monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "3")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)


def test_wheel_download_failure(env, tmp_path, monkeypatch):
    monkeypatch.delenv("BAYESGLMM_WHEEL")
    _bogus_index(monkeypatch, tmp_path)
    with pytest.raises(WheelDownloadError) as ei:
        inst.install(env["home"], verbose=False, expected_sha256=env["sha"],
                     build=fake_build_factory(env["log"]))
    msg = str(ei.value)
    assert "failed" in msg and "httpstan==4.13.0" in msg
    assert "BAYESGLMM_HOME" in msg and "BAYESGLMM_WHEEL" in msg
    assert str(env["home"] / "wheels") in msg
    assert not (env["root"] / "READY").exists()
    assert not (env["root"] / "stan").exists()
    assert stat.S_IMODE((env["home"] / "wheels").stat().st_mode) == 0o700  # made private


def test_wheel_in_home_is_reused_without_download(env, monkeypatch, tmp_path):
    monkeypatch.delenv("BAYESGLMM_WHEEL")
    _bogus_index(monkeypatch, tmp_path)  # any download attempt would fail
    wheels = env["home"] / "wheels"
    wheels.mkdir(parents=True)
    (wheels / wheel_mod.WHEEL_NAME).write_bytes(env["wheel"].read_bytes())
    inst.install(env["home"], verbose=False, expected_sha256=env["sha"],
                 build=fake_build_factory(env["log"]))
    assert (env["root"] / "READY").exists()


def test_wheel_with_wrong_checksum_is_rejected(env, monkeypatch):
    with pytest.raises(WheelDownloadError, match="sha256"):
        inst.install(env["home"], verbose=False, build=fake_build_factory(env["log"]))
    assert not (env["root"] / "READY").exists()
    # a corrupt copy in <home>/wheels is removed, then the download is attempted
    monkeypatch.delenv("BAYESGLMM_WHEEL")
    wheels = env["home"] / "wheels"
    wheels.mkdir(parents=True)
    (wheels / wheel_mod.WHEEL_NAME).write_bytes(b"corrupt")
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(WheelDownloadError):
        inst.install(env["home"], verbose=False, expected_sha256=env["sha"],
                     build=fake_build_factory(env["log"]))
    assert not (wheels / wheel_mod.WHEEL_NAME).exists()


# --------------------------------------------------------------------------- locking


def _install_worker(home: str, log: str, sha: str, out: str) -> None:
    rec = inst.install(home, verbose=True, expected_sha256=sha,
                    build=fake_build_factory(Path(log), sleep=1.5))
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")


def test_two_processes_install_once(env, tmp_path):
    ctx = mp.get_context("fork")
    out = tmp_path / "results.jsonl"
    procs = [ctx.Process(target=_install_worker,
                         args=(str(env["home"]), str(env["log"]), env["sha"], str(out)))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert build_count(env["log"]) == 1
    recs = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert len(recs) == 2 and recs[0] == recs[1]


def test_file_lock_excludes_other_process(tmp_path):
    lock = tmp_path / "x.lock"
    log = tmp_path / "log"

    def worker(i: int) -> None:
        with _common.file_lock(lock):
            with open(log, "a") as f:
                f.write(f"in {i} {time.time()}\n")
            time.sleep(0.5)
            with open(log, "a") as f:
                f.write(f"out {i} {time.time()}\n")

    ctx = mp.get_context("fork")
    ps = [ctx.Process(target=worker, args=(i,)) for i in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(30)
    events = [ln.split()[0] for ln in log.read_text().splitlines()]
    assert events == ["in", "out"] * 3


# --------------------------------------------------------------------------- selection


def _fake_external(tmp_path: Path) -> tuple[Path, Path]:
    cs = tmp_path / "cmdstan-2.36.0"
    (cs / "bin").mkdir(parents=True)
    (cs / "makefile").write_text("CMDSTAN_VERSION := 2.36.0\n")
    (cs / "bin" / "stanc").write_text("")
    bs = tmp_path / "bridgestan-2.9.0"
    bs.mkdir()
    (bs / "Makefile").write_text("")
    return cs, bs


def test_toolchain_selection(env, tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESGLMM_TOOLCHAIN", "auto")
    assert locate.select()["kind"] == "bundled"
    cs, bs = _fake_external(tmp_path)
    monkeypatch.setenv("CMDSTAN", str(cs))
    sel = locate.select()
    assert sel["kind"] == "bundled" and "no BridgeStan" in sel["reason"]
    monkeypatch.setenv("BRIDGESTAN", str(bs))
    assert locate.select()["kind"] == "external"
    tc = locate.external_toolchain()
    assert tc.kind == "external" and tc.cmdstan_version == "2.36.0"
    assert tc.bridgestan_version == "2.9.0"
    assert tc.stanc == cs / "bin" / "stanc"
    monkeypatch.setenv("BAYESGLMM_TOOLCHAIN", "bundled")
    assert locate.select()["kind"] == "bundled"
    # CMDSTAN pointing at a bundled toolchain (e.g. after `eval $(... env)`) is not external
    monkeypatch.setenv("BAYESGLMM_TOOLCHAIN", "auto")
    inst.install(env["home"], verbose=False, build=fake_build_factory(env["log"]),
                 expected_sha256=env["sha"])
    monkeypatch.setenv("CMDSTAN", str(env["root"] / "cmdstan"))
    monkeypatch.setenv("BRIDGESTAN", str(env["root"] / "bridgestan"))
    assert locate.select()["kind"] == "bundled"


def test_default_locations(env, tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESGLMM_TOOLCHAIN", "auto")
    home = Path(os.environ["HOME"])
    for v in ("2.33.1", "2.36.0", "2.36.0-rc1"):
        d = home / ".cmdstan" / f"cmdstan-{v}"
        (d / "bin").mkdir(parents=True)
        (d / "makefile").write_text(f"CMDSTAN_VERSION := {v}\n")
        (d / "bin" / "stanc").write_text("")
    (home / ".bridgestan" / "bridgestan-2.9.0").mkdir(parents=True)
    (home / ".bridgestan" / "bridgestan-2.9.0" / "Makefile").write_text("")
    sel = locate.select()
    assert sel["kind"] == "external"
    assert sel["cmdstan"][0].endswith("cmdstan-2.36.0")


def test_external_toolchain_invalid_dir(env, tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESGLMM_TOOLCHAIN", "external")
    monkeypatch.setenv("CMDSTAN", str(tmp_path / "nope"))
    monkeypatch.setenv("BRIDGESTAN", str(tmp_path / "nope2"))
    with pytest.raises(ToolchainError, match="makefile"):
        locate.ensure_toolchain(verbose=False)


def test_ensure_toolchain_bundled_sets_paths(env, monkeypatch):
    inst.install(env["home"], verbose=False, build=fake_build_factory(env["log"]),
                 expected_sha256=env["sha"])
    import bridgestan
    import cmdstanpy

    tc = locate.ensure_toolchain(verbose=False)
    assert tc.kind == "bundled"
    assert tc.cmdstan_dir == env["root"] / "cmdstan"
    assert tc.stan_dir == env["root"] / "stan"
    assert os.environ["CMDSTAN"] == str(env["root"] / "cmdstan")
    assert cmdstanpy.cmdstan_path() == str(env["root"] / "cmdstan")
    assert os.environ["BRIDGESTAN"] == str(env["root"] / "bridgestan")
    bridgestan.compile.verify_bridgestan_path(os.environ["BRIDGESTAN"])
    assert tc.id and tc.id == locate.ensure_toolchain(verbose=False).id
    assert build_count(env["log"]) == 1


# --------------------------------------------------------------------------- CLI


def _cli(*args, env_extra=None):
    e = dict(os.environ)
    e.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "bayesglmm.toolchain", *args],
                          check=False, capture_output=True, text=True, env=e, cwd=REPO, timeout=120)


def test_cli_status_env_clean(env):
    inst.install(env["home"], verbose=False, build=fake_build_factory(env["log"]),
                 expected_sha256=env["sha"])
    (env["home"] / "models" / "abc").mkdir(parents=True)
    (env["home"] / "models" / "abc" / "model").write_bytes(b"x" * 1000)

    r = _cli("status")
    assert r.returncode == 0, r.stderr
    assert "Toolchain in use: bundled" in r.stdout
    assert "READY" in r.stdout and "2.35.0" in r.stdout
    assert "1 model(s)" in r.stdout
    st = json.loads(_cli("status", "--json").stdout)
    assert st["bundled"]["current"] and st["cache"]["count"] == 1

    r = _cli("env")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines == [f"export CMDSTAN={env['root'] / 'cmdstan'}",
                     f"export BRIDGESTAN={env['root'] / 'bridgestan'}"]
    assert build_count(env["log"]) == 1

    r = _cli("clean")
    assert r.returncode == 0 and not (env["home"] / "models").exists()
    assert (env["root"] / "READY").exists()
    r = _cli("clean", "--all")
    assert r.returncode == 0
    assert not env["root"].exists()


def test_cli_error_is_clean(env, tmp_path):
    r = _cli("install", env_extra={"PATH": _path_with(tmp_path, [])})
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "apt-get install g++ make" in r.stderr
    assert "Traceback" not in r.stderr


def test_interrupted_make_stops_compilers(tmp_path):
    """An exception (e.g. Ctrl-C) during make stops make and the processes it started."""
    import signal

    pidfile = tmp_path / "pid"
    d = tmp_path / "cmdstan"
    d.mkdir()
    (d / "makefile").write_text(f"build:\n\t@echo $$$$ > {pidfile}; exec sleep 60\n")

    class Interrupt(Exception):
        pass

    def on_alarm(signum, frame):
        raise Interrupt()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(2)
    t0 = time.monotonic()
    try:
        with pytest.raises(Interrupt):
            buildtools.run_make(["-C", str(d), "build"], _common.Progress(False))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - t0 < 20
    pid = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _common.pid_alive(pid) or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_installed_home_works_without_compiler(env, tmp_path, monkeypatch):
    """A READY toolchain with cached models (e.g. a copied BAYESGLMM_HOME) needs no g++
    until a new program must be compiled."""
    from bayesglmm.toolchain import cache as cache_mod

    inst.install(env["home"], verbose=False, build=fake_build_factory(env["log"]),
                 expected_sha256=env["sha"])
    tc = locate.ensure_toolchain(verbose=False)
    code = "parameters { real y; } model { y ~ std_normal(); }"
    flags = cache_mod.build_flags(tc)
    key = cache_mod.cache_key(code, "model", tc.id, flags)

    def builder(workdir, stan_file, name):
        for f in (name, f"{name}_model.so", f"{name}.hpp"):
            (workdir / f).write_text(f)
        (workdir / name).chmod(0o755)
        return {}

    cache_mod.ModelCache(env["home"] / "models").get_or_build(key, code, "model", builder,
                                                               verbose=False)
    locate._memo.clear()
    cache_mod._memo.clear()
    monkeypatch.setenv("PATH", _path_with(tmp_path, ["make"]))  # no g++
    tc2 = locate.ensure_toolchain(verbose=False)
    assert tc2.id == tc.id
    cm = cache_mod.compile_model(code, verbose=False)
    assert cm.hash == key and cm.exe_file.read_text() == "model"
    with pytest.raises(MissingBuildToolsError, match="apt-get install g\\+\\+ make"):
        cache_mod.compile_model(code + "\n// new program", verbose=False)


def test_shared_locks_coexist_and_exclude_exclusive(tmp_path):
    """Model builds hold install.lock shared; an install holds it exclusively."""
    lock = tmp_path / "install.lock"
    log = tmp_path / "log"

    def worker(kind: str, delay: float) -> None:
        time.sleep(delay)
        with _common.file_lock(lock, shared=(kind == "sh")):
            with open(log, "a") as f:
                f.write(f"in {kind} {time.time()}\n")
            time.sleep(0.6)
            with open(log, "a") as f:
                f.write(f"out {kind} {time.time()}\n")

    ctx = mp.get_context("fork")
    ps = [ctx.Process(target=worker, args=a) for a in (("sh", 0), ("sh", 0.1), ("ex", 0.3))]
    for p in ps:
        p.start()
    for p in ps:
        p.join(30)
    ev = [ln.split()[:2] for ln in log.read_text().splitlines()]
    # both shared holders overlap; the exclusive one enters only after both left
    assert ev[:2] == [["in", "sh"], ["in", "sh"]]
    assert ev[2:4] == [["out", "sh"], ["out", "sh"]]
    assert ev[4:] == [["in", "ex"], ["out", "ex"]]


def test_model_source_hash_ignores_tools(tmp_path):
    a = tmp_path / "a"
    a.write_text("driver")
    t = tmp_path / "t"
    t.write_text("tool v1")
    files = [("src/driver/main.cpp", a), ("src/tools/diagnose.cpp", t)]
    h1, m1 = sources.source_hash(files), sources.model_source_hash(files)
    t.write_text("tool v2")
    assert sources.source_hash(files) != h1  # the install is redone (tools rebuilt)...
    assert sources.model_source_hash(files) == m1  # ...but cached models stay valid
    a.write_text("driver v2")
    assert sources.model_source_hash(files) != m1


def test_ready_records_model_source_hash(env):
    rec = inst.install(env["home"], verbose=False, build=fake_build_factory(env["log"]),
                       expected_sha256=env["sha"])
    assert rec["model_source_hash"] == sources.model_source_hash()
    tc = locate.bundled_toolchain(env["home"])
    assert rec["model_source_hash"] in tc.id


def test_killed_unpack_leftovers_are_removed(env):
    root = env["root"]
    root.mkdir(parents=True)
    p = subprocess.Popen(["true"])
    p.wait()
    stale = root / f".stan.tmp-{p.pid}"
    (stale / "include").mkdir(parents=True)
    inst.install(env["home"], verbose=False, build=fake_build_factory(env["log"]),
                 expected_sha256=env["sha"])
    assert not stale.exists() and (root / "READY").exists()


def test_forced_reinstall_without_wheel_keeps_working_install(env, monkeypatch):
    inst.install(env["home"], verbose=False, build=fake_build_factory(env["log"]),
                 expected_sha256=env["sha"])
    monkeypatch.setenv("BAYESGLMM_WHEEL", str(env["wheel"]) + ".gone")
    with pytest.raises(WheelDownloadError):
        inst.install(env["home"], verbose=False, force=True, expected_sha256=env["sha"],
                     build=fake_build_factory(env["log"]))
    assert inst.ready_status(env["root"])[0]  # still READY and usable
