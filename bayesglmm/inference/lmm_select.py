"""Whether the exact LMM path (:mod:`bayesglmm.inference.lmm`) fits a model, and the
:class:`~bayesglmm.inference.lmm.ExactLMM` that does: the family and structure checks, and the
check of the reconstruction against a small BridgeStan instance of the program."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..design_csr import csr_data, cut_rows, dense_design, has_csr
from .lmm import ExactLMM, NotExact, check_applies

__all__ = ["CHECK_ROWS", "exact_lmm"]


CHECK_ROWS = 64  # rows of the small program instance the reconstruction is checked on
#: per-observation data of the programs (with the grouping-term slots of the generic program)
_ROW_KEYS = ("y", "X", "offsets", "trials", "X_zi")


def _cut(data: dict, n: int, centre: bool) -> dict:
    """``data`` restricted to its first ``n`` rows (the groups, the design columns and every
    other dimension unchanged) and without the pointwise log-likelihood. With ``centre`` the
    last kept row of X is replaced by the one that gives the kept rows the column means of
    the full design, so that the program's centring (its ``means_X``, and the reported
    intercept) is the full data's."""
    N = int(data["N"])
    n = min(n, N)
    out = dict(data)
    keys = list(_ROW_KEYS) + [k for k in data if k[:2] in ("J_", "Z_")]
    for k in keys:
        if k in data and np.ndim(data[k]) >= 1 and np.shape(data[k])[0] == N:
            out[k] = np.asarray(data[k])[:n]
    csr = has_csr(data)  # the design in CSR form (bayesglmm/design_csr.py)
    if csr:
        out.update(cut_rows(data, slice(0, n)))
    if centre and (csr or np.size(data.get("X", ()))):
        X = dense_design(data)
        Xs = np.array(X[:n])
        Xs[-1] = n * X.mean(axis=0) - Xs[:-1].sum(axis=0)
        out.update(csr_data(Xs) if csr else {"X": Xs})
    out["N"] = n
    out["compute_log_lik"] = 0
    return out


def _small_instance(model: Any, verbose: bool) -> Any:
    """A BridgeStan instance of the model's program on :func:`_cut` data (kept on the model),
    with the specific program's unconstrained names for the generic program."""
    small = getattr(model, "_bs_exact_check", None)
    if small is None:
        from dataclasses import replace

        from ..backend import bridgestan_model

        run = model.run_program
        cut = _cut(dict(run.data), CHECK_ROWS, bool(model.program.spec.centred))
        small = bridgestan_model(replace(run, data=cut), model.compile(verbose),
                                 model.program.spec)
        model._bs_exact_check = small
    return small


def exact_lmm(model: Any, verbose: bool = False) -> ExactLMM | None:
    """An :class:`ExactLMM` for ``model`` (a :class:`bayesglmm.models.Model`), or None when
    the exact path does not apply (see the module docstring).

    The reconstruction is checked against a BridgeStan instance of the program (the model's
    own or the generic one) on the first :data:`CHECK_ROWS` rows (the log density of those
    rows, at two random points), which also serves the parameter names and transforms: the
    full data are never loaded into Stan (a fixed cost of ~15 us per row and design column,
    through JSON). For a centred design one row of the instance is chosen so that its column
    means are the full design's, so the intercept it reports is the full model's."""
    program = model.program
    try:
        check_applies(program)
        small = _small_instance(model, verbose)
        ExactLMM(small, program, _cut(dict(program.data), CHECK_ROWS, program.spec.centred))
        return ExactLMM(small, program, validate=False)
    except NotExact:
        return None
