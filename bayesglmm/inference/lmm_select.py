"""Whether the exact LMM path (:mod:`bayesglmm.inference.lmm`) fits a model, and the
:class:`~bayesglmm.inference.lmm.ExactLMM` that does: the family and structure checks, and the
check of the reconstruction against a small BridgeStan instance of the program."""

from __future__ import annotations

from typing import Any

import numpy as np

from .lmm import ExactLMM, NotExact, check_applies

__all__ = ["CHECK_ROWS", "exact_lmm"]


CHECK_ROWS = 64  # rows of the small program instance the reconstruction is checked on


def _row_subset(program: Any, n: int) -> dict:
    """The program's data restricted to its first ``n`` rows (the groups, the design columns
    and every other dimension unchanged) and without the pointwise log-likelihood."""
    data = dict(program.data)
    keys = ["y", "X", "offsets"] + [f"{h}_{g.k}" for g in program.spec.groups for h in "JZ"]
    for k in keys:
        if k in data:
            data[k] = np.asarray(data[k])[:n]
    data["N"] = min(n, int(program.data["N"]))
    data["compute_log_lik"] = 0
    return data


def exact_lmm(model: Any, verbose: bool = False) -> ExactLMM | None:
    """An :class:`ExactLMM` for ``model`` (a :class:`bayesglmm.models.Model`), or None when
    the exact path does not apply (see the module docstring).

    The reconstruction is checked against a BridgeStan instance of the program on the first
    :data:`CHECK_ROWS` rows (the log density of those rows, at two random points), which also
    serves the parameter names and transforms: the full data are never loaded into Stan (a
    fixed cost of ~15 us per row). A centred design (intercept at the predictor means) needs
    the full instance for its generated intercept."""
    program = model.program
    try:
        check_applies(program)
        if getattr(model, "backend", "specific") == "generic":
            # the generic program's data cannot be cut to rows here: check on the full data
            bs = model.bridgestan_model(verbose)
            ExactLMM(bs, program)
            return ExactLMM(bs, program, validate=False)
        small = getattr(model, "_bs_exact_check", None)
        if small is None:
            small = model.compile(verbose).bridgestan_model(_row_subset(program, CHECK_ROWS))
            model._bs_exact_check = small
        ExactLMM(small, program, _row_subset(program, CHECK_ROWS))
        bs = model.bridgestan_model(verbose) if program.spec.centred else small
        return ExactLMM(bs, program, validate=False)
    except NotExact:
        return None
