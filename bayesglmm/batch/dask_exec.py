"""Running the fits of a batch on Dask's distributed scheduler (``pip install bayesglmm[dask]``).

The recipe of the model is sent to every worker once (``Client.scatter(broadcast=True)``), and the
compiled program to the workers whose cache lacks it (:mod:`bayesglmm.batch.ship`); each
task carries one dataset and returns a small :class:`~bayesglmm.batch.TaskResult`. Dask reruns
the tasks of a worker that dies on the other workers, and each dataset's result is taken from
its own future, so every dataset appears once. Ctrl-C cancels the remaining tasks and stops the
CmdStan processes on the workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from .tasks import ModelRecipe, TaskResult, kill_cmdstan_children, progress_bar, run_task

__all__ = ["local_client", "run_on_dask"]


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError("workers= and client= run the fits on Dask: install it with "
                          "pip install 'bayesglmm[dask]' (dask and distributed)") from None
    return distributed


def local_client(workers: int):
    """A ``Client`` on a new ``LocalCluster`` of ``workers`` processes, one thread each."""
    distributed = _import_distributed()
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    return distributed.Client(cluster), cluster


def run_on_dask(recipe: ModelRecipe, data: Sequence[Any], method: str, fit_args: dict[str, Any],
                seeds: list[int | None], keep_fits: bool, progress: bool,
                extract: Callable | None, xargs: Callable[[int], tuple], *,
                workers: int | None, client: Any) -> tuple[list[TaskResult], int]:
    """Submit one task per dataset and collect the results in dataset order."""
    distributed = _import_distributed()
    cluster = None
    if client is None:
        client, cluster = local_client(int(workers))
    from .ship import ship_program, unship

    shipped = None
    try:
        n_workers = len(client.scheduler_info().get("workers", {})) or (workers or 0)
        if recipe.compiled is not None:
            shipped = ship_program(client, recipe.compiled)
        recipe_f = client.scatter(recipe, broadcast=True)
        token = uuid.uuid4().hex[:12]
        futures = {}
        for i, (d, s) in enumerate(zip(data, seeds)):
            f = client.submit(run_task, recipe_f, i, d, method, fit_args, s, keep_fits, extract,
                              xargs(i), key=f"bayesglmm-fit-{token}-{i}", pure=False)
            futures[f.key] = (i, f)
        results: dict[int, TaskResult] = {}
        try:
            with progress_bar(len(futures), progress) as bar:
                for f in distributed.as_completed([f for _, f in futures.values()]):
                    i = futures[f.key][0]
                    try:
                        res = f.result()
                    except Exception as e:  # noqa: BLE001 - e.g. KilledWorker after retries
                        res = TaskResult(i, None, float("nan"), f"{type(e).__name__}: {e}",
                                         seeds[i])
                    if i in results:  # pragma: no cover - one future per dataset
                        raise RuntimeError(f"dataset {i} returned twice")
                    results[i] = res
                    bar.update(1)
        except KeyboardInterrupt:
            client.cancel([f for _, f in futures.values()], force=True)
            _stop_cmdstan(client)
            raise
        return [results[i] for i in range(len(futures))], n_workers
    finally:
        if cluster is None:
            unship(client, shipped)
        else:
            client.close()
            cluster.close()


def _stop_cmdstan(client: Any) -> None:
    import contextlib

    with contextlib.suppress(Exception):
        client.run(kill_cmdstan_children)
