"""MkDocs hooks (local, no plugin, no network): regenerate the API reference pages from the
docstrings before the pages are collected, and list them in the nav under "API reference"."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "bayesglmm_docs_gen_reference", Path(__file__).with_name("gen_reference.py"))
gen_reference = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = gen_reference
_spec.loader.exec_module(gen_reference)


def on_config(config, **kwargs):
    gen_reference.write()
    nav = config.get("nav") or []
    for i, entry in enumerate(nav):
        if isinstance(entry, dict) and "API reference" in entry:
            nav[i] = {"API reference": gen_reference.nav_entries()}
    return config
