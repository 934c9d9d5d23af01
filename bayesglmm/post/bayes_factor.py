"""Bayes factors from bridge sampling.

``fit.bayes_factor(fixed={"b[talk]": 0})`` builds the restricted model -- the same model with
the named parameters held at the given values *through data* (``spec.hold_coefficients``: the
held coefficients and their values are Stan data, their own prior terms are dropped, every other
prior is unchanged) --, samples it with the same settings as ``fit``, bridge-samples both and
reports BF12 = p(y | Model 1) / p(y | Model 2) with Model 1 the fit the method is called on.
``bayes_factor(fit1, fit2)`` compares any two sampled fits of the same data.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bridge import BridgeResult

__all__ = ["BayesFactor", "bayes_factor", "jeffreys_label", "restricted_model"]

# Jeffreys' scale: (lower bound of BF12, label); the Model 2 side mirrors it at 1 / bound
_JEFFREYS = ((100.0, "Decisive"), (10.0, "Strong"), (3.0, "Substantial"), (1.0, "Anecdotal"))


def jeffreys_label(bf: float) -> str:
    """Evidence label of a Bayes factor BF12 on Jeffreys' scale.

    Parameters
    ----------
    bf : float
        The Bayes factor BF12.

    Returns
    -------
    str

    Examples
    --------
    >>> jeffreys_label(20.0)
    'Strong evidence for Model 1'
    """
    if not np.isfinite(bf) and not np.isinf(bf):
        return "NA"
    if bf == 1:
        return "No evidence"
    better, ratio = ("Model 1", bf) if bf > 1 else ("Model 2", 1.0 / bf if bf > 0 else math.inf)
    for bound, word in _JEFFREYS:
        if ratio > bound:
            return f"{word} evidence for {better}"
    return "No evidence"  # pragma: no cover - ratio > 1 always matches the last row


@dataclass
class BayesFactor:
    """Result of a Bayes-factor comparison.

    Attributes
    ----------
    bf : float
        BF12 = exp(logml1 - logml2); > 1 favours Model 1.
    log_bf : float
        logml1 - logml2.
    logml1, logml2 : float
        Bridge-sampling log marginal likelihoods of the two models.
    error : float
        Combined error sqrt(e1^2 + e2^2) of the two estimates' ``error`` (bridgesampling's
        measure, approximately the relative error of the Bayes factor).
    se : float
        Standard error of ``log_bf``: sqrt(se1^2 + se2^2) of the two estimates' delta-method
        standard errors (better calibrated than ``error``; use it for intervals).
    label : str
        Evidence on Jeffreys' scale.
    bridge1, bridge2 : BridgeResult
    fit2 : the fit of Model 2 (the restricted model for ``fixed=``).
    """

    bf: float
    log_bf: float
    logml1: float
    logml2: float
    error: float
    label: str
    bridge1: BridgeResult
    bridge2: BridgeResult
    fit2: Any = None
    fixed: dict[str, float] | None = None
    se: float = math.nan

    def format(self) -> str:
        """The printed form: the two models, their log marginal likelihoods and the Bayes
        factor.

        Returns
        -------
        str
            What ``print()`` shows.
        """
        held = ("; " + ", ".join(f"{k} = {v:g}" for k, v in self.fixed.items())
                if self.fixed else "")
        lines = [
            f"Model 1: {self.bridge1.format()}",
            f"Model 2{held}: {self.bridge2.format()}",
            "",
            "--- Bayes Factor Analysis (Bridge Sampling) ---",
            f"Bayes Factor (BF12) : {_fmt_bf(self.bf)}",
            f"Log Bayes Factor    : {self.log_bf:.3f}",
            f"Evidence            : {self.label}",
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return self.format()


def _fmt_bf(bf: float) -> str:
    if not np.isfinite(bf):
        return str(bf)
    return f"{bf:.3f}" if 1e-3 <= bf < 1e6 else f"{bf:.4e}"


def restricted_model(model: Any, fixed: dict[str, float]) -> Any:
    """The model with the parameters of ``fixed`` held at their values (through data):
    ``model.with_fixed(fixed)`` (formula models and the t-test provide it).

    Parameters
    ----------
    model : Model
        A formula model (or t-test model).
    fixed : dict
        Reported parameter names -> held values.

    Returns
    -------
    Model

    Raises
    ------
    ValueError
        The model has no formula (``from_stan``).
    """
    if not hasattr(model, "with_fixed"):
        raise ValueError("bayes_factor(fixed=...) needs a model built from a formula; for an "
                         "external Stan program fit the restricted program yourself and use "
                         "bayes_factor(fit1, fit2).")
    return model.with_fixed(fixed)


def _check_same_data(fit1: Any, fit2: Any) -> None:
    y1 = _response(fit1)
    y2 = _response(fit2)
    if y1 is not None and y2 is not None and (y1.shape != y2.shape or not np.allclose(y1, y2)):
        raise ValueError("bayes_factor: the two fits are not fitted to the same response data; "
                         "marginal likelihoods of different data cannot be compared.")


def _response(fit: Any) -> np.ndarray | None:
    f = getattr(fit.model, "observed_response", None)
    return None if f is None else f()


def bayes_factor(
    fit1: Any,
    fit2: Any = None,
    *,
    fixed: dict[str, float] | None = None,
    method: str = "normal",
    repetitions: int = 1,
    seed: int | None = None,
    verbose: bool = True,
    **sample_args: Any,
) -> BayesFactor:
    """Bayes factor BF12 of two sampled models of the same data by bridge sampling.

    Parameters
    ----------
    fit1 : MCMCFit
        Model 1 (``sample()`` fit).
    fit2 : MCMCFit, optional
        Model 2; alternatively ``fixed``.
    fixed : dict, optional
        ``{"b[talk]": 0}``: Model 2 is Model 1 with these parameters held at the values (their
        own prior terms removed), sampled with fit1's settings (chains, warmup, sampling, thin,
        seed, delta, max_treedepth, sampler), which ``sample_args`` may override.
    method, repetitions : see :func:`bayesglmm.post.bridge.bridge_sampler`.
    seed : int, optional
        Seed of the bridge-sampling proposal draws.
    verbose : bool
        Print the analysis.

    Returns
    -------
    BayesFactor
    """
    if (fit2 is None) == (fixed is None):
        raise ValueError("bayes_factor needs exactly one of a second fit (bayes_factor(fit1, "
                         "fit2)) or fixed={'b[...]': value}.")
    for i, f in enumerate((fit1, fit2), start=1):
        if f is not None and getattr(f, "method", None) != "sample":
            raise ValueError(f"bayes_factor: fit {i} is not a sample() fit; bridge sampling needs "
                             "posterior draws.")
    if fixed is not None:
        model2 = restricted_model(fit1.model, dict(fixed))
        settings = dict(chains=fit1.chains, warmup=fit1.warmup, sampling=fit1.sampling,
                        thin=fit1.thin, seed=fit1.seed, delta=fit1.delta,
                        max_treedepth=fit1.max_treedepth, verbose=False,
                        sampler=getattr(fit1, "sampler", "stan"))
        settings.update(sample_args)
        fit2 = model2.sample(**settings)
    elif sample_args:
        raise TypeError(f"unexpected arguments {sorted(sample_args)} (sampling settings apply "
                        "only with fixed=).")
    _check_same_data(fit1, fit2)
    b1 = fit1.bridgesampling(method=method, repetitions=repetitions, seed=seed, verbose=False)
    b2 = fit2.bridgesampling(method=method, repetitions=repetitions, seed=seed, verbose=False)
    log_bf = b1.logml - b2.logml
    bf = math.exp(log_bf) if log_bf < 709 else math.inf
    err = math.hypot(b1.error, b2.error)
    se = math.hypot(b1.se, b2.se)
    if np.isfinite(se) and se > 0.2:
        warnings.warn(f"the combined bridge-sampling standard error of the two models is {se:.3f} "
                      "(> 0.2):"
                      " the Bayes factor is uncertain; draw more samples.", RuntimeWarning,
                      stacklevel=2)
    res = BayesFactor(bf, log_bf, b1.logml, b2.logml, err, jeffreys_label(bf), b1, b2, fit2,
                      None if fixed is None else {str(k): float(v) for k, v in fixed.items()}, se)
    if verbose:
        print(res.format())
    return res
