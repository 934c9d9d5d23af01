"""Compiled programs moved between machines: the files of a cache entry packed on one host
(:func:`pack`) and installed into another host's compiled-model cache (:func:`install_packed`)
without compiling.

A packed program is installed only where it can run: the receiving toolchain must have the
same Stan version, toolchain sources, compiler and build flags as the sending one (its
location may differ), and the machine the same operating system and architecture. The bytes
are checked against the sender's sha256 sums, written into a temporary directory of the
receiving cache, checked to load (the executable runs ``info``, the shared library opens),
and renamed into place under the entry's lock, as a build would be: a process never sees a
half-written entry, and two processes installing the same program install it once.
Anything else (another compiler, a failed check) returns None and the caller compiles.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ._common import (
    ToolchainError,
    file_lock,
    models_dir,
    private_dir,
    remove_tree,
    sha256_file,
    write_atomic,
)
from .cache import (
    MANIFEST,
    MANIFEST_FORMAT,
    CompiledModel,
    build_flags,
    cache_key,
    entry_files,
    validate_entry,
)
from .locate import Toolchain

__all__ = ["PackedProgram", "install_packed", "pack", "probe", "ready_toolchain"]

# the parts of a toolchain id that name places on disk, not what the binaries are built from
_LOCATION_PARTS = ("root=", "cmdstan=", "bridgestan=")
_ROLES = ("stan", "exe", "so")  # what a fit needs (the .hpp is for reading only)


def _platform() -> str:
    return f"{sys.platform}-{platform.machine()}"


def build_signature(toolchain_id: str) -> str:
    """The toolchain id without its locations: equal signatures build identical programs."""
    parts = toolchain_id.split(" ", 1)[-1].split(" | ")
    return " | ".join(p for p in parts if not p.startswith(_LOCATION_PARTS))


@dataclass(frozen=True, eq=False)
class PackedProgram:
    """The files of one compiled program, with what is needed to check and install them."""

    code: str = field(repr=False)
    name: str
    hash: str  # the sender's cache key (for messages)
    signature: str  # build_signature of the sender's toolchain
    flags: dict = field(repr=False)
    platform: str
    files: dict = field(repr=False)  # role -> (file name, sha256, bytes)

    @property
    def nbytes(self) -> int:
        return sum(len(b) for _, _, b in self.files.values())


def pack(compiled: CompiledModel) -> PackedProgram:
    """The files of a compiled program (executable, shared library, Stan code) as bytes."""
    m = compiled.manifest or {}
    tid = m.get("toolchain_id") or (compiled.toolchain.id if compiled.toolchain else "")
    files = {}
    for role, path in (("stan", compiled.stan_file), ("exe", compiled.exe_file),
                       ("so", compiled.so_file)):
        data = Path(path).read_bytes()
        rec = (m.get("files") or {}).get(role) or {}
        digest = hashlib.sha256(data).hexdigest()
        if rec.get("sha256") not in (None, digest):
            raise ToolchainError(f"compiled-model cache entry {compiled.directory}: {path.name} "
                                 "changed since it was built (checksum differs)")
        files[role] = (Path(path).name, digest, data)
    return PackedProgram(compiled.code, compiled.name, compiled.hash, build_signature(tid),
                         dict(m.get("flags") or {}), _platform(), files)


def ready_toolchain() -> Toolchain | None:
    """This process's toolchain if it is ready to run programs (never installs anything)."""
    from .install import ready_status
    from .locate import bundled_toolchain, external_toolchain, select

    try:
        sel = select()
        if sel["kind"] == "external":
            tc = external_toolchain()
        else:
            from ._common import toolchain_root

            if not ready_status(toolchain_root())[0]:
                return None
            tc = bundled_toolchain()
    except (ToolchainError, OSError, ImportError):
        return None
    tc.activate()
    return tc


def _key(code: str, name: str, tc: Toolchain) -> tuple[str, dict]:
    flags = build_flags(tc)
    return cache_key(code, name, tc.id, flags), flags


def probe(code: str, name: str) -> str:
    """Whether this process finds the program in its cache: "cached", "missing" (a packed copy
    could be installed), or why it could not ("no toolchain", "other build")."""
    tc = ready_toolchain()
    if tc is None:
        return "no toolchain"
    key, _ = _key(code, name, tc)
    if validate_entry(models_dir(tc.home) / key, key, full=False)[0]:
        return "cached"
    return "missing"


def _incompatible(packed: PackedProgram, tc: Toolchain, flags: dict) -> str | None:
    if packed.platform != _platform():
        return f"built for {packed.platform}, this machine is {_platform()}"
    if packed.signature != build_signature(tc.id):
        return "built by another toolchain (Stan version, sources or compiler)"
    if json.loads(json.dumps(flags)) != packed.flags:
        return "built with other flags"
    return None


def _loads(exe: Path, so: Path) -> str | None:
    """None if the executable runs and the shared library opens here, else the reason."""
    try:
        r = subprocess.run([str(exe), "info"], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, check=False)
    except OSError as e:
        return f"the executable does not run: {e}"
    if r.returncode != 0:
        return f"the executable does not run: {(r.stderr or r.stdout).strip()[:300]}"
    try:
        ctypes.CDLL(str(so))
    except OSError as e:
        return f"the shared library does not load: {e}"
    return None


def install_packed(packed: PackedProgram, *, verbose: bool = False) -> CompiledModel | None:
    """Install ``packed`` into this process's compiled-model cache; returns the cached program,
    or None when it cannot run here (then compile instead). Idempotent and atomic."""
    tc = ready_toolchain()
    if tc is None:
        return None
    key, flags = _key(packed.code, packed.name, tc)
    root = models_dir(tc.home)
    entry = root / key
    why = _incompatible(packed, tc, flags)
    if why is not None:
        if verbose:
            print(f"bayesglmm: program {packed.name} ({packed.hash}) not installed: {why}",
                  file=sys.stderr, flush=True)
        return None
    private_dir(root)
    with file_lock(root / f"{key}.lock", "Waiting for another process installing or compiling "
                   "the same Stan program ...", verbose):
        ok, _, m = validate_entry(entry, key)
        if not ok:
            m = _write_entry(packed, root, entry, key, tc, flags)
            if m is None:
                return None
    f = m["files"]
    return CompiledModel(stan_file=entry / f["stan"]["path"], exe_file=entry / f["exe"]["path"],
                         so_file=entry / f["so"]["path"], hash=key, code=packed.code,
                         name=packed.name, toolchain=tc, manifest=m)


def _write_entry(packed: PackedProgram, root: Path, entry: Path, key: str, tc: Toolchain,
                 flags: dict) -> dict | None:
    if entry.exists() or entry.is_symlink():  # corrupt (validated under the lock): replace
        trash = root / f".trash-{key}-{os.getpid()}"
        remove_tree(trash)
        os.rename(entry, trash)
        remove_tree(trash)
    tmp = root / f".tmp-{key}-{os.getpid()}"
    remove_tree(tmp)
    try:
        tmp.mkdir()
        names = entry_files(packed.name)
        files = {}
        for role in _ROLES:
            fname, digest, data = packed.files[role]
            if fname != names[role]:
                raise ToolchainError(f"packed program {packed.name}: unexpected file {fname}")
            p = tmp / fname
            p.write_bytes(data)
            if sha256_file(p) != digest:
                raise ToolchainError(f"packed program {packed.name}: {fname} arrived damaged "
                                     "(checksum differs)")
            files[role] = {"path": fname, "size": len(data), "sha256": digest}
        os.chmod(tmp / names["exe"], 0o755)
        why = _loads(tmp / names["exe"], tmp / names["so"])
        if why is not None:
            print(f"bayesglmm: program {packed.name} ({packed.hash}) not installed: {why}",
                  file=sys.stderr, flush=True)
            remove_tree(tmp)
            return None
        manifest = {
            "format": MANIFEST_FORMAT, "hash": key, "name": packed.name,
            "toolchain_id": tc.id, "flags": flags, "files": files,
            "timings": {}, "stanc_warnings": [],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "installed_from": {"hash": packed.hash, "host_platform": packed.platform},
        }
        write_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        os.rename(tmp, entry)
        return manifest
    except BaseException:
        with contextlib.suppress(OSError):
            remove_tree(tmp)
        raise
