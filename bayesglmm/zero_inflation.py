"""The zero-inflation part of the zero-inflated families: its formula (``zi=``), its design
matrix for the fitted data and for new data, and the probability of a structural zero.

A zero-inflated model has two linear predictors: the count part (the model formula, log link)
and the zero part, ``logit P(structural zero) = X_zi b_zi``, whose design comes from the
right-hand side of ``zi=`` (default ``"~ 1"``: one probability for all rows). The zero part has
fixed effects only. Its coefficients are reported as ``b_zi[Intercept]``, ``b_zi[x]``, ...
(logit scale); their Stan name is ``beta_zi``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from .design import FormulaeRuns, check_newdata, fixed_effects
from .formula import FormulaError, inject_contrasts, split_top, var_names
from .modelspec import FixedEffects
from .priors import ZeroPart

__all__ = ["zero_part", "zi_columns", "zi_design", "zi_effects", "zi_names", "zi_probability",
           "zi_rhs"]


def zi_rhs(zi: Any) -> str:
    """The right-hand side of a ``zi=`` formula (``"~ 1"`` -> ``"1"``); None gives ``"1"``.

    Raises
    ------
    FormulaError
        When ``zi`` is not a one-sided formula of fixed effects.
    """
    if zi is None:
        return "1"
    if not isinstance(zi, str) or not zi.strip():
        raise FormulaError(f"zi= must be a one-sided formula such as '~ 1' or '~ x', got {zi!r}.")
    parts = split_top(" ".join(zi.split()), "~")
    if len(parts) != 2 or parts[0].strip():
        raise FormulaError(f"zi= must be a one-sided formula such as '~ 1' or '~ x' (no "
                           f"response), got {zi!r}.")
    rhs = parts[1].strip()
    if "|" in rhs:
        raise FormulaError(f"zi= takes fixed effects only (no '|' terms), got {zi!r}.")
    if "offset(" in rhs.replace(" ", ""):
        raise FormulaError(f"zi= does not take offset() terms, got {zi!r}.")
    return rhs


def zi_columns(rhs: str) -> tuple[str, ...]:
    """The data columns the zero-inflation formula uses."""
    return tuple(sorted(var_names(rhs)))


def zi_effects(rhs: str, data: pd.DataFrame, levels: dict[str, list[str]],
               wrap: dict[str, str], runs: FormulaeRuns | None = None) -> FixedEffects:
    """The zero-inflation design on the prepared frame (same contrasts as the model formula;
    ``runs``: the designs already built on it, see :class:`bayesglmm.design.FormulaeRuns`)."""
    fe = fixed_effects(inject_contrasts(rhs, wrap), data, levels, runs)
    if not fe.intercept and fe.K == 0:
        raise FormulaError(f"zi= '~ {rhs}' has no columns; use '~ 1' for a constant "
                           "zero-inflation probability.")
    return fe


def _names(zi: FixedEffects) -> tuple[str, ...]:
    return (("Intercept",) if zi.intercept else ()) + tuple(zi.names)


def _with_intercept(zi: FixedEffects, X: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(X.shape[0]), X]) if zi.intercept else X


def zi_names(spec: Any) -> tuple[str, ...]:
    """Column names of the zero-inflation design: ``Intercept`` first when present."""
    return _names(spec.zi)


def zero_part(zi: FixedEffects) -> ZeroPart:
    """The zero part's design as the prior sees it (names, matrix with the intercept column)."""
    return ZeroPart(_names(zi), _with_intercept(zi, np.asarray(zi.X, dtype=float)), zi.intercept)


def zi_design(spec: Any, newdata: pd.DataFrame | None = None) -> np.ndarray:
    """X_zi (rows x K_zi, the intercept column included) of the fitted data or of ``newdata``."""
    zi = spec.zi
    if newdata is None:
        X = np.asarray(zi.X, dtype=float)
    else:
        needed = [c for c in zi_columns(zi.rhs) if c in spec.data.columns]
        nd = check_newdata(spec, newdata, needed)
        new = zi.design.evaluate_new_data(nd)
        M = np.asarray(new.design_matrix, dtype=float)
        cols: list[int] = []
        for name, term in new.terms.items():
            if getattr(term, "kind", None) != "intercept":
                sl = new.slices[name]
                cols.extend(range(sl.start, sl.stop))
        X = M[:, cols]
    return _with_intercept(zi, X)


def zi_probability(b_zi: np.ndarray, X_zi: np.ndarray) -> np.ndarray:
    """P(structural zero) = logistic(X_zi b_zi): (draws, rows) for b_zi of shape (draws, K_zi),
    or (rows,) for one coefficient vector."""
    return expit(np.asarray(b_zi, dtype=float) @ np.asarray(X_zi, dtype=float).T)
