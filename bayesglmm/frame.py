"""Data-frame options applied before the formula is matched to the data: wide outcomes
stacked to long, grand-mean centring and centring within cluster. Wide and long inputs then
reach :func:`bayesglmm.spec.build_spec` as the same long formula and the same long DataFrame.

Examples
--------
>>> import pandas as pd
>>> from bayesglmm.families import get_family
>>> df = pd.DataFrame({"id": [1, 2], "t1": [1.0, 2.0], "t2": [1.5, 2.5]})
>>> fp = prepare_frame("cbind(t1, t2) ~ time + (1 | id)", df, family=get_family("gaussian"))
>>> fp.formula, len(fp.data)
('y ~ time + (1 | id)', 4)
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .families import Family
from .formula import (
    FormulaError,
    formula_identifiers,
    parse_formula,
    split_response,
    split_top,
    used_columns,
)

__all__ = ["WIDE_RESPONSE", "FramePrep", "check_column_values", "is_text_or_categorical",
           "prepare_frame"]


def is_text_or_categorical(s: pd.Series) -> bool:
    """True for pandas categoricals and text (object or string) columns."""
    return (
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(s.dtype)
        or pd.api.types.is_string_dtype(s.dtype)
    )


# build_spec() as the same long formula and the same long DataFrame.

WIDE_RESPONSE = "y"  # name of the stacked response column of wide data


@dataclass(frozen=True, eq=False)
class FramePrep:
    """The formula and DataFrame after the data-frame options (``prepare_frame``)."""

    formula: str  # the long formula (cbind(...) of wide data replaced by ``y``)
    data: pd.DataFrame = field(repr=False)
    notes: tuple[str, ...] = ()
    within: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # within factors and their levels
    wide_columns: tuple[str, ...] = ()  # the stacked columns, in order


def prepare_frame(
    formula: str,
    data: pd.DataFrame,
    *,
    family: Family,
    within: dict[str, Any] | None = None,
    cwc: Any = None,
    gmc: Any = None,
    centering: Any = None,
) -> FramePrep:
    """Apply the data-frame options: reshape wide outcomes to long, then grand-mean centring,
    then centring within cluster.

    Parameters
    ----------
    formula
        The model formula as written by the user. ``cbind(y1, y2, y3) ~ ...`` (or a column range
        ``cbind(y1:y3)``, by position in ``data``) with a non-binomial family is a wide outcome.
    data
        The user's DataFrame (not modified).
    family
        The family (for binomial, ``cbind(successes, failures)`` keeps its meaning).
    within
        Within factors of wide data: ``{"time": 3}`` or ``{"time": ["t1", "t2", "t3"]}``;
        several factors cross the columns with the **last factor varying fastest**. ``None``:
        the one right-hand-side variable that is not a data column, with one level per column.
    cwc
        ``{"cluster": g, "pars": [...] or "all"}`` or ``(g, pars)``: adds ``<x>_cwc`` (x minus
        its cluster mean) and ``<x>_cm`` (cluster mean minus the grand mean of x over rows) for
        each named x; if the formula uses neither, x itself is replaced by ``<x>_cwc``.
    gmc, centering
        Grand-mean centring (aliases): a column name, a list of names or ``"all"``.

    Returns
    -------
    FramePrep
        The long formula, the prepared DataFrame and notes.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    lhs, rhs = split_response(formula)
    notes: list[str] = []
    within_out: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    wide_cols: tuple[str, ...] = ()
    is_cbind = re.fullmatch(r"cbind\s*\((.*)\)", lhs) is not None
    if is_cbind and family.needs_trials:
        if within is not None:
            raise FormulaError(
                "within= reshapes wide outcomes, but with family 'binomial' cbind(successes, "
                "failures) is the binomial response: drop within= or choose another family."
            )
    elif is_cbind:
        data, wide_cols, within_out, note = _reshape_wide(lhs, rhs, data, within)
        formula = f"{WIDE_RESPONSE} ~ {rhs}"
        notes.append(note)
    elif within is not None:
        raise FormulaError(
            "within= is only used with a wide outcome: write the response as "
            "cbind(y_1, y_2, ...) (one column per level of the within factors)."
        )
    gmc = _merge_alias(gmc, centering)
    if gmc is not None or cwc is not None:
        data = data.copy()
    if gmc is not None:
        centred = _centring_columns(gmc, "gmc", data, formula, exclude=())
        for c in centred:
            data[c] = data[c] - data[c].mean()
        notes.append(f"grand-mean centred: {', '.join(centred)}.")
    if cwc is not None:
        notes.extend(_centre_within(cwc, data, formula))
    return FramePrep(formula, data, tuple(notes), within_out, wide_cols)


def _cbind_columns(lhs: str, data: pd.DataFrame) -> list[str]:
    """Columns of cbind(a, b, y1:y4) (a range by position in the data)."""
    inner = re.fullmatch(r"cbind\s*\((.*)\)", lhs).group(1)
    names = [str(c) for c in data.columns]
    out: list[str] = []
    for piece in (p.strip() for p in split_top(inner, ",")):
        ends = [e.strip() for e in piece.split(":")]
        for e in ends:
            if e not in names:
                raise FormulaError(
                    f"cbind(): unknown column '{e}' in '{lhs}'. Available columns: "
                    f"{', '.join(names)}."
                )
        if len(ends) == 1:
            out.append(ends[0])
        elif len(ends) == 2:
            i, j = names.index(ends[0]), names.index(ends[1])
            if j < i:
                raise FormulaError(f"cbind(): the column range '{piece}' runs backwards.")
            out.extend(names[i:j + 1])
        else:
            raise FormulaError(f"cbind(): cannot read '{piece}' (use 'first:last').")
    if len(set(out)) != len(out):
        raise FormulaError(f"cbind(): a column is listed twice in '{lhs}'.")
    if len(out) < 2:
        raise FormulaError(f"A wide outcome needs at least two columns, got '{lhs}'.")
    return out


def _rhs_variables(rhs: str) -> set[str]:
    parsed = parse_formula(f"{WIDE_RESPONSE} ~ {rhs}")
    cols = used_columns(parsed)
    return set(cols["fixed"]) | set(cols["random"]) | set(cols["grouping"])


def _reshape_wide(lhs: str, rhs: str, data: pd.DataFrame, within: Any):
    cols = _cbind_columns(lhs, data)
    k = len(cols)
    if within is None:
        missing = sorted(v for v in _rhs_variables(rhs) if v not in data.columns)
        if len(missing) != 1:
            found = f"found {', '.join(missing)}" if missing else "found none"
            raise FormulaError(
                f"Wide outcome {lhs}: give the within factor(s) with within={{'time': {k}}}; "
                "without within= exactly one right-hand-side variable must be a name that is not "
                f"a data column ({found})."
            )
        within = {missing[0]: k}
    if not isinstance(within, dict) or not within:
        raise ValueError("within= must be a dict such as {'time': 3} or {'time': ['t1', 't2', 't3']}.")
    factors: list[tuple[str, tuple[Any, ...]]] = []
    for name, spec in within.items():
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            if spec < 2:
                raise ValueError(f"within=: factor '{name}' needs at least 2 levels, got {spec}.")
            levels: tuple[Any, ...] = tuple(range(1, int(spec) + 1))
        elif isinstance(spec, (list, tuple)) and len(spec) >= 2:
            levels = tuple(spec)
            if len(set(levels)) != len(levels):
                raise ValueError(f"within=: factor '{name}' has duplicate level labels {list(spec)}.")
        else:
            raise ValueError(
                f"within=: factor '{name}' must be a number of levels (>= 2) or a list of level "
                f"labels, got {spec!r}."
            )
        if name in data.columns and name not in cols:
            raise ValueError(
                f"within=: the within factor '{name}' is already a column of the data; "
                "rename the column or the factor."
            )
        factors.append((str(name), levels))
    sizes = [len(lv) for _, lv in factors]
    if int(np.prod(sizes)) != k:
        desc = " x ".join(f"{n} ({len(lv)})" for n, lv in factors)
        raise ValueError(
            f"within=: {desc} = {int(np.prod(sizes))} combinations, but {lhs} has {k} columns "
            f"({', '.join(cols)}); they must match (last factor varying fastest)."
        )
    if WIDE_RESPONSE in data.columns and WIDE_RESPONSE not in cols:
        raise ValueError(
            f"Wide outcome: the stacked response is named '{WIDE_RESPONSE}', but the data already "
            f"has a column '{WIDE_RESPONSE}'; rename that column."
        )
    for c in cols:
        s = data[c]
        if is_text_or_categorical(s) or pd.api.types.is_bool_dtype(s.dtype):
            raise ValueError(f"Wide outcome: column '{c}' must be numeric.")
    n = len(data)
    rest = data.drop(columns=cols).reset_index(drop=True)
    long = rest.loc[np.repeat(np.arange(n), k)].reset_index(drop=True)  # subject-major
    long[WIDE_RESPONSE] = data[cols].to_numpy(dtype=float).reshape(-1)
    cell = np.unravel_index(np.tile(np.arange(k), n), sizes)  # last factor fastest
    for (name, levels), codes in zip(factors, cell):
        long[name] = pd.Categorical.from_codes(codes, categories=list(levels))
    keep = long[WIDE_RESPONSE].notna().to_numpy()
    dropped = int((~keep).sum())
    long = long.loc[keep].reset_index(drop=True)
    fac_text = ", ".join(f"{nm} ({', '.join(map(str, lv))})" for nm, lv in factors)
    note = (f"wide outcome {', '.join(cols)} stacked into '{WIDE_RESPONSE}' ({n} rows -> "
            f"{len(long)} rows, subject-major); within factor(s): {fac_text}"
            + (f"; dropped {dropped} missing responses." if dropped else "."))
    return long, tuple(cols), tuple(factors), note


def _merge_alias(gmc: Any, centering: Any) -> Any:
    if gmc is not None and centering is not None and gmc != centering:
        raise ValueError(
            f"gmc= and centering= are aliases; they were given different values ({gmc!r} and "
            f"{centering!r}). Give one of them."
        )
    return gmc if gmc is not None else centering


def _centring_columns(pars: Any, arg: str, data: pd.DataFrame, formula: str,
                      exclude: tuple[str, ...]) -> list[str]:
    """Resolve a list of columns (or "all": the numeric fixed-part variables)."""
    if isinstance(pars, str) and pars == "all":
        parsed = parse_formula(formula)
        resp = set(used_columns(parsed)["response"])
        return [c for c in used_columns(parsed)["fixed"]
                if c in data.columns and c not in resp and c not in exclude
                and pd.api.types.is_numeric_dtype(data[c].dtype)
                and not pd.api.types.is_bool_dtype(data[c].dtype)]
    names = [pars] if isinstance(pars, str) else list(pars)
    out = []
    for c in names:
        if c not in data.columns:
            raise ValueError(f"{arg}=: unknown column '{c}'. Available columns: "
                             f"{', '.join(map(str, data.columns))}.")
        if is_text_or_categorical(data[c]) or not pd.api.types.is_numeric_dtype(data[c].dtype):
            raise ValueError(f"{arg}=: column '{c}' must be numeric to be centred.")
        out.append(c)
    return out


def _centre_within(cwc: Any, data: pd.DataFrame, formula: str) -> list[str]:
    """Centring within cluster, in place on ``data`` (a copy)."""
    if isinstance(cwc, dict):
        unknown = set(cwc) - {"cluster", "pars"}
        if "cluster" not in cwc or unknown:
            raise ValueError("cwc= must be {'cluster': <column>, 'pars': [<columns>] or 'all'}"
                             + (f"; unknown keys {sorted(unknown)}." if unknown else "."))
        cluster, pars = cwc["cluster"], cwc.get("pars", "all")
    elif isinstance(cwc, (tuple, list)) and len(cwc) == 2:
        cluster, pars = cwc
    else:
        raise ValueError("cwc= must be {'cluster': <column>, 'pars': [<columns>] or 'all'} "
                         "or a pair (cluster, pars).")
    if cluster not in data.columns:
        raise ValueError(f"cwc=: unknown cluster column '{cluster}'. Available columns: "
                         f"{', '.join(map(str, data.columns))}.")
    cols = _centring_columns(pars, "cwc", data, formula, exclude=(cluster,))
    sizes = data.groupby(cluster, observed=True)[cluster].transform("size")
    singles = pd.unique(data.loc[sizes == 1, cluster])
    if len(singles):
        warnings.warn(
            f"cwc=: {len(singles)} cluster(s) of '{cluster}' have a single row "
            f"({', '.join(map(str, singles[:5]))}{', ...' if len(singles) > 5 else ''}): their "
            "within-cluster deviations are 0.",
            UserWarning, stacklevel=4,
        )
    used = formula_identifiers(formula)
    replaced = []
    for c in cols:
        cm = data.groupby(cluster, observed=True)[c].transform("mean")
        data[f"{c}_cwc"] = data[c] - cm
        data[f"{c}_cm"] = cm - data[c].mean()
        if f"{c}_cwc" not in used and f"{c}_cm" not in used:
            data[c] = data[f"{c}_cwc"]
            replaced.append(c)
    notes = [f"centred within cluster '{cluster}': {', '.join(cols)} (columns "
             f"{', '.join(f'{c}_cwc, {c}_cm' for c in cols)})."]
    if replaced:
        notes.append(f"{', '.join(replaced)} replaced by the within-cluster deviation "
                     "(the formula uses neither <x>_cwc nor <x>_cm).")
    return notes


# --------------------------------------------------------------------------- column values


def _rows(index: pd.Index, where: np.ndarray, k: int = 3) -> str:
    """'row 3' / 'rows 3, 8, 11, ...' by the data frame's own index labels."""
    labels = [str(index[i]) for i in where[:k]]
    more = ", ..." if len(where) > k else ""
    return f"row{'s' if len(where) > 1 else ''} {', '.join(labels)}{more}"


def _is_number_text(v: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return True
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            return False
        return True
    return False


def check_column_values(data: pd.DataFrame, columns: list[str], *, grouping: list[str],
                        response: list[str] | tuple[str, ...] = (),
                        factors: list[str] | tuple[str, ...] | None = None) -> None:
    """Checks of the values in the columns a model uses, before anything is fitted.

    * A column that is missing in every row: a ValueError naming it (a grouping column
      without a single group, or a predictor without a value).
    * Infinite values in a numeric column: a ValueError naming the column and the rows.
    * A text column whose values are numbers except for a few (a numeric column with a
      stray text value, such as ``"n/a"`` or ``"?"``): a warning naming the column and the
      text values, since it becomes a categorical predictor with one level per number
      (silenced by listing the column in ``factors=`` when it is meant to be categorical);
      in the response, the same is a ValueError.

    Parameters
    ----------
    data : DataFrame
        The user's data frame.
    columns : list of str
        The columns the model uses.
    grouping : list of str
        The grouping columns among them (named as such in the messages).
    response : list of str
        The response columns among them.
    factors : list of str, optional
        Columns the user declared categorical.
    """
    n = len(data)
    for c in columns:
        s = data[c]
        what = ("Grouping column" if c in grouping else "Response column" if c in response
                else "Column")
        miss = s.isna().to_numpy()
        if n and miss.all():
            raise ValueError(f"{what} '{c}' has no values: it is missing in all {n} rows.")
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            vals = s.to_numpy(dtype=float, na_value=np.nan)
            bad = np.flatnonzero(np.isinf(vals))
            if bad.size:
                raise ValueError(
                    f"{what} '{c}' has infinite values in {bad.size} "
                    f"{'row' if bad.size == 1 else 'rows'} ({_rows(data.index, bad)}: "
                    f"{vals[bad[0]]:g}). A model cannot use them: replace them or remove "
                    "those rows.")
        elif (pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)) \
                and c not in (factors or ()) and c not in grouping:
            text = _stray_text(s, data.index, miss)
            if text is None:
                continue
            if c in response:
                raise ValueError(f"Response column '{c}' looks numeric but holds {text}. Fix or "
                                 "remove those values (e.g. pd.to_numeric(df['{c}'], "
                                 "errors='coerce') makes them missing).".replace("{c}", c))
            warnings.warn(
                f"Column '{c}' looks numeric but holds {text}, so it is used as a categorical "
                f"predictor with one level per distinct value. If it is numeric, fix or remove "
                f"those values (e.g. pd.to_numeric(df['{c}'], errors='coerce') makes them "
                f"missing); if it is categorical, pass factors=['{c}'] to say so.",
                UserWarning, stacklevel=5)


def _stray_text(s: pd.Series, index: pd.Index, miss: np.ndarray) -> str | None:
    """'the text 'n/a' (row 5; 299 of 300 values are numbers)' when most values of ``s``
    are numbers (or numbers written as text) and a few are not; None otherwise."""
    present = np.flatnonzero(~miss)
    values = s.to_numpy()[present]
    numeric = np.array([_is_number_text(v) for v in values], dtype=bool)
    if not numeric.any() or numeric.all() or numeric.mean() < 0.5:
        return None  # text (a factor), or numbers stored as text
    text_rows = present[~numeric]
    texts = list(dict.fromkeys(str(v) for v in values[~numeric]))
    shown = ", ".join(repr(v) for v in texts[:3]) + (", ..." if len(texts) > 3 else "")
    return (f"the text {shown} ({_rows(index, text_rows)}; {int(numeric.sum())} of "
            f"{present.size} values are numbers)")
