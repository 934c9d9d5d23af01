"""``fit_many()``: fit one model to many datasets, in this process or on Dask."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .dask_exec import run_on_dask
from .result import BatchResult
from .tasks import (
    METHODS,
    MODEL_CACHE,
    TaskResult,
    kill_cmdstan_children,
    make_recipe,
    progress_bar,
    run_task,
)

__all__ = ["execute", "fit_many"]


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
    from ..simulate import SimulatedData

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
    MODEL_CACHE[recipe.key] = model  # this process fits with the model itself
    xargs = extract_args or (lambda i: ())
    try:
        if workers is None and client is None:
            return _sequential(recipe, data, method, fit_args, seeds, keep_fits, progress,
                               extract, xargs), 0
        return run_on_dask(recipe, data, method, fit_args, seeds, keep_fits, progress, extract,
                           xargs, workers=workers, client=client)
    finally:
        MODEL_CACHE.pop(recipe.key, None)


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
