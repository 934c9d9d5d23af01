"""Helper of the sampling tests: two fits of the same posterior agree within Monte Carlo error."""

from __future__ import annotations

import numpy as np


def means_agree(fit_a, fit_b, nsd: float = 4.0, inc_random: bool = True,
                exclude: tuple[str, ...] = ()):
    """Posterior means agree within ``nsd`` combined MCSEs for every quantity of the summaries
    but ``exclude`` (lp included by default: two samplers of one program report Stan's lp__
    up to the same dropped constants; two parameterisations do not share it). Returns the two
    summaries (with ``mcse_mean``)."""
    a = fit_a.summary(inc_random=inc_random, mcse=True)
    b = fit_b.summary(inc_random=inc_random, mcse=True)
    assert list(a.index) == list(b.index)
    keep = [n for n in a.index if n not in exclude]
    a, b = a.loc[keep], b.loc[keep]
    z = (a["mean"] - b["mean"]).abs() / np.hypot(a["mcse_mean"], b["mcse_mean"])
    bad = z[z > nsd]
    assert bad.empty, bad
    return a, b
