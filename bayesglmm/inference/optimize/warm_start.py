"""Warm start of the Laplace optimiser: the GLM with the random effects at 0, group SDs at the
family's ``re_scale``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import optimize as sopt

from .laplace import LaplaceObjective
from .objective import Objective

__all__ = ['WARM_KINDS', 'glm_warm_start']


WARM_KINDS = ("Intercept", "Intercept_c", "b", "cutpoints", "family")


def glm_warm_start(objective: Objective, lap: LaplaceObjective, u0: np.ndarray,
                program: Any) -> np.ndarray:
    """A starting point of the outer parameters near the optimum (Laplace optimisation from
    u = 0 spends most of its iterations moving the intercept, whose scale the SDs absorb
    meanwhile): the fixed effects, cutpoints and family parameters maximise the likelihood with
    the random effects at 0 (a GLM fit: exact gradients, no inner solves); the group-level SDs
    start at the family's ``re_scale`` parameter (e.g. sigma: lme4's relative covariance factor
    1), else at 1; correlations at 0. Returns ``u0[lap.t]`` unchanged when that is not better.

    Random effects at 0 means, for a hierarchically centred term (``z_k`` holds each group's own
    coefficients mu + b_j, :mod:`bayesglmm.reparam`), coefficients equal to the population ones
    they scatter around: the GLM's coefficients are then tied to those entries of ``z_k``, and
    ``lap.zhat`` starts there. The start is then the non-centred one: the Laplace objective of
    the outer parameters is the same function in both coordinates (z_k is an affine map of the
    standardised effects for fixed outer parameters), so are the optimiser's steps."""
    theta0 = np.asarray(u0, dtype=float)[lap.t].copy()
    params = getattr(program, "params", ())
    spec = getattr(program, "spec", None)
    heads = {p.stan.split("[")[0] for p in params if p.kind in WARM_KINDS}
    names = objective.bs_model.param_unc_names()
    in_t = np.zeros(lap.n, dtype=bool)
    in_t[lap.t] = True
    sub = np.array([i for i in range(lap.n) if in_t[i] and names[i].split(".")[0] in heads],
                   dtype=int)
    if sub.size == 0:
        return theta0
    tied = _centred_ties(spec, names, sub)
    if tied is None:
        return theta0
    src, dst = tied  # u[src] = u[sub[dst]]: centred coefficients at their population values
    u = np.asarray(u0, dtype=float).copy()
    u[lap.z] = 0.0

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        v = u.copy()
        v[sub] = x
        v[src] = x[dst]
        try:
            f, g = objective.value_grad(v)
        except RuntimeError:
            return np.inf, np.zeros(x.size)
        if not np.isfinite(f):
            return np.inf, np.zeros(x.size)
        return f, g[sub] + np.bincount(dst, g[src], minlength=sub.size)

    if not np.isfinite(fg(u[sub])[0]):
        return theta0
    # BFGS: a few dozen cheap iterations, and its per-iteration overhead (numpy) stays small
    # where L-BFGS-B's (LAPACK on 2m x 2m matrices) costs ms on a loaded machine
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sopt.minimize(fg, u[sub], jac=True, method="BFGS",
                            options={"maxiter": 200, "gtol": 1e-6})
    if not np.all(np.isfinite(res.x)):
        return theta0
    w = np.asarray(u0, dtype=float).copy()
    w[lap.z] = 0.0
    w[sub] = res.x
    w[src] = res.x[dst]
    family = getattr(spec, "family", None)
    scale = getattr(family, "re_scale", None)
    if scale in names and in_t[names.index(scale)]:
        # the family parameter has lower bound 0, as the SDs: u = log(value) for both
        sds = {f"sd_{g.k}" for g in getattr(spec, "groups", ())}
        for i in lap.t:
            if names[i].split(".")[0] in sds:
                w[i] = w[names.index(scale)]
    theta = w[lap.t]
    F0 = lap.value(theta0)
    z0 = lap.zhat.copy()
    lap.zhat = w[lap.z]
    F1 = lap.value(theta)
    if np.isfinite(F1) and (not np.isfinite(F0) or F1 < F0):
        return theta
    lap.zhat = z0
    return theta0


def _centred_ties(spec: Any, names: list[str], sub: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(src, dst): the unconstrained positions of the centred terms' coefficients that have a
    population-level mean (``GroupTerm.means``), and the position in ``sub`` of that mean
    (the intercept or beta[j]); empty arrays when no term is centred. None when a mean is not
    among the warm-started parameters (e.g. a held coefficient)."""
    pos = {nm: i for i, nm in enumerate(names)}
    in_sub = {int(i): a for a, i in enumerate(sub)}
    icpt = "Intercept_c" if getattr(spec, "centred", False) else "Intercept"
    src: list[int] = []
    dst: list[int] = []
    for g in getattr(spec, "groups", ()):
        for m, code in enumerate(getattr(g, "means", ()) or ()):
            if code == 0:
                continue
            mean = pos.get(icpt if code == 1 else f"beta.{code - 1}")
            if mean not in in_sub:
                return None
            for j in range(1, g.n_groups + 1):
                zi = pos.get(f"z_{g.k}.{m + 1}.{j}")
                if zi is None:
                    return None
                src.append(zi)
                dst.append(in_sub[mean])
    return np.asarray(src, dtype=int), np.asarray(dst, dtype=int)
