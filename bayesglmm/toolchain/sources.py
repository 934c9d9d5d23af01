"""The project's make files and C++ sources that the installer copies into the toolchain root,
and the hashes over them (the READY check and the compiled-model cache key use them)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

from ._common import Progress, write_atomic

# Package sub-trees copied into the toolchain root (relative to bayesglmm/toolchain/files).
SOURCE_ITEMS = ("common.mk", "src", "cmdstan", "bridgestan")
_SKIP_NAMES = {"__pycache__", ".DS_Store"}
_SKIP_SUFFIXES = (".pyc", ".swp", "~", ".orig", ".rej")
INSTALLED_LIST = ".installed-files.json"

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

