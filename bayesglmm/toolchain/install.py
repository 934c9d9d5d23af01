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
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from ._common import (
    Progress,
    ToolchainError,
    file_lock,
    fmt_seconds,
    home_dir,
    is_disk_full,
    pid_alive,
    private_dir,
    remove_tree,
    toolchain_root,
    write_atomic,
)
from .buildtools import check_build_tools, compiler_version, default_jobs, make_build
from .sources import copy_sources, model_source_hash, package_files, source_hash
from .wheel import (
    HTTPSTAN_VERSION,
    WHEEL_MARKER,
    WHEEL_NAME,
    WHEEL_SHA256,
    obtain_wheel,
    stan_complete,
    unpack_wheel,
)

STAN_VERSION = "2.35.0"
READY_FORMAT = 1

BuildFn = Callable[[Path, Progress, int], None]


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
        private_dir(home_p)
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
            private_dir(root)
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
