"""Approximate inference through CmdStan: ADVI (``Model.variational()``) and Pathfinder
(``Model.pathfinder()``).

Both return a :class:`VariationalFit`, which shares the MCMC fit class (summary, draws, idata,
plots, effects, predictions): independent ADVI runs are stored as chains. Each fit warns that the
approximation may underestimate posterior uncertainty and reports the Pareto k of Pareto-smoothed
importance sampling (PSIS, arviz) on the log density ratios ``log p - log q`` of its draws
(k > 0.7: the approximation is unreliable as a proposal for the posterior).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..core.arviz_adapter import load_arviz
from ..core.naming import log_lik_names, resolve_params
from ..core.validate import check_int, check_seed
from ..results import MCMCFit
from ..toolchain._common import stop_children_on_interrupt
from .loglik import computes_on_demand, log_lik_model, param_columns, unconstrain_rows
from .sampling import cmdstan_output_errors, new_seed, quiet_cmdstanpy

__all__ = [
    "VariationalFit",
    "VariationalWarning",
    "pareto_k",
    "run_advi",
    "run_pathfinder",
]

METHODS = ("meanfield", "fullrank")
K_RELIABLE = 0.7


class VariationalWarning(UserWarning):
    """Posterior uncertainty from an approximation (ADVI, Pathfinder) may be underestimated."""


def pareto_k(log_ratio: np.ndarray) -> tuple[np.ndarray, float]:
    """PSIS on log importance ratios (log p - log q): (normalised log weights, Pareto k)."""
    az = load_arviz()
    lr = np.asarray(log_ratio, dtype=float).ravel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lw, k = az.psislw(lr - np.max(lr))
    return np.asarray(lw), float(k)


class VariationalFit(MCMCFit):
    """Draws from a variational approximation (ADVI or Pathfinder) in the MCMC fit class.

    Attributes as :class:`~bayesglmm.results.MCMCFit`, plus ``algorithm`` ("meanfield",
    "fullrank" or "pathfinder"), ``pareto_k`` (largest PSIS Pareto k over the runs; NaN when
    not available) and ``stan_fits`` (the cmdstanpy result objects). ``lp`` holds the log
    density of each draw (Stan's ``log_p__``/``lp__``).
    """

    method = "variational"

    def __init__(self, model: Any, params: Any, draws: np.ndarray, log_density: np.ndarray,
                 log_lik: np.ndarray | None, *, algorithm: str, pareto_k: float, seed: int,
                 elapsed: float, stan_fits: list, settings: str):
        C, D, _ = draws.shape
        super().__init__(model, params, draws, {"lp": log_density}, log_lik, chains=C, warmup=0,
                         sampling=D, seed=seed, elapsed=elapsed, stan_fit=stan_fits[0])
        self.algorithm = algorithm
        self.pareto_k = float(pareto_k)
        self.stan_fits = stan_fits
        self._settings = settings

    def _method_lines(self) -> list[str]:
        name = "Pathfinder" if self.algorithm == "pathfinder" else f"ADVI, {self.algorithm}"
        k = f"{self.pareto_k:.2f}" if np.isfinite(self.pareto_k) else "NA"
        lines = [
            f"Variational inference via Stan ({name})",
            f"{self._settings}, draws: {self.sampling}",
            f"Pareto k (PSIS): {k}"
            + (" (> 0.7: the approximation is unreliable)" if self.pareto_k > K_RELIABLE else ""),
            "Note: uncertainty (sd, intervals) may be underestimated by the approximation",
        ]
        return lines


def _warn(algorithm: str, k: float) -> None:
    msg = (f"{algorithm} is an approximation: posterior uncertainty (sd, intervals) may be "
           f"underestimated; Pareto k = {k:.2f}" if np.isfinite(k) else
           f"{algorithm} is an approximation: posterior uncertainty may be underestimated")
    if np.isfinite(k) and k > K_RELIABLE:
        msg += " (> 0.7: the approximation is unreliable; use sample())"
    warnings.warn(msg, VariationalWarning, stacklevel=4)


def _columns(stan_fit: Any, arr: np.ndarray, program: Any):
    cols = list(stan_fit.column_names)
    pos = {c: i for i, c in enumerate(cols)}
    params = resolve_params(program, cols)
    draws = arr[:, [pos[p.stan] for p in params]]
    ll = log_lik_names(cols)
    log_lik = arr[:, [pos[c] for c in ll]] if ll else None
    return params, draws, log_lik, pos


@contextlib.contextmanager
def _scratch(kind: str) -> Iterator[str]:
    """A directory of its own for CmdStan's output files of one run, removed afterwards (the
    draws are read into memory first), also when the run fails or is interrupted."""
    out = tempfile.mkdtemp(prefix=f"bayesglmm-{kind}-")
    try:
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _unconstrained(model: Any, fit: Any, arr: np.ndarray) -> np.ndarray | None:
    """The draws ``arr`` (draw, column) of a CmdStan run on the unconstrained scale when the
    program ran without its pointwise log-likelihood (large data: computed from these on
    demand, also after saving and loading the fit), else None."""
    if not computes_on_demand(model.run_program.data):
        return None
    bs = log_lik_model(model)
    return unconstrain_rows(bs, arr[:, param_columns(list(fit.column_names), bs)])


def _check(seed: Any, draws: Any) -> int:

    check_int("draws", draws, 1)
    seed = check_seed(seed)
    return new_seed() if seed is None else seed


def run_advi(model: Any, *, method: str = "meanfield", iter: int = 5000, draws: int = 1000,
             seed: int | None = None, tol_rel_obj: float = 0.005, num_estimate: int = 1,
             verbose: bool = True) -> VariationalFit:
    """ADVI through CmdStan; ``num_estimate`` independent runs (seeds ``seed + k``) are stored
    as chains. See :meth:`bayesglmm.Model.variational`."""

    if method not in METHODS:
        raise ValueError(f"method must be 'meanfield' or 'fullrank', not {method!r}")
    check_int("iter", iter, 1)
    check_int("num_estimate", num_estimate, 1)
    if isinstance(tol_rel_obj, bool) or not isinstance(tol_rel_obj, (int, float)) or not tol_rel_obj > 0:
        raise ValueError(f"tol_rel_obj must be a positive number, got {tol_rel_obj!r}")
    seed = _check(seed, draws)
    t0 = time.perf_counter()
    cm = model.compile(verbose).cmdstan_model()
    runs, fits, ks = [], [], []
    for k in range(num_estimate):
        with _scratch("advi") as out, quiet_cmdstanpy(), \
                stop_children_on_interrupt(cm.exe_file), cmdstan_output_errors(out):
            try:
                vb = cm.variational(data=model.run_program.data, algorithm=method, iter=iter,
                                    draws=draws, seed=(seed + k) % (2**31 - 1),
                                    tol_rel_obj=float(tol_rel_obj), require_converged=False,
                                    show_console=False, output_dir=out)
            except RuntimeError as e:
                raise RuntimeError(f"ADVI ({method}) failed: {e}") from None
            arr = np.asarray(vb.variational_sample, dtype=float)  # read before the removal
        params, d, ll, pos = _columns(vb, arr, model.program)
        log_p = arr[:, pos["log_p__"]]
        ks.append(pareto_k(log_p - arr[:, pos["log_g__"]])[1])
        runs.append((d, log_p, ll, _unconstrained(model, vb, arr)))
        fits.append(vb)
    k_max = max(ks)
    _warn(f"ADVI ({method})", k_max)
    log_lik = None if runs[0][2] is None else np.stack([r[2] for r in runs])
    fit = VariationalFit(
        model, params, np.stack([r[0] for r in runs]), np.stack([r[1] for r in runs]), log_lik,
        algorithm=method, pareto_k=k_max, seed=seed, elapsed=time.perf_counter() - t0,
        stan_fits=fits, settings=f"Runs: {num_estimate}, iter: {iter}, tol_rel_obj: {tol_rel_obj}",
    )
    if runs[0][3] is not None:
        fit.unconstrained = np.stack([r[3] for r in runs])
    return fit


def run_pathfinder(model: Any, *, draws: int = 1000, num_paths: int = 4, seed: int | None = None,
                   verbose: bool = True) -> VariationalFit:
    """Multi-path Pathfinder through CmdStan; the ``num_paths * draws`` approximate draws are
    importance-resampled (PSIS weights from arviz) to ``draws``. See
    :meth:`bayesglmm.Model.pathfinder`."""

    check_int("num_paths", num_paths, 1)
    seed = _check(seed, draws)
    t0 = time.perf_counter()
    cm = model.compile(verbose).cmdstan_model()
    with _scratch("pathfinder") as out, quiet_cmdstanpy(), \
            stop_children_on_interrupt(cm.exe_file), cmdstan_output_errors(out):
        try:
            pf = cm.pathfinder(data=model.run_program.data, draws=draws * num_paths,
                               num_paths=num_paths, num_single_draws=draws, psis_resample=False,
                               seed=seed, show_console=False, output_dir=out)
        except RuntimeError as e:
            raise RuntimeError(f"Pathfinder failed: {e}") from None
        arr = np.asarray(pf.draws(), dtype=float)  # read before the removal
    params, d, ll, pos = _columns(pf, arr, model.program)
    log_p = arr[:, pos["lp__"]]
    ok = np.isfinite(log_p) & np.isfinite(arr[:, pos["lp_approx__"]])
    lw, k = pareto_k(log_p[ok] - arr[ok, pos["lp_approx__"]])
    w = np.exp(lw - np.max(lw))
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(ok)[rng.choice(int(ok.sum()), size=draws, replace=True, p=w / w.sum())]
    _warn("Pathfinder", k)
    fit = VariationalFit(
        model, params, d[idx][None], log_p[idx][None], None if ll is None else ll[idx][None],
        algorithm="pathfinder", pareto_k=k, seed=seed, elapsed=time.perf_counter() - t0,
        stan_fits=[pf], settings=f"Paths: {num_paths}, PSIS resampling of {draws * num_paths}",
    )
    unc = _unconstrained(model, pf, arr[idx])
    if unc is not None:
        fit.unconstrained = unc[None]
    return fit

