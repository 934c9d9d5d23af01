"""The build tools of the bundled toolchain: the C++ compiler and ``make``.

Checks that they exist, identifies the compiler (the precompiled header belongs to one
compiler build), chooses the number of parallel jobs, and runs ``make`` with summarised,
streamed output (``make build`` of the model-independent CmdStan and BridgeStan parts).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from ._common import (
    MissingBuildToolsError,
    Progress,
    ToolchainError,
    fmt_seconds,
    stop_process_group,
)

# Files that must exist after ``make build`` for the toolchain to count as usable.
EXPECTED_OUTPUTS = (
    "cmdstan/makefile",
    "cmdstan/bin/stanc",
    "cmdstan/bin/stansummary",
    "cmdstan/bin/diagnose",
    "bridgestan/Makefile",
    "bridgestan/bin/stanc",
)


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

