"""Generic programs: one precompiled Stan program per family that fits every model of the family
whose structure it can take as data.

The specific program of a model (:mod:`bayesglmm.codegen`) is rendered from the model's
structure: which parts exist (intercept, grouping terms and their kind, offsets, held
coefficients, residual correlation, prior terms). The generic program of a family is rendered from
the same templates with every such choice turned into Stan data:

* the intercept is always sampled (``Intercept_c``); ``centre`` = 1 centres the design matrix,
  ``centre`` = 0 leaves it as it is (``means_X`` = 0), which is the flat prior's ``Intercept``;
* :data:`GENERIC_SLOTS` grouping-term slots, each with ``re_kind_k`` (0: unused, 1: group
  intercepts, 2: design columns ``Z_k``), ``N_k``, ``M_k`` and ``has_corr_k`` (LKJ-correlated
  coefficients) and ``centered_k`` (1: ``z_k`` holds the effects themselves, the centred
  parameterisation of :mod:`bayesglmm.reparam`; 0: standardised effects); unused parts have
  size 0 (``L_k`` is ``cholesky_factor_corr[has_corr_k ? M_k : 0]``; ``sd_k`` is an array of
  ``M_k`` reals, which an unused slot reads without creating autodiff objects), and all the
  model-block code of a slot sits in one ``if (re_kind_k)`` block;
* offsets (``has_offset``), held coefficients (``K_fixed`` may be 0: ``beta_free`` is then all of
  ``beta``), residual correlation (``resid_kind``; ``rho_resid_v`` is an array of size 0 or 1);
* every prior term of :data:`bayesglmm.priors.PRIOR_TABLE` that adds no parameters gets a flag
  ``prior_<term>`` (0: flat) and its hyperparameters as data.

The design is read dense: a model whose own program reads it in CSR form
(``spec.sparse_X``, :mod:`bayesglmm.design_csr`) is not covered (:func:`covers`).

The zero-inflated families' zero part (``K_zi``, ``X_zi``, ``beta_zi``) is data and a parameter
of their snippets in both programs. A family variant (the common-effect sequential model,
``category_specific=False``) has a program of its own, named by :attr:`Family.program`
(``sequential_common``).

Grouping term k of a model goes to slot k. The parameters are declared in the specific program's
order under its names, so that at every unconstrained point the two programs have the same
unconstrained vector, element by element, and the same log density (with and without the
Jacobian). Three names differ; :func:`specific_names` translates:

==================  ============================  =======================================
generic             specific                      when
==================  ============================  =======================================
``Intercept_c``     ``Intercept`` (parameter)     flat prior (uncentred); the generic program
                                                  also outputs ``Intercept`` (= ``Intercept_c``)
``beta_free``       ``beta`` (parameter)          no held coefficients; the generic program
                                                  also outputs ``beta`` (transformed parameter)
``rho_resid_v[1]``  ``rho_resid``                 residual correlation; the generic program
                                                  also outputs ``rho_resid`` (generated,
                                                  0 without residual correlation)
==================  ============================  =======================================
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import numpy as np

from .codegen import family_context, jinja_env, read_snippet, stan_data, tidy_code
from .families import Family, get_family, program_families
from .modelspec import ModelSpec
from .priors import PRIOR_TABLE, prior_blocks
from .residcorr import RESID_KINDS, RESID_LOWER
from .residcorr import stan_data as resid_stan_data

__all__ = ["GENERIC_SLOTS", "covers", "generic_code", "generic_data", "specific_names"]

#: Number of grouping-term slots of the generic programs.
GENERIC_SLOTS = 6

_SLOTS = range(1, GENERIC_SLOTS + 1)


# ----------------------------------------------------------------------------- prior terms


def _prior_terms(family: Family) -> tuple[str, ...]:
    """The prior terms the generic program of ``family`` can switch on (table order)."""
    keys = set((["Intercept_c"] if family.has_intercept else []) + ["b"]
               + (["b_zi"] if family.zero_inflated else [])
               + list(family.extra_names) + (["cutpoints"] if family.ordinal else []))
    keys |= {f"{pre}_{k}" for pre in ("sd", "corr") for k in _SLOTS}
    out = []
    for row in PRIOR_TABLE:
        if row.params or row.tparams or row.tdata:  # shrinkage priors: not in the generic program
            continue
        for k in (_SLOTS if row.per_group_term else [None]):
            key = row.key if k is None else row.key.replace("{k}", str(k))
            if key in keys:
                out.append(key)
    return tuple(out)


def _prior_rows(family: Family) -> list[dict[str, Any]]:
    return prior_blocks(_prior_terms(family), GENERIC_SLOTS, family.category_specific,
                        held=not family.category_specific)


# ----------------------------------------------------------------------------- coverage


def covers(spec: ModelSpec | None) -> str | None:
    """Whether the generic program of the model's family represents ``spec`` exactly.

    Parameters
    ----------
    spec : ModelSpec or None
        The model (None for a user-supplied program, ``from_stan``).

    Returns
    -------
    str or None
        None when the generic program gives the same parameters and log density as the
        model's own program; otherwise a short reason, e.g. ``"prior_rhs (shrinkage priors
        change the parameter set)"`` or ``"7 grouping terms (the generic program has 6
        slots)"``.
    """
    if not isinstance(spec, ModelSpec):
        return "a user-supplied Stan program (from_stan) has no generic counterpart"
    fam = spec.family
    if len(spec.groups) > GENERIC_SLOTS:
        return (f"{len(spec.groups)} grouping terms (the generic program has {GENERIC_SLOTS} "
                "slots)")
    if fam.has_intercept and not spec.has_intercept:
        return "no intercept (the generic program always samples one)"
    if spec.sparse_X:  # bayesglmm/design_csr.py
        return (f"a mostly-zero design of {spec.fixed.K} columns, which the model's own program "
                "reads in CSR form (a sparse X * beta)")
    supported = set(_prior_terms(fam))
    extra = [t for t in spec.prior.terms if t not in supported]
    if extra:
        rows = {r.key: r for r in PRIOR_TABLE}
        if any(rows.get(t) is not None and (rows[t].params or rows[t].tparams) for t in extra):
            return f"prior_{spec.prior.name} (shrinkage priors change the parameter set)"
        return (f"prior_{spec.prior.name} (prior term {', '.join(extra)} is not in the generic "
                "program)")
    return None


# ----------------------------------------------------------------------------- code


def _context(family: Family) -> dict[str, Any]:
    intercept = family.has_intercept
    slots = [{"k": k, "generic": True, "beta_vector": not family.category_specific,
              "icpt": "Intercept_c" if intercept else None} for k in _SLOTS]
    offset = family.allows_offset
    resid_kinds = ([{"kind": kind, "function": fn, "lower": RESID_LOWER[kind], "snippet": file,
                     "rho": "rho_resid_v"}
                    for kind, (fn, file, _) in RESID_KINDS.items()] if family.resid_corr else [])
    fam = family_context(family)
    base = {
        "family": fam, "generic": True, "offset": offset, "intercept": intercept,
        "icpt": "Intercept_c", "X": "Xc" if intercept else "X", "groups": slots, "resid": None,
        "eta_comment": "intercept, offsets and group-level effects",
    }
    vec = {**base, "alpha_vector": True, "alpha": "eta", "eta_ready": True}
    scalar = {**base, "alpha_vector": False, "alpha": "Intercept_c" if intercept else "0"}
    cases = [(f"resid_kind == {i}", {**vec, "resid": r}) for i, r in enumerate(resid_kinds, 1)]
    cases += [("use_eta", vec), ("", scalar)]
    return {
        "family": fam,
        "intercept": intercept,
        "offset": offset,
        "held": not family.category_specific,
        "slots": slots,
        "use_eta": " || ".join((["resid_kind > 0"] if resid_kinds else [])
                               + (["has_offset"] if offset else [])
                               + [f"re_kind_{k} > 0" for k in _SLOTS]),
        "resid_kinds": resid_kinds,
        "prior_rows": _prior_rows(family),
        "snippets": [read_snippet(s) for s in family.snippets]
        + [read_snippet(r["snippet"]) for r in resid_kinds],
        "cases": cases,
        "eta_ctx": {**vec, "eta_ready": False},
    }


@cache
def _code(program: str) -> str:
    family = program_families()[program]
    return tidy_code(jinja_env().get_template("generic.stan.j2").render(**_context(family)))


def generic_code(family: Family | str) -> str:
    """The generic Stan program of a family (deterministic text).

    Parameters
    ----------
    family : Family or str
        The family (an entry of :data:`bayesglmm.families.FAMILIES`, or the common-effect
        variant of a category-specific family) or its program name (:attr:`Family.program`:
        the family name, ``"sequential_common"`` for the variant).

    Returns
    -------
    str
        The Stan program, rendered from the same templates as the model programs.
    """
    if isinstance(family, str) and family in program_families():
        return _code(family)
    return _code(get_family(family).program)


# ----------------------------------------------------------------------------- data

_DECL = re.compile(r"^(real|vector)(?:<[^>]*>)?(?:\[(\w+)\])?\s+(\w+)\s*;")


def _dummy(decl: str, d: dict[str, Any]) -> tuple[str, Any]:
    """(name, a valid placeholder value) of a hyperparameter declaration whose term is off."""
    m = _DECL.match(decl)
    if m is None:  # pragma: no cover - the table's declarations are reals and vectors
        raise ValueError(f"cannot read the prior declaration {decl!r}")
    kind, size, name = m.groups()
    return name, 1.0 if kind == "real" else np.ones(int(d[size]))


def generic_data(spec: ModelSpec) -> dict[str, Any]:
    """Stan data of the family's generic program representing ``spec``.

    Parameters
    ----------
    spec : ModelSpec
        The model.

    Returns
    -------
    dict
        The data (numpy arrays, ints and floats).

    Raises
    ------
    ValueError
        When the generic program cannot represent the model (the reason of :func:`covers`).
    """
    reason = covers(spec)
    if reason is not None:
        fam = getattr(getattr(spec, "family", None), "name", "?")
        raise ValueError(f"The generic {fam} program cannot fit this model: {reason}.")
    fam = spec.family
    base = stan_data(spec)
    d: dict[str, Any] = {k: base[k] for k in ("N", "C", "y", "trials", "K", "X", "K_zi", "X_zi")
                         if k in base}
    K = d["K"]
    if fam.has_intercept:
        d["centre"] = int(spec.centred)
    if fam.allows_offset:
        d["has_offset"] = int("offsets" in base)
        d["offsets"] = base.get("offsets", np.zeros(0))
    if not fam.category_specific:
        d.update(K_fixed=0, fixed_idx=np.zeros(0, dtype=np.int64), fixed_val=np.zeros(0),
                 free_idx=np.arange(1, K + 1, dtype=np.int64))
        d.update({k: base[k] for k in ("K_fixed", "fixed_idx", "fixed_val", "free_idx")
                  if k in base})
    for k in _SLOTS:
        g = spec.groups[k - 1] if k <= len(spec.groups) else None
        kind = 0 if g is None else (1 if g.intercept_only else 2)
        d[f"re_kind_{k}"] = kind
        d[f"N_{k}"] = 0 if g is None else int(g.n_groups)
        d[f"M_{k}"] = 0 if g is None else int(g.q)
        d[f"has_corr_{k}"] = int(g is not None and g.has_corr)
        d[f"centered_{k}"] = int(g is not None and g.centered)
        d[f"mu_idx_{k}"] = np.asarray(
            (g.means or (0,) * g.q) if g is not None else (), dtype=np.int64)
        d[f"J_{k}"] = base[f"J_{k}"] if g is not None else np.zeros(0, dtype=np.int64)
        d[f"Z_{k}"] = base[f"Z_{k}"] if kind == 2 else np.zeros((0, 0))
    if fam.resid_corr:
        r = spec.resid
        d["resid_kind"] = 0 if r is None else list(RESID_KINDS).index(r.kind) + 1
        rd = resid_stan_data(r) if r is not None else {}
        d["resid_ord"] = np.asarray(rd.get("resid_ord", np.zeros(0)), dtype=np.int64)
        d["resid_lag"] = np.asarray(rd.get("resid_lag", np.zeros(0)), dtype=np.int64)
        d["resid_T"] = int(rd.get("resid_T", 2))
    present = set(spec.prior.terms)
    for row in _prior_rows(fam):
        on = row["key"] in present
        d[f"prior_{row['key']}"] = int(on)
        for decl in row["decls"]:
            name, dummy = _dummy(decl, d)
            d[name] = base[name] if on else dummy
    d["compute_log_lik"] = base["compute_log_lik"]
    return d


# ----------------------------------------------------------------------------- names


def specific_names(spec: ModelSpec, names: list[str], *, unconstrained: bool = False
                   ) -> list[str | None]:
    """The specific program's names of the generic program's ``names``.

    Parameters
    ----------
    spec : ModelSpec
        The model.
    names : list of str
        Names of the generic program in either style: BridgeStan's (``"beta_free.2"``) or
        CmdStan's (``"beta_free[2]"``).
    unconstrained : bool
        True for unconstrained parameter names (``param_unc_names()``): the generic program's
        ``Intercept_c`` / ``beta_free`` / ``rho_resid_v`` are then the specific program's
        ``Intercept`` / ``beta`` / ``rho_resid``. False for constrained names (draws,
        ``param_names()``), where the generic program also outputs ``Intercept``, ``beta`` and
        ``rho_resid`` themselves: the duplicates map to None.

    Returns
    -------
    list of (str or None)
        The same style; None for names the specific program does not have.
    """
    uncentred = spec.family.has_intercept and not spec.centred
    free_is_beta = not spec.held and not spec.family.category_specific
    out: list[str | None] = []
    for n in names:
        head, sep, rest = _split(n)
        if head == "Intercept_c" and uncentred:
            out.append("Intercept" if unconstrained else None)
        elif head == "beta_free" and free_is_beta:
            out.append(f"beta{sep}{rest}" if unconstrained else None)
        elif head == "rho_resid_v":
            out.append("rho_resid" if unconstrained else None)
        elif head == "rho_resid" and spec.resid is None:
            out.append(None)  # the generated 0 of a model without residual correlation
        else:
            out.append(n)
    return out


def _split(name: str) -> tuple[str, str, str]:
    m = re.match(r"^([^.\[]*)([.\[]?)(.*)$", name)
    assert m is not None
    return m.group(1), m.group(2), m.group(3)
