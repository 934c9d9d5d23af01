"""Formulas: lme4-style formula text -> :class:`ParsedFormula` (response, fixed part, bars).

This is the one parser of the package. :func:`parse_formula` splits a formula once; the
result is kept on :class:`bayesglmm.modelspec.ModelSpec` (``spec.parsed``) so that later stages
never read the text again:

* ``(x || g)`` (formulae lacks it) is rewritten to ``(x | g)`` and flagged uncorrelated: one
  grouping term whose SDs get no correlation matrix;
* ``(1 | a/b)`` expands to ``(1 | a) + (1 | a:b)``; ``g1:g2`` groups by the observed
  combinations; several bars may share a grouping factor (crossed, several terms per factor);
* ``cbind(a, b)`` in the response lists the columns (or expressions) of a binomial response or
  of a wide outcome.

It also holds the functions formulas may call (``log``, ``Poly``, ...), the columns each part of
a formula uses, and the evaluation of response expressions such as ``log(y)``.

Examples
--------
>>> p = parse_formula("y ~ x + (1 | g/h)")
>>> p.fixed, [b.text for b in p.bars]
('x', ['(1 | g)', '(1 | g:h)'])
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace

import numpy as np
import pandas as pd
from formulae import design_matrices, model_description
from formulae.environment import Environment
from formulae.terms.terms import Intercept

__all__ = [
    "IDENT",
    "FORMULA_ENV",
    "NAMESPACE",
    "NON_COLUMNS",
    "Bar",
    "FormulaError",
    "ParsedFormula",
    "contr_poly",
    "evaluate",
    "formula_identifiers",
    "inject_contrasts",
    "is_column_name",
    "parse_formula",
    "rhs_terms",
    "split_response",
    "split_top",
    "used_columns",
    "var_names",
]


class FormulaError(ValueError):
    """An invalid formula or a formula that does not match the data."""


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


IDENT = r"[A-Za-z_.][\w.]*"


def split_top(text: str, sep: str) -> list[str]:
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


def strip_outer_parens(piece: str) -> str | None:
    """The inside of ``(...)`` when the parentheses enclose the whole piece, else None."""
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
    """Split an lme4-style formula into response, fixed part and random-effect bars.

    Parameters
    ----------
    formula : str
        E.g. ``"sat ~ talk + perf + (1 | group)"``, ``"cbind(s, f) ~ period + (1 | herd)"``.
    allow_random : bool
        False for ``lm()``/``glm()``: random-effect bars are an error.

    Returns
    -------
    ParsedFormula
        Frozen; the same formula text returns the same (cached) object.

    Raises
    ------
    FormulaError
        With a readable message (missing response, unbalanced parentheses, bad bar, ...).

    Examples
    --------
    >>> parse_formula("y ~ x + (x || g)").bars[0].correlated
    False
    """
    if not isinstance(formula, str):
        raise FormulaError("formula must be a string such as 'y ~ x + (1 | g)', not a "
                           f"{type(formula).__name__}.")
    if not formula.strip():
        raise FormulaError("formula must be a non-empty string such as 'y ~ x + (1 | g)'.")
    return _parse(formula, bool(allow_random))


_HIDDEN_ATTRIBUTE = re.compile(r"[A-Za-z_]\w*\s*\.\s*_\w*")


@lru_cache(maxsize=256)
def _parse(formula: str, allow_random: bool) -> ParsedFormula:
    f = " ".join(formula.split())
    parts = split_top(f, "~")
    if len(parts) != 2 or not parts[0].strip():
        raise FormulaError(
            f"Formula '{formula}' has no response: write it as 'response ~ predictors', "
            "e.g. 'sat ~ talk + (1 | group)'."
        )
    lhs, rhs = parts[0].strip(), parts[1].strip()
    hidden = _HIDDEN_ATTRIBUTE.search(f)
    if hidden:  # np.log.__class__ ...: a formula may call the listed functions, nothing else
        raise FormulaError(
            f"Formula '{formula}' uses '{hidden.group(0)}': attributes starting with '_' are not "
            "allowed. A formula may call log, exp, sqrt, ..., np.<element-wise function> and "
            "formulae's transforms (C, scale, center, ...) only.")
    if not rhs:
        raise FormulaError(f"Formula '{formula}' has no right-hand side (use 'y ~ 1').")
    cbind = None
    m = re.fullmatch(r"cbind\s*\((.*)\)", lhs)
    if m:
        cols = [c.strip() for c in split_top(m.group(1), ",")]
        if len(cols) < 2 or not all(cols):
            raise FormulaError(
                f"cbind() in the response must list data columns or expressions of them, "
                f"e.g. 'cbind(successes, size - successes)', got '{lhs}'."
            )
        cbind = tuple(cols)
    fixed_pieces: list[str] = []
    removals: list[str] = []
    bars: list[Bar] = []
    for plus_piece in split_top(rhs, "+"):
        # 'a - 1': keep removals ('- 1') with the fixed part
        first, *minus = split_top(plus_piece, "-")
        for rem in minus:
            if "|" in rem or not rem.strip():
                raise FormulaError(f"Cannot read the term '- {rem.strip()}' in '{formula}'.")
            removals.append(rem.strip())
        piece = first.strip()
        if not piece:
            if minus:
                continue
            raise FormulaError(f"Empty term in formula '{formula}' (check the '+' signs).")
        inner = strip_outer_parens(piece)
        if inner is not None and "|" in inner and len(split_top(inner, "|")) > 1:
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
        halves = split_top(inner, "||")
        correlated = False
    else:
        halves = split_top(inner, "|")
        correlated = True
    if len(halves) != 2 or not halves[0].strip() or not halves[1].strip():
        raise FormulaError(f"Cannot read random-effect term '{piece}': use '(terms | group)'.")
    lhs, fac = halves[0].strip(), halves[1].strip()
    levels = [s.strip() for s in split_top(fac, "/")]
    out = []
    acc: list[str] = []
    for lev in levels:
        cols = [c.strip() for c in split_top(lev, ":")]
        for c in cols:
            if not re.fullmatch(IDENT, c):
                raise FormulaError(
                    f"Grouping factor '{fac}' in '{piece}' must be a data column, an interaction "
                    "'g1:g2' or a nesting 'g1/g2'."
                )
        acc = acc + cols
        out.append(Bar(lhs, tuple(acc), correlated, piece))
    return out


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


NAMESPACE = {
    "log": np.log, "exp": np.exp, "sqrt": np.sqrt, "log1p": np.log1p, "abs": np.abs,
    "log2": np.log2, "log10": np.log10, "Poly": _make_poly(),
}
# numpy's element-wise functions a formula may call as np.<name>. Nothing else is reachable
# from a formula: it is data (also when it comes from a saved fit), so it must not reach
# np.load, pandas' readers or anything else that reads files or runs code.
NUMPY_FUNCTIONS = ("log", "exp", "sqrt", "log1p", "expm1", "abs", "log2", "log10", "square",
                   "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
                   "floor", "ceil", "sign", "power", "minimum", "maximum")
FORMULA_ENV = Environment([{**NAMESPACE,
                            "np": SimpleNamespace(**{f: getattr(np, f) for f in NUMPY_FUNCTIONS})}])
NON_COLUMNS = {"Sum", "Treatment", "Poly", "C", "I", "np", "offset", "scale", "center",
                "standardize", "levels", "reference", "", "True", "False"} | set(NAMESPACE)


def inject_contrasts(rhs: str, wrap: dict[str, str]) -> str:
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

    return re.sub(IDENT, repl, rhs) if wrap else rhs


@lru_cache(maxsize=1024)
def _description(expr: str) -> tuple[frozenset[str], tuple[str | None, ...] | None]:
    """formulae's reading of an expression, parsed once: (its variable names, its terms in
    design order: None for the intercept, else the term's name; None when the expression has a
    response or group terms). formulae's errors propagate (and are not cached)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = model_description(expr)
    terms = (None if m.response is not None or m.group_terms else
             tuple(None if isinstance(t, Intercept) else t.name for t in m.common_terms))
    return frozenset(m.var_names), terms


@lru_cache(maxsize=1024)
def var_names(expr: str) -> frozenset[str]:
    """The data columns an expression uses (formulae's variable names without functions)."""

    try:
        names = _description(expr)[0]
    except Exception as e:  # noqa: BLE001 - formulae raises many types
        raise FormulaError(f"Cannot read '{expr}': {e}") from None
    return frozenset(n for n in names if n not in NON_COLUMNS)


def rhs_terms(expr: str) -> tuple[str | None, ...] | None:
    """The terms of a right-hand side in the order of its design columns, as formulae reads it:
    None for the intercept, else the term's name (``"talk"``, ``"talk:perf"``,
    ``"scale(x)"``). None if formulae cannot read it or it is not a plain right-hand side.

    Parameters
    ----------
    expr : str
        A right-hand side, e.g. the left-hand side of a random-effect bar.

    Returns
    -------
    tuple or None

    Examples
    --------
    >>> rhs_terms("1 + talk")
    (None, 'talk')
    >>> rhs_terms("0 + talk * perf")
    ('talk', 'perf', 'talk:perf')
    """
    try:
        return _description(expr)[1]
    except Exception:  # noqa: BLE001 - formulae raises many types; the caller runs formulae
        return None


def used_columns(parsed: ParsedFormula, trials: str | None = None) -> dict[str, list[str]]:
    """Columns used by each part: {'response': [...], 'fixed': [...], 'random': [...],
    'grouping': [...]} (formula order not guaranteed within a part; sorted)."""
    if parsed.cbind is not None:
        resp = list(dict.fromkeys(
            c for e in parsed.cbind
            for c in ([e] if is_column_name(e) else sorted(var_names(f"I({e})")))
        ))
    else:
        resp = sorted(var_names(parsed.response))
    if trials is not None:
        resp.append(trials)
    fixed = sorted(var_names(parsed.fixed)) if parsed.fixed not in ("1", "0", "-1") else []
    rand = sorted({v for b in parsed.bars for v in var_names(b.lhs)})
    grouping = list(parsed.grouping_columns)
    return {"response": resp, "fixed": fixed, "random": rand, "grouping": grouping}


def is_column_name(expr: str) -> bool:
    """True if ``expr`` is a bare column name (no function or operator)."""
    return re.fullmatch(IDENT, expr) is not None


def formula_identifiers(formula: str) -> set[str]:
    """Every identifier in the formula text (columns, functions, factors)."""
    return set(re.findall(IDENT, formula))


def evaluate(expr: str, df: pd.DataFrame) -> np.ndarray:
    """The values of a response expression such as ``log(y)`` or ``size - incidence``
    (evaluated by formulae, with the functions of the formula namespace)."""

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            dm = design_matrices(f"I({expr}) ~ 1", df, na_action="error", env=FORMULA_ENV)
    except Exception as e:  # noqa: BLE001 - formulae raises many types
        raise FormulaError(f"Cannot evaluate the response '{expr}': {e}") from None
    return np.asarray(dm.response.design_matrix, dtype=float).ravel()


def split_response(formula: str) -> tuple[str, str]:
    """(left-hand side, right-hand side) of ``response ~ predictors``, whitespace normalised."""
    if not isinstance(formula, str) or not formula.strip():
        raise FormulaError("formula must be a non-empty string such as 'y ~ x + (1 | g)'.")
    parts = split_top(" ".join(formula.split()), "~")
    if len(parts) != 2:
        raise FormulaError(f"Formula '{formula}' must have the form 'response ~ predictors'.")
    return parts[0].strip(), parts[1].strip()
