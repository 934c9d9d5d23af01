"""Who could have written a program before it runs (bayesglmm/toolchain/permissions.py) and
the private directories bayesglmm creates (``_common.private_dir``).

Every test works on copies in a temporary BAYESGLMM_HOME: the shared ``~/.cache/bayesglmm`` is
never chmod-ed. Running as root (CI here), "owned by another user" is made with ``chown``;
as another user the same check is made by trusting a uid that does not own the file.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from bayesglmm.toolchain import _common, locate
from bayesglmm.toolchain.cache import CompiledModel
from bayesglmm.toolchain.permissions import (
    UnsafePermissionsError,
    check_toolchain,
    check_trusted,
    path_problem,
    toolchain_programs,
)

BERNOULLI = """
data { int<lower=0> N; array[N] int<lower=0, upper=1> y; }
parameters { real<lower=0, upper=1> theta; }
model { theta ~ beta(1, 1); y ~ bernoulli(theta); }
"""
BERN_DATA = {"N": 10, "y": np.array([0, 1, 0, 0, 0, 0, 0, 0, 0, 1])}
NOBODY = 65534


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def foreign(path: Path) -> int | None:
    """Make ``path`` belong to another user (root: chown to nobody); returns the uid to trust
    in the check (None = you)."""
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
        return None
    return os.geteuid() + 1  # the file stays yours; the check trusts someone else


# --------------------------------------------------------------------------- private dirs


def test_private_dir_creates_0700_whatever_the_umask(tmp_path):
    old = os.umask(0)  # the most permissive umask: mkdir alone would give 0777
    try:
        d = _common.private_dir(tmp_path / "a" / "b" / "home")
    finally:
        os.umask(old)
    for p in (tmp_path / "a", tmp_path / "a" / "b", d):
        assert mode(p) == 0o700, p


def test_existing_directories_are_left_as_they_are(tmp_path):
    """A home that exists already (perhaps shared read-only on purpose) is not chmod-ed; only
    what bayesglmm creates in it is private."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    _common.private_dir(home / "models")
    with _common.file_lock(home / "toolchain" / "x.lock"):
        pass
    assert mode(home) == 0o755
    assert mode(home / "models") == 0o700 and mode(home / "toolchain") == 0o700
    assert mode(home / "toolchain" / "x.lock") == 0o600


# --------------------------------------------------------------------------- the check


def test_check_names_the_culprit_and_the_fix(tmp_path):
    d = tmp_path / "entry"
    d.mkdir()
    exe = d / "prog"
    exe.write_text("#!/bin/sh\n")
    os.chmod(d, 0o755)
    os.chmod(exe, 0o755)
    assert path_problem(exe) is None
    os.chmod(exe, 0o775)
    assert path_problem(exe) == (f"the file {exe} can be written by its group (mode -rwxrwxr-x). "
                                 f"Fix: `chmod go-w {exe}`")
    os.chmod(exe, 0o755)
    os.chmod(d, 0o777)
    assert path_problem(exe) == (f"the directory {d} can be written by its group and other "
                                 f"users (mode drwxrwxrwx). Fix: `chmod go-w {d}`")
    os.chmod(d, 0o1777)  # sticky, as /tmp: others cannot replace what you own
    assert path_problem(exe) is None
    os.chmod(d, 0o755)
    uid = foreign(exe)
    why = path_problem(exe, uid)
    assert why is not None and why.startswith(f"the file {exe} is owned by ")
    assert "not by you" in why and "chown" in why
    with pytest.raises(UnsafePermissionsError, match=r"Refusing to run the thing .*owned by .*"
                                                     r"Another user could have replaced it"):
        check_trusted([exe], "the thing", "it", uid)


def test_a_symlink_in_a_writable_directory_is_refused(tmp_path):
    """The directory holding a symlink matters as much as the target's: another user could
    point the link elsewhere."""
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o755)
    (safe / "prog").write_text("x")
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    (open_dir / "link").symlink_to(safe / "prog")
    assert path_problem(safe / "prog") is None
    assert str(open_dir) in (path_problem(open_dir / "link") or "")


def fake_toolchain(root: Path) -> None:
    for rel in ("stan/stanc", "stan/lib/libtbb.so.2", "cmdstan/bin/stansummary",
                "cmdstan/bin/diagnose", "build/driver/main.o", "build/pch_O1/pch.hpp.gch"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / "stan" / "include").mkdir()
    for rel in ("cmdstan/bin/stanc", "bridgestan/bin/stanc"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(root / "stan" / "stanc")


@pytest.mark.parametrize("rel", ["stan/lib/libtbb.so.2", "build/driver/main.o",
                                 "build/pch_O1", "stan/include"])
def test_toolchain_check_covers_libraries_objects_and_headers(tmp_path, rel):
    root = tmp_path / "home" / "toolchain"
    fake_toolchain(root)
    check_toolchain(root)
    assert root / rel in toolchain_programs(root)
    os.chmod(root / rel, 0o777)
    with pytest.raises(UnsafePermissionsError, match=f"{root / rel} can be written by"):
        check_toolchain(root)


def test_status_reports_the_home(tmp_path):
    from bayesglmm.toolchain.permissions import describe_home
    from bayesglmm.toolchain.status import format_status, status

    home = tmp_path / "home"
    assert describe_home(home) == "not created yet (it will be private: mode 0700)"
    fake_toolchain(home / "toolchain")
    os.chmod(home, 0o700)
    assert describe_home(home) == "ok (private)"
    os.chmod(home, 0o755)
    assert describe_home(home) == (f"ok (readable by others: mode drwxr-xr-x; `chmod 700 {home}` "
                                   "makes it private)")
    os.chmod(home / "toolchain" / "build", 0o777)
    assert describe_home(home).startswith("UNSAFE, compiled programs are refused: the directory "
                                          f"{home / 'toolchain' / 'build'} can be written by")
    assert "Permissions:      UNSAFE" in format_status(status(home))


# --------------------------------------------------------------------------- real programs


@pytest.fixture
def copied(tmp_path, toolchain) -> CompiledModel:
    """A copy of a compiled program's cache entry in a temporary BAYESGLMM_HOME."""
    from bayesglmm.toolchain import compile_model

    cm = compile_model(BERNOULLI, name="bernoulli", verbose=False)
    entry = tmp_path / "home" / "models" / cm.hash
    _common.private_dir(entry.parent)
    shutil.copytree(cm.directory, entry, symlinks=True)
    os.chmod(entry, 0o755)
    return CompiledModel(stan_file=entry / cm.stan_file.name, exe_file=entry / cm.exe_file.name,
                         so_file=entry / cm.so_file.name, hash=cm.hash, code=cm.code,
                         name=cm.name, toolchain=cm.toolchain)


@pytest.mark.slow
def test_a_program_others_could_have_written_is_not_run(copied, tmp_path):
    """The executable is replaced by a script that leaves a marker when run. In a directory
    that others can write it is refused before anything runs; once the directory is private
    again the same call runs it (so the refusal is what kept it from running)."""
    marker = tmp_path / "ran"
    copied.exe_file.write_text(f"#!/bin/sh\ntouch {marker}\n")
    os.chmod(copied.exe_file, 0o755)
    os.chmod(copied.directory, 0o777)
    with pytest.raises(UnsafePermissionsError,
                       match=rf"Refusing to run the compiled Stan program {copied.exe_file}: "
                             rf"the directory {copied.directory} can be written by its group "
                             rf"and other users .*chmod go-w {copied.directory}.*"
                             rf"remove its cache entry {copied.directory}"):
        copied.cmdstan_model().exe_info()
    assert not marker.exists()
    os.chmod(copied.directory, 0o755)
    copied.cmdstan_model().exe_info()
    assert marker.exists()


@pytest.mark.slow
def test_a_library_others_could_have_written_is_not_loaded(copied):
    os.chmod(copied.so_file, 0o775)
    with pytest.raises(UnsafePermissionsError, match=rf"the file {copied.so_file} can be "
                                                     r"written by its group"):
        copied.bridgestan_model(BERN_DATA)
    os.chmod(copied.so_file, 0o755)
    bs = copied.bridgestan_model(BERN_DATA)
    assert np.isfinite(bs.log_density(np.array([0.0])))


@pytest.mark.slow
def test_a_program_owned_by_another_user_is_not_run(copied):
    uid = foreign(copied.exe_file)
    with pytest.raises(UnsafePermissionsError,
                       match=rf"{copied.exe_file} is owned by .*not by you"):
        if uid is None:  # really owned by nobody (root runs the tests): the method refuses it
            copied.cmdstan_model()
        else:
            check_trusted([copied.exe_file], "the compiled Stan program", "it", uid)


@pytest.mark.slow
def test_toolchain_in_a_home_others_can_write_is_refused(tmp_path, monkeypatch, toolchain):
    """ensure_toolchain() checks the bundled toolchain before handing it out. The temporary
    home links to the machine's toolchain, so nothing is installed or chmod-ed there."""
    require_bundled(toolchain)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "toolchain").symlink_to(toolchain.root)
    monkeypatch.setenv("BAYESGLMM_TOOLCHAIN", "bundled")
    os.chmod(home, 0o777)
    locate._memo.clear()
    try:
        with pytest.raises(UnsafePermissionsError,
                           match=rf"Refusing to run the Stan toolchain's .*the directory {home} "
                                 r"can be written by"):
            locate.ensure_toolchain(verbose=False, home=home)
        os.chmod(home, 0o700)
        assert locate.ensure_toolchain(verbose=False, home=home).root == home / "toolchain"
    finally:
        locate._memo.clear()
        toolchain.activate()  # cmdstanpy and bridgestan back on the machine's toolchain


def require_bundled(tc) -> None:
    from conftest import require

    require(tc.kind == "bundled", "the bundled toolchain (this test links to it)")
