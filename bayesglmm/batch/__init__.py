"""Many fits of one model: :func:`fit_many` and :class:`BatchResult`.

Every dataset is fitted by the same Stan program, compiled once. The work unit sent to an
executor is small and picklable: a :class:`~bayesglmm.batch.tasks.ModelRecipe` (the wrapper's
arguments and the compiled program's files, sent once per worker) and one dataset. A worker
rebuilds the model from the recipe once (taking the compiled program from the shared cache on
its host, or building it once per host under the cache's lock), then fits each dataset through
``Model.update(data)``.

Execution (``workers``/``client``): in this process one fit after another, on a Dask
``LocalCluster`` of ``workers`` processes (started and closed here), or on any
``dask.distributed.Client``. Each fit writes CmdStan's files into a temporary directory of its
own, removed after the fit. A fit that fails records its error; the batch goes on. Ctrl-C
cancels the batch and stops the CmdStan processes it started.

Modules: ``tasks`` (the recipe and one fit, run by any executor), ``dask_exec`` (Dask),
``result`` (:class:`BatchResult`), ``run`` (:func:`fit_many`).
"""

from .result import BatchResult
from .run import execute, fit_many
from .tasks import METHODS

__all__ = ["METHODS", "BatchResult", "execute", "fit_many"]
