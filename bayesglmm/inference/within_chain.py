"""Within-chain parallelism for :meth:`bayesglmm.Model.sample`: ``threads_per_chain=k``.

With ``k > 1`` a formula model samples with the threaded variant of its own Stan program
(:mod:`bayesglmm.codegen_threads`: the likelihood as a ``reduce_sum`` over slices of
observations), and CmdStan runs ``chains * k`` threads. The precompiled generic programs have no
threaded likelihood, so a model that would run its family's generic program runs its own
program instead (a one-line note says so). A ``from_stan()`` program runs as it is: its own
``reduce_sum`` or ``map_rect`` calls get the ``k`` threads.

The threaded program has the same parameters, in the same order, and the same log density as the
plain program, so the fit's draws, summaries and every later computation (log_lik, loo,
bridge sampling, which use the plain program) are unchanged.
"""

from __future__ import annotations

import os
from typing import Any

from ..backend import print_note
from ..core.validate import check_int

__all__ = ["check_threads_per_chain", "threaded_program"]


def check_threads_per_chain(value: Any, sampler: str) -> int:
    """``threads_per_chain`` as an int >= 1 (None means 1); a ValueError names the argument.

    Only CmdStan's sampler (``sampler="stan"``) runs a chain on several threads."""
    if value is None:
        return 1
    k = check_int("threads_per_chain", value, 1)
    if k > 1 and sampler != "stan":
        raise ValueError(f"threads_per_chain={k} needs sampler='stan' (CmdStan runs the threaded "
                         f"likelihood); sampler={sampler!r} evaluates the log density on one "
                         "thread per chain")
    return k


def threaded_program(model: Any, threads_per_chain: int, chains: int,
                     verbose: bool = True) -> tuple[Any, dict]:
    """(the CompiledModel, its data) of the threaded variant of ``model``'s own program.

    Raises a ValueError before compiling when the model's likelihood cannot be sliced
    (residual correlation)."""
    from ..codegen import render_code
    from ..codegen_threads import default_grainsize
    from ..toolchain import compile_model

    spec = model.spec
    if spec is None:  # from_stan(): the program itself decides what runs in parallel
        return model.compile(verbose), dict(model.program.data)
    code = render_code(spec, threads=True)
    data = {**model.program.data,
            "grainsize": default_grainsize(int(spec.n_obs), threads_per_chain)}
    if verbose:
        if model.backend == "generic":
            print_note(f"bayesglmm: threads_per_chain={threads_per_chain} runs the model's own "
                       "Stan program with a threaded likelihood (the precompiled generic "
                       "programs have none).")
        cores = os.cpu_count() or 1
        if chains * threads_per_chain > cores:
            print_note(f"bayesglmm: {chains} chains x {threads_per_chain} threads per chain is "
                       f"more threads than this machine's {cores} cores.")
    return compile_model(code, name=f"{model.name}_threads", verbose=verbose), data
