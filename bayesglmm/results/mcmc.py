"""Draws from NUTS or a variational approximation (:class:`MCMCFit`): summaries, draws,
random effects, arviz ``InferenceData``, bridge sampling and Bayes factors."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..core.arviz_adapter import inference_data
from ..core.naming import ParamName
from . import convergence
from .base import Fit
from .summary import (
    SUMMARY_COLUMNS,
    IntFmt,
    backend_lines,
    call_line,
    check_scale,
    fmt_table,
    kde_mode,
    mcmc_summary_table,
    observed_response,
)

__all__ = ["MCMCFit"]


class MCMCFit(Fit):
    """Posterior draws from NUTS (``Model.sample()``).

    Attributes: ``chains``, ``warmup``, ``sampling``, ``thin``, ``seed``, ``elapsed`` (seconds),
    ``sampler`` ("stan" or "nutpie"), ``mass_matrix`` ("diagonal" or "low-rank": nutpie's
    ``low_rank``) with ``mass_matrix_reason``, ``stan_fit`` (the underlying ``cmdstanpy.CmdStanMCMC``;
    None with nutpie), ``unconstrained`` (nutpie's draws on the unconstrained scale, else None).
    """

    method = "sample"
    # True when the sampler ran the program without its log_lik although the data ask for it
    # (nutpie, :func:`bayesglmm.inference.nutpie.defers_log_lik`): computed on demand too
    log_lik_deferred = False

    def __init__(
        self,
        model: Any,
        params: Sequence[ParamName],
        draws: np.ndarray,
        sample_stats: dict[str, np.ndarray],
        log_lik: np.ndarray | None = None,
        *,
        chains: int,
        warmup: int,
        sampling: int,
        thin: int = 1,
        seed: int | None = None,
        delta: float = 0.8,
        max_treedepth: int = 10,
        elapsed: float = math.nan,
        stan_fit: Any = None,
        sampler: str = "stan",
        unconstrained: np.ndarray | None = None,
    ):
        super().__init__(model, params)
        self.sampler = sampler
        # the mass matrix the sampler adapted ("diagonal" or "low-rank", nutpie's
        # low_rank=) and why (low_rank="auto": bayesglmm/inference/nutpie_rule.py)
        self.mass_matrix, self.mass_matrix_reason = "diagonal", ""
        self.threads_per_chain = 1  # > 1: sampled with the threaded program (reduce_sum)
        self.unconstrained = unconstrained  # (chain, draw, D) when the sampler returned them
        self._draws = np.asarray(draws, dtype=float)  # (chain, draw, P)
        self._stats = {k: np.asarray(v) for k, v in sample_stats.items()}
        self._log_lik_written = log_lik  # written by the program (None: on demand, or none)
        self.chains, self.warmup, self.sampling, self.thin = chains, warmup, sampling, thin
        self.seed, self.delta, self.max_treedepth = seed, delta, max_treedepth
        self.elapsed = elapsed
        self.stan_fit = stan_fit

    # raw access --------------------------------------------------------------
    @property
    def _log_lik(self) -> np.ndarray | None:
        """The pointwise log-likelihood (chain, draw, N): as the program wrote it, or computed
        on first use when the program was run without it (large data); None when the program
        has no ``log_lik``."""
        if self._log_lik_written is not None:
            return self._log_lik_written
        cached = self.__dict__.get("_log_lik_computed")
        if cached is None and self.log_lik_on_demand:
            from ..inference.loglik import pointwise_log_lik

            cached = pointwise_log_lik(self.model, unconstrained=self.unconstrained,
                                       stan_output=self.stan_fit)
            self.__dict__["_log_lik_computed"] = cached
        return cached

    @property
    def log_lik_on_demand(self) -> bool:
        """True when the program ran without its pointwise log-likelihood (``compute_log_lik``
        = 0, data above :data:`bayesglmm.codegen.LOG_LIK_IN_PROGRAM_MAX_ROWS` rows, or a nutpie
        run: :attr:`log_lik_deferred`): it is computed from the draws when first needed
        (:meth:`log_lik`, ``loo()``, ``idata``)."""
        if self._log_lik_written is not None:
            return False
        if self.log_lik_deferred:
            return self.unconstrained is not None
        run = getattr(self.model, "run_program", None)
        data = getattr(run, "data", None) or {}
        return int(data.get("compute_log_lik", 1)) == 0

    def log_lik(self) -> np.ndarray:
        """The pointwise log-likelihood ``log p(y_n | theta)`` of every draw.

        Returns
        -------
        ndarray
            Shape (chain, draw, N). Written by the program while sampling for small data; for
            larger data computed on the first call from the draws (BridgeStan, the same
            generated-quantities code) and kept.

        Examples
        --------
        >>> ll = fit.log_lik()  # doctest: +SKIP
        >>> ll.shape  # doctest: +SKIP
        (4, 1000, 180)
        """
        ll = self._log_lik
        if ll is None:
            raise ValueError("this fit has no pointwise log-likelihood: its Stan program has no "
                             "generated quantity 'log_lik'")
        return ll

    @property
    def lp(self) -> np.ndarray:
        """Log posterior per draw incl. Jacobians (Stan ``lp__``), shape (chain, draw)."""
        return self._stats["lp"]

    @property
    def num_divergent(self) -> int:
        """Number of divergent transitions over all chains (after warm-up)."""
        d = self._stats.get("diverging")
        return int(np.sum(d)) if d is not None else 0

    def draws_array(self, inc_random: bool = True) -> tuple[np.ndarray, list[str]]:
        """The draws as one array and the variable names.

        Parameters
        ----------
        inc_random : bool
            Include the standardised random effects ``r_re``.

        Returns
        -------
        draws : numpy.ndarray
            Shape (iteration, chain, variable).
        names : list of str
            The variables' user names.
        """
        sel = self._select(None, inc_random)
        return np.transpose(self._draws[:, :, sel], (1, 0, 2)), [self._params[i].user for i in sel]

    def draws(self, pars: Sequence[str] | str | None = None, inc_random: bool = True) -> pd.DataFrame:
        """The draws as a table, one row per draw.

        Parameters
        ----------
        pars : str or list of str, optional
            Names to select (``"b"`` selects every ``b[...]``); None: every quantity.
        inc_random : bool
            Include the standardised random effects ``r_re``.

        Returns
        -------
        pandas.DataFrame
            Columns ``chain`` (1-based), ``draw`` (1-based within its chain), ``lp``, then
            every selected parameter under its user name.

        Examples
        --------
        >>> fit.draws("b").head()  # doctest: +SKIP
        """
        sel = self._select(pars, inc_random)
        C, D, _ = self._draws.shape
        cols: dict[str, Any] = {
            "chain": np.repeat(np.arange(1, C + 1), D),
            "draw": np.tile(np.arange(1, D + 1), C),
            "lp": self.lp.reshape(-1),
        }
        for i in sel:
            cols[self._params[i].user] = self._draws[:, :, i].reshape(-1)
        return pd.DataFrame(cols)

    # summaries ---------------------------------------------------------------
    def _stacked(self, keys: Sequence[int | str]) -> tuple[np.ndarray, list[int]]:
        """(draws (chain, draw, 1 + k) of ``lp`` and the k parameters among ``keys``, the
        columns of ``keys`` in it): ``lp`` always first, built as the summary always was
        (the memory layout decides the last bit of the sums)."""
        idx = [k for k in keys if k != "lp"]
        arr = np.concatenate([self.lp[:, :, None], self._draws[:, :, idx]], axis=2)
        pos = {k: j for j, k in enumerate(["lp", *idx])}
        return arr, [pos[k] for k in keys]

    def _summary_rows(self, sel: Sequence[int],
                      cols: Sequence[str] = (*SUMMARY_COLUMNS, "mcse_mean")) -> pd.DataFrame:
        """Summary columns ``cols`` of ``lp`` and the parameters at positions ``sel``.

        Each statistic of a row is computed once and kept. The vectorised ones (mean, sd,
        quantiles, ESS, R-hat) are computed for all missing rows at once; the KDE mode
        (``map``, one variable at a time) and ``mcse_mean`` (an ESS of its own) only for the
        rows that ask for them: the sampling diagnostics after ``sample()`` read the ESS and
        R-hat of every quantity, random effects included, while the printed table shows the
        modes of a few.
        """
        cache = self.__dict__.setdefault("_summary_cache", {})
        keys: list[int | str] = ["lp", *sel]
        todo = [k for k in dict.fromkeys(keys) if k not in cache]
        if todo:
            arr, cols_of = self._stacked(todo)
            rows = mcmc_summary_table(arr, [str(j) for j in range(arr.shape[2])], modes=False,
                                      mcse=False).to_dict("records")
            for k, j in zip(todo, cols_of):
                cache[k] = rows[j]
        if "map" in cols:
            for k in keys:
                if "map" not in cache[k]:
                    cache[k]["map"] = kde_mode(self.lp if k == "lp" else self._draws[:, :, k])
        need = [k for k in dict.fromkeys(keys) if "mcse_mean" not in cache[k]]
        if "mcse_mean" in cols and need:
            arr, cols_of = self._stacked(need)
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                values = convergence.mcse_mean(arr)[cols_of]
            for k, v in zip(need, values):
                cache[k]["mcse_mean"] = float(v)
        index = pd.Index(["lp"] + [self._params[i].user for i in sel], name="variable")
        return pd.DataFrame({c: [cache[k][c] for k in keys] for c in cols}, index=index)

    def _convergence_rows(self) -> pd.DataFrame:
        """ESS (bulk, tail) and R-hat of ``lp`` and every parameter (random effects
        included), for the sampling diagnostics."""
        return self._summary_rows(self._select(None, True), ("ess_bulk", "ess_tail", "rhat"))

    def summary(
        self, pars: Sequence[str] | str | None = None, inc_random: bool = False, mcse: bool = False
    ) -> pd.DataFrame:
        """Posterior summary, one row per quantity (``lp`` first, then display order).

        Parameters
        ----------
        pars : str or list of str, optional
            Names to select (``"b"`` selects every ``b[...]``); None: every quantity.
        inc_random : bool
            Add the standardised random effects ``r_re``.
        mcse : bool
            Add the Monte Carlo standard error of the mean (``mcse_mean``).

        Returns
        -------
        pandas.DataFrame
            Columns mean, sd, map (KDE mode), q2.5, q97.5, ess_bulk, ess_tail, rhat.

        Examples
        --------
        >>> fit.summary(pars=["b", "sigma"])  # doctest: +SKIP
        """
        sel = self._select(pars, inc_random)
        return self._summary_rows(sel, list(SUMMARY_COLUMNS) + (["mcse_mean"] if mcse else []))

    def _method_lines(self) -> list[str]:
        """The printed lines describing the method (subclasses for other algorithms)."""
        return [
            "MCMC sampling via " + (f"nutpie (NUTS, {self.mass_matrix} mass matrix)"
                                    if self.sampler == "nutpie" else "Stan (NUTS)"),
            f"Chains: {self.chains}, warmup: {self.warmup}, sampling: {self.sampling}, thin: {self.thin}",
            f"Divergent transitions: {self.num_divergent}",
        ]

    def format(self, max_rows: int = 10, digits: int = 2, inc_random: bool = False) -> str:
        df = self.summary(inc_random=inc_random)
        f = "{:.%sf}".replace("%s", str(int(digits)))
        fmts = {c: f for c in ("mean", "sd", "map", "q2.5", "q97.5", "rhat")}
        fmts.update(ess_bulk=IntFmt(), ess_tail=IntFmt())
        plain = self.threads_per_chain == 1 or getattr(self.model, "spec", None) is None
        program = backend_lines(self.model) if plain else [
            f"Stan program: specific, threaded ({self.threads_per_chain} threads per chain, "
            "likelihood by reduce_sum)"]
        head = ["Call:", call_line(self.model), ""] + self._method_lines() + program + [""]
        body = fmt_table(df.iloc[:max_rows], fmts)
        lines = head + [body]
        if len(df) > max_rows:
            lines.append(f"... {len(df) - max_rows} more rows: use summary() for the full table")
        if self.num_divergent:
            lines.append(
                f"Warning: {self.num_divergent} divergent transitions after warmup; "
                "consider a larger delta (adapt_delta)."
            )
        bad = df["rhat"].to_numpy()
        if np.any(bad[np.isfinite(bad)] > 1.01):
            lines.append("Warning: some rhat > 1.01; run longer chains.")
        return "\n".join(lines)

    def random_effects(self, scale: str = "standardised") -> pd.DataFrame:
        """Random effects per grouping term, level and coefficient.

        Parameters
        ----------
        scale : {"standardised", "natural"}
            The standardised effects ``r_re``, or the effects on the linear-predictor scale
            (``sd * r_re``).

        Returns
        -------
        pandas.DataFrame
            Columns group, level, term, parameter, mean, sd, q2.5, q97.5.
        """
        scale = check_scale(scale)
        recs = []
        for t, level, coef, i, sd_i in self._re_rows():
            x = self._draws[:, :, i].reshape(-1)
            if scale == "natural":
                if sd_i is None:
                    raise ValueError("natural-scale random effects need the SD parameters")
                x = x * self._draws[:, :, sd_i].reshape(-1)
            q = np.percentile(x, [2.5, 97.5])
            recs.append(
                dict(
                    group=t.group, level=level, term=coef, parameter=self._params[i].user,
                    mean=x.mean(), sd=x.std(ddof=1), **{"q2.5": q[0], "q97.5": q[1]},
                )
            )
        return pd.DataFrame(
            recs, columns=["group", "level", "term", "parameter", "mean", "sd", "q2.5", "q97.5"]
        )

    # arviz --------------------------------------------------------------------
    @cached_property
    def idata(self):
        """arviz InferenceData: posterior (user names), sample_stats, log_likelihood, observed_data.

        For large data the log_likelihood group is computed on first access (see
        :meth:`log_lik`); :attr:`posterior_idata` is the same without it."""
        posterior = {p.user: self._draws[:, :, i] for i, p in enumerate(self._params)}
        return inference_data(posterior, self._stats, self._log_lik, observed_response(self.model))

    @property
    def posterior_idata(self):
        """arviz InferenceData for plots: :attr:`idata` when it exists or the pointwise
        log-likelihood is at hand, else the same groups without log_likelihood (which is not
        computed for this)."""
        if "idata" in self.__dict__ or not self.log_lik_on_demand \
                or "_log_lik_computed" in self.__dict__:
            return self.idata
        cached = self.__dict__.get("_posterior_idata")
        if cached is None:
            posterior = {p.user: self._draws[:, :, i] for i, p in enumerate(self._params)}
            cached = inference_data(posterior, self._stats, None, observed_response(self.model))
            self.__dict__["_posterior_idata"] = cached
        return cached

    # bridge sampling and Bayes factors (bayesglmm/post) ---------------------------
    def bridgesampling(self, method: str = "normal", repetitions: int = 1, maxiter: int = 1000,
                       tol: float = 1e-10, seed: int | None = None, verbose: bool = True,
                       split: str = "halves", shrink: bool = True):
        """Log marginal likelihood by bridge sampling (cached by its arguments).

        Parameters
        ----------
        method : {"normal", "warp3"}
            The proposal (bridgesampling's names).
        repetitions : int
            Independent repetitions of the estimate.
        maxiter, tol : int, float
            Iterations and tolerance of the iterative scheme.
        seed : int, optional
            Seeds the proposal draws.
        verbose : bool
            Print the result.
        split : {"halves", "alternate"}
            Which draws fit the proposal (the first half of each chain, or every other draw).
        shrink : bool
            Shrink the proposal's correlations (Schafer-Strimmer).

        Returns
        -------
        BridgeResult
            ``logml``, its error measures (``error``, ``se``) and convergence.

        Examples
        --------
        >>> fit.bridgesampling().logml  # doctest: +SKIP
        """
        from ..post.bridge import bridge_sampler

        key = (method, repetitions, maxiter, tol, seed, split, shrink)
        cache = self.__dict__.setdefault("_bridge_cache", {})
        if key not in cache:
            cache[key] = bridge_sampler(self, method, repetitions, maxiter, tol, seed,
                                        verbose=False, split=split, shrink=shrink)
        if verbose:
            print(cache[key].format())
        return cache[key]

    def bayes_factor(self, fixed: dict[str, float] | None = None, comparison_fit: Any = None,
                     **kwargs: Any):
        """Bayes factor BF12 of this fit (Model 1) against a restricted or another model.

        Parameters
        ----------
        fixed : dict, optional
            Parameters of this model held at values (e.g. ``{"b[talk]": 0}``); the restricted
            model is sampled with the same settings.
        comparison_fit : MCMCFit, optional
            The other model's fit (instead of ``fixed``).
        **kwargs
            Passed to :func:`bayesglmm.bayes_factor` (bridge-sampling options).

        Returns
        -------
        BayesFactor
            ``bf``, ``log_bf``, its standard error and both bridge-sampling results.

        Examples
        --------
        >>> fit.bayes_factor(fixed={"b[talk]": 0}).bf  # doctest: +SKIP
        """
        from ..post.bayes_factor import bayes_factor

        return bayes_factor(self, comparison_fit, fixed=fixed, **kwargs)
