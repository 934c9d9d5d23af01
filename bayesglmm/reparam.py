"""Centred or non-centred group-level effects, per grouping term (the ``param=`` argument).

Every grouping term k has group-level effects b_kj = diag(sd_k) L_k z_kj (L_k = I when its
coefficients are uncorrelated). The Stan program can sample them in two ways that define the
same model:

* **non-centred**: the standardised effects z_kj ~ normal(0, I) are the parameters and b_kj is
  computed from them. Right when the groups carry little information about their own effects
  (few observations per group): the posterior of z is then close to its prior, while b and
  sd_k form a funnel that NUTS cannot explore.
* **centred**: the group's coefficients mu_k + b_kj are the parameters (see below).
  Right when every group has many observations: the data then pin each b_kj, and in the
  non-centred coordinates z_kj = (diag(sd_k) L_k)^-1 b_kj is tied to sd_k (a funnel the other
  way round), which makes the sampler crawl.

Both programs declare the effects as the same M_k x N_k matrix ``z_k``: standardised effects
(non-centred) or, centred, each group's own coefficients: the population-level coefficient of
the same column (the intercept, or beta[j] when Z's column m is X's column j) plus the group's
effect, so z_kj ~ multi_normal_cholesky(mu_k, diag(sd_k) L_k) (hierarchical centring, Gelfand,
Sahu and Carlin 1995). Without it the intercept and the mean of the group effects form a ridge
(the data fix their sum much better than either) on which NUTS mixes slowly. The user-facing
quantities (``r_re``, the SDs, correlations, every table) are the same either way.

The ``"auto"`` rule (:func:`term_information`, :func:`auto_centered`) compares, per term, how
strongly the data inform each group's coefficients with how strongly the prior (the group-level
distribution) does: for group j, the data precision of its coefficients D_j = Z_j' W_j Z_j /
sigma^2 against the prior precision Sigma^-1 (Sigma = the covariance of the group-level
effects), as the eigenvalues of Sigma^1/2 D_j Sigma^1/2 (for one coefficient, n_j tau^2 /
sigma^2). The term is centred when the median over its groups of the smallest of them is at
least :data:`AUTO_MIN_INFORMATION` (1.5). Why: for a normal hierarchical model the Gibbs
sampler's rate of convergence is 1 / (1 + r) centred and r / (1 + r) non-centred
(Papaspiliopoulos, Roberts and Skold 2003; r = n tau^2 / sigma^2), so the two break even at
r = 1; NUTS follows the same geometry (the funnel of the non-centred form when r is large, of
the centred form when r is small). Near r = 1 the two are a tie (debate's ``(1 | group)``,
r = 1.06, samples as efficiently either way; bench/results/centre_rule.json), so the threshold
leaves a margin above it to the non-centred form, which is the safer one when r is estimated
from few groups. The smallest eigenvalue is the least informed direction: a term whose slope
is barely identified within groups stays non-centred even when its intercepts are well
informed.

Sigma and sigma^2 are estimated in one pass, without Stan, by the method of moments on a
linearised response (:func:`term_information`, a few milliseconds for 100,000 rows): the
response per trial (proportions for binomial families; the category index for ordinal ones)
with weight the number of trials, the population-level design partialled out by weighted
least squares; then each group's own weighted least-squares coefficients b_j (groups with more
rows than coefficients), the pooled within-group residual variance sigma^2, and Sigma = the
covariance of the b_j across groups minus the mean of their sampling covariances sigma^2
(Z_j' W_j Z_j)^-1 (clipped to be positive semi-definite). The ratio does not depend on the
scale of the response, so for a generalised model the linearisation around the mean (one step
of iteratively reweighted least squares) gives it to first order. Other grouping terms and
offsets are ignored in each term's estimate (crossed terms inflate sigma^2, which errs towards
the non-centred form). On lme4's sleepstudy the estimates are the REML ones (SDs 24.74 and
5.92, sigma 25.59: a balanced design), and the ratio is 1.7: centred.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["AUTO_MIN_INFORMATION", "PARAM_CHOICES", "auto_centered", "resolve_param", "shared_means",
           "term_information"]

# median over a term's groups of the data / prior precision ratio from which "auto" centres it
AUTO_MIN_INFORMATION = 1.5

# accepted spellings -> "centered" / "noncentered" / "auto"
_ALIASES = {
    "centered": "centered", "centred": "centered", "cp": "centered",
    "noncentered": "noncentered", "non-centered": "noncentered", "noncentred": "noncentered",
    "non-centred": "noncentered", "ncp": "noncentered",
    "auto": "auto",
}
PARAM_CHOICES = ("auto", "centered", "noncentered")


def term_information(y: np.ndarray, trials: np.ndarray | None, X: np.ndarray, index: np.ndarray,
                     Z: np.ndarray, n_groups: int) -> float:
    """How strongly the data inform one grouping term's group-level coefficients, relative to
    the group-level distribution: the median over groups of the smallest eigenvalue of
    Sigma^1/2 D_j Sigma^1/2 (see the module docstring for the estimate and why).

    Parameters
    ----------
    y : array, shape (N,)
        The response (successes for binomial families, category codes for ordinal ones).
    trials : array, shape (N,), or None
        Binomial trials (the response is taken per trial, weighted by them).
    X : array, shape (N, K)
        The population-level design without the intercept (partialled out with it).
    index : array of int, shape (N,)
        Each row's group, 1-based.
    Z : array, shape (N, M)
        The term's design (a column of ones for its intercept).
    n_groups : int
        The number of groups.

    Returns
    -------
    float
        0 when fewer than two groups have more rows than coefficients (nothing to estimate
        the group-level spread from: the data inform no group much).
    """
    y = np.asarray(y, dtype=float)
    w = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
    yw = y / np.where(w > 0, w, 1.0)
    A = np.column_stack([np.ones_like(y), np.asarray(X, dtype=float).reshape(y.size, -1)])
    Aw = A * w[:, None]
    coef = np.linalg.lstsq(A.T @ Aw, Aw.T @ yw, rcond=None)[0]
    e = yw - A @ coef
    Z = np.asarray(Z, dtype=float).reshape(y.size, -1)
    M, G = Z.shape[1], int(n_groups)
    idx = np.asarray(index) - 1
    ztz = np.empty((G, M, M))
    for a in range(M):
        for b in range(a, M):
            ztz[:, a, b] = ztz[:, b, a] = np.bincount(idx, w * Z[:, a] * Z[:, b], G)
    zte = np.stack([np.bincount(idx, w * Z[:, a] * e, G) for a in range(M)], axis=1)
    ete = np.bincount(idx, w * e * e, G)
    n = np.bincount(idx, minlength=G)
    d = np.sqrt(np.maximum(np.einsum("gmm->gm", ztz), 1e-300))
    ok = (n > M) & (np.linalg.det(ztz / (d[:, :, None] * d[:, None, :])) > 1e-8)
    if ok.sum() < 2:
        return 0.0
    b_j = np.linalg.solve(ztz[ok], zte[ok][..., None])[..., 0]
    rss = ete[ok] - np.einsum("gm,gm->g", b_j, zte[ok])
    sigma2 = float(rss.sum() / (n[ok] - M).sum())
    if not sigma2 > 0:
        return float("inf")  # no residual noise: the data fix every group's coefficients
    Sigma = (np.cov(b_j, rowvar=False).reshape(M, M)
             - sigma2 * np.linalg.inv(ztz[ok]).mean(axis=0))
    ev, U = np.linalg.eigh(Sigma)
    half = (U * np.sqrt(np.clip(ev, 0.0, None))) @ U.T
    ratio = np.linalg.eigvalsh(half @ ztz @ half / sigma2)[:, 0]
    return float(np.median(ratio))


def auto_centered(information: float) -> bool:
    """The ``"auto"`` rule for one grouping term: centred when its :func:`term_information`
    is at least :data:`AUTO_MIN_INFORMATION`."""
    return bool(information >= AUTO_MIN_INFORMATION)


def _choice(value: Any, where: str) -> str:
    if isinstance(value, str) and value.strip().lower() in _ALIASES:
        return _ALIASES[value.strip().lower()]
    raise ValueError(f"{where} must be one of {', '.join(repr(c) for c in PARAM_CHOICES)}, "
                     f"got {value!r}.")


def _norm_label(text: str) -> str:
    return "".join(str(text).split()).strip("()")


def resolve_param(param: Any, groups: Sequence[Any], y: np.ndarray | None = None,
                  trials: np.ndarray | None = None, X: np.ndarray | None = None
                  ) -> tuple[bool, ...]:
    """The parameterisation of every grouping term: True = centred.

    Parameters
    ----------
    param : str or dict
        ``"auto"`` (the rule of :func:`auto_centered`), ``"centered"`` or ``"noncentered"``
        for every term, or a dict from a grouping factor (``"Subject"``, every term of that
        factor) or a term as written (``"(Days | Subject)"``, ``"Days | Subject"``) to one of
        these; terms not named are ``"auto"``. British spellings are accepted.
    groups : sequence of GroupTerm
        The model's grouping terms (``factor``, ``text``, ``index``, ``Z``, ``n_groups``).
    y, trials, X : arrays
        The response, the binomial trials (or None) and the population-level design, which
        the ``"auto"`` rule reads (see :func:`term_information`); needed when a term is
        ``"auto"``.

    Raises
    ------
    ValueError
        An unknown choice, or a key that names no grouping term (the message lists them).
    """
    n = len(groups)
    if param is None:
        param = "auto"
    if isinstance(param, str):
        per = [_choice(param, "param")] * n
    elif isinstance(param, Mapping):
        per = ["auto"] * n
        for key, val in param.items():
            if not isinstance(key, str):
                raise TypeError(f"param keys must be grouping factors or terms (strings), got {key!r}.")
            hits = [i for i, g in enumerate(groups)
                    if key.strip() == g.factor or _norm_label(key) == _norm_label(g.text)]
            if not hits:
                known = ", ".join(f"'{g.factor}' {g.text}" for g in groups) or "none"
                raise ValueError(f"param={{{key!r}: ...}}: the model has no grouping term "
                                 f"{key!r}; its grouping terms are: {known}.")
            choice = _choice(val, f"param[{key!r}]")
            for i in hits:
                per[i] = choice
    else:
        raise TypeError("param must be 'auto', 'centered', 'noncentered' or a dict such as "
                        f"{{'Subject': 'centered'}}, got {param!r}.")
    if "auto" in per and y is None:
        raise TypeError('resolve_param: the "auto" rule needs the response y (and X, trials).')
    return tuple(auto_centered(term_information(y, trials, np.zeros((len(y), 0)) if X is None
                                                else X, g.index, g.Z, g.n_groups))
                 if c == "auto" else c == "centered" for c, g in zip(per, groups))


def shared_means(g: Any, fixed_names: Sequence[str], X: np.ndarray, has_intercept: bool,
                 category_specific: bool) -> tuple[int, ...]:
    """For a centred term ``g``: per coefficient, the population-level coefficient that is its
    mean (0: none, 1: the intercept, j + 1: beta[j], when Z's column equals X's column j);
    () when the term is not centred or shares none (category-specific coefficients: none)."""
    if not g.centered or category_specific:
        return ()
    out = []
    names = list(fixed_names)
    for m, c in enumerate(g.coefs):
        if c == "Int":
            out.append(1 if has_intercept else 0)
        elif c in names and np.array_equal(np.asarray(g.Z)[:, m], np.asarray(X)[:, names.index(c)]):
            out.append(names.index(c) + 2)
        else:
            out.append(0)
    return tuple(out) if any(out) else ()
