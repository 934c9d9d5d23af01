"""Posterior modes (MAP) for :meth:`bayesglmm.Model.optimize`: checks the arguments, finds the
joint or Laplace mode (multistart when asked), flags parameters on a boundary and builds the
Wald (or sampling) table of a :class:`~bayesglmm.results.MAPFit`."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np

from ..core.naming import bridgestan_names, resolve_params
from ..core.validate import check_init, check_int, check_seed
from ..results import MAPFit
from .boundary import boundary_message, degenerate_with_boundary
from .classic import add_marginal_df, fixed_unc_index
from .optimize import (
    Objective,
    block_indices,
    find_joint_mode,
    find_laplace_mode,
    initial_point,
    sampling_table,
    wald_table,
)

__all__ = ["fit_map"]


def fit_map(
    model: Any,
    seed: int | None = None,
    init: Any = None,
    verbose: bool = True,
    laplace: bool = True,
    num_estimate: int = 1,
    se_method: str = "wald",
    marginal: str = "none",
    exact: bool = True,
) -> MAPFit:
    """The posterior mode of ``model`` with its standard errors and intervals.

    Parameters
    ----------
    model : Model
        The model to fit (compiled, or fetched from the cache, after the arguments are checked).
    seed, init, verbose, laplace, num_estimate, se_method, marginal, exact
        As in :meth:`bayesglmm.Model.optimize`.

    Returns
    -------
    MAPFit

    Examples
    --------
    >>> fit = fit_map(model, seed=1)  # doctest: +SKIP
    """
    if not isinstance(laplace, bool):
        raise TypeError(f"laplace must be True or False, not {laplace!r}")
    seed = check_seed(seed)
    init = check_init(init)
    num_estimate = check_int("num_estimate", num_estimate, 1)
    if se_method not in ("wald", "sampling", "none"):
        raise ValueError(f"se_method must be 'wald', 'sampling' or 'none', not {se_method!r}")
    if marginal not in ("none", "auto"):
        raise ValueError(f"marginal must be 'none' or 'auto', not {marginal!r}")
    t0 = time.perf_counter()
    program = model.program
    lmm = None
    if exact and laplace and init is None:
        from .lmm_select import exact_lmm

        lmm = exact_lmm(model, verbose)
    # compiles (or loads from the cache) after the checks
    bs = lmm.bs if lmm is not None else model.bridgestan_model(verbose)
    names = bridgestan_names(bs)
    params = resolve_params(program, names)
    u0 = initial_point(bs, init, seed)
    z_idx = block_indices(bs, getattr(program, "re_blocks", ()) or ())
    if marginal == "auto":
        z_idx = np.union1d(z_idx, fixed_unc_index(bs, params)[1])
    laplace = laplace and z_idx.size > 0
    if lmm is not None and laplace:  # the (RE)ML optimum, in closed form
        mode = lmm.fit(reml=marginal == "auto")
    else:
        mode = _best_mode(bs, program, u0, z_idx, laplace, num_estimate,
                          warm_start=init is None, seed=seed)
    pos = {n: i for i, n in enumerate(names)}
    index = [pos[p.stan] for p in params]
    degenerate, bound_names = degenerate_with_boundary(
        bs, mode, params, program, None if lmm is None else lmm.boundary_value(mode))
    # an SD at 0: no SE, and the Laplace log ML is not defined
    log_ml = math.nan if bound_names else mode.log_ml
    s_seed = 1 if seed is None else seed
    if se_method == "sampling":
        est, se, lo, hi = sampling_table(bs, mode.theta_unc, mode.cov_unc, index,
                                         seed=s_seed, degenerate=degenerate)
    else:
        est, se, lo, hi = wald_table(
            bs, mode.theta_unc, None if se_method == "none" else mode.cov_unc, index,
            [p.kind for p in params], seed=s_seed, degenerate=degenerate,
        )
    lost = [p.user for p, v in zip(params, se) if p.kind != "re" and not np.isfinite(v)]
    if bound_names:
        warnings.warn(boundary_message(bound_names, lost if se_method != "none" else [])
                      + "; the log marginal likelihood is not available",
                      RuntimeWarning, stacklevel=3)
    elif degenerate is not None and degenerate.any() and se_method != "none":
        warnings.warn(
            "the Hessian at the mode is not positive definite (a parameter on a boundary, "
            "e.g. a random-effect SD near 0): no standard errors for "
            + (", ".join(lost) or "some quantities")
            + "; the log marginal likelihood is not available",
            RuntimeWarning, stacklevel=3,
        )
    fit = MAPFit(
        model, params, est, se, lo, hi, objective=mode.objective, log_ml=log_ml,
        converged=mode.converged, message=mode.message, theta_unc=mode.theta_unc,
        cov_unc=mode.cov_unc, laplace=laplace, elapsed=time.perf_counter() - t0,
    )
    if marginal == "auto" and se_method == "wald":
        add_marginal_df(fit, bs, mode, z_idx, index, lmm)
    return fit


def _best_mode(bs: Any, program: Any, u0: np.ndarray, z_idx: np.ndarray, laplace: bool,
               num_estimate: int, *, warm_start: bool, seed: int | None) -> Any:
    """The best of ``num_estimate`` optimisations: the first from ``u0``, the others from
    ``u0`` jittered by N(0, 0.5^2) on the unconstrained scale; starts outside the support are
    skipped unless none succeeds."""
    rng = np.random.default_rng(seed)
    mode = None
    for k in range(num_estimate):
        start = u0 if k == 0 else u0 + rng.normal(0.0, 0.5, size=u0.size)
        try:
            if laplace:
                cand = find_laplace_mode(Objective(bs), z_idx, start, program=program,
                                         warm_start=k == 0 and warm_start)
            else:
                cand = find_joint_mode(Objective(bs), start)
        except ValueError:
            if k == 0 or (k == num_estimate - 1 and mode is None):
                raise
            continue  # a jittered start outside the support: skip it
        if mode is None or (cand.objective < mode.objective and np.isfinite(cand.objective)):
            mode = cand
    return mode
