"""The prior table: one :class:`PriorKind` per prior (one per ``prior_*`` constructor: what the
rest of the package asks about a prior, so that no module outside ``priors/`` compares prior
names), one :class:`PriorTerm` per prior term (its Stan snippet, data and the parameters it
applies to), the Stan blocks a set of terms needs, and the default target acceptance rate per
prior."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ..families import EXTRA_PARAMS, ExtraParam

__all__ = ["DEFAULT_ADAPT_DELTA", "PRIOR_KINDS", "PRIOR_TABLE", "PriorKind", "PriorTerm", "TTestPrior",
           "default_adapt_delta", "prior_blocks"]


# ----------------------------------------------------------------------------- prior kinds


@dataclass(frozen=True)
class TTestPrior:
    """How ``ttest()`` uses a prior: the prior of its Stan program and its hyperparameters.

    ``label``: the prior named in the program's header comment; ``effect``: the effect
    parameter (``"diff"``, or ``"delta"``, the standardised difference, under the JZS prior),
    the one ``with_fixed`` holds; ``effect_prior``: the program's prior block (``"none"``,
    ``"normal"``: normal priors on the difference and the mean, exponential on the SDs;
    ``"cauchy"``: delta ~ Cauchy(0, r) with Jeffreys' prior on the SDs); ``data``: the
    hyperparameters, ``data(prior, paired, n1, n2)`` with the group sizes ``n1``, ``n2``
    (``n2 = 0`` when paired).
    """

    label: str
    effect: str
    effect_prior: str
    data: Callable[[Any, bool, int, int], dict[str, float]]


def _ttest_normal(prior: Any, paired: bool, n1: int, n2: int) -> dict[str, float]:
    """prior_normal(): its b_sd on the difference, sigma_rate on the SDs, mu_sd on the mean."""
    d = {"diff_sd": prior.get("b_sd") or 10.0, "sd_rate": prior.get("sigma_rate") or 0.2}
    if not paired:
        d.update(mean_mu=0.0, mean_sd=prior.get("mu_sd") or prior.get("Intercept_sd") or 10.0)
    return {k: float(v) for k, v in d.items()}


def _ttest_weak(prior: Any, paired: bool, n1: int, n2: int) -> dict[str, float]:
    """prior_weak(): the y_range-scaled normal priors of a regression on a 0/1 group column."""
    if prior.y_range is None:
        raise ValueError("ttest with prior_weak() needs y_range=(low, high).")
    lo, hi = prior.y_range
    half = (hi - lo) / 2
    base = half * prior.get("sd_ratio")
    p = 0.5 if paired else n1 / (n1 + n2)
    d = {"diff_sd": prior.get("max_beta") * base / math.sqrt(p * (1 - p)), "sd_rate": 1.0 / base}
    if not paired:
        d.update(mean_mu=(lo + hi) / 2, mean_sd=half)
    return d


@dataclass(frozen=True)
class PriorKind:
    """One prior (``prior_<name>()``): the properties the rest of the package reads.

    ``proper``: the prior has prior terms (every prior but the improper flat one): the design
    is centred and ``Intercept_c`` sampled, the marginal likelihood exists (bridge sampling),
    and ``classic()`` (maximum likelihood) does not apply. ``joint_b``: why single
    coefficients cannot be held fixed (``fixed=``) under this prior, or None when they can.
    ``ttest``: how ``ttest()`` uses the prior, or None when it does not support it.
    """

    name: str
    proper: bool = True
    joint_b: str | None = None
    ttest: TTestPrior | None = None


PRIOR_KINDS: dict[str, PriorKind] = {k.name: k for k in (
    PriorKind("flat", proper=False, ttest=TTestPrior("flat", "diff", "none", lambda *_: {})),
    PriorKind("normal", ttest=TTestPrior("normal", "diff", "normal", _ttest_normal)),
    PriorKind("weak", ttest=TTestPrior("normal", "diff", "normal", _ttest_weak)),
    PriorKind("rhs", joint_b="the horseshoe shares its global scale across the coefficients"),
    PriorKind("ssp", joint_b="the spike-and-slab coefficients are products of several parameters"),
    PriorKind("jzs", joint_b="the JZS prior is one multivariate Cauchy on all coefficients",
              ttest=TTestPrior("jzs", "delta", "cauchy",
                               lambda prior, *_: {"jzs_r": float(prior.get("r"))})),
)}


# ----------------------------------------------------------------------------- prior terms


@dataclass(frozen=True)
class PriorTerm:
    """One row of the prior table: a prior term with its Stan data declarations and statement.

    ``{k}`` in a key, declaration or statement stands for the grouping-term number.
    """

    key: str  # term name in ResolvedPrior.terms ('Intercept_c', 'b', 'sigma', 'sd_{k}', ...)
    dist: str  # 'normal' | 'exponential' | 'lkj_corr_cholesky'
    decls: tuple[str, ...]  # Stan data declarations of the hyperparameters
    stmt: str  # Stan statement in the model block
    stmt_category_specific: str | None = None  # variant for K x (C-1) coefficient matrices
    stmt_held: str | None = None  # variant when some coefficients are held fixed (data free_idx)
    # coefficient priors that build beta from other parameters (shrinkage priors, non-centred):
    tdata: tuple[str, ...] = ()  # transformed-data statements
    params: tuple[str, ...] = ()  # parameter declarations
    tparams: tuple[str, ...] = ()  # transformed-parameter statements defining ``vector[K] beta``
    # default target acceptance rate of sample() (Stan's adapt_delta) when this term is present
    # and the user passes none (priors with hard posterior geometry need smaller steps)
    adapt_delta: float | None = None
    on_b: bool = False  # a prior on the coefficients beta (prior draws need one for b[...])
    # draws of beta from a coefficient prior built from auxiliary parameters (prior draws):
    # draw_b(n, K, data, rng) -> (n, K) array
    draw_b: Callable[[int, int, dict[str, Any], Any], Any] | None = None

    @property
    def per_group_term(self) -> bool:
        return "{k}" in self.key


def _draw_rhs(n: int, K: int, d: dict, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of the K coefficients from the regularized horseshoe (the b_rhs row):
    beta = z * lambda_tilde * tau, with the row's data ``d``."""
    z = rng.standard_normal((n, K))
    lam = np.abs(rng.standard_cauchy((n, K)))
    tau = d["hs_tau0"] * np.abs(rng.standard_cauchy((n, 1)))
    a, b = 0.5 * d["hs_slab_df"], 0.5 * d["hs_slab_df"] * d["hs_slab_scale"] ** 2
    c2 = 1.0 / rng.gamma(a, 1.0 / b, size=(n, 1))
    lt = np.sqrt(c2 * lam**2 / (c2 + tau**2 * lam**2))
    return z * lt * tau


def _draw_ssp(n: int, K: int, d: dict, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of the K coefficients from the spike-and-slab prior (the b_ssp row):
    beta = beta_raw * r * tau, with the row's data ``d``."""
    raw = rng.laplace(0.0, d["ssp_raw_scale"], size=(n, K))
    mu, sd = d["ssp_logit_mu"], d["ssp_logit_sd"]
    lo, hi = (np.log(v) - np.log1p(-v) if 0 < v < 1 else (-np.inf if v <= 0 else np.inf)
              for v in (d["ssp_lo"], d["ssp_hi"]))
    lr = stats.truncnorm.rvs((lo - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd, size=(n, K),
                             random_state=rng)
    tau = rng.exponential(1.0 / np.asarray(d["ssp_tau_rate"], dtype=float), size=(n, K))
    return raw / (1 + np.exp(-lr)) * tau


def _exp_term(p: ExtraParam) -> PriorTerm:
    """The Exponential prior of an extra parameter; its rate is the data ``p.prior_arg``."""
    n, r = p.name, p.prior_arg
    return PriorTerm(n, "exponential", (f"real<lower=0> {r};  // {n} ~ exponential({r})",),
                     f"target += exponential_lpdf({n} | {r});")


PRIOR_TABLE: tuple[PriorTerm, ...] = (
    PriorTerm("Intercept_c", "normal",
              ("real Intercept_mu;  // Intercept_c ~ normal(Intercept_mu, Intercept_sd)",
               "real<lower=0> Intercept_sd;"),
              "target += normal_lpdf(Intercept_c | Intercept_mu, Intercept_sd);"),
    PriorTerm("b", "normal",
              ("vector[K] b_mu;  // beta ~ normal(b_mu, b_sd), per design column",
               "vector<lower=0>[K] b_sd;"),
              "target += normal_lpdf(beta | b_mu, b_sd);",
              "for (c in 1:(C - 1)) {\n  target += normal_lpdf(beta[, c] | b_mu, b_sd);\n}",
              "target += normal_lpdf(beta_free | b_mu[free_idx], b_sd[free_idx]);", on_b=True),
    # the zero part of the zero-inflated families: logit P(structural zero) = X_zi * beta_zi
    PriorTerm("b_zi", "normal",
              ("vector[K_zi] b_zi_mu;  // beta_zi ~ normal(b_zi_mu, b_zi_sd), per zero-inflation column",
               "vector<lower=0>[K_zi] b_zi_sd;"),
              "target += normal_lpdf(beta_zi | b_zi_mu, b_zi_sd);"),
    # regularized horseshoe (Piironen & Vehtari 2017), non-centred, the half-Cauchys as scale
    # mixtures: lambda = lambda_raw / sqrt(w_lambda), tau_hs = hs_tau0 * tau_raw / sqrt(w_tau)
    # with lambda_raw, tau_raw ~ half-normal(0, 1) and w_lambda, w_tau ~ gamma(1/2, 1/2)
    # (bench/bench_shrinkage.py, sparse data, 8 seeds: 0 divergences at delta 0.99, 32 at 0.8;
    # the half-Cauchys sampled directly: 1 and 41)
    PriorTerm("b_rhs", "horseshoe",
              ("real<lower=0> hs_tau0;  // global scale of the horseshoe",
               "real<lower=0> hs_slab_df;  // c2 ~ inv_gamma(hs_slab_df / 2, hs_slab_df * hs_slab_scale^2 / 2)",
               "real<lower=0> hs_slab_scale;"),
              "target += std_normal_lpdf(z);\n"
              "target += normal_lpdf(lambda_raw | 0, 1) + K * log2();  // half-normal\n"
              "target += gamma_lpdf(w_lambda | 0.5, 0.5);\n"
              "target += normal_lpdf(tau_raw | 0, 1) + log2();  // half-normal\n"
              "target += gamma_lpdf(w_tau | 0.5, 0.5);\n"
              "target += inv_gamma_lpdf(c2 | 0.5 * hs_slab_df, 0.5 * hs_slab_df * square(hs_slab_scale));",
              params=("vector[K] z;  // standardised coefficients",
                      "vector<lower=0>[K] lambda_raw;  // local scales: lambda = lambda_raw / sqrt(w_lambda)",
                      "vector<lower=0>[K] w_lambda;",
                      "real<lower=0> tau_raw;  // global scale: tau_hs = hs_tau0 * tau_raw / sqrt(w_tau)",
                      "real<lower=0> w_tau;",
                      "real<lower=0> c2;  // squared slab scale"),
              tparams=("vector[K] lambda = lambda_raw ./ sqrt(w_lambda);  // half-Cauchy(0, 1)",
                       "real tau_hs = hs_tau0 * tau_raw / sqrt(w_tau);  // half-Cauchy(0, hs_tau0)",
                       "vector[K] lambda_tilde = sqrt(c2 * square(lambda) ./ (c2 + square(tau_hs) * square(lambda)));",
                       "vector[K] beta = z .* lambda_tilde * tau_hs;"),
              adapt_delta=0.99, on_b=True, draw_b=_draw_rhs),
    # spike-and-slab: beta = beta_raw .* ssp_r .* ssp_tau, non-centred. The Laplace density is
    # kept: writing it as a normal scale mixture, beta_raw = w sqrt(v), removes the kink at 0 but
    # adds a scale per coefficient and more divergences (bench/bench_shrinkage.py, sparse data,
    # 8 seeds: 9 vs 0 at delta 0.99, 911 vs 634 at 0.8); the default delta 0.99 removes them.
    PriorTerm("b_ssp", "spike_and_slab",
              ("real ssp_logit_mu;  // logit(ssp_r) ~ normal(ssp_logit_mu, ssp_logit_sd), truncated to (ssp_lo, ssp_hi)",
               "real<lower=0> ssp_logit_sd;",
               "real<lower=0, upper=1> ssp_lo;",
               "real<lower=ssp_lo, upper=1> ssp_hi;",
               "real<lower=0> ssp_raw_scale;  // beta_raw ~ Laplace(0, ssp_raw_scale)",
               "vector<lower=0>[K] ssp_tau_rate;  // ssp_tau ~ exponential(ssp_tau_rate)"),
              "target += double_exponential_lpdf(beta_raw | 0, ssp_raw_scale);\n"
              "// logit-normal density of ssp_r (with the Jacobian of logit), normalised on (ssp_lo, ssp_hi)\n"
              "target += normal_lpdf(logit(ssp_r) | ssp_logit_mu, ssp_logit_sd) - sum(log(ssp_r) + log1m(ssp_r))\n"
              "          - K * log_diff_exp(normal_lcdf(logit(ssp_hi) | ssp_logit_mu, ssp_logit_sd),\n"
              "                             normal_lcdf(logit(ssp_lo) | ssp_logit_mu, ssp_logit_sd));\n"
              "target += exponential_lpdf(ssp_tau | ssp_tau_rate);",
              params=("vector[K] beta_raw;  // raw coefficients",
                      "vector<lower=ssp_lo, upper=ssp_hi>[K] ssp_r;  // inclusion weights",
                      "vector<lower=0>[K] ssp_tau;  // slab scales"),
              tparams=("vector[K] beta = beta_raw .* ssp_r .* ssp_tau;",),
              adapt_delta=0.99, on_b=True, draw_b=_draw_ssp),
    # JZS (Zellner-Siow): beta ~ multivariate Cauchy(0, (jzs_r sigma)^2 (Xc'Xc/N)^-1), sampled
    # directly (centred: a non-centred g-mixture makes a funnel when the data inform beta);
    # Jeffreys prior on sigma
    PriorTerm("b_jzs", "zellner_siow",
              ("real<lower=0> jzs_r;  // scale of the multivariate Cauchy",),
              "target += multi_student_t_cholesky_lpdf(beta | 1, rep_vector(0, K), jzs_r * sigma * jzs_L);\n"
              "target += -log(sigma);  // Jeffreys prior p(sigma) proportional to 1 / sigma",
              tdata=("// Cholesky factor of (Xc'Xc / N)^-1, the shape of the JZS prior",
                     "matrix[K, K] jzs_L = cholesky_decompose(inverse_spd(crossprod(Xc) / N));"),
              on_b=True),
    *(_exp_term(p) for p in EXTRA_PARAMS),  # sigma, nu, shape, phi (the family table)
    PriorTerm("cutpoints", "normal",
              ("real<lower=0> cutpoint_sd;  // cutpoints ~ normal(0, cutpoint_sd)",),
              "target += normal_lpdf(cutpoints | 0, cutpoint_sd);"),
    PriorTerm("sd_{k}", "exponential",
              ("vector<lower=0>[M_{k}] sd_{k}_rate;  // sd_{k} ~ exponential(sd_{k}_rate)",),
              "target += exponential_lpdf(sd_{k} | sd_{k}_rate);"),
    PriorTerm("corr_{k}", "lkj_corr_cholesky",
              ("real<lower=0> lkj_eta_{k};  // L_{k} ~ lkj_corr_cholesky(lkj_eta_{k})",),
              "target += lkj_corr_cholesky_lpdf(L_{k} | lkj_eta_{k});"),
)


def prior_blocks(terms: tuple[str, ...], n_group_terms: int, category_specific: bool = False,
                 held: bool = False) -> list[dict[str, Any]]:
    """Stan data declarations and model statements of the present prior ``terms``, in table
    order (grouping terms in formula order). Used by code generation. ``held``: some
    coefficients are held fixed, so coefficient priors apply to the free ones only."""
    out = []
    present = set(terms)
    for row in PRIOR_TABLE:
        ks = range(1, n_group_terms + 1) if row.per_group_term else [None]
        for k in ks:
            def fill(text: str, k=k) -> str:
                return text if k is None else text.replace("{k}", str(k))

            if fill(row.key) not in present:
                continue
            stmt = row.stmt_category_specific if (category_specific and
                                                  row.stmt_category_specific) else row.stmt
            if held and row.key == "b":
                if row.stmt_held is None:  # pragma: no cover - spec.hold_coefficients refuses
                    raise ValueError(f"prior term '{row.key}' cannot hold coefficients fixed")
                stmt = row.stmt_held
            out.append({"key": fill(row.key), "decls": [fill(d) for d in row.decls],
                        "stmt": fill(stmt), "tdata": list(row.tdata), "params": list(row.params),
                        "tparams": list(row.tparams)})
    unknown = present - {b["key"] for b in out}
    if unknown:  # pragma: no cover - resolve_prior only produces table terms
        raise ValueError(f"prior terms without a table row: {sorted(unknown)}")
    return out


DEFAULT_ADAPT_DELTA = 0.8  # Stan's default target acceptance rate


def default_adapt_delta(terms: tuple[str, ...] | list[str]) -> float:
    """The default target acceptance rate of ``sample()`` for a model with these prior terms.

    Parameters
    ----------
    terms : tuple of str
        The prior terms present (:attr:`ResolvedPrior.terms`).

    Returns
    -------
    float
        The largest ``adapt_delta`` of the table rows present (0.99 for the horseshoe and
        the spike-and-slab prior), or Stan's default 0.8 when no row sets one.
    """
    present = set(terms)
    values = [row.adapt_delta for row in PRIOR_TABLE
              if row.adapt_delta is not None and row.key in present]
    return max(values, default=DEFAULT_ADAPT_DELTA)
