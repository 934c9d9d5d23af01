"""Resolution of a prior object against the family, the design and the response: which prior
terms are present and their hyperparameters (:class:`ResolvedPrior`, :func:`resolve_prior`),
including the per-parameter overrides and the data-scaled constants of ``prior_weak()``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..families import EXTRA_PARAMS, Family
from .constructors import (
    PRIOR_NAMES,
    Prior,
)
from .table import PRIOR_KINDS, PriorKind

__all__ = ["ResolvedPrior", "ZeroPart", "resolve_prior", "weak_constants"]


@dataclass(frozen=True, eq=False)
class ZeroPart:
    """The design of the zero part of a zero-inflated model, as the prior sees it.

    ``names``: user names of its columns (inside ``b_zi[...]``, ``"Intercept"`` first when
    present); ``X``: its design matrix (rows x columns, the intercept column included);
    ``intercept``: whether the first column is the intercept.
    """

    names: tuple[str, ...]
    X: np.ndarray
    intercept: bool


@dataclass(frozen=True, eq=False)
class ResolvedPrior:
    """A prior tied to a model: which terms exist (structure) and their hyperparameters (data).

    ``terms`` is the structural part (a sorted tuple of term names present, e.g. 'Intercept_c',
    'b', 'sigma', 'sd_1', 'corr_1', 'cutpoints'); ``data`` maps Stan data names to values.
    """

    name: str
    centred: bool  # non-flat prior -> centred design matrix, Intercept_c sampled
    terms: tuple[str, ...]
    data: dict[str, Any] = field(repr=False)
    constants: dict[str, float] = field(default_factory=dict)  # weak-prior base/mid/... (info)
    source: Prior | None = None
    b_names: tuple[str, ...] = ()
    zi_names: tuple[str, ...] = ()

    def has(self, term: str) -> bool:
        return term in self.terms

    @property
    def kind(self) -> PriorKind:
        """The prior's row of the prior table (:data:`PRIOR_KINDS`)."""
        return PRIOR_KINDS[self.name]

    def describe(self) -> list[str]:
        """Human-readable prior statements (for printing)."""
        out = []
        d = self.data
        if self.has("Intercept_c"):
            out.append(f"Intercept_c ~ Normal({d['Intercept_mu']:.4g}, {d['Intercept_sd']:.4g})")
        if self.has("b"):
            for name, mu, sd in zip(self.b_names, d["b_mu"], d["b_sd"]):
                out.append(f"b[{name}] ~ Normal({mu:.4g}, {sd:.4g})")
        if self.has("b_zi"):
            for name, mu, sd in zip(self.zi_names, d["b_zi_mu"], d["b_zi_sd"]):
                out.append(f"b_zi[{name}] ~ Normal({mu:.4g}, {sd:.4g})")
        for p in EXTRA_PARAMS:
            if self.has(p.name):
                out.append(f"{p.name} ~ Exponential({d[p.prior_arg]:.4g})")
        for t in self.terms:
            if t.startswith("sd_"):
                out.append(f"{t} ~ Exponential({', '.join(f'{r:.4g}' for r in d[t + '_rate'])})")
            if t.startswith("corr_"):
                out.append(f"L_{t[5:]} ~ LKJ-Cholesky({d['lkj_eta_' + t[5:]]:.4g})")
        if self.has("cutpoints"):
            out.append(f"cutpoints ~ Normal(0, {d['cutpoint_sd']:.4g})")
        if self.has("b_rhs"):
            out.append(f"b ~ regularized horseshoe (tau0 = {d['hs_tau0']:.4g}, slab_df = "
                       f"{d['hs_slab_df']:.4g}, slab_scale = {d['hs_slab_scale']:.4g})")
        if self.has("b_ssp"):
            out.append(f"b ~ spike-and-slab (inclusion prior logit-N({d['ssp_logit_mu']:.4g}, "
                       f"{d['ssp_logit_sd']:.4g}))")
        if self.has("b_jzs"):
            out.append(f"b ~ JZS multivariate Cauchy (r = {d['jzs_r']:.4g}); p(sigma) ~ 1/sigma; "
                       "intercept and random-effect SDs flat")
        if self.constants.get("no_prior_on"):
            out.append(f"note: no prior on {self.constants['no_prior_on']} (flat; give "
                       "Intercept_sd=, sigma_rate=, sd_rate= to add one)")
        return out


def _sample_sd(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return float("nan")
    return float(np.std(x, ddof=1))


def weak_constants(
    family: Family, y: np.ndarray | None, y_range: tuple[float, float] | None, sd_ratio: float,
    max_beta: float,
) -> dict[str, float]:
    """Constants of prior_weak: base, mid, alpha_sd."""
    if family.weak_class == "continuous":
        if y_range is None:
            raise ValueError(
                f"prior_weak for family '{family.name}' needs y_range=(low, high), the plausible "
                "range of the response (give it to the wrapper or to prior_weak)."
            )
        lo, hi = y_range
        half = (hi - lo) / 2.0
        return {"half": half, "base": half * sd_ratio, "mid": (lo + hi) / 2.0, "alpha_sd": half}
    if family.weak_class == "logit":
        base = math.pi / math.sqrt(3.0)
        return {"base": base, "mid": 0.0, "alpha_sd": base * max_beta}
    if family.weak_class == "log":
        yy = np.asarray(y, dtype=float)
        return {"base": 1.0, "mid": float(math.log(np.mean(yy) + 0.5)), "alpha_sd": sd_ratio}
    raise ValueError(f"no weak-prior constants for family class {family.weak_class!r}")


def resolve_prior(
    prior: Prior,
    family: Family,
    *,
    b_names: tuple[str, ...],
    X: np.ndarray,
    y: np.ndarray,
    has_intercept: bool,
    n_cat: int,
    re_terms: tuple[tuple[str, tuple[str, ...], bool], ...],
    sd_names: tuple[tuple[str, ...], ...],
    zi: ZeroPart | None = None,
) -> ResolvedPrior:
    """Tie ``prior`` to a model.

    b_names: user names of the design columns (inside ``b[...]``), length K (for the sequential
    family the Stan coefficient matrix is K x (C-1) and every column of a row shares the prior).
    re_terms: per grouping term (label, coefficient names, correlated).
    sd_names: user names of every SD element per term (for overrides).
    zi: the zero part of a zero-inflated family (its coefficients ``b_zi``), else None.
    """
    K = len(b_names)
    nterms = len(re_terms)
    data: dict[str, Any] = {}
    terms: list[str] = []
    if prior.name == "flat":
        if prior.overrides:
            raise ValueError("prior_flat() takes no per-parameter overrides; use prior_normal().")
        return ResolvedPrior("flat", False, (), {}, {}, prior, b_names, _zi_names(zi))

    extra_names = set(family.extra_names)
    # extras given for parameters the family does not have -> error
    for arg, pname in ((p.prior_arg, p.name) for p in EXTRA_PARAMS if not p.always_prior):
        if prior.get(arg) is not None and pname not in extra_names:
            raise ValueError(
                f"Prior argument {arg} given, but family '{family.name}' has no parameter "
                f"'{pname}' (its extra parameters: {', '.join(family.extra_names) or 'none'})."
            )
    if prior.get("cutpoint_sd") is not None and not family.ordinal:
        raise ValueError(
            f"Prior argument cutpoint_sd given, but family '{family.name}' has no cutpoints."
        )

    if prior.name in ("rhs", "ssp", "jzs"):
        return _resolve_shrinkage(prior, family, b_names=b_names, X=X, y=y,
                                  has_intercept=has_intercept, re_terms=re_terms, zi=zi)
    constants: dict[str, float] = {}
    if prior.name == "normal":
        mu_sd = prior.get("mu_sd")
        if mu_sd is None:
            mu_sd = prior.get("Intercept_sd")
        icpt = (0.0, mu_sd) if mu_sd is not None else None
        bsd = prior.get("b_sd")
        b = (np.zeros(K), np.full(K, float(bsd))) if bsd is not None else None
        rates = {p.name: prior.get(p.prior_arg) for p in family.extra if p.always_prior}
        tau = prior.get("tau_rate")
        zsd = prior.get("b_zi_sd")
        b_zi = None if zi is None or zsd is None else _normal(np.full(len(zi.names), float(zsd)))
    elif prior.name == "weak":
        sd_ratio, max_beta = prior.get("sd_ratio"), prior.get("max_beta")
        constants = weak_constants(family, y, prior.y_range, sd_ratio, max_beta)
        base = constants["base"]
        icpt = (constants["mid"], constants["alpha_sd"])
        sds = np.array([_sample_sd(X[:, j]) for j in range(K)], dtype=float)
        bad = [b_names[j] for j in range(K) if not (sds[j] > 0)]
        if bad:
            raise ValueError(
                "prior_weak scales each coefficient by the SD of its design column, but these "
                f"columns are constant: {', '.join('b[' + n + ']' for n in bad)}."
            )
        b = (np.zeros(K), max_beta * base / sds) if K else (np.zeros(0), np.zeros(0))
        rates = {p.name: 1.0 / base for p in family.extra if p.always_prior}
        tau = 1.0 / base
        b_zi = None if zi is None else _weak_zero_part(zi, max_beta)
    else:  # pragma: no cover - make_prior guarantees the name
        raise ValueError(f"Unknown prior '{prior.name}'. Valid priors: {', '.join(PRIOR_NAMES)}.")
    for p in family.extra:  # the other extras: a prior only if their rate is given
        if not p.always_prior:
            rates[p.name] = prior.get(p.prior_arg)
    cut_sd = prior.get("cutpoint_sd")
    lkj = prior.get("lkj_eta")
    lkj = 1.0 if lkj is None else lkj

    # per-term SD rates and LKJ
    sd_rates = [np.full(len(coefs), float(tau)) if tau is not None else None
                for (_, coefs, _) in re_terms]
    lkj_etas = [lkj for _ in re_terms]

    # ---- overrides
    b_mu = None if b is None else np.array(b[0], dtype=float)
    b_sd = None if b is None else np.array(b[1], dtype=float)
    for key, val in prior.overrides:
        if key in ("Intercept_c", "Intercept"):
            if not has_intercept:
                raise ValueError(f"Prior override '{key}': the model has no intercept.")
            icpt = (val[0], val[1]) if isinstance(val, tuple) else ((icpt or (0.0, 0))[0], val)
        elif key == "b_zi" or key.startswith("b_zi["):
            if zi is None:
                raise ValueError(f"Prior override '{key}': family '{family.name}' has no "
                                 "zero-inflation coefficients b_zi.")
            if b_zi is None:
                b_zi = (np.zeros(len(zi.names)), np.full(len(zi.names), np.nan))
            idx = (range(len(zi.names)) if key == "b_zi"
                   else [_index_of(key[5:-1], zi.names, key, "b_zi")])
            for j in idx:
                if isinstance(val, tuple):
                    b_zi[0][j], b_zi[1][j] = val
                else:
                    b_zi[1][j] = val
        elif key == "b" or key.startswith("b["):
            if b_mu is None:
                b_mu, b_sd = np.zeros(K), np.full(K, np.nan)
            idx = range(K) if key == "b" else [_index_of(key[2:-1], b_names, key, "b")]
            for j in idx:
                if isinstance(val, tuple):
                    b_mu[j], b_sd[j] = val
                else:
                    b_sd[j] = val
        elif key in {p.name for p in EXTRA_PARAMS}:
            if key not in extra_names:
                raise ValueError(
                    f"Prior override '{key}': family '{family.name}' has no parameter '{key}'."
                )
            rates[key] = _scalar(val, key)
        elif key == "cutpoints":
            if not family.ordinal:
                raise ValueError(f"Prior override 'cutpoints': family '{family.name}' has none.")
            cut_sd = _scalar(val, key)
        elif key.startswith("sd"):
            k_list, m_sel = _sd_target(key, re_terms, sd_names)
            for k in k_list:
                if sd_rates[k] is None:
                    sd_rates[k] = np.full(len(re_terms[k][1]), np.nan)
                for m in (m_sel if m_sel is not None else range(len(re_terms[k][1]))):
                    sd_rates[k][m] = _scalar(val, key)
        elif key.startswith("corr"):
            suffix = key[4:]
            ks = range(nterms) if suffix == "" else [_term_index(suffix, nterms, key)]
            for k in ks:
                lkj_etas[k] = _scalar(val, key)
        else:
            raise ValueError(
                f"Unknown parameter '{key}' in prior overrides. Use names such as 'Intercept_c', "
                "'b', 'b[<column>]', 'b_zi[<column>]', 'sigma', 'sd', 'sd[<group>:<coef>]', 'corr', "
                "'cutpoints'."
            )
    if b_sd is not None and K and np.any(np.isnan(b_sd)):
        missing = [b_names[j] for j in range(K) if np.isnan(b_sd[j])]
        raise ValueError(
            "Prior overrides give some coefficients a prior but not others (b_sd=None): "
            f"{', '.join('b[' + m + ']' for m in missing)}. Give 'b' an SD as well."
        )
    if b_zi is not None and zi is not None and np.any(np.isnan(b_zi[1])):
        missing = [n for n, v in zip(zi.names, b_zi[1]) if np.isnan(v)]
        raise ValueError(
            "Prior overrides give some zero-inflation coefficients a prior but not others "
            f"(b_zi_sd=None): {', '.join('b_zi[' + m + ']' for m in missing)}. Give 'b_zi' an SD "
            "as well."
        )
    for k, r in enumerate(sd_rates):
        if r is not None and np.any(np.isnan(r)):
            raise ValueError(
                f"Prior overrides give some SDs of grouping term {k + 1} a prior but not others "
                "(tau_rate=None). Give 'sd' a rate as well."
            )

    # ---- assemble terms and data
    if has_intercept and icpt is not None:
        terms.append("Intercept_c")
        data["Intercept_mu"] = float(icpt[0])
        data["Intercept_sd"] = float(icpt[1])
    if b_sd is not None:
        terms.append("b")
        data["b_mu"] = np.asarray(b_mu, dtype=float)
        data["b_sd"] = np.asarray(b_sd, dtype=float)
    if b_zi is not None:
        terms.append("b_zi")
        data["b_zi_mu"] = np.asarray(b_zi[0], dtype=float)
        data["b_zi_sd"] = np.asarray(b_zi[1], dtype=float)
    for p in family.extra:
        if rates.get(p.name) is not None:
            terms.append(p.name)
            data[p.prior_arg] = float(rates[p.name])
    if family.ordinal and cut_sd is not None:
        terms.append("cutpoints")
        data["cutpoint_sd"] = float(cut_sd)
    for k, (_, coefs, correlated) in enumerate(re_terms, start=1):
        if sd_rates[k - 1] is not None:
            terms.append(f"sd_{k}")
            data[f"sd_{k}_rate"] = np.asarray(sd_rates[k - 1], dtype=float)
        if correlated and len(coefs) > 1:
            terms.append(f"corr_{k}")
            data[f"lkj_eta_{k}"] = float(lkj_etas[k - 1])
    for key, v in data.items():
        arr = np.atleast_1d(np.asarray(v, dtype=float))
        positive = key.endswith(("_sd", "_rate")) or key.startswith("lkj_eta")
        if positive and not np.all((arr > 0) & np.isfinite(arr)):
            raise ValueError(f"Prior hyperparameter {key} must be positive and finite.")
    return ResolvedPrior(prior.name, has_intercept, tuple(terms), data, constants, prior, b_names,
                         _zi_names(zi))


def _zi_names(zi: ZeroPart | None) -> tuple[str, ...]:
    return () if zi is None else tuple(zi.names)


def _normal(sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(means, SDs) of centred Normal priors with these SDs."""
    return np.zeros(len(sd)), np.asarray(sd, dtype=float)


def _weak_zero_part(zi: ZeroPart, max_beta: float) -> tuple[np.ndarray, np.ndarray]:
    """prior_weak of the zero part: that of a logistic regression on its design (the logit
    class of :func:`weak_constants`): the intercept Normal(0, max_beta * pi / sqrt(3)), the
    other columns Normal(0, max_beta * (pi / sqrt(3)) / sd(column))."""
    base = math.pi / math.sqrt(3.0)
    X = np.asarray(zi.X, dtype=float)
    sds = np.array([_sample_sd(X[:, j]) for j in range(X.shape[1])], dtype=float)
    first = 1 if zi.intercept else 0
    bad = [zi.names[j] for j in range(first, len(zi.names)) if not (sds[j] > 0)]
    if bad:
        raise ValueError(
            "prior_weak scales each coefficient by the SD of its design column, but these "
            f"zero-inflation columns are constant: {', '.join('b_zi[' + n + ']' for n in bad)}."
        )
    sd = max_beta * base / np.where(sds > 0, sds, 1.0)
    if zi.intercept:
        sd[0] = base * max_beta
    return _normal(sd)


def _resolve_shrinkage(prior: Prior, family: Family, *, b_names: tuple[str, ...], X: np.ndarray,
                       y: np.ndarray, has_intercept: bool,
                       re_terms: tuple[tuple[str, tuple[str, ...], bool], ...],
                       zi: ZeroPart | None = None) -> ResolvedPrior:
    """prior_rhs / prior_ssp / prior_jzs: the coefficient prior of the table, plus (rhs, ssp) the
    intercept / sigma / SD / extra priors only when their arguments are given."""
    K = len(b_names)
    N = X.shape[0]
    name = prior.name
    if K == 0:
        raise ValueError(f"prior_{name}() is a prior on regression coefficients, but the model "
                         "has none.")
    if family.category_specific:
        raise ValueError(f"prior_{name}() is not available for family '{family.name}' "
                         "(category-specific coefficients).")
    terms: list[str] = []
    data: dict[str, Any] = {}
    constants: dict[str, float] = {}
    notes: list[str] = []
    if name == "jzs":
        if family.weak_class != "continuous" or "sigma" not in family.extra_names:
            raise ValueError(f"prior_jzs() needs a continuous family with a residual SD "
                             f"(gaussian, lognormal, student_t), not '{family.name}'.")
        if not has_intercept:
            raise ValueError("prior_jzs() centres the design matrix and needs an intercept.")
        Xc = X - X.mean(axis=0)
        if np.linalg.matrix_rank(Xc) < K:
            raise ValueError("prior_jzs(): the centred design matrix is rank deficient "
                             f"(columns {', '.join('b[' + n + ']' for n in b_names)}).")
        terms.append("b_jzs")
        data["jzs_r"] = float(prior.get("r"))
        for p in family.extra:
            if not p.always_prior and prior.get(p.prior_arg) is not None:  # pragma: no cover
                terms.append(p.name)
                data[p.prior_arg] = float(prior.get(p.prior_arg))
        return ResolvedPrior(name, has_intercept, tuple(terms), data, constants, prior, b_names,
                             _zi_names(zi))
    consts = weak_constants(family, y, prior.y_range, 0.5, prior.get("max_beta") or 1.0)
    base = consts["base"]
    sds = np.array([_sample_sd(X[:, j]) for j in range(K)], dtype=float)
    if name == "rhs":
        p0 = max(1.0, min(float(prior.get("expected_vars")), K - 1.0))
        tau0 = base / math.sqrt(N) if K - p0 <= 0 else p0 / (K - p0) * base / math.sqrt(N)
        terms.append("b_rhs")
        data.update(hs_tau0=tau0, hs_slab_df=float(prior.get("slab_df")),
                    hs_slab_scale=float(prior.get("slab_scale")))
        constants.update(consts, p0=p0, tau0=tau0)
    else:
        bad = [b_names[j] for j in range(K) if not (sds[j] > 0)]
        if bad:
            raise ValueError("prior_ssp scales each coefficient by the SD of its design column, "
                             f"but these columns are constant: {', '.join(bad)}.")
        ratio = float(prior.get("ssp_ratio"))
        terms.append("b_ssp")
        data.update(ssp_logit_mu=math.log(ratio / (1 - ratio)), ssp_logit_sd=3.0, ssp_lo=0.001,
                    ssp_hi=0.999, ssp_raw_scale=0.5,
                    ssp_tau_rate=sds / (prior.get("max_beta") * base))
        constants.update(consts)
    # intercept, sigma, SDs, extras: only when given (reference behaviour), with a note
    isd = prior.get("Intercept_sd")
    if has_intercept and isd is not None:
        terms.append("Intercept_c")
        data.update(Intercept_mu=0.0, Intercept_sd=float(isd))
    elif has_intercept:
        notes.append("Intercept_c")
    for p in family.extra:
        rate = prior.get(p.prior_arg)
        if rate is not None:
            terms.append(p.name)
            data[p.prior_arg] = float(rate)
        elif p.always_prior:
            notes.append(p.name)
    tau = prior.get("tau_rate")
    for k, (_, coefs, correlated) in enumerate(re_terms, start=1):
        if tau is not None:
            terms.append(f"sd_{k}")
            data[f"sd_{k}_rate"] = np.full(len(coefs), float(tau))
        else:
            notes.append(f"sd_{k}")
        if correlated and len(coefs) > 1:
            terms.append(f"corr_{k}")
            data[f"lkj_eta_{k}"] = float(prior.get("lkj_eta") or 1.0)
    if notes:
        constants["no_prior_on"] = ", ".join(notes)  # type: ignore[assignment]
    return ResolvedPrior(name, has_intercept, tuple(terms), data, constants, prior, b_names,
                         _zi_names(zi))


def _scalar(val: Any, key: str) -> float:
    if isinstance(val, tuple):
        raise TypeError(f"Prior override '{key}' takes one number (a rate or an eta).")
    return float(val)


def _index_of(name: str, names: tuple[str, ...], key: str, what: str) -> int:
    if name not in names:
        raise ValueError(
            f"Prior override '{key}': no coefficient '{what}[{name}]'. Coefficients: "
            f"{', '.join(what + '[' + n + ']' for n in names) or 'none'}."
        )
    return names.index(name)


def _term_index(suffix: str, nterms: int, key: str) -> int:
    try:
        k = int(suffix.lstrip("_"))
    except ValueError:
        raise ValueError(f"Prior override '{key}': cannot read the grouping-term number.") from None
    if not 1 <= k <= nterms:
        raise ValueError(f"Prior override '{key}': the model has {nterms} grouping term(s).")
    return k - 1


def _sd_target(key, re_terms, sd_names):
    """Which (terms, coefficient indices) an 'sd...' override addresses."""
    nterms = len(re_terms)
    if nterms == 0:
        raise ValueError(f"Prior override '{key}': the model has no random effects.")
    if key == "sd":
        return list(range(nterms)), None
    for k, names in enumerate(sd_names):
        if key in names:
            return [k], [names.index(key)]
    if "[" not in key:
        return [_term_index(key[2:], nterms, key)], None
    valid = [n for names in sd_names for n in names]
    raise ValueError(f"Prior override '{key}': no such SD. Valid names: {', '.join(valid)}.")
