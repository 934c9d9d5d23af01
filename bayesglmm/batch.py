"""Many fits of one model: :func:`fit_many` and its :class:`BatchResult`.

Every dataset is fitted by the same Stan program, compiled once. The work unit sent to an
executor is small and picklable: a :class:`ModelRecipe` (the wrapper's arguments and the
compiled program's files, sent once per worker) and one dataset. A worker rebuilds the model
from the recipe once (taking the compiled program from the shared cache on its host, or building
it once per host under the cache's lock), then fits each dataset through ``Model.update(data)``.

Execution (``workers``/``client``): in this process one fit after another, on a Dask
``LocalCluster`` of ``workers`` processes (started and closed here), or on any
``dask.distributed.Client``. Each fit writes CmdStan's files into a temporary directory of its
own, removed after the fit. A fit that fails records its error; the batch goes on. Ctrl-C
cancels the batch and stops the CmdStan processes it started.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["METHODS", "BatchResult", "ModelRecipe", "fit_many"]

#: fitting methods of :func:`fit_many` (Model methods)
METHODS = ("optimize", "classic", "sample", "variational")
_COLUMNS = ["dataset", "parameter", "estimate", "se", "lower", "upper", "rhat", "ess_bulk",
            "divergences", "converged", "elapsed", "error"]


# --------------------------------------------------------------------------- the recipe


@dataclass(frozen=True, eq=False)
class ModelRecipe:
    """What a worker needs to rebuild a model: the wrapper function and its arguments (or the
    program of a ``from_stan`` model, its Stan code and data) and the compiled program's
    files. Small and picklable (functions and classes travel by reference)."""

    key: str
    model_class: Any = field(repr=False)
    builder: Any = field(repr=False)  # glmer, lmer, glm or lm; None for from_stan
    args: dict[str, Any] = field(repr=False)  # its arguments
    program: Any = field(default=None, repr=False)  # the ExternalProgram of from_stan models
    name: str = "model"
    code: str = field(default="", repr=False)
    compiled: Any = field(default=None, repr=False)  # toolchain.CompiledModel (file paths)


def make_recipe(model: Any) -> ModelRecipe:
    """The recipe of ``model`` (compiling it first, so workers on this host find it cached)."""
    compiled = model.compile(verbose=False)
    key = uuid.uuid4().hex
    if model.wrapper == "from_stan":
        return ModelRecipe(key, type(model), None, {}, model.program, model.name,
                           model.stan_code, compiled)
    if getattr(model, "_builder", None) is None:
        raise ValueError("fit_many() needs a model built by glmer(), lmer(), glm(), lm() or "
                         "from_stan()")
    return ModelRecipe(key, type(model), model._builder, dict(model._build_args), None,
                       model.name, model.stan_code, compiled)


_MODELS: dict[str, Any] = {}  # recipe key -> Model, per process (workers keep theirs)


def recipe_model(recipe: ModelRecipe) -> Any:
    """The model of ``recipe`` in this process (built once per process)."""
    m = _MODELS.get(recipe.key)
    if m is not None:
        return m
    if recipe.builder is None:
        m = recipe.model_class(recipe.program, wrapper="from_stan", name=recipe.name)
    else:
        accepted = inspect.signature(recipe.builder).parameters
        m = recipe.builder(**{k: v for k, v in recipe.args.items() if k in accepted})
        m.name = recipe.name
    c = recipe.compiled
    if c is not None and c.exe_file.exists() and c.so_file.exists() and m.stan_code == c.code:
        m._compiled = c  # same host (or a shared file system): the cached files
    else:
        m.compile(verbose=False)  # another host: its cache, built once per host under the lock
    if len(_MODELS) > 8:  # models of earlier batches
        _MODELS.pop(next(iter(_MODELS)))
    _MODELS[recipe.key] = m
    return m


# --------------------------------------------------------------------------- one fit


@dataclass
class TaskResult:
    """The outcome of one fit (what a worker sends back)."""

    index: int
    table: pd.DataFrame | None
    elapsed: float
    error: str | None
    seed: int | None
    fit: Any = None
    extra: Any = None
    warnings: tuple[str, ...] = ()
    worker: str = ""


def _fit(model: Any, method: str, fit_args: dict[str, Any], seed: int | None, tmp: str):
    args = dict(fit_args)
    args.setdefault("verbose", False)
    if seed is not None:
        args["seed"] = seed
    if method == "sample":
        args["output_dir"] = tmp
    return getattr(model, method)(**args)


def run_task(recipe: ModelRecipe, index: int, data: Any, method: str, fit_args: dict[str, Any],
             seed: int | None, keep_fit: bool = False, extract: Callable | None = None,
             extract_args: tuple = ()) -> TaskResult:
    """Fit dataset ``index`` (``data``: a DataFrame, or a dict of Stan data for ``from_stan``
    models; None: the recipe's own data). Exceptions become the result's ``error``;
    ``extract(fit, model, base_model, *extract_args)`` adds a value computed in the worker."""
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix=f"bayesglmm-fit-{index}-")
    fit, table, extra, error = None, None, None, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            base = recipe_model(recipe)
            model = base if data is None else base.update(data=data)
            fit = _fit(model, method, fit_args, seed, tmp)
            table = tidy_fit(fit)
            if extract is not None:
                extra = extract(fit, model, base, *extract_args)
        except Exception as e:  # noqa: BLE001 - a failing dataset is recorded, the batch goes on
            error = f"{type(e).__name__}: {e}"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    msgs = tuple(dict.fromkeys(str(w.message) for w in caught))
    return TaskResult(index, table, time.perf_counter() - t0, error, seed,
                      fit if keep_fit and error is None else None, extra, msgs,
                      f"{os.uname().nodename}:{os.getpid()}")


def tidy_fit(fit: Any) -> pd.DataFrame:
    """One row per reported quantity (random effects excluded) of ``fit``: estimate, se, lower,
    upper (95% interval), rhat, ess_bulk, divergences, converged."""
    draws = getattr(fit, "_draws", None)
    if draws is not None:
        s = fit.summary()
        s = s.drop(index=[i for i in ("lp",) if i in s.index])
        out = pd.DataFrame({"estimate": s["mean"], "se": s["sd"], "lower": s["q2.5"],
                            "upper": s["q97.5"], "rhat": s["rhat"], "ess_bulk": s["ess_bulk"]})
        if hasattr(fit, "pareto_k"):  # variational: reliable when Pareto k <= 0.7
            out["divergences"] = np.nan
            out["converged"] = bool(np.isfinite(fit.pareto_k) and fit.pareto_k <= 0.7)
        else:  # NUTS: no divergent transition and every R-hat <= 1.01
            div = int(fit.num_divergent)
            out["divergences"] = float(div)
            rh = out["rhat"].to_numpy(dtype=float)
            out["converged"] = bool(div == 0 and np.all(rh[np.isfinite(rh)] <= 1.01))
        return out
    s = fit.summary()
    out = s[["estimate", "se", "lower", "upper"]].astype(float).copy()
    out["rhat"] = np.nan
    out["ess_bulk"] = np.nan
    out["divergences"] = np.nan
    out["converged"] = bool(getattr(fit, "converged", True))
    return out


# --------------------------------------------------------------------------- stopping CmdStan


def kill_cmdstan_children() -> int:
    """Stop the CmdStan processes started by this process (children run with ``method=...``
    arguments); returns how many were signalled."""
    import signal

    killed = 0
    for pid, args in _children():
        if any(a.startswith("method=") for a in args):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def _children() -> list[tuple[int, list[str]]]:
    try:
        import psutil

        out = []
        for p in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                out.append((p.pid, p.cmdline()))
        return out
    except ImportError:  # pragma: no cover - psutil comes with the dask extra
        me, out = os.getpid(), []
        for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
            if d.isdigit():
                with contextlib.suppress(OSError):
                    stat = open(f"/proc/{d}/stat").read()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                        args = open(f"/proc/{d}/cmdline").read().split("\0")
                        out.append((int(d), args))
        return out


# --------------------------------------------------------------------------- the batch


@dataclass(eq=False)
class BatchResult:
    """The fits of :func:`fit_many`.

    Attributes
    ----------
    method : str
        The fitting method.
    results : list
        One :class:`TaskResult` per dataset, in dataset order.
    truth : pandas.DataFrame or None
        The parameter values of simulated data (``Model.simulate``), one row per dataset.
    elapsed : float
        Wall time of the batch in seconds.
    """

    method: str
    results: list[TaskResult] = field(repr=False)
    truth: pd.DataFrame | None = field(default=None, repr=False)
    elapsed: float = float("nan")
    workers: int = 0

    def __len__(self) -> int:
        return len(self.results)

    @property
    def fits(self) -> list[Any]:
        """The fit objects (``keep_fits=True``; None for failed fits)."""
        if not any(r.fit is not None for r in self.results) and self.n_failed < len(self):
            raise ValueError("the fits were not kept: call fit_many(..., keep_fits=True)")
        return [r.fit for r in self.results]

    @property
    def errors(self) -> dict[int, str]:
        """{dataset: error text} of the fits that failed."""
        return {r.index: r.error for r in self.results if r.error is not None}

    @property
    def n_failed(self) -> int:
        return sum(r.error is not None for r in self.results)

    @property
    def seeds(self) -> list[int | None]:
        """The seed of each fit."""
        return [r.seed for r in self.results]

    def to_frame(self) -> pd.DataFrame:
        """Tidy results: one row per dataset and parameter (random effects excluded), columns
        dataset (0-based position), parameter, estimate (posterior mean for draws), se
        (posterior sd), lower, upper (95% interval), rhat, ess_bulk, divergences, converged,
        elapsed (seconds of the fit), error (None, or the error of a failed fit: one row with
        parameter None)."""
        parts = []
        for r in self.results:
            if r.table is None:
                row = {c: np.nan for c in _COLUMNS}
                row.update(dataset=r.index, parameter=None, converged=False, elapsed=r.elapsed,
                           error=r.error)
                parts.append(pd.DataFrame([row]))
                continue
            t = r.table.reset_index(names="parameter")
            t.insert(0, "dataset", r.index)
            t["elapsed"] = r.elapsed
            t["error"] = None
            parts.append(t)
        if not parts:
            return pd.DataFrame(columns=_COLUMNS)
        df = pd.concat(parts, ignore_index=True)[_COLUMNS]
        return df.astype({"dataset": int, "converged": bool})

    def recovery(self) -> pd.DataFrame:
        """Parameter recovery of simulated data: per parameter the true value (mean over
        datasets), the mean estimate, bias (mean of estimate - truth), RMSE, coverage (share of
        95% intervals containing the truth) with its binomial standard error, and the number of
        successful fits."""
        if self.truth is None:
            raise ValueError("recovery() needs data from Model.simulate() (the true values)")
        df = self.to_frame()
        df = df[df["error"].isna()]
        truth = self.truth.reset_index(names="dataset").melt(
            id_vars="dataset", var_name="parameter", value_name="true")
        m = df.merge(truth, on=["dataset", "parameter"])
        rows = []
        for name in self.truth.columns:
            g = m[m["parameter"] == name]
            ok = np.isfinite(g["estimate"].to_numpy(dtype=float))
            g = g[ok]
            if g.empty:
                continue
            err = g["estimate"].to_numpy(dtype=float) - g["true"].to_numpy(dtype=float)
            lo, hi = g["lower"].to_numpy(dtype=float), g["upper"].to_numpy(dtype=float)
            tr = g["true"].to_numpy(dtype=float)
            has = np.isfinite(lo) & np.isfinite(hi)
            cov = float(np.mean((lo[has] <= tr[has]) & (tr[has] <= hi[has]))) if has.any() else np.nan
            rows.append({"parameter": name, "true": float(np.mean(tr)),
                         "mean_estimate": float(g["estimate"].mean()), "bias": float(err.mean()),
                         "rmse": float(np.sqrt(np.mean(err**2))), "coverage": cov,
                         "coverage_se": float(np.sqrt(cov * (1 - cov) / has.sum())) if has.any() else np.nan,
                         "n": int(len(g))})
        return pd.DataFrame(rows).set_index("parameter")

    def __repr__(self) -> str:
        where = "in-process" if not self.workers else f"{self.workers} Dask worker(s)"
        return (f"<BatchResult: {len(self)} {self.method}() fits ({self.n_failed} failed), "
                f"{self.elapsed:.1f} s, {where}>")


def _seeds(seed: Any, n: int) -> list[int | None]:
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return [(int(seed) + i) % (2**31 - 1) for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"seed: {len(seeds)} seeds for {n} datasets")
    return [None if s is None else int(s) for s in seeds]


def _datasets(datasets: Any) -> tuple[Sequence[Any], pd.DataFrame | None]:
    from .simulate import SimulatedData

    if isinstance(datasets, SimulatedData):
        return datasets, datasets.truth
    if isinstance(datasets, (pd.DataFrame, dict)) or not isinstance(datasets, Iterable):
        raise TypeError("datasets must be an iterable of DataFrames (e.g. a list, or the result "
                        f"of Model.simulate()), not {type(datasets).__name__}")
    out = list(datasets)
    for i, d in enumerate(out):
        if not isinstance(d, (pd.DataFrame, dict)):
            raise TypeError(f"dataset {i} is a {type(d).__name__}, not a DataFrame")
    return out, None


def fit_many(model: Any, datasets: Any, method: str = "optimize", *, workers: int | None = None,
             client: Any = None, keep_fits: bool = False, progress: bool = True,
             **fit_args: Any) -> BatchResult:
    """Fit ``model`` to every dataset of ``datasets``.

    Parameters
    ----------
    model : Model
        The model (its formula, family, prior and options); compiled once.
    datasets : iterable of DataFrame, or SimulatedData
        The datasets (e.g. ``model.simulate(200, params)``); each is fitted by
        ``model.update(data=dataset)``. For a ``from_stan`` model: dicts of Stan data.
    method : {"optimize", "classic", "sample", "variational"}
        The Model method used for every fit.
    workers : int, optional
        Run on a Dask ``LocalCluster`` of this many worker processes (one thread each),
        started here and closed afterwards (needs ``pip install bayesglmm[dask]``).
    client : dask.distributed.Client, optional
        Run on this Dask client's cluster (used as is, not closed).
    keep_fits : bool
        Keep the fit objects (``result.fits``); by default only the tidy tables are kept.
    progress : bool
        Show a progress bar over the datasets.
    **fit_args
        Arguments of the fitting method (e.g. ``chains=4``). ``seed``: an integer gives dataset
        ``i`` the seed ``seed + i``; a list gives one seed per dataset.

    Returns
    -------
    BatchResult
        ``to_frame()``: the tidy table; ``recovery()``: bias, RMSE and coverage for data from
        ``Model.simulate()``; ``fits`` with ``keep_fits=True``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, not {method!r}")
    if workers is not None and client is not None:
        raise ValueError("give workers= (a local Dask cluster) or client= (your cluster), not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    data, truth = _datasets(datasets)
    seeds = _seeds(fit_args.pop("seed", None), len(data))
    t0 = time.perf_counter()
    results, nworkers = execute(model, data, method, fit_args, seeds, workers=workers,
                                client=client, keep_fits=keep_fits, progress=progress)
    return BatchResult(method, results, truth, time.perf_counter() - t0, nworkers)


def execute(model: Any, data: Sequence[Any], method: str, fit_args: dict[str, Any],
            seeds: list[int | None], *, workers: int | None, client: Any, keep_fits: bool,
            progress: bool, extract: Callable | None = None,
            extract_args: Callable[[int], tuple] | None = None) -> tuple[list[TaskResult], int]:
    """Run the fits (in-process or on Dask); results in dataset order, and the worker count."""
    recipe = make_recipe(model)
    _MODELS[recipe.key] = model  # this process fits with the model itself
    xargs = extract_args or (lambda i: ())
    try:
        if workers is None and client is None:
            return _sequential(recipe, data, method, fit_args, seeds, keep_fits, progress,
                               extract, xargs), 0
        from .dask_exec import run_on_dask

        return run_on_dask(recipe, data, method, fit_args, seeds, keep_fits, progress, extract,
                           xargs, workers=workers, client=client)
    finally:
        _MODELS.pop(recipe.key, None)


def progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc="fits", unit="fit", leave=False)


def _sequential(recipe, data, method, fit_args, seeds, keep_fits, progress, extract, xargs):
    out = []
    with progress_bar(len(data), progress) as bar:
        try:
            for i, (d, s) in enumerate(zip(data, seeds)):
                out.append(run_task(recipe, i, d, method, fit_args, s, keep_fits, extract,
                                    xargs(i)))
                bar.update(1)
        except KeyboardInterrupt:
            kill_cmdstan_children()
            raise
    return out
