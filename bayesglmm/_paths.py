"""Locate the Stan templates (``templates/``) and Stan function snippets (``stan_snippets/``).

They live at the top level of the repository. Search order for each directory:

1. the environment variable ``BAYESGLMM_TEMPLATES`` / ``BAYESGLMM_SNIPPETS`` (override);
2. next to the package directory (source checkout and editable install: ``<repo>/templates``);
3. inside the package (``bayesglmm/templates``: wheels that ship them as package data);
4. ``<sys.prefix>/share/bayesglmm/<name>`` (wheels that ship them as data files).
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

__all__ = ["find_resource_dir", "snippets_dir", "templates_dir"]

_PKG = Path(__file__).resolve().parent


@cache
def find_resource_dir(name: str, env_var: str) -> Path:
    candidates = []
    env = os.environ.get(env_var)
    if env:
        candidates.append(Path(env))
    candidates += [
        _PKG.parent / name,
        _PKG / name,
        Path(sys.prefix) / "share" / "bayesglmm" / name,
    ]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(
        f"bayesglmm cannot find its '{name}' directory; looked in: "
        + ", ".join(str(c) for c in candidates)
        + f". Set {env_var} to its location."
    )


def templates_dir() -> Path:
    """Directory holding ``*.stan.j2`` templates."""
    return find_resource_dir("templates", "BAYESGLMM_TEMPLATES")


def snippets_dir() -> Path:
    """Directory holding reusable Stan functions (``*.stan``)."""
    return find_resource_dir("stan_snippets", "BAYESGLMM_SNIPPETS")
