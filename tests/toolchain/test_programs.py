"""bayesglmm.toolchain.programs: selecting the generic programs to build (``--programs``)."""

from __future__ import annotations

import pytest

from bayesglmm.toolchain.programs import build_message, program_name, resolve_families

AVAILABLE = ["gaussian", "binomial", "poisson"]


def test_all_and_lists():
    assert resolve_families("all", AVAILABLE) == AVAILABLE
    assert resolve_families("poisson,gaussian", AVAILABLE) == ["poisson", "gaussian"]
    assert resolve_families(" gaussian , gaussian ", AVAILABLE) == ["gaussian"]
    assert resolve_families(["binomial"], AVAILABLE) == ["binomial"]


def test_unknown_and_empty_selections_are_named():
    with pytest.raises(ValueError, match="'gausian'.*families with one: gaussian, binomial"):
        resolve_families("gausian,poisson", AVAILABLE)
    with pytest.raises(ValueError, match="'all' or a comma-separated list"):
        resolve_families(" , ", AVAILABLE)


def test_names_and_message():
    assert program_name("neg_binomial") == "generic_neg_binomial"
    assert build_message("gaussian") == (
        "Building the precompiled gaussian program (once per machine)")
