"""Prior objects and the data-driven prior table.

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
``b_zi``              Normal(mu_j, sd_j), per zero-part column     ``b_zi_mu``, ``b_zi_sd``
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

Modules: ``constructors`` (the ``prior_*`` functions, :class:`Prior`, :func:`make_prior`),
``table`` (:data:`PRIOR_KINDS`: one row per prior with the properties other modules read --
``proper``, ``joint_b``, ``ttest`` --; :data:`PRIOR_TABLE`: one row per prior term;
:func:`prior_blocks`, :func:`default_adapt_delta`),
``resolve`` (:class:`ResolvedPrior`, :func:`resolve_prior`). Every public name is re-exported here.

Examples
--------
>>> p = prior_normal(b_sd=2.5, overrides={"sigma": 1.0})
>>> p.name
'normal'
"""

from .constructors import (
    PRIOR_NAMES,
    Prior,
    make_prior,
    prior_flat,
    prior_jzs,
    prior_normal,
    prior_rhs,
    prior_ssp,
    prior_weak,
)
from .resolve import ResolvedPrior, ZeroPart, resolve_prior, weak_constants
from .table import (
    DEFAULT_ADAPT_DELTA,
    PRIOR_KINDS,
    PRIOR_TABLE,
    PriorKind,
    PriorTerm,
    TTestPrior,
    default_adapt_delta,
    prior_blocks,
)

__all__ = [
    "DEFAULT_ADAPT_DELTA",
    "PRIOR_KINDS",
    "PRIOR_NAMES",
    "PRIOR_TABLE",
    "Prior",
    "PriorKind",
    "PriorTerm",
    "ResolvedPrior",
    "TTestPrior",
    "ZeroPart",
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
    "weak_constants",
]
