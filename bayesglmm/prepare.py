"""Data preparation: column checks, missing values, factors, the response.

:func:`prepare_data` takes a parsed formula (:class:`bayesglmm.spec.ParsedFormula`) and the user's
DataFrame and returns the rows and columns the model uses, with

* a clear error for an empty data frame, unknown columns (listing the available ones), and
  missing values (saying how many rows, offering ``dropna=True``: listwise deletion);
* categorical predictors as pandas categoricals with sorted (or their own category) levels;
  ``factors=[...]`` converts numeric columns;
* the response checked and recoded for the family (:class:`bayesglmm.spec.Response`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .families import Family

if TYPE_CHECKING:  # pragma: no cover
    from .spec import ParsedFormula, Response

__all__ = ["FramePrep", "PreparedData", "prepare_data", "prepare_frame", "used_columns"]


@dataclass(frozen=True, eq=False)
class PreparedData:
    data: pd.DataFrame = field(repr=False)  # used rows (index reset) and columns
    response: Response
    factor_levels: dict[str, list[Any]]  # categorical predictors -> levels (in coding order)
    n_dropped: int
    notes: tuple[str, ...] = ()
    ordered_factors: frozenset[str] = frozenset()  # ordered categoricals: polynomial contrasts


def _var_names(expr: str) -> set[str]:
    from formulae import model_description

    from .spec import _NON_COLUMNS, FormulaError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            names = set(model_description(expr).var_names)
    except Exception as e:  # noqa: BLE001 - formulae raises many types
        raise FormulaError(f"Cannot read '{expr}': {e}") from None
    return {n for n in names if n not in _NON_COLUMNS}


def used_columns(parsed: ParsedFormula, trials: str | None = None) -> dict[str, list[str]]:
    """Columns used by each part: {'response': [...], 'fixed': [...], 'random': [...],
    'grouping': [...]} (formula order not guaranteed within a part; sorted)."""
    if parsed.cbind is not None:
        resp = list(dict.fromkeys(
            c for e in parsed.cbind
            for c in ([e] if _is_column_name(e) else sorted(_var_names(f"I({e})")))
        ))
    else:
        resp = sorted(_var_names(parsed.response))
    if trials is not None:
        resp.append(trials)
    fixed = sorted(_var_names(parsed.fixed)) if parsed.fixed not in ("1", "0", "-1") else []
    rand = sorted({v for b in parsed.bars for v in _var_names(b.lhs)})
    grouping = list(parsed.grouping_columns)
    return {"response": resp, "fixed": fixed, "random": rand, "grouping": grouping}


def _is_column_name(expr: str) -> bool:
    from .spec import _IDENT

    return re.fullmatch(_IDENT, expr) is not None


def _evaluate(expr: str, df: pd.DataFrame) -> np.ndarray:
    """The values of a response expression such as ``log(y)`` or ``size - incidence``
    (evaluated by formulae, with the functions of the formula namespace)."""
    from formulae import design_matrices

    from .spec import _NAMESPACE, FormulaError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            dm = design_matrices(f"I({expr}) ~ 1", df, na_action="error",
                                 extra_namespace=_NAMESPACE)
    except Exception as e:  # noqa: BLE001 - formulae raises many types
        raise FormulaError(f"Cannot evaluate the response '{expr}': {e}") from None
    return np.asarray(dm.response.design_matrix, dtype=float).ravel()


def _is_text_or_cat(s: pd.Series) -> bool:
    return (
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(s.dtype)
        or pd.api.types.is_string_dtype(s.dtype)
    )


def _levels_of(s: pd.Series) -> list[Any]:
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = set(s.dropna().tolist())
        return [c for c in s.cat.categories.tolist() if c in present]
    vals = pd.unique(s.dropna()).tolist()
    try:
        return sorted(vals)
    except TypeError:
        return sorted(vals, key=str)


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
    from .spec import FormulaError

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
        if (factors and c in factors) or _is_text_or_cat(s):
            levs = _levels_of(s)
            is_ordered = isinstance(s.dtype, pd.CategoricalDtype) and bool(s.cat.ordered)
            df[c] = pd.Categorical(s, categories=levs, ordered=is_ordered)
            factor_levels[c] = levs
            if is_ordered and len(levs) > 1:
                ordered.add(c)
    # ---- the response
    response = _response(parsed, df, family, trials, levels, notes)
    return PreparedData(df, response, factor_levels, n_missing_rows if dropna else 0,
                        tuple(notes), frozenset(ordered))


def _response(parsed, df, family: Family, trials, levels, notes) -> Response:
    from .spec import FormulaError, Response

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
            _numeric(df[e], e, family) if e in df.columns else _evaluate(e, df)
            for e in parsed.cbind
        )
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
        y = _evaluate(name, df)
        family.check_response(y, name)
        return Response(name, y)
    s = df[col]
    fam = family.name  # for messages
    if family.ordinal:
        return _ordinal_response(s, col, family, levels, notes)
    if family.factor_response and (
        pd.api.types.is_bool_dtype(s.dtype) or _is_text_or_cat(s) or levels is not None
    ):
        y = _binary_from_factor(s, col, fam, levels, notes)
        if family.needs_trials and trials is not None:
            raise ValueError(f"{fam} with trials=: response '{col}' must be counts.")
        return Response(col, y, np.ones_like(y) if family.needs_trials else None,
                        levels=None)
    if levels is not None:
        raise ValueError(f"levels= is only used by ordinal families and factor responses of "
                         f"bernoulli/binomial, not by family '{fam}'.")
    if _is_text_or_cat(s) or pd.api.types.is_bool_dtype(s.dtype):
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


def _numeric(s: pd.Series, col: str, family: Family) -> np.ndarray:
    if _is_text_or_cat(s):
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
        levs = _levels_of(s)
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
    from .spec import Response

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
    elif _is_text_or_cat(s) or pd.api.types.is_bool_dtype(s.dtype):
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


# =========================================================================== data frame options
# Wide outcomes, grand-mean and within-cluster centring: applied to the user's DataFrame before
# the formula is matched to the data (features.md section 6), so that wide and long inputs reach
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
    from .spec import FormulaError

    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    lhs, rhs = _split_formula(formula)
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


def _split_formula(formula: str) -> tuple[str, str]:
    from .spec import FormulaError, _split_top

    if not isinstance(formula, str) or not formula.strip():
        raise FormulaError("formula must be a non-empty string such as 'y ~ x + (1 | g)'.")
    parts = _split_top(" ".join(formula.split()), "~")
    if len(parts) != 2:
        raise FormulaError(f"Formula '{formula}' must have the form 'response ~ predictors'.")
    return parts[0].strip(), parts[1].strip()


def _cbind_columns(lhs: str, data: pd.DataFrame) -> list[str]:
    """Columns of cbind(a, b, y1:y4) (a range by position in the data)."""
    from .spec import FormulaError, _split_top

    inner = re.fullmatch(r"cbind\s*\((.*)\)", lhs).group(1)
    names = [str(c) for c in data.columns]
    out: list[str] = []
    for piece in (p.strip() for p in _split_top(inner, ",")):
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
    from .spec import parse_formula

    parsed = parse_formula(f"{WIDE_RESPONSE} ~ {rhs}")
    cols = used_columns(parsed)
    return set(cols["fixed"]) | set(cols["random"]) | set(cols["grouping"])


def _reshape_wide(lhs: str, rhs: str, data: pd.DataFrame, within: Any):
    from .spec import FormulaError

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
        if _is_text_or_cat(s) or pd.api.types.is_bool_dtype(s.dtype):
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


def _formula_identifiers(formula: str) -> set[str]:
    from .spec import _IDENT

    return set(re.findall(_IDENT, formula))


def _centring_columns(pars: Any, arg: str, data: pd.DataFrame, formula: str,
                      exclude: tuple[str, ...]) -> list[str]:
    """Resolve a list of columns (or "all": the numeric fixed-part variables)."""
    from .spec import parse_formula

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
        if _is_text_or_cat(data[c]) or not pd.api.types.is_numeric_dtype(data[c].dtype):
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
    used = _formula_identifiers(formula)
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
