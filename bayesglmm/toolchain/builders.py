"""How a Stan program is turned into its cached files: the stanc check (syntax and type
errors with line and column, warnings kept) and the builders that compile the CmdStan
executable and the BridgeStan library, with the bundled toolchain's make files or with an
external CmdStan and BridgeStan."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._common import (
    ModelBuildError,
    StanCompileError,
    ToolchainError,
    file_lock,
    remove_tree,
    run_captured,
)
from .locate import Toolchain

# builder(workdir, stan_file, name) -> timings dict; must leave <name>, <name>_model.so and
# <name>.hpp in workdir.
Builder = Callable[[Path, Path, str], dict]
Checker = Callable[[str, str], list]


# --------------------------------------------------------------------------- stanc check


_POS_RE = re.compile(r"line (\d+), column (\d+)")


def run_stanc_check(stanc: Path, code: str, name: str, workdir: Path) -> list[str]:
    """Run stanc on ``code``; raise StanCompileError with its message; return warnings."""
    d = Path(tempfile.mkdtemp(prefix=".stanc-", dir=workdir))
    try:
        src = d / f"{name}.stan"
        src.write_text(code)
        try:
            proc = subprocess.run(
                [str(stanc), f"--filename-in-msg={name}.stan", f"--o={d / (name + '.hpp')}",
                 str(src)],
                check=False, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL,
                timeout=300,
            )
        except OSError as e:
            raise ToolchainError(f"could not run stanc ({stanc}): {e}") from e
    finally:
        remove_tree(d)
    msg = (proc.stderr or "").strip()
    if proc.returncode != 0:
        text = msg or (proc.stdout or "").strip() or f"stanc exited with code {proc.returncode}"
        m = _POS_RE.search(text)
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        raise StanCompileError(text, line, col)
    return [w for w in msg.split("\n\n") if w.strip()] if msg else []


# --------------------------------------------------------------------------- builders


def _run_capture(cmd: list[str], cwd: Path | None = None, env: dict | None = None):
    return run_captured(cmd, cwd=cwd, env=env)


def _failure_tail(output: str, n: int = 40) -> str:
    lines = output.rstrip().splitlines()
    errors = [ln for ln in lines if re.search(r"\berror\b|undefined reference|Error \d", ln)]
    tail = "\n".join(lines[-n:])
    if errors:
        head = "\n".join(errors[:15])
        return f"{head}\n--- last {min(n, len(lines))} lines of output ---\n{tail}"
    return tail


_pch_lock = threading.Lock()


@contextlib.contextmanager
def pch_guard(toolchain: Toolchain, opt_level: int, verbose: bool):
    """Serialise the first builds at an optimisation level whose precompiled header does
    not exist yet (make builds it as a prerequisite of the model object; two makes must not
    write the same 800 MB file at once).  Free once the header exists."""
    gch = toolchain.root / "build" / f"pch_O{opt_level}" / "pch.hpp.gch"
    if gch.exists():
        yield
        return
    with _pch_lock, file_lock(toolchain.home / f"pch-O{opt_level}.lock",
                              f"Waiting for another process building the -O{opt_level} "
                              "precompiled header ...", verbose):
        if not gch.exists() and verbose:
            print(f"bayesglmm: first model at -O{opt_level}: its precompiled Stan header is "
                  "built once as well (about 30-45 s more).", file=sys.stderr, flush=True)
        yield


def bundled_builder(toolchain: Toolchain, flags: Mapping[str, Any], verbose: bool = True) -> Builder:
    def build(workdir: Path, stan_file: Path, name: str) -> dict:
        # shared hold on the install lock: an update of the toolchain (exclusive) never
        # rewrites driver objects or headers while a model is being built against them
        with file_lock(toolchain.home / "install.lock",
                       "Waiting for a running toolchain install/update to finish ...",
                       verbose, shared=True):
            return _build(workdir, stan_file, name)

    def _build(workdir: Path, stan_file: Path, name: str) -> dict:
        with pch_guard(toolchain, flags["O"], verbose):
            return _make_model(workdir, name)

    def _make_model(workdir: Path, name: str) -> dict:
        make = os.environ.get("MAKE") or "make"
        o = flags["O"]
        timings = {}
        exe = workdir / name
        so = workdir / f"{name}_model.so"
        t0 = time.monotonic()
        # stanc embeds the file name in run-time error messages: name the file, not the
        # temporary build directory (which is renamed away afterwards)
        stancflags = f"STANCFLAGS+=--filename-in-msg={name}.stan"
        rc, out = _run_capture([make, "-C", str(toolchain.cmdstan_dir), stancflags, f"O={o}",
                                str(exe)])
        timings["exe_seconds"] = round(time.monotonic() - t0, 3)
        if rc != 0 or not exe.exists():
            raise ModelBuildError("C++ compilation of the Stan program failed "
                                  f"(make {exe.name} in {toolchain.cmdstan_dir}).\n"
                                  + _failure_tail(out))
        t0 = time.monotonic()
        rc, out = _run_capture([make, "-C", str(toolchain.bridgestan_dir), stancflags, f"O={o}",
                                str(so)])
        timings["so_seconds"] = round(time.monotonic() - t0, 3)
        if rc != 0 or not so.exists():
            raise ModelBuildError("Linking the BridgeStan library failed "
                                  f"(make {so.name} in {toolchain.bridgestan_dir}).\n"
                                  + _failure_tail(out))
        return timings

    return build


def external_builder(toolchain: Toolchain, flags: Mapping[str, Any], verbose: bool = True) -> Builder:
    def build(workdir: Path, stan_file: Path, name: str) -> dict:
        import bridgestan
        import cmdstanpy

        toolchain.activate()
        timings = {}
        t0 = time.monotonic()
        try:
            cmdstanpy.CmdStanModel(stan_file=str(stan_file), cpp_options=dict(flags["cpp_options"]))
        except (ValueError, RuntimeError) as e:
            raise ModelBuildError(f"CmdStan compilation failed.\n{_failure_tail(str(e))}") from e
        timings["exe_seconds"] = round(time.monotonic() - t0, 3)
        t0 = time.monotonic()
        try:
            bridgestan.compile_model(stan_file, make_args=list(flags["make_args"]),
                                     stanc_args=[f"--filename-in-msg={name}.stan"])
        except (ValueError, RuntimeError) as e:
            raise ModelBuildError(f"BridgeStan compilation failed.\n{_failure_tail(str(e))}") from e
        timings["so_seconds"] = round(time.monotonic() - t0, 3)
        hpp = workdir / f"{name}.hpp"
        if not hpp.exists():
            rc, out = _run_capture([str(toolchain.stanc), f"--o={hpp}", str(stan_file)])
            if rc != 0:
                raise ModelBuildError(f"stanc failed writing {hpp.name}:\n{out}")
        return timings

    return build

