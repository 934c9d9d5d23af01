"""A direct call of BridgeStan's C function ``bs_log_density_gradient``.

The mode-finding fits evaluate the gradient thousands of times; BridgeStan's Python method
checks and converts its arguments on every call (about a third of the time of a call for a
model of a few hundred observations). :func:`gradient_function` binds the same C function once,
with plain pointer arguments. Any error is re-raised through BridgeStan's own method, so the
messages are BridgeStan's.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["gradient_function"]

_ARGTYPES = [ctypes.c_void_p, ctypes.c_bool, ctypes.c_bool, ctypes.c_void_p,
             ctypes.POINTER(ctypes.c_double), ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p)]


def gradient_function(bs_model: Any, propto: bool = False,
                      jacobian: bool = False) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """u -> (log density, gradient) of a ``bridgestan.StanModel`` (a new gradient array per
    call). Objects that are not BridgeStan models get their own ``log_density_gradient``."""
    lib = getattr(bs_model, "stanlib", None)
    handle = getattr(bs_model, "model", None)
    if not isinstance(lib, ctypes.CDLL) or handle is None:
        def slow(u: np.ndarray) -> tuple[float, np.ndarray]:
            return bs_model.log_density_gradient(u, propto=propto, jacobian=jacobian)

        return slow
    fn = lib["bs_log_density_gradient"]  # a new function object: BridgeStan's keeps its argtypes
    fn.restype = ctypes.c_int
    fn.argtypes = _ARGTYPES
    n = int(bs_model.param_unc_num())

    def fast(u: np.ndarray) -> tuple[float, np.ndarray]:
        u = np.ascontiguousarray(u, dtype=np.float64)
        if u.shape != (n,):
            return bs_model.log_density_gradient(u, propto=propto, jacobian=jacobian)
        g = np.empty(n)
        lp, err = ctypes.c_double(), ctypes.c_char_p()
        if fn(handle, propto, jacobian, u.ctypes.data, ctypes.byref(lp), g.ctypes.data,
              ctypes.byref(err)):
            # an exception in the model: let BridgeStan raise it with its message (and free it)
            if err:
                lib.bs_free_error_msg(err)
            return bs_model.log_density_gradient(u, propto=propto, jacobian=jacobian)
        return lp.value, g

    return fast
