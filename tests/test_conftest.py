"""The suite's strict mode (tests/conftest.py): under ``make test`` a missing need fails.

Each test runs pytest in a subprocess on a tiny test file (or on a real slow test with the
toolchain made unavailable) and reads its exit code and output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
REPO = TESTS.parent

NEEDY = '''
import pytest
from conftest import require, require_module

def test_needs_a_binary():
    require(False, "no frobnicator at /nowhere")

def test_needs_an_extra():
    require_module("bayesglmm_no_such_module_xyz")

@pytest.mark.skipif(True, reason="plain skipif")
def test_plain_skipif():
    pass

def test_fine():
    assert 1 + 1 == 2
'''


def _pytest(args: list[str], strict: bool, extra_env: dict | None = None):
    env = {k: v for k, v in os.environ.items() if k != "BAYESGLMM_STRICT_TESTS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if strict:
        env["BAYESGLMM_STRICT_TESTS"] = "1"
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(REPO), *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


@pytest.fixture
def needy_file():
    # inside tests/ so that tests/conftest.py applies; removed afterwards
    p = TESTS / f"test_zz_needy_{os.getpid()}.py"
    p.write_text(NEEDY)
    yield p
    p.unlink()


def test_plain_run_skips_and_says_so(needy_file):
    r = _pytest([str(needy_file)], strict=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 3 skipped" in r.stdout
    assert "3 test(s) SKIPPED because something they need is missing" in r.stdout


def test_strict_run_fails_every_missing_need(needy_file):
    r = _pytest([str(needy_file)], strict=True)
    assert r.returncode == 1, r.stdout + r.stderr
    # a skip raised in the setup phase (skipif, a fixture's require) is reported as an error
    assert "2 failed, 1 passed, 1 error" in r.stdout and " skipped" not in r.stdout.splitlines()[-1]
    assert "BAYESGLMM_STRICT_TESTS=1" in r.stdout
    assert "no frobnicator at /nowhere" in r.stdout
    assert "bayesglmm_no_such_module_xyz" in r.stdout
    assert "plain skipif" in r.stdout


def test_makefile_and_ci_run_strict():
    make = (REPO / "Makefile").read_text()
    test_rule = make.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "BAYESGLMM_STRICT_TESTS=1" in test_rule
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow
def test_strict_run_fails_without_toolchain():
    """No usable toolchain (external requested, none there): a test that compiles FAILS and says why."""
    env = {"BAYESGLMM_TOOLCHAIN": "external", "CMDSTAN": "/nonexistent/cmdstan",
           "BRIDGESTAN": "/nonexistent/bridgestan"}
    target = "tests/test_models.py::test_from_stan_edited_program"
    r = _pytest([target], strict=True, extra_env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Stan toolchain not available" in r.stdout
    r = _pytest([target], strict=False, extra_env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 skipped" in r.stdout and "SKIPPED because something they need is missing" in r.stdout
