"""The pointwise log-likelihood on demand.

Every generated program (the model's own and the generic ones) fills its generated quantity
``log_lik`` (one value per observation) only when its data flag ``compute_log_lik`` is 1. For
data with more than :data:`bayesglmm.codegen.LOG_LIK_IN_PROGRAM_MAX_ROWS` rows the flag is 0:
CmdStan (or nutpie) does not write N values per draw, and the fit does not hold them. When
``loo()``, ``waic()``, ``compare()`` or ``idata``'s ``log_likelihood`` group need them, they are
computed here from the draws by BridgeStan's ``param_constrain`` (the same generated-quantities
code, run with ``compute_log_lik = 1``), draw by draw into one (chain, draw, N) array: nothing
larger than one draw's output is allocated besides the result. Two threads share the draws
(BridgeStan releases the GIL and is thread-safe; each thread has its own random-number
generator, which the log-likelihood does not use).

The draws come from the fit: nutpie's and the variational fits' unconstrained draws, or the
parameter columns of CmdStan's output (unconstrained here first); a saved and loaded fit keeps
these, so the values are the same after ``bayesglmm.load``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..core.naming import bracket_name

__all__ = ["THREADS", "computes_on_demand", "log_lik_model", "param_columns", "pointwise_log_lik",
           "unconstrain_rows"]

THREADS = 2  # BridgeStan calls in parallel (the machine has 2 cores)


def computes_on_demand(data: Mapping[str, Any]) -> bool:
    """True when a program run with ``data`` leaves ``log_lik`` empty (``compute_log_lik`` = 0),
    so that the pointwise log-likelihood is computed on demand."""
    return int(data.get("compute_log_lik", 1)) == 0


def log_lik_model(model: Any):
    """The BridgeStan model of ``model``'s running program with ``compute_log_lik = 1`` (kept on
    the model as ``_bs_log_lik``; the model's own BridgeStan model when its data already
    compute it)."""
    data = model.run_program.data
    if not computes_on_demand(data):
        return model.bridgestan_model(verbose=False)
    bs = getattr(model, "_bs_log_lik", None)
    if bs is None:
        bs = model.compile(False).bridgestan_model({**dict(data), "compute_log_lik": 1})
        model._bs_log_lik = bs
    return bs


def param_columns(column_names: Sequence[str], bs: Any) -> list[int]:
    """Positions in CmdStan's ``column_names`` of the parameters block of ``bs``'s program, in
    BridgeStan's order (the input of ``param_unconstrain``)."""
    pos = {c: i for i, c in enumerate(column_names)}
    names = [bracket_name(n) for n in bs.param_names()]
    missing = [n for n in names if n not in pos]
    if missing:
        raise ValueError(f"the draws lack the parameters {', '.join(missing[:5])}: they were not "
                         "made by this model's program")
    return [pos[n] for n in names]


def unconstrain_rows(bs: Any, theta: np.ndarray) -> np.ndarray:
    """``theta`` (..., K) constrained parameter vectors -> (..., D) on the unconstrained scale."""
    flat = np.ascontiguousarray(theta.reshape(-1, theta.shape[-1]), dtype=float)
    out = np.empty((flat.shape[0], bs.param_unc_num()))
    for i in range(flat.shape[0]):
        out[i] = bs.param_unconstrain(flat[i])
    return out.reshape(theta.shape[:-1] + (out.shape[1],))


def _log_lik_positions(bs: Any) -> np.ndarray:
    names = bs.param_names(include_tp=True, include_gq=True)
    idx = [i for i, n in enumerate(names) if n == "log_lik" or n.startswith("log_lik.")]
    if not idx:
        raise ValueError("the Stan program has no generated quantity 'log_lik'")
    return np.asarray(idx)


def pointwise_log_lik(model: Any, *, unconstrained: np.ndarray | None = None,
                      stan_output: Any = None, seed: int = 1) -> np.ndarray:
    """The pointwise log-likelihood of every draw, shape (chain, draw, N).

    Parameters
    ----------
    model : Model
        The fitted model (its running program and data).
    unconstrained : ndarray, optional
        Draws on the unconstrained scale, (chain, draw, D).
    stan_output : object, optional
        CmdStan's output (``column_names`` and ``draws(concat_chains=False)`` of shape (draw,
        chain, column)), used when ``unconstrained`` is None.
    seed : int
        Seed of the random-number generators BridgeStan requires for generated quantities.

    Returns
    -------
    ndarray
        ``log_lik[n]`` of each draw, as the program computes it in its generated quantities.
    """
    bs = log_lik_model(model)
    if unconstrained is None:
        if stan_output is None:
            raise ValueError("the pointwise log-likelihood needs the fit's draws: this fit has "
                             "neither CmdStan's output nor unconstrained draws")
        cols = param_columns(list(stan_output.column_names), bs)
        arr = np.asarray(stan_output.draws(concat_chains=False))  # (draw, chain, column)
        theta = np.transpose(arr[:, :, cols], (1, 0, 2))
        src, constrained = theta, True
    else:
        src, constrained = np.asarray(unconstrained, dtype=float), False
    C, S = src.shape[:2]
    idx = _log_lik_positions(bs)
    out = np.empty((C, S, idx.size))
    flat_src = src.reshape(C * S, -1)
    flat_out = out.reshape(C * S, -1)
    width = bs.param_num(include_tp=True, include_gq=True)

    def work(part: int) -> None:
        rng = bs.new_rng(seed + part)
        buf = np.empty(width)
        for i in range(part, C * S, THREADS):
            u = flat_src[i]
            u = bs.param_unconstrain(np.ascontiguousarray(u)) if constrained else \
                np.ascontiguousarray(u)
            bs.param_constrain(u, include_tp=True, include_gq=True, out=buf, rng=rng)
            flat_out[i] = buf[idx]

    with ThreadPoolExecutor(THREADS) as ex:
        list(ex.map(work, range(THREADS)))
    return out
