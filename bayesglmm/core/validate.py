"""Checks of user arguments shared by the fitting methods: each returns the cleaned value or
raises a ``ValueError`` that names the argument."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["check_delta", "check_init", "check_int", "check_seed"]


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an ``int`` if it is an integer >= ``minimum``.

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : Any
        What the user passed (``bool`` is rejected).
    minimum : int
        Smallest allowed value.

    Examples
    --------
    >>> check_int("chains", 4, 1)
    4
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_seed(seed: Any) -> int | None:
    """A random seed: None (a fresh one is drawn later) or an integer in [0, 2**31 - 2].

    Examples
    --------
    >>> check_seed(12) is None
    False
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**31 - 1:
        raise ValueError(f"seed must be None or an integer in [0, 2**31 - 2], got {seed!r}")
    return int(seed)


def check_delta(delta: Any) -> float:
    """A target acceptance rate (Stan's ``adapt_delta``) strictly between 0 and 1."""
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ValueError(f"delta (target acceptance rate) must be in (0, 1), got {delta!r}")
    return float(delta)


def check_init(init: Any) -> Any:
    """Initial values: None, a non-negative radius, or a dict keyed by Stan parameter names.

    Examples
    --------
    >>> check_init(0.5)
    0.5
    >>> check_init({"sigma": 1.0})
    {'sigma': 1.0}
    """
    if init is None or isinstance(init, Mapping):
        return init
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        if not (init >= 0 and math.isfinite(init)):
            raise ValueError(f"init radius must be a non-negative number, got {init!r}")
        return float(init)
    raise ValueError(
        "init must be None, a non-negative radius, or a dict of initial values "
        f"keyed by Stan parameter names; got {type(init).__name__}"
    )
