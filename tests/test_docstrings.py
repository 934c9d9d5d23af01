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
    "bayesglmm.design",
    "bayesglmm.spec",
    "bayesglmm.priors",
    "bayesglmm.models.wrappers",
    "bayesglmm.post.bridge_estimator",
    "bayesglmm.ttest_classic",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0


# ----------------------------------------------------------------------------- public API
# Every public function, class and method a user meets has a numpy-style docstring: a
# "Parameters" section when it takes arguments, a "Returns" (or "Yields") section when it
# returns something. The check itself is tested on planted functions and a planted class below.

import ast  # noqa: E402
import inspect  # noqa: E402
import re  # noqa: E402
import textwrap  # noqa: E402

# the modules whose __all__ functions and classes are public (beyond bayesglmm.__all__)
PUBLIC_MODULES = [
    "bayesglmm",
    "bayesglmm.post",
    "bayesglmm.post.anova",
    "bayesglmm.post.bayes_factor",
    "bayesglmm.post.bridge",
    "bayesglmm.post.effects",
    "bayesglmm.post.loo",
    "bayesglmm.post.lsmeans",
    "bayesglmm.post.predict",
    "bayesglmm.priors.constructors",
]
# classes users get back from the public functions and methods (their public methods count)
RESULT_CLASSES = [
    "bayesglmm.models.model:Model",
    "bayesglmm.results.base:Fit",
    "bayesglmm.results.mcmc:MCMCFit",
    "bayesglmm.results.map:MAPFit",
    "bayesglmm.results_classic:ClassicFit",
    "bayesglmm.inference.variational:VariationalFit",
    "bayesglmm.inference.diagnostics:SamplingWarning",
    "bayesglmm.inference.variational:VariationalWarning",
    "bayesglmm.batch.result:BatchResult",
    "bayesglmm.kfold:KFoldResult",
    "bayesglmm.simulate:SimulatedData",
    "bayesglmm.ttest:TTestModel",
    "bayesglmm.ttest:TTestClassic",
    "bayesglmm.post._table:PrintedTable",
]

_SECTION = r"^{}\n-{{3,}}\s*$"


def _has_section(doc: str, *names: str) -> bool:
    return any(re.search(_SECTION.format(n), doc, re.M) for n in names)


def _takes_arguments(fn) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    names = [p for p in sig.parameters if p not in ("self", "cls")]
    return bool(names)


def _returns_value(fn) -> bool:
    """A ``return <value>`` (not None) or ``yield`` in the function's own body."""
    sig = inspect.signature(fn)
    if sig.return_annotation in (None, "None"):
        return False
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return False
    tree = ast.parse(src).body[0]

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                  ast.ClassDef)):
                continue
            if isinstance(child, (ast.Yield, ast.YieldFrom)):
                return True
            if isinstance(child, ast.Return) and child.value is not None and not (
                    isinstance(child.value, ast.Constant) and child.value.value is None):
                return True
            if walk(child):
                return True
        return False

    return walk(tree)


def docstring_problems(name: str, obj) -> list[str]:
    """What the docstring of ``obj`` (a function, method or property) lacks."""
    if isinstance(obj, property):
        return [] if inspect.getdoc(obj) else [f"{name}: no docstring"]
    doc = inspect.getdoc(obj) or ""
    if not doc.strip():
        return [f"{name}: no docstring"]
    out = []
    if _takes_arguments(obj) and not _has_section(doc, "Parameters"):
        out.append(f"{name}: no Parameters section")
    if _returns_value(obj) and not _has_section(doc, "Returns", "Yields"):
        out.append(f"{name}: no Returns section")
    return out


def class_problems(name: str, cls) -> list[str]:
    """The class docstring and every public method/property defined in the package (each
    reported under the class that defines it)."""
    out = [] if (cls.__doc__ or "").strip() else [f"{name}: no class docstring"]
    for klass in cls.__mro__:
        if not klass.__module__.startswith("bayesglmm"):
            continue
        for attr, member in vars(klass).items():
            if attr.startswith("_"):
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, property) or inspect.isfunction(member):
                out += docstring_problems(f"{klass.__module__}.{klass.__qualname__}.{attr}",
                                          member)
    return out


def public_api() -> dict[str, object]:
    """qualified name -> object, for every public function and class to check."""
    import importlib

    api: dict[str, object] = {}
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        for n in getattr(mod, "__all__", []):
            obj = getattr(mod, n)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                api[f"{obj.__module__}.{obj.__qualname__}"] = obj
    for spec in RESULT_CLASSES:
        modname, cls = spec.split(":")
        obj = getattr(importlib.import_module(modname), cls)
        api[f"{modname}.{cls}"] = obj
    return api


def api_problems(api: dict[str, object]) -> list[str]:
    out = []
    for name, obj in sorted(api.items()):
        out += class_problems(name, obj) if inspect.isclass(obj) else docstring_problems(name,
                                                                                       obj)
    return sorted(set(out))


def test_public_api_has_numpy_docstrings():
    api = public_api()
    assert len(api) > 60  # the walk finds the package's public surface
    problems = api_problems(api)
    assert not problems, f"{len(problems)} docstring problems:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------- the check itself


def _planted_no_doc(x):
    return x


def _planted_no_sections(x: int) -> int:
    """Doubles ``x``."""
    return 2 * x


def _planted_generator(n: int):
    """Counts to ``n``.

    Parameters
    ----------
    n : int
        Where to stop.
    """
    yield from range(n)


def _planted_complete(x: int) -> int:
    """Doubles ``x``.

    Parameters
    ----------
    x : int
        A number.

    Returns
    -------
    int
        ``2 * x``.
    """
    return 2 * x


def _planted_procedure(x: int) -> None:
    """Prints ``x``.

    Parameters
    ----------
    x : int
        A number.
    """
    print(x)


class _PlantedResult:
    """A planted result class."""

    @property
    def value(self) -> float:
        return 1.0

    def format(self) -> str:
        return "planted"

    def _private(self, x):
        return x


def test_docstring_check_finds_planted_gaps():
    assert docstring_problems("f", _planted_no_doc) == ["f: no docstring"]
    assert docstring_problems("f", _planted_no_sections) == ["f: no Parameters section",
                                                             "f: no Returns section"]
    assert docstring_problems("f", _planted_generator) == ["f: no Returns section"]
    assert docstring_problems("f", _planted_complete) == []
    assert docstring_problems("f", _planted_procedure) == []  # returns None: no Returns needed
    # only the package's classes are walked (a planted class outside it reports nothing)
    assert class_problems("C", _PlantedResult) == []
    _PlantedResult.__module__ = "bayesglmm._planted"  # as if it were one of the package's
    try:
        got = class_problems("C", _PlantedResult)
    finally:
        _PlantedResult.__module__ = __name__
    mod = "bayesglmm._planted._PlantedResult"
    assert sorted(got) == [f"{mod}.format: no docstring", f"{mod}.value: no docstring"]
    api = {"f": _planted_no_doc, "g": _planted_complete}
    assert api_problems(api) == ["f: no docstring"]
