"""Residual correlation of gaussian models within blocks (``resid_corr="ar1"`` or ``"cs"``).

Each block (a level of ``resid_group``) has residuals e = y - mu that are multivariate normal
with covariance sigma^2 R, where

* ar1: R[r, c] = rho^|t_r - t_c| with t the integer time values (the lag is their difference,
  as nlme's ``corAR1(form = ~ time | id)``; only when the times are not integers are they
  replaced by the ranks of their distinct values), so gaps in the times are kept;
* cs (compound symmetry): R[r, c] = rho for r != c.

No diagonal jitter is added, and no N x N (or even block) matrix is built: both structures are
Markov/exchangeable, so the exact block density factorises into one normal conditional density
per observation (``stan_snippets/resid_ar1.stan``, ``resid_cs.stan``), computed in (group, time) order:

* ar1: e_t | e_{t-1} ~ N(rho^d e_{t-1}, sigma^2 (1 - rho^(2d))), d = t - t_prev (for d = 1 this
  is the closed-form tridiagonal inverse and determinant (1 - rho^2)^(T-1) sigma^(2T));
* cs: e_t | the k earlier residuals ~ N(rho S / (1 + (k-1) rho), sigma^2 (1 - k rho^2 / (1 + (k-1) rho))),
  S their sum.

These conditionals also give the pointwise log-likelihood (they sum to the block log density).
Stan data: ``resid_ord`` (rows in block/time order, 1-based), ``resid_lag`` (0 for the first row
of a block, else the time lag to the previous row), ``resid_T`` (largest block size, cs only).
The parameter is ``rho_resid``: (-1, 1) for ar1, (-1 / (resid_T - 1), 1) for cs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .families import FAMILIES, Family

__all__ = ["RESID_KINDS", "RESID_LOWER", "ResidCorr", "build_resid", "check_resid_args"]

#: kind -> (Stan function of the pointwise conditional log densities, its file in
#: stan_snippets/, description)
RESID_KINDS: dict[str, tuple[str, str, str]] = {
    "ar1": ("ar1_resid_pointwise", "resid_ar1.stan",
            "AR(1): correlation rho^lag, lag = time difference"),
    "cs": ("cs_resid_pointwise", "resid_cs.stan",
           "compound symmetry: correlation rho between any two rows"),
}

#: kind -> lower bound of rho_resid (Stan expression; the upper bound is 1): the smallest
#: correlation for which every block's correlation matrix is positive definite
RESID_LOWER: dict[str, str] = {"ar1": "-1", "cs": "-1.0 / (resid_T - 1)"}


@dataclass(frozen=True, eq=False)
class ResidCorr:
    """A residual correlation structure, ready for code generation."""

    kind: str  # 'ar1' | 'cs'
    group: str  # blocking column
    time: str | None  # time column (None: row order within the block)
    order: np.ndarray = field(repr=False)  # N, 0-based rows in (block, time) order
    lag: np.ndarray = field(repr=False)  # N (in that order): 0 = first row of a block, else lag
    n_blocks: int = 0
    max_block: int = 0
    time_kind: str = "integer"  # 'integer' | 'rank' | 'row order'

    @property
    def function(self) -> str:
        return RESID_KINDS[self.kind][0]

    @property
    def snippet(self) -> str:
        return RESID_KINDS[self.kind][1]

    def describe(self) -> str:
        tm = {"integer": f"lags = differences of the integer values of '{self.time}'",
              "rank": f"lags = differences of the ranks of the distinct values of '{self.time}'",
              "row order": "lags = row order within the block"}[self.time_kind]
        return (f"residual correlation {self.kind} ({RESID_KINDS[self.kind][2]}) within "
                f"'{self.group}' ({self.n_blocks} blocks, up to {self.max_block} rows); {tm}")


def check_resid_args(resid_corr: Any, resid_time: Any, resid_group: Any, family: Family,
                     data: pd.DataFrame) -> None:
    """Check the residual-correlation arguments before the data are prepared."""
    if resid_corr is None:
        for name, val in (("resid_time", resid_time), ("resid_group", resid_group)):
            if val is not None:
                raise ValueError(f"{name}= is only used with resid_corr= ('ar1' or 'cs').")
        return
    if resid_corr not in RESID_KINDS:
        raise ValueError(f"resid_corr must be one of {', '.join(map(repr, RESID_KINDS))} "
                         f"(or None), not {resid_corr!r}.")
    if not family.resid_corr:
        ok = [n for n, f in FAMILIES.items() if f.resid_corr]
        raise ValueError(
            f"resid_corr='{resid_corr}' is not available for family '{family.name}': residual "
            f"correlation is supported for family {', '.join(repr(n) for n in ok)} only."
        )
    for name, col in (("resid_time", resid_time), ("resid_group", resid_group)):
        if col is not None and col not in data.columns:
            raise ValueError(f"{name}=: unknown column '{col}'. Available columns: "
                             f"{', '.join(map(str, data.columns))}.")


def default_group(resid_group: str | None, grouping: list[str]) -> tuple[str, str | None]:
    """The blocking column and a note when it was taken from the random-effect terms."""
    if resid_group is not None:
        return resid_group, None
    if not grouping:
        raise ValueError(
            "resid_corr= needs the blocks of correlated residuals: give resid_group='<column>' "
            "(the model has no random-effect term to take it from)."
        )
    g = grouping[0]
    extra = (f" (the first of the grouping factors {', '.join(grouping)})"
             if len(grouping) > 1 else " (the model's grouping factor)")
    return g, f"resid_group not given: residual correlation within '{g}'{extra}."


def _time_values(s: pd.Series) -> tuple[np.ndarray, str]:
    """Integer time values, or ranks of the distinct values when they are not integers."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = s.cat.categories
        if pd.api.types.is_numeric_dtype(cats.dtype):
            s = pd.Series(np.asarray(cats)[s.cat.codes.to_numpy()], index=s.index)
        else:
            return s.cat.codes.to_numpy().astype(np.int64), "rank"
    if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        vals = pd.unique(s)
        ranks = {v: i for i, v in enumerate(sorted(vals, key=str))}
        return np.array([ranks[v] for v in s.tolist()], dtype=np.int64), "rank"
    x = s.to_numpy(dtype=float)
    if np.all(x == np.round(x)):
        return x.astype(np.int64), "integer"
    uniq = np.unique(x)
    return np.searchsorted(uniq, x).astype(np.int64), "rank"


def build_resid(kind: str, data: pd.DataFrame, *, group: str, time: str | None) -> ResidCorr:
    """Block order and lags of the rows of ``data`` (the rows the model uses)."""
    n = len(data)
    gcodes = pd.factorize(data[group], sort=True)[0]
    if time is None:
        t, tkind = np.zeros(n, dtype=np.int64), "row order"
        for g in np.unique(gcodes):  # position within the block
            idx = np.flatnonzero(gcodes == g)
            t[idx] = np.arange(idx.size)
    else:
        t, tkind = _time_values(data[time])
    order = np.lexsort((np.arange(n), t, gcodes))
    gs, ts = gcodes[order], t[order]
    first = np.r_[True, gs[1:] != gs[:-1]]
    lag = np.where(first, 0, np.r_[0, np.diff(ts)])
    dup = np.flatnonzero(~first & (lag == 0))
    if dup.size:
        row = order[dup[0]]
        raise ValueError(
            f"resid_time='{time}' has duplicate times within a block of resid_group='{group}': "
            f"{dup.size} duplicate(s), e.g. {group} = {data[group].iloc[row]!r}, "
            f"{time} = {data[time].iloc[row]!r}. Each row of a block needs its own time."
        )
    sizes = np.bincount(gcodes)
    if sizes.max() < 2:
        raise ValueError(f"resid_corr='{kind}': every block of '{group}' has a single row, so "
                         "there is no residual correlation to estimate.")
    return ResidCorr(kind, group, time, order.astype(np.int64), lag.astype(np.int64),
                     int(sizes.size), int(sizes.max()), tkind)


def stan_data(resid: ResidCorr) -> dict[str, Any]:
    """Stan data of the residual structure."""
    d: dict[str, Any] = {"resid_ord": resid.order + 1, "resid_lag": resid.lag}
    if resid.kind == "cs":
        d["resid_T"] = int(resid.max_block)
    return d


def stan_context(resid: ResidCorr | None) -> dict[str, Any] | None:
    """Template context: the kind and the Stan function."""
    if resid is None:
        return None
    return {"kind": resid.kind, "function": resid.function, "lower": RESID_LOWER[resid.kind]}


def check_redundancy(resid: ResidCorr, intercept_factors: list[str]) -> str | None:
    """Warn (cs) or note (ar1) when a random intercept shares the blocks of the residuals.

    ``intercept_factors``: grouping factors of random-effect terms with an intercept.
    cs within g plus (1 | g) is not identified (both give every pair of rows in a block the same
    covariance); ar1 plus (1 | g) is identified only through the decay of the correlation.
    """
    if resid.group not in intercept_factors:
        return None
    if resid.kind == "cs":
        import warnings

        warnings.warn(
            f"resid_corr='cs' within '{resid.group}' and a random intercept for "
            f"'{resid.group}' describe the same covariance (constant within a block): the model "
            "is not identified; drop one of them.",
            UserWarning, stacklevel=5,
        )
        return None
    return (f"AR(1) residuals and a random intercept share the blocks '{resid.group}': they are "
            "separated only by the decay of the correlation with the lag (weakly identified "
            "with few time points).")
