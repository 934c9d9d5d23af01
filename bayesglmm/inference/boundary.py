"""Random-effect standard deviations estimated at their boundary 0 (lme4's "boundary
(singular) fit").

The optimisers work on Stan's unconstrained scale, where an SD is exp(u): an SD whose maximum
is at 0 is never reached, the optimiser stops where the gradient in u (proportional to sd^2)
drops below its tolerance, at some small sd. There the objective is flat in u, so its
curvature is of the order of the finite-difference noise of the (Laplace) Hessian: the Hessian
may or may not come out singular, and the Wald interval of the SD back-transforms to nonsense.
The test used here does not depend on where the optimiser stopped: the SD is at the boundary
when moving it much closer to 0 (u - 10, i.e. sd x 4.5e-5) does not make the objective worse
by more than its rounding level. Only SDs whose unconstrained SE is above 1 (or unknown) are
examined, so regular fits cost nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .optimize import JointMode, LaplaceObjective, Objective, re_pattern, unc_name

__all__ = ["boundary_sds", "boundary_message", "degenerate_with_boundary"]


def boundary_sds(bs_model: Any, mode: JointMode, params: Sequence[Any], program: Any = None,
                 *, shift: float = 10.0, rtol: float = 1e-10,
                 value: Callable[[np.ndarray], float] | None = None) -> tuple[np.ndarray, list[str]]:
    """Random-effect SDs at their lower bound 0.

    Parameters
    ----------
    bs_model
        The BridgeStan model of the fit.
    mode
        The mode (from ``find_joint_mode`` or ``find_laplace_mode``; for the latter the
        objective is the Laplace one over ``mode.extra["z_index"]``).
    params
        The fit's ``ParamName`` list (kind ``"sd"`` marks random-effect SDs).
    program
        The StanProgram, for the sparsity of the random-effect Hessian (None: probed).
    shift
        How far (on the log-SD scale) the SD is moved towards 0.
    value
        The objective of the mode as a function of the full unconstrained vector, when it is
        not the program's (Laplace) log density (the exact linear mixed model path).
    rtol
        Relative rounding level of the objective: no increase above ``rtol * max(1, |F|)``
        counts as no increase.

    Returns
    -------
    mask, names
        Boolean mask over the unconstrained coordinates (True: an SD at the boundary) and the
        user-facing names of those SDs.
    """
    u = np.asarray(mode.theta_unc, dtype=float)
    mask = np.zeros(u.size, dtype=bool)
    pos = {n: i for i, n in enumerate(bs_model.param_unc_names())}
    cand = []
    degenerate = mode.extra.get("degenerate")
    for p in params:
        i = pos.get(unc_name(p.stan))
        if p.kind != "sd" or i is None:
            continue
        unknown = mode.cov_unc is None or (degenerate is not None and degenerate[i])
        if unknown or not mode.cov_unc[i, i] < 1.0:  # se(log sd) > 1 or not available
            cand.append((i, p.user))
    if not cand:
        return mask, []
    objective = Objective(bs_model)
    z_idx = mode.extra.get("z_index")
    if value is not None:
        F = value
    elif z_idx is not None and np.size(z_idx):
        pattern = None if program is None else re_pattern(program, bs_model, z_idx)
        lap = LaplaceObjective(objective, z_idx, u.size, u, pattern)
        lap.zhat = u[lap.z].copy()

        def F(v: np.ndarray) -> float:
            return lap.value(v[lap.t])
    else:
        F = objective.value
    f0 = F(u)
    names = []
    for i, name in cand:
        v = u.copy()
        v[i] -= shift
        try:
            f1 = F(v)
        except RuntimeError:
            continue
        if np.isfinite(f0) and np.isfinite(f1) and f1 <= f0 + rtol * max(1.0, abs(f0)):
            mask[i] = True
            names.append(name)
    return mask, names


def degenerate_with_boundary(bs_model: Any, mode: JointMode, params: Sequence[Any],
                             program: Any = None, value: Callable[[np.ndarray], float] | None = None
                             ) -> tuple[np.ndarray | None, list[str]]:
    """The mode's degenerate coordinates (``mode.extra["degenerate"]``, no standard errors)
    together with the SDs at the boundary (:func:`boundary_sds`; ``value``: its objective), and
    the names of the latter."""
    degenerate = mode.extra.get("degenerate")
    at_bound, names = boundary_sds(bs_model, mode, params, program, value=value)
    if names:
        degenerate = at_bound if degenerate is None else (degenerate | at_bound)
    return degenerate, names


def boundary_message(names: Sequence[str], lost: Sequence[str]) -> str:
    """The warning for a fit with SDs ``names`` at the boundary, ``lost`` = quantities without
    standard errors."""
    return (
        "boundary (singular) fit: " + ", ".join(names) + " estimated at the boundary 0 (as lme4's "
        "'boundary (singular) fit'; the data show no variation of these random effects): no "
        "standard errors for " + ", ".join(lost or names)
    )
