"""The result of a batch: :class:`BatchResult` (tidy table, recovery summary, fits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .tasks import TaskResult

__all__ = ["BatchResult"]

_COLUMNS = ["dataset", "parameter", "estimate", "se", "lower", "upper", "rhat", "ess_bulk",
            "divergences", "converged", "elapsed", "error"]


@dataclass(eq=False)
class BatchResult:
    """The fits of :func:`fit_many`.

    Attributes
    ----------
    method : str
        The fitting method.
    results : list
        One :class:`TaskResult` per dataset, in dataset order.
    truth : pandas.DataFrame or None
        The parameter values of simulated data (``Model.simulate``), one row per dataset.
    elapsed : float
        Wall time of the batch in seconds.
    """

    method: str
    results: list[TaskResult] = field(repr=False)
    truth: pd.DataFrame | None = field(default=None, repr=False)
    elapsed: float = float("nan")
    workers: int = 0

    def __len__(self) -> int:
        return len(self.results)

    @property
    def fits(self) -> list[Any]:
        """The fit objects (``keep_fits=True``; None for failed fits)."""
        if not any(r.fit is not None for r in self.results) and self.n_failed < len(self):
            raise ValueError("the fits were not kept: call fit_many(..., keep_fits=True)")
        return [r.fit for r in self.results]

    @property
    def errors(self) -> dict[int, str]:
        """{dataset: error text} of the fits that failed."""
        return {r.index: r.error for r in self.results if r.error is not None}

    @property
    def n_failed(self) -> int:
        """Number of datasets whose fit failed (the error is in :meth:`to_frame`)."""
        return sum(r.error is not None for r in self.results)

    @property
    def seeds(self) -> list[int | None]:
        """The seed of each fit."""
        return [r.seed for r in self.results]

    def to_frame(self) -> pd.DataFrame:
        """Tidy results: one row per dataset and parameter (random effects excluded), columns
        dataset (0-based position), parameter, estimate (posterior mean for draws), se
        (posterior sd), lower, upper (95% interval), rhat, ess_bulk, divergences, converged,
        elapsed (seconds of the fit), error (None, or the error of a failed fit: one row with
        parameter None).

        Returns
        -------
        pandas.DataFrame
        """
        parts = []
        for r in self.results:
            if r.table is None:
                row = {c: np.nan for c in _COLUMNS}
                row.update(dataset=r.index, parameter=None, converged=False, elapsed=r.elapsed,
                           error=r.error)
                parts.append(pd.DataFrame([row]))
                continue
            t = r.table.reset_index(names="parameter")
            t.insert(0, "dataset", r.index)
            t["elapsed"] = r.elapsed
            t["error"] = None
            parts.append(t)
        if not parts:
            return pd.DataFrame(columns=_COLUMNS)
        df = pd.concat(parts, ignore_index=True)[_COLUMNS]
        return df.astype({"dataset": int, "converged": bool})

    def recovery(self) -> pd.DataFrame:
        """Parameter recovery of simulated data: per parameter the true value (mean over
        datasets), the mean estimate, bias (mean of estimate - truth), RMSE, coverage (share of
        95% intervals containing the truth) with its binomial standard error, and the number of
        successful fits.

        Returns
        -------
        pandas.DataFrame
            One row per parameter.

        Raises
        ------
        ValueError
            The datasets did not come from :meth:`bayesglmm.Model.simulate` (no true values).
        """
        if self.truth is None:
            raise ValueError("recovery() needs data from Model.simulate() (the true values)")
        df = self.to_frame()
        df = df[df["error"].isna()]
        truth = self.truth.reset_index(names="dataset").melt(
            id_vars="dataset", var_name="parameter", value_name="true")
        m = df.merge(truth, on=["dataset", "parameter"])
        rows = []
        for name in self.truth.columns:
            g = m[m["parameter"] == name]
            ok = np.isfinite(g["estimate"].to_numpy(dtype=float))
            g = g[ok]
            if g.empty:
                continue
            err = g["estimate"].to_numpy(dtype=float) - g["true"].to_numpy(dtype=float)
            lo, hi = g["lower"].to_numpy(dtype=float), g["upper"].to_numpy(dtype=float)
            tr = g["true"].to_numpy(dtype=float)
            has = np.isfinite(lo) & np.isfinite(hi)
            cov = float(np.mean((lo[has] <= tr[has]) & (tr[has] <= hi[has]))) if has.any() else np.nan
            rows.append({"parameter": name, "true": float(np.mean(tr)),
                         "mean_estimate": float(g["estimate"].mean()), "bias": float(err.mean()),
                         "rmse": float(np.sqrt(np.mean(err**2))), "coverage": cov,
                         "coverage_se": float(np.sqrt(cov * (1 - cov) / has.sum())) if has.any() else np.nan,
                         "n": int(len(g))})
        return pd.DataFrame(rows).set_index("parameter")

    def __repr__(self) -> str:
        where = "in-process" if not self.workers else f"{self.workers} Dask worker(s)"
        return (f"<BatchResult: {len(self)} {self.method}() fits ({self.n_failed} failed), "
                f"{self.elapsed:.1f} s, {where}>")
