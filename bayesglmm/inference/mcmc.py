"""NUTS fits for :meth:`bayesglmm.Model.sample`: checks the arguments, runs CmdStan's NUTS
(or nutpie's, :mod:`bayesglmm.inference.nutpie`),
collects the draws under the users' names into an :class:`~bayesglmm.results.MCMCFit` and warns
once per sampling problem (divergences, R-hat, ESS, ...)."""

from __future__ import annotations

import time
from typing import Any

from ..core.naming import resolve_params
from ..core.validate import check_delta, check_init, check_int, check_seed
from ..results import MCMCFit
from .diagnostics import check_sampling
from .nutpie_rule import check_low_rank, resolve_low_rank, run_delta
from .sampling import extract_draws, new_seed, run_nuts
from .within_chain import check_threads_per_chain, threaded_program

__all__ = ["check_sampler", "fit_nuts"]


def check_sampler(sampler: Any, low_rank: Any, warmup: int = 1) -> None:
    """Check ``sampler`` ("stan" or "nutpie") and the options that only one of them has.

    Parameters
    ----------
    sampler : Any
        The ``sampler`` argument of :meth:`bayesglmm.Model.sample`.
    low_rank : Any
        Its ``low_rank`` argument: "auto", True or False (True only with
        ``sampler="nutpie"``).
    warmup : int
        Its ``warmup`` argument (nutpie needs at least one warm-up iteration).

    Raises
    ------
    ValueError
        Naming the argument that is wrong.
    """
    if sampler not in ("stan", "nutpie"):
        raise ValueError(f"sampler must be 'stan' or 'nutpie', got {sampler!r}")
    check_low_rank(low_rank)
    if sampler == "stan" and low_rank is True:
        raise ValueError("low_rank=True is an option of sampler='nutpie' (Stan's NUTS adapts a "
                         "diagonal mass matrix here)")
    if sampler == "nutpie" and warmup < 1:
        raise ValueError("warmup=0 is not available with sampler='nutpie' (nutpie always "
                         "adapts its step size and mass matrix): use warmup >= 1, or "
                         "sampler='stan' for a run without adaptation")


def fit_nuts(
    model: Any,
    chains: int = 4,
    warmup: int = 1000,
    sampling: int = 1000,
    thin: int = 1,
    seed: int | None = None,
    delta: float | None = None,
    max_treedepth: int = 10,
    init: Any = None,
    verbose: bool = True,
    output_dir: Any = None,
    sampler: str = "stan",
    low_rank: bool | str = "auto",
    threads_per_chain: int | None = None,
) -> MCMCFit:
    """Draw from the posterior of ``model`` with NUTS.

    Parameters
    ----------
    model : Model
        The model to fit; compiled (or fetched from the cache) after the arguments are checked.
    chains, warmup, sampling, thin, seed, delta, max_treedepth, init, verbose
        As in :meth:`bayesglmm.Model.sample`; ``delta=None`` takes ``model.default_delta``
        (with nutpie raised to the least target acceptance rate of the mass matrix chosen,
        :func:`bayesglmm.inference.nutpie_rule.run_delta`; the fit records the rate it ran at,
        ``fit.delta``).
    output_dir : str or path, optional
        The directory of CmdStan's output files (None: a new temporary directory).
    sampler : {"stan", "nutpie"}
        CmdStan's NUTS, or nutpie's on the program's BridgeStan library
        (:mod:`bayesglmm.inference.nutpie`).
    low_rank : {"auto", True, False}
        nutpie's low-rank modified mass matrix (nutpie only); "auto": the rule of
        :mod:`bayesglmm.inference.nutpie_rule`.
    threads_per_chain : int, optional
        Threads per chain (CmdStan only); above 1 the threaded variant of the model's own
        program runs (:mod:`bayesglmm.inference.within_chain`).

    Returns
    -------
    MCMCFit

    Examples
    --------
    >>> fit = fit_nuts(model, chains=2, seed=1)  # doctest: +SKIP
    """
    chains = check_int("chains", chains, 1)
    warmup = check_int("warmup", warmup, 0)
    sampling = check_int("sampling", sampling, 1)
    thin = check_int("thin", thin, 1)
    max_treedepth = check_int("max_treedepth", max_treedepth, 1)
    asked_delta = None if delta is None else check_delta(delta)
    delta = model.default_delta if asked_delta is None else asked_delta
    seed = check_seed(seed)
    if seed is None:
        seed = new_seed()
    init = check_init(init)
    check_sampler(sampler, low_rank, warmup)
    threads = check_threads_per_chain(threads_per_chain, sampler)
    t0 = time.perf_counter()
    settings = dict(chains=chains, warmup=warmup, sampling=sampling, thin=thin, seed=seed,
                    delta=delta, max_treedepth=max_treedepth)
    unc = stan_fit = None
    mass_matrix, why = "diagonal", "CmdStan's NUTS adapts a diagonal mass matrix"
    deferred = False  # log_lik left out of the run, computed from the draws when asked
    if sampler == "nutpie":
        from .nutpie import defers_log_lik, import_nutpie, sample_nutpie

        import_nutpie()  # before compiling: a missing nutpie fails at once
        compiled, bs = model.compile(verbose), model.bridgestan_model(verbose)
        choice = resolve_low_rank(low_rank, model.spec, bs.param_unc_num())
        settings["delta"] = run_delta(asked_delta, delta, choice)
        mass_matrix = "low-rank" if choice.low_rank else "diagonal"
        why = choice.reason
        params, draws, stats, log_lik, unc = sample_nutpie(
            compiled, bs, model.program, data=model.run_program.data,
            low_rank=choice.low_rank, verbose=verbose, init=init, **settings)
        deferred = log_lik is None and defers_log_lik(model.run_program.data)
    else:
        if threads > 1:
            compiled, data = threaded_program(model, threads, chains, verbose)
        else:
            compiled, data = model.compile(verbose), model.run_program.data
        stan_fit = run_nuts(compiled.cmdstan_model(), data, init=init, verbose=verbose,
                            **settings, threads_per_chain=threads,
                            output_dir=None if output_dir is None else str(output_dir))
        params = resolve_params(model.program, stan_fit.column_names)
        draws, stats, log_lik = extract_draws(stan_fit, params)
    fit = MCMCFit(
        model, params, draws, stats, log_lik, **settings, elapsed=time.perf_counter() - t0,
        stan_fit=stan_fit, sampler=sampler, unconstrained=unc,
    )
    fit.mass_matrix, fit.mass_matrix_reason = mass_matrix, why
    fit.log_lik_deferred = deferred
    if threads > 1:
        fit.threads_per_chain = threads
        if model.spec is not None:  # the draws come from the model's own (threaded) program
            fit.backend = "specific"
    check_sampling(fit, stacklevel=4)  # one warning per problem, pointing at the user's call
    return fit
