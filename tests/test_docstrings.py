"""The examples in the docstrings of the layered modules run and print what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "bayesglmm.core.naming",
    "bayesglmm.core.validate",
    "bayesglmm.core.arviz_adapter",
    "bayesglmm.formula",
    "bayesglmm.frame",
    "bayesglmm.spec",
    "bayesglmm.priors",
    "bayesglmm.models.wrappers",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0
