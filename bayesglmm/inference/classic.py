"""Classical (flat-prior) estimation on the generated program.

* gaussian models: REML, i.e. the fixed effects are integrated out together with the random
  effects. The joint density is Gaussian in (fixed effects, random effects) given the variance
  parameters, so the Laplace approximation of :class:`LaplaceObjective` is exact and its
  objective is minus lme4's REML log-likelihood. Fixed effects = conditional modes (GLS),
  their covariance C(theta) = the fixed-effect block of the inverse joint Hessian
  ((X' V^-1 X)^-1, as lme4). ``method="ML"``: the same with only the random effects integrated.
* other families: ML with the random effects integrated out by the Laplace approximation
  (lme4::glmer nAGQ = 1 / glmmTMB); SEs from the observed information of all outer
  parameters.
* log-likelihood, AIC, BIC and deviance always from an ML fit (lme4 convention: k = fixed
  effects + variance parameters).
* degrees of freedom: Satterthwaite (lmerTest) for gaussian mixed models, N - rank(X) without
  random effects, infinity (z tests) otherwise.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np

from ..core.naming import bracket_name, resolve_params
from ..design_csr import dense_design
from .boundary import boundary_message, degenerate_with_boundary
from .optimize import (
    JointMode,
    LaplaceObjective,
    Objective,
    block_indices,
    constrain_fn,
    cov_block,
    fd_hess,
    find_joint_mode,
    find_laplace_mode,
    hessian_inverse,
    initial_point,
    unc_name,
    wald_table,
)
from .satterthwaite import Satterthwaite

__all__ = ["ClassicEstimate", "check_classic_args", "fit_classic", "fixed_unc_index", "reml_mode"]

METHODS = ("REML", "ML")


def fixed_unc_index(bs_model: Any, params: list) -> tuple[list, np.ndarray]:
    """(fixed-effect params (kinds Intercept / Intercept_c / b, as sampled), their positions in
    the unconstrained vector). Fixed effects are unconstrained, so u = value there."""
    pos = {n: i for i, n in enumerate(bs_model.param_unc_names())}
    fixed = [p for p in params if p.kind in ("Intercept", "Intercept_c", "b") and unc_name(p.stan) in pos]
    return fixed, np.array([pos[unc_name(p.stan)] for p in fixed], dtype=int)


def reml_mode(objective: Objective, z_idx: np.ndarray, f_idx: np.ndarray, u0: np.ndarray,
              program: Any = None) -> JointMode:
    """Laplace mode with the fixed effects ``f_idx`` integrated out together with ``z_idx``
    (``optimize(marginal="auto")``; exact REML for gaussian models with flat priors)."""
    integ = np.union1d(np.asarray(z_idx, dtype=int), np.asarray(f_idx, dtype=int))
    return find_laplace_mode(objective, integ, u0, program=program)


class ClassicEstimate:
    """Everything :class:`bayesglmm.results_classic.ClassicFit` needs (plain numbers)."""

    def __init__(self, **kw: Any):
        self.__dict__.update(kw)


def _fixed_block(fac: Any, fpos: np.ndarray) -> np.ndarray:
    """The fixed-effect block (positions ``fpos``) of H^-1 from the factorisation ``fac`` of H,
    solving for those columns only."""
    E = np.zeros((fac.q, fpos.size))
    E[fpos, np.arange(fpos.size)] = 1.0
    return fac.solve_many(E)[fpos]


def _conditional_cov(objective: Objective, integ: np.ndarray, u: np.ndarray, fpos: np.ndarray,
                     h: float = 1e-4, quadratic: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, LaplaceObjective]:
    """C(theta^) (fixed-effect block of the inverse joint Hessian over ``integ``) and its
    central-difference derivatives w.r.t. the outer (variance) parameters. ``quadratic``: the
    family's ``Family.quadratic`` (one H per inner solve)."""
    lap = LaplaceObjective(objective, integ, u.size, u, quadratic=quadratic)
    theta = u[lap.t]
    z0 = u[lap.z]

    def C(th: np.ndarray) -> np.ndarray:
        _z, _f, fac = lap.inner(th, z0)
        return _fixed_block(fac, fpos)

    C0 = C(theta)
    dC = np.empty((theta.size, fpos.size, fpos.size))
    for k in range(theta.size):
        e = np.zeros(theta.size)
        e[k] = h
        dC[k] = (C(theta + e) - C(theta - e)) / (2 * h)
    return C0, dC, lap


def check_classic_args(model: Any, method: Any) -> str | None:
    """The estimation method of ``Model.classic()`` after checking that the model can be fitted
    classically (a formula model with the flat prior): ``"REML"``, ``"ML"`` or None (the
    family's default)."""
    prior = getattr(model.spec, "prior", None)
    pname = getattr(prior, "name", None)
    if model.spec is None or prior is None or prior.kind.proper:
        raise ValueError(
            "classic() needs a model with the flat prior (prior=prior_flat(), the default); "
            f"this model has prior {pname or 'unknown'!r}: use optimize() or sample()"
        )
    if method is not None and (not isinstance(method, str) or method.upper() not in METHODS):
        raise ValueError(f"method must be 'REML' or 'ML', not {method!r}")
    return None if method is None else method.upper()


def fit_classic(model: Any, method: str | None = None, df_method: str = "auto",
                verbose: bool = False, exact: bool = True) -> ClassicEstimate:
    """Fit ``model`` (flat prior) by REML (gaussian, default) or ML (see module docstring).
    ``exact``: normal-errors mixed models use the closed-form (RE)ML of
    :mod:`bayesglmm.inference.lmm` (False: the generic Laplace path, the same numbers)."""
    from .lmm_select import exact_lmm

    spec = model.spec
    t0 = time.perf_counter()
    family = spec.family.name
    gaussian = spec.family.reml  # normal errors, identity link: REML and t/F tests
    if method is None:
        method = "REML" if gaussian else "ML"
    if method not in METHODS:
        raise ValueError(f"method must be 'REML' or 'ML', not {method!r}")
    if method == "REML" and not gaussian:
        raise ValueError(
            f"method='REML' is only available for the gaussian family (this model is {family}); "
            "use method='ML'"
        )
    if df_method not in ("auto", "satterthwaite", "residual", "none"):
        raise ValueError(
            f"df_method must be 'auto', 'satterthwaite', 'residual' or 'none', not {df_method!r}"
        )
    lmm = exact_lmm(model, verbose) if exact else None
    bs = lmm.bs if lmm is not None else model.bridgestan_model(verbose)
    obj = Objective(bs)
    u0 = initial_point(bs, None)
    z_idx = block_indices(bs, getattr(model.program, "re_blocks", ()) or ())
    has_re = z_idx.size > 0
    names = [bracket_name(n) for n in bs.param_names(include_tp=True, include_gq=True)]
    params = resolve_params(model.program, names)
    fixed, f_idx = fixed_unc_index(bs, params)

    # ML fit (always: logLik / AIC / BIC)
    if lmm is not None:
        ml = lmm.fit(reml=False)
    else:
        ml = (find_laplace_mode(obj, z_idx, u0, program=model.program, warm_start=True)
              if has_re else find_joint_mode(obj, u0))
    if method == "REML":
        mode = (lmm.fit(reml=True, u_start=ml.theta_unc) if lmm is not None
                else reml_mode(obj, z_idx, f_idx, ml.theta_unc, model.program))
        reml_loglik = -mode.objective
    else:
        mode = ml
        reml_loglik = math.nan
    u = mode.theta_unc
    n_obs = int(spec.n_obs)
    k_par = u.size - z_idx.size  # fixed effects + variance parameters
    loglik = -ml.objective

    pos = {n: i for i, n in enumerate(names)}
    index = [pos[p.stan] for p in params]
    degenerate, bound_names = degenerate_with_boundary(
        bs, mode, params, model.program, None if lmm is None else lmm.boundary_value(mode))
    est, se, lo, hi = wald_table(bs, u, mode.cov_unc, index, [p.kind for p in params],
                                 degenerate=degenerate)
    lost = [p.user for p, v in zip(params, se) if p.kind != "re" and not np.isfinite(v)]
    if bound_names:
        warnings.warn(boundary_message(bound_names, lost), RuntimeWarning, stacklevel=3)
    elif degenerate is not None and np.any(degenerate):
        warnings.warn(
            "the information matrix is singular at the estimate (a variance parameter on the "
            "boundary, e.g. a random-effect SD near 0, as lme4's 'boundary (singular) fit'): "
            "no standard errors for " + (", ".join(lost) or "some quantities"),
            RuntimeWarning, stacklevel=3,
        )
    # fixed effects: value (unconstrained = constrained), covariance
    beta = u[f_idx].copy()
    sat = None
    if gaussian and lmm is not None:
        C, dC = lmm.conditional_cov(u)
        A = hessian_inverse(mode.hessian if method == "REML" else lmm.ml_profile_hessian(u))[0]
        sat = Satterthwaite(C, dC, A)
    elif gaussian:
        integ = np.union1d(z_idx, f_idx)
        fpos = np.searchsorted(integ, f_idx)
        C, dC, lap = _conditional_cov(obj, integ, u, fpos, quadratic=spec.family.quadratic)
        if has_re:
            if method == "REML":
                A = hessian_inverse(mode.hessian)[0]
            else:  # lmerTest with REML = FALSE: Hessian of the ML deviance, beta profiled out
                theta = u[lap.t]
                z0 = u[lap.z]

                def prof(th: np.ndarray) -> float:
                    _z, f, fac = lap.inner(th, z0)
                    Cf = _fixed_block(fac, fpos)
                    return f + fac.half_logdet() + 0.5 * np.linalg.slogdet(Cf)[1]

                A = hessian_inverse(fd_hess(prof, theta))[0]
            sat = Satterthwaite(C, dC, A)
    else:
        cov = mode.cov_unc
        C = cov_block(cov, f_idx) if cov is not None else np.full((f_idx.size,) * 2, np.nan)
    fse = np.sqrt(np.maximum(np.diag(C), 0.0))
    if not gaussian or df_method == "none":
        df = np.full(f_idx.size, np.inf)
    elif has_re and df_method in ("auto", "satterthwaite"):
        df = np.array([sat.df(np.eye(f_idx.size)[i]) for i in range(f_idx.size)])
    else:  # residual df: the rank of the design (an SVD of N x K, only when used)
        X = dense_design(model.program.data)  # either form of the design (design_csr.py)
        rank = int(np.linalg.matrix_rank(X)) if X.size else 0
        rank += int(spec.family.has_intercept and any(p.kind == "Intercept" for p in fixed))
        df = np.full(f_idx.size, float(n_obs - rank))
    return ClassicEstimate(
        params=params, estimate=est, se=se, lower=lo, upper=hi, fixed=fixed, beta=beta,
        vcov=C, fixed_se=fse, df=df, satterthwaite=sat, method=method, gaussian=gaussian,
        has_re=has_re, loglik=loglik, reml_loglik=reml_loglik, n_par=k_par, n_obs=n_obs,
        objective=mode.objective, converged=mode.converged and ml.converged,
        message=mode.message or ml.message, theta_unc=u, cov_unc=mode.cov_unc,
        degenerate=degenerate, elapsed=time.perf_counter() - t0,
    )


def marginal_df(bs_model: Any, mode: JointMode, integ: np.ndarray, params: list,
                index: list[int], lmm: Any = None) -> dict[str, float]:
    """Satterthwaite df of the fixed effects after ``optimize(marginal="auto")``:
    C(theta) = fixed-effect block of the inverse Hessian over the integrated coordinates,
    A = inverse Hessian of the Laplace objective in the outer parameters. Returns
    {user name: df} for the fixed effects (a derived ``Intercept`` through its linear map)."""
    fixed, f_idx = fixed_unc_index(bs_model, params)
    if f_idx.size == 0 or mode.hessian.size == 0:
        return {}
    if lmm is not None:  # the exact path (bayesglmm.inference.lmm)
        C, dC = lmm.conditional_cov(mode.theta_unc)
    else:
        fpos = np.searchsorted(integ, f_idx)
        C, dC, _ = _conditional_cov(Objective(bs_model), integ, mode.theta_unc, fpos)
    sat = Satterthwaite(C, dC, hessian_inverse(mode.hessian)[0])
    constrain = constrain_fn(bs_model, 1)
    u = mode.theta_unc
    base = constrain(u)
    out: dict[str, float] = {}
    rows = [(p, i) for p, i in zip(params, index) if p.kind in ("Intercept", "Intercept_c", "b")]
    J = np.empty((len(rows), f_idx.size))
    for k, i in enumerate(f_idx):  # the fixed effects enter linearly
        e = np.zeros(u.size)
        e[i] = 1.0
        J[:, k] = constrain(u + e)[[i_ for _, i_ in rows]] - base[[i_ for _, i_ in rows]]
    for (p, _), l in zip(rows, J):
        out[p.user] = sat.df(l)
    return out


def add_marginal_df(fit: Any, bs_model: Any, mode: JointMode, integ: np.ndarray,
                    index: list[int], lmm: Any = None) -> None:
    """Add the ``df`` column (Satterthwaite, fixed effects; NaN elsewhere) to a MAPFit from
    ``optimize(marginal="auto")`` and turn the fixed effects' Wald intervals into t intervals."""
    from scipy import stats

    dfs = marginal_df(bs_model, mode, integ, fit._params, index, lmm)
    tab = fit._table
    tab["df"] = np.nan
    for name, df in dfs.items():
        est, se = tab.loc[name, "estimate"], tab.loc[name, "se"]
        q = stats.t.ppf(0.975, df) if np.isfinite(df) else stats.norm.ppf(0.975)
        tab.loc[name, ["df", "lower", "upper"]] = [df, est - q * se, est + q * se]
