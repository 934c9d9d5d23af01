"""One fit of a batch, as any executor runs it: the model recipe sent to workers, the fit in
its own temporary directory, its tidy table, and stopping CmdStan processes on Ctrl-C."""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["METHODS", "ModelRecipe", "TaskResult", "kill_cmdstan_children", "make_recipe",
           "progress_bar", "recipe_model", "run_task", "tidy_fit"]

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
    return ModelRecipe(key, type(model), model._builder, recipe_args(model), None,
                       model.name, model.stan_code, compiled)


def recipe_args(model: Any) -> dict[str, Any]:
    """The wrapper arguments of ``model`` for its datasets: its own, with ``param=`` pinned to
    the parameterisation it resolved to (``"auto"`` could choose differently for another
    dataset, and every dataset is to run the base model's program)."""
    args = dict(model._build_args)
    if "param" in args and model.re_param:
        args["param"] = model.re_param
    return args


MODEL_CACHE: dict[str, Any] = {}  # recipe key -> Model, per process (workers keep theirs)


def recipe_model(recipe: ModelRecipe) -> Any:
    """The model of ``recipe`` in this process (built once per process)."""
    m = MODEL_CACHE.get(recipe.key)
    if m is not None:
        return m
    if recipe.builder is None:
        m = recipe.model_class(recipe.program, wrapper="from_stan", name=recipe.name)
    else:
        accepted = inspect.signature(recipe.builder).parameters
        m = recipe.builder(**{k: v for k, v in recipe.args.items() if k in accepted})
        m.name = recipe.name
    # this host's cache: the program is there (the same cache as the caller, or installed by
    # batch.ship from the caller's files), else it is compiled once per host under the lock
    m.compile(verbose=False)
    if len(MODEL_CACHE) > 8:  # models of earlier batches
        MODEL_CACHE.pop(next(iter(MODEL_CACHE)))
    MODEL_CACHE[recipe.key] = m
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


def progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc="fits", unit="fit", leave=False)
