"""The model specification: the frozen records that describe a model after its formula has been
matched to the data (:class:`ModelSpec` and its parts). Code generation reads nothing else;
post-estimation reads the parsed formula and the design from here, never the formula text.

:func:`bayesglmm.spec.build_spec` builds them; this module only defines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .families import Family
from .formula import ParsedFormula
from .priors import ResolvedPrior

__all__ = ["FixedEffects", "GroupTerm", "ModelSpec", "Response"]


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
    # centred parameterisation of its effects (param=, bayesglmm/reparam.py); False: non-centred
    centered: bool = False
    # centred terms: per coefficient, the population-level coefficient that is the mean of the
    # group's coefficient (0: none, 1: the intercept, j + 1: beta[j]); () when none is shared
    means: tuple[int, ...] = ()

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
    parsed: ParsedFormula | None = field(default=None, repr=False)  # the formula, parsed once
    # zero-inflated families: the design of logit P(structural zero) (the zi= formula)
    zi: FixedEffects | None = None
    # the program reads X in CSR form and forms X * beta as a sparse product (mostly-zero
    # designs: bayesglmm/design_csr.py); the log density is the same
    sparse_X: bool = False

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
            + ("; centred X" if self.centred else "")
            + ("; X in CSR form (sparse)" if self.sparse_X else ""),
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
                + ("; centred" if g.centered else "")
            )
        if self.zi is not None:
            lines.append("  zero inflation (logit): "
                         + ", ".join(f"b_zi[{n}]" for n in
                                     (("Intercept",) if self.zi.intercept else ()) + self.zi.names))
        if self.resid is not None:
            lines.append(f"  {self.resid.describe()}")
        for j, v in self.held:
            lines.append(f"  held fixed: b[{self.fixed.names[j]}] = {v:g}")
        for s in self.prior.describe():
            lines.append(f"  prior: {s}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)
