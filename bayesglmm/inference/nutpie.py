"""NUTS through nutpie on the BridgeStan library of the compiled program (``sampler="nutpie"``).

nutpie (PyPI ``nutpie``, Rust) adapts its diagonal mass matrix from draws and gradients and
ends warm-up sooner than Stan's sampler. It samples a Stan program through its BridgeStan
shared library; every program here is already linked into one (``<name>_model.so`` in the
compiled-model cache, built with threads on, as nutpie needs: it calls the library from one
thread per chain), so nothing is compiled a second time.

The reported quantities (parameters, transformed parameters, generated quantities such as
``Intercept`` and ``log_lik``) of each draw are computed by BridgeStan's ``param_constrain``
with transformed parameters and generated quantities included (the same ``write_array`` code
that CmdStan runs after each draw), with a random-number generator per chain seeded from
``seed``: nutpie does this as it samples, in the chains' threads. Its raw trace (Arrow record
batches) is read directly into arrays (:mod:`bayesglmm.inference.nutpie_trace`; nutpie's own
conversion to arviz took a sixth to a fifth of a whole ``sample()`` call on cbpp), flattened to
CmdStan's element names, so both samplers report the same quantities under the same names.
nutpie also returns
the draws on the unconstrained scale (kept for bridge sampling); :func:`constrain_draws`
recomputes the quantities from them (used for programs whose outputs nutpie names in its own
way, such as tuples).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.display import show_progress
from ..core.naming import bridgestan_names
from .nutpie_trace import NutpieTrace, arrow_batches, read_trace

__all__ = ["NUTPIE_STATS", "SUPPORTED", "constrain_draws", "defers_log_lik", "import_nutpie",
           "run_nutpie", "sample_nutpie"]

# nutpie versions whose loading path (nutpie._lib.StanLibrary + CompiledStanModel) is used here.
SUPPORTED = ((0, 16), (0, 17))  # >= 0.16, < 0.17
INSTALL_HINT = "pip install 'bayesglmm[nutpie]'  (or: pip install 'nutpie>=0.16,<0.17')"

# nutpie sample_stats name -> the arviz name used by every MCMCFit
NUTPIE_STATS = {
    "logp": "lp",
    "mean_tree_accept": "acceptance_rate",
    "step_size": "step_size",
    "depth": "tree_depth",
    "n_steps": "n_steps",
    "diverging": "diverging",
    "energy": "energy",
}

_libraries: dict[str, Any] = {}  # .so path -> nutpie StanLibrary (loaded once per process)


def _version(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def import_nutpie():
    """The ``nutpie`` module, or an ImportError that says how to install a supported version."""
    try:
        import nutpie
    except ImportError as e:
        raise ImportError(
            f"sample(sampler='nutpie') needs the optional package nutpie: {INSTALL_HINT}"
        ) from e
    version = getattr(nutpie, "__version__", "0")
    lo, hi = SUPPORTED
    if not lo <= _version(version) < hi:
        raise ImportError(
            f"sample(sampler='nutpie') supports nutpie 0.16.x (it loads the compiled BridgeStan "
            f"library through nutpie 0.16's interface); nutpie {version} is installed: "
            f"{INSTALL_HINT}"
        )
    return nutpie


def _library(so_file: str):
    """nutpie's handle on a compiled BridgeStan library (one per path and process)."""
    from nutpie import _lib

    if so_file not in _libraries:
        _libraries[so_file] = _lib.StanLibrary(so_file)
    return _libraries[so_file]


def nutpie_model(compiled: Any, data: Mapping[str, Any], seed: int):
    """A nutpie ``CompiledStanModel`` with data on ``compiled``'s cached BridgeStan library."""
    from nutpie.compile_stan import CompiledStanModel

    compiled.check_permissions(compiled.so_file)
    library = _library(str(compiled.so_file))
    model = CompiledStanModel(code=compiled.code, library=library, dims={}, _coords={},
                              model_name=compiled.name, model=None, data=None)
    return model.with_data(seed=seed, **{k: _plain(v) for k, v in data.items()})


def _plain(v: Any) -> Any:
    """numpy scalars -> Python numbers (stanio writes arrays and Python scalars)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def run_nutpie(
    compiled: Any,
    data: Mapping[str, Any],
    *,
    chains: int,
    warmup: int,
    sampling: int,
    thin: int,
    seed: int,
    delta: float,
    max_treedepth: int,
    low_rank: bool = False,
    verbose: bool = True,
    init: Any = None,
    bs: Any = None,
    save_warmup: bool = False,
    nutpie_settings: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[np.ndarray, list[str]]]:
    """Run nutpie on ``compiled``'s BridgeStan library.

    ``init`` (None, a radius or a dict, as Stan's) chooses the chains' starting points; it
    needs ``bs``, the program's ``bridgestan.StanModel`` with ``data``
    (:mod:`bayesglmm.inference.nutpie_init`). None: nutpie's own starting points (standard
    normal on the unconstrained scale). ``save_warmup=True`` also returns the warm-up sampler
    statistics (under the key ``"warmup"`` of the statistics, a dict of (chain, draw) arrays).
    ``nutpie_settings``: further settings of nutpie's sampler (``nutpie.sample``'s keyword
    arguments, e.g. ``{"step_size_adapt_method": "adam"}``; bench/bench_nutpie.py compares
    them).

    Returns ``(unc, stats, (values, names))``: the kept draws on the unconstrained scale,
    shape (chain, draw, D), the sampler statistics under arviz's names
    (:data:`NUTPIE_STATS`), each (chain, draw), and the reported quantities with their
    CmdStan names (:func:`flat_posterior`). Every ``thin``-th of the ``sampling`` draws is
    kept, as Stan does.
    """
    trace = _run(compiled, data, chains=chains, warmup=warmup, sampling=sampling, thin=thin,
                 seed=seed, delta=delta, max_treedepth=max_treedepth, low_rank=low_rank,
                 verbose=verbose, init=init, bs=bs, save_warmup=save_warmup,
                 nutpie_settings=nutpie_settings)
    return trace.unconstrained, trace.stats, (trace.values, trace.names)


def _run(compiled: Any, data: Mapping[str, Any], *, chains: int, warmup: int, sampling: int,
         thin: int, seed: int, delta: float, max_treedepth: int, low_rank: bool = False,
         verbose: bool = True, init: Any = None, bs: Any = None,
         save_warmup: bool = False, nutpie_settings: Mapping[str, Any] | None = None
         ) -> NutpieTrace:
    """:func:`run_nutpie`'s run, as the trace read from nutpie (its names those of the
    program's outputs, its statistics converted; the warm-up statistics under ``"warmup"``)."""
    nutpie = import_nutpie()
    if init is None:
        model, flat_names = nutpie_model(compiled, data, seed), None
    else:
        from .nutpie_init import nutpie_model_with_init

        model, flat_names = nutpie_model_with_init(bs, compiled.code, init, seed, verbose)
    cores = max(1, min(chains, os.cpu_count() or 1))
    raw = nutpie.sample(
        model, draws=sampling, tune=warmup, chains=chains, cores=cores, seed=seed,
        save_warmup=save_warmup, progress_bar=show_progress(verbose),
        low_rank_modified_mass_matrix=bool(low_rank), store_unconstrained=True,
        target_accept=float(delta), maxdepth=int(max_treedepth), return_raw_trace=True,
        **dict(nutpie_settings or {}),
    )
    trace = read_trace(arrow_batches(raw), NUTPIE_STATS, thin, warmup_stats=save_warmup)
    stats = trace.stats
    for k in ("tree_depth", "n_steps"):
        if k in stats:
            stats[k] = stats[k].astype(np.int64)
    if "diverging" in stats:
        stats["diverging"] = stats["diverging"].astype(float)
    if save_warmup:
        stats["warmup"] = trace.warmup_stats
    if flat_names is not None:
        trace.names = flat_names
    return trace


def constrain_draws(bs: Any, unc: np.ndarray, seed: int) -> tuple[np.ndarray, list[str]]:
    """Parameters, transformed parameters and generated quantities of every draw.

    ``bs`` is the program's ``bridgestan.StanModel``; ``unc`` (chain, draw, D) unconstrained
    draws. Returns ``(values, names)``: values (chain, draw, K) and the K output names in
    cmdstanpy's spelling (``b[1]``, ``L[1,2]``). Generated quantities that draw random numbers
    use one generator seeded with ``seed``, advanced chain by chain.
    """
    names = bridgestan_names(bs)
    C, S, _ = unc.shape
    out = np.empty((C, S, len(names)))
    rng = bs.new_rng(seed)
    for c in range(C):
        for s in range(S):
            out[c, s] = bs.param_constrain(np.ascontiguousarray(unc[c, s]), include_tp=True,
                                           include_gq=True, rng=rng)
    return out, names


def defers_log_lik(data: Mapping[str, Any]) -> bool:
    """Whether nutpie runs a program with ``data`` without its pointwise log-likelihood.

    Generated programs compute ``log_lik`` only when their data flag ``compute_log_lik`` is 1
    (:mod:`bayesglmm.inference.loglik`). With nutpie the flag is set to 0 for the run: nutpie
    computes the generated quantities of every draw, warm-up included, as it samples, and the
    N values of ``log_lik`` made up most of that work (on debate a draw's generated
    quantities took 7.3 us with its 300 values and 1.5 us without; a gradient 11 us; see
    bench/results/nutpie_profile.json for instruction counts). The fit then computes ``log_lik``
    from the unconstrained draws when ``loo()``, ``waic()``, ``log_lik()`` or ``idata`` ask
    for it, by the same generated-quantities code at the same points: the same numbers.

    Parameters
    ----------
    data : mapping
        The program's Stan data.

    Returns
    -------
    bool
        True when ``data`` has ``compute_log_lik`` = 1; False for programs without the flag
        (``from_stan``) and for data that already leave ``log_lik`` out (large data).
    """
    return int(data.get("compute_log_lik", 0)) == 1


def sample_nutpie(compiled: Any, bs: Any, program: Any, data: Any = None, **settings: Any):
    """Sample ``program`` (code generation's program or ``from_stan``'s) with nutpie.

    ``compiled``: the CompiledModel that runs (``program``'s own or the family's generic
    program); ``bs``: its BridgeStan model; ``data``: its Stan data (default
    ``program.data``); ``settings``:
    the keyword arguments of :func:`run_nutpie`. Returns ``(params, draws, stats, log_lik,
    unc)`` as the CmdStan path gives them (see
    :func:`bayesglmm.inference.sampling.split_columns`) plus the unconstrained draws.
    ``log_lik`` is None when :func:`defers_log_lik` (the fit computes it on demand).
    """
    from ..core.naming import log_lik_names, resolve_params
    from .sampling import split_columns

    data = program.data if data is None else data
    expected = bridgestan_names(bs)
    if defers_log_lik(data):  # run without log_lik; the fit computes it when asked
        data = {**data, "compute_log_lik": 0}
        bs = compiled.bridgestan_model(data) if settings.get("init") is not None else bs
        dropped = set(log_lik_names(expected))
        expected = [n for n in expected if n not in dropped]
    trace = _run(compiled, data, bs=bs, **settings)
    unc, stats, names = trace.unconstrained, trace.stats, trace.names
    if sorted(names) != sorted(expected):  # e.g. tuples, which nutpie names its own way
        values, names = constrain_draws(bs, unc, settings["seed"])
        params = resolve_params(program, names)
        draws, _, log_lik = split_columns(values, names, params)
        return params, draws, stats, log_lik, unc
    # the columns picked from the trace's blocks: no copy of every output first
    params = resolve_params(program, names)
    draws = trace.take([p.stan for p in params])
    ll = log_lik_names(names)
    return params, draws, stats, trace.take(ll) if ll else None, unc
