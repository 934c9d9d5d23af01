"""Prior objects and the data-driven prior table (features.md section 5).

A prior object (:class:`Prior`) only stores the user's choices. :func:`resolve_prior` turns it,
together with the family, the design matrix and the response, into a :class:`ResolvedPrior`:
for every *prior term* of the table below, whether it is present (structure, decides the Stan code)
and its hyperparameters (numbers, passed to Stan as data). So ``prior_normal()`` and
``prior_weak()`` give the same Stan program for the same formula and family: only data differ.

Prior terms (Stan data names in brackets):

====================  ===========================================  ==========================
term                  distribution                                 data
====================  ===========================================  ==========================
``Intercept_c``       Normal(mu, sd)                               ``Intercept_mu``, ``Intercept_sd``
``b``                 Normal(mu_j, sd_j), per design column        ``b_mu``, ``b_sd``
``sigma/nu/shape/phi``  Exponential(rate)                          ``sigma_rate`` ...
``sd``                Exponential(rate_m), per term k, coef m      ``sd_rate_k``
``cutpoints``         Normal(0, cutpoint_sd)                       ``cutpoint_sd``
``corr``              LKJ(eta) on the Cholesky factor, per term k  ``lkj_eta_k``
====================  ===========================================  ==========================

Per-parameter overrides: every constructor accepts ``overrides={user name: value}``, e.g.
``prior_normal(overrides={"b[talk]": 2.5, "Intercept_c": (3, 2), "sigma": 1.0,
"sd[group:Int]": 0.5})``; a number is the SD (Normal terms) or the rate (Exponential terms), a
pair is (mean, sd) for Normal terms. ``"b"``, ``"sd"`` (or ``"sd_k"``), ``"corr"`` address all
elements. ``prior=`` on the wrappers also accepts a string (``"normal"``), or a dict: ``"name"`` picks the
constructor (default ``"normal"``), keys that are its arguments are passed to it and the other
keys are per-parameter overrides: ``{"name": "weak", "sd_ratio": 1}``, ``{"b_sd": 5}``,
``{"b[talk]": 2.5, "sigma": 1.0}``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .families import EXTRA_PARAMS, ExtraParam, Family

__all__ = [
    "PRIOR_NAMES",
    "PRIOR_TABLE",
    "Prior",
    "PriorTerm",
    "ResolvedPrior",
    "default_adapt_delta",
    "make_prior",
    "prior_blocks",
    "prior_flat",
    "prior_jzs",
    "prior_normal",
    "prior_rhs",
    "prior_ssp",
    "prior_weak",
    "resolve_prior",
]

PRIOR_NAMES = ("flat", "normal", "weak", "rhs", "ssp", "jzs")

# optional arguments of the shrinkage priors: the rates of the extra parameters other than sigma
# (the family table's), the cutpoint SD and the LKJ shape
_EXTRA_ARGS = tuple(p.prior_arg for p in EXTRA_PARAMS if not p.always_prior) + (
    "cutpoint_sd", "lkj_eta")


@dataclass(frozen=True)
class Prior:
    """A user's prior choice (not yet tied to data). Build with prior_flat/normal/weak."""

    name: str  # 'flat' | 'normal' | 'weak'
    args: tuple[tuple[str, Any], ...] = ()  # constructor arguments, sorted by name
    y_range: tuple[float, float] | None = None
    overrides: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.args).get(key, default)

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.args]
        if self.y_range is not None:
            parts.append(f"y_range={self.y_range!r}")
        if self.overrides:
            parts.append(f"overrides={dict(self.overrides)!r}")
        return f"prior_{self.name}({', '.join(parts)})"


def _norm_y_range(y_range: Any, argname: str = "y_range") -> tuple[float, float] | None:
    if y_range is None:
        return None
    try:
        lo, hi = (float(v) for v in y_range)
    except (TypeError, ValueError):
        raise ValueError(f"{argname} must be a pair (low, high), got {y_range!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"{argname} must be a pair (low, high) with low < high, got {y_range!r}.")
    return (lo, hi)


def _freeze_overrides(overrides: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    if not overrides:
        return ()
    if not isinstance(overrides, Mapping):
        raise TypeError("overrides must be a dict {parameter name: value}.")
    out = []
    for k, v in overrides.items():
        if isinstance(v, (list, tuple)):
            v = tuple(float(x) for x in v)
            if len(v) != 2:
                raise ValueError(f"override for '{k}' must be a number or a (mean, sd) pair.")
        elif v is not None:
            v = float(v)
        out.append((str(k), v))
    return tuple(sorted(out))


def _check_positive(name: str, value: Any) -> Any:
    if value is None:
        return None
    v = float(value)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"Prior argument {name} must be a positive number or None, got {value!r}.")
    return v


def prior_flat() -> Prior:
    """Flat (improper uniform) priors: no prior terms, no centring. The default."""
    return Prior("flat")


def prior_normal(
    Intercept_sd: float | None = 10,
    mu_sd: float | None = 10,
    b_sd: float | None = 10,
    sigma_rate: float | None = 0.2,
    tau_rate: float | None = 0.2,
    *,
    nu_rate: float | None = None,
    shape_rate: float | None = None,
    phi_rate: float | None = None,
    cutpoint_sd: float | None = None,
    lkj_eta: float | None = None,
    y_range: tuple[float, float] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Prior:
    """Normal priors (features.md section 5).

    Intercept_c ~ Normal(0, mu_sd) (mu_sd falls back to Intercept_sd), b_j ~ Normal(0, b_sd),
    sigma ~ Exponential(sigma_rate), every random-effect SD ~ Exponential(tau_rate).
    nu, shape, phi ~ Exponential(rate) and cutpoints ~ Normal(0, cutpoint_sd) only if given:
    otherwise these parameters have no prior (flat). LKJ(lkj_eta) on correlations (default 1).
    Any argument set to None drops that prior term. ``y_range`` is accepted for symmetry with
    prior_weak (it has no effect on the normal prior).
    """
    args = {
        "Intercept_sd": _check_positive("Intercept_sd", Intercept_sd),
        "mu_sd": _check_positive("mu_sd", mu_sd),
        "b_sd": _check_positive("b_sd", b_sd),
        "sigma_rate": _check_positive("sigma_rate", sigma_rate),
        "tau_rate": _check_positive("tau_rate", tau_rate),
        "nu_rate": _check_positive("nu_rate", nu_rate),
        "shape_rate": _check_positive("shape_rate", shape_rate),
        "phi_rate": _check_positive("phi_rate", phi_rate),
        "cutpoint_sd": _check_positive("cutpoint_sd", cutpoint_sd),
        "lkj_eta": _check_positive("lkj_eta", lkj_eta),
    }
    return Prior("normal", tuple(sorted(args.items())), _norm_y_range(y_range),
                 _freeze_overrides(overrides))


def prior_weak(
    sd_ratio: float = 0.5,
    max_beta: float = 1.0,
    *,
    y_range: tuple[float, float] | None = None,
    nu_rate: float | None = None,
    shape_rate: float | None = None,
    phi_rate: float | None = None,
    cutpoint_sd: float | None = None,
    lkj_eta: float | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Prior:
    """Weakly-informative, y_range-scaled priors (features.md section 5).

    Continuous families (gaussian, lognormal, student_t) need ``y_range`` (here or on the wrapper;
    the wrapper's wins). Constants: see :func:`weak_constants`.
    """
    args = {
        "sd_ratio": _check_positive("sd_ratio", sd_ratio),
        "max_beta": _check_positive("max_beta", max_beta),
        "nu_rate": _check_positive("nu_rate", nu_rate),
        "shape_rate": _check_positive("shape_rate", shape_rate),
        "phi_rate": _check_positive("phi_rate", phi_rate),
        "cutpoint_sd": _check_positive("cutpoint_sd", cutpoint_sd),
        "lkj_eta": _check_positive("lkj_eta", lkj_eta),
    }
    if args["sd_ratio"] is None or args["max_beta"] is None:
        raise ValueError("prior_weak: sd_ratio and max_beta must be positive numbers.")
    return Prior("weak", tuple(sorted(args.items())), _norm_y_range(y_range),
                 _freeze_overrides(overrides))


def _shrinkage_extras(Intercept_sd, sigma_rate, sd_rate, kw) -> dict[str, Any]:
    """The optional intercept / sigma / SD priors of rhs and ssp (none unless given)."""
    return {"Intercept_sd": _check_positive("Intercept_sd", Intercept_sd),
            "sigma_rate": _check_positive("sigma_rate", sigma_rate),
            "tau_rate": _check_positive("sd_rate", sd_rate),
            **{k: _check_positive(k, kw.get(k)) for k in _EXTRA_ARGS}}


def prior_rhs(
    expected_vars: float = 3,
    slab_scale: float = 2,
    slab_df: float = 4,
    *,
    Intercept_sd: float | None = None,
    sigma_rate: float | None = None,
    sd_rate: float | None = None,
    y_range: tuple[float, float] | None = None,
    **extras: float | None,
) -> Prior:
    """Regularized horseshoe on the coefficients (Piironen & Vehtari 2017; features.md §5).

    b_j = z_j * lambda~_j * tau, lambda~_j = sqrt(c2 lambda_j^2 / (c2 + tau^2 lambda_j^2)),
    z_j ~ N(0, 1), lambda_j ~ half-Cauchy(0, 1), tau ~ half-Cauchy(0, tau0),
    c2 ~ Inv-Gamma(slab_df / 2, slab_df * slab_scale^2 / 2), tau0 = p0 / (K - p0) * base / sqrt(N),
    p0 = max(1, min(expected_vars, K - 1)) (tau0 = base / sqrt(N) when K = p0). Continuous
    families need ``y_range`` (for ``base``, as in prior_weak). Intercept, sigma and
    random-effect SDs get no prior unless ``Intercept_sd``, ``sigma_rate``, ``sd_rate`` are given.

    Stan form: non-centred (z sampled), each half-Cauchy a half-normal divided by the square
    root of a Gamma(1/2, 1/2) auxiliary (``lambda_raw``, ``w_lambda``, ``tau_raw``, ``w_tau``).
    ``sample()`` defaults to ``delta=0.99`` with this prior (prior table), against the
    divergent transitions of its funnel-shaped posteriors.
    """
    args = {"expected_vars": _check_positive("expected_vars", expected_vars),
            "slab_scale": _check_positive("slab_scale", slab_scale),
            "slab_df": _check_positive("slab_df", slab_df),
            **_shrinkage_extras(Intercept_sd, sigma_rate, sd_rate, _known_extras(extras, "rhs"))}
    if None in (args["expected_vars"], args["slab_scale"], args["slab_df"]):
        raise ValueError("prior_rhs: expected_vars, slab_scale and slab_df must be positive.")
    return Prior("rhs", tuple(sorted(args.items())), _norm_y_range(y_range))


def prior_ssp(
    ssp_ratio: float = 0.25,
    max_beta: float = 1.0,
    *,
    Intercept_sd: float | None = None,
    sigma_rate: float | None = None,
    sd_rate: float | None = None,
    y_range: tuple[float, float] | None = None,
    **extras: float | None,
) -> Prior:
    """Spike-and-slab on the coefficients (features.md §5): b_j = beta_raw_j * r_j * tau_j,
    beta_raw_j ~ Laplace(0, 0.5), r_j in (0.001, 0.999) with logit(r_j) ~ N(logit(ssp_ratio), 3),
    tau_j ~ Exponential(rate = sd(X_j) / (max_beta * base)). Same intercept/sigma/SD rule as
    prior_rhs; continuous families need ``y_range``. Stan form: non-centred (beta_raw, r, tau
    sampled). ``sample()`` defaults to ``delta=0.99`` with this prior (prior table)."""
    args = {"ssp_ratio": float(ssp_ratio), "max_beta": _check_positive("max_beta", max_beta),
            **_shrinkage_extras(Intercept_sd, sigma_rate, sd_rate, _known_extras(extras, "ssp"))}
    if not 0 < args["ssp_ratio"] < 1:
        raise ValueError(f"prior_ssp: ssp_ratio must be in (0, 1), got {ssp_ratio!r}.")
    if args["max_beta"] is None:
        raise ValueError("prior_ssp: max_beta must be a positive number.")
    return Prior("ssp", tuple(sorted(args.items())), _norm_y_range(y_range))


def prior_jzs(r: float = 0.707) -> Prior:
    """Jeffreys-Zellner-Siow prior (features.md §5; continuous families): coefficients jointly
    multivariate Cauchy(0, (r sigma)^2 (X_c'X_c / N)^-1), p(sigma) proportional to 1/sigma,
    intercept and random-effect SDs flat. In ``ttest()``: delta ~ Cauchy(0, r)."""
    rr = _check_positive("r", r)
    if rr is None:
        raise ValueError("prior_jzs: r must be a positive number.")
    return Prior("jzs", (("r", rr),))


def _known_extras(extras: dict[str, Any], name: str) -> dict[str, Any]:
    unknown = set(extras) - set(_EXTRA_ARGS)
    if unknown:
        raise TypeError(f"prior_{name}() got unexpected arguments {sorted(unknown)}.")
    return extras


_CONSTRUCTORS = {"flat": prior_flat, "normal": prior_normal, "weak": prior_weak,
                 "rhs": prior_rhs, "ssp": prior_ssp, "jzs": prior_jzs}


def make_prior(prior: Any = None, y_range: Any = None) -> Prior:
    """Normalise the ``prior=`` argument of the wrappers and apply the y_range rule.

    ``None`` -> flat; a :class:`Prior`; a name ('flat', 'normal', 'weak'); a dict with a 'name'
    key (constructor + arguments) or a dict of per-parameter overrides (on prior_normal()).
    y_range rule (features.md section 1): a y_range given with the flat prior turns it into
    prior_weak(); the wrapper's y_range wins over the prior's.
    """
    if prior is None:
        p = prior_flat()
    elif isinstance(prior, Prior):
        p = prior
    elif isinstance(prior, str):
        key = prior.strip().lower().removeprefix("prior_")
        if key not in _CONSTRUCTORS:
            raise ValueError(
                f"Unknown prior '{prior}'. Valid priors: {', '.join(PRIOR_NAMES)} "
                "(prior_flat(), prior_normal(), prior_weak())."
            )
        p = _CONSTRUCTORS[key]()
    elif isinstance(prior, Mapping):
        # {"name": "weak", "sd_ratio": 1} -> prior_weak(sd_ratio=1); without a name: prior_normal.
        # Keys that are arguments of the constructor are passed to it ({"b_sd": 5}); the other
        # keys are per-parameter overrides ({"b[talk]": 2.5, "sigma": 1}).
        d = dict(prior)
        name = d.pop("name", d.pop("type", "normal"))
        key = str(name).strip().lower().removeprefix("prior_")
        if key not in _CONSTRUCTORS:
            raise ValueError(f"Unknown prior '{name}'. Valid priors: {', '.join(PRIOR_NAMES)}.")
        ctor = _CONSTRUCTORS[key]
        argnames = set(inspect.signature(ctor).parameters)
        kwargs = {k: v for k, v in d.items() if k in argnames}
        overrides = {k: v for k, v in d.items() if k not in argnames}
        if overrides:
            if key == "flat":
                raise ValueError(
                    f"prior_flat() takes no arguments or overrides (got {sorted(overrides)})."
                )
            kwargs["overrides"] = {**dict(kwargs.get("overrides") or {}), **overrides}
        try:
            p = ctor(**kwargs)
        except TypeError as e:
            raise ValueError(f"Invalid arguments for prior '{key}': {e}") from None
    else:
        raise TypeError(
            f"prior must be a prior object (prior_flat(), prior_normal(), prior_weak()), a name "
            f"or a dict, got {type(prior).__name__}."
        )
    yr = _norm_y_range(y_range)
    if yr is not None:
        if p.name == "flat":
            p = prior_weak(y_range=yr)
        else:
            p = Prior(p.name, p.args, yr, p.overrides)
    return p


# ----------------------------------------------------------------------------- the prior table


@dataclass(frozen=True)
class PriorTerm:
    """One row of the prior table: a prior term with its Stan data declarations and statement.

    ``{k}`` in a key, declaration or statement stands for the grouping-term number.
    """

    key: str  # term name in ResolvedPrior.terms ('Intercept_c', 'b', 'sigma', 'sd_{k}', ...)
    dist: str  # 'normal' | 'exponential' | 'lkj_corr_cholesky'
    decls: tuple[str, ...]  # Stan data declarations of the hyperparameters
    stmt: str  # Stan statement in the model block
    stmt_category_specific: str | None = None  # variant for K x (C-1) coefficient matrices
    stmt_held: str | None = None  # variant when some coefficients are held fixed (data free_idx)
    # coefficient priors that build beta from other parameters (shrinkage priors, non-centred):
    tdata: tuple[str, ...] = ()  # transformed-data statements
    params: tuple[str, ...] = ()  # parameter declarations
    tparams: tuple[str, ...] = ()  # transformed-parameter statements defining ``vector[K] beta``
    # default target acceptance rate of sample() (Stan's adapt_delta) when this term is present
    # and the user passes none (priors with hard posterior geometry need smaller steps)
    adapt_delta: float | None = None

    @property
    def per_group_term(self) -> bool:
        return "{k}" in self.key


def _exp_term(p: ExtraParam) -> PriorTerm:
    """The Exponential prior of an extra parameter; its rate is the data ``p.prior_arg``."""
    n, r = p.name, p.prior_arg
    return PriorTerm(n, "exponential", (f"real<lower=0> {r};  // {n} ~ exponential({r})",),
                     f"target += exponential_lpdf({n} | {r});")


PRIOR_TABLE: tuple[PriorTerm, ...] = (
    PriorTerm("Intercept_c", "normal",
              ("real Intercept_mu;  // Intercept_c ~ normal(Intercept_mu, Intercept_sd)",
               "real<lower=0> Intercept_sd;"),
              "target += normal_lpdf(Intercept_c | Intercept_mu, Intercept_sd);"),
    PriorTerm("b", "normal",
              ("vector[K] b_mu;  // beta ~ normal(b_mu, b_sd), per design column",
               "vector<lower=0>[K] b_sd;"),
              "target += normal_lpdf(beta | b_mu, b_sd);",
              "for (c in 1:(C - 1)) {\n  target += normal_lpdf(beta[, c] | b_mu, b_sd);\n}",
              "target += normal_lpdf(beta_free | b_mu[free_idx], b_sd[free_idx]);"),
    # regularized horseshoe (Piironen & Vehtari 2017), non-centred, the half-Cauchys as scale
    # mixtures: lambda = lambda_raw / sqrt(w_lambda), tau_hs = hs_tau0 * tau_raw / sqrt(w_tau)
    # with lambda_raw, tau_raw ~ half-normal(0, 1) and w_lambda, w_tau ~ gamma(1/2, 1/2)
    # (bench/bench_shrinkage.py, sparse data, 8 seeds: 0 divergences at delta 0.99, 32 at 0.8;
    # the half-Cauchys sampled directly: 1 and 41)
    PriorTerm("b_rhs", "horseshoe",
              ("real<lower=0> hs_tau0;  // global scale of the horseshoe",
               "real<lower=0> hs_slab_df;  // c2 ~ inv_gamma(hs_slab_df / 2, hs_slab_df * hs_slab_scale^2 / 2)",
               "real<lower=0> hs_slab_scale;"),
              "target += std_normal_lpdf(z);\n"
              "target += normal_lpdf(lambda_raw | 0, 1) + K * log2();  // half-normal\n"
              "target += gamma_lpdf(w_lambda | 0.5, 0.5);\n"
              "target += normal_lpdf(tau_raw | 0, 1) + log2();  // half-normal\n"
              "target += gamma_lpdf(w_tau | 0.5, 0.5);\n"
              "target += inv_gamma_lpdf(c2 | 0.5 * hs_slab_df, 0.5 * hs_slab_df * square(hs_slab_scale));",
              params=("vector[K] z;  // standardised coefficients",
                      "vector<lower=0>[K] lambda_raw;  // local scales: lambda = lambda_raw / sqrt(w_lambda)",
                      "vector<lower=0>[K] w_lambda;",
                      "real<lower=0> tau_raw;  // global scale: tau_hs = hs_tau0 * tau_raw / sqrt(w_tau)",
                      "real<lower=0> w_tau;",
                      "real<lower=0> c2;  // squared slab scale"),
              tparams=("vector[K] lambda = lambda_raw ./ sqrt(w_lambda);  // half-Cauchy(0, 1)",
                       "real tau_hs = hs_tau0 * tau_raw / sqrt(w_tau);  // half-Cauchy(0, hs_tau0)",
                       "vector[K] lambda_tilde = sqrt(c2 * square(lambda) ./ (c2 + square(tau_hs) * square(lambda)));",
                       "vector[K] beta = z .* lambda_tilde * tau_hs;"),
              adapt_delta=0.99),
    # spike-and-slab: beta = beta_raw .* ssp_r .* ssp_tau, non-centred. The Laplace density is
    # kept: writing it as a normal scale mixture, beta_raw = w sqrt(v), removes the kink at 0 but
    # adds a scale per coefficient and more divergences (bench/bench_shrinkage.py, sparse data,
    # 8 seeds: 9 vs 0 at delta 0.99, 911 vs 634 at 0.8); the default delta 0.99 removes them.
    PriorTerm("b_ssp", "spike_and_slab",
              ("real ssp_logit_mu;  // logit(ssp_r) ~ normal(ssp_logit_mu, ssp_logit_sd), truncated to (ssp_lo, ssp_hi)",
               "real<lower=0> ssp_logit_sd;",
               "real<lower=0, upper=1> ssp_lo;",
               "real<lower=ssp_lo, upper=1> ssp_hi;",
               "real<lower=0> ssp_raw_scale;  // beta_raw ~ Laplace(0, ssp_raw_scale)",
               "vector<lower=0>[K] ssp_tau_rate;  // ssp_tau ~ exponential(ssp_tau_rate)"),
              "target += double_exponential_lpdf(beta_raw | 0, ssp_raw_scale);\n"
              "// logit-normal density of ssp_r (with the Jacobian of logit), normalised on (ssp_lo, ssp_hi)\n"
              "target += normal_lpdf(logit(ssp_r) | ssp_logit_mu, ssp_logit_sd) - sum(log(ssp_r) + log1m(ssp_r))\n"
              "          - K * log_diff_exp(normal_lcdf(logit(ssp_hi) | ssp_logit_mu, ssp_logit_sd),\n"
              "                             normal_lcdf(logit(ssp_lo) | ssp_logit_mu, ssp_logit_sd));\n"
              "target += exponential_lpdf(ssp_tau | ssp_tau_rate);",
              params=("vector[K] beta_raw;  // raw coefficients",
                      "vector<lower=ssp_lo, upper=ssp_hi>[K] ssp_r;  // inclusion weights",
                      "vector<lower=0>[K] ssp_tau;  // slab scales"),
              tparams=("vector[K] beta = beta_raw .* ssp_r .* ssp_tau;",),
              adapt_delta=0.99),
    # JZS (Zellner-Siow): beta ~ multivariate Cauchy(0, (jzs_r sigma)^2 (Xc'Xc/N)^-1), sampled
    # directly (centred: a non-centred g-mixture makes a funnel when the data inform beta);
    # Jeffreys prior on sigma
    PriorTerm("b_jzs", "zellner_siow",
              ("real<lower=0> jzs_r;  // scale of the multivariate Cauchy",),
              "target += multi_student_t_cholesky_lpdf(beta | 1, rep_vector(0, K), jzs_r * sigma * jzs_L);\n"
              "target += -log(sigma);  // Jeffreys prior p(sigma) proportional to 1 / sigma",
              tdata=("// Cholesky factor of (Xc'Xc / N)^-1, the shape of the JZS prior",
                     "matrix[K, K] jzs_L = cholesky_decompose(inverse_spd(crossprod(Xc) / N));")),
    *(_exp_term(p) for p in EXTRA_PARAMS),  # sigma, nu, shape, phi (the family table)
    PriorTerm("cutpoints", "normal",
              ("real<lower=0> cutpoint_sd;  // cutpoints ~ normal(0, cutpoint_sd)",),
              "target += normal_lpdf(cutpoints | 0, cutpoint_sd);"),
    PriorTerm("sd_{k}", "exponential",
              ("vector<lower=0>[M_{k}] sd_{k}_rate;  // sd_{k} ~ exponential(sd_{k}_rate)",),
              "target += exponential_lpdf(sd_{k} | sd_{k}_rate);"),
    PriorTerm("corr_{k}", "lkj_corr_cholesky",
              ("real<lower=0> lkj_eta_{k};  // L_{k} ~ lkj_corr_cholesky(lkj_eta_{k})",),
              "target += lkj_corr_cholesky_lpdf(L_{k} | lkj_eta_{k});"),
)


def prior_blocks(terms: tuple[str, ...], n_group_terms: int, category_specific: bool = False,
                 held: bool = False) -> list[dict[str, Any]]:
    """Stan data declarations and model statements of the present prior ``terms``, in table
    order (grouping terms in formula order). Used by code generation. ``held``: some
    coefficients are held fixed, so coefficient priors apply to the free ones only."""
    out = []
    present = set(terms)
    for row in PRIOR_TABLE:
        ks = range(1, n_group_terms + 1) if row.per_group_term else [None]
        for k in ks:
            def fill(text: str, k=k) -> str:
                return text if k is None else text.replace("{k}", str(k))

            if fill(row.key) not in present:
                continue
            stmt = row.stmt_category_specific if (category_specific and
                                                  row.stmt_category_specific) else row.stmt
            if held and row.key == "b":
                if row.stmt_held is None:  # pragma: no cover - spec.hold_coefficients refuses
                    raise ValueError(f"prior term '{row.key}' cannot hold coefficients fixed")
                stmt = row.stmt_held
            out.append({"key": fill(row.key), "decls": [fill(d) for d in row.decls],
                        "stmt": fill(stmt), "tdata": list(row.tdata), "params": list(row.params),
                        "tparams": list(row.tparams)})
    unknown = present - {b["key"] for b in out}
    if unknown:  # pragma: no cover - resolve_prior only produces table terms
        raise ValueError(f"prior terms without a table row: {sorted(unknown)}")
    return out


DEFAULT_ADAPT_DELTA = 0.8  # Stan's default target acceptance rate


def default_adapt_delta(terms: tuple[str, ...] | list[str]) -> float:
    """The default target acceptance rate of ``sample()`` for a model with these prior terms.

    Parameters
    ----------
    terms : tuple of str
        The prior terms present (:attr:`ResolvedPrior.terms`).

    Returns
    -------
    float
        The largest ``adapt_delta`` of the table rows present (0.99 for the horseshoe and
        the spike-and-slab prior), or Stan's default 0.8 when no row sets one.
    """
    present = set(terms)
    values = [row.adapt_delta for row in PRIOR_TABLE
              if row.adapt_delta is not None and row.key in present]
    return max(values, default=DEFAULT_ADAPT_DELTA)


# ----------------------------------------------------------------------------- resolution


@dataclass(frozen=True, eq=False)
class ResolvedPrior:
    """A prior tied to a model: which terms exist (structure) and their hyperparameters (data).

    ``terms`` is the structural part (a sorted tuple of term names present, e.g. 'Intercept_c',
    'b', 'sigma', 'sd_1', 'corr_1', 'cutpoints'); ``data`` maps Stan data names to values.
    """

    name: str
    centred: bool  # non-flat prior -> centred design matrix, Intercept_c sampled
    terms: tuple[str, ...]
    data: dict[str, Any] = field(repr=False)
    constants: dict[str, float] = field(default_factory=dict)  # weak-prior base/mid/... (info)
    source: Prior | None = None
    b_names: tuple[str, ...] = ()

    def has(self, term: str) -> bool:
        return term in self.terms

    def describe(self) -> list[str]:
        """Human-readable prior statements (for printing)."""
        out = []
        d = self.data
        if self.has("Intercept_c"):
            out.append(f"Intercept_c ~ Normal({d['Intercept_mu']:.4g}, {d['Intercept_sd']:.4g})")
        if self.has("b"):
            for name, mu, sd in zip(self.b_names, d["b_mu"], d["b_sd"]):
                out.append(f"b[{name}] ~ Normal({mu:.4g}, {sd:.4g})")
        for p in EXTRA_PARAMS:
            if self.has(p.name):
                out.append(f"{p.name} ~ Exponential({d[p.prior_arg]:.4g})")
        for t in self.terms:
            if t.startswith("sd_"):
                out.append(f"{t} ~ Exponential({', '.join(f'{r:.4g}' for r in d[t + '_rate'])})")
            if t.startswith("corr_"):
                out.append(f"L_{t[5:]} ~ LKJ-Cholesky({d['lkj_eta_' + t[5:]]:.4g})")
        if self.has("cutpoints"):
            out.append(f"cutpoints ~ Normal(0, {d['cutpoint_sd']:.4g})")
        if self.has("b_rhs"):
            out.append(f"b ~ regularized horseshoe (tau0 = {d['hs_tau0']:.4g}, slab_df = "
                       f"{d['hs_slab_df']:.4g}, slab_scale = {d['hs_slab_scale']:.4g})")
        if self.has("b_ssp"):
            out.append(f"b ~ spike-and-slab (inclusion prior logit-N({d['ssp_logit_mu']:.4g}, "
                       f"{d['ssp_logit_sd']:.4g}))")
        if self.has("b_jzs"):
            out.append(f"b ~ JZS multivariate Cauchy (r = {d['jzs_r']:.4g}); p(sigma) ~ 1/sigma; "
                       "intercept and random-effect SDs flat")
        if self.constants.get("no_prior_on"):
            out.append(f"note: no prior on {self.constants['no_prior_on']} (flat; give "
                       "Intercept_sd=, sigma_rate=, sd_rate= to add one)")
        return out


def _sample_sd(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return float("nan")
    return float(np.std(x, ddof=1))


def weak_constants(
    family: Family, y: np.ndarray | None, y_range: tuple[float, float] | None, sd_ratio: float,
    max_beta: float,
) -> dict[str, float]:
    """Constants of prior_weak (features.md section 5): base, mid, alpha_sd."""
    if family.weak_class == "continuous":
        if y_range is None:
            raise ValueError(
                f"prior_weak for family '{family.name}' needs y_range=(low, high), the plausible "
                "range of the response (give it to the wrapper or to prior_weak)."
            )
        lo, hi = y_range
        half = (hi - lo) / 2.0
        return {"half": half, "base": half * sd_ratio, "mid": (lo + hi) / 2.0, "alpha_sd": half}
    if family.weak_class == "logit":
        base = math.pi / math.sqrt(3.0)
        return {"base": base, "mid": 0.0, "alpha_sd": base * max_beta}
    if family.weak_class == "log":
        yy = np.asarray(y, dtype=float)
        return {"base": 1.0, "mid": float(math.log(np.mean(yy) + 0.5)), "alpha_sd": sd_ratio}
    raise ValueError(f"no weak-prior constants for family class {family.weak_class!r}")


def resolve_prior(
    prior: Prior,
    family: Family,
    *,
    b_names: tuple[str, ...],
    X: np.ndarray,
    y: np.ndarray,
    has_intercept: bool,
    n_cat: int,
    re_terms: tuple[tuple[str, tuple[str, ...], bool], ...],
    sd_names: tuple[tuple[str, ...], ...],
) -> ResolvedPrior:
    """Tie ``prior`` to a model.

    b_names: user names of the design columns (inside ``b[...]``), length K (for the sequential
    family the Stan coefficient matrix is K x (C-1) and every column of a row shares the prior).
    re_terms: per grouping term (label, coefficient names, correlated).
    sd_names: user names of every SD element per term (for overrides).
    """
    K = len(b_names)
    nterms = len(re_terms)
    data: dict[str, Any] = {}
    terms: list[str] = []
    if prior.name == "flat":
        if prior.overrides:
            raise ValueError("prior_flat() takes no per-parameter overrides; use prior_normal().")
        return ResolvedPrior("flat", False, (), {}, {}, prior, b_names)

    extra_names = set(family.extra_names)
    # extras given for parameters the family does not have -> error
    for arg, pname in ((p.prior_arg, p.name) for p in EXTRA_PARAMS if not p.always_prior):
        if prior.get(arg) is not None and pname not in extra_names:
            raise ValueError(
                f"Prior argument {arg} given, but family '{family.name}' has no parameter "
                f"'{pname}' (its extra parameters: {', '.join(family.extra_names) or 'none'})."
            )
    if prior.get("cutpoint_sd") is not None and not family.ordinal:
        raise ValueError(
            f"Prior argument cutpoint_sd given, but family '{family.name}' has no cutpoints."
        )

    if prior.name in ("rhs", "ssp", "jzs"):
        return _resolve_shrinkage(prior, family, b_names=b_names, X=X, y=y,
                                  has_intercept=has_intercept, re_terms=re_terms)
    constants: dict[str, float] = {}
    if prior.name == "normal":
        mu_sd = prior.get("mu_sd")
        if mu_sd is None:
            mu_sd = prior.get("Intercept_sd")
        icpt = (0.0, mu_sd) if mu_sd is not None else None
        bsd = prior.get("b_sd")
        b = (np.zeros(K), np.full(K, float(bsd))) if bsd is not None else None
        rates = {p.name: prior.get(p.prior_arg) for p in family.extra if p.always_prior}
        tau = prior.get("tau_rate")
    elif prior.name == "weak":
        sd_ratio, max_beta = prior.get("sd_ratio"), prior.get("max_beta")
        constants = weak_constants(family, y, prior.y_range, sd_ratio, max_beta)
        base = constants["base"]
        icpt = (constants["mid"], constants["alpha_sd"])
        sds = np.array([_sample_sd(X[:, j]) for j in range(K)], dtype=float)
        bad = [b_names[j] for j in range(K) if not (sds[j] > 0)]
        if bad:
            raise ValueError(
                "prior_weak scales each coefficient by the SD of its design column, but these "
                f"columns are constant: {', '.join('b[' + n + ']' for n in bad)}."
            )
        b = (np.zeros(K), max_beta * base / sds) if K else (np.zeros(0), np.zeros(0))
        rates = {p.name: 1.0 / base for p in family.extra if p.always_prior}
        tau = 1.0 / base
    else:  # pragma: no cover - make_prior guarantees the name
        raise ValueError(f"Unknown prior '{prior.name}'. Valid priors: {', '.join(PRIOR_NAMES)}.")
    for p in family.extra:  # the other extras: a prior only if their rate is given
        if not p.always_prior:
            rates[p.name] = prior.get(p.prior_arg)
    cut_sd = prior.get("cutpoint_sd")
    lkj = prior.get("lkj_eta")
    lkj = 1.0 if lkj is None else lkj

    # per-term SD rates and LKJ
    sd_rates = [np.full(len(coefs), float(tau)) if tau is not None else None
                for (_, coefs, _) in re_terms]
    lkj_etas = [lkj for _ in re_terms]

    # ---- overrides
    b_mu = None if b is None else np.array(b[0], dtype=float)
    b_sd = None if b is None else np.array(b[1], dtype=float)
    for key, val in prior.overrides:
        if key in ("Intercept_c", "Intercept"):
            if not has_intercept:
                raise ValueError(f"Prior override '{key}': the model has no intercept.")
            icpt = (val[0], val[1]) if isinstance(val, tuple) else ((icpt or (0.0, 0))[0], val)
        elif key == "b" or key.startswith("b["):
            if b_mu is None:
                b_mu, b_sd = np.zeros(K), np.full(K, np.nan)
            idx = range(K) if key == "b" else [_index_of(key[2:-1], b_names, key, "b")]
            for j in idx:
                if isinstance(val, tuple):
                    b_mu[j], b_sd[j] = val
                else:
                    b_sd[j] = val
        elif key in {p.name for p in EXTRA_PARAMS}:
            if key not in extra_names:
                raise ValueError(
                    f"Prior override '{key}': family '{family.name}' has no parameter '{key}'."
                )
            rates[key] = _scalar(val, key)
        elif key == "cutpoints":
            if not family.ordinal:
                raise ValueError(f"Prior override 'cutpoints': family '{family.name}' has none.")
            cut_sd = _scalar(val, key)
        elif key.startswith("sd"):
            k_list, m_sel = _sd_target(key, re_terms, sd_names)
            for k in k_list:
                if sd_rates[k] is None:
                    sd_rates[k] = np.full(len(re_terms[k][1]), np.nan)
                for m in (m_sel if m_sel is not None else range(len(re_terms[k][1]))):
                    sd_rates[k][m] = _scalar(val, key)
        elif key.startswith("corr"):
            suffix = key[4:]
            ks = range(nterms) if suffix == "" else [_term_index(suffix, nterms, key)]
            for k in ks:
                lkj_etas[k] = _scalar(val, key)
        else:
            raise ValueError(
                f"Unknown parameter '{key}' in prior overrides. Use names such as 'Intercept_c', "
                "'b', 'b[<column>]', 'sigma', 'sd', 'sd[<group>:<coef>]', 'corr', 'cutpoints'."
            )
    if b_sd is not None and K and np.any(np.isnan(b_sd)):
        missing = [b_names[j] for j in range(K) if np.isnan(b_sd[j])]
        raise ValueError(
            "Prior overrides give some coefficients a prior but not others (b_sd=None): "
            f"{', '.join('b[' + m + ']' for m in missing)}. Give 'b' an SD as well."
        )
    for k, r in enumerate(sd_rates):
        if r is not None and np.any(np.isnan(r)):
            raise ValueError(
                f"Prior overrides give some SDs of grouping term {k + 1} a prior but not others "
                "(tau_rate=None). Give 'sd' a rate as well."
            )

    # ---- assemble terms and data
    if has_intercept and icpt is not None:
        terms.append("Intercept_c")
        data["Intercept_mu"] = float(icpt[0])
        data["Intercept_sd"] = float(icpt[1])
    if b_sd is not None:
        terms.append("b")
        data["b_mu"] = np.asarray(b_mu, dtype=float)
        data["b_sd"] = np.asarray(b_sd, dtype=float)
    for p in family.extra:
        if rates.get(p.name) is not None:
            terms.append(p.name)
            data[p.prior_arg] = float(rates[p.name])
    if family.ordinal and cut_sd is not None:
        terms.append("cutpoints")
        data["cutpoint_sd"] = float(cut_sd)
    for k, (_, coefs, correlated) in enumerate(re_terms, start=1):
        if sd_rates[k - 1] is not None:
            terms.append(f"sd_{k}")
            data[f"sd_{k}_rate"] = np.asarray(sd_rates[k - 1], dtype=float)
        if correlated and len(coefs) > 1:
            terms.append(f"corr_{k}")
            data[f"lkj_eta_{k}"] = float(lkj_etas[k - 1])
    for key, v in data.items():
        arr = np.atleast_1d(np.asarray(v, dtype=float))
        positive = key.endswith(("_sd", "_rate")) or key.startswith("lkj_eta")
        if positive and not np.all((arr > 0) & np.isfinite(arr)):
            raise ValueError(f"Prior hyperparameter {key} must be positive and finite.")
    return ResolvedPrior(prior.name, has_intercept, tuple(terms), data, constants, prior, b_names)


def _resolve_shrinkage(prior: Prior, family: Family, *, b_names: tuple[str, ...], X: np.ndarray,
                       y: np.ndarray, has_intercept: bool,
                       re_terms: tuple[tuple[str, tuple[str, ...], bool], ...]) -> ResolvedPrior:
    """prior_rhs / prior_ssp / prior_jzs: the coefficient prior of the table, plus (rhs, ssp) the
    intercept / sigma / SD / extra priors only when their arguments are given (features §5)."""
    K = len(b_names)
    N = X.shape[0]
    name = prior.name
    if K == 0:
        raise ValueError(f"prior_{name}() is a prior on regression coefficients, but the model "
                         "has none.")
    if family.category_specific:
        raise ValueError(f"prior_{name}() is not available for family '{family.name}' "
                         "(category-specific coefficients).")
    terms: list[str] = []
    data: dict[str, Any] = {}
    constants: dict[str, float] = {}
    notes: list[str] = []
    if name == "jzs":
        if family.weak_class != "continuous" or "sigma" not in family.extra_names:
            raise ValueError(f"prior_jzs() needs a continuous family with a residual SD "
                             f"(gaussian, lognormal, student_t), not '{family.name}'.")
        if not has_intercept:
            raise ValueError("prior_jzs() centres the design matrix and needs an intercept.")
        Xc = X - X.mean(axis=0)
        if np.linalg.matrix_rank(Xc) < K:
            raise ValueError("prior_jzs(): the centred design matrix is rank deficient "
                             f"(columns {', '.join('b[' + n + ']' for n in b_names)}).")
        terms.append("b_jzs")
        data["jzs_r"] = float(prior.get("r"))
        for p in family.extra:
            if not p.always_prior and prior.get(p.prior_arg) is not None:  # pragma: no cover
                terms.append(p.name)
                data[p.prior_arg] = float(prior.get(p.prior_arg))
        return ResolvedPrior(name, has_intercept, tuple(terms), data, constants, prior, b_names)
    consts = weak_constants(family, y, prior.y_range, 0.5, prior.get("max_beta") or 1.0)
    base = consts["base"]
    sds = np.array([_sample_sd(X[:, j]) for j in range(K)], dtype=float)
    if name == "rhs":
        p0 = max(1.0, min(float(prior.get("expected_vars")), K - 1.0))
        tau0 = base / math.sqrt(N) if K - p0 <= 0 else p0 / (K - p0) * base / math.sqrt(N)
        terms.append("b_rhs")
        data.update(hs_tau0=tau0, hs_slab_df=float(prior.get("slab_df")),
                    hs_slab_scale=float(prior.get("slab_scale")))
        constants.update(consts, p0=p0, tau0=tau0)
    else:
        bad = [b_names[j] for j in range(K) if not (sds[j] > 0)]
        if bad:
            raise ValueError("prior_ssp scales each coefficient by the SD of its design column, "
                             f"but these columns are constant: {', '.join(bad)}.")
        ratio = float(prior.get("ssp_ratio"))
        terms.append("b_ssp")
        data.update(ssp_logit_mu=math.log(ratio / (1 - ratio)), ssp_logit_sd=3.0, ssp_lo=0.001,
                    ssp_hi=0.999, ssp_raw_scale=0.5,
                    ssp_tau_rate=sds / (prior.get("max_beta") * base))
        constants.update(consts)
    # intercept, sigma, SDs, extras: only when given (reference behaviour), with a note
    isd = prior.get("Intercept_sd")
    if has_intercept and isd is not None:
        terms.append("Intercept_c")
        data.update(Intercept_mu=0.0, Intercept_sd=float(isd))
    elif has_intercept:
        notes.append("Intercept_c")
    for p in family.extra:
        rate = prior.get(p.prior_arg)
        if rate is not None:
            terms.append(p.name)
            data[p.prior_arg] = float(rate)
        elif p.always_prior:
            notes.append(p.name)
    tau = prior.get("tau_rate")
    for k, (_, coefs, correlated) in enumerate(re_terms, start=1):
        if tau is not None:
            terms.append(f"sd_{k}")
            data[f"sd_{k}_rate"] = np.full(len(coefs), float(tau))
        else:
            notes.append(f"sd_{k}")
        if correlated and len(coefs) > 1:
            terms.append(f"corr_{k}")
            data[f"lkj_eta_{k}"] = float(prior.get("lkj_eta") or 1.0)
    if notes:
        constants["no_prior_on"] = ", ".join(notes)  # type: ignore[assignment]
    return ResolvedPrior(name, has_intercept, tuple(terms), data, constants, prior, b_names)


def _scalar(val: Any, key: str) -> float:
    if isinstance(val, tuple):
        raise TypeError(f"Prior override '{key}' takes one number (a rate or an eta).")
    return float(val)


def _index_of(name: str, names: tuple[str, ...], key: str, what: str) -> int:
    if name not in names:
        raise ValueError(
            f"Prior override '{key}': no coefficient '{what}[{name}]'. Coefficients: "
            f"{', '.join(what + '[' + n + ']' for n in names) or 'none'}."
        )
    return names.index(name)


def _term_index(suffix: str, nterms: int, key: str) -> int:
    try:
        k = int(suffix.lstrip("_"))
    except ValueError:
        raise ValueError(f"Prior override '{key}': cannot read the grouping-term number.") from None
    if not 1 <= k <= nterms:
        raise ValueError(f"Prior override '{key}': the model has {nterms} grouping term(s).")
    return k - 1


def _sd_target(key, re_terms, sd_names):
    """Which (terms, coefficient indices) an 'sd...' override addresses."""
    nterms = len(re_terms)
    if nterms == 0:
        raise ValueError(f"Prior override '{key}': the model has no random effects.")
    if key == "sd":
        return list(range(nterms)), None
    for k, names in enumerate(sd_names):
        if key in names:
            return [k], [names.index(key)]
    if "[" not in key:
        return [_term_index(key[2:], nterms, key)], None
    valid = [n for names in sd_names for n in names]
    raise ValueError(f"Prior override '{key}': no such SD. Valid names: {', '.join(valid)}.")
