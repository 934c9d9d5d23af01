"""The shared base of the fit classes (:class:`Fit`): the model, the user-facing parameters,
parameter selection, the random-effect rows, and the post-estimation methods (predictions, loo,
plots) that delegate to :mod:`bayesglmm.post` and :mod:`bayesglmm.plots`."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import pandas as pd

from ..core.naming import ParamName
from .layout import ReTerm, re_index, re_layout

__all__ = ["Fit"]


class Fit:
    """Shared base of the fit classes."""

    method = "fit"

    def __init__(self, model: Any, params: Sequence[ParamName]):
        self.model = model
        self._params = list(params)
        # which Stan program ran: "generic" (the family's precompiled program) or "specific"
        self.backend: str = getattr(model, "backend", "specific")

    # names ------------------------------------------------------------------
    def save(self, path: Any) -> Any:
        """Save the fit (draws or estimates, the model's inputs, versions) to one file.

        Load it with :func:`bayesglmm.load`.

        Parameters
        ----------
        path : str or path
            The file to write; ``.bglmm`` is added when it has no suffix.

        Returns
        -------
        pathlib.Path
            The path written.

        Examples
        --------
        >>> path = fit.save("debate_fit")  # doctest: +SKIP
        >>> again = bayesglmm.load(path)  # doctest: +SKIP
        """
        from ..persist import save_fit

        return save_fit(self, path)

    @property
    def program(self):
        """The Stan program the model generated (code, data and parameter layout)."""
        return self.model.program

    @property
    def spec(self):
        """The parsed model specification (None for programs loaded with ``from_stan``)."""
        return getattr(self.model.program, "spec", None)

    @property
    def parameter_names(self) -> list[str]:
        """User-facing names of every reported quantity, in display order."""
        return [p.user for p in self._params]

    def _select(self, pars: Sequence[str] | str | None, inc_random: bool) -> list[int]:
        if pars is None:
            return [i for i, p in enumerate(self._params) if inc_random or p.kind != "re"]
        if isinstance(pars, str):
            pars = [pars]
        pos = {p.user: i for i, p in enumerate(self._params)}
        out = []
        for name in pars:
            if name == "lp":  # always the first row of MCMC summaries
                continue
            if name in pos:
                out.append(pos[name])
                continue
            # a base name selects all its elements: 'b' -> b[talk], b[perf]; 'r_re' -> r_re[...]
            hits = [i for i, p in enumerate(self._params) if p.user.split("[", 1)[0] == name]
            if not hits:
                raise KeyError(
                    f"unknown parameter {name!r}; available: "
                    + ", ".join(p.user for p in self._params if p.kind != "re")
                )
            out.extend(hits)
        return out

    @cached_property
    def re_terms(self) -> list[ReTerm]:
        return re_layout(self._params, self.spec)

    def _re_rows(self):
        """(term, level label, coef label, index of r_re, index of sd) for every random effect."""
        idx = re_index(self._params)
        pos = {p.user: i for i, p in enumerate(self._params)}
        for t in self.re_terms:
            for j, level in enumerate(t.levels, start=1):
                for c, coef in enumerate(t.coefs, start=1):
                    if (t.index, j, c) in idx:
                        sd_i = pos.get(t.sd_names[c - 1]) if c - 1 < len(t.sd_names) else None
                        yield t, level, coef, idx[(t.index, j, c)], sd_i

    def __repr__(self) -> str:
        return self.format()

    def _repr_html_(self) -> str:
        """Notebooks: the printed form, its tables as HTML tables."""
        from ..core.display import html_repr

        return html_repr(self)

    def to_frame(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        """The fit's main table as a DataFrame: the same as :meth:`summary`.

        Parameters
        ----------
        *args, **kwargs
            The arguments of :meth:`summary`.

        Returns
        -------
        pandas.DataFrame
        """
        return self.summary(*args, **kwargs)

    def show(self, **kwargs) -> None:
        """Print the fit.

        Parameters
        ----------
        **kwargs
            As :meth:`format` (e.g. ``max_rows``).
        """
        print(self.format(**kwargs))

    def format(self, **kwargs) -> str:  # pragma: no cover - overridden
        """The printed form of the fit (each fit class defines it).

        Parameters
        ----------
        **kwargs
            Layout options of the fit class.

        Returns
        -------
        str
        """
        raise NotImplementedError

    # post-estimation (bayesglmm.post, bayesglmm.plots) --------------------------------
    def predict(self, newdata: Any = None, re: str = "include", prob: float = 0.95,
                summary: bool = True, seed: int | None = None, allow_new_levels: bool = False):
        """Expected response (the mean on the response scale) for the data or ``newdata``.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            Rows to predict for (None: the data the model was fitted to).
        re : {"include", "exclude"}
            Include the group effects, or predict for the population (effects at 0).
        prob : float
            Probability of the intervals.
        summary : bool
            True: a table (estimate, error, interval per row); False: the draws.
        seed : int, optional
            Seeds the draws of effects of new group levels.
        allow_new_levels : bool
            Allow group levels the model was not fitted to (their effects are drawn from the
            population distribution).

        Returns
        -------
        pandas.DataFrame or numpy.ndarray
            See :func:`bayesglmm.post.predict`.

        Examples
        --------
        >>> fit.predict(newdata).head()  # doctest: +SKIP
        """
        from ..post.predict import predict

        return predict(self, newdata, re=re, prob=prob, summary=summary, seed=seed,
                       allow_new_levels=allow_new_levels)

    def posterior_predict(self, newdata: Any = None, re: str = "include", seed: int | None = None,
                          allow_new_levels: bool = False):
        """Draws of new observations from the posterior predictive distribution.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            Rows to simulate for (None: the fitted data).
        re : {"include", "exclude"}
            Include the group effects, or simulate for the population.
        seed : int, optional
            Random seed.
        allow_new_levels : bool
            Allow group levels the model was not fitted to.

        Returns
        -------
        numpy.ndarray
            Shape (draws, rows).
        """
        from ..post.predict import posterior_predict

        return posterior_predict(self, newdata, re=re, seed=seed,
                                 allow_new_levels=allow_new_levels)

    def loo(self):
        """Pareto-smoothed importance-sampling leave-one-out cross-validation (arviz).

        Returns
        -------
        arviz.ELPDData
            ``elpd_loo``, its standard error, ``p_loo`` and the Pareto k diagnostics.
        """
        from ..post.loo import loo

        return loo(self)

    def waic(self):
        """The widely applicable information criterion (arviz).

        Returns
        -------
        arviz.ELPDData
            ``elpd_waic``, its standard error and ``p_waic``.
        """
        from ..post.loo import waic

        return waic(self)

    def plot_trace(self, pars: Any = None):
        """Per-chain densities and traces, one row per parameter (draw-based fits).

        Parameters
        ----------
        pars : str or list of str, optional
            Parameter names (exact names, base names such as ``"b"``, ``*`` wildcards); None:
            the population-level parameters.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..plots import plot_trace

        return plot_trace(self, pars)

    def plot_dens(self, pars: Any = None):
        """Posterior densities, one panel per parameter and a curve per chain.

        Parameters
        ----------
        pars : str or list of str, optional
            Parameter names (exact names, base names such as ``"b"``, ``*`` wildcards); None:
            the population-level parameters.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..plots import plot_dens

        return plot_dens(self, pars)

    def plot_acf(self, pars: Any = None, max_lag: int = 40):
        """Autocorrelation of the draws of one parameter, one panel per chain.

        Parameters
        ----------
        pars : str, optional
            The parameter (None: the first population-level parameter).
        max_lag : int
            Largest lag shown.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..plots import plot_acf

        return plot_acf(self, pars, max_lag)

    def plot_forest(self, pars: Any = None, prob: float = 0.95):
        """Estimate and ``prob`` interval per parameter (posterior median and HDI for draws,
        estimate and Wald interval for MAP and classic fits).

        Parameters
        ----------
        pars : str or list of str, optional
            Parameter names (exact names, base names such as ``"b"``, ``*`` wildcards); None:
            the population-level parameters.
        prob : float
            Probability of the intervals.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..plots import plot_forest

        return plot_forest(self, pars, prob)

    def plot_pairs(self, pars: Any = None):
        """Scatter matrix of the draws of two or more parameters.

        Parameters
        ----------
        pars : str or list of str, optional
            Parameter names (exact names, base names such as ``"b"``, ``*`` wildcards); None:
            the population-level parameters.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..plots import plot_pairs

        return plot_pairs(self, pars)

    def plot_ppc(self, num_draws: int = 100, seed: int | None = None):
        """Posterior predictive check: the density of the response against those of
        ``num_draws`` simulated data sets.

        Parameters
        ----------
        num_draws : int
            Number of simulated data sets drawn.
        seed : int, optional
            Random seed.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..plots import plot_ppc

        return plot_ppc(self, num_draws, seed)
