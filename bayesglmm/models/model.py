"""The :class:`Model` object: one Stan program (code, data, parameter names), the program the fits
run (generic or specific), its compilation, export, refits and simulation. The methods that fit
it (``sample``, ``optimize``, ``variational``, ``pathfinder``, ``classic``) come from
:class:`~bayesglmm.models.fitting.FitMethods`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import (
    RunProgram,
    choose_backend,
    compile_program,
    fallback_note,
    print_note,
    run_program,
)
from ..backend import bridgestan_model as backend_bridgestan
from ..codegen import generate
from ..priors import default_adapt_delta
from ..spec import hold_coefficients
from .fitting import FitMethods

__all__ = ["EXPORT_README", "Model"]


class Model(FitMethods):
    """One Stan program with its data, ready to fit.

    Attributes: ``program`` (the model's own program: code, data, params, re_blocks, spec),
    ``formula``, ``family``, ``wrapper`` ("glmer", "lmer", "glm", "lm" or "from_stan"),
    ``backend`` (the Stan program the fits run: "generic" or "specific"),
    ``backend_requested`` ("auto", "specific" or "generic") and ``backend_reason`` (why the
    specific program runs, or None).
    """

    def __init__(self, program: Any, *, wrapper: str, formula: str | None = None,
                 family: str | None = None, prior: Any = None, name: str = "model",
                 backend: str = "auto"):
        self.backend_requested = backend
        self.backend, self.backend_reason = choose_backend(program, backend, wrapper)
        self._run = None
        self.program = program
        self.wrapper = wrapper
        self.formula = formula
        self.family = family
        self.prior = prior
        self.name = name
        self._compiled = None
        self._bs_model = None
        self.data_notes: tuple[str, ...] = ()  # data preparation before the spec (wide data, centring)
        self._build_args: dict[str, Any] | None = None  # the wrapper's arguments (update())
        self._builder: Any = None  # the wrapper function that built the model

    def use_backend(self, backend: str) -> None:
        """Run the fits of this model on ``backend`` ("generic" or "specific"), keeping
        ``backend_requested``; :func:`bayesglmm.load` uses it to run a reloaded model on the
        program its saved fit ran, even where ``backend="auto"`` would now choose the other.

        Parameters
        ----------
        backend : {"generic", "specific"}
            The family's precompiled generic program or the model's own Stan program.

        Raises
        ------
        ValueError
            ``"generic"`` for a model the generic program does not cover.
        """
        self.backend, self.backend_reason = choose_backend(self.program, backend, self.wrapper)
        self._run = self._compiled = self._bs_model = None

    def __getstate__(self) -> dict[str, Any]:
        # the BridgeStan model is an open library handle: rebuilt on demand after unpickling
        state = dict(self.__dict__)
        state["_bs_model"] = None
        state.pop("_bs_exact_check", None)  # the exact LMM path's small instance (inference/lmm_select)
        state.pop("_bs_log_lik", None)  # the log-likelihood instance (inference/loglik)
        return state

    # ---- the program -------------------------------------------------------------
    @property
    def stan_code(self) -> str:
        """The Stan program text."""
        return self.program.code

    @property
    def stan_data(self) -> dict[str, Any]:
        """The Stan data (a new dict; values are numpy arrays, ints and floats)."""
        return dict(self.program.data)

    @property
    def spec(self):
        """The parsed model specification (formula pieces, family, prior, design); None for
        programs loaded with ``from_stan``."""
        return getattr(self.program, "spec", None)

    @property
    def default_delta(self) -> float:
        """The target acceptance rate ``sample()`` uses when ``delta`` is not given: set per
        prior in the prior table (0.99 for ``prior_rhs()`` and ``prior_ssp()``), else 0.8."""

        return default_adapt_delta(getattr(getattr(self.spec, "prior", None), "terms", ()) or ())

    @property
    def parameter_names(self) -> list[str]:
        """User-facing names of every reported quantity, in display order."""
        return [p.user for p in getattr(self.program, "params", ()) or ()]

    @property
    def re_param(self) -> dict[str, str]:
        """How each grouping term's effects are sampled: term (as written) -> ``"centered"``
        or ``"noncentered"`` (the ``param=`` argument resolved; empty without grouping terms).

        Examples
        --------
        >>> m.re_param  # doctest: +SKIP
        {'(Days | Subject)': 'noncentered'}
        """
        groups = getattr(self.spec, "groups", ()) or ()
        return {g.text: "centered" if g.centered else "noncentered" for g in groups}

    def with_fixed(self, fixed: Mapping[str, float]) -> Model:
        """The same model with some coefficients held at given values.

        The held values enter the Stan program as data, so the restricted model has the same
        data, priors and names otherwise; :func:`bayesglmm.bayes_factor` uses it to compare a
        model with its restriction.

        Parameters
        ----------
        fixed : dict
            User names of fixed-effect coefficients and their values, e.g. ``{"b[talk]": 0}``.

        Returns
        -------
        Model
            A new model (not yet compiled).

        Examples
        --------
        >>> m0 = m.with_fixed({"b[talk]": 0})  # doctest: +SKIP
        """
        if self.spec is None:
            raise ValueError("bayes_factor(fixed=...) needs a model built from a formula; for an "
                             "external Stan program fit the restricted program yourself and use "
                             "bayes_factor(fit1, fit2).")
        new = Model(generate(hold_coefficients(self.spec, fixed)), wrapper=self.wrapper,
                    formula=self.formula, family=self.family, prior=self.prior, name=self.name,
                    backend=self.backend_requested)
        if self._build_args is not None:  # the wrapper call of the restricted model (save())
            held = {**(self._build_args.get("fixed") or {}), **dict(fixed)}
            new._builder, new._build_args = self._builder, {**self._build_args, "fixed": held}
        return new

    @property
    def run_program(self) -> RunProgram:
        """The Stan program the fits run (:class:`bayesglmm.backend.RunProgram`: backend, code,
        data, name): the family's generic program or the model's own, see ``backend``."""
        if self._run is None:
            self._run = run_program(self.program, self.backend, self.name)
        return self._run

    def print_code(self) -> None:
        """Print the model's own Stan program (also when the generic program fits it: this is
        the readable program ``export()`` writes)."""
        print(self.stan_code)

    def call(self) -> str:
        """The call that made the model, as printed in fit headers.

        Returns
        -------
        str
            E.g. ``"lmer(sat ~ talk + (1 | group), prior = flat)"``.
        """
        if self.wrapper == "from_stan":
            return f"from_stan({getattr(self.program, 'source', '') or 'model.stan'!r})"
        parts = [self.formula or ""]
        if self.wrapper in ("glmer", "glm"):
            parts.append(f"family = {self.family}")
            if getattr(getattr(self.spec, "family", None), "common_variant", False):
                parts.append("category_specific = FALSE")
            if getattr(self.spec, "zi", None) is not None:
                parts.append(f"zi = ~{self.spec.zi.rhs}")
        prior = getattr(self.spec, "prior", None)
        pname = getattr(prior, "name", None)
        if pname is None and self.prior is not None:
            pname = getattr(self.prior, "name", str(self.prior))
        parts.append(f"prior = {pname or 'flat'}")
        return f"{self.wrapper}({', '.join(parts)})"

    def __repr__(self) -> str:
        n = self.observed_response()
        nobs = "" if n is None else f", {len(n)} observations"
        return f"<bayesglmm Model: {self.call()}{nobs}; fit with .sample() or .optimize()>"

    def observed_response(self) -> np.ndarray | None:
        """The response vector as passed to Stan.

        Returns
        -------
        numpy.ndarray or None
            None for ``from_stan`` programs without a data variable ``Y`` or ``y``.
        """
        resp = getattr(self.spec, "response", None)  # bayesglmm.spec.Response
        if resp is not None and getattr(resp, "y", None) is not None:
            return np.asarray(resp.y)
        for key in ("Y", "y"):
            if key in self.program.data:
                return np.asarray(self.program.data[key])
        return None

    def export(self, directory: str | os.PathLike) -> Path:
        """Write the Stan program and its data, to run them without bayesglmm.

        Parameters
        ----------
        directory : str or path
            Where to write (created if needed) ``model.stan``, ``data.json``, ``names.json``
            (Stan name -> reported name) and a ``README.md`` on running them with cmdstanpy.

        Returns
        -------
        pathlib.Path
            The directory.

        Raises
        ------
        ValueError
            ``directory`` is an existing file.

        Examples
        --------
        >>> m.export("debate_model")  # doctest: +SKIP
        >>> m2 = bayesglmm.from_stan("debate_model")  # doctest: +SKIP
        """
        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise ValueError(f"export() needs a directory, but {str(d)!r} is a file")
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.stan").write_text(self.stan_code)
        from cmdstanpy import write_stan_json

        write_stan_json(str(d / "data.json"), self.program.data)
        names = {p.stan: p.user for p in getattr(self.program, "params", ()) or ()}
        (d / "names.json").write_text(json.dumps(names, indent=1) + "\n")
        (d / "README.md").write_text(EXPORT_README.format(call=self.call()))
        return d

    # ---- refits and simulation ------------------------------------------------------
    def update(self, data: Any = None, prior: Any = None, **options: Any) -> Model:
        """The same model on new data, with another prior or other options (lme4's
        ``update()``).

        When the Stan program does not change (new data, new prior hyperparameters) the new
        model shares this model's compiled program, so it is fitted without compiling; a change
        of structure gives a new program (compiled on first use, or taken from the cache). The
        new model keeps this model's centred or non-centred choice per grouping term
        (:attr:`re_param`) unless ``param=`` or ``formula=`` is given.

        Parameters
        ----------
        data : pandas.DataFrame or dict, optional
            New data (for a ``from_stan()`` model: a dict of Stan data).
        prior : Prior, optional
            Another prior.
        **options
            Other wrapper arguments (``formula=``, ``family=``, ``dropna=``, ...).

        Returns
        -------
        Model
            A new model; this one is unchanged.

        Examples
        --------
        >>> m2 = m.update(data=new_df)  # doctest: +SKIP
        >>> m3 = m.update(prior=bayesglmm.prior_weak())  # doctest: +SKIP
        """
        from ..update import update_model

        return update_model(self, data, prior, **options)

    def simulate(self, n: int, params: Mapping[str, Any] | None = None,
                 seed: int | None = None):
        """Datasets with a response drawn from the model.

        Every dataset gets new group-level effects drawn from their distribution, correlated
        residuals drawn jointly within their blocks, and the response from the family's
        distribution.

        Parameters
        ----------
        n : int
            Number of datasets.
        params : dict, optional
            Parameter values under their reported names, e.g. ``{"Intercept": 3,
            "b[talk]": 0.3, "sigma": 1, "sd[group:Int]": 0.5}`` (every parameter that
            generates the data); None: each dataset's parameters drawn from the prior.
        seed : int, optional
            Random seed.

        Returns
        -------
        SimulatedData
            A sequence of DataFrames (the model's data with the simulated response), with
            the parameter values in ``.truth``; pass it to :func:`bayesglmm.fit_many` for a
            recovery study.

        Raises
        ------
        ValueError
            Missing or unknown parameter names (listed), or a flat prior with ``params=None``.

        Examples
        --------
        >>> sims = m.simulate(100, {"Intercept": 3, "b[talk]": 0.3, "sigma": 1,
        ...                         "sd[group:Int]": 0.5}, seed=1)  # doctest: +SKIP
        """
        from ..simulate import simulate

        return simulate(self, n, params, seed)

    # ---- compilation -----------------------------------------------------------------
    def compile(self, verbose: bool = True):
        """Compile the program the fits run, or fetch it from the compiled-model cache.

        Parameters
        ----------
        verbose : bool
            Print compilation progress.

        Returns
        -------
        CompiledModel
            The family's generic program or the model's own (see ``backend``); its ``code`` is
            ``run_program.code``, the data to run it with ``run_program.data``.
        """
        if self._compiled is None:
            if verbose and self.backend_reason and self.backend_requested == "auto" \
                    and self.spec is not None:
                print_note(fallback_note(self.family or "", self.backend_reason))
            self._compiled = compile_program(self.run_program, verbose)
        return self._compiled

    def bridgestan_model(self, verbose: bool = True):
        """The compiled program as a BridgeStan model bound to this model's data.

        Parameters
        ----------
        verbose : bool
            Print compilation progress if the program has to be compiled.

        Returns
        -------
        bridgestan.StanModel
            Log density, gradients, constrain/unconstrain; built once and kept.
        """
        if self._bs_model is None:
            self._bs_model = backend_bridgestan(self.run_program, self.compile(verbose),
                                                self.spec)
        return self._bs_model

    _bridgestan = bridgestan_model  # the former private name, still used by benchmarks


EXPORT_README = """\
# Exported bayesglmm model

Generated by bayesglmm from `{call}`.

- `model.stan`: the Stan program (all numbers, including prior hyperparameters, are data)
- `data.json`:  its data in CmdStan's JSON format
- `names.json`: Stan element name -> the name bayesglmm reports (e.g. `beta[1]` -> `b[talk]`)

Run with cmdstanpy:

```python
import cmdstanpy

model = cmdstanpy.CmdStanModel(stan_file="model.stan")
fit = model.sample(data="data.json", chains=4, iter_warmup=1000, iter_sampling=1000, seed=1)
print(fit.summary())
mode = model.optimize(data="data.json", jacobian=False)   # joint posterior mode
```

Or edit `model.stan` and fit it with bayesglmm's fit classes (results use the Stan names):

```python
import bayesglmm

fit = bayesglmm.from_stan("model.stan", "data.json").sample(seed=1)
print(fit.summary())
```
"""
