"""The fit methods of :class:`~bayesglmm.models.model.Model`: ``sample`` (NUTS), ``optimize``
(MAP with the Laplace approximation), ``variational`` (ADVI), ``pathfinder`` and ``classic``
(REML/ML). Each checks and records its arguments and delegates to :mod:`bayesglmm.inference`;
:class:`Model` inherits them from :class:`FitMethods`."""

from __future__ import annotations

import os
from typing import Any

from ..inference.classic import check_classic_args, fit_classic
from ..inference.map import fit_map
from ..inference.mcmc import fit_nuts
from ..inference.threads import one_blas_thread
from ..inference.variational import run_advi, run_pathfinder
from ..persist import cached_fit
from ..results import MAPFit, MCMCFit
from ..results_classic import ClassicFit

__all__ = ["FitMethods"]


class FitMethods:
    """The fit methods of a model (mixed into :class:`~bayesglmm.models.model.Model`, which
    provides the program they run: ``default_delta``, ``compile()``, ``bridgestan_model()``)."""

    default_delta: float

    def sample(
        self,
        chains: int = 4,
        warmup: int = 1000,
        sampling: int = 1000,
        thin: int = 1,
        seed: int | None = None,
        delta: float | None = None,
        max_treedepth: int = 10,
        init: Any = None,
        verbose: bool = True,
        output_dir: str | os.PathLike | None = None,
        sampler: str = "stan",
        low_rank: bool | str = "auto",
        file: str | os.PathLike | None = None,
        file_refit: str = "on_change",
        threads_per_chain: int | None = None,
    ) -> MCMCFit:
        """Draw from the posterior with NUTS (Stan's adaptive Hamiltonian Monte Carlo).

        Parameters
        ----------
        chains : int
            Number of chains, run in parallel.
        warmup, sampling : int
            Warmup (adaptation) and sampling iterations per chain.
        thin : int
            Keep every ``thin``-th draw.
        seed : int, optional
            Random seed; None draws a fresh one (stored on the fit as ``fit.seed``).
        delta : float, optional
            Target acceptance rate (Stan's ``adapt_delta``), in (0, 1). None: the model's
            :attr:`default_delta` (0.99 with the horseshoe and spike-and-slab priors, whose
            posteriors need small steps, else Stan's 0.8); with ``sampler="nutpie"`` at least
            0.9 where ``low_rank="auto"`` picks the low-rank mass matrix for a weakly informed
            centred term (see ``low_rank``). The rate the fit ran at is ``fit.delta``.
        max_treedepth : int
            Maximum depth of the NUTS trajectory tree.
        init : None, float or dict
            None: Stan's uniform(-2, 2) on the unconstrained scale (with ``sampler="nutpie"``:
            nutpie's standard normal); a number: uniform(-r, r) instead (``0``: every
            unconstrained value at 0); a dict: initial values keyed by Stan names (e.g.
            ``{"sigma": 1.0}``), the parameters it leaves out uniform(-2, 2). The same forms
            work with both samplers.
        verbose : bool
            Print compilation and sampling progress.
        output_dir : path, optional
            Directory for CmdStan's output files (None: a new temporary directory).
        sampler : {"stan", "nutpie"}
            ``"stan"``: CmdStan's NUTS. ``"nutpie"``: nutpie's NUTS on the same compiled
            program (no second compile); in our benchmark it gave 2.1-2.9 times the
            effective draws per second of CmdStan on three models (median over seeds);
            needs ``pip install 'bayesglmm[nutpie]'`` and ``warmup >= 1``.
        low_rank : {"auto", True, False}
            nutpie only: adapt nutpie's low-rank modified mass matrix (True) or a diagonal one
            (False). "auto" (default) picks the low-rank one when every grouping term is
            centred, the model has at most 100 unconstrained parameters and strongly
            correlated coefficients (correlated predictors, or a group's centred intercept and
            slope correlated through its rows), where it gave more effective draws per CPU
            second without more divergences in our measurements; where a centred term is
            weakly informed by the data (a mild funnel remains), it also raises the default
            ``delta`` to 0.9, which kept those runs free of divergences
            (docs/inference.md, :mod:`bayesglmm.inference.nutpie_rule`); the fit records the choice
            (``fit.mass_matrix``, ``fit.mass_matrix_reason``) and prints it. With
            ``sampler="stan"`` only "auto" and False are accepted.
        file : path, optional
            As brms's ``file=``: save the fit there (``.bglmm`` added without a suffix), and
            next time load it instead of sampling again (see ``file_refit``).
        file_refit : {"on_change", "always", "never"}
            With ``file``: "on_change" (default) loads the saved fit when the Stan program, the
            data and these sampling settings are the same (a ``seed`` of None matches any),
            else samples and saves; "always" samples and saves; "never" loads whenever the
            file exists.
        threads_per_chain : int, optional
            Threads per chain (``sampler="stan"`` only), for machines with more cores than
            chains and data with many rows. Above 1 the model's own Stan program runs in its
            threaded variant: the likelihood is summed over slices of the observations by
            Stan's ``reduce_sum`` (same parameters, same log density; compiled once, cached
            apart from the plain program). The precompiled generic programs have no threaded
            variant, so this always runs the model's own program. None or 1: one thread per
            chain. Not available with residual correlation (``resid_corr=``).

        Returns
        -------
        MCMCFit
            Draws under the users' names; one warning per sampling problem (divergences,
            R-hat, ESS, ...).

        Examples
        --------
        >>> fit = m.sample(chains=4, warmup=1000, sampling=1000, seed=1)  # doctest: +SKIP
        >>> fit.summary()  # doctest: +SKIP
        """
        settings = dict(chains=chains, warmup=warmup, sampling=sampling, thin=thin, seed=seed,
                        delta=delta, max_treedepth=max_treedepth, init=init, sampler=sampler,
                        low_rank=low_rank, threads_per_chain=threads_per_chain)

        # what the call asks for, as a saved fit records it: delta=None is the model's default
        # (nutpie may raise it for the mass matrix it picks, so whether it was given counts)
        asked = {**settings, "delta": self.default_delta if delta is None else delta}
        if sampler == "nutpie":
            asked["delta_given"] = delta is not None
        if sampler == "stan" and low_rank == "auto":
            asked["low_rank"] = False  # the same run (fits saved before "auto" match)

        def run() -> MCMCFit:
            fit = fit_nuts(self, verbose=verbose, output_dir=output_dir, **settings)
            fit.saved_settings = {**asked, "seed": fit.seed}
            return fit

        if file is None:
            return run()
        return cached_fit(self, file, file_refit, asked, run)

    @one_blas_thread
    def optimize(
        self,
        seed: int | None = None,
        init: Any = None,
        verbose: bool = True,
        laplace: bool = True,
        num_estimate: int = 1,
        se_method: str = "wald",
        marginal: str = "none",
        exact: bool = True,
    ) -> MAPFit:
        """Posterior mode (MAP) with standard errors and 95% Wald intervals.

        The mode is found in the natural (constrained) parameterisation, i.e. without Jacobian
        terms; SEs come from the Hessian on Stan's unconstrained scale by the delta method.
        Intervals are back-transformed u +/- 1.96 se(u) for parameters (so scale parameters
        get log-symmetric intervals, correlations Fisher-z intervals) and est +/- 1.96 SE for
        derived quantities such as ``Intercept``.

        Parameters
        ----------
        seed : int, optional
            Seeds random starts (``init`` radius, ``num_estimate``) and ``se_method="sampling"``.
        init : None, float or dict
            None: unconstrained zeros; a radius r: uniform(-r, r); a dict of initial values
            keyed by Stan names (e.g. ``{"sigma": 1.0}``).
        verbose : bool
            Print compilation progress.
        laplace : bool
            True (default): the standardised random effects are integrated out by the Laplace
            approximation and the other parameters maximised (what lme4 does for ML with flat
            priors); random effects are reported at their conditional modes and the log
            marginal likelihood is the Laplace one. False: the joint mode over all parameters
            (the same for models without random effects).
        num_estimate : int
            Number of starts; the extra ones are jittered by N(0, 0.5^2) on the unconstrained
            scale and the best optimum is kept.
        se_method : {"wald", "sampling", "none"}
            "sampling": 1000 multivariate normal draws of the unconstrained estimates (SD and
            2.5/97.5 % quantiles) instead of the delta method.
        marginal : {"none", "auto"}
            "auto": the fixed effects are integrated out too (REML-type; with flat priors on a
            gaussian model this is exactly REML); "none": they are maximised.
        exact : bool
            With normal errors, the flat prior and no ``init``, the Laplace step is exact and
            computed in closed form (:mod:`bayesglmm.inference.lmm`; the cost of an evaluation
            does not depend on the number of rows). False: the generic Laplace path (the same
            estimates).

        Returns
        -------
        MAPFit

        Examples
        --------
        >>> mode = m.optimize()  # doctest: +SKIP
        >>> mode.summary()  # doctest: +SKIP
        """
        call = dict(seed=seed, init=init, laplace=laplace, num_estimate=num_estimate,
                    se_method=se_method, marginal=marginal, exact=exact)
        fit = fit_map(self, verbose=verbose, **call)
        fit.saved_settings = call  # what save() records to redo the fit on load
        return fit

    def variational(self, method: str = "meanfield", iter: int = 5000, draws: int = 1000,
                    seed: int | None = None, tol_rel_obj: float = 0.005, num_estimate: int = 1,
                    verbose: bool = True):
        """Variational approximation of the posterior by Stan's ADVI.

        Parameters
        ----------
        method : {"meanfield", "fullrank"}
            Independent normals, or one multivariate normal, on the unconstrained scale.
        iter : int
            Maximum optimisation iterations.
        draws : int
            Draws from the approximation.
        seed : int, optional
            Random seed (None: a fresh one).
        tol_rel_obj : float
            Convergence tolerance on the relative change of the objective.
        num_estimate : int
            Independent runs, stored as chains.
        verbose : bool
            Print progress.

        Returns
        -------
        VariationalFit
            The MCMC fit class (:class:`~bayesglmm.inference.variational.VariationalFit`);
            warns that uncertainty may be underestimated and reports the PSIS Pareto k.

        Examples
        --------
        >>> vb = m.variational(method="meanfield", seed=1)  # doctest: +SKIP
        """
        fit = run_advi(self, method=method, iter=iter, draws=draws, seed=seed,
                       tol_rel_obj=tol_rel_obj, num_estimate=num_estimate, verbose=verbose)
        fit.saved_settings = dict(method=method, iter=iter, draws=draws, seed=fit.seed,
                                  tol_rel_obj=tol_rel_obj, num_estimate=num_estimate)
        return fit

    def pathfinder(self, draws: int = 1000, num_paths: int = 4, seed: int | None = None,
                   verbose: bool = True):
        """Pathfinder variational approximation (Stan's multi-path Pathfinder).

        Parameters
        ----------
        draws : int
            Draws returned, PSIS-resampled from the paths.
        num_paths : int
            Number of single-path Pathfinder runs.
        seed : int, optional
            Random seed (None: a fresh one).
        verbose : bool
            Print progress.

        Returns
        -------
        VariationalFit

        Examples
        --------
        >>> pf = m.pathfinder(seed=1)  # doctest: +SKIP
        """
        fit = run_pathfinder(self, draws=draws, num_paths=num_paths, seed=seed, verbose=verbose)
        fit.saved_settings = dict(draws=draws, num_paths=num_paths, seed=fit.seed)
        return fit

    @one_blas_thread
    def classic(self, method: str | None = None, df_method: str = "auto",
                verbose: bool = True):
        """Classical (flat-prior) fit, as lme4/lmerTest or glm.

        REML for gaussian models, Laplace ML for the other families; SEs from the observed
        information; Satterthwaite df for gaussian mixed models (lmerTest), residual df
        without random effects, z tests otherwise; logLik / AIC / BIC from the ML fit.

        Parameters
        ----------
        method : {"REML", "ML"}, optional
            None: REML for gaussian models, ML otherwise.
        df_method : {"auto", "satterthwaite", "residual", "none"}
            Denominator degrees of freedom of the t tests ("auto" as described above).
        verbose : bool
            Print compilation progress.

        Returns
        -------
        ClassicFit

        Raises
        ------
        ValueError
            If the model's prior is not the flat prior (use ``optimize()`` or ``sample()``).

        Examples
        --------
        >>> fit = bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", df).classic()  # doctest: +SKIP
        """
        fit = ClassicFit(self, fit_classic(self, check_classic_args(self, method), df_method,
                                           verbose))
        fit.saved_settings = dict(method=method, df_method=df_method)
        return fit
