"""Installer of the bundled Stan toolchain (CmdStan- and BridgeStan-compatible homes).

Steps, all under an exclusive lock on ``<home>/install.lock``:

1. check that a C++ compiler (``$CXX`` or ``g++``) and ``make`` exist;
2. obtain the pinned ``httpstan==4.13.0`` wheel (``$BAYESGLMM_WHEEL``, a verified copy in
   ``<home>/wheels``, or ``pip download``) and check its sha256;
3. unpack ``httpstan/include`` (minus pybind11), ``httpstan/lib`` and ``httpstan/stanc``
   into ``<root>/stan`` (through a temporary directory renamed into place);
4. copy the project's make files and C++ sources into ``<root>`` (only changed files are
   rewritten, so ``make`` rebuilds incrementally);
5. ``make -C <root>/cmdstan build`` and ``make -C <root>/bridgestan build``;
6. write ``<root>/READY`` last.  A failed or interrupted install never leaves READY.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.resources
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._common import (
    MissingBuildToolsError,
    Progress,
    ToolchainError,
    WheelDownloadError,
    file_lock,
    fmt_seconds,
    home_dir,
    is_disk_full,
    pid_alive,
    remove_tree,
    sha256_file,
    stop_process_group,
    toolchain_root,
    write_atomic,
)

HTTPSTAN_VERSION = "4.13.0"
WHEEL_NAME = "httpstan-4.13.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "7b490d6c0e8b7048d1b58dfb79db561ae1879cb3bde3012d024ef374c0308469"
STAN_VERSION = "2.35.0"
READY_FORMAT = 1

# Package sub-trees copied into the toolchain root (relative to bayesglmm/toolchain/files).
SOURCE_ITEMS = ("common.mk", "src", "cmdstan", "bridgestan")
_SKIP_NAMES = {"__pycache__", ".DS_Store"}
_SKIP_SUFFIXES = (".pyc", ".swp", "~", ".orig", ".rej")
INSTALLED_LIST = ".installed-files.json"
WHEEL_MARKER = ".wheel-sha256"

# Files that must exist after ``make build`` for the toolchain to count as usable.
EXPECTED_OUTPUTS = (
    "cmdstan/makefile",
    "cmdstan/bin/stanc",
    "cmdstan/bin/stansummary",
    "cmdstan/bin/diagnose",
    "bridgestan/Makefile",
    "bridgestan/bin/stanc",
)

BuildFn = Callable[[Path, Progress, int], None]


# --------------------------------------------------------------------------- build tools


def _cxx_command() -> list[str]:
    cxx = os.environ.get("CXX") or "g++"
    return shlex.split(cxx) or ["g++"]


def check_build_tools() -> dict[str, str]:
    """Return ``{"cxx": path, "make": path}`` or raise :class:`MissingBuildToolsError`."""
    cxx_cmd = _cxx_command()
    make = os.environ.get("MAKE") or "make"
    cxx_path = shutil.which(cxx_cmd[0])
    make_path = shutil.which(make)
    missing = []
    if cxx_path is None:
        what = f"C++ compiler '{cxx_cmd[0]}'" + (" (from $CXX)" if os.environ.get("CXX") else "")
        missing.append(what)
    if make_path is None:
        missing.append(f"'{make}'" + (" (from $MAKE)" if os.environ.get("MAKE") else ""))
    if missing:
        raise MissingBuildToolsError(
            "The bundled Stan toolchain needs a C++17 compiler and GNU make, but "
            + " and ".join(missing)
            + " could not be found on PATH.\n"
            "On Debian/Ubuntu install them with:\n"
            "    sudo apt-get install g++ make\n"
            "(or set CXX / MAKE to the programs to use)."
        )
    return {"cxx": cxx_path, "make": make_path}  # type: ignore[dict-item]


def compiler_version() -> str:
    """First line of ``$CXX --version`` (identifies the compiler build the PCH is tied to)."""
    cmd = _cxx_command() + ["--version"]
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise MissingBuildToolsError(f"Could not run {' '.join(cmd)}: {e}") from e
    first = (out.stdout or out.stderr).strip().splitlines()
    return " ".join(_cxx_command()) + ": " + (first[0] if first else "unknown")


def default_jobs() -> int:
    """Parallel make jobs: one per core, but each Stan TU needs ~2.5 GB of memory."""
    env = os.environ.get("BAYESGLMM_JOBS")
    if env:
        with contextlib.suppress(ValueError):
            return max(1, int(env))
    cores = os.cpu_count() or 1
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        avail_gb = int(info["MemAvailable"].split()[0]) / 1024**2
        by_mem = max(1, int(avail_gb // 2.5))
    except (OSError, KeyError, ValueError):
        by_mem = cores
    return max(1, min(cores, by_mem))


# --------------------------------------------------------------------------- package sources


def _files_root():
    return importlib.resources.files(__package__).joinpath("files")


def package_files() -> list[tuple[str, Any]]:
    """(relative path, Traversable) of every file the installer copies, sorted."""
    out: list[tuple[str, Any]] = []

    def walk(node, rel: str) -> None:
        if node.name in _SKIP_NAMES or node.name.endswith(_SKIP_SUFFIXES):
            return
        if node.is_dir():
            for child in node.iterdir():
                walk(child, f"{rel}/{child.name}")
        elif node.is_file():
            out.append((rel, node))

    root = _files_root()
    for item in SOURCE_ITEMS:
        node = root.joinpath(item)
        if node.is_dir() or node.is_file():
            walk(node, item)
    out.sort(key=lambda t: t[0])
    return out


# Copied files that never end up inside a model executable or library: editing them must
# not invalidate compiled models (see model_source_hash).
NOT_IN_MODELS = ("src/tools/", "cmdstan/examples/")


def model_source_hash(files: list[tuple[str, Any]] | None = None) -> str:
    """Hash of the sources that are compiled or linked into models (part of the cache key)."""
    files = files if files is not None else package_files()
    return source_hash([(r, n) for r, n in files if not r.startswith(NOT_IN_MODELS)])


def source_hash(files: list[tuple[str, Any]] | None = None) -> str:
    """sha256 over (relative path, content) of every copied source file."""
    h = hashlib.sha256()
    for rel, node in files if files is not None else package_files():
        data = node.read_bytes()
        h.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def _same_file(a: Path, b: Any) -> bool:
    try:
        return isinstance(b, Path) and a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
        return True
    except (ValueError, OSError):
        return False


def copy_sources(root: Path, progress: Progress) -> list[str]:
    """Copy package sources into ``root``; only files whose content changed are written.

    Returns the relative paths written.  A destination that already *is* the package file
    (the developer layout, where ``<root>/src`` etc. are symlinks into the repository) is
    left alone, and nothing inside the package directory is ever written or deleted.
    """
    files = package_files()
    pkg_dir = _files_root()
    pkg_path = Path(str(pkg_dir)) if isinstance(pkg_dir, Path) else None
    changed: list[str] = []
    for rel, node in files:
        dest = root / rel
        if _same_file(dest, node):
            continue
        if pkg_path is not None and _inside(dest, pkg_path):
            continue
        data = node.read_bytes()
        if dest.is_file() and not dest.is_symlink():
            try:
                if dest.read_bytes() == data:
                    continue
            except OSError:
                pass
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink():
            dest.unlink()
        write_atomic(dest, data)
        mode = 0o644
        if isinstance(node, Path):
            mode = node.stat().st_mode & 0o777
        os.chmod(dest, mode)
        changed.append(rel)
    # remove files we installed earlier that the package no longer has
    current = {rel for rel, _ in files}
    listing = root / INSTALLED_LIST
    with contextlib.suppress(OSError, ValueError):
        previous = set(json.loads(listing.read_text()))
        for rel in sorted(previous - current):
            p = root / rel
            if pkg_path is not None and _inside(p, pkg_path):
                continue
            if p.is_file() or p.is_symlink():
                p.unlink()
                changed.append(rel)
    write_atomic(listing, json.dumps(sorted(current), indent=0))
    if changed:
        progress(f"copied {len(changed)} changed source file(s) into {root}")
    return changed


# --------------------------------------------------------------------------- wheel


def _download_hint(home: Path) -> str:
    return (
        "To install without network access to PyPI, do one of:\n"
        f"  * on a machine with access run\n"
        f"      pip download httpstan=={HTTPSTAN_VERSION} --no-deps --only-binary=:all: "
        "--platform manylinux2014_x86_64 --python-version 311 --implementation cp -d .\n"
        f"    and copy {WHEEL_NAME} into {home / 'wheels'}/ "
        "(or set BAYESGLMM_WHEEL=<path to the .whl>);\n"
        "  * or point BAYESGLMM_HOME at a directory that already holds an installed toolchain "
        "(one with toolchain/READY, e.g. copied from another machine with the same compiler)."
    )


def obtain_wheel(home: Path, progress: Progress, *, expected_sha256: str = WHEEL_SHA256,
                 python: str | None = None) -> Path:
    """Return a path to the verified httpstan wheel, downloading it if needed."""
    env_wheel = os.environ.get("BAYESGLMM_WHEEL")
    if env_wheel:
        p = Path(env_wheel).expanduser()
        if not p.is_file():
            raise WheelDownloadError(f"BAYESGLMM_WHEEL={env_wheel} does not exist.")
        got = sha256_file(p)
        if got != expected_sha256:
            raise WheelDownloadError(
                f"BAYESGLMM_WHEEL={env_wheel} has sha256 {got}, expected {expected_sha256} "
                f"(httpstan=={HTTPSTAN_VERSION}, {WHEEL_NAME})."
            )
        progress(f"using wheel {p} (sha256 verified)")
        return p

    wheels = home / "wheels"
    cached = wheels / WHEEL_NAME
    if cached.is_file():
        if sha256_file(cached) == expected_sha256:
            progress(f"reusing verified wheel {cached}")
            return cached
        progress(f"removing {cached}: wrong sha256")
        cached.unlink()

    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [
        python or sys.executable, "-m", "pip", "download", f"httpstan=={HTTPSTAN_VERSION}",
        "--no-deps", "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
        "--python-version", "311", "--implementation", "cp", "-d", str(wheels),
    ]
    progress(f"downloading httpstan=={HTTPSTAN_VERSION} (~45 MB) with pip")
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        out = (proc.stdout or "") + (proc.stderr or "")
        rc = proc.returncode
    except OSError as e:
        out, rc = str(e), -1
    if rc != 0 or not cached.is_file():
        tail = "\n".join(out.strip().splitlines()[-8:])
        raise WheelDownloadError(
            f"Downloading httpstan=={HTTPSTAN_VERSION} from PyPI failed "
            f"(command: {' '.join(cmd)}; exit {rc}).\npip said:\n{tail}\n\n" + _download_hint(home)
        )
    got = sha256_file(cached)
    if got != expected_sha256:
        cached.unlink()
        raise WheelDownloadError(
            f"The downloaded {WHEEL_NAME} has sha256 {got}, expected {expected_sha256}; "
            "it was removed.\n" + _download_hint(home)
        )
    progress("wheel downloaded, sha256 verified")
    return cached


def _wanted_member(name: str) -> str | None:
    """Map a wheel member to its path under ``<root>/stan`` (None = not unpacked)."""
    if name.endswith("/"):
        return None
    if name.startswith("httpstan/include/"):
        rel = name[len("httpstan/include/"):]
        if rel.startswith("pybind11/"):
            return None
        return "include/" + rel
    if name.startswith("httpstan/lib/"):
        rel = name[len("httpstan/lib/"):]
        return "lib/" + rel if rel and "/" not in rel else None
    if name == "httpstan/stanc":
        return "stanc"
    return None


def stan_complete(root: Path) -> bool:
    stan = root / "stan"
    return (
        (stan / "stanc").is_file()
        and os.access(stan / "stanc", os.X_OK)
        and (stan / "include" / "stan" / "version.hpp").is_file()
        and (stan / "lib" / "libtbb.so.2").is_file()
    )


def unpack_wheel(wheel: Path, root: Path, progress: Progress, sha256: str) -> None:
    """Unpack the needed parts of the wheel into ``<root>/stan`` (atomically)."""
    stan = root / "stan"
    tmp = root / f".stan.tmp-{os.getpid()}"
    remove_tree(tmp)
    progress(f"unpacking Stan headers, libraries and stanc from {wheel.name}")
    try:
        with zipfile.ZipFile(wheel) as z:
            n = 0
            for info in z.infolist():
                rel = _wanted_member(info.filename)
                if rel is None:
                    continue
                if rel.startswith("/") or ".." in Path(rel).parts:
                    raise WheelDownloadError(f"unsafe path in wheel: {info.filename}")
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(dest, mode)
                n += 1
        (tmp / "stanc").chmod(0o755)
        for lib in (tmp / "lib").glob("*.so*"):
            lib.chmod(0o755)
        (tmp / WHEEL_MARKER).write_text(sha256 + "\n")
        remove_tree(stan)
        os.rename(tmp, stan)
    except BaseException:
        remove_tree(tmp)
        raise
    progress(f"unpacked {n} files into {stan}")


# --------------------------------------------------------------------------- make


def _summarise_make_line(line: str) -> str | None:
    s = line.strip()
    if not s:
        return None
    if s.startswith("make") and ("Entering directory" in s or "Leaving directory" in s):
        return None
    m = re.search(r"\s-o\s+(\S+)", s)
    if m and len(s) > 120:
        target = m.group(1)
        target = target.removesuffix(".tmp")
        verb = "linking" if " -c " not in s and "c++-header" not in s else "compiling"
        if "c++-header" in s:
            verb = "building precompiled header"
        return f"{verb} {target}"
    return s if len(s) <= 200 else s[:197] + "..."


def run_make(args: list[str], progress: Progress, *, env: dict | None = None,
             label: str = "make", summarise: bool = True, strip: str | None = None) -> str:
    """Run make, streaming summarised output lines; raise ToolchainError on failure.

    Returns the full output.  While make is silent, a line every 30 s shows that it is
    still working.
    """
    make = os.environ.get("MAKE") or "make"
    cmd = [make] + args
    progress(f"{label}: {' '.join(cmd)}")
    lines: deque[str] = deque(maxlen=4000)
    last = [time.monotonic()]
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(5.0):
            if time.monotonic() - last[0] >= 30.0:
                progress(f"{label}: still working...")
                last[0] = time.monotonic()

    hb = threading.Thread(target=heartbeat, daemon=True)
    hb.start()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", env=env, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as e:
        done.set()
        raise ToolchainError(f"could not run {make}: {e}") from e
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            msg = _summarise_make_line(line) if summarise else line.rstrip("\n")
            if msg and strip:
                msg = msg.replace(strip.rstrip("/") + "/", "")
            if msg:
                progress(f"  {msg}")
                last[0] = time.monotonic()
        rc = proc.wait()
    except BaseException:
        stop_process_group(proc)  # make and its compilers
        raise
    finally:
        done.set()
    output = "\n".join(lines)
    if rc != 0:
        raise ToolchainError(_make_failure_message(cmd, rc, output))
    return output


def _make_failure_message(cmd: list[str], rc: int, output: str) -> str:
    tail = "\n".join(output.splitlines()[-40:])
    msg = f"Command '{' '.join(cmd)}' failed with exit code {rc}.\n--- last lines of output ---\n{tail}"
    if "No space left on device" in output:
        msg = "The disk is full (No space left on device).\n" + msg
    elif "No rule to make target" in output:
        msg += "\n(The toolchain's makefiles are incomplete or out of date.)"
    return msg


def make_build(root: Path, progress: Progress, jobs: int) -> None:
    """Default build step: the CmdStan and BridgeStan model-independent parts."""
    for sub in ("cmdstan", "bridgestan"):
        t0 = time.monotonic()
        run_make(["-C", str(root / sub), f"-j{jobs}", "build"], progress, label=f"{sub} build",
                 strip=str(root))
        progress(f"{sub} build finished in {fmt_seconds(time.monotonic() - t0)}")
    missing = [p for p in EXPECTED_OUTPUTS if not (root / p).exists()]
    if missing:
        raise ToolchainError(
            "make build succeeded but these toolchain files are missing: "
            + ", ".join(str(root / p) for p in missing)
        )


# --------------------------------------------------------------------------- READY


def read_ready(root: Path) -> dict | None:
    try:
        data = json.loads((root / "READY").read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def stan_version(root: Path) -> str:
    """Stan version from ``<root>/stan/include/stan/version.hpp`` (fallback: 2.35.0)."""
    try:
        text = (root / "stan" / "include" / "stan" / "version.hpp").read_text()
        parts = [re.search(rf"#define STAN_{k}\s+(\d+)", text) for k in ("MAJOR", "MINOR", "PATCH")]
        if all(parts):
            return ".".join(m.group(1) for m in parts)  # type: ignore[union-attr]
    except OSError:
        pass
    return STAN_VERSION


def ready_status(root: Path, src_hash: str | None = None,
                 cxx: str | None = None) -> tuple[bool, str]:
    """(is the installed toolchain current?, reason)."""
    ready = read_ready(root)
    if ready is None:
        return False, "not installed (no READY)"
    if ready.get("format") != READY_FORMAT:
        return False, "READY has an old format"
    if ready.get("source_hash") != (src_hash or source_hash()):
        return False, "the package's toolchain sources changed since install"
    if cxx is not None and ready.get("compiler") != cxx:
        return False, f"the C++ compiler changed (was: {ready.get('compiler')})"
    if not stan_complete(root):
        return False, "the unpacked Stan files are missing"
    return True, "ready"


def _remove_ready(root: Path) -> None:
    with contextlib.suppress(OSError):
        (root / "READY").unlink()


# --------------------------------------------------------------------------- install


def install(home: os.PathLike | str | None = None, *, verbose: bool = True,
            force: bool = False, jobs: int | None = None,
            build: BuildFn | None = None,
            expected_sha256: str = WHEEL_SHA256,
            check_tools: bool = True) -> dict:
    """Install (or update) the bundled toolchain under ``<home>/toolchain``; idempotent.

    Returns the READY record.  ``build`` replaces the make step (used by tests);
    ``force`` re-runs every step even if READY is current.
    """
    home_p = home_dir(home)
    root = toolchain_root(home_p)
    progress = Progress(verbose)
    if check_tools:
        check_build_tools()
    cxx = compiler_version() if check_tools else "unchecked"
    files = package_files()
    src_hash = source_hash(files)

    ok, _ = ready_status(root, src_hash, cxx)
    if ok and not force:
        progress(f"Stan toolchain already installed in {root}")
        return read_ready(root)  # type: ignore[return-value]

    try:
        home_p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ToolchainError(f"cannot create BAYESGLMM_HOME {home_p}: {e}") from e
    with file_lock(home_p / "install.lock",
                   f"Waiting for another process installing the Stan toolchain in {root} ..."):
        ok, reason = ready_status(root, src_hash, cxx)
        if ok and not force:
            progress(f"Stan toolchain already installed in {root} (by another process)")
            return read_ready(root)  # type: ignore[return-value]
        previous = read_ready(root)
        if previous is None:
            progress(f"Installing the Stan toolchain into {root} ({reason}); this takes a few "
                     "minutes, once")
        else:
            progress(f"Updating the Stan toolchain in {root} ({reason})")
        t0 = time.monotonic()
        wheel = None
        if force or not stan_complete(root):
            # before touching anything: a failed download leaves the old install as it was
            try:
                wheel = obtain_wheel(home_p, progress, expected_sha256=expected_sha256)
            except OSError as e:
                raise ToolchainError(f"could not obtain the httpstan wheel: {e}") from e
        try:
            _remove_ready(root)
            root.mkdir(parents=True, exist_ok=True)
            for stale in root.glob(".stan.tmp-*"):  # left by a killed install
                with contextlib.suppress(ValueError):
                    if not pid_alive(int(stale.name.rsplit("-", 1)[1])):
                        remove_tree(stale)
            if previous is not None and previous.get("compiler") not in (None, cxx):
                progress("compiler changed: removing prebuilt objects and precompiled headers")
                build_dir = root / "build"
                if not build_dir.is_symlink():
                    remove_tree(build_dir)
            wheel_sha = None
            if wheel is not None:
                wheel_sha = expected_sha256
                unpack_wheel(wheel, root, progress, wheel_sha)
            else:
                progress(f"Stan {stan_version(root)} files already unpacked in {root / 'stan'}")
                with contextlib.suppress(OSError):
                    wheel_sha = (root / "stan" / WHEEL_MARKER).read_text().strip()
            copy_sources(root, progress)
            (build or make_build)(root, progress, jobs or default_jobs())
            record = {
                "format": READY_FORMAT,
                "stan_version": stan_version(root),
                "httpstan_version": HTTPSTAN_VERSION,
                "wheel": WHEEL_NAME,
                "wheel_sha256": wheel_sha or "unknown",
                "source_hash": src_hash,
                "model_source_hash": model_source_hash(files),
                "compiler": cxx,
                "root": str(root),
                "installed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "install_seconds": round(time.monotonic() - t0, 1),
            }
            write_atomic(root / "READY", json.dumps(record, indent=2) + "\n")
        except OSError as e:
            _remove_ready(root)
            if is_disk_full(e):
                raise ToolchainError(
                    f"Installing the Stan toolchain into {root} failed: the disk is full "
                    f"({e}). Free some space (the toolchain needs about 1.5 GB) or set "
                    "BAYESGLMM_HOME to another disk, then run "
                    "'python -m bayesglmm.toolchain install' again."
                ) from e
            raise ToolchainError(f"Installing the Stan toolchain into {root} failed: {e}") from e
        except BaseException:
            _remove_ready(root)
            raise
        progress(f"Stan toolchain ready in {root} ({fmt_seconds(time.monotonic() - t0)})")
        return record
