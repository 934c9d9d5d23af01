"""Precompiled generic programs: one per family, built once per machine in the model cache.

A family's generic program (its code comes from :mod:`bayesglmm.generic`) is an ordinary entry
of the compiled-model cache under the name ``generic_<family>``: the same file lock, build in a
temporary directory and atomic rename as every other program, so a build that is killed leaves
no usable-looking entry and two processes that need it at once build it once.

This module takes the program text as an argument and imports the modelling code only inside
the functions that list every family's program (``install --programs``, ``status``): the
toolchain package itself never depends on the modelling code at import time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from .cache import CompiledModel, ModelCache, build_flags, cache_key, compile_model, validate_entry

__all__ = ["build_generic", "build_programs", "generic_programs", "program_name",
           "programs_status", "resolve_families"]


def program_name(family: str) -> str:
    """Cache name of a family's generic program: ``generic_<family>``."""
    return f"generic_{family}"


def build_message(family: str) -> str:
    return f"Building the precompiled {family} program (once per machine)"


def build_generic(family: str, code: str, *, verbose: bool = True, toolchain=None) -> CompiledModel:
    """Compile ``family``'s generic program ``code``, or load it from the cache."""
    return compile_model(code, name=program_name(family), verbose=verbose, toolchain=toolchain,
                         message=build_message(family))


def generic_programs() -> dict[str, str]:
    """Program name -> generic Stan program, for every family of the family table that has
    one (in the table's order; ``sequential_common`` is the common-effect sequential model)."""
    from bayesglmm.families import program_families
    from bayesglmm.generic import generic_code

    out = {}
    for fam in program_families():
        try:
            out[fam] = generic_code(fam)
        except (ValueError, KeyError, NotImplementedError):  # no generic program for it
            continue
    return out


def resolve_families(selection: str | Sequence[str], available: Iterable[str]) -> list[str]:
    """``"all"`` or a comma-separated list (or a sequence) of family names -> the families,
    in the order given; a ValueError names unknown families."""
    avail = list(available)
    if isinstance(selection, str):
        items = [s.strip() for s in selection.split(",") if s.strip()]
    else:
        items = [str(s).strip() for s in selection]
    if not items:
        raise ValueError("--programs needs 'all' or a comma-separated list of families, e.g. "
                         "--programs gaussian,poisson")
    if items == ["all"]:
        return avail
    unknown = [s for s in items if s not in avail]
    if unknown:
        raise ValueError(f"no precompiled program for {', '.join(map(repr, unknown))}; "
                         f"families with one: {', '.join(avail)} (or 'all')")
    return list(dict.fromkeys(items))


def build_programs(selection: str | Sequence[str] = "all", *, verbose: bool = True) -> list[str]:
    """Build the generic programs of the selected families (``"all"``, ``"gaussian,poisson"``
    or a list of names); returns the families built or found in the cache."""
    progs = generic_programs()
    fams = resolve_families(selection, progs)
    for fam in fams:
        build_generic(fam, progs[fam], verbose=verbose)
    return fams


def programs_status(home: os.PathLike | str | None = None) -> dict[str, bool] | str:
    """Family -> whether its generic program is built for the toolchain in use (no build, no
    install); a message instead when it cannot be determined."""
    from ._common import ToolchainError, models_dir
    from .locate import bundled_toolchain, external_toolchain, select

    try:
        progs = generic_programs()
    except ImportError as e:  # the modelling code is not importable: say so, do not fail
        return f"unknown ({e})"
    try:
        sel = select(home)
        tc = external_toolchain(home) if sel["kind"] == "external" else bundled_toolchain(home)
    except ToolchainError as e:
        return f"unknown ({e})"
    flags = build_flags(tc)
    cache = ModelCache(models_dir(tc.home))
    out = {}
    for fam, code in progs.items():
        key = cache_key(code, program_name(fam), tc.id, flags)
        out[fam] = validate_entry(cache.entry(key), key, full=False)[0]
    return out
