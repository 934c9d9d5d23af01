"""Compiled programs packed on one machine and installed into another cache without compiling
(bayesglmm.toolchain.transfer): checksums, compatibility, atomic and idempotent install.

"Another machine" is this process with BAYESGLMM_HOME pointing at an empty model cache (the
same toolchain, linked), so its cache keys differ from the caller's as they would on another
host."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bayesglmm.toolchain import ToolchainError
from bayesglmm.toolchain.transfer import build_signature, install_packed, pack, probe

pytestmark = pytest.mark.slow


@pytest.fixture
def other_home(debate_compiled, tmp_path, monkeypatch):
    tc = debate_compiled.toolchain
    home = tmp_path / "home"
    home.mkdir()
    if tc.kind == "bundled":
        (home / "toolchain").symlink_to(tc.root.resolve())
    monkeypatch.setenv("BAYESGLMM_HOME", str(home))
    return home


def test_pack_install_probe(debate_compiled, other_home):
    packed = pack(debate_compiled)
    assert set(packed.files) == {"stan", "exe", "so"}
    assert packed.nbytes == sum(p.stat().st_size for p in (
        debate_compiled.stan_file, debate_compiled.exe_file, debate_compiled.so_file))
    assert probe(debate_compiled.code, debate_compiled.name) == "missing"
    cm = install_packed(packed)
    assert cm is not None and cm.directory.parent == other_home / "models"
    assert (other_home / "models").stat().st_mode & 0o777 == 0o700  # created private
    assert cm.exe_file.read_bytes() == debate_compiled.exe_file.read_bytes()
    assert json.loads((cm.directory / "MANIFEST.json").read_text())["installed_from"] == {
        "hash": debate_compiled.hash, "host_platform": packed.platform}
    assert probe(debate_compiled.code, debate_compiled.name) == "cached"
    again = install_packed(packed)  # idempotent: the same entry, untouched
    assert again.directory == cm.directory
    assert again.exe_file.stat().st_mtime_ns == cm.exe_file.stat().st_mtime_ns
    assert not [p for p in cm.directory.parent.iterdir() if p.name.startswith(".tmp-")]


def test_damaged_or_foreign_programs_are_not_installed(debate_compiled, other_home):
    packed = pack(debate_compiled)
    name, digest, data = packed.files["so"]
    damaged = dataclasses.replace(packed, files={**packed.files,
                                                 "so": (name, digest, data[:-1] + bytes([data[-1] ^ 1]))})
    with pytest.raises(ToolchainError, match="arrived damaged"):
        install_packed(damaged)
    models = other_home / "models"
    assert not [p for p in models.iterdir() if not p.name.endswith(".lock")]
    other_cxx = dataclasses.replace(packed, signature=packed.signature + " | cxx=clang 99")
    assert install_packed(other_cxx) is None
    assert install_packed(dataclasses.replace(packed, platform="darwin-arm64")) is None
    assert install_packed(dataclasses.replace(packed, flags={**packed.flags, "O": 3})) is None
    assert probe(debate_compiled.code, debate_compiled.name) == "missing"


def test_build_signature_ignores_locations():
    a = "0123456789abcdef bundled | root=/a/toolchain | stan=2.35.0 | src=x | cxx=g++ 12"
    b = "fedcba9876543210 bundled | root=/b/t | stan=2.35.0 | src=x | cxx=g++ 12"
    assert build_signature(a) == build_signature(b) == "bundled | stan=2.35.0 | src=x | cxx=g++ 12"
    assert build_signature(a) != build_signature(a.replace("g++ 12", "g++ 13"))
