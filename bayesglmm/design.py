"""Design matrices: the fixed-effect and random-effect columns of a model, for the data it is
fitted to and for new data (predictions, conditional effects, estimated marginal means).

Columns come from ``formulae.design_matrices`` on the right-hand side of the parsed formula (and
on the left-hand side of every random-effect bar); this module names them as R does
(``b[cond1]``: treatment level "1"; sum coding: the first numbered column), indexes groups and
checks new data against the levels seen in the fit. :func:`fixed_effects` works for any
right-hand side on a prepared frame, so a second fixed-effect formula on the same data (e.g. a
zero-inflation part) is built the same way.

Within one model every distinct right-hand side goes through formulae once
(:class:`FormulaeRuns`): the fixed part and a random-effect term with the same text, e.g.
``Days`` in ``Reaction ~ Days + (Days | Subject)``, share one design, and a random-effect term
made of the intercept and numeric columns the fixed part has (``(1 | g)``, ``(1 + talk | g)``
with ``talk * perf``) is assembled from them without running formulae.

Groups are indexed 1..G by sorted levels (numeric order for numbers, category order for
pandas categoricals, lexicographic for strings; tuples of these for ``g1:g2``).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pandas as pd
from formulae import design_matrices

from .formula import FORMULA_ENV, IDENT, Bar, FormulaError, inject_contrasts, rhs_terms
from .modelspec import FixedEffects, GroupTerm

__all__ = [
    "FormulaeRuns",
    "check_newdata",
    "column_name",
    "contrast_wrap",
    "fixed_design",
    "fixed_effects",
    "group_index",
    "group_term",
    "keep_level_order",
    "predictor_names",
    "run_formulae",
    "sorted_levels",
]


def sorted_levels(s: pd.Series) -> list[Any]:
    """The levels present in ``s``: category order for pandas categoricals, else sorted
    (numbers numerically, text lexicographically; mixed types by their text)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = set(s.dropna().unique().tolist())
        return [c for c in s.cat.categories.tolist() if c in present]
    vals = pd.unique(s.dropna())
    try:
        return sorted(vals.tolist())
    except TypeError:
        return sorted(vals.tolist(), key=str)


def contrast_wrap(factor_levels: dict[str, Any], ordered: frozenset[str] | set[str],
                  contrasts: str) -> dict[str, str]:
    """How each categorical predictor is coded: ``"Poly"`` for ordered factors (R's
    contr.poly), ``"Sum"`` for the others under ``contrasts="sum"``; treatment coding (formulae's
    default) is not listed."""
    return {c: "Poly" if c in ordered else "Sum"
            for c in factor_levels if c in ordered or contrasts == "sum"}


_RE_SUM = re.compile(r"^C\(\s*(" + IDENT + r")\s*,\s*Sum\s*\)\[(.*)\]$")
_RE_C = re.compile(r"^C\(\s*(" + IDENT + r")\s*(?:,.*)?\)\[(.*)\]$")
_RE_WRAPPED = re.compile(r"C\(\s*(" + IDENT + r")\s*(?:,[^)]*)?\)")
_RE_LEVEL = re.compile(r"^(" + IDENT + r")\[(.*)\]$")


def column_name(label: str, levels: dict[str, list[str]]) -> str:
    """formulae label -> R-style column name ('cond[1]' -> 'cond1', 'C(x, Sum)[a]' -> 'x1')."""
    out = []
    for piece in label.split(":"):
        m = _RE_SUM.match(piece)
        if m:
            var, lev = m.group(1), m.group(2)
            kept = levels.get(var, [])[:-1]
            out.append(f"{var}{kept.index(lev) + 1}" if lev in kept else f"{var}{lev}")
            continue
        m = _RE_C.match(piece) or _RE_LEVEL.match(piece)
        if m:
            out.append(f"{m.group(1)}{m.group(2)}")
            continue
        out.append(piece)
    return ":".join(out)


def keep_level_order(data: pd.DataFrame) -> pd.DataFrame:
    """formulae sorts the levels of an unordered categorical; mark every categorical as ordered
    (same categories, same order) so the design follows the prepared level order (R's factor
    levels: sorted for text, the given order for pandas categoricals and within= factors).
    Contrasts are unaffected: polynomial coding is always requested explicitly with Poly."""
    cols = {
        c: data[c].cat.as_ordered()
        for c, dtype in data.dtypes.items()
        if isinstance(dtype, pd.CategoricalDtype) and not dtype.ordered
    }
    return data.assign(**cols) if cols else data


def run_formulae(rhs: str, data: pd.DataFrame, what: str):
    """Run formulae on a right-hand side; translate its errors into FormulaError."""
    return _run(rhs, keep_level_order(data), what)


def _run(rhs: str, data: pd.DataFrame, what: str):
    """:func:`run_formulae` on a frame whose categoricals are ordered already."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            dm = design_matrices(rhs, data, na_action="error", env=FORMULA_ENV)
    except KeyError as e:
        raise FormulaError(
            f"Unknown column or function {e} in {what} '{rhs}'. "
            f"Columns: {', '.join(map(str, data.columns))}."
        ) from None
    except Exception as e:  # noqa: BLE001 - formulae raises many types
        raise FormulaError(f"Cannot build the design matrix of {what} '{rhs}': {e}") from None
    return dm.common


class FormulaeRuns:
    """formulae's designs on one prepared frame, one run per distinct right-hand side.

    The fixed part, every random-effect term and the zero-inflation part of a model are
    evaluated on the same frame. A piece with the same text as an earlier one (after contrast
    rewriting) gets the earlier design; the level order of the frame's categoricals is fixed
    once (:func:`keep_level_order`). A random-effect term whose columns are all the intercept or
    single numeric columns of an earlier design (``(1 + Days | Subject)`` after the fixed part
    ``Days``) is assembled from them (:meth:`earlier_columns`) without running formulae: such a
    column is the variable, transform or product of variables evaluated on the same rows, the
    same in any formula. Categorical columns are never reused (their coding depends on the
    other terms of the formula).

    Parameters
    ----------
    data : pandas.DataFrame
        The prepared frame (categorical predictors as pandas categoricals).

    Examples
    --------
    >>> import pandas as pd
    >>> runs = FormulaeRuns(pd.DataFrame({"x": [1.0, 2.0, 4.0]}))
    >>> runs("x", "the fixed part") is runs("x", "a random-effect term")
    True
    >>> runs.earlier_columns("1 + x")
    ([None, 'x'], array([[1., 1.],
           [1., 2.],
           [1., 4.]]))
    """

    def __init__(self, data: pd.DataFrame) -> None:
        self.data = keep_level_order(data)
        self._designs: dict[str, Any] = {}
        self._numeric: dict[str, tuple[Any, int]] = {}  # term name -> (design, its column)

    def __call__(self, rhs: str, what: str):
        """The design of ``rhs`` (formulae's common-effects matrix, or None without columns).

        Parameters
        ----------
        rhs : str
            A right-hand side after contrast rewriting.
        what : str
            The piece of the formula, for error messages.

        Returns
        -------
        formulae.matrices.CommonEffectsMatrix or None
        """
        if rhs not in self._designs:
            common = _run(rhs, self.data, what)
            self._designs[rhs] = common
            for tname, term in (common.terms.items() if common is not None else ()):
                # one numeric column, labelled by the term (no categorical coding in it)
                if (getattr(term, "kind", None) in ("numeric", "interaction")
                        and list(term.labels) == [tname]):
                    self._numeric.setdefault(tname, (common, common.slices[tname].start))
        return self._designs[rhs]

    def earlier_columns(self, rhs: str) -> tuple[list[str | None], np.ndarray] | None:
        """The design of ``rhs`` from the columns of earlier designs, if it has only the
        intercept and single numeric columns that these have (else None: run formulae).

        Parameters
        ----------
        rhs : str
            A right-hand side after contrast rewriting.

        Returns
        -------
        (labels, matrix) or None
            formulae's column labels (None for the intercept) and the columns.
        """
        terms = rhs_terms(rhs)
        if not terms or any(t is not None and t not in self._numeric for t in terms):
            return None
        n = len(self.data)
        cols = [np.ones(n) if t is None else
                np.asarray(self._numeric[t][0].design_matrix, dtype=float)[:, self._numeric[t][1]]
                for t in terms]
        return list(terms), np.column_stack(cols)


def fixed_effects(rhs: str, data: pd.DataFrame, levels: dict[str, list[str]],
                  runs: FormulaeRuns | None = None) -> FixedEffects:
    """The fixed-effect design of a right-hand side on a prepared frame.

    Parameters
    ----------
    rhs : str
        A right-hand side after contrast rewriting (:func:`bayesglmm.formula.inject_contrasts`).
    data : DataFrame
        The prepared frame (categorical predictors as pandas categoricals).
    levels : dict
        Categorical predictor -> its levels as text, in coding order (for column names).
    runs : FormulaeRuns, optional
        The designs already built on ``data`` (one formulae run per distinct right-hand side).

    Returns
    -------
    FixedEffects
        X without the intercept column, R-style names, term -> columns, summed offsets.
    """
    what = "the fixed part"
    common = run_formulae(rhs, data, what) if runs is None else runs(rhs, what)
    if common is None:
        return FixedEffects(rhs, (), np.zeros((len(data), 0)), False, (), None, None)
    M = np.asarray(common.design_matrix, dtype=float)
    names: list[str] = []
    cols: list[int] = []
    term_columns: list[tuple[str, tuple[int, ...]]] = []
    intercept = False
    offset = None
    for tname, term in common.terms.items():
        sl = common.slices[tname]
        kind = getattr(term, "kind", None)
        if kind == "intercept":
            intercept = True
            continue
        if kind == "offset":
            off = M[:, sl].sum(axis=1)
            offset = off if offset is None else offset + off
            continue
        idx = []
        for j, lab in zip(range(sl.start, sl.stop), term.labels):
            idx.append(len(cols))
            cols.append(j)
            names.append(column_name(lab, levels))
        term_columns.append((_RE_WRAPPED.sub(r"\1", tname), tuple(idx)))
    X = M[:, cols] if cols else np.zeros((M.shape[0], 0))
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise FormulaError(f"Duplicate design column names {sorted(dup)} in '{rhs}'.")
    return FixedEffects(rhs, tuple(names), X, intercept, tuple(term_columns), offset, common)


def group_index(data: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """1-based group index of every row and the group labels (``a:b`` for several columns)."""
    keys = []
    for c in cols:
        s = data[c]
        levs = sorted_levels(s)
        pos = {v: i for i, v in enumerate(levs)}
        keys.append((np.array([pos[v] for v in s.tolist()], dtype=np.int64), levs))
    if len(keys) == 1:
        codes, levs = keys[0]
        present = np.unique(codes)
        remap = np.full(len(levs), -1)
        remap[present] = np.arange(len(present))
        return remap[codes] + 1, tuple(str(levs[i]) for i in present)
    stacked = np.stack([k[0] for k in keys], axis=1)
    uniq, inv = np.unique(stacked, axis=0, return_inverse=True)  # lexicographic = sorted tuples
    labels = tuple(":".join(str(keys[m][1][u[m]]) for m in range(len(keys))) for u in uniq)
    return np.asarray(inv).ravel() + 1, labels


def _group_columns(rhs: str, data: pd.DataFrame, levels: dict[str, list[str]], bar: Bar,
                   runs: FormulaeRuns | None) -> tuple[list[str], np.ndarray]:
    """(coefficient names, Z) of a random-effect term's left-hand side ``rhs``."""
    found = runs.earlier_columns(rhs) if runs is not None else None
    if found is not None:
        labels, Z = found
        return ["Int" if lab is None else column_name(lab, levels) for lab in labels], Z
    what = f"random-effect term '{bar.source}'"
    common = run_formulae(rhs, data, what) if runs is None else runs(rhs, what)
    if common is None:
        raise FormulaError(f"Random-effect term '{bar.source}' has no coefficients.")
    M = np.asarray(common.design_matrix, dtype=float)
    coefs: list[str] = []
    cols: list[int] = []
    for tname, term in common.terms.items():
        sl = common.slices[tname]
        kind = getattr(term, "kind", None)
        if kind == "offset":
            raise FormulaError(f"offset() is not allowed inside '{bar.source}'.")
        if kind == "intercept":
            coefs.append("Int")
            cols.append(sl.start)
            continue
        for j, lab in zip(range(sl.start, sl.stop), term.labels):
            coefs.append(column_name(lab, levels))
            cols.append(j)
    return coefs, M[:, cols]


def group_term(k: int, bar: Bar, data: pd.DataFrame, levels: dict[str, list[str]],
               wrap: dict[str, str], runs: FormulaeRuns | None = None) -> GroupTerm:
    """Grouping term ``k`` of the model from its bar: Z (the bar's left-hand side), group
    index and labels; warns about slopes that do not vary within any group. ``runs``: the
    designs already built on ``data`` (see :class:`FormulaeRuns`)."""
    coefs, Z = _group_columns(inject_contrasts(bar.lhs, wrap), data, levels, bar, runs)
    index, labels = group_index(data, bar.factor)
    if len(labels) < 2:
        raise FormulaError(
            f"Grouping factor '{bar.factor_label}' in '{bar.source}' has only one level "
            f"({labels[0] if labels else 'none'}); a random effect needs at least two groups."
        )
    # slopes that do not vary within groups: warn
    for m, c in enumerate(coefs):
        if c == "Int":
            continue
        z = Z[:, m]
        G = len(labels)
        mins = np.full(G + 1, np.inf)
        maxs = np.full(G + 1, -np.inf)
        np.minimum.at(mins, index, z)
        np.maximum.at(maxs, index, z)
        if np.all((maxs - mins)[1:] == 0):
            warnings.warn(
                f"Random slope '{c}' in '{bar.source}' does not vary within any level of "
                f"'{bar.factor_label}': its SD is confounded with the random intercept and "
                "weakly identified (consider removing it).",
                UserWarning,
                stacklevel=4,
            )
    text = bar.text
    return GroupTerm(k, bar.factor_label, text, tuple(coefs), bar.correlated or len(coefs) == 1,
                     labels, index.astype(np.int64), Z)


# --------------------------------------------------------------------------- new data


def check_newdata(spec: Any, newdata: Any, needed: list[str]) -> pd.DataFrame:
    """A copy of ``newdata`` with its categorical columns in the fitted categories; a clear
    error for missing columns and for levels the model was not fitted to."""
    if not isinstance(newdata, pd.DataFrame):
        raise TypeError(f"newdata must be a pandas DataFrame, not {type(newdata).__name__}")
    missing = [c for c in needed if c not in newdata.columns]
    if missing:
        raise ValueError(f"newdata lacks the column(s) {', '.join(missing)} used by the model")
    nd = newdata.copy()
    for col, levels in spec.factors:
        if col in nd.columns:
            vals = nd[col].astype(str)
            bad = sorted(set(vals) - set(levels))
            if bad:
                raise ValueError(
                    f"newdata column '{col}' has level(s) {', '.join(bad)} not in the data the "
                    f"model was fitted to (levels: {', '.join(levels)})"
                )
            # back to the fitted categories (numeric codes made factors keep numeric levels)
            fitted = spec.data[col] if spec.data is not None and col in spec.data.columns else None
            orig = (list(fitted.cat.categories) if fitted is not None
                    and isinstance(fitted.dtype, pd.CategoricalDtype) else list(levels))
            by_str = {str(v): v for v in orig}
            nd[col] = pd.Categorical([by_str.get(v, v) for v in vals],
                                     categories=[by_str.get(lv, lv) for lv in levels])
    return nd


def predictor_names(spec: Any) -> list[str]:
    """Columns used by the fixed part of the formula, in formula order."""
    out: list[str] = []
    design = spec.fixed.design
    if design is None:
        return out
    for term in design.terms.values():
        for v in sorted(getattr(term, "var_names", ()) or ()):
            if v not in out and v in spec.data.columns:  # not 'Sum' of C(x, Sum)
                out.append(v)
    return out


def fixed_design(spec: Any, newdata: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(X, offset) of ``newdata`` for the fixed part: X has the columns ``spec.fixed.names``
    (no intercept column), offset the summed ``offset()`` terms (zeros if none).

    Parameters
    ----------
    spec : ModelSpec
        The model's specification.
    newdata : pandas.DataFrame
        The rows.

    Returns
    -------
    X : numpy.ndarray
        Shape (rows, coefficients).
    offset : numpy.ndarray
        Shape (rows,).
    """
    nd = check_newdata(spec, newdata, predictor_names(spec))
    n = len(nd)
    common = spec.fixed.design
    if common is None:
        return np.zeros((n, 0)), np.zeros(n)
    new = common.evaluate_new_data(nd)
    M = np.asarray(new.design_matrix, dtype=float)
    cols: list[int] = []
    offset = np.zeros(n)
    for name, term in new.terms.items():
        sl = new.slices[name]
        kind = getattr(term, "kind", None)
        if kind == "offset":
            offset = offset + M[:, sl].sum(axis=1)
        elif kind != "intercept":
            cols.extend(range(sl.start, sl.stop))
    return M[:, cols], offset
