"""The estimator of bridge sampling (:func:`bayesglmm.post.bridge.bridge_sampler`), on arrays:
Meng & Wong's iterative scheme with the optimal bridge function, its error measures (the
relative mean-squared error of Fruhwirth-Schnatter as the R package bridgesampling reports it,
and the delta-method standard error), the AR spectral density at frequency 0 they use, and the
shrunk covariance of the proposal. :mod:`bayesglmm.post.bridge` re-exports every name."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

__all__ = ["fixed_point_se", "iterative_scheme", "relative_mse", "shrunk_covariance",
           "spectrum0_ar"]


def iterative_scheme(l1: np.ndarray, l2: np.ndarray, neff: float, *, r0: float = 0.5,
                     tol: float = 1e-10, maxiter: int = 1000, criterion: str = "r"
                     ) -> tuple[float, int, list[float]]:
    """Meng & Wong's iterative updating scheme with the optimal bridge function.

    Computed in log space (no overflow).

    Parameters
    ----------
    l1 : numpy.ndarray
        log(unnormalised posterior / proposal density) at the posterior draws.
    l2 : numpy.ndarray
        The same at the draws from the proposal.
    neff : float
        Effective size of the posterior draws (n_1 in the bridge weights).
    r0 : float
        Starting value of the ratio r (the marginal likelihood, up to exp(median(l1))).
    tol : float
        Convergence tolerance on ``criterion``.
    maxiter : int
        Maximum number of iterations.
    criterion : {"r", "logml"}
        Stop on the relative change of r, or of the log marginal likelihood.

    Returns
    -------
    logml : float
        The log marginal likelihood; NaN when ``maxiter`` is reached or r leaves the
        floating-point range.
    niter : int
        Iterations done.
    r_values : list of float
        r after each iteration (the first is ``r0``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> x1, x2 = rng.normal(size=4000), rng.normal(size=4000)  # posterior = proposal = N(0, 1)
    >>> logml, niter, _ = iterative_scheme(np.log(2.0) + 0 * x1, np.log(2.0) + 0 * x2, 4000)
    >>> round(float(logml), 10)  # the unnormalised posterior is twice the density: log 2
    0.6931471806
    """
    lstar = float(np.median(l1))
    n1, n2 = l1.size, l2.size
    s1 = neff / (neff + n2)
    s2 = n2 / (neff + n2)
    a1, a2 = l1 - lstar, l2 - lstar
    ls1, ls2 = math.log(s1), math.log(s2)
    r = r0
    r_vals = [r]
    logml = math.log(r) + lstar
    crit = 1.0 + tol
    i = 1
    while i <= maxiter and crit > tol:
        logmlold = logml
        lr = math.log(r)
        log_num = a2 - np.logaddexp(ls1 + a2, ls2 + lr)
        log_den = -np.logaddexp(ls1 + a1, ls2 + lr)
        lr_new = math.log(n1 / n2) + logsumexp(log_num) - logsumexp(log_den)
        if not np.isfinite(lr_new):
            return math.nan, i, r_vals
        r = math.exp(lr_new) if lr_new < 700 else math.inf
        logml = lr_new + lstar
        r_vals.append(r)
        if criterion == "r":
            crit = abs(1.0 - math.exp(lr - lr_new))  # |r - rold| / r
        else:
            crit = abs((logml - logmlold) / logml)
        i += 1
    if i >= maxiter:
        return math.nan, i - 1, r_vals
    return logml, i - 1, r_vals


def spectrum0_ar(x: np.ndarray) -> float:
    """Spectral density at frequency 0 of an AR fit (Yule-Walker, order by AIC), as
    ``coda::spectrum0.ar``: var.pred / (1 - sum(ar))^2.

    Parameters
    ----------
    x : numpy.ndarray
        A series (e.g. a function of the posterior draws of one chain, in order).

    Returns
    -------
    float
        The spectral density at frequency 0 (0 for a series constant after removing a linear
        trend); divided by ``len(x)`` it is the variance of the series mean.

    Examples
    --------
    >>> import numpy as np
    >>> e = np.random.default_rng(1).normal(size=20000)
    >>> x = np.zeros_like(e)
    >>> for i in range(1, x.size):  # AR(1), coefficient 0.5: S(0) = 1 / (1 - 0.5)^2 = 4
    ...     x[i] = 0.5 * x[i - 1] + e[i]
    >>> round(spectrum0_ar(x))
    4
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    z = np.arange(1, n + 1)
    resid = x - np.polyval(np.polyfit(z, x, 1), z)
    if np.std(resid) <= 1e-12 * max(1.0, np.abs(x).max()):
        return 0.0
    order_max = int(min(n - 1, math.floor(10 * math.log10(n))))
    xc = x - x.mean()
    f = np.fft.rfft(xc, 2 * n)
    acov = np.fft.irfft(f * np.conj(f))[: order_max + 1] / n
    # Levinson-Durbin: innovation variances and coefficients of every order
    variances = [acov[0]]
    coefs: list[np.ndarray] = [np.zeros(0)]
    phi = np.zeros(0)
    v = acov[0]
    for k in range(1, order_max + 1):
        kappa = (acov[k] - np.dot(phi, acov[1:k][::-1])) / v
        phi = np.concatenate([phi - kappa * phi[::-1], [kappa]])
        v = v * (1.0 - kappa ** 2)
        variances.append(v)
        coefs.append(phi.copy())
    aic = n * np.log(np.asarray(variances)) + 2 * np.arange(order_max + 1) + 2
    order = int(np.argmin(aic))
    var_pred = variances[order] * n / (n - (order + 1))
    return float(var_pred / (1.0 - coefs[order].sum()) ** 2)


def relative_mse(l1: np.ndarray, l2: np.ndarray, logml: float) -> float:
    """Fruhwirth-Schnatter's approximate relative MSE of the bridge estimate, as
    ``bridgesampling::error_measures`` computes it.

    Parameters
    ----------
    l1 : numpy.ndarray
        log(unnormalised posterior / proposal density) at the posterior draws, in chain order.
    l2 : numpy.ndarray
        The same at the draws from the proposal.
    logml : float
        The bridge estimate of the log marginal likelihood.

    Returns
    -------
    float
        The relative mean-squared error (``BridgeResult.re2``; its square root is ``error``).

    Examples
    --------
    >>> re2 = relative_mse(l1, l2, logml)  # doctest: +SKIP
    """
    n1, n2 = l1.size, l2.size
    s1, s2 = n1 / (n1 + n2), n2 / (n1 + n2)
    # f1 = p_g / (s1 p_g + s2 g_g), f2 = g_p / (s1 p_p + s2 g_p) with p = posterior / ML
    f1 = np.exp(-np.logaddexp(math.log(s1), math.log(s2) - (l2 - logml)))
    f2 = np.exp(-np.logaddexp(math.log(s1) + (l1 - logml), math.log(s2)))
    rho_f2 = spectrum0_ar(f2)
    term1 = np.var(f1, ddof=1) / np.mean(f1) ** 2 / n2
    term2 = rho_f2 / n1 * np.var(f2, ddof=1) / np.mean(f2) ** 2
    return float(term1 + term2)


def fixed_point_se(l1: np.ndarray, l2: np.ndarray, logml: float, neff: float) -> float:
    """Delta-method standard error of the iterative bridge estimate of the log ML.

    The estimate is the root r of ``psi(r) = mean_2 h(r) - mean_1 k(r)`` with
    ``h = e^l2 / (s1 e^l2 + s2 r)`` over the proposal draws (independent) and
    ``k = r / (s1 e^l1 + s2 r)`` over the posterior draws (in chain order, autocorrelated);
    s1, s2 as in :func:`iterative_scheme`. To first order
    ``var(r) = [var(h) / n2 + S_k(0) / n1] / psi'(r)^2`` with S_k(0) the spectral density at
    frequency 0 of k (:func:`spectrum0_ar`), and the SE of log r is ``sd(r) / r``. Computed on
    the scale ``r = 1`` (l - logml), where every term is bounded.

    Parameters
    ----------
    l1 : numpy.ndarray
        log(unnormalised posterior / proposal density) at the posterior draws, in chain order.
    l2 : numpy.ndarray
        The same at the draws from the proposal.
    logml : float
        The bridge estimate of the log marginal likelihood.
    neff : float
        Effective size of the posterior draws, as in :func:`iterative_scheme`.

    Returns
    -------
    float
        The standard error of ``logml`` (``BridgeResult.se``); NaN when the slope of the
        estimating equation is not negative (a degenerate estimate).

    Examples
    --------
    >>> se = fixed_point_se(l1, l2, logml, neff)  # doctest: +SKIP
    """
    n1, n2 = l1.size, l2.size
    s1, s2 = neff / (neff + n2), n2 / (neff + n2)
    a1, a2 = l1 - logml, l2 - logml
    # log(s1 e^a + s2), in log space (a can be large)
    ld1 = np.logaddexp(math.log(s1) + a1, math.log(s2))
    ld2 = np.logaddexp(math.log(s1) + a2, math.log(s2))
    h = np.exp(a2 - ld2)  # bounded by 1 / s1
    k = np.exp(-ld1)  # bounded by 1 / s2
    # psi'(1) = mean_2 dh/dr - mean_1 dk/dr
    dpsi = -s2 * float(np.mean(np.exp(a2 - 2 * ld2))) - s1 * float(np.mean(np.exp(a1 - 2 * ld1)))
    if not (np.isfinite(dpsi) and dpsi < 0):
        return math.nan
    var = float(np.var(h, ddof=1)) / n2 + spectrum0_ar(k) / n1
    return math.sqrt(var) / abs(dpsi)


def shrunk_covariance(x: np.ndarray) -> np.ndarray:
    """Covariance of the rows of ``x`` with the correlations shrunk towards zero.

    Schafer & Strimmer (2005), target "diagonal, unequal variance": the sample correlations
    r_ij are multiplied by ``1 - lambda`` with ``lambda = sum var(r_ij) / sum r_ij^2`` (i != j,
    clipped to [0, 1]) and ``var(r_ij)`` the unbiased estimate from the products of the
    standardised columns; the variances are kept.

    Parameters
    ----------
    x : numpy.ndarray
        Draws, one row per draw and one column per parameter.

    Returns
    -------
    numpy.ndarray
        The (D, D) covariance matrix; the sample covariance itself with fewer than 2 columns,
        fewer than 3 rows or a constant column.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(1).normal(size=(50, 3))
    >>> V = shrunk_covariance(x)
    >>> bool(np.allclose(np.diag(V), x.var(axis=0, ddof=1)))  # the variances are kept
    True
    """
    x = np.asarray(x, dtype=float)
    n, D = x.shape
    sd = x.std(axis=0, ddof=1)
    V = np.cov(x, rowvar=False).reshape(D, D)
    if D < 2 or n < 3 or np.any(sd <= 0):
        return V
    xs = (x - x.mean(axis=0)) / sd
    wbar = xs.T @ xs / n  # mean of the products w_kij = xs_ki xs_kj
    R = wbar * n / (n - 1)
    sq = xs * xs
    var_r = n / (n - 1) ** 3 * (sq.T @ sq - n * wbar * wbar)
    off = ~np.eye(D, dtype=bool)
    denom = float(np.sum(R[off] ** 2))
    lam = 1.0 if denom <= 0 else min(1.0, max(0.0, float(np.sum(var_r[off])) / denom))
    Rs = (1.0 - lam) * R
    np.fill_diagonal(Rs, 1.0)
    return Rs * np.outer(sd, sd)
