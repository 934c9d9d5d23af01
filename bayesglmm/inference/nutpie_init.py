"""Initial values for ``sample(sampler="nutpie", init=...)``.

nutpie 0.16 starts every chain of a Stan program at a standard-normal point on the
unconstrained scale and offers no way to choose it; only its models built from C function
pointers take a function that returns each chain's starting point. This module gives nutpie
such a model for a compiled program:

* a tiny C adaptor (compiled once per machine with the toolchain's C++ compiler, kept in
  ``$BAYESGLMM_HOME/nutpie``) whose two functions have nutpie's C signatures and call the
  program's own BridgeStan functions ``bs_log_density_gradient`` (the log density with the
  Jacobian, constants dropped, as Stan's sampler uses) and ``bs_param_constrain`` (parameters,
  transformed parameters and generated quantities of a draw), so the gradients are exactly
  those of the Stan-library path and nothing passes through Python while sampling;
* a starting-point function with Stan's meaning of ``init`` (see :func:`initial_point_function`),
  computed by BridgeStan's ``param_initialize`` (CmdStan's rules: values given on the
  constrained scale, the others uniform on (-2, 2) on the unconstrained scale, retried until the
  log density is finite).

Programs whose generated quantities draw random numbers get their generated quantities from
the unconstrained draws afterwards (one seeded generator, as the other path does), so a seed
still reproduces the run.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.naming import bridgestan_names
from ..toolchain._common import file_lock, home_dir
from ..toolchain.buildtools import check_build_tools

__all__ = ["adaptor_library", "initial_point_function", "nutpie_model_with_init",
           "uses_rng"]

# nutpie's C signatures (nutpie 0.16, models from function pointers):
#   int logp(size_t dim, const double* x, double* grad, double* logp, const void* user_data)
#   int expand(size_t dim, size_t n_out, const double* x, double* out, const void* user_data)
# a return value > 0 is a recoverable error (the trajectory diverges), < 0 stops the chain.
_SOURCE = r"""
#include <cmath>
#include <cstddef>

extern "C" {

typedef int (*bg_log_density_gradient_t)(const void*, bool, bool, const double*, double*,
                                          double*, char**);
typedef int (*bg_param_constrain_t)(const void*, bool, bool, const double*, double*, void*,
                                     char**);
typedef void (*bg_free_error_msg_t)(char*);

struct bg_context {
  bg_log_density_gradient_t log_density_gradient;
  bg_param_constrain_t param_constrain;
  bg_free_error_msg_t free_error_msg;
  const void* model;
  void* rng;
  int include_gq;
};

int bg_nutpie_logp(std::size_t, const double* x, double* grad, double* logp,
                   const void* user_data) {
  const bg_context* c = static_cast<const bg_context*>(user_data);
  char* msg = nullptr;
  if (c->log_density_gradient(c->model, true, true, x, logp, grad, &msg) != 0) {
    if (msg != nullptr) c->free_error_msg(msg);
    return 1;
  }
  return std::isfinite(*logp) ? 0 : 2;
}

int bg_nutpie_expand(std::size_t, std::size_t, const double* x, double* out,
                     const void* user_data) {
  const bg_context* c = static_cast<const bg_context*>(user_data);
  char* msg = nullptr;
  if (c->param_constrain(c->model, true, c->include_gq != 0, x, out, c->rng, &msg) != 0) {
    if (msg != nullptr) c->free_error_msg(msg);
    return -1;
  }
  return 0;
}

}
"""

_adaptor: ctypes.CDLL | None = None


class _Context(ctypes.Structure):
    _fields_ = [("log_density_gradient", ctypes.c_void_p), ("param_constrain", ctypes.c_void_p),
                ("free_error_msg", ctypes.c_void_p), ("model", ctypes.c_void_p),
                ("rng", ctypes.c_void_p), ("include_gq", ctypes.c_int)]


def adaptor_library(verbose: bool = True) -> ctypes.CDLL:
    """The compiled C adaptor between nutpie and BridgeStan (built on first use).

    Parameters
    ----------
    verbose : bool
        Print a line while the adaptor is compiled (about a second, once per machine).

    Returns
    -------
    ctypes.CDLL
        The loaded library, with the functions ``bg_nutpie_logp`` and ``bg_nutpie_expand``.

    Raises
    ------
    bayesglmm.toolchain.MissingBuildToolsError
        No C++ compiler is found.
    RuntimeError
        The compiler failed (its message is included).
    """
    global _adaptor
    if _adaptor is not None:
        return _adaptor
    cxx = check_build_tools()["cxx"]
    key = hashlib.sha256((_SOURCE + cxx).encode()).hexdigest()[:16]
    directory = home_dir() / "nutpie"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / f"bg_nutpie_{key}.so"
    if not target.exists():
        with file_lock(directory / ".lock", "waiting for another process to build nutpie's "
                       "adaptor...", verbose=verbose):
            if not target.exists():
                if verbose:
                    print("Building the nutpie adaptor (once per machine)...", flush=True)
                src = directory / f".bg_nutpie_{key}.{os.getpid()}.cpp"
                tmp = directory / f".bg_nutpie_{key}.{os.getpid()}.so"
                src.write_text(_SOURCE)
                try:
                    out = subprocess.run([cxx, "-O2", "-shared", "-fPIC", "-o", str(tmp),
                                          str(src)], capture_output=True, text=True, check=False)
                    if out.returncode != 0:
                        raise RuntimeError("Could not compile the nutpie adaptor:\n"
                                           + (out.stderr or out.stdout))
                    os.replace(tmp, target)
                finally:
                    for p in (src, tmp):
                        p.unlink(missing_ok=True)
    _adaptor = ctypes.CDLL(str(target))
    return _adaptor


def uses_rng(code: str) -> bool:
    """Whether a Stan program calls random-number functions (``*_rng``).

    Parameters
    ----------
    code : str
        The Stan program.

    Returns
    -------
    bool

    Examples
    --------
    >>> uses_rng("generated quantities { real y = normal_rng(0, 1); }")
    True
    >>> uses_rng("model { y ~ normal(mu, sigma); }")
    False
    """
    return re.search(r"\b\w+_rng\s*\(", code) is not None


def initial_point_function(bs: Any, init: Any) -> Callable[[int], np.ndarray]:
    """The function nutpie calls with a seed to get one chain's unconstrained starting point.

    Parameters
    ----------
    bs : bridgestan.StanModel
        The program with its data.
    init : float or dict
        As Stan's ``init``: a number r starts every unconstrained coordinate uniformly in
        (-r, r) (``0``: all at zero); a dict gives values on the constrained scale keyed by
        Stan parameter names (arrays for vector and matrix parameters), the parameters it
        leaves out start uniformly in (-2, 2) on the unconstrained scale.

    Returns
    -------
    callable
        ``f(seed) -> numpy array`` of length ``bs.param_unc_num()``; the same seed gives the
        same point.

    Raises
    ------
    ValueError
        A value of ``init`` is not a parameter of the program, has the wrong shape or is
        outside the parameter's support, or no starting point with a finite log density is
        found (the message names the problem).
    """
    if isinstance(init, Mapping):
        names = {n.split(".")[0] for n in bs.param_names()}
        unknown = sorted(set(init) - names)
        if unknown:
            raise ValueError(f"init names {unknown} that are not parameters of the Stan "
                             f"program; its parameters are {sorted(names)}")
        theta = json.dumps({k: np.asarray(v, dtype=float).tolist() for k, v in init.items()})
        radius = 2.0
    else:
        theta, radius = None, float(init)

    def start(seed: int) -> np.ndarray:
        rng = bs.new_rng(int(seed) % (2**32 - 1))
        try:
            return bs.param_initialize(rng, theta, init_radius=radius, jacobian=True)
        except RuntimeError as e:
            raise ValueError(f"invalid init for sampler='nutpie'{_culprit(bs, init)}: "
                             f"{e}") from None

    start(0)  # a bad init fails here, with its message, not inside nutpie's threads
    return start


def _culprit(bs: Any, init: Any) -> str:
    """" (the value of 'sigma')" for the first value of a dict ``init`` that BridgeStan
    cannot start from on its own; "" if none is found alone."""
    if not isinstance(init, Mapping):
        return ""
    for name, value in init.items():
        one = json.dumps({name: np.asarray(value, dtype=float).tolist()})
        try:
            bs.param_initialize(bs.new_rng(1), one, init_radius=0.0, jacobian=True)
        except RuntimeError:
            return f" (the value of {name!r})"
    return ""


@dataclass(frozen=True)
class _AdaptedModel:
    """A nutpie model (nutpie's ``CompiledModel`` interface) from the C adaptor."""

    n: int
    n_out: int
    logp: Any
    expand: Any
    init: Callable[[int], np.ndarray]
    keep: tuple = field(repr=False)
    dims: dict = field(default_factory=dict)

    @property
    def n_dim(self) -> int:
        return self.n

    @property
    def shapes(self) -> dict:
        return {"theta": (self.n_out,)}

    @property
    def coords(self) -> dict:
        return {}

    def _make_model(self, init_mean: Any = None):
        from nutpie import _lib

        sizes, dims = {"quantity": self.n_out}, {"theta": ["quantity"]}
        variables = _lib.PyVariable.new_variables(["theta"], ["float64"], [(self.n_out,)], sizes,
                                                  dims)
        return _lib.PyMcModel(self.logp, self.expand, variables, self.n, sizes, {}, self.init,
                              None)

    def _make_sampler(self, settings, init_mean, cores, progress_type, store):
        from nutpie import _lib

        return _lib.PySampler.from_pymc(settings, cores, self._make_model(init_mean),
                                        progress_type, store)


def nutpie_model_with_init(bs: Any, code: str, init: Any, seed: int,
                           verbose: bool = True) -> tuple[Any, list[str]]:
    """A nutpie model of ``bs`` whose chains start where ``init`` says.

    Parameters
    ----------
    bs : bridgestan.StanModel
        The compiled program with its data (its library must be built with threads, as every
        program of the compiled-model cache is).
    code : str
        The program's Stan code (to see whether its generated quantities draw random numbers).
    init : float or dict
        Stan's ``init`` (see :func:`initial_point_function`).
    seed : int
        Seeds the random-number generator of the generated quantities.
    verbose : bool
        Print a line if the C adaptor has to be compiled.

    Returns
    -------
    model, names
        The model to pass to ``nutpie.sample`` (its draws come as one variable ``theta``) and
        the cmdstanpy names of the columns of ``theta``: parameters, transformed parameters
        and, unless the program draws random numbers, generated quantities.
    """
    from nutpie import _lib

    start = initial_point_function(bs, init)
    lib = adaptor_library(verbose)
    include_gq = not uses_rng(code)
    names = bridgestan_names(bs) if include_gq else _names_without_gq(bs)
    rng = bs.new_rng(int(seed) % (2**32 - 1))
    stanlib = bs.stanlib

    def address(fn: Any) -> int:
        return ctypes.cast(fn, ctypes.c_void_p).value

    ctx = _Context(address(stanlib.bs_log_density_gradient), address(stanlib.bs_param_constrain),
                   address(stanlib.bs_free_error_msg), bs.model, rng.ptr, int(include_gq))
    keep = (ctx, lib, bs, rng)
    ctx_ptr = ctypes.addressof(ctx)
    n = int(bs.param_unc_num())
    logp = _lib.LogpFunc(address(lib.bg_nutpie_logp), ctx_ptr, keep)
    expand = _lib.ExpandFunc(n, len(names), address(lib.bg_nutpie_expand), ctx_ptr, keep)
    return _AdaptedModel(n, len(names), logp, expand, start, keep), names


def _names_without_gq(bs: Any) -> list[str]:
    """cmdstanpy names of the parameters and transformed parameters (no generated quantities)."""
    full = bridgestan_names(bs)
    return full[: len(bs.param_names(include_tp=True, include_gq=False))]
