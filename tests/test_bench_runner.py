"""bench/run.py (``make bench``): finds every bench/bench_*.py, selects by name, runs them in
turn and reports failures (checked with throw-away scripts, not the real benchmarks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_finds_every_benchmark(runner):
    names = [p.name for p in runner.scripts()]
    assert names == sorted(p.name for p in BENCH.glob("bench_*.py"))
    assert {"bench_core.py", "bench_toolchain.py"} <= set(names)
    assert [p.name for p in runner.scripts(["core"])] == ["bench_core.py"]
    with pytest.raises(SystemExit, match="unknown benchmark.*nope.*available: .*core"):
        runner.scripts(["nope"])


def test_runs_in_turn_and_reports_failure(runner, tmp_path, monkeypatch, capsys):
    log = tmp_path / "log.txt"
    (tmp_path / "bench_a.py").write_text(f"open({str(log)!r}, 'a').write('a')\n")
    (tmp_path / "bench_b.py").write_text(f"open({str(log)!r}, 'a').write('b')\nraise SystemExit(3)\n")
    (tmp_path / "bench_c.py").write_text(f"open({str(log)!r}, 'a').write('c')\n")
    monkeypatch.setattr(runner, "HERE", tmp_path)
    assert runner.main([]) == 1  # b failed, but c still ran
    assert log.read_text() == "abc"
    assert "failed: bench_b.py" in capsys.readouterr().err
    log.unlink()
    assert runner.main(["a", "c"]) == 0
    assert log.read_text() == "ac"
