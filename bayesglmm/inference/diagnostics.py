"""Sampling diagnostics run after every ``Model.sample()``.

One concise warning per problem, naming the parameters (user-facing names) where the problem is
per parameter: divergent transitions, tree-depth saturation, low E-BFMI (per chain), split
R-hat above 1.01 and low effective sample size (bulk or tail ESS below 100 per chain, Stan's
recommendation). The checks read only the fit's draws and sampler statistics.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["SamplingWarning", "check_sampling", "ebfmi", "sampling_problems"]

RHAT_MAX = 1.01
ESS_PER_CHAIN = 100
EBFMI_MIN = 0.3
MAX_NAMED = 6


class SamplingWarning(UserWarning):
    """A problem found in the sampler's diagnostics (divergences, R-hat, ESS, ...)."""


def ebfmi(energy: np.ndarray) -> np.ndarray:
    """Energy Bayesian fraction of missing information per chain; ``energy`` (chain, draw)."""
    e = np.asarray(energy, dtype=float)
    num = np.sum(np.diff(e, axis=1) ** 2, axis=1)
    den = np.sum((e - e.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


def _divergence_advice(delta: float) -> str:
    """What to do about divergences, given the target acceptance rate used."""
    for higher in (0.95, 0.99, 0.999):
        if delta < higher:
            return f"increase delta (e.g. sample(delta={higher})) or reparameterise the model"
    return "reparameterise the model or use a prior with lighter tails"


def sampling_problems(fit: Any) -> list[str]:
    """The diagnostic messages for an :class:`~bayesglmm.results.MCMCFit` (empty if none)."""
    msgs: list[str] = []
    stats = fit._stats
    total = int(np.prod(fit.lp.shape))
    div = stats.get("diverging")
    if div is not None and np.sum(div) > 0:
        n = int(np.sum(div))
        msgs.append(
            f"{n} of {total} transitions after warmup were divergent: the posterior may be "
            f"biased; {_divergence_advice(getattr(fit, 'delta', 0.8))}."
        )
    depth = stats.get("tree_depth")
    if depth is not None:
        n = int(np.sum(depth >= fit.max_treedepth))
        if n:
            msgs.append(
                f"{n} of {total} transitions hit the maximum tree depth ({fit.max_treedepth}): "
                "sampling is inefficient; increase max_treedepth."
            )
    energy = stats.get("energy")
    if energy is not None and energy.shape[1] > 2:
        e = ebfmi(energy)
        low = [f"{c + 1} ({v:.2f})" for c, v in enumerate(e) if np.isfinite(v) and v < EBFMI_MIN]
        if low:
            msgs.append(
                f"E-BFMI below {EBFMI_MIN} in chain(s) {', '.join(low)}: the sampler explores "
                "the tails poorly; reparameterise the model or run a longer warmup."
            )
    if fit.lp.shape[1] < 4:  # R-hat and ESS need a few draws per chain
        return msgs
    tab = fit._convergence_rows().drop(index="lp", errors="ignore")
    rhat = tab["rhat"].to_numpy()
    bad = [n for n, r in zip(tab.index, rhat) if np.isfinite(r) and r > RHAT_MAX]
    if bad and fit.chains > 1:
        msgs.append(
            f"R-hat above {RHAT_MAX} for {_names(bad)}: the chains have not mixed; "
            "run longer chains (more warmup and sampling)."
        )
    limit = ESS_PER_CHAIN * fit.chains
    ess = np.minimum(tab["ess_bulk"].to_numpy(), tab["ess_tail"].to_numpy())
    low_ess = [n for n, v in zip(tab.index, ess) if np.isfinite(v) and v < limit]
    if low_ess:
        msgs.append(
            f"low effective sample size (bulk or tail ESS < {limit}) for {_names(low_ess)}: "
            "posterior means and intervals are unreliable; run more iterations."
        )
    return msgs


def check_sampling(fit: Any, stacklevel: int = 3) -> list[str]:
    """Issue one :class:`SamplingWarning` per problem found by :func:`sampling_problems`;
    returns the messages."""
    msgs = sampling_problems(fit)
    for m in msgs:
        warnings.warn(m, SamplingWarning, stacklevel=stacklevel)
    return msgs
