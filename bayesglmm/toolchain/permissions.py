"""Who could have written a program before it is run.

bayesglmm runs compiled code from two places it writes itself: the compiled-model cache
(``<home>/models``: each program's CmdStan executable and BridgeStan library) and the bundled
toolchain (``<home>/toolchain``: stanc, the TBB library, the objects linked into every model).
Anyone who can write to one of those places could replace a program with one of their own,
which would then run as you. So, as ssh does with its keys, a program is refused when

* the file, or any directory on its path, is owned by another user than you (or root), or
* the file, or any directory on its path, can be written by the group or by others (a
  directory with the sticky bit set, such as ``/tmp``, is fine: there others cannot remove or
  rename what you own).

The error names the culprit and the command that fixes it. Directories that bayesglmm creates
(``BAYESGLMM_HOME`` and the ``models``, ``toolchain`` and ``wheels`` directories in it) are
created private to you (mode 0700, see :func:`~bayesglmm.toolchain._common.private_dir`);
directories that exist already are never changed, only checked when a program in them is
about to run.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterable
from pathlib import Path

from ._common import ToolchainError

__all__ = ["UnsafePermissionsError", "check_toolchain", "check_trusted", "describe_home",
           "path_problem", "toolchain_programs"]


class UnsafePermissionsError(ToolchainError):
    """A compiled program lies where another user could have written it; it is not run."""


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _chain(path: Path) -> list[Path]:
    """``path`` and its directories up to ``/``, both as written and with symlinks resolved
    (a directory where a symlink can be swapped matters as much as the target's)."""
    out: list[Path] = []
    for p in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
        for q in (p, *p.parents):
            if q not in out:
                out.append(q)
    return out


def path_problem(path: Path, uid: int | None = None, seen: set[Path] | None = None
                 ) -> str | None:
    """Why ``path`` is unsafe to run, or None. ``uid`` is the user to trust besides root
    (default: you); paths in ``seen`` were found fine already (it is updated)."""
    me = os.geteuid() if uid is None else uid
    seen = set() if seen is None else seen
    for p in _chain(path):
        if p in seen:
            continue
        try:
            st = p.stat()
        except FileNotFoundError:
            continue  # the caller reports missing files; a dangling link's target is new
        except OSError as e:
            return f"{p} cannot be checked ({e.strerror or e})"
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
        mode = stat.filemode(st.st_mode)
        if st.st_uid not in (me, 0):
            return (f"the {kind} {p} is owned by {_owner(st.st_uid)}, not by you "
                    f"({_owner(me)}) or root. Fix: `chown {_owner_arg(me)} {p}` (or remove it "
                    "and let bayesglmm rebuild it)")
        sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_dir:
            who = " and ".join(w for w, bit in (("its group", stat.S_IWGRP),
                                                ("other users", stat.S_IWOTH))
                               if st.st_mode & bit)
            return (f"the {kind} {p} can be written by {who} (mode {mode}). Fix: "
                    f"`chmod go-w {p}`")
        seen.add(p)
    return None


def _owner_arg(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def check_trusted(paths: Iterable[os.PathLike | str], what: str, what_to_remove: str,
                  uid: int | None = None) -> None:
    """Raise :class:`UnsafePermissionsError` unless every path in ``paths`` (and every
    directory above it) is owned by you or root and not writable by group or others.

    ``what`` says what was about to run ("the compiled Stan program", ...) and
    ``what_to_remove`` what to remove when it may have been tampered with; ``uid`` is the
    user to trust besides root (default: you).
    """
    seen: set[Path] = set()
    for path in paths:
        why = path_problem(Path(path), uid, seen)
        if why is not None:
            raise UnsafePermissionsError(
                f"Refusing to run {what} {path}: {why}. Another user could have replaced it "
                "with a program of their own. If you did not loosen these permissions "
                f"yourself, remove {what_to_remove} instead (bayesglmm rebuilds it). Or set "
                "BAYESGLMM_HOME to a directory only you can write.")


# programs and libraries of the bundled toolchain that run or are linked into every model
_TOOLCHAIN_PROGRAMS = ("stan/stanc", "cmdstan/bin/stanc", "cmdstan/bin/stansummary",
                       "cmdstan/bin/diagnose", "bridgestan/bin/stanc", "stan/include")


def toolchain_programs(root: Path) -> list[Path]:
    """What :func:`check_toolchain` checks in the bundled toolchain ``root``: its programs,
    its shared libraries, the objects and precompiled headers linked into every model (all of
    ``build/``) and the header directory (the headers below it are protected by it)."""
    out = [root / rel for rel in _TOOLCHAIN_PROGRAMS]
    out += sorted((root / "stan" / "lib").glob("*.so*"))
    build = root / "build"
    out.append(build)
    if build.is_dir():
        out += sorted(p for p in build.rglob("*") if not p.is_symlink())
    return out


def check_toolchain(root: Path, uid: int | None = None) -> None:
    """Refuse the bundled toolchain in ``root`` when another user could have written one of
    its programs (see :func:`check_trusted`)."""
    check_trusted(toolchain_programs(root), "the Stan toolchain's", f"the toolchain {root}",
                  uid)


def describe_home(home: Path) -> str:
    """One line for ``status``: whether programs under ``home`` would be refused, and whether
    the home is private."""
    home = Path(home)
    if not home.exists():
        return "not created yet (it will be private: mode 0700)"
    seen: set[Path] = set()
    targets = [home, home / "models"]
    root = home / "toolchain"
    if root.is_dir():
        targets += toolchain_programs(root)
    for p in targets:
        why = path_problem(p, seen=seen)
        if why is not None:
            return f"UNSAFE, compiled programs are refused: {why}"
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode & 0o077:
        return (f"ok (readable by others: mode {stat.filemode(home.stat().st_mode)}; "
                f"`chmod 700 {home}` makes it private)")
    return "ok (private)"
