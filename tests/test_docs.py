"""The user guide (docs/) never drifts from the code.

* slow: every ```python example of every page runs (docs/build_examples.py, one namespace per
  page) and the outputs shown in the page must equal what the run produces now; any example
  that raises fails the test. Regenerate with ``python docs/build_examples.py [page.md]``.
* fast: the API reference pages (docs/reference/) are current with the docstrings, every page
  in docs/ is listed in mkdocs.yml, and ``mkdocs build --strict`` passes (if mkdocs is
  installed).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bayesglmm_docs_{name}", DOCS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


build_examples = _load("build_examples")
gen_reference = _load("gen_reference")

PAGES = build_examples.pages()


def test_pages_with_examples_exist():
    assert len(PAGES) >= 5


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_examples_run_and_outputs_match(page, toolchain):
    drift = build_examples.check_page(page)
    assert not drift, (
        f"the outputs shown in docs/{page.name} differ from what its examples produce now; "
        f"run `python docs/build_examples.py {page.name}` and review the diff:\n{drift}"
    )


def test_reference_pages_are_current():
    stale = gen_reference.stale()
    assert not stale, f"out of date (run python docs/gen_reference.py): {stale}"


def test_every_public_name_has_a_reference_page():
    import bayesglmm

    for name in bayesglmm.__all__:
        if not name.startswith("_"):
            assert (DOCS / "reference" / f"{name}.md").is_file(), name


def test_every_page_is_in_the_nav():
    import yaml

    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))
    listed = set()

    def walk(entries):
        for e in entries:
            if isinstance(e, str):
                listed.add(e)
            elif isinstance(e, dict):
                for v in e.values():
                    walk(v if isinstance(v, list) else [v])

    walk(cfg["nav"])
    for p in DOCS.glob("*.md"):
        assert p.name in listed, f"docs/{p.name} is not in the nav of mkdocs.yml"
    for rel in listed:
        assert (DOCS / rel).is_file(), f"mkdocs.yml lists {rel}, which does not exist"


def test_parser_roundtrip_and_markers():
    text = "\n".join([
        "# t", "", "```python", "print(1 + 1)", "```", "", "<!-- output -->", "```text", "3",
        "```", "<!-- /output -->", "", "<!-- no-run -->", "```python", "import missing_pkg",
        "```", "", "```python", "x = 1", "```", "",
    ])
    lines, blocks = build_examples.parse(text)
    assert [b.run for b in blocks] == [True, False, True]
    blocks[0].output = "2"
    assert "```text\n2\n```" in build_examples.render(lines, blocks)
    out, err = build_examples._run_block("x = 2\nx * 3", {}, "t")
    assert err is None and out.strip() == "6"


def test_normalise_hides_volatile_text():
    n = build_examples.normalise
    assert n("Elapsed: 1.25 s\n") == "Elapsed: <time>"
    assert n("at 0x7f3a2b1c9d00>") == "at 0x...>"


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
