# bayesglmm developer commands.  `make demo` and `make test` work on a fresh machine:
# each creates .venv, installs the package and the Stan toolchain, then runs.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bayesglmm-installed
PYTEST_ARGS ?=
# generic programs `make programs` builds ahead ("all", or e.g. "gaussian,binomial")
PROGRAMS ?= all

.PHONY: setup test test-fast demo bench lint docs docs-examples clean toolchain programs

setup: $(STAMP) toolchain

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,lint,docs]"
	touch $(STAMP)

# Idempotent: a no-op once the toolchain is built and unchanged.
toolchain: $(STAMP)
	$(PY) -m bayesglmm.toolchain install

# The precompiled generic programs (one per family, bayesglmm/generic.py). The slow tests use
# every family's (tests/test_generic.py checks each against the specific programs), so CI builds
# them all ahead, one after the other, as a visible step of its own: a failing build is reported
# as such, and no test waits for a compile inside its time limit. Idempotent: programs already in
# the cache are not rebuilt.
programs: toolchain
	$(PY) -m bayesglmm.toolchain install --programs $(PROGRAMS)

# pytest exits 5 when it collects no test (e.g. a -k filter that matches nothing):
# reported, not treated as a crash.  BAYESGLMM_STRICT_TESTS=1 turns every skip for a missing need
# (toolchain, binaries, optional extras) into a failure (tests/conftest.py).
test: setup programs
	BAYESGLMM_STRICT_TESTS=1 $(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

# Unit tests only: no Stan compile, no sampling.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

demo: setup
	$(PY) examples/demo.py

bench: setup
	$(PY) bench/run.py

lint: $(STAMP)
	$(PY) -m ruff check bayesglmm tests bench examples

# The user guide (site/). The API reference pages are regenerated from the docstrings by the
# build (docs/hooks.py); the outputs of the examples are refreshed by docs-examples.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict

# Run every example of the guide and rewrite the outputs and figures shown in the pages
# (tests/test_docs.py fails when they drift). DOCS_PAGES="priors.md" limits it to some pages.
docs-examples: setup
	$(PY) docs/build_examples.py $(DOCS_PAGES)

clean:
	rm -rf $(VENV) site .pytest_cache
