"""Prior objects as users build them (:func:`prior_normal`, :func:`prior_weak`, :func:`prior_flat`,
:func:`prior_rhs`, :func:`prior_ssp`, :func:`prior_jzs`) and :func:`make_prior`, which accepts a
prior object, a name or a dict. A :class:`Prior` only stores the user's choices."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..families import EXTRA_PARAMS
from .table import PRIOR_KINDS, PriorKind

__all__ = ["PRIOR_NAMES", "Prior", "make_prior", "prior_flat", "prior_jzs", "prior_normal", "prior_rhs", "prior_ssp", "prior_weak"]


PRIOR_NAMES = tuple(PRIOR_KINDS)  # ("flat", "normal", "weak", "rhs", "ssp", "jzs")


_EXTRA_ARGS = tuple(p.prior_arg for p in EXTRA_PARAMS if not p.always_prior) + (
    "cutpoint_sd", "lkj_eta")


@dataclass(frozen=True)
class Prior:
    """A user's prior choice (not yet tied to data). Build with prior_flat/normal/weak."""

    name: str  # a key of PRIOR_KINDS: 'flat' | 'normal' | 'weak' | 'rhs' | 'ssp' | 'jzs'
    args: tuple[tuple[str, Any], ...] = ()  # constructor arguments, sorted by name
    y_range: tuple[float, float] | None = None
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def kind(self) -> PriorKind:
        """The prior's row of the prior table (:data:`PRIOR_KINDS`): what the package asks
        about it (``proper``, ``joint_b``, ``ttest``)."""
        return PRIOR_KINDS[self.name]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of one argument of the prior.

        Parameters
        ----------
        key : str
            The argument's name (e.g. ``"b_sd"``).
        default : Any
            Returned when the prior has no such argument.

        Returns
        -------
        Any
        """
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
    """Flat (improper uniform) priors: no prior terms, no centring. The default.

    Returns
    -------
    Prior
        Pass it as ``prior=`` to :func:`bayesglmm.lmer`, :func:`bayesglmm.glmer`, ...

    Examples
    --------
    >>> bayesglmm.prior_flat()
    prior_flat()
    """
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
    b_zi_sd: float | None = 10,
    y_range: tuple[float, float] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Prior:
    """Normal priors.

    Intercept_c ~ Normal(0, mu_sd) (mu_sd falls back to Intercept_sd), b_j ~ Normal(0, b_sd),
    sigma ~ Exponential(sigma_rate), every random-effect SD ~ Exponential(tau_rate).
    nu, shape, phi ~ Exponential(rate) and cutpoints ~ Normal(0, cutpoint_sd) only if given:
    otherwise these parameters have no prior (flat). LKJ(lkj_eta) on correlations (default 1).
    The zero-inflated families' coefficients of the zero part (intercept included, logit
    scale): b_zi_j ~ Normal(0, b_zi_sd). Any argument set to None drops that prior term.
    ``y_range`` is accepted for symmetry with prior_weak (it has no effect on the normal prior).

    Parameters
    ----------
    Intercept_sd, mu_sd : float or None
        SD of the normal prior of the (centred) intercept; ``mu_sd`` falls back to
        ``Intercept_sd``.
    b_sd : float or None
        SD of the normal priors of the coefficients.
    sigma_rate, tau_rate : float or None
        Rates of the exponential priors of sigma and of the random-effect SDs.
    nu_rate, shape_rate, phi_rate : float, optional
        Rates of exponential priors of the families' extra parameters (none unless given).
    cutpoint_sd : float, optional
        SD of normal priors of the cutpoints of ordinal families.
    lkj_eta : float, optional
        LKJ shape of the random-effect correlations (default 1).
    b_zi_sd : float or None
        SD of the normal priors of the zero-inflation coefficients.
    y_range : (float, float), optional
        Accepted for symmetry with :func:`prior_weak`; no effect here.
    overrides : dict, optional
        Per-parameter priors, e.g. ``{"b[talk]": (0, 1)}`` (mean, sd) or an SD.

    Returns
    -------
    Prior
        Pass it as ``prior=`` to :func:`bayesglmm.lmer`, :func:`bayesglmm.glmer`, ...

    Raises
    ------
    ValueError
        An argument that is not a positive number (the message names it).

    Examples
    --------
    >>> bayesglmm.prior_normal(b_sd=2.5).get("b_sd")
    2.5
    """
    args = {
        "Intercept_sd": _check_positive("Intercept_sd", Intercept_sd),
        "mu_sd": _check_positive("mu_sd", mu_sd),
        "b_sd": _check_positive("b_sd", b_sd),
        "b_zi_sd": _check_positive("b_zi_sd", b_zi_sd),
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
    """Weakly-informative, y_range-scaled priors.

    Continuous families (gaussian, lognormal, student_t) need ``y_range`` (here or on the wrapper;
    the wrapper's wins). Constants: see :func:`weak_constants`. The zero part of the
    zero-inflated families gets the weak prior of a logistic regression: b_zi[Intercept] ~
    Normal(0, max_beta * pi / sqrt(3)) and b_zi_j ~ Normal(0, max_beta * (pi / sqrt(3)) / sd(x_j))
    for the other columns of its design.

    Parameters
    ----------
    sd_ratio : float
        The residual SD's prior scale as a share of the response range.
    max_beta : float
        The largest plausible standardised coefficient.
    y_range : (float, float), optional
        The plausible range of the response (needed for continuous families).
    nu_rate, shape_rate, phi_rate : float, optional
        Rates of exponential priors of the families' extra parameters.
    cutpoint_sd : float, optional
        SD of normal priors of the cutpoints of ordinal families.
    lkj_eta : float, optional
        LKJ shape of the random-effect correlations.
    overrides : dict, optional
        Per-parameter priors, as in :func:`prior_normal`.

    Returns
    -------
    Prior
        Pass it as ``prior=`` to :func:`bayesglmm.lmer`, :func:`bayesglmm.glmer`, ...

    Raises
    ------
    ValueError
        An argument that is not a positive number (the message names it).

    Examples
    --------
    >>> bayesglmm.prior_weak(y_range=(1, 5))
    prior_weak(cutpoint_sd=None, lkj_eta=None, max_beta=1.0, nu_rate=None, phi_rate=None, sd_ratio=0.5, shape_rate=None, y_range=(1.0, 5.0))
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
    """Regularized horseshoe on the coefficients (Piironen & Vehtari 2017).

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

    Parameters
    ----------
    expected_vars : float
        Prior guess of the number of non-zero coefficients (p0).
    slab_scale, slab_df : float
        Scale and degrees of freedom of the slab.
    Intercept_sd : float, optional
        SD of a normal prior of the intercept (none unless given).
    sigma_rate, sd_rate : float, optional
        Rates of exponential priors of sigma and the random-effect SDs (none unless given).
    y_range : (float, float), optional
        The plausible range of the response (needed for continuous families).
    **extras : float
        Rates of the families' extra parameters (``nu_rate``, ``shape_rate``, ``phi_rate``,
        ``cutpoint_sd``, ``lkj_eta``).

    Returns
    -------
    Prior
        Pass it as ``prior=`` to :func:`bayesglmm.lmer`, :func:`bayesglmm.glmer`, ...

    Raises
    ------
    ValueError
        An argument that is not a positive number (the message names it).
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
    """Spike-and-slab on the coefficients: b_j = beta_raw_j * r_j * tau_j,
    beta_raw_j ~ Laplace(0, 0.5), r_j in (0.001, 0.999) with logit(r_j) ~ N(logit(ssp_ratio), 3),
    tau_j ~ Exponential(rate = sd(X_j) / (max_beta * base)). Same intercept/sigma/SD rule as
    prior_rhs; continuous families need ``y_range``. Stan form: non-centred (beta_raw, r, tau
    sampled). ``sample()`` defaults to ``delta=0.99`` with this prior (prior table).

    Parameters
    ----------
    ssp_ratio : float
        Prior share of non-zero coefficients.
    max_beta : float
        The largest plausible standardised coefficient.
    Intercept_sd : float, optional
        SD of a normal prior of the intercept (none unless given).
    sigma_rate, sd_rate : float, optional
        Rates of exponential priors of sigma and the random-effect SDs (none unless given).
    y_range : (float, float), optional
        The plausible range of the response (needed for continuous families).
    **extras : float
        Rates of the families' extra parameters (``nu_rate``, ``shape_rate``, ``phi_rate``,
        ``cutpoint_sd``, ``lkj_eta``).

    Returns
    -------
    Prior
        Pass it as ``prior=`` to :func:`bayesglmm.lmer`, :func:`bayesglmm.glmer`, ...

    Raises
    ------
    ValueError
        An argument that is not a positive number (the message names it).
    """
    args = {"ssp_ratio": float(ssp_ratio), "max_beta": _check_positive("max_beta", max_beta),
            **_shrinkage_extras(Intercept_sd, sigma_rate, sd_rate, _known_extras(extras, "ssp"))}
    if not 0 < args["ssp_ratio"] < 1:
        raise ValueError(f"prior_ssp: ssp_ratio must be in (0, 1), got {ssp_ratio!r}.")
    if args["max_beta"] is None:
        raise ValueError("prior_ssp: max_beta must be a positive number.")
    return Prior("ssp", tuple(sorted(args.items())), _norm_y_range(y_range))


def prior_jzs(r: float = 0.707) -> Prior:
    """Jeffreys-Zellner-Siow prior (continuous families): coefficients jointly
    multivariate Cauchy(0, (r sigma)^2 (X_c'X_c / N)^-1), p(sigma) proportional to 1/sigma,
    intercept and random-effect SDs flat. In ``ttest()``: delta ~ Cauchy(0, r).

    Parameters
    ----------
    r : float
        Scale of the Cauchy prior (0.707: "medium", as in the BayesFactor package).

    Returns
    -------
    Prior
        Pass it as ``prior=`` to :func:`bayesglmm.lmer`, :func:`bayesglmm.glmer`, ...

    Raises
    ------
    ValueError
        ``r`` is not a positive number.
    """
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
    y_range rule: a y_range given with the flat prior turns it into
    prior_weak(); the wrapper's y_range wins over the prior's.

    Parameters
    ----------
    prior : None, Prior, str or dict
        The ``prior=`` argument.
    y_range : (float, float), optional
        The wrapper's ``y_range=``.

    Returns
    -------
    Prior

    Raises
    ------
    ValueError
        An unknown prior name or argument.
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
