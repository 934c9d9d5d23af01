"""How each fit class is saved and loaded (registered with :mod:`bayesglmm.persist`).

* MCMC (Stan or nutpie) and variational fits keep their draws: the reported quantities, the
  sampler statistics, the pointwise log-likelihood when the program wrote it (one computed on
  demand is computed again after loading), CmdStan's full output (every column: bridge
  sampling and the log-likelihood on demand unconstrain the draws from it) or the
  unconstrained draws (nutpie; variational fits of large data).
* MAP and classic fits keep their estimate table and the settings of the call; loading runs the
  (deterministic) optimiser again with those settings, which rebuilds what the table alone does
  not hold (the covariance on the unconstrained scale used by lsmeans, anova, predict,
  Satterthwaite df), and checks that it reproduces the saved estimates.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .core.naming import resolve_params
from .inference.variational import VariationalFit
from .persist import Archive, FitFileError, decode, encode, register_fit
from .results import MAPFit, MCMCFit
from .results_classic import ClassicFit

__all__ = ["SavedStanOutput"]


class SavedStanOutput:
    """CmdStan's output read back from a saved fit: the column names and the draws array
    (draw, chain, column), with the two accessors the package uses (``column_names`` and
    ``draws(concat_chains=False)``)."""

    def __init__(self, column_names: list[str], draws: np.ndarray):
        self.column_names = tuple(column_names)
        self._draws = draws

    def draws(self, concat_chains: bool = False) -> np.ndarray:
        if concat_chains:
            return self._draws.reshape(-1, self._draws.shape[-1])
        return self._draws


def _params(model: Any, names: list[str], users: list[str]) -> list:
    params = resolve_params(model.program, names)
    if [p.stan for p in params] != names or [p.user for p in params] != users:
        raise FitFileError("the saved draws do not match the parameters of the rebuilt model")
    return params


def _save_draws(fit: MCMCFit, ar: Archive) -> dict[str, Any]:
    ar.put("fit.draws", fit._draws)
    for k, v in fit._stats.items():
        ar.put(f"fit.stats.{k}", v)
    written = fit._log_lik_written  # one computed on demand is computed again after loading
    if written is not None:
        ar.put("fit.log_lik", written)
    s: dict[str, Any] = {
        "params": [p.stan for p in fit._params], "users": [p.user for p in fit._params],
        "stats": list(fit._stats), "log_lik": written is not None,
        "log_lik_deferred": bool(getattr(fit, "log_lik_deferred", False)),
        "chains": fit.chains, "warmup": fit.warmup, "sampling": fit.sampling, "thin": fit.thin,
        "seed": fit.seed, "delta": fit.delta, "max_treedepth": fit.max_treedepth,
        "elapsed": fit.elapsed, "sampler": getattr(fit, "sampler", "stan"),
        "mass_matrix": getattr(fit, "mass_matrix", "diagonal"),
        "mass_matrix_reason": getattr(fit, "mass_matrix_reason", ""),
        "call": encode(getattr(fit, "saved_settings", None) or {}, ar, "fit.call"),
    }
    stan_fit = getattr(fit, "stan_fit", None)
    if stan_fit is not None and isinstance(fit, MCMCFit) and not isinstance(fit, VariationalFit):
        ar.put("fit.stan_output", np.asarray(stan_fit.draws(concat_chains=False), dtype=float))
        s["stan_columns"] = list(stan_fit.column_names)
    if getattr(fit, "unconstrained", None) is not None:
        ar.put("fit.unconstrained", fit.unconstrained)
    return s


def _load_draws(model: Any, s: dict[str, Any], arrays: dict[str, np.ndarray]):
    params = _params(model, list(s["params"]), list(s["users"]))
    draws = arrays["fit.draws"]
    stats = {k: arrays[f"fit.stats.{k}"] for k in s["stats"]}
    log_lik = arrays.get("fit.log_lik") if s["log_lik"] else None
    stan_fit = None
    if "stan_columns" in s:
        stan_fit = SavedStanOutput(list(s["stan_columns"]), arrays["fit.stan_output"])
    return params, draws, stats, log_lik, stan_fit


def _save_mcmc(fit: MCMCFit, ar: Archive) -> dict[str, Any]:
    return _save_draws(fit, ar)


def _load_mcmc(model: Any, s: dict[str, Any], arrays: dict[str, np.ndarray]) -> MCMCFit:
    params, draws, stats, log_lik, stan_fit = _load_draws(model, s, arrays)
    fit = MCMCFit(model, params, draws, stats, log_lik, chains=s["chains"], warmup=s["warmup"],
                  sampling=s["sampling"], thin=s["thin"], seed=s["seed"], delta=s["delta"],
                  max_treedepth=s["max_treedepth"], elapsed=s["elapsed"], stan_fit=stan_fit,
                  sampler=s["sampler"], unconstrained=arrays.get("fit.unconstrained"))
    fit.mass_matrix = s.get("mass_matrix", "diagonal")  # files saved before it was recorded
    fit.mass_matrix_reason = s.get("mass_matrix_reason", "")
    fit.log_lik_deferred = bool(s.get("log_lik_deferred", False))
    fit.saved_settings = decode(s["call"], arrays)
    return fit


def _save_variational(fit: VariationalFit, ar: Archive) -> dict[str, Any]:
    s = _save_draws(fit, ar)
    s.update(algorithm=fit.algorithm, pareto_k=encode(fit.pareto_k, ar, "fit.k"),
             settings=fit._settings)
    return s


def _load_variational(model: Any, s: dict[str, Any], arrays: dict[str, np.ndarray]):
    params, draws, stats, log_lik, _ = _load_draws(model, s, arrays)
    fit = VariationalFit(model, params, draws, stats["lp"], log_lik, algorithm=s["algorithm"],
                         pareto_k=decode(s["pareto_k"], arrays), seed=s["seed"],
                         elapsed=s["elapsed"], stan_fits=[None], settings=s["settings"])
    fit.unconstrained = arrays.get("fit.unconstrained")
    fit.saved_settings = decode(s["call"], arrays)
    return fit


def _save_mode(fit: MAPFit, ar: Archive) -> dict[str, Any]:
    call = getattr(fit, "saved_settings", None)
    if call is None:
        raise FitFileError("this fit was not made by Model.optimize() or Model.classic(): "
                           "its settings are unknown, so it cannot be saved")
    table = fit._table
    ar.put("fit.estimate", table["estimate"].to_numpy(dtype=float))
    ar.put("fit.se", table["se"].to_numpy(dtype=float))
    return {"call": encode(call, ar, "fit.call"), "rows": list(map(str, table.index)),
            "elapsed": fit.elapsed}


def _load_mode(method: str):
    def load(model: Any, s: dict[str, Any], arrays: dict[str, np.ndarray]):
        call = decode(s["call"], arrays)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the warnings were shown when it was fitted
            fit = getattr(model, method)(**call, verbose=False)
        table = fit._table
        est = table["estimate"].to_numpy(dtype=float)
        if list(map(str, table.index)) != list(s["rows"]) or not np.allclose(
                est, arrays["fit.estimate"], rtol=1e-6, atol=1e-9, equal_nan=True):
            raise FitFileError(f"re-running {method}() with the saved settings did not reproduce "
                               "the saved estimates (another bayesglmm or Stan version?)")
        fit.elapsed = s["elapsed"]
        return fit

    return load


register_fit("mcmc", MCMCFit, _save_mcmc, _load_mcmc)
register_fit("variational", VariationalFit, _save_variational, _load_variational)
register_fit("map", MAPFit, _save_mode, _load_mode("optimize"))
register_fit("classic", ClassicFit, _save_mode, _load_mode("classic"))
