"""Compiled-model cache: one compile per (Stan program, toolchain, flags), shared by processes.

Layout: ``<home>/models/<hash>/`` holds ``<name>.stan``, ``<name>`` (CmdStan executable),
``<name>_model.so`` (BridgeStan library), ``<name>.hpp`` and ``MANIFEST.json`` (written last,
inside the temporary build directory, before the rename).  An entry is valid only if its
MANIFEST exists and every file it lists has the recorded size and sha256; anything else is
treated as corrupt, removed and rebuilt.

A build runs in ``<home>/models/.tmp-<hash>-<pid>`` and is renamed into place, under an
exclusive lock ``<home>/models/<hash>.lock``: a second process compiling the same program
waits and then reuses the result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._common import (
    ModelBuildError,
    Ticker,
    ToolchainError,
    file_lock,
    is_disk_full,
    models_dir,
    pid_alive,
    private_dir,
    remove_tree,
    sha256_file,
    write_atomic,
)
from .builders import Builder, Checker, bundled_builder, external_builder, run_stanc_check
from .locate import Toolchain
from .permissions import check_trusted

MANIFEST = "MANIFEST.json"
MANIFEST_FORMAT = 1
DEFAULT_OPT_LEVEL = 1
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------- compiled model


@dataclass
class CompiledModel:
    """A compiled Stan program in the cache (executable + shared library)."""

    stan_file: Path
    exe_file: Path
    so_file: Path
    hash: str
    code: str = field(repr=False)
    name: str = "model"
    toolchain: Toolchain | None = field(default=None, repr=False, compare=False)
    manifest: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def directory(self) -> Path:
        return self.stan_file.parent

    def check_permissions(self, *files: Path) -> None:
        """Raise :class:`~bayesglmm.toolchain.permissions.UnsafePermissionsError` when one of
        ``files`` (default: the executable and the library) lies where another user could
        have written it (see :mod:`bayesglmm.toolchain.permissions`)."""
        check_trusted(files or (self.exe_file, self.so_file), "the compiled Stan program",
                      f"its cache entry {self.directory}")

    def cmdstan_model(self):
        """A ``cmdstanpy.CmdStanModel`` on the cached executable (never recompiles)."""
        import cmdstanpy

        self.check_permissions(self.exe_file)
        if self.toolchain is not None:
            self.toolchain.activate()
        return cmdstanpy.CmdStanModel(stan_file=str(self.stan_file), exe_file=str(self.exe_file))

    def bridgestan_model(self, data: Mapping[str, Any] | str | os.PathLike | None = None,
                         seed: int = 1234, **kwargs):
        """A ``bridgestan.StanModel`` on the cached shared library.

        ``data`` may be a mapping (numpy arrays etc., encoded with stanio), a JSON string,
        a path to a ``.json`` file, or None.
        """
        import bridgestan

        self.check_permissions(self.so_file)
        if self.toolchain is not None:
            self.toolchain.activate()
        if isinstance(data, Mapping):
            data = encode_data(data)
        elif isinstance(data, os.PathLike):
            data = os.fspath(data)
        kwargs.setdefault("warn", False)  # the same .so is loaded once per process anyway
        model = bridgestan.StanModel(str(self.so_file), data, seed=seed, **kwargs)
        _loaded_libraries.add(str(self.so_file))
        return model


_loaded_libraries: set[str] = set()


def encode_data(data: Mapping[str, Any]) -> str:
    """JSON text of a data mapping as Stan reads it (numpy arrays, pandas objects, bools)."""
    try:
        import stanio

        return stanio.dump_stan_json(data)
    except ImportError:  # pragma: no cover - stanio ships with cmdstanpy
        import numpy as np

        def conv(v):
            if isinstance(v, np.ndarray):
                return v.tolist()
            if isinstance(v, (np.integer,)):
                return int(v)
            if isinstance(v, (np.floating,)):
                return float(v)
            if isinstance(v, bool):
                return int(v)
            return v

        return json.dumps({k: conv(v) for k, v in data.items()})


# --------------------------------------------------------------------------- keys & validity


def sanitize_name(name: str) -> str:
    """A file stem stanc accepts as model name: letters, digits, '_', starting with a letter."""
    if not isinstance(name, str):
        raise TypeError("model name must be a str")
    if _NAME_RE.match(name):
        return name
    clean = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "model"
    return clean if clean[0].isalpha() else f"m_{clean}"


def build_flags(toolchain: Toolchain, opt_level: int | None = None) -> dict:
    """Everything besides the program and toolchain that changes the compiled output."""
    if toolchain.kind == "external":
        return {"cpp_options": {"STAN_THREADS": True}, "make_args": ["STAN_THREADS=True"],
                "CXXFLAGS": os.environ.get("CXXFLAGS", "")}
    if opt_level is None:
        env = os.environ.get("BAYESGLMM_OPT_LEVEL")
        opt_level = int(env) if env else DEFAULT_OPT_LEVEL
    if opt_level not in (0, 1, 2, 3):
        raise ValueError(f"opt_level must be 0, 1, 2 or 3, not {opt_level!r}")
    return {"O": int(opt_level), "CXX": os.environ.get("CXX", ""),
            "CXXFLAGS": os.environ.get("CXXFLAGS", ""), "stanc": "--filename-in-msg"}


def cache_key(code: str, name: str, toolchain_id: str, flags: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    for part in ("bayesglmm-model-cache-v1", code, name, toolchain_id,
                 json.dumps(flags, sort_keys=True)):
        b = part.encode()
        h.update(str(len(b)).encode() + b"\0" + b)
    return h.hexdigest()[:32]


def entry_files(name: str) -> dict[str, str]:
    return {"stan": f"{name}.stan", "exe": name, "so": f"{name}_model.so", "hpp": f"{name}.hpp"}


def read_manifest(entry: Path) -> dict | None:
    try:
        m = json.loads((entry / MANIFEST).read_text())
        return m if isinstance(m, dict) else None
    except (OSError, ValueError):
        return None


def validate_entry(entry: Path, key: str, *, full: bool = True) -> tuple[bool, str, dict | None]:
    """(valid?, reason, manifest).  ``full`` checks sha256 of every file, not only sizes."""
    if not entry.is_dir():
        return False, "missing", None
    m = read_manifest(entry)
    if m is None:
        return False, "no readable MANIFEST.json", None
    if m.get("format") != MANIFEST_FORMAT or m.get("hash") != key:
        return False, "MANIFEST does not match this entry", m
    files = m.get("files")
    if not isinstance(files, dict) or not {"stan", "exe", "so"} <= set(files):
        return False, "MANIFEST lists no files", m
    for role, rec in files.items():
        p = entry / rec.get("path", "")
        try:
            st = p.stat()
        except OSError:
            return False, f"{role} file {p.name} is missing", m
        if st.st_size != rec.get("size"):
            return False, f"{role} file {p.name} has the wrong size", m
        if full and sha256_file(p) != rec.get("sha256"):
            return False, f"{role} file {p.name} has the wrong checksum", m
    if not os.access(entry / files["exe"]["path"], os.X_OK):
        return False, "executable is not executable", m
    return True, "valid", m


# --------------------------------------------------------------------------- cache


class ModelCache:
    """The on-disk cache ``<home>/models`` (builder and checker are injectable for tests)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def entry(self, key: str) -> Path:
        return self.root / key

    def _load(self, key: str, code: str, name: str, manifest: dict,
              toolchain: Toolchain | None) -> CompiledModel:
        e = self.entry(key)
        f = manifest["files"]
        return CompiledModel(stan_file=e / f["stan"]["path"], exe_file=e / f["exe"]["path"],
                             so_file=e / f["so"]["path"], hash=key, code=code, name=name,
                             toolchain=toolchain, manifest=manifest)

    def _clean_stale_tmp(self, key: str) -> None:
        for d in self.root.glob(f".tmp-{key}-*"):
            with contextlib.suppress(ValueError):
                pid = int(d.name.rsplit("-", 1)[1])
                if pid == os.getpid() or not pid_alive(pid):
                    remove_tree(d)

    def get_or_build(self, key: str, code: str, name: str, builder: Builder, *,
                     checker: Checker | None = None, toolchain: Toolchain | None = None,
                     toolchain_id: str = "", flags: Mapping | None = None,
                     verbose: bool = True,
                     message: str = "Compiling Stan program (new model structure)"
                     ) -> CompiledModel:
        entry = self.entry(key)
        ok, _, m = validate_entry(entry, key)
        if ok:
            return self._load(key, code, name, m, toolchain)  # type: ignore[arg-type]
        private_dir(self.root)
        warnings_ = checker(code, name) if checker is not None else []
        with file_lock(self.root / f"{key}.lock",
                       "Waiting for another process compiling the same Stan program ...",
                       verbose):
            ok, reason, m = validate_entry(entry, key)
            if ok:
                return self._load(key, code, name, m, toolchain)  # type: ignore[arg-type]
            if entry.exists() or entry.is_symlink():
                if verbose:
                    print(f"bayesglmm: compiled-model cache entry {entry} is corrupt ({reason}); "
                          "rebuilding it.", file=sys.stderr, flush=True)
                trash = self.root / f".trash-{key}-{os.getpid()}"
                remove_tree(trash)
                os.rename(entry, trash)
                remove_tree(trash)
            self._clean_stale_tmp(key)
            tmp = self.root / f".tmp-{key}-{os.getpid()}"
            remove_tree(tmp)
            try:
                tmp.mkdir()
                names = entry_files(name)
                stan_file = tmp / names["stan"]
                stan_file.write_text(code)
                t0 = time.monotonic()
                with Ticker(message, verbose):
                    timings = dict(builder(tmp, stan_file, name) or {})
                timings["total_seconds"] = round(time.monotonic() - t0, 3)
                for leftover in (f"{name}.o", f"{name}.d", f"{name}.adh.o",
                                 f"{name}_model.so.flavour"):
                    with contextlib.suppress(OSError):
                        (tmp / leftover).unlink()
                files = {}
                for role, fname in names.items():
                    p = tmp / fname
                    if not p.exists():
                        if role == "hpp":
                            continue
                        raise ModelBuildError(f"the build did not produce {fname}")
                    files[role] = {"path": fname, "size": p.stat().st_size,
                                   "sha256": sha256_file(p)}
                manifest = {
                    "format": MANIFEST_FORMAT, "hash": key, "name": name,
                    "toolchain_id": toolchain_id, "flags": dict(flags or {}),
                    "files": files, "timings": timings, "stanc_warnings": warnings_,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                write_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
                os.rename(tmp, entry)
            except OSError as e:
                remove_tree(tmp)
                if is_disk_full(e):
                    raise ToolchainError(
                        f"The disk is full: compiling the Stan program into {self.root} failed "
                        f"({e}). Free some space or run 'python -m bayesglmm.toolchain clean'."
                    ) from e
                raise
            except BaseException:
                remove_tree(tmp)
                raise
            return self._load(key, code, name, manifest, toolchain)


_memo: dict[str, CompiledModel] = {}
_memo_lock = threading.Lock()


def compile_model(stan_code: str, *, name: str = "model", verbose: bool = True,
                  opt_level: int | None = None,
                  toolchain: Toolchain | None = None,
                  message: str = "Compiling Stan program (new model structure)") -> CompiledModel:
    """Compile a Stan program (or reuse the cached build) and return its files.

    ``opt_level`` is the bundled toolchain's optimisation level of the model translation
    unit (default ``$BAYESGLMM_OPT_LEVEL`` or 1); ``message`` is shown while it compiles.
    Raises :class:`StanCompileError` (a ValueError) on stanc errors and
    :class:`ModelBuildError` on C++/link errors.
    """
    if not isinstance(stan_code, str):
        raise TypeError("stan_code must be the Stan program text (str)")
    name = sanitize_name(name)
    from .locate import ensure_toolchain

    tc = toolchain or ensure_toolchain(verbose=verbose)
    flags = build_flags(tc, opt_level)
    key = cache_key(stan_code, name, tc.id, flags)
    with _memo_lock:
        hit = _memo.get(key)
    if hit is not None and (hit.directory / MANIFEST).exists() and hit.exe_file.exists():
        return hit
    cache = ModelCache(models_dir(tc.home))
    ok, _, manifest = validate_entry(cache.entry(key), key)
    if ok:  # cached by an earlier process: no compiler needed
        cm = cache._load(key, stan_code, name, manifest, tc)  # type: ignore[arg-type]
        with _memo_lock:
            _memo[key] = cm
        return cm
    if tc.kind == "bundled":
        from .buildtools import check_build_tools, compiler_version
        from .install import install, read_ready

        check_build_tools()
        if (read_ready(tc.root) or {}).get("compiler") != compiler_version():
            # the precompiled header and objects belong to another compiler: rebuild them
            install(tc.home, verbose=verbose)
            from . import locate

            locate._memo.clear()
            tc = ensure_toolchain(verbose=verbose, home=tc.home)
            flags = build_flags(tc, opt_level)
            key = cache_key(stan_code, name, tc.id, flags)
        builder = bundled_builder(tc, flags, verbose)
    else:
        builder = external_builder(tc, flags, verbose)

    def checker(code: str, nm: str) -> list:
        return run_stanc_check(tc.stanc, code, nm, cache.root)

    try:
        private_dir(cache.root)
        cm = cache.get_or_build(key, stan_code, name, builder, checker=checker, toolchain=tc,
                                toolchain_id=tc.id, flags=flags, verbose=verbose,
                                message=message)
    except ModelBuildError as e:
        full = re.search(r"(\S+?):? No space left on device", str(e))
        if full is None:
            raise
        where = os.path.dirname(full.group(1)) or str(cache.root)
        raise ToolchainError(
            f"The disk is full: the compiler could not write into {where} (No space left on "
            f"device) while building into the compiled-model cache {cache.root}. Free some "
            "space (or set TMPDIR / BAYESGLMM_HOME to a directory on another disk)."
        ) from e
    except ToolchainError:
        raise
    except OSError as e:
        raise ToolchainError(
            f"Cannot write to the compiled-model cache {cache.root}: "
            f"{e.strerror or e} ({getattr(e, 'filename', None) or cache.root}). Make the "
            "directory writable by you, or set BAYESGLMM_HOME to a writable directory."
        ) from e
    with _memo_lock:
        _memo[key] = cm
    return cm


def cache_stats(home: os.PathLike | str | None = None) -> dict:
    """Number of entries and bytes used by ``<home>/models``."""
    root = models_dir(home)
    count, size = 0, 0
    if root.is_dir():
        for d in root.iterdir():
            if d.is_dir() and not d.name.startswith("."):
                count += 1
        for dirpath, _, files in os.walk(root):
            for f in files:
                with contextlib.suppress(OSError):
                    size += os.lstat(os.path.join(dirpath, f)).st_size
    return {"path": str(root), "count": count, "bytes": size}


def clean_cache(home: os.PathLike | str | None = None) -> dict:
    """Remove ``<home>/models``; returns the stats of what was removed."""
    stats = cache_stats(home)
    remove_tree(models_dir(home))
    _memo.clear()
    return stats
