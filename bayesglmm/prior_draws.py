"""Draws of the parameters from a model's prior (``Model.simulate(n, params=None)``).

One random-number generator per distribution of the prior table (``PriorTerm.dist``; the
coefficient priors built from auxiliary parameters bring their own, ``PriorTerm.draw_b``), with
the hyperparameters the Stan program receives as data, so a draw here has the prior density of
the Stan program. Parameters without a proper prior (flat, e.g. the intercept under
``prior_flat()``) cannot be drawn: the error names them. Bounded parameters without a prior term
(the residual correlation ``rho_resid``) are uniform on their interval, as in the Stan program.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .priors import PRIOR_TABLE

__all__ = ["draw_prior", "lkj_corr"]


def lkj_corr(d: int, eta: float, rng: np.random.Generator) -> np.ndarray:
    """One d x d correlation matrix from LKJ(eta) by the onion method (Lewandowski, Kurowicka
    and Joe 2009, section 3.2)."""
    if d == 1:
        return np.ones((1, 1))
    beta = eta + (d - 2) / 2
    r12 = 2 * rng.beta(beta, beta) - 1
    R = np.array([[1.0, r12], [r12, 1.0]])
    for k in range(2, d):
        beta -= 0.5
        y = rng.beta(k / 2, beta)
        u = rng.standard_normal(k)
        w = np.sqrt(y) * u / np.linalg.norm(u)
        z = np.linalg.cholesky(R) @ w
        R = np.block([[R, z[:, None]], [z[None, :], np.ones((1, 1))]])
    return R


def _normal(n, mu, sd, rng):
    return rng.normal(mu, sd, size=(n,) + np.shape(mu))


def draw_prior(model, n: int, rng: np.random.Generator, required: list[str]) -> pd.DataFrame:
    """``n`` draws (rows) of the parameters ``required`` (reported names: those generating the
    data) of ``model`` from its prior."""
    spec = model.spec
    prior = spec.prior
    d = {k: v for k, v in model.program.data.items()}
    terms = set(prior.terms)
    params = [p for p in model.program.params if p.user in set(required)]
    out: dict[str, np.ndarray] = {}
    K = spec.fixed.K
    free = [j for j in range(K) if j not in dict(spec.held)]
    C1 = (int(spec.response.n_categories) - 1) if spec.family.ordinal else 0
    # coefficients
    beta = np.zeros((n, K, C1) if spec.family.category_specific else (n, K))
    for j, v in spec.held:
        beta[:, j] = v
    if "b" in terms:
        mu, sd = np.asarray(d["b_mu"], float), np.asarray(d["b_sd"], float)
        if spec.family.category_specific:
            beta[:] = rng.normal(mu[None, :, None], sd[None, :, None], size=beta.shape)
        else:
            beta[:, free] = rng.normal(mu[free], sd[free], size=(n, len(free)))
    rows = [row for row in PRIOR_TABLE if row.key in terms]
    for row in rows:  # coefficient priors built from auxiliary parameters (prior table)
        if row.draw_b is not None:
            beta[:] = row.draw_b(n, K, d, rng)
    # (the JZS prior scales the coefficients by sigma, whose Jeffreys prior is improper: the
    # error below names sigma)
    has_b_prior = any(row.on_b for row in rows)
    flat: list[str] = []
    by_stan = {}
    for p in params:
        by_stan[p.stan] = p.user
    for p in params:
        if p.kind == "b":
            if not has_b_prior:
                flat.append(p.user)
                continue
            idx = [int(x) - 1 for x in p.stan[5:-1].split(",")]
            out[p.user] = beta[(slice(None), *idx)]
    # intercept: Intercept_c ~ normal at the predictor means, Intercept = Intercept_c - means' beta
    if spec.has_intercept:
        if "Intercept_c" in terms:
            ic = rng.normal(d["Intercept_mu"], d["Intercept_sd"], size=n)
            means = np.asarray(spec.fixed.X, float).reshape(spec.n_obs, K).mean(axis=0)
            b2 = beta if beta.ndim == 2 else beta[:, :, 0]
            out["Intercept"] = ic - b2 @ means
        else:
            flat.append("Intercept")
    # family parameters
    for ep in spec.family.extra:
        if ep.name in terms:
            out[ep.name] = ep.lower + rng.exponential(1.0 / d[f"{ep.name}_rate"], size=n)
        else:
            flat.append(ep.name)
    # cutpoints: normal(0, sd); the ordered parameter type makes them the sorted draws
    cuts = [p.user for p in params if p.kind == "cutpoints"]
    if cuts:
        if "cutpoints" in terms:
            c = rng.normal(0.0, d["cutpoint_sd"], size=(n, len(cuts)))
            if not spec.family.category_specific:
                c = np.sort(c, axis=1)
            for i, name in enumerate(cuts):
                out[name] = c[:, i]
        else:
            flat.extend(cuts)
    # group-level SDs and correlations
    for g in spec.groups:
        if f"sd_{g.k}" in terms:
            rate = np.asarray(d[f"sd_{g.k}_rate"], dtype=float)
            sd = rng.exponential(1.0 / rate, size=(n, g.q))
            for m in range(g.q):
                out[by_stan[f"sd_{g.k}[{m + 1}]"]] = sd[:, m]
        else:
            flat.extend(by_stan[f"sd_{g.k}[{m + 1}]"] for m in range(g.q))
        if g.has_corr:
            names = [(p.stan, p.user) for p in params if p.stan.startswith(f"corr_{g.k}[")]
            if f"corr_{g.k}" in terms:
                eta = float(d[f"lkj_eta_{g.k}"])
            else:
                eta = 1.0  # no prior term: uniform over correlation matrices, LKJ(1)
            Rs = np.stack([lkj_corr(g.q, eta, rng) for _ in range(n)])
            for stan, user in names:
                r, c = (int(x) - 1 for x in stan[stan.index("[") + 1:-1].split(","))
                out[user] = Rs[:, r, c]
    # the residual correlation: uniform on its bounds (no prior term)
    if spec.resid is not None:
        lo = -1.0 if spec.resid.kind == "ar1" else -1.0 / (spec.resid.max_block - 1)
        out["rho_resid"] = rng.uniform(lo, 1.0, size=n)
    if flat:
        raise ValueError(
            "simulate(params=None) draws the parameters from the prior, but "
            f"{', '.join(flat)} {'has' if len(flat) == 1 else 'have'} a flat (improper) prior: "
            "give the model a proper prior (e.g. prior=prior_normal()) or pass all parameter "
            "values with params={...}")
    return pd.DataFrame({p.user: out[p.user] for p in params})
