"""The family table: one entry per response distribution.

Each :class:`Family` carries everything the rest of the package needs to know about a family:

* the link and its inverse (numpy, used by fitted values and conditional effects),
* its extra (distributional) parameters with user names, Stan bounds and the prior argument that
  controls their default prior (:data:`EXTRA_PARAMS` lists them over all families),
* the response check (a function raising :class:`ValueError` that names the column and the
  offending values), the Stan type of the response and how it is recoded (``factor_response``,
  ``needs_trials``),
* its Stan code: the snippet ``stan_snippets/families/<name>.stan.j2`` (:attr:`Family.snippet`)
  and the files of Stan functions it needs (:attr:`Family.snippets`),
* the class of constants used by the weakly-informative prior,
* flags read by the fitting code (``reml``, ``quadratic``, ``re_scale``, ``ordinal``, ...),
* a random-number generator for posterior predictions.

No other module compares family names: they read these fields.

Stan snippets
-------------
A family's snippet is a Jinja file of macros; each returns Stan text without indentation (the
calling template indents it). A template renders it with the environment of
:func:`bayesglmm.codegen.jinja_env` (whose loader searches ``templates/`` and
``stan_snippets/``)::

    {% import family.snippet as fam %}      {# family.snippet = "families/<name>.stan.j2" #}
    data { int<lower=1> N; {{ fam.data() }} ... }
    {{ fam.tdata() if fam.tdata is defined }}             {# transformed data #}
    {{ fam.params() if fam.params is defined }}           {# e.g. the cutpoints #}
    target += {{ fam.glm("X", "alpha") }};    {# when defined and not empty #}
    target += {{ fam.vec() }};                {# otherwise, given vector[N] mu #}
    log_lik[n] = {{ fam.point() }};           {# observation n, given mu #}

The macros:

``data()``
    The ``data`` declarations of the response: ``y``, and ``C`` (ordinal) or ``trials``
    (binomial) where the family needs them. Required.
``tdata()``
    ``transformed data`` lines computed from ``y`` (lognormal: ``log_y``, ``sum_log_y``).
    Optional.
``params()``
    Parameter declarations other than the extra parameters (those come from
    :attr:`Family.extra`): ordinal families declare their ``cutpoints``. Optional.
``glm(X, alpha)``
    The log density of all of ``y`` through a ``*_glm`` function, given the name of the design
    matrix ``X`` (the coefficients are ``beta``) and ``alpha``, the rest of the linear predictor
    (the name of a scalar, of ``vector[N] eta``, or ``"0"``). Optional; it may return an empty
    string when its ``*_glm`` function cannot take this ``alpha``: the template then uses
    ``vec()``.
``vec()``
    The log density of all of ``y`` given the linear predictor ``mu`` (``vector[N]``, or
    ``matrix[N, C - 1]`` for category-specific families). Required.
``point()``
    The log density of ``y[n]`` given ``mu[n]``: the pointwise log-likelihood. Required.

All names of Stan data and parameters follow :mod:`bayesglmm.codegen`: ``y``, ``N``, ``C``,
``trials``, ``beta``, ``cutpoints`` and the extra parameters by their names (``sigma``, ``phi``,
...). Functions that Stan lacks live in plain ``stan_snippets/*.stan`` files named by
:attr:`Family.snippets` and go into the program's ``functions`` block.

Zero-inflated families (``zero_inflated``) have a second linear predictor, the logit of the
probability of a structural zero: their snippets declare the data ``K_zi`` and ``X_zi`` and the
parameter ``beta_zi``, whose design :mod:`bayesglmm.zero_inflation` builds from ``zi=``.

Adding a family means one entry here plus its snippet (and a Stan function file if Stan has no
built-in density).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import expit

__all__ = [
    "EXTRA_PARAMS",
    "FAMILIES",
    "FAMILY_NAMES",
    "ExtraParam",
    "Family",
    "get_family",
]


@dataclass(frozen=True)
class ExtraParam:
    """A distributional parameter of a family (sigma, nu, shape, phi)."""

    name: str  # user name == Stan name: 'sigma', 'nu', 'shape', 'phi'
    lower: float  # Stan lower bound
    prior_arg: str  # prior argument giving the Exponential rate: 'sigma_rate', 'nu_rate', ...
    doc: str = ""
    always_prior: bool = False  # True: prior_normal/prior_weak always give it a prior (sigma)

    @property
    def default_prior(self) -> str:
        """The default prior of prior_normal() and prior_weak()."""
        rule = "" if self.always_prior else f" only if {self.prior_arg} is given, else flat"
        return f"exponential({self.prior_arg}){rule}"


# ----------------------------------------------------------------------------- response checks


def _values_preview(values: Any, limit: int = 5) -> str:
    vals = [int(v) if isinstance(v, float) and v.is_integer() else v
            for v in dict.fromkeys(np.asarray(values).ravel().tolist())]
    text = ", ".join(repr(v) for v in vals[:limit])
    return text + (", ..." if len(vals) > limit else "")


def _require_numeric(y: np.ndarray, column: str, family: str) -> np.ndarray:
    try:
        arr = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"Response column '{column}' must be numeric for family '{family}' "
            f"(found values such as {_values_preview(y)})."
        ) from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Response column '{column}' contains non-finite values (inf).")
    return arr


def _check_real(y: np.ndarray, column: str, family: str) -> None:
    _require_numeric(y, column, family)


def _check_positive(y: np.ndarray, column: str, family: str) -> None:
    arr = _require_numeric(y, column, family)
    bad = arr[arr <= 0]
    if bad.size:
        raise ValueError(
            f"Response column '{column}' must be strictly positive for family '{family}': "
            f"{bad.size} value(s) <= 0 (e.g. {_values_preview(bad)})."
        )


def _check_counts(y: np.ndarray, column: str, family: str) -> None:
    arr = _require_numeric(y, column, family)
    bad = arr[(arr < 0) | (arr != np.round(arr))]
    if bad.size:
        raise ValueError(
            f"Column '{column}' must hold non-negative integer counts for family '{family}': "
            f"{bad.size} invalid value(s) (e.g. {_values_preview(bad)})."
        )


def _check_binary(y: np.ndarray, column: str, family: str) -> None:
    arr = _require_numeric(y, column, family)
    bad = arr[(arr != 0) & (arr != 1)]
    if bad.size:
        raise ValueError(
            f"Response column '{column}' must be 0/1 for family '{family}': {bad.size} value(s) "
            f"other than 0 and 1 (e.g. {_values_preview(bad)}). A two-level categorical or a "
            "boolean column also works."
        )


def _check_unit_interval(y: np.ndarray, column: str, family: str) -> None:
    arr = _require_numeric(y, column, family)
    bad = arr[(arr <= 0) | (arr >= 1)]
    if bad.size:
        raise ValueError(
            f"Response column '{column}' must lie strictly between 0 and 1 for family "
            f"'{family}': {bad.size} value(s) outside (0, 1) (e.g. {_values_preview(bad)}). "
            "Proportions of exactly 0 or 1 need another model (e.g. binomial counts)."
        )


def _check_categories(y: np.ndarray, column: str, family: str) -> None:
    arr = _require_numeric(y, column, family)
    bad = arr[(arr < 1) | (arr != np.round(arr))]
    if bad.size:
        raise ValueError(
            f"Response column '{column}' must hold category codes 1..C for family '{family}' "
            f"(or be an ordered categorical): {bad.size} invalid value(s) "
            f"(e.g. {_values_preview(bad)})."
        )
    codes = arr.astype(int)
    C = int(codes.max())
    observed = set(codes.tolist())
    if len(observed) < 2:
        raise ValueError(
            f"Family '{family}': response column '{column}' has only one observed category "
            f"({C}); an ordinal model needs at least two."
        )
    missing = [k for k in range(1, C + 1) if k not in observed]
    if missing:
        raise ValueError(
            f"Family '{family}': response column '{column}' has unobserved categories "
            f"{missing} between 1 and {C}; the cutpoints around them are not identified. "
            "Recode the categories (e.g. merge them) or pass levels= with the observed levels."
        )


# ----------------------------------------------------------------------------- inverse links


def _identity(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=float)


def _exp(x: np.ndarray) -> np.ndarray:
    return np.exp(x)


def _log(x: np.ndarray) -> np.ndarray:
    return np.log(x)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.log(p) - np.log1p(-p)


# ----------------------------------------------------------------------------- rngs
# Each takes the linear predictor eta (any shape; for ordinal families eta excludes cutpoints),
# a dict of parameter values broadcastable against eta, a numpy Generator, and optional trials.


def _rng_gaussian(eta, p, rng, trials=None):
    return rng.normal(eta, p["sigma"])


def _rng_lognormal(eta, p, rng, trials=None):
    return np.exp(rng.normal(eta, p["sigma"]))


def _rng_student_t(eta, p, rng, trials=None):
    return eta + p["sigma"] * rng.standard_t(p["nu"], size=np.shape(eta))


def _rng_gamma(eta, p, rng, trials=None):
    shape = p["shape"]
    return rng.gamma(shape, np.exp(eta) / shape)


def _rng_bernoulli(eta, p, rng, trials=None):
    return rng.binomial(1, expit(eta))


def _rng_binomial(eta, p, rng, trials=None):
    return rng.binomial(np.asarray(trials, dtype=int), expit(eta))


def _rng_poisson(eta, p, rng, trials=None):
    return rng.poisson(np.exp(eta))


def _rng_neg_binomial(eta, p, rng, trials=None):
    mu = np.exp(eta)
    phi = p["phi"]
    return rng.poisson(rng.gamma(phi, mu / phi))


def _rng_zero_inflated_poisson(eta, p, rng, trials=None):
    # p["zi"]: probability of a structural zero, broadcastable against eta
    count = rng.poisson(np.exp(eta))
    return np.where(rng.uniform(size=np.shape(count)) < p["zi"], 0, count)


def _rng_zero_inflated_neg_binomial(eta, p, rng, trials=None):
    count = _rng_neg_binomial(eta, p, rng)
    return np.where(rng.uniform(size=np.shape(count)) < p["zi"], 0, count)


def _rng_beta(eta, p, rng, trials=None):
    mu = expit(eta)
    phi = p["phi"]
    return rng.beta(mu * phi, (1 - mu) * phi)


def _rng_ordered(eta, p, rng, trials=None):
    c = np.asarray(p["cutpoints"], dtype=float)  # (..., C-1)
    eta = np.asarray(eta, dtype=float)
    cdf = expit(c[..., None, :] - eta[..., :, None]) if c.ndim > 1 else expit(c - eta[..., None])
    u = rng.uniform(size=eta.shape)[..., None]
    return 1 + np.sum(u > cdf, axis=-1)


def _rng_sequential_common(eta, p, rng, trials=None):
    # eta: (...) one predictor per observation; cutpoints (C-1,) or (S, C-1) against eta (S, n)
    c = np.asarray(p["cutpoints"], dtype=float)
    eta = np.asarray(eta, dtype=float)
    c = c[..., None, :] if c.ndim > 1 else c
    cont = rng.uniform(size=eta.shape + (c.shape[-1],)) < expit(eta[..., None] - c)
    return 1 + np.cumprod(cont, axis=-1).sum(axis=-1)


def _rng_sequential(eta, p, rng, trials=None):
    # eta: (..., C-1) transition-specific predictors; cutpoints (C-1,)
    c = np.asarray(p["cutpoints"], dtype=float)
    cont = rng.uniform(size=np.shape(eta)) < expit(np.asarray(eta) - c)
    # category = 1 + number of leading successful transitions
    stop = np.cumprod(cont, axis=-1)
    return 1 + stop.sum(axis=-1)


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Family:
    """One row of the family table."""

    name: str
    link: str  # 'identity', 'log', 'logit', 'cumulative_logit', 'cont_ratio_logit'
    linkfun: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    linkinv: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    extra: tuple[ExtraParam, ...]
    stan_y_type: str  # 'vector' (real response) or 'int'
    check: Callable[[np.ndarray, str, str], None] = field(repr=False)
    weak_class: str  # 'continuous' | 'logit' | 'log' (constants of prior_weak)
    rng: Callable[..., np.ndarray] = field(repr=False)
    has_intercept: bool = True  # ordinal families absorb the intercept into the cutpoints
    ordinal: bool = False
    category_specific: bool = False  # sequential: coefficients per transition
    allows_offset: bool = True
    needs_trials: bool = False  # binomial: trials= or a cbind(successes, failures) response
    # a two-level categorical or boolean response is recoded to 0/1 (levels= picks the order)
    factor_response: bool = False
    snippets: tuple[str, ...] = ()  # files of Stan functions in stan_snippets/ (`functions`)
    doc: str = ""
    resid_corr: bool = False  # residual correlation (resid_corr="ar1"/"cs") available
    # the log likelihood is quadratic in the linear predictor (normal errors on the link
    # scale): the Hessian over the random effects does not depend on them, so the inner Newton
    # solve of the Laplace approximation keeps one Hessian per outer point
    quadratic: bool = False
    # normal errors with the identity link: classic() offers REML, and t/F tests with
    # denominator degrees of freedom (Satterthwaite or residual)
    reml: bool = False
    # a second linear predictor, logit P(structural zero) = X_zi * beta_zi, from the zi= formula
    zero_inflated: bool = False
    # the rng of the model with one coefficient per predictor common to all categories, for
    # a category-specific family that offers it (glmer(..., category_specific=False))
    rng_common: Callable[..., np.ndarray] | None = field(default=None, repr=False)
    # the extra parameter on the scale of the linear predictor: the Laplace optimiser starts the
    # group-level SDs at its value (lme4's start: relative covariance factor 1); None: SD 1
    re_scale: str | None = None

    @property
    def extra_names(self) -> tuple[str, ...]:
        """Names of the extra parameters (``('sigma', 'nu')`` for student_t)."""
        return tuple(p.name for p in self.extra)

    def with_category_specific(self, category_specific: bool | None) -> Family:
        """This family with category-specific coefficients switched on or off.

        Parameters
        ----------
        category_specific : bool or None
            None keeps the family's default. False gives the sequential family one coefficient
            per predictor, common to all transitions (brms' ``sratio``):
            P(y > k | y >= k) = logistic(eta - c_k).

        Returns
        -------
        Family
            The same entry, or a variant of it with ``category_specific=False``.
        """
        if category_specific is None:
            return self
        if not isinstance(category_specific, bool):
            raise TypeError(f"category_specific must be True, False or None, "
                            f"got {category_specific!r}.")
        if category_specific == self.category_specific:
            return self
        if self.rng_common is None:
            raise ValueError(f"category_specific={category_specific} is not available for "
                             f"family '{self.name}'; only the sequential family has "
                             "category-specific coefficients (category_specific=False turns "
                             "them into one coefficient per predictor).")
        return replace(self, category_specific=False, rng=self.rng_common)

    @property
    def common_variant(self) -> bool:
        """True for the variant of a category-specific family made by
        ``with_category_specific(False)``."""
        return self.rng_common is not None and not self.category_specific

    @property
    def snippet(self) -> str:
        """The family's Stan snippet, relative to ``stan_snippets/`` (see the module docstring)."""
        return f"families/{self.name}.stan.j2"

    def check_response(self, y: np.ndarray, column: str) -> None:
        """Raise ValueError naming ``column`` when ``y`` is not a valid response."""
        self.check(y, column, self.name)


_SIGMA = ExtraParam("sigma", 0.0, "sigma_rate", "residual standard deviation", True)
_NU = ExtraParam("nu", 2.0, "nu_rate", "degrees of freedom (> 2)")
_SHAPE = ExtraParam("shape", 0.0, "shape_rate", "gamma shape")
_PHI = ExtraParam("phi", 0.0, "phi_rate", "NB2 precision: Var = mu + mu^2/phi")
_PHI_BETA = ExtraParam("phi", 0.0, "phi_rate", "beta precision: Var = mu (1 - mu) / (1 + phi)")

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "gaussian", "identity", _identity, _identity, (_SIGMA,), "vector",
            _check_real, "continuous", _rng_gaussian,
            doc="y ~ Normal(eta, sigma)", resid_corr=True, quadratic=True, re_scale="sigma",
            reml=True,
        ),
        Family(
            "lognormal", "log", _log, _exp, (_SIGMA,), "vector",
            _check_positive, "continuous", _rng_lognormal,
            doc="log y ~ Normal(eta, sigma); density of y (includes the -log y Jacobian)",
            quadratic=True, re_scale="sigma",
        ),
        Family(
            "student_t", "identity", _identity, _identity, (_SIGMA, _NU), "vector",
            _check_real, "continuous", _rng_student_t,
            doc="y ~ Student-t(nu, eta, sigma), nu > 2", re_scale="sigma",
        ),
        Family(
            "gamma", "log", _log, _exp, (_SHAPE,), "vector",
            _check_positive, "log", _rng_gamma,
            doc="y ~ Gamma(shape, rate = shape / exp(eta)); mean exp(eta)",
        ),
        Family(
            "bernoulli", "logit", _logit, expit, (), "int",
            _check_binary, "logit", _rng_bernoulli, factor_response=True,
            doc="y ~ Bernoulli(logistic(eta))",
        ),
        Family(
            "binomial", "logit", _logit, expit, (), "int",
            _check_counts, "logit", _rng_binomial, needs_trials=True, factor_response=True,
            doc="y ~ Binomial(trials, logistic(eta)); cbind(successes, failures) or trials=",
        ),
        Family(
            "poisson", "log", _log, _exp, (), "int",
            _check_counts, "log", _rng_poisson,
            doc="y ~ Poisson(exp(eta))",
        ),
        Family(
            "neg_binomial", "log", _log, _exp, (_PHI,), "int",
            _check_counts, "log", _rng_neg_binomial,
            doc="NB2: mean exp(eta), Var = mu + mu^2/phi",
        ),
        Family(
            "ordered", "cumulative_logit", _logit, expit, (), "int",
            _check_categories, "logit", _rng_ordered,
            has_intercept=False, ordinal=True,
            doc="cumulative logit: P(y <= k) = logistic(c_k - eta)",
        ),
        Family(
            "sequential", "cont_ratio_logit", _logit, expit, (), "int",
            _check_categories, "logit", _rng_sequential,
            has_intercept=False, ordinal=True, category_specific=True,
            snippets=("sequential.stan",), rng_common=_rng_sequential_common,
            doc="continuation ratio: P(y > k | y >= k) = logistic(eta_k - c_k)",
        ),
        Family(
            "beta", "logit", _logit, expit, (_PHI_BETA,), "vector",
            _check_unit_interval, "logit", _rng_beta,
            doc="y ~ Beta(mu phi, (1 - mu) phi), mu = logistic(eta); proportions in (0, 1)",
        ),
        Family(
            "zero_inflated_poisson", "log", _log, _exp, (), "int",
            _check_counts, "log", _rng_zero_inflated_poisson,
            snippets=("zero_inflated.stan",), zero_inflated=True,
            doc="zero with probability zi = logistic(X_zi b_zi), else Poisson(exp(eta))",
        ),
        Family(
            "zero_inflated_neg_binomial", "log", _log, _exp, (_PHI,), "int",
            _check_counts, "log", _rng_zero_inflated_neg_binomial,
            snippets=("zero_inflated.stan",), zero_inflated=True,
            doc="zero with probability zi = logistic(X_zi b_zi), else NB2(exp(eta), phi)",
        ),
    )
}

FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)

# The extra parameters over all families, one per name, in table order (sigma, nu, shape, phi):
# the prior table has one Exponential term per name, with the rate argument ``prior_arg``.
def _distinct_extras() -> tuple[ExtraParam, ...]:
    out: dict[str, ExtraParam] = {}
    for f in FAMILIES.values():
        for p in f.extra:
            first = out.setdefault(p.name, p)
            if (first.prior_arg, first.always_prior) != (p.prior_arg, p.always_prior):
                raise ValueError(f"extra parameter '{p.name}' has two prior arguments")
    return tuple(out.values())


EXTRA_PARAMS: tuple[ExtraParam, ...] = _distinct_extras()


def get_family(family: str | Family) -> Family:
    """Look a family up by name (case-insensitive); error lists the valid names."""
    if isinstance(family, Family):
        return family
    if not isinstance(family, str):
        raise TypeError(
            f"family must be a string, one of: {', '.join(FAMILY_NAMES)} (got {family!r})."
        )
    key = family.strip().lower()
    aliases = {"normal": "gaussian", "negbinomial": "neg_binomial", "neg_binomial_2": "neg_binomial",
               "student": "student_t", "ordinal": "ordered", "cumulative": "ordered",
               "zero_inflated_negbinomial": "zero_inflated_neg_binomial"}
    key = aliases.get(key, key)
    if key not in FAMILIES:
        raise ValueError(
            f"Unknown family '{family}'. Valid families: {', '.join(FAMILY_NAMES)}."
        )
    return FAMILIES[key]
