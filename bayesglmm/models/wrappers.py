"""The model wrappers ``glmer``, ``lmer``, ``glm`` and ``lm``: formula + data -> :class:`Model`
(data-frame options, specification, Stan program).

Examples
--------
>>> import bayesglmm
>>> m = bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", bayesglmm.load_sleepstudy())
>>> m.parameter_names[:2]
['Intercept', 'b[Days]']
"""

from __future__ import annotations

from typing import Any

from ..backend import check_backend
from ..codegen import generate
from ..families import get_family
from ..prepare import prepare_frame
from ..spec import build_spec
from .model import Model

__all__ = ["WRAPPERS", "glm", "glmer", "lm", "lmer"]


def glmer(
    formula: str,
    data: Any,
    family: str = "gaussian",
    prior: Any = None,
    *,
    y_range: Any = None,
    contrasts: str = "treatment",
    dropna: bool = False,
    factors: list[str] | tuple[str, ...] | None = None,
    trials: str | None = None,
    levels: list[Any] | tuple[Any, ...] | None = None,
    within: dict[str, Any] | None = None,
    cwc: Any = None,
    gmc: Any = None,
    centering: Any = None,
    resid_corr: str | None = None,
    resid_time: str | None = None,
    resid_group: str | None = None,
    fixed: dict[str, float] | None = None,
    category_specific: bool | None = None,
    zi: str | None = None,
    param: str | dict[str, str] = "auto",
    backend: str = "auto",
) -> Model:
    """Generalized linear mixed model from an lme4-style formula.

    Parameters
    ----------
    formula : str
        E.g. ``"sat ~ talk + perf + (1 | group)"``. ``offset(log(exposure))`` adds a known term
        to the linear predictor (poisson, neg_binomial, ...); ``cbind(successes, failures)``
        is a binomial response (entries may be expressions such as ``size - incidence``).
    data : pandas.DataFrame
        The data; not modified.
    family : str
        gaussian, lognormal, student_t, gamma, bernoulli, binomial, poisson, neg_binomial,
        ordered, sequential, beta, zero_inflated_poisson, zero_inflated_neg_binomial.
    prior : Prior, str or dict, optional
        ``prior_flat()`` (default), ``prior_normal()``, ``prior_weak()``, ... , a name, or a
        dict of per-parameter overrides.
    y_range : (float, float), optional
        Plausible response range; turns the flat default into the weakly informative prior.
    contrasts : {"treatment", "sum"}
        Coding of categorical predictors.
    dropna : bool
        Drop rows with missing values in the used columns (default: an error names them).
    factors : list of str, optional
        Numeric columns to treat as categorical predictors.
    trials : str, optional
        Binomial trials column (instead of ``cbind(successes, failures)``).
    levels : list, optional
        Order of the categories of an ordinal response, or ``[level for 0, level for 1]`` of
        a bernoulli/binomial text response.
    within : dict, optional
        Wide outcome ``cbind(y_t1, y_t2, y_t3)`` (or a column range ``cbind(y1:y3)``):
        ``{"time": 3}`` or ``{"time": ["t1", "t2", "t3"]}``; several within factors cross the
        columns, the last varying fastest; the stacked response is ``y``. With
        ``family="binomial"``, ``cbind(successes, failures)`` keeps its binomial meaning.
    gmc, centering : str or list of str, optional
        Grand-mean centring (aliases): a column, a list or ``"all"``.
    cwc : dict, optional
        ``{"cluster": g, "pars": [...]}``: centring within cluster (adds ``x_cwc`` and
        ``x_cm``; x itself becomes x_cwc when the formula uses neither). The data options are
        applied in the order within, gmc, cwc, before the formula is matched to the data.
    resid_corr : {"ar1", "cs"}, optional
        Gaussian: correlated residuals within the blocks of ``resid_group`` (default: the
        grouping factor of the random-effect term), ordered by ``resid_time`` (AR(1) lags =
        differences of its integer values); parameter ``rho_resid``.
    resid_time, resid_group : str, optional
        Columns for ``resid_corr``.
    fixed : dict, optional
        ``{"b[talk]": 0}``: hold coefficients at values (through data; their own prior terms
        are dropped), as ``fit.bayes_factor(fixed=...)`` does for the restricted model.
    category_specific : bool, optional
        ``family="sequential"``: False gives one coefficient per predictor common to all
        transitions (brms's ``sratio``), named ``b[x]``; the default gives each transition its
        own coefficient, ``b[x,1->2]``, ``b[x,2->3]``, ...
    zi : str, optional
        Zero-inflated families: the formula of the zero-inflation probability,
        logit P(structural zero) = X_zi b_zi (default ``"~ 1"``); its coefficients are
        ``b_zi[Intercept]``, ``b_zi[x]``, ...
    param : {"auto", "centered", "noncentered"} or dict
        How the group-level effects are sampled: ``"noncentered"`` (standardised effects, right
        for groups with few observations), ``"centered"`` (the effects themselves, right when
        every group has many observations) or ``"auto"`` (default: centred for a term whose
        groups' data are at least 1.5 times as informative as the group-level distribution,
        n sd^2 / sigma^2 for one coefficient, estimated from the data; see
        :mod:`bayesglmm.reparam`). A dict sets it per grouping factor
        or term, e.g. ``{"Subject": "centered"}`` or ``{"(Days | Subject)": "noncentered"}``;
        terms not named are ``"auto"``. The model and every result are the same either way;
        only the sampler's efficiency differs (see docs/inference.md).
    backend : {"auto", "specific", "generic"}
        Which compiled Stan program fits the model. Every family has one precompiled
        *generic* program that takes the model's structure (design columns, up to 6
        grouping terms, offsets, held coefficients, residual correlation, the prior of each
        parameter class) as data: it is built once per machine and then fits a new formula
        without a C++ compile, with the same parameters and log density as the model's own
        program. ``"auto"`` (default) uses it when it covers the model and otherwise compiles
        the model's own (*specific*) program, with a one-line note saying why (shrinkage
        priors, more than 6 grouping terms, no intercept); ``"specific"`` always compiles
        the model's own program; ``"generic"`` insists and raises a ValueError naming what
        the generic program cannot cover. The fit header and ``fit.backend`` say which
        program ran; ``print_code()`` and ``export()`` always show the specific program.

    Returns
    -------
    Model
        Unfitted; fit it with ``sample()``, ``optimize()`` or ``classic()``.

    Examples
    --------
    >>> import bayesglmm
    >>> m = bayesglmm.glmer("Reaction ~ Days + (Days | Subject)", bayesglmm.load_sleepstudy())
    >>> m.parameter_names[:3]
    ['Intercept', 'b[Days]', 'sigma']
    """
    family = get_family(family).with_category_specific(category_specific)
    model = _build("glmer", formula, data, family=family, prior=prior, y_range=y_range,
                   contrasts=contrasts, dropna=dropna, factors=factors, trials=trials,
                   levels=levels, zi=zi, **_options(locals()))
    if category_specific is not None:  # saved fits record the family by name: keep the choice
        model._build_args["category_specific"] = category_specific
    return model


def lmer(
    formula: str,
    data: Any,
    prior: Any = None,
    *,
    y_range: Any = None,
    contrasts: str = "sum",
    dropna: bool = False,
    factors: list[str] | tuple[str, ...] | None = None,
    within: dict[str, Any] | None = None,
    cwc: Any = None,
    gmc: Any = None,
    centering: Any = None,
    resid_corr: str | None = None,
    resid_time: str | None = None,
    resid_group: str | None = None,
    fixed: dict[str, float] | None = None,
    param: str | dict[str, str] = "auto",
    backend: str = "auto",
) -> Model:
    """Linear mixed model: ``glmer(family="gaussian")`` with sum-to-zero contrasts by default.

    Parameters
    ----------
    formula, data, prior, y_range, dropna, factors, within, cwc, gmc, centering, resid_corr, resid_time, resid_group, fixed, param
        As for :func:`glmer`.
    contrasts : {"sum", "treatment"}
        "sum" (default): sum-to-zero coding of factors, as lmerTest users set it for type III
        tests; "treatment": R's default dummy coding.
    backend : {"auto", "specific", "generic"}
        The precompiled generic program of the family (no compile; ``"auto"``, the default,
        when it covers the model) or the model's own program; see :func:`glmer`.

    Returns
    -------
    Model

    Examples
    --------
    >>> import bayesglmm
    >>> m = bayesglmm.lmer("Reaction ~ Days + (1 | Subject)", bayesglmm.load_sleepstudy())
    >>> m.classic().summary()  # doctest: +SKIP
    """
    return _build("lmer", formula, data, family="gaussian", prior=prior, y_range=y_range,
                  contrasts=contrasts, dropna=dropna, factors=factors, **_options(locals()))


def glm(
    formula: str,
    data: Any,
    family: str = "gaussian",
    prior: Any = None,
    *,
    y_range: Any = None,
    contrasts: str = "treatment",
    dropna: bool = False,
    factors: list[str] | tuple[str, ...] | None = None,
    trials: str | None = None,
    levels: list[Any] | tuple[Any, ...] | None = None,
    within: dict[str, Any] | None = None,
    cwc: Any = None,
    gmc: Any = None,
    centering: Any = None,
    resid_corr: str | None = None,
    resid_time: str | None = None,
    resid_group: str | None = None,
    fixed: dict[str, float] | None = None,
    backend: str = "auto",
) -> Model:
    """Generalized linear model (no random-effect terms), treatment contrasts by default.

    Parameters
    ----------
    formula, data, family, prior, y_range, contrasts, dropna, factors, trials, levels
        As for :func:`glmer`; the formula may not contain random-effect terms ``( | )``.
    within, cwc, gmc, centering, resid_corr, resid_time, resid_group, fixed
        As for :func:`glmer`.
    backend : {"auto", "specific", "generic"}
        The precompiled generic program of the family (no compile; ``"auto"``, the default,
        when it covers the model) or the model's own program; see :func:`glmer`.

    Returns
    -------
    Model

    Examples
    --------
    >>> import pandas as pd, bayesglmm
    >>> df = pd.DataFrame({"y": [0, 1, 1, 0, 1, 1], "x": [0.1, 0.5, 0.9, 0.2, 0.7, 0.8]})
    >>> bayesglmm.glm("y ~ x", df, family="bernoulli").parameter_names
    ['Intercept', 'b[x]']
    """
    _no_bars(formula, "glm")
    return _build("glm", formula, data, family=family, prior=prior, y_range=y_range,
                  contrasts=contrasts, dropna=dropna, factors=factors, trials=trials,
                  levels=levels, **_options(locals()))


def lm(
    formula: str,
    data: Any,
    prior: Any = None,
    *,
    y_range: Any = None,
    contrasts: str = "treatment",
    dropna: bool = False,
    factors: list[str] | tuple[str, ...] | None = None,
    within: dict[str, Any] | None = None,
    cwc: Any = None,
    gmc: Any = None,
    centering: Any = None,
    resid_corr: str | None = None,
    resid_time: str | None = None,
    resid_group: str | None = None,
    fixed: dict[str, float] | None = None,
    backend: str = "auto",
) -> Model:
    """Linear model (gaussian, no random-effect terms), treatment contrasts by default.

    Parameters
    ----------
    formula, data, prior, y_range, contrasts, dropna, factors, within, cwc, gmc, centering, resid_corr, resid_time, resid_group, fixed
        As for :func:`glmer`; the formula may not contain random-effect terms ``( | )``.
    backend : {"auto", "specific", "generic"}
        The precompiled generic program of the family (no compile; ``"auto"``, the default,
        when it covers the model) or the model's own program; see :func:`glmer`.

    Returns
    -------
    Model

    Examples
    --------
    >>> import pandas as pd, bayesglmm
    >>> df = pd.DataFrame({"y": [1.0, 2.1, 2.9, 4.2], "x": [1, 2, 3, 4]})
    >>> bayesglmm.lm("y ~ x", df).parameter_names
    ['Intercept', 'b[x]', 'sigma']
    """
    _no_bars(formula, "lm")
    return _build("lm", formula, data, family="gaussian", prior=prior, y_range=y_range,
                  contrasts=contrasts, dropna=dropna, factors=factors, **_options(locals()))


WRAPPERS = {"glmer": glmer, "lmer": lmer, "glm": glm, "lm": lm}


def _no_bars(formula: Any, wrapper: str) -> None:
    if isinstance(formula, str) and "|" in formula:
        raise ValueError(
            f"{wrapper}() fits models without random effects, but the formula has a "
            f"random-effect term ('|'): use {'lmer' if wrapper == 'lm' else 'glmer'}() instead."
        )


_OPTIONS = ("within", "cwc", "gmc", "centering", "resid_corr", "resid_time", "resid_group",
            "fixed", "backend", "param")


def _options(args: dict[str, Any]) -> dict[str, Any]:
    """The data/residual options of a wrapper call (its locals())."""
    return {k: args[k] for k in _OPTIONS if k in args}


def _build(wrapper: str, formula: Any, data: Any, *, family: Any, prior: Any, y_range: Any,
           contrasts: str, dropna: bool, factors: Any = None, trials: Any = None,
           levels: Any = None, within: Any = None, cwc: Any = None, gmc: Any = None,
           centering: Any = None, resid_corr: Any = None, resid_time: Any = None,
           resid_group: Any = None, fixed: Any = None, zi: Any = None,
           param: Any = "auto", backend: str = "auto") -> Model:
    check_backend(backend)

    if not isinstance(formula, str) or not formula.strip():
        raise ValueError(f"formula must be a non-empty string like 'y ~ x + (1 | g)', got {formula!r}")
    if contrasts not in ("treatment", "sum"):
        raise ValueError(f"contrasts must be 'treatment' or 'sum', not {contrasts!r}")
    if not isinstance(dropna, bool):
        raise TypeError(f"dropna must be True or False, not {dropna!r}")
    if isinstance(factors, str):
        factors = [factors]
    if factors is not None and not all(isinstance(c, str) for c in factors):
        raise TypeError(f"factors must be a list of column names, got {factors!r}")
    frame = prepare_frame(formula, data, family=get_family(family), within=within, cwc=cwc,
                          gmc=gmc, centering=centering)
    spec = build_spec(frame.formula, frame.data, family=family, prior=prior, contrasts=contrasts,
                      y_range=y_range, dropna=dropna, allow_random=wrapper in ("glmer", "lmer"),
                      factors=factors, trials=trials, levels=levels, resid_corr=resid_corr,
                      resid_time=resid_time, resid_group=resid_group, hold=fixed, zi=zi,
                      param=param)
    program = generate(spec)
    fam = getattr(getattr(spec, "family", None), "name", None) or str(family)
    model = Model(program, wrapper=wrapper, formula=formula.strip(), family=fam, prior=prior,
                  backend=backend)
    model.data_notes = frame.notes  # wide reshaping / centring (not part of the spec)
    # the wrapper and its arguments, for update(), simulate() and fit_many()
    model._builder = WRAPPERS[wrapper]
    model._build_args = dict(formula=formula, data=data, family=family, prior=prior,
                             y_range=y_range, contrasts=contrasts, dropna=dropna, factors=factors,
                             trials=trials, levels=levels, within=within, cwc=cwc, gmc=gmc,
                             centering=centering, resid_corr=resid_corr, resid_time=resid_time,
                             resid_group=resid_group, fixed=fixed, zi=zi, param=param,
                             backend=backend)
    return model
