"""Convergence diagnostics of MCMC draws, computed for every variable at once.

The definitions are those of Vehtari, Gelman, Simpson, Carpenter and Buerkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat for assessing convergence of
MCMC", Bayesian Analysis 16(2), as arviz (``arviz.ess``, ``arviz.rhat(method="rank")``,
``arviz.mcse(method="mean")``) and Stan compute them:

* chains are split in halves (the middle draw of an odd count is dropped);
* rank normalisation: average ranks over all draws, ``(rank - 3/8) / (n + 1/4)``, through the
  standard normal quantile function;
* ESS: autocovariances by FFT, Geyer's initial positive sequence of pairs of
  autocorrelations, made monotone, and ``tau`` bounded below by ``1 / log10(n)``;
* bulk ESS: of the rank-normalised split chains; quantile ESS: of the indicator
  ``draw <= quantile`` (type-7 quantile of all draws); mean ESS: of the split chains;
* rank R-hat: the larger of the split R-hat of the rank-normalised draws and of the
  rank-normalised absolute deviations from the median.

arviz evaluates these one variable at a time in Python; a posterior summary of a few hundred
quantities then costs more than sampling a small model. Here every step works on the array of
all variables at once. A variable with a missing (NaN) draw or fewer than 4 draws per chain
gets NaN, as in arviz; R-hat needs at least 2 chains.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft
from scipy.special import ndtri

__all__ = ["ess_bulk", "ess_mean", "ess_quantile", "mcse_mean", "rhat_rank",
           "summary_diagnostics"]

MIN_DRAWS = 4  # draws per chain below which every diagnostic is NaN (as arviz)


def _split(x: np.ndarray) -> np.ndarray:
    """(chain, draw, P) -> (2 chain, draw // 2, P): first and last halves of each chain."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def _invalid(x: np.ndarray, min_chains: int = 1) -> np.ndarray:
    """(P,) True where a variable has a NaN draw, or the array too few draws or chains."""
    bad = np.isnan(x).any(axis=(0, 1))
    if x.shape[1] < MIN_DRAWS or x.shape[0] < min_chains:
        bad[:] = True
    return bad


def _sort_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, sorted)``, each (P, M*N): the pooled draws of each variable of ``x`` (M, N, P)
    as a row, its sorting permutation and the sorted row."""
    M, N, P = x.shape
    flat = np.ascontiguousarray(x.reshape(M * N, P).T)  # (P, n): sort along contiguous rows
    order = np.argsort(flat, axis=1)
    return order, np.take_along_axis(flat, order, axis=1)


def _z_scale(x: np.ndarray, rows: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Rank-normalised ``x`` (M, N, P): average ranks over the M*N draws of each variable.
    ``rows``: :func:`_sort_rows` of ``x`` when the caller has it."""
    M, N, P = x.shape
    n = M * N
    order, s = _sort_rows(x) if rows is None else rows
    idx = np.arange(n)
    start = np.ones((P, n), dtype=bool)
    np.not_equal(s[:, 1:], s[:, :-1], out=start[:, 1:])
    z = np.empty((P, n))
    if start.all():  # no ties (continuous draws): the rank is the position in the sort,
        # so every variable takes the same n normal scores, in its own order
        scores = ndtri((idx + 1.0 - 0.375) / (n + 0.25))
        np.put_along_axis(z, order, np.broadcast_to(scores, (P, n)), axis=1)
    else:  # tied values share the average of their positions (repeated MCMC draws)
        flags = start.ravel()  # a run of equal values starts here (never across variables)
        first = np.flatnonzero(flags)  # flat position of each run's first and last value
        last = np.empty_like(first)
        last[:-1] = first[1:] - 1
        last[-1] = flags.size - 1
        # the average rank of a run is (first + last) / 2 + 1 within its row: one of 2n - 1
        # values, whose normal scores are computed once, then looked up by every draw
        key = first + last - 2 * (first - first % n)
        scores = ndtri((np.arange(2 * n - 1) * 0.5 + 1.0 - 0.375) / (n + 0.25))
        run = np.cumsum(flags) - 1
        np.put_along_axis(z, order, scores[key][run].reshape(P, n), axis=1)
    return np.ascontiguousarray(z.T).reshape(M, N, P)


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS (P,) of each variable of ``x`` (M chains, N draws, P), relative to nothing."""
    x = np.asarray(x, dtype=float)
    M, N, P = x.shape
    out = np.full(P, np.nan)
    ok = ~np.isnan(x).any(axis=(0, 1))
    constant = ok & (x.max(axis=(0, 1)) - x.min(axis=(0, 1)) < np.finfo(float).resolution)
    out[constant] = M * N
    cols = np.flatnonzero(ok & ~constant)
    if cols.size == 0 or N < 2:
        return out
    y = x if cols.size == P else x[:, :, cols]
    chain_mean = y.mean(axis=1)  # (M, p)
    m = next_fast_len(2 * N, real=True)
    padded = np.zeros((M, cols.size, m))  # centred draws along contiguous rows, zero-padded
    padded[:, :, :N] = np.moveaxis(y - chain_mean[:, None, :], 1, 2)
    f = rfft(padded, axis=-1)
    np.multiply(f, np.conjugate(f), out=f)
    mean_acov = irfft(f, n=m, axis=-1)[:, :, :N].mean(axis=0).T / N  # (N lags, p)
    mean_var = mean_acov[0] * N / (N - 1.0)
    var_plus = mean_var * (N - 1.0) / N
    if M > 1:
        var_plus = var_plus + np.var(chain_mean, axis=0, ddof=1)
    rho = 1.0 - (mean_var - mean_acov) / var_plus  # (N, p): autocorrelation at each lag
    tau = _tau(rho)
    ess = M * N / np.maximum(tau, 1.0 / np.log10(M * N))
    out[cols] = np.where(np.isfinite(tau), ess, np.nan)
    return out


def _tau(rho: np.ndarray) -> np.ndarray:
    """Integrated autocorrelation times (p,) from the autocorrelations ``rho`` (N lags, p).

    Geyer's initial positive sequence: pair sums ``S_0 = 1 + rho_1``, ``S_k = rho_2k +
    rho_2k+1`` are taken while the previous one is positive (up to lag N - 2); the kept pairs
    are made non-increasing, and the even term of the first pair not kept is added when it is
    positive or its pair sum is not negative:
    ``tau = -1 + 2 sum_{k < k*} min(S_0..S_k) + rho_2k*``.
    """
    N, p = rho.shape
    K = max(0, (N - 3) // 2)  # pairs 1..K can be examined
    S = np.empty((K + 1, p))
    S[0] = 1.0 + rho[1]
    S[1:] = rho[2:2 * K + 2:2] + rho[3:2 * K + 2:2]
    stop = S[:K] <= 0.0
    if K == 0:
        kstar = np.zeros(p, dtype=int)
    else:  # the last pair examined
        kstar = np.where(stop.any(axis=0), stop.argmax(axis=0), K)
    mono = np.minimum.accumulate(S, axis=0)
    head = np.where(np.arange(K + 1)[:, None] < kstar, mono, 0.0).sum(axis=0)
    cols = np.arange(p)
    even = np.where(kstar == 0, 1.0, rho[2 * kstar, cols])
    tail = np.where((S[kstar, cols] >= 0.0) | (even > 0.0), even, 0.0)
    tau = -1.0 + 2.0 * head + tail
    return np.where(np.isnan(rho).any(axis=0), np.nan, tau)


def ess_bulk(x: np.ndarray) -> np.ndarray:
    """Bulk ESS (P,) of draws ``x`` (chain, draw, P): of the rank-normalised split chains."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape[2], np.nan)
    ok = np.flatnonzero(~_invalid(x))
    if ok.size:
        out[ok] = _ess(_z_scale(_split(x[:, :, ok])))
    return out


def ess_quantile(x: np.ndarray, prob: float) -> np.ndarray:
    """ESS (P,) of the ``prob`` quantile of draws ``x`` (chain, draw, P)."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape[2], np.nan)
    ok = np.flatnonzero(~_invalid(x))
    if ok.size:
        y = x[:, :, ok]
        q = np.quantile(y.reshape(-1, ok.size), prob, axis=0)  # linear: R's type 7
        out[ok] = _ess(_split((y <= q).astype(float)))
    return out


def ess_mean(x: np.ndarray) -> np.ndarray:
    """ESS (P,) of the mean of draws ``x`` (chain, draw, P): of the split chains."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape[2], np.nan)
    ok = np.flatnonzero(~_invalid(x))
    if ok.size:
        out[ok] = _ess(_split(x[:, :, ok]))
    return out


def mcse_mean(x: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error (P,) of the posterior mean: SD / sqrt(mean ESS)."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape[2], np.nan)
    ok = np.flatnonzero(~_invalid(x))
    if ok.size:
        y = x[:, :, ok]
        out[ok] = _mcse(y, _split(y))
    return out


def _mcse(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """MCSE of the mean (p,) of valid draws ``y`` (chain, draw, p), ``s`` their split chains."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return y.reshape(-1, y.shape[2]).std(axis=0, ddof=1) / np.sqrt(_ess(s))


def _rhat(z: np.ndarray) -> np.ndarray:
    """Split R-hat (P,) of already split chains ``z`` (M, N, P)."""
    _, N, _ = z.shape
    between = N * np.var(z.mean(axis=1), axis=0, ddof=1)
    within = np.var(z, axis=1, ddof=1).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):  # constant: 0 / 0 -> NaN, as arviz
        return np.sqrt((between / within + N - 1) / N)


def rhat_rank(x: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat (P,) of draws ``x`` (chain, draw, P): the larger of the
    bulk and the folded (tail) values; NaN with fewer than 2 chains."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape[2], np.nan)
    ok = np.flatnonzero(~_invalid(x, min_chains=2))
    if ok.size:
        s = _split(x[:, :, ok])
        med = np.median(s.reshape(-1, ok.size), axis=0)
        out[ok] = np.maximum(_rhat(_z_scale(s)), _rhat(_z_scale(np.abs(s - med))))
    return out


def summary_diagnostics(x: np.ndarray, probs: tuple[float, float] = (0.025, 0.975),
                        mcse: bool = True, quantiles: np.ndarray | None = None
                        ) -> dict[str, np.ndarray]:
    """Every diagnostic of a posterior summary of draws ``x`` (chain, draw, P) in one pass.

    Returns ``{"ess_bulk", "ess_tail", "rhat", "mcse_mean"}``, each (P,): as
    :func:`ess_bulk`, the smaller of :func:`ess_quantile` at ``probs``, :func:`rhat_rank`
    and :func:`mcse_mean` (the rank-normalised split chains are computed once for the bulk
    ESS and R-hat). ``mcse=False`` leaves out ``mcse_mean`` (one ESS computation less).
    ``quantiles``: the (2, P) type-7 quantiles at ``probs`` of each variable's pooled draws
    when the caller has them already (a posterior summary shows them), else computed here.
    """
    x = np.asarray(x, dtype=float)
    P = x.shape[2]
    keys = ("ess_bulk", "ess_tail", "rhat") + (("mcse_mean",) if mcse else ())
    out = {k: np.full(P, np.nan) for k in keys}
    ok = np.flatnonzero(~_invalid(x))
    if ok.size == 0:
        return out
    y = x[:, :, ok]
    s = _split(y)
    pooled = y.reshape(-1, ok.size)
    q = np.quantile(pooled, probs, axis=0) if quantiles is None else quantiles[:, ok]
    chains = x.shape[0] >= 2

    rows: tuple[np.ndarray, np.ndarray] = ()  # the split chains' draws sorted, once

    def bulk() -> tuple[np.ndarray, np.ndarray | None]:
        z = _z_scale(s, rows)
        return _ess(z), (_rhat(z) if chains else None)

    def folded() -> np.ndarray:
        # the median of the sorted rows: the same order statistics as np.median of the draws
        med = np.median(rows[1], axis=1)
        return _rhat(_z_scale(np.abs(s - med)))

    def tail() -> np.ndarray:
        return np.minimum(*(_ess(_split((y <= qi).astype(float))) for qi in q))

    # independent parts, each computed as it would be alone (so the numbers do not depend on
    # the threads); the heavy numpy and FFT calls release the GIL
    with _parallel(y.size) as run:
        later = [run(tail)]  # needs no ranks: starts at once
        rows = _sort_rows(s)
        if chains:
            later.append(run(folded))
        if mcse:
            later.append(run(lambda: _mcse(y, s)))
        out["ess_bulk"][ok], rhat_bulk = bulk()
        done = [f() for f in later]
    out["ess_tail"][ok] = done[0]
    if chains:
        out["rhat"][ok] = np.maximum(rhat_bulk, done[1])
    if mcse:
        out["mcse_mean"][ok] = done[-1]
    return out


PARALLEL_MIN_DRAWS = 40_000  # draws x variables below which the parts run one after another


@contextmanager
def _parallel(size: int) -> Iterator[Callable[[Callable[[], Any]], Callable[[], Any]]]:
    """``run(f)`` starts ``f()`` in a worker thread (two workers, when the machine has more
    than one core and ``size`` is at least :data:`PARALLEL_MIN_DRAWS`) or defers it, and
    returns a function that gives its result."""
    workers = min(2, os.cpu_count() or 1)
    if workers < 2 or size < PARALLEL_MIN_DRAWS:
        yield lambda f: f
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield lambda f: pool.submit(f).result
