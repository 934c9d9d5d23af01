"""Model specification: formula + data -> :class:`ModelSpec` (frozen dataclasses).

The spec is the single input of code generation. Design matrices come from
``formulae.design_matrices`` (fixed part, and the left-hand side of every random-effect bar);
this module only splits the lme4-style formula into those pieces:

* ``(x || g)`` (formulae lacks it) is rewritten to ``(x | g)`` and flagged uncorrelated: one
  grouping term whose SDs get no correlation matrix;
* ``(1 | a/b)`` expands to ``(1 | a) + (1 | a:b)``; ``g1:g2`` groups by the observed
  combinations; several bars may share a grouping factor (crossed, several terms per factor);
* ``contrasts="sum"`` wraps every categorical predictor in ``C(x, Sum)``; column names are
  rewritten to R's style: ``b[cond1]`` (treatment: level "1"; sum: first numbered column).

Groups are indexed 1..G by sorted levels (numeric order for numbers, category order for
pandas categoricals, lexicographic for strings; tuples of these for ``g1:g2``).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .core.naming import sd_name
from .families import Family, get_family
from .priors import Prior, ResolvedPrior, make_prior, resolve_prior

__all__ = [
    "Bar",
    "FixedEffects",
    "FormulaError",
    "GroupTerm",
    "ModelSpec",
    "ParsedFormula",
    "Response",
    "build_spec",
    "hold_coefficients",
    "parse_formula",
]


class FormulaError(ValueError):
    """An invalid formula or a formula that does not match the data."""


# ============================================================================ parsing


@dataclass(frozen=True)
class Bar:
    """One random-effect bar after expansion: ``(lhs | factor)``."""

    lhs: str  # e.g. '1', 'talk', '0 + talk'
    factor: tuple[str, ...]  # grouping columns, e.g. ('group',) or ('group', 'cond')
    correlated: bool  # False for '||'
    source: str  # the bar as written, e.g. '(1 | group/cond)'

    @property
    def factor_label(self) -> str:
        return ":".join(self.factor)

    @property
    def text(self) -> str:
        return f"({self.lhs} {'|' if self.correlated else '||'} {self.factor_label})"


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed part and random-effect bars."""

    formula: str
    response: str  # as written ('sat', 'cbind(s, f)', 'log(y)')
    cbind: tuple[str, ...] | None  # columns or expressions of cbind(...) in the response
    fixed: str  # right-hand side without the bars ('1' if nothing is left)
    bars: tuple[Bar, ...]

    @property
    def grouping_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for b in self.bars for c in b.factor))


_IDENT = r"[A-Za-z_.][\w.]*"


def _split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` at top-level (outside parentheses/brackets) occurrences of ``sep``."""
    out, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"Unbalanced parentheses in '{text}'.")
        elif depth == 0 and text.startswith(sep, i):
            out.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    if depth != 0:
        raise FormulaError(f"Unbalanced parentheses in '{text}'.")
    out.append(text[start:])
    return out


def _strip_outer_parens(piece: str) -> str | None:
    piece = piece.strip()
    if not (piece.startswith("(") and piece.endswith(")")):
        return None
    depth = 0
    for i, ch in enumerate(piece):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(piece) - 1:
            return None  # '(a)+(b)' style: the first paren closes early
    return piece[1:-1]


def parse_formula(formula: str, *, allow_random: bool = True) -> ParsedFormula:
    """Split an lme4-style formula. Raises FormulaError with a readable message."""
    if not isinstance(formula, str) or not formula.strip():
        raise FormulaError("formula must be a non-empty string such as 'y ~ x + (1 | g)'.")
    f = " ".join(formula.split())
    parts = _split_top(f, "~")
    if len(parts) != 2 or not parts[0].strip():
        raise FormulaError(
            f"Formula '{formula}' has no response: write it as 'response ~ predictors', "
            "e.g. 'sat ~ talk + (1 | group)'."
        )
    lhs, rhs = parts[0].strip(), parts[1].strip()
    if not rhs:
        raise FormulaError(f"Formula '{formula}' has no right-hand side (use 'y ~ 1').")
    cbind = None
    m = re.fullmatch(r"cbind\s*\((.*)\)", lhs)
    if m:
        cols = [c.strip() for c in _split_top(m.group(1), ",")]
        if len(cols) < 2 or not all(cols):
            raise FormulaError(
                f"cbind() in the response must list data columns or expressions of them, "
                f"e.g. 'cbind(successes, size - successes)', got '{lhs}'."
            )
        cbind = tuple(cols)
    fixed_pieces: list[str] = []
    removals: list[str] = []
    bars: list[Bar] = []
    for plus_piece in _split_top(rhs, "+"):
        # 'a - 1': keep removals ('- 1') with the fixed part
        first, *minus = _split_top(plus_piece, "-")
        for rem in minus:
            if "|" in rem or not rem.strip():
                raise FormulaError(f"Cannot read the term '- {rem.strip()}' in '{formula}'.")
            removals.append(rem.strip())
        piece = first.strip()
        if not piece:
            if minus:
                continue
            raise FormulaError(f"Empty term in formula '{formula}' (check the '+' signs).")
        inner = _strip_outer_parens(piece)
        if inner is not None and "|" in inner and len(_split_top(inner, "|")) > 1:
            if not allow_random:
                raise FormulaError(
                    f"Random-effect term '{piece}' is not allowed here: lm()/glm() fit models "
                    "without random effects; use lmer()/glmer()."
                )
            bars.extend(_parse_bar(piece, inner))
        else:
            if "|" in piece:
                raise FormulaError(
                    f"Random-effect term '{piece}' must be written in parentheses, "
                    "e.g. '(1 | group)'."
                )
            fixed_pieces.append(piece)
    fixed = " + ".join(fixed_pieces) if fixed_pieces else "1"
    fixed += "".join(f" - {r}" for r in removals)
    return ParsedFormula(f, lhs, cbind, fixed, tuple(bars))


def _parse_bar(piece: str, inner: str) -> list[Bar]:
    if "||" in inner:
        halves = _split_top(inner, "||")
        correlated = False
    else:
        halves = _split_top(inner, "|")
        correlated = True
    if len(halves) != 2 or not halves[0].strip() or not halves[1].strip():
        raise FormulaError(f"Cannot read random-effect term '{piece}': use '(terms | group)'.")
    lhs, fac = halves[0].strip(), halves[1].strip()
    levels = [s.strip() for s in _split_top(fac, "/")]
    out = []
    acc: list[str] = []
    for lev in levels:
        cols = [c.strip() for c in _split_top(lev, ":")]
        for c in cols:
            if not re.fullmatch(_IDENT, c):
                raise FormulaError(
                    f"Grouping factor '{fac}' in '{piece}' must be a data column, an interaction "
                    "'g1:g2' or a nesting 'g1/g2'."
                )
        acc = acc + cols
        out.append(Bar(lhs, tuple(acc), correlated, piece))
    return out


# ============================================================================ spec classes


@dataclass(frozen=True, eq=False)
class Response:
    """The response after checks and recoding."""

    name: str  # column name as written ('sat', 'cbind(incidence, size - incidence)')
    y: np.ndarray = field(repr=False)  # float (real families) or int
    trials: np.ndarray | None = field(default=None, repr=False)  # binomial
    levels: tuple[str, ...] | None = None  # categories (ordinal: codes 1..C; bernoulli: 0, 1)
    n_categories: int | None = None  # ordinal: C


@dataclass(frozen=True, eq=False)
class FixedEffects:
    """Population-level part: X without the intercept column."""

    rhs: str  # the right-hand side given to formulae (after contrast rewriting)
    names: tuple[str, ...]  # column names: b[<name>]
    X: np.ndarray = field(repr=False)  # N x K
    intercept: bool
    term_columns: tuple[tuple[str, tuple[int, ...]], ...]  # formula term -> columns of X (0-based)
    offset: np.ndarray | None = field(default=None, repr=False)
    design: Any = field(default=None, repr=False)  # formulae CommonEffectsMatrix (new data)

    @property
    def K(self) -> int:
        return len(self.names)

    @property
    def means(self) -> np.ndarray:
        return self.X.mean(axis=0) if self.X.shape[0] else np.zeros(self.K)


@dataclass(frozen=True, eq=False)
class GroupTerm:
    """One grouping term k: q coefficients varying over G groups."""

    k: int  # 1-based position (formula order, after expansion)
    factor: str  # 'group' or 'group:cond'
    text: str  # '(1 | group)' (as expanded)
    coefs: tuple[str, ...]  # 'Int' for the intercept, else column names
    correlated: bool  # False for '||' (or q == 1)
    levels: tuple[str, ...]  # group labels, index j -> levels[j - 1]
    index: np.ndarray = field(repr=False)  # N, 1-based group index
    Z: np.ndarray = field(repr=False)  # N x q

    @property
    def q(self) -> int:
        return len(self.coefs)

    @property
    def n_groups(self) -> int:
        return len(self.levels)

    @property
    def intercept_only(self) -> bool:
        return self.coefs == ("Int",)

    @property
    def has_corr(self) -> bool:
        return self.correlated and self.q > 1

    @property
    def group_sizes(self) -> np.ndarray:
        return np.bincount(self.index, minlength=self.n_groups + 1)[1:]


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """Everything code generation needs; printable."""

    formula: str
    family: Family
    response: Response
    fixed: FixedEffects
    groups: tuple[GroupTerm, ...]
    prior: ResolvedPrior
    contrasts: str
    n_obs: int
    n_dropped: int = 0
    factors: tuple[tuple[str, tuple[str, ...]], ...] = ()  # categorical predictors and levels
    notes: tuple[str, ...] = ()
    data: pd.DataFrame | None = field(default=None, repr=False)  # rows used (after dropna)
    resid: Any = None  # bayesglmm.residcorr.ResidCorr: residual correlation (or None)
    # coefficients held at given values (fixed=): (0-based column of X, value); the program then
    # samples only the other coefficients and takes these values as data (see hold_coefficients)
    held: tuple[tuple[int, float], ...] = ()

    @property
    def has_intercept(self) -> bool:
        return self.fixed.intercept and self.family.has_intercept

    @property
    def centred(self) -> bool:
        return self.prior.centred and self.has_intercept

    def __str__(self) -> str:
        lines = [
            f"ModelSpec: {self.formula}",
            f"  family: {self.family.name} ({self.family.link} link); prior: {self.prior.name}"
            + ("; centred X" if self.centred else ""),
            f"  observations: {self.n_obs}" + (f" ({self.n_dropped} dropped)" if self.n_dropped else ""),
            f"  response: {self.response.name}"
            + (f" (categories {', '.join(self.response.levels)})" if self.response.levels else ""),
            f"  intercept: {'yes' if self.has_intercept else 'no'}",
            f"  fixed effects ({self.fixed.K}): "
            + (", ".join(f"b[{n}]" for n in self.fixed.names) or "none"),
        ]
        if self.fixed.offset is not None:
            lines.append("  offset: yes")
        for g in self.groups:
            sizes = g.group_sizes
            lines.append(
                f"  grouping term {g.k}: {g.text}: {g.n_groups} groups "
                f"(size {sizes.min()}-{sizes.max()}), coefficients {', '.join(g.coefs)}"
                + ("" if g.correlated or g.q == 1 else " (uncorrelated)")
            )
        if self.resid is not None:
            lines.append(f"  {self.resid.describe()}")
        for j, v in self.held:
            lines.append(f"  held fixed: b[{self.fixed.names[j]}] = {v:g}")
        for s in self.prior.describe():
            lines.append(f"  prior: {s}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)


# ============================================================================ building

def contr_poly(n: int) -> np.ndarray:
    """R's contr.poly(n): orthonormal polynomial contrasts (n x (n - 1))."""
    x = np.arange(1, n + 1, dtype=float)
    q, r = np.linalg.qr(np.vander(x - x.mean(), n, increasing=True))
    z = q * np.sign(np.diag(r))
    return z[:, 1:]


def _poly_labels(n: int) -> list[str]:
    names = [".L", ".Q", ".C"]
    return [names[i] if i < 3 else f"^{i + 1}" for i in range(n - 1)]


def _make_poly():
    from formulae.categorical import ContrastMatrix, Encoding

    class Poly(Encoding):
        """Polynomial contrasts for ordered factors (R's contr.poly; columns .L, .Q, .C, ^4)."""

        def code_with_intercept(self, levels):
            return ContrastMatrix(np.eye(len(levels)), [str(v) for v in levels])

        def code_without_intercept(self, levels):
            return ContrastMatrix(contr_poly(len(levels)), _poly_labels(len(levels)))

    return Poly


_NAMESPACE = {
    "log": np.log, "exp": np.exp, "sqrt": np.sqrt, "log1p": np.log1p, "abs": np.abs,
    "log2": np.log2, "log10": np.log10, "Poly": _make_poly(),
}
_NON_COLUMNS = {"Sum", "Treatment", "Poly", "C", "I", "np", "offset", "scale", "center",
                "standardize", "levels", "reference", "", "True", "False"} | set(_NAMESPACE)


def _sorted_levels(s: pd.Series) -> list[Any]:
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = set(s.dropna().unique().tolist())
        return [c for c in s.cat.categories.tolist() if c in present]
    vals = pd.unique(s.dropna())
    try:
        return sorted(vals.tolist())
    except TypeError:
        return sorted(vals.tolist(), key=str)


def _inject_contrasts(rhs: str, wrap: dict[str, str]) -> str:
    """Wrap categorical column names: {'cond': 'Sum'} turns cond into C(cond, Sum)."""

    def repl(m: re.Match) -> str:
        name = m.group(0)
        before = rhs[: m.start()].rstrip()
        after = rhs[m.end():].lstrip()
        if name not in wrap or after.startswith("(") or before.endswith("."):
            return name
        if re.search(r"C\s*\($", before):  # already inside C(...)
            return name
        return f"C({name}, {wrap[name]})"

    return re.sub(_IDENT, repl, rhs) if wrap else rhs


_RE_SUM = re.compile(r"^C\(\s*(" + _IDENT + r")\s*,\s*Sum\s*\)\[(.*)\]$")
_RE_C = re.compile(r"^C\(\s*(" + _IDENT + r")\s*(?:,.*)?\)\[(.*)\]$")
_RE_WRAPPED = re.compile(r"C\(\s*(" + _IDENT + r")\s*(?:,[^)]*)?\)")
_RE_LEVEL = re.compile(r"^(" + _IDENT + r")\[(.*)\]$")


def _column_name(label: str, levels: dict[str, list[str]]) -> str:
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


def _keep_level_order(data: pd.DataFrame) -> pd.DataFrame:
    """formulae sorts the levels of an unordered categorical; mark every categorical as ordered
    (same categories, same order) so the design follows the prepared level order (R's factor
    levels: sorted for text, the given order for pandas categoricals and within= factors).
    Contrasts are unaffected: polynomial coding is always requested explicitly with Poly."""
    cols = {
        c: data[c].cat.as_ordered()
        for c in data.columns
        if isinstance(data[c].dtype, pd.CategoricalDtype) and not data[c].cat.ordered
    }
    return data.assign(**cols) if cols else data


def _design(rhs: str, data: pd.DataFrame, what: str):
    """Run formulae on a right-hand side; translate its errors into FormulaError."""
    from formulae import design_matrices

    data = _keep_level_order(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            dm = design_matrices(rhs, data, na_action="error", extra_namespace=_NAMESPACE)
    except KeyError as e:
        raise FormulaError(
            f"Unknown column or function {e} in {what} '{rhs}'. "
            f"Columns: {', '.join(map(str, data.columns))}."
        ) from None
    except Exception as e:  # noqa: BLE001 - formulae raises many types
        raise FormulaError(f"Cannot build the design matrix of {what} '{rhs}': {e}") from None
    return dm.common


def _fixed_effects(rhs: str, data: pd.DataFrame, levels: dict[str, list[str]]) -> FixedEffects:
    common = _design(rhs, data, "the fixed part")
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
            names.append(_column_name(lab, levels))
        term_columns.append((_RE_WRAPPED.sub(r"\1", tname), tuple(idx)))
    X = M[:, cols] if cols else np.zeros((M.shape[0], 0))
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise FormulaError(f"Duplicate design column names {sorted(dup)} in '{rhs}'.")
    return FixedEffects(rhs, tuple(names), X, intercept, tuple(term_columns), offset, common)


def _group_index(data: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    keys = []
    for c in cols:
        s = data[c]
        levs = _sorted_levels(s)
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


def _group_term(k: int, bar: Bar, data: pd.DataFrame, levels: dict[str, list[str]],
                wrap: dict[str, str]) -> GroupTerm:
    lhs = bar.lhs
    rhs = _inject_contrasts(lhs, wrap)
    common = _design(rhs, data, f"random-effect term '{bar.source}'")
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
            coefs.append(_column_name(lab, levels))
            cols.append(j)
    index, labels = _group_index(data, bar.factor)
    if len(labels) < 2:
        raise FormulaError(
            f"Grouping factor '{bar.factor_label}' in '{bar.source}' has only one level "
            f"({labels[0] if labels else 'none'}); a random effect needs at least two groups."
        )
    Z = M[:, cols]
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


def build_spec(
    formula: str,
    data: pd.DataFrame,
    *,
    family: str | Family = "gaussian",
    prior: Prior | str | dict | None = None,
    contrasts: str = "treatment",
    y_range: tuple[float, float] | None = None,
    dropna: bool = False,
    allow_random: bool = True,
    factors: list[str] | tuple[str, ...] | None = None,
    trials: str | None = None,
    levels: list[Any] | tuple[Any, ...] | None = None,
    resid_corr: str | None = None,
    resid_time: str | None = None,
    resid_group: str | None = None,
    hold: dict[str, float] | None = None,
) -> ModelSpec:
    """Formula + data -> ModelSpec.

    family: a name of the family table; prior: prior object, name or dict (see priors.py);
    contrasts: 'treatment' or 'sum' for categorical predictors; y_range: see features.md section 1;
    dropna: drop rows with missing values in used columns (otherwise an error);
    allow_random: False for lm()/glm(); factors: columns to treat as categorical;
    trials: binomial trials column (alternative to cbind(successes, failures));
    levels: the order of the categories of an ordinal response (or the two levels of a bernoulli
    factor response, second = 1);
    resid_corr, resid_time, resid_group: residual correlation (bayesglmm/residcorr.py);
    hold: coefficients held at given values (the wrappers' ``fixed=``), e.g. ``{"b[talk]": 0}``
    (see :func:`hold_coefficients`).
    """
    from .prepare import prepare_data
    from .residcorr import build_resid, check_redundancy, check_resid_args, default_group

    fam = get_family(family)
    if contrasts not in ("treatment", "sum"):
        raise ValueError(f"contrasts must be 'treatment' or 'sum', got {contrasts!r}.")
    the_prior = make_prior(prior, y_range)
    parsed = parse_formula(formula, allow_random=allow_random)
    check_resid_args(resid_corr, resid_time, resid_group, fam, data)
    resid_note = None
    if resid_corr is not None:
        resid_group, resid_note = default_group(resid_group, list(parsed.grouping_columns))
    extra = tuple(c for c in (resid_time, resid_group) if c is not None)
    prep = prepare_data(parsed, data, family=fam, dropna=dropna, factors=factors, trials=trials,
                        levels=levels, extra_columns=extra)
    df = prep.data
    # contrasts: ordered factors polynomial (R's contr.poly), the others treatment or sum
    wrap = {c: "Poly" if c in prep.ordered_factors else "Sum"
            for c in prep.factor_levels if c in prep.ordered_factors or contrasts == "sum"}
    lev_str = {c: [str(v) for v in ls] for c, ls in prep.factor_levels.items()}
    rhs = _inject_contrasts(parsed.fixed, wrap)
    fixed = _fixed_effects(rhs, df, lev_str)
    if fixed.offset is not None and not fam.allows_offset:
        raise FormulaError(f"offset() terms are not supported for family '{fam.name}'.")
    notes = list(prep.notes)
    coded = [c for c in lev_str if c not in prep.ordered_factors]
    if coded:
        how = ("sum-to-zero contrasts (columns 1..L-1, last level = minus their sum)"
               if contrasts == "sum" else "treatment contrasts (reference = first level)")
        notes.append(f"factors {', '.join(coded)}: {how}.")
    if not fam.has_intercept and fixed.intercept:
        notes.append(f"family '{fam.name}' has no intercept: it is absorbed by the cutpoints.")
    groups = tuple(
        _group_term(k, bar, df, lev_str, wrap)
        for k, bar in enumerate(parsed.bars, start=1)
    )
    resid = None
    if resid_corr is not None:
        resid = build_resid(resid_corr, df, group=resid_group, time=resid_time)
        redundant = check_redundancy(resid, [g.factor for g in groups if "Int" in g.coefs])
        notes.extend(n for n in (resid_note, redundant) if n)
    has_intercept = fixed.intercept and fam.has_intercept
    sd_names = tuple(tuple(sd_name(g.k, m, g.factor, c, len(groups) > 1).user
                           for m, c in enumerate(g.coefs, start=1)) for g in groups)
    rprior = resolve_prior(
        the_prior, fam,
        b_names=fixed.names, X=fixed.X, y=prep.response.y, has_intercept=has_intercept,
        n_cat=prep.response.n_categories or 0,
        re_terms=tuple((g.factor, g.coefs, g.correlated) for g in groups),
        sd_names=sd_names,
    )
    spec = ModelSpec(
        formula=parsed.formula,
        family=fam,
        response=prep.response,
        fixed=fixed,
        groups=groups,
        prior=rprior,
        contrasts=contrasts,
        n_obs=len(df),
        n_dropped=prep.n_dropped,
        factors=tuple((c, tuple(lev_str[c])) for c in sorted(lev_str)),
        notes=tuple(notes),
        data=df,
        resid=resid,
    )
    return hold_coefficients(spec, hold) if hold else spec


# priors whose coefficient prior is one joint term (an element cannot be dropped on its own)
_JOINT_B_PRIORS = {"jzs": "the JZS prior is one multivariate Cauchy on all coefficients",
                   "rhs": "the horseshoe shares its global scale across the coefficients",
                   "ssp": "the spike-and-slab coefficients are products of several parameters"}


def hold_coefficients(spec: ModelSpec, fixed: Any) -> ModelSpec:
    """A copy of ``spec`` with coefficients held at given values (features.md sections 1, 9.6).

    ``fixed`` maps user names ``"b[<column>]"`` to numbers. The Stan program of the result samples
    the other coefficients only; the held ones, and their values, are data, and their own prior
    terms are dropped (the other priors are unchanged). Raises ValueError naming the offending
    key for unknown names, parameters other than coefficients, and priors whose coefficient
    prior is joint.
    """
    if not isinstance(fixed, dict) or not fixed:
        raise TypeError('fixed must be a non-empty dict such as {"b[talk]": 0}.')
    names = spec.fixed.names
    held = dict(spec.held)
    for key, val in fixed.items():
        key = str(key).replace(" ", "")
        if not (key.startswith("b[") and key.endswith("]")):
            raise ValueError(
                f"fixed: cannot hold '{key}': only population-level coefficients b[<column>] "
                f"can be fixed ({', '.join('b[' + n + ']' for n in names) or 'none here'})."
            )
        if spec.family.category_specific:
            raise ValueError(f"fixed: family '{spec.family.name}' has category-specific "
                             "coefficients; holding them fixed is not supported.")
        col = key[2:-1]
        if col not in names:
            raise ValueError(f"fixed: unknown coefficient '{key}'. Coefficients: "
                             f"{', '.join('b[' + n + ']' for n in names) or 'none'}.")
        if spec.prior.name in _JOINT_B_PRIORS:
            raise ValueError(
                f"fixed: cannot hold '{key}' under prior_{spec.prior.name}(): "
                f"{_JOINT_B_PRIORS[spec.prior.name]}. Drop the predictor from the formula instead."
            )
        try:
            v = float(val)
        except (TypeError, ValueError):
            raise ValueError(f"fixed: the value of '{key}' must be a number, got {val!r}.") from None
        if not np.isfinite(v):
            raise ValueError(f"fixed: the value of '{key}' must be finite, got {val!r}.")
        held[names.index(col)] = v
    return replace(spec, held=tuple(sorted(held.items())))



