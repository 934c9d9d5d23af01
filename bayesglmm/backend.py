"""Which Stan program fits a model: the family's precompiled generic program or the model's own.

Every formula model has its own ("specific") Stan program, generated for its structure: the
program ``print_code()`` shows and ``export()`` writes. For the common structures the family's
generic program (:mod:`bayesglmm.generic`) computes the same log density with the same
parameters from data alone, so it is compiled once per machine and then fits every such model
without a compile. ``backend=`` chooses:

* ``"auto"`` (default): the generic program when it covers the model, else the specific one
  (with a one-line note saying why when the program is first needed);
* ``"specific"``: always the model's own program (compiled once per structure);
* ``"generic"``: the generic program, or a ValueError naming what it cannot cover.

Programs without a formula specification (``from_stan``, the t-test) always run their own code.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BACKENDS", "GenericBridgeStan", "RunProgram", "bridgestan_model", "check_backend",
           "choose_backend", "compile_program", "fallback_note", "run_program"]

BACKENDS = ("auto", "specific", "generic")


@dataclass(frozen=True, eq=False)
class RunProgram:
    """The Stan program a model's fits run: its code, data and cache name.

    ``backend`` is "generic" or "specific"; ``family`` the program name of a generic program
    (:attr:`bayesglmm.families.Family.program`: the family name, or ``sequential_common``).
    """

    backend: str
    code: str
    data: Mapping[str, Any]
    name: str
    family: str | None = None


def check_backend(backend: Any) -> str:
    """``backend`` if it is one of "auto", "specific", "generic"; else a ValueError."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto', 'specific' or 'generic', not {backend!r}")
    return backend


def _family_name(spec: Any) -> str:
    return str(getattr(getattr(spec, "family", None), "name", "") or "")


def choose_backend(program: Any, backend: str, wrapper: str = "") -> tuple[str, str | None]:
    """(the backend that runs, why the generic program does not run, or None).

    ``backend="generic"`` raises a ValueError with that reason when the generic program does
    not cover the model.
    """
    backend = check_backend(backend)
    spec = getattr(program, "spec", None)
    if backend == "specific":
        return "specific", None
    if spec is None:
        reason = ("a program given to from_stan()" if wrapper == "from_stan"
                  else f"the {wrapper or 'model'}'s own program")
    else:
        from .generic import covers

        reason = covers(spec)
    if reason is None:
        return "generic", None
    if backend == "generic":
        what = (f"the precompiled {_family_name(spec)} program" if spec is not None
                else "a precompiled generic program")
        raise ValueError(f"backend='generic': {what} cannot fit this model ({reason}); "
                         "use backend='auto' or backend='specific' to compile its own program")
    return "specific", reason


def run_program(program: Any, backend: str, name: str) -> RunProgram:
    """The program to compile and fit for a model whose resolved backend is ``backend``."""
    if backend == "generic":
        from .generic import generic_code, generic_data
        from .toolchain.programs import program_name

        family = program.spec.family  # its program: the family's, or the variant's
        return RunProgram("generic", generic_code(family), generic_data(program.spec),
                          program_name(family.program), family.program)
    return RunProgram("specific", program.code, program.data, name)


def compile_program(run: RunProgram, verbose: bool = True):
    """Compile ``run``'s code (or load it from the cache); returns the CompiledModel (its data
    is ``run.data``: a compiled program is shared by every model with the same code)."""
    if run.backend == "generic":
        from .toolchain.programs import build_generic

        cm = build_generic(run.family or "", run.code, verbose=verbose)
    else:
        from .toolchain import compile_model

        cm = compile_model(run.code, name=run.name, verbose=verbose)
    return cm


class GenericBridgeStan:
    """A BridgeStan model of a generic program that reports the specific program's
    unconstrained parameter names (``Intercept``, ``beta.1``, ... where the generic program says
    ``Intercept_c``, ``beta_free.1``: the same coordinates). Everything else is the BridgeStan
    model's own (constrained names, log density, transforms)."""

    def __init__(self, bs_model: Any, spec: Any):
        from .generic import specific_names

        self._bs = bs_model
        self._unc = [str(n) for n in specific_names(spec, list(bs_model.param_unc_names()),
                                                    unconstrained=True)]

    def param_unc_names(self) -> list[str]:
        return list(self._unc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bs, name)


def bridgestan_model(run: RunProgram, compiled: Any, spec: Any):
    """The BridgeStan model of ``compiled`` with ``run``'s data (unconstrained names of the
    specific program for a generic program)."""
    bs = compiled.bridgestan_model(dict(run.data))
    return GenericBridgeStan(bs, spec) if run.backend == "generic" else bs


def fallback_note(family: str, reason: str) -> str:
    """The one-line note printed when ``backend="auto"`` runs the specific program."""
    return (f"bayesglmm: the precompiled {family} program does not cover this model ({reason}); "
            "using the model's own Stan program.")


def print_note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
