"""Model specification: formula + data -> :class:`~bayesglmm.modelspec.ModelSpec`.

:func:`build_spec` runs the stages in order: parse the formula once (:mod:`bayesglmm.formula`),
prepare the rows, factors and response (:mod:`bayesglmm.prepare`), build the design matrices
(:mod:`bayesglmm.design`), resolve the priors (:mod:`bayesglmm.priors`) and residual
correlations (:mod:`bayesglmm.residcorr`). :func:`hold_coefficients` fixes coefficients at given
values. The records themselves live in :mod:`bayesglmm.modelspec`; they, and the formula names,
are re-exported here.

Examples
--------
>>> import bayesglmm
>>> df = bayesglmm.load_sleepstudy()
>>> spec = build_spec("Reaction ~ Days + (Days | Subject)", df)
>>> spec.fixed.names, spec.groups[0].coefs
(('Days',), ('Int', 'Days'))
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from .core.naming import sd_name
from .design import FormulaeRuns, contrast_wrap, fixed_effects, group_term
from .design_csr import use_csr
from .families import Family, get_family
from .formula import Bar, FormulaError, ParsedFormula, contr_poly, inject_contrasts, parse_formula
from .modelspec import FixedEffects, GroupTerm, ModelSpec, Response
from .prepare import prepare_data
from .priors import Prior, make_prior, resolve_prior
from .reparam import resolve_param, shared_means
from .residcorr import build_resid, check_redundancy, check_resid_args, default_group
from .zero_inflation import zero_part, zi_columns, zi_effects, zi_rhs

__all__ = [
    "Bar",
    "FixedEffects",
    "FormulaError",
    "GroupTerm",
    "ModelSpec",
    "ParsedFormula",
    "Response",
    "build_spec",
    "contr_poly",
    "hold_coefficients",
    "parse_formula",
]


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
    zi: str | None = None,
    param: Any = "auto",
) -> ModelSpec:
    """Formula + data -> ModelSpec.

    family: a name of the family table; prior: prior object, name or dict (see priors.py);
    contrasts: 'treatment' or 'sum' for categorical predictors; y_range: the plausible range
    of the response, (low, high), which scales the default weakly informative priors;
    dropna: drop rows with missing values in used columns (otherwise an error);
    allow_random: False for lm()/glm(); factors: columns to treat as categorical;
    trials: binomial trials column (alternative to cbind(successes, failures));
    levels: the order of the categories of an ordinal response (or the two levels of a bernoulli
    factor response, second = 1);
    resid_corr, resid_time, resid_group: residual correlation (bayesglmm/residcorr.py);
    hold: coefficients held at given values (the wrappers' ``fixed=``), e.g. ``{"b[talk]": 0}``
    (see :func:`hold_coefficients`);
    zi: the zero-inflation formula of the zero-inflated families (default ``"~ 1"``; see
    :mod:`bayesglmm.zero_inflation`);
    param: centred or non-centred group-level effects per grouping term, "auto" (default),
    "centered", "noncentered" or a dict by grouping factor or term (see :mod:`bayesglmm.reparam`).
    """
    fam = get_family(family)
    if zi is not None and not fam.zero_inflated:
        raise ValueError(f"zi= is only used by the zero-inflated families, not '{fam.name}'.")
    zi_part = zi_rhs(zi) if fam.zero_inflated else None
    if contrasts not in ("treatment", "sum"):
        raise ValueError(f"contrasts must be 'treatment' or 'sum', got {contrasts!r}.")
    the_prior = make_prior(prior, y_range)
    parsed = parse_formula(formula, allow_random=allow_random)
    check_resid_args(resid_corr, resid_time, resid_group, fam, data)
    resid_note = None
    if resid_corr is not None:
        resid_group, resid_note = default_group(resid_group, list(parsed.grouping_columns))
    extra = tuple(c for c in (resid_time, resid_group) if c is not None)
    extra += zi_columns(zi_part) if zi_part is not None else ()
    prep = prepare_data(parsed, data, family=fam, dropna=dropna, factors=factors, trials=trials,
                        levels=levels, extra_columns=extra)
    df = prep.data
    # contrasts: ordered factors polynomial (R's contr.poly), the others treatment or sum
    wrap = contrast_wrap(prep.factor_levels, prep.ordered_factors, contrasts)
    lev_str = {c: [str(v) for v in ls] for c, ls in prep.factor_levels.items()}
    rhs = inject_contrasts(parsed.fixed, wrap)
    runs = FormulaeRuns(df)  # one formulae run per distinct piece of the formula
    fixed = fixed_effects(rhs, df, lev_str, runs)
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
        group_term(k, bar, df, lev_str, wrap, runs)
        for k, bar in enumerate(parsed.bars, start=1)
    )
    centred = resolve_param(param, groups, prep.response.y, prep.response.trials, fixed.X)
    groups = tuple(replace(g, centered=c) for g, c in zip(groups, centred))
    resid = None
    if resid_corr is not None:
        resid = build_resid(resid_corr, df, group=resid_group, time=resid_time)
        redundant = check_redundancy(resid, [g.factor for g in groups if "Int" in g.coefs])
        notes.extend(n for n in (resid_note, redundant) if n)
    has_intercept = fixed.intercept and fam.has_intercept
    groups = tuple(replace(g, means=shared_means(g, fixed.names, fixed.X, has_intercept,
                                                 fam.category_specific)) for g in groups)
    sd_names = tuple(tuple(sd_name(g.k, m, g.factor, c, len(groups) > 1).user
                           for m, c in enumerate(g.coefs, start=1)) for g in groups)
    zi_fe = zi_effects(zi_part, df, lev_str, wrap, runs) if zi_part is not None else None
    rprior = resolve_prior(
        the_prior, fam,
        b_names=fixed.names, X=fixed.X, y=prep.response.y, has_intercept=has_intercept,
        n_cat=prep.response.n_categories or 0,
        re_terms=tuple((g.factor, g.coefs, g.correlated) for g in groups),
        sd_names=sd_names, zi=zero_part(zi_fe) if zi_fe is not None else None,
    )
    if zi_fe is not None and rprior.kind.proper and not rprior.has("b_zi"):
        notes.append("the zero-inflation coefficients b_zi have flat priors.")
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
        parsed=parsed,
        zi=zi_fe,
        sparse_X=use_csr(fixed.X, fam, tuple(rprior.terms)),
    )
    return hold_coefficients(spec, hold) if hold else spec


def hold_coefficients(spec: ModelSpec, fixed: Any) -> ModelSpec:
    """A copy of ``spec`` with coefficients held at given values (the wrappers' ``fixed=``).

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
        if spec.prior.kind.joint_b is not None:  # one joint coefficient prior (prior table)
            raise ValueError(
                f"fixed: cannot hold '{key}' under prior_{spec.prior.name}(): "
                f"{spec.prior.kind.joint_b}. Drop the predictor from the formula instead."
            )
        try:
            v = float(val)
        except (TypeError, ValueError):
            raise ValueError(f"fixed: the value of '{key}' must be a number, got {val!r}.") from None
        if not np.isfinite(v):
            raise ValueError(f"fixed: the value of '{key}' must be finite, got {val!r}.")
        held[names.index(col)] = v
    return replace(spec, held=tuple(sorted(held.items())))
