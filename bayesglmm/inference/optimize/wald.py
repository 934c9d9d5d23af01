"""Tables of a mode: estimates, delta-method standard errors and 95% Wald intervals
(``wald_table``), or their multivariate-normal sampling version (``sampling_table``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .jacobian import constrain_fn, re_colours, sparse_jacobian
from .laplace_cov import LaplaceCov

__all__ = ['Z95', 'cov_block', 'cov_diagonal', 'sampling_table', 'wald_table']


Z95 = 1.959963984540054


def wald_table(
    bs_model: Any,
    u: np.ndarray,
    cov: np.ndarray | None,
    index: Sequence[int],
    kinds: Sequence[str],
    *,
    seed: int = 1,
    z: float = Z95,
    degenerate: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Estimates, SEs, lower and upper 95% limits of the constrained quantities ``index``
    (positions in ``param_constrain(include_tp=True, include_gq=True)``).

    SE: delta method, J cov J' with J from central differences of the constraining map.
    Intervals: a quantity that is a function of one unconstrained coordinate
    (sigma, sd, b, Intercept_c, ...) gets the back-transform of u_i ± z se(u_i), so scale
    parameters have log-symmetric intervals; correlations get Fisher-z intervals; other
    transformed quantities (e.g. Intercept) est ± z SE. Quantities that depend on a
    ``degenerate`` coordinate (see :func:`hessian_inverse`) get NaN.
    """
    constrain = constrain_fn(bs_model, seed)
    index = np.asarray(index, dtype=int)
    if cov is None or u.size == 0:
        est = constrain(u)[index].astype(float)
        nan = np.full(index.size, np.nan)
        return est, nan, nan.copy(), nan.copy()
    colours = re_colours(bs_model, index)
    est, J = sparse_jacobian(constrain, u, index, colours)
    # rows that depend on one random-effect coordinate of a colour only (see re_colours): their
    # back-transformed limits are computed for the whole colour with two constrain calls
    colour_of: dict[tuple[int, int], int] = {}
    for key, (coords, rowlists) in colours.items():
        for i, rr in zip(coords, rowlists):
            for r in rr:
                colour_of[(int(r), int(i))] = key
    batches: dict[int, list[tuple[int, int, float]]] = {}
    # J cov J' row by row in chunks (J is sparse: each random effect depends on a few
    # coordinates; no dense (quantities x coordinates) products)
    if isinstance(cov, LaplaceCov):
        var = cov.quad_diag(J)  # factored: linear in the number of random effects
    else:
        var = np.empty(index.size)
        step = max(1, int(4e6 // max(1, u.size)))
        for a in range(0, index.size, step):
            Jc = J[a:a + step]
            var[a:a + step] = np.asarray((Jc @ cov) * Jc.toarray()).sum(axis=1)
    cdiag = cov_diagonal(cov)
    se = np.sqrt(np.maximum(var, 0.0))
    lower = est - z * se
    upper = est + z * se
    absJ = abs(J).tocsr()
    for r in range(index.size):
        cols_r = absJ.indices[absJ.indptr[r]:absJ.indptr[r + 1]]
        vals_r = absJ.data[absJ.indptr[r]:absJ.indptr[r + 1]]
        vmax = float(vals_r.max()) if vals_r.size else 0.0
        nz = np.sort(cols_r[vals_r > 1e-9 * max(1.0, vmax)])
        if degenerate is not None and np.any(degenerate[nz]):
            se[r] = lower[r] = upper[r] = np.nan
        elif kinds[r] == "corr" and abs(est[r]) < 1 and se[r] > 0:
            zr = math.atanh(est[r])
            sz = se[r] / (1 - est[r] ** 2)
            lower[r], upper[r] = math.tanh(zr - z * sz), math.tanh(zr + z * sz)
        elif nz.size == 1 and (r, int(nz[0])) in colour_of:
            i = int(nz[0])
            batches.setdefault(colour_of[(r, i)], []).append((r, i, math.sqrt(max(cdiag[i], 0.0))))
        elif nz.size == 1:
            i = nz[0]
            su = math.sqrt(max(cdiag[i], 0.0))
            a = u.copy()
            b = u.copy()
            a[i] -= z * su
            b[i] += z * su
            try:
                va, vb = constrain(a)[index[r]], constrain(b)[index[r]]
            except RuntimeError:  # u +- z se outside what the program accepts (overflow)
                va = vb = math.nan
            lower[r], upper[r] = min(va, vb), max(va, vb)
    for batch in batches.values():
        a = u.copy()
        b = u.copy()
        for _r, i, su in batch:
            a[i] = u[i] - z * su
            b[i] = u[i] + z * su
        ca, cb = constrain(a), constrain(b)
        for r, _i, _su in batch:
            va, vb = ca[index[r]], cb[index[r]]
            lower[r], upper[r] = min(va, vb), max(va, vb)
    return est, se, lower, upper


def cov_block(cov: Any, idx: Any) -> np.ndarray:
    """cov[idx, idx] of a dense covariance or a :class:`LaplaceCov`."""
    if isinstance(cov, LaplaceCov):
        return cov.block(idx)
    return np.asarray(cov)[np.ix_(idx, idx)]


def cov_diagonal(cov: Any) -> np.ndarray:
    """The diagonal of a dense covariance or a :class:`LaplaceCov`."""
    return cov.diagonal() if isinstance(cov, LaplaceCov) else np.diag(cov)


def sampling_table(
    bs_model: Any,
    u: np.ndarray,
    cov: np.ndarray | None,
    index: Sequence[int],
    *,
    seed: int = 1,
    n_draws: int = 1000,
    degenerate: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``se_method="sampling"``: ``n_draws`` multivariate normal draws of the
    unconstrained estimates (mean u, covariance ``cov``), constrained; SE = SD of the draws,
    CI = their 2.5 % and 97.5 % quantiles. Estimates stay the mode."""
    constrain = constrain_fn(bs_model, seed)
    index = np.asarray(index, dtype=int)
    est = constrain(u)[index].astype(float)
    if cov is None or u.size == 0:
        nan = np.full(index.size, np.nan)
        return est, nan, nan.copy(), nan.copy()
    rng = np.random.default_rng(seed)
    cov = np.asarray(cov, dtype=float)
    cov = 0.5 * (cov + cov.T)
    try:  # a Cholesky root moves continuously with cov, so draws change little when it does
        root = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:  # singular (a degenerate direction): eigen root
        w, V = np.linalg.eigh(cov)
        root = V * np.sqrt(np.maximum(w, 0.0))
    draws = np.empty((n_draws, index.size))
    for d in range(n_draws):
        draws[d] = constrain(u + root @ rng.standard_normal(u.size))[index]
    se = draws.std(axis=0, ddof=1)
    lower, upper = np.quantile(draws, [0.025, 0.975], axis=0)
    if degenerate is not None and degenerate.any():
        # quantities moved by a degenerate coordinate: not available
        J0 = np.zeros(index.size, dtype=bool)
        for i in np.flatnonzero(degenerate):
            e = np.zeros(u.size)
            e[i] = 1e-6 * max(1.0, abs(u[i]))
            J0 |= np.abs(constrain(u + e)[index] - est) > 1e-12
        se[J0] = lower[J0] = upper[J0] = np.nan
    return est, se, lower, upper
