"""A posterior mode (:class:`MAPFit`): estimates with delta-method SEs and Wald intervals, the
random effects at their conditional modes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..core.naming import ParamName
from .base import Fit
from .summary import MAP_COLUMNS, backend_lines, call_line, check_scale, fmt_table

__all__ = ["MAPFit"]


class MAPFit(Fit):
    """Joint posterior mode (``Model.optimize()``): estimates, delta-method SEs, Wald CIs.

    Attributes: ``neg_log_posterior`` (negative log posterior at the mode, all constants kept,
    no Jacobian; with ``laplace=True`` the Laplace-integrated one; ``objective`` is the same
    number under its former name), ``log_ml`` (Laplace
    approximation of the log marginal likelihood, NaN if the Hessian is not positive definite),
    ``converged``, ``theta_unc`` (unconstrained mode; random effects at their conditional
    modes), ``cov_unc`` (covariance on the unconstrained scale used for the delta method; with
    ``laplace=True`` a :class:`bayesglmm.inference.optimize.LaplaceCov`, kept factored so that
    its size is linear in the number of random effects: ``np.asarray(fit.cov_unc)`` gives the
    dense matrix, ``J @ fit.cov_unc`` and ``fit.cov_unc.diagonal()`` work without it),
    ``laplace`` (True: random effects integrated out; False: joint mode).
    """

    method = "optimize"

    def __init__(
        self,
        model: Any,
        params: Sequence[ParamName],
        estimate: np.ndarray,
        se: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
        *,
        objective: float,
        log_ml: float = math.nan,
        converged: bool = True,
        message: str = "",
        theta_unc: np.ndarray | None = None,
        cov_unc: np.ndarray | None = None,
        laplace: bool = False,
        elapsed: float = math.nan,
    ):
        super().__init__(model, params)
        self._table = pd.DataFrame(
            {"estimate": estimate, "se": se, "lower": lower, "upper": upper},
            index=pd.Index([p.user for p in params], name="variable"),
        )
        self.objective = float(objective)
        self.log_ml = float(log_ml)
        self.converged = bool(converged)
        self.message = message
        self.theta_unc = theta_unc
        self.cov_unc = cov_unc
        self.laplace = laplace
        self.elapsed = elapsed

    @property
    def neg_log_posterior(self) -> float:
        """Negative log posterior density at the mode (what is printed as
        "Negative Log-Posterior")."""
        return self.objective

    @property
    def estimates(self) -> dict[str, float]:
        """{user name: estimate} for every reported quantity (random effects included)."""
        return self._table["estimate"].to_dict()

    def summary(self, pars: Sequence[str] | str | None = None, inc_random: bool = False) -> pd.DataFrame:
        """Point estimates with delta-method standard errors and 95% Wald intervals.

        Parameters
        ----------
        pars : str or list of str, optional
            Names to select (``"b"`` selects every ``b[...]``); None: every quantity.
        inc_random : bool
            Add the standardised random effects ``r_re``.

        Returns
        -------
        pandas.DataFrame
            Columns estimate, se, lower, upper; rows in display order.
        """
        sel = self._select(pars, inc_random)
        return self._table.iloc[sel].copy()

    def format(self, max_rows: int = 10, digits: int = 5, ranef: bool = False) -> str:
        df = self.summary()
        f = "{:.%sf}".replace("%s", str(int(digits)))
        has_re = any(p.kind == "re" for p in self._params)
        lines = [
            "Call:",
            call_line(self.model),
            "",
            "MAP Estimation via Stan" + (" (joint mode)" if has_re and not self.laplace else ""),
            *backend_lines(self.model),
            f"Negative Log-Posterior: {self.neg_log_posterior:.2f}",
            "Approx. Log Marginal Likelihood (Laplace): "
            + (f"{self.log_ml:.2f}" if np.isfinite(self.log_ml) else "NA"),
        ]
        if not self.converged:
            lines.append(f"Warning: the optimiser did not converge ({self.message})")
        if has_re and not self.laplace:
            lines.append(
                "Note: joint mode over all parameters incl. the standardised random effects; "
                "random-effect SDs are overestimated (use optimize(laplace=True))"
            )
        if has_re and not ranef:
            lines.append(
                "Note: Random effects are stored in fit.random_effects() (use ranef=True to show them)"
            )
        lines.append("Point Estimates and 95% Wald CI:")
        heads = {"estimate": "Estimate", "se": "Std. Error", "lower": "Lower 95%", "upper": "Upper 95%"}
        lines.append(fmt_table(df.iloc[:max_rows], {c: f for c in MAP_COLUMNS}, heads))
        if len(df) > max_rows:
            lines.append(f"... {len(df) - max_rows} more rows: use summary() for the full table")
        if ranef and has_re:
            re_df = self.random_effects().set_index("parameter")[list(MAP_COLUMNS)]
            lines += ["", "Random effects (standardised, conditional modes):",
                      fmt_table(re_df, {c: f for c in MAP_COLUMNS}, heads)]
        return "\n".join(lines)

    def random_effects(self, scale: str = "standardised") -> pd.DataFrame:
        """Random effects at the estimate, per grouping term, level and coefficient.

        Parameters
        ----------
        scale : {"standardised", "natural"}
            ``r_re`` with standard errors and Wald intervals, or ``sd * r_re`` (standard errors
            and intervals not computed: NaN).

        Returns
        -------
        pandas.DataFrame
            Columns group, level, term, parameter, estimate, se, lower, upper.
        """
        scale = check_scale(scale)
        t_ = self._table
        recs = []
        for t, level, coef, i, sd_i in self._re_rows():
            row = t_.iloc[i]
            if scale == "natural":
                s = t_.iloc[sd_i]["estimate"] if sd_i is not None else math.nan
                vals = {"estimate": row["estimate"] * s, "se": math.nan, "lower": math.nan, "upper": math.nan}
            else:
                vals = dict(row[list(MAP_COLUMNS)])
            recs.append(dict(group=t.group, level=level, term=coef, parameter=self._params[i].user, **vals))
        return pd.DataFrame(
            recs, columns=["group", "level", "term", "parameter", "estimate", "se", "lower", "upper"]
        )
