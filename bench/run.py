"""Run every benchmark script ``bench/bench_*.py`` in turn (``make bench``).

Each script writes its own ``bench/results/<name>.json``. The scripts run one after the other
(never in parallel: they time things) with the interpreter running this file; the exit status
is non-zero if any script failed, after all of them have run.

Usage: ``python bench/run.py [name ...]`` (names without ``bench_``/``.py`` select scripts,
e.g. ``python bench/run.py core``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts(selected: list[str] | None = None) -> list[Path]:
    """The benchmark scripts, sorted by name, optionally only the ``selected`` ones."""
    found = sorted(HERE.glob("bench_*.py"))
    if not selected:
        return found
    by_name = {p.stem.removeprefix("bench_"): p for p in found}
    unknown = [s for s in selected if s not in by_name]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; "
                         f"available: {', '.join(by_name)}")
    return [by_name[s] for s in selected]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    failed = []
    for script in scripts(argv):
        print(f"=== {script.name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)], cwd=str(HERE.parent))
        print(f"=== {script.name}: exit {rc} after {time.perf_counter() - t0:.1f} s", flush=True)
        if rc != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
