"""Statistics and text tables shared by the fit classes: posterior summaries of draws (mean, SD,
KDE mode, quantiles, ESS, R-hat), the KDE mode, and fixed-width table formatting."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..core.display import note_table
from . import convergence

__all__ = ["MAP_COLUMNS", "SUMMARY_COLUMNS", "IntFmt", "backend_lines", "call_line", "check_scale", "ess_fmt", "fmt_table", "kde_mode", "mcmc_summary_table", "observed_response"]


SUMMARY_COLUMNS = ("mean", "sd", "map", "q2.5", "q97.5", "ess_bulk", "ess_tail", "rhat")


MAP_COLUMNS = ("estimate", "se", "lower", "upper")


def kde_mode(x: np.ndarray, n_grid: int = 512, cut: float = 3.0) -> float:
    """Location of the maximum of a Gaussian kernel density estimate.

    Silverman's rule of thumb (R's ``bw.nrd0``) and a 512-point grid spanning
    ``[min - 3 bw, max + 3 bw]`` as R's ``density()``; the data are linearly binned on the grid
    and convolved with the kernel (R does the same through an FFT).
    """
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return math.nan
    if n == 1 or np.ptp(x) == 0:
        return float(x[0])
    sd = x.std(ddof=1)
    iqr = np.subtract(*np.percentile(x, [75, 25]))
    lo = min(sd, iqr / 1.34)
    if not lo > 0:
        lo = sd if sd > 0 else (abs(x[0]) if x[0] != 0 else 1.0)
    bw = 0.9 * lo * n ** (-0.2)
    grid = np.linspace(x.min() - cut * bw, x.max() + cut * bw, n_grid)
    step = grid[1] - grid[0]
    pos = (x - grid[0]) / step
    i0 = np.clip(np.floor(pos).astype(int), 0, n_grid - 2)
    frac = pos - i0
    w = np.bincount(i0, weights=1 - frac, minlength=n_grid) + np.bincount(
        i0 + 1, weights=frac, minlength=n_grid
    )
    offsets = np.arange(-(n_grid - 1), n_grid) * step / bw
    dens = np.convolve(w, np.exp(-0.5 * offsets * offsets))[n_grid - 1 : 2 * n_grid - 1]
    return float(grid[int(np.argmax(dens))])


def mcmc_summary_table(arr: np.ndarray, names: Sequence[str], *, modes: bool = True,
                       mcse: bool = True) -> pd.DataFrame:
    """Summary of draws ``arr`` with shape (chain, draw, variable), one row per name.

    Columns: mean, sd, map (KDE mode), q2.5, q97.5, ess_bulk, ess_tail, rhat, plus ``mcse_mean`` (Monte Carlo SE of the mean) kept
    as the last column for tests and diagnostics. ESS, R-hat and MCSE are arviz's definitions,
    computed for all variables at once (:mod:`bayesglmm.results.convergence`).
    ``modes=False`` leaves out the ``map`` column and ``mcse=False`` the ``mcse_mean`` column
    (the two statistics computed one variable at a time or with an ESS of their own); the
    other columns do not change.
    """
    arr = np.asarray(arr, dtype=float)
    C, D, P = arr.shape
    pooled = arr.reshape(C * D, P)
    q = np.percentile(pooled, [2.5, 97.5], axis=0)  # linear interpolation (R type 7)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        # R-hat compares chains: NaN for one; the tail ESS is that of the same quantiles
        diag = convergence.summary_diagnostics(arr, mcse=mcse, quantiles=q)
    cols: dict[str, Any] = {
        "mean": pooled.mean(axis=0),
        "sd": pooled.std(axis=0, ddof=1) if C * D > 1 else np.full(P, np.nan),
    }
    if modes:
        cols["map"] = [kde_mode(pooled[:, i]) for i in range(P)]
    cols.update({"q2.5": q[0], "q97.5": q[1], "ess_bulk": diag["ess_bulk"],
                 "ess_tail": diag["ess_tail"], "rhat": diag["rhat"]})
    if mcse:
        cols["mcse_mean"] = diag["mcse_mean"]
    return pd.DataFrame(cols, index=pd.Index(list(names), name="variable"))


def fmt_table(df: pd.DataFrame, fmts: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    headers = headers or {}
    cols = ["variable"] + list(df.columns)
    rows = [[str(i) for i in df.index]]
    for c in df.columns:
        f = fmts.get(c, "{:.2f}")
        rows.append(
            ["NA" if (v is None or (isinstance(v, float) and not np.isfinite(v))) else f.format(v) for v in df[c]]
        )
    heads = [headers.get(c, c) for c in cols]
    widths = [max(len(h), *(len(s) for s in col)) if len(col) else len(h) for h, col in zip(heads, rows)]
    def just(c, text, w):
        return text.ljust(w) if c == 0 else text.rjust(w)

    lines = [" ".join(just(c, h, w) for c, (h, w) in enumerate(zip(heads, widths)))]
    for r in range(len(df)):
        lines.append(" ".join(just(c, rows[c][r], widths[c]) for c in range(len(cols))))
    return note_table("\n".join(lines), heads,
                      [[rows[c][r] for c in range(len(cols))] for r in range(len(df))])


def ess_fmt(v: float) -> str:
    return str(round(v))


class IntFmt:
    def format(self, v):
        return ess_fmt(v)


def check_scale(scale: str) -> str:
    s = {"standardised": "standardised", "standardized": "standardised", "std": "standardised",
         "natural": "natural"}.get(scale)
    if s is None:
        raise ValueError(f"scale must be 'standardised' or 'natural', not {scale!r}")
    return s


def call_line(model: Any) -> str:
    fn = getattr(model, "call", None)
    if callable(fn):
        return fn()
    return str(fn) if fn else repr(model)


def backend_lines(model: Any) -> list[str]:
    """[the printed header line saying which Stan program ran] (empty for other objects)."""
    backend = getattr(model, "backend", None)
    if backend == "generic":  # the family's program, or its variant's (sequential_common)
        fam = getattr(getattr(getattr(model, "spec", None), "family", None), "program", None)
        return [f"Stan program: generic (the precompiled {fam or model.family} program)"]
    if backend != "specific":
        return []
    reason = getattr(model, "backend_reason", None)
    if getattr(model, "backend_requested", None) == "specific":
        why = "backend='specific'"
    elif reason and getattr(model, "spec", None) is not None:
        why = f"not covered by the generic program: {reason}"
    else:
        why = reason or "compiled for this model"
    return [f"Stan program: specific ({why})"]


def observed_response(model: Any) -> np.ndarray | None:
    fn = getattr(model, "observed_response", None)
    if callable(fn):
        try:
            return fn()
        except (AttributeError, TypeError, ValueError):  # pragma: no cover - best effort
            return None
    return None
