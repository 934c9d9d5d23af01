"""Code generation: ModelSpec -> StanProgram (Stan code + Stan data + parameter names).

The code is rendered from ``templates/model.stan.j2`` (Jinja) and ``stan_snippets/*.stan`` and
depends only on the model *structure* (family, which parts exist, which prior terms exist); all
numbers -- data, design matrices, group indices and prior hyperparameters -- go to
:attr:`StanProgram.data`. Same spec -> byte-identical code.

Stan data names: ``N``, ``y``, ``C`` (ordinal), ``trials`` (binomial), ``K``, ``X`` (N x K, no
intercept column; for a mostly-zero design ``nnz_X``, ``X_w``, ``X_v``, ``X_u`` instead, its CSR
form: :mod:`bayesglmm.design_csr`), ``offsets`` (offset() terms); per grouping term k: ``N_k`` (groups), ``M_k``
(coefficients), ``J_k`` (1-based group of each row), ``Z_k`` (N x M_k, omitted for intercept-only
terms); prior hyperparameters (see ``priors.PRIOR_TABLE``): ``Intercept_mu``, ``Intercept_sd``,
``b_mu``, ``b_sd``, ``sigma_rate``, ``nu_rate``, ``shape_rate``, ``phi_rate``, ``cutpoint_sd``,
``sd_k_rate``, ``lkj_eta_k``; ``compute_log_lik`` (1: fill ``log_lik``; 0: skip it);
residual correlation (``resid_corr=``, bayesglmm/residcorr.py): ``resid_ord``, ``resid_lag``,
``resid_T`` (cs) and the parameter ``rho_resid``.

Stan parameter names: ``Intercept`` (flat prior) or ``Intercept_c`` (centred design, with
``Intercept`` a generated quantity), ``beta`` (vector[K], or matrix[K, C-1] for sequential),
``cutpoints``, ``sigma``/``nu``/``shape``/``phi``, ``sd_k``, ``L_k`` (correlated terms), ``z_k``
(M_k x N_k standard normals); generated quantities ``corr_k``, ``r_re_k`` (N_k x M_k standardised
effects) and ``log_lik``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from . import residcorr
from ._paths import snippets_dir, templates_dir
from .core.naming import ParamName, sd_name
from .design_csr import csr_data
from .families import Family
from .priors import prior_blocks
from .spec import ModelSpec
from .zero_inflation import zi_design, zi_names

__all__ = ["ParamName", "StanProgram", "family_context", "generate", "jinja_env", "param_names", "render_code",
           "stan_data"]


@dataclass(frozen=True, eq=False)
class StanProgram:
    data: dict[str, Any]  # Stan data (numpy arrays / ints / floats)
    params: tuple[ParamName, ...]  # user-facing quantities in display order (see docs/dev/core.md)
    re_blocks: tuple[str, ...]  # Stan names of the standardised random effects ('z_1', ...)
    spec: ModelSpec

    @cached_property
    def code(self) -> str:
        """The Stan program (deterministic: same spec -> same bytes). Rendered on first use:
        a model fitted by the generic program never needs it unless it is printed."""
        return render_code(self.spec)

    def user_names(self) -> dict[str, str]:
        """Stan element name -> user name."""
        return {p.stan: p.user for p in self.params}

    def stan_names(self) -> dict[str, str]:
        """User name -> Stan element name."""
        return {p.user: p.stan for p in self.params}


# ----------------------------------------------------------------------------- rendering


@lru_cache(maxsize=1)
def jinja_env():
    """The Jinja environment of the Stan templates.

    Its loader searches ``templates/`` and then ``stan_snippets/``, so a template reaches a
    family's snippet with ``{% import family.snippet as fam %}`` (see :mod:`bayesglmm.families`).
    """
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(templates_dir()), str(snippets_dir())]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def read_snippet(name: str) -> str:
    """The text of a Stan snippet file of stan_snippets/ (e.g. "families/gaussian.stan.j2")."""
    return (snippets_dir() / name).read_text(encoding="utf-8").strip()


def family_context(fam: Family) -> dict[str, Any]:
    """The template context of a family (its snippet, link and parameters)."""
    return {
        "name": fam.name,
        "snippet": fam.snippet,
        "link": fam.link,
        "ordinal": fam.ordinal,
        "category_specific": fam.category_specific,
        "extra": [
            {"name": p.name, "lower_text": f"{p.lower:g}", "doc": p.doc} for p in fam.extra
        ],
    }


def _context(spec: ModelSpec) -> dict[str, Any]:
    fam = spec.family
    intercept = spec.has_intercept
    centred = spec.centred
    icpt = "Intercept_c" if centred else "Intercept"
    offset = spec.fixed.offset is not None
    groups = [
        {
            "k": g.k,
            "intercept_only": g.intercept_only,
            "corr": g.has_corr,
            "uncorrelated": (not g.correlated) and g.q > 1,
            "centered": g.centered,
            "means": [("0" if i == 0 else icpt if i == 1 else f"beta[{i - 1}]") for i in g.means],
        }
        for g in spec.groups
    ]
    alpha_vector = bool(groups) or offset
    alpha = "eta" if alpha_vector else (icpt if intercept else "0")
    family = family_context(fam)
    blocks = prior_blocks(tuple(spec.prior.terms), len(spec.groups), fam.category_specific,
                          bool(spec.held))
    ctx = {
        "family": family,
        "offset": offset,
        "intercept": intercept,
        "centred": centred,
        "icpt": icpt,
        "X": "Xc" if centred else "X",
        "sparse": bool(spec.sparse_X),
        "Xbeta": _xbeta(spec),
        "alpha_vector": alpha_vector,
        "alpha": alpha,
        "groups": groups,
        "centred_any": any(g.centered for g in spec.groups),
        "proper": spec.prior.kind.proper,
        "prior_blocks": blocks,
        "held": bool(spec.held),
        "beta_derived": any(b["tparams"] for b in blocks),
        "snippets": [read_snippet(s) for s in fam.snippets]
        + ([read_snippet(spec.resid.snippet)] if spec.resid is not None else []),
        "resid": residcorr.stan_context(spec.resid),
        "threads": None,  # the threaded likelihood's context (render_code(threads=True))
    }
    parts = (["intercept"] if intercept else []) + (["offset"] if offset else []) + (
        ["group-level effects"] if groups else [])
    ctx["eta_comment"] = (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1
                          else "".join(parts))
    ctx["ctx"] = ctx
    return ctx


def _xbeta(spec: ModelSpec) -> str:
    """The Stan expression of the design times ``beta`` (the centred design when the program
    centres it): a dense product, or a sparse one for a design in CSR form, where the centring
    is applied to the product (``X * beta - means_X' * beta``) so that no dense copy is made."""
    if not spec.sparse_X:
        return ("Xc" if spec.centred else "X") + " * beta"
    prod = "csr_matrix_times_vector(N, K, X_w, X_v, X_u, beta)"
    return prod + (" - dot_product(means_X, beta)" if spec.centred else "")


def tidy_code(code: str) -> str:
    """Strip trailing spaces; blank lines only before section comments ('  // --- ...')."""
    out: list[str] = []
    for ln in (ln.rstrip() for ln in code.splitlines()):
        if not ln:
            continue
        if (_SECTION.match(ln) or ln.startswith("  /*")) and out and not out[-1].endswith("{"):
            out.append("")
        out.append(ln)
    return "\n".join(out) + "\n"


_SECTION = re.compile(r"^\s+// --- ")


def render_code(spec: ModelSpec, threads: bool = False) -> str:
    """The Stan program of ``spec`` (structure only). ``threads=True``: its threaded variant,
    the likelihood as a ``reduce_sum`` over slices of observations
    (:mod:`bayesglmm.codegen_threads`; data ``grainsize`` added)."""
    ctx = _context(spec)
    if threads:
        from .codegen_threads import threads_context, threads_unsupported

        reason = threads_unsupported(spec)
        if reason is not None:
            raise ValueError(f"threads_per_chain > 1 is not available for this model: {reason}")
        ctx["threads"] = threads_context(ctx, jinja_env())
    return tidy_code(jinja_env().get_template("model.stan.j2").render(**ctx))


# ----------------------------------------------------------------------------- data


LOG_LIK_IN_PROGRAM_MAX_ROWS = 5000
"""Rows up to which the program writes ``log_lik`` while sampling (``compute_log_lik`` = 1);
for more, the fits compute it on demand (:mod:`bayesglmm.inference.loglik`)."""


def stan_data(spec: ModelSpec) -> dict[str, Any]:
    """The Stan data dict of ``spec`` (observations, design, groups, prior hyperparameters)."""
    fam = spec.family
    r = spec.response
    d: dict[str, Any] = {"N": int(spec.n_obs)}
    if fam.ordinal:
        d["C"] = int(r.n_categories)
    d["y"] = np.asarray(r.y, dtype=np.int64 if fam.stan_y_type == "int" else float)
    if fam.needs_trials:
        d["trials"] = np.asarray(r.trials, dtype=np.int64)
    d["K"] = int(spec.fixed.K)
    if spec.sparse_X:  # a mostly-zero design, in CSR form (bayesglmm/design_csr.py)
        d.update(csr_data(np.asarray(spec.fixed.X).reshape(spec.n_obs, spec.fixed.K)))
    else:
        d["X"] = np.ascontiguousarray(spec.fixed.X, dtype=float).reshape(spec.n_obs,
                                                                          spec.fixed.K)
    if spec.zi is not None:  # zero-inflated families: logit P(structural zero) = X_zi * beta_zi
        X_zi = zi_design(spec)
        d["K_zi"] = int(X_zi.shape[1])
        d["X_zi"] = np.ascontiguousarray(X_zi)
    if spec.fixed.offset is not None:
        d["offsets"] = np.asarray(spec.fixed.offset, dtype=float)
    for g in spec.groups:
        d[f"N_{g.k}"] = int(g.n_groups)
        d[f"M_{g.k}"] = int(g.q)
        d[f"J_{g.k}"] = np.asarray(g.index, dtype=np.int64)
        if not g.intercept_only:
            d[f"Z_{g.k}"] = np.ascontiguousarray(g.Z, dtype=float)
    if spec.resid is not None:
        d.update(residcorr.stan_data(spec.resid))
    for key, val in spec.prior.data.items():
        d[key] = np.asarray(val, dtype=float) if isinstance(val, np.ndarray) else float(val)
    if spec.held:  # coefficients held fixed: which ones and their values are data
        fixed_idx = [j + 1 for j, _ in spec.held]
        d["K_fixed"] = len(fixed_idx)
        d["fixed_idx"] = np.asarray(fixed_idx, dtype=np.int64)
        d["fixed_val"] = np.asarray([v for _, v in spec.held], dtype=float)
        d["free_idx"] = np.asarray([j for j in range(1, spec.fixed.K + 1) if j not in fixed_idx],
                                   dtype=np.int64)
    # the pointwise log-likelihood is written by the program for small data only; above the
    # threshold it is computed on demand from the draws (bayesglmm.inference.loglik)
    d["compute_log_lik"] = int(spec.n_obs <= LOG_LIK_IN_PROGRAM_MAX_ROWS)
    return d


# ----------------------------------------------------------------------------- names


def param_names(spec: ModelSpec) -> tuple[ParamName, ...]:
    """User-facing quantities in display order (docs/dev/core.md)."""
    fam = spec.family
    out: list[ParamName] = []
    if spec.has_intercept:
        out.append(ParamName("Intercept", "Intercept", "Intercept"))
    names = spec.fixed.names
    if fam.category_specific:
        C1 = int(spec.response.n_categories) - 1
        for j, n in enumerate(names, start=1):
            for c in range(1, C1 + 1):
                out.append(ParamName(f"beta[{j},{c}]", f"b[{n},{c}->{c + 1}]", "b"))
    else:
        for j, n in enumerate(names, start=1):
            out.append(ParamName(f"beta[{j}]", f"b[{n}]", "b"))
    if fam.ordinal:
        for c in range(1, int(spec.response.n_categories)):
            out.append(ParamName(f"cutpoints[{c}]", f"cutpoints[C{c}]", "cutpoints"))
    if spec.zi is not None:  # zero-inflation coefficients (logit scale)
        for j, n in enumerate(zi_names(spec), start=1):
            out.append(ParamName(f"beta_zi[{j}]", f"b_zi[{n}]", "family"))
    for p in fam.extra:
        out.append(ParamName(p.name, p.name, "family"))
    several = len(spec.groups) > 1
    for g in spec.groups:
        out += [sd_name(g.k, m, g.factor, c, several) for m, c in enumerate(g.coefs, start=1)]
    for g in spec.groups:
        if not g.has_corr:
            continue
        sfx = f"_{g.k}" if several else ""
        for col in range(2, g.q + 1):  # upper triangle, column-major
            for row in range(1, col):
                out.append(ParamName(f"corr_{g.k}[{row},{col}]",
                                     f"corr{sfx}[{g.coefs[row - 1]},{g.coefs[col - 1]}]", "corr"))
    if spec.resid is not None:
        out.append(ParamName("rho_resid", "rho_resid", "aux"))
    if spec.centred:
        out.append(ParamName("Intercept_c", "Intercept_c", "Intercept_c"))
    for g in spec.groups:
        sfx = f"_{g.k}" if several else ""
        for m in range(1, g.q + 1):  # column-major, as Stan writes matrices
            for j in range(1, g.n_groups + 1):
                user = f"r_re{sfx}[{j}]" if g.q == 1 else f"r_re{sfx}[{j},{m}]"
                out.append(ParamName(f"r_re_{g.k}[{j},{m}]", user, "re"))
    return tuple(out)


def generate(spec: ModelSpec) -> StanProgram:
    """ModelSpec -> StanProgram."""
    return StanProgram(
        data=stan_data(spec),
        params=param_names(spec),
        re_blocks=tuple(f"z_{g.k}" for g in spec.groups),
        spec=spec,
    )
