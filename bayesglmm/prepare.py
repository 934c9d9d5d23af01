"""Data preparation: column checks, missing values, factors, the response.

:func:`prepare_data` takes a parsed formula (:class:`bayesglmm.formula.ParsedFormula`) and the user's
DataFrame and returns the rows and columns the model uses, with

* a clear error for an empty data frame, unknown columns (listing the available ones), and
  missing values (saying how many rows, offering ``dropna=True``: listwise deletion);
* categorical predictors as pandas categoricals with sorted (or their own category) levels;
  ``factors=[...]`` converts numeric columns;
* the response checked and recoded for the family (:class:`bayesglmm.modelspec.Response`).

The data-frame options that run before (wide outcomes, centring) are in :mod:`bayesglmm.frame`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .design import sorted_levels
from .families import Family
from .formula import FormulaError, ParsedFormula, evaluate, used_columns
from .frame import (
    WIDE_RESPONSE,
    FramePrep,
    check_column_values,
    is_text_or_categorical,
    prepare_frame,
)
from .modelspec import Response

__all__ = ["WIDE_RESPONSE", "FramePrep", "PreparedData", "prepare_data", "prepare_frame", "used_columns"]


@dataclass(frozen=True, eq=False)
class PreparedData:
    data: pd.DataFrame = field(repr=False)  # used rows (index reset) and columns
    response: Response
    factor_levels: dict[str, list[Any]]  # categorical predictors -> levels (in coding order)
    n_dropped: int
    notes: tuple[str, ...] = ()
    ordered_factors: frozenset[str] = frozenset()  # ordered categoricals: polynomial contrasts


def prepare_data(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    *,
    family: Family,
    dropna: bool = False,
    factors: list[str] | tuple[str, ...] | None = None,
    trials: str | None = None,
    levels: list[Any] | tuple[Any, ...] | None = None,
    extra_columns: tuple[str, ...] = (),
) -> PreparedData:
    """``extra_columns``: further columns kept (and checked for missing values) that are not
    predictors, e.g. ``resid_time`` and ``resid_group`` of a residual correlation."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    if data.shape[0] == 0:
        raise ValueError("The data frame is empty (0 rows).")
    if isinstance(factors, str):
        factors = [factors]
    if factors is not None and not all(isinstance(c, str) for c in factors):
        raise TypeError(f"factors= must be a list of column names, got {factors!r}.")
    if trials is not None and not isinstance(trials, str):
        raise TypeError(f"trials= must be the name of a column, got {trials!r}.")
    if levels is not None and (isinstance(levels, str) or not hasattr(levels, "__iter__")):
        raise TypeError(f"levels= must be a list of response categories in order, got {levels!r}.")
    if trials is not None and not family.needs_trials:
        raise ValueError(f"trials= is only used by family 'binomial', not '{family.name}'.")
    cols = used_columns(parsed, trials)
    all_used = list(dict.fromkeys(cols["response"] + cols["fixed"] + cols["random"]
                                  + cols["grouping"] + list(extra_columns)))
    available = [str(c) for c in data.columns]
    unknown = [c for c in all_used if c not in data.columns]
    if unknown:
        raise FormulaError(
            f"Unknown column{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(c) for c in unknown)} in formula '{parsed.formula}'. "
            f"Available columns: {', '.join(available)}."
        )
    for c in factors or ():
        if c not in data.columns:
            raise ValueError(f"factors=: unknown column '{c}'. Available columns: "
                             f"{', '.join(available)}.")
    check_column_values(data, all_used, grouping=cols["grouping"], response=cols["response"],
                        factors=factors)
    df = data.loc[:, all_used].copy()
    # ---- missing values
    na = df.isna()
    n_missing_rows = int(na.any(axis=1).sum())
    notes: list[str] = []
    if n_missing_rows:
        per_col = {c: int(na[c].sum()) for c in all_used if na[c].any()}
        detail = ", ".join(f"'{c}' ({n} row{'s' if n > 1 else ''})" for c, n in per_col.items())
        if not dropna:
            raise ValueError(
                f"Missing values in {n_missing_rows} of {len(df)} rows, in column(s) {detail}. "
                "Remove them, or pass dropna=True to drop these rows (listwise deletion)."
            )
        df = df.loc[~na.any(axis=1)]
        notes.append(f"dropped {n_missing_rows} rows with missing values in {detail}.")
        if df.shape[0] == 0:
            raise ValueError("No rows left after dropping rows with missing values.")
    df = df.reset_index(drop=True)
    # ---- categorical predictors
    factor_levels: dict[str, list[Any]] = {}
    ordered: set[str] = set()
    predictors = list(dict.fromkeys(cols["fixed"] + cols["random"]))
    for c in predictors:
        if c in cols["response"]:
            continue
        s = df[c]
        if (factors and c in factors) or is_text_or_categorical(s):
            levs = sorted_levels(s)
            is_ordered = isinstance(s.dtype, pd.CategoricalDtype) and bool(s.cat.ordered)
            df[c] = pd.Categorical(s, categories=levs, ordered=is_ordered)
            factor_levels[c] = levs
            if is_ordered and len(levs) > 1:
                ordered.add(c)
    # ---- the response
    response = _response(parsed, df, family, trials, levels, notes)
    _check_not_constant(response, family)
    return PreparedData(df, response, factor_levels, n_missing_rows if dropna else 0,
                        tuple(notes), frozenset(ordered))


def _response(parsed, df, family: Family, trials, levels, notes) -> Response:
    name = parsed.response
    if parsed.cbind is not None:
        if not family.needs_trials:
            raise FormulaError(
                "A cbind(...) response is used by family 'binomial' (cbind(successes, failures)); "
                f"family is '{family.name}'."
            )
        if len(parsed.cbind) != 2:
            raise FormulaError("binomial: write the response as cbind(successes, failures).")
        succ, fail = (
            _numeric(df[e], e, family) if e in df.columns else evaluate(e, df)
            for e in parsed.cbind
        )
        over = np.flatnonzero(fail < 0)
        if over.size and parsed.cbind[1] not in df.columns:  # trials - successes < 0
            i = over[0]
            raise ValueError(
                f"binomial: in cbind({parsed.cbind[0]}, {parsed.cbind[1]}) the failures "
                f"'{parsed.cbind[1]}' must be non-negative integer counts, but there are more "
                f"successes than trials in {over.size} {'row' if over.size == 1 else 'rows'} "
                f"(first: row {df.index[i]}, {succ[i]:g} successes, {fail[i]:g} failures).")
        for e, v in zip(parsed.cbind, (succ, fail)):
            family.check_response(v, e)
        return Response(name, succ.astype(np.int64), (succ + fail).astype(np.int64))
    col = name if name in df.columns else None
    if col is None:
        # an expression such as log(y): evaluate with formulae (real families only)
        if family.stan_y_type != "vector":
            raise FormulaError(
                f"Response '{name}' must be a data column for family '{family.name}'."
            )
        y = evaluate(name, df)
        family.check_response(y, name)
        return Response(name, y)
    s = df[col]
    fam = family.name  # for messages
    if family.ordinal:
        return _ordinal_response(s, col, family, levels, notes)
    if family.factor_response and (
        pd.api.types.is_bool_dtype(s.dtype) or is_text_or_categorical(s) or levels is not None
    ):
        y = _binary_from_factor(s, col, fam, levels, notes)
        if family.needs_trials and trials is not None:
            raise ValueError(f"{fam} with trials=: response '{col}' must be counts.")
        return Response(col, y, np.ones_like(y) if family.needs_trials else None,
                        levels=None)
    if levels is not None:
        raise ValueError(f"levels= is only used by ordinal families and factor responses of "
                         f"bernoulli/binomial, not by family '{fam}'.")
    if is_text_or_categorical(s) or pd.api.types.is_bool_dtype(s.dtype):
        kind = "categorical" if isinstance(s.dtype, pd.CategoricalDtype) else (
            "boolean" if pd.api.types.is_bool_dtype(s.dtype) else "text")
        raise ValueError(
            f"Response column '{col}' is {kind}, but family '{fam}' needs a numeric response "
            f"(values such as {', '.join(map(repr, pd.unique(s)[:3].tolist()))})."
        )
    y = _numeric(s, col, family)
    family.check_response(y, col)
    if family.needs_trials:
        if trials is None:
            if np.any((y != 0) & (y != 1)):
                raise ValueError(
                    f"binomial: response column '{col}' has counts other than 0/1; give the "
                    "number of trials with trials='<column>' or write cbind(successes, failures)."
                )
            return Response(col, y.astype(np.int64), np.ones(len(y), dtype=np.int64))
        t = _numeric(df[trials], trials, family)
        family.check_response(t, trials)
        bad = np.flatnonzero(y > t)
        if bad.size:
            raise ValueError(
                f"binomial: successes in '{col}' exceed trials in '{trials}' in {bad.size} rows "
                f"(first: row {bad[0]}, {y[bad[0]]:g} > {t[bad[0]]:g})."
            )
        return Response(col, y.astype(np.int64), t.astype(np.int64))
    if family.stan_y_type == "int":
        return Response(col, y.astype(np.int64))
    return Response(col, y.astype(float))


def _check_not_constant(response: Response, family: Family) -> None:
    """A real-valued response that never varies leaves the family's scale parameter without a
    positive estimate (its likelihood grows without bound as the scale goes to 0)."""
    y = np.asarray(response.y)
    if family.stan_y_type != "vector" or y.size < 2 or np.ptp(y) > 0:
        return
    scale = ", ".join(family.extra_names) or "scale"
    raise ValueError(
        f"Response '{response.name}' is constant (all {y.size} values are {y[0]:g}): with "
        f"family '{family.name}' its {scale} has no positive estimate, so the model cannot be "
        "fitted. Check that the right column is the response.")


def _numeric(s: pd.Series, col: str, family: Family) -> np.ndarray:
    if is_text_or_categorical(s):
        raise ValueError(
            f"Column '{col}' must be numeric for family '{family.name}' (it is categorical/text)."
        )
    try:
        return s.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"Column '{col}' must be numeric for family '{family.name}'.") from None


def _binary_from_factor(s: pd.Series, col: str, fam: str, levels, notes) -> np.ndarray:
    if pd.api.types.is_bool_dtype(s.dtype) and levels is None:
        return s.to_numpy().astype(np.int64)
    if levels is not None:
        levs = list(levels)
        if len(levs) != 2:
            raise ValueError(f"levels= for a {fam} response must name two levels (second = 1).")
    elif isinstance(s.dtype, pd.CategoricalDtype):
        levs = sorted_levels(s)
    else:
        raise ValueError(
            f"Response column '{col}' is text; family '{fam}' needs 0/1, a boolean or a "
            "two-level categorical. Convert it to a pandas Categorical or pass "
            "levels=[<level for 0>, <level for 1>]."
        )
    vals = s.tolist()
    unknown = sorted({v for v in vals if v not in levs}, key=str)
    if unknown:
        raise ValueError(f"Response column '{col}' has values {unknown} not in levels {levs}.")
    if len(levs) != 2:
        raise ValueError(
            f"Family '{fam}': the categorical response '{col}' must have exactly two levels, "
            f"found {len(levs)} ({', '.join(map(str, levs))})."
        )
    notes.append(f"response '{col}': '{levs[1]}' = 1, '{levs[0]}' = 0.")
    return np.array([levs.index(v) for v in vals], dtype=np.int64)


def _ordinal_response(s: pd.Series, col: str, family: Family, levels, notes) -> Response:
    if levels is not None:
        levs = list(levels)
        pos = {v: i + 1 for i, v in enumerate(levs)}
        if len(pos) != len(levs):
            raise ValueError("levels= has duplicate entries.")
        bad = sorted({v for v in s.tolist() if v not in pos}, key=str)
        if bad:
            raise ValueError(
                f"Response column '{col}' has values {bad} that are not in levels={levs}."
            )
        codes = np.array([pos[v] for v in s.tolist()], dtype=np.int64)
        labels = [str(v) for v in levs]
        order = "levels= order"
    elif isinstance(s.dtype, pd.CategoricalDtype):
        labels = [str(v) for v in s.cat.categories.tolist()]
        codes = s.cat.codes.to_numpy().astype(np.int64) + 1
        order = "category order" if s.cat.ordered else "category order (unordered categorical)"
    elif is_text_or_categorical(s) or pd.api.types.is_bool_dtype(s.dtype):
        raise ValueError(
            f"Ordinal response column '{col}' is text: give the order of its categories with "
            f"levels=[...] (values: {', '.join(map(str, sorted(pd.unique(s).tolist(), key=str)))})"
            ", or use an ordered pandas Categorical."
        )
    else:
        y = s.to_numpy(dtype=float)
        family.check_response(y, col)
        codes = y.astype(np.int64)
        labels = [str(k) for k in range(1, int(codes.max()) + 1)]
        order = "integer codes"
    family.check_response(codes.astype(float), col)
    C = int(codes.max())
    labels = labels[:C]
    notes.append(f"response '{col}': {C} ordered categories ({order}): {' < '.join(labels)}.")
    return Response(col, codes, None, tuple(labels), C)
