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

No other module compares family names: they read these fields. The response checks, links and
random-number generators that the entries name are in :mod:`bayesglmm.family_functions`.

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

import numpy as np
from scipy.special import expit

from .family_functions import (
    check_binary,
    check_categories,
    check_counts,
    check_positive,
    check_real,
    check_unit_interval,
    exp,
    identity,
    log,
    logit,
    probs_ordered,
    probs_sequential_common,
    rng_bernoulli,
    rng_beta,
    rng_binomial,
    rng_gamma,
    rng_gaussian,
    rng_lognormal,
    rng_neg_binomial,
    rng_ordered,
    rng_poisson,
    rng_sequential,
    rng_sequential_common,
    rng_student_t,
    rng_zero_inflated_neg_binomial,
    rng_zero_inflated_poisson,
)

__all__ = [
    "EXTRA_PARAMS",
    "FAMILIES",
    "FAMILY_NAMES",
    "ExtraParam",
    "Family",
    "get_family",
    "program_families",
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
    # ordinal families with one linear predictor per observation: the probabilities of the
    # categories 1..C, (eta (S, n), cutpoints (S, C - 1)) -> (S, n, C); marginal means and
    # effects use them for the mean class and the category probabilities (None: not available)
    category_probs: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(
        default=None, repr=False)
    # the same for the common-effect variant of a category-specific family
    category_probs_common: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(
        default=None, repr=False)

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
        return replace(self, category_specific=False, rng=self.rng_common,
                       category_probs=self.category_probs_common)

    @property
    def common_variant(self) -> bool:
        """True for the variant of a category-specific family made by
        ``with_category_specific(False)``."""
        return self.rng_common is not None and not self.category_specific

    @property
    def program(self) -> str:
        """Name of the family's precompiled generic program: the family name, with ``_common``
        for the variant made by ``with_category_specific(False)`` (its own program)."""
        return f"{self.name}_common" if self.common_variant else self.name

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
            "gaussian", "identity", identity, identity, (_SIGMA,), "vector",
            check_real, "continuous", rng_gaussian,
            doc="y ~ Normal(eta, sigma)", resid_corr=True, quadratic=True, re_scale="sigma",
            reml=True,
        ),
        Family(
            "lognormal", "log", log, exp, (_SIGMA,), "vector",
            check_positive, "continuous", rng_lognormal,
            doc="log y ~ Normal(eta, sigma); density of y (includes the -log y Jacobian)",
            quadratic=True, re_scale="sigma",
        ),
        Family(
            "student_t", "identity", identity, identity, (_SIGMA, _NU), "vector",
            check_real, "continuous", rng_student_t,
            doc="y ~ Student-t(nu, eta, sigma), nu > 2", re_scale="sigma",
        ),
        Family(
            "gamma", "log", log, exp, (_SHAPE,), "vector",
            check_positive, "log", rng_gamma,
            doc="y ~ Gamma(shape, rate = shape / exp(eta)); mean exp(eta)",
        ),
        Family(
            "bernoulli", "logit", logit, expit, (), "int",
            check_binary, "logit", rng_bernoulli, factor_response=True,
            doc="y ~ Bernoulli(logistic(eta))",
        ),
        Family(
            "binomial", "logit", logit, expit, (), "int",
            check_counts, "logit", rng_binomial, needs_trials=True, factor_response=True,
            doc="y ~ Binomial(trials, logistic(eta)); cbind(successes, failures) or trials=",
        ),
        Family(
            "poisson", "log", log, exp, (), "int",
            check_counts, "log", rng_poisson,
            doc="y ~ Poisson(exp(eta))",
        ),
        Family(
            "neg_binomial", "log", log, exp, (_PHI,), "int",
            check_counts, "log", rng_neg_binomial,
            doc="NB2: mean exp(eta), Var = mu + mu^2/phi",
        ),
        Family(
            "ordered", "cumulative_logit", logit, expit, (), "int",
            check_categories, "logit", rng_ordered,
            has_intercept=False, ordinal=True, category_probs=probs_ordered,
            doc="cumulative logit: P(y <= k) = logistic(c_k - eta)",
        ),
        Family(
            "sequential", "cont_ratio_logit", logit, expit, (), "int",
            check_categories, "logit", rng_sequential,
            has_intercept=False, ordinal=True, category_specific=True,
            snippets=("sequential.stan",), rng_common=rng_sequential_common,
            category_probs_common=probs_sequential_common,
            doc="continuation ratio: P(y > k | y >= k) = logistic(eta_k - c_k)",
        ),
        Family(
            "beta", "logit", logit, expit, (_PHI_BETA,), "vector",
            check_unit_interval, "logit", rng_beta,
            doc="y ~ Beta(mu phi, (1 - mu) phi), mu = logistic(eta); proportions in (0, 1)",
        ),
        Family(
            "zero_inflated_poisson", "log", log, exp, (), "int",
            check_counts, "log", rng_zero_inflated_poisson,
            snippets=("zero_inflated.stan",), zero_inflated=True,
            doc="zero with probability zi = logistic(X_zi b_zi), else Poisson(exp(eta))",
        ),
        Family(
            "zero_inflated_neg_binomial", "log", log, exp, (_PHI,), "int",
            check_counts, "log", rng_zero_inflated_neg_binomial,
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


def program_families() -> dict[str, Family]:
    """Generic program name -> the family (or variant) it fits, in table order: every family,
    and after each category-specific family its common-effect variant."""
    out: dict[str, Family] = {}
    for f in FAMILIES.values():
        out[f.program] = f
        if f.rng_common is not None:
            common = f.with_category_specific(False)
            out[common.program] = common
    return out


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
